# -*- test-case-name: tests.engines.test_engine_memory,tests.engines.test_engine_contract -*-
"""
The memory engine: one node, no network. The embedded default, and the fake other people's tests can use.

It follows Centrifugo's memory engine (centrifuge ``broker_memory.go``, ``presence_memory.go``,
``internal/memstream``): history streams with random 4-letter epochs, expiry by the reactor's clock.
"""

from __future__ import annotations

import heapq
import itertools
import random
import string
import time
from collections import deque
from typing import Callable, Optional

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from httpstream.engines import (
    DEFAULT_HISTORY_META_TTL,
    HistoryError,
    HistoryResult,
    checkHistoryRequest,
    checkSinceEpoch,
    hasHistory,
)
from httpstream.engines.idempotency import IdempotentResults
from httpstream.engines.local import LocalChannels
from httpstream.interfaces import (
    IBroker,
    IPresenceManager,
    JoinLeaveHandler,
    PublicationHandler,
    ReconnectHandler,
)
from httpstream.values import ClientInfo, Publication, StreamPosition

__all__ = ["MemoryBroker", "MemoryPresence"]

_EPOCH_LETTERS = string.ascii_letters


class _Stream:
    """
    One channel's history: the newest publications (their offsets run without gaps up to C{top}), the position,
    and when its items and then the stream itself expire.
    """

    __slots__ = ("epoch", "top", "items", "expireAt", "removeAt", "scheduledAt")

    def __init__(self, epoch: str, removeAt: float) -> None:
        self.epoch = epoch
        self.top = 0
        self.items: deque[Publication] = deque()
        # When the items are cleared (history_ttl after the last publish); None while there are none.
        self.expireAt: Optional[float] = None
        # When the whole stream is dropped (history_meta_ttl after the last use).
        self.removeAt = removeAt
        # The deadline of this stream's entry in the broker's heap: never later than its next real deadline.
        self.scheduledAt: Optional[float] = None

    def nextDeadline(self) -> float:
        if self.expireAt is None:
            return self.removeAt
        return min(self.expireAt, self.removeAt)


