"""
The Redis engine against a real Redis: the engine contract (tests/engines/test_engine_contract.py), and what only Redis
does: counted subscriptions, atomic publishing, TTLs in milliseconds, expiring presence entries, the storage
encoding, and surviving a Redis that goes away (a redis-server these tests start and kill themselves).

They need Redis on 127.0.0.1:6379 (``make test`` and CI start it; by hand: ``scripts/ensure-redis``) and fail with
a message saying so when it does not answer. They use database 9, a prefix of their own per test, and delete only
the keys under that prefix.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from typing import Any, Callable, Generator, Optional

import attrs
import txredisapi
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks
from twisted.internet.task import Clock, deferLater
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from httpstream.config import Config, ConfigError
from httpstream.engines import HistoryResult
from httpstream.engines.redis import (
    RedisAddress,
    RedisBroker,
    RedisHistory,
    RedisPresence,
    RedisReplyError,
    RedisShard,
    RedisUnavailable,
    decodeInfo,
    decodePublication,
    encodeInfo,
    encodePublication,
    parseAddress,
)
from httpstream.engines.redis.resp import INCOMPLETE, ReplyReader
from httpstream.interfaces import (
    IBroker,
    IHistory,
    IPresenceManager,
    JoinLeaveHandler,
    PublicationHandler,
    ReconnectHandler,
)
from httpstream.values import ClientInfo, Publication, StreamPosition
from tests.engines.test_engine_contract import BrokerContract, PresenceContract, pub

_Gen = Generator[Any, Any, None]

REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379
REDIS_DB = 9
# The contract's TTLs are whole seconds; Redis keeps them to the millisecond, so they run this many times shorter.
SCALE = 0.2


def requireRedis(port: int = REDIS_PORT) -> None:
    try:
        socket.create_connection((REDIS_HOST, port), timeout=2).close()
    except OSError as e:
        raise AssertionError(
            f"Redis does not answer on {REDIS_HOST}:{port} ({e}): the Redis engine and cluster tests need it. "
            "Start it with scripts/ensure-redis (make test and CI do)."
        ) from None


def newPrefix() -> str:
    return f"httpstream-test-{uuid.uuid4().hex[:12]}"


def sleep(seconds: float) -> Deferred[None]:
    return deferLater(reactor, seconds, lambda: None)


@inlineCallbacks
def waitFor(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "a condition") -> _Gen:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        yield sleep(0.01)


@inlineCallbacks
def startShard(
    testCase: TestCase, port: int = REDIS_PORT, prefix: Optional[str] = None, **kwargs: Any
) -> Generator[Any, Any, RedisShard]:
    """A started shard on database 9 whose keys are deleted (by prefix) and connections closed after the test."""
    requireRedis(port)
    kwargs.setdefault("db", REDIS_DB)
    shard = RedisShard(reactor, f"{REDIS_HOST}:{port}", prefix=prefix or newPrefix(), **kwargs)
    shard.startService()
    testCase.addCleanup(cleanUp, shard)
    ready = shard.whenReady()
    ready.addTimeout(10, reactor)
    yield ready
    return shard


@inlineCallbacks
def cleanUp(shard: RedisShard) -> _Gen:
    try:
        if shard.connected:
            cursor = b"0"
            while True:
                cursor, keys = yield shard.execute("SCAN", cursor, "MATCH", shard.prefix + ".*", "COUNT", 1000)
                if keys:
                    yield shard.execute("DEL", *keys)
                if cursor == b"0":
                    break
    finally:
        yield shard.stopService()


@implementer(IBroker)
class ScaledBroker:
    """A broker whose TTLs pass SCALE times shorter, so the contract's seconds take a fraction of the time."""

    def __init__(self, broker: RedisBroker) -> None:
        self.broker = broker

    def setHandler(self, handler: PublicationHandler) -> None:
        self.broker.setHandler(handler)

    def setJoinLeaveHandler(self, handler: JoinLeaveHandler) -> None:
        self.broker.setJoinLeaveHandler(handler)

    def setReconnectHandler(self, handler: ReconnectHandler) -> None:
        self.broker.setReconnectHandler(handler)

    def publishJoinLeave(self, channel: str, info: ClientInfo, join: bool) -> Deferred[None]:
        return self.broker.publishJoinLeave(channel, info, join)

    def subscribe(self, channel: str) -> Deferred[None]:
        return self.broker.subscribe(channel)

    def unsubscribe(self, channel: str) -> Deferred[None]:
        return self.broker.unsubscribe(channel)

    def publish(
        self, channel: str, publication: Publication, historySize: int = 0, historyTTL: float = 0,
        historyMetaTTL: float = 0, idempotencyKey: str = "", idempotentResultTTL: float = 0,
    ) -> Deferred[Optional[StreamPosition]]:
        return self.broker.publish(
            channel, publication, historySize, historyTTL * SCALE, historyMetaTTL * SCALE, idempotencyKey,
            idempotentResultTTL * SCALE,
        )

    def history(
        self, channel: str, since: Optional[StreamPosition] = None, limit: int = 0, reverse: bool = False,
        metaTTL: float = 0,
    ) -> Deferred[HistoryResult]:
        return self.broker.history(channel, since, limit, reverse, metaTTL * SCALE)

    def removeHistory(self, channel: str) -> Deferred[None]:
        return self.broker.removeHistory(channel)


