"""
Redis Cluster (L{httpstream.engines.redis.cluster}): hash slots and redirections in memory, then a three-master
cluster these tests start themselves (redis-server --cluster-enabled, redis-cli --cluster create): channels on every
master, sharded PUB/SUB, history, a stale slot map corrected by MOVED, a slot migrated by hand (ASK while it
migrates, the subscription following it once it has moved).
"""

from __future__ import annotations

from typing import Any, Generator

from twisted.internet.defer import Deferred, fail, inlineCallbacks
from twisted.trial.unittest import SynchronousTestCase, TestCase

from httpstream.cluster.bus import ShardPubSub
from httpstream.engines.redis import RedisBroker, RedisPresence
from httpstream.engines.redis.history import resultKey
from httpstream.engines.redis.routing import keyName
from httpstream.engines.redis.slots import (
    Redirection,
    SlotRange,
    crc16,
    keySlot,
    readClusterSlots,
    readRedirection,
)
from httpstream.values import ClientInfo
from tests.engines.redisclusterprocess import ClusterOnce, OwnCluster
from tests.engines.test_engine_contract import pub
from tests.engines.test_engine_redis import Recorder, newPrefix, sleep, waitFor

_Gen = Generator[Any, Any, None]


class SlotTests(SynchronousTestCase):
    def test_crc16(self) -> None:
        """CRC16-XMODEM, the cluster specification's check value."""
        self.assertEqual(crc16(b"123456789"), 0x31C3)

    def test_keySlot(self) -> None:
        """The specification's hash tag rules; values as CLUSTER KEYSLOT gives them."""
        self.assertEqual(keySlot(b"foo"), 12182)
        self.assertEqual(keySlot(b"p.history.stream.{news}"), 5161)
        self.assertEqual(keySlot(b"{user1000}.following"), keySlot(b"{user1000}.followers"))
        self.assertEqual(keySlot(b"foo{}{bar}"), crc16(b"foo{}{bar}") % 16384)  # an empty tag: the whole key
        self.assertEqual(keySlot(b"foo{{bar}}zap"), crc16(b"{bar") % 16384)
        self.assertEqual(keySlot(b"foo{bar}{zap}"), keySlot(b"bar"))

    def test_channelKeysShareASlot(self) -> None:
        for channel in ("news", "chat:#42", "ünï"):
            slots = {
                keySlot(keyName("p", kind, channel, True))
                for kind in ("client", "history.meta", "history.stream", "presence.data", "presence.expire")
            }
            self.assertEqual(len(slots), 1, channel)
            self.assertIn(keySlot(resultKey("p", channel, "idem.key", True)), slots)

    def test_readRedirection(self) -> None:
        self.assertEqual(
            readRedirection("Redis error reply: MOVED 3999 127.0.0.1:6381"), Redirection("MOVED", 3999, "127.0.0.1", 6381)
        )
        self.assertEqual(readRedirection("ASK 1 [::1]:7000"), Redirection("ASK", 1, "::1", 7000))
        self.assertIsNone(readRedirection("ERR unknown command"))

    def test_readClusterSlots(self) -> None:
        reply = [[0, 5460, [b"10.0.0.1", 7000, b"id1"], [b"10.0.0.4", 7000, b"id4"]], [5461, 16383, [b"", 7001, b"id2"]]]
        self.assertEqual(
            readClusterSlots(reply, "seed"),
            [SlotRange(0, 5460, "10.0.0.1", 7000), SlotRange(5461, 16383, "seed", 7001)],
        )
        for bad in (b"x", [[0, 1]], [[0, 20000, [b"h", 1]]]):
            self.assertRaises(ValueError, readClusterSlots, bad, "seed")


def channelOnSlotOf(cluster: OwnCluster, prefix: str, port: int, start: int = 0) -> str:
    """A channel whose slot is served by the master on C{port}."""
    owners = {}
    for i in range(start, start + 10000):
        channel = f"c{i}"
        slot = keySlot(keyName(prefix, "client", channel, True))
        if slot not in owners:
            owners[slot] = cluster.ownerOf(slot)
        if owners[slot] == port:
            return channel
    raise AssertionError(f"no channel on {port}")


