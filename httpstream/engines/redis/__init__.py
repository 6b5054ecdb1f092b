# -*- test-case-name: tests.engines.test_engine_redis,tests.engines.test_engine_contract -*-
"""
The Redis engine: PUB/SUB, history streams and presence shared by every node that uses the same Redis, after
Centrifugo's (centrifuge ``broker_redis.go``, ``presence_redis.go``).

Owns, one concept per module:
  - L{address}: C{redis_address} read into a L{RedisAddress}.
  - L{resp}: reading Redis replies (RESP2, with hiredis) a whole TCP chunk at a time; writing commands.
  - L{connection}: one connection kept up, with backoff, proved usable before use.
  - L{sentinel}: Redis Sentinel: where the master is now (asked before each connection), and word of failovers.
  - L{shard}: L{RedisShard}, the command and PUB/SUB connections to one Redis, and the channels subscribed on it
    (subscribed again after a reconnection, which the reconnect handlers hear about); with Sentinel, following the
    master.
  - L{routing}: L{IRedisRoute} and L{IRedisRouter}, which connections serve a channel, and its key names.
  - L{sharding}: L{ShardRing}, channels spread over several Redis by Centrifugo's consistent hash.
  - L{slots}, L{cluster}: L{RedisCluster}, a Redis Cluster (slots, redirections, sharded PUB/SUB).
  - L{topology}: L{routerFromConfig}, the router the configuration describes.
  - L{codec}: what is stored in Redis and read back (publications, client infos, script replies), checked.
  - L{history}: L{RedisHistory}, the history streams (L{IHistory}) and the script that appends and publishes.
  - L{broker}: L{RedisBroker} (L{IBroker}), PUB/SUB per channel, publishing through the history script.
  - L{presence}: L{RedisPresence} (L{IPresenceManager}), entries that expire unless refreshed.
  - L{mapscripts}, L{mapcodec}, L{maps}: L{RedisMapBroker} (L{httpstream.engines.maps.IMapBroker}), map channels:
    their keys and scripts, the scripts' replies read back, and the broker with its key expiry sweep.
  - L{errors}: L{RedisUnavailable} and L{RedisReplyError}, both outages for the caller.

May import: txredisapi, hiredis, Twisted, L{httpstream.engines} (the shared values and errors), L{httpstream.interfaces},
L{httpstream.logs}; never the node, the client or anything above them. Importing it imports txredisapi, which
installs the global reactor: import it only where the engine is chosen.

Not supported: sharding over several Sentinel-managed masters (one master through Sentinel, or shards, or a Cluster).
"""

from httpstream.engines.redis.address import DEFAULT_PORT, RedisAddress, parseAddress
from httpstream.engines.redis.broker import RedisBroker
from httpstream.engines.redis.cluster import RedisCluster
from httpstream.engines.redis.codec import (
    decodeInfo,
    decodePublication,
    encodeInfo,
    encodePublication,
    readHistoryReply,
    readPresenceReply,
    readPublishReply,
    readPubSubMessage,
)
from httpstream.engines.redis.errors import RedisReplyError, RedisUnavailable
from httpstream.engines.redis.history import RedisHistory
from httpstream.engines.redis.maps import RedisMapBroker
from httpstream.engines.redis.presence import DEFAULT_PRESENCE_TTL, RedisPresence
from httpstream.engines.redis.routing import IRedisRoute, IRedisRouter
from httpstream.engines.redis.sentinel import SentinelConfig, parseSentinels
from httpstream.engines.redis.shard import RedisShard
from httpstream.engines.redis.sharding import ShardRing, consistentIndex
from httpstream.engines.redis.topology import routerFromConfig

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_PRESENCE_TTL",
    "IRedisRoute",
    "IRedisRouter",
    "RedisAddress",
    "RedisBroker",
    "RedisCluster",
    "RedisHistory",
    "RedisMapBroker",
    "RedisPresence",
    "RedisReplyError",
    "RedisShard",
    "RedisUnavailable",
    "SentinelConfig",
    "ShardRing",
    "consistentIndex",
    "decodeInfo",
    "decodePublication",
    "encodeInfo",
    "encodePublication",
    "parseAddress",
    "parseSentinels",
    "readHistoryReply",
    "readPresenceReply",
    "readPubSubMessage",
    "readPublishReply",
    "routerFromConfig",
]