@implementer(IBroker)
class MemoryBroker(LocalChannels):
    """
    PUB/SUB and history inside the process: a publication on a subscribed channel reaches the handler before
    C{publish}'s Deferred fires, so a publisher sees its own publication before its publish reply, as with
    Centrifugo's memory engine. Every Deferred it returns has already fired. The handler gets the epoch of the
    stream a publication was appended to: a stream dropped after C{historyMetaTTL} without use comes back with
    another one, and a subscriber positioned in the old one must learn it lost its place.

    Streams expire lazily: each operation first applies the deadlines that have passed (a heap of them, so that
    streams nobody touches again are freed too, at the next operation on any channel).

    @ivar channels: the channels subscribed on this node.
    """

    def __init__(
        self,
        clock: Optional[IReactorTime] = None,
        historyMetaTTL: float = DEFAULT_HISTORY_META_TTL,
        rng: Optional[random.Random] = None,
    ) -> None:
        """
        @param clock: the reactor (only C{seconds} is used) whose time the TTLs follow; None: C{time.time}.
        @param historyMetaTTL: how long an unused stream lives when a call passes no meta TTL (seconds).
        @param rng: the source of epochs.
        """
        self._now: Callable[[], float] = clock.seconds if clock is not None else time.time
        self._defaultMetaTTL = historyMetaTTL
        self._rng = rng if rng is not None else random.Random()
        self._handler: Optional[PublicationHandler] = None
        self._joinLeaveHandler: Optional[JoinLeaveHandler] = None
        self._reconnectHandler: Optional[ReconnectHandler] = None
        self.channels: set[str] = set()
        self._streams: dict[str, _Stream] = {}
        self._deadlines: list[tuple[float, int, str, _Stream]] = []
        self._sequence = itertools.count()
        # The results of keyed publications (idempotencyKey), on the same clock as the streams.
        self.idempotent: IdempotentResults[Optional[StreamPosition]] = IdempotentResults(self._now)

    def setHandler(self, handler: PublicationHandler) -> None:
        self._handler = handler

    def setJoinLeaveHandler(self, handler: JoinLeaveHandler) -> None:
        self._joinLeaveHandler = handler

    def setReconnectHandler(self, handler: ReconnectHandler) -> None:
        """Kept, never called: nothing comes between this broker and its handler, so nothing is ever lost."""
        self._reconnectHandler = handler

    def publishJoinLeave(self, channel: str, info: ClientInfo, join: bool) -> Deferred[None]:
        if channel in self.channels and self._joinLeaveHandler is not None:
            self._joinLeaveHandler(channel, info, join)
        return succeed(None)

    def publish(
        self,
        channel: str,
        publication: Publication,
        historySize: int = 0,
        historyTTL: float = 0,
        historyMetaTTL: float = 0,
        idempotencyKey: str = "",
        idempotentResultTTL: float = 0,
    ) -> Deferred[Optional[StreamPosition]]:
        if idempotencyKey:
            known = self.idempotent.find(channel, idempotencyKey)
            if known is not None:
                return succeed(known.result)
            d = self.publish(channel, publication, historySize, historyTTL, historyMetaTTL)
            # (Fired already: every Deferred of this broker has.)
            return d.addCallback(lambda position: self.idempotent.remember(
                channel, idempotencyKey, position, idempotentResultTTL))
        if not hasHistory(historySize, historyTTL):
            if publication.offset:
                publication = attrs.evolve(publication, offset=0)
            self._deliver(channel, publication, "")
            return succeed(None)
        now = self._now()
        self._expire(now)
        stream = self._streams.get(channel)
        if stream is None:
            stream = self._newStream(channel, now, historyMetaTTL)
        stream.top += 1
        # Publications are frozen: the stream and every subscriber share this one.
        stored = attrs.evolve(publication, offset=stream.top)
        stream.items.append(stored)
        while len(stream.items) > historySize:
            stream.items.popleft()
        stream.expireAt = now + historyTTL
        stream.removeAt = now + (historyMetaTTL or self._defaultMetaTTL)
        self._schedule(channel, stream)
        self._deliver(channel, stored, stream.epoch)
        return succeed(StreamPosition(stream.top, stream.epoch))

    def history(
        self,
        channel: str,
        since: Optional[StreamPosition] = None,
        limit: int = 0,
        reverse: bool = False,
        metaTTL: float = 0,
    ) -> Deferred[HistoryResult]:
        try:
            checkHistoryRequest(since, reverse)
        except HistoryError:
            return fail()
        now = self._now()
        self._expire(now)
        stream = self._streams.get(channel)
        if stream is None:
            stream = self._newStream(channel, now, metaTTL)
        else:
            stream.removeAt = now + (metaTTL or self._defaultMetaTTL)
        self._schedule(channel, stream)
        try:
            checkSinceEpoch(since, stream.top, stream.epoch)
        except HistoryError:
            return fail()
        publications = _select(stream.items, since, limit, reverse)
        return succeed(HistoryResult(publications, stream.top, stream.epoch))

    def removeHistory(self, channel: str) -> Deferred[None]:
        self._expire(self._now())
        stream = self._streams.get(channel)
        if stream is not None:
            stream.items.clear()
            stream.expireAt = None
        return succeed(None)

    def _deliver(self, channel: str, publication: Publication, epoch: str) -> None:
        if channel in self.channels and self._handler is not None:
            self._handler(channel, publication, epoch)

    def _newStream(self, channel: str, now: float, metaTTL: float) -> _Stream:
        epoch = "".join(self._rng.choice(_EPOCH_LETTERS) for _ in range(4))
        stream = self._streams[channel] = _Stream(epoch, now + (metaTTL or self._defaultMetaTTL))
        return stream

    def _schedule(self, channel: str, stream: _Stream) -> None:
        # Deadlines mostly move later (each publish pushes them on): the existing entry then still comes first,
        # and is moved on when it is reached. Only an earlier deadline needs a new entry.
        deadline = stream.nextDeadline()
        if stream.scheduledAt is None or deadline < stream.scheduledAt:
            stream.scheduledAt = deadline
            heapq.heappush(self._deadlines, (deadline, next(self._sequence), channel, stream))

    def _expire(self, now: float) -> None:
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            deadline, _, channel, stream = heapq.heappop(deadlines)
            if self._streams.get(channel) is not stream or stream.scheduledAt != deadline:
                continue  # a dropped stream, or an entry superseded by an earlier one
            stream.scheduledAt = None
            if now >= stream.removeAt:
                del self._streams[channel]
                continue
            if stream.expireAt is not None and now >= stream.expireAt:
                stream.items.clear()
                stream.expireAt = None
            self._schedule(channel, stream)


def _select(
    items: deque[Publication], since: Optional[StreamPosition], limit: int, reverse: bool
) -> list[Publication]:
    """
    Apply a history filter to a stream's items (consecutive offsets ending at the top): see
    L{IBroker.history}.
    """
    if limit == 0 or not items:
        return []
    count = len(items)
    first = items[0].offset
    start, stop = 0, count  # the index range the filter allows, before the limit
    if since is not None:
        sinceOffset = since.offset
        if reverse:
            stop = min(max(sinceOffset - first, 0), count)
        else:
            start = min(max(sinceOffset + 1 - first, 0), count)
    if start >= stop:
        return []
    if reverse:
        end = count - start
        begin = count - stop
        if limit > 0:
            end = min(end, begin + limit)
        return list(itertools.islice(reversed(items), begin, end))
    if limit > 0:
        stop = min(stop, start + limit)
    return list(itertools.islice(items, start, stop))


@implementer(IPresenceManager)
class MemoryPresence:
    """
    Presence inside the process: channel -> client id -> ClientInfo, without expiry (as Centrifugo's memory
    presence manager). Every Deferred it returns has already fired.
    """

    def __init__(self) -> None:
        self._channels: dict[str, dict[str, ClientInfo]] = {}

    def add(self, channel: str, clientID: str, info: ClientInfo) -> Deferred[None]:
        self._channels.setdefault(channel, {})[clientID] = info
        return succeed(None)

    def remove(self, channel: str, clientID: str) -> Deferred[None]:
        clients = self._channels.get(channel)
        if clients is not None:
            clients.pop(clientID, None)
            if not clients:
                del self._channels[channel]
        return succeed(None)

    def presence(self, channel: str) -> Deferred[dict[str, ClientInfo]]:
        return succeed(dict(self._channels.get(channel, {})))

    def stats(self, channel: str) -> Deferred[dict[str, int]]:
        clients = self._channels.get(channel, {})
        users = {info.user for info in clients.values()}
        return succeed({"num_clients": len(clients), "num_users": len(users)})
