"""
The Redis map broker (L{httpstream.engines.redis.RedisMapBroker}) against a real Redis: the map contract
(tests/engines/test_engine_maps.py) on one Redis and on two shards, and what only Redis does: two nodes sharing one
map, atomic writes from both, the documented keys, the paging property with writes really under way, expiry swept
by a node that only receives, a lost meta hash, undecodable messages, and a Redis that goes away (a redis-server
this test starts and kills).

Redis on 127.0.0.1:6379 (database 9 and 10, a prefix of each test's own), as tests/engines/test_engine_redis.py.
"""

from __future__ import annotations

from typing import Any, Generator

import attrs
from hypothesis import given, settings as hsettings
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from httpstream.engines import UnrecoverablePosition
from httpstream.engines.maps import IMapBroker, MapSettings
from httpstream.engines.redis import RedisMapBroker, RedisUnavailable, ShardRing, consistentIndex
from httpstream.engines.redis.mapcodec import readMapMessage
from httpstream.engines.redis.errors import RedisReplyError
from httpstream.engines.redis.routing import keyName
from httpstream.engines.redis.slots import keySlot
from httpstream.values import Publication
from tests.engines.test_engine_maps import (
    INITIAL,
    OPERATIONS,
    PAGE_SIZES,
    POSITIONED,
    MapBrokerContract,
    pagingProperty,
)
from tests.engines.redisclusterprocess import ClusterOnce
from tests.engines.test_engine_redis import OwnRedis, Recorder, newPrefix, sleep, startShard, waitFor

_Gen = Generator[Any, Any, None]

# Stream TTLs are Redis's (real time): they run this many times shorter, so the contract's minute takes seconds.
SCALE = 0.05


@attrs.define
class ScaledMapBroker:
    """A map broker whose stream TTLs pass L{SCALE} times shorter (the other calls go straight through)."""

    broker: RedisMapBroker

    def __getattr__(self, name: str) -> Any:
        return getattr(self.broker, name)

    def publish(self, channel: str, key: str, publication: Publication, settings: MapSettings,
                keyMode: str = "", idempotencyKey: str = "") -> Deferred[Any]:
        return self.broker.publish(channel, key, publication, self._scaled(settings), keyMode, idempotencyKey)

    def remove(self, channel: str, key: str, settings: MapSettings, tags: Any = None,
               idempotencyKey: str = "") -> Deferred[Any]:
        return self.broker.remove(channel, key, self._scaled(settings), tags, idempotencyKey)

    def readState(self, channel: str, settings: MapSettings, *args: Any, **kw: Any) -> Deferred[Any]:
        return self.broker.readState(channel, self._scaled(settings), *args, **kw)

    def readStream(self, channel: str, settings: MapSettings, *args: Any, **kw: Any) -> Deferred[Any]:
        return self.broker.readStream(channel, self._scaled(settings), *args, **kw)

    @staticmethod
    def _scaled(settings: MapSettings) -> MapSettings:
        return attrs.evolve(settings, streamTTL=settings.streamTTL * SCALE, metaTTL=settings.metaTTL * SCALE)


def startBroker(testCase: TestCase, router: Any, clock: Any) -> RedisMapBroker:
    broker = RedisMapBroker(router, clock)
    broker.startService()
    testCase.addCleanup(broker.stopService)
    return broker


class RedisMapContract(MapBrokerContract):
    """The contract against a L{RedisMapBroker} (scaled: Redis counts TTLs in real time): each topology's makeBroker."""

    def provider(self) -> IMapBroker:
        return self.broker.broker  # type: ignore[attr-defined, no-any-return]

    @inlineCallbacks
    def advance(self, seconds: float) -> _Gen:
        self.clock.advance(seconds)
        yield sleep(seconds * SCALE)


class RedisMapContractTests(RedisMapContract, TestCase):
    @inlineCallbacks
    def makeBroker(self, clock: Clock) -> Generator[Any, Any, Any]:
        self.shard = yield startShard(self)
        return ScaledMapBroker(startBroker(self, self.shard, clock))


