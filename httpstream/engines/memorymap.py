# -*- test-case-name: tests.engines.test_engine_maps -*-
"""
The memory map broker: map channels inside the process (Centrifuge's ``map_broker_memory.go``), the embedded
default and the fake other people's tests can use.

Each map keeps its keys sorted (a page is a slice after its cursor, the cursor being the last key sent) and a
change stream as a channel's history stream. Keys with a TTL are removed by one timer on the reactor, set for the
earliest deadline, and their subscribers get the removal as for any other. A channel with a meta TTL is freed whole
(state, stream, epoch) that long after its last write or read, by the same timer.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import random
import string
from collections import deque
from typing import Callable, Mapping, Optional

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from httpstream.engines import UnrecoverablePosition
from httpstream.engines.idempotency import IdempotentResults
from httpstream.engines.maps import (
    IMapBroker,
    SUPPRESS_IDEMPOTENCY,
    SUPPRESS_KEY_EXISTS,
    SUPPRESS_KEY_NOT_FOUND,
    MapSettings,
    MapStateResult,
    MapStreamResult,
    MapUpdateResult,
)
from httpstream.engines.local import EarliestCall, LocalChannels
from httpstream.interfaces import PublicationHandler, ReconnectHandler
from httpstream.values import Publication, StreamPosition

__all__ = ["MemoryMapBroker"]


class _Map:
    """One map channel: its entries by key, the keys in order, their deadlines, and the change stream."""

    __slots__ = ("epoch", "top", "entries", "keys", "deadlines", "stream", "streamExpireAt", "freeAt", "freeQueued")

    def __init__(self, epoch: str) -> None:
        self.epoch = epoch
        self.top = 0
        self.entries: dict[str, Publication] = {}
        self.keys: list[str] = []
        self.deadlines: dict[str, float] = {}
        self.stream: deque[Publication] = deque()
        self.streamExpireAt: Optional[float] = None
        # When the channel is freed (its meta TTL after its last use; None: never), and whether the broker's
        # queue holds an entry for it (one at a time: a busy channel would otherwise fill the queue).
        self.freeAt: Optional[float] = None
        self.freeQueued = False

    def position(self) -> StreamPosition:
        return StreamPosition(self.top, self.epoch)

    def append(self, publication: Publication, settings: MapSettings, now: float) -> None:
        self.stream.append(publication)
        while len(self.stream) > max(settings.streamSize, 1):
            self.stream.popleft()
        self.streamExpireAt = now + settings.streamTTL if settings.streamTTL > 0 else None

    def expireStream(self, now: float) -> None:
        if self.streamExpireAt is not None and now >= self.streamExpireAt:
            self.stream.clear()
            self.streamExpireAt = None


@implementer(IMapBroker)
class MemoryMapBroker(LocalChannels):
    """
    L{IMapBroker} inside one process: every Deferred it returns has already fired, and a write reaches the handler
    before its Deferred fires (a publisher sees its own update before its reply, as with L{MemoryBroker}).

    @ivar channels: the map channels subscribed on this node.
    """

    def __init__(self, reactor: IReactorTime, rng: Optional[random.Random] = None) -> None:
        self._reactor = reactor
        self._rng = rng if rng is not None else random.Random()
        self._handler: Optional[PublicationHandler] = None
        self.channels: set[str] = set()
        self._maps: dict[str, _Map] = {}
        # (deadline, sequence, channel, key, settings) of keys with a TTL; stale entries are skipped when reached.
        self._deadlines: list[tuple[float, int, str, str, MapSettings]] = []
        # (when, sequence, channel, map) of maps with a meta TTL: freed then, unless used since (requeued).
        self._frees: list[tuple[float, int, str, _Map]] = []
        self._sequence = itertools.count()
        self._timer = EarliestCall(reactor, self._expire)
        # The results of keyed writes (idempotencyKey), on the reactor's clock.
        self.idempotent: IdempotentResults[MapUpdateResult] = IdempotentResults(reactor.seconds)

    def setHandler(self, handler: PublicationHandler) -> None:
        self._handler = handler

    def setReconnectHandler(self, handler: ReconnectHandler) -> None:
        pass  # nothing is ever lost on the way inside one process

    def _map(self, channel: str, settings: MapSettings) -> _Map:
        """C{channel}'s map (a new epoch when there is none), used now: its meta TTL starts again."""
        found = self._maps.get(channel)
        if found is None:
            epoch = "".join(self._rng.choice(string.ascii_letters) for _ in range(4))
            found = self._maps[channel] = _Map(epoch)
        if settings.metaTTL <= 0:
            found.freeAt = None
        else:
            found.freeAt = self._reactor.seconds() + settings.metaTTL
            if not found.freeQueued:
                found.freeQueued = True
                heapq.heappush(self._frees, (found.freeAt, next(self._sequence), channel, found))
                self._schedule()
        return found

    def publish(self, channel: str, key: str, publication: Publication, settings: MapSettings,
                keyMode: str = "", idempotencyKey: str = "") -> Deferred[MapUpdateResult]:
        if idempotencyKey:
            return self._once(channel, idempotencyKey, lambda: self.publish(channel, key, publication, settings, keyMode))
        now = self._reactor.seconds()
        m = self._map(channel, settings)
        exists = key in m.entries
        if keyMode == "if_new" and exists:
            self._setDeadline(channel, key, m, settings, now)
            return succeed(MapUpdateResult(m.position(), True, SUPPRESS_KEY_EXISTS))
        if keyMode == "if_exists" and not exists:
            return succeed(MapUpdateResult(m.position(), True, SUPPRESS_KEY_NOT_FOUND))
        m.top += 1
        # Frozen: the state, the stream and every subscriber share this one value.
        stored = attrs.evolve(publication, key=key, offset=m.top, removed=False, delta=False)
        if not exists:
            bisect.insort(m.keys, key)
        m.entries[key] = stored
        m.append(stored, settings, now)
        self._setDeadline(channel, key, m, settings, now)
        self._deliver(channel, stored, m.epoch)
        return succeed(MapUpdateResult(m.position()))

    def remove(self, channel: str, key: str, settings: MapSettings,
               tags: Optional[dict[str, str]] = None, idempotencyKey: str = "") -> Deferred[MapUpdateResult]:
        if idempotencyKey:
            return self._once(channel, idempotencyKey, lambda: self.remove(channel, key, settings, tags))
        m = self._map(channel, settings)
        previous = m.entries.get(key)
        if previous is None:
            return succeed(MapUpdateResult(m.position(), True, SUPPRESS_KEY_NOT_FOUND))
        self._removeKey(channel, key, m, settings, previous.tags if tags is None else tags)
        return succeed(MapUpdateResult(m.position()))

    def _once(self, channel: str, idempotencyKey: str,
              write: Callable[[], Deferred[MapUpdateResult]]) -> Deferred[MapUpdateResult]:
        """C{write}, unless C{idempotencyKey} was written on C{channel} lately: then suppressed, at its position."""
        known = self.idempotent.find(channel, idempotencyKey)
        if known is not None:
            return succeed(MapUpdateResult(known.result.position, True, SUPPRESS_IDEMPOTENCY))
        return write().addCallback(lambda result: self.idempotent.remember(channel, idempotencyKey, result))

    def _removeKey(self, channel: str, key: str, m: _Map, settings: MapSettings, tags: Mapping[str, str]) -> None:
        del m.entries[key]
        del m.keys[bisect.bisect_left(m.keys, key)]
        m.deadlines.pop(key, None)
        m.top += 1
        removal = Publication(b"", offset=m.top, key=key, removed=True, tags=tags)
        m.append(removal, settings, self._reactor.seconds())
        self._deliver(channel, removal, m.epoch)

    def readState(self, channel: str, settings: MapSettings, cursor: str = "", limit: int = -1,
                  revision: Optional[StreamPosition] = None, key: str = "") -> Deferred[MapStateResult]:
        m = self._map(channel, settings)
        if revision is not None and revision.epoch and revision.epoch != m.epoch:
            return fail(UnrecoverablePosition(m.top, m.epoch))
        if key:
            entry = m.entries.get(key)
            return succeed(MapStateResult([entry] if entry is not None else [], m.position(), ""))
        start = bisect.bisect_right(m.keys, cursor) if cursor else 0
        stop = len(m.keys) if limit < 0 else min(len(m.keys), start + limit)
        keys = m.keys[start:stop]
        nextCursor = keys[-1] if keys and stop < len(m.keys) else ""
        return succeed(MapStateResult([m.entries[k] for k in keys], m.position(), nextCursor))

    def readStream(self, channel: str, settings: MapSettings, since: Optional[StreamPosition] = None,
                   limit: int = -1, reverse: bool = False) -> Deferred[MapStreamResult]:
        m = self._map(channel, settings)
        m.expireStream(self._reactor.seconds())
        items: list[Publication] = list(m.stream)
        if reverse:
            if since is not None:
                if since.epoch and since.epoch != m.epoch:
                    return fail(UnrecoverablePosition(m.top, m.epoch))
                items = [p for p in items if p.offset < since.offset]
            items.reverse()
        elif since is not None:
            if since.epoch and since.epoch != m.epoch:
                return fail(UnrecoverablePosition(m.top, m.epoch))
            if since.offset > m.top:
                return fail(UnrecoverablePosition(m.top, m.epoch))
            first = items[0].offset if items else m.top + 1
            if since.offset < m.top and since.offset + 1 < first:
                return fail(UnrecoverablePosition(m.top, m.epoch))
            items = [p for p in items if p.offset > since.offset]
        if limit >= 0:
            items = items[:limit]
        return succeed(MapStreamResult(items, m.position()))

    def stats(self, channel: str) -> Deferred[int]:
        m = self._maps.get(channel)
        return succeed(len(m.entries) if m is not None else 0)

    def clear(self, channel: str) -> Deferred[None]:
        self._maps.pop(channel, None)
        return succeed(None)

    def _deliver(self, channel: str, publication: Publication, epoch: str) -> None:
        if channel in self.channels and self._handler is not None:
            self._handler(channel, publication, epoch)

    # Key TTL

    def _setDeadline(self, channel: str, key: str, m: _Map, settings: MapSettings, now: float) -> None:
        if settings.keyTTL <= 0:
            m.deadlines.pop(key, None)
            return
        deadline = now + settings.keyTTL
        m.deadlines[key] = deadline
        heapq.heappush(self._deadlines, (deadline, next(self._sequence), channel, key, settings))
        self._schedule()

    def _schedule(self) -> None:
        if not self._deadlines and not self._frees:
            return
        self._timer.at(min(queue[0][0] for queue in (self._deadlines, self._frees) if queue))

    def _expire(self) -> None:
        now = self._reactor.seconds()
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            deadline, _, channel, key, settings = heapq.heappop(deadlines)
            m = self._maps.get(channel)
            if m is None or m.deadlines.get(key) != deadline:
                continue  # removed, written again, or its channel cleared
            self._removeKey(channel, key, m, settings, m.entries[key].tags)
        frees = self._frees
        while frees and frees[0][0] <= now:
            _, _, channel, m = heapq.heappop(frees)
            m.freeQueued = False
            if self._maps.get(channel) is not m or m.freeAt is None:
                continue  # cleared, or its settings keep it for ever now
            if m.freeAt > now:
                m.freeQueued = True  # used since: wait for its new time
                heapq.heappush(frees, (m.freeAt, next(self._sequence), channel, m))
            else:
                del self._maps[channel]
        self._schedule()

    def stop(self) -> None:
        """Cancel the key expiry timer (a stopping node; the maps are kept)."""
        self._timer.cancel()
