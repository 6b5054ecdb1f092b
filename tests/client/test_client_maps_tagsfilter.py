"""
Tags filters on map subscriptions (L{httpstream.client.mapflow}): only where the namespace allows them, not with
delta; applied to state pages, stream pages, the catch-up of the LIVE reply and live updates (removals by the removed
key's tags), fixed by the flow's first request; positions move past what the filter drops. In memory, on a fake
clock, on both codecs.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from tests.client.test_client_maps import PAGES, MapTestsMixin
from tests.clienthelpers import ChannelHelpers

ENG = {"key": "team", "cmp": "eq", "val": "eng"}
SALES = {"key": "team", "cmp": "eq", "val": "sales"}
NAMESPACES = [
    {"name": "tagged", "subscription_type": "map", "allow_tags_filter": True,
     "map": {"mode": "persistent", "stream_size": 50, **PAGES}},
    {"name": "etagged", "subscription_type": "map", "allow_tags_filter": True,
     "map": {"mode": "ephemeral", "key_ttl": "10s", **PAGES}},
    {"name": "untagged", "subscription_type": "map", "map": {"mode": "persistent"}},
]


class MapTagsFilterMixin(ChannelHelpers):
    # The map helpers, not the map tests.
    sub, sync, live, remove = MapTestsMixin.sub, MapTestsMixin.sync, MapTestsMixin.live, MapTestsMixin.remove

    def mapNode(self, **settings: Any) -> Any:
        return self.node(client_insecure=True, allow_anonymous_connect_without_token=True,
                         namespaces=NAMESPACES, **settings)

    def tagged(self, node: Any, channel: str, key: str, team: str, data: bytes = b'{"v":1}') -> None:
        self.successResultOf(node.maps.publish(channel, key, data, tags={"team": team}))

    def filteredSync(self, client: Any, transport: Any, channel: str, tf: dict[str, Any], between: Any = None,
                     limit: int = 1) -> tuple[dict[str, Any], dict[str, bytes]]:
        """L{sync} with C{tf} on the first request only: the pages after it inherit it."""
        original = self.sub
        first = [True]

        def withFilter(c: Any, t: Any, request: dict[str, Any]) -> dict[str, Any]:
            if first[0]:
                request = {**request, "tf": tf}
                first[0] = False
            return original(c, t, request)

        self.sub = withFilter  # type: ignore[method-assign]
        try:
            return self.sync(client, transport, channel, limit=limit, between=between)
        finally:
            self.sub = original  # type: ignore[method-assign]

    def test_refusals(self) -> None:
        client, transport = self.client(self.mapNode())
        request = {"type": 1, "phase": 2, "tf": ENG}
        # The namespace does not allow filters; delta with a filter; a malformed filter: 107, the connection stays.
        self.assertEqual(self.errorCode(client, transport, "subscribe", {"channel": "untagged:a", **request}), 107)
        self.assertEqual(self.errorCode(client, transport, "subscribe",
                                        {"channel": "tagged:a", **request, "delta": "fossil"}), 107)
        self.assertEqual(self.errorCode(client, transport, "subscribe",
                                        {"channel": "tagged:a", "type": 1, "phase": 2, "tf": {"cmp": "eq"}}), 107)
        self.assertFalse(transport.closed)
        # And nothing was left half-way: a subscribe without a filter goes through.
        self.assertEqual(self.sync(client, transport, "tagged:a")[1], {})

    def test_statePagesStreamAndLive(self) -> None:
        node = self.mapNode()
        for i, team in enumerate(["eng", "sales", "eng", "sales", "eng"]):
            self.tagged(node, "tagged:a", f"k{i}", team)
        client, transport = self.client(node)

        def writes(step: int) -> None:
            if step == 0:
                # Written while paging: they come through the stream pages or the catch-up, filtered.
                for i in range(4):
                    self.tagged(node, "tagged:a", f"w{i}", "eng" if i % 2 else "sales")
                self.remove(node, "tagged:a", "k0")  # an eng key: its removal passes the filter
                self.remove(node, "tagged:a", "k1")  # a sales key: its removal does not

        result, state = self.filteredSync(client, transport, "tagged:a", ENG, between=writes)
        self.assertEqual(sorted(state), ["k2", "k4", "w1", "w3"])
        self.assertEqual(result["offset"], 11)  # the unfiltered top
        # Live: one evaluation per filter; the subscription's position moves past what it does not get.
        self.tagged(node, "tagged:a", "s9", "sales")
        self.tagged(node, "tagged:a", "e9", "eng")
        self.remove(node, "tagged:a", "s9")
        self.remove(node, "tagged:a", "k2")
        pubs = self.live(transport, "tagged:a")
        self.assertEqual([(p["key"], p.get("removed", False), p["offset"]) for p in pubs],
                         [("e9", False, 13), ("k2", True, 15)])
        self.assertEqual(pubs[1]["tags"], {"team": "eng"})
        self.assertEqual(client.subs["tagged:a"].offset, 15)

    def test_laterPagesInheritTheFilter(self) -> None:
        node = self.mapNode()
        for i, team in enumerate(["eng", "sales", "eng", "sales"]):
            self.tagged(node, "tagged:a", f"k{i}", team)
        client, transport = self.client(node)
        first = self.sub(client, transport, {"channel": "tagged:a", "type": 1, "phase": 2, "limit": 2,
                                             "tf": ENG})["subscribe"]
        self.assertEqual([e["key"] for e in first["state"]], ["k0"])
        # A page asking for another filter (or none) gets the first one's.
        last = self.sub(client, transport, {"channel": "tagged:a", "type": 1, "phase": 2, "limit": 2,
                                            "cursor": first["cursor"], "offset": first["offset"],
                                            "epoch": first["epoch"], "tf": SALES})["subscribe"]
        self.assertEqual([e["key"] for e in last["state"]], ["k2"])

    def test_recoveryFiltered(self) -> None:
        node = self.mapNode()
        client, transport = self.client(node)
        result, _ = self.filteredSync(client, transport, "tagged:a", SALES)
        self.ok(client, transport, "unsubscribe", {"channel": "tagged:a"})
        self.tagged(node, "tagged:a", "x", "eng")
        self.tagged(node, "tagged:a", "y", "sales")
        again = self.sub(client, transport, {"channel": "tagged:a", "type": 1, "phase": 1, "recover": True,
                                             "offset": result.get("offset", 0), "epoch": result["epoch"],
                                             "tf": SALES})["subscribe"]
        self.assertTrue(again["recovered"])
        self.assertEqual([p["key"] for p in again["publications"]], ["y"])
        self.assertEqual(again["offset"], 2)

    def test_keyExpiryByTags(self) -> None:
        node = self.mapNode()
        client, transport = self.client(node)
        self.filteredSync(client, transport, "etagged:a", ENG)
        self.tagged(node, "etagged:a", "e", "eng")
        self.tagged(node, "etagged:a", "s", "sales")
        self.clock.advance(11)
        pubs = self.live(transport, "etagged:a")
        self.assertEqual([(p["key"], p.get("removed", False)) for p in pubs], [("e", False), ("e", True)])

    def test_oneEvaluationPerFilter(self) -> None:
        node = self.mapNode()
        clients = [self.client(node) for _ in range(3)]
        for (client, transport), tf in zip(clients, [ENG, ENG, SALES]):
            self.filteredSync(client, transport, "tagged:a", tf)
        groups = node.hub.filterGroups("tagged:a")
        assert groups is not None
        self.assertEqual((len(groups), groups.numFilters()), (3, 2))
        self.tagged(node, "tagged:a", "k", "eng")
        self.assertEqual([len(self.live(t, "tagged:a")) for _, t in clients], [1, 1, 0])


class JSONMapTagsFilterTests(MapTagsFilterMixin, SynchronousTestCase):
    protocol = "json"


class ProtobufMapTagsFilterTests(MapTagsFilterMixin, SynchronousTestCase):
    protocol = "protobuf"
