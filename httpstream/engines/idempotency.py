# -*- test-case-name: tests.engines.test_engine_contract,tests.serverapi.test_api -*-
"""
The results of publications made with an idempotency key, as the memory engines remember them (channel
publications: L{httpstream.engines.memory}; map writes: L{httpstream.engines.memorymap}).

A publish with a key the channel has seen within the result's TTL publishes nothing and answers the first
publication's position again (the server API's C{idempotency_key}: a client retrying after a timeout must not
publish twice). The Redis engine keeps the same thing in Redis, written by its publish script, so every node
sees it and a publication Redis stored but whose reply was lost is known too (engines/redis/history.py).
"""

from __future__ import annotations

from typing import Callable, Generic, Optional, TypeVar

import attrs

T = TypeVar("T")

__all__ = ["DEFAULT_RESULT_TTL", "IdempotentResults", "Remembered"]

DEFAULT_RESULT_TTL = 300.0  # seconds: Centrifugo's (centrifuge's IdempotentResultTTL default, 5 minutes)


@attrs.frozen
class Remembered(Generic[T]):
    """A keyed write's result (a publication's position, None without history; a map write's update result)."""

    result: T


class IdempotentResults(Generic[T]):
    """
    Results by (channel, key) with the time each expires, oldest first: entries go in insertion order, which is
    expiry order for one TTL, so dropping the expired ones costs O(1) per publication, not a pass over every key
    of the last five minutes.
    """

    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now
        self.results: dict[tuple[str, str], tuple[float, Remembered[T]]] = {}

    def find(self, channel: str, key: str) -> Optional[Remembered[T]]:
        """The remembered result of C{key} on C{channel}, while it lasts."""
        now = self._now()
        self._expire(now)
        known = self.results.get((channel, key))
        return known[1] if known is not None and known[0] > now else None

    def remember(self, channel: str, key: str, result: T, ttl: float = 0) -> T:
        """Keep C{result} for C{ttl} seconds (0: L{DEFAULT_RESULT_TTL}); returns it (a Deferred's callback)."""
        self.results.pop((channel, key), None)  # re-inserted at the end, in expiry order
        self.results[(channel, key)] = (self._now() + (ttl or DEFAULT_RESULT_TTL), Remembered(result))
        return result

    def _expire(self, now: float) -> None:
        results = self.results
        while results:
            oldest = next(iter(results))
            if results[oldest][0] > now:
                break
            del results[oldest]
