"""
Tests for L{httpstream.transports.handoff}: an http_stream or SSE stream on a real TCP transport (Twisted's
C{tcp.Server} over a connected pair of loopback sockets) served by the real Site, Klein app and resources of a
L{MemoryServer}. No reactor runs: the test plays its part (C{doRead} when the server's socket has bytes, C{doWrite}
when it may write, C{connectionLost} when C{doRead} reports the end).
"""

from __future__ import annotations

import gc
import socket
import time
import weakref
from typing import Any, Optional
from urllib.parse import quote

import orjson
import pytest
from twisted.internet.interfaces import IProtocol
from twisted.internet.tcp import Server
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from httpstream.testing import MemoryServer
from httpstream.transports.handoff import LAST_CHUNK, StreamProtocol
from httpstream.directwrite import unsent
from tests.transports.test_direct import connectedPair
from tests.web.helpers import serve

CONNECT = b'{"id":1,"connect":{}}'


def streamRequest(body: bytes = CONNECT, version: bytes = b"HTTP/1.1") -> bytes:
    return (b"POST /connection/http_stream " + version + b"\r\nHost: localhost\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body) + body)


class Peer:
    """One connection to C{server}'s Site over real sockets: the server's TCP transport and the peer's socket."""

    def __init__(self, server: MemoryServer, sendBuffer: int = 0, receiveBuffer: int = 0) -> None:
        self.server = server
        sock, self.sock = connectedPair(sendBuffer, receiveBuffer)
        self.channel: Any = server.site.buildProtocol(("127.0.0.1", 0))  # type: ignore[arg-type]
        self.transport = Server(sock, self.channel, ("127.0.0.1", 1), None, 1, server.reactor)  # type: ignore[arg-type]
        self.channel.makeConnection(self.transport)
        self.received = b""
        self.lost: Optional[Failure] = None

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)
        self.pump()

    def pump(self) -> None:
        """What the reactor would do now: read what came, run the calls due, write what is buffered."""
        if self.lost is not None:
            return
        why = self.transport.doRead()
        if why is not None:
            self.lose(why)
            return
        self.server.advance(0)
        if self.transport in self.server.reactor.getWriters():
            # Bytes to send, or a close to finish: what the kernel does not take waits for the peer to read.
            why = self.transport.doWrite()
            if why is not None:
                self.lose(why)

    def lose(self, why: Any) -> None:
        self.lost = Failure(why) if isinstance(why, BaseException) else why
        self.transport.connectionLost(self.lost)

    def read(self, until: bytes) -> bytes:
        """Read until C{until} has arrived (or the connection ends); what came so far."""
        self.sock.settimeout(0.05)
        deadline = time.monotonic() + 10
        while until not in self.received and time.monotonic() < deadline:
            self.pump()
            try:
                chunk = self.sock.recv(1 << 16)
            except (BlockingIOError, socket.timeout):
                continue
            if not chunk:
                break
            self.received += chunk
        return self.received

    def close(self) -> None:
        self.sock.close()
        if self.lost is None:
            self.transport.connectionLost(Failure(ConnectionError("test over")))


@pytest.fixture
def server() -> Any:
    with serve({"sse": True, "ping_interval": "2s", "pong_timeout": "1s", "client_queue_max_size": 100_000}) as memory:
        yield memory


@pytest.fixture
def peer(server: MemoryServer) -> Any:
    made = Peer(server)
    yield made
    made.close()


def openedStream(peer: Peer) -> StreamProtocol:
    peer.send(streamRequest())
    peer.read(b'"connect"')
    protocol = peer.transport.protocol
    assert isinstance(protocol, StreamProtocol)
    return protocol


def test_streamTakesOverItsConnection(server: MemoryServer) -> None:
    """
    Once its head is out, the stream's connection has a StreamProtocol and the client's writer as its producer;
    the channel is freed at once, the request once Klein's own garbage (a cycle of closures) is collected.
    """
    requests: list[weakref.ref[Any]] = []
    factory = server.site.requestFactory

    def recording(*args: Any) -> Any:
        request = factory(*args)
        requests.append(weakref.ref(request))
        return request

    server.site.requestFactory = recording
    peer = Peer(server)
    channel = weakref.ref(peer.channel)
    peer.send(streamRequest())
    received = peer.read(b'"connect"')
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Transfer-Encoding: chunked" in head and b"Content-Type: application/json" in head
    size, _, rest = body.partition(b"\r\n")
    message = rest[: int(size, 16)]
    assert orjson.loads(message)["connect"]["session"]
    assert isinstance(peer.transport.protocol, StreamProtocol)
    verifyObject(IProtocol, peer.transport.protocol)
    assert type(peer.transport.producer).__name__ == "Writer"
    del peer.channel
    assert channel() is None
    gc.collect()
    assert len(requests) == 1 and requests[0]() is None
    peer.close()


