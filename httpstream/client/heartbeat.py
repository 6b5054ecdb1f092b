# -*- test-case-name: tests.client.test_client,tests.client.test_sweep -*-
"""
Centrifugo's ping/pong for one connection: the server sends an empty reply every C{ping_interval} (the first at a
random point of the first interval, so connections made together do not ping together) and, with C{pong_timeout},
expects the client's empty command back before the next check.

Both deadlines (the next ping, the pong awaited) are one entry on the node's L{Sweep}: whichever comes first.
"""

from __future__ import annotations

import random
from typing import Protocol

from httpstream.client.sweep import Sweep


class Pinged(Protocol):
    """The client, as its heartbeat uses it."""

    def sendPing(self) -> None:
        """Send the ping (an empty reply)."""

    def pongMissed(self) -> None:
        """A ping went unanswered for C{pongTimeout} seconds (the client is disconnected with 3012)."""


class Heartbeat:
    """Pings of one connection."""

    __slots__ = ("sweepAt", "_sweep", "_rng", "_interval", "_pongTimeout", "_client", "_pingAt", "_pongAt",
                 "_stopped")

    def __init__(self, sweep: Sweep, rng: random.Random, interval: float, pongTimeout: float,
                 client: Pinged) -> None:
        self.sweepAt = 0.0
        self._sweep = sweep
        self._rng = rng
        self._interval = interval
        self._pongTimeout = pongTimeout
        self._client = client
        # When the next ping is due, and until when a pong is awaited (0: none is).
        self._pingAt = 0.0
        self._pongAt = 0.0
        self._stopped = False

    def start(self) -> None:
        """Schedule the first ping (nothing when pings are off)."""
        if self._interval > 0 and not self._stopped:
            self._pingAt = self._sweep.seconds() + self._rng.uniform(self._interval / 2, self._interval)
            self._reschedule()

    def _reschedule(self) -> None:
        due = min(self._pingAt, self._pongAt) if self._pongAt else self._pingAt
        if due != self.sweepAt:
            self._sweep.schedule(self, due)

    def swept(self) -> None:
        if self._stopped:
            return
        now = self._sweep.seconds()
        if self._pongAt and self._pongAt <= now:
            self._pongAt = 0.0
            self._client.pongMissed()
            return
        if self._pingAt <= now:
            self._client.sendPing()
            if self._stopped:
                return
            if self._pongTimeout > 0 and not self._pongAt:
                self._pongAt = now + self._pongTimeout
            self._pingAt = now + self._interval
        self._reschedule()

    @property
    def outstanding(self) -> bool:
        """A ping waits for its pong."""
        return bool(self._pongAt)

    def pong(self) -> bool:
        """The client's pong arrived: False when no ping waited for one (a protocol violation)."""
        if not self._pongAt:
            return False
        self._pongAt = 0.0
        # The wheel keeps the pong's place; the sweep skips it once the next ping's deadline is the later one.
        self._reschedule()
        return True

    def stop(self) -> None:
        self._stopped = True
        self._pingAt = self._pongAt = 0.0
        self._sweep.cancel(self)
