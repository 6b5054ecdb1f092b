"""
The contract every engine keeps: L{IBroker} (PUB/SUB and history streams) and L{IPresenceManager}, with the
semantics of Centrifugo's history (reference/messages.md section 4) and presence (section 5).

The suites are mixins written against the interfaces only. An engine runs them by mixing them into a trial
C{TestCase} and saying how to make one::

    class RedisBrokerContractTests(BrokerContract, TestCase):
        def makeBroker(self, clock):
            ...  # an IBroker, or a Deferred firing with one
        def advance(self, seconds):
            ...  # let that much time pass for the engine (real time for a server): a Deferred

Tests are C{inlineCallbacks} generators, so they run unchanged on an engine whose Deferreds fire later; the
memory engine's fire at once and follow the L{Clock} given to C{makeBroker}. Deliveries are awaited with
L{BrokerContract.deliveries}, never assumed synchronous. TTLs are a few whole seconds, so an engine with
real-time expiry (Redis) can run them by sleeping.
"""

from __future__ import annotations

from typing import Any, ClassVar, Generator, Optional, Union

from twisted.internet.defer import Deferred, inlineCallbacks, maybeDeferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from httpstream.protocol import codes
from httpstream.engines import BadHistoryRequest, HistoryError, HistoryResult, UnrecoverablePosition
from httpstream.engines.memory import MemoryBroker, MemoryPresence
from httpstream.interfaces import IBroker, IPresenceManager
from httpstream.values import ClientInfo, Publication, StreamPosition

_Gen = Generator[Any, Any, None]

SIZE = 10  # a history size none of the tests below overflows unless they mean to
TTL = 2.0  # whole seconds: an engine with real-time expiry sleeps through these
META_TTL = 60.0


def pub(n: int, offset: int = 0) -> Publication:
    """A publication with every field an engine must keep."""
    return Publication(
        b'{"n":%d}' % n, offset, ClientInfo("u1", "c1", b'{"name":"x"}', b"[1]"), {"n": str(n)},
    )


