# -*- test-case-name: tests.policy.test_proxy -*-
"""
The proxy's HTTP caller: client events become JSON POSTs to the application backend (Centrifugo's HTTP proxy).

Six events are proxied, each to its own endpoint (``proxy_<name>_endpoint``, off while empty) with its own timeout
(``proxy_<name>_timeout``): connect, refresh, rpc, publish, subscribe and sub_refresh; or to a named proxy of
``proxies`` that the namespace, RPC namespace or event picks (L{routes}). Centrifugo 6's map publish and map remove
go to a named proxy only (the namespace's ``map.publish_proxy_name`` / ``map.remove_proxy_name``). Request and response bodies
follow Centrifugo v5 (``internal/proxyproto/proxy.proto`` and ``internal/proxy/*_handler.go``; the v5 docs
``server/proxy.md``)::

    -> {"client": .., "transport": .., "protocol": .., "encoding": .., "user": .., "channel": .., "data": ..}
    <- {"result": {..}} | {"error": {"code", "message", "temporary"}} | {"disconnect": {"code", "reason"}}

A C{disconnect} wins over an C{error}, which wins over a C{result}. Payloads travel as embedded JSON in C{data} /
C{info}, or base64 in C{b64data} / C{b64info} in binary mode; a response may use either form, the base64 one
taking precedence (except for a publish override, where C{data} wins, as in Centrifugo's publish handler).

Failures are Centrifugo's: a transport error, a timeout, a status other than 200, or a body that is not the
expected JSON (or is over L{caller.MAX_RESPONSE_SIZE}, which Centrifugo does not limit) make connect, rpc, publish
and subscribe fail with error 100 "internal server error" (temporary); refresh and sub_refresh instead give the
connection (subscription) another minute, so a backend hiccup does not disconnect anybody. Error and disconnect
replies of the backend are ignored for refresh and sub_refresh, where a missing result means "expired".
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, cast

import orjson
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from httpstream.decisions import MapWriteDecision
from httpstream.logs import Logger
from httpstream.policy.proxy import results
from httpstream.policy.proxy.caller import MAX_RESPONSE_SIZE, HTTPPoster, callHTTP
from httpstream.policy.proxy.errors import CallFailed, ProxyDisconnect, ProxyError
from httpstream.policy.proxy.headers import forwardedHeaders
from httpstream.policy.proxy.requests import ProxyConnectRequest, ProxyContext, ProxySubscribeRequest, RequestBody
from httpstream.policy.proxy.routes import ProxyEndpoint, endpointFor, headerNames, rpcConfigured, rpcProxyName
from httpstream.protocol import codes
from httpstream.readers import Base64Error, FieldError, Fields

if TYPE_CHECKING:
    from twisted.web.client import HTTPConnectionPool

    from httpstream.config import Config

__all__ = ["PROXY_NAMES", "REFRESH_RETRY_DELAY", "HTTPPoster", "ProxyClient"]

PROXY_NAMES = ("connect", "refresh", "rpc", "publish", "subscribe", "sub_refresh")
# Events only a named proxy serves (no proxy_<name>_endpoint of their own).
NAMED_PROXY_NAMES = ("map_publish", "map_remove")

# Seconds of extra life a connection or subscription gets when its refresh request fails (Centrifugo's
# refresh_handler.go / sub_refresh_handler.go: "give connection one more minute to live").
REFRESH_RETRY_DELAY = 60


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
    agent = Agent(reactor, pool=pool)
    # treq's post has more keywords than HTTPPoster names (and Agent is typed IAgent): it fits at run time.
    client = cast(HTTPPoster, HTTPClient(agent, cookiejar=jar))  # type: ignore[arg-type]
    return client, pool


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
        maxResponseSize: int = MAX_RESPONSE_SIZE,
    ) -> None:
        """
        @param config: the endpoints, timeouts and C{proxy_http_headers}.
        @param reactor: schedules the timeouts (and, when C{httpClient} is None, runs the default client).
        @param httpClient: a treq-like client with C{post(url, data=, headers=)}; None builds treq's
            C{HTTPClient} over a persistent connection pool on C{reactor}.
        @param binaryEncoding: overrides C{config.proxy_binary_encoding} (off when the config has no such key),
            and each named proxy's C{binary_encoding}.
        @param includeMeta: overrides C{config.proxy_include_connection_meta} (off when absent), and each named
            proxy's C{include_connection_meta}.
        @param maxResponseSize: the most bytes of an answer read (L{caller.MAX_RESPONSE_SIZE}); a larger answer
            fails the call as a malformed one does.
        """
        self._config = config
        self._reactor = reactor
        self._pool: Optional["HTTPConnectionPool"] = None
        if httpClient is None:
            httpClient, self._pool = _defaultHTTPClient(reactor)
        self._http = httpClient
        self._binaryOverride = binaryEncoding
        self._metaOverride = includeMeta
        self._maxResponseSize = maxResponseSize
        if binaryEncoding is None:
            binaryEncoding = bool(getattr(config, "proxy_binary_encoding", False))
        if includeMeta is None:
            includeMeta = bool(getattr(config, "proxy_include_connection_meta", False))
        self.binaryEncoding = binaryEncoding
        self.includeMeta = includeMeta

    # What other callers of the backends (the shared poll refresh proxy, httpstream.policy.proxy.sharedpoll) use.
    @property
    def config(self) -> "Config": return self._config  # noqa: E704

    @property
    def reactor(self) -> IReactorTime: return self._reactor  # noqa: E704

    @property
    def http(self) -> HTTPPoster: return self._http  # noqa: E704

    @property
    def maxResponseSize(self) -> int: return self._maxResponseSize  # noqa: E704

    def enabled(self, name: str, proxy: str = "") -> bool:
        """
        Whether the proxy for event C{name} (one of L{PROXY_NAMES}) has an endpoint: the event's own, or the
        named proxy C{proxy} (C{""} or C{"default"}: the event's own; connect and refresh use
        C{connect_proxy_name} / C{refresh_proxy_name}). For C{"rpc"}: whether any RPC method reaches a proxy.
        """
        if name not in PROXY_NAMES + NAMED_PROXY_NAMES:
            raise ValueError(f"unknown proxy {name!r}; expected one of {', '.join(PROXY_NAMES + NAMED_PROXY_NAMES)}")
        if name == "rpc" and not proxy:
            return rpcConfigured(self._config)
        return endpointFor(self._config, name, proxy) is not None

    def headersFor(
        self, requestHeaders: Any = None, emulatedHeaders: Optional[Mapping[str, str]] = None
    ) -> dict[str, list[str]]:
        """
        L{forwardedHeaders} with every header name some proxy forwards (C{proxy_http_headers} and each named
        proxy's C{http_headers}); store it in L{ProxyContext.headers}. Each request keeps its own proxy's.
        """
        return forwardedHeaders(headerNames(self._config), requestHeaders, emulatedHeaders)

    def close(self) -> "Deferred[None]":
        """Close the idle connections of the default client's pool (nothing to do for an injected client)."""
        if self._pool is None:
            return succeed(None)
        closed: Deferred[None] = self._pool.closeCachedConnections()
        return closed

    # The six events.

    def connect(self, ctx: ProxyContext, request: ProxyConnectRequest) -> "Deferred[Optional[dict[str, Any]]]":
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
                 "subs": {channel: SubOptions},  # httpstream.readers.SubOptions of each
                 "meta": bytes | None}         # raw JSON meta, never shown to the client

            Centrifugo answers an unknown channel in C{channels} or C{subs} with error 102 (the caller's check).
        """

        def build(body: RequestBody, meta: bool) -> None:
            body.put("name", request.name)
            body.put("version", request.version)
            body.data(request.data)
            body.put("channels", list(request.channels))

        return self._request("connect", "", ctx, False, build, results.connectResult, self._internalError)

    def refresh(self, ctx: ProxyContext) -> "Deferred[dict[str, Any]]":
        """
        Ask the backend whether an expiring connection may live on.

        Request: C{client, transport, protocol, encoding, user, meta?}.

        @return: C{{"expired": bool, "expire_at": int, "info": bytes | None, "meta": bytes | None}}. C{expired}
            is True when the backend says so or sends no result (its error and disconnect are ignored, as in
            Centrifugo). When the call itself fails, C{expire_at} is now + L{REFRESH_RETRY_DELAY}. Fails only
            with L{ProxyError} 100 for a bad C{b64info}.
        """

        def parse(response: Fields) -> dict[str, Any]:
            result = results.refreshResult(response)
            if result is None:
                self.log.error("client {client}: refresh proxy sent no result", client=ctx.clientID)
                return {"expired": True, "expire_at": 0, "info": None, "meta": None}
            return result

        def retry(failure: Failure) -> dict[str, Any]:
            return {"expired": False, "expire_at": self._retryAt(), "info": None, "meta": None}

        return self._request("refresh", "", ctx, True, lambda body, meta: body.meta(ctx, meta), parse, retry)

    def rpc(self, ctx: ProxyContext, method: str, data: Optional[bytes]) -> "Deferred[dict[str, Any]]":
        """
        Forward a client RPC, to the proxy its RPC namespace picks (L{routes.rpcProxyName}).

        Request: C{client, transport, protocol, encoding, user, method, data | b64data, meta?}.

        @return: C{{"data": bytes | None}}: the RPCResult data for the client; or fails with L{ProxyError} 104 / 108
            when the method's namespace is unknown or has no proxy.
        """
        route = rpcProxyName(self._config, method)
        if isinstance(route, codes.Error):
            return fail(ProxyError(route))

        def build(body: RequestBody, meta: bool) -> None:
            body.put("method", method)
            body.data(data)
            body.meta(ctx, meta)

        return self._request("rpc", route, ctx, True, build, results.rpcResult, self._internalError)

    def publish(
        self, ctx: ProxyContext, channel: str, data: Optional[bytes], proxy: str = ""
    ) -> "Deferred[dict[str, Any]]":
        """
        Ask the backend whether a client may publish, before anything is published.

        Request: C{client, transport, protocol, encoding, user, channel, data | b64data, meta?}.

        @return: C{{"data": bytes | None, "skip_history": bool}}: C{data}, when not None, replaces what the
            client sent; C{skip_history} publishes without saving to history.
        @param proxy: the channel's C{publish_proxy_name} (C{""}: the publish proxy).
        """

        def build(body: RequestBody, meta: bool) -> None:
            body.put("channel", channel)
            body.data(data)
            body.meta(ctx, meta)

        return self._request("publish", proxy, ctx, True, build, results.publishResult, self._internalError)

    def mapPublish(
        self, ctx: ProxyContext, channel: str, key: str, data: bytes, proxy: str
    ) -> "Deferred[MapWriteDecision]":
        """
        Ask the backend whether a client may set a map key (Centrifugo 6's map publish proxy), before anything is
        written. Request: C{client, transport, protocol, encoding, user, channel, key, data | b64data, meta?}.

        @return: what to write (L{results.mapPublishResult}); C{proxy}: the namespace's C{map.publish_proxy_name}.
        """

        def build(body: RequestBody, meta: bool) -> None:
            body.put("channel", channel)
            body.put("key", key)
            body.data(data)
            body.meta(ctx, meta)

        return self._request("map_publish", proxy, ctx, True, build, results.mapPublishResult, self._internalError)

    def mapRemove(self, ctx: ProxyContext, channel: str, key: str, proxy: str) -> "Deferred[MapWriteDecision]":
        """
        Ask the backend whether a client may remove a map key (the map remove proxy). Request: C{client,
        transport, protocol, encoding, user, channel, key, meta?}; the result may name another C{key}, the removal's
        C{tags} and an C{idempotency_key}.
        """

        def build(body: RequestBody, meta: bool) -> None:
            body.put("channel", channel)
            body.put("key", key)
            body.meta(ctx, meta)

        return self._request("map_remove", proxy, ctx, True, build, results.mapRemoveResult, self._internalError)

    def subscribe(
        self, ctx: ProxyContext, channel: str, request: ProxySubscribeRequest, proxy: str = ""
    ) -> "Deferred[dict[str, Any]]":
        """
        Ask the backend whether a client may subscribe.

        Request: C{client, transport, protocol, encoding, user, channel, token, data | b64data, meta?}.

        @return: C{{"info": bytes | None, "data": bytes | None, "override": {name: bool}, "expire_at": int}}:
            C{info} becomes the subscriber's chan_info, C{data} goes into SubscribeResult.data, C{override}
            replaces the channel options C{presence}, C{join_leave}, C{force_push_join_leave},
            C{force_recovery}, C{force_positioning} for this subscription, and a non-zero C{expire_at} (unix
            seconds) makes the subscription expire (refreshed through sub_refresh). A missing result allows
            the subscription with nothing set.
        @param proxy: the channel's C{subscribe_proxy_name} (C{""}: the subscribe proxy).
        """

        def build(body: RequestBody, meta: bool) -> None:
            body.put("channel", channel)
            body.put("token", request.token)
            body.data(request.data)
            body.meta(ctx, meta)

        return self._request("subscribe", proxy, ctx, True, build, results.subscribeResult, self._internalError)

    def subRefresh(self, ctx: ProxyContext, channel: str, proxy: str = "") -> "Deferred[dict[str, Any]]":
        """
        Ask the backend whether an expiring subscription may live on.

        Request: C{client, transport, protocol, encoding, user, channel, meta?}.

        @return: C{{"expired": bool, "expire_at": int, "info": bytes | None}}, with the rules of L{refresh}.
        @param proxy: the channel's C{sub_refresh_proxy_name} (C{""}: the sub refresh proxy).
        """

        def parse(response: Fields) -> dict[str, Any]:
            result = results.subRefreshResult(response)
            if result is None:
                self.log.error("client {client}: sub_refresh proxy sent no result for {channel}",
                               client=ctx.clientID, channel=channel)
                return {"expired": True, "expire_at": 0, "info": None}
            return result

        def build(body: RequestBody, meta: bool) -> None:
            body.put("channel", channel)
            body.meta(ctx, meta)

        def retry(failure: Failure) -> dict[str, Any]:
            return {"expired": False, "expire_at": self._retryAt(), "info": None}

        return self._request("sub_refresh", proxy, ctx, True, build, parse, retry)

    # The exchange.

    def _retryAt(self) -> int:
        return int(self._reactor.seconds()) + REFRESH_RETRY_DELAY

    @staticmethod
    def _internalError(failure: Failure) -> Any:
        raise ProxyError(codes.ERROR_INTERNAL)

    @staticmethod
    def _headers(target: ProxyEndpoint, ctx: ProxyContext) -> dict[bytes, list[bytes]]:
        # The proxy's static headers, then the connection's headers this proxy forwards (they win, as in
        # Centrifugo's getProxyHeader), then the JSON content type.
        def encode(text: str) -> bytes:
            return text.encode("utf-8", "surrogateescape")

        headers: dict[str, tuple[str, list[str]]] = {
            k.lower(): (k, [v]) for k, v in target.staticHeaders.items()
        }
        for k, values in ctx.headers.items():
            if k.lower() in target.httpHeaders:
                headers[k.lower()] = (k, [values] if isinstance(values, str) else list(values))
        headers.pop("content-type", None)
        result = {encode(k): [encode(v) for v in values] for k, values in headers.values()}
        result[b"Content-Type"] = [b"application/json"]
        return result

    def _request(
        self,
        name: str,
        proxy: str,
        ctx: ProxyContext,
        withUser: bool,
        build: Callable[[RequestBody, bool], None],
        parse: Callable[[Fields], Any],
        onCallFailed: Callable[[Failure], Any],
    ) -> "Deferred[Any]":
        target = endpointFor(self._config, name, proxy)
        if target is None:
            return fail(ProxyError(codes.ERROR_NOT_AVAILABLE))
        endpoint = target.endpoint
        binary = target.binaryEncoding if self._binaryOverride is None else self._binaryOverride
        meta = target.includeMeta if self._metaOverride is None else self._metaOverride
        try:
            body = RequestBody(ctx, binary, withUser)
            build(body, meta)
        except ProxyError as e:
            self.log.error("client {client}: {name} proxy: a payload is not valid JSON", client=ctx.clientID, name=name)
            return fail(e)
        payload = body.encode()
        headers = self._headers(target, ctx)

        callerCancelled = False
        d = callHTTP(self._http, self._reactor, endpoint, headers, payload, target.timeout, self._maxResponseSize)

        def decode(content: bytes) -> Any:
            try:
                response = Fields(orjson.loads(content))
            except orjson.JSONDecodeError as e:
                raise CallFailed(f"response is not JSON: {e}") from None
            except FieldError:
                raise CallFailed("response is not a JSON object") from None
            try:
                return parse(response)
            except Base64Error as e:
                self.log.error("client {client}: {name} proxy: {field}", client=ctx.clientID, name=name,
                               field=str(e))
                raise ProxyError(codes.ERROR_INTERNAL) from None
            except FieldError as e:
                raise CallFailed(str(e)) from None

        def callFailed(failure: Failure) -> Any:
            if isinstance(failure.value, (ProxyError, ProxyDisconnect)):
                return failure
            if callerCancelled:
                raise CancelledError()  # the client is gone: nothing to report or reply
            reason = failure.getErrorMessage() or type(failure.value).__name__
            self.log.error(
                "client {client}: error proxying {name} to {endpoint}: {reason}",
                client=ctx.clientID, name=name, endpoint=endpoint, reason=reason,
            )
            return onCallFailed(failure)

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
