# -*- test-case-name: tests.test_config -*-
"""
The configuration: one field of L{Config} per setting, named with Centrifugo v5's flat key.

Files (JSON, YAML, TOML), Centrifugo v6's nested names and the C{CENTRIFUGO_*} environment variables are read by
L{httpstream.config.file}, L{httpstream.config.v6} and L{httpstream.config.env} into these fields.

A key is one field of L{Config}. How its JSON value is read follows from the
field's type annotation (C{bool}, C{int}, C{str}, C{tuple[str, ...]}, or
L{Duration} for seconds given as ``"25s"`` or a number); extra rules (bounds,
allowed values, "-1 disables") sit in the field's metadata, set by L{setting}.
Adding a key is adding a field::

    history_ttl: Duration = setting(300.0, minimum=0)

A key of a new kind (for example ``namespaces``, a list of objects) registers a
reader for its annotation in L{_READERS}, or passes C{read=} to L{setting}.

Constructing a L{Config} directly (embedded use, C{dataclasses.replace} in
tests) runs the same checks as loading a file, so every instance is valid.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import socket
import urllib.parse
from dataclasses import dataclass, field
from typing import Annotated, Any, Callable, Mapping, Optional, Union, get_type_hints

import orjson

from httpstream.config.durations import format_duration, parse_duration
from httpstream.origin import OriginPatternError, compile_origin_pattern

__all__ = [
    "ChannelOptions", "Config", "ConfigError", "Duration", "LoadedConfig", "Namespace", "load_config", "read_config",
    "setting",
]


class ConfigError(Exception):
    """The configuration is unreadable or invalid. The message is one line and names the key."""


class _DurationKind:
    """Marks a float field that holds seconds and is written as a Go duration."""


Duration = Annotated[float, _DurationKind]
"""Seconds (a float), read from ``"1m30s"``-style strings or plain numbers of seconds."""

_LOG_LEVELS = ("debug", "info", "warn", "warning", "error", "none")
_ENGINES = ("memory", "redis")
_MAX_SECONDS = (2**63 - 1) / 1e9  # Go's time.Duration range


@dataclass(frozen=True)
class _Rules:
    """Extra rules for one key, checked after its value has been read."""

    minimum: Optional[float] = None  # inclusive
    maximum: Optional[float] = None  # inclusive
    greater_than: Optional[float] = None  # exclusive
    choices: Optional[tuple[str, ...]] = None
    disable: bool = False  # -1 is accepted and means "off"
    read: Optional[Callable[[str, Any], Any]] = None  # replaces the reader chosen by type
    check: Optional[Callable[[str, Any], None]] = None  # raises ConfigError


_RULES = "httpstream.config.rules"


def setting(
    default: Any,
    *,
    minimum: Optional[float] = None,
    maximum: Optional[float] = None,
    greater_than: Optional[float] = None,
    choices: Optional[tuple[str, ...]] = None,
    disable: bool = False,
    read: Optional[Callable[[str, Any], Any]] = None,
    check: Optional[Callable[[str, Any], None]] = None,
    secret: bool = False,
) -> Any:
    """
    Declare a configuration key as a L{Config} field.

    @param default: The value when the key is absent (immutable).
    @param minimum: The smallest allowed number (inclusive).
    @param maximum: The largest allowed number (inclusive).
    @param greater_than: Numbers must be greater than this.
    @param choices: The allowed strings.
    @param disable: Also accept -1, meaning the feature is off (bounds do not
        apply to it).
    @param read: C{read(key, value)} returning the stored value or raising
        L{ConfigError}, instead of the reader for the field's type.
    @param check: C{check(key, value)} run on the stored value; raises
        L{ConfigError}.
    @param secret: Keep the value out of C{repr}, so logging a config does
        not leak it.
    """
    rules = _Rules(minimum, maximum, greater_than, choices, disable, read, check)
    return field(default=default, repr=not secret, metadata={_RULES: rules})


def _show(value: Any) -> str:
    """Render a value for an error message: JSON when possible, short, one line."""
    try:
        text = orjson.dumps(value).decode("utf-8")
    except TypeError:
        text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return text


def _error(key: str, expected: str, value: Any, detail: str = "") -> ConfigError:
    suffix = f" ({detail})" if detail else ""
    return ConfigError(f'config key "{key}": expected {expected}, got {_show(value)}{suffix}')


def _read_bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _error(key, "true or false", value)
    return value


def _read_int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _error(key, "an integer", value)
    return value


def _read_str(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _error(key, "a string", value)
    return value


def _read_str_tuple(key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) for item in value):
        raise _error(key, "a list of strings", value)
    return tuple(value)


def _read_duration(key: str, value: Any) -> float:
    expected = 'a duration such as "25s" or a number of seconds'
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except ValueError as e:
            raise _error(key, expected, value, str(e)) from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _error(key, expected, value)
    if not math.isfinite(value) or abs(value) > _MAX_SECONDS:
        raise _error(key, expected, value, "out of range")
    return float(value)


_READERS: dict[Any, Callable[[str, Any], Any]] = {
    bool: _read_bool,
    int: _read_int,
    str: _read_str,
    tuple[str, ...]: _read_str_tuple,
    Duration: _read_duration,
}


def _check_origin_patterns(key: str, patterns: tuple[str, ...]) -> None:
    for pattern in patterns:
        try:
            compile_origin_pattern(pattern)
        except OriginPatternError as e:
            raise ConfigError(f'config key "{key}": invalid pattern {_show(pattern)} ({e})') from None


def _check_redis_address(key: str, address: str) -> None:
    # The same forms as httpstream.engines.redis.parseAddress, which this module must not import (txredisapi
    # installs the global reactor when imported).
    if "://" in address:
        parts = urllib.parse.urlsplit(address)
        try:
            valid = parts.scheme in ("redis", "rediss") and bool(parts.hostname) and parts.port != 0
        except ValueError:
            valid = False
        valid = valid and (parts.path.strip("/") == "" or parts.path.strip("/").isdigit())
    else:
        match = re.fullmatch(r"(\[[0-9a-fA-F:.]+\]|[^:\[\]]+)(?::([0-9]{1,5}))?", address)
        valid = match is not None and (match.group(2) is None or 0 < int(match.group(2)) < 65536)
    if not valid:
        shown = re.sub(r"//[^/@]*@", "//...@", address)  # no password in an error message
        raise _error(key, 'host:port or a URL such as "redis://:password@host:6379/0"', shown)


def _check_redis_url(key: str, url: str) -> None:
    if url:
        _check_redis_address(key, url)


def _bounds_text(rules: _Rules, kind: str) -> str:
    """Describe the allowed range, e.g. "an integer from 0 to 65535"."""
    parts = []
    if rules.minimum is not None and rules.maximum is not None:
        parts.append(f"from {rules.minimum:g} to {rules.maximum:g}")
    elif rules.minimum is not None:
        parts.append(f">= {rules.minimum:g}")
    elif rules.maximum is not None:
        parts.append(f"<= {rules.maximum:g}")
    if rules.greater_than is not None:
        parts.append(f"greater than {rules.greater_than:g}")
    text = f"{kind} {' and '.join(parts)}"
    if rules.disable:
        text += " (or -1 to disable)"
    return text


def _apply_rules(key: str, raw: Any, value: Any, rules: _Rules, is_duration: bool) -> None:
    if rules.choices is not None and value not in rules.choices:
        raise _error(key, "one of " + ", ".join(f'"{c}"' for c in rules.choices), raw)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if rules.disable and value == -1:
            return
        too_small = (rules.minimum is not None and value < rules.minimum) or (
            rules.greater_than is not None and value <= rules.greater_than
        )
        too_large = rules.maximum is not None and value > rules.maximum
        if too_small or too_large:
            raise _error(key, _bounds_text(rules, "a duration" if is_duration else "an integer"), raw)
    if rules.check is not None:
        rules.check(key, value)


# Channel options: Centrifugo v5 embeds them in its config (top-level keys, for channels without namespace) and
# repeats them in every namespaces[] object. Config inherits this class for the same effect.

_NAMESPACE_NAME = re.compile(r"[-a-zA-Z0-9_.]{2,}")
_RECOVERY_MODES = ("stream", "cache")
_DELTA_TYPES = ("fossil",)


def _read_recovery_mode(key: str, value: Any) -> str:
    # Centrifugo's empty string means its default mode.
    return _read_str(key, value) or "stream"


def _check_delta_types(key: str, types: tuple[str, ...]) -> None:
    for name in types:
        if name not in _DELTA_TYPES:
            raise _error(key, "a list of delta types from " + ", ".join(f'"{t}"' for t in _DELTA_TYPES), list(types))


def _check_regex(key: str, pattern: str) -> None:
    if pattern:
        try:
            re.compile(pattern)
        except re.error as e:
            raise ConfigError(f'config key "{key}": invalid regular expression {_show(pattern)} ({e})') from None


@dataclass(frozen=True)
class ChannelOptions:
    """
    What the channels of one namespace can do (Centrifugo v5's channel
    options); everything is off by default. L{Config} inherits these fields as
    the top-level keys that apply to channels without a namespace, and each
    L{Namespace} holds its own.

    Constructing an instance validates and normalizes each field, like
    L{Config}; the relations between fields (history needs both size and
    TTL) are checked too.
    """

    "Presence and join/leave messages."
    presence: bool = setting(False)
    join_leave: bool = setting(False)
    force_push_join_leave: bool = setting(False)

    "History, positioning and recovery. History is kept only when history_size and history_ttl are both above 0."
    history_size: int = setting(0, minimum=0)
    history_ttl: Duration = setting(0.0, minimum=0)
    history_meta_ttl: Duration = setting(0.0, minimum=0)  # 0: global_history_meta_ttl
    force_positioning: bool = setting(False)
    allow_positioning: bool = setting(False)
    force_recovery: bool = setting(False)
    allow_recovery: bool = setting(False)
    force_recovery_mode: str = setting("stream", read=_read_recovery_mode, choices=_RECOVERY_MODES)

    "Delta compression of publications."
    allowed_delta_types: tuple[str, ...] = setting((), check=_check_delta_types)
    delta_publish: bool = setting(False)

    "Permissions of client connections (client_insecure allows everything)."
    allow_subscribe_for_client: bool = setting(False)
    allow_subscribe_for_anonymous: bool = setting(False)
    allow_publish_for_client: bool = setting(False)
    allow_publish_for_subscriber: bool = setting(False)
    allow_publish_for_anonymous: bool = setting(False)
    allow_presence_for_client: bool = setting(False)
    allow_presence_for_subscriber: bool = setting(False)
    allow_presence_for_anonymous: bool = setting(False)
    allow_history_for_client: bool = setting(False)
    allow_history_for_subscriber: bool = setting(False)
    allow_history_for_anonymous: bool = setting(False)
    allow_user_limited_channels: bool = setting(False)

    "Channel names: with a regex, the part after the namespace must match it (re.search); without one, ASCII only."
    channel_regex: str = setting("", check=_check_regex)

    "Ask the application backend (proxy_subscribe_endpoint etc.) instead of the allow_* options."
    proxy_subscribe: bool = setting(False)
    proxy_publish: bool = setting(False)
    proxy_sub_refresh: bool = setting(False)

    def __post_init__(self) -> None:
        for spec in _specs(ChannelOptions):
            raw = getattr(self, spec.name)
            value = spec.read(spec.name, raw)
            _apply_rules(spec.name, raw, value, spec.rules, spec.is_duration)
            if value is not raw:
                object.__setattr__(self, spec.name, value)
        _check_options("", _option_values(self))

    @property
    def history(self) -> bool:
        """
        Whether channels keep a history stream: C{history_size} and
        C{history_ttl} both above 0.
        """
        return self.history_size > 0 and self.history_ttl > 0


@dataclass(frozen=True)
class Namespace:
    """
    One entry of the C{namespaces} key: channels named C{<name>:<rest>} (or
    C{$<name>:<rest>}) get these options.
    """

    name: str
    options: ChannelOptions = field(default_factory=ChannelOptions)


def _option_values(source: Any) -> dict[str, Any]:
    """The channel option fields of a L{ChannelOptions} or L{Config}, by name."""
    return {f.name: getattr(source, f.name) for f in dataclasses.fields(ChannelOptions)}


def _check_options(prefix: str, options: Mapping[str, Any], global_meta_ttl: float = 0.0) -> None:
    """
    Check the relations between channel options, as Centrifugo's
    C{ValidateChannelOptions}. C{prefix} is put before each key in messages
    (C{"namespaces[2]."}); C{global_meta_ttl} replaces a C{history_meta_ttl} of 0.
    """
    size, ttl = options["history_size"], options["history_ttl"]
    if (size > 0) != (ttl > 0):
        raise ConfigError(
            f'config keys "{prefix}history_size" and "{prefix}history_ttl": set both above 0 to keep history, or '
            f"neither; got history_size {size} and history_ttl {format_duration(ttl)}"
        )
    if options["force_recovery"] and not (size > 0 and ttl > 0):
        raise ConfigError(
            f'config key "{prefix}force_recovery": recovery needs history; set "{prefix}history_size" and '
            f'"{prefix}history_ttl" above 0'
        )
    meta_key, meta_ttl = f"{prefix}history_meta_ttl", options["history_meta_ttl"]
    if not meta_ttl:
        meta_key, meta_ttl = "global_history_meta_ttl", global_meta_ttl
    if meta_ttl and meta_ttl < ttl:
        raise ConfigError(
            f'config keys "{prefix}history_ttl" and "{meta_key}": history_ttl ({format_duration(ttl)}) can not be '
            f"greater than the history meta TTL ({format_duration(meta_ttl)})"
        )


def _read_namespace(key: str, value: Any) -> Namespace:
    if isinstance(value, Namespace):
        _check_namespace_name(f"{key}.name", value.name)
        return value
    if not isinstance(value, Mapping):
        raise _error(key, 'an object with a "name" and channel options', value)
    if "name" not in value:
        raise ConfigError(f'config key "{key}.name" is missing: every namespace needs a name')
    name = _read_str(f"{key}.name", value["name"])
    _check_namespace_name(f"{key}.name", name)
    values: dict[str, Any] = {}
    for spec in _specs(ChannelOptions):
        if spec.name in value:
            raw = value[spec.name]
            option_key = f"{key}.{spec.name}"
            values[spec.name] = spec.read(option_key, raw)
            _apply_rules(option_key, raw, values[spec.name], spec.rules, spec.is_duration)
    _check_options(f"{key}.", {**_option_values(ChannelOptions()), **values})
    return Namespace(name, ChannelOptions(**values))


def _check_namespace_name(key: str, name: Any) -> None:
    if not isinstance(name, str) or _NAMESPACE_NAME.fullmatch(name) is None:
        raise _error(key, "a name of 2 or more characters from a-z A-Z 0-9 - _ .", name)


def _read_namespaces(key: str, value: Any) -> tuple[Namespace, ...]:
    if not isinstance(value, (list, tuple)):
        raise _error(key, "a list of namespace objects", value)
    namespaces: list[Namespace] = []
    for index, item in enumerate(value):
        namespace = _read_namespace(f"{key}[{index}]", item)
        if any(namespace.name == other.name for other in namespaces):
            raise ConfigError(
                f'config key "{key}[{index}].name": namespace {_show(namespace.name)} is defined twice; names must be '
                "unique"
            )
        namespaces.append(namespace)
    return tuple(namespaces)


@dataclass(frozen=True)
class Config(ChannelOptions):
    """
    Server configuration. C{Config()} holds every default; L{load_config} and
    L{Config.from_dict} read a document. Field names are Centrifugo v5's keys
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
    proxy_binary_encoding: bool = setting(False)
    proxy_include_connection_meta: bool = setting(False)

    "The Redis engine: where Redis is (host:port or a redis:// / rediss:// URL), and presence entries' lifetime."
    redis_address: str = setting("127.0.0.1:6379", check=_check_redis_address, secret=True)  # a URL may hold one
    redis_url: str = setting("", check=_check_redis_url, secret=True)  # older Centrifugo's name: wins when set
    redis_prefix: str = setting("httpstream")
    redis_db: int = setting(0, minimum=0)
    redis_user: str = setting("")
    redis_password: str = setting("", secret=True)
    redis_tls: bool = setting(False)
    global_presence_ttl: Duration = setting(60.0, greater_than=0)

    def __post_init__(self) -> None:
        for spec in _specs():
            raw = getattr(self, spec.name)
            value = _readField(spec, spec.name, raw)
            _apply_rules(spec.name, raw, value, spec.rules, spec.is_duration)
            if value is not raw:
                object.__setattr__(self, spec.name, value)
        for check in _CROSS_CHECKS:
            check(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> tuple["Config", list[str]]:
        """
        Build a configuration from a decoded document with Centrifugo v5 names, v6 names or both (no
        environment variables: see L{load_config}).

        @return: The configuration and warnings (one line each) about keys
            that were ignored.
        @raise ConfigError: When C{data} is not an object or a value is invalid.
        """
        from httpstream.config.v6 import documentLeaves, fieldsFromLeaves

        leaves, warnings = documentLeaves(data)
        return cls(**fieldsFromLeaves(leaves)).withHostName(), warnings

    def withHostName(self) -> "Config":
        """This configuration, with the machine's host name as C{name} when it is empty (as a loaded file gets)."""
        return self if self.name else dataclasses.replace(self, name=socket.gethostname())


@dataclass(frozen=True)
class _Spec:
    name: str
    read: Callable[[str, Any], Any]
    rules: _Rules
    is_duration: bool


_SPECS: dict[type, tuple[_Spec, ...]] = {}


def _specs(cls: Optional[type] = None) -> tuple[_Spec, ...]:
    """How each field of C{cls} (default L{Config}) is read, worked out from the annotations once (on first use)."""
    cls = Config if cls is None else cls
    if cls not in _SPECS:
        hints = get_type_hints(cls, include_extras=True)
        specs = []
        for f in dataclasses.fields(cls):
            rules = f.metadata.get(_RULES, _Rules())
            hint = hints[f.name]
            reader = rules.read or _READERS.get(hint)
            if reader is None:
                raise TypeError(f"{cls.__name__}.{f.name}: no reader for {hint!r}; register one or pass read=")
            specs.append(_Spec(f.name, reader, rules, hint == Duration))
        _SPECS[cls] = tuple(specs)
    return _SPECS[cls]


def _secretKeys() -> frozenset[str]:
    """The keys declared C{secret=True} (kept out of repr, and out of error messages)."""
    return frozenset(f.name for f in dataclasses.fields(Config) if not f.repr)


def _readField(spec: _Spec, label: str, raw: Any) -> Any:
    """
    C{spec.read(label, raw)}; for a secret key the error leaves the value out: a secret of the wrong type (a YAML
    number, say) is still the operator's secret, and the message goes to the console at start, to the log on reload.
    """
    try:
        return spec.read(label, raw)
    except ConfigError:
        if spec.name not in _secretKeys():
            raise
        raise ConfigError(f'config key "{label}": has a value of the wrong type (not shown: it is secret)') from None


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


_CROSS_CHECKS: tuple[Callable[[Config], None], ...] = (_check_ping_pong, _check_channel_options, _check_personal_channel)


@dataclass(frozen=True)
class LoadedConfig:
    """
    What L{read_config} found.

    @ivar config: the configuration.
    @ivar unknown_keys: one warning line per key of the file that was ignored (what C{checkconfig --strict}
        refuses, as Centrifugo's).
    @ivar unknown_env: one warning line per C{CENTRIFUGO_*} environment variable that is not a setting.
    @ivar env_applied: the names (never the values) of the environment variables that set a value.
    """

    config: Config
    unknown_keys: tuple[str, ...] = ()
    unknown_env: tuple[str, ...] = ()
    env_applied: tuple[str, ...] = ()

    @property
    def warnings(self) -> list[str]:
        """Every warning, for the start-up log."""
        return [*self.unknown_keys, *self.unknown_env]


def read_config(
    path: Union[str, os.PathLike[str]], environ: Optional[Mapping[str, str]] = None
) -> LoadedConfig:
    """
    Read and validate a configuration file: JSON, or YAML (C{.yaml}, C{.yml}) or TOML (C{.toml}) by its
    extension, with Centrifugo v5 or v6 key names; Centrifugo's C{CENTRIFUGO_*} environment variables override it.

    @param environ: the environment (default C{os.environ}).
    @raise ConfigError: When the file cannot be read or parsed, or a value (in it or in a variable) is invalid.
        The message is one line naming the key or variable.
    """
    from httpstream.config.file import loadConfigFile

    return loadConfigFile(path, environ)


def load_config(
    path: Union[str, os.PathLike[str]], environ: Optional[Mapping[str, str]] = None
) -> tuple[Config, list[str]]:
    """
    L{read_config}, returning the configuration and the warnings (one line each) about unknown keys of the file:
    what C{checkconfig --strict} refuses, as Centrifugo's. Unknown C{CENTRIFUGO_*} variables and the names of the
    variables applied are in L{read_config}'s result.
    """
    loaded = read_config(path, environ)
    return loaded.config, list(loaded.unknown_keys)
