# -*- test-case-name: tests.test_proxy -*-
"""
Centrifugo's HTTP proxy: client events become JSON POSTs to the application backend.

Six events are proxied, each to its own endpoint (``proxy_<name>_endpoint``, off while empty) with its own timeout
(``proxy_<name>_timeout``): connect, refresh, rpc, publish, subscribe and sub_refresh. Request and response bodies
follow Centrifugo v5 (``internal/proxyproto/proxy.proto`` and ``internal/proxy/*_handler.go``; the v5 docs
``server/proxy.md``)::

    -> {"client": .., "transport": .., "protocol": .., "encoding": .., "user": .., "channel": .., "data": ..}
    <- {"result": {..}} | {"error": {"code", "message", "temporary"}} | {"disconnect": {"code", "reason"}}

A C{disconnect} wins over an C{error}, which wins over a C{result}. Payloads travel as embedded JSON in C{data} /
C{info}, or base64 in C{b64data} / C{b64info} in binary mode; a response may use either form, the base64 one
taking precedence (except for a publish override, where C{data} wins, as in Centrifugo's publish handler).

Failures are Centrifugo's: a transport error, a timeout, a status other than 200, or a body that is not the
expected JSON make connect, rpc, publish and subscribe fail with error 100 "internal server error" (temporary);
refresh and sub_refresh instead give the connection (subscription) another minute, so a backend hiccup does not
disconnect anybody. Error and disconnect replies of the backend are ignored for refresh and sub_refresh, where a
missing result means "expired".
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Optional, Protocol, Sequence, Union

import orjson
from twisted.internet.defer import CancelledError, Deferred, fail, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from httpstream.protocol import codes
from httpstream.logs import Logger
from httpstream.readers import UINT32, Base64Error, FieldError, Fields

if TYPE_CHECKING:
    from twisted.web.client import HTTPConnectionPool

    from httpstream.config import Config

__all__ = [
    "PROXY_NAMES",
    "REFRESH_RETRY_DELAY",
    "HTTPPoster",
    "ProxyClient",
    "ProxyConnectRequest",
    "ProxyContext",
    "ProxyDisconnect",
    "ProxyError",
    "ProxySubscribeRequest",
    "forwardedHeaders",
]

PROXY_NAMES = ("connect", "refresh", "rpc", "publish", "subscribe", "sub_refresh")

# Seconds of extra life a connection or subscription gets when its refresh request fails (Centrifugo's
# refresh_handler.go / sub_refresh_handler.go: "give connection one more minute to live").
REFRESH_RETRY_DELAY = 60

# Header names a proxy request never carries from the client: the HTTP client sets them itself (Go's transport
# drops Host, Content-Length, Transfer-Encoding and Trailer from request headers; Content-Type is forced to JSON)
# or they are hop-by-hop and would confuse the connection to the backend (a WebSocket's Connection: Upgrade).
_NEVER_FORWARDED = frozenset(
    {"host", "content-length", "content-type", "transfer-encoding", "trailer", "connection", "upgrade",
     "keep-alive", "te", "proxy-connection"}
)
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # RFC 9110 field-name
_BAD_VALUE = re.compile(r"[\r\n\x00]")
_OVERRIDES = ("presence", "join_leave", "force_push_join_leave", "force_recovery", "force_positioning")


class ProxyError(Exception):
    """
    The backend (or the proxy call itself) produced an error reply for the client's command.

    @ivar error: the reply error to send, e.g. C{codes.ERROR_INTERNAL} for a failed call.
    """

    def __init__(self, error: codes.Error) -> None:
        super().__init__(error.code, error.message)
        self.error = error


class ProxyDisconnect(Exception):
    """
    The backend asked to disconnect the client.

    @ivar disconnect: the code and reason to disconnect with.
    """

    def __init__(self, disconnect: codes.Disconnect) -> None:
        super().__init__(disconnect.code, disconnect.reason)
        self.disconnect = disconnect


class _CallFailed(Exception):
    """The HTTP exchange failed or its body is not a valid response; Centrifugo's ``err != nil`` branch."""


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
    @ivar headers: the HTTP headers forwarded with every request of this connection, as built by
        L{forwardedHeaders} (or L{ProxyClient.headersFor}) once at connect: canonical name -> values.
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


