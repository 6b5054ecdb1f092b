# -*- test-case-name: tests.serverapi.test_api -*-
"""The server API's C{publish} and C{broadcast}, and the idempotency window of keyed publications."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Optional

from twisted.internet.defer import Deferred, DeferredList, maybeDeferred, succeed
from twisted.python.failure import Failure

from httpstream.readers import Fields
from httpstream.serverapi.errors import ERROR_BAD_REQUEST, APIError, reply
from httpstream.serverapi.requests import PublishRequest
from httpstream.values import StreamPosition

__all__ = ["IDEMPOTENCY_WINDOW", "Publishing"]

IDEMPOTENCY_WINDOW = 300.0  # a repeated idempotency_key within 5 minutes publishes once


class Publishing:
    """
    Publications through the node, each keyed one at most once per L{IDEMPOTENCY_WINDOW}.

    @ivar idempotent: the results remembered by (channel, key), with the time each expires, oldest first.
    """

    def __init__(self, node: Any, now: Callable[[], float],
                 translate: Callable[[Failure, str], Failure]) -> None:
        """
        @param now: the clock the idempotency window runs on.
        @param translate: makes one channel's failure of a broadcast the error it answers (and logs a fault).
        """
        self.node = node
        self._now = now
        self._translate = translate
        self.idempotent: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}

    def publish(self, f: Fields) -> Deferred[dict[str, Any]]:
        return self._publishOne(PublishRequest.read(f))

    def broadcast(self, f: Fields) -> Deferred[dict[str, Any]]:
        channels = f.strings("channels")
        publication = PublishRequest.read(f, channel="")
        if not channels or not publication.data:
            raise APIError(ERROR_BAD_REQUEST)
        calls = [
            maybeDeferred(self._publishOne, replace(publication, channel=channel)).addErrback(
                self._translate, "broadcast")
            for channel in channels
        ]
        d = DeferredList(calls, consumeErrors=True)
        return d.addCallback(lambda results: {"responses": [reply(ok, value) for ok, value in results]})

    def _publishOne(self, request: PublishRequest) -> Deferred[dict[str, Any]]:
        channel, key = request.channel, request.idempotencyKey
        if not channel or not request.data:
            raise APIError(ERROR_BAD_REQUEST)
        now = self._now()
        if key:
            self._expireIdempotent(now)
            known = self.idempotent.get((channel, key))
            if known is not None and known[0] > now:
                return succeed(dict(known[1]))
        d: Deferred[Optional[StreamPosition]] = self.node.publish(
            channel, request.data, None, skipHistory=request.skipHistory, tags=request.tags or None)

        def published(position: Optional[StreamPosition]) -> dict[str, Any]:
            result = position.asDict() if position is not None else {}
            if key:
                self.idempotent.pop((channel, key), None)  # re-inserted at the end, in expiry order
                self.idempotent[(channel, key)] = (now + IDEMPOTENCY_WINDOW, result)
            return dict(result)

        return d.addCallback(published)

    def _expireIdempotent(self, now: float) -> None:
        """
        Drop remembered results whose window has passed. Entries are kept in insertion order, which is (nearly)
        expiry order: the oldest go from the front, so a busy channel of keyed publications costs O(1) each
        rather than a pass over every key of the last five minutes.
        """
        cache = self.idempotent
        while cache:
            oldest = next(iter(cache))
            if cache[oldest][0] > now:
                break
            del cache[oldest]
