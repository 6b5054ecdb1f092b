"""
Redis Sentinel (L{httpstream.engines.redis.sentinel}): asking the Sentinels where the master is and hearing when
it moves, in memory (fake endpoints, a clock); and a L{RedisShard} following a real failover: a master, its replica
and a Sentinel started by the test (tests/sentinelgroup.py), the master killed.
"""

from __future__ import annotations

import time
from typing import Any, Generator, Optional

import txredisapi
from twisted.internet import reactor, threads
from twisted.internet.defer import Deferred, fail, inlineCallbacks, succeed
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from httpstream.config import Config
from httpstream.engines.redis import RedisBroker, RedisShard, RedisUnavailable
from httpstream.engines.redis.connection import Link
from httpstream.engines.redis.errors import RedisReplyError
from httpstream.engines.redis.sentinel import (
    MasterEndpoint,
    NotMaster,
    SentinelConfig,
    Sentinels,
    parseSentinels,
    verifyMaster,
)
from tests.engines.test_engine_contract import pub
from tests.engines.test_engine_redis import Recorder, newPrefix, waitFor
from tests.sentinelgroup import MASTER_NAME, SentinelGroup

_Gen = Generator[Any, Any, None]


@implementer(IStreamClientEndpoint)
class FakeEndpoint:
    """Connects at once over a L{StringTransport} (or refuses): the connections made, to feed them replies."""

    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.connections: list[tuple[Any, StringTransport]] = []

    def connect(self, factory: Any) -> Deferred[Any]:
        if self.refuse:
            return fail(ConnectionRefusedError())
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.connections.append((protocol, transport))
        return succeed(protocol)


def sentinelsOn(endpoints: dict[tuple[str, int], FakeEndpoint], clock: Optional[Clock] = None,
                **config: Any) -> Sentinels:
    settings = SentinelConfig(tuple(endpoints), "mymaster", **config)
    return Sentinels(clock or Clock(), settings, lambda host, port, tls: endpoints[(host, port)], timeout=1.0)


class ParseTests(SynchronousTestCase):
    def test_addresses(self) -> None:
        config = parseSentinels("s1:26380, s2,[::1]:1", "m", password="pw", tls=True)
        self.assertEqual(config.addresses, (("s1", 26380), ("s2", 26379), ("::1", 1)))
        self.assertEqual((config.masterName, config.password, config.tls), ("m", "pw", True))
        self.assertNotIn("pw", repr(config))

    def test_invalid(self) -> None:
        for entry in ["", "s1:x", "s1:0", "::1:5", "[::1", "s1,,s2"]:
            self.assertRaises(ValueError, parseSentinels, entry, "m")
        self.assertRaises(ValueError, parseSentinels, "s1", "")

    def test_fromConfig(self) -> None:
        config = Config(engine="redis", redis_sentinel_address=("127.0.0.1:1,127.0.0.1:2",),
                        redis_sentinel_master_name="mymaster", redis_password="master-pw", redis_db=2)
        shard = RedisShard.fromConfig(MemoryReactorClock(), config)
        assert shard.sentinels is not None
        self.assertEqual(shard.sentinels.addresses, [("127.0.0.1", 1), ("127.0.0.1", 2)])
        self.assertEqual(shard.sentinels.masterName, "mymaster")
        # The master's credentials and database; its host is the master's name until the Sentinels answer.
        self.assertEqual((shard.address.host, shard.address.password, shard.address.db), ("mymaster", "master-pw", 2))
        self.assertIsNone(RedisShard.fromConfig(MemoryReactorClock(), Config(engine="redis")).sentinels)


