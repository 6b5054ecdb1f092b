# -*- test-case-name: tests.transports.test_handoff -*-
"""
The connection of an open stream, taken over from twisted.web once the response's head is out.

For as long as a response lasts twisted.web keeps its L{HTTPChannel} and its L{Request}: two attribute dicts of
some 1.6 and 0.8 KB, the request's and response's headers, two address objects, the finish notifications, the
channel's buffers and queues; about 4 KiB per connection. An http_stream or SSE stream never uses any of it again
once its head is written: it writes chunks straight to the socket (L{httpstream.directwrite}) until it ends.
So L{takeOver} makes a L{StreamProtocol} the TCP connection's protocol in the channel's place, the client's writer
becomes the connection's producer, and the channel and the request become garbage.

What the channel did for a stream, and what happens now:
    - the peer goes away: the connection's C{connectionLost} tells the stream and its client, as the request's
      finish notification did;
    - back-pressure: the TCP transport pauses and resumes the writer itself (the channel only passed those on);
    - bytes from the peer: a stream's peer sends none; any that come are read and dropped, so that a peer that
      leaves is still noticed (the channel kept up to 16 KiB of them for a next request, then stopped reading);
    - the end: the last chunk, then the connection is closed. It is not kept alive for another request: that
      would need a channel again, and the SDKs open a new connection for each stream anyway.

Only a plain TCP connection is taken over (a TLS one's protocol sits inside the TLS layer; a test's fake transport
is not a socket), and only a chunked response (HTTP/1.1): anything else stays twisted.web's to the end.
"""

from __future__ import annotations

from typing import Any, Optional, cast

from twisted.internet.interfaces import IProtocol
from twisted.internet.protocol import connectionDone
from twisted.internet.tcp import Connection
from twisted.python.failure import Failure
from twisted.web import server
from zope.interface import implementer

from httpstream.directwrite import direct

__all__ = ["takeOver", "untie", "StreamProtocol", "LAST_CHUNK"]

# The zero-length chunk that ends a chunked body (no trailers).
LAST_CHUNK = b"0\r\n\r\n"


def takeOver(request: server.Request) -> Optional[Connection]:
    """
    The TCP connection of C{request}, whose head is out in chunks, taken from its channel (which is no longer
    its producer nor, once L{StreamProtocol.attach} has run, its protocol); None when it must stay twisted.web's.
    """
    channel = request.channel
    if channel is None or not request.startedWriting or not request.chunked:
        return None
    transport: Any = channel.transport
    if not direct(transport) or transport.protocol is not channel:
        return None
    # The channel registered itself as the connection's producer when it was made; the writer takes its place.
    transport.unregisterProducer()
    # The channel's pauses were its own: a pause of the channel (a busy socket) must not pass for the writer's,
    # which is paused at its first write that waits; and a channel that stopped reading (16 KiB pipelined
    # behind the stream's request) must not leave the stream deaf to its peer's leaving.
    transport.producerPaused = False
    transport.resumeProducing()
    # What the channel has not parsed yet (a stream's peer sends nothing for it) goes with it: the parser, still
    # on the stack when a stream opens within a read, then has nothing left to act on.
    channel.clearLineBuffer()
    # twisted.web writes a request's access log line when it finishes, which a taken-over stream never does: the
    # line is written now, with the head's status, so every stream still has its one.
    site = getattr(channel, "site", None)
    if site is not None:
        site.log(request)
    untie(request)
    return cast(Connection, transport)


def untie(request: server.Request) -> None:
    """
    Part C{request} from its channel, once another protocol has its connection (a stream here, or a WebSocket).

    The request and its channel refer to each other: untied, both go as soon as nothing else holds them, instead
    of at the garbage collector's next look at an older generation, where most of them were by then (promoted
    while the request was read) and where they would wait, some 4 KiB each, through thousands of connections.
    """
    request.channel = None  # type: ignore[assignment]  # twisted.web's own Request.connectionLost does the same


@implementer(IProtocol)
class StreamProtocol:
    """
    The protocol of a taken-over stream's connection: it drops what the peer sends and, when the connection is
    lost, tells the stream (which then writes nothing more) and its client (which ends).

    @ivar _stream: the stream (an L{httpstream.transports.http_stream.HTTPStreamTransport}): its C{lost()}.
    @ivar _client: the stream's client: its C{transportClosed()}.
    """

    # One per open stream.
    __slots__ = ("_stream", "_client")

    def __init__(self, stream: Any, client: Any) -> None:
        self._stream = stream
        self._client = client

    def attach(self, connection: Connection) -> None:
        """Become C{connection}'s protocol (its channel's place)."""
        connection.protocol = self

    def makeConnection(self, transport: Any) -> None:
        # IProtocol's way in; a taken-over connection is already made (L{attach}).
        self.connectionMade()

    def connectionMade(self) -> None:
        pass

    def dataReceived(self, data: bytes) -> None:
        # Nothing after the request is for a stream; kept reading (not paused) so that a peer's close is seen.
        pass

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._stream.lost()
        self._client.transportClosed()