class ClusterTests(ClusterOnce, TestCase):
    """A three-master cluster, started once for these tests; a prefix of each test's own."""

    timeout = 60

    @inlineCallbacks
    def setUp(self) -> _Gen:
        self.prefix = newPrefix()
        # One seed is enough: the others are found from CLUSTER SLOTS.
        self.router = yield self.startRouter(
            self.cluster.ports[1], self.prefix, initialRetryDelay=0.05, maxRetryDelay=0.2, refreshInterval=0.5
        )
        self.broker = RedisBroker(self.router)
        self.presence = RedisPresence(self.router)
        self.received = Recorder()
        self.broker.setHandler(self.received)
        self.reconnected: list[list[str]] = []
        self.broker.setReconnectHandler(self.reconnected.append)

    def keysOn(self, port: int) -> list[str]:
        return sorted(self.cluster.cli(port, "KEYS", f"{self.prefix}.*").split())

    def slotOf(self, channel: str) -> int:
        return keySlot(keyName(self.prefix, "client", channel, True))

    @inlineCallbacks
    def test_channelOnEveryMaster(self) -> _Gen:
        """
        A channel on each master: its keys (hash-tagged) are on its slot's master, its publications come back
        by sharded PUB/SUB (subscribed on that master), history and presence read back.
        """
        self.assertEqual(sorted(node.address.port for node in self.router.masters()), sorted(self.cluster.ports))
        channels = {port: channelOnSlotOf(self.cluster, self.prefix, port) for port in self.cluster.ports}
        for port, channel in channels.items():
            yield self.broker.subscribe(channel)
            numsub = self.cluster.cli(port, "PUBSUB", "SHARDNUMSUB", keyName(self.prefix, "client", channel, True).decode())
            self.assertEqual(numsub.split()[-1], "1")
            position = yield self.broker.publish(channel, pub(1), 10, 60)
            self.assertEqual(position.offset, 1)
            yield self.broker.publish(channel, pub(2))  # without history: SPUBLISH
            yield self.presence.add(channel, "c1", ClientInfo("u", "c1"))
        yield self.received.wait(6)
        self.assertEqual(sorted(c for c, _ in self.received.received), sorted(list(channels.values()) * 2))
        for port, channel in channels.items():
            self.assertEqual(
                self.keysOn(port),
                sorted(f"{self.prefix}.{kind}.{{{channel}}}" for kind in
                       ("history.meta", "history.stream", "presence.data", "presence.expire")),
            )
            result = yield self.broker.history(channel, limit=-1)
            self.assertEqual([p.data for p in result.publications], [pub(1).data])
            self.assertEqual(list((yield self.presence.presence(channel))), ["c1"])
            yield self.broker.removeHistory(channel)

    @inlineCallbacks
    def test_idempotencyKeysOnEveryMaster(self) -> _Gen:
        """
        Keyed publications on a channel of each master, with and without history: the result keys are on the
        channel's master (one slot with its stream, so one script), and a repeated key publishes nothing.
        """
        channels = {port: channelOnSlotOf(self.cluster, self.prefix, port) for port in self.cluster.ports}
        for port, channel in channels.items():
            yield self.broker.subscribe(channel)
            first = yield self.broker.publish(channel, pub(1), 10, 60, idempotencyKey="h")
            again = yield self.broker.publish(channel, pub(2), 10, 60, idempotencyKey="h")
            self.assertEqual((first.offset, again), (1, first))
            self.assertIsNone((yield self.broker.publish(channel, pub(3), idempotencyKey="n")))
            self.assertIsNone((yield self.broker.publish(channel, pub(4), idempotencyKey="n")))
            keys = self.keysOn(port)
            for key in ("h", "n"):
                self.assertIn(resultKey(self.prefix, channel, key, True).decode(), keys)
        yield self.received.wait(6)
        self.assertEqual(sorted(p.data for _, p in self.received.received), sorted([pub(1).data, pub(3).data] * 3))

    @inlineCallbacks
    def test_staleMapFollowsMoved(self) -> _Gen:
        """
        A slot map that names the wrong master (as after a resharding): the master answers MOVED, the call goes
        to the right one and succeeds, and the map is corrected.
        """
        port = self.cluster.ports[0]
        channel = channelOnSlotOf(self.cluster, self.prefix, port)
        slot = self.slotOf(channel)
        right = self.router.ownerOf(slot)
        wrong = next(node for node in self.router.masters() if node is not right)
        self.router._owners[slot] = wrong
        position = yield self.broker.publish(channel, pub(1), 10, 60)
        self.assertEqual(position.offset, 1)
        self.assertIs(self.router.ownerOf(slot), right)
        self.router._owners[slot] = wrong
        yield self.broker.subscribe(channel)  # SSUBSCRIBE refused with MOVED: subscribed at the right master
        self.assertIs(self.router.ownerOf(slot), right)
        yield self.broker.publish(channel, pub(2), 10, 60)
        yield self.received.wait(1)
        self.assertEqual(self.received.received, [(channel, pub(2, 2))])

    @inlineCallbacks
    def test_resharding(self) -> _Gen:
        """
        A slot migrated by hand (CLUSTER SETSLOT, MIGRATE): while it migrates a new key is made on the importing
        master (ASK), a script whose keys are not all on one side waits (TRYAGAIN) and succeeds once the slot has
        moved; the subscription follows the slot to the new master (the reconnect handler hears of the channel)
        and publications flow again; history moved with the keys.
        """
        source, target = self.cluster.ports[0], self.cluster.ports[2]
        channel = channelOnSlotOf(self.cluster, self.prefix, source)
        slot = self.slotOf(channel)
        yield self.broker.subscribe(channel)
        yield self.broker.publish(channel, pub(1), 10, 60)
        yield self.received.wait(1)

        self.cluster.cli(target, "CLUSTER", "SETSLOT", str(slot), "IMPORTING", self.cluster.nodeID(source))
        self.cluster.cli(source, "CLUSTER", "SETSLOT", str(slot), "MIGRATING", self.cluster.nodeID(target))
        # Another channel in the same slot, with no keys yet: the source answers ASK.
        other = next(c for c in (f"{channel}-{i}" for i in range(100000)) if self.slotOf(c) == slot)
        key = keyName(self.prefix, "marker", other, True)
        yield self.router.route(other).execute("SET", key, "1")
        self.assertEqual(self.keysOn(target), [key.decode()])
        # Its history script: ASK, then TRYAGAIN from the importing master (its keys are missing there).
        publishing = self.broker.publish(other, pub(1), 10, 60)
        outcome: list[Any] = []
        publishing.addBoth(lambda result: outcome.append(result) or result)
        yield sleep(0.2)
        self.assertEqual(outcome, [])

        self.cluster.moveSlot(slot, source, target)
        position = yield publishing
        self.assertEqual(position.offset, 1)
        yield waitFor(lambda: self.reconnected, what="the subscription to follow the slot")
        self.assertEqual(self.reconnected, [[channel]])
        self.assertEqual(self.router.ownerOf(slot).address.port, target)  # type: ignore[union-attr]
        numsub = self.cluster.cli(target, "PUBSUB", "SHARDNUMSUB", keyName(self.prefix, "client", channel, True).decode())
        self.assertEqual(numsub.split()[-1], "1")
        position = yield self.broker.publish(channel, pub(2), 10, 60)
        self.assertEqual(position.offset, 2)
        yield self.received.wait(2)
        self.assertEqual(self.received.received[1], (channel, pub(2, 2)))
        result = yield self.broker.history(channel, limit=-1)
        self.assertEqual([p.offset for p in result.publications], [1, 2])

    @inlineCallbacks
    def test_controlPlane(self) -> _Gen:
        """The control plane's channels on their slots' masters (sharded PUB/SUB too)."""
        pubsub = ShardPubSub(self.router)
        messages: list[tuple[str, bytes]] = []
        ready: list[int] = []
        pubsub.start([f"{self.prefix}.control", f"{self.prefix}.node.a"], lambda c, m: messages.append((c, m)),
                     lambda: ready.append(1))
        yield waitFor(lambda: ready, what="the control channels")
        yield pubsub.publish(f"{self.prefix}.control", b"hello")
        yield pubsub.publish(f"{self.prefix}.node.a", b"\x00")
        yield waitFor(lambda: len(messages) == 2, what="both messages")
        self.assertEqual(sorted(messages), sorted([(f"{self.prefix}.control", b"hello"), (f"{self.prefix}.node.a", b"\x00")]))
        yield pubsub.stop()


