# -*- test-case-name: tests.config.test_config_proxies -*-
"""
Named proxies and RPC namespaces: Centrifugo's granular proxy configuration (v5 C{granular_proxy_mode} with
C{proxies}, C{rpc_namespaces} and the C{*_proxy_name} keys; v6 C{proxies}, C{rpc.namespaces} and the namespaces'
C{*_proxy_name}), as frozen values, their readers and the start-up checks between them.

A name picks a proxy: C{"default"} (or no name) is the event's own proxy object (C{proxy_<event>_endpoint}, v6's
C{channel.proxy.subscribe} ...), any other name one of C{proxies}. Only HTTP proxies exist in httpstream: an
endpoint that is not C{http://} or C{https://} (Centrifugo's gRPC proxies) is refused at start.

Imports only L{httpstream.config.settings}; L{httpstream.config.options} puts these values in L{Config}.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from httpstream.config.settings import (
    ConfigError,
    Duration,
    _error,
    _read_bool,
    _read_duration,
    _read_str,
    _show,
    listed,
)

__all__ = ["DEFAULT_PROXY", "NamedProxy", "RPCNamespace", "StaticHeaders", "readProxy", "readRPCNamespace"]

DEFAULT_PROXY = "default"  # v6's reserved name of each event's own proxy object

_NAME = re.compile(r"[-a-zA-Z0-9_.]{2,}")  # Centrifugo's proxyNamePattern and namespace nameRe
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # RFC 9110 field-name
_BAD_VALUE = re.compile(r"[\r\n\x00]")


class StaticHeaders(dict[str, str]):
    """A read-only header name -> value map that can sit in a frozen (hashable) configuration value."""

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(sorted(self.items())))

    def _readOnly(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("static headers are read-only")

    __setitem__ = __delitem__ = update = pop = popitem = clear = setdefault = _readOnly  # type: ignore[assignment]


def readStaticHeaders(key: str, value: Any) -> StaticHeaders:
    """
    Centrifugo's C{static_http_headers} (v5) / C{http.static_headers} (v6): header name -> value, added to every
    request of a proxy (a forwarded header of the same name wins). Checked here so no header line can be injected.
    """
    if not isinstance(value, Mapping):
        raise _error(key, "an object of header name -> value", value)
    headers: dict[str, str] = {}
    for name, text in value.items():
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise _error(key, "header names made of letters, digits and !#$%&'*+-.^_`|~", name)
        if not isinstance(text, str) or _BAD_VALUE.search(text):
            raise _error(f"{key}.{name}", "a header value on one line", text)
        headers[name] = text
    return StaticHeaders(headers)


def _readHeaderNames(key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) for item in value):
        raise _error(key, "a list of strings", value)
    return tuple(value)


@dataclass(frozen=True)
class NamedProxy:
    """
    One entry of C{proxies}: an HTTP proxy that namespaces, RPC namespaces and the connect/refresh events pick by
    name. Each has its own options (v5 repeats the global C{proxy_*} options per entry; v6 nests them the same way).
    """

    name: str
    endpoint: str
    timeout: Duration = 1.0
    http_headers: tuple[str, ...] = ()
    static_http_headers: Mapping[str, str] = field(default_factory=StaticHeaders)
    binary_encoding: bool = False
    include_connection_meta: bool = False


@dataclass(frozen=True)
class RPCNamespace:
    """
    One entry of C{rpc_namespaces}: RPC methods named C{<name><rpc_namespace_boundary><method>} use
    C{rpc_proxy_name} (empty: no proxy, the call gets 108 "not available"; C{"default"}: the RPC proxy object).
    """

    name: str
    rpc_proxy_name: str = ""


# Keys of a proxy object that httpstream reads; the gRPC and status-transform ones are known but not implemented.
_IGNORED = (
    "grpc_metadata", "grpc_tls", "grpc_cert_file", "grpc_credentials_key", "grpc_credentials_value",
    "grpc_compression", "grpc", "emulated_headers", "http_status_to_code_transforms",
)


def readProxy(key: str, value: Any) -> tuple[NamedProxy, list[str]]:
    """
    Read one C{proxies} entry, in v5's form (C{static_http_headers}) or v6's (C{http.static_headers}).

    @return: the proxy and warnings (one line each) about keys that were ignored.
    @raise ConfigError: naming the key.
    """
    if isinstance(value, NamedProxy):
        return value, []
    if not isinstance(value, Mapping):
        raise _error(key, 'an object with a "name" and an "endpoint"', value)
    warnings: list[str] = []
    fields: dict[str, Any] = {}
    for option, raw in value.items():
        label = f"{key}.{option}"
        if option in ("name", "endpoint"):
            fields[option] = _read_str(label, raw)
        elif option == "timeout":
            fields["timeout"] = _read_duration(label, raw) or 1.0  # Centrifugo: 0 gets the default, 1s
        elif option == "http_headers":
            fields["http_headers"] = _readHeaderNames(label, raw)
        elif option == "static_http_headers":
            fields["static_http_headers"] = readStaticHeaders(label, raw)
        elif option in ("binary_encoding", "include_connection_meta"):
            fields[option] = _read_bool(label, raw)
        elif option == "http" and isinstance(raw, Mapping):
            for sub, subRaw in raw.items():
                if sub == "static_headers":
                    if "static_http_headers" in fields:
                        raise ConfigError(
                            f'config keys "{key}.static_http_headers" and "{label}.static_headers" set the same '
                            "setting; keep one of them"
                        )
                    fields["static_http_headers"] = readStaticHeaders(f"{label}.{sub}", subRaw)
                else:
                    warnings.append(f'config key "{label}.{sub}" is not supported by httpstream and was ignored')
        elif option in _IGNORED:
            warnings.append(f'config key "{label}" is not supported by httpstream (gRPC proxies, status '
                            "transforms) and was ignored")
        else:
            warnings.append(f'config key "{label}" is unknown and was ignored')
    if "name" not in fields:
        raise ConfigError(f'config key "{key}.name" is missing: every proxy needs a name')
    name = fields["name"]
    if not _NAME.fullmatch(name):
        raise _error(f"{key}.name", "a name of 2 or more characters from a-z A-Z 0-9 - _ .", name)
    if name == DEFAULT_PROXY:
        raise ConfigError(
            f'config key "{key}.name": proxy name "default" is reserved (it means each event\'s own proxy object)'
        )
    endpoint = fields.get("endpoint", "")
    if not endpoint:
        raise ConfigError(f'config key "{key}.endpoint": proxy {_show(name)} needs an endpoint')
    if not endpoint.startswith(("http://", "https://")):
        raise ConfigError(
            f'config key "{key}.endpoint": expected an http:// or https:// URL, got {_show(endpoint)} (httpstream '
            "has no gRPC proxies)"
        )
    return NamedProxy(**fields), warnings


def readProxies(key: str, value: Any) -> tuple[tuple[NamedProxy, ...], list[str]]:
    """Read the C{proxies} list: unique names. @return: the proxies and warnings."""
    if not isinstance(value, (list, tuple)):
        raise _error(key, "a list of proxy objects", value)
    proxies: list[NamedProxy] = []
    warnings: list[str] = []
    for index, item in enumerate(value):
        proxy, itemWarnings = readProxy(f"{key}[{index}]", item)
        if any(proxy.name == other.name for other in proxies):
            raise ConfigError(f'config key "{key}[{index}].name": proxy {_show(proxy.name)} is defined twice')
        proxies.append(proxy)
        warnings.extend(itemWarnings)
    return tuple(proxies), warnings


def readRPCNamespace(key: str, value: Any) -> tuple[RPCNamespace, list[str]]:
    """
    Read one RPC namespace in v5's form (C{rpc_proxy_name}) or v6's (C{proxy_enabled} and C{proxy_name}, whose
    default is C{"default"}); v6's is turned into v5's: a disabled proxy is no name.
    """
    if isinstance(value, RPCNamespace):
        return value, []
    if not isinstance(value, Mapping):
        raise _error(key, 'an object with a "name"', value)
    warnings: list[str] = []
    if "name" not in value:
        raise ConfigError(f'config key "{key}.name" is missing: every RPC namespace needs a name')
    name = _read_str(f"{key}.name", value["name"])
    if not _NAME.fullmatch(name):
        raise _error(f"{key}.name", "a name of 2 or more characters from a-z A-Z 0-9 - _ .", name)
    v5 = "rpc_proxy_name" in value
    v6 = "proxy_enabled" in value or "proxy_name" in value
    if v5 and v6:
        raise ConfigError(
            f'config key "{key}": give either "rpc_proxy_name" (v5) or "proxy_enabled"/"proxy_name" (v6), not both'
        )
    proxyName = ""
    if v5:
        proxyName = _read_str(f"{key}.rpc_proxy_name", value["rpc_proxy_name"])
    elif v6:
        enabled = _read_bool(f"{key}.proxy_enabled", value.get("proxy_enabled", False))
        given = _read_str(f"{key}.proxy_name", value.get("proxy_name", DEFAULT_PROXY)) or DEFAULT_PROXY
        proxyName = given if enabled else ""
    for option in value:
        if option not in ("name", "rpc_proxy_name", "proxy_enabled", "proxy_name"):
            warnings.append(f'config key "{key}.{option}" is unknown and was ignored')
    return RPCNamespace(name, proxyName), warnings


def readRPCNamespaces(key: str, value: Any) -> tuple[tuple[RPCNamespace, ...], list[str]]:
    """Read an RPC namespaces list: unique names. @return: the namespaces and warnings."""
    if not isinstance(value, (list, tuple)):
        raise _error(key, "a list of RPC namespace objects", value)
    namespaces: list[RPCNamespace] = []
    warnings: list[str] = []
    for index, item in enumerate(value):
        namespace, itemWarnings = readRPCNamespace(f"{key}[{index}]", item)
        if any(namespace.name == other.name for other in namespaces):
            raise ConfigError(
                f'config key "{key}[{index}].name": RPC namespace {_show(namespace.name)} is defined twice'
            )
        namespaces.append(namespace)
        warnings.extend(itemWarnings)
    return tuple(namespaces), warnings


def checkProxyNames(config: Any) -> None:
    """
    Every name a namespace, RPC namespace or event picks must be C{"default"} or one of C{proxies} (Centrifugo
    refuses to start otherwise). C{config} is a L{httpstream.config.Config}.
    """
    known = {proxy.name for proxy in config.proxies}

    def check(key: str, name: str, where: str = "") -> None:
        if name and name != DEFAULT_PROXY and name not in known:
            raise ConfigError(
                f'config key "{key}"{where}: proxy {_show(name)} is not in "proxies" (defined: {listed(known)})'
            )

    for option in ("subscribe_proxy_name", "publish_proxy_name", "sub_refresh_proxy_name"):
        check(option, getattr(config, option))
        for index, namespace in enumerate(config.namespaces):
            check(f"namespaces[{index}].{option}", getattr(namespace.options, option),
                  f" (namespace {_show(namespace.name)})")
    check("connect_proxy_name", config.connect_proxy_name)
    check("refresh_proxy_name", config.refresh_proxy_name)
    check("rpc_proxy_name", config.rpc_proxy_name)
    for index, rpcNamespace in enumerate(config.rpc_namespaces):
        check(f"rpc_namespaces[{index}].rpc_proxy_name", rpcNamespace.rpc_proxy_name,
              f" (RPC namespace {_show(rpcNamespace.name)})")