class ShardedMapContractTests(RedisMapContract, TestCase):
    """The contract on two shards (databases 9 and 10 of the one Redis), its channel on the second."""

    channel = next(c for c in (f"m{i}" for i in range(100)) if consistentIndex(c, 2) == 1)

    @inlineCallbacks
    def makeBroker(self, clock: Clock) -> Generator[Any, Any, Any]:
        prefix = newPrefix()
        self.shards = []
        for db in (9, 10):
            self.shards.append((yield startShard(self, prefix=prefix, db=db)))
        return ScaledMapBroker(startBroker(self, ShardRing(self.shards), clock))

    @inlineCallbacks
    def test_keysOnTheChannelsShard(self) -> _Gen:
        yield self.put("a")
        self.assertEqual((yield self.shards[0].execute("KEYS", f"{self.shards[0].prefix}.*")), [])
        self.assertEqual(len((yield self.shards[1].execute("KEYS", f"{self.shards[1].prefix}.*"))), 4)


class ClusterMapContractTests(ClusterOnce, RedisMapContract, TestCase):
    """The contract on a Redis Cluster of three masters (started once for these tests; a prefix of each test's)."""

    timeout = 60

    @inlineCallbacks
    def makeBroker(self, clock: Clock) -> Generator[Any, Any, Any]:
        self.prefix = newPrefix()
        router = yield self.startRouter(self.cluster.ports[0], self.prefix)
        return ScaledMapBroker(startBroker(self, router, clock))

    @inlineCallbacks
    def test_keysShareTheChannelsSlot(self) -> _Gen:
        """Every key of the channel is hash-tagged, so on its slot's master (the scripts could not run else)."""
        yield self.put("a", settings=MapSettings(keyTTL=10))
        owner = self.cluster.ownerOf(keySlot(keyName(self.prefix, "map.meta", self.channel, True)))
        assert owner is not None
        keys = sorted(self.cluster.cli(owner, "KEYS", f"{self.prefix}.*").split())
        self.assertEqual(keys, sorted(f"{self.prefix}.map.{kind}.{{{self.channel}}}"
                                      for kind in ("expire", "keys", "meta", "state", "stream")))


