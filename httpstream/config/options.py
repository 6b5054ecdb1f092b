# -*- test-case-name: tests.config.test_config -*-
"""
The configuration's frozen values: L{Config} (one field per setting, named with Centrifugo v5's flat key), the
L{ChannelOptions} it shares with each L{Namespace}, and the checks between fields.

Constructing one directly (embedded use, C{dataclasses.replace} in tests) runs the same checks as loading a file,
so every instance is valid. Imports L{httpstream.config.settings} (how a field is read), the durations, and
L{httpstream.config.v6} (L{httpstream.config.config_from_dict}).
"""

from __future__ import annotations

import dataclasses
import os
import socket
from dataclasses import dataclass, field
from typing import Callable, Mapping

from httpstream.config.channeloptions import ChannelOptions, Namespace, _check_options, _option_values, _read_namespaces
from httpstream.config.durations import format_duration
from httpstream.config.proxies import (
    NamedProxy,
    RPCNamespace,
    StaticHeaders,
    checkProxyNames,
    readProxies,
    readRPCNamespaces,
    readStaticHeaders,
)
from httpstream.config.mapoptions import checkMapProxies
from httpstream.config.sharedpoll import checkSharedPoll
from httpstream.config.settings import (
    ConfigError,
    Duration,
    _apply_rules,
    _check_origin_patterns,
    _check_redis_address,
    _check_redis_cluster_address,
    _check_redis_url,
    _read_sentinel_addresses,
    _error,
    _readField,
    _show,
    _specs,
    setting,
)

__all__ = ["ChannelOptions", "Config", "Namespace"]

_LOG_LEVELS = ("debug", "info", "warn", "warning", "error", "none")
_ENGINES = ("memory", "redis")


def _read_workers(key: str, value: object) -> int:
    # "auto" is stored as 0 so that the value stays an int and writing a config back (0) reads the same.
    if value == "auto":
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _error(key, 'a number of worker processes (1 or more) or "auto"', value)
    return value


