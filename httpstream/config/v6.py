# -*- test-case-name: tests.test_config_v6 -*-
"""
Centrifugo v6's nested configuration names, beside v5's flat ones.

A document (a decoded JSON, YAML or TOML file, or a dict) may use either name for each setting, and both kinds in
one file; giving one setting under both names is an error that names both. Every value is read into a I{leaf}: the
v6 path of the setting (C{"http_server.port"}), or the v5 key for the few settings v6 has no name for
(C{"demo"}). Leaves from the file and from the environment (L{httpstream.config.env}) are merged by path, then
turned into the fields of L{Config} by L{fieldsFromLeaves}, which is where v6's changes of shape are undone: the
Redis address list, the proxies' C{enabled} switches and per-proxy options, the renamed namespace proxy switches.

The v5 key -> v6 path table is L{V6_PATHS}, from Centrifugo's own types (``internal/configtypes``) and its v5->v6
converter; docs/configuration.md lists it for operators.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

from httpstream.config import (
    ChannelOptions,
    Config,
    ConfigError,
    Duration,
    Namespace,
    _apply_rules,
    _check_redis_address,
    _error,
    _read_bool,
    _read_namespaces,
    _read_str,
    _readField,
    _read_str_tuple,
    _show,
    _specs,
)

__all__ = ["Leaf", "Leaves", "V6_PATHS", "documentLeaves", "fieldsFromLeaves", "leaves", "v5Leaves", "v5Paths", "v6Document"]

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
    "redis_url": None,
    "redis_prefix": "engine.redis.prefix",
    "redis_db": "engine.redis.db",
    "redis_user": "engine.redis.user",
    "redis_password": "engine.redis.password",
    "redis_tls": "engine.redis.tls.enabled",
    "redis_connect_timeout": "engine.redis.connect_timeout",
    "redis_io_timeout": "engine.redis.io_timeout",
    "global_presence_ttl": "engine.redis.presence_ttl",
    "redis_address": "engine.redis.address",  # a list in v6; httpstream takes one address
    "namespaces": "channel.namespaces",
    # The v5 proxy keys: see _PROXIES. The global options became per-proxy ones in v6.
    "proxy_http_headers": "<each proxy>.http_headers",
    "proxy_binary_encoding": "<each proxy>.binary_encoding",
    "proxy_include_connection_meta": "<each proxy>.include_connection_meta",
}


@dataclass(frozen=True)
class _Proxy:
    """One of Centrifugo's proxies: v5 keys C{<v5>_endpoint}/C{<v5>_timeout}, v6 object at C{v6}."""

    v5: str
    v6: str
    switch: Optional[str]  # the v6 bool that turns it on; None: on wherever a namespace asks for it


_PROXIES = (
    _Proxy("proxy_connect", "client.proxy.connect", "client.proxy.connect.enabled"),
    _Proxy("proxy_refresh", "client.proxy.refresh", "client.proxy.refresh.enabled"),
    # v6 has RPC namespaces; httpstream's RPC proxy serves every method, v6's methods without namespace.
    _Proxy("proxy_rpc", "rpc.proxy", "rpc.without_namespace.proxy_enabled"),
    _Proxy("proxy_subscribe", "channel.proxy.subscribe", None),
    _Proxy("proxy_publish", "channel.proxy.publish", None),
    _Proxy("proxy_sub_refresh", "channel.proxy.sub_refresh", None),
)
for _proxy in _PROXIES:
    V6_PATHS[f"{_proxy.v5}_endpoint"] = f"{_proxy.v6}.endpoint"
    V6_PATHS[f"{_proxy.v5}_timeout"] = f"{_proxy.v6}.timeout"

# v5's global proxy options -> the option of each v6 proxy object.
_PROXY_SHARED = {
    "proxy_http_headers": "http_headers",
    "proxy_binary_encoding": "binary_encoding",
    "proxy_include_connection_meta": "include_connection_meta",
}

