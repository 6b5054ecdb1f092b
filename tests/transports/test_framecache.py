"""
Tests for L{httpstream.transports.framecache} and the framings the transports keep in it: one framing per message
for every connection that writes it, bounded, and the same bytes as framing each batch anew.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from httpstream.protocol.framing import varint_delimit
from httpstream.transports import http_stream, sse, websocket
from httpstream.transports.framecache import LARGEST, FrameCache
from tests.transports.test_websocket_transport import readFrames


class FrameCacheTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.framed: list[bytes] = []

    def frame(self, message: bytes) -> bytes:
        self.framed.append(message)
        return b"<" + message + b">"

    def test_framedOncePerMessage(self) -> None:
        cache = FrameCache(self.frame)
        message = b"publication"
        wires = [cache.framed(message) for _ in range(1000)]
        self.assertEqual(self.framed, [message])
        self.assertTrue(all(wire is wires[0] for wire in wires))
        # Equal bytes from elsewhere (another node's copy, a ping) are the same message.
        self.assertIs(cache.framed(bytes(bytearray(message))), wires[0])
        self.assertEqual(wires[0], b"<publication>")

    def test_boundedInEntries(self) -> None:
        cache = FrameCache(self.frame, entries=3)
        for message in (b"a", b"b", b"c", b"d"):
            cache.framed(message)
        self.assertEqual(len(cache), 3)
        cache.framed(b"a")  # the oldest went first: framed again
        self.assertEqual(self.framed, [b"a", b"b", b"c", b"d", b"a"])

    def test_boundedInBytes(self) -> None:
        cache = FrameCache(self.frame, size=100)
        for i in range(10):
            cache.framed(b"%02d" % i + b"x" * 20)  # 22 bytes, 24 framed: two fit in 100
        self.assertEqual(len(cache), 2)

    def test_subscriptIsTheHotPath(self) -> None:
        """cache[message] is framed(message) for a message of at most LARGEST bytes: framed on a miss, then kept."""
        cache = FrameCache(self.frame)
        message = b"m" * LARGEST
        wire = cache[message]
        self.assertIs(cache[message], wire)
        self.assertIs(cache.framed(message), wire)
        self.assertEqual((self.framed, len(cache)), ([message], 1))

    def test_subscriptOfLargeMessageNotKept(self) -> None:
        """Past the hot path's size check by mistake, a large message is still framed right and never kept."""
        cache = FrameCache(self.frame)
        large = b"x" * (LARGEST + 1)
        self.assertEqual(cache[large], b"<" + large + b">")
        self.assertEqual(len(cache), 0)

    def test_largeMessagesNotKept(self) -> None:
        cache = FrameCache(self.frame)
        large = b"x" * (LARGEST + 1)
        self.assertEqual(cache.framed(large), b"<" + large + b">")
        cache.framed(large)
        self.assertEqual(len(cache), 0)
        self.assertEqual(len(self.framed), 2)


class SharedFramingsTests(SynchronousTestCase):
    """A message alone, from the shared framings, is what framing a batch of one gives."""

    messages = [b"", b"{}", b'{"push":{"channel":"c","pub":{"data":{"n":1}}}}', b"x" * 125, b"y" * 126,
                b"z" * 65535, b"w" * 65536, b"v" * 70000]

    def test_httpStream(self) -> None:
        for message in self.messages:
            self.assertEqual(http_stream._CHUNKS["json"].framed(message), http_stream.chunked(message + b"\n"))
            self.assertEqual(http_stream._CHUNKS["protobuf"].framed(message),
                             http_stream.chunked(varint_delimit([message])))

    def test_sse(self) -> None:
        for message in self.messages:
            self.assertEqual(sse._EVENTS.framed(message), http_stream.chunked(b"data: " + message + b"\n\n"))

    def test_websocket(self) -> None:
        for message in self.messages:
            self.assertEqual(readFrames(websocket._FRAMES["json"].framed(message)), [(message, False)])
            self.assertEqual(readFrames(websocket._FRAMES["protobuf"].framed(message)),
                             [(varint_delimit([message]), True)])

    def test_chunk(self) -> None:
        self.assertEqual(http_stream.chunked(b"hello"), b"5\r\nhello\r\n")
        self.assertEqual(http_stream.chunked(b"x" * 4096), b"1000\r\n" + b"x" * 4096 + b"\r\n")