class BrokerContract:
    """
    The L{IBroker} contract. Mix into a trial C{TestCase} and define L{makeBroker} (and L{advance} when the
    engine does not follow the L{Clock}).
    """

    clock: Clock
    broker: IBroker
    received: list[tuple[str, Publication]]

    def makeBroker(self, clock: Clock) -> Union[IBroker, Deferred[IBroker]]:
        raise NotImplementedError()

    def advance(self, seconds: float) -> Deferred[None]:
        """Let C{seconds} pass for the engine."""
        self.clock.advance(seconds)
        return succeed(None)

    @inlineCallbacks
    def setUp(self) -> _Gen:
        self.clock = Clock()
        self.received = []
        self.epochs: list[str] = []  # the epoch the handler got with each of received
        self._waiting: list[tuple[int, Deferred[list[tuple[str, Publication]]]]] = []
        self.broker = yield maybeDeferred(self.makeBroker, self.clock)
        self.broker.setHandler(self._handle)

    def _handle(self, channel: str, publication: Publication, epoch: str) -> None:
        self.received.append((channel, publication))
        self.epochs.append(epoch)
        for waiting in list(self._waiting):
            count, d = waiting
            if len(self.received) >= count:
                self._waiting.remove(waiting)
                d.callback(self.received[:count])

    def deliveries(self, count: int) -> Deferred[list[tuple[str, Publication]]]:
        """A Deferred firing with the first C{count} deliveries once they have all arrived."""
        if len(self.received) >= count:
            return succeed(self.received[:count])
        d: Deferred[list[tuple[str, Publication]]] = Deferred()
        self._waiting.append((count, d))
        return d

    def publishWithHistory(
        self, channel: str, n: int, size: int = SIZE, ttl: float = TTL, metaTTL: float = META_TTL
    ) -> Deferred[Optional[StreamPosition]]:
        return self.broker.publish(channel, pub(n), historySize=size, historyTTL=ttl, historyMetaTTL=metaTTL)

    @inlineCallbacks
    def publishMany(self, channel: str, count: int, size: int = SIZE) -> Generator[Any, Any, list[StreamPosition]]:
        results = []
        for n in range(1, count + 1):
            results.append((yield self.publishWithHistory(channel, n, size)))
        return results

    def history(
        self, channel: str, since: Optional[StreamPosition] = None, limit: int = -1, reverse: bool = False
    ) -> Deferred[HistoryResult]:
        return self.broker.history(channel, since=since, limit=limit, reverse=reverse, metaTTL=META_TTL)

    @staticmethod
    def offsets(result: HistoryResult) -> list[int]:
        return [p.offset for p in result.publications]

    def test_provides(self) -> None:
        self.assertTrue(verifyObject(IBroker, self.broker))

    # Offsets and epochs

    @inlineCallbacks
    def test_offsetsCountFromOne(self) -> _Gen:
        """
        With history, each publication gets top + 1, starting at 1, under one epoch; the result is exactly
        its L{StreamPosition}.
        """
        results = yield self.publishMany("news", 3)
        self.assertEqual([r.offset for r in results], [1, 2, 3])
        epoch = results[0].epoch
        self.assertIsInstance(epoch, str)
        self.assertTrue(epoch)
        self.assertEqual(results, [StreamPosition(n, epoch) for n in (1, 2, 3)])

    @inlineCallbacks
    def test_historyKeepsPublications(self) -> _Gen:
        """
        The stream gives back each publication whole (data bytes, info, tags) with its offset.
        """
        yield self.publishMany("news", 2)
        result = yield self.history("news")
        self.assertEqual(result.publications, [pub(1, 1), pub(2, 2)])
        self.assertEqual(result.offset, 2)

    @inlineCallbacks
    def test_epochStable(self) -> _Gen:
        """
        The epoch is the stream's: the same for every publication and read while the stream lives.
        """
        first = yield self.history("news")
        published = yield self.publishMany("news", 2)
        second = yield self.history("news", limit=0)
        self.assertEqual({first.epoch, second.epoch, *(r.epoch for r in published)}, {first.epoch})

    @inlineCallbacks
    def test_readCreatesStream(self) -> _Gen:
        """
        Reading a channel without a stream creates an empty one: top 0 and an epoch the next publication keeps.
        """
        result = yield self.history("news")
        self.assertEqual((result.publications, result.offset), ([], 0))
        self.assertTrue(result.epoch)
        published = yield self.publishWithHistory("news", 1)
        self.assertEqual(published, StreamPosition(1, result.epoch))

    @inlineCallbacks
    def test_publicationOffsetIgnored(self) -> _Gen:
        """
        An C{offset} the publication carries is replaced (history) or dropped (none).
        """
        publication = pub(1, offset=77)
        yield self.broker.subscribe("news")
        yield self.broker.publish("news", publication, historySize=SIZE, historyTTL=TTL)
        yield self.broker.publish("news", publication)
        self.assertEqual(publication, pub(1, offset=77))
        delivered = yield self.deliveries(2)
        self.assertEqual([p for _, p in delivered], [pub(1, offset=1), pub(1)])
        result = yield self.history("news")
        self.assertEqual(self.offsets(result), [1])

    @inlineCallbacks
    def test_resultsAreCopies(self) -> _Gen:
        """
        Changing a history result's list does not change the stream (publications themselves are frozen).
        """
        yield self.broker.subscribe("news")
        yield self.publishWithHistory("news", 1)
        first = yield self.history("news")
        first.publications.clear()
        second = yield self.history("news")
        self.assertEqual(second.publications, [pub(1, 1)])

    # Without history

    @inlineCallbacks
    def test_publishWithoutHistory(self) -> _Gen:
        """
        Without both a size and a TTL there is no stream: the result is None, the publication has no offset, and
        the top does not move.
        """
        yield self.publishMany("news", 2)
        for size, ttl in [(0, 0), (SIZE, 0), (0, TTL), (-1, TTL), (SIZE, -1)]:
            result = yield self.broker.publish("news", pub(9), historySize=size, historyTTL=ttl)
            self.assertIsNone(result, (size, ttl))
        result = yield self.broker.publish("news", pub(9))
        self.assertIsNone(result)
        position = yield self.history("news", limit=0)
        self.assertEqual(position.offset, 2)
        published = yield self.publishWithHistory("news", 3)
        self.assertEqual(published, StreamPosition(3, position.epoch))
        self.assertEqual(self.offsets((yield self.history("news"))), [1, 2, 3])

    @inlineCallbacks
    def test_noHistoryChannelHasEmptyStream(self) -> _Gen:
        """
        Publications without history leave nothing to read: the channel's stream (created by the read) is empty.
        """
        yield self.broker.publish("news", pub(1))
        result = yield self.history("news")
        self.assertEqual((result.publications, result.offset), ([], 0))

    # Size

    @inlineCallbacks
    def test_sizeTrims(self) -> _Gen:
        """
        The stream keeps the newest C{historySize} publications; the top keeps counting.
        """
        yield self.publishMany("news", 5, size=3)
        result = yield self.history("news")
        self.assertEqual(self.offsets(result), [3, 4, 5])
        self.assertEqual(result.offset, 5)

    @inlineCallbacks
    def test_smallerSizeTrimsOnNextPublish(self) -> _Gen:
        """
        A channel whose size shrinks (a config change) keeps the new size from its next publication on.
        """
        yield self.publishMany("news", 4, size=10)
        yield self.publishWithHistory("news", 5, size=2)
        self.assertEqual(self.offsets((yield self.history("news"))), [4, 5])

    # TTLs

    @inlineCallbacks
    def test_ttlClearsItemsKeepsPosition(self) -> _Gen:
        """
        C{historyTTL} after the last publication the items go; top and epoch stay, and offsets continue.
        """
        first = yield self.publishWithHistory("news", 1)
        yield self.advance(TTL / 2)
        yield self.publishWithHistory("news", 2)
        yield self.advance(TTL * 3 / 4)  # past the first publish's TTL, not the last one's
        self.assertEqual(self.offsets((yield self.history("news"))), [1, 2])
        yield self.advance(TTL / 2)
        result = yield self.history("news")
        self.assertEqual((result.publications, result.offset, result.epoch), ([], 2, first.epoch))
        published = yield self.publishWithHistory("news", 3)
        self.assertEqual(published, StreamPosition(3, first.epoch))
        self.assertEqual(self.offsets((yield self.history("news"))), [3])

    @inlineCallbacks
    def test_shorterTTLApplies(self) -> _Gen:
        """
        The TTL that counts is the last publication's, even when it is shorter than an earlier one.
        """
        yield self.publishWithHistory("news", 1, ttl=TTL * 10)
        yield self.publishWithHistory("news", 2, ttl=TTL)
        yield self.advance(TTL * 1.5)
        result = yield self.history("news")
        self.assertEqual((result.publications, result.offset), ([], 2))

    @inlineCallbacks
    def test_metaTTLDropsStream(self) -> _Gen:
        """
        After C{historyMetaTTL} without use the stream itself goes: a new epoch, top 0; reads count as use.
        """
        first = yield self.publishWithHistory("news", 1, ttl=1, metaTTL=4)
        yield self.advance(2)
        result = yield self.broker.history("news", limit=-1, metaTTL=4)  # keeps it until 6
        self.assertEqual((result.publications, result.offset, result.epoch), ([], 1, first.epoch))
        yield self.advance(3)
        result = yield self.broker.history("news", limit=0, metaTTL=4)  # keeps it until 9
        self.assertEqual((result.offset, result.epoch), (1, first.epoch))
        yield self.advance(5)
        result = yield self.broker.history("news", limit=-1, metaTTL=4)
        self.assertEqual((result.publications, result.offset), ([], 0))
        self.assertNotEqual(result.epoch, first.epoch)
        published = yield self.publishWithHistory("news", 2)
        self.assertEqual(published, StreamPosition(1, result.epoch))

    @inlineCallbacks
    def test_publishRenewsMetaTTL(self) -> _Gen:
        """
        A publication keeps the stream for C{historyMetaTTL} more.
        """
        first = yield self.publishWithHistory("news", 1, ttl=1, metaTTL=4)
        yield self.advance(3)
        yield self.publishWithHistory("news", 2, ttl=1, metaTTL=4)
        yield self.advance(3)
        result = yield self.broker.history("news", limit=0, metaTTL=4)
        self.assertEqual((result.offset, result.epoch), (2, first.epoch))

    # Idempotency keys

    @inlineCallbacks
    def test_idempotencyKeyPublishesOnce(self) -> _Gen:
        """
        A publish with a key the channel saw answers the first one's position and publishes nothing: not into
        the history, not to subscribers. Another channel, or no key, publishes.
        """
        yield self.broker.subscribe("news")
        first = yield self.broker.publish("news", pub(1), SIZE, TTL, META_TTL, idempotencyKey="k")
        again = yield self.broker.publish("news", pub(2), SIZE, TTL, META_TTL, idempotencyKey="k")
        self.assertEqual((first.offset, again), (1, first))
        other = yield self.broker.publish("other", pub(3), SIZE, TTL, META_TTL, idempotencyKey="k")
        self.assertEqual(other.offset, 1)
        unkeyed = yield self.broker.publish("news", pub(4), SIZE, TTL, META_TTL)
        self.assertEqual(unkeyed.offset, 2)
        delivered = yield self.deliveries(2)
        self.assertEqual([p.data for _, p in delivered], [b'{"n":1}', b'{"n":4}'])
        self.assertEqual([p.data for p in (yield self.history("news")).publications], [b'{"n":1}', b'{"n":4}'])

    @inlineCallbacks
    def test_idempotencyKeyWithoutHistory(self) -> _Gen:
        """Without history a repeated key answers None again and delivers nothing."""
        yield self.broker.subscribe("news")
        self.assertIsNone((yield self.broker.publish("news", pub(1), idempotencyKey="k")))
        self.assertIsNone((yield self.broker.publish("news", pub(2), idempotencyKey="k")))
        yield self.broker.publish("news", pub(3))
        delivered = yield self.deliveries(2)
        self.assertEqual([p.data for _, p in delivered], [b'{"n":1}', b'{"n":3}'])

    @inlineCallbacks
    def test_idempotentResultExpires(self) -> _Gen:
        """Once the result's TTL has passed, the same key publishes again."""
        first = yield self.broker.publish(
            "news", pub(1), SIZE, 10, META_TTL, idempotencyKey="k", idempotentResultTTL=1)
        yield self.advance(2)
        later = yield self.broker.publish(
            "news", pub(2), SIZE, 10, META_TTL, idempotencyKey="k", idempotentResultTTL=1)
        self.assertEqual(later, StreamPosition(2, first.epoch))

    # removeHistory

    @inlineCallbacks
    def test_removeHistory(self) -> _Gen:
        """
        removeHistory drops the items and keeps top and epoch; the next publication continues the offsets.
        """
        published = yield self.publishMany("news", 3)
        self.assertIsNone((yield self.broker.removeHistory("news")))
        result = yield self.history("news")
        self.assertEqual((result.publications, result.offset, result.epoch), ([], 3, published[0].epoch))
        again = yield self.publishWithHistory("news", 4)
        self.assertEqual(again, StreamPosition(4, published[0].epoch))
        self.assertEqual(self.offsets((yield self.history("news"))), [4])

    @inlineCallbacks
    def test_removeHistoryUnknownChannel(self) -> _Gen:
        self.assertIsNone((yield self.broker.removeHistory("nothing-here")))
        result = yield self.history("nothing-here")
        self.assertEqual((result.publications, result.offset), ([], 0))

    # Channels

    @inlineCallbacks
    def test_channelsIndependent(self) -> _Gen:
        """
        Each channel has its own stream: offsets, trimming, TTL and removal.
        """
        for n in range(1, 4):
            a = yield self.publishWithHistory("a", n, size=2, ttl=TTL)
            b = yield self.publishWithHistory("b", n, size=10, ttl=TTL * 10)
            self.assertEqual((a.offset, b.offset), (n, n))
        yield self.publishWithHistory("b", 4, size=10, ttl=TTL * 10)
        self.assertEqual(self.offsets((yield self.history("a"))), [2, 3])
        self.assertEqual(self.offsets((yield self.history("b"))), [1, 2, 3, 4])
        yield self.advance(TTL * 1.5)
        self.assertEqual(self.offsets((yield self.history("a"))), [])
        self.assertEqual(self.offsets((yield self.history("b"))), [1, 2, 3, 4])
        yield self.broker.removeHistory("b")
        yield self.publishWithHistory("a", 4)
        self.assertEqual(self.offsets((yield self.history("a"))), [4])
        self.assertEqual(self.offsets((yield self.history("b"))), [])

    # Delivery

    @inlineCallbacks
    def test_deliveryToSubscribedChannels(self) -> _Gen:
        """
        The handler gets publications of subscribed channels only, in order, with the offsets publish returned.
        """
        yield self.broker.subscribe("news")
        yield self.publishWithHistory("other", 1)
        results = yield self.publishMany("news", 3)
        yield self.broker.publish("news", pub(4))
        delivered = yield self.deliveries(4)
        self.assertEqual(
            delivered,
            [("news", pub(n, r.offset)) for n, r in zip((1, 2, 3), results)] + [("news", pub(4))],
        )
        yield self.broker.unsubscribe("news")
        yield self.publishWithHistory("news", 5)
        yield self.broker.subscribe("marker")
        yield self.broker.publish("marker", pub(6))
        delivered = yield self.deliveries(5)
        self.assertEqual(delivered[4], ("marker", pub(6)))
        self.assertEqual(len(self.received), 5)

    @inlineCallbacks
    def test_deliveryCarriesEpoch(self) -> _Gen:
        """
        The handler gets each publication with the epoch of the stream it was appended to, "" without history.
        """
        yield self.broker.subscribe("news")
        result = yield self.publishWithHistory("news", 1)
        yield self.broker.publish("news", pub(2))
        yield self.deliveries(2)
        self.assertEqual(self.epochs, [result.epoch, ""])

    @inlineCallbacks
    def test_deliveryEpochOfNewStream(self) -> _Gen:
        """
        Once a stream is dropped (history_meta_ttl without use), publications carry the new stream's epoch: a
        subscriber positioned in the old one can tell it lost its place.
        """
        yield self.broker.subscribe("news")
        first = yield self.publishWithHistory("news", 1, ttl=1, metaTTL=2)
        yield self.advance(3)
        second = yield self.publishWithHistory("news", 2, ttl=1, metaTTL=2)
        delivered = yield self.deliveries(2)
        self.assertNotEqual(first.epoch, second.epoch)
        self.assertEqual(self.epochs, [first.epoch, second.epoch])
        self.assertEqual([publication.offset for _, publication in delivered], [1, 1])

    @inlineCallbacks
    def test_joinLeaveToSubscribedChannels(self) -> _Gen:
        """
        Joins and leaves reach the join/leave handler for subscribed channels only, the info's bytes unchanged;
        they are not publications (no offset taken, the publication handler is not called).
        """
        pushes: list[tuple[str, ClientInfo, bool]] = []
        arrived: list[Deferred[None]] = [Deferred(), Deferred()]

        def handle(channel: str, info: ClientInfo, join: bool) -> None:
            pushes.append((channel, info, join))
            arrived[len(pushes) - 1].callback(None)

        self.broker.setJoinLeaveHandler(handle)
        yield self.broker.subscribe("room")
        info = ClientInfo("u1", "c1", b'{"n":1}', b"\xff")
        yield self.broker.publishJoinLeave("other", info, True)
        yield self.broker.publishJoinLeave("room", info, True)
        yield self.broker.publishJoinLeave("room", info, False)
        yield arrived[1]
        self.assertEqual(pushes, [("room", info, True), ("room", info, False)])
        result = yield self.publishWithHistory("room", 1)
        self.assertEqual(result.offset, 1)
        yield self.deliveries(1)
        self.assertEqual(len(pushes), 2)

    # The history filter: reference/messages.md section 4, Centrifugo's HistoryFilter.

    # (since offset or None, limit, reverse) -> offsets, on a stream holding 6..10 (size 5, top 10).
    FILTERS: ClassVar[list[tuple[Optional[int], int, bool, list[int]]]] = [
        # without since: oldest first (newest first reversed), up to limit; 0 -> position only; < 0 -> all
        (None, 0, False, []),
        (None, -1, False, [6, 7, 8, 9, 10]),
        (None, 3, False, [6, 7, 8]),
        (None, 100, False, [6, 7, 8, 9, 10]),
        (None, 0, True, []),
        (None, -1, True, [10, 9, 8, 7, 6]),
        (None, 2, True, [10, 9]),
        # since, forward: offsets > since, from the oldest retained one when since + 1 was trimmed
        (7, -1, False, [8, 9, 10]),
        (7, 2, False, [8, 9]),
        (7, 0, False, []),
        (9, -1, False, [10]),
        (10, -1, False, []),  # since is the top
        (11, -1, False, []),  # past the top
        (5, -1, False, [6, 7, 8, 9, 10]),
        (2, -1, False, [6, 7, 8, 9, 10]),
        (2, 2, False, [6, 7]),
        (0, -1, False, [6, 7, 8, 9, 10]),
        # since, reverse: offsets < since, newest first
        (8, -1, True, [7, 6]),
        (8, 1, True, [7]),
        (8, 0, True, []),
        (10, -1, True, [9, 8, 7, 6]),
        (11, -1, True, [10, 9, 8, 7, 6]),
        (11, 2, True, [10, 9]),
        (50, -1, True, [10, 9, 8, 7, 6]),
        (6, -1, True, []),  # everything before 6 was trimmed
        (3, -1, True, []),
    ]

    @inlineCallbacks
    def test_filters(self) -> _Gen:
        published = yield self.publishMany("news", 10, size=5)
        epoch = published[0].epoch
        for sinceOffset, limit, reverse, expected in self.FILTERS:
            sinces: list[Optional[StreamPosition]] = [None]
            if sinceOffset is not None:
                # an empty epoch matches any
                sinces = [StreamPosition(sinceOffset, epoch), StreamPosition(sinceOffset)]
                if sinceOffset == 0:
                    sinces.append(StreamPosition())
            for since in sinces:
                case = (since, limit, reverse)
                result = yield self.history("news", since=since, limit=limit, reverse=reverse)
                self.assertEqual(self.offsets(result), expected, case)
                self.assertEqual((result.offset, result.epoch), (10, epoch), case)
                for p in result.publications:
                    self.assertEqual(p, pub(p.offset, p.offset), case)

    @inlineCallbacks
    def test_filtersEmptyStream(self) -> _Gen:
        """
        A stream whose items expired answers every query with no publications and its position.
        """
        published = yield self.publishMany("news", 3)
        yield self.advance(TTL * 1.5)
        for since, limit, reverse in [(None, -1, False), (None, -1, True), (StreamPosition(1), -1, False),
                                      (StreamPosition(3), 5, True), (StreamPosition(9), -1, True)]:
            result = yield self.history("news", since=since, limit=limit, reverse=reverse)
            self.assertEqual((result.publications, result.offset, result.epoch), ([], 3, published[0].epoch))

    @inlineCallbacks
    def test_reverseSinceZeroIs107(self) -> _Gen:
        """
        Reverse with C{since.offset} 0 asks for what is before the first publication: 107 bad request, whatever
        the epoch and the limit.
        """
        yield self.publishMany("news", 2)
        for since in [StreamPosition(0, "x"), StreamPosition(0), StreamPosition()]:
            for limit in (-1, 0, 5):
                failure = yield self.assertFailure(self.history("news", since, limit, reverse=True), BadHistoryRequest)
                self.assertIsInstance(failure, HistoryError)
                self.assertEqual(failure.error, codes.ERROR_BAD_REQUEST)
                self.assertEqual(failure.error.code, 107)

    @inlineCallbacks
    def test_otherEpochIs112(self) -> _Gen:
        """
        A non-empty C{since.epoch} that is not the stream's: 112 unrecoverable position, carrying the stream's
        position, whatever the direction and the limit.
        """
        published = yield self.publishMany("news", 3)
        epoch = published[0].epoch
        other = "x" if epoch != "x" else "y"
        for sinceOffset, limit, reverse in [(1, -1, False), (3, -1, False), (3, 0, False), (2, -1, True), (9, 0, True)]:
            since = StreamPosition(sinceOffset, other)
            failure = yield self.assertFailure(self.history("news", since, limit, reverse), UnrecoverablePosition)
            self.assertIsInstance(failure, HistoryError)
            self.assertEqual(failure.error, codes.ERROR_UNRECOVERABLE_POSITION)
            self.assertEqual((failure.offset, failure.epoch), (3, epoch))

    @inlineCallbacks
    def test_droppedStreamEpochIs112(self) -> _Gen:
        """
        A client holding the epoch of a stream that was dropped gets 112 from the new one.
        """
        published = yield self.publishWithHistory("news", 1, ttl=1, metaTTL=2)
        yield self.advance(3)
        failure = yield self.assertFailure(self.history("news", StreamPosition(1, published.epoch)),
                                           UnrecoverablePosition)
        self.assertEqual(failure.offset, 0)
        self.assertNotEqual(failure.epoch, published.epoch)


