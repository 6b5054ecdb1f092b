# -*- test-case-name: tests.config.test_config -*-
"""
Channel options: the fields Centrifugo v5 reads at the top level of its config (for channels without a namespace)
and again in every C{namespaces[]} object, L{ChannelOptions}; L{Namespace}; and the checks between them, as
Centrifugo's C{ValidateChannelOptions}. L{httpstream.config.options.Config} inherits L{ChannelOptions}.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from httpstream.config.durations import format_duration
from httpstream.config.mapoptions import SUBSCRIPTION_TYPES, MapChannelOptions, checkMapOptions
from httpstream.config.settings import (
    ConfigError,
    Duration,
    _apply_rules,
    _error,
    _read_str,
    _show,
    _specs,
    setting,
)

__all__ = ["SUBSCRIPTION_TYPES", "ChannelOptions", "Namespace"]

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
class ChannelOptions(MapChannelOptions):
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

    "Publication tags filters: a subscriber may send one (SubscribeRequest.tf) to get only the matching publications."
    allow_tags_filter: bool = setting(False)

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
    "A named proxy (one of proxies, or \"default\") for these events; a name alone turns the proxy on (v5)."
    subscribe_proxy_name: str = setting("")
    publish_proxy_name: str = setting("")
    sub_refresh_proxy_name: str = setting("")

    "Shared poll channels (httpstream.config.sharedpoll); v6 nests them in a shared_poll object."
    shared_poll_proxy_name: str = setting("")
    shared_poll_mode: str = setting("", choices=("", "versionless", "versioned"))
    shared_poll_refresh_interval: Duration = setting(0.0, minimum=0)  # 0: 10s
    shared_poll_refresh_batch_size: int = setting(0, minimum=0)  # 0: 1000
    shared_poll_max_keys_per_connection: int = setting(0, minimum=0)  # 0: 5000
    shared_poll_track_expired_extra_delay: Duration = setting(0.0, minimum=0)  # 0: 25s
    shared_poll_publish_enabled: bool = setting(False)  # the server API's shared_poll_publish, to every node

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
    checkMapOptions(prefix, options)
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
