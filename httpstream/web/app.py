# -*- test-case-name: tests.transports.test_http_stream -*-
"""
The HTTP face of a node: Klein routes onto the transport resources, served by a twisted.web Site whose requests
cap the bodies they keep.
"""

from __future__ import annotations

from typing import Any, Optional
from urllib.parse import urlsplit

from klein import Klein
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from twisted.web import http, server
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource

from httpstream.serverapi.api import ServerAPI
from httpstream.config import Config
from httpstream.serverapi.http import MAX_BODY as API_MAX_BODY
from httpstream.serverapi.http import APIHandler
from httpstream.web.fastpath import DirectRoutes
from httpstream.web.httpchannel import ReadDeadlineChannel, readDeadlineChannel
from httpstream.interfaces import IOriginChecker
from httpstream.logs import Logger
from httpstream.metrics import CONTENT_TYPE
from httpstream.node.node import Node
from httpstream.origin import OriginChecker
from httpstream.transports._http import LimitedRequest, limitedRequestFactory
from httpstream.transports.deflate import Compression
from httpstream.transports.emulation import EmulationResource
from httpstream.transports.http_stream import HTTPStreamResource
from httpstream.transports.sse import SSEResource
from httpstream.transports.uni_http_stream import UniHTTPStreamResource
from httpstream.transports.uni_sse import UniSSEResource
from httpstream.transports.uni_websocket import uniWebsocketResource
from httpstream.transports.websocket import websocketResource

# Klein would answer a method outside a route's list with its own HTML 405; the resources answer every method
# themselves (empty 405, CORS preflight), so each route takes them all.
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


class Status(Resource):
    """An empty response with one status code: what a disabled endpoint answers."""

    isLeaf = True

    def __init__(self, code: int) -> None:
        Resource.__init__(self)
        self._code = code

    def render(self, request: server.Request) -> bytes:
        request.setResponseCode(self._code)
        return b""


NOT_FOUND = Status(404)
# A request to a connection endpoint past the node's connection limit or rate (Centrifugo's ConnLimit middleware).
SERVICE_UNAVAILABLE = Status(503)


class HandshakeRefusal(Resource):
    """
    What Centrifugo's WebSocket endpoint answers a request that is not a WebSocket handshake (gorilla's
    upgrader: the status text as plain text, and the version it speaks), instead of Autobahn's HTML page.
    """

    isLeaf = True

    def __init__(self, code: int, text: bytes) -> None:
        Resource.__init__(self)
        self._code = code
        self._body = text + b"\n"

    def render(self, request: server.Request) -> bytes:
        request.setResponseCode(self._code)
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        request.setHeader(b"X-Content-Type-Options", b"nosniff")
        request.setHeader(b"Sec-Websocket-Version", b"13")
        return self._body


_NOT_GET = HandshakeRefusal(405, b"Method Not Allowed")
_NOT_A_HANDSHAKE = HandshakeRefusal(400, b"Bad Request")


def _hasToken(request: server.Request, header: bytes, token: bytes) -> bool:
    value = request.getHeader(header) or b""
    return token in (part.strip().lower() for part in value.split(b","))


def handshakeRefusal(request: server.Request) -> Optional[IResource]:
    """The refusal for a request to /connection/websocket that is not an upgrade, or None for a handshake."""
    if not (_hasToken(request, b"connection", b"upgrade") and _hasToken(request, b"upgrade", b"websocket")):
        return _NOT_A_HANDSHAKE
    if request.method != b"GET":
        return _NOT_GET
    return None


def websocketCompression(config: Config) -> Optional[Compression]:
    """The WebSocket endpoint's permessage-deflate settings, or None when C{websocket_compression} is off."""
    if not config.websocket_compression:
        return None
    # Centrifugo's default bound on what a compressed client message may inflate to: 10 times the wire limit.
    decompressed = config.websocket_decompressed_message_size_limit or 10 * config.websocket_message_size_limit
    return Compression(config.websocket_compression_level, config.websocket_compression_min_size, decompressed)


def emulationResource(node: Node, origins: IOriginChecker) -> IResource:
    """C{/emulation}: the upstream half of both emulated transports (Centrifugo mounts it when either is on)."""
    config = node.config
    if config.http_stream or config.sse:
        return EmulationResource(node, origins, config.emulation_max_request_body_size)
    return NOT_FOUND