class AskTests(SynchronousTestCase):
    def answer(self, endpoint: FakeEndpoint, wire: bytes) -> bytes:
        """Feed the last connection's reply; what it was sent."""
        protocol, transport = endpoint.connections[-1]
        written = transport.value()
        protocol.dataReceived(wire)
        return written

    def test_firstThatKnows(self) -> None:
        """
        The Sentinels are asked in turn: one down, one that does not know the master (nil), then one that answers;
        that one is asked first next time.
        """
        down, unaware, knowing = FakeEndpoint(refuse=True), FakeEndpoint(), FakeEndpoint()
        sentinels = sentinelsOn({("a", 1): down, ("b", 2): unaware, ("c", 3): knowing})
        d = sentinels.masterAddress()
        sent = self.answer(unaware, b"*-1\r\n")
        self.assertEqual(sent, b"*3\r\n$8\r\nSENTINEL\r\n$23\r\nget-master-addr-by-name\r\n$8\r\nmymaster\r\n")
        self.answer(knowing, b"*2\r\n$8\r\n10.0.0.7\r\n$4\r\n6380\r\n")
        self.assertEqual(self.successResultOf(d), ("10.0.0.7", 6380))
        self.assertTrue(knowing.connections[-1][1].disconnecting)
        self.assertEqual(sentinels.addresses, [("c", 3), ("a", 1), ("b", 2)])

    def test_noneKnows(self) -> None:
        """Every Sentinel failing gives RedisUnavailable saying why each did."""
        down, erring = FakeEndpoint(refuse=True), FakeEndpoint()
        sentinels = sentinelsOn({("a", 1): down, ("b", 2): erring})
        d = sentinels.masterAddress()
        self.answer(erring, b"-ERR unknown command\r\n")
        error = self.failureResultOf(d, RedisUnavailable).value
        self.assertIn("no Sentinel gave the address of master 'mymaster'", str(error))
        self.assertIn("a:1: ", str(error))
        self.assertIn("b:2: error reply: ERR unknown command", str(error))

    def test_auth(self) -> None:
        """With a password, AUTH (with the user) goes first; a refused AUTH counts as that Sentinel failing."""
        endpoint = FakeEndpoint()
        sentinels = sentinelsOn({("a", 1): endpoint}, user="watcher", password="pw")
        d = sentinels.masterAddress()
        sent = self.answer(endpoint, b"-WRONGPASS invalid username-password pair\r\n-NOAUTH\r\n")
        self.assertTrue(sent.startswith(b"*3\r\n$4\r\nAUTH\r\n$7\r\nwatcher\r\n$2\r\npw\r\n*3\r\n$8\r\nSENTINEL"))
        self.assertIn("WRONGPASS", str(self.failureResultOf(d, RedisUnavailable).value))

    def test_silentSentinel(self) -> None:
        """A Sentinel that does not answer within the timeout is hung up on, and the next one asked."""
        clock = Clock()
        silent, knowing = FakeEndpoint(), FakeEndpoint()
        sentinels = sentinelsOn({("a", 1): silent, ("b", 2): knowing}, clock)
        d = sentinels.masterAddress()
        self.assertNoResult(d)
        clock.advance(1.5)
        self.assertTrue(silent.connections[0][1].disconnecting)
        self.answer(knowing, b"*2\r\n$1\r\nh\r\n$1\r\n7\r\n")
        self.assertEqual(self.successResultOf(d), ("h", 7))

    def test_garbage(self) -> None:
        """An answer of another shape, or bytes that are not RESP, count as that Sentinel failing."""
        for wire in [b"*1\r\n$1\r\nh\r\n", b"*2\r\n$1\r\nh\r\n$1\r\nx\r\n", b"?\r\n"]:
            endpoint = FakeEndpoint()
            d = sentinelsOn({("a", 1): endpoint}).masterAddress()
            self.answer(endpoint, wire)
            self.failureResultOf(d, RedisUnavailable)