class RedisMapBrokerTests(TestCase):
    timeout = 30
    """Two nodes (two brokers, each with its connections) on one Redis; a Clock of their own for deadlines."""

    @inlineCallbacks
    def setUp(self) -> _Gen:
        self.clock = Clock()
        self.shard = yield startShard(self)
        self.other = yield startShard(self, prefix=self.shard.prefix)
        self.a, self.b = startBroker(self, self.shard, self.clock), startBroker(self, self.other, self.clock)
        self.receivedA, self.receivedB = Recorder(), Recorder()
        self.a.setHandler(self.receivedA)
        self.b.setHandler(self.receivedB)

    def test_provides(self) -> None:
        self.assertTrue(verifyObject(IMapBroker, self.a))

    @inlineCallbacks
    def test_twoNodesOneMap(self) -> _Gen:
        """A write through one node reaches the other's subscribers, and its state; and back."""
        yield gatherResults([self.a.subscribe("m"), self.b.subscribe("m")])
        update = yield self.a.publish("m", "k", Publication(b'"v"', tags={"t": "1"}), POSITIONED)
        yield self.receivedB.wait(1)
        self.assertEqual(self.receivedB.received, [("m", Publication(b'"v"', 1, tags={"t": "1"}, key="k"))])
        self.assertEqual(self.receivedB.epochs, [update.position.epoch])
        state = yield self.b.readState("m", POSITIONED)
        self.assertEqual(state.publications, [Publication(b'"v"', 1, tags={"t": "1"}, key="k")])
        self.assertEqual(state.position, update.position)
        yield self.b.remove("m", "k", POSITIONED)
        yield self.receivedA.wait(2)
        self.assertEqual(self.receivedA.received[1], ("m", Publication(b"", 2, tags={"t": "1"}, key="k", removed=True)))
        self.assertEqual((yield self.a.stats("m")), 0)

    @inlineCallbacks
    def test_writesAtomic(self) -> _Gen:
        """Writes sent at once from two nodes get distinct, consecutive offsets; subscribers get them in order."""
        yield self.a.subscribe("m")
        results = yield gatherResults([
            broker.publish("m", f"k{n % 7}", Publication(b"%d" % n), POSITIONED)
            for n in range(40) for broker in (self.a, self.b)
        ])
        self.assertEqual(sorted(r.position.offset for r in results), list(range(1, 81)))
        yield self.receivedA.wait(80)
        self.assertEqual([p.offset for _, p in self.receivedA.received], list(range(1, 81)))
        state = yield self.a.readState("m", POSITIONED)
        latest = {p.key: p for _, p in self.receivedA.received}
        self.assertEqual(state.publications, [latest[k] for k in sorted(latest)])

    @inlineCallbacks
    def test_keyLayout(self) -> _Gen:
        """The keys mapscripts documents, with the values it says."""
        ttl = MapSettings(keyTTL=10, streamSize=3, streamTTL=30, metaTTL=3600)
        update = yield self.a.publish("m", "k", Publication(b"1"), ttl)
        prefix = self.shard.prefix
        keys = yield self.shard.execute("KEYS", f"{prefix}.*")
        self.assertEqual(sorted(keys), sorted(f"{prefix}.map.{kind}.m".encode()
                                              for kind in ("meta", "state", "keys", "expire", "stream")))
        meta = yield self.shard.execute("HGETALL", f"{prefix}.map.meta.m")
        self.assertEqual(dict(zip(meta[::2], meta[1::2])),
                         {b"e": update.position.epoch.encode(), b"s": b"1", b"z": b"3", b"t": b"30000",
                          b"m": b"3600000"})
        self.assertEqual((yield self.shard.execute("HGET", f"{prefix}.map.state.m", "k")), b'1:{"data":"1","key":"k"}')
        self.assertEqual((yield self.shard.execute("ZSCORE", f"{prefix}.map.expire.m", "k")), b"10000")
        self.assertTrue(29000 < (yield self.shard.execute("PTTL", f"{prefix}.map.stream.m")) <= 30000)
        self.assertTrue(3590_000 < (yield self.shard.execute("PTTL", f"{prefix}.map.state.m")) <= 3600_000)

    @inlineCallbacks
    def test_metaTTLKept(self) -> _Gen:
        """
        A channel's meta TTL is the one of its settings (0: its keys persist); the calls given none (stats, the
        sweep) renew it with the channel's own, the broker's only for a channel that has none.
        """
        prefix = self.shard.prefix
        ttls = lambda: gatherResults([self.shard.execute("PTTL", f"{prefix}.map.{kind}.m")  # noqa: E731
                                      for kind in ("meta", "state", "keys")])
        yield self.a.publish("m", "k", Publication(b"1"), MapSettings(metaTTL=600))
        self.assertTrue(all(590_000 < ttl <= 600_000 for ttl in (yield ttls())))
        yield self.a.stats("m")
        self.assertTrue(all(590_000 < ttl <= 600_000 for ttl in (yield ttls())))
        yield self.a.readState("m", MapSettings(metaTTL=0))
        self.assertEqual((yield ttls()), [-1, -1, -1])
        yield self.a.stats("m")
        self.assertEqual((yield ttls()), [-1, -1, -1])
        # A channel that has none: the broker's (the history meta TTL, 30 days by default).
        yield self.a.stats("other")
        self.assertGreater((yield self.shard.execute("PTTL", f"{prefix}.map.meta.other")), 29 * 86400 * 1000)

    @inlineCallbacks
    def test_expirySweptByAReceivingNode(self) -> _Gen:
        """
        A node that only receives learns the deadline from the write and removes the key at it, its removal
        delivered with no call made there.
        """
        yield self.b.subscribe("m")
        yield self.a.publish("m", "k", Publication(b"1"), MapSettings(keyTTL=5))
        yield self.receivedB.wait(1)
        self.clock.advance(4)
        self.assertEqual(len(self.receivedB.received), 1)
        self.clock.advance(1)
        yield self.receivedB.wait(2)
        self.assertEqual(self.receivedB.received[1][1], Publication(b"", 2, key="k", removed=True))

    @inlineCallbacks
    def test_subscribeLearnsDeadlines(self) -> _Gen:
        """A node subscribing to a map with deadlines already set sweeps it at them."""
        yield self.a.publish("m", "k", Publication(b"1"), MapSettings(keyTTL=5))
        yield self.b.subscribe("m")
        yield self.b.stats("m")  # after the subscription's own look (one connection: replies in order)
        self.clock.advance(5)
        yield self.receivedB.wait(1)
        self.assertTrue(self.receivedB.received[0][1].removed)

    @inlineCallbacks
    def test_lostMetaNewEpoch(self) -> _Gen:
        """A channel whose meta hash is gone starts a new epoch with an empty state: nothing old shows through."""
        first = yield self.a.publish("m", "k", Publication(b"1"), POSITIONED)
        yield self.shard.execute("DEL", f"{self.shard.prefix}.map.meta.m")
        state = yield self.b.readState("m", POSITIONED)
        self.assertEqual((state.publications, state.position.offset), ([], 0))
        self.assertNotEqual(state.position.epoch, first.position.epoch)
        yield self.assertFailure(self.a.readStream("m", POSITIONED, first.position), UnrecoverablePosition)
        yield self.assertFailure(self.a.readState("m", POSITIONED, revision=first.position), UnrecoverablePosition)

    @inlineCallbacks
    def test_pagingWithWritesUnderWay(self) -> _Gen:
        """
        The paging property of test_engine_maps, on two nodes: one pages, the other writes, neither waits. The
        examples are hypothesis's, drawn first (its runner cannot wait for Deferreds), so they are not shrunk: a
        failure names the example.
        """
        examples: list[tuple[Any, Any, int]] = []

        @given(INITIAL, OPERATIONS, PAGE_SIZES)
        @hsettings(max_examples=30, deadline=None, database=None)
        def draw(initial: Any, operations: Any, size: int) -> None:
            examples.append((initial, operations, size))

        draw()
        both = TwoBrokers(self.a, self.b)
        for n, (initial, operations, size) in enumerate(examples):
            replayed, final = yield pagingProperty(both, f"p{n}", initial, operations, size)
            self.assertEqual(replayed, final, f"example {(initial, operations, size)}")

    @inlineCallbacks
    def test_undecodableMessageDropped(self) -> _Gen:
        yield self.a.subscribe("m")
        yield self.shard.execute("PUBLISH", f"{self.shard.prefix}.map.client.m", b"1:e:0:{nope")
        yield self.a.publish("m", "k", Publication(b"1"), POSITIONED)
        yield self.receivedA.wait(1)
        self.assertEqual([p.key for _, p in self.receivedA.received], ["k"])
        self.assertEqual(len(self.flushLoggedErrors()), 0)

    @inlineCallbacks
    def test_unencodable(self) -> _Gen:
        unencodable = Publication(b"1", tags={1: "2"})  # type: ignore[dict-item]
        yield self.assertFailure(self.a.publish("m", "k", unencodable, POSITIONED), TypeError)

    def test_stopCancelsTheSweep(self) -> Deferred[None]:
        d = self.a.subscribe("m")

        @d.addCallback
        def subscribed(_: Any) -> Deferred[Any]:
            return self.a.publish("m", "k", Publication(b"1"), MapSettings(keyTTL=5))

        @d.addCallback
        def written(_: Any) -> None:
            self.assertEqual(len(self.clock.getDelayedCalls()), 1)
            self.a.stopService()
            self.b.stopService()
            self.assertEqual(self.clock.getDelayedCalls(), [])

        return d


