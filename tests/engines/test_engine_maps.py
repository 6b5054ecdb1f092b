"""
The contract every map broker (L{IMapBroker}) keeps: state pages in key order, a change stream with offsets, 112
for positions it cannot serve, key TTLs with removals; and that a snapshot read while writes go on, with the
stream after its position, adds up to the state (a property, with hypothesis).

L{MapBrokerContract} is written against the interface only, as L{tests.engines.test_engine_contract}'s suites: an
engine runs it by mixing it into a trial C{TestCase} and saying how to make one (L{MapBrokerContract.makeBroker},
and L{MapBrokerContract.advance} for time). Deliveries are awaited, never assumed synchronous; key deadlines follow
the L{Clock} given to C{makeBroker} (both engines take their clock), stream TTLs may be real time. Here it runs on
the memory broker; tests/engines/test_redis_maps.py runs it on Redis.
"""

from __future__ import annotations

from typing import Any, Generator, Union

from hypothesis import given, settings as hsettings, strategies as st
from twisted.internet.defer import Deferred, inlineCallbacks, maybeDeferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from httpstream.engines import UnrecoverablePosition
from httpstream.engines.maps import IMapBroker, MapSettings
from httpstream.engines.memorymap import MemoryMapBroker
from httpstream.values import Publication, StreamPosition

_Gen = Generator[Any, Any, None]

POSITIONED = MapSettings(positioned=True, streamSize=5, streamTTL=60)
# What the paging property writes with: a stream long enough for every write of an example.
LONG = MapSettings(positioned=True, streamSize=1000, streamTTL=600)


def result(d: Any) -> Any:
    out: list[Any] = []
    d.addBoth(out.append)
    return out[0]


