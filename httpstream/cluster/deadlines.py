# -*- test-case-name: tests.cluster.test_deadlines -*-
"""
When the control plane's requests stop waiting for their replies: their ids in buckets of one tick each, swept by one
reactor call at the earliest bucket's time.

A reply that comes in time does not look for its id in the buckets: its owner forgets the request and says so
(L{Deadlines.settled}); when the bucket's time comes, the sweep hands each id in it to the owner, which ignores the
ones it no longer waits for. So a request's deadline costs one append to a list, where a C{callLater} per request
cost an object with its closure and two heap operations in the reactor: at thousands of forwarded emulation
requests a second that was a measurable part of the forwarding node's CPU (bench/README.md). A deadline is met in
the tick that ends at or after it: up to 1/16 s late, for timeouts of seconds (L{httpstream.timewheel}).
"""

from __future__ import annotations

from typing import Callable

from twisted.internet.interfaces import IReactorTime

from httpstream.logs import Logger
from httpstream.timewheel import TICKS_PER_SECOND, TickWheel, tickOf

__all__ = ["Deadlines", "TICKS_PER_SECOND"]


class Deadlines(TickWheel[int]):
    """
    Request ids and their deadlines: C{expired(id)} is called once an id's deadline has passed, and says whether the
    id was still waiting (True) or had its answer already (False).

    When no id is waiting (every one settled or expired), the buckets are dropped and the reactor call cancelled: a
    quiet node keeps nothing scheduled.
    """

    __slots__ = ("_expired",)

    log = Logger()

    def __init__(self, reactor: IReactorTime, expired: Callable[[int], bool]) -> None:
        super().__init__(reactor)
        self._expired = expired

    def add(self, rid: int, timeout: float) -> None:
        """Call C{expired(rid)} once C{timeout} seconds have passed (unless L{settled} brought the count to 0)."""
        self._live += 1
        self._put(tickOf(self._reactor.seconds() + timeout), rid)

    def settled(self, count: int = 1) -> None:
        """C{count} ids got their answers before their deadlines (their owner forgot them)."""
        # (Never below 0: a request failed by clear() that settles afterwards.)
        self._live = max(0, self._live - count)
        self._idle()

    def clear(self) -> None:
        """Forget every id and cancel the reactor call (the owner has failed or forgotten every request)."""
        self._live = 0
        self._clear()

    def _due(self, tick: int, rids: list[int]) -> None:
        for rid in rids:
            try:
                if self._expired(rid):
                    self._live -= 1
            except Exception:
                # One request's failure must not hold back every other deadline.
                self.log.failure("a control request's timeout failed")