def cpuCount() -> int:
    """The cores this process may run on (its affinity, which a container's cpuset narrows), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # no sched_getaffinity (not Linux)
        return max(1, os.cpu_count() or 1)


def _check_jwks_endpoint(key: str, url: str) -> None:
    # Centrifugo's jwks.NewManager: an http(s) URL; "{{name}}" parts are filled from the token (see policy.jwksurl).
    if url and not url.startswith(("http://", "https://")):
        raise _error(key, "an http:// or https:// URL", url)



@dataclass(frozen=True)
class Config(ChannelOptions):
    """
    Server configuration. C{Config()} holds every default; L{load_config} and
    L{config_from_dict} read a document. Field names are Centrifugo v5's keys
    (v6's nested names map onto them: L{httpstream.config.v6}).

    Constructing an instance validates (and normalizes, e.g. ``"25s"`` to
    C{25.0}) every field and raises L{ConfigError} when one is invalid.

    The channel options of channels without a namespace are the fields
    inherited from L{ChannelOptions}; C{namespaces} holds the others.
    """

    "Listening and node identity."
    port: int = setting(8000, minimum=0, maximum=65535)  # 0: let the OS pick (tests)
    address: str = setting("")  # "" listens on all interfaces
    name: str = setting("")  # the node name; "" becomes the hostname when a file or dict is loaded

    "TLS on that port (https and wss): a certificate and key as PEM, base64 of PEM, or a file path."
    tls: bool = setting(False)
    tls_cert: str = setting("")
    tls_key: str = setting("", secret=True)
    tls_cert_pem: str = setting("")  # v5's names for PEM text; the same values as tls_cert/tls_key work
    tls_key_pem: str = setting("", secret=True)

    "HTTP read deadlines (Go's net/http ReadHeaderTimeout, ReadTimeout, IdleTimeout; Centrifugo's values); 0 is off."
    http_server_read_header_timeout: Duration = setting(10.0, minimum=0)
    http_server_read_timeout: Duration = setting(30.0, minimum=0)
    http_server_idle_timeout: Duration = setting(30.0, minimum=0)

    # Keys are added here as they take effect: a key the server accepted but ignored would mislead operators,
    # while an unknown key at least gets a warning.
    "Transports. Body limits are in bytes; 0 means no request body is accepted."
    http_stream: bool = setting(False)
    http_stream_max_request_body_size: int = setting(65536, minimum=0)
    emulation_max_request_body_size: int = setting(65536, minimum=0)
    sse: bool = setting(False)
    sse_max_request_body_size: int = setting(65536, minimum=0)
    websocket_disable: bool = setting(False)
    websocket_message_size_limit: int = setting(65536, minimum=0)
    # Not a Centrifugo key (centrifuge bounds a frame by message count, MaxMessagesInFrame): the byte size a
    # flushed batch is split at; a larger single reply or push still goes, alone. 0: one message per flush.
    websocket_write_batch_size: int = setting(65536, minimum=0)
    # Unidirectional transports (the client only receives: connect request in the body, cf_connect or the first
    # message; server-side subscriptions); JSON only, as Centrifugo's.
    uni_http_stream: bool = setting(False)
    uni_http_stream_max_request_body_size: int = setting(65536, minimum=0)
    uni_sse: bool = setting(False)
    uni_sse_max_request_body_size: int = setting(65536, minimum=0)
    uni_websocket: bool = setting(False)
    uni_websocket_message_size_limit: int = setting(65536, minimum=0)
    # permessage-deflate, no context takeover; the level is Go's compress/flate level (-2 Huffman only, -1 default).
    websocket_compression: bool = setting(False)
    websocket_compression_level: int = setting(1, minimum=-2, maximum=9)
    websocket_compression_min_size: int = setting(0, minimum=0)
    # v6 only (Centrifugo has no v5 key): what a client's compressed message may inflate to; 0 is 10 times
    # websocket_message_size_limit, as in Centrifugo.
    websocket_decompressed_message_size_limit: int = setting(0, minimum=0)

    "The demo page at /demo/ (a chat; not a Centrifugo key) and where it finds the JS SDK's dist/ files."
    demo: bool = setting(False)
    demo_sdk_dir: str = setting("web/node_modules/centrifuge/dist")

    "Browser origins allowed to connect: gobwas/glob patterns; [] allows only requests without Origin."
    allowed_origins: tuple[str, ...] = setting((), check=_check_origin_patterns)

    "Client timing, in seconds. ping_interval and pong_timeout accept -1 to turn them off."
    ping_interval: Duration = setting(25.0, greater_than=0, disable=True)
    pong_timeout: Duration = setting(8.0, greater_than=0, disable=True)
    client_stale_close_delay: Duration = setting(10.0, minimum=0)
    client_expired_close_delay: Duration = setting(25.0, minimum=0)
    client_expired_sub_close_delay: Duration = setting(25.0, minimum=0)
    client_presence_update_interval: Duration = setting(27.0, greater_than=0)
    client_channel_position_check_delay: Duration = setting(40.0, greater_than=0)

    "Client limits. client_queue_max_size is in bytes; 0 for client_user_connection_limit means no limit."
    client_queue_max_size: int = setting(1048576, minimum=0)
    client_channel_limit: int = setting(128, minimum=0)
    channel_max_length: int = setting(255, minimum=0)
    client_user_connection_limit: int = setting(0, minimum=0)
    "Node limits, 0 for none: connections open at once, new connections a second (beyond either: HTTP 503)."
    client_connection_limit: int = setting(0, minimum=0)
    client_connection_rate_limit: int = setting(0, minimum=0)
    "Commands of one connection run at once (subscribe, publish, history, presence, rpc, refresh); 0 or 1: one."
    client_concurrency: int = setting(0, minimum=0)
    client_history_max_publication_limit: int = setting(300, minimum=0)
    client_recovery_max_publication_limit: int = setting(300, minimum=0)

    "Channel name syntax."
    channel_private_prefix: str = setting("$")
    channel_namespace_boundary: str = setting(":")
    channel_user_boundary: str = setting("#")
    channel_user_separator: str = setting(",")
    global_history_meta_ttl: Duration = setting(2592000.0, minimum=0)

    "Personal channels: each authenticated connection subscribed server-side to #<user>."
    user_subscribe_to_personal: bool = setting(False)
    user_personal_channel_namespace: str = setting("")
    user_personal_single_connection: bool = setting(False)

    "Authentication: connection and subscription JWTs."
    client_insecure: bool = setting(False)
    allow_anonymous_connect_without_token: bool = setting(False)
    disallow_anonymous_connection_tokens: bool = setting(False)
    token_hmac_secret_key: str = setting("", secret=True)
    token_rsa_public_key: str = setting("")
    token_ecdsa_public_key: str = setting("")
    token_audience: str = setting("")
    token_audience_regex: str = setting("")
    token_issuer: str = setting("")
    token_issuer_regex: str = setting("")
    token_user_id_claim: str = setting("sub")
    token_jwks_public_endpoint: str = setting("", check=_check_jwks_endpoint)  # when set, the only key source
    token_insecure_skip_jwks_endpoint_safety_check: bool = setting(False)  # v6's; no v5 name

    "Subscription tokens checked with keys and claim rules of their own (otherwise with the token_* ones)."
    separate_subscription_token_config: bool = setting(False)
    subscription_token_hmac_secret_key: str = setting("", secret=True)
    subscription_token_rsa_public_key: str = setting("")
    subscription_token_ecdsa_public_key: str = setting("")
    subscription_token_jwks_public_endpoint: str = setting("", check=_check_jwks_endpoint)
    subscription_token_insecure_skip_jwks_endpoint_safety_check: bool = setting(False)
    subscription_token_audience: str = setting("")
    subscription_token_audience_regex: str = setting("")
    subscription_token_issuer: str = setting("")
    subscription_token_issuer_regex: str = setting("")
    subscription_token_user_id_claim: str = setting("sub")

    "Proxy to the application backend (Centrifugo's HTTP proxy); an empty endpoint is off."
    proxy_connect_endpoint: str = setting("")
    proxy_connect_timeout: Duration = setting(1.0, greater_than=0)
    proxy_refresh_endpoint: str = setting("")
    proxy_refresh_timeout: Duration = setting(1.0, greater_than=0)
    proxy_rpc_endpoint: str = setting("")
    proxy_rpc_timeout: Duration = setting(1.0, greater_than=0)
    proxy_publish_endpoint: str = setting("")
    proxy_publish_timeout: Duration = setting(1.0, greater_than=0)
    proxy_subscribe_endpoint: str = setting("")
    proxy_subscribe_timeout: Duration = setting(1.0, greater_than=0)
    proxy_sub_refresh_endpoint: str = setting("")
    proxy_sub_refresh_timeout: Duration = setting(1.0, greater_than=0)
    proxy_http_headers: tuple[str, ...] = setting(())
    proxy_static_http_headers: Mapping[str, str] = setting(StaticHeaders(), read=readStaticHeaders)

    "Named proxies (Centrifugo's granular proxy mode) and RPC namespaces: httpstream.config.proxies."
    granular_proxy_mode: bool = setting(False)  # RPC methods are routed by rpc_namespaces
    proxies: tuple[NamedProxy, ...] = setting((), read=lambda key, value: readProxies(key, value)[0])
    connect_proxy_name: str = setting("")
    refresh_proxy_name: str = setting("")
    rpc_proxy_name: str = setting("")  # methods without an RPC namespace
    rpc_namespaces: tuple[RPCNamespace, ...] = setting((), read=lambda key, value: readRPCNamespaces(key, value)[0])
    rpc_namespace_boundary: str = setting(":")

    "Track signatures of shared poll channels (httpstream.config.sharedpoll); a previous key while rotating."
    shared_poll_hmac_secret_key: str = setting("", secret=True)
    shared_poll_hmac_previous_secret_key: str = setting("", secret=True)
    shared_poll_hmac_previous_secret_key_valid_until: int = setting(0, minimum=0)  # unix seconds; 0: no limit

    "Channel namespaces; the top-level channel options are inherited from ChannelOptions."
    namespaces: tuple[Namespace, ...] = setting((), read=_read_namespaces)

    "Server HTTP API (POST /api/<method>): an empty api_key refuses every call unless api_insecure."
    api_key: str = setting("", secret=True)
    api_insecure: bool = setting(False)
    api_disable: bool = setting(False)
    api_error_mode: str = setting("", choices=("", "transport"))

    "Operations: /health and Prometheus /metrics endpoints, logging."
    health: bool = setting(False)
    prometheus: bool = setting(False)
    log_level: str = setting("info", choices=_LOG_LEVELS)
    shutdown_timeout: Duration = setting(30.0, greater_than=0)
    engine: str = setting("memory", choices=_ENGINES)
    # Not a Centrifugo key: worker processes behind one port under twistd (httpstream.workers). 0 is "auto".
    workers: int = setting(1, read=lambda key, value: _read_workers(key, value))
    proxy_binary_encoding: bool = setting(False)
    proxy_include_connection_meta: bool = setting(False)

    "The Redis engine: where Redis is (host:port or a redis:// / rediss:// URL), and presence entries' lifetime."
    # Several addresses separated by spaces (a list in a file) are shards: channels spread by consistent hashing.
    redis_address: str = setting("127.0.0.1:6379", check=_check_redis_address, secret=True)  # a URL may hold one
    # Redis Cluster seed nodes: one entry per cluster (shards over several), seeds comma-separated; wins when set.
    redis_cluster_address: tuple[str, ...] = setting((), check=_check_redis_cluster_address, secret=True)
    redis_url: str = setting("", check=_check_redis_url, secret=True)  # older Centrifugo's name: wins when set
    redis_prefix: str = setting("httpstream")
    redis_db: int = setting(0, minimum=0)
    redis_user: str = setting("")
    redis_password: str = setting("", secret=True)
    redis_tls: bool = setting(False)
    # Redis Sentinel (docs/redis-sentinel.md): the master's address comes from these Sentinels instead of
    # redis_address; user, password, db and tls above still apply to the master.
    redis_sentinel_address: tuple[str, ...] = setting((), read=_read_sentinel_addresses)
    redis_sentinel_master_name: str = setting("")
    redis_sentinel_user: str = setting("")
    redis_sentinel_password: str = setting("", secret=True)
    redis_sentinel_tls: bool = setting(False)
    global_presence_ttl: Duration = setting(60.0, greater_than=0)

    def __post_init__(self) -> None:
        for spec in _specs(Config):
            raw = getattr(self, spec.name)
            value = _readField(spec, spec.name, raw)
            _apply_rules(spec.name, raw, value, spec.rules, spec.is_duration)
            if value is not raw:
                object.__setattr__(self, spec.name, value)
        for check in _CROSS_CHECKS:
            check(self)

    def workerCount(self) -> int:
        """The number of worker processes C{workers} asks for: C{"auto"} (0) is one per core."""
        return self.workers or cpuCount()

    def withHostName(self) -> "Config":
        """This configuration, with the machine's host name as C{name} when it is empty (as a loaded file gets)."""
        return self if self.name else dataclasses.replace(self, name=socket.gethostname())


def _check_redis_cluster(config: Config) -> None:
    if config.redis_cluster_address and config.redis_db != 0:
        raise ConfigError(
            'config keys "redis_cluster_address" and "redis_db": a Redis Cluster has only database 0, '
            f"got redis_db {config.redis_db}"
        )


def _check_ping_pong(config: Config) -> None:
    # Centrifugo refuses to start unless the interval exceeds the timeout: a
    # pong must be able to arrive before the next ping is due.
    if config.ping_interval == -1 or config.pong_timeout == -1:
        return
    if config.ping_interval <= config.pong_timeout:
        raise ConfigError(
            'config keys "ping_interval" and "pong_timeout": ping_interval '
            f"({format_duration(config.ping_interval)}) must be greater than pong_timeout "
            f"({format_duration(config.pong_timeout)}), or set either to -1 to disable it"
        )


def _check_channel_options(config: Config) -> None:
    # Repeated with the global meta TTL, which the namespace reader does not know.
    _check_options("", _option_values(config), config.global_history_meta_ttl)
    for index, namespace in enumerate(config.namespaces):
        _check_options(f"namespaces[{index}].", _option_values(namespace.options), config.global_history_meta_ttl)


def _check_personal_channel(config: Config) -> None:
    # As Centrifugo v5: the personal namespace must exist, and one connection per user is kept through presence
    # in the personal channel.
    namespace = config.user_personal_channel_namespace if config.user_subscribe_to_personal else ""
    options: ChannelOptions = config
    if namespace:
        found = [n for n in config.namespaces if n.name == namespace]
        if not found:
            raise ConfigError(
                f'config key "user_personal_channel_namespace": namespace {_show(namespace)} is not in "namespaces"'
            )
        options = found[0].options
    if config.user_personal_single_connection and not options.presence:
        where = f"in namespace {_show(namespace)}" if namespace else "at the top level"
        raise ConfigError(
            f'config key "user_personal_single_connection": needs "presence": true {where}, where personal '
            "channels are"
        )


def _check_sentinel(config: Config) -> None:
    if not config.redis_sentinel_address:
        return
    if len(config.redis_sentinel_address) > 1:
        raise ConfigError(
            f'config key "redis_sentinel_address": httpstream follows one Redis master (no sharding), got '
            f"{len(config.redis_sentinel_address)} entries; list that master's Sentinels comma-separated in one entry"
        )
    if config.redis_cluster_address or len((config.redis_url or config.redis_address).split()) > 1:
        raise ConfigError(
            'config key "redis_sentinel_address": Sentinel finds one master; it does not combine with '
            '"redis_cluster_address" or several "redis_address" shards'
        )
    if not config.redis_sentinel_master_name:
        raise ConfigError(
            'config key "redis_sentinel_master_name": required with "redis_sentinel_address" (the name the '
            "Sentinels monitor the master under)"
        )


def _check_workers(config: Config) -> None:
    # Each worker is a node of its own: only an engine they share makes them one server.
    count = config.workerCount()
    if count > 1 and config.engine != "redis":
        raise ConfigError(
            f'config keys "workers" and "engine": {count} worker processes need "engine": "redis" (with the '
            f'"{config.engine}" engine each worker would be a server of its own: publications, presence and '
            "history would not be shared)"
        )


_CROSS_CHECKS: tuple[Callable[[Config], None], ...] = (
    _check_ping_pong, _check_workers, _check_channel_options, _check_personal_channel, checkProxyNames,
    _check_redis_cluster, _check_sentinel, checkSharedPoll, checkMapProxies,
)
