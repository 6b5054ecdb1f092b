# -*- test-case-name: tests.config.test_config_v6,tests.config.test_config_proxies -*-
"""
The v6 proxy objects and switches as v5's proxy fields: each proxy's C{enabled} switch, the options v5 has once for
all proxies (which the proxies in use must agree on), and C{rpc.without_namespace} as v5's C{rpc_proxy_name}.
Used by L{httpstream.config.v6.fieldsFromLeaves}.
"""

from __future__ import annotations

from typing import Any, Optional

from httpstream.config.options import Config
from httpstream.config.proxies import DEFAULT_PROXY
from httpstream.config.settings import ConfigError
from httpstream.config.v6names import PROXIES, PROXY_SHARED, RPC_PROXY_NAME

__all__ = ["proxyFields"]

Leaves = dict[str, tuple[Any, str]]


def _fromV5(label: str, key: str) -> bool:
    """Whether a leaf was set by v5 key C{key} (in a document or as its environment variable)."""
    return label in (key, "CENTRIFUGO_" + key.upper())


def _rpcProxyName(leafValues: Leaves, v6Routing: bool) -> Optional[str]:
    """
    v6's rpc.without_namespace options as v5's C{rpc_proxy_name}: with namespace routing, the name in effect
    (C{"default"} for the rpc.proxy object, C{""} when its switch is off); without it, only a named proxy
    (the rpc.proxy object is the default). None: v6 said nothing about it.
    """
    if "rpc_proxy_name" in leafValues:  # v5's key; only v6's name for it is a conflict (below), not the switch
        return None
    switch = PROXIES[2].switch
    assert switch is not None
    name, _ = leafValues.get(RPC_PROXY_NAME, (DEFAULT_PROXY, ""))
    given = switch in leafValues and not _fromV5(leafValues[switch][1], "proxy_rpc_endpoint")
    if not given and RPC_PROXY_NAME not in leafValues:
        return None
    enabled = bool(leafValues.get(switch, (False, ""))[0])
    if not enabled:
        return ""
    if v6Routing:
        return name or DEFAULT_PROXY
    return "" if name in ("", DEFAULT_PROXY) else name


def proxyFields(leafValues: Leaves, v6Routing: bool = False) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    rpcName = _rpcProxyName(leafValues, v6Routing)
    if "rpc_proxy_name" in leafValues and RPC_PROXY_NAME in leafValues:
        raise ConfigError(
            f'config keys "{leafValues["rpc_proxy_name"][1]}" and "{leafValues[RPC_PROXY_NAME][1]}" set the same '
            "setting (rpc_proxy_name); keep one of them"
        )
    if rpcName is not None:
        fields["rpc_proxy_name"] = rpcName
    active = []
    for proxy in PROXIES:
        endpoint, endpointLabel = leafValues.get(f"{proxy.v6}.endpoint", ("", f"{proxy.v6}.endpoint"))
        if proxy.switch is not None:
            enabled, switchLabel = leafValues.get(proxy.switch, (False, proxy.switch))
            named = proxy.v5 == "proxy_rpc" and rpcName not in (None, "", DEFAULT_PROXY)
            if enabled and not endpoint and not named:  # the switch of a named RPC proxy needs no rpc.proxy
                raise ConfigError(
                    f'config key "{switchLabel}": the proxy is enabled but "{endpointLabel}" is empty; set its '
                    "endpoint"
                )
            # As Centrifugo v6: an endpoint without its switch is not used, but for the RPC namespaces that
            # name the rpc.proxy object ("default").
            if not (v6Routing and proxy.v5 == "proxy_rpc"):
                endpoint = endpoint if enabled else ""
        if f"{proxy.v6}.endpoint" in leafValues or proxy.switch in leafValues:
            fields[f"{proxy.v5}_endpoint"] = endpoint
        if endpoint:
            active.append(proxy)
    # httpstream has one value of each for every proxy (v5's global keys): the proxies in use must agree.
    for v5, option in PROXY_SHARED.items():
        given = [(p, leafValues[f"{p.v6}.{option}"]) for p in PROXIES if f"{p.v6}.{option}" in leafValues]
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
