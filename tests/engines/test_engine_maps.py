"""
The memory map broker (L{httpstream.engines.memorymap.MemoryMapBroker}) keeps what L{IMapBroker} promises: state
pages in key order, a change stream with offsets, 112 for positions it cannot serve, key TTLs with removals.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from httpstream.engines import UnrecoverablePosition
from httpstream.engines.maps import MapSettings
from httpstream.engines.memorymap import MemoryMapBroker
from httpstream.engines.maps import IMapBroker
from httpstream.values import Publication, StreamPosition

POSITIONED = MapSettings(positioned=True, streamSize=5, streamTTL=60)


def result(d: Any) -> Any:
    out: list[Any] = []
    d.addBoth(out.append)
    return out[0]


class MemoryMapBrokerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.broker = MemoryMapBroker(self.clock)
        self.delivered: list[tuple[str, Publication, str]] = []
        self.broker.setHandler(lambda channel, pub, epoch: self.delivered.append((channel, pub, epoch)))
        self.broker.subscribe("m")

    def put(self, key: str, data: bytes = b"1", settings: MapSettings = POSITIONED, **kw: Any) -> Any:
        return result(self.broker.publish("m", key, Publication(data, tags=kw.pop("tags", None)), settings, **kw))

    def test_provides(self) -> None:
        self.assertTrue(verifyObject(IMapBroker, self.broker))

    def test_pagesInKeyOrder(self) -> None:
        for key in ["c", "a", "e", "b", "d"]:
            self.put(key)
        first = result(self.broker.readState("m", POSITIONED, limit=2))
        self.assertEqual([p.key for p in first.publications], ["a", "b"])
        self.assertEqual(first.cursor, "b")
        self.assertEqual(first.position.offset, 5)
        second = result(self.broker.readState("m", POSITIONED, cursor=first.cursor, limit=2))
        self.assertEqual([p.key for p in second.publications], ["c", "d"])
        last = result(self.broker.readState("m", POSITIONED, cursor=second.cursor, limit=2))
        self.assertEqual([p.key for p in last.publications], ["e"])
        self.assertEqual(last.cursor, "")
        everything = result(self.broker.readState("m", POSITIONED))
        self.assertEqual([p.offset for p in everything.publications], [2, 4, 1, 5, 3])

    def test_writesDeliveredWithOffsets(self) -> None:
        self.put("a", b'"x"')
        self.assertEqual(result(self.broker.remove("m", "a", POSITIONED)).position.offset, 2)
        self.assertEqual([(p.key, p.offset, p.removed) for _, p, _ in self.delivered],
                         [("a", 1, False), ("a", 2, True)])
        self.broker.unsubscribe("m")
        self.put("b")
        self.assertEqual(len(self.delivered), 2)

    def test_removalCarriesTheKeysTags(self) -> None:
        self.put("a", tags={"team": "eng"})
        self.broker.remove("m", "a", POSITIONED)
        self.assertEqual(dict(self.delivered[-1][1].tags), {"team": "eng"})

    def test_removeUnknownSuppressed(self) -> None:
        update = result(self.broker.remove("m", "nope", POSITIONED))
        self.assertTrue(update.suppressed)
        self.assertEqual(update.suppressReason, "key_not_found")

    def test_keyModes(self) -> None:
        self.assertTrue(self.put("a", keyMode="if_exists").suppressed)
        self.assertFalse(self.put("a", keyMode="if_new").suppressed)
        again = self.put("a", keyMode="if_new")
        self.assertEqual((again.suppressed, again.suppressReason), (True, "key_exists"))
        self.assertEqual(again.position.offset, 1)

    def test_streamSince(self) -> None:
        for key in "abc":
            self.put(key)
        top = result(self.broker.readStream("m", POSITIONED, limit=0)).position
        stream = result(self.broker.readStream("m", POSITIONED, StreamPosition(1, top.epoch)))
        self.assertEqual([p.key for p in stream.publications], ["b", "c"])
        self.assertEqual(result(self.broker.readStream("m", POSITIONED, StreamPosition(1, top.epoch), 1))
                         .publications[0].key, "b")

    def test_trimmedStreamUnrecoverable(self) -> None:
        for i in range(8):
            self.put(f"k{i}")
        epoch = result(self.broker.readStream("m", POSITIONED, limit=0)).position.epoch
        failure = result(self.broker.readStream("m", POSITIONED, StreamPosition(1, epoch)))
        self.assertIsInstance(failure.value, UnrecoverablePosition)
        # The oldest retained write is 4: from 3 on is fine.
        self.assertEqual(len(result(self.broker.readStream("m", POSITIONED, StreamPosition(3, epoch))).publications), 5)

    def test_otherEpochUnrecoverable(self) -> None:
        self.put("a")
        failure = result(self.broker.readStream("m", POSITIONED, StreamPosition(0, "nope")))
        self.assertIsInstance(failure.value, UnrecoverablePosition)
        failure = result(self.broker.readState("m", POSITIONED, revision=StreamPosition(1, "nope")))
        self.assertIsInstance(failure.value, UnrecoverablePosition)

    def test_streamTTL(self) -> None:
        self.put("a")
        epoch = result(self.broker.readStream("m", POSITIONED, limit=0)).position.epoch
        self.clock.advance(61)
        failure = result(self.broker.readStream("m", POSITIONED, StreamPosition(0, epoch)))
        self.assertIsInstance(failure.value, UnrecoverablePosition)
        # At the top there is nothing to miss.
        self.assertEqual(result(self.broker.readStream("m", POSITIONED, StreamPosition(1, epoch))).publications, [])

    def test_keyTTL(self) -> None:
        ttl = MapSettings(positioned=False, keyTTL=10)
        self.put("a", settings=ttl)
        self.clock.advance(5)
        self.put("b", settings=ttl)
        self.clock.advance(6)
        self.assertEqual([p.key for p in result(self.broker.readState("m", ttl)).publications], ["b"])
        self.assertEqual((self.delivered[-1][1].key, self.delivered[-1][1].removed), ("a", True))
        # A refresh by if_new moves the deadline on without a write.
        self.put("b", settings=ttl, keyMode="if_new")
        self.clock.advance(8)
        self.assertEqual(result(self.broker.stats("m")), 1)
        self.clock.advance(10)
        self.assertEqual(result(self.broker.stats("m")), 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_clearNewEpoch(self) -> None:
        self.put("a")
        before = result(self.broker.readStream("m", POSITIONED, limit=0)).position
        self.broker.clear("m")
        after = result(self.broker.readState("m", POSITIONED))
        self.assertEqual(after.publications, [])
        self.assertNotEqual(after.position.epoch, before.epoch)
