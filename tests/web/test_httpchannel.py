"""
The HTTP channel's read deadlines, in memory: a node's Site on a fake clock, bytes fed to one channel, what it
writes back and whether it closed.
"""

from __future__ import annotations

import dataclasses

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from httpstream.client.factory import ClientFactory
from httpstream.config import config_from_dict
from httpstream.web.httpchannel import REQUEST_TIMEOUT, ReadDeadlineChannel
from httpstream.node.node import Node
from httpstream.tap import makeService
from httpstream.web.app import makeSite

HEADERS = b"POST /emulation HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n"
STREAM = b'POST /connection/http_stream HTTP/1.1\r\nHost: x\r\nContent-Length: 22\r\n\r\n{"id":1,"connect":{}}\n'


class ReadDeadlineTests(SynchronousTestCase):
    def connect(self, **settings: object) -> tuple[ReadDeadlineChannel, StringTransport]:
        self.clock = Clock()
        config, _ = config_from_dict(
            {"name": "test", "http_stream": True, "allow_anonymous_connect_without_token": True,
             "ping_interval": -1, "health": True, **settings}
        )
        site = makeSite(Node(config, self.clock, clientFactory=ClientFactory(self.clock)))
        channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5000))
        self.assertIsInstance(channel, ReadDeadlineChannel)
        transport = StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.9", 41000))
        channel.makeConnection(transport)
        return channel, transport

    def trickle(self, channel: ReadDeadlineChannel, transport: StringTransport, data: bytes, every: float) -> float:
        """Send C{data} a byte at a time, C{every} seconds apart, until it is sent or the channel closes."""
        elapsed = 0.0
        for index in range(len(data)):
            if transport.disconnecting:
                break
            channel.dataReceived(data[index:index + 1])
            self.clock.advance(every)
            elapsed += every
        return elapsed

    def test_trickledHeadersCutAtHeaderDeadline(self) -> None:
        channel, transport = self.connect()
        # One byte a second: every byte resets Twisted's idle timeout, so only the deadline can end this.
        self.trickle(channel, transport, HEADERS[:9], 1.0)
        self.assertFalse(transport.disconnecting)
        self.trickle(channel, transport, HEADERS[9:], 1.0)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(transport.value(), REQUEST_TIMEOUT)
        self.assertEqual(self.clock.seconds(), 10.0)

    def test_trickledBodyCutAtReadDeadline(self) -> None:
        channel, transport = self.connect()
        channel.dataReceived(HEADERS)
        # The headers came at once; the body's 20 bytes one per 2 s would take 40 s.
        self.clock.advance(29.0)
        channel.dataReceived(b"{")
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1.0)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(transport.value(), REQUEST_TIMEOUT)

    def test_bodyDeadlineCountsFromFirstByte(self) -> None:
        """Headers that took 5 s leave the body 25 s, not 30."""
        channel, transport = self.connect()
        channel.dataReceived(HEADERS[:10])
        self.clock.advance(5.0)
        channel.dataReceived(HEADERS[10:])
        self.clock.advance(24.9)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.1)
        self.assertTrue(transport.disconnecting)

    def test_wholeRequestSchedulesNoDeadline(self) -> None:
        """A keep-alive connection's next request, arriving whole, costs no timer."""
        channel, transport = self.connect()
        channel.dataReceived(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertIsNone(channel._readCall)
        before = len(self.clock.getDelayedCalls())
        channel.dataReceived(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertEqual(transport.value().count(b"200 OK"), 2)
        self.assertIsNone(channel._readCall)
        self.assertEqual(len(self.clock.getDelayedCalls()), before)

    def test_silentConnectionClosedQuietly(self) -> None:
        """The first request is timed from the connection's start: one that sends nothing goes at 10 s, not 30."""
        channel, transport = self.connect()
        self.clock.advance(9.9)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.1)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(transport.value(), b"")

    def test_firstRequestTimedFromConnect(self) -> None:
        channel, transport = self.connect()
        self.clock.advance(8.0)
        channel.dataReceived(HEADERS[:10])
        self.clock.advance(2.0)
        self.assertEqual(transport.value(), REQUEST_TIMEOUT)

    def test_requestReadInTimeIsServed(self) -> None:
        channel, transport = self.connect()
        self.trickle(channel, transport, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", 0.2)
        self.assertIn(b"HTTP/1.1 200 OK", transport.value())
        self.assertIsNone(channel._readCall)
        # A second request on the same connection gets its own, fresh deadline.
        transport.clear()
        self.clock.advance(5.0)
        channel.dataReceived(b"GET /health HT")
        self.clock.advance(9.9)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.1)
        self.assertEqual(transport.value(), REQUEST_TIMEOUT)

    def test_partialRequestBehindAnAnsweredOneIsTimed(self) -> None:
        """
        A request begun in the same read as one answered at once (pipelined) has its deadline too: the answered
        one's end must not leave it to the idle timeout (12 hours by default).
        """
        for partial in (b"GET /health HT", b"GET /health HTTP/1.1\r\nHost: x\r\n", HEADERS + b"{"):
            channel, transport = self.connect(http_server_idle_timeout="1h")
            channel.dataReceived(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n" + partial)
            self.assertEqual(transport.value().count(b"200 OK"), 1)
            self.clock.advance(30.0)
            self.assertTrue(transport.disconnecting, partial)
            self.assertTrue(transport.value().endswith(REQUEST_TIMEOUT), partial)

    def test_openStreamOutlivesDeadlines(self) -> None:
        channel, transport = self.connect()
        channel.dataReceived(STREAM[:30])
        self.clock.advance(2.0)
        channel.dataReceived(STREAM[30:])
        self.clock.advance(0)  # the writer flushes on the next turn
        self.assertIn(b'"connect":', transport.value())
        for _ in range(12):
            self.clock.advance(10.0)
        self.assertFalse(transport.disconnecting)
        self.assertIsNone(channel._readCall)

    def test_zeroTurnsDeadlinesOff(self) -> None:
        channel, transport = self.connect(http_server_read_header_timeout=0, http_server_read_timeout=0)
        self.trickle(channel, transport, HEADERS[:20], 5.0)
        self.assertFalse(transport.disconnecting)
        self.assertIsNone(channel._readCall)

    def test_readTimeoutBoundsHeadersWhenHeaderTimeoutOff(self) -> None:
        channel, transport = self.connect(http_server_read_header_timeout=0, http_server_read_timeout="3s")
        self.trickle(channel, transport, HEADERS, 1.0)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.clock.seconds(), 3.0)

    def test_configuredDeadlines(self) -> None:
        channel, transport = self.connect(http_server_read_header_timeout="2s", http_server_read_timeout="4s")
        self.trickle(channel, transport, HEADERS, 0.5)
        self.assertEqual(self.clock.seconds(), 2.0)
        self.assertEqual(transport.value(), REQUEST_TIMEOUT)

    def test_badRequestIsNotAlsoTimedOut(self) -> None:
        """A request refused with 400 is over: its deadline does not answer 408 on top."""
        channel, transport = self.connect()
        channel.dataReceived(b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n")
        channel.dataReceived(b"\r\n")
        self.assertTrue(transport.disconnecting)
        self.assertIsNone(channel._readCall)
        self.clock.advance(15.0)  # past the header deadline; before the idle timeout (StringTransport never closes)
        self.assertNotIn(b"408", transport.value())

    def test_idleTimeout(self) -> None:
        channel, transport = self.connect(http_server_idle_timeout="7s")
        channel.dataReceived(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        self.clock.advance(6.9)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.1)
        self.assertTrue(transport.disconnecting)


class ReloadTests(SynchronousTestCase):
    def test_deadlinesNeedRestart(self) -> None:
        """The deadlines are baked into the Site's channel class: a SIGHUP reload leaves them (and says so)."""
        service = makeService({"config": {"port": 0, "http_stream": True}}, reactor=MemoryReactorClock())
        changed = dataclasses.replace(service.config, http_server_read_timeout=5.0, http_server_idle_timeout=0.0)
        self.assertEqual(service.reload(changed), [])
        self.assertEqual(service.config.http_server_read_timeout, 30.0)
        self.assertEqual(service.site.protocol.readTimeout, 30.0)
