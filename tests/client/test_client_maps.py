"""
Map subscriptions of a client (L{httpstream.client.mapflow}, L{httpstream.client.mapwrite}): the STATE, STREAM and
LIVE phases, recovery, 112/113/103, abandoned flows, key TTL, map publish permissions, map presence; and the
property that a paged snapshot merged with its catch-up equals the map, whatever writes come between the pages.
In memory, on a fake clock, on both codecs.
"""

from __future__ import annotations

import base64
from typing import Any, Optional

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from httpstream.client.client import Client
from httpstream.engines.memorymap import MemoryMapBroker
from httpstream.node.node import Node
from httpstream.policy.channels import ChannelError
from httpstream.testing import FakeTransport
from tests.clienthelpers import ChannelHelpers
from tests.policy.test_proxy import Backend

PAGES = {"min_page_size": 1, "max_page_size": 2, "default_page_size": 2}
NAMESPACES = [
    {"name": "pos", "subscription_type": "map", "map": {"mode": "persistent", "stream_size": 50, **PAGES}},
    {"name": "eph", "subscription_type": "map", "map": {"mode": "ephemeral", "key_ttl": "10s", **PAGES}},
    {"name": "small", "subscription_type": "map", "map": {"mode": "persistent", "stream_size": 2}},
    {"name": "ck", "subscription_type": "map", "map": {"mode": "ephemeral", "key_ttl": "60s", "client_key": "client_id",
                                                        "allow_publish_for_subscriber": True}},
    {"name": "perm", "subscription_type": "map", "allow_subscribe_for_client": True, "allow_subscribe_for_anonymous": True,
     "map": {"mode": "persistent", "allow_publish_for_client": True}},
    {"name": "room", "subscription_type": "map", "map_clients_presence_channel_prefix": "who:",
     "map": {"mode": "ephemeral", "key_ttl": "60s"}},
    {"name": "who", "subscription_type": "map_clients", "map": {"mode": "ephemeral", "key_ttl": "60s"}},
    {"name": "chat"},
]


def merged(state: list[dict[str, Any]], publications: list[dict[str, Any]]) -> dict[str, bytes]:
    """What the SDK makes of a sync: the state entries, then the catch-up by key (last wins, removals delete)."""
    result = {entry["key"]: entry.get("data", b"") for entry in state}
    for pub in publications:
        if pub.get("removed"):
            result.pop(pub["key"], None)
        else:
            result[pub["key"]] = pub.get("data", b"")
    return result


