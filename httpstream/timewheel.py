# -*- test-case-name: tests.client.test_sweep,tests.cluster.test_deadlines -*-
"""
L{TickWheel}: things due at about the same time in buckets of one tick each, swept by one reactor call at the
earliest bucket's time, instead of an C{IDelayedCall} each.

A delayed call costs an object with its closure and two heap operations in the reactor, and a wake-up of its own;
here a deadline costs one list append, and everything due in a tick is handled in one wake-up. Deadlines are rounded
up to the tick (1/16 s, exact in binary floating point): nothing fires before its time, and at most one tick after.
Nothing is looked for in its bucket when it moves or is dropped: each user's L{TickWheel._due} skips what is no
longer due when its tick comes. The connections' timers (L{httpstream.client.sweep}) and the control plane's
request timeouts (L{httpstream.cluster.deadlines}) are its two users.

Imports nothing of httpstream, so every layer may use it.
"""

from __future__ import annotations

import heapq
import math
from typing import Generic, Optional, TypeVar

from twisted.internet.interfaces import IDelayedCall, IReactorTime

__all__ = ["TICKS_PER_SECOND", "TickWheel", "tickOf"]

# Ticks per second: a power of two, so that tick times and the rounding of deadlines are exact.
TICKS_PER_SECOND = 16

T = TypeVar("T")


def tickOf(when: float) -> int:
    """The tick that ends at or after C{when} (reactor seconds)."""
    return math.ceil(when * TICKS_PER_SECOND)


class TickWheel(Generic[T]):
    """
    Items by the tick they are due in, and the one reactor call that sweeps the earliest tick. A subclass counts
    its live items in C{_live} (at none, the wheel is emptied and the call cancelled, so an idle node keeps nothing
    scheduled) and handles a due tick's items in L{_due}.
    """

    __slots__ = ("_reactor", "_buckets", "_ticks", "_call", "_callTick", "_running", "_live")

    def __init__(self, reactor: IReactorTime) -> None:
        self._reactor = reactor
        # Tick number -> the items put in it; the tick numbers as a heap.
        self._buckets: dict[int, list[T]] = {}
        self._ticks: list[int] = []
        self._call: Optional[IDelayedCall] = None
        self._callTick = 0
        self._running = False
        self._live = 0

    def __len__(self) -> int:
        """How many items wait."""
        return self._live

    def places(self) -> int:
        """How many places the wheel holds, the stale ones of moved and dropped items included."""
        return sum(len(bucket) for bucket in self._buckets.values())

    def _put(self, tick: int, item: T) -> None:
        """Put C{item} in C{tick}'s bucket (once, when it is already the last one there), arming the call if earlier."""
        bucket = self._buckets.get(tick)
        if bucket is None:
            self._buckets[tick] = [item]
            heapq.heappush(self._ticks, tick)
            if not self._running and (self._call is None or tick < self._callTick):
                self._arm(tick)
        elif bucket[-1] is not item:
            bucket.append(item)

    def _idle(self) -> None:
        """Called when C{_live} fell: with nothing live, empty the wheel (unless a sweep runs: it will)."""
        if self._live <= 0 and not self._running:
            self._clear()

    def _clear(self) -> None:
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
        # The call was armed for _callTick; the reactor may run it a hair before that tick's exact time.
        self._call = None
        self._running = True
        upTo = max(self._callTick, math.floor(self._reactor.seconds() * TICKS_PER_SECOND))
        try:
            ticks, buckets = self._ticks, self._buckets
            while ticks and ticks[0] <= upTo:
                tick = heapq.heappop(ticks)
                self._due(tick, buckets.pop(tick))
        finally:
            self._running = False
            if self._live <= 0:
                self._live = 0
                self._clear()
            elif self._ticks:
                self._arm(self._ticks[0])

    def _due(self, tick: int, items: list[T]) -> None:
        """Handle the items put in C{tick}, now come (each user's own: skip stale ones, count down C{_live})."""
        raise NotImplementedError