class MapBrokerContract:
    """The L{IMapBroker} contract. Mix into a trial C{TestCase}; define L{makeBroker} (and L{advance})."""

    clock: Clock
    broker: IMapBroker
    #: The map channel the tests use (an engine with shards may pick one on a given shard).
    channel = "m"

    def makeBroker(self, clock: Clock) -> Union[IMapBroker, Deferred[IMapBroker]]:
        raise NotImplementedError()

    def provider(self) -> IMapBroker:
        """The broker itself (L{broker} may wrap it)."""
        return self.broker

    def advance(self, seconds: float) -> Deferred[None]:
        """Let C{seconds} pass for the engine (the clock's; a real-time engine also sleeps)."""
        self.clock.advance(seconds)
        return succeed(None)

    @inlineCallbacks
    def setUp(self) -> _Gen:
        self.clock = Clock()
        self.delivered: list[tuple[str, Publication, str]] = []
        self._waiting: list[tuple[int, Deferred[None]]] = []
        self.broker = yield maybeDeferred(self.makeBroker, self.clock)
        self.broker.setHandler(self._handle)
        yield self.broker.subscribe(self.channel)

    def _handle(self, channel: str, publication: Publication, epoch: str) -> None:
        self.delivered.append((channel, publication, epoch))
        for waiting in list(self._waiting):
            if len(self.delivered) >= waiting[0]:
                self._waiting.remove(waiting)
                waiting[1].callback(None)

    def deliveries(self, count: int) -> Deferred[None]:
        """Fires once C{count} writes have been delivered."""
        if len(self.delivered) >= count:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiting.append((count, d))
        return d

    def put(self, key: str, data: bytes = b"1", settings: MapSettings = POSITIONED, **kw: Any) -> Deferred[Any]:
        return self.broker.publish(self.channel, key, Publication(data, tags=kw.pop("tags", None)), settings, **kw)

    def state(self, settings: MapSettings = POSITIONED, **kw: Any) -> Deferred[Any]:
        return self.broker.readState(self.channel, settings, **kw)

    def stream(self, since: Any = None, limit: int = -1, settings: MapSettings = POSITIONED,
               reverse: bool = False) -> Deferred[Any]:
        return self.broker.readStream(self.channel, settings, since, limit, reverse)

    def test_provides(self) -> None:
        self.assertTrue(verifyObject(IMapBroker, self.provider()))  # type: ignore[attr-defined]

    @inlineCallbacks
    def test_pagesInKeyOrder(self) -> _Gen:
        for key in ["c", "a", "e", "b", "d"]:
            yield self.put(key)
        first = yield self.state(limit=2)
        self.assertEqual([p.key for p in first.publications], ["a", "b"])
        self.assertEqual(first.cursor, "b")
        self.assertEqual(first.position.offset, 5)
        second = yield self.state(cursor=first.cursor, limit=2)
        self.assertEqual([p.key for p in second.publications], ["c", "d"])
        last = yield self.state(cursor=second.cursor, limit=2)
        self.assertEqual([p.key for p in last.publications], ["e"])
        self.assertEqual(last.cursor, "")
        everything = yield self.state()
        self.assertEqual([p.offset for p in everything.publications], [2, 4, 1, 5, 3])
        self.assertEqual((yield self.state(limit=0)).publications, [])

    @inlineCallbacks
    def test_oneKey(self) -> _Gen:
        """readState with a key: that entry alone whatever the cursor and limit, or none; the position either way."""
        for key in ["c", "a", "b"]:
            yield self.put(key, key.encode())
        one = yield self.state(key="b", cursor="b", limit=0)
        self.assertEqual([(p.key, p.data, p.offset) for p in one.publications], [("b", b"b", 3)])
        self.assertEqual((one.cursor, one.position.offset), ("", 3))
        self.assertEqual((yield self.state(key="z")).publications, [])
        yield self.broker.remove(self.channel, "b", POSITIONED)
        self.assertEqual((yield self.state(key="b")).publications, [])

    @inlineCallbacks
    def test_keyOrderBeyondASCII(self) -> _Gen:
        """Keys are ordered by code point (UTF-8 byte order), as Python sorts them."""
        keys = ["é", "z", "Z", "ё", "a b", "😀", "a"]
        for key in keys:
            yield self.put(key)
        page = yield self.state(limit=3)
        rest = yield self.state(cursor=page.cursor)
        self.assertEqual([p.key for p in page.publications + rest.publications], sorted(keys))

    @inlineCallbacks
    def test_publicationKept(self) -> _Gen:
        """The state and the stream give back data, tags and key as written."""
        yield self.broker.publish(self.channel, "k", Publication(b'{"x":"\xc3\xa9"}', tags={"t": "v"}), POSITIONED)
        page = yield self.state()
        self.assertEqual(page.publications, [Publication(b'{"x":"\xc3\xa9"}', 1, tags={"t": "v"}, key="k")])
        self.assertEqual((yield self.stream()).publications, page.publications)

    @inlineCallbacks
    def test_writesDeliveredWithOffsets(self) -> _Gen:
        yield self.put("a", b'"x"')
        self.assertEqual((yield self.broker.remove(self.channel, "a", POSITIONED)).position.offset, 2)
        yield self.deliveries(2)
        self.assertEqual([(p.key, p.offset, p.removed) for _, p, _ in self.delivered],
                         [("a", 1, False), ("a", 2, True)])
        self.assertEqual({epoch for _, _, epoch in self.delivered}, {(yield self.state()).position.epoch})
        yield self.broker.unsubscribe(self.channel)
        yield self.put("b")
        yield self.state()
        self.assertEqual(len(self.delivered), 2)

    @inlineCallbacks
    def test_removalCarriesTheKeysTags(self) -> _Gen:
        yield self.put("a", tags={"team": "eng"})
        yield self.broker.remove(self.channel, "a", POSITIONED)
        yield self.put("b", tags={"team": "eng"})
        yield self.broker.remove(self.channel, "b", POSITIONED, tags={"team": "sales"})
        yield self.deliveries(4)
        self.assertEqual(dict(self.delivered[1][1].tags), {"team": "eng"})
        self.assertEqual(dict(self.delivered[3][1].tags), {"team": "sales"})
        removals = [p for p in (yield self.stream()).publications if p.removed]
        self.assertEqual([(p.key, dict(p.tags), p.data) for p in removals],
                         [("a", {"team": "eng"}, b""), ("b", {"team": "sales"}, b"")])

    @inlineCallbacks
    def test_removeUnknownSuppressed(self) -> _Gen:
        update = yield self.broker.remove(self.channel, "nope", POSITIONED)
        self.assertTrue(update.suppressed)
        self.assertEqual(update.suppressReason, "key_not_found")

    @inlineCallbacks
    def test_keyModes(self) -> _Gen:
        self.assertTrue((yield self.put("a", keyMode="if_exists")).suppressed)
        self.assertFalse((yield self.put("a", keyMode="if_new")).suppressed)
        again = yield self.put("a", b"2", keyMode="if_new")
        self.assertEqual((again.suppressed, again.suppressReason), (True, "key_exists"))
        self.assertEqual(again.position.offset, 1)
        self.assertEqual([p.data for p in (yield self.state()).publications], [b"1"])
        self.assertFalse((yield self.put("a", b"3", keyMode="if_exists")).suppressed)

    @inlineCallbacks
    def test_idempotencyKeyWritesOnce(self) -> _Gen:
        """
        A publish or remove with a key the channel saw changes nothing (not the state, not the stream, no
        delivery) and answers suppressed "idempotency" with the first write's position (centrifuge's answer).
        """
        first = yield self.put("a", b"1", idempotencyKey="p1")
        again = yield self.put("a", b"2", idempotencyKey="p1")
        self.assertEqual((again.position, again.suppressed, again.suppressReason),
                         (first.position, True, "idempotency"))
        gone = yield self.broker.remove(self.channel, "a", POSITIONED, idempotencyKey="r1")
        regone = yield self.broker.remove(self.channel, "a", POSITIONED, idempotencyKey="r1")
        self.assertEqual((regone.position, regone.suppressReason), (gone.position, "idempotency"))
        missing = yield self.broker.remove(self.channel, "b", POSITIONED, idempotencyKey="r2")
        yield self.put("b", b"3")
        remissing = yield self.broker.remove(self.channel, "b", POSITIONED, idempotencyKey="r2")
        self.assertEqual((missing.suppressReason, remissing.suppressReason), ("key_not_found", "idempotency"))
        self.assertEqual(remissing.position, missing.position)
        self.assertEqual([(p.key, p.data) for p in (yield self.state()).publications], [("b", b"3")])
        yield self.deliveries(3)
        self.assertEqual([(p.key, p.removed) for _, p, _ in self.delivered], [("a", False), ("a", True), ("b", False)])
        self.assertEqual([p.offset for p in (yield self.stream()).publications], [1, 2, 3])

    @inlineCallbacks
    def test_streamSince(self) -> _Gen:
        for key in "abc":
            yield self.put(key)
        top = (yield self.stream(limit=0)).position
        stream = yield self.stream(StreamPosition(1, top.epoch))
        self.assertEqual([p.key for p in stream.publications], ["b", "c"])
        self.assertEqual((yield self.stream(StreamPosition(1, top.epoch), 1)).publications[0].key, "b")
        self.assertEqual((yield self.stream(StreamPosition(3, top.epoch))).publications, [])

    @inlineCallbacks
    def test_streamReversed(self) -> _Gen:
        """Reversed: newest first, up to the limit; with since, the writes before it; another epoch is refused."""
        for key in ["a", "b", "c", "d"]:
            yield self.put(key)
        offsets = lambda result: [p.offset for p in result.publications]  # noqa: E731
        self.assertEqual(offsets((yield self.stream(reverse=True))), [4, 3, 2, 1])
        self.assertEqual(offsets((yield self.stream(limit=2, reverse=True))), [4, 3])
        top = (yield self.stream(limit=0)).position
        since = StreamPosition(3, top.epoch)
        self.assertEqual(offsets((yield self.stream(since, reverse=True))), [2, 1])
        self.assertEqual(offsets((yield self.stream(since, limit=1, reverse=True))), [2])
        self.assertEqual(offsets((yield self.stream(StreamPosition(1, top.epoch), reverse=True))), [])
        yield self.assertFailure(self.stream(StreamPosition(3, "other"), reverse=True), UnrecoverablePosition)

    @inlineCallbacks
    def test_trimmedStreamUnrecoverable(self) -> _Gen:
        for i in range(8):
            yield self.put(f"k{i}")
        epoch = (yield self.stream(limit=0)).position.epoch
        failure = yield self.assertFailure(self.stream(StreamPosition(1, epoch)), UnrecoverablePosition)
        self.assertEqual((failure.offset, failure.epoch), (8, epoch))
        # The oldest retained write is 4: from 3 on is fine.
        self.assertEqual(len((yield self.stream(StreamPosition(3, epoch))).publications), 5)

    @inlineCallbacks
    def test_pastTheTopUnrecoverable(self) -> _Gen:
        yield self.put("a")
        epoch = (yield self.stream(limit=0)).position.epoch
        yield self.assertFailure(self.stream(StreamPosition(2, epoch)), UnrecoverablePosition)

    @inlineCallbacks
    def test_otherEpochUnrecoverable(self) -> _Gen:
        yield self.put("a")
        yield self.assertFailure(self.stream(StreamPosition(0, "nope")), UnrecoverablePosition)
        yield self.assertFailure(self.state(revision=StreamPosition(1, "nope")), UnrecoverablePosition)
        epoch = (yield self.state()).position.epoch
        self.assertEqual(len((yield self.state(revision=StreamPosition(1, epoch))).publications), 1)

    @inlineCallbacks
    def test_streamTTL(self) -> _Gen:
        yield self.put("a")
        epoch = (yield self.stream(limit=0)).position.epoch
        yield self.advance(61)
        yield self.assertFailure(self.stream(StreamPosition(0, epoch)), UnrecoverablePosition)
        # At the top there is nothing to miss; the state stays.
        self.assertEqual((yield self.stream(StreamPosition(1, epoch))).publications, [])
        self.assertEqual(len((yield self.state()).publications), 1)

    @inlineCallbacks
    def test_keyTTL(self) -> _Gen:
        ttl = MapSettings(positioned=False, keyTTL=10)
        yield self.put("a", settings=ttl)
        yield self.advance(5)
        yield self.put("b", settings=ttl)
        yield self.advance(6)
        yield self.deliveries(3)  # the removal reaches subscribers without anybody reading
        self.assertEqual((self.delivered[-1][1].key, self.delivered[-1][1].removed), ("a", True))
        self.assertEqual([p.key for p in (yield self.state(ttl)).publications], ["b"])
        # A refresh by if_new moves the deadline on without a write.
        yield self.put("b", settings=ttl, keyMode="if_new")
        yield self.advance(8)
        self.assertEqual((yield self.broker.stats(self.channel)), 1)
        yield self.advance(10)
        yield self.deliveries(4)
        self.assertEqual((yield self.broker.stats(self.channel)), 0)
        self.assertEqual([(p.key, p.removed) for _, p, _ in self.delivered],
                         [("a", False), ("b", False), ("a", True), ("b", True)])
        self.assertEqual([(p.key, p.removed) for p in (yield self.stream(settings=ttl)).publications],
                         [("a", False), ("b", False), ("a", True), ("b", True)])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    @inlineCallbacks
    def test_keyTTLWithoutSubscribers(self) -> _Gen:
        """Where no node subscribes, the next call still finds the expired key gone, its removal in the stream."""
        yield self.broker.unsubscribe(self.channel)
        ttl = MapSettings(positioned=True, keyTTL=10)
        yield self.put("a", settings=ttl)
        yield self.put("b")
        yield self.advance(11)
        self.assertEqual([p.key for p in (yield self.state(ttl)).publications], ["b"])
        self.assertEqual([(p.key, p.removed) for p in (yield self.stream(settings=ttl)).publications],
                         [("a", False), ("b", False), ("a", True)])

    @inlineCallbacks
    def test_clearNewEpoch(self) -> _Gen:
        yield self.put("a")
        before = (yield self.stream(limit=0)).position
        yield self.broker.clear(self.channel)
        after = yield self.state()
        self.assertEqual(after.publications, [])
        self.assertEqual(after.position.offset, 0)
        self.assertNotEqual(after.position.epoch, before.epoch)
        yield self.assertFailure(self.stream(before), UnrecoverablePosition)
        self.assertEqual((yield self.broker.stats(self.channel)), 0)


    @inlineCallbacks
    def test_metaTTL(self) -> _Gen:
        """An unused channel is freed whole its meta TTL after its last write or read; 0 keeps it."""
        meta = MapSettings(positioned=True, keyTTL=5, streamSize=5, streamTTL=10, metaTTL=20)
        first = yield self.put("a", settings=MapSettings(positioned=True, streamSize=5, streamTTL=10, metaTTL=20))
        yield self.advance(12)
        yield self.state(meta)  # a read is a use
        yield self.advance(12)
        self.assertEqual((yield self.stream(limit=0, settings=meta)).position, first.position)
        yield self.advance(21)
        after = yield self.state(meta)
        self.assertEqual((after.publications, after.position.offset), ([], 0))
        self.assertNotEqual(after.position.epoch, first.position.epoch)
        yield self.assertFailure(self.stream(first.position, settings=meta), UnrecoverablePosition)
        # Without a meta TTL the channel stays, however long unused.
        kept = yield self.put("b")
        yield self.advance(100)
        self.assertEqual((yield self.state()).position, kept.position)