@attrs.define
class TwoBrokers:
    """Reads through one broker, writes through the other: two nodes as one L{IMapBroker} for the property."""

    reader: RedisMapBroker
    writer: RedisMapBroker

    def publish(self, *args: Any, **kwargs: Any) -> Deferred[Any]:
        return self.writer.publish(*args, **kwargs)

    def remove(self, *args: Any, **kwargs: Any) -> Deferred[Any]:
        return self.writer.remove(*args, **kwargs)

    def readState(self, *args: Any, **kwargs: Any) -> Deferred[Any]:
        return self.reader.readState(*args, **kwargs)

    def readStream(self, *args: Any, **kwargs: Any) -> Deferred[Any]:
        return self.reader.readStream(*args, **kwargs)


class RedisMapFaultTests(TestCase):
    """Losing Redis: calls fail with RedisUnavailable while it is away; back (empty), the map has a new epoch."""

    timeout = 60

    @inlineCallbacks
    def setUp(self) -> _Gen:
        self.redis = OwnRedis()
        self.addCleanup(self.redis.stop)
        yield self.redis.start()
        self.shard = yield startShard(self, port=self.redis.port, db=0, initialRetryDelay=0.05, maxRetryDelay=0.2)
        self.clock = Clock()
        self.broker = startBroker(self, self.shard, self.clock)
        self.received = Recorder()
        self.broker.setHandler(self.received)
        self.reconnected: list[list[str]] = []
        self.broker.setReconnectHandler(self.reconnected.append)

    @inlineCallbacks
    def test_restarted(self) -> _Gen:
        yield self.broker.subscribe("m")
        before = yield self.broker.publish("m", "k", Publication(b"1"), MapSettings(keyTTL=5))
        # Received before the kill: Redis may reply to the write before it flushes the message to the subscriber.
        yield self.received.wait(1)
        self.redis.kill()
        yield waitFor(lambda: not self.shard.connected, what="the connection lost")
        yield self.assertFailure(self.broker.publish("m", "k", Publication(b"2"), POSITIONED), RedisUnavailable)
        yield self.assertFailure(self.broker.readState("m", POSITIONED), RedisUnavailable)
        yield self.assertFailure(self.broker.readStream("m", POSITIONED), RedisUnavailable)
        yield self.assertFailure(self.broker.stats("m"), RedisUnavailable)
        # The sweep at the deadline fails quietly and tries again.
        self.clock.advance(5)
        yield waitFor(lambda: len(self.clock.getDelayedCalls()) == 1, what="the sweep scheduled again")
        self.assertEqual(self.flushLoggedErrors(), [])
        yield self.redis.start()
        yield waitFor(lambda: bool(self.reconnected), what="the map channel subscribed again")
        self.assertEqual(self.reconnected, [["m"]])
        yield self.assertFailure(self.broker.readStream("m", POSITIONED, before.position), UnrecoverablePosition)
        after = yield self.broker.publish("m", "k", Publication(b"3"), POSITIONED)
        self.assertEqual(after.position.offset, 1)
        yield self.received.wait(2)
        self.assertEqual(self.received.epochs, [before.position.epoch, after.position.epoch])