class PresenceContract:
    """The L{IPresenceManager} contract. Mix into a trial C{TestCase} and define L{makePresence}."""

    clock: Clock
    presence: IPresenceManager

    def makePresence(self, clock: Clock) -> Union[IPresenceManager, Deferred[IPresenceManager]]:
        raise NotImplementedError()

    @inlineCallbacks
    def setUp(self) -> _Gen:
        self.clock = Clock()
        self.presence = yield maybeDeferred(self.makePresence, self.clock)

    @staticmethod
    def info(user: str, client: str, chanInfo: Optional[bytes] = None) -> ClientInfo:
        """A client's info (an anonymous user's is "")."""
        return ClientInfo(user, client, b'{"name":"%s"}' % client.encode(), chanInfo)

    def test_provides(self) -> None:
        self.assertTrue(verifyObject(IPresenceManager, self.presence))

    @inlineCallbacks
    def test_empty(self) -> _Gen:
        self.assertEqual((yield self.presence.presence("news")), {})
        self.assertEqual((yield self.presence.stats("news")), {"num_clients": 0, "num_users": 0})

    @inlineCallbacks
    def test_addPresenceStats(self) -> _Gen:
        """
        Presence maps client ids to their info; stats count entries and distinct users (anonymous once).
        """
        entries = {
            "c1": self.info("u1", "c1"),
            "c2": self.info("u1", "c2"),
            "c3": self.info("", "c3"),
            "c4": self.info("", "c4", b"{}"),
            "c5": self.info("u2", "c5"),
        }
        for clientID, info in entries.items():
            self.assertIsNone((yield self.presence.add("news", clientID, info)))
        self.assertEqual((yield self.presence.presence("news")), entries)
        self.assertEqual((yield self.presence.stats("news")), {"num_clients": 5, "num_users": 3})

    @inlineCallbacks
    def test_anonymousCountsOnce(self) -> _Gen:
        """
        Anonymous clients (user "") are one user.
        """
        yield self.presence.add("news", "c1", self.info("", "c1"))
        yield self.presence.add("news", "c2", self.info("", "c2"))
        self.assertEqual((yield self.presence.stats("news")), {"num_clients": 2, "num_users": 1})
        yield self.presence.add("news", "c3", self.info("", "c3", b"[]"))
        self.assertEqual((yield self.presence.stats("news")), {"num_clients": 3, "num_users": 1})

    @inlineCallbacks
    def test_addAgainReplaces(self) -> _Gen:
        """
        Adding a present client again refreshes it (with its new info), it does not count twice.
        """
        yield self.presence.add("news", "c1", self.info("u1", "c1"))
        newer = self.info("u1", "c1", b'{"v":2}')
        yield self.presence.add("news", "c1", newer)
        self.assertEqual((yield self.presence.presence("news")), {"c1": newer})
        self.assertEqual((yield self.presence.stats("news")), {"num_clients": 1, "num_users": 1})

    @inlineCallbacks
    def test_remove(self) -> _Gen:
        yield self.presence.add("news", "c1", self.info("u1", "c1"))
        yield self.presence.add("news", "c2", self.info("u1", "c2"))
        yield self.presence.add("news", "c3", self.info("u2", "c3"))
        self.assertIsNone((yield self.presence.remove("news", "c1")))
        self.assertEqual((yield self.presence.stats("news")), {"num_clients": 2, "num_users": 2})
        yield self.presence.remove("news", "c3")
        self.assertEqual((yield self.presence.presence("news")), {"c2": self.info("u1", "c2")})
        self.assertEqual((yield self.presence.stats("news")), {"num_clients": 1, "num_users": 1})
        yield self.presence.remove("news", "c2")
        self.assertEqual((yield self.presence.presence("news")), {})
        self.assertEqual((yield self.presence.stats("news")), {"num_clients": 0, "num_users": 0})

    @inlineCallbacks
    def test_removeUnknown(self) -> _Gen:
        yield self.presence.add("news", "c1", self.info("u1", "c1"))
        self.assertIsNone((yield self.presence.remove("news", "c2")))
        self.assertIsNone((yield self.presence.remove("other", "c1")))
        self.assertEqual((yield self.presence.presence("news")), {"c1": self.info("u1", "c1")})

    @inlineCallbacks
    def test_channelsIndependent(self) -> _Gen:
        yield self.presence.add("a", "c1", self.info("u1", "c1"))
        yield self.presence.add("b", "c1", self.info("u1", "c1"))
        yield self.presence.add("b", "c2", self.info("u2", "c2"))
        yield self.presence.remove("a", "c1")
        self.assertEqual((yield self.presence.presence("a")), {})
        self.assertEqual((yield self.presence.stats("b")), {"num_clients": 2, "num_users": 2})

    @inlineCallbacks
    def test_resultsAreCopies(self) -> _Gen:
        """
        Changing a presence result does not change the stored entries (the infos themselves are frozen).
        """
        yield self.presence.add("news", "c1", self.info("u1", "c1"))
        result = yield self.presence.presence("news")
        result["c9"] = self.info("u9", "c9")
        del result["c1"]
        self.assertEqual((yield self.presence.presence("news")), {"c1": self.info("u1", "c1")})


class MemoryBrokerContractTests(BrokerContract, TestCase):
    def makeBroker(self, clock: Clock) -> IBroker:
        return MemoryBroker(clock)


class MemoryPresenceContractTests(PresenceContract, TestCase):
    def makePresence(self, clock: Clock) -> IPresenceManager:
        return MemoryPresence()
