"""
Tests for L{httpstream.transports.websocket} in memory: how a flushed batch is split into WebSocket messages
(sizes at and around the boundary, JSON and Protobuf), close codes a close frame can carry, and writes or closes
after the peer has gone.
"""

from __future__ import annotations

from typing import Any, Optional

from autobahn.websocket.protocol import WebSocketProtocol
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from httpstream.interfaces import ITransport
from httpstream.protocol.framing import encode_varint, split_varint
from httpstream.transports.websocket import WebSocketTransport, closeCode, packBatch


class PackBatchJSONTests(SynchronousTestCase):
    """JSON: newline-joined, no newline at either end, each payload within the size unless a single message."""

    def test_fitsExactly(self) -> None:
        """Three 10-byte messages and two newlines are 32 bytes: one payload at a limit of 32."""
        messages = [b"a" * 10, b"b" * 10, b"c" * 10]
        self.assertEqual(packBatch(messages, 32, False), [b"\n".join(messages)])

    def test_oneByteOver(self) -> None:
        """At 31 the last message moves to a second payload; no payload starts or ends with a newline."""
        messages = [b"a" * 10, b"b" * 10, b"c" * 10]
        self.assertEqual(packBatch(messages, 31, False), [b"a" * 10 + b"\n" + b"b" * 10, b"c" * 10])

    def test_singleMessageAsItIs(self) -> None:
        self.assertEqual(packBatch([b"{}"], 10, False), [b"{}"])

    def test_largerThanTheSizeGoesAlone(self) -> None:
        """A message over the size is never dropped nor cut: it goes alone, its neighbours in their own payloads."""
        big = b"B" * 100
        self.assertEqual(
            packBatch([b"1", b"2", big, b"3"], 10, False),
            [b"1\n2", big, b"3"],
        )

    def test_exactlyTheSizeAlone(self) -> None:
        self.assertEqual(packBatch([b"x" * 10, b"y"], 10, False), [b"x" * 10, b"y"])

    def test_zeroMeansNoSplitting(self) -> None:
        messages = [b"m" * 1000] * 5
        self.assertEqual(packBatch(messages, 0, False), [b"\n".join(messages)])

    def test_orderAndContentKept(self) -> None:
        """Whatever the sizes, joining the payloads back gives every message once, in order, each within bounds."""
        messages = [str(n).encode() * (n % 37 + 1) for n in range(300)]
        for size in (1, 7, 36, 37, 38, 100, 1000, 5000):
            payloads = packBatch(messages, size, False)
            self.assertEqual([m for p in payloads for m in p.split(b"\n")], messages)
            for payload in payloads:
                self.assertTrue(len(payload) <= size or b"\n" not in payload, (size, len(payload)))


class PackBatchProtobufTests(SynchronousTestCase):
    """Protobuf: every message varint-prefixed, the prefix counted in the size, whole messages per payload."""

    def test_fitsExactly(self) -> None:
        """Two 9-byte messages with 1-byte prefixes are 20 bytes."""
        messages = [b"a" * 9, b"b" * 9]
        self.assertEqual(packBatch(messages, 20, True), [b"\x09" + b"a" * 9 + b"\x09" + b"b" * 9])

    def test_oneByteOver(self) -> None:
        messages = [b"a" * 9, b"b" * 9]
        self.assertEqual(packBatch(messages, 19, True), [b"\x09" + b"a" * 9, b"\x09" + b"b" * 9])

    def test_twoBytePrefix(self) -> None:
        """A 128-byte message takes a 2-byte prefix: 130 bytes fit in 130, not in 129 with another message."""
        message = b"p" * 128
        self.assertEqual(packBatch([message], 130, True), [encode_varint(128) + message])
        self.assertEqual(
            packBatch([message, b""], 130, True), [encode_varint(128) + message, b"\x00"]
        )
        self.assertEqual(packBatch([message, b""], 131, True), [encode_varint(128) + message + b"\x00"])

    def test_singleMessageAlwaysPrefixed(self) -> None:
        self.assertEqual(packBatch([b""], 10, True), [b"\x00"])

    def test_largerThanTheSizeGoesAlone(self) -> None:
        big = b"B" * 300
        payloads = packBatch([b"1", big, b"2"], 50, True)
        self.assertEqual([split_varint(p, 1000) for p in payloads], [[b"1"], [big], [b"2"]])

    def test_wholeMessagesInOrder(self) -> None:
        messages = [bytes([n % 256]) * (n * 7 % 300) for n in range(300)]
        for size in (1, 100, 129, 130, 131, 1000, 65536):
            payloads = packBatch(messages, size, True)
            split = [split_varint(p, 1 << 20) for p in payloads]
            self.assertEqual([m for group in split for m in group], messages)
            for payload, group in zip(payloads, split):
                self.assertTrue(len(payload) <= size or len(group) == 1, (size, len(payload)))