class MapCodecTests(SynchronousTestCase):
    def test_message(self) -> None:
        epoch, deadline, publication = readMapMessage(b'7:abc:1500:{"data":"1","key":"k","removed":true}')
        self.assertEqual((epoch, deadline), ("abc", 1.5))
        self.assertEqual(publication, Publication(b"1", 7, key="k", removed=True))

    def test_badMessages(self) -> None:
        for message in (b"", b"x:e:0:{}", b'1:e:x:{"data":""}', b'1:e:0:[]', b"1:e:-1:{\"data\":\"\"}"):
            self.assertRaises(RedisReplyError, readMapMessage, message)


class _ScriptedRoute:
    """A router and the route of every channel, answering each script with the next of C{replies}."""

    prefix = "scripted"
    hashTags = False
    publishCommand = b"PUBLISH"

    def __init__(self, replies: list[Any]) -> None:
        self.replies = replies

    def route(self, channel: str) -> "_ScriptedRoute":
        return self

    def addReconnectHandler(self, handler: Any) -> None:
        pass

    def subscribe(self, name: bytes, handler: Any) -> Deferred[None]:
        return succeed(None)

    def eval(self, script: bytes, keys: Any, args: Any) -> Deferred[Any]:
        return succeed(self.replies.pop(0))


class SweepTests(SynchronousTestCase):
    def test_badReplyRetried(self) -> None:
        """
        A sweep answered with what the scripts never send is retried a second later, as in an outage: no
        unhandled error, and the channel is swept again.
        """
        clock = Clock()
        router = _ScriptedRoute([[b"not", b"a", b"touch reply"], [0, b"epoch", b"0", 0]])
        broker = RedisMapBroker(router, clock)  # type: ignore[arg-type]
        broker.startService()
        self.addCleanup(broker.stopService)
        broker.subscribe("m")
        self.assertEqual([call.getTime() for call in clock.getDelayedCalls()], [1.0])
        clock.advance(1)
        self.assertEqual((router.replies, clock.getDelayedCalls()), ([], []))


class ServiceWiringTests(SynchronousTestCase):
    def test_redisEngineNodeHasTheRedisMapBroker(self) -> None:
        """
        With the Redis engine, the node's map broker is a RedisMapBroker on the engine's router, a service after
        the router's (started after it, stopped before it).
        """
        from twisted.internet.testing import MemoryReactorClock

        from httpstream.config import config_from_dict
        from httpstream.service import HTTPStreamService

        service = HTTPStreamService(
            config_from_dict({"engine": "redis", "redis_address": "127.0.0.1:1", "redis_prefix": "wired"})[0],
            MemoryReactorClock(),
        )
        mapBroker = service.node.mapBroker
        self.assertIsInstance(mapBroker, RedisMapBroker)
        children = list(service)
        self.assertLess(children.index(service._shard), children.index(mapBroker))  # type: ignore[arg-type]
        self.assertEqual(mapBroker._pubsubName("m"), b"wired.map.client.m")  # type: ignore[attr-defined]