# Channel options renamed in v6 (NS ChannelOptions); the others keep their names.
OPTION_V6_NAMES = {
    "proxy_subscribe": "subscribe_proxy_enabled",
    "proxy_publish": "publish_proxy_enabled",
    "proxy_sub_refresh": "sub_refresh_proxy_enabled",
}
# v6's choice of a named proxy per namespace; httpstream has only the default one.
_PROXY_NAME_OPTIONS = ("subscribe_proxy_name", "publish_proxy_name", "sub_refresh_proxy_name")
_WITHOUT_NAMESPACE = "channel.without_namespace"
NAMESPACES = "channel.namespaces"
REDIS_ADDRESS = "engine.redis.address"


def optionV6Name(option: str) -> str:
    """The v6 name of a channel option (in C{channel.without_namespace} and in each namespace)."""
    return OPTION_V6_NAMES.get(option, option)


@dataclass(frozen=True)
class Leaf:
    """
    One value a document or the environment can set.

    @ivar path: the v6 dotted path, or the v5 key when v6 has no name for the setting.
    @ivar kind: the value's type (C{bool}, C{int}, C{str}, C{tuple[str, ...]}, L{Duration}), or C{"namespaces"}.
    @ivar read: C{read(label, value)} returns the checked value or raises L{ConfigError} naming C{label}.
    @ivar field: the L{Config} field it sets as it is, or None when L{fieldsFromLeaves} combines it with others.
    """

    path: str
    kind: Any
    read: Callable[[str, Any], Any]
    field: Optional[str]
    v6: bool = True  # False: C{path} is a v5 key that v6 has no name for


Leaves = dict[str, tuple[Any, str]]
"""Leaf path -> (value, label): the label is the name the value was given under (a key path or an env var)."""


def _fieldReader(name: str) -> tuple[Any, Callable[[str, Any], Any]]:
    spec = {s.name: s for s in _specs()}[name]
    hint = {f.name: f.type for f in dataclasses.fields(Config)}[name]
    kind = Duration if spec.is_duration else _KINDS.get(str(hint), hint)

    def read(label: str, raw: Any) -> Any:
        value = _readField(spec, label, raw)
        _apply_rules(label, raw, value, spec.rules, spec.is_duration)
        return value

    return kind, read


_KINDS = {"bool": bool, "int": int, "str": str, "tuple[str, ...]": tuple}


def _readProxyName(label: str, value: Any) -> str:
    name = _read_str(label, value)
    if name not in ("default", ""):  # "" gets Centrifugo's default, "default"
        raise ConfigError(
            f'config key "{label}": httpstream has no named proxies (v6 "proxies"); use "default" (the '
            f"channel.proxy object) or leave it out, got {_show(name)}"
        )
    return name


def _readAddresses(label: str, value: Any) -> tuple[str, ...]:
    # A string is one address (v5, and Centrifugo's loose decoding of v6 files).
    addresses = (_read_str(label, value),) if isinstance(value, str) else _read_str_tuple(label, value)
    for address in addresses:
        _check_redis_address(label, address)
    return addresses