def makeApp(
    node: Node, origins: IOriginChecker, api: Optional[ServerAPI] = None, emulation: Optional[IResource] = None
) -> Klein:
    """
    The routes of one node, each enabled by its config flag (a disabled endpoint answers 404).

    @param emulation: the C{/emulation} resource, when the caller has made it (L{makeSite} also routes to it
        directly); by default, L{emulationResource}'s.
    """
    config = node.config
    app = Klein()
    # "/demo//x" or "/api//info" is no route (404), not a redirect to a merged path.
    app.url_map.merge_slashes = False
    stream: IResource = NOT_FOUND
    sse: IResource = NOT_FOUND
    if emulation is None:
        emulation = emulationResource(node, origins)
    websocket: IResource = NOT_FOUND
    if config.http_stream:
        stream = HTTPStreamResource(node, origins, config.http_stream_max_request_body_size)
    if config.sse:
        sse = SSEResource(node, origins, config.sse_max_request_body_size)
    if not config.websocket_disable:
        websocket = websocketResource(
            node,
            origins,
            config.websocket_message_size_limit,
            config.websocket_write_batch_size,
            websocketCompression(config),
        )
    uni: dict[str, IResource] = {}
    if config.uni_http_stream:
        uni["uni_http_stream"] = UniHTTPStreamResource(node, origins, config.uni_http_stream_max_request_body_size)
    if config.uni_sse:
        uni["uni_sse"] = UniSSEResource(node, origins, config.uni_sse_max_request_body_size)
    if config.uni_websocket:
        uni["uni_websocket"] = uniWebsocketResource(node, origins, config.uni_websocket_message_size_limit)

    def connecting(endpoint: IResource) -> Optional[IResource]:
        """
        The one gate of every connection endpoint (not /emulation, which opens none): past the node's limits a
        request gets an empty 503 before anything else (origin, method, handshake), as from Centrifugo, whose
        middleware runs first; preflights count too. A disabled endpoint stays a plain 404.
        """
        if endpoint is NOT_FOUND or node.connLimit.admit():
            return None
        return SERVICE_UNAVAILABLE

    @app.route("/connection/http_stream", methods=ALL_METHODS)
    def httpStream(request: server.Request) -> IResource:
        return connecting(stream) or stream

    @app.route("/connection/sse", methods=ALL_METHODS)
    def eventStream(request: server.Request) -> IResource:
        return connecting(sse) or sse

    @app.route("/connection/websocket", methods=ALL_METHODS)
    def webSocket(request: server.Request) -> IResource:
        refused = connecting(websocket)
        if refused is not None:
            return refused
        if websocket is not NOT_FOUND:
            refusal = handshakeRefusal(request)
            if refusal is not None:
                return refusal
        return websocket

    @app.route("/connection/<any(uni_http_stream, uni_sse, uni_websocket):name>", methods=ALL_METHODS)
    def unidirectional(request: server.Request, name: str) -> IResource:
        resource = uni.get(name, NOT_FOUND)
        refused = connecting(resource)
        if refused is not None:
            return refused
        if name == "uni_websocket" and resource is not NOT_FOUND:
            refusal = handshakeRefusal(request)
            if refusal is not None:
                return refusal
        return resource

    routed = emulation

    @app.route("/emulation", methods=ALL_METHODS)
    def emulate(request: server.Request) -> IResource:
        return routed

    if not config.api_disable:
        handler = APIHandler(api or ServerAPI(node), config)

        @app.route("/api/<string:method>", methods=ALL_METHODS)
        def serverAPI(request: server.Request, method: str) -> Any:
            return handler.handle(request, method)

    if config.health:

        @app.route("/health", methods=["GET", "HEAD"])
        def health(request: server.Request) -> bytes:
            request.setHeader(b"Content-Type", b"application/json")
            return b"{}"

    if config.prometheus:

        @app.route("/metrics", methods=["GET", "HEAD"])
        def metrics(request: server.Request) -> bytes:
            request.setHeader(b"Content-Type", CONTENT_TYPE)
            return node.metrics.exposition()

    if config.demo:
        from httpstream.web.demo import demoResource

        demo = demoResource(config)

        @app.route("/demo/", branch=True, methods=["GET", "HEAD"])
        def demoPage(request: server.Request) -> IResource:
            return demo

    app.handle_errors(answerError)

    return app


log = Logger()


def answerError(request: IRequest, failure: Failure) -> bytes:
    """
    The app's answer to an exception from a route: werkzeug's NotFound and friends keep their status and lose their
    HTML; anything else is logged and answered 500, empty. (Also the direct routes', L{DirectRoutes}.)
    """
    code = getattr(failure.value, "code", None)
    if isinstance(code, int):
        request.setResponseCode(code)
        newURL = getattr(failure.value, "new_url", None)
        if isinstance(newURL, str):
            # Werkzeug's redirect ("/demo" -> "/demo/"): to the path on this host, never to the Host header's.
            parts = urlsplit(newURL)
            path = "/" + parts.path.lstrip("/")  # "//host/..." would leave this host
            request.setHeader(b"Location", (path + (f"?{parts.query}" if parts.query else "")).encode())
        return b""
    log.failure("unhandled error in {path}", failure, path=request.path)
    request.setResponseCode(500)
    return b""