def test_pushesArriveAsChunks(server: MemoryServer, peer: Peer) -> None:
    """A server ping (an empty reply) arrives in its own chunk, straight on the socket."""
    openedStream(peer)
    server.advance(2)
    assert peer.read(b"3\r\n{}\n\r\n").endswith(b"3\r\n{}\n\r\n")


def test_closeEndsTheStreamAndTheConnection(server: MemoryServer, peer: Peer) -> None:
    """
    The server ends the stream (no pong): the Disconnect push, the last chunk, then the connection is closed (it
    has no channel left to serve another request on).
    """
    openedStream(peer)
    server.advance(2)
    server.advance(1)
    received = peer.read(LAST_CHUNK)
    assert b'{"push":{"disconnect":{"code":3012,"reason":"no pong"}}}' in received
    assert received.endswith(b"\r\n" + LAST_CHUNK)
    assert peer.transport.disconnecting
    peer.pump()
    assert peer.sock.recv(100) == b""  # closed after the last chunk
    assert not server.node.clients
    # ... as the head said: a client does not put the connection in its pool for a next request.
    assert b"\r\nConnection: close\r\n" in received.partition(b"\r\n\r\n")[0] + b"\r\n"


def test_aStreamNotTakenOverEndsItsConnectionToo(server: MemoryServer) -> None:
    """An HTTP/1.0 stream (twisted.web's to the end) also says Connection: close and is closed at its end."""
    peer = Peer(server)
    try:
        peer.send(streamRequest(version=b"HTTP/1.0"))
        received = peer.read(b'"connect"')
        assert b"\r\nConnection: close\r\n" in received.partition(b"\r\n\r\n")[0] + b"\r\n"
        server.advance(2)
        server.advance(1)
        received = peer.read(b"no pong")
        for _ in range(5):
            peer.pump()
        assert peer.transport.disconnecting or peer.lost is not None
    finally:
        peer.close()


def test_peerGoneEndsTheClient(server: MemoryServer, peer: Peer) -> None:
    """The peer closes its end: the connection's loss ends the client, and nothing more is written."""
    protocol = openedStream(peer)
    assert len(server.node.clients) == 1
    stream = protocol._stream
    peer.sock.close()
    peer.pump()
    assert peer.lost is not None
    assert not server.node.clients
    assert stream.finished
    server.advance(2)  # its ping time: nothing to write to, nothing raises


def test_peerBytesAreDropped(server: MemoryServer, peer: Peer) -> None:
    """What the peer sends on a stream's connection is read and dropped; the stream goes on."""
    openedStream(peer)
    peer.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b"x" * 100_000)
    for _ in range(10):
        peer.pump()
    assert peer.lost is None
    server.advance(2)
    assert peer.read(b"3\r\n{}\n\r\n").endswith(b"3\r\n{}\n\r\n")
    assert b"HTTP/1.1 200" not in peer.received.partition(b"\r\n\r\n")[2]


def test_backPressurePausesTheWriterThenTheRestComesAsOne(server: MemoryServer) -> None:
    """
    A peer that does not read: the socket takes what it can, the client's writer (the connection's producer) is
    paused and publications wait in its queue; once the peer reads, everything arrives, in order.
    """
    peer = Peer(server, sendBuffer=4096, receiveBuffer=4096)
    try:
        openedStream(peer)
        client = next(iter(server.node.clients.values()))
        writer = peer.transport.producer
        assert writer is client.writer
        big = b'"' + b"x" * 2000 + b'"'
        count = 0
        while not writer.paused:
            client.queue(b'{"push":{"pub":{"data":%s,"i":%d}}}' % (big, count))
            server.advance(0)
            count += 1
            assert count < 1000, "never paused"
        for i in range(count, count + 5):
            client.queue(b'{"push":{"pub":{"data":%s,"i":%d}}}' % (big, i))
        server.advance(0)
        last = b'"i":%d}' % (count + 4)
        received = peer.read(last)
        assert not writer.paused
        order = [int(part.split(b"}", 1)[0]) for part in received.split(b'"i":')[1:]]
        assert order == list(range(count + 5))
    finally:
        peer.close()