class WatchTests(SynchronousTestCase):
    def test_switch(self) -> None:
        """
        The watch subscribes to +switch-master; the subscription confirmed, it says so (onWatching); a switch of
        this master gives its new address, another master's is ignored.
        """
        endpoint = FakeEndpoint()
        sentinels = sentinelsOn({("a", 1): endpoint}, password="pw")
        switches: list[tuple[str, int]] = []
        watching: list[bool] = []
        sentinels.watch(lambda host, port: switches.append((host, port)), lambda: watching.append(True))
        self.addCleanup(sentinels.stop)
        protocol, transport = endpoint.connections[0]
        self.assertEqual(transport.value(), b"*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n*2\r\n$9\r\nSUBSCRIBE\r\n$14\r\n+switch-master\r\n")
        protocol.dataReceived(b"+OK\r\n*3\r\n$9\r\nsubscribe\r\n$14\r\n+switch-master\r\n:1\r\n")
        self.assertEqual(watching, [True])

        def message(text: bytes) -> bytes:
            return b"*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n$%d\r\n%s\r\n" % (len(text), text)

        protocol.dataReceived(message(b"other 10.0.0.1 1 10.0.0.2 2") + message(b"mymaster 10.0.0.1 6379 10.0.0.2 6380"))
        self.assertEqual(switches, [("10.0.0.2", 6380)])

    def test_nextSentinel(self) -> None:
        """When the watched Sentinel goes away, the watch moves to the next one (after the backoff)."""
        clock = Clock()
        first, second = FakeEndpoint(), FakeEndpoint()
        sentinels = sentinelsOn({("a", 1): first, ("b", 2): second}, clock)
        sentinels.watch(lambda host, port: None)
        self.addCleanup(sentinels.stop)
        protocol, transport = first.connections[0]
        transport.loseConnection()
        protocol.connectionLost(Failure(ConnectionDone()))
        clock.advance(1)
        self.assertEqual(len(second.connections), 1)


    def test_silentSentinelLeftForTheNext(self) -> None:
        """
        A Sentinel that takes the watch's connection and never confirms the subscription is hung up on after the
        timeout, and the watch moves to the next one; a confirmed watch has no timer left.
        """
        clock = Clock()
        silent, second = FakeEndpoint(), FakeEndpoint()
        sentinels = sentinelsOn({("a", 1): silent, ("b", 2): second}, clock)
        sentinels.watch(lambda host, port: None)
        self.addCleanup(sentinels.stop)
        protocol, transport = silent.connections[0]
        clock.advance(0.9)
        self.assertFalse(transport.disconnecting)
        clock.advance(0.2)
        self.assertTrue(transport.disconnecting)
        protocol.connectionLost(Failure(ConnectionDone()))
        clock.advance(1)
        self.assertEqual(len(second.connections), 1)
        protocol, transport = second.connections[0]
        protocol.dataReceived(b"*3\r\n$9\r\nsubscribe\r\n$14\r\n+switch-master\r\n:1\r\n")
        clock.advance(5)
        self.assertFalse(transport.disconnecting)
        self.assertEqual(clock.getDelayedCalls(), [])


class VerifyTests(SynchronousTestCase):
    def test_role(self) -> None:
        """ROLE: a master passes; a replica, a Sentinel, or what txredisapi's subscriber keeps of a replica's does not."""
        self.successResultOf(verifyMaster(lambda *command: succeed([b"master", 10, []])))
        for reply in ([b"slave", b"h", 1, b"connected", 10], [1, b"connected", 10], [b"sentinel", [b"m"]]):
            self.failureResultOf(verifyMaster(lambda *command: succeed(reply)), NotMaster)

    def test_endpoint(self) -> None:
        """The master endpoint asks the Sentinels before every connection, and connects where they say."""
        sentinel = FakeEndpoint()
        sentinels = sentinelsOn({("a", 1): sentinel})
        masters: dict[tuple[str, int], FakeEndpoint] = {("h", 7): FakeEndpoint()}
        found: list[tuple[str, int]] = []
        endpoint = MasterEndpoint(sentinels, lambda host, port: masters[(host, port)],
                                  lambda host, port: found.append((host, port)))
        verifyObject(IStreamClientEndpoint, endpoint)
        from twisted.internet.protocol import Factory, Protocol

        d = endpoint.connect(Factory.forProtocol(Protocol))
        sentinel.connections[-1][0].dataReceived(b"*2\r\n$1\r\nh\r\n$1\r\n7\r\n")
        self.successResultOf(d)
        self.assertEqual((found, len(masters[("h", 7)].connections)), ([("h", 7)], 1))
        self.assertIn("mymaster", repr(endpoint))


class FakeProtocol:
    """What a link uses of a connected txredisapi protocol."""

    def __init__(self, reply: Any) -> None:
        self.connected = True
        self.transport = StringTransport()
        self.reply = reply

    def execute_command(self, *args: Any) -> Deferred[Any]:
        return fail(self.reply) if isinstance(self.reply, Exception) else succeed(self.reply)


