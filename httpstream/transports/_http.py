# -*- test-case-name: tests.transports.test_http_stream,tests.transports.test_origins,tests.test_origin -*-
"""
What the emulated HTTP endpoints share: the C{allowed_origins} check (403), method dispatch with empty-bodied 405s,
CORS preflights, and request bodies with a hard size limit.
"""

from __future__ import annotations

from io import BytesIO
from urllib.parse import urlsplit
from typing import TYPE_CHECKING, Optional

from twisted.web import server
from twisted.web.resource import Resource

from httpstream.interfaces import IOriginChecker
from httpstream.logs import Logger
from httpstream.origin import cors_headers

if TYPE_CHECKING:
    from httpstream.node.node import Node

PROTOBUF_CONTENT_TYPE = b"application/octet-stream"

log = Logger()

# Headers every streaming response carries (Centrifugo's handler_http_stream.go), so that no proxy caches or
# buffers the stream.
STREAM_HEADERS = (
    (b"Cache-Control", b"private, no-cache, no-store, must-revalidate, max-age=0"),
    (b"Pragma", b"no-cache"),
    (b"Expire", b"0"),
    (b"X-Accel-Buffering", b"no"),
)


class LimitedRequest(server.Request):
    """
    A request that keeps at most its route's body limit in memory.

    Twisted reads a whole body before rendering; this caps what it stores (counting the rest), so a huge upload
    costs bandwidth, not memory, and the resource answers 413.

    @cvar maxBody: what a request keeps when no entry of C{limits} names its path.
    @cvar limits: (path prefix, bytes kept) pairs, the first match wins: each endpoint's own limit, so that a
        request to a 64 KB endpoint never holds the 4 MiB the API may take.
    @ivar bodyLength: how many body bytes arrived, kept or not.
    """

    maxBody = 65536
    limits: tuple[tuple[bytes, int], ...] = ()

    def gotLength(self, length: Optional[int]) -> None:
        self.bodyLength = 0
        self.content = BytesIO()
        # The request line is parsed but requestReceived (which sets self.path) comes after the body: the channel
        # holds the target meanwhile (a private name: without it, every route keeps maxBody, as before).
        target = getattr(self.channel, "_path", b"")
        self._keep = self.maxBody
        if isinstance(target, bytes):
            path = target.split(b"?", 1)[0]
            if not path.startswith(b"/"):
                # The absolute form ("http://host/path"): its path decides, as anywhere else.
                path = b"/" + path.split(b"://", 1)[-1].partition(b"/")[2]
            for prefix, limit in self.limits:
                if path.startswith(prefix):
                    self._keep = limit
                    break

    def handleContentChunk(self, data: bytes) -> None:
        room = self._keep - self.bodyLength
        self.bodyLength += len(data)
        if room > 0:
            content = self.content
            assert content is not None  # set by gotLength, which Twisted calls before any chunk
            content.write(data[:room])


def limitedRequestFactory(maxBody: int, limits: dict[bytes, int] | None = None) -> type[LimitedRequest]:
    """
    A L{LimitedRequest} subclass that keeps up to C{maxBody} bytes, or C{limits[prefix]} for a path that starts
    with C{prefix}.
    """
    return type("LimitedRequest", (LimitedRequest,), {"maxBody": maxBody, "limits": tuple((limits or {}).items())})


def readBody(request: server.Request, limit: int) -> Optional[bytes]:
    """
    The request body, or None when it is over C{limit} bytes, or when the request kept less of it than arrived
    (its route's cap is below C{limit}: a truncated body must never be taken for the whole one).
    """
    length = getattr(request, "bodyLength", None)
    content = request.content
    assert content is not None  # a request is rendered once its body has arrived
    content.seek(0)
    body: bytes = content.read(limit + 1)
    if (length is not None and (length > limit or length > len(body))) or len(body) > limit:
        return None
    return body


def isProtobuf(request: server.Request) -> bool:
    """Protobuf only when Content-Type is exactly application/octet-stream (parameters mean JSON)."""
    return request.getHeader(b"content-type") == PROTOBUF_CONTENT_TYPE


class EndpointResource(Resource):
    """Base of the HTTP endpoints of the node's transports: the node, the origin checker, the body size limit."""

    isLeaf = True

    def __init__(self, node: "Node", origins: IOriginChecker, maxBodySize: int) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._node = node
        self._origins = origins
        self._maxBodySize = maxBodySize


class EmulationEndpoint(EndpointResource):
    """
    Base of the endpoints the JS SDK reaches with C{fetch} (http_stream, emulation): POST does the work,
    OPTIONS answers a CORS preflight with 204, any other method gets an empty 405.
    """

    def render(self, request: server.Request) -> bytes | int:
        if not admitOrigin(self._origins, request):
            return b""
        if request.method == b"POST":
            body = readBody(request, self._maxBodySize)
            if body is None:
                request.setResponseCode(413)
                return b""
            return self.renderPost(request, body)
        if request.method == b"OPTIONS":
            request.setResponseCode(204)
            request.setHeader(b"Access-Control-Max-Age", b"300")
            request.setHeader(b"Access-Control-Allow-Methods", b"POST, OPTIONS")
            return b""
        request.setResponseCode(405)
        return b""

    def renderPost(self, request: server.Request, body: bytes) -> bytes | int:
        """Handle a POST whose body is within the limit."""
        raise NotImplementedError


def admitOrigin(origins: IOriginChecker, request: server.Request) -> bool:
    """
    The C{allowed_origins} check of a request to an HTTP transport (preflights included), before anything else.

    A request passes without an Origin (curl, centrifuge-python, any non-browser client), with an Origin the list
    admits (it then gets Centrifugo's CORS headers: the Origin echoed, never C{*}), or from a page of this very
    host (its Origin's host is the request's Host, as gorilla's same-origin check has it). Anything else is
    answered 403 with an empty body and no CORS headers, and is not served.

    Centrifugo serves those requests and only leaves the CORS headers out: the browser then hides the response
    from a foreign page but the request itself has run (a stream opened, commands run, the page's cookies sent on
    to the connect proxy). Refusing them is stricter, and still what a browser sees from Centrifugo: a page of
    the server's own host works with C{allowed_origins} empty, a foreign one does not.

    @return: True when the request may go on; False when it has been answered 403.
    """
    # Bytes: Twisted's str getHeader raises on a value that is not UTF-8.
    origin = request.getHeader(b"origin")
    headers = cors_headers(origins, origin, request.getHeader(b"access-control-request-headers"))
    if headers is None and origin and not _sameHost(origin, request.getHeader(b"host")):
        # An empty Origin counts as none (Go's Header.Get cannot tell them apart): only a non-empty one is refused.
        shown = origin[:200].decode("latin-1")
        log.info("request refused: origin {origin!r} not in allowed_origins", origin=shown)
        request.setResponseCode(403)
        return False
    for name, value in (headers or {}).items():
        request.setHeader(name, value)
    return True


def _sameHost(origin: str | bytes, host: str | bytes | None) -> bool:
    """Whether C{origin}'s host[:port] is C{host} (ASCII case ignored); C{null} and unparsable origins are not."""
    if not host:
        return False
    originText = origin.decode("latin-1") if isinstance(origin, bytes) else origin
    hostText = host.decode("latin-1") if isinstance(host, bytes) else host
    try:
        netloc = urlsplit(originText).netloc
    except ValueError:
        return False
    return bool(netloc) and "@" not in netloc and netloc.lower() == hostText.lower()
