# -*- test-case-name: tests.config.test_config_v6 -*-
"""
Centrifugo v6's names for the settings: the v5 key -> v6 path table (L{V6_PATHS}), the proxies (whose v5 keys
became v6 objects), and the channel options v6 renamed. Data only; L{httpstream.config.v6} reads documents with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from httpstream.config.mapoptions import mapV6Name

__all__ = [
    "NAMESPACES", "OPTION_V6_NAMES", "PROXIES", "PROXY_LIST", "PROXY_NAME_OPTIONS", "PROXY_NAME_SWITCHES",
    "PROXY_SHARED", "REDIS_ADDRESS", "RPC_NAMESPACES", "RPC_PROXY_NAME", "V6_NAME", "V6_PATHS", "WITHOUT_NAMESPACE",
    "Proxy", "optionV6Name", "v6ProxyNames",
]

# The v5 key of every setting and its v6 path; None: v6 has no such key (the v5 name is used in both styles).
# Keys that are not (yet) fields of Config are listed too, so a field added later gets its v6 name at once;
# entries for absent fields are inert. Channel options, namespaces, proxies and the Redis address are below.
V6_PATHS: dict[str, Optional[str]] = {
    "port": "http_server.port",
    "address": "http_server.address",
    "internal_port": "http_server.internal_port",
    "internal_address": "http_server.internal_address",
    "name": "node.name",
    "tls": "http_server.tls.enabled",
    "tls_cert": "http_server.tls.cert_pem",
    "tls_key": "http_server.tls.key_pem",
    "tls_cert_pem": None,  # v6's cert_pem (-> tls_cert) takes PEM text, base64 or a path
    "tls_key_pem": None,
    "tls_external": "http_server.tls_external",
    # httpstream's own deadlines (Centrifugo has none): no v6 name.
    "http_server_read_header_timeout": None,
    "http_server_read_timeout": None,
    "http_server_idle_timeout": None,
    "http_stream": "http_stream.enabled",
    "http_stream_max_request_body_size": "http_stream.max_request_body_size",
    "emulation_max_request_body_size": "emulation.max_request_body_size",
    "sse": "sse.enabled",
    "sse_max_request_body_size": "sse.max_request_body_size",
    "websocket_disable": "websocket.disabled",
    "websocket_message_size_limit": "websocket.message_size_limit",
    "websocket_write_batch_size": None,  # httpstream's own (centrifuge counts messages per frame instead)
    "websocket_compression": "websocket.compression",
    "websocket_compression_min_size": "websocket.compression_min_size",
    "websocket_compression_level": "websocket.compression_level",
    "websocket_decompressed_message_size_limit": "websocket.decompressed_message_size_limit",
    "websocket_read_buffer_size": "websocket.read_buffer_size",
    "websocket_write_buffer_size": "websocket.write_buffer_size",
    "websocket_write_timeout": "websocket.write_timeout",
    "uni_websocket": "uni_websocket.enabled",
    "uni_websocket_message_size_limit": "uni_websocket.message_size_limit",
    "uni_sse": "uni_sse.enabled",
    "uni_sse_max_request_body_size": "uni_sse.max_request_body_size",
    "uni_http_stream": "uni_http_stream.enabled",
    "uni_http_stream_max_request_body_size": "uni_http_stream.max_request_body_size",
    "demo": None,
    "demo_sdk_dir": None,
    "allowed_origins": "client.allowed_origins",
    "ping_interval": "client.ping_interval",
    "pong_timeout": "client.pong_timeout",
    "client_stale_close_delay": "client.stale_close_delay",
    "client_expired_close_delay": "client.expired_close_delay",
    "client_expired_sub_close_delay": "client.expired_sub_close_delay",
    "client_presence_update_interval": "client.presence_update_interval",
    "client_channel_position_check_delay": "client.channel_position_check_delay",
    "client_channel_position_max_time_lag": "client.channel_position_max_time_lag",
    "client_queue_max_size": "client.queue_max_size",
    "client_channel_limit": "client.channel_limit",
    "client_user_connection_limit": "client.user_connection_limit",
    "client_connection_limit": "client.connection_limit",
    "client_connection_rate_limit": "client.connection_rate_limit",
    "client_concurrency": "client.concurrency",
    "client_history_max_publication_limit": "client.history_max_publication_limit",
    "client_recovery_max_publication_limit": "client.recovery_max_publication_limit",
    "client_connect_include_server_time": "client.connect_include_server_time",
    "channel_max_length": "channel.max_length",
    "channel_private_prefix": "channel.private_prefix",
    "channel_namespace_boundary": "channel.namespace_boundary",
    "channel_user_boundary": "channel.user_boundary",
    "channel_user_separator": "channel.user_separator",
    "global_history_meta_ttl": "channel.history_meta_ttl",
    "user_subscribe_to_personal": "client.subscribe_to_user_personal_channel.enabled",
    "user_personal_channel_namespace": "client.subscribe_to_user_personal_channel.personal_channel_namespace",
    "user_personal_single_connection": "client.subscribe_to_user_personal_channel.single_connection",
    "client_insecure": "client.insecure",
    "allow_anonymous_connect_without_token": "client.allow_anonymous_connect_without_token",
    "disallow_anonymous_connection_tokens": "client.disallow_anonymous_connection_tokens",
    "token_hmac_secret_key": "client.token.hmac_secret_key",
    "token_rsa_public_key": "client.token.rsa_public_key",
    "token_ecdsa_public_key": "client.token.ecdsa_public_key",
    "token_jwks_public_endpoint": "client.token.jwks_public_endpoint",
    "token_audience": "client.token.audience",
    "token_audience_regex": "client.token.audience_regex",
    "token_issuer": "client.token.issuer",
    "token_issuer_regex": "client.token.issuer_regex",
    "token_user_id_claim": "client.token.user_id_claim",
    "token_insecure_skip_jwks_endpoint_safety_check": "client.token.insecure_skip_jwks_endpoint_safety_check",
    "separate_subscription_token_config": "client.subscription_token.enabled",
    **{f"subscription_token_{suffix}": f"client.subscription_token.{suffix}" for suffix in (
        "hmac_secret_key", "rsa_public_key", "ecdsa_public_key", "jwks_public_endpoint",
        "insecure_skip_jwks_endpoint_safety_check", "audience", "audience_regex", "issuer", "issuer_regex",
        "user_id_claim",
    )},
    "api_key": "http_api.key",
    "api_insecure": "http_api.insecure",
    "api_disable": "http_api.disabled",
    "api_error_mode": "http_api.error_mode",
    "api_external": "http_api.external",
    "health": "health.enabled",
    "prometheus": "prometheus.enabled",
    "admin": "admin.enabled",
    "log_level": "log.level",
    "log_file": "log.file",
    "pid_file": "pid_file",
    "shutdown_timeout": "shutdown.timeout",
    "engine": "engine.type",
    "workers": None,  # httpstream's own (Centrifugo runs one process, with Go's threads on every core)
    "redis_url": None,
    "redis_prefix": "engine.redis.prefix",
    "redis_db": "engine.redis.db",
    "redis_user": "engine.redis.user",
    "redis_password": "engine.redis.password",
    "redis_tls": "engine.redis.tls.enabled",
    "redis_sentinel_address": "engine.redis.sentinel_address",
    "redis_sentinel_master_name": "engine.redis.sentinel_master_name",
    "redis_sentinel_user": "engine.redis.sentinel_user",
    "redis_sentinel_password": "engine.redis.sentinel_password",
    "redis_sentinel_tls": "engine.redis.sentinel_tls.enabled",
    "redis_connect_timeout": "engine.redis.connect_timeout",
    "redis_io_timeout": "engine.redis.io_timeout",
    "global_presence_ttl": "engine.redis.presence_ttl",
    "redis_address": "engine.redis.address",  # a list in v6 (shards); the field holds them space-separated
    "redis_cluster_address": "engine.redis.cluster_address",
    "namespaces": "channel.namespaces",
    "shared_poll_hmac_secret_key": "shared_poll.hmac_secret_key",
    "shared_poll_hmac_previous_secret_key": "shared_poll.hmac_previous_secret_key",
    "shared_poll_hmac_previous_secret_key_valid_until": "shared_poll.hmac_previous_secret_key_valid_until",
    # The v5 proxy keys: see PROXIES. The global options became per-proxy ones in v6.
    "proxy_http_headers": "<each proxy>.http_headers",
    "proxy_binary_encoding": "<each proxy>.binary_encoding",
    "proxy_include_connection_meta": "<each proxy>.include_connection_meta",
    "proxy_static_http_headers": "<each proxy>.http.static_headers",
    # Named proxies and RPC namespaces (httpstream.config.proxies). v6 has no granular mode (its names always
    # route) and no connect/refresh proxy names; v5's rpc_proxy_name is v6's rpc.without_namespace.proxy_name with
    # its proxy_enabled switch, read by httpstream.config.v6.
    "granular_proxy_mode": None,
    "proxies": "proxies",
    "connect_proxy_name": None,
    "refresh_proxy_name": None,
    "rpc_proxy_name": None,
    "rpc_namespaces": "rpc.namespaces",
    "rpc_namespace_boundary": "rpc.namespace_boundary",
}


@dataclass(frozen=True)
class Proxy:
    """One of Centrifugo's proxies: v5 keys C{<v5>_endpoint}/C{<v5>_timeout}, v6 object at C{v6}."""

    v5: str
    v6: str
    switch: Optional[str]  # the v6 bool that turns it on; None: on wherever a namespace asks for it