class RedisBrokerContractTests(BrokerContract, TestCase):
    @inlineCallbacks
    def makeBroker(self, clock: Clock) -> Generator[Any, Any, IBroker]:
        shard = yield startShard(self)
        return ScaledBroker(RedisBroker(shard))

    def advance(self, seconds: float) -> Deferred[None]:
        return sleep(seconds * SCALE)


class RedisPresenceContractTests(PresenceContract, TestCase):
    @inlineCallbacks
    def makePresence(self, clock: Clock) -> Generator[Any, Any, IPresenceManager]:
        shard = yield startShard(self)
        return RedisPresence(shard, clock=clock)


def historyKeys(shard: RedisShard, channel: str) -> tuple[str, str]:
    """The keys of a channel's history, as the engine documents them: its meta hash and its stream."""
    return f"{shard.prefix}.history.meta.{channel}", f"{shard.prefix}.history.stream.{channel}"


class Recorder:
    """A broker handler that keeps what it gets: C{(channel, publication)} in L{received}, epochs in L{epochs}."""

    def __init__(self) -> None:
        self.received: list[tuple[Any, ...]] = []
        self.epochs: list[str] = []

    def __call__(self, channel: str, publication: Publication, epoch: str) -> None:
        self.received.append((channel, publication))
        self.epochs.append(epoch)

    def wait(self, count: int) -> Deferred[None]:
        return waitFor(lambda: len(self.received) >= count, what=f"{count} deliveries")