class HTTPPoster(Protocol):
    """The part of treq's API the proxy uses: C{treq.testing.StubTreq} and C{treq.client.HTTPClient} fit."""

    def post(self, url: str, data: Optional[bytes] = None, **kwargs: Any) -> "Deferred[Any]":
        """POST C{data}; fire with a response that has C{code} and C{content() -> Deferred[bytes]}."""


def _canonical(name: str) -> str:
    # Go's textproto.CanonicalMIMEHeaderKey, which is how Centrifugo's http.Header names its keys.
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def _text(value: Union[str, bytes]) -> str:
    # Header bytes round-trip through surrogateescape: whatever the client sent is what the backend gets.
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


def _headerItems(headers: Any) -> Iterable[tuple[str, list[str]]]:
    if hasattr(headers, "getAllRawHeaders"):  # twisted.web.http_headers.Headers
        for name, values in headers.getAllRawHeaders():
            yield _text(name), [_text(v) for v in values]
        return
    for name, values in headers.items():
        if isinstance(values, (str, bytes)):
            values = [values]
        yield _text(name), [_text(v) for v in values]


def forwardedHeaders(
    allowed: Iterable[str],
    requestHeaders: Any = None,
    emulatedHeaders: Optional[Mapping[str, str]] = None,
) -> dict[str, list[str]]:
    """
    The headers of a connection that its proxy requests carry (Centrifugo's ``proxy_http_headers``).

    Names are matched case-insensitively against C{allowed}. Emulated headers (ConnectRequest.headers, field 6,
    which the JS SDK sends when its C{headers} option is set) are filtered by the same list, and a real header of
    the same name wins over an emulated one (Centrifugo v6.0-6.8 ``internal/proxy/http.go`` ``requestHeaders``;
    v5 has no emulation; v6.9 splits the list into ``http_headers`` and ``emulated_headers``). Emulated entries
    that are not valid header fields are dropped, so a client cannot inject header lines.

    @param allowed: header names to forward.
    @param requestHeaders: the connection's HTTP request headers: a C{twisted.web.http_headers.Headers} or a
        mapping of name to value(s), str or bytes.
    @param emulatedHeaders: the ConnectRequest C{headers} map, or None.
    @return: canonical header name -> values.
    """
    allow = {name.lower() for name in allowed} - _NEVER_FORWARDED
    result: dict[str, list[str]] = {}
    if not allow:
        return result
    for name, value in (emulatedHeaders or {}).items():
        if not isinstance(name, str) or not isinstance(value, str):
            continue
        if name.lower() in allow and _TOKEN.match(name) and not _BAD_VALUE.search(value):
            result[_canonical(name)] = [value]
    if requestHeaders is not None:
        for name, values in _headerItems(requestHeaders):
            if name.lower() in allow:
                result[_canonical(name)] = [v for v in values if not _BAD_VALUE.search(v)]
    return result


def _defaultHTTPClient(reactor: Any) -> tuple[HTTPPoster, "HTTPConnectionPool"]:
    # Imported here so that importing httpstream.policy.proxy touches no reactor.
    from http.cookiejar import CookieJar, DefaultCookiePolicy

    from treq.client import HTTPClient
    from twisted.web.client import Agent, HTTPConnectionPool

    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = 255  # Centrifugo's DefaultMaxIdleConnsPerHost
    pool.cachedConnectionTimeout = 90  # Go's default idle connection timeout
    # No cookie memory: a Set-Cookie from the backend for one user must never ride along on another's request
    # (Go's http.Client has no jar). A Cookie header forwarded from the client still passes through untouched.
    jar = CookieJar(DefaultCookiePolicy(allowed_domains=[]))
    return HTTPClient(Agent(reactor, pool=pool), cookiejar=jar), pool  # type: ignore[arg-type]


def _raw(value: bytes) -> orjson.Fragment:
    # Centrifugo embeds the bytes (proxyproto.Raw) and Go's json.Marshal refuses invalid JSON: a call error.
    try:
        orjson.loads(value)
    except orjson.JSONDecodeError:
        raise ProxyError(codes.ERROR_INTERNAL) from None
    return orjson.Fragment(value)


