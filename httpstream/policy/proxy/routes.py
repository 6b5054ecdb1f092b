# -*- test-case-name: tests.policy.test_proxy_routes -*-
"""
Which backend a proxied event goes to: the event's own proxy (C{proxy_<event>_endpoint} with the global C{proxy_*}
options) or one of the named C{proxies}, each with its own options (Centrifugo's granular proxies); and, for an
RPC method, which name its RPC namespace picks.

A name of C{""} or C{"default"} is the event's own proxy; the configuration has checked at start that every other
name is one of C{proxies}.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping, Optional, Union

from httpstream.protocol import codes

if TYPE_CHECKING:
    from httpstream.config import Config

__all__ = ["ProxyEndpoint", "endpointFor", "headerNames", "rpcConfigured", "rpcProxyName"]

_DEFAULT = "default"


@dataclass(frozen=True)
class ProxyEndpoint:
    """
    One backend and how to call it.

    @ivar name: the proxy's name in C{proxies}, or C{""} for the event's own proxy (for logs).
    @ivar httpHeaders: the lower-cased names of the connection's headers its requests carry.
    @ivar staticHeaders: headers every request carries (a forwarded header of the same name wins).
    """

    name: str
    endpoint: str
    timeout: float
    httpHeaders: frozenset[str] = frozenset()
    staticHeaders: Mapping[str, str] = field(default_factory=dict)
    binaryEncoding: bool = False
    includeMeta: bool = False


def _own(config: "Config", event: str) -> Optional[ProxyEndpoint]:
    endpoint = getattr(config, f"proxy_{event}_endpoint", "")
    if not endpoint:
        return None
    return ProxyEndpoint(
        name="",
        endpoint=endpoint,
        timeout=getattr(config, f"proxy_{event}_timeout"),
        httpHeaders=frozenset(h.lower() for h in config.proxy_http_headers),
        staticHeaders=getattr(config, "proxy_static_http_headers", {}),
        binaryEncoding=bool(getattr(config, "proxy_binary_encoding", False)),
        includeMeta=bool(getattr(config, "proxy_include_connection_meta", False)),
    )


def endpointFor(config: "Config", event: str, name: str = "") -> Optional[ProxyEndpoint]:
    """
    The backend of C{event} (one of C{PROXY_NAMES}) for proxy C{name}; None when it has no endpoint.
    C{connect} and C{refresh} take their names from C{connect_proxy_name} / C{refresh_proxy_name}.
    """
    if event in ("connect", "refresh") and not name:
        name = getattr(config, f"{event}_proxy_name", "")
    if name in ("", _DEFAULT):
        return _own(config, event)
    for proxy in getattr(config, "proxies", ()):
        if proxy.name == name:
            return ProxyEndpoint(
                name=proxy.name,
                endpoint=proxy.endpoint,
                timeout=proxy.timeout,
                httpHeaders=frozenset(h.lower() for h in proxy.http_headers),
                staticHeaders=proxy.static_http_headers,
                binaryEncoding=proxy.binary_encoding,
                includeMeta=proxy.include_connection_meta,
            )
    return None


def headerNames(config: "Config") -> list[str]:
    """Every header name some proxy forwards: what a connection keeps of its request headers."""
    names = {h.lower() for h in config.proxy_http_headers}
    for proxy in getattr(config, "proxies", ()):
        names.update(h.lower() for h in proxy.http_headers)
    return sorted(names)


def rpcConfigured(config: "Config") -> bool:
    """Whether any RPC method can reach a proxy (else an RPC gets 108, or 104 with in-process methods)."""
    if not getattr(config, "granular_proxy_mode", False) and config.proxy_rpc_endpoint:
        return True
    names = [getattr(config, "rpc_proxy_name", "")]
    names += [namespace.rpc_proxy_name for namespace in getattr(config, "rpc_namespaces", ())]
    return any(endpointFor(config, "rpc", name) is not None for name in names if name)


def rpcProxyName(config: "Config", method: str) -> Union[str, codes.Error]:
    """
    The proxy name RPC C{method} goes to, or the error it gets. Without C{granular_proxy_mode} every method goes
    to C{rpc_proxy_name} (C{""}: the RPC proxy). With it, as Centrifugo's RPC handler: a method
    C{<namespace><boundary><rest>} uses its RPC namespace (104 "method not found" when there is none), another
    C{rpc_proxy_name}; no name there is 108 "not available".
    """
    if not getattr(config, "granular_proxy_mode", False):
        return config.rpc_proxy_name
    boundary = config.rpc_namespace_boundary
    name = config.rpc_proxy_name
    if boundary and boundary in method:
        namespace = method.split(boundary, 1)[0]
        for candidate in config.rpc_namespaces:
            if candidate.name == namespace:
                name = candidate.rpc_proxy_name
                break
        else:
            return codes.ERROR_METHOD_NOT_FOUND
    if not name:
        return codes.ERROR_NOT_AVAILABLE
    return name