class RedisBrokerTests(TestCase):
    @inlineCallbacks
    def setUp(self) -> _Gen:
        self.shard = yield startShard(self)
        self.broker = RedisBroker(self.shard)
        self.received = Recorder()
        self.broker.setHandler(self.received)

    def numsub(self, channel: str) -> Deferred[int]:
        name = f"{self.shard.prefix}.client.{channel}"
        return self.shard.execute("PUBSUB", "NUMSUB", name).addCallback(lambda reply: reply[1])

    @inlineCallbacks
    def test_executeNow(self) -> _Gen:
        """
        A command executed C{now} is on its way to Redis when execute returns (the control plane's PUBLISH of a
        batch); others wait in Twisted's buffer for the next poll, with the rest of their turn's commands.
        """
        from httpstream.directwrite import unsent

        tcp = self.shard._commands.protocol.transport.transport
        d = self.shard.execute("PUBLISH", f"{self.shard.prefix}.now", "x", now=True)
        self.assertEqual(unsent(tcp), 0)
        later = self.shard.execute("PUBLISH", f"{self.shard.prefix}.later", "x")
        self.assertGreater(unsent(tcp), 0)
        self.assertEqual((yield d), 0)  # subscribers
        self.assertEqual((yield later), 0)
        self.assertEqual((yield self.shard.execute("PING", now=True)), b"PONG")

    @inlineCallbacks
    def test_readyOnceSubscribed(self) -> _Gen:
        """
        A shard is ready once the channels wanted before it connected are subscribed, not only sent: a node that
        announces itself then hears the answer (the control plane's first announcement).
        """
        requireRedis(REDIS_PORT)
        shard = RedisShard(reactor, f"{REDIS_HOST}:{REDIS_PORT}", prefix=newPrefix(), db=REDIS_DB)
        name = f"{shard.prefix}.early".encode()
        self.failureResultOf(shard.subscribe(name, lambda channel, message: None), RedisUnavailable)
        shard.startService()
        self.addCleanup(cleanUp, shard)
        yield shard.whenReady().addTimeout(10, reactor)
        self.assertEqual(shard._inflight, {})
        reply = yield shard.execute("PUBSUB", "NUMSUB", name)
        self.assertEqual(reply[1], 1)

    def test_provides(self) -> None:
        self.assertTrue(verifyObject(IBroker, self.broker))
        self.assertTrue(verifyObject(IHistory, RedisHistory(self.shard)))
        self.assertTrue(verifyObject(IPresenceManager, RedisPresence(self.shard)))

    @inlineCallbacks
    def test_subscribeCounted(self) -> _Gen:
        """
        Subscribing a channel twice sends one SUBSCRIBE; it takes as many unsubscribe calls to stop receiving,
        the last one sending the UNSUBSCRIBE.
        """
        sent: list[tuple[Any, ...]] = []
        protocol = self.shard._pubsub.protocol
        execute = protocol.execute_command

        def spy(*args: Any, **kwargs: Any) -> Any:
            sent.append(args)
            return execute(*args, **kwargs)

        protocol.execute_command = spy
        name = f"{self.shard.prefix}.client.news".encode()
        first, second = self.broker.subscribe("news"), self.broker.subscribe("news")
        yield gatherResults([first, second])
        self.assertEqual(sent, [("SUBSCRIBE", name)])
        self.assertEqual((yield self.numsub("news")), 1)
        yield self.broker.unsubscribe("news")
        self.assertEqual(sent, [("SUBSCRIBE", name)])
        self.assertEqual((yield self.numsub("news")), 1)
        yield self.broker.publish("news", pub(1))
        yield self.received.wait(1)
        yield self.broker.unsubscribe("news")
        self.assertEqual(sent, [("SUBSCRIBE", name), ("UNSUBSCRIBE", name)])
        self.assertEqual((yield self.numsub("news")), 0)
        yield self.broker.unsubscribe("news")  # one too many: ignored
        self.assertEqual(len(sent), 2)

    @inlineCallbacks
    def test_publishesAtomic(self) -> _Gen:
        """
        Publications sent at once from two nodes (two connections) get distinct, consecutive offsets under one
        epoch, and a subscriber receives them in offset order.
        """
        other = RedisBroker((yield startShard(self, prefix=self.shard.prefix)))
        yield self.broker.subscribe("news")
        results = yield gatherResults(
            [broker.publish("news", pub(n), 200, 60, 600) for n in range(50) for broker in (self.broker, other)]
        )
        self.assertEqual(sorted(r.offset for r in results), list(range(1, 101)))
        self.assertEqual(len({r.epoch for r in results}), 1)
        yield self.received.wait(100)
        self.assertEqual([p.offset for _, p in self.received.received], list(range(1, 101)))
        history = yield self.broker.history("news", limit=-1)
        self.assertEqual([p.offset for p in history.publications], list(range(1, 101)))

    @inlineCallbacks
    def test_ttlsInMilliseconds(self) -> _Gen:
        """
        The stream's items expire historyTTL after the last publication, its meta historyMetaTTL (or the broker's
        default) after the last use, to the millisecond.
        """
        meta, stream = historyKeys(self.shard, "news")
        yield self.broker.publish("news", pub(1), 10, 1.5, 30)
        self.assertTrue(1400 < (yield self.shard.execute("PTTL", stream)) <= 1500)
        self.assertTrue(29900 < (yield self.shard.execute("PTTL", meta)) <= 30000)
        yield self.broker.history("news", metaTTL=0.25)
        self.assertTrue(150 < (yield self.shard.execute("PTTL", meta)) <= 250)
        yield self.broker.history("news")
        self.assertTrue(30 * 86400 * 1000 - 1000 < (yield self.shard.execute("PTTL", meta)) <= 30 * 86400 * 1000)
        configured = RedisBroker(self.shard, historyMetaTTL=100)
        yield configured.publish("news", pub(2), 10, 1)
        self.assertTrue(99000 < (yield self.shard.execute("PTTL", meta)) <= 100000)

    @inlineCallbacks
    def test_handlerGetsEpoch(self) -> _Gen:
        """
        The handler gets the epoch of the stream each publication was stored in ("" without history), through
        PUB/SUB as the stream has it.
        """
        yield self.broker.subscribe("news")
        result = yield self.broker.publish("news", pub(1), 10, 60)
        yield self.broker.publish("news", pub(2))
        yield self.received.wait(2)
        self.assertEqual(self.received.received, [("news", pub(1, 1)), ("news", pub(2))])
        self.assertEqual(self.received.epochs, [result.epoch, ""])

    @inlineCallbacks
    def test_exactRoundTrip(self) -> _Gen:
        """
        Publications come back from PUB/SUB and history exactly as published: binary and non-UTF-8 bytes, text
        beyond ASCII, explicit zero values, tags.
        """
        publication = Publication(
            b"\x00\xff\x80binary", info=ClientInfo("", "c1", "é".encode("latin-1"), "ünï".encode()),
            tags={"k": "v", "": ""},
        )
        yield self.broker.subscribe("news")
        yield self.broker.publish("news", publication, 10, 60)
        yield self.broker.publish("news", Publication("ставка".encode()))
        yield self.received.wait(2)
        self.assertEqual(
            self.received.received,
            [("news", attrs.evolve(publication, offset=1)), ("news", Publication("ставка".encode()))],
        )
        history = yield self.broker.history("news", limit=-1)
        self.assertEqual(history.publications, [attrs.evolve(publication, offset=1)])

    @inlineCallbacks
    def test_unencodable(self) -> _Gen:
        unencodable = Publication(b"1", tags={1: "2"})  # type: ignore[dict-item]
        failure = yield self.assertFailure(self.broker.publish("news", unencodable), TypeError)
        self.assertTrue(failure)

    @inlineCallbacks
    def test_lostMetaNewEpoch(self) -> _Gen:
        """
        A stream whose meta hash is gone (Redis restarted without persistence, or evicted it) starts again with a
        new epoch and offset 1, dropping items left from the old one.
        """
        first = yield self.broker.publish("news", pub(1), 10, 60)
        yield self.broker.publish("news", pub(2), 10, 60)
        yield self.shard.execute("DEL", historyKeys(self.shard, "news")[0])
        again = yield self.broker.publish("news", pub(3), 10, 60)
        self.assertEqual(again.offset, 1)
        self.assertNotEqual(again.epoch, first.epoch)
        history = yield self.broker.history("news", limit=-1)
        self.assertEqual(history.publications, [pub(3, 1)])

    @inlineCallbacks
    def test_hugeSinceOffset(self) -> _Gen:
        """
        A client's since offset past what a stream id holds (uint64) reads as past the top.
        """
        yield self.broker.publish("news", pub(1), 10, 60)
        forward = yield self.broker.history("news", since=StreamPosition(2**64 - 1), limit=-1)
        self.assertEqual((forward.publications, forward.offset), ([], 1))
        backward = yield self.broker.history("news", since=StreamPosition(2**64 - 1), limit=-1, reverse=True)
        self.assertEqual(backward.publications, [pub(1, 1)])

    @inlineCallbacks
    def test_undecodableMessageDropped(self) -> _Gen:
        """
        A PUB/SUB message that is not ours (another program on the channel) is logged and dropped.
        """
        yield self.broker.subscribe("news")
        yield self.shard.execute("PUBLISH", f"{self.shard.prefix}.client.news", b"garbage")
        yield self.broker.publish("news", pub(1))
        yield self.received.wait(1)
        self.assertEqual(self.received.received, [("news", pub(1))])

    @inlineCallbacks
    def test_unicodeChannel(self) -> _Gen:
        yield self.broker.subscribe("чат:1")
        result = yield self.broker.publish("чат:1", pub(1), 10, 60)
        yield self.received.wait(1)
        self.assertEqual(self.received.received, [("чат:1", pub(1, 1))])
        self.assertEqual((yield self.broker.history("чат:1", limit=-1)).offset, result.offset)


