"""
What the memory engine does beyond the engine contract (tests/engines/test_engine_contract.py runs that on it too):
synchronous delivery, its clock, its defaults, exact expiry instants, and freeing streams nobody touches again.
"""

from __future__ import annotations

import random
import string
import time

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from httpstream.engines import DEFAULT_HISTORY_META_TTL, HistoryResult
from httpstream.engines.memory import MemoryBroker, MemoryPresence
from httpstream.values import ClientInfo, Publication, StreamPosition

PUB = Publication(b"1")


class MemoryBrokerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.broker = MemoryBroker(self.clock)

    def history(self, channel: str = "news", **kwargs: object) -> HistoryResult:
        kwargs.setdefault("limit", -1)
        return self.successResultOf(self.broker.history(channel, **kwargs))  # type: ignore[arg-type]

    def test_deliveryBeforePublishFires(self) -> None:
        """
        The handler has the publication (with its offset) when publish returns, its Deferred already fired: a
        publisher gets its own publication before its publish reply.
        """
        events: list[object] = []
        self.broker.setHandler(lambda channel, publication, epoch: events.append((channel, publication)))
        self.broker.subscribe("news")
        d = self.broker.publish("news", PUB, historySize=5, historyTTL=10)
        self.assertEqual(events, [("news", Publication(b"1", offset=1))])
        d.addCallback(events.append)
        self.assertEqual(events[1], StreamPosition(1, self.history().epoch))
        self.broker.publish("news", PUB).addCallback(events.append)
        self.assertEqual(events[2:], [("news", PUB), None])

    def test_everyDeferredFired(self) -> None:
        for d in [
            self.broker.subscribe("news"),
            self.broker.publish("news", PUB, 1, 1),
            self.broker.history("news"),
            self.broker.removeHistory("news"),
            self.broker.unsubscribe("news"),
        ]:
            self.successResultOf(d)
        self.failureResultOf(self.broker.history("news", since=StreamPosition(0), reverse=True))

    def test_epochIsFourLetters(self) -> None:
        epoch = self.history().epoch
        self.assertEqual(len(epoch), 4)
        self.assertTrue(set(epoch) <= set(string.ascii_letters))

    def test_epochsFromRng(self) -> None:
        """
        Epochs come from the given random source, so a seeded one repeats them.
        """
        epochs = [
            self.successResultOf(MemoryBroker(Clock(), rng=random.Random(7)).history("news")).epoch for _ in range(2)
        ]
        self.assertEqual(epochs[0], epochs[1])

    def test_ttlExactInstant(self) -> None:
        """
        Items go when the clock reaches the last publish + TTL, not before.
        """
        self.broker.publish("news", PUB, historySize=5, historyTTL=10)
        self.clock.advance(9.999)
        self.assertEqual(len(self.history().publications), 1)
        self.clock.advance(0.001)
        self.assertEqual(self.history().publications, [])

    def test_defaultMetaTTL(self) -> None:
        """
        Without a meta TTL (0) a stream lives 30 days after its last use.
        """
        self.assertEqual(DEFAULT_HISTORY_META_TTL, 30 * 24 * 3600)
        epoch = self.successResultOf(self.broker.publish("news", PUB, historySize=5, historyTTL=10)).epoch
        self.clock.advance(DEFAULT_HISTORY_META_TTL - 1)
        self.assertEqual((self.history().offset, self.history().epoch), (1, epoch))
        self.clock.advance(DEFAULT_HISTORY_META_TTL - 1)
        self.assertEqual(self.history().offset, 1)
        self.clock.advance(DEFAULT_HISTORY_META_TTL)
        result = self.history()
        self.assertEqual(result.offset, 0)
        self.assertNotEqual(result.epoch, epoch)

    def test_configuredMetaTTL(self) -> None:
        """
        The broker's own meta TTL applies where a call passes 0; a call's own wins.
        """
        broker = MemoryBroker(self.clock, historyMetaTTL=100)
        broker.publish("a", PUB, historySize=5, historyTTL=10)
        broker.publish("b", PUB, historySize=5, historyTTL=10, historyMetaTTL=1000)
        self.clock.advance(101)
        self.assertEqual(self.successResultOf(broker.history("a")).offset, 0)
        self.assertEqual(self.successResultOf(broker.history("b")).offset, 1)

    def test_realTimeWithoutClock(self) -> None:
        """
        MemoryBroker() follows time.time.
        """
        now = [1000.0]
        self.patch(time, "time", lambda: now[0])
        broker = MemoryBroker()
        broker.publish("news", PUB, historySize=5, historyTTL=10)
        now[0] += 9
        self.assertEqual(len(self.successResultOf(broker.history("news", limit=-1)).publications), 1)
        now[0] += 1
        self.assertEqual(self.successResultOf(broker.history("news", limit=-1)).publications, [])

    def test_untouchedStreamsFreed(self) -> None:
        """
        Streams nobody reads or publishes to again are dropped after their meta TTL at the next operation on
        any channel, and the deadline heap does not grow with publications.
        """
        for n in range(100):
            for _ in range(5):
                self.broker.publish(f"ch{n}", PUB, historySize=5, historyTTL=1, historyMetaTTL=10)
        self.assertEqual(len(self.broker._streams), 100)
        self.assertLessEqual(len(self.broker._deadlines), 100)
        self.clock.advance(5)
        self.broker.removeHistory("elsewhere")
        self.assertTrue(all(not s.items for s in self.broker._streams.values()))
        self.clock.advance(6)
        self.broker.removeHistory("elsewhere")
        self.assertEqual(self.broker._streams, {})
        self.assertEqual(self.broker._deadlines, [])

    def test_unsubscribedNotDelivered(self) -> None:
        received: list[object] = []
        self.broker.setHandler(lambda channel, publication, epoch: received.append(channel))
        self.broker.publish("news", PUB, historySize=5, historyTTL=10)
        self.broker.subscribe("news")
        self.broker.unsubscribe("news")
        self.broker.publish("news", PUB)
        self.assertEqual(received, [])

    def test_noHandler(self) -> None:
        """
        Publishing before a handler is set stores history and delivers nothing.
        """
        self.broker.subscribe("news")
        self.assertEqual(self.successResultOf(self.broker.publish("news", PUB, 5, 10)).offset, 1)


class MemoryPresenceTests(SynchronousTestCase):
    def test_noExpiry(self) -> None:
        """
        The memory manager keeps entries until removed (no TTL, as Centrifugo's).
        """
        presence = MemoryPresence()
        presence.add("news", "c1", ClientInfo("u", "c1"))
        self.assertEqual(self.successResultOf(presence.stats("news")), {"num_clients": 1, "num_users": 1})

    def test_emptyChannelForgotten(self) -> None:
        presence = MemoryPresence()
        presence.add("news", "c1", ClientInfo("", "c1"))
        presence.remove("news", "c1")
        self.assertEqual(presence._channels, {})
