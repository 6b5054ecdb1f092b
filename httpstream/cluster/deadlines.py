# -*- test-case-name: tests.cluster.test_deadlines -*-
"""
When the control plane's requests stop waiting for their replies: their ids in buckets of one tick each, swept by one
reactor call at the earliest bucket's time.

A reply that comes in time does not look for its id in the buckets: its owner forgets the request and says so
(L{Deadlines.settled}); when the bucket's time comes, the sweep hands each id in it to the owner, which ignores the
ones it no longer waits for. So a request's deadline costs one append to a list, where a C{callLater} per request
cost an object with its closure and two heap operations in the reactor: at thousands of forwarded emulation
requests a second that was a measurable part of the forwarding node's CPU (bench/README.md). A deadline is met in
the tick that ends at or after it: up to 1/16 s late, for timeouts of seconds.
"""

from __future__ import annotations

import heapq
import math
from typing import Callable, Optional

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from httpstream.logs import Logger

__all__ = ["Deadlines", "TICKS_PER_SECOND"]

TICKS_PER_SECOND = 16


class Deadlines:
    """
    Request ids and their deadlines: C{expired(id)} is called once an id's deadline has passed, and says whether the
    id was still waiting (True) or had its answer already (False).

    When no id is waiting (every one settled or expired), the buckets are dropped and the reactor call cancelled: a
    quiet node keeps nothing scheduled.
    """

    __slots__ = ("_reactor", "_expired", "_buckets", "_ticks", "_call", "_callTick", "_live", "_running")

    log = Logger()

    def __init__(self, reactor: IReactorTime, expired: Callable[[int], bool]) -> None:
        self._reactor = reactor
        self._expired = expired
        # Tick number -> the ids due in it; the tick numbers as a heap.
        self._buckets: dict[int, list[int]] = {}
        self._ticks: list[int] = []
        self._call: Optional[IDelayedCall] = None
        self._callTick = 0
        # How many ids wait: added, and neither settled nor expired.
        self._live = 0
        self._running = False

    def __len__(self) -> int:
        """How many ids wait."""
        return self._live

    def add(self, rid: int, timeout: float) -> None:
        """Call C{expired(rid)} once C{timeout} seconds have passed (unless L{settled} brought the count to 0)."""
        self._live += 1
        tick = math.ceil((self._reactor.seconds() + timeout) * TICKS_PER_SECOND)
        bucket = self._buckets.get(tick)
        if bucket is not None:
            bucket.append(rid)
            return
        self._buckets[tick] = [rid]
        heapq.heappush(self._ticks, tick)
        if not self._running and (self._call is None or tick < self._callTick):
            self._arm(tick)

    def settled(self, count: int = 1) -> None:
        """C{count} ids got their answers before their deadlines (their owner forgot them)."""
        # (Never below 0: a request failed by clear() that settles afterwards.)
        self._live = max(0, self._live - count)
        if not self._live and not self._running:
            self.clear()

    def clear(self) -> None:
        """Forget every id and cancel the reactor call (the owner has failed or forgotten every request)."""
        self._live = 0
        self._buckets.clear()
        self._ticks.clear()
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _arm(self, tick: int) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._callTick = tick
        self._call = self._reactor.callLater(max(0.0, tick / TICKS_PER_SECOND - self._reactor.seconds()), self._run)

    def _run(self) -> None:
        self._call = None
        self._running = True
        # The reactor may run the call a hair before its tick's exact time.
        upTo = max(self._callTick, math.floor(self._reactor.seconds() * TICKS_PER_SECOND))
        try:
            while self._ticks and self._ticks[0] <= upTo:
                for rid in self._buckets.pop(heapq.heappop(self._ticks)):
                    try:
                        if self._expired(rid):
                            self._live -= 1
                    except Exception:
                        # One request's failure must not hold back every other deadline.
                        self.log.failure("a control request's timeout failed")
        finally:
            self._running = False
            if self._live <= 0:
                self.clear()
            elif self._ticks:
                self._arm(self._ticks[0])
