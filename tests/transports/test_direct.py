"""
Tests for L{httpstream.directwrite}: a real Twisted TCP transport over a connected pair of loopback sockets,
with a reactor that only records the interest changes the epoll reactor would make (each an C{epoll_ctl}). No
reactor runs: the test plays its part (C{doWrite} when the socket is writable).
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol
from twisted.internet.tcp import Server
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from httpstream.directwrite import direct, unsent, writeNow


class InterestReactor:
    """The reactor calls a TCP transport makes, recording each change of the poller's interest set."""

    def __init__(self) -> None:
        self.changes: list[str] = []
        self._writers: set[Any] = set()

    def addReader(self, reader: Any) -> None:
        pass

    def removeReader(self, reader: Any) -> None:
        pass

    # As the epoll reactor: a writer already registered costs nothing more.
    def addWriter(self, writer: Any) -> None:
        if writer not in self._writers:
            self._writers.add(writer)
            self.changes.append("addWriter")

    def removeWriter(self, writer: Any) -> None:
        if writer in self._writers:
            self._writers.remove(writer)
            self.changes.append("removeWriter")


@implementer(IPushProducer)
class Producer:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def pauseProducing(self) -> None:
        self.calls.append("pause")

    def resumeProducing(self) -> None:
        self.calls.append("resume")

    def stopProducing(self) -> None:
        self.calls.append("stop")


def connectedPair(sendBuffer: int = 0, receiveBuffer: int = 0) -> tuple[socket.socket, socket.socket]:
    """(the server's socket, the peer's), connected over loopback; small buffers fill fast."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    peer = socket.socket()
    if receiveBuffer:
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receiveBuffer)
    peer.connect(listener.getsockname())
    server, _ = listener.accept()
    listener.close()
    if sendBuffer:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sendBuffer)
    server.setblocking(False)
    peer.settimeout(10)
    return server, peer


class DirectWriteTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = InterestReactor()

    def transport(self, sendBuffer: int = 0, receiveBuffer: int = 0) -> tuple[Server, socket.socket]:
        sock, peer = connectedPair(sendBuffer, receiveBuffer)
        transport = Server(sock, Protocol(), ("127.0.0.1", 0), None, 1, self.reactor)  # type: ignore[arg-type]
        self.addCleanup(peer.close)
        self.addCleanup(sock.close)
        return transport, peer

    def read(self, peer: socket.socket, count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = peer.recv(count - len(data))
            self.assertTrue(chunk, "the connection ended early")
            data += chunk
        return data

    def test_idleSocketSendsAtOnce(self) -> None:
        """Nothing unsent: one send, no change to the poller's interest (no epoll_ctl), nothing buffered."""
        transport, peer = self.transport()
        producer = Producer()
        transport.registerProducer(producer, True)
        for i in range(100):
            writeNow(transport, b"message %d\n" % i)
        expected = b"".join(b"message %d\n" % i for i in range(100))
        self.assertEqual(self.read(peer, len(expected)), expected)
        self.assertEqual(self.reactor.changes, [])
        self.assertEqual(unsent(transport), 0)
        self.assertEqual(producer.calls, [])

    def test_busySocketBuffersInOrderAndHoldsTheProducer(self) -> None:
        """
        What the kernel does not take goes to Twisted's buffer and pauses the producer at once; a write behind it
        waits there too, in order; once the buffer is sent the producer is resumed and writes go direct again.
        """
        transport, peer = self.transport(sendBuffer=4096, receiveBuffer=4096)
        producer = Producer()
        transport.registerProducer(producer, True)
        big = bytes(range(256)) * 4096  # 1 MiB: more than the kernel's buffers take
        writeNow(transport, big)
        waiting = unsent(transport)
        self.assertGreater(waiting, 0)
        self.assertEqual(self.reactor.changes, ["addWriter"])
        self.assertEqual(producer.calls, ["pause"])
        writeNow(transport, b"behind")
        # (Twisted pauses it again for every write while more than its 64 KiB wait.)
        self.assertEqual(set(producer.calls), {"pause"})
        self.assertEqual(unsent(transport), waiting + len(b"behind"))
        received = b""
        while unsent(transport):
            received += peer.recv(1 << 20)
            self.assertIsNone(transport.doWrite())  # what the reactor does when the socket is writable
        self.assertEqual(producer.calls[-1], "resume")
        self.assertEqual(producer.calls.count("resume"), 1)
        self.assertEqual(self.reactor.changes, ["addWriter", "removeWriter"])
        writeNow(transport, b"direct again")
        self.assertEqual(self.reactor.changes, ["addWriter", "removeWriter"])
        tail = b"behind" + b"direct again"
        rest = len(big) + len(tail) - len(received)
        self.assertEqual(received + self.read(peer, rest), big + tail)

    def test_smallRemainderHoldsTheProducer(self) -> None:
        """
        A write the kernel takes but a little of: the producer is paused although Twisted's buffer is far below
        its own 64 KiB mark, so what follows waits in the producer's queue, to go out as one write.
        """
        transport, peer = self.transport(sendBuffer=4096, receiveBuffer=4096)
        producer = Producer()
        transport.registerProducer(producer, True)
        while not producer.calls:
            writeNow(transport, b"y" * 1000)
        self.assertEqual(producer.calls, ["pause"])
        self.assertLess(unsent(transport), transport.bufferSize)
        self.assertTrue(transport.producerPaused)

    def test_peerGone(self) -> None:
        """A reset connection: nothing raises; the bytes go to Twisted, whose next attempt finds the loss."""
        transport, peer = self.transport()
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        peer.close()  # an RST
        for _ in range(3):
            writeNow(transport, b"x" * 1000)
        lost = transport.doWrite() if unsent(transport) else transport.writeSomeData(b"x")
        self.assertIsInstance(lost, Exception)

    def test_otherTransportsWriteAsUsual(self) -> None:
        """A transport that is not a plain TCP connection (here a test's fake) gets an ordinary write."""
        transport = StringTransport()
        self.assertFalse(direct(transport))
        writeNow(transport, b"hello")
        self.assertEqual(transport.value(), b"hello")

    def test_notDirectWhenTLSOrClosing(self) -> None:
        """TLS started on the connection, or a close under way: the transport's own write, in its buffer."""
        for state in ("TLS", "disconnecting", "connected"):
            transport, peer = self.transport()
            setattr(transport, state, state != "connected")
            self.assertFalse(direct(transport))
            written: list[bytes] = []
            transport.write = written.append  # type: ignore[method-assign]
            writeNow(transport, b"hello")
            self.assertEqual(written, [b"hello"], state)
