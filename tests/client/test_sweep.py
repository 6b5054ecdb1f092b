"""
Tests for L{httpstream.client.sweep}: the one timer of a node's connections (pings, pong deadlines, expiry,
staleness, presence), alone and under many clients, on a fake clock.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from httpstream.client.client import Client
from httpstream.client.sweep import TICKS_PER_SECOND, Sweep
from httpstream.node.node import Node
from httpstream.testing import FakeTransport, encodeCommands, makeNode
from tests.client.test_client import NOW, OPEN, SECRET, token

TICK = 1 / TICKS_PER_SECOND


class Timer:
    """A L{Swept} that records when it was called, and may do something then."""

    def __init__(self, sweep: Sweep, then: Optional[Callable[[], None]] = None) -> None:
        self.sweepAt = 0.0
        self.sweep = sweep
        self.calls: list[float] = []
        self.then = then

    def swept(self) -> None:
        self.calls.append(self.sweep.seconds())
        if self.then is not None:
            self.then()


class SweepTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.sweep = Sweep(self.clock)

    def test_neverEarlyAtMostATickLate(self) -> None:
        """A deadline fires once its time has come, and no later than the end of its tick."""
        for offset in (0.01, 0.5, 1.0, 2.96875, 7.3):
            timer = Timer(self.sweep)
            due = self.clock.seconds() + offset
            self.sweep.schedule(timer, due)
            self.clock.advance(due - self.clock.seconds() - 0.001)
            self.assertEqual(timer.calls, [])
            self.clock.advance(0.001 + TICK)
            self.assertEqual(len(timer.calls), 1)
            self.assertGreaterEqual(timer.calls[0], due)
            self.assertEqual(timer.sweepAt, 0.0)

    def test_exactTickTimes(self) -> None:
        """A deadline on a tick boundary (every whole second) fires exactly then."""
        timer = Timer(self.sweep)
        self.sweep.scheduleIn(timer, 10)
        self.clock.advance(10)
        self.assertEqual(timer.calls, [NOW + 10])

    def test_manyTimersOneReactorCall(self) -> None:
        """However many deadlines, the reactor holds one call; those due in one tick run in one sweep."""
        timers = [Timer(self.sweep) for _ in range(1000)]
        for index, timer in enumerate(timers):
            self.sweep.scheduleIn(timer, 1 + (index % 50) * 0.01)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.assertEqual(len(self.sweep), 1000)
        self.clock.advance(1)
        self.assertEqual(len([t for t in timers if t.calls]), 20)  # offsets 0 (1.0 s itself) to 0.06 < 1.0625
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(1)
        self.assertTrue(all(len(t.calls) == 1 for t in timers))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(len(self.sweep), 0)

    def test_jumpOverManyTicks(self) -> None:
        """A clock that jumps past many ticks runs every deadline passed, earliest first."""
        order: list[int] = []
        timers = [Timer(self.sweep, lambda i=i: order.append(i)) for i in range(5)]  # type: ignore[misc]
        for index, timer in reversed(list(enumerate(timers))):
            self.sweep.scheduleIn(timer, 1 + index)
        self.clock.advance(100)
        self.assertEqual(order, [0, 1, 2, 3, 4])

    def test_moved(self) -> None:
        """A deadline moved later fires once, at its new time; one moved earlier fires then, once."""
        later, earlier = Timer(self.sweep), Timer(self.sweep)
        self.sweep.scheduleIn(later, 1)
        self.sweep.scheduleIn(earlier, 5)
        self.sweep.scheduleIn(later, 3)
        self.sweep.scheduleIn(earlier, 2)
        self.assertEqual(len(self.sweep), 2)
        self.clock.advance(1)
        self.assertEqual((later.calls, earlier.calls), ([], []))
        self.clock.advance(1)
        self.assertEqual((later.calls, earlier.calls), ([], [NOW + 2]))
        self.clock.advance(1)
        self.assertEqual(later.calls, [NOW + 3])
        self.clock.advance(10)
        self.assertEqual((len(later.calls), len(earlier.calls)), (1, 1))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_periodic(self) -> None:
        """A timer that schedules itself again when called runs every period."""
        timer = Timer(self.sweep)
        timer.then = lambda: self.sweep.scheduleIn(timer, 2)
        self.sweep.scheduleIn(timer, 2)
        for _ in range(5):
            self.clock.advance(2)
        self.assertEqual(timer.calls, [NOW + 2 * k for k in range(1, 6)])

    def test_cancelled(self) -> None:
        """A cancelled deadline never fires; once none is left, the reactor holds no call."""
        a, b = Timer(self.sweep), Timer(self.sweep)
        self.sweep.scheduleIn(a, 1)
        self.sweep.scheduleIn(b, 2)
        self.sweep.cancel(a)
        self.sweep.cancel(a)  # twice is harmless
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.sweep.cancel(b)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.sweep.places(), 0)
        self.clock.advance(10)
        self.assertEqual((a.calls, b.calls), ([], []))

    def test_cancelledMidSweep(self) -> None:
        """A timer of the same tick cancelled by one called before it (a connection closing another) is skipped."""
        victim = Timer(self.sweep)
        killer = Timer(self.sweep, lambda: self.sweep.cancel(victim))
        self.sweep.scheduleIn(killer, 1)
        self.sweep.scheduleIn(victim, 1)
        self.clock.advance(1)
        self.assertEqual((len(killer.calls), victim.calls), (1, []))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_failureIsolated(self) -> None:
        """One timer raising is logged; the others of its sweep still run and the wheel goes on."""

        def boom() -> None:
            raise RuntimeError("boom")

        bad, good, next_ = Timer(self.sweep, boom), Timer(self.sweep), Timer(self.sweep)
        self.sweep.scheduleIn(bad, 1)
        self.sweep.scheduleIn(good, 1)
        self.sweep.scheduleIn(next_, 2)
        self.clock.advance(1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(len(good.calls), 1)
        self.clock.advance(1)
        self.assertEqual(len(next_.calls), 1)


class ClientsOnOneSweepTests(SynchronousTestCase):
    """Many connections of one node share its sweep, with Centrifugo's timings."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)

    def node(self, **settings: Any) -> Node:
        return makeNode({"token_hmac_secret_key": SECRET, **OPEN, **settings}, self.clock)

    def connect(self, node: Node, jwt: str = "", transport: Optional[FakeTransport] = None) -> tuple[
            Client, FakeTransport]:
        transport = transport or FakeTransport("json")
        client = node.newClient(transport)
        client.handleData(encodeCommands("json", [{"id": 1, "connect": {"token": jwt} if jwt else {}}]))
        self.clock.advance(0)
        self.assertIn("connect", transport.replies()[0])
        transport.clear()
        return client, transport

    def pingTimes(self, transports: list[FakeTransport], seconds: float) -> list[list[float]]:
        times: list[list[float]] = [[] for _ in transports]
        for _ in range(int(seconds * TICKS_PER_SECOND)):
            self.clock.advance(TICK)
            for index, transport in enumerate(transports):
                if transport.replies():
                    times[index].append(self.clock.seconds() - NOW)
                    transport.clear()
        return times

    def test_pingJitterBounds(self) -> None:
        """
        Each connection's first ping comes between interval/2 and interval after connect (at most a tick late),
        spread over that half interval, then every interval; all of it on one reactor call.
        """
        node = self.node(ping_interval="10s", pong_timeout=-1)
        transports = [self.connect(node)[1] for _ in range(200)]
        self.assertLessEqual(len(self.clock.getDelayedCalls()), 1)
        times = self.pingTimes(transports, 25)
        firsts = [t[0] for t in times]
        self.assertTrue(all(5 <= first <= 10 + TICK for first in firsts), firsts)
        self.assertGreater(len({round(first) for first in firsts}), 3)
        for each in times:
            self.assertEqual(len(each), 2)
            self.assertTrue(10 <= each[1] - each[0] <= 10 + TICK)

    def test_pongDeadline(self) -> None:
        """Of many pinged connections, those that do not answer within pong_timeout are closed with 3012."""
        node = self.node(ping_interval="4s", pong_timeout="2s")
        clients = [self.connect(node) for _ in range(20)]
        self.clock.advance(4 + TICK)
        for client, transport in clients:
            self.assertEqual(transport.replies(), [{}])
            transport.clear()
        for client, _ in clients[::2]:
            client.handleData(encodeCommands("json", [{}]))
        self.clock.advance(2 + TICK)
        for index, (client, transport) in enumerate(clients):
            if index % 2:
                self.assertEqual(transport.closed, (3012, "no pong"))
            else:
                self.assertIsNone(transport.closed)

    def test_expiry(self) -> None:
        """Connections whose token expired are closed with 3005 client_expired_close_delay after it, not before."""
        node = self.node(client_expired_close_delay="5s", ping_interval=-1)
        expiring = [self.connect(node, token(sub=f"u{i}", exp=int(NOW) + 10)) for i in range(10)]
        lasting = [self.connect(node, token(sub=f"v{i}", exp=int(NOW) + 100)) for i in range(10)]
        self.clock.advance(15 - 0.01)
        self.assertTrue(all(t.closed is None for _, t in expiring + lasting))
        self.clock.advance(TICK)
        self.assertTrue(all(t.closed == (3005, "connection expired") for _, t in expiring))
        self.assertTrue(all(t.closed is None for _, t in lasting))

    def test_closedMidSweep(self) -> None:
        """
        Connections that go away while the sweep runs (closing one connection for a missing pong ends the others)
        are neither pinged nor closed again, nothing more is written to them, and no timer is left behind.
        """
        node = self.node(ping_interval="4s", pong_timeout="2s")
        victims: list[Client] = []

        class Closing(FakeTransport):
            def close(self, code: int, reason: str) -> None:
                super().close(code, reason)
                for victim in victims:
                    victim.transportClosed()

        killer, killerTransport = self.connect(node, transport=Closing("json"))
        clients = [self.connect(node) for _ in range(10)]
        victims.extend(client for client, _ in clients)
        while killerTransport.closed is None:
            self.clock.advance(TICK)
            for client, transport in clients:
                if transport.replies():
                    transport.clear()
                    client.handleData(encodeCommands("json", [{}]))  # the victims answer their pings
        self.assertEqual(killerTransport.closed, (3012, "no pong"))
        self.assertTrue(all(client.closed for client in victims))
        self.clock.advance(60)
        self.assertTrue(all(transport.closed is None and transport.batches == [] for _, transport in clients))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_reconnect(self) -> None:
        """A connection closed and opened again gets the new one's pings only; nothing is left of the old one."""
        node = self.node(ping_interval="4s", pong_timeout="2s")
        old, oldTransport = self.connect(node, token(sub="u", exp=int(NOW) + 60))
        old.transportClosed()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        new, newTransport = self.connect(node, token(sub="u", exp=int(NOW) + 60))
        self.clock.advance(4 + TICK)
        self.assertEqual(newTransport.replies(), [{}])
        self.assertEqual(oldTransport.replies(), [])
        new.handleData(encodeCommands("json", [{}]))
        new.disconnect(3000, "done")
        self.assertEqual(self.clock.getDelayedCalls(), [])
