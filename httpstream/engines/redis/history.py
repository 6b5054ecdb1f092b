# -*- test-case-name: tests.engines.test_engine_redis,tests.engines.test_engine_contract -*-
"""
History streams in Redis: a channel's publications in a Redis stream C{<prefix>.history.stream.<channel>} (entry
id C{<offset>-0}, one field C{d}: the encoded publication) and its position in a hash
C{<prefix>.history.meta.<channel>} (C{s}: top offset, C{e}: epoch), as Centrifugo's Redis broker keeps them. In a
Redis Cluster the channel is a hash tag (C{<prefix>.history.stream.{<channel>}}): both keys and the PUB/SUB name
share one slot, so the scripts run on that slot's master.

Appending is one Lua script that also publishes (L{RedisHistory.append}, called by the broker): create the epoch
when missing, increment the top, XADD with an exact MAXLEN, set both TTLs (PEXPIRE: milliseconds) and PUBLISH, so
offsets reach subscribers in order. Reading is one script too (it creates the stream and renews its meta TTL).
"""

from __future__ import annotations

import random
import string
from typing import Any, Optional

from twisted.internet.defer import Deferred, fail
from zope.interface import implementer

from httpstream.engines import (
    DEFAULT_HISTORY_META_TTL,
    HistoryError,
    HistoryResult,
    checkHistoryRequest,
    checkSinceEpoch,
)
from httpstream.engines.idempotency import DEFAULT_RESULT_TTL
from httpstream.engines.redis.codec import milliseconds, readHistoryReply, readPublishReply
from httpstream.engines.redis.routing import IRedisRouter, keyName
from httpstream.interfaces import IHistory
from httpstream.values import StreamPosition

__all__ = ["HISTORY_SCRIPT", "IDEMPOTENT_PUBLISH_SCRIPT", "PUBLISH_SCRIPT", "RedisHistory", "resultKey"]

_EPOCH_LETTERS = string.ascii_letters
_MAX_OFFSET = 2**63  # stream ids are unsigned 64-bit: a client's larger since offset means "past the top" all the same

# Lua. Numbers pass as strings; "%d" keeps large offsets out of Lua's exponent notation.

PUBLISH_SCRIPT = b"""
-- KEYS: meta hash, stream, result hash of an idempotency key (if any). ARGV: publication, size, ttl ms,
-- meta ttl ms, epoch if new, PUB/SUB channel, publish command (publish, or spublish in a Cluster), result ttl ms.
if KEYS[3] then
  local known = redis.call("hmget", KEYS[3], "s", "e")
  if known[1] then
    return {tonumber(known[1]), known[2]}
  end
end
local epoch = redis.call("hget", KEYS[1], "e")
if not epoch then
  epoch = ARGV[5]
  redis.call("del", KEYS[2])
  redis.call("hset", KEYS[1], "e", epoch, "s", 0)
end
local top = redis.call("hincrby", KEYS[1], "s", 1)
local offset = string.format("%d", top)
redis.call("pexpire", KEYS[1], ARGV[4])
redis.call("xadd", KEYS[2], "MAXLEN", ARGV[2], offset .. "-0", "d", ARGV[1])
redis.call("pexpire", KEYS[2], ARGV[3])
redis.call(ARGV[7], ARGV[6], offset .. ":" .. epoch .. ":" .. ARGV[1])
if KEYS[3] then
  redis.call("hset", KEYS[3], "s", offset, "e", epoch)
  redis.call("pexpire", KEYS[3], ARGV[8])
end
return {top, epoch}
"""

IDEMPOTENT_PUBLISH_SCRIPT = b"""
-- A publication without history, once per idempotency key. KEYS: result key. ARGV: message, PUB/SUB channel,
-- publish command, result ttl ms. Returns 1 when it published, 0 when the key was known.
if redis.call("exists", KEYS[1]) == 1 then
  return 0
end
redis.call(ARGV[3], ARGV[2], ARGV[1])
redis.call("set", KEYS[1], "", "PX", ARGV[4])
return 1
"""

HISTORY_SCRIPT = b"""
-- KEYS: meta hash, stream. ARGV: epoch if new, meta ttl ms, since epoch, count (-1 all, 0 none), reverse,
-- lowest id, highest id.
local state = redis.call("hmget", KEYS[1], "s", "e")
local top, epoch = tonumber(state[1]) or 0, state[2]
if not epoch then
  epoch = ARGV[1]
  top = 0
  redis.call("del", KEYS[2])
  redis.call("hset", KEYS[1], "e", epoch, "s", 0)
end
redis.call("pexpire", KEYS[1], ARGV[2])
local count = tonumber(ARGV[4])
if count == 0 or (ARGV[3] ~= "" and ARGV[3] ~= epoch) then
  return {top, epoch, {}}
end
local entries
if ARGV[5] == "1" then
  if count > 0 then
    entries = redis.call("xrevrange", KEYS[2], ARGV[7], ARGV[6], "COUNT", count)
  else
    entries = redis.call("xrevrange", KEYS[2], ARGV[7], ARGV[6])
  end
elseif count > 0 then
  entries = redis.call("xrange", KEYS[2], ARGV[6], ARGV[7], "COUNT", count)
else
  entries = redis.call("xrange", KEYS[2], ARGV[6], ARGV[7])
end
return {top, epoch, entries}
"""


