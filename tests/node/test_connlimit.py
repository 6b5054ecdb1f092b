"""
Tests for L{httpstream.node.ratelimit} and L{httpstream.node.connlimit}: the node's admission of new connections
(C{client_connection_limit}, C{client_connection_rate_limit}), on a L{Clock}.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.logger import LogEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from httpstream.config import config_from_dict
from httpstream.node.ratelimit import TokenBucket
from httpstream.testing import FakeTransport, connectClient, makeNode

OPEN = {"allow_anonymous_connect_without_token": True}


def sample(node: object, name: str) -> float:
    value = node.metrics.registry.get_sample_value(name)  # type: ignore[attr-defined]
    return 0.0 if value is None else float(value)


class TokenBucketTests(SynchronousTestCase):
    def test_burstThenRate(self) -> None:
        """
        A full bucket lets C{burst} events through at once, then one more each 1/rate seconds.
        """
        clock = Clock()
        bucket = TokenBucket(clock, rate=4, burst=4)
        self.assertEqual([bucket.allow() for _ in range(5)], [True] * 4 + [False])
        clock.advance(0.2)
        self.assertEqual(bucket.allow(), False)  # 0.8 of a token
        clock.advance(0.05)
        self.assertEqual([bucket.allow(), bucket.allow()], [True, False])
        clock.advance(100)
        # Never more than the burst, however long it rested.
        self.assertEqual([bucket.allow() for _ in range(5)], [True] * 4 + [False])

    def test_clockGoingBackAddsNothing(self) -> None:
        """
        Time going backwards gives no tokens (nor takes any); refilling resumes once it passes the last event.
        """
        clock = Clock()
        clock.advance(10)
        bucket = TokenBucket(clock, rate=1, burst=1)
        self.assertTrue(bucket.allow())
        clock.rightNow = 5.0
        self.assertFalse(bucket.allow())
        clock.rightNow = 10.5
        self.assertFalse(bucket.allow())
        clock.rightNow = 11.0
        self.assertTrue(bucket.allow())


class ConnectionRateLimitTests(SynchronousTestCase):
    def test_offByDefault(self) -> None:
        """
        Without either setting every request is admitted.
        """
        node = makeNode(OPEN)
        for _ in range(1000):
            connectClient(node)
        self.assertTrue(node.connLimit.admit())

    def test_rateLimit(self) -> None:
        """
        client_connection_rate_limit: N requests a second, counted in the rate limit's metric when refused.
        """
        node = makeNode({"client_connection_rate_limit": 3})
        self.assertEqual([node.connLimit.admit() for _ in range(4)], [True, True, True, False])
        self.assertEqual(sample(node, "httpstream_node_client_connection_rate_limit_total"), 1)
        node.reactor.advance(1)  # type: ignore[attr-defined]
        self.assertEqual([node.connLimit.admit() for _ in range(4)], [True, True, True, False])
        self.assertEqual(sample(node, "httpstream_node_client_connection_limit_total"), 0)

    def test_reloadChangesRate(self) -> None:
        """
        A reloaded rate applies to the next request (a new, full bucket); 0 turns the limit off.
        """
        node = makeNode({"client_connection_rate_limit": 1})
        self.assertEqual([node.connLimit.admit(), node.connLimit.admit()], [True, False])
        node.reload(config_from_dict({"client_connection_rate_limit": 2})[0])
        self.assertEqual([node.connLimit.admit() for _ in range(3)], [True, True, False])
        node.reload(config_from_dict({})[0])
        self.assertTrue(all(node.connLimit.admit() for _ in range(100)))


class ConnectionLimitTests(SynchronousTestCase):
    def test_limitCountsOpenConnections(self) -> None:
        """
        client_connection_limit: refused once that many connections are open, connected or still connecting (a
        burst of requests arriving before any has connected cannot go past it); a closed one frees its place.
        """
        node = makeNode({**OPEN, "client_connection_limit": 2})
        connected, _ = connectClient(node)
        node.reactor.advance(0)  # type: ignore[attr-defined]
        self.assertTrue(connected.connected)
        self.assertTrue(node.connLimit.admit())
        connecting = node.newClient(FakeTransport())  # no connect command yet
        self.assertFalse(node.connLimit.admit())
        self.assertEqual(sample(node, "httpstream_node_client_connection_limit_total"), 1)
        connecting.transportClosed()
        self.assertTrue(node.connLimit.admit())
        node.newClient(FakeTransport())
        self.assertFalse(node.connLimit.admit())
        connected.disconnect(3000, "test")
        self.assertTrue(node.connLimit.admit())

    def test_staleAndRefusedConnectionsFreeTheirPlace(self) -> None:
        """
        Connections that end without ever connecting (stale, refused connect) are counted out exactly once, so
        a reconnect storm of failing clients leaves the count where it was.
        """
        node = makeNode({"client_connection_limit": 3, "client_stale_close_delay": 1})
        for _ in range(50):
            connectClient(node)  # refused: no token, anonymous not allowed (3501)
            node.newClient(FakeTransport())  # never sends its connect: stale after 1 s
            node.reactor.advance(0)  # type: ignore[attr-defined]
        node.reactor.advance(1)  # type: ignore[attr-defined]
        self.assertEqual(node.clients, {})
        self.assertEqual([node.connLimit.admit() for _ in range(2)], [True, True])
        for _ in range(3):
            node.newClient(FakeTransport())
        self.assertFalse(node.connLimit.admit())

    def test_warningThrottled(self) -> None:
        """
        The limit being hit is logged as a warning at most once every 3 seconds, each refusal counted.
        """
        node = makeNode({"client_connection_limit": 1})
        node.newClient(FakeTransport())
        logged: list[LogEvent] = []
        globalLogPublisher.addObserver(logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)
        for _ in range(5):
            node.connLimit.admit()
        node.reactor.advance(3.5)  # type: ignore[attr-defined]
        node.connLimit.admit()
        warnings = [event for event in logged if event.get("limit") == 1]
        self.assertEqual(len(warnings), 2)
        self.assertEqual(sample(node, "httpstream_node_client_connection_limit_total"), 6)