class SlotMapFailureTests(SynchronousTestCase):
    def test_notAClusterSaysWhy(self) -> None:
        """
        A seed that refuses CLUSTER SLOTS (a Redis without cluster support): the refresh fails naming each node's
        reason, and the log says so once (until a map is read), instead of the node waiting for Redis silently.
        """
        from twisted.internet.testing import MemoryReactorClock
        from twisted.logger import LogLevel, formatEvent, globalLogPublisher

        from httpstream.engines.redis import RedisCluster, RedisReplyError, RedisUnavailable

        cluster = RedisCluster(MemoryReactorClock(), ["10.0.0.1:7000", "redis://:s3cret@10.0.0.2:7000"])
        for node in cluster._nodes.values():
            node.execute = lambda *args, **kwargs: fail(  # type: ignore[method-assign]
                RedisReplyError("Redis error reply: ERR This instance has cluster support disabled")
            )
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        cluster.startService()
        self.addCleanup(cluster.stopService)
        for _ in range(2):
            error = self.failureResultOf(cluster.refresh(), RedisUnavailable).value
        self.assertIn("redis://10.0.0.1:7000/0: Redis error reply: ERR This instance has cluster support disabled",
                      str(error))
        self.assertIn("redis://10.0.0.2:7000/0: ", str(error))
        warnings = [formatEvent(e) for e in events if e.get("log_level") == LogLevel.warn]
        self.assertEqual(len(warnings), 1, warnings)
        self.assertIn("the slot map could not be read", warnings[0])
        self.assertNotIn("s3cret", warnings[0])