class _Body:
    """Builds one request body with Go's omitempty rules (only C{user} is always present, where it exists)."""

    def __init__(self, client: "ProxyClient", ctx: ProxyContext, withUser: bool) -> None:
        self.base64 = client.binaryEncoding or ctx.encoding == "binary"
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
        if not value:
            return
        if self.base64:
            self.fields["b64data"] = base64.b64encode(value).decode("ascii")
        else:
            self.fields["data"] = _raw(value)

    def meta(self, client: "ProxyClient", ctx: ProxyContext) -> None:
        if client.includeMeta and ctx.meta is not None:
            self.fields["meta"] = _raw(ctx.meta)


# Response parsing reads with httpstream.readers: a type mismatch (what Go's json.Unmarshal rejects) is a
# FieldError, and the whole call failed (_CallFailed); bad base64 (Base64Error) is found later in Centrifugo, by
# the handlers, and is an internal error even for refresh (ProxyError).

_EMPTY = Fields({})


def _override(entry: Fields) -> dict[str, bool]:
    override = entry.object("override")
    result: dict[str, bool] = {}
    if override is not None:
        for key in _OVERRIDES:
            boolValue = override.object(key)
            if boolValue is not None:
                result[key] = boolValue.boolean("value")
    return result


def _checkReply(response: Fields) -> None:
    """Raise the backend's disconnect or error, the disconnect first (as every Centrifugo handler does)."""
    disconnect = response.object("disconnect")
    error = response.object("error")
    if disconnect is not None:
        raise ProxyDisconnect(codes.Disconnect(disconnect.integer("code", UINT32), disconnect.string("reason")))
    if error is not None:
        code, message = error.integer("code", UINT32), error.string("message")
        raise ProxyError(codes.Error(code, message, error.boolean("temporary")))


