# -*- test-case-name: tests.engines.test_engine_contract,tests.serverapi.test_api -*-
"""
The results of publications made with an idempotency key, as the memory engine remembers them.

A publish with a key the channel has seen within the result's TTL publishes nothing and answers the first
publication's position again (the server API's C{idempotency_key}: a client retrying after a timeout must not
publish twice). The Redis engine keeps the same thing in Redis, written by its publish script, so every node
sees it and a publication Redis stored but whose reply was lost is known too (engines/redis/history.py).
"""

from __future__ import annotations

from typing import Callable, Optional

import attrs

from httpstream.values import StreamPosition

__all__ = ["DEFAULT_RESULT_TTL", "IdempotentResults", "Remembered"]

DEFAULT_RESULT_TTL = 300.0  # seconds: Centrifugo's (centrifuge's IdempotentResultTTL default, 5 minutes)


@attrs.frozen
class Remembered:
    """A keyed publication's result: its position (None: published without history)."""

    position: Optional[StreamPosition]


class IdempotentResults:
    """
    Results by (channel, key) with the time each expires, oldest first: entries go in insertion order, which is
    expiry order for one TTL, so dropping the expired ones costs O(1) per publication, not a pass over every key
    of the last five minutes.
    """

    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now
        self.results: dict[tuple[str, str], tuple[float, Remembered]] = {}

    def find(self, channel: str, key: str) -> Optional[Remembered]:
        """The remembered result of C{key} on C{channel}, while it lasts."""
        now = self._now()
        self._expire(now)
        known = self.results.get((channel, key))
        return known[1] if known is not None and known[0] > now else None

    def remember(self, channel: str, key: str, position: Optional[StreamPosition], ttl: float = 0) -> None:
        self.results.pop((channel, key), None)  # re-inserted at the end, in expiry order
        self.results[(channel, key)] = (self._now() + (ttl or DEFAULT_RESULT_TTL), Remembered(position))

    def _expire(self, now: float) -> None:
        results = self.results
        while results:
            oldest = next(iter(results))
            if results[oldest][0] > now:
                break
            del results[oldest]