class RedisPresenceTests(TestCase):
    @inlineCallbacks
    def setUp(self) -> _Gen:
        self.shard = yield startShard(self)
        self.clock = Clock()
        self.presence = RedisPresence(self.shard, ttl=60, clock=self.clock)

    @inlineCallbacks
    def test_entriesExpire(self) -> _Gen:
        """
        An entry not refreshed for the TTL disappears (the node that added it may be gone); adding refreshes it.
        """
        yield self.presence.add("news", "c1", ClientInfo("", "c1"))
        yield self.presence.add("news", "c2", ClientInfo("", "c2"))
        self.clock.advance(50)
        yield self.presence.add("news", "c2", ClientInfo("u", "c2"))
        yield self.presence.add("news", "c3", ClientInfo("", "c3"))
        self.clock.advance(10)
        self.assertEqual(
            (yield self.presence.presence("news")), {"c2": ClientInfo("u", "c2"), "c3": ClientInfo("", "c3")}
        )
        data, expire = f"{self.shard.prefix}.presence.data.news", f"{self.shard.prefix}.presence.expire.news"
        self.assertEqual(sorted((yield self.shard.execute("HKEYS", data))), [b"c2", b"c3"])
        self.assertEqual((yield self.shard.execute("ZCARD", expire)), 2)
        self.clock.advance(50)
        self.assertEqual((yield self.presence.stats("news")), {"num_clients": 0, "num_users": 0})

    @inlineCallbacks
    def test_keysExpire(self) -> _Gen:
        """
        A channel's keys expire the TTL after the last add, so channels nobody refreshes leave nothing behind.
        """
        presence = RedisPresence(self.shard, ttl=2.5)
        yield presence.add("news", "c1", ClientInfo("", "c1"))
        for key in (f"{self.shard.prefix}.presence.data.news", f"{self.shard.prefix}.presence.expire.news"):
            self.assertTrue(2400 < (yield self.shard.execute("PTTL", key)) <= 2500)

    @inlineCallbacks
    def test_unencodable(self) -> _Gen:
        unencodable = ClientInfo("", object())  # type: ignore[arg-type]
        yield self.assertFailure(self.presence.add("news", "c1", unencodable), TypeError)


