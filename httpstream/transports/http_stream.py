# -*- test-case-name: tests.transports.test_http_stream,tests.transports.test_writemessage -*-
"""
``POST /connection/http_stream``: the long-lived chunked response that carries every reply and push of an
emulated connection (centrifugal/centrifuge ``handler_http_stream.go``).

The request body holds the first commands (the SDK sends its connect); everything after that arrives through
``/emulation``. Each batch the client's writer hands over becomes exactly one HTTP chunk, because the JS SDK
parses chunk by chunk.

Once the response's head is out, the stream takes its TCP connection over from twisted.web, whose channel and
request are then freed (L{httpstream.transports.handoff}; not over TLS nor HTTP/1.0, which stay twisted.web's). A
chunk (its size line, data and CRLF) is one write, and it goes straight to the socket when nothing waits before it
(L{httpstream.directwrite}). A message alone in its batch (nearly every
publication) is framed into its chunk once for all the streams that write it (L{httpstream.transports.framecache}).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Sequence

from twisted.internet.interfaces import IPushProducer
from twisted.web import server
from twisted.web.http_headers import Headers
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from httpstream.interfaces import ITransport
from httpstream.logs import Logger
from httpstream.protocol.framing import encode_varint, varint_delimit
from httpstream.transports._http import STREAM_HEADERS, EmulationEndpoint, isProtobuf
from httpstream.directwrite import direct, unsent, writeNow
from httpstream.transports.framecache import LARGEST, FrameCache
from httpstream.transports.handoff import LAST_CHUNK, StreamProtocol, takeOver

if TYPE_CHECKING:
    from httpstream.node.node import Node


# Unsent bytes past which a paused stream's peer counts as not reading: what Twisted's buffer holds before it pauses
# a producer, which is when a stream's writer used to pause (before the direct write paused it at once).
STUCK = 65536


@implementer(ITransport)
class HTTPStreamTransport:
    """One streaming response."""

    # One per connection, for as long as it lives.
    __slots__ = ("_request", "_out", "_framings", "requestHeaders", "protocol", "_producer", "finished")

    name = "http_stream"
    emulated = True
    pushDisconnect = True
    unidirectional = False

    def __init__(self, request: server.Request, protobuf: bool) -> None:
        # None once the stream has its connection to itself (L{takeOver}).
        self._request: Optional[server.Request] = request
        self.requestHeaders = request.requestHeaders
        self.protocol = "protobuf" if protobuf else "json"
        # A message alone, framed as its whole chunk: shared by every stream of this framing.
        self._framings = self.framings()
        self._producer: Any = None
        # The connection's transport once the response's head is out in chunks: what every later write goes to.
        self._out: Any = None
        self.finished = False

    def takeOver(self, connection: Any) -> None:
        """The stream's head is out and its connection is its own (L{takeOver}): the request is let go."""
        self._request = None
        self._out = connection

    def frame(self, messages: Sequence[bytes]) -> bytes:
        """One batch as the bytes of one chunk."""
        if self.protocol == "protobuf":
            return varint_delimit(messages)
        # Every JSON message ends with a newline, the last one included.
        return b"\n".join(messages) + b"\n"

    def framings(self) -> FrameCache:
        """Where this stream's framing of one message alone is kept (L{frame} of it, chunked)."""
        return _CHUNKS[self.protocol]

    def chunk(self, message: bytes) -> bytes:
        """One message alone, as the whole chunk that carries it: made once for every stream that writes it."""
        return self._framings.framed(message)

    def writeMessage(self, message: bytes) -> None:
        # Nearly every publication, once per subscriber: a batch of one, whose chunk the first stream made.
        out = self._out
        if out is None or self.finished:
            self.writeMessages((message,))
            return
        framings = self._framings
        writeNow(out, framings[message] if len(message) <= LARGEST else framings.framed(message))

    def writeMessages(self, messages: Sequence[bytes]) -> None:
        if self.finished:
            return
        out = self._out
        if out is None:
            request = self._request
            assert request is not None  # None only once _out is set
            channel = request.channel
            if not request.startedWriting or not request.chunked or channel is None:
                # The first write sends the response's head; HTTP/1.0 gets no chunks: twisted.web's way for those.
                request.write(self.frame(messages))
                return
            out = self._out = channel.transport
        data = self.chunk(messages[0]) if len(messages) == 1 else chunked(self.frame(messages))
        # What Request.write does, less its bookkeeping (sentLength, which only an access log would read).
        writeNow(out, data)

    def registerProducer(self, producer: IPushProducer) -> None:
        self._producer = producer
        if self._request is None:
            # The connection's own producer: TCP pauses it while the socket is busy (what the channel passed on).
            self._out.registerProducer(producer, True)
        else:
            self._request.registerProducer(producer, True)

    def close(self, code: int, reason: str) -> None:
        if self.finished:
            return
        self.finished = True
        request = self._request
        if request is None:
            self._end(self._out)
            return
        if self._producer is not None:
            request.unregisterProducer()
        if getattr(request, "_disconnected", False):
            return
        stuck = self._stuck()
        request.finish()
        if stuck is not None:
            stuck.abortConnection()

    def _end(self, connection: Any) -> None:
        """End a taken-over stream: its last chunk, then the connection closes (no channel is left to reuse it)."""
        stuck = self._stuck()
        if self._producer is not None:
            connection.unregisterProducer()
        if not connection.connected or connection.disconnecting:
            return
        if stuck is not None:
            connection.abortConnection()
            return
        writeNow(connection, LAST_CHUNK)
        connection.loseConnection()

    def _stuck(self) -> Any:
        """
        The connection's transport when its peer has stopped reading (it will not read the end either, so its
        socket and buffers are not kept waiting for it), else None.
        """
        producer = self._producer
        if not getattr(producer, "paused", False):
            return None
        request = self._request
        transport: Any = self._out if request is None else request.channel.transport
        if direct(transport) and not getattr(producer, "overflowed", False) and unsent(transport) <= STUCK:
            # Paused as its socket was busy for a moment (a direct write pauses at once), not past the queue limit
            # (3008) nor past what Twisted's buffer would hold: a peer that reads gets the end.
            return None
        return transport

    def lost(self) -> None:
        """The peer went away: nothing more may be written."""
        if not self.finished:
            self.finished = True
            request = self._request
            # After connectionLost the request has no channel (which dropped the producer itself):
            # unregistering then raises, and the client would never hear that its stream is gone. A taken-over
            # connection drops its producer itself.
            if self._producer is not None and request is not None and request.channel is not None:
                request.unregisterProducer()


