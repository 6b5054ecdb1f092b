# -*- test-case-name: tests.engines.test_redis_maps,tests.engines.test_engine_maps -*-
"""
L{RedisMapBroker}: map channels (L{IMapBroker}) in Redis, shared by every node on it, after centrifuge's Redis map
broker. The keys and scripts are L{httpstream.engines.redis.mapscripts}'s: every call is one script on the
channel's route (one Redis, its shard, or its Cluster slot), so a write changes the state, the stream and tells
every node in one step, and a read sees a state and a stream position that belong together.

Key TTLs: every script removes the keys past their deadline first (a removal appended and published for each), so
reads are exact. To tell live subscribers in time, each node sweeps the channels subscribed on it at their
earliest deadline, which it learns from its scripts' replies and from the writes it receives (their messages carry
the key's deadline); a node that sweeps early finds nothing and learns the next deadline. A channel nobody
subscribes to has its expired keys removed by the next call that touches it.
"""

from __future__ import annotations

import heapq
import itertools
import random
import string
from typing import Any, Optional

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from zope.interface import implementer

from httpstream.engines import DEFAULT_HISTORY_META_TTL, EngineUnavailable, UnrecoverablePosition
from httpstream.engines.idempotency import DEFAULT_RESULT_TTL
from httpstream.engines.local import EarliestCall
from httpstream.engines.maps import IMapBroker, MapSettings, MapStateResult, MapStreamResult, MapUpdateResult
from httpstream.engines.redis.codec import encodePublication, milliseconds
from httpstream.engines.redis.errors import RedisReplyError
from httpstream.engines.redis.history import resultKey
from httpstream.engines.redis.mapcodec import (
    MapReply,
    readMapMessage,
    readStateReply,
    readStreamReply,
    readTouchReply,
    readWriteReply,
)
from httpstream.engines.redis.mapscripts import (
    KINDS,
    PUBSUB_KIND,
    READ_STATE_SCRIPT,
    READ_STREAM_SCRIPT,
    TOUCH_SCRIPT,
    WRITE_SCRIPT,
)
from httpstream.engines.redis.routing import IRedisRouter, channelOfName, keyName
from httpstream.interfaces import PublicationHandler, ReconnectHandler
from httpstream.logs import Logger
from httpstream.values import Publication, StreamPosition

__all__ = ["RedisMapBroker"]

log = Logger()

_EPOCH_LETTERS = string.ascii_letters
_MAX_OFFSET = 2**63
_LUA_COUNT = 2**31  # Lua numbers are doubles: a larger limit is "all" all the same
# How many expired keys one script removes at most (a sweep goes on at once while more are due).
EXPIRE_BATCH = 1000
# How long a sweep that failed (Redis away) waits before trying again, in seconds.
SWEEP_RETRY = 1.0