class ReadOnlyTests(SynchronousTestCase):
    def link(self, sentinel: bool) -> tuple[Link, FakeProtocol]:
        config = parseSentinels("a:1", "m") if sentinel else None
        shard = RedisShard(MemoryReactorClock(), "h:1", sentinel=config)
        link = shard._commands
        protocol = FakeProtocol(txredisapi.ResponseError("READONLY You can't write against a read only replica."))
        link.protocol = protocol
        return link, protocol

    def test_readonlyDropsWithSentinel(self) -> None:
        """
        With Sentinel, a READONLY error (the master became a replica) fails the call and drops the connection,
        which reconnects to the master the Sentinels name; without Sentinel the connection stays (nowhere else to go).
        """
        for sentinel in (True, False):
            link, protocol = self.link(sentinel)
            self.failureResultOf(link.call(lambda p: p.execute_command("EVALSHA")), RedisReplyError)
            self.assertEqual(protocol.transport.disconnecting, sentinel)


class FollowTests(SynchronousTestCase):
    def test_dropsOnlyConnectionsElsewhere(self) -> None:
        """
        A switch (or a new watch naming the master) drops the connections made to another address, and only
        those: one that has already reconnected to the new master stays.
        """
        shard = RedisShard(MemoryReactorClock(), "h:1", sentinel=parseSentinels("a:1", "m"))
        commands, pubsub = FakeProtocol(None), FakeProtocol(None)
        shard._commands.protocol, shard._pubsub.protocol = commands, pubsub
        shard._masters.update({"commands": ("old", 1), "pubsub": ("new", 2)})
        shard._switched("new", 2)
        self.assertEqual((commands.transport.disconnecting, pubsub.transport.disconnecting), (True, False))


class FailoverTests(TestCase):
    """A shard following a real failover: master killed, the replica promoted by the Sentinel."""

    timeout = 90

    @inlineCallbacks
    def setUp(self) -> _Gen:
        self.group = SentinelGroup()
        self.addCleanup(self.group.stop)
        yield threads.deferToThread(self.group.start)
        self.shard = RedisShard(
            reactor, "ignored:1", prefix=newPrefix(), initialRetryDelay=0.05, maxRetryDelay=0.5,
            sentinel=parseSentinels(self.group.sentinelAddress, MASTER_NAME),
        )
        self.shard.startService()
        self.addCleanup(self.shard.stopService)
        ready = self.shard.whenReady()
        ready.addTimeout(15, reactor)
        yield ready

    @inlineCallbacks
    def test_followsFailover(self) -> _Gen:
        """
        The shard connects to the master the Sentinel names. The master is killed: once the Sentinel has promoted
        the replica, both connections are on it, the channel subscribed again (the reconnect handler is told),
        the stream that was replicated is still there (same epoch and top) and publishing continues it.
        """
        self.assertEqual(self.shard.address.port, self.group.master)
        broker = RedisBroker(self.shard)
        received = Recorder()
        broker.setHandler(received)
        reconnected: list[list[str]] = []
        broker.setReconnectHandler(reconnected.append)
        yield broker.subscribe("news")
        before = yield broker.publish("news", pub(1), 10, 60)
        yield received.wait(1)
        # WAIT: the replica has the publication before the master dies (replication is asynchronous).
        replicas = yield self.shard.execute("WAIT", 1, 5000)
        self.assertEqual(replicas, 1)

        self.group.kill(self.group.master)
        started = time.monotonic()
        yield threads.deferToThread(self.group.waitForFailover)
        yield waitFor(lambda: bool(self.shard.connected and reconnected), timeout=30, what="the shard to follow")
        self.assertEqual(self.shard.address.port, self.group.replica)
        self.assertEqual(reconnected, [["news"]])
        history = yield broker.history("news", limit=10)
        self.assertEqual((history.offset, history.epoch), (before.offset, before.epoch))
        self.assertEqual([p.data for p in history.publications], [pub(1).data])
        after = yield broker.publish("news", pub(2), 10, 60)
        self.assertEqual((after.offset, after.epoch), (2, before.epoch))
        yield received.wait(2)
        self.assertEqual(received.received[1], ("news", pub(2, 2)))
        self.assertLess(time.monotonic() - started, 60)
