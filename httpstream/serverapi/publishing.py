# -*- test-case-name: tests.serverapi.test_api -*-
"""The server API's C{publish} and C{broadcast}."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Optional

from twisted.internet.defer import Deferred, DeferredList, maybeDeferred
from twisted.python.failure import Failure

from httpstream.readers import Fields
from httpstream.serverapi.errors import ERROR_BAD_REQUEST, APIError, reply
from httpstream.serverapi.requests import PublishRequest
from httpstream.values import StreamPosition

__all__ = ["Publishing"]


class Publishing:
    """Publications through the node; a keyed one at most once per key and channel (the engine remembers)."""

    def __init__(self, node: Any, translate: Callable[[Failure, str], Failure]) -> None:
        """@param translate: makes one channel's failure of a broadcast the error it answers (and logs a fault)."""
        self.node = node
        self._translate = translate

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
        channel = request.channel
        if not channel or not request.data:
            raise APIError(ERROR_BAD_REQUEST)
        # A repeated idempotency_key is the engine's to recognise, where the publication is stored: every node
        # sees it, and a retry after a lost reply finds the first publication's result (IBroker.publish).
        d: Deferred[Optional[StreamPosition]] = self.node.publish(
            channel, request.data, None, skipHistory=request.skipHistory, tags=request.tags or None,
            idempotencyKey=request.idempotencyKey,
        )
        return d.addCallback(lambda position: position.asDict() if position is not None else {})
