# -*- test-case-name: tests.config.test_config_v6 -*-
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
import functools
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

from httpstream.config.channeloptions import ChannelOptions, Namespace, _read_namespaces
from httpstream.config.options import Config
from httpstream.config.settings import (
    ConfigError,
    Duration,
    _apply_rules,
    _check_redis_address,
    _error,
    _read_bool,
    _read_str,
    _read_str_tuple,
    _readField,
    _show,
    _specs,
)
from httpstream.config.proxies import readProxies, readRPCNamespaces
from httpstream.config.v6proxies import proxyFields
from httpstream.config.v6names import (
    NAMESPACES,
    PROXIES,
    PROXY_LIST,
    PROXY_NAME_OPTIONS,
    PROXY_NAME_SWITCHES,
    PROXY_SHARED,
    REDIS_ADDRESS,
    RPC_NAMESPACES,
    RPC_PROXY_NAME,
    V6_NAME,
    V6_PATHS,
    WITHOUT_NAMESPACE,
    optionV6Name,
    v6ProxyNames,
)

__all__ = ["Leaf", "Leaves", "V6_PATHS", "documentLeaves", "fieldsFromLeaves", "leaves", "v5Leaves", "v5Paths", "v6Document"]



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
    spec = {s.name: s for s in _specs(Config)}[name]
    hint = {f.name: f.type for f in dataclasses.fields(Config)}[name]
    kind = Duration if spec.is_duration else _KINDS.get(str(hint), hint)

    def read(label: str, raw: Any) -> Any:
        value = _readField(spec, label, raw)
        _apply_rules(label, raw, value, spec.rules, spec.is_duration)
        return value

    return kind, read


_KINDS = {"bool": bool, "int": int, "str": str, "tuple[str, ...]": tuple, "Mapping[str, str]": "json"}

# Lists of objects read with warnings about their unknown keys: leaf path -> reader.
_LISTS: dict[str, Callable[[str, Any], tuple[Any, list[str]]]] = {
    PROXY_LIST: readProxies,
    RPC_NAMESPACES: readRPCNamespaces,
}


def _readAddresses(label: str, value: Any) -> tuple[str, ...]:
    # A string is one address, or several separated by spaces (v5's string slice, Centrifugo's loose decoding of
    # v6 files); several are shards.
    if isinstance(value, str) and not value.split():
        _check_redis_address(label, value)  # refused: no address
    addresses = tuple(_read_str(label, value).split()) if isinstance(value, str) else _read_str_tuple(label, value)
    for address in addresses:
        _check_redis_address(label, address)
    return addresses


def _buildLeaves() -> dict[str, Leaf]:
    leaves: dict[str, Leaf] = {}
    fields = {f.name for f in dataclasses.fields(Config)}
    options = {f.name for f in dataclasses.fields(ChannelOptions)}
    special = {"namespaces", "redis_address", "proxies", "rpc_namespaces"} | set(PROXY_SHARED)
    special |= {f"{p.v5}_endpoint" for p in PROXIES}
    for name in sorted(fields - options - special):
        kind, read = _fieldReader(name)
        path = V6_PATHS.get(name) or name
        if path in leaves:
            raise RuntimeError(f"V6_PATHS gives {path!r} to both {leaves[path].field!r} and {name!r}")
        leaves[path] = Leaf(path, kind, read, name, v6=V6_PATHS.get(name) is not None)
    for name in sorted(options):
        kind, read = _fieldReader(name)
        path = f"{WITHOUT_NAMESPACE}.{optionV6Name(name)}"
        # A v5 proxy name turns its proxy on by itself, a v6 one only with its switch: two leaves.
        if name in PROXY_NAME_OPTIONS:
            leaves[name] = Leaf(name, kind, read, name, v6=False)
            leaves[path] = Leaf(path, str, _read_str, None)
        else:
            leaves[path] = Leaf(path, kind, read, name)
    for path, listReader in _LISTS.items():
        field = "proxies" if path == PROXY_LIST else "rpc_namespaces"
        leaves[path] = Leaf(path, "json", lambda label, value, r=listReader: r(label, value)[0], field)  # type: ignore[misc]
    leaves[RPC_PROXY_NAME] = Leaf(RPC_PROXY_NAME, str, _read_str, None)
    leaves[NAMESPACES] = Leaf(NAMESPACES, "namespaces", lambda label, value: readNamespaceItems(label, value, True)[0], None)
    leaves[REDIS_ADDRESS] = Leaf(REDIS_ADDRESS, tuple, _readAddresses, None)
    for proxy in PROXIES:
        leaves[f"{proxy.v6}.endpoint"] = Leaf(f"{proxy.v6}.endpoint", str, _read_str, None)
        if proxy.switch is not None:
            leaves[proxy.switch] = Leaf(proxy.switch, bool, _read_bool, None)
        for v5, option in PROXY_SHARED.items():
            kind, read = _fieldReader(v5)
            leaves[f"{proxy.v6}.{option}"] = Leaf(f"{proxy.v6}.{option}", kind, read, None)
    return leaves


