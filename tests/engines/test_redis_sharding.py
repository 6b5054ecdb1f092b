"""
Sharding over several Redis (L{httpstream.engines.redis.sharding}): Centrifugo's consistent hash, checked against
the published values of its two parts and values an independent implementation computed; the router; and two
redis-servers these tests start themselves, one of which they kill and start again.
"""

from __future__ import annotations

from typing import Any, Generator

from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail, inlineCallbacks, succeed
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from httpstream.cluster.bus import ShardPubSub
from httpstream.config import Config
from httpstream.engines.redis import (
    IRedisRoute,
    IRedisRouter,
    RedisBroker,
    RedisCluster,
    RedisPresence,
    RedisShard,
    RedisUnavailable,
    ShardRing,
    consistentIndex,
    routerFromConfig,
)
from httpstream.engines.redis.sharding import fnv1a64, jumpHash
from httpstream.values import ClientInfo
from tests.engines.test_engine_contract import pub
from tests.engines.test_engine_redis import OwnRedis, Recorder, newPrefix, waitFor

_Gen = Generator[Any, Any, None]


class ConsistentIndexTests(SynchronousTestCase):
    def test_fnv1a64(self) -> None:
        """FNV-1a 64 (Go's hash/fnv New64a): the reference vectors."""
        self.assertEqual(fnv1a64(b""), 0xCBF29CE484222325)
        self.assertEqual(fnv1a64(b"a"), 0xAF63DC4C8601EC8C)
        self.assertEqual(fnv1a64(b"foobar"), 0x85944171F73967E8)

    def test_jumpHash(self) -> None:
        """The jump consistent hash: the paper's and Guava's published values."""
        golden = [0, 55, 62, 8, 45, 59, 86, 97, 82, 59, 73, 37, 17, 56, 86, 21, 90, 37, 38, 83]
        self.assertEqual([jumpHash(key, 100) for key in range(20)], golden)
        self.assertEqual(jumpHash(10863919174838991, 11), 6)
        self.assertEqual(jumpHash(2016238256797177309, 11), 3)
        self.assertEqual(jumpHash(1673758223894951030, 11), 5)
        self.assertEqual([jumpHash(key, 100001) for key in (2, 2201, 2202)], [80343, 22152, 15018])
        self.assertRaises(ValueError, jumpHash, 1, 0)

    def test_consistentIndex(self) -> None:
        """
        centrifuge's consistentIndex(channel, n): values from an independent implementation (Node BigInt, Go's
        arithmetic) of its definition, UTF-8 bytes of the name hashed.
        """
        expected = {
            "news": [1, 2, 3, 3],
            "chat:index": [0, 0, 0, 0],
            "personal:#42": [1, 1, 3, 3],
            "rr:ünïcode": [1, 1, 1, 12],
            "a": [1, 2, 2, 12],
        }
        for channel, indexes in expected.items():
            self.assertEqual([consistentIndex(channel, n) for n in (2, 3, 5, 16)], indexes, channel)
        self.assertEqual({consistentIndex(f"c{i}", 1) for i in range(50)}, {0})

    def test_fewMoveWhenAShardIsAdded(self) -> None:
        """Going from 3 to 4 shards moves only the channels that go to the new one (about a quarter)."""
        moved = [c for c in (f"ch{i}" for i in range(2000)) if consistentIndex(c, 3) != consistentIndex(c, 4)]
        self.assertTrue(all(consistentIndex(c, 4) == 3 for c in moved))
        self.assertLess(len(moved), 700)


class FakeRoute:
    """A shard of the router, in memory: what it was asked, and whether it is up."""

    publishCommand = b"PUBLISH"
    hashTags = False

    def __init__(self, name: str) -> None:
        self.name = name
        self.prefix = "p"
        self.up = True
        self.published: list[tuple[Any, ...]] = []
        self.subscribed: list[bytes] = []
        self.reconnectHandlers: list[Any] = []

    def route(self, channel: str) -> "FakeRoute":
        return self

    def everyRoute(self, name: str) -> list["FakeRoute"]:
        return [self]

    def execute(self, *args: Any, now: bool = False) -> Deferred[Any]:
        if not self.up:
            return fail(RedisUnavailable(f"{self.name} down"))
        self.published.append(args)
        return succeed(1)

    def subscribe(self, name: bytes, handler: Any) -> Deferred[None]:
        self.subscribed.append(name)
        return succeed(None)

    def unsubscribe(self, name: bytes) -> Deferred[None]:
        return succeed(None)

    def addReconnectHandler(self, handler: Any) -> None:
        self.reconnectHandlers.append(handler)

    def whenReady(self) -> Deferred[None]:
        return succeed(None)

    def describe(self) -> str:
        return self.name

    def setServiceParent(self, parent: Any) -> None:
        pass


class RingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.shards = [FakeRoute("a"), FakeRoute("b")]
        self.ring = ShardRing(self.shards)  # type: ignore[list-item]

    def test_interfaces(self) -> None:
        self.assertTrue(verifyObject(IRedisRouter, self.ring))
        shard = RedisShard(reactor, "127.0.0.1:1")
        self.assertTrue(verifyObject(IRedisRouter, shard))
        self.assertTrue(verifyObject(IRedisRoute, shard))
        self.assertTrue(verifyObject(IRedisRouter, RedisCluster(reactor, ["127.0.0.1:1"])))

    def test_routes(self) -> None:
        """Each channel goes to the shard its consistent index names."""
        for channel in ("news", "chat:index", "personal:#42", "a"):
            self.assertIs(self.ring.route(channel), self.shards[consistentIndex(channel, 2)])
        self.assertEqual(self.ring.describe(), "a b")

    def test_mixedRefused(self) -> None:
        cluster = FakeRoute("c")
        cluster.hashTags = True
        self.assertRaises(ValueError, ShardRing, [self.shards[0], cluster])
        self.assertRaises(ValueError, ShardRing, [])

    def test_controlOnEveryShard(self) -> None:
        """
        The control plane subscribes on every shard and publishes each message on one, in turn; one that is
        down is skipped, and the publish fails only when all are.
        """
        pubsub = ShardPubSub(self.ring)
        pubsub.start(["p.control"], lambda channel, message: None, None)
        self.assertEqual([s.subscribed for s in self.shards], [[b"p.control"], [b"p.control"]])
        for i in range(4):
            self.successResultOf(pubsub.publish("p.control", b"%d" % i))
        self.assertEqual([len(s.published) for s in self.shards], [2, 2])
        self.shards[0].up = False
        for i in range(4):
            self.successResultOf(pubsub.publish("p.control", b"x"))
        self.assertEqual([len(s.published) for s in self.shards], [2, 6])
        self.shards[1].up = False
        self.failureResultOf(pubsub.publish("p.control", b"x"), RedisUnavailable)


class FromConfigTests(SynchronousTestCase):
    def test_one(self) -> None:
        router = routerFromConfig(reactor, Config(redis_address="h:1", redis_prefix="p"))
        self.assertIsInstance(router, RedisShard)
        self.assertEqual(router.describe(), "redis://h:1/0")

    def test_shards(self) -> None:
        router = routerFromConfig(reactor, Config(redis_address="h:1 redis://:pw@g:2/3", redis_db=1))
        assert isinstance(router, ShardRing)
        self.assertEqual([str(s.address) for s in router.shards], ["redis://h:1/1", "redis://g:2/3"])  # type: ignore[attr-defined]
        self.assertEqual(router.prefix, "httpstream")

    def test_clusters(self) -> None:
        router = routerFromConfig(reactor, Config(redis_cluster_address=("h:7000,g:7000",), redis_address="x:1"))
        self.assertIsInstance(router, RedisCluster)
        self.assertEqual(router.describe(), "cluster redis://h:7000/0,redis://g:7000/0")
        ring = routerFromConfig(reactor, Config(redis_cluster_address=("h:7000", "g:7000")))
        assert isinstance(ring, ShardRing)
        self.assertTrue(ring.hashTags)
        self.assertEqual(len(ring.shards), 2)


def channelsOn(index: int, count: int = 2, buckets: int = 2) -> list[str]:
    """The first C{count} channels named C{sN} that land on shard C{index} of C{buckets}."""
    names = (f"s{i}" for i in range(1000))
    return [c for c in names if consistentIndex(c, buckets) == index][:count]


