# -*- test-case-name: tests.engines.test_redis_sharding -*-
"""
Sharding over several Redis: which one holds a channel, decided by each node alone and the same way on every
node (Centrifugo's too, so both can share the shards): C{consistentIndex}, a jump consistent hash of the FNV-1a
hash of the channel name, and L{ShardRing}, the router over the shards that uses it.

A channel's PUB/SUB, history and presence all live on its shard: a shard that is down fails only its channels'
calls (L{httpstream.engines.redis.RedisUnavailable}); the others keep working. The control plane subscribes on
every shard and publishes on one that answers (L{ShardRing.everyRoute}).
"""

from __future__ import annotations

from typing import Callable, Sequence

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, gatherResults
from zope.interface import implementer

from httpstream.engines.redis.routing import IRedisRoute, IRedisRouter

__all__ = ["ShardRing", "consistentIndex", "fnv1a64", "jumpHash"]

_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_MASK = 0xFFFFFFFFFFFFFFFF


def fnv1a64(data: bytes) -> int:
    """The 64-bit FNV-1a hash (Go's C{hash/fnv.New64a})."""
    value = _FNV_OFFSET
    for byte in data:
        value = ((value ^ byte) * _FNV_PRIME) & _MASK
    return value


def jumpHash(key: int, buckets: int) -> int:
    """
    Lamping and Veach's jump consistent hash of a 64-bit C{key} into C{[0, buckets)}: adding a bucket moves only
    1/(n+1) of the keys. The arithmetic is Go's (wrapping uint64, float64 division, truncation), as centrifuge's.
    """
    if buckets < 1:
        raise ValueError("at least one bucket")
    b, j = -1, 0
    while j < buckets:
        b = j
        key = (key * 2862933555777941757 + 1) & _MASK
        j = int(float(b + 1) * (float(1 << 31) / float((key >> 33) + 1)))
    return b


def consistentIndex(channel: str, buckets: int) -> int:
    """The shard of C{channel} among C{buckets}, as centrifuge's C{consistentIndex} computes it."""
    return jumpHash(fnv1a64(channel.encode("utf-8", "surrogatepass")), buckets)


@implementer(IRedisRouter)
class ShardRing(MultiService):
    """
    Several independent Redis setups (shards: standalone Redis, or Redis Clusters), the channels spread over them
    by L{consistentIndex}. Starting it starts them.

    The order of the shards is the configuration's: every node must list them in the same order.
    """

    def __init__(self, shards: Sequence[IRedisRouter]) -> None:
        if not shards:
            raise ValueError("at least one shard")
        if len({shard.hashTags for shard in shards}) > 1:
            raise ValueError("shards must all be Redis Clusters or all not")
        super().__init__()  # type: ignore[no-untyped-call]
        self.shards = list(shards)
        self.prefix = shards[0].prefix
        self.hashTags = shards[0].hashTags
        for shard in shards:
            shard.setServiceParent(self)  # type: ignore[attr-defined]

    def shardOf(self, channel: str) -> IRedisRouter:
        return self.shards[consistentIndex(channel, len(self.shards))]

    def route(self, channel: str) -> IRedisRoute:
        return self.shardOf(channel).route(channel)

    def everyRoute(self, name: str) -> list[IRedisRoute]:
        return [route for shard in self.shards for route in shard.everyRoute(name)]

    def addReconnectHandler(self, handler: Callable[[list[bytes]], None]) -> None:
        for shard in self.shards:
            shard.addReconnectHandler(handler)

    def whenReady(self) -> Deferred[None]:
        # Every shard, as Centrifugo, which does not start while one is unreachable.
        return gatherResults([shard.whenReady() for shard in self.shards]).addCallback(lambda _: None)

    def describe(self) -> str:
        return " ".join(shard.describe() for shard in self.shards)