class FakeConnection:
    """The part of autobahn's protocol a L{WebSocketTransport} uses."""

    http_headers = {"origin": "https://app.example.com"}

    def __init__(self) -> None:
        self.state = WebSocketProtocol.STATE_OPEN
        self.sent: list[tuple[bytes, bool]] = []
        self.closes: list[tuple[int, str]] = []
        self.transport: Optional[StringTransport] = StringTransport()
        self.closeError: Optional[Exception] = None

    def sendMessage(self, payload: bytes, isBinary: bool = False) -> None:
        if self.state != WebSocketProtocol.STATE_OPEN:
            raise AssertionError("autobahn raises Disconnected here")
        self.sent.append((payload, isBinary))

    def sendData(self, data: bytes) -> None:
        """The frames the transport made itself (no compression): recorded as the messages they carry."""
        self.sent.extend(readFrames(data))


    def sendClose(self, code: Any = None, reason: Any = None) -> None:
        if self.closeError is not None:
            raise self.closeError
        # What autobahn's sendClose accepts (it raises for anything else).
        assert code == 1000 or 3000 <= code <= 4999, code
        self.closes.append((code, reason))
        self.state = WebSocketProtocol.STATE_CLOSING


def readFrames(data: bytes) -> list[tuple[bytes, bool]]:
    """Whole unmasked server frames, each a final one, as (payload, binary)."""
    messages = []
    while data:
        first, second = data[0], data[1]
        assert first & 0xF0 == 0x80 and second & 0x80 == 0, data[:2]  # FIN, no RSV bits, not masked
        length, start = second, 2
        if second == 126:
            length, start = int.from_bytes(data[2:4], "big"), 4
        elif second == 127:
            length, start = int.from_bytes(data[2:10], "big"), 10
        assert len(data) >= start + length, "a frame cut short"
        messages.append((data[start:start + length], first & 0x0F == 0x2))
        data = data[start + length:]
    return messages


class WebSocketTransportTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.connection = FakeConnection()

    def transport(self, protobuf: bool = False, size: int = 65536) -> WebSocketTransport:
        return WebSocketTransport(self.connection, protobuf, size)  # type: ignore[arg-type]

    def test_interface(self) -> None:
        self.assertTrue(verifyObject(ITransport, self.transport()))

    def test_batchSplitIntoTextMessages(self) -> None:
        transport = self.transport(size=25)
        transport.writeMessages([b"a" * 10, b"b" * 10, b"c" * 10])
        self.assertEqual(self.connection.sent, [(b"a" * 10 + b"\n" + b"b" * 10, False), (b"c" * 10, False)])

    def test_batchSplitIntoBinaryMessages(self) -> None:
        transport = self.transport(protobuf=True, size=12)
        transport.writeMessages([b"a" * 10, b"b" * 10])
        self.assertEqual(self.connection.sent, [(b"\x0a" + b"a" * 10, True), (b"\x0a" + b"b" * 10, True)])

    def test_largeMessageDelivered(self) -> None:
        """A message far over the size (a 70 KB publication) goes, alone."""
        big = b"x" * 70_000
        self.transport().writeMessages([b"1", big, b"2"])
        self.assertEqual([p for p, _ in self.connection.sent], [b"1", big, b"2"])

    def test_writeAfterPeerClosedIsNoOp(self) -> None:
        """Once autobahn is closing or closed, a write does nothing (autobahn would raise Disconnected)."""
        transport = self.transport()
        for state in (WebSocketProtocol.STATE_CLOSING, WebSocketProtocol.STATE_CLOSED):
            self.connection.state = state
            transport.writeMessages([b"late"])
        self.assertEqual(self.connection.sent, [])

    def test_writeAfterCloseIsNoOp(self) -> None:
        transport = self.transport()
        transport.close(3001, "shutdown")
        transport.writeMessages([b"late"])
        self.assertEqual(self.connection.sent, [])

    def test_closeCarriesCodeAndReason(self) -> None:
        self.transport().close(3501, "bad request")
        self.assertEqual(self.connection.closes, [(3501, "bad request")])

    def test_closeOnce(self) -> None:
        transport = self.transport()
        transport.close(3001, "shutdown")
        transport.close(3002, "again")
        self.assertEqual(self.connection.closes, [(3001, "shutdown")])

    def test_oddCodesMapped(self) -> None:
        """Codes a close frame cannot carry become 3011 (reconnect); the reason is kept."""
        for code in (70000, -5, 0, 999, 1001, 1005, 1009, 2999, 5000, 65535, 2**40):
            self.connection = FakeConnection()
            self.transport().close(code, "odd")
            self.assertEqual(self.connection.closes, [(3011, "odd")], code)

    def test_validCodesKept(self) -> None:
        self.assertEqual([closeCode(c) for c in (1000, 3000, 3500, 4000, 4999)], [1000, 3000, 3500, 4000, 4999])

    def test_longReasonCut(self) -> None:
        """A reason is cut to what fits a control frame (123 bytes), on a character boundary."""
        self.transport().close(4000, "é" * 100)
        [(_, reason)] = self.connection.closes
        self.assertEqual(reason, "é" * 61)

    def test_closeFailingAborts(self) -> None:
        """If sending the close frame fails for any reason, the TCP connection is aborted, not left open."""
        self.connection.closeError = RuntimeError("boom")
        transport = self.transport()
        transport.close(3001, "shutdown")
        assert self.connection.transport is not None
        self.assertTrue(self.connection.transport.disconnecting)
        self.assertTrue(transport.finished)

    def test_closeAfterPeerClosedIsNoOp(self) -> None:
        self.connection.state = WebSocketProtocol.STATE_CLOSED
        self.transport().close(3001, "shutdown")
        self.assertEqual(self.connection.closes, [])
