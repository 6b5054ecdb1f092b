# -*- test-case-name: tests.node.test_connlimit -*-
"""
A token bucket on an injected clock: the shape of Go's C{golang.org/x/time/rate} limiter that Centrifugo's
connection rate limit uses (full at first, then refilled at a steady rate up to its burst).
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime


class TokenBucket:
    """
    Up to C{burst} events at once, then C{rate} a second.

    Tokens are counted as a float refilled from the time passed since the last event, so no timer runs; a clock
    that goes back (a test's, or an adjusted wall clock) adds nothing rather than taking tokens away.
    """

    def __init__(self, clock: IReactorTime, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock.seconds()

    def allow(self) -> bool:
        """Take one token if there is one: whether the event may happen now."""
        now = self._clock.seconds()
        elapsed = now - self._last
        if elapsed > 0:
            self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate)
        self._last = max(now, self._last)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False
