# -*- test-case-name: tests.client.test_client -*-
"""
Centrifugo's ping/pong for one connection: the server sends an empty reply every C{ping_interval} (the first at a
random point of the first interval, so connections made together do not ping together) and, with C{pong_timeout},
expects the client's empty command back before the next check.
"""

from __future__ import annotations

import random
from typing import Callable, Optional

from twisted.internet.interfaces import IDelayedCall, IReactorTime


class Heartbeat:
    """
    Pings of one connection.

    @param ping: sends the ping.
    @param noPong: called when a ping went unanswered for C{pongTimeout} seconds (the client disconnects 3012).
    """

    def __init__(self, reactor: IReactorTime, rng: random.Random, interval: float, pongTimeout: float,
                 ping: Callable[[], None], noPong: Callable[[], None]) -> None:
        self._reactor = reactor
        self._rng = rng
        self._interval = interval
        self._pongTimeout = pongTimeout
        self._ping = ping
        self._noPong = noPong
        self._outstanding = False
        self._stopped = False
        self._pingCall: Optional[IDelayedCall] = None
        self._pongCall: Optional[IDelayedCall] = None

    def start(self) -> None:
        """Schedule the first ping (nothing when pings are off)."""
        self._schedule(self._rng.uniform(self._interval / 2, self._interval))

    def _schedule(self, delay: float) -> None:
        if self._interval > 0 and not self._stopped:
            self._pingCall = self._reactor.callLater(delay, self._fire)

    def _fire(self) -> None:
        self._pingCall = None
        self._ping()
        if self._pongTimeout > 0 and not self._outstanding:
            self._outstanding = True
            self._pongCall = self._reactor.callLater(self._pongTimeout, self._late)
        self._schedule(self._interval)

    def _late(self) -> None:
        self._pongCall = None
        if self._outstanding:
            self._noPong()

    def pong(self) -> bool:
        """The client's pong arrived: False when no ping waited for one (a protocol violation)."""
        if not self._outstanding:
            return False
        self._outstanding = False
        if self._pongCall is not None and self._pongCall.active():
            self._pongCall.cancel()
        self._pongCall = None
        return True

    def stop(self) -> None:
        self._stopped = True
        for call in (self._pingCall, self._pongCall):
            if call is not None and call.active():
                call.cancel()
        self._pingCall = self._pongCall = None