@functools.cache
def _leavesAndSections() -> tuple[dict[str, Leaf], frozenset[str]]:
    built = _buildLeaves()
    sections = {".".join(path.split(".")[:end]) for path in built for end in range(1, path.count(".") + 1)}
    return built, frozenset(sections)


def leaves() -> dict[str, Leaf]:
    """Every leaf, by path (worked out from L{Config}'s fields on first use)."""
    return _leavesAndSections()[0]


def _sections() -> frozenset[str]:
    """Every v6 path that holds an object of leaves (C{"client"}, C{"client.token"}, ...)."""
    return _leavesAndSections()[1]


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
        if isinstance(item, Namespace):  # embedded use: config_from_dict({"namespaces": [Namespace(...)]})
            items.append(item)  # type: ignore[arg-type]
            continue
        if not isinstance(item, Mapping):
            raise _error(prefix, 'an object with a "name" and channel options', item)
        read: dict[str, Any] = {}
        for key, raw in item.items():
            keyLabel = f"{prefix}.{key}"
            if key == "name":
                read["name"] = raw  # checked with the list (uniqueness) by _read_namespaces
            elif v6 and key in PROXY_NAME_OPTIONS:
                read[V6_NAME + key] = _read_str(keyLabel, raw)  # counts only with its switch: v6ProxyNames
            elif key in byName:
                read[byName[key]] = leaves()[f"{WITHOUT_NAMESPACE}.{optionV6Name(byName[key])}"].read(keyLabel, raw)
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
    if key in PROXY_NAME_OPTIONS:
        return [key]
    if key in PROXY_SHARED:
        return [f"{p.v6}.{PROXY_SHARED[key]}" for p in PROXIES]
    for proxy in PROXIES:
        if key == f"{proxy.v5}_endpoint":
            return [f"{proxy.v6}.endpoint"] + ([proxy.switch] if proxy.switch is not None else [])
    if key in {f.name for f in dataclasses.fields(ChannelOptions)}:
        return [f"{WITHOUT_NAMESPACE}.{optionV6Name(key)}"]
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
    path = V6_PATHS.get(key)
    if path in _LISTS:
        items, warnings = _LISTS[path](label, value)
        return [(path, items)], warnings
    if key in PROXY_SHARED:
        checked = _fieldReader(key)[1](label, value)
        return [(f"{p.v6}.{PROXY_SHARED[key]}", checked) for p in PROXIES], warnings
    for proxy in PROXIES:
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
                elif path in _LISTS:
                    values, itemWarnings = _LISTS[path](path, value)
                    warnings.extend(itemWarnings)
                    collector.set(path, values, path)
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
        items = [v6ProxyNames(item) if isinstance(item, dict) else item for item in items]
        fields["namespaces"] = _read_namespaces(label, items)
    for option, switch in PROXY_NAME_SWITCHES.items():
        path = f"{WITHOUT_NAMESPACE}.{option}"
        if path in leafValues:
            if option in leafValues:
                raise ConfigError(
                    f'config keys "{leafValues[option][1]}" and "{leafValues[path][1]}" set the same setting '
                    f"({option}); keep one of them"
                )
            fields[option] = v6ProxyNames({switch: fields.get(switch, False), V6_NAME + option: leafValues[path][0]})[
                option
            ]
    if REDIS_ADDRESS in leafValues:
        addresses, label = leafValues[REDIS_ADDRESS]
        if addresses:
            fields["redis_address"] = " ".join(addresses)
    rpcNamespaces = leafValues.get(RPC_NAMESPACES)
    # v6 routes RPC methods by namespace whenever it has RPC namespaces (v5 only in its granular mode).
    # (CENTRIFUGO_RPC_NAMESPACES is both versions' variable: read as v6's, as the other shared names.)
    v6Routing = rpcNamespaces is not None and rpcNamespaces[1] != "rpc_namespaces"
    if v6Routing and "granular_proxy_mode" not in leafValues:
        fields["granular_proxy_mode"] = True
    fields.update(proxyFields(leafValues, v6Routing))
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
            value = value.split()
        for path in paths:
            put(path, value != "" if _isSwitch(path) else value)
    return result


def _isSwitch(path: str) -> bool:
    return any(proxy.switch == path for proxy in PROXIES)


def config_from_dict(data: Mapping[str, Any]) -> tuple[Config, list[str]]:
    """
    Build a configuration from a decoded document with Centrifugo v5 names, v6 names or both (no environment
    variables: see L{httpstream.config.read_config}).

    @return: The configuration and warnings (one line each) about keys that were ignored.
    @raise ConfigError: When C{data} is not an object or a value is invalid.
    """
    leaves, warnings = documentLeaves(data)
    return Config(**fieldsFromLeaves(leaves)).withHostName(), warnings
