# -*- test-case-name: tests.config.test_config_env -*-
"""
Centrifugo's environment variables, which override the configuration file.

As Centrifugo v6 (``internal/config/envconfig``, ``GetConfig``): C{CENTRIFUGO_} and the v6 path upper-cased with
dots as underscores (C{CENTRIFUGO_CLIENT_TOKEN_HMAC_SECRET_KEY}); as v5, C{CENTRIFUGO_} and the flat key
(C{CENTRIFUGO_TOKEN_HMAC_SECRET_KEY}). An empty value counts as unset. Booleans as Go's C{strconv.ParseBool},
integers as C{strconv.ParseInt} with base prefixes, durations with a unit (C{"30s"}), lists separated by spaces,
namespaces as a JSON array (or space-separated names, added to the file's), and then one namespace's option as
C{CENTRIFUGO_CHANNEL_NAMESPACES_<NAME>_<OPTION>}. Other C{CENTRIFUGO_*} variables get a warning, except those
Kubernetes injects and C{CENTRIFUGO_VAR_*}.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from typing import Any, Mapping, Optional

import orjson

from httpstream.config.options import ChannelOptions
from httpstream.config.settings import ConfigError, Duration, _show
from httpstream.config.v6 import (
    Leaf,
    Leaves,
    _Collector,
    leaves,
    readNamespaceItems,
    v5Keys,
    v5Leaves,
    v5Paths,
)
from httpstream.config.v6names import NAMESPACES, PROXY_NAME_OPTIONS, V6_NAME, optionV6Name

__all__ = ["applyEnvironment", "envName", "v5EnvName"]

PREFIX = "CENTRIFUGO_"
# Centrifugo does not warn about these (config.go isKubernetesEnvVar, isCustomEnvVar).
_KUBERNETES = re.compile(r"^CENTRIFUGO(?:_[A-Z0-9_]+)?_(PORT|SERVICE_)")
_CUSTOM = "CENTRIFUGO_VAR_"
_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")
_GO_OCTAL = re.compile(r"[+-]?0[0-7_]+")


def envName(path: str) -> str:
    """The v6 variable of a v6 path: C{client.token.hmac_secret_key} -> C{CENTRIFUGO_CLIENT_TOKEN_HMAC_SECRET_KEY}."""
    return PREFIX + path.upper().replace(".", "_")


def v5EnvName(key: str) -> str:
    """The v5 variable of a v5 key."""
    return PREFIX + key.upper()


def namespaceEnvPrefix(name: str) -> str:
    """C{CENTRIFUGO_CHANNEL_NAMESPACES_<NAME>_}: C{.} and C{-} become C{_} (Centrifugo's C{NameForEnv})."""
    return f"{PREFIX}CHANNEL_NAMESPACES_{name.replace('.', '_').replace('-', '_').upper()}_"


_TABLE: dict[str, tuple[str, str]] = {}


def table() -> dict[str, tuple[str, str]]:
    """
    Every variable name -> C{("v6", leaf path)} or C{("v5", key)}. Where v5's and v6's names coincide
    (C{CENTRIFUGO_LOG_LEVEL}) they mean the same setting, and the v6 reading is used.

    @raise RuntimeError: two settings would share a name (a mistake in the key tables).
    """
    if not _TABLE:
        built: dict[str, tuple[str, str]] = {}
        for leaf in leaves().values():
            if leaf.v6:
                built[envName(leaf.path)] = ("v6", leaf.path)
        for key in sorted(v5Keys()):
            name = v5EnvName(key)
            if name in built:
                if built[name][0] == "v6" and v5Paths(key) == [built[name][1]]:
                    continue
                raise RuntimeError(f"{name} would name both {built[name]} and v5 key {key!r}")
            built[name] = ("v5", key)
        _TABLE.update(built)
    return _TABLE


def relabel(error: ConfigError) -> ConfigError:
    """
    Name the variable in an error from a reader that was given a variable's name as its key:
    C{config key "CENTRIFUGO_X[0].presence"} becomes C{environment variable CENTRIFUGO_X (at [0].presence)}.
    """

    def replace(match: re.Match[str]) -> str:
        inner = match.group(2).lstrip(".")
        return f"environment variable {match.group(1)}" + (f" (at {inner})" if inner else "")

    return ConfigError(re.sub(r'config keys? "(CENTRIFUGO_[A-Z0-9_]+)([^"]*)"', replace, str(error)))


def _parseInt(name: str, text: str) -> int:
    try:
        if _GO_OCTAL.fullmatch(text):
            return int(text.replace("_", ""), 8)
        return int(text, 0)
    except ValueError:
        raise ConfigError(f"environment variable {name}: expected an integer, got {_show(text)}") from None


def parseText(name: str, kind: Any, text: str) -> Any:
    """
    Turn the text of variable C{name} into a value of C{kind} (before the setting's own checks).

    @raise ConfigError: naming the variable.
    """
    if kind is bool:
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ConfigError(f"environment variable {name}: expected true or false (or 1, 0, t, f), got {_show(text)}")
    if kind is int:
        return _parseInt(name, text)
    if kind is str or kind is Duration:
        return text  # a duration needs its unit, as Go's ParseDuration ("30s")
    if kind is tuple:
        return tuple(text.split())
    if kind == "json":
        # Objects (static headers) and lists of objects (proxies, rpc namespaces) as JSON, as Centrifugo v6.
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError as e:
            raise ConfigError(f"environment variable {name}: expected JSON ({e.msg})") from None
    raise ConfigError(f"environment variable {name}: this setting cannot be set from the environment")


def _read(leaf: Leaf, name: str, text: str) -> Any:
    try:
        return leaf.read(name, parseText(name, leaf.kind, text))
    except ConfigError as e:
        raise relabel(e) from None


def _namespaces(name: str, text: str, v6: bool, before: Optional[list[dict[str, Any]]]) -> tuple[Any, list[str]]:
    """A namespaces variable: a JSON array replaces the list; space-separated names (v6 only) add bare ones."""
    if (text.startswith("[") and text.endswith("]")) or not v6:
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as e:
            raise ConfigError(f"environment variable {name}: expected a JSON array of namespaces ({e.msg})") from None
        try:
            return readNamespaceItems(name, value, v6)
        except ConfigError as e:
            raise relabel(e) from None
    return list(before or []) + [{"name": item} for item in text.split()], []


def applyEnvironment(
    fileLeaves: Leaves, environ: Mapping[str, str]
) -> tuple[Leaves, list[str], list[str]]:
    """
    Override the file's leaves with Centrifugo's environment variables.

    @return: the leaves, the names of the variables applied (never their values), and warnings (one line each)
        about unknown C{CENTRIFUGO_*} variables and unknown keys in namespaces given as JSON.
    @raise ConfigError: a value is invalid (the message names the variable), or two variables set one setting.
    """
    names = table()
    collector = _Collector("environment variables")
    applied: list[str] = []
    warnings: list[str] = []
    known = set(names)
    before = fileLeaves.get(NAMESPACES, (None, ""))[0]
    for name in sorted(environ):
        text = environ[name]
        if name not in names or text == "":
            continue
        style, target = names[name]
        if target in (NAMESPACES, "namespaces"):
            items, itemWarnings = _namespaces(name, text, style == "v6", before)
            warnings.extend(itemWarnings)
            collector.set(NAMESPACES, items, name)
        elif style == "v6":
            collector.set(target, _read(leaves()[target], name, text), name)
        else:
            key = target
            leaf = leaves()[v5Paths(key)[0]]
            try:
                parsed = parseText(name, leaf.kind, text)
                paths, itemWarnings = v5Leaves(key, parsed, name)
            except ConfigError as e:
                raise relabel(e) from None
            for path, value in paths:
                collector.set(path, value, name)
        applied.append(name)
    merged = {**fileLeaves, **collector.leaves}
    if NAMESPACES in merged:
        items, label = merged[NAMESPACES]
        items = copy.deepcopy(items)
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                continue  # refused by the namespace checks
            prefix = namespaceEnvPrefix(item["name"])
            for option in [f.name for f in dataclasses.fields(ChannelOptions)]:
                v6Option = optionV6Name(option)
                name = prefix + v6Option.upper().replace(".", "_")
                known.add(name)
                text = environ.get(name, "")
                if not text:
                    continue
                leaf = leaves()[f"channel.without_namespace.{v6Option}"]
                value = _read(leaf, name, text)
                # A v6 proxy name counts only with its switch (v6ProxyNames, once every variable is in).
                item[V6_NAME + option if option in PROXY_NAME_OPTIONS else option] = value
                applied.append(name)
        merged[NAMESPACES] = (items, label)
    for name in sorted(environ):
        if name.startswith(PREFIX) and name not in known and not name.startswith(_CUSTOM):
            if not _KUBERNETES.match(name):
                warnings.append(f"environment variable {name} is unknown and was ignored")
    return merged, sorted(applied), warnings