class QuietSite(server.Site):
    """
    A Site whose access log never holds a query string: an SSE connect URL or an API call may carry a token or
    a key there.
    """

    def __init__(self, resource: IResource, timeout: float | None, reactor: IReactorTime) -> None:
        # No endpoint takes a form: without parsing them, a POST no longer builds an email.message per request
        # (whose cyclic garbage made the collector pause for tens of ms every thousand requests: bench/README.md).
        server.Site.__init__(self, resource, timeout=timeout, parsePOSTFormSubmission=False, reactor=reactor)

    def log(self, request: http.Request) -> None:
        log.debug(
            "{method} {path} {code}",
            method=request.method.decode("ascii", "replace"),
            path=request.path.decode("ascii", "replace"),
            code=request.code,
        )


class UTF8Guard(Resource):
    """
    Answers 400 (empty) to a request whose path or Host is not UTF-8, before Klein sees it: Klein would log a
    traceback for each one, which any client could use to flood the log.
    """

    isLeaf = True

    def __init__(self, app: IResource) -> None:
        Resource.__init__(self)
        self._app = app

    def render(self, request: server.Request) -> bytes | int:
        try:
            for part in (
                b"/".join(request.prepath or ()),
                b"/".join(request.postpath or ()),
                request.getRequestHostname(),
            ):
                part.decode("utf-8")
        except UnicodeDecodeError:
            request.setResponseCode(400)
            return b""
        # IResource.render's contract: the body, or NOT_DONE_YET (an int).
        rendered: bytes | int = self._app.render(request)
        return rendered


def makeSite(
    node: Node, origins: IOriginChecker | None = None, api: Optional[ServerAPI] = None, directRoutes: bool = True
) -> server.Site:
    """
    The Site serving C{node}; bodies are capped at the largest endpoint limit (each endpoint checks its own).

    @param directRoutes: whether C{POST /emulation} goes straight to its resource (L{DirectRoutes}); without,
        Klein routes it as it does the rest (the tests compare the two).
    """
    config: Config = node.config
    if origins is None:
        origins = OriginChecker(config.allowed_origins)
    # Twisted suspends the idle timeout while a request is handled, so a stream lives on; it bounds idle keep-alive
    # connections (12 hours by default), and the channel's read deadlines bound peers that dribble a request.
    emulation = emulationResource(node, origins)
    app = makeApp(node, origins, api, emulation).resource()
    # POST /emulation, the one request an emulated transport sends per command, skips Klein's routing (fastpath.py).
    direct = {} if emulation is NOT_FOUND or not directRoutes else {b"/emulation": emulation}
    site = QuietSite(
        UTF8Guard(DirectRoutes(app, direct, answerError)),
        timeout=config.http_server_idle_timeout or None,
        reactor=node.reactor,
    )
    # Twisted's way to choose a Site's channel, which HTTPFactory declares as a method (its H2-or-HTTP/1.1 factory).
    site.protocol = readDeadlineChannel(  # type: ignore[method-assign,assignment]
        config.http_server_read_header_timeout, config.http_server_read_timeout
    )
    limited = limitedRequestFactory(
        max(
            config.http_stream_max_request_body_size,
            config.emulation_max_request_body_size,
            config.sse_max_request_body_size,
            config.uni_http_stream_max_request_body_size,
            config.uni_sse_max_request_body_size,
            0 if config.api_disable else API_MAX_BODY,
        ),
        {
            b"/connection/http_stream": config.http_stream_max_request_body_size,
            b"/connection/sse": config.sse_max_request_body_size,
            b"/connection/uni_http_stream": config.uni_http_stream_max_request_body_size,
            b"/connection/uni_sse": config.uni_sse_max_request_body_size,
            b"/emulation": config.emulation_max_request_body_size,
            b"/api/": 0 if config.api_disable else API_MAX_BODY,
            # Routes without a body (WebSocket, health, metrics, demo) keep none of one.
            b"/": 0,
        },
    )

    class Request(UnbrandedRequest):
        maxBody = limited.maxBody
        limits = limited.limits

    site.requestFactory = Request
    return site


class UnbrandedRequest(LimitedRequest):
    """
    A request whose response names no server: twisted.web adds "Server: TwistedWeb/<version>" to every response,
    a banner Centrifugo does not send and an operator should not have to hide at the proxy.
    """

    def write(self, data: bytes) -> None:
        if not self.startedWriting:
            self.responseHeaders.removeHeader(b"server")
            channel = self.channel
            if not data and isinstance(channel, ReadDeadlineChannel):
                # The head alone (an empty body, or a stream's head before its first chunk): the channel sends it
                # at once.
                channel.headOnly = True
                try:
                    super().write(data)  # type: ignore[no-untyped-call]
                finally:
                    channel.headOnly = False
                return
        super().write(data)  # type: ignore[no-untyped-call]  # twisted.web's Request.write is unannotated
