# -*- test-case-name: tests.engines.test_engine_redis,tests.engines.test_engine_contract -*-
"""
L{RedisBroker}: Centrifugo's Redis broker. A channel's publications go to the PUB/SUB channel
C{<prefix>.client.<channel>} (C{<prefix>.client.{<channel>}} in a Cluster, on its slot's master by sharded
PUB/SUB) (appended to its history stream by the same script when it keeps one:
L{httpstream.engines.redis.history}); joins and leaves go there too, and are not stored. Each channel goes
through its route (L{httpstream.engines.redis.routing}): one Redis, its shard, or its Cluster slot.
"""

from __future__ import annotations

import random
from typing import Optional

from twisted.internet.defer import Deferred, fail
from zope.interface import implementer

from httpstream.engines import DEFAULT_HISTORY_META_TTL, HistoryResult, hasHistory
from httpstream.engines.idempotency import DEFAULT_RESULT_TTL
from httpstream.engines.redis.codec import (
    decodeInfo,
    encodeInfo,
    encodePublication,
    milliseconds,
    readPubSubMessage,
)
from httpstream.engines.redis.errors import RedisReplyError
from httpstream.engines.redis.history import IDEMPOTENT_PUBLISH_SCRIPT, RedisHistory, resultKey
from httpstream.engines.redis.routing import IRedisRouter, channelOfName, keyName
from httpstream.interfaces import IBroker, JoinLeaveHandler, PublicationHandler, ReconnectHandler
from httpstream.logs import Logger
from httpstream.values import ClientInfo, Publication, StreamPosition

__all__ = ["RedisBroker"]

log = Logger()


@implementer(IBroker)
class RedisBroker:
    """
    PUB/SUB and history streams in Redis.

    Every Deferred fires later (after a round trip), and fails while the command connection is down: a
    publication is never reported sent when it was not. A publisher may get its publish result before its own
    publication comes back through PUB/SUB.

    The handler gets each publication with the epoch of the stream it was appended to ("" without history):
    Redis may lose its streams (a restart without persistence), and a positioned subscriber must then learn that
    the stream it follows is gone.
    """

    def __init__(
        self,
        shard: IRedisRouter,
        historyMetaTTL: float = DEFAULT_HISTORY_META_TTL,
        rng: Optional[random.Random] = None,
    ) -> None:
        """
        @param shard: the connections (started separately): a L{RedisShard}, or a router over several.
        @param historyMetaTTL: how long an unused stream lives when a call passes no meta TTL (seconds).
        @param rng: the source of epochs (8 letters: a stream recreated after Redis lost it gets another one).
        """
        self._redis = shard
        self._history = RedisHistory(shard, historyMetaTTL, rng)
        self._handler: Optional[PublicationHandler] = None
        self._joinLeaveHandler: Optional[JoinLeaveHandler] = None
        self._reconnectHandler: Optional[ReconnectHandler] = None
        self._client = f"{shard.prefix}.client.".encode()
        self._hashTags: bool = shard.hashTags
        shard.addReconnectHandler(self._reconnected)

    def setHandler(self, handler: PublicationHandler) -> None:
        self._handler = handler

    def setJoinLeaveHandler(self, handler: JoinLeaveHandler) -> None:
        self._joinLeaveHandler = handler

    def setReconnectHandler(self, handler: ReconnectHandler) -> None:
        """
        Call C{handler(channels)} when the PUB/SUB connection is back after a loss, with the channels it has
        subscribed again (the command connection is up by then): their publications sent while it was down did
        not reach this node, so positioned subscribers should compare their position with the stream's top (a
        history call with limit 0) and be unsubscribed with 2500 (insufficient state) on a gap or another epoch,
        to resubscribe and recover, as Centrifugo's periodic position check would find.
        """
        self._reconnectHandler = handler

    def publishJoinLeave(self, channel: str, info: ClientInfo, join: bool) -> Deferred[None]:
        try:
            payload = (b"j" if join else b"l") + encodeInfo(info)
        except TypeError:
            return fail()
        route = self._redis.route(channel)
        return route.execute(route.publishCommand, self._pubsubName(channel), payload).addCallback(lambda _: None)

    def subscribe(self, channel: str) -> Deferred[None]:
        return self._redis.route(channel).subscribe(self._pubsubName(channel), self._message)

    def unsubscribe(self, channel: str) -> Deferred[None]:
        return self._redis.route(channel).unsubscribe(self._pubsubName(channel))

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
        try:
            payload = encodePublication(publication)
        except TypeError:
            return fail()
        if not hasHistory(historySize, historyTTL):
            route = self._redis.route(channel)
            if idempotencyKey:
                d = route.eval(
                    IDEMPOTENT_PUBLISH_SCRIPT,
                    (resultKey(self._redis.prefix, channel, idempotencyKey, self._hashTags),),
                    [b"0::" + payload, self._pubsubName(channel), route.publishCommand,
                     milliseconds(idempotentResultTTL or DEFAULT_RESULT_TTL)],
                )
            else:
                d = route.execute(route.publishCommand, self._pubsubName(channel), b"0::" + payload)
            return d.addCallback(lambda _: None)
        return self._history.append(
            channel, payload, self._pubsubName(channel), historySize, historyTTL, historyMetaTTL, idempotencyKey,
            idempotentResultTTL,
        )

    def history(
        self,
        channel: str,
        since: Optional[StreamPosition] = None,
        limit: int = 0,
        reverse: bool = False,
        metaTTL: float = 0,
    ) -> Deferred[HistoryResult]:
        return self._history.history(channel, since, limit, reverse, metaTTL)

    def removeHistory(self, channel: str) -> Deferred[None]:
        return self._history.removeHistory(channel)

    def _pubsubName(self, channel: str) -> bytes:
        return keyName(self._redis.prefix, "client", channel, self._hashTags)

    def _message(self, name: bytes, message: bytes) -> None:
        channel = channelOfName(self._client, name, self._hashTags)
        if message[:1] in (b"j", b"l"):
            self._joinLeave(channel, message)
            return
        if self._handler is None:
            return
        try:
            epoch, publication = readPubSubMessage(message)
        except RedisReplyError as e:
            log.warn("Redis: undecodable publication on {channel} dropped: {error}", channel=channel, error=e)
            return
        self._handler(channel, publication, epoch)

    def _joinLeave(self, channel: str, message: bytes) -> None:
        if self._joinLeaveHandler is None:
            return
        try:
            info = decodeInfo(message[1:])
        except RedisReplyError as e:
            log.warn("Redis: undecodable join/leave on {channel} dropped: {error}", channel=channel, error=e)
            return
        self._joinLeaveHandler(channel, info, message[:1] == b"j")

    def _reconnected(self, names: list[bytes]) -> None:
        if self._reconnectHandler is None:
            return
        prefix = self._client
        self._reconnectHandler([channelOfName(prefix, name, self._hashTags) for name in names if name.startswith(prefix)])