class EncodingTests(SynchronousTestCase):
    def test_publication(self) -> None:
        """
        What is stored: the protocol's field names, payloads as text when UTF-8 (else base64 in a list), no
        offset (the stream entry's id holds it).
        """
        publication = Publication(b'{"a":1}', 9, ClientInfo("", "c", b"\xff"))
        encoded = encodePublication(publication)
        self.assertEqual(encoded, b'{"data":"{\\"a\\":1}","info":{"user":"","client":"c","conn_info":["/w=="]}}')
        self.assertEqual(decodePublication(encoded), Publication(b'{"a":1}', 0, ClientInfo("", "c", b"\xff")))
        self.assertEqual(decodePublication(encoded, 9), publication)

    def test_storedBefore(self) -> None:
        """
        What earlier versions stored reads back: an info without C{user}; other Publication fields are checked
        and left out.
        """
        stored = b'{"data":"1","info":{"client":"c"},"tags":{"a":"b"},"time":5,"delta":true}'
        self.assertEqual(decodePublication(stored), Publication(b"1", 0, ClientInfo("", "c"), {"a": "b"}, True))

    def test_info(self) -> None:
        info = ClientInfo("", "c", b"\x00", b"[]")
        self.assertEqual(decodeInfo(encodeInfo(info)), info)


class AddressTests(SynchronousTestCase):
    def test_hostPort(self) -> None:
        self.assertEqual(parseAddress("redis.local:7000"), RedisAddress("redis.local", 7000))
        self.assertEqual(parseAddress("redis.local"), RedisAddress("redis.local", 6379))
        self.assertEqual(parseAddress("[::1]:7000", db=2), RedisAddress("::1", 7000, 2))
        self.assertEqual(parseAddress("[::1]"), RedisAddress("::1"))
        self.assertEqual(
            parseAddress("h:1", db=3, user="u", password="p", tls=True), RedisAddress("h", 1, 3, "u", "p", True)
        )

    def test_url(self) -> None:
        self.assertEqual(parseAddress("redis://h"), RedisAddress("h"))
        self.assertEqual(
            parseAddress("redis://user:p%40ss@h:7000/4", db=1, user="x", password="y"),
            RedisAddress("h", 7000, 4, "user", "p@ss"),
        )
        self.assertEqual(parseAddress("rediss://:pw@[::1]:7000", db=5), RedisAddress("::1", 7000, 5, "", "pw", True))
        self.assertEqual(parseAddress("redis://h/", password="keep"), RedisAddress("h", password="keep"))

    def test_invalid(self) -> None:
        for address in ["", ":6379", "h:0", "h:x", "h:70000", "::1", "[::1", "[::1]x", "http://h", "redis://h/x",
                        "redis://:6379", "redis://h:x"]:
            self.assertRaises(ValueError, parseAddress, address)

    def test_str(self) -> None:
        """An address shows without its password (it goes into logs)."""
        address = parseAddress("rediss://u:secret@[::1]:7000/2")
        self.assertEqual(str(address), "rediss://[::1]:7000/2")
        self.assertNotIn("secret", repr(address))

    def test_fromConfig(self) -> None:
        config = Config(
            redis_address="h:7000", redis_prefix="p", redis_db=3, redis_user="u", redis_password="pw", redis_tls=False
        )
        shard = RedisShard.fromConfig(reactor, config)
        self.assertEqual((shard.address, shard.prefix), (RedisAddress("h", 7000, 3, "u", "pw"), "p"))
        self.assertEqual(RedisShard.fromConfig(reactor, Config()).address, RedisAddress("127.0.0.1", 6379))

    def test_configRefusesBadAddress(self) -> None:
        """
        The config refuses what the engine cannot read, without the URL's password in the message.
        """
        for address in ["h:0", "::1", "redis://u:secret@h/x", "ftp://h"]:
            with self.assertRaises(ConfigError) as raised:
                Config(redis_address=address)
            self.assertIn('"redis_address"', str(raised.exception))
            self.assertNotIn("secret", str(raised.exception))
        for address in ["h:1", "[::1]:6379", "redis://:pw@h:1/3", "rediss://h"]:
            parseAddress(Config(redis_address=address).redis_address)


class ReplyReaderTests(SynchronousTestCase):
    def replies(self, *chunks: bytes) -> list[Any]:
        reader = ReplyReader()
        replies = []
        for chunk in chunks:
            reader.feed(chunk)
            while (reply := reader.gets()) is not INCOMPLETE:
                replies.append(reply)
        return replies

    def test_kinds(self) -> None:
        wire = (
            b"+OK\r\n:42\r\n:-1\r\n$3\r\na\r\n\r\n$0\r\n\r\n$-1\r\n*-1\r\n*0\r\n"
            b"*2\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\nd\r\n$2\r\nxy\r\n:7\r\n-NOSCRIPT No matching script\r\n"
        )
        expected = [b"OK", 42, -1, b"a\r\n", b"", None, None, [], [[b"1-0", [b"d", b"xy"]], 7]]
        for chunks in [(wire,), tuple(wire[i : i + 1] for i in range(len(wire)))]:
            replies = self.replies(*chunks)
            self.assertEqual(replies[:-1], expected)
            self.assertIsInstance(replies[-1], txredisapi.ResponseError)
            self.assertEqual(str(replies[-1]), "NOSCRIPT No matching script")

    def test_invalid(self) -> None:
        for wire in [b"?x\r\n", b"$x\r\n", b":1.5\r\n"]:
            self.assertRaises(txredisapi.InvalidResponse, self.replies, wire)