class MemoryMapContractTests(MapBrokerContract, TestCase):
    def makeBroker(self, clock: Clock) -> IMapBroker:
        return MemoryMapBroker(clock)


# The paging property: a snapshot paged while writes go on, with the stream after its first page's position,
# adds up to the state.

KEYS = st.sampled_from(["a", "b", "c", "d", "e", "f", "g", "h"])
# ("set", key, value), ("remove", key), or ("page",): read the next page of the snapshot.
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("set"), KEYS, st.integers(0, 99)),
        st.tuples(st.just("remove"), KEYS),
        st.just(("page",)),
    ),
    max_size=40,
)
INITIAL = st.dictionaries(KEYS, st.integers(0, 99))
PAGE_SIZES = st.integers(1, 4)


@inlineCallbacks
def pagingProperty(
    broker: IMapBroker, channel: str, initial: dict[str, int], operations: list[Any], pageSize: int,
) -> Generator[Any, Any, tuple[dict[str, bytes], dict[str, bytes]]]:
    """
    Write C{initial}, then page through the state C{pageSize} keys at a time, sending C{operations}' writes
    meanwhile without waiting for them (a page read is sent while they are under way). Then read the stream after
    the first page's position and replay it over the pages.

    @return: C{(snapshot with the stream replayed, the state read at the end)}: equal when the broker is right.
    """
    for key, value in sorted(initial.items()):
        yield broker.publish(channel, key, Publication(b"%d" % value), LONG)
    first = yield broker.readState(channel, LONG, limit=pageSize)
    snapshot = {p.key: p.data for p in first.publications}
    cursor, position = first.cursor, first.position
    pending: list[Deferred[Any]] = []
    for operation in list(operations) + [("page",)] * 10:
        if operation[0] == "set":
            pending.append(broker.publish(channel, operation[1], Publication(b"%d" % operation[2]), LONG))
        elif operation[0] == "remove":
            pending.append(broker.remove(channel, operation[1], LONG))
        elif cursor:
            page = yield broker.readState(channel, LONG, cursor=cursor, limit=pageSize, revision=position)
            snapshot.update((p.key, p.data) for p in page.publications)
            cursor = page.cursor
    for d in pending:
        yield d
    replay = yield broker.readStream(channel, LONG, since=position)
    for publication in replay.publications:
        if publication.removed:
            snapshot.pop(publication.key, None)
        else:
            snapshot[publication.key] = publication.data
    final = yield broker.readState(channel, LONG)
    return snapshot, {p.key: p.data for p in final.publications}


class MemoryPagingPropertyTests(SynchronousTestCase):
    @given(INITIAL, OPERATIONS, PAGE_SIZES)
    @hsettings(max_examples=200, deadline=None)
    def test_snapshotPlusStreamIsTheState(self, initial: dict[str, int], operations: list[Any], size: int) -> None:
        replayed, final = result(pagingProperty(MemoryMapBroker(Clock()), "m", initial, operations, size))
        self.assertEqual(replayed, final)