def _buildLeaves() -> dict[str, Leaf]:
    leaves: dict[str, Leaf] = {}
    fields = {f.name for f in dataclasses.fields(Config)}
    options = {f.name for f in dataclasses.fields(ChannelOptions)}
    special = {"namespaces", "redis_address"} | set(_PROXY_SHARED) | {f"{p.v5}_endpoint" for p in _PROXIES}
    for name in sorted(fields - options - special):
        kind, read = _fieldReader(name)
        path = V6_PATHS.get(name) or name
        if path in leaves:
            raise RuntimeError(f"V6_PATHS gives {path!r} to both {leaves[path].field!r} and {name!r}")
        leaves[path] = Leaf(path, kind, read, name, v6=V6_PATHS.get(name) is not None)
    for name in sorted(options):
        kind, read = _fieldReader(name)
        path = f"{_WITHOUT_NAMESPACE}.{optionV6Name(name)}"
        leaves[path] = Leaf(path, kind, read, name)
    for option in _PROXY_NAME_OPTIONS:
        path = f"{_WITHOUT_NAMESPACE}.{option}"
        leaves[path] = Leaf(path, str, _readProxyName, None)
    leaves[NAMESPACES] = Leaf(NAMESPACES, "namespaces", lambda label, value: readNamespaceItems(label, value, True)[0], None)
    leaves[REDIS_ADDRESS] = Leaf(REDIS_ADDRESS, tuple, _readAddresses, None)
    for proxy in _PROXIES:
        leaves[f"{proxy.v6}.endpoint"] = Leaf(f"{proxy.v6}.endpoint", str, _read_str, None)
        if proxy.switch is not None:
            leaves[proxy.switch] = Leaf(proxy.switch, bool, _read_bool, None)
        for v5, option in _PROXY_SHARED.items():
            kind, read = _fieldReader(v5)
            leaves[f"{proxy.v6}.{option}"] = Leaf(f"{proxy.v6}.{option}", kind, read, None)
    return leaves


_CACHE: list[Any] = []


def leaves() -> dict[str, Leaf]:
    """Every leaf, by path (worked out from L{Config}'s fields on first use)."""
    if not _CACHE:
        built = _buildLeaves()
        sections = {".".join(path.split(".")[:end]) for path in built for end in range(1, path.count(".") + 1)}
        _CACHE[:] = [built, frozenset(sections)]
    return _CACHE[0]  # type: ignore[no-any-return]


def _sections() -> frozenset[str]:
    """Every v6 path that holds an object of leaves (C{"client"}, C{"client.token"}, ...)."""
    leaves()
    return _CACHE[1]  # type: ignore[no-any-return]


def _unknown(key: str) -> str:
    return f'config key "{key}" is unknown and was ignored'


def readNamespaceItems(label: str, value: Any, v6: bool) -> tuple[list[dict[str, Any]], list[str]]:
    """
    Read the namespaces list of a document (v5's C{namespaces} or v6's C{channel.namespaces}) into objects with
    v5 option names and checked values; L{fieldsFromLeaves} makes the L{Namespace}s.

    @return: the objects and warnings about unknown keys in them.
    """
    if not isinstance(value, (list, tuple)):
        raise _error(label, "a list of namespace objects", value)
    specs = {s.name: s for s in _specs(ChannelOptions)}
    byName = {optionV6Name(name) if v6 else name: name for name in specs}
    items: list[dict[str, Any]] = []
    warnings: list[str] = []
    for index, item in enumerate(value):
        prefix = f"{label}[{index}]"
        if isinstance(item, Namespace):  # embedded use: Config.from_dict({"namespaces": [Namespace(...)]})
            items.append(item)  # type: ignore[arg-type]
            continue
        if not isinstance(item, Mapping):
            raise _error(prefix, 'an object with a "name" and channel options', item)
        read: dict[str, Any] = {}
        for key, raw in item.items():
            keyLabel = f"{prefix}.{key}"
            if key == "name":
                read["name"] = raw  # checked with the list (uniqueness) by _read_namespaces
            elif v6 and key in _PROXY_NAME_OPTIONS:
                _readProxyName(keyLabel, raw)
            elif key in byName:
                read[byName[key]] = leaves()[f"{_WITHOUT_NAMESPACE}.{optionV6Name(byName[key])}"].read(keyLabel, raw)
            else:
                warnings.append(_unknown(keyLabel))
        items.append(read)
    return items, warnings


class _Collector:
    """The leaves of one source (a file, the environment), refusing a setting given twice under different names."""

    def __init__(self, noun: str = "config keys") -> None:
        self.leaves: Leaves = {}
        self._noun = noun

    def set(self, path: str, value: Any, label: str) -> None:
        if path in self.leaves and self.leaves[path][1] != label:
            other = self.leaves[path][1]
            raise ConfigError(
                f'{self._noun} "{other}" and "{label}" set the same setting ({path}); keep one of them '
                "(Centrifugo v5 and v6 names can be mixed, but not for one setting)"
            )
        self.leaves[path] = (value, label)