def chunked(data: bytes) -> bytes:
    """C{data} as one HTTP/1.1 chunk: its size in hex, CRLF, the data, CRLF."""
    return b"%x\r\n%b\r\n" % (len(data), data)


# One message alone in its chunk, by protocol: newline-terminated JSON, varint-delimited Protobuf.
_CHUNKS = {
    "json": FrameCache(lambda message: chunked(message + b"\n")),
    "protobuf": FrameCache(lambda message: chunked(encode_varint(len(message)) + message)),
}


class HTTPStreamResource(EmulationEndpoint):
    """Opens a stream per POST and hands its body to a new client."""

    log = Logger()

    def renderPost(self, request: server.Request, body: bytes) -> bytes | int:
        protobuf = isProtobuf(request)
        contentType = b"application/octet-stream" if protobuf else b"application/json"
        return openStream(self._node, request, HTTPStreamTransport(request, protobuf), contentType, body)


def openStream(
    node: Node,
    request: server.Request,
    transport: HTTPStreamTransport,
    contentType: bytes,
    body: bytes,
    preamble: bytes = b"",
    connect: Optional[dict[str, Any]] = None,
) -> int:
    """
    Start a streaming response (200, its headers and any C{preamble}) and run its first commands on a new
    client, which ends when the stream does, whichever side ends it. A unidirectional transport gives its
    C{connect} request instead of a C{body} of commands.
    """
    request.setResponseCode(200)
    request.setHeader(b"Content-Type", contentType)
    for name, value in STREAM_HEADERS:
        request.setHeader(name, value)
    # The connection ends with the stream (a taken-over one has no channel left to read another request; a kept
    # one is closed the same way), and the head says so: a client that pooled it as kept alive would send its
    # next request (an /emulation POST) into a connection being closed, and lose it.
    request.setHeader(b"Connection", b"close")
    if request.channel is not None:
        request.channel.persistent = False
    # The headers go out now (with the preamble, if any): then what only the start of the response needed can go.
    request.write(preamble)
    connection = takeOver(request)
    if connection is None:
        _forgetRequestState(request)
    else:
        # Before the client exists: it registers its writer as the connection's producer.
        transport.takeOver(connection)
    client = node.newClient(transport)
    if connection is not None:
        StreamProtocol(transport, client).attach(connection)
    else:
        def gone(_: object) -> None:
            transport.lost()
            client.transportClosed()

        request.notifyFinish().addErrback(gone)
    if connect is not None:
        client.connect(connect)
    else:
        client.handleData(body)
    return NOT_DONE_YET


def _forgetRequestState(request: server.Request) -> None:
    """
    Drop what a twisted.web request keeps that a long-lived stream no longer needs, once its headers are out:
    the body buffer (already read), the parsed query arguments, the response headers (already sent), and Klein's
    routing state. Each
    of tens of thousands of streams would hold them for as long as it lives.
    """
    content = request.content
    if content is not None:
        content.close()
    request.content = None
    request.args = {}
    request.responseHeaders = Headers()
    # Klein's per-request routing state (its KleinRequest and the route's map adapter, ~1 KiB), adapted anew should
    # anything ask for it again.
    request._adapterCache = {}  # twisted.python.components.Componentized's cache
