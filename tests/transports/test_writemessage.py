"""
Tests for L{ITransport.writeMessage} on every transport: a message written alone is on the wire what a batch of
that one message is (C{writeMessages([message])}), through Twisted's write or straight to a real socket, and the
transport's other states (not started, finished, closing, compressed, autobahn's queue) take the batch's way.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Optional

from autobahn.websocket.protocol import WebSocketProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.tcp import Server
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers

from httpstream.transports.deflate import Compression
from httpstream.transports.framecache import LARGEST
from httpstream.transports.http_stream import HTTPStreamTransport
from httpstream.transports.sse import SSETransport
from httpstream.transports.uni_http_stream import UniHTTPStreamTransport
from httpstream.transports.uni_sse import UniSSETransport
from httpstream.transports.uni_websocket import UniWebSocketTransport
from httpstream.transports.websocket import WebSocketTransport
from tests.transports.test_direct import InterestReactor, connectedPair
from tests.transports.test_websocket_transport import FakeConnection, readFrames

MESSAGES = [b"{}", b'{"push":{"channel":"c","pub":{"data":{"n":1}}}}', b"x" * 125, b"y" * 126, b"z" * 65536,
            b"w" * (LARGEST + 1)]


class StreamingRequest:
    """A twisted.web request whose chunked response head is out: what a stream writes after its first write."""

    startedWriting = True
    chunked = True

    def __init__(self, transport: Any) -> None:
        self.channel = type("Channel", (), {"transport": transport})()
        self.requestHeaders = Headers()
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(data)


def httpTransports() -> list[tuple[str, Any]]:
    return [
        ("http_stream", lambda r: HTTPStreamTransport(r, protobuf=False)),
        ("http_stream protobuf", lambda r: HTTPStreamTransport(r, protobuf=True)),
        ("sse", SSETransport),
        ("uni_http_stream", UniHTTPStreamTransport),
        ("uni_sse", UniSSETransport),
    ]


class HTTPStreamWriteMessageTests(SynchronousTestCase):
    def written(self, make: Any, write: Any) -> bytes:
        out = StringTransport()
        transport = make(StreamingRequest(out))
        write(transport)
        return out.value()  # type: ignore[no-any-return]

    def test_sameBytesAsABatchOfOne(self) -> None:
        for name, make in httpTransports():
            for message in MESSAGES:
                alone = self.written(make, lambda t: t.writeMessage(message))
                batch = self.written(make, lambda t: t.writeMessages([message]))
                self.assertEqual(alone, batch, (name, message[:20]))
                self.assertTrue(alone.endswith(b"\r\n") and message in alone, name)

    def test_beforeTheHeadIsOutTheRequestWrites(self) -> None:
        """The first write goes through the request (it sends the response's head), as a batch does."""
        request = StreamingRequest(StringTransport())
        request.startedWriting = False
        transport = HTTPStreamTransport(request, protobuf=False)  # type: ignore[arg-type]
        transport.writeMessage(b"{}")
        self.assertEqual(request.written, [b"{}\n"])
        self.assertEqual(request.channel.transport.value(), b"")

    def test_finishedWritesNothing(self) -> None:
        out = StringTransport()
        transport = HTTPStreamTransport(StreamingRequest(out), protobuf=False)  # type: ignore[arg-type]
        transport.writeMessage(b"{}")
        transport.lost()
        transport.writeMessage(b"late")
        self.assertEqual(out.value(), b"3\r\n{}\n\r\n")

    def test_straightToTheSocket(self) -> None:
        """On a real TCP transport with nothing unsent, the chunk is one send() and nothing is buffered."""
        sock, peer = connectedPair()
        self.addCleanup(peer.close)
        self.addCleanup(sock.close)
        reactor = InterestReactor()
        tcp = Server(sock, Protocol(), ("127.0.0.1", 0), None, 1, reactor)  # type: ignore[arg-type]
        transport = SSETransport(StreamingRequest(tcp))  # type: ignore[arg-type]
        transport.writeMessage(b'{"a":1}')
        self.assertEqual(peer.recv(100), b'f\r\ndata: {"a":1}\n\n\r\n')
        self.assertEqual((reactor.changes, tcp.dataBuffer, tcp._tempDataLen), ([], b"", 0))


class QueueingConnection(FakeConnection):
    """FakeConnection with autobahn's send queue (sync or chopped writes wait there, in order)."""

    def __init__(self) -> None:
        super().__init__()
        self.send_queue: deque[Any] = deque()

    def sendMessage(self, payload: bytes, isBinary: bool = False, doNotCompress: bool = False) -> None:
        super().sendMessage(payload, isBinary)


class WebSocketWriteMessageTests(SynchronousTestCase):
    def make(self, kind: str, connection: FakeConnection) -> Any:
        if kind == "uni":
            return UniWebSocketTransport(connection)  # type: ignore[arg-type]
        return WebSocketTransport(connection, kind == "protobuf", 65536)  # type: ignore[arg-type]

    def test_sameFramesAsABatchOfOne(self) -> None:
        """writeMessage's frame on the TCP transport is the frame writeMessages hands to sendData."""
        for kind in ("json", "protobuf", "uni"):
            for message in MESSAGES:
                alone, batch = QueueingConnection(), QueueingConnection()
                self.make(kind, alone).writeMessage(message)
                self.make(kind, batch).writeMessages([message])
                frames: list[tuple[bytes, bool]] = batch.sent
                self.assertEqual(len(frames), 1)
                assert alone.transport is not None
                self.assertEqual(readFrames(alone.transport.value()), frames, (kind, message[:20]))
                self.assertEqual(alone.sent, [])

    def test_autobahnQueueKeepsOrder(self) -> None:
        """Behind autobahn's own queue the message goes its way (sendData), not ahead of it."""
        connection = QueueingConnection()
        connection.send_queue.append((b"earlier", True))
        self.make("json", connection).writeMessage(b"{}")
        self.assertEqual(connection.sent, [(b"{}", False)])
        assert connection.transport is not None
        self.assertEqual(connection.transport.value(), b"")

    def test_notOpenWritesNothing(self) -> None:
        connection = QueueingConnection()
        connection.state = WebSocketProtocol.STATE_CLOSING
        transport = self.make("json", connection)
        transport.writeMessage(b"{}")
        connection.state = WebSocketProtocol.STATE_OPEN
        transport.close(3000, "bye")
        transport.writeMessage(b"{}")
        assert connection.transport is not None
        self.assertEqual((connection.sent, connection.transport.value()), ([], b""))

    def test_compressedGoesAsAMessage(self) -> None:
        """A connection that negotiated compression sends through autobahn (sendMessage), never a raw frame."""
        connection = QueueingConnection()
        compression: Optional[Compression] = Compression(level=1, minSize=0, decompressedLimit=0)
        transport = WebSocketTransport(connection, False, 65536, compression)  # type: ignore[arg-type]
        transport.writeMessage(b"{}")
        self.assertEqual(connection.sent, [(b"{}", False)])
        assert connection.transport is not None
        self.assertEqual(connection.transport.value(), b"")
