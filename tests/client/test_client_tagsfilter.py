"""
Tests for publication tags filters on a client's subscriptions (L{httpstream.client.subfilter}, the hub's groups,
L{httpstream.policy.recovery}): in memory, on a fake clock, on both codecs.
"""

from __future__ import annotations

from typing import Any

import orjson
from twisted.trial.unittest import SynchronousTestCase

from httpstream.client.client import Client
from httpstream.node.node import Node
from httpstream.node.frames import PublicationFrames
from httpstream.testing import FakeTransport
from httpstream.values import Publication
from tests.clienthelpers import ChannelHelpers

ENG = {"key": "team", "cmp": "eq", "val": "eng"}
OPEN = {"allow_anonymous_connect_without_token": True, "allow_subscribe_for_client": True,
        "allow_subscribe_for_anonymous": True}
FILTERED = {**OPEN, "allow_tags_filter": True}
HISTORY = {"history_size": 10, "history_ttl": "300s", "allow_recovery": True}


class TagsFilterTestsMixin(ChannelHelpers):
    def subscriber(self, node: Node, **request: Any) -> tuple[Client, FakeTransport, dict[str, Any]]:
        client, transport = self.client(node)
        result = self.ok(client, transport, "subscribe", {"channel": "news", "tf": ENG, **request})
        return client, transport, result

    def received(self, transport: FakeTransport) -> list[Any]:
        return [orjson.loads(push["pub"]["data"])["n"] for push in self.pushes(transport, "pub", "news")]

    def publishAll(self, node: Node, teams: list[str]) -> None:
        for n, team in enumerate(teams, 1):
            self.publish(node, "news", b'{"n":%d}' % n, tags={"team": team} if team else None)

    def test_onlyMatching(self) -> None:
        """Only the publications whose tags match arrive, in order, their tags with them; others get all."""
        node = self.node(**FILTERED)
        _, filtered, _ = self.subscriber(node)
        other, everything = self.client(node)
        self.ok(other, everything, "subscribe", {"channel": "news"})
        self.publishAll(node, ["eng", "sales", "", "eng", "engineering"])
        self.assertEqual(self.received(filtered), [1, 4])
        self.assertEqual(self.received(everything), [1, 2, 3, 4, 5])
        self.assertEqual(self.pushes(filtered, "pub")[0]["pub"]["tags"], {"team": "eng"})
        self.assertIn(b'httpstream_node_tags_filter_dropped_publications_total{channel_namespace=""} 3.0',
                      node.metrics.exposition())

    def test_refused(self) -> None:
        """
        107 bad request, the connection open and no subscription left: a malformed filter, one over the limits, a
        filter in a namespace without allow_tags_filter, a filter with delta.
        """
        deep: dict[str, Any] = ENG
        for _ in range(20):
            deep = {"op": "not", "nodes": [deep]}
        cases: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
            ("empty", FILTERED, {"tf": {}}),
            ("no val", FILTERED, {"tf": {"key": "team", "cmp": "eq"}}),
            ("unknown cmp", FILTERED, {"tf": {"key": "team", "cmp": "like", "val": "e%"}}),
            ("empty and", FILTERED, {"tf": {"op": "and"}}),
            ("too deep", FILTERED, {"tf": deep}),
            ("not allowed", OPEN, {"tf": ENG}),
            ("with delta", {**FILTERED, "allowed_delta_types": ["fossil"]}, {"tf": ENG, "delta": "fossil"}),
        ]
        for name, settings, request in cases:
            node = self.node(**settings)
            client, transport = self.client(node)
            code = self.errorCode(client, transport, "subscribe", {"channel": "news", **request})
            self.assertEqual(code, 107, name)
            self.assertIsNone(transport.closed, name)
            self.assertEqual(client.channels, set(), name)
            self.assertEqual(node.hub.channels(), [], name)
            # The same client may subscribe again, with a good filter.
            if "allow_tags_filter" in settings:
                self.ok(client, transport, "subscribe", {"channel": "news", "tf": ENG})

    def test_permissionFirst(self) -> None:
        """A subscribe the channel does not allow is 103 whatever its filter (checked after, as upstream)."""
        node = self.node(allow_anonymous_connect_without_token=True, allow_tags_filter=True)
        client, transport = self.client(node)
        self.assertEqual(self.errorCode(client, transport, "subscribe", {"channel": "news", "tf": {}}), 103)

    def test_namespaceOption(self) -> None:
        """allow_tags_filter is a channel option: per namespace."""
        subscribe = {"allow_subscribe_for_client": True, "allow_subscribe_for_anonymous": True}
        node = self.node(**OPEN, namespaces=[{"name": "tagged", **subscribe, "allow_tags_filter": True},
                                             {"name": "plain", **subscribe}])
        client, transport = self.client(node)
        self.ok(client, transport, "subscribe", {"channel": "tagged:x", "tf": ENG})
        self.assertEqual(self.errorCode(client, transport, "subscribe", {"channel": "plain:x", "tf": ENG}), 107)

    def test_positionedMovesOn(self) -> None:
        """A positioned subscription passes the excluded publications' offsets: no gap, no 2500."""
        node = self.node(**FILTERED, **HISTORY)
        _, transport, _ = self.subscriber(node, recoverable=True)
        self.publishAll(node, ["sales", "sales", "eng", "sales", "eng"])
        self.assertEqual([push["pub"]["offset"] for push in self.pushes(transport, "pub")], [3, 5])
        self.assertEqual(self.pushes(transport, "unsubscribe"), [])
        self.tick(120)  # the position checks find it at the top
        self.assertEqual(self.pushes(transport, "unsubscribe"), [])

    def test_recovery(self) -> None:
        """A recovering subscriber gets only the missed publications its filter lets through."""
        node = self.node(**FILTERED, **HISTORY)
        self.publishAll(node, ["eng", "sales", "eng", "", "sales"])
        epoch = self.successResultOf(node.broker.history("news")).epoch
        _, transport, result = self.subscriber(node, recoverable=True, recover=True, offset=1, epoch=epoch)
        self.assertEqual([p["offset"] for p in result["publications"]], [3])
        self.assertTrue(result["recovered"])
        self.publishAll(node, ["eng"])  # offset 6 follows 5: live again
        self.assertEqual([push["pub"]["offset"] for push in self.pushes(transport, "pub")], [6])

    def test_cacheRecovery(self) -> None:
        """In cache recovery mode, the latest publication the filter lets through."""
        node = self.node(**FILTERED, **HISTORY, force_recovery_mode="cache")
        self.publishAll(node, ["eng", "sales", "eng", "", "sales"])
        epoch = self.successResultOf(node.broker.history("news")).epoch
        _, _, result = self.subscriber(node, recoverable=True, recover=True, offset=1, epoch=epoch)
        self.assertEqual([p["offset"] for p in result["publications"]], [3])
        self.assertTrue(result["recovered"])

    def test_whileSubscribing(self) -> None:
        """
        Publications arriving before the subscribe reply wait for it in order, the excluded ones too: the position
        moves past them once the reply is out.
        """
        node = self.node(**FILTERED, **HISTORY)
        self.publishAll(node, ["eng"])
        client, transport, _ = self.subscriber(node, recoverable=True)
        sub = client.subs["news"]
        sub.subscribing = True  # as between the hub's add and the reply
        for offset, team in ((2, "sales"), (3, "eng")):
            frames = PublicationFrames("news", Publication(b'{"n":%d}' % offset, offset=offset, tags={"team": team}),
                                       None)
            (client.deliverPublication if team == "eng" else client.passPublication)(frames)
        self.assertEqual(self.pushes(transport, "pub"), [])
        client.subs.joined("news")
        self.clock.advance(0)
        self.assertEqual(self.received(transport), [3])
        self.assertEqual((sub.offset, self.pushes(transport, "unsubscribe")), (3, []))

    def test_unsubscribeLeavesGroup(self) -> None:
        node = self.node(**FILTERED)
        client, transport, _ = self.subscriber(node)
        self.ok(client, transport, "unsubscribe", {"channel": "news"})
        self.assertEqual(node.hub.channels(), [])
        self.ok(client, transport, "subscribe", {"channel": "news", "tf": {"key": "team", "cmp": "neq", "val": "eng"}})
        self.publishAll(node, ["eng", "sales"])
        self.assertEqual(self.received(transport), [2])


class JSONTagsFilterTests(TagsFilterTestsMixin, SynchronousTestCase):
    protocol = "json"


class ProtobufTagsFilterTests(TagsFilterTestsMixin, SynchronousTestCase):
    protocol = "protobuf"
