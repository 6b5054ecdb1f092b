# -*- test-case-name: tests.config.test_config -*-
"""
How a setting is declared and read: L{setting} makes a dataclass field a configuration key, and the field's type
annotation chooses how its JSON value is read (C{bool}, C{int}, C{str}, C{tuple[str, ...]}, or L{Duration} for
seconds given as ``"25s"`` or a number); extra rules (bounds, allowed values, "-1 disables") sit in the field's
metadata. Adding a key to L{httpstream.config.options.Config} is adding a field::

    history_ttl: Duration = setting(300.0, minimum=0)

A key of a new kind (for example ``namespaces``, a list of objects) registers a reader for its annotation in
L{_READERS}, or passes C{read=} to L{setting}. L{_specs} works out, once per class, how each field is read.

Imports only L{httpstream.config.durations} and L{httpstream.origin} (for origin patterns).
"""

from __future__ import annotations

import dataclasses
import math
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Annotated, Any, Callable, Optional, get_type_hints

import orjson

from httpstream.config.durations import parse_duration
from httpstream.origin import OriginPatternError, compile_origin_pattern

__all__ = ["ConfigError", "Duration", "setting"]

class ConfigError(Exception):
    """The configuration is unreadable or invalid. The message is one line and names the key."""


class _DurationKind:
    """Marks a float field that holds seconds and is written as a Go duration."""


Duration = Annotated[float, _DurationKind]
"""Seconds (a float), read from ``"1m30s"``-style strings or plain numbers of seconds."""

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


def optionScopes(config: Any) -> list[tuple[str, Any]]:
    """
    Where a L{httpstream.config.Config} has channel options: the top level and each namespace, each with the prefix
    its keys are named with in an error (C{""}, C{"namespaces[0]."}, ...).
    """
    return [("", config)] + [(f"namespaces[{i}].", n.options) for i, n in enumerate(config.namespaces)]


def listed(names: Any) -> str:
    """Names for an error's "(defined: ...)": sorted, comma-separated, or C{none}."""
    return ", ".join(sorted(names)) or "none"


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
    # One address, or several separated by spaces (shards: Centrifugo v5 read the key as a string slice, which
    # splits a string at spaces, as the environment form does).
    addresses = address.split()
    if not addresses:
        raise _error(key, 'host:port or a URL such as "redis://:password@host:6379/0"', address)
    for one in addresses:
        _check_one_redis_address(key, one)


def _check_one_redis_address(key: str, address: str) -> None:
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
        raise _error(key, 'host:port or a URL such as "redis://:password@host:6379/0"', _withoutPassword(address))


def _withoutPassword(text: str) -> str:
    """
    C{text} (addresses, comma-separated) for an error message: what stands before the last C{@} of each address
    (after its scheme) is left out, as it may hold a password (a C{/} in the password, or no scheme, included).
    """
    shown = []
    for address in text.split(","):
        at = address.rfind("@")
        if at >= 0:
            scheme = address.find("://")
            start = scheme + 3 if 0 <= scheme < at else 0
            address = address[:start] + "..." + address[at:]
        shown.append(address)
    return ",".join(shown)


def _check_redis_cluster_address(key: str, clusters: tuple[str, ...]) -> None:
    # Each entry is one Cluster (shards over several): its seed nodes, comma-separated, as Centrifugo's.
    for cluster in clusters:
        seeds = [seed.strip() for seed in cluster.split(",")]
        if not all(seeds):
            expected = "seed addresses (host:port), comma-separated within one cluster"
            raise _error(key, expected, _withoutPassword(cluster))
        for seed in seeds:
            _check_one_redis_address(key, seed)


def _check_redis_url(key: str, url: str) -> None:
    if url:
        _check_redis_address(key, url)


_HOST_PORT = re.compile(r"(\[[0-9a-fA-F:.]+\]|[^:\[\],\s]+)(?::([0-9]{1,5}))?")


def _read_sentinel_addresses(key: str, value: Any) -> tuple[str, ...]:
    """
    C{redis_sentinel_address}: a list whose entries are each one Redis master's Sentinels, C{host:port}
    comma-separated (Centrifugo's form: several entries would be several shards); a string is one entry.
    """
    entries = (_read_str(key, value),) if isinstance(value, str) else _read_str_tuple(key, value)
    for entry in entries:
        for address in entry.split(","):
            match = _HOST_PORT.fullmatch(address.strip())
            if match is None or (match.group(2) is not None and not 0 < int(match.group(2)) < 65536):
                expected = 'Sentinel addresses host:port, comma-separated ("s1:26379,s2:26379")'
                raise _error(key, expected, _withoutPassword(entry))
    return entries


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


@dataclass(frozen=True)
class _Spec:
    """How one field is read: its key, its reader, its rules, and whether it is a duration or a secret."""

    name: str
    read: Callable[[str, Any], Any]
    rules: _Rules
    is_duration: bool
    secret: bool = False


_SPECS: dict[type, tuple[_Spec, ...]] = {}


def _specs(cls: type) -> tuple[_Spec, ...]:
    """How each field of the dataclass C{cls} is read, worked out from the annotations once (on first use)."""
    if cls not in _SPECS:
        hints = get_type_hints(cls, include_extras=True)
        specs = []
        for f in dataclasses.fields(cls):
            rules = f.metadata.get(_RULES, _Rules())
            hint = hints[f.name]
            reader = rules.read or _READERS.get(hint)
            if reader is None:
                raise TypeError(f"{cls.__name__}.{f.name}: no reader for {hint!r}; register one or pass read=")
            specs.append(_Spec(f.name, reader, rules, hint == Duration, secret=not f.repr))
        _SPECS[cls] = tuple(specs)
    return _SPECS[cls]


def _readField(spec: _Spec, label: str, raw: Any) -> Any:
    """
    C{spec.read(label, raw)}; for a secret key the error leaves the value out: a secret of the wrong type (a YAML
    number, say) is still the operator's secret, and the message goes to the console at start, to the log on reload.
    """
    try:
        return spec.read(label, raw)
    except ConfigError:
        if not spec.secret:
            raise
        raise ConfigError(f'config key "{label}": has a value of the wrong type (not shown: it is secret)') from None