class FakeLink:
    """What the sharded PUB/SUB protocol tells its link: messages, and names Redis dropped by itself."""

    name = "pubsub"

    def __init__(self) -> None:
        self.messages: list[tuple[bytes, bytes]] = []
        self.dropped: list[bytes] = []

    def onMessage(self, channel: bytes, message: bytes) -> None:
        self.messages.append((channel, message))

    def onDropped(self, channel: bytes) -> None:
        self.dropped.append(channel)

    def lost(self, protocol: Any, reason: Any) -> None:
        pass


class ShardedSubscriberProtocolTests(SynchronousTestCase):
    """The RESP pushes of sharded PUB/SUB, read on the wire's bytes."""

    def setUp(self) -> None:
        from twisted.internet.testing import StringTransport

        from httpstream.engines.redis.connection import ShardedSubscriberProtocol

        self.link = FakeLink()
        self.protocol = ShardedSubscriberProtocol(charset=None, convertNumbers=False)
        self.protocol.factory = self.link
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)

    def test_smessage(self) -> None:
        self.protocol.dataReceived(b"*3\r\n$8\r\nsmessage\r\n$2\r\nch\r\n$3\r\n\x00hi\r\n")
        self.assertEqual(self.link.messages, [(b"ch", b"\x00hi")])

    def test_droppedByRedis(self) -> None:
        """
        A sunsubscribe push nobody asked for (the slot moved) goes to the link, not into the reply of the command
        sent next; the reply of our own SUNSUBSCRIBE is that command's.
        """
        ping = self.protocol.execute_command("PING")
        self.protocol.dataReceived(b"*3\r\n$12\r\nsunsubscribe\r\n$2\r\nch\r\n:0\r\n")
        self.assertEqual(self.link.dropped, [b"ch"])
        self.assertNoResult(ping)
        self.protocol.dataReceived(b"*2\r\n$4\r\npong\r\n$0\r\n\r\n")
        self.assertEqual(self.successResultOf(ping), [b"pong", b""])
        self.protocol.unsubscribing.add(b"other")
        unsubscribed = self.protocol.execute_command("SUNSUBSCRIBE", b"other")
        self.protocol.dataReceived(b"*3\r\n$12\r\nsunsubscribe\r\n$5\r\nother\r\n:0\r\n")
        self.assertEqual(self.successResultOf(unsubscribed), [b"sunsubscribe", b"other", 0])
        self.assertEqual(self.link.dropped, [b"ch"])