def selfSignedCertificate(directory: str) -> bytes:
    """Write cert.pem and key.pem for "localhost" (its own CA) into C{directory}; return the certificate."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(REDIS_HOST))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    with open(f"{directory}/cert.pem", "wb") as f:
        f.write(pem)
    with open(f"{directory}/key.pem", "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return pem


class OwnRedis:
    """A redis-server on a free port, without persistence, that a test stops, freezes and starts again."""

    def __init__(self, *arguments: str, tls: bool = False) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise AssertionError("redis-server is not installed: the Redis fault tests start their own")
        with socket.socket() as s:
            s.bind((REDIS_HOST, 0))
            self.port = s.getsockname()[1]
        self.directory = tempfile.mkdtemp(prefix="httpstream-redis-")
        ports = ["--port", str(self.port)]
        if tls:
            self.certificate = selfSignedCertificate(self.directory)
            ports = ["--port", "0", "--tls-port", str(self.port), "--tls-auth-clients", "no",
                     "--tls-cert-file", f"{self.directory}/cert.pem", "--tls-key-file", f"{self.directory}/key.pem",
                     "--tls-ca-cert-file", f"{self.directory}/cert.pem"]
        self.command = [binary, *ports, "--bind", REDIS_HOST, "--save", "", "--appendonly", "no",
                        "--dir", self.directory, *arguments]
        self.process: Optional[subprocess.Popen[bytes]] = None

    @inlineCallbacks
    def start(self) -> _Gen:
        self.process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def answers() -> bool:
            try:
                socket.create_connection((REDIS_HOST, self.port), timeout=1).close()
            except OSError:
                return False
            return True

        yield waitFor(answers, what=f"redis-server on port {self.port}")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()  # frozen or not: no reply gets out
            self.process.wait()
            self.process = None

    def freeze(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.directory, ignore_errors=True)


class RedisFaultTests(TestCase):
    """
    Losing Redis: calls fail (never a false success) while it is away, the node reconnects, subscribes its
    channels again and says so.
    """

    @inlineCallbacks
    def setUp(self) -> _Gen:
        self.redis = OwnRedis()
        self.addCleanup(self.redis.stop)
        yield self.redis.start()
        self.shard = yield startShard(
            self, self.redis.port, db=0, initialRetryDelay=0.05, maxRetryDelay=0.2, replyTimeout=None
        )
        self.broker = RedisBroker(self.shard)
        self.received = Recorder()
        self.broker.setHandler(self.received)
        self.reconnected: list[list[str]] = []
        self.broker.setReconnectHandler(self.reconnected.append)
        self.presence = RedisPresence(self.shard)

    @inlineCallbacks
    def test_restart(self) -> _Gen:
        """
        While Redis is down, publish, history, presence and subscribe fail at once; when it is back the broker
        subscribes its channels again, calls the reconnect handler with them, and publications flow (in a new
        epoch: this Redis kept nothing).
        """
        yield self.broker.subscribe("news")
        yield self.broker.subscribe("other")
        yield self.broker.unsubscribe("other")
        before = yield self.broker.publish("news", pub(1), 10, 60)
        yield self.received.wait(1)
        self.redis.kill()
        yield waitFor(lambda: not self.shard.connected, what="the shard to notice")
        for d in [
            self.broker.publish("news", pub(2), 10, 60),
            self.broker.publish("news", pub(2)),
            self.broker.history("news"),
            self.broker.removeHistory("news"),
            self.presence.add("news", "c1", ClientInfo("", "c1")),
            self.presence.presence("news"),
            self.broker.subscribe("later"),
        ]:
            yield self.assertFailure(d, RedisUnavailable)
        yield self.broker.unsubscribe("later")  # the failed subscribe still counted
        yield self.broker.subscribe("while-down").addErrback(lambda f: f.trap(RedisUnavailable))
        yield self.redis.start()
        yield waitFor(lambda: self.reconnected, what="the reconnect handler")
        self.assertEqual([sorted(channels) for channels in self.reconnected], [["news", "while-down"]])
        numsub = yield self.shard.execute(
            "PUBSUB", "NUMSUB", f"{self.shard.prefix}.client.news", f"{self.shard.prefix}.client.later"
        )
        self.assertEqual(numsub[1::2], [1, 0])
        after = yield self.broker.publish("news", pub(3), 10, 60)
        self.assertEqual(after.offset, 1)
        self.assertNotEqual(after.epoch, before.epoch)
        yield self.received.wait(2)
        self.assertEqual(self.received.received[1], ("news", pub(3, 1)))
        self.assertEqual(self.received.epochs[1], after.epoch)

    @inlineCallbacks
    def test_lostBeforeReply(self) -> _Gen:
        """
        A publication whose reply never comes (Redis froze, then died) fails: it may or may not have been
        stored, so it is not reported sent.
        """
        self.redis.freeze()
        publishing = self.broker.publish("news", pub(1), 10, 60)
        yield sleep(0.05)
        self.assertFalse(publishing.called)
        self.redis.kill()
        yield self.assertFailure(publishing, txredisapi.ConnectionError)

    @inlineCallbacks
    def test_replyTimeout(self) -> _Gen:
        """
        A Redis that stops answering is given replyTimeout seconds: then the call fails (an outage:
        RedisUnavailable) and the connection is dropped and made again.
        """
        shard = yield startShard(self, self.redis.port, db=0, initialRetryDelay=0.05, replyTimeout=0.2)
        broker = RedisBroker(shard)
        frozen = shard._commands.protocol
        self.redis.freeze()
        started = time.monotonic()
        yield self.assertFailure(broker.publish("news", pub(1), 10, 60), RedisUnavailable)
        self.assertLess(time.monotonic() - started, 2)
        # (A new connection to the frozen server may already be up: the kernel accepts it.)
        yield waitFor(lambda: shard._commands.protocol is not frozen, what="the connection to be dropped")
        assert self.redis.process is not None
        self.redis.process.send_signal(signal.SIGCONT)
        ready = shard.whenReady()
        ready.addTimeout(10, reactor)
        yield ready
        # The timed-out publication may have run when Redis woke: a failure means "not known to be sent".
        self.assertIn((yield broker.publish("news", pub(2), 10, 60)).offset, (1, 2))


class FailedAttemptTests(TestCase):
    @inlineCallbacks
    def test_failedAttemptsLogged(self) -> _Gen:
        """
        An attempt that makes no connection is logged with its reason, as operations.md shows (ClientService
        itself only says it will retry); with Sentinel, the reason names each Sentinel's. No password in them.
        """
        from httpstream.engines.redis import parseSentinels

        with socket.socket() as s:
            s.bind((REDIS_HOST, 0))
            port = s.getsockname()[1]  # nothing listens there once closed
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        plain = RedisShard(reactor, f"redis://:s3cret@{REDIS_HOST}:{port}", initialRetryDelay=0.05, maxRetryDelay=0.1)
        sentinel = RedisShard(
            reactor, f"redis://:s3cret@{REDIS_HOST}:{port}", initialRetryDelay=0.05, maxRetryDelay=0.1,
            sentinel=parseSentinels(f"{REDIS_HOST}:{port}", "mymaster", password="s3cret"),
        )
        for shard in (plain, sentinel):
            shard.startService()
            self.addCleanup(shard.stopService)

        def lines() -> list[str]:
            return [formatEvent(e) for e in events if e.get("log_level") == LogLevel.warn]

        def both() -> bool:
            found = [line for line in lines() if "commands connection" in line and "failed (" in line]
            return any("redis://127" in line for line in found) and any("mymaster" in line for line in found)

        yield waitFor(both, what="both failures logged")
        self.assertTrue(any(f"{REDIS_HOST}:{port}: Connection was refused" in line for line in lines()), lines())
        self.assertFalse(any("s3cret" in line for line in lines()))


class RedisAuthTests(TestCase):
    @inlineCallbacks
    def setUp(self) -> _Gen:
        self.redis = OwnRedis("--requirepass", "s3cret", "--databases", "4")
        self.addCleanup(self.redis.stop)
        yield self.redis.start()

    @inlineCallbacks
    def test_password(self) -> _Gen:
        """
        The password and database of a URL address are used.
        """
        shard = RedisShard(reactor, f"redis://:s3cret@{REDIS_HOST}:{self.redis.port}/3", prefix=newPrefix())
        shard.startService()
        self.addCleanup(shard.stopService)
        ready = shard.whenReady()
        ready.addTimeout(10, reactor)
        yield ready
        yield RedisBroker(shard).publish("news", pub(1), 10, 60)
        self.assertEqual((yield shard.execute("CLIENT", "INFO")).split(b" db=")[1][:1], b"3")
        self.assertEqual((yield shard.execute("DBSIZE")), 2)  # the stream and its meta hash

    @inlineCallbacks
    def test_channelNotAllowed(self) -> _Gen:
        """
        An ACL user without access to the PUB/SUB channels (Redis 7's default for a new user): a subscribe fails
        with the engine's RedisReplyError (an outage for the client: 100, one log line), not txredisapi's own
        error, which was logged with a traceback.
        """
        admin = RedisShard(reactor, f"redis://:s3cret@{REDIS_HOST}:{self.redis.port}")
        admin.startService()
        self.addCleanup(admin.stopService)
        yield admin.whenReady()
        yield admin.execute("ACL", "SETUSER", "limited", "on", ">pw", "~*", "+@all", "resetchannels")
        shard = RedisShard(reactor, f"redis://limited:pw@{REDIS_HOST}:{self.redis.port}", prefix=newPrefix())
        shard.startService()
        self.addCleanup(shard.stopService)
        ready = shard.whenReady()
        ready.addTimeout(10, reactor)
        yield ready
        failure = yield self.assertFailure(RedisBroker(shard).subscribe("news"), RedisReplyError)
        self.assertIn("NOPERM", str(failure))

    @inlineCallbacks
    def test_noPassword(self) -> _Gen:
        """
        No password for a Redis that wants one: the check's NOAUTH is logged and the connection made again with
        backoff (it sat connected and unusable, with no log line, and the node waited for Redis for ever).
        """
        shard = RedisShard(reactor, f"{REDIS_HOST}:{self.redis.port}", initialRetryDelay=0.05, maxRetryDelay=0.1)
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        shard.startService()
        self.addCleanup(shard.stopService)
        deadline = time.monotonic() + 10
        while shard._commands._rejected < 2 and time.monotonic() < deadline:
            yield sleep(0.05)
        self.assertFalse(shard.connected)
        self.assertGreater(shard._commands._rejected, 1)
        lines = [formatEvent(e) for e in events if e.get("log_level") == LogLevel.error]
        self.assertTrue(any("refused: NOAUTH" in line for line in lines), lines)

    @inlineCallbacks
    def test_wrongPassword(self) -> _Gen:
        """
        A refused password is logged and retried with backoff; meanwhile calls fail.
        """
        shard = RedisShard(
            reactor, f"{REDIS_HOST}:{self.redis.port}", password="wrong", initialRetryDelay=0.05, maxRetryDelay=0.1
        )
        shard.startService()
        self.addCleanup(shard.stopService)
        # Retried: a second refusal comes within 0.1 s on a quiet machine; a busy one gets longer.
        deadline = time.monotonic() + 10
        while shard._commands._rejected < 2 and time.monotonic() < deadline:
            yield sleep(0.05)
        self.assertFalse(shard.connected)
        self.assertGreater(shard._commands._rejected, 1)
        yield self.assertFailure(RedisBroker(shard).publish("news", pub(1)), RedisUnavailable)



class RedisTLSTests(TestCase):
    @inlineCallbacks
    def setUp(self) -> _Gen:
        self.redis = OwnRedis(tls=True)
        self.addCleanup(self.redis.stop)
        yield self.redis.start()

    def shard(self, host: str, trusted: bool) -> RedisShard:
        from twisted.internet.ssl import Certificate

        trustRoot = Certificate.loadPEM(self.redis.certificate) if trusted else None
        shard = RedisShard(
            reactor, f"rediss://{host}:{self.redis.port}", prefix=newPrefix(), trustRoot=trustRoot,
            initialRetryDelay=0.05, maxRetryDelay=0.1,
        )
        shard.startService()
        self.addCleanup(shard.stopService)
        return shard

    @inlineCallbacks
    def test_tls(self) -> _Gen:
        """
        rediss:// (or redis_tls) connects over TLS, checking the certificate and the host name.
        """
        shard = self.shard("localhost", trusted=True)
        ready = shard.whenReady()
        ready.addTimeout(10, reactor)
        yield ready
        broker = RedisBroker(shard)
        received = Recorder()
        broker.setHandler(received)
        yield broker.subscribe("news")
        yield broker.publish("news", pub(1), 10, 60)
        yield received.wait(1)

    @inlineCallbacks
    def test_untrusted(self) -> _Gen:
        """
        A certificate the client does not trust, or for another name, never gives a connection.
        """
        untrusted, otherName = self.shard("localhost", trusted=False), self.shard("127.0.0.2", trusted=True)
        yield sleep(0.4)
        self.assertFalse(untrusted.connected or otherName.connected)


class PubSubPingTests(SynchronousTestCase):
    """The PUB/SUB connection only receives: the shard PINGs it, so that one gone silent times out and is remade."""

    def test_pingedWhileItIsTheConnection(self) -> None:
        clock = Clock()
        shard = RedisShard(clock, "127.0.0.1:6379", pubsubPingInterval=1.0)
        sent: list[tuple[Any, ...]] = []

        class Protocol:
            def execute_command(self, *args: Any, **kwargs: Any) -> Deferred[Any]:
                sent.append(args)
                return Deferred()  # no reply: txredisapi's reply timeout drops the connection

        protocol = Protocol()
        shard._pubsub.protocol = protocol
        shard._pubsubReady(protocol, reconnect=False)
        clock.advance(1.0)
        clock.advance(1.0)
        self.assertEqual(sent, [("PING",), ("PING",)])
        shard._pubsub.protocol = None  # lost: the next connection pings for itself
        clock.advance(1.0)
        self.assertEqual(len(sent), 2)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_noPingWithoutReplyTimeout(self) -> None:
        clock = Clock()
        shard = RedisShard(clock, "127.0.0.1:6379", replyTimeout=None)
        shard._pubsubReady(object(), reconnect=False)
        self.assertEqual(clock.getDelayedCalls(), [])