@implementer(IMapBroker)
class RedisMapBroker(Service):
    """
    Map channels in Redis (see the module docstring). A service: stopping it cancels its sweep timer.

    Every Deferred fires later (after a round trip) and fails with L{RedisUnavailable} while the channel's Redis
    is away (L{RedisReplyError} for a reply it does not expect). A writer may get its result before its write
    comes back through PUB/SUB.
    """

    def __init__(
        self,
        router: IRedisRouter,
        clock: IReactorTime,
        metaTTL: float = DEFAULT_HISTORY_META_TTL,
        rng: Optional[random.Random] = None,
    ) -> None:
        """
        @param router: the connections (started separately).
        @param clock: the time of key deadlines, and the sweep's timer.
        @param metaTTL: how long an unused channel (state, position, epoch) lives after its last use (seconds),
            for the calls given no L{MapSettings} (C{stats}, the sweep) on a channel that has no meta TTL of its own
            yet (its L{MapSettings.metaTTL}, stored by the calls given them).
        @param rng: the source of epochs (8 letters).
        """
        self._redis = router
        self._clock = clock
        self._metaTTL = milliseconds(metaTTL)
        self._rng = rng if rng is not None else random.Random()
        self._handler: Optional[PublicationHandler] = None
        self._reconnectHandler: Optional[ReconnectHandler] = None
        self._pubsubStart = f"{router.prefix}.{PUBSUB_KIND}.".encode()
        self._subscribed: dict[str, int] = {}
        # The next sweep of each subscribed channel (seconds), and a heap of them (stale entries skipped).
        self._due: dict[str, float] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._sequence = itertools.count()
        self._timer = EarliestCall(clock, self._sweepDue)
        router.addReconnectHandler(self._reconnected)

    # IMapBroker

    def setHandler(self, handler: PublicationHandler) -> None:
        self._handler = handler

    def setReconnectHandler(self, handler: ReconnectHandler) -> None:
        """
        Call C{handler(channels)} with the map channels subscribed again after a PUB/SUB connection was lost: their
        writes meanwhile did not reach this node (as L{RedisBroker.setReconnectHandler}).
        """
        self._reconnectHandler = handler

    def subscribe(self, channel: str) -> Deferred[None]:
        self._subscribed[channel] = self._subscribed.get(channel, 0) + 1
        d = self._redis.route(channel).subscribe(self._pubsubName(channel), self._message)
        # Its keys' deadlines, to sweep them in time (writes received from now on carry theirs).
        self._sweep(channel)
        return d

    def unsubscribe(self, channel: str) -> Deferred[None]:
        count = self._subscribed.get(channel, 0)
        if count <= 1:
            self._subscribed.pop(channel, None)
            self._due.pop(channel, None)
        else:
            self._subscribed[channel] = count - 1
        return self._redis.route(channel).unsubscribe(self._pubsubName(channel))

    def publish(self, channel: str, key: str, publication: Publication, settings: MapSettings,
                keyMode: str = "", idempotencyKey: str = "") -> Deferred[MapUpdateResult]:
        try:
            payload = encodePublication(attrs.evolve(publication, offset=0, delta=False, key=key, removed=False))
        except TypeError:
            return fail()
        return self._write(channel, b"s", key, payload, settings, keyMode, idempotencyKey)

    def remove(self, channel: str, key: str, settings: MapSettings,
               tags: Optional[dict[str, str]] = None, idempotencyKey: str = "") -> Deferred[MapUpdateResult]:
        payload = b""  # the script writes one with the key's tags
        if tags is not None:
            try:
                payload = encodePublication(Publication(b"", tags=tags, key=key, removed=True))
            except TypeError:
                return fail()
        return self._write(channel, b"r", key, payload, settings, "", idempotencyKey)

    def readState(self, channel: str, settings: MapSettings, cursor: str = "", limit: int = -1,
                  revision: Optional[StreamPosition] = None, key: str = "") -> Deferred[MapStateResult]:
        if key:
            cursor, limit = "", -1  # one entry at most: never a next page
        count = -1 if limit < 0 else min(limit, _LUA_COUNT)
        if 0 < count < _LUA_COUNT:
            count += 1  # one more tells whether there is a next page
        lowest = b"(" + cursor.encode() if cursor else b"-"
        d = self._run(channel, READ_STATE_SCRIPT, [lowest, count, key.encode()], settings)

        def read(reply: Any) -> MapStateResult:
            head, publications = readStateReply(reply)
            self._learn(channel, head)
            position = head.position
            if revision is not None and revision.epoch and revision.epoch != position.epoch:
                raise UnrecoverablePosition(position.offset, position.epoch)
            more = 0 <= limit < len(publications)
            if more:
                del publications[limit:]
            return MapStateResult(publications, position, publications[-1].key if more and publications else "")

        return d.addCallback(read)

    def readStream(self, channel: str, settings: MapSettings, since: Optional[StreamPosition] = None,
                   limit: int = -1, reverse: bool = False) -> Deferred[MapStreamResult]:
        lowest, epoch = (b"+" if reverse else b"-"), ""
        if since is not None:
            offset = min(max(since.offset, 0), _MAX_OFFSET - 1)
            # Reversed: the entries before since (id 0 is none: a stream's ids start at 1).
            lowest = b"%d" % (max(offset - 1, 0) if reverse else offset + 1)
            epoch = since.epoch
        count = -1 if limit < 0 else min(limit, _LUA_COUNT)
        d = self._run(channel, READ_STREAM_SCRIPT, [lowest, count, epoch, b"1" if reverse else b"0"], settings)

        def read(reply: Any) -> MapStreamResult:
            head, oldest, publications = readStreamReply(reply)
            self._learn(channel, head)
            top, current = head.position.offset, head.position.epoch
            if reverse:
                if since is not None and since.epoch and since.epoch != current:
                    raise UnrecoverablePosition(top, current)
                return MapStreamResult(publications, head.position)
            if since is not None:
                # As the memory broker: another epoch, a position past the top, or writes after it trimmed away.
                first = oldest or top + 1
                if (since.epoch and since.epoch != current) or since.offset > top or (
                    since.offset < top and since.offset + 1 < first
                ):
                    raise UnrecoverablePosition(top, current)
            return MapStreamResult(publications, head.position)

        return d.addCallback(read)

    def stats(self, channel: str) -> Deferred[int]:
        def read(reply: Any) -> int:
            head, count = readTouchReply(reply)
            self._learn(channel, head)
            return count

        return self._run(channel, TOUCH_SCRIPT, []).addCallback(read)

    def clear(self, channel: str) -> Deferred[None]:
        return self._redis.route(channel).execute(b"DEL", *self._keys(channel)).addCallback(lambda _: None)

    # Scripts

    def _write(self, channel: str, op: bytes, key: str, payload: bytes, settings: MapSettings,
               keyMode: str, idempotencyKey: str) -> Deferred[MapUpdateResult]:
        keyTTL = milliseconds(settings.keyTTL) if settings.keyTTL > 0 else 0
        streamTTL = milliseconds(settings.streamTTL) if settings.streamTTL > 0 else 0
        args = [op, key.encode(), payload, keyMode.encode(), keyTTL, max(settings.streamSize, 1), streamTTL,
                milliseconds(DEFAULT_RESULT_TTL)]
        extra: tuple[bytes, ...] = ()
        if idempotencyKey:
            # In the channel's slot, as its other keys: "map.result.<len>" beside the channels' "result.<len>".
            extra = (resultKey(self._redis.prefix, channel, idempotencyKey, self._redis.hashTags, "map.result"),)

        def read(reply: Any) -> MapUpdateResult:
            head, reason = readWriteReply(reply)
            self._learn(channel, head)
            return MapUpdateResult(head.position, bool(reason), reason)

        return self._run(channel, WRITE_SCRIPT, args, settings, extra).addCallback(read)

    def _run(self, channel: str, script: bytes, args: list[Any], settings: Optional[MapSettings] = None,
             extraKeys: tuple[bytes, ...] = ()) -> Deferred[Any]:
        route = self._redis.route(channel)
        if settings is None:
            metaTTL: Any = b"~%d" % self._metaTTL  # the channel's own, if it has one
        else:
            metaTTL = milliseconds(settings.metaTTL) if settings.metaTTL > 0 else 0
        common = [
            int(self._clock.seconds() * 1000),
            metaTTL,
            "".join(self._rng.choice(_EPOCH_LETTERS) for _ in range(8)),
            self._pubsubName(channel),
            route.publishCommand,
            EXPIRE_BATCH,
        ]
        return route.eval(script, self._keys(channel) + list(extraKeys), common + args)

    def _keys(self, channel: str) -> list[bytes]:
        return [keyName(self._redis.prefix, kind, channel, self._redis.hashTags) for kind in KINDS]

    def _pubsubName(self, channel: str) -> bytes:
        return keyName(self._redis.prefix, PUBSUB_KIND, channel, self._redis.hashTags)

    # PUB/SUB

    def _message(self, name: bytes, message: bytes) -> None:
        channel = channelOfName(self._pubsubStart, name, self._redis.hashTags)
        try:
            epoch, deadline, publication = readMapMessage(message)
        except RedisReplyError as e:
            log.warn("Redis: undecodable map write on {channel} dropped: {error}", channel=channel, error=e)
            return
        if deadline:
            self._expect(channel, deadline)
        if self._handler is not None:
            self._handler(channel, publication, epoch)

    def _reconnected(self, names: list[bytes]) -> None:
        start, hashTags = self._pubsubStart, self._redis.hashTags
        channels = [channelOfName(start, name, hashTags) for name in names if name.startswith(start)]
        for channel in channels:
            self._sweep(channel)  # deadlines sent meanwhile were missed too
        if channels and self._reconnectHandler is not None:
            self._reconnectHandler(channels)

    # The sweep

    def _learn(self, channel: str, head: MapReply) -> None:
        if head.deadline:
            self._expect(channel, head.deadline)

    def _expect(self, channel: str, deadline: float) -> None:
        """Sweep C{channel} (when subscribed here) at C{deadline} at the latest."""
        if channel not in self._subscribed:
            return
        current = self._due.get(channel)
        if current is not None and current <= deadline:
            return
        self._due[channel] = deadline
        heapq.heappush(self._heap, (deadline, next(self._sequence), channel))
        self._schedule()

    def _schedule(self) -> None:
        heap = self._heap
        while heap and self._due.get(heap[0][2]) != heap[0][0]:
            heapq.heappop(heap)  # swept, unsubscribed or moved earlier since
        if not heap or not self.running:
            return
        self._timer.at(heap[0][0])

    def _sweepDue(self) -> None:
        now = self._clock.seconds()
        while self._heap and self._heap[0][0] <= now:
            deadline, _, channel = heapq.heappop(self._heap)
            if self._due.get(channel) == deadline:
                self._sweep(channel)
        self._schedule()

    def _sweep(self, channel: str) -> None:
        """Remove C{channel}'s expired keys; learn its next deadline (or, failing, try again later)."""
        # Deadlines heard while the sweep runs stay: its reply may have been made before them.
        self._due.pop(channel, None)

        def swept(reply: Any) -> None:
            head, _ = readTouchReply(reply)
            self._learn(channel, head)

        def failed(failure: Failure) -> None:
            if not failure.check(EngineUnavailable):  # an outage: the retry says nothing until it is over
                log.failure("map key expiry of {channel}", failure, channel=channel)
            self._expect(channel, self._clock.seconds() + SWEEP_RETRY)

        # (A reply read as bad fails the sweep too: retried, not an unhandled error.)
        self._run(channel, TOUCH_SCRIPT, []).addCallback(swept).addErrback(failed)

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self._schedule()

    def stopService(self) -> None:
        self._timer.cancel()
        super().stopService()  # type: ignore[no-untyped-call]
