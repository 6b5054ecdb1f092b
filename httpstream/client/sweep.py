# -*- test-case-name: tests.client.test_sweep,tests.client.test_client -*-
"""
One timer for every connection of a node: pings, pong deadlines, connection expiry, staleness and the presence
refresh are deadlines on a timing wheel swept by a single reactor call, not an C{IDelayedCall} each.

A delayed call per connection per timer costs a few hundred bytes that live as long as the connection, a heap
operation per ping, and a reactor wake-up for every connection's every deadline. Here a deadline is a float on
an object that already exists, its place in the wheel one list slot, and the connections due at about the same
time are handled in one wake-up (their pings then go out in one writer turn).

Deadlines are rounded up to the wheel's tick (1/16 s, exact in binary floating point): a timer never fires
before its time and at most one tick after it, which nothing in the protocol can tell from a busy reactor. The
wheel itself is L{httpstream.timewheel.TickWheel}.
"""

from __future__ import annotations

from typing import Protocol

from httpstream.logs import Logger
from httpstream.timewheel import TICKS_PER_SECOND, TickWheel, tickOf

__all__ = ["Sweep", "Swept", "TICKS_PER_SECOND"]


class Swept(Protocol):
    """
    Something with one deadline on a L{Sweep}.

    @ivar sweepAt: when it is due (reactor seconds); 0 when it is not scheduled. Only the sweep sets it.
    """

    sweepAt: float

    def swept(self) -> None:
        """Its deadline has come (C{sweepAt} is 0 again: schedule anew to be called again)."""


class Sweep(TickWheel[Swept]):
    """
    The deadlines of a node's connections, swept by one reactor call at the earliest tick's time.

    A rescheduled or cancelled timer is not looked for in its old bucket: the bucket is dropped when its time
    comes, and a timer whose C{sweepAt} no longer falls in it is skipped then. So moving a deadline (every ping)
    costs one append, whatever the number of connections.
    """

    __slots__ = ()

    log = Logger()

    def seconds(self) -> float:
        return self._reactor.seconds()

    def schedule(self, timer: Swept, when: float) -> None:
        """Call C{timer.swept()} once C{when} has come (in the tick that ends at or after it)."""
        if not timer.sweepAt:
            self._live += 1
        timer.sweepAt = when
        self._put(tickOf(when), timer)

    def scheduleIn(self, timer: Swept, delay: float) -> None:
        """L{schedule} C{delay} seconds from now."""
        self.schedule(timer, self._reactor.seconds() + delay)

    def cancel(self, timer: Swept) -> None:
        """Forget C{timer}'s deadline (its place in the wheel is dropped when that tick comes)."""
        if not timer.sweepAt:
            return
        timer.sweepAt = 0.0
        self._live -= 1
        self._idle()

    def _due(self, tick: int, timers: list[Swept]) -> None:
        for timer in timers:
            at = timer.sweepAt
            # Moved to a later tick (it waits there), or cancelled, since it was put here.
            if not at or tickOf(at) > tick:
                continue
            timer.sweepAt = 0.0
            self._live -= 1
            try:
                timer.swept()
            except Exception:
                # One connection's failure must not hold back every other deadline.
                self.log.failure("a connection's timer failed")
