# -*- test-case-name: tests.policy.test_proxy -*-
"""
What a proxy request says: the connection it speaks for, what the client's command brings, and the JSON body built
from them with Go's C{omitempty} rules (C{internal/proxyproto/proxy.proto}).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import orjson

from httpstream.protocol import codes
from httpstream.policy.proxy.errors import ProxyError

__all__ = ["ProxyConnectRequest", "ProxyContext", "ProxySubscribeRequest", "RequestBody"]


@dataclass(frozen=True)
class ProxyContext:
    """
    The connection a proxy request speaks for; kept by the client and reused for every call.

    @ivar clientID: the connection id (C{client} in every request).
    @ivar transport: Centrifugo's transport name: C{"websocket"}, C{"http_stream"} or C{"sse"}.
    @ivar protocol: the client protocol, C{"json"} or C{"protobuf"}.
    @ivar encoding: C{"json"} (payloads as embedded JSON) or C{"binary"} (payloads as base64). Centrifugo picks
        this per proxy with C{proxy_binary_encoding}, not per client; a ProxyClient whose C{binaryEncoding} is on
        sends base64 whatever this says. Setting C{"binary"} for one context is an httpstream extension (for
        Protobuf clients whose payloads are not JSON).
    @ivar user: the user id (C{""} before connect and for anonymous connections).
    @ivar meta: raw JSON of the connection meta (from the connect result or the token), sent as C{meta} only when
        the ProxyClient's C{includeMeta} is on (Centrifugo's C{proxy_include_connection_meta}).
    @ivar headers: the HTTP headers of this connection that proxies may forward, as built by
        L{httpstream.policy.proxy.forwardedHeaders} (or L{ProxyClient.headersFor}) once at connect: canonical
        name -> values. Each request carries those its proxy's C{http_headers} lists.
    """

    clientID: str
    transport: str
    protocol: str = "json"
    encoding: str = "json"
    user: str = ""
    meta: Optional[bytes] = None
    headers: Mapping[str, Sequence[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class ProxyConnectRequest:
    """
    What a client's connect command brings to the connect proxy.

    @ivar data: the ConnectRequest C{data} (raw JSON for JSON clients, bytes for Protobuf ones), or None.
    @ivar name: the SDK name (ConnectRequest.name).
    @ivar version: the SDK version (ConnectRequest.version).
    @ivar channels: server-side channels the client wants back (the keys of ConnectRequest.subs); the backend
        decides which to grant.
    """

    data: Optional[bytes] = None
    name: str = ""
    version: str = ""
    channels: Sequence[str] = ()


@dataclass(frozen=True)
class ProxySubscribeRequest:
    """
    What a client's subscribe command brings to the subscribe proxy.

    @ivar token: the subscription token, if the client sent one (forwarded as C{token}).
    @ivar data: the SubscribeRequest C{data}, or None.
    """

    token: str = ""
    data: Optional[bytes] = None


def _raw(value: bytes) -> orjson.Fragment:
    # Centrifugo embeds the bytes (proxyproto.Raw) and Go's json.Marshal refuses invalid JSON: a call error.
    try:
        orjson.loads(value)
    except orjson.JSONDecodeError:
        raise ProxyError(codes.ERROR_INTERNAL) from None
    return orjson.Fragment(value)


class RequestBody:
    """
    One request body, built with Go's omitempty rules (only C{user} is always present, where it exists).

    @ivar base64: payloads go as C{b64data} (binary encoding) rather than embedded JSON.
    """

    def __init__(self, ctx: ProxyContext, binaryEncoding: bool, withUser: bool) -> None:
        self.base64 = binaryEncoding or ctx.encoding == "binary"
        self.fields: dict[str, Any] = {}
        self.put("client", ctx.clientID)
        self.put("transport", ctx.transport)
        self.put("protocol", ctx.protocol)
        self.put("encoding", "binary" if self.base64 else "json")
        if withUser:
            self.fields["user"] = ctx.user

    def put(self, key: str, value: Any) -> None:
        if value:
            self.fields[key] = value

    def data(self, value: Optional[bytes]) -> None:
        """
        @raise ProxyError: 100, C{value} is not JSON while payloads travel as JSON.
        """
        if not value:
            return
        if self.base64:
            self.fields["b64data"] = base64.b64encode(value).decode("ascii")
        else:
            self.fields["data"] = _raw(value)

    def meta(self, ctx: ProxyContext, includeMeta: bool) -> None:
        """@raise ProxyError: 100, the connection's meta is not JSON."""
        if includeMeta and ctx.meta is not None:
            self.fields["meta"] = _raw(ctx.meta)

    def encode(self) -> bytes:
        return orjson.dumps(self.fields)
