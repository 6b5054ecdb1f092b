# -*- test-case-name: tests.engines.test_engine_contract,tests.engines.test_engine_maps,tests.engines.test_redis_maps -*-
"""
What the engines' brokers share besides their interfaces: the channels of a broker inside one process
(L{LocalChannels}: the memory broker and the memory map broker), and the one timer a broker keeps for the
deadlines of many keys or channels (L{EarliestCall}: key expiry in memory, the Redis map sweep).
"""

from __future__ import annotations

from typing import Callable, Optional

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime

__all__ = ["EarliestCall", "LocalChannels"]


class LocalChannels:
    """
    Subscribing to a channel of a broker inside one process is remembering it: what it publishes reaches its
    handler only for the channels in L{channels}, at once, with nothing in between.
    """

    channels: set[str]

    def subscribe(self, channel: str) -> Deferred[None]:
        self.channels.add(channel)
        return succeed(None)

    def unsubscribe(self, channel: str) -> Deferred[None]:
        self.channels.discard(channel)
        return succeed(None)


class EarliestCall:
    """
    One delayed call of C{f}, at the earliest of the times asked for since it last ran: a deadline later than the
    one waited for changes nothing, an earlier one moves the call.
    """

    def __init__(self, clock: IReactorTime, f: Callable[[], None]) -> None:
        self._clock = clock
        self._f = f
        self._call: Optional[IDelayedCall] = None

    def at(self, when: float) -> None:
        call = self._call
        if call is not None and call.active():
            if call.getTime() <= when:
                return
            call.cancel()
        self._call = self._clock.callLater(max(when - self._clock.seconds(), 0), self._run)

    def cancel(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _run(self) -> None:
        self._call = None
        self._f()