def v5Paths(key: str) -> list[str]:
    """The leaves a v5 key sets (most set one; a proxy endpoint also sets its v6 switch)."""
    if key == "namespaces":
        return [NAMESPACES]
    if key == "redis_address":
        return [REDIS_ADDRESS]
    if key in _PROXY_SHARED:
        return [f"{p.v6}.{_PROXY_SHARED[key]}" for p in _PROXIES]
    for proxy in _PROXIES:
        if key == f"{proxy.v5}_endpoint":
            return [f"{proxy.v6}.endpoint"] + ([proxy.switch] if proxy.switch is not None else [])
    if key in {f.name for f in dataclasses.fields(ChannelOptions)}:
        return [f"{_WITHOUT_NAMESPACE}.{optionV6Name(key)}"]
    return [V6_PATHS.get(key) or key]


def v5Leaves(key: str, value: Any, label: str) -> tuple[list[tuple[str, Any]], list[str]]:
    """
    The leaves one v5 key sets, its value checked under C{label}, and warnings (unknown keys in namespaces).
    C{key} is a field of L{Config}.
    """
    warnings: list[str] = []
    if key == "namespaces":
        items, warnings = readNamespaceItems(label, value, False)
        return [(NAMESPACES, items)], warnings
    if key == "redis_address":
        return [(REDIS_ADDRESS, _readAddresses(label, value))], warnings
    if key in _PROXY_SHARED:
        checked = _fieldReader(key)[1](label, value)
        return [(f"{p.v6}.{_PROXY_SHARED[key]}", checked) for p in _PROXIES], warnings
    for proxy in _PROXIES:
        if key == f"{proxy.v5}_endpoint":
            endpoint = _read_str(label, value)
            result: list[tuple[str, Any]] = [(f"{proxy.v6}.endpoint", endpoint)]
            if proxy.switch is not None:
                result.append((proxy.switch, endpoint != ""))
            return result, warnings
    if key == "port" and isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)  # v5's port was a string ("8000"); v6's http_server.port is an integer
    path = v5Paths(key)[0]
    return [(path, leaves()[path].read(label, value))], warnings


def v5Keys() -> frozenset[str]:
    """The v5 keys a document may use: the fields of L{Config}."""
    return frozenset(f.name for f in dataclasses.fields(Config))


def documentLeaves(document: Mapping[str, Any]) -> tuple[Leaves, list[str]]:
    """
    Read a decoded document that uses v5 names, v6 names or both.

    @return: its leaves and warnings (one line each) about unknown keys.
    @raise ConfigError: a value is invalid, or one setting is given under both names.
    """
    if not isinstance(document, Mapping):
        raise ConfigError(f"the config must be a JSON object, got {_show(document)}")
    collector = _Collector()
    warnings: list[str] = []
    sections = _sections()
    known = leaves()
    v5 = v5Keys()

    def walk(prefix: str, mapping: Mapping[Any, Any]) -> None:
        for key, value in mapping.items():
            path = f"{prefix}{key}"
            if not isinstance(key, str):
                warnings.append(_unknown(path))
            elif path in known and known[path].v6:
                if path == NAMESPACES:
                    items, itemWarnings = readNamespaceItems(path, value, True)
                    warnings.extend(itemWarnings)
                    collector.set(path, items, path)
                else:
                    collector.set(path, known[path].read(path, value), path)
            elif path in sections:
                if value is None:
                    continue  # YAML's "client:" with nothing under it
                if not isinstance(value, Mapping):
                    raise _error(path, "an object", value)
                walk(f"{path}.", value)
            else:
                warnings.append(_unknown(path))

    for key, value in document.items():
        # v5's "http_stream": true and v6's "http_stream": {...} share a name: an object means v6.
        if key in v5 and not (key in sections and isinstance(value, Mapping)):
            paths, keyWarnings = v5Leaves(key, value, key)
            warnings.extend(keyWarnings)
            for path, checked in paths:
                collector.set(path, checked, key)
        else:
            walk("", {key: value})
    return collector.leaves, warnings


