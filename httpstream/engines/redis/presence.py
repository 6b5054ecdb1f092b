# -*- test-case-name: tests.engines.test_engine_redis,tests.engines.test_engine_contract -*-
"""
L{RedisPresence}: Centrifugo's Redis presence. A hash C{<prefix>.presence.data.<channel>} (client id -> info) and
a sorted set C{<prefix>.presence.expire.<channel>} (client id -> expiry time): an entry the node stops refreshing
disappears after C{global_presence_ttl}, even when its node died. In a Redis Cluster the channel is a hash tag
(C{<prefix>.presence.data.{<channel>}}), so both keys share a slot.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from httpstream.engines.redis.codec import encodeInfo, milliseconds, readPresenceReply
from httpstream.engines.redis.routing import IRedisRouter, keyName
from httpstream.interfaces import IPresenceManager
from httpstream.values import ClientInfo

__all__ = ["DEFAULT_PRESENCE_TTL", "PRESENCE_GET_SCRIPT", "RedisPresence"]

DEFAULT_PRESENCE_TTL = 60.0  # Centrifugo's global_presence_ttl

_ADD_SCRIPT = b"""
-- KEYS: expiry zset, data hash. ARGV: key ttl ms, entry expiry time, client id, info.
redis.call("zadd", KEYS[1], ARGV[2], ARGV[3])
redis.call("hset", KEYS[2], ARGV[3], ARGV[4])
redis.call("pexpire", KEYS[1], ARGV[1])
redis.call("pexpire", KEYS[2], ARGV[1])
"""

_REMOVE_SCRIPT = b"""
-- KEYS: expiry zset, data hash. ARGV: client id.
redis.call("hdel", KEYS[2], ARGV[1])
redis.call("zrem", KEYS[1], ARGV[1])
"""

PRESENCE_GET_SCRIPT = b"""
-- KEYS: expiry zset, data hash. ARGV: now. Drops the expired entries first.
local expired = redis.call("zrangebyscore", KEYS[1], "-inf", ARGV[1])
if #expired > 0 then
  for i = 1, #expired, 1000 do
    redis.call("hdel", KEYS[2], unpack(expired, i, math.min(i + 999, #expired)))
  end
  redis.call("zremrangebyscore", KEYS[1], "-inf", ARGV[1])
end
return redis.call("hgetall", KEYS[2])
"""




@implementer(IPresenceManager)
class RedisPresence:
    """
    Presence in Redis: entries expire C{ttl} seconds after their last L{add} (the client refreshes them every
    C{client_presence_update_interval}), so a dead node's clients disappear too.
    """

    def __init__(
        self, shard: IRedisRouter, ttl: float = DEFAULT_PRESENCE_TTL, clock: Optional[IReactorTime] = None
    ) -> None:
        """
        @param ttl: seconds an entry lives without a refresh (C{global_presence_ttl}).
        @param clock: whose C{seconds} dates the entries (None: C{time.time}); every node should agree on it.
        """
        self._redis = shard
        self._prefix = shard.prefix
        self._hashTags: bool = shard.hashTags
        self._ttl = ttl
        self._now: Callable[[], float] = clock.seconds if clock is not None else time.time

    def add(self, channel: str, clientID: str, info: ClientInfo) -> Deferred[None]:
        try:
            encoded = encodeInfo(info)
        except TypeError:
            return fail()
        ttl, expireAt = milliseconds(self._ttl), repr(self._now() + self._ttl)
        d = self._redis.route(channel).eval(_ADD_SCRIPT, self._keys(channel), [ttl, expireAt, clientID, encoded])
        return d.addCallback(lambda _: None)

    def remove(self, channel: str, clientID: str) -> Deferred[None]:
        return self._redis.route(channel).eval(_REMOVE_SCRIPT, self._keys(channel), [clientID]).addCallback(lambda _: None)

    def presence(self, channel: str) -> Deferred[dict[str, ClientInfo]]:
        d = self._redis.route(channel).eval(PRESENCE_GET_SCRIPT, self._keys(channel), [repr(self._now())])
        return d.addCallback(readPresenceReply)

    def stats(self, channel: str) -> Deferred[dict[str, int]]:
        def count(clients: dict[str, ClientInfo]) -> dict[str, int]:
            users = {info.user for info in clients.values()}
            return {"num_clients": len(clients), "num_users": len(users)}

        return self.presence(channel).addCallback(count)

    def _keys(self, channel: str) -> tuple[bytes, bytes]:
        return (
            keyName(self._prefix, "presence.expire", channel, self._hashTags),
            keyName(self._prefix, "presence.data", channel, self._hashTags),
        )