class TwoShardsTests(TestCase):
    """Two redis-servers of the test's own as shards of one broker, presence and control plane."""

    timeout = 60

    @inlineCallbacks
    def setUp(self) -> _Gen:
        self.redis = [OwnRedis(), OwnRedis()]
        for redis in self.redis:
            self.addCleanup(redis.stop)
            yield redis.start()
        self.prefix = newPrefix()
        self.shards = [
            RedisShard(reactor, f"127.0.0.1:{r.port}", prefix=self.prefix, initialRetryDelay=0.05, maxRetryDelay=0.2)
            for r in self.redis
        ]
        self.ring = ShardRing(self.shards)
        self.ring.startService()
        self.addCleanup(self.ring.stopService)
        yield self.ring.whenReady()
        self.broker = RedisBroker(self.ring)
        self.presence = RedisPresence(self.ring)
        self.received = Recorder()
        self.broker.setHandler(self.received)
        self.reconnected: list[list[str]] = []
        self.broker.setReconnectHandler(self.reconnected.append)
        self.on = [channelsOn(0), channelsOn(1)]

    def keys(self, index: int) -> Deferred[list[bytes]]:
        return self.shards[index].execute("KEYS", f"{self.prefix}.*").addCallback(sorted)

    @inlineCallbacks
    def test_channelsOnTheirShard(self) -> _Gen:
        """
        History and presence keys of a channel are in its shard's Redis only; its publications reach the
        subscriber through its shard's PUB/SUB.
        """
        for index in (0, 1):
            for channel in self.on[index]:
                yield self.broker.subscribe(channel)
                yield self.broker.publish(channel, pub(1), 10, 60)
                yield self.presence.add(channel, "c1", ClientInfo("u", "c1"))
        yield self.received.wait(4)
        self.assertEqual(sorted(c for c, _ in self.received.received), sorted(self.on[0] + self.on[1]))
        for index in (0, 1):
            expected = sorted(
                f"{self.prefix}.{kind}.{channel}".encode()
                for channel in self.on[index]
                for kind in ("history.meta", "history.stream", "presence.data", "presence.expire")
            )
            self.assertEqual((yield self.keys(index)), expected)
            numsub = yield self.shards[index].execute("PUBSUB", "NUMSUB", *[
                f"{self.prefix}.client.{c}" for c in self.on[0] + self.on[1]
            ])
            self.assertEqual(numsub[1::2], [1, 1, 0, 0] if index == 0 else [0, 0, 1, 1])
        for index in (0, 1):
            result = yield self.broker.history(self.on[index][0], limit=-1)
            self.assertEqual([p.data for p in result.publications], [pub(1).data])
            clients = yield self.presence.presence(self.on[index][1])
            self.assertEqual(list(clients), ["c1"])

    @inlineCallbacks
    def test_shardDown(self) -> _Gen:
        """
        A shard that is down fails its channels' calls (RedisUnavailable); the other shard's channels keep
        publishing and delivering. Back, its channels are subscribed again (the reconnect handler hears of them)
        and work again.
        """
        alive, dead = self.on[0][0], self.on[1][0]
        for channel in (alive, dead):
            yield self.broker.subscribe(channel)
        self.redis[1].kill()
        yield waitFor(lambda: not self.shards[1].connected, what="shard 1 to be noticed down")
        for d in [
            self.broker.publish(dead, pub(1), 10, 60),
            self.broker.publish(dead, pub(1)),
            self.broker.history(dead),
            self.presence.add(dead, "c1", ClientInfo("u", "c1")),
            self.presence.presence(dead),
        ]:
            yield self.assertFailure(d, RedisUnavailable)
        position = yield self.broker.publish(alive, pub(1), 10, 60)
        self.assertEqual(position.offset, 1)
        yield self.presence.add(alive, "c1", ClientInfo("u", "c1"))
        yield self.received.wait(1)
        self.assertEqual(self.received.received, [(alive, pub(1, 1))])
        yield self.redis[1].start()
        yield waitFor(lambda: self.reconnected, what="the reconnect handler")
        self.assertEqual(self.reconnected, [[dead]])
        yield self.broker.publish(dead, pub(2), 10, 60)
        yield self.received.wait(2)
        self.assertEqual(self.received.received[1], (dead, pub(2, 1)))
