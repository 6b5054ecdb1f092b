"""
Tests for the tags filter side of L{httpstream.node.hub}: subscribers grouped by filter, one evaluation per
distinct filter and publication, those without a filter untouched.
"""

from __future__ import annotations

from typing import Any, Mapping

from twisted.trial.unittest import SynchronousTestCase

from httpstream.node.frames import PublicationFrames
from httpstream.node.hub import Hub
from httpstream.protocol.tagsfilter import TagsFilter, parseFilter
from httpstream.testing import FakeClient
from httpstream.values import Publication

ENG = {"key": "team", "cmp": "eq", "val": "eng"}
SALES = {"key": "team", "cmp": "eq", "val": "sales"}


def frames(channel: str = "news", **tags: str) -> PublicationFrames:
    return PublicationFrames(channel, Publication(b"{}", tags=tags), None)


class FilterGroupTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.evaluations: list[tuple[TagsFilter, Mapping[str, str]]] = []
        original = TagsFilter.matches

        def spy(tagsFilter: TagsFilter, tags: Mapping[str, str]) -> bool:
            self.evaluations.append((tagsFilter, tags))
            return original(tagsFilter, tags)

        self.patch(TagsFilter, "matches", spy)

    def test_onlyMatching(self) -> None:
        """Subscribers without a filter get everything; with one, only what matches (the rest is passed)."""
        hub = Hub()
        plain, eng, sales = FakeClient(), FakeClient(), FakeClient()
        hub.add("news", plain)
        hub.add("news", eng, parseFilter(ENG))
        hub.add("news", sales, parseFilter(SALES))
        self.assertEqual(hub.deliverPublication("news", frames(team="eng")), 1)
        self.assertEqual(hub.deliverPublication("news", frames()), 2)
        self.assertEqual((len(plain.delivered), len(eng.delivered), len(sales.delivered)), (2, 1, 0))
        self.assertEqual((len(plain.passed), len(eng.passed), len(sales.passed)), (0, 1, 2))

    def test_onceperDistinctFilter(self) -> None:
        """
        Equal filters (in any order of their children and values) share one evaluation per publication, however
        many subscribers have them; subscribers without a filter cost none.
        """
        hub = Hub()
        for _ in range(5):
            hub.add("news", FakeClient())
            hub.add("news", FakeClient(), parseFilter({"op": "or", "nodes": [ENG, SALES]}))
            hub.add("news", FakeClient(), parseFilter({"op": "or", "nodes": [SALES, ENG, SALES]}))
            hub.add("news", FakeClient(), parseFilter({"key": "team", "cmp": "in", "vals": ["eng", "ops"]}))
        filtered = hub.filterGroups("news")
        assert filtered is not None
        self.assertEqual((len(filtered), filtered.numFilters()), (15, 2))
        self.assertEqual(hub.deliverPublication("news", frames(team="sales")), 5)
        self.assertEqual(len(self.evaluations), 2)
        hub.deliverPublication("other", frames("other", team="sales"))
        self.assertEqual(len(self.evaluations), 2)

    def test_noFilterNoEvaluation(self) -> None:
        hub = Hub()
        clients = [FakeClient() for _ in range(3)]
        for client in clients:
            hub.add("news", client)
        self.assertEqual(hub.deliverPublication("news", frames(team="eng")), 0)
        self.assertEqual(self.evaluations, [])
        self.assertIsNone(hub.filterGroups("news"))
        self.assertEqual([len(c.delivered) for c in clients], [1, 1, 1])


class MembershipTests(SynchronousTestCase):
    def test_firstAndLast(self) -> None:
        """A filtered subscriber counts for the channel's first and last like any other."""
        hub = Hub()
        a, b = FakeClient(), FakeClient()
        self.assertTrue(hub.add("news", a, parseFilter(ENG)))
        self.assertFalse(hub.add("news", b))
        self.assertEqual(hub.numSubscriptions(), 2)
        self.assertEqual(set(hub.subscribers("news")), {a, b})
        self.assertEqual(hub.channels(), ["news"])
        self.assertFalse(hub.remove("news", b))
        self.assertTrue(hub.remove("news", a))
        self.assertEqual((hub.channels(), hub.numSubscriptions()), ([], 0))
        self.assertIsNone(hub.filterGroups("news"))

    def test_readd(self) -> None:
        """Added again with another filter (or none), a client is in one place only."""
        hub = Hub()
        a = FakeClient()
        hub.add("news", a, parseFilter(ENG))
        hub.add("news", a, parseFilter(SALES))
        groups = hub.filterGroups("news")
        assert groups is not None
        self.assertEqual((len(groups), groups.numFilters()), (1, 1))
        hub.add("news", a)
        self.assertIsNone(hub.filterGroups("news"))
        self.assertEqual(hub.subscribers("news"), [a])
        self.assertTrue(hub.remove("news", a))

    def test_removeDuringDelivery(self) -> None:
        """A delivery that ends subscriptions (a slow client cut off) does not upset the fan-out."""
        hub = Hub()
        clients = [FakeClient() for _ in range(3)]

        def leaving(client: FakeClient) -> Any:
            def deliver(frames: Any) -> None:
                for other in clients:
                    hub.remove("news", other)
            return deliver

        for client in clients:
            hub.add("news", client, parseFilter(ENG))
        clients[0].deliverPublication = leaving(clients[0])  # type: ignore[method-assign]
        hub.deliverPublication("news", frames(team="eng"))
        self.assertEqual(hub.channels(), [])