PROXIES = (
    Proxy("proxy_connect", "client.proxy.connect", "client.proxy.connect.enabled"),
    Proxy("proxy_refresh", "client.proxy.refresh", "client.proxy.refresh.enabled"),
    # v6 has RPC namespaces; httpstream's RPC proxy serves every method, v6's methods without namespace.
    Proxy("proxy_rpc", "rpc.proxy", "rpc.without_namespace.proxy_enabled"),
    Proxy("proxy_subscribe", "channel.proxy.subscribe", None),
    Proxy("proxy_publish", "channel.proxy.publish", None),
    Proxy("proxy_sub_refresh", "channel.proxy.sub_refresh", None),
)
for _proxy in PROXIES:
    V6_PATHS[f"{_proxy.v5}_endpoint"] = f"{_proxy.v6}.endpoint"
    V6_PATHS[f"{_proxy.v5}_timeout"] = f"{_proxy.v6}.timeout"

# v5's global proxy options -> the option of each v6 proxy object.
PROXY_SHARED = {
    "proxy_http_headers": "http_headers",
    "proxy_binary_encoding": "binary_encoding",
    "proxy_include_connection_meta": "include_connection_meta",
    "proxy_static_http_headers": "http.static_headers",
}

# Channel options renamed in v6 (NS ChannelOptions); the others keep their names.
OPTION_V6_NAMES = {
    "proxy_subscribe": "subscribe_proxy_enabled",
    "proxy_publish": "publish_proxy_enabled",
    "proxy_sub_refresh": "sub_refresh_proxy_enabled",
    **{f"shared_poll_{name}": f"shared_poll.{name}" for name in (
        "proxy_name", "mode", "refresh_interval", "refresh_batch_size", "max_keys_per_connection",
        "track_expired_extra_delay", "publish_enabled",
    )},
}
# The choice of a named proxy per namespace, and the switch it goes with. v5: a name alone turns the proxy on;
# v6: the name counts only while the switch is on (its default name is "default", the channel.proxy object).
PROXY_NAME_SWITCHES = {
    "subscribe_proxy_name": "proxy_subscribe",
    "publish_proxy_name": "proxy_publish",
    "sub_refresh_proxy_name": "proxy_sub_refresh",
}
PROXY_NAME_OPTIONS = tuple(PROXY_NAME_SWITCHES)
V6_NAME = "v6:"  # prefix of a v6 name in a namespace object until its switch is known (L{v6ProxyNames})
PROXY_LIST = "proxies"
RPC_NAMESPACES = "rpc.namespaces"
RPC_PROXY_NAME = "rpc.without_namespace.proxy_name"
WITHOUT_NAMESPACE = "channel.without_namespace"
NAMESPACES = "channel.namespaces"
REDIS_ADDRESS = "engine.redis.address"


def optionV6Name(option: str) -> str:
    """
    The v6 name of a channel option (in C{channel.without_namespace} and in each namespace); a dotted one
    (C{map.mode}) sits in an object of the namespace (C{"map": {"mode": ...}}).
    """
    return OPTION_V6_NAMES.get(option) or mapV6Name(option)


def v6ProxyNames(item: dict[str, Any]) -> dict[str, Any]:
    """
    A namespace object with its v6 proxy names (kept under L{V6_NAME}) turned into v5's: a name counts only
    with its switch on, and C{"default"} is no name (the event's own proxy either way).
    """
    result = {key: value for key, value in item.items() if not key.startswith(V6_NAME)}
    for option, switch in PROXY_NAME_SWITCHES.items():
        if V6_NAME + option in item:
            name = item[V6_NAME + option]
            result[option] = name if item.get(switch) and name != "default" else ""
    return result
