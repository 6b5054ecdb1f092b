# -*- test-case-name: tests.client.test_sweep,tests.client.test_client -*-
"""
One timer for every connection of a node: pings, pong deadlines, connection expiry, staleness and the presence
refresh are deadlines on a timing wheel swept by a single reactor call, not an C{IDelayedCall} each.

A delayed call per connection per timer costs a few hundred bytes that live as long as the connection, a heap
operation per ping, and a reactor wake-up for every connection's every deadline. Here a deadline is a float on
an object that already exists, its place in the wheel one list slot, and the connections due at about the same
time are handled in one wake-up (their pings then go out in one writer turn).

Deadlines are rounded up to the wheel's tick (1/16 s, exact in binary floating point): a timer never fires
before its time and at most one tick after it, which nothing in the protocol can tell from a busy reactor.
"""

from __future__ import annotations

import heapq
import math
from typing import Optional, Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from httpstream.logs import Logger

# Ticks per second: a power of two, so that tick times and the rounding of deadlines are exact.
TICKS_PER_SECOND = 16


class Swept(Protocol):
    """
    Something with one deadline on a L{Sweep}.

    @ivar sweepAt: when it is due (reactor seconds); 0 when it is not scheduled. Only the sweep sets it.
    """

    sweepAt: float

    def swept(self) -> None:
        """Its deadline has come (C{sweepAt} is 0 again: schedule anew to be called again)."""


class Sweep:
    """
    The deadlines of a node's connections, in buckets of one tick each, swept by one reactor call at the earliest
    bucket's time.

    A rescheduled or cancelled timer is not looked for in its old bucket: the bucket is dropped when its time
    comes, and a timer whose C{sweepAt} no longer falls in it is skipped then. So moving a deadline (every ping)
    costs one append, whatever the number of connections.
    """

    __slots__ = ("_reactor", "_buckets", "_ticks", "_call", "_callTick", "_running", "_live")

    log = Logger()

    def __init__(self, reactor: IReactorTime) -> None:
        self._reactor = reactor
        # Tick number -> the timers that were due in it when scheduled; the tick numbers as a heap.
        self._buckets: dict[int, list[Swept]] = {}
        self._ticks: list[int] = []
        self._call: Optional[IDelayedCall] = None
        self._callTick = 0
        self._running = False
        # How many timers have a deadline: at none, the wheel is emptied and the reactor call cancelled, so a
        # node whose connections have all gone keeps nothing scheduled.
        self._live = 0

    def seconds(self) -> float:
        return self._reactor.seconds()

    def __len__(self) -> int:
        """How many timers have a deadline."""
        return self._live

    def places(self) -> int:
        """How many places the wheel holds, the stale ones of moved and cancelled timers included."""
        return sum(len(bucket) for bucket in self._buckets.values())

    def schedule(self, timer: Swept, when: float) -> None:
        """Call C{timer.swept()} once C{when} has come (in the tick that ends at or after it)."""
        if not timer.sweepAt:
            self._live += 1
        timer.sweepAt = when
        tick = math.ceil(when * TICKS_PER_SECOND)
        bucket = self._buckets.get(tick)
        if bucket is None:
            self._buckets[tick] = [timer]
            heapq.heappush(self._ticks, tick)
            if not self._running and (self._call is None or tick < self._callTick):
                self._arm(tick)
        elif bucket[-1] is not timer:
            bucket.append(timer)

    def scheduleIn(self, timer: Swept, delay: float) -> None:
        """L{schedule} C{delay} seconds from now."""
        self.schedule(timer, self._reactor.seconds() + delay)

    def cancel(self, timer: Swept) -> None:
        """Forget C{timer}'s deadline (its place in the wheel is dropped when that tick comes)."""
        if not timer.sweepAt:
            return
        timer.sweepAt = 0.0
        self._live -= 1
        if not self._live and not self._running:
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
        delay = max(0.0, tick / TICKS_PER_SECOND - self._reactor.seconds())
        self._call = self._reactor.callLater(delay, self._run)

    def _run(self) -> None:
        # The call was armed for _callTick; the reactor may run it a hair before that tick's exact time.
        self._call = None
        self._running = True
        upTo = max(self._callTick, math.floor(self._reactor.seconds() * TICKS_PER_SECOND))
        try:
            self._sweep(upTo)
        finally:
            self._running = False
            if not self._live:
                self._clear()
            elif self._ticks:
                self._arm(self._ticks[0])

    def _sweep(self, upTo: int) -> None:
        ticks, buckets = self._ticks, self._buckets
        while ticks and ticks[0] <= upTo:
            tick = heapq.heappop(ticks)
            for timer in buckets.pop(tick):
                at = timer.sweepAt
                # Moved to a later tick (it waits there), or cancelled, since it was put here.
                if not at or math.ceil(at * TICKS_PER_SECOND) > tick:
                    continue
                timer.sweepAt = 0.0
                self._live -= 1
                try:
                    timer.swept()
                except Exception:
                    # One connection's failure must not hold back every other deadline.
                    self.log.failure("a connection's timer failed")