class MapTestsMixin(ChannelHelpers):
    def mapNode(self, **settings: Any) -> Node:
        return self.node(client_insecure=True, allow_anonymous_connect_without_token=True,
                         namespaces=NAMESPACES, **settings)

    def put(self, node: Node, channel: str, key: str, data: bytes = b'{"v":1}') -> None:
        self.successResultOf(node.maps.publish(channel, key, data))

    def remove(self, node: Node, channel: str, key: str) -> None:
        self.successResultOf(node.maps.remove(channel, key))

    def sub(self, client: Client, transport: FakeTransport, request: dict[str, Any]) -> dict[str, Any]:
        reply = self.call(client, transport, "subscribe", request)
        assert reply is not None, transport.closed
        return reply

    def sync(self, client: Client, transport: FakeTransport, channel: str, limit: int = 2,
             between: Any = None, kind: int = 1) -> tuple[dict[str, Any], dict[str, bytes]]:
        """The SDK's map subscribe from scratch: pages, then stream pages, then LIVE; returns the LIVE result and
        the merged map. C{between(step)} runs between two commands (writes meanwhile)."""
        state: list[dict[str, Any]] = []
        publications: list[dict[str, Any]] = []
        request: dict[str, Any] = {"channel": channel, "type": kind, "phase": 2, "limit": limit, "flag": 1}
        step = 0
        while True:
            reply = self.sub(client, transport, request)
            self.assertNotIn("error", reply, reply)
            result = reply["subscribe"]
            self.assertEqual(result.get("type"), 1)  # every map type's result says 1
            state += result.get("state", [])
            publications += result.get("publications", [])
            phase = result.get("phase", 0)
            if phase == 0:
                return result, merged(state, publications)
            if between is not None:
                between(step)
            step += 1
            if phase == 2 and result.get("cursor"):
                request = {**request, "cursor": result["cursor"], "offset": result.get("offset", 0),
                           "epoch": result["epoch"]}
            else:
                # As the SDK: the reply's offset (a stream page's last write read, shown or filtered out).
                offset = result.get("offset", 0)
                request = {"channel": channel, "type": kind, "phase": 1, "limit": limit, "flag": 1,
                           "offset": offset, "epoch": result["epoch"]}

    def live(self, transport: FakeTransport, channel: str) -> list[dict[str, Any]]:
        self.clock.advance(0)
        return [push["pub"] for push in self.pushes(transport, "pub", channel)]

    # The phases

    def test_emptyMapOnePage(self) -> None:
        node = self.mapNode()
        client, transport = self.client(node)
        result, state = self.sync(client, transport, "pos:a")
        self.assertEqual(state, {})
        self.assertTrue(result["recoverable"])
        self.assertEqual(client.channels, {"pos:a"})

    def test_manyPagesFrozenPosition(self) -> None:
        node = self.mapNode()
        for key in "abcde":
            self.put(node, "pos:a", key)
        client, transport = self.client(node)
        first = self.sub(client, transport, {"channel": "pos:a", "type": 1, "phase": 2, "limit": 2})["subscribe"]
        self.assertEqual((first["phase"], first["cursor"], first["offset"]), (2, "b", 5))
        self.assertEqual([e["key"] for e in first["state"]], ["a", "b"])
        self.put(node, "pos:a", "c", b'{"v":2}')
        second = self.sub(client, transport, {"channel": "pos:a", "type": 1, "phase": 2, "limit": 2, "cursor": "b",
                                              "offset": 5, "epoch": first["epoch"]})["subscribe"]
        # The offset stays the first page's; c, written since, is left for the stream.
        self.assertEqual(second["offset"], 5)
        self.assertEqual([e["key"] for e in second["state"]], ["d"])
        last = self.sub(client, transport, {"channel": "pos:a", "type": 1, "phase": 2, "limit": 2, "cursor": "d",
                                            "offset": 5, "epoch": first["epoch"]})["subscribe"]
        self.assertEqual(last.get("phase", 0), 0)
        self.assertEqual([e["key"] for e in last["state"]], ["e"])
        self.assertEqual([(p["key"], p["offset"]) for p in last["publications"]], [("c", 6)])
        self.assertEqual(last["offset"], 6)

    def test_streamPhaseWhenFarBehind(self) -> None:
        node = self.mapNode()
        for key in "abc":
            self.put(node, "pos:a", key)

        def writes(step: int) -> None:
            if step == 0:
                for i in range(6):
                    self.put(node, "pos:a", f"w{i}", b'{"v":%d}' % i)
                self.remove(node, "pos:a", "a")

        client, transport = self.client(node)
        phases: list[int] = []
        original = self.sub

        def recording(c: Client, t: FakeTransport, request: dict[str, Any]) -> dict[str, Any]:
            reply = original(c, t, request)
            phases.append(reply["subscribe"].get("phase", 0))
            return reply

        self.sub = recording  # type: ignore[method-assign]
        _, state = self.sync(client, transport, "pos:a", between=writes)
        self.assertIn(1, phases)
        self.assertEqual(set(state), {"b", "c"} | {f"w{i}" for i in range(6)})

    def test_liveUpdatesAfterSubscribe(self) -> None:
        node = self.mapNode()
        client, transport = self.client(node)
        self.sync(client, transport, "pos:a")
        self.put(node, "pos:a", "k", b'{"x":1}')
        self.remove(node, "pos:a", "k")
        pubs = self.live(transport, "pos:a")
        self.assertEqual([(p["key"], p.get("removed", False)) for p in pubs], [("k", False), ("k", True)])
        self.assertNotIn("data", pubs[1])

    def test_recovery(self) -> None:
        node = self.mapNode()
        client, transport = self.client(node)
        result, _ = self.sync(client, transport, "pos:a")
        self.ok(client, transport, "unsubscribe", {"channel": "pos:a"})
        self.put(node, "pos:a", "x")
        self.put(node, "pos:a", "y")
        again = self.sub(client, transport, {"channel": "pos:a", "type": 1, "phase": 1, "recover": True,
                                             "offset": result.get("offset", 0), "epoch": result["epoch"]})["subscribe"]
        self.assertTrue(again["recovered"] and again["was_recovering"])
        self.assertEqual([p["key"] for p in again["publications"]], ["x", "y"])
        self.assertNotIn("state", again)

    def test_unrecoverable(self) -> None:
        node = self.mapNode()
        client, transport = self.client(node)
        result, _ = self.sync(client, transport, "small:a")
        self.ok(client, transport, "unsubscribe", {"channel": "small:a"})
        for i in range(5):
            self.put(node, "small:a", f"k{i}")
        reply = self.sub(client, transport, {"channel": "small:a", "type": 1, "phase": 1, "recover": True,
                                             "offset": result.get("offset", 0), "epoch": result["epoch"]})
        self.assertEqual(reply["error"]["code"], 112)
        self.assertEqual(client.channels, set())
        # Another epoch too.
        reply = self.sub(client, transport, {"channel": "small:a", "type": 1, "phase": 0, "recover": True,
                                             "offset": 1, "epoch": "nope"})
        self.assertEqual(reply["error"]["code"], 112)
        # From scratch is fine.
        self.assertEqual(len(self.sync(client, transport, "small:a")[1]), 5)

    def test_ephemeral(self) -> None:
        node = self.mapNode()
        self.put(node, "eph:a", "a")
        client, transport = self.client(node)
        result, state = self.sync(client, transport, "eph:a")
        self.assertNotIn("recoverable", result)
        self.assertEqual(list(state), ["a"])
        self.ok(client, transport, "unsubscribe", {"channel": "eph:a"})
        reply = self.sub(client, transport, {"channel": "eph:a", "type": 1, "phase": 1, "recover": True,
                                             "offset": 1, "epoch": result["epoch"]})
        self.assertEqual(reply["error"]["code"], 107)

    def test_keyTTL(self) -> None:
        node = self.mapNode()
        client, transport = self.client(node)
        self.sync(client, transport, "eph:a")
        self.put(node, "eph:a", "k")
        self.clock.advance(11)
        pubs = self.live(transport, "eph:a")
        self.assertEqual([(p["key"], p.get("removed", False)) for p in pubs], [("k", False), ("k", True)])

    # Refusals

    def test_typeMismatch(self) -> None:
        node = self.mapNode()
        client, transport = self.client(node)
        self.assertEqual(self.errorCode(client, transport, "subscribe", {"channel": "chat:x", "type": 1, "phase": 2}),
                         103)
        self.assertEqual(self.errorCode(client, transport, "subscribe", {"channel": "pos:x"}), 103)
        self.assertEqual(self.errorCode(client, transport, "subscribe", {"channel": "pos:x", "type": 2, "phase": 2}),
                         103)
        self.assertEqual(self.errorCode(client, transport, "subscribe", {"channel": "who:x", "type": 2, "phase": 2}), 0)

    def test_cursorWithoutFlow(self) -> None:
        client, transport = self.client(self.mapNode())
        self.assertEqual(self.errorCode(client, transport, "subscribe",
                                        {"channel": "pos:x", "type": 1, "phase": 2, "cursor": "b"}), 103)
        self.assertEqual(self.errorCode(client, transport, "subscribe",
                                        {"channel": "pos:x", "type": 1, "phase": 1, "offset": 1}), 103)

    def test_unsubscribeEndsFlow(self) -> None:
        node = self.mapNode()
        for key in "abc":
            self.put(node, "pos:a", key)
        client, transport = self.client(node)
        first = self.sub(client, transport, {"channel": "pos:a", "type": 1, "phase": 2, "limit": 2})["subscribe"]
        self.ok(client, transport, "unsubscribe", {"channel": "pos:a"})
        self.assertEqual(self.errorCode(client, transport, "subscribe", {
            "channel": "pos:a", "type": 1, "phase": 2, "cursor": first["cursor"], "offset": first["offset"],
            "epoch": first["epoch"]}), 103)

    def test_tagsFilterRefused(self) -> None:
        client, transport = self.client(self.mapNode())
        self.assertEqual(self.errorCode(client, transport, "subscribe", {
            "channel": "pos:x", "type": 1, "phase": 2, "tf": {"key": "a", "cmp": "eq", "val": "b"}}), 107)

    def test_alreadySubscribed(self) -> None:
        client, transport = self.client(self.mapNode())
        self.sync(client, transport, "pos:x")
        self.assertEqual(self.errorCode(client, transport, "subscribe", {"channel": "pos:x", "type": 1, "phase": 2}),
                         105)

    def test_abandonedFlow(self) -> None:
        node = self.mapNode()
        for key in "abc":
            self.put(node, "pos:a", key)
        client, transport = self.client(node)
        first = self.sub(client, transport, {"channel": "pos:a", "type": 1, "phase": 2, "limit": 2})["subscribe"]
        self.clock.advance(6)
        self.sub  # the next page comes too late
        self.assertEqual(self.errorCode(client, transport, "subscribe", {
            "channel": "pos:a", "type": 1, "phase": 2, "cursor": first["cursor"], "offset": first["offset"],
            "epoch": first["epoch"]}), 3008)

    def test_concurrentPages(self) -> None:
        # Commands run one after the other unless the client may run several at once.
        node = self.mapNode(client_concurrency=4)
        held: list[Deferred[Any]] = []
        memory = node.mapBroker
        assert isinstance(memory, MemoryMapBroker)
        readState = memory.readState

        def slow(*args: Any, **kwargs: Any) -> Deferred[Any]:
            d: Deferred[Any] = Deferred()
            inner = readState(*args, **kwargs)
            held.append(d)
            inner.addCallback(lambda result: held.append(result))
            return d

        self.put(node, "pos:a", "a")
        self.put(node, "pos:a", "b")
        self.put(node, "pos:a", "c")
        client, transport = self.client(node)
        first = self.sub(client, transport, {"channel": "pos:a", "type": 1, "phase": 2, "limit": 2})["subscribe"]
        memory.readState = slow  # type: ignore[method-assign]
        request = {"channel": "pos:a", "type": 1, "phase": 2, "cursor": first["cursor"], "offset": first["offset"],
                   "epoch": first["epoch"]}
        self.assertIsNone(self.call(client, transport, "subscribe", request))
        self.assertEqual(self.errorCode(client, transport, "subscribe", request), 113)
        deferred, result = held
        deferred.callback(result)
        self.clock.advance(0)
        self.assertEqual(client.channels, {"pos:a"})

    # Map publish from clients

    def test_mapPublishAndRemove(self) -> None:
        node = self.mapNode()
        client, transport = self.client(node)
        self.sync(client, transport, "pos:a")
        self.assertEqual(self.ok(client, transport, "publish",
                                 {"channel": "pos:a", "type": 1, "key": "k", "data": b'{"a":1}'}), {})
        self.assertEqual(self.ok(client, transport, "publish",
                                 {"channel": "pos:a", "type": 1, "key": "k", "removed": True}), {})
        pubs = self.live(transport, "pos:a")
        self.assertEqual([(p["key"], p.get("removed", False)) for p in pubs], [("k", False), ("k", True)])
        self.assertEqual(pubs[0]["info"]["client"], client.clientID)

    def test_mapPublishPermissions(self) -> None:
        node = self.node(namespaces=NAMESPACES, allow_anonymous_connect_without_token=True)
        client, transport = self.client(node)
        publish = {"type": 1, "key": "k", "data": b"{}"}
        # perm allows clients with a user id only; anonymous: 103.
        self.assertEqual(self.errorCode(client, transport, "publish", {"channel": "perm:a", **publish}), 103)
        self.assertEqual(self.errorCode(client, transport, "publish", {"channel": "pos:a", **publish}), 103)
        self.assertEqual(self.errorCode(client, transport, "publish", {"channel": "chat:a", **publish}), 107)
        self.assertEqual(self.errorCode(client, transport, "publish", {"channel": "nope:a", **publish}), 102)

    def proxyNode(self, backend: Backend) -> Node:
        proxied = {"name": "px", "subscription_type": "map", "allow_subscribe_for_client": True,
                   "allow_subscribe_for_anonymous": True, "map": {
            "mode": "persistent", "publish_proxy_enabled": True, "publish_proxy_name": "mp",
            "remove_proxy_enabled": True, "remove_proxy_name": "mp"}}
        return self.node(backend=backend, namespaces=NAMESPACES + [proxied], allow_anonymous_connect_without_token=True,
                         proxies=[{"name": "mp", "endpoint": "http://backend.test/map"}])

    def test_mapPublishProxy(self) -> None:
        """
        With a map publish proxy the backend decides (the namespace grants no client a write): it may change the key,
        data, tags and key mode, refuse with its error or disconnect; a failed call is 100 and writes nothing.
        """
        cases: list[tuple[str, Any, int, dict[str, tuple[bytes, dict[str, str]]]]] = [
            ("as sent", {"result": {}}, 0, {"k": (b'{"a":1}', {})}),
            ("changed", {"result": {"key": "k2", "data": {"b": 2}, "tags": {"t": "v"}}}, 0, {"k2": (b'{"b":2}', {"t": "v"})}),
            ("if_new of a new key", {"result": {"key_mode": "if_new"}}, 0, {"k": (b'{"a":1}', {})}),
            ("error", {"error": {"code": 1000, "message": "no"}}, 1000, {}),
            ("disconnect", {"disconnect": {"code": 4500, "reason": "bye"}}, 4500, {}),
            ("failed call", (500, b""), 100, {}),
            ("bad key mode", {"result": {"key_mode": "sometimes"}}, 100, {}),
        ]
        for name, reply, code, expected in cases:
            backend = Backend(reply)
            node = self.proxyNode(backend)
            client, transport = self.client(node)
            request = {"channel": "px:a", "type": 1, "key": "k", "data": b'{"a":1}'}
            self.assertEqual(self.errorCode(client, transport, "publish", request), code, name)
            state = self.successResultOf(node.maps.readState("px:a"))
            self.assertEqual({p.key: (p.data, dict(p.tags)) for p in state.publications}, expected, name)
            body = backend.last["body"]
            # JSON clients' data goes as JSON, Protobuf clients' as base64 (Centrifugo's encoding rule).
            sent = body["data"] if "data" in body else orjson.loads(base64.b64decode(body["b64data"]))
            self.assertEqual((body["channel"], body["key"], sent, body["client"]),
                             ("px:a", "k", {"a": 1}, client.clientID), name)

    def test_mapRemoveProxy(self) -> None:
        """The map remove proxy: it may remove another key (with its tags), or refuse."""
        for name, reply, code, left in [
            ("as sent", {"result": {}}, 0, ["b"]),
            ("other key", {"result": {"key": "b", "tags": {"why": "moved"}}}, 0, ["a"]),
            ("error", {"error": {"code": 1000, "message": "no"}}, 1000, ["a", "b"]),
        ]:
            backend = Backend(reply)
            node = self.proxyNode(backend)
            self.put(node, "px:r", "a")
            self.put(node, "px:r", "b")
            client, transport = self.client(node)
            self.sync(client, transport, "px:r")
            request = {"channel": "px:r", "type": 1, "key": "a", "removed": True}
            self.assertEqual(self.errorCode(client, transport, "publish", request), code, name)
            self.assertEqual([p.key for p in self.successResultOf(node.maps.readState("px:r")).publications], left, name)
            self.assertEqual((backend.last["body"]["key"], "data" in backend.last["body"]), ("a", False), name)
            if name == "other key":
                removal = [p for p in self.live(transport, "px:r") if p.get("removed")]
                self.assertEqual([(p["key"], p.get("tags")) for p in removal], [("b", {"why": "moved"})])

    def test_emptyKeyRefused(self) -> None:
        node = self.mapNode()  # client_insecure: any client may write any key
        client, transport = self.client(node)
        self.assertEqual(self.errorCode(client, transport, "publish",
                                        {"channel": "pos:a", "type": 1, "key": "", "data": b"{}"}), 107)
        self.assertEqual(self.errorCode(client, transport, "publish",
                                        {"channel": "pos:a", "type": 1, "removed": True}), 107)
        self.assertFalse(transport.closed)
        self.assertEqual(self.successResultOf(node.mapBroker.stats("pos:a")), 0)
        # Below the client and the API too: the node's map operations refuse it.
        self.assertRaises(ChannelError, node.maps.publish, "pos:a", "", b"{}")
        self.assertRaises(ChannelError, node.maps.remove, "pos:a", "")

    def test_clientKey(self) -> None:
        node = self.node(namespaces=NAMESPACES, allow_anonymous_connect_without_token=True)
        client, transport = self.client(node)
        # allow_publish_for_subscriber: not subscribed yet.
        self.assertEqual(self.errorCode(client, transport, "publish",
                                        {"channel": "ck:a", "type": 1, "key": "mine", "data": b"{}"}), 103)

    def test_clientKeySubscribed(self) -> None:
        node = self.mapNode()
        client, transport = self.client(node)
        self.sync(client, transport, "ck:a")
        self.ok(client, transport, "publish", {"channel": "ck:a", "type": 1, "key": "mine", "data": b"{}"})
        self.assertEqual([p["key"] for p in self.live(transport, "ck:a")], [client.clientID])

    # Map presence

    def test_clientsPresence(self) -> None:
        node = self.mapNode()
        watcher, watching = self.client(node)
        _, state = self.sync(watcher, watching, "who:room:1", kind=2)
        self.assertEqual(state, {})
        self.sub  # a member subscribes to the room, then goes away
        member, memberTransport = self.client(node)
        self.sync(member, memberTransport, "room:1")
        member.disconnect(3000, "bye")
        pubs = self.live(watching, "who:room:1")
        self.assertEqual([(p["key"], p.get("removed", False)) for p in pubs],
                         [(member.clientID, False), (member.clientID, True)])
        self.assertEqual(pubs[0]["info"]["client"], member.clientID)

    def test_presenceRefreshedByTimer(self) -> None:
        node = self.mapNode(client_presence_update_interval="25s")
        member, memberTransport = self.client(node)
        self.sync(member, memberTransport, "room:1")
        # Key TTL 60s, refreshed every 25s: still there after two minutes.
        self.tick(120)
        self.assertEqual(self.successResultOf(node.mapBroker.stats("who:room:1")), 1)

    # The property

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(initial=st.lists(st.tuples(st.sampled_from("abcdefgh"), st.integers(0, 9)), max_size=12),
           writes=st.lists(st.lists(st.tuples(st.sampled_from("abcdefghij"), st.integers(-1, 9)), max_size=6),
                           max_size=6),
           limit=st.integers(1, 3), namespace=st.sampled_from(["pos", "eph"]))
    def test_snapshotConverges(self, initial: list[tuple[str, int]], writes: list[list[tuple[str, int]]],
                               limit: int, namespace: str) -> None:
        """
        A sync (state pages, stream pages, LIVE) with writes between every two of its commands, then the live
        updates, gives what a dict replaying the same writes holds: nothing lost, nothing twice.
        """
        self.setUp()
        node = self.mapNode()
        channel = f"{namespace}:p"
        model: dict[str, bytes] = {}

        def write(key: str, value: int) -> None:
            if value < 0:
                node.maps.remove(channel, key)
                model.pop(key, None)
            else:
                data = b'{"v":%d}' % value
                node.maps.publish(channel, key, data)
                model[key] = data

        for key, value in initial:
            write(key, value)
        client, transport = self.client(node)

        def between(step: int) -> None:
            for key, value in writes[step] if step < len(writes) else []:
                write(key, value)

        _, state = self.sync(client, transport, channel, limit=limit, between=between)
        for pub in self.live(transport, channel):
            if pub.get("removed"):
                state.pop(pub["key"], None)
            else:
                state[pub["key"]] = pub["data"]
        self.assertEqual(state, model)


class JSONMapTests(MapTestsMixin, SynchronousTestCase):
    protocol = "json"


class ProtobufMapTests(MapTestsMixin, SynchronousTestCase):
    protocol = "protobuf"
