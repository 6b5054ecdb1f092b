# -*- test-case-name: tests.test_engines_memory -*-
"""
The memory engine: one node, no network. The embedded default, and the fake other people's tests can use.
"""

from __future__ import annotations

from typing import Callable, Optional

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from httpstream.interfaces import IBroker


@implementer(IBroker)
class MemoryBroker:
    """
    PUB/SUB inside the process: a publication on a subscribed channel reaches the handler before C{publish}'s
    Deferred fires, so a publisher sees its own publication before its publish reply, as with Centrifugo's memory
    engine.
    """

    def __init__(self) -> None:
        self._handler: Optional[Callable[[str, dict], None]] = None
        self.channels: set[str] = set()

    def setHandler(self, handler: Callable[[str, dict], None]) -> None:
        self._handler = handler

    def subscribe(self, channel: str) -> Deferred[None]:
        self.channels.add(channel)
        return succeed(None)

    def unsubscribe(self, channel: str) -> Deferred[None]:
        self.channels.discard(channel)
        return succeed(None)

    def publish(self, channel: str, publication: dict) -> Deferred[dict]:
        if channel in self.channels and self._handler is not None:
            self._handler(channel, publication)
        return succeed({})
