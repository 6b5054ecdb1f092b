"""
Tests for L{httpstream.cluster.deadlines}: request ids expiring in ticks, from one reactor call.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from httpstream.cluster.deadlines import TICKS_PER_SECOND, Deadlines


class DeadlinesTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.waiting: set[int] = set()
        self.expired: list[int] = []
        self.deadlines = Deadlines(self.clock, self.expire)

    def expire(self, rid: int) -> bool:
        self.expired.append(rid)
        if rid in self.waiting:
            self.waiting.discard(rid)
            return True
        return False

    def add(self, rid: int, timeout: float) -> None:
        self.waiting.add(rid)
        self.deadlines.add(rid, timeout)

    def answer(self, rid: int) -> None:
        self.waiting.discard(rid)
        self.deadlines.settled()

    def test_expiresOnTime(self) -> None:
        """An id expires once its timeout has passed, not before; one reactor call serves many ids."""
        for rid in range(100):
            self.add(rid, 10)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(9.9)
        self.assertEqual(self.expired, [])
        self.clock.advance(0.1)
        self.assertEqual(self.expired, list(range(100)))
        self.assertEqual(len(self.deadlines), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_atMostATickLate(self) -> None:
        self.clock.advance(0.01)
        self.add(1, 1)
        self.clock.advance(1)
        self.assertEqual(self.expired, [])
        self.clock.advance(1 / TICKS_PER_SECOND)
        self.assertEqual(self.expired, [1])

    def test_settledLeavesNothingScheduled(self) -> None:
        """Once every id has its answer, the reactor call is cancelled: nothing is left to sweep."""
        self.add(1, 10)
        self.add(2, 10)
        self.answer(1)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.answer(2)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(10)
        self.assertEqual(self.expired, [])

    def test_answeredIdsAreSkipped(self) -> None:
        """An id answered before its deadline is handed to the owner, which ignores it; the others expire."""
        self.add(1, 10)
        self.add(2, 10)
        self.answer(1)
        self.clock.advance(10)
        self.assertEqual(self.expired, [1, 2])
        self.assertEqual(self.waiting, set())
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_earlierDeadlineRearms(self) -> None:
        """A shorter timeout added after a longer one moves the reactor call earlier; the later one still comes."""
        self.add(1, 10)
        self.add(2, 1)
        self.clock.advance(1)
        self.assertEqual(self.expired, [2])
        self.clock.advance(9)
        self.assertEqual(self.expired, [2, 1])

    def test_addedWhileSweeping(self) -> None:
        """An expiry that adds another request (a retry) is swept in its turn."""

        def expire(rid: int) -> bool:
            self.expired.append(rid)
            if rid == 1:
                self.deadlines.add(2, 1)
            return True

        self.deadlines = Deadlines(self.clock, expire)
        self.deadlines.add(1, 1)
        self.clock.advance(1)
        self.clock.advance(1)
        self.assertEqual(self.expired, [1, 2])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_failingOwnerLogged(self) -> None:
        """An owner that raises for one id does not stop the others from expiring."""

        def expire(rid: int) -> bool:
            if rid == 1:
                raise ZeroDivisionError()
            self.expired.append(rid)
            return True

        self.deadlines = Deadlines(self.clock, expire)
        self.deadlines.add(1, 1)
        self.deadlines.add(2, 1)
        self.clock.advance(1)
        self.assertEqual(self.expired, [2])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_clear(self) -> None:
        self.add(1, 10)
        self.deadlines.clear()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(10)
        self.assertEqual(self.expired, [])

    def test_settledAfterClear(self) -> None:
        """A request failed by clear() that settles afterwards does not hide the next one's deadline."""
        self.add(1, 10)
        self.deadlines.clear()
        self.answer(1)
        self.add(2, 1)
        self.clock.advance(1)
        self.assertEqual(self.expired, [2])