@implementer(IHistory)
class RedisHistory:
    """
    The history streams of one Redis (see the module docstring for the keys and scripts). L{RedisBroker} appends
    through L{append} as it publishes; readers may use this alone.

    Every Deferred fires later (after a round trip), and fails while the command connection is down.
    """

    def __init__(
        self,
        shard: IRedisRouter,
        historyMetaTTL: float = DEFAULT_HISTORY_META_TTL,
        rng: Optional[random.Random] = None,
    ) -> None:
        """
        @param shard: the connections (started separately).
        @param historyMetaTTL: how long an unused stream lives when a call passes no meta TTL (seconds).
        @param rng: the source of epochs (8 letters: a stream recreated after Redis lost it gets another one).
        """
        self._redis = shard
        self._prefix = shard.prefix
        self._hashTags: bool = shard.hashTags
        self._defaultMetaTTL = historyMetaTTL
        self._rng = rng if rng is not None else random.Random()

    def append(
        self, channel: str, payload: bytes, pubsubName: bytes, size: int, ttl: float, metaTTL: float,
        idempotencyKey: str = "", resultTTL: float = 0,
    ) -> Deferred[Optional[StreamPosition]]:
        """
        Append an encoded publication to C{channel}'s stream and publish it on C{pubsubName} as
        C{<offset>:<epoch>:<payload>}, in one script. With C{idempotencyKey} the script first looks for the key's
        result (L{resultKey}) and answers it instead when found, and otherwise stores the new one for
        C{resultTTL} seconds.

        @return: a Deferred firing with the publication's L{StreamPosition} (never None: the type is
            L{IBroker.publish}'s).
        """
        route = self._redis.route(channel)
        keys: tuple[bytes, ...] = self._keys(channel)
        if idempotencyKey:
            keys += (resultKey(self._prefix, channel, idempotencyKey, self._hashTags),)
        d = route.eval(
            PUBLISH_SCRIPT,
            keys,
            [
                payload,
                size,
                milliseconds(ttl),
                milliseconds(metaTTL or self._defaultMetaTTL),
                self._newEpoch(),
                pubsubName,
                route.publishCommand,
                milliseconds(resultTTL or DEFAULT_RESULT_TTL),
            ],
        )
        return d.addCallback(readPublishReply)

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
        lowest, highest, sinceEpoch = b"-", b"+", ""
        if since is not None:
            sinceEpoch = since.epoch
            sinceOffset = min(max(since.offset, 0), _MAX_OFFSET)
            if reverse:
                highest = b"%d" % (sinceOffset - 1)
            else:
                lowest = b"%d" % (sinceOffset + 1)
        d = self._redis.route(channel).eval(
            HISTORY_SCRIPT,
            self._keys(channel),
            [
                self._newEpoch(),
                milliseconds(metaTTL or self._defaultMetaTTL),
                sinceEpoch,
                min(limit, 2**31) if limit >= 0 else -1,  # (Lua numbers are doubles)
                b"1" if reverse else b"0",
                lowest,
                highest,
            ],
        )

        def read(reply: Any) -> HistoryResult:
            result = readHistoryReply(reply)
            checkSinceEpoch(since, result.offset, result.epoch)
            return result

        return d.addCallback(read)

    def removeHistory(self, channel: str) -> Deferred[None]:
        return self._redis.route(channel).execute("DEL", self._keys(channel)[1]).addCallback(lambda _: None)

    def _keys(self, channel: str) -> tuple[bytes, bytes]:
        return (
            keyName(self._prefix, "history.meta", channel, self._hashTags),
            keyName(self._prefix, "history.stream", channel, self._hashTags),
        )

    def _newEpoch(self) -> str:
        return "".join(self._rng.choice(_EPOCH_LETTERS) for _ in range(8))


def resultKey(prefix: str, channel: str, key: str, hashTags: bool, kind: str = "result") -> bytes:
    """
    The key holding a keyed publication's result: C{<prefix>.<kind>.<len>.<channel>.<key>}, the channel's length
    in it so that no other (channel, key) pair spells the same name; in a Cluster the channel is its hash tag,
    so the key is on the slot of the channel's stream, where the publish script runs.
    """
    return keyName(prefix, f"{kind}.{len(channel)}", channel, hashTags) + b"." + key.encode()