def test_overflowOfAStuckPeerAbortsTheConnection(server: MemoryServer) -> None:
    """Past client_queue_max_size with the peer not reading: 3008, and the connection is cut (not finished)."""
    peer = Peer(server, sendBuffer=4096, receiveBuffer=4096)
    try:
        openedStream(peer)
        client = next(iter(server.node.clients.values()))
        big = b'"' + b"x" * 5000 + b'"'
        for i in range(100):
            client.queue(b'{"push":{"pub":{"data":%s}}}' % big)
            server.advance(0)
            if client.closed:
                break
        assert client.closed
        assert peer.transport.disconnected or peer.transport.disconnecting
        assert not server.node.clients
    finally:
        peer.close()


def test_notTakenOver(server: MemoryServer) -> None:
    """An HTTP/1.0 stream has no chunks: it stays twisted.web's (channel and request) to the end."""
    peer = Peer(server)
    try:
        peer.send(streamRequest(version=b"HTTP/1.0"))
        peer.read(b'"connect"')
        assert peer.transport.protocol is peer.channel
        assert peer.transport.producer is peer.channel
    finally:
        peer.close()


def test_sseTakesOverToo(server: MemoryServer) -> None:
    """An SSE stream (a GET) is taken over the same way; its events arrive as chunks."""
    peer = Peer(server)
    try:
        peer.send(b"GET /connection/sse?cf_connect=" + quote(CONNECT).encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        received = peer.read(b'"connect"')
        assert b"Content-Type: text/event-stream; charset=utf-8" in received
        assert b"2\r\n\r\n\r\n" in received  # the opening line break, in its own chunk
        assert isinstance(peer.transport.protocol, StreamProtocol)
    finally:
        peer.close()


def test_websocketUpgradeLetsTheChannelGo(server: MemoryServer) -> None:
    """Autobahn takes a WebSocket's connection; its channel is freed at once (untie), not by a later collection."""
    peer = Peer(server)
    try:
        channel = weakref.ref(peer.channel)
        peer.send(b"GET /connection/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        assert peer.read(b"\r\n\r\n").startswith(b"HTTP/1.1 101 ")
        assert type(peer.transport.protocol).__name__ == "CentrifugeWebSocketProtocol"
        del peer.channel
        assert channel() is None
    finally:
        peer.close()


def test_bytesBehindTheStreamRequestLeaveTheConnectionRead(server: MemoryServer, peer: Peer) -> None:
    """
    More than 16 KiB behind a stream request in its read: the channel, which stops reading its socket past that
    (its bound on pipelined bytes), must not do so on a connection that is the stream's by then, or the peer's
    leaving would never be seen.
    """
    peer.send(streamRequest() + b"x" * 20_000)
    peer.read(b'"connect"')
    assert isinstance(peer.transport.protocol, StreamProtocol)
    assert peer.transport in server.reactor.getReaders()
    peer.sock.close()
    peer.pump()
    assert peer.lost is not None
    assert not server.node.clients


def test_aStreamBehindUnsentResponsesIsHeldBackAtOnce(server: MemoryServer) -> None:
    """
    A stream request pipelined behind responses the peer does not read: the socket is full when the stream takes
    the connection over, and the channel (its producer until then) had been paused. The writer, the producer now,
    is paused at its first write that waits (directwrite.py), not only past Twisted's 64 KiB.
    """
    peer = Peer(server, sendBuffer=4096, receiveBuffer=4096)
    try:
        peer.send(b"GET /nothing-here HTTP/1.1\r\nHost: x\r\n\r\n" * 300 + streamRequest())
        for _ in range(5):
            peer.pump()
        assert isinstance(peer.transport.protocol, StreamProtocol)
        assert unsent(peer.transport) > 0
        client = next(iter(server.node.clients.values()))
        # Its first write (the connect reply) waited behind those responses.
        assert peer.transport.producer is client.writer
        assert client.writer.paused
    finally:
        peer.close()


def test_aTakenOverStreamIsLoggedOnce(server: MemoryServer) -> None:
    """
    twisted.web writes a request's access log line when it finishes, which a taken-over stream never does: the line
    (method, path, status) is written at the takeover, once.
    """
    logged: list[tuple[bytes, bytes, int]] = []
    server.site.log = lambda request: logged.append((request.method, request.path, request.code))  # type: ignore[method-assign]
    peer = Peer(server)
    peer.send(streamRequest())
    peer.read(b'"connect"')
    assert isinstance(peer.transport.protocol, StreamProtocol)
    assert logged == [(b"POST", b"/connection/http_stream", 200)]
    peer.close()
    assert len(logged) == 1