class ProxyClient:
    """
    Calls the application backend for client events, as Centrifugo's HTTP proxy does.

    Every method returns a Deferred that fires with a result dict (payloads as C{bytes}: raw JSON from C{data} /
    C{info}, or the decoded C{b64data} / C{b64info}) or fails with L{ProxyError} (an error reply for the
    client's command) or L{ProxyDisconnect} (disconnect the client). Cancelling the Deferred (the client went
    away) cancels the HTTP request and fails it with C{CancelledError}.

    @ivar binaryEncoding: send payloads as base64 (C{encoding: "binary"}) for every connection; Centrifugo's
        C{proxy_binary_encoding}, read from the config when present.
    @ivar includeMeta: send the connection meta in non-connect requests; Centrifugo's
        C{proxy_include_connection_meta}, read from the config when present.
    """

    log = Logger()

    def __init__(
        self,
        config: "Config",
        reactor: IReactorTime,
        httpClient: Optional[HTTPPoster] = None,
        *,
        binaryEncoding: Optional[bool] = None,
        includeMeta: Optional[bool] = None,
    ) -> None:
        """
        @param config: the endpoints, timeouts and C{proxy_http_headers}.
        @param reactor: schedules the timeouts (and, when C{httpClient} is None, runs the default client).
        @param httpClient: a treq-like client with C{post(url, data=, headers=)}; None builds treq's
            C{HTTPClient} over a persistent connection pool on C{reactor}.
        @param binaryEncoding: overrides C{config.proxy_binary_encoding} (off when the config has no such key).
        @param includeMeta: overrides C{config.proxy_include_connection_meta} (off when absent).
        """
        self._config = config
        self._reactor = reactor
        self._pool: Optional["HTTPConnectionPool"] = None
        if httpClient is None:
            httpClient, self._pool = _defaultHTTPClient(reactor)
        self._http = httpClient
        if binaryEncoding is None:
            binaryEncoding = bool(getattr(config, "proxy_binary_encoding", False))
        if includeMeta is None:
            includeMeta = bool(getattr(config, "proxy_include_connection_meta", False))
        self.binaryEncoding = binaryEncoding
        self.includeMeta = includeMeta

    def enabled(self, name: str) -> bool:
        """
        Whether the proxy for event C{name} (one of L{PROXY_NAMES}) has an endpoint.
        """
        if name not in PROXY_NAMES:
            raise ValueError(f"unknown proxy {name!r}; expected one of {', '.join(PROXY_NAMES)}")
        return bool(getattr(self._config, f"proxy_{name}_endpoint"))

    def headersFor(
        self, requestHeaders: Any = None, emulatedHeaders: Optional[Mapping[str, str]] = None
    ) -> dict[str, list[str]]:
        """L{forwardedHeaders} with this configuration's C{proxy_http_headers}; store it in L{ProxyContext.headers}."""
        return forwardedHeaders(self._config.proxy_http_headers, requestHeaders, emulatedHeaders)

    def close(self) -> "Deferred[None]":
        """Close the idle connections of the default client's pool (nothing to do for an injected client)."""
        if self._pool is None:
            return succeed(None)
        return self._pool.closeCachedConnections()

    # The six events.

    def connect(self, ctx: ProxyContext, request: ProxyConnectRequest) -> "Deferred[Optional[dict]]":
        """
        Ask the backend to authenticate a connection (a client that connected without a token).

        Request: C{client, transport, protocol, encoding, name, version, data | b64data, channels}.

        @return: None when the backend answered without any result (Centrifugo then has no credentials: the
            connection is accepted only if anonymous access is allowed), else::

                {"user": str,                  # "" accepts the connection as anonymous
                 "expire_at": int,             # unix seconds; 0: never expires
                 "info": bytes | None,         # conn_info
                 "data": bytes | None,         # ConnectResult.data for the client
                 "channels": [str, ...],       # server-side subscriptions, channel options from config
                 "subs": {channel: {"info": bytes | None, "data": bytes | None,
                                    "override": {"presence": bool, ...}, "expire_at": int}},
                 "meta": bytes | None}         # raw JSON meta, never shown to the client

            Centrifugo answers an unknown channel in C{channels} or C{subs} with error 102 (the caller's check).
        """

        def build(body: _Body) -> None:
            body.put("name", request.name)
            body.put("version", request.version)
            body.data(request.data)
            body.put("channels", list(request.channels))

        def parse(response: Fields) -> Optional[dict]:
            _checkReply(response)
            result = response.object("result")
            if result is None:
                return None
            subs: dict[str, dict] = {}
            entries = result.object("subs") or _EMPTY
            for channel in entries.keys():
                entry = entries.object(channel) or _EMPTY
                subs[channel] = {
                    "info": entry.payload("info"),
                    "data": entry.payload("data"),
                    "override": _override(entry),
                    "expire_at": entry.integer("expire_at"),
                }
            return {
                "user": result.string("user"),
                "expire_at": result.integer("expire_at"),
                "info": result.payload("info"),
                "data": result.payload("data"),
                "channels": result.strings("channels"),
                "subs": subs,
                "meta": result.raw("meta"),
            }

        return self._request("connect", ctx, False, build, parse, self._internalError)

    def refresh(self, ctx: ProxyContext) -> "Deferred[dict]":
        """
        Ask the backend whether an expiring connection may live on.

        Request: C{client, transport, protocol, encoding, user, meta?}.

        @return: C{{"expired": bool, "expire_at": int, "info": bytes | None, "meta": bytes | None}}. C{expired}
            is True when the backend says so or sends no result (its error and disconnect are ignored, as in
            Centrifugo). When the call itself fails, C{expire_at} is now + L{REFRESH_RETRY_DELAY}. Fails only
            with L{ProxyError} 100 for a bad C{b64info}.
        """

        def parse(response: Fields) -> dict:
            # Error and disconnect are still type-checked (Go unmarshals them), but not acted upon.
            response.object("error")
            response.object("disconnect")
            result = response.object("result")
            if result is None:
                self.log.error("client {client}: refresh proxy sent no result", client=ctx.clientID)
                return {"expired": True, "expire_at": 0, "info": None, "meta": None}
            if result.boolean("expired"):
                return {"expired": True, "expire_at": 0, "info": None, "meta": None}
            return {
                "expired": False,
                "expire_at": result.integer("expire_at"),
                "info": result.payload("info"),
                "meta": result.raw("meta"),
            }

        def retry(failure: Failure) -> dict:
            return {"expired": False, "expire_at": self._retryAt(), "info": None, "meta": None}

        return self._request("refresh", ctx, True, lambda body: body.meta(self, ctx), parse, retry)

    def rpc(self, ctx: ProxyContext, method: str, data: Optional[bytes]) -> "Deferred[dict]":
        """
        Forward a client RPC.

        Request: C{client, transport, protocol, encoding, user, method, data | b64data, meta?}.

        @return: C{{"data": bytes | None}}: the RPCResult data for the client.
        """

        def build(body: _Body) -> None:
            body.put("method", method)
            body.data(data)
            body.meta(self, ctx)

        def parse(response: Fields) -> dict:
            _checkReply(response)
            result = response.object("result")
            return {"data": None if result is None else result.payload("data")}

        return self._request("rpc", ctx, True, build, parse, self._internalError)

    def publish(self, ctx: ProxyContext, channel: str, data: Optional[bytes]) -> "Deferred[dict]":
        """
        Ask the backend whether a client may publish, before anything is published.

        Request: C{client, transport, protocol, encoding, user, channel, data | b64data, meta?}.

        @return: C{{"data": bytes | None, "skip_history": bool}}: C{data}, when not None, replaces what the
            client sent; C{skip_history} publishes without saving to history.
        """

        def build(body: _Body) -> None:
            body.put("channel", channel)
            body.data(data)
            body.meta(self, ctx)

        def parse(response: Fields) -> dict:
            _checkReply(response)
            result = response.object("result") or _EMPTY
            # Centrifugo's publish handler prefers data over b64data (the other handlers do the opposite).
            replacement = result.raw("data")
            if replacement is None:
                replacement = result.payload("data")
            return {"data": replacement, "skip_history": result.boolean("skip_history")}

        return self._request("publish", ctx, True, build, parse, self._internalError)

    def subscribe(self, ctx: ProxyContext, channel: str, request: ProxySubscribeRequest) -> "Deferred[dict]":
        """
        Ask the backend whether a client may subscribe.

        Request: C{client, transport, protocol, encoding, user, channel, token, data | b64data, meta?}.

        @return: C{{"info": bytes | None, "data": bytes | None, "override": {name: bool}, "expire_at": int}}:
            C{info} becomes the subscriber's chan_info, C{data} goes into SubscribeResult.data, C{override}
            replaces the channel options C{presence}, C{join_leave}, C{force_push_join_leave},
            C{force_recovery}, C{force_positioning} for this subscription, and a non-zero C{expire_at} (unix
            seconds) makes the subscription expire (refreshed through sub_refresh). A missing result allows
            the subscription with nothing set.
        """

        def build(body: _Body) -> None:
            body.put("channel", channel)
            body.put("token", request.token)
            body.data(request.data)
            body.meta(self, ctx)

        def parse(response: Fields) -> dict:
            _checkReply(response)
            result = response.object("result") or _EMPTY
            return {
                "info": result.payload("info"),
                "data": result.payload("data"),
                "override": _override(result),
                "expire_at": result.integer("expire_at"),
            }

        return self._request("subscribe", ctx, True, build, parse, self._internalError)

    def subRefresh(self, ctx: ProxyContext, channel: str) -> "Deferred[dict]":
        """
        Ask the backend whether an expiring subscription may live on.

        Request: C{client, transport, protocol, encoding, user, channel, meta?}.

        @return: C{{"expired": bool, "expire_at": int, "info": bytes | None}}, with the rules of L{refresh}.
        """

        def parse(response: Fields) -> dict:
            response.object("error")
            response.object("disconnect")
            result = response.object("result")
            if result is None:
                self.log.error("client {client}: sub_refresh proxy sent no result for {channel}",
                               client=ctx.clientID, channel=channel)
                return {"expired": True, "expire_at": 0, "info": None}
            if result.boolean("expired"):
                return {"expired": True, "expire_at": 0, "info": None}
            return {"expired": False, "expire_at": result.integer("expire_at"), "info": result.payload("info")}

        def build(body: _Body) -> None:
            body.put("channel", channel)
            body.meta(self, ctx)

        def retry(failure: Failure) -> dict:
            return {"expired": False, "expire_at": self._retryAt(), "info": None}

        return self._request("sub_refresh", ctx, True, build, parse, retry)

    # The exchange.

    def _retryAt(self) -> int:
        return int(self._reactor.seconds()) + REFRESH_RETRY_DELAY

    @staticmethod
    def _internalError(failure: Failure) -> Any:
        raise ProxyError(codes.ERROR_INTERNAL)

    def _request(
        self,
        name: str,
        ctx: ProxyContext,
        withUser: bool,
        build: Callable[[_Body], None],
        parse: Callable[[Fields], Any],
        onCallFailed: Callable[[Failure], Any],
    ) -> "Deferred[Any]":
        endpoint = getattr(self._config, f"proxy_{name}_endpoint")
        if not endpoint:
            return fail(ProxyError(codes.ERROR_NOT_AVAILABLE))
        try:
            body = _Body(self, ctx, withUser)
            build(body)
        except ProxyError as e:
            self.log.error("client {client}: {name} proxy: a payload is not valid JSON", client=ctx.clientID, name=name)
            return fail(e)
        payload = orjson.dumps(body.fields)
        headers: dict[bytes, list[bytes]] = {
            k.encode("utf-8", "surrogateescape"): [
                v.encode("utf-8", "surrogateescape") for v in ([values] if isinstance(values, str) else values)
            ]
            for k, values in ctx.headers.items()
            if k.lower() != "content-type"
        }
        headers[b"Content-Type"] = [b"application/json"]

        timedOut = callerCancelled = False

        def expire() -> None:
            nonlocal timedOut
            timedOut = True
            d.cancel()

        d = maybeDeferred(self._http.post, endpoint, data=payload, headers=headers)
        timer = self._reactor.callLater(getattr(self._config, f"proxy_{name}_timeout"), expire)

        def read(response: Any) -> "Deferred[bytes]":
            content = response.content()
            if response.code != 200:
                # Read (and drop) the body all the same, so the connection goes back to the pool in order.
                def refuse(_: Any) -> None:
                    raise _CallFailed(f"unexpected HTTP status code: {response.code}")

                return content.addBoth(refuse)
            return content

        def stopTimer(result: Any) -> Any:
            if timer.active():
                timer.cancel()
            return result

        def decode(content: bytes) -> Any:
            try:
                response = Fields(orjson.loads(content))
            except orjson.JSONDecodeError as e:
                raise _CallFailed(f"response is not JSON: {e}") from None
            except FieldError:
                raise _CallFailed("response is not a JSON object") from None
            try:
                return parse(response)
            except Base64Error as e:
                self.log.error("client {client}: {name} proxy: {field}", client=ctx.clientID, name=name,
                               field=str(e))
                raise ProxyError(codes.ERROR_INTERNAL) from None
            except FieldError as e:
                raise _CallFailed(str(e)) from None

        def callFailed(failure: Failure) -> Any:
            if failure.check(ProxyError, ProxyDisconnect):
                return failure
            if callerCancelled:
                return Failure(CancelledError())  # the client is gone: nothing to report or reply
            reason = "timeout" if timedOut else failure.getErrorMessage() or failure.type.__name__
            self.log.error(
                "client {client}: error proxying {name} to {endpoint}: {reason}",
                client=ctx.clientID, name=name, endpoint=endpoint, reason=reason,
            )
            return onCallFailed(failure)

        d.addCallback(read)
        d.addBoth(stopTimer)
        d.addCallback(decode)
        d.addErrback(callFailed)

        # The caller may cancel (the client went away); that must not read as a failed call. Twisted's HTTP
        # client reports a cancelled request as ResponseNeverReceived, hence the flag rather than the type.
        def cancel(_: "Deferred[Any]") -> None:
            nonlocal callerCancelled
            callerCancelled = True
            d.cancel()

        outer: "Deferred[Any]" = Deferred(cancel)
        d.chainDeferred(outer)
        return outer