def fieldsFromLeaves(leafValues: Leaves) -> dict[str, Any]:
    """The L{Config} fields that C{leafValues} set (the others keep their defaults)."""
    known = leaves()
    fields: dict[str, Any] = {}
    for path, (value, _) in leafValues.items():
        field = known[path].field
        if field is not None:
            fields[field] = value
    if NAMESPACES in leafValues:
        items, label = leafValues[NAMESPACES]
        fields["namespaces"] = _read_namespaces(label, items)
    if REDIS_ADDRESS in leafValues:
        addresses, label = leafValues[REDIS_ADDRESS]
        if len(addresses) > 1:
            raise ConfigError(
                f'config key "{label}": httpstream connects to one Redis server (no sharding), got '
                f"{len(addresses)} addresses"
            )
        if addresses:
            fields["redis_address"] = addresses[0]
    fields.update(_proxyFields(leafValues))
    return fields


def _proxyFields(leafValues: Leaves) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    active = []
    for proxy in _PROXIES:
        endpoint, endpointLabel = leafValues.get(f"{proxy.v6}.endpoint", ("", f"{proxy.v6}.endpoint"))
        if proxy.switch is not None:
            enabled, switchLabel = leafValues.get(proxy.switch, (False, proxy.switch))
            if enabled and not endpoint:
                raise ConfigError(
                    f'config key "{switchLabel}": the proxy is enabled but "{endpointLabel}" is empty; set its '
                    "endpoint"
                )
            # As Centrifugo v6: an endpoint without its switch is not used.
            endpoint = endpoint if enabled else ""
        if f"{proxy.v6}.endpoint" in leafValues or proxy.switch in leafValues:
            fields[f"{proxy.v5}_endpoint"] = endpoint
        if endpoint:
            active.append(proxy)
    # httpstream has one value of each for every proxy (v5's global keys): the proxies in use must agree.
    for v5, option in _PROXY_SHARED.items():
        given = [(p, leafValues[f"{p.v6}.{option}"]) for p in _PROXIES if f"{p.v6}.{option}" in leafValues]
        if not given:
            continue
        default = Config.__dataclass_fields__[v5].default
        inUse = [leafValues.get(f"{p.v6}.{option}", (default, f"{p.v6}.{option}")) for p in active]
        for value, label in inUse[1:]:
            if value != inUse[0][0]:
                raise ConfigError(
                    f'config keys "{inUse[0][1]}" and "{label}" differ: httpstream gives every proxy the same '
                    f"{option} (v5's \"{v5}\"); make them equal"
                )
        fields[v5] = inUse[0][0] if inUse else given[0][1][0]
    return fields


def v6Document(document: Mapping[str, Any]) -> dict[str, Any]:
    """
    The v6 form of a document with v5 keys (for C{defaultconfig}/C{genconfig}-style output and migrations):
    nested by v6 path, the channel options under C{channel.without_namespace}, namespace options and proxies
    renamed, the Redis address as a list. Keys v6 has no name for stay at the top level; unknown keys are dropped.
    Values are copied as they are (a duration string stays a string).
    """
    result: dict[str, Any] = {}

    def put(path: str, value: Any) -> None:
        parts = path.split(".")
        target = result
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = value

    known = v5Keys()
    for key, value in document.items():
        if key not in known:
            continue
        paths = v5Paths(key)
        if key == "namespaces":
            value = [
                {optionV6Name(k): v for k, v in item.items()} if isinstance(item, Mapping) else item
                for item in value
            ]
        elif key == "redis_address" and isinstance(value, str):
            value = [value]
        for path in paths:
            put(path, value != "" if _isSwitch(path) else value)
    return result


def _isSwitch(path: str) -> bool:
    return any(proxy.switch == path for proxy in _PROXIES)
