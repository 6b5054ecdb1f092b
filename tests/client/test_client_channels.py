"""
Tests for the channel commands of a client (L{httpstream.client.commands}, L{httpstream.client.subscriptions}, L{httpstream.policy.recovery}): namespaces and
permissions, presence and join/leave, history, positioning and recovery, sub_refresh and subscription expiry,
Fossil deltas, limits. In memory, on a fake clock, each behaviour on both codecs (reference/messages.md sections
1.5, 3-7).
"""

from __future__ import annotations

from typing import Any, ClassVar

import jwt
import orjson
from twisted.trial.unittest import SynchronousTestCase

from httpstream.client.client import Client
from httpstream.protocol import codec
from httpstream.protocol.delta import applyFossilDelta
from httpstream.node.node import Node
from httpstream.policy.recovery import IN_FLIGHT_GRACE
from httpstream.values import ClientInfo, Publication
from httpstream.testing import FakeTransport, ManualBroker, encodeCommands
from tests.clienthelpers import NOW, ChannelHelpers, token
from tests.policy.test_proxy import Backend

HISTORY = {"history_size": 10, "history_ttl": "300s"}
SUBSCRIBE = {"allow_subscribe_for_client": True, "allow_subscribe_for_anonymous": True}
ANONYMOUS = {"allow_anonymous_connect_without_token": True}


def offsets(publications: list[dict[str, Any]]) -> list[int]:
    return [p.get("offset", 0) for p in publications]


class ChannelTestsMixin(ChannelHelpers):
    """Channel behaviour, run on each codec."""

    def connectAs(self, node: Node, user: str, **claims: Any) -> tuple[Client, FakeTransport]:
        """A client of C{user} (a token), or anonymous for "" (no token)."""
        return self.client(node, token(sub=user, **claims) if user else "")

    # Namespaces and permissions

    def test_subscribePermissions(self) -> None:
        """
        Centrifugo's OnSubscribe: 102 unknown namespace, 107 bad name, 103 without permission, 108 for a
        subscribe proxy that is not configured; each namespace has its own options.
        """
        chat = {"name": "chat", "allow_subscribe_for_client": True}
        regex = {"name": "rx", "channel_regex": "^[a-z]+$", "allow_subscribe_for_client": True}
        cases: list[tuple[str, dict[str, Any], str, str, int]] = [
            ("client allowed", {"allow_subscribe_for_client": True}, "alice", "news", 0),
            ("client allowed, anonymous", {"allow_subscribe_for_client": True}, "", "news", 103),
            ("anonymous allowed", SUBSCRIBE, "", "news", 0),
            ("nothing allowed", {}, "alice", "news", 103),
            ("insecure", {"client_insecure": True}, "", "news", 0),
            ("private without token", SUBSCRIBE, "alice", "$news", 103),
            ("private without token, insecure", {"client_insecure": True}, "", "$news", 103),
            ("user-limited, listed", {"allow_user_limited_channels": True}, "bob", "dm#alice,bob", 0),
            ("user-limited, not listed", {"allow_user_limited_channels": True, **SUBSCRIBE}, "carol", "dm#alice,bob",
             103),
            ("user-limited, anonymous", {"allow_user_limited_channels": True}, "", "dm#alice", 103),
            ("# without user limits", {"allow_subscribe_for_client": True}, "carol", "dm#alice", 0),
            ("unknown namespace", SUBSCRIBE, "alice", "nope:x", 102),
            ("namespace", {"namespaces": [chat]}, "alice", "chat:x", 0),
            ("namespace ignores top level", {**SUBSCRIBE, "namespaces": [{"name": "chat"}]}, "alice", "chat:x", 103),
            ("too long", {**SUBSCRIBE, "channel_max_length": 8}, "alice", "a" * 9, 107),
            ("longest", {**SUBSCRIBE, "channel_max_length": 8}, "alice", "a" * 8, 0),
            ("not ASCII", SUBSCRIBE, "alice", "caf\u00e9", 107),
            ("regex matched", {"namespaces": [regex]}, "alice", "rx:abc", 0),
            ("regex not matched", {"namespaces": [regex]}, "alice", "rx:ABC", 107),
            ("proxy without endpoint", {"proxy_subscribe": True}, "alice", "news", 108),
        ]
        for name, settings, user, channel, expected in cases:
            client, transport = self.connectAs(self.node(**ANONYMOUS, **settings), user)
            code = self.errorCode(client, transport, "subscribe", {"channel": channel})
            self.assertEqual(code, expected, name)
            self.assertEqual(client.channels, {channel} if expected == 0 else set(), name)
            self.assertIsNone(transport.closed, name)

    def test_publishPermissions(self) -> None:
        """
        Centrifugo's OnPublish: allow_publish_for_client, allow_publish_for_subscriber while subscribed, each for
        anonymous users only with allow_publish_for_anonymous; client_insecure; a publish proxy that is not
        configured answers 108.
        """
        cases: list[tuple[str, dict[str, Any], str, bool, int]] = [
            ("client", {"allow_publish_for_client": True}, "alice", False, 0),
            ("client, anonymous", {"allow_publish_for_client": True}, "", False, 103),
            ("client, anonymous allowed", {"allow_publish_for_client": True, "allow_publish_for_anonymous": True},
             "", False, 0),
            ("subscriber, not subscribed", {"allow_publish_for_subscriber": True}, "alice", False, 103),
            ("subscriber, subscribed", {"allow_publish_for_subscriber": True}, "alice", True, 0),
            ("subscriber, anonymous", {"allow_publish_for_subscriber": True}, "", True, 103),
            ("subscriber, anonymous allowed",
             {"allow_publish_for_subscriber": True, "allow_publish_for_anonymous": True}, "", True, 0),
            ("nothing", {}, "alice", True, 103),
            ("insecure", {"client_insecure": True}, "", False, 0),
            ("proxy without endpoint", {"proxy_publish": True, "allow_publish_for_client": True}, "alice", False,
             108),
        ]
        for name, settings, user, subscribed, expected in cases:
            client, transport = self.connectAs(self.node(**ANONYMOUS, **SUBSCRIBE, **settings), user)
            if subscribed:
                self.ok(client, transport, "subscribe", {"channel": "news"})
            code = self.errorCode(client, transport, "publish", {"channel": "news", "data": b'{"x":1}'})
            self.assertEqual(code, expected, name)
            self.assertIsNone(transport.closed, name)

    def test_presenceAndHistoryPermissions(self) -> None:
        """
        presence, presence_stats and history: 108 when the channel has no presence (history), 103 without
        allow_*_for_client, allow_*_for_subscriber while subscribed (anonymous users need allow_*_for_anonymous)
        or client_insecure; 102/107 for bad channels.
        """
        for kind, methods, feature in (
            ("presence", ("presence", "presence_stats"), {"presence": True}),
            ("history", ("history",), HISTORY),
        ):
            cases: list[tuple[str, dict[str, Any], str, str, bool, int]] = [
                ("off", {f"allow_{kind}_for_client": True}, "alice", "news", False, 108),
                ("no permission", feature, "alice", "news", True, 103),
                ("client", {**feature, f"allow_{kind}_for_client": True}, "alice", "news", False, 0),
                ("client, anonymous", {**feature, f"allow_{kind}_for_client": True}, "", "news", False, 103),
                ("client, anonymous allowed",
                 {**feature, f"allow_{kind}_for_client": True, f"allow_{kind}_for_anonymous": True}, "", "news",
                 False, 0),
                ("subscriber, not subscribed", {**feature, f"allow_{kind}_for_subscriber": True}, "alice", "news",
                 False, 103),
                ("subscriber", {**feature, f"allow_{kind}_for_subscriber": True}, "alice", "news", True, 0),
                ("insecure", {**feature, "client_insecure": True}, "", "news", False, 0),
                ("unknown namespace", {**feature, f"allow_{kind}_for_client": True}, "alice", "nope:x", False, 102),
                ("not ASCII", {**feature, f"allow_{kind}_for_client": True}, "alice", "caf\u00e9", False, 107),
            ]
            for name, settings, user, channel, subscribed, expected in cases:
                for method in methods:
                    client, transport = self.connectAs(self.node(**ANONYMOUS, **SUBSCRIBE, **settings), user)
                    if subscribed:
                        self.ok(client, transport, "subscribe", {"channel": channel})
                    code = self.errorCode(client, transport, method, {"channel": channel})
                    self.assertEqual(code, expected, f"{method}: {name}")
                    self.assertIsNone(transport.closed, f"{method}: {name}")

    # Subscription tokens

    def test_subscriptionTokens(self) -> None:
        """
        A subscription token allows a subscription the options do not ($ channels included): expired -> 109,
        expire_at over -> 110, invalid -> 103; another channel, user or client -> disconnect 3500.
        """
        other = jwt.encode({"sub": "alice", "channel": "$x"}, "another-secret-long-enough-for-hs256!!", "HS256")
        cases: list[tuple[str, str, int]] = [
            ("valid", token(sub="alice", channel="$x"), 0),
            ("expired", token(sub="alice", channel="$x", exp=int(NOW) - 1), 109),
            ("expire_at over", token(sub="alice", channel="$x", exp=int(NOW) + 60, expire_at=int(NOW) - 1), 110),
            ("other key", other, 103),
            ("garbage", "not.a.token", 103),
            ("without channel", token(sub="alice"), 103),
            ("other channel", token(sub="alice", channel="$y"), 3500),
            ("other user", token(sub="bob", channel="$x"), 3500),
            ("anonymous token", token(channel="$x"), 3500),
            ("other client", token(sub="alice", channel="$x", client="another-client"), 3500),
        ]
        for name, subToken, expected in cases:
            client, transport = self.connectAs(self.node(), "alice")
            code = self.errorCode(client, transport, "subscribe", {"channel": "$x", "token": subToken})
            self.assertEqual(code, expected, name)
            if expected >= 3000:
                self.assertDisconnected(transport, 3500, "invalid token")
            else:
                self.assertIsNone(transport.closed, name)

    def test_subscriptionTokenForThisClient(self) -> None:
        node = self.node()
        client, transport = self.connectAs(node, "alice")
        subToken = token(sub="alice", channel="$x", client=client.clientID)
        self.assertEqual(self.ok(client, transport, "subscribe", {"channel": "$x", "token": subToken}), {})

    def test_subscriptionTokenClaims(self) -> None:
        """
        The token's info becomes chan_info (presence, publications of the subscriber), its data the result's
        data, its expiry the result's expires/ttl, its override the channel's presence option.
        """
        node = self.node(allow_publish_for_subscriber=True)
        client, transport = self.connectAs(node, "alice", info={"name": "Alice"})
        subToken = token(sub="alice", channel="$x", exp=int(NOW) + 600, info={"role": "admin"}, data={"hello": 1},
                         override={"presence": {"value": True}})
        result = self.ok(client, transport, "subscribe", {"channel": "$x", "token": subToken})
        self.assertEqual(result, {"expires": True, "ttl": 600, "data": b'{"hello":1}'})
        info = ClientInfo("alice", client.clientID, b'{"name":"Alice"}', b'{"role":"admin"}')
        self.assertEqual(self.successResultOf(node.presence.presence("$x")), {client.clientID: info})
        self.ok(client, transport, "publish", {"channel": "$x", "data": b'{"m":1}'})
        [push] = self.pushes(transport, "pub")
        self.assertEqual(push["pub"]["info"], {"user": "alice", "client": client.clientID,
                                               "conn_info": b'{"name":"Alice"}', "chan_info": b'{"role":"admin"}'})

    # Subscribe and publish proxies

    def proxyNode(self, backend: Backend, **settings: Any) -> Node:
        endpoints = {f"proxy_{name}_endpoint": f"http://backend.test/{name}" for name in ("subscribe", "publish")}
        return self.node(backend=backend, **endpoints, **ANONYMOUS, **settings)

    def test_subscribeProxy(self) -> None:
        """
        With proxy_subscribe the backend decides (allow_* do not count): its info is the chan_info, its data
        the result's, its error the reply's, its disconnect a disconnect, a failed call 100. Private channels
        without token are refused first; tokens and user-limited channels listing the user need no backend.
        """
        answer = {"result": {"info": {"r": 1}, "data": {"d": 2}, "override": {"presence": {"value": True}}}}
        cases: list[tuple[str, Any, str, dict[str, Any], Any, int]] = [
            # name, backend answer, channel, request extras, expected result or error code, backend calls
            ("granted", answer, "news", {}, {"data": b'{"d":2}'}, 1),
            ("error", {"error": {"code": 1000, "message": "no"}}, "news", {}, 1000, 1),
            ("disconnect", {"disconnect": {"code": 4500, "reason": "bye"}}, "news", {}, 4500, 1),
            ("failed call", (500, b""), "news", {}, 100, 1),
            ("private", answer, "$news", {}, 103, 0),
            ("token", answer, "news", {"token": token(sub="alice", channel="news")}, {}, 0),
            ("user-limited", answer, "dm#alice", {}, {}, 0),
        ]
        for name, reply, channel, extra, expected, calls in cases:
            backend = Backend(reply)
            node = self.proxyNode(backend, proxy_subscribe=True, allow_user_limited_channels=True, **SUBSCRIBE)
            client, transport = self.connectAs(node, "alice")
            if isinstance(expected, dict):
                self.assertEqual(self.ok(client, transport, "subscribe", {"channel": channel, **extra}), expected,
                                 name)
            else:
                self.assertEqual(self.errorCode(client, transport, "subscribe", {"channel": channel, **extra}),
                                 expected, name)
            self.assertEqual(len(backend.requests), calls, name)
            if calls:
                self.assertEqual(backend.last["body"]["channel"], channel, name)
        node = self.proxyNode(Backend(answer), proxy_subscribe=True)
        client, transport = self.connectAs(node, "alice")
        self.ok(client, transport, "subscribe", {"channel": "news"})
        self.assertEqual(self.successResultOf(node.presence.presence("news")), {
            client.clientID: ClientInfo("alice", client.clientID, chanInfo=b'{"r":1}'),
        })

    def test_publishProxy(self) -> None:
        """
        With proxy_publish the backend decides: it may replace the data or skip the history; its error is the
        reply's.
        """
        cases: list[tuple[str, Any, Any]] = [
            ("as sent", {"result": {}}, (b'{"x":1}', 1)),
            ("replaced", {"result": {"data": {"y": 2}}}, (b'{"y":2}', 1)),
            ("skip history", {"result": {"skip_history": True}}, (b'{"x":1}', 0)),
            ("error", {"error": {"code": 1000, "message": "no"}}, 1000),
        ]
        for name, reply, expected in cases:
            node = self.proxyNode(Backend(reply), proxy_publish=True, **SUBSCRIBE, **HISTORY)
            client, transport = self.connectAs(node, "alice")
            self.ok(client, transport, "subscribe", {"channel": "news"})
            code = self.errorCode(client, transport, "publish", {"channel": "news", "data": b'{"x":1}'})
            pubs = [push["pub"] for push in self.pushes(transport, "pub")]
            if isinstance(expected, int):
                self.assertEqual((code, pubs), (expected, []), name)
            else:
                self.assertEqual(code, 0, name)
                self.assertEqual([(pub["data"], pub.get("offset", 0)) for pub in pubs], [expected], name)

    # Presence

    def test_presence(self) -> None:
        """
        presence lists the subscribers (ClientInfo by client id); presence_stats counts clients and distinct
        users, anonymous ones as one user.
        """
        node = self.node(**ANONYMOUS, **SUBSCRIBE, presence=True, allow_presence_for_client=True,
                         allow_presence_for_anonymous=True)
        alice, aliceTransport = self.connectAs(node, "alice", info={"a": 1})
        anon1, anon1Transport = self.connectAs(node, "")
        anon2, anon2Transport = self.connectAs(node, "")
        for client, transport in ((alice, aliceTransport), (anon1, anon1Transport), (anon2, anon2Transport)):
            self.ok(client, transport, "subscribe", {"channel": "room"})
        presence = self.ok(alice, aliceTransport, "presence", {"channel": "room"})
        self.assertEqual(presence, {"presence": {
            alice.clientID: {"user": "alice", "client": alice.clientID, "conn_info": b'{"a":1}'},
            anon1.clientID: {"client": anon1.clientID},  # zero values are left out
            anon2.clientID: {"client": anon2.clientID},
        }})
        stats = self.ok(anon1, anon1Transport, "presence_stats", {"channel": "room"})
        self.assertEqual(stats, {"num_clients": 3, "num_users": 2})

    def test_presenceRemoved(self) -> None:
        """A client leaves the presence on unsubscribe, on disconnect, and when its transport goes away."""
        node = self.node(**ANONYMOUS, **SUBSCRIBE, presence=True)

        def present() -> set[str]:
            return set(self.successResultOf(node.presence.presence("room")))

        clients = [self.connectAs(node, "") for _ in range(3)]
        for client, transport in clients:
            self.ok(client, transport, "subscribe", {"channel": "room"})
        self.assertEqual(present(), {client.clientID for client, _ in clients})
        (a, aTransport), (b, _), (c, _) = clients
        self.ok(a, aTransport, "unsubscribe", {"channel": "room"})
        b.disconnect(4000, "custom")
        c.transportClosed()
        self.assertEqual(present(), set())

    def test_presenceRefreshedOnTimer(self) -> None:
        """Every client_presence_update_interval the subscriber's presence entry is written again."""
        node = self.node(**ANONYMOUS, **SUBSCRIBE, presence=True, client_presence_update_interval="10s")
        client, transport = self.connectAs(node, "")
        self.ok(client, transport, "subscribe", {"channel": "room"})
        node.presence.remove("room", client.clientID)
        self.clock.advance(10)
        self.assertEqual(list(self.successResultOf(node.presence.presence("room"))), [client.clientID])

    def test_presenceOnlyWithOption(self) -> None:
        node = self.node(**ANONYMOUS, **SUBSCRIBE)
        client, transport = self.connectAs(node, "")
        self.ok(client, transport, "subscribe", {"channel": "room"})
        self.assertEqual(self.successResultOf(node.presence.presence("room")), {})

    # Join and leave

    def test_joinLeaveDelivery(self) -> None:
        """
        Join/leave pushes reach only subscribers with push on: force_push_join_leave, or join_leave asked while
        the channel has join_leave and the client may read presence (judged before it is subscribed, as
        Centrifugo does: allow_presence_for_subscriber is not enough). Without the channel's join_leave nobody
        emits them.
        """
        joinLeave = {"join_leave": True, "presence": True}
        cases: list[tuple[str, dict[str, Any], bool, str, bool]] = [
            ("asked, may read presence", {**joinLeave, "allow_presence_for_client": True}, True, "alice", True),
            ("not asked", {**joinLeave, "allow_presence_for_client": True}, False, "alice", False),
            ("asked, no presence permission", joinLeave, True, "alice", False),
            ("asked, presence for subscribers", {**joinLeave, "allow_presence_for_subscriber": True}, True, "alice",
             False),
            ("asked, anonymous", {**joinLeave, "allow_presence_for_client": True}, True, "", False),
            ("asked, anonymous allowed",
             {**joinLeave, "allow_presence_for_client": True, "allow_presence_for_anonymous": True}, True, "", True),
            ("asked, insecure", {**joinLeave, "client_insecure": True}, True, "", True),
            ("not asked, insecure", {**joinLeave, "client_insecure": True}, False, "", False),
            ("forced", {**joinLeave, "force_push_join_leave": True}, False, "alice", True),
            ("asked, channel without join_leave", {"allow_presence_for_client": True}, True, "alice", False),
        ]
        for name, settings, asked, user, delivered in cases:
            node = self.node(**ANONYMOUS, **SUBSCRIBE, **settings)
            watcher, watcherTransport = self.connectAs(node, user)
            self.ok(watcher, watcherTransport, "subscribe", {"channel": "room", "join_leave": asked})
            bob, bobTransport = self.connectAs(node, "bob")
            self.ok(bob, bobTransport, "subscribe", {"channel": "room"})
            self.ok(bob, bobTransport, "unsubscribe", {"channel": "room"})
            bobInfo = {"user": "bob", "client": bob.clientID}
            expected = [{"channel": "room", "join": {"info": bobInfo}}] if delivered else []
            self.assertEqual(self.pushes(watcherTransport, "join")[-1:], expected, name)
            expected = [{"channel": "room", "leave": {"info": bobInfo}}] if delivered else []
            self.assertEqual(self.pushes(watcherTransport, "leave"), expected, name)

    def test_ownJoinAfterReply(self) -> None:
        """A subscriber with join/leave on receives its own join, after its subscribe reply."""
        node = self.node(**ANONYMOUS, **SUBSCRIBE, join_leave=True, force_push_join_leave=True)
        client, transport = self.connectAs(node, "alice", info={"a": 1})
        self.send(client, {"id": 2, "subscribe": {"channel": "room"}})
        self.assertEqual(transport.replies(), [
            {"id": 2, "subscribe": {}},
            {"push": {"channel": "room", "join": {"info": {"user": "alice", "client": client.clientID,
                                                          "conn_info": b'{"a":1}'}}}},
        ])

    def test_leaveOnDisconnect(self) -> None:
        """Leave pushes go out when a subscriber is disconnected or its transport goes away."""
        node = self.node(**ANONYMOUS, **SUBSCRIBE, join_leave=True, force_push_join_leave=True)
        watcher, watcherTransport = self.connectAs(node, "w")
        self.ok(watcher, watcherTransport, "subscribe", {"channel": "room"})
        (a, aTransport), (b, bTransport) = self.connectAs(node, "a"), self.connectAs(node, "b")
        self.ok(a, aTransport, "subscribe", {"channel": "room"})
        self.ok(b, bTransport, "subscribe", {"channel": "room"})
        a.disconnect(4000, "custom")
        b.transportClosed()
        self.clock.advance(0)
        self.assertEqual(
            [push["leave"]["info"]["user"] for push in self.pushes(watcherTransport, "leave")], ["a", "b"]
        )
        self.assertEqual(self.pushes(aTransport, "leave"), [])

    # History

    def test_history(self) -> None:
        """
        The history command: limit 0 -> position only; negative or over client_history_max_publication_limit
        -> capped; since forward / reverse; reverse with since offset 0 -> 107; another epoch -> 112.
        """
        node = self.node(**ANONYMOUS, **HISTORY, allow_history_for_client=True, allow_history_for_anonymous=True,
                         client_history_max_publication_limit=3)
        for n in range(5):
            self.publish(node, "news", b'{"n":%d}' % n)
        epoch = self.successResultOf(node.broker.history("news")).epoch
        client, transport = self.connectAs(node, "")
        cases: list[tuple[dict[str, Any], list[int] | None]] = [
            ({}, []),
            ({"limit": 2}, [1, 2]),
            ({"limit": -1}, [1, 2, 3]),
            ({"limit": 100}, [1, 2, 3]),
            ({"limit": 2, "reverse": True}, [5, 4]),
            ({"limit": -1, "since": {"offset": 2, "epoch": epoch}}, [3, 4, 5]),
            ({"limit": 1, "since": {"offset": 2}}, [3]),
            ({"limit": -1, "since": {"offset": 5, "epoch": epoch}}, []),
            ({"limit": -1, "since": {"offset": 4}, "reverse": True}, [3, 2, 1]),
        ]
        for request, expected in cases:
            result = self.ok(client, transport, "history", {"channel": "news", **request})
            self.assertEqual(offsets(result.get("publications", [])), expected, request)
            self.assertEqual((result["offset"], result["epoch"]), (5, epoch), request)
        self.assertEqual(
            self.errorCode(client, transport, "history", {"channel": "news", "since": {}, "reverse": True}), 107
        )
        self.assertEqual(
            self.errorCode(client, transport, "history", {"channel": "news", "since": {"offset": 1, "epoch": "x"}}),
            112,
        )
        self.assertIsNone(transport.closed)

    def test_historyPublicationsAsPublished(self) -> None:
        """History publications carry the data, the publisher's ClientInfo and the offset."""
        node = self.node(**HISTORY, allow_history_for_client=True, allow_publish_for_client=True)
        client, transport = self.connectAs(node, "alice", info={"a": 1})
        self.ok(client, transport, "publish", {"channel": "news", "data": b'{"x":1}'})
        result = self.ok(client, transport, "history", {"channel": "news", "limit": -1})
        self.assertEqual(result["publications"], [
            {"data": b'{"x":1}', "offset": 1,
             "info": {"user": "alice", "client": client.clientID, "conn_info": b'{"a":1}'}},
        ])

    # Positioning

    def test_positioning(self) -> None:
        """
        A subscription is positioned with force_positioning, or when asked and the channel has
        allow_positioning or the client may read history; the result then has the stream's top position.
        """
        cases: list[tuple[str, dict[str, Any], bool, bool]] = [
            ("asked, allowed", {"allow_positioning": True}, True, True),
            ("asked, history readable", {"allow_history_for_client": True}, True, True),
            ("asked, history for subscribers", {"allow_history_for_subscriber": True}, True, False),
            ("asked, not allowed", {}, True, False),
            ("not asked", {"allow_positioning": True}, False, False),
            ("forced", {"force_positioning": True}, False, True),
        ]
        for name, settings, asked, positioned in cases:
            node = self.node(**ANONYMOUS, **SUBSCRIBE, **HISTORY, **settings)
            self.publish(node, "news")
            epoch = self.successResultOf(node.broker.history("news")).epoch
            client, transport = self.connectAs(node, "alice")
            result = self.ok(client, transport, "subscribe", {"channel": "news", "positioned": asked})
            expected = {"positioned": True, "offset": 1, "epoch": epoch} if positioned else {}
            self.assertEqual(result, expected, name)

    def positioned(self, **settings: Any) -> tuple[Node, Client, FakeTransport, str]:
        node = self.node(**ANONYMOUS, **SUBSCRIBE, **HISTORY, allow_positioning=True, **settings)
        self.publish(node, "news")
        client, transport = self.connectAs(node, "alice")
        result = self.ok(client, transport, "subscribe", {"channel": "news", "positioned": True})
        return node, client, transport, result["epoch"]

    def test_positionedFollowsOffsets(self) -> None:
        """Publications with the next offsets reach a positioned subscriber; older ones (duplicates) do not."""
        node, _client, transport, epoch = self.positioned()
        self.publish(node, "news", b'{"n":2}')
        node._onPublication("news", Publication(b'{"n":2}', 2), epoch)  # a duplicate
        node._onPublication("news", Publication(b'{"n":1}', 1))  # an old one
        self.publish(node, "news", b'{"n":3}')
        self.clock.advance(0)
        self.assertEqual([push["pub"]["offset"] for push in self.pushes(transport, "pub")], [2, 3])
        self.assertEqual(self.pushes(transport, "unsubscribe"), [])

    def test_gapUnsubscribes(self) -> None:
        """
        A publication beyond the next offset (the node missed some), or from another epoch, ends a positioned
        client-side subscription with Unsubscribe 2500 (the SDK resubscribes and recovers); the connection stays.
        """
        for name, offset, epoch in (("gap", 3, ""), ("other epoch", 2, "ZZZZ")):
            node, client, transport, _ = self.positioned()
            node._onPublication("news", Publication(b'{"n":3}', offset), epoch)
            self.clock.advance(0)
            self.assertEqual(self.pushes(transport, "pub"), [], name)
            self.assertEqual(
                self.pushes(transport, "unsubscribe"),
                [{"channel": "news", "unsubscribe": {"code": 2500, "reason": "insufficient state"}}],
                name,
            )
            self.assertEqual(client.channels, set(), name)
            self.assertEqual(node.hub.subscribers("news"), [], name)
            self.assertIsNone(transport.closed, name)
            # It may subscribe again.
            self.ok(client, transport, "subscribe", {"channel": "news"})

    def test_gapInServerSideSubscription(self) -> None:
        """A gap in a positioned server-side subscription disconnects with 3010 (the client reconnects)."""
        node = self.node(namespaces=[{"name": "srv", **HISTORY, "force_positioning": True}])
        _client, transport = self.connectAs(node, "alice", channels=["srv:x"])
        node._onPublication("srv:x", Publication(b"{}", 5))
        self.clock.advance(0)
        self.assertDisconnected(transport, 3010, "insufficient state")

    def test_serverAPISubscribe(self) -> None:
        """
        The server API's subscribe is a server-side subscription: a subscribe push with its data (and the
        position when its override forces recovery), its info as chan_info; publications follow it.
        """
        node = self.node(**HISTORY, presence=True)
        self.publish(node, "news")
        epoch = self.successResultOf(node.broker.history("news")).epoch
        client, transport = self.connectAs(node, "alice")
        self.successResultOf(client.serverSubscribe("news", {
            "user": "alice", "channel": "news", "info": b'{"i":1}', "data": b'{"d":2}',
            "override": {"force_recovery": {"value": True}},
        }))
        self.publish(node, "news", b'{"n":2}')
        self.assertEqual(transport.replies(), [
            {"push": {"channel": "news", "subscribe": {"data": b'{"d":2}', "recoverable": True, "positioned": True,
                                                       "offset": 1, "epoch": epoch}}},
            {"push": {"channel": "news", "pub": {"data": b'{"n":2}', "offset": 2}}},
        ])
        self.assertEqual(self.successResultOf(node.presence.presence("news")), {
            client.clientID: ClientInfo("alice", client.clientID, chanInfo=b'{"i":1}'),
        })

    def test_positionCheck(self) -> None:
        """
        Every client_channel_position_check_delay (on the presence timer) a positioned subscription's position
        is compared with the stream's top: a node that missed the last publication of a quiet channel ends the
        subscription with 2500 after two failed checks in a row (one may be a publication on its way).
        """
        settings = {"client_presence_update_interval": "10s", "client_channel_position_check_delay": "15s"}
        node, _, transport, _ = self.positioned(**settings)
        node.broker.channels.discard("news")  # the node misses the next publication
        self.publish(node, "news", b'{"n":2}')
        node.broker.channels.add("news")
        self.tick(39)  # checks at 20 (failed once) and 30 (not due)
        self.assertEqual(self.pushes(transport, "unsubscribe"), [])
        self.tick(1)  # the second failure
        self.assertEqual(self.pushes(transport, "unsubscribe"),
                         [{"channel": "news", "unsubscribe": {"code": 2500, "reason": "insufficient state"}}])

    def test_positionCheckKeepsGoodPositions(self) -> None:
        """Positions that follow the stream pass every check."""
        settings = {"client_presence_update_interval": "10s", "client_channel_position_check_delay": "15s"}
        node, _, transport, _ = self.positioned(**settings)
        for n in range(10):
            self.publish(node, "news", b'{"n":%d}' % n)
            self.tick(10)
        self.assertEqual(len(self.pushes(transport, "pub")), 10)
        self.assertEqual(self.pushes(transport, "unsubscribe"), [])

    def test_positionCheckAfterBrokerReconnect(self) -> None:
        """
        When the broker reports channels whose publications may have been missed (a PUB/SUB reconnect), their
        positioned subscribers are checked at once: a position behind the top that is still behind it
        IN_FLIGHT_GRACE later ends them (2500) without a second check; right ones and other channels are left
        alone.
        """
        node, client, transport, _ = self.positioned()
        self.ok(client, transport, "subscribe", {"channel": "other", "positioned": True})
        fine, fineTransport = self.connectAs(node, "bob")
        self.ok(fine, fineTransport, "subscribe", {"channel": "news", "positioned": True})
        node.checkPositions(["news"])
        self.assertEqual(self.pushes(transport, "unsubscribe"), [])
        node.broker.channels.discard("news")
        node.broker.channels.discard("other")
        self.publish(node, "news")
        self.publish(node, "other")
        node.checkPositions(["news"])
        self.clock.advance(0)
        self.assertEqual(self.pushes(transport, "unsubscribe"), [])
        self.clock.advance(IN_FLIGHT_GRACE)
        for t in (transport, fineTransport):
            self.assertEqual(self.pushes(t, "unsubscribe"),
                             [{"channel": "news", "unsubscribe": {"code": 2500, "reason": "insufficient state"}}])
        self.assertEqual(client.channels, {"other"})

    def test_positionCheckAfterReconnectWaitsForInFlight(self) -> None:
        """
        Publications already in the stream when the check read its top, arriving through the link within
        IN_FLIGHT_GRACE (a busy channel always has some), are no lost position: no 2500, and they are delivered.
        Another epoch is lost at once.
        """
        node, client, transport, _ = self.positioned()
        node.broker.channels.discard("news")
        self.publish(node, "news", b'{"n":2}')
        node.broker.channels.add("news")
        node.checkPositions(["news"])
        inFlight = self.successResultOf(node.broker.history("news", None, -1)).publications[-1]
        self.clock.advance(IN_FLIGHT_GRACE / 2)
        node._onPublication("news", inFlight)
        self.clock.advance(IN_FLIGHT_GRACE)
        self.assertEqual(self.pushes(transport, "unsubscribe"), [])
        self.assertEqual([push["pub"]["offset"] for push in self.pushes(transport, "pub")][-1], inFlight.offset)

        client.subs["news"].epoch = "lost"  # the stream it followed is gone (Redis restarted: a new epoch)
        node.checkPositions(["news"])
        self.clock.advance(0)
        self.assertEqual(self.pushes(transport, "unsubscribe"),
                         [{"channel": "news", "unsubscribe": {"code": 2500, "reason": "insufficient state"}}])

    def test_positionCheckServerSide(self) -> None:
        """A server-side subscription that lost its position is disconnected with 3010."""
        node = self.node(namespaces=[{"name": "srv", **HISTORY, "force_positioning": True}],
                         client_presence_update_interval="10s", client_channel_position_check_delay="15s")
        _, transport = self.connectAs(node, "alice", channels=["srv:x"])
        node.broker.channels.discard("srv:x")
        self.publish(node, "srv:x")
        self.tick(40)
        self.assertDisconnected(transport, 3010, "insufficient state")

    # Recovery

    def recoveryNode(self, publications: int = 3, **settings: Any) -> tuple[Node, str]:
        settings = {**HISTORY, "allow_recovery": True, **settings}
        node = self.node(**ANONYMOUS, **SUBSCRIBE, **settings)
        for n in range(publications):
            self.publish(node, "news", b'{"n":%d}' % (n + 1))
        return node, self.successResultOf(node.broker.history("news")).epoch

    def recover(self, node: Node, offset: int, epoch: str) -> tuple[Client, FakeTransport, dict]:
        client, transport = self.connectAs(node, "alice")
        result = self.ok(client, transport, "subscribe", {
            "channel": "news", "recoverable": True, "recover": True, "offset": offset, "epoch": epoch,
        })
        return client, transport, result

    def test_recovery(self) -> None:
        """
        A recovering subscription gets the missed publications ascending with recovered true and its own
        offset; when they cannot all be had (trimmed, another epoch, more than
        client_recovery_max_publication_limit) none, recovered false and the top's position.
        """
        cases: list[tuple[str, dict[str, Any], int, int, str | None, list[int] | None]] = [
            # name, settings, publications, client offset, client epoch (None: the stream's), recovered offsets
            ("up to date", {}, 3, 3, None, []),
            ("missed two", {}, 3, 1, None, [2, 3]),
            ("from the start", {}, 3, 0, None, [1, 2, 3]),
            ("without epoch", {}, 3, 1, "", [2, 3]),
            ("other epoch", {}, 3, 1, "ZZZZ", None),
            ("trimmed", {"history_size": 2}, 5, 1, None, None),
            ("at the limit", {"client_recovery_max_publication_limit": 2}, 3, 1, None, [2, 3]),
            ("over the limit", {"client_recovery_max_publication_limit": 2}, 3, 0, None, None),
            ("cache: latest", {"force_recovery_mode": "cache"}, 3, 1, None, [3]),
            ("cache: up to date", {"force_recovery_mode": "cache"}, 3, 3, None, []),
            ("cache: other epoch", {"force_recovery_mode": "cache"}, 3, 1, "ZZZZ", None),
        ]
        for name, settings, count, clientOffset, clientEpoch, recovered in cases:
            node, epoch = self.recoveryNode(count, **settings)
            _, _, result = self.recover(node, clientOffset, epoch if clientEpoch is None else clientEpoch)
            expected: dict[str, Any] = {"recoverable": True, "positioned": True, "was_recovering": True,
                                        "epoch": epoch}
            if recovered is None:
                expected["offset"] = count
                self.assertNotIn("publications", result, name)
            else:
                expected.update(recovered=True)
                if clientOffset:
                    expected["offset"] = clientOffset
                self.assertEqual(offsets(result.pop("publications", [])), recovered, name)
            self.assertEqual(result, expected, name)

    def test_recoveredPublicationsAsStored(self) -> None:
        node, epoch = self.recoveryNode(2)
        _, _, result = self.recover(node, 0, epoch)
        self.assertEqual(result["publications"], [{"data": b'{"n":1}', "offset": 1}, {"data": b'{"n":2}', "offset": 2}])

    def test_recoverable(self) -> None:
        """
        recoverable is granted with force_recovery, or when asked and the channel has allow_recovery or the
        client may read history (not merely as a subscriber: that is judged before it is subscribed).
        """
        cases: list[tuple[str, dict[str, Any], bool, bool]] = [
            ("allowed", {"allow_recovery": True}, True, True),
            ("history readable", {"allow_history_for_client": True}, True, True),
            ("history for subscribers", {"allow_history_for_subscriber": True}, True, False),
            ("not allowed", {}, True, False),
            ("not asked", {"allow_recovery": True}, False, False),
            ("forced", {"force_recovery": True}, False, True),
        ]
        for name, settings, asked, recoverable in cases:
            node = self.node(**ANONYMOUS, **SUBSCRIBE, **HISTORY, **settings)
            client, transport = self.connectAs(node, "alice")
            result = self.ok(client, transport, "subscribe", {"channel": "news", "recoverable": asked})
            self.assertEqual(result.get("recoverable", False), recoverable, name)
            self.assertEqual(result.get("positioned", False), recoverable, name)

    def test_liveAfterRecovery(self) -> None:
        """After a recovery the subscription follows the stream from its top: no duplicates, no gap."""
        node, epoch = self.recoveryNode(3)
        _, transport, _result = self.recover(node, 1, epoch)
        self.publish(node, "news", b'{"n":4}')
        self.assertEqual([push["pub"]["offset"] for push in self.pushes(transport, "pub")], [4])
        self.assertEqual(self.pushes(transport, "unsubscribe"), [])

    def test_recoverServerSideSubscription(self) -> None:
        """
        ConnectRequest.subs recovers a recoverable server-side subscription: ConnectResult.subs holds its
        SubscribeResult with the missed publications.
        """
        node = self.node(namespaces=[{"name": "srv", **HISTORY, "force_recovery": True}])
        for n in range(3):
            self.publish(node, "srv:x", b'{"n":%d}' % n)
        epoch = self.successResultOf(node.broker.history("srv:x")).epoch
        client, transport = self.open(node)
        self.send(client, {"id": 1, "connect": {
            "token": token(sub="alice", channels=["srv:x"]),
            "subs": {"srv:x": {"recover": True, "offset": 1, "epoch": epoch}},
        }})
        [reply] = transport.replies()
        sub = reply["connect"]["subs"]["srv:x"]
        self.assertEqual(offsets(sub.pop("publications")), [2, 3])
        self.assertEqual(sub, {"recoverable": True, "positioned": True, "was_recovering": True, "recovered": True,
                               "offset": 1, "epoch": epoch})

    def test_publicationsWaitForTheReply(self) -> None:
        """
        Publications arriving while the engine works on a subscribe are sent after its reply, those the
        position already covers skipped: a client never sees a publication before its subscribe result.
        """
        broker = ManualBroker(self.clock)
        node = self.node(broker=broker, **ANONYMOUS, **SUBSCRIBE, **HISTORY, allow_positioning=True)
        client, transport = self.connectAs(node, "alice")
        other, otherTransport = self.connectAs(node, "bob")
        self.send(client, {"id": 2, "subscribe": {"channel": "news", "positioned": True}})
        self.send(other, {"id": 2, "subscribe": {"channel": "plain"}})
        broker.complete()  # broker subscribe of news; the position read is next
        broker.complete()  # broker subscribe of plain
        # Publications from another node, one stored before the position read, one after.
        for channel in ("news", "plain"):
            broker._memory.publish(channel, Publication(b'{"n":1}'), 10, 300)
        self.assertEqual(transport.replies(), [])
        self.assertEqual(otherTransport.replies(), [])
        broker.complete()  # the position: top 1
        broker._memory.publish("news", Publication(b'{"n":2}'), 10, 300)
        self.clock.advance(0)
        [reply, push] = transport.replies()
        self.assertEqual(reply["subscribe"]["offset"], 1)
        self.assertEqual(push["push"]["pub"]["offset"], 2)
        self.assertEqual(otherTransport.replies(), [
            {"id": 2, "subscribe": {}}, {"push": {"channel": "plain", "pub": {"data": b'{"n":1}', "offset": 1}}},
        ])

    def test_closedWhileSubscribing(self) -> None:
        """A client that goes away while its subscribe waits on the engine leaves nothing behind."""
        broker = ManualBroker(self.clock)
        node = self.node(broker=broker, **ANONYMOUS, **SUBSCRIBE, presence=True)
        client, transport = self.connectAs(node, "alice")
        self.send(client, {"id": 2, "subscribe": {"channel": "room"}})
        client.transportClosed()
        broker.completeAll()
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(node.presence.presence("room")), {})
        self.assertEqual(node.hub.channels(), [])
        self.assertEqual(transport.replies(), [])

    # sub_refresh and subscription expiry

    def subscribedWithToken(self, **claims: Any) -> tuple[Node, Client, FakeTransport]:
        node = self.node(client_presence_update_interval="1s", **claims.pop("settings", {}))
        client, transport = self.connectAs(node, "alice")
        self.ok(client, transport, "subscribe", {"channel": "$x", "token": token(sub="alice", channel="$x", **claims)})
        return node, client, transport

    def test_subRefresh(self) -> None:
        """
        sub_refresh: 103 when not subscribed, 107 without token; a valid token moves the expiry; an expired
        one is a success without expiry (Centrifugo's quirk); an invalid or mismatched one disconnects (3500).
        """
        cases: list[tuple[str, dict[str, Any], Any]] = [
            ("not subscribed", {"channel": "$y", "token": token(sub="alice", channel="$y")}, 103),
            ("without token", {"channel": "$x"}, 107),
            ("later expiry", {"channel": "$x", "token": token(sub="alice", channel="$x", exp=int(NOW) + 120)},
             {"expires": True, "ttl": 120}),
            ("without expiry", {"channel": "$x", "token": token(sub="alice", channel="$x")}, {}),
            ("expired", {"channel": "$x", "token": token(sub="alice", channel="$x", exp=int(NOW) - 1)}, {}),
            ("expire_at over", {"channel": "$x", "token": token(sub="alice", channel="$x", exp=int(NOW) + 9,
                                                                expire_at=int(NOW) - 1)}, 110),
            ("invalid", {"channel": "$x", "token": "not.a.token"}, 3500),
            ("other channel", {"channel": "$x", "token": token(sub="alice", channel="$y")}, 3500),
            ("other user", {"channel": "$x", "token": token(sub="bob", channel="$x")}, 3500),
            ("other client", {"channel": "$x", "token": token(sub="alice", channel="$x", client="c")}, 3500),
        ]
        for name, request, expected in cases:
            _, client, transport = self.subscribedWithToken(exp=int(NOW) + 60)
            if isinstance(expected, dict):
                self.assertEqual(self.ok(client, transport, "sub_refresh", request), expected, name)
            else:
                self.assertEqual(self.errorCode(client, transport, "sub_refresh", request), expected, name)
            self.assertEqual(transport.closed is not None, expected == 3500, name)

    def test_subscriptionExpiry(self) -> None:
        """
        A subscription whose token is not refreshed gets Unsubscribe 2501 on the presence timer once
        client_expired_sub_close_delay (25 s) has passed after its expiry; the connection stays.
        """
        _node, client, transport = self.subscribedWithToken(exp=int(NOW) + 60)
        self.clock.advance(60 + 24)
        self.assertEqual(client.channels, {"$x"})
        self.clock.advance(2)
        self.assertEqual(self.pushes(transport, "unsubscribe"),
                         [{"channel": "$x", "unsubscribe": {"code": 2501, "reason": "subscription expired"}}])
        self.assertEqual(client.channels, set())
        self.assertIsNone(transport.closed)

    def test_refreshedSubscriptionLivesOn(self) -> None:
        _node, client, transport = self.subscribedWithToken(exp=int(NOW) + 60)
        self.clock.advance(50)
        self.ok(client, transport, "sub_refresh", {"channel": "$x", "token": token(sub="alice", channel="$x",
                                                                                   exp=int(NOW) + 200)})
        self.clock.advance(100)
        self.assertEqual(client.channels, {"$x"})
        self.clock.advance(200 + 25 - 150 + 1)
        self.assertEqual(client.channels, set())
        self.assertEqual(len(self.pushes(transport, "unsubscribe")), 1)

    def test_expiredRefreshLeavesNoExpiry(self) -> None:
        """After the expired-token quirk the subscription no longer expires (Centrifugo keeps expire_at 0)."""
        _node, client, transport = self.subscribedWithToken(exp=int(NOW) + 60)
        self.clock.advance(61)
        self.ok(client, transport, "sub_refresh", {"channel": "$x", "token": token(sub="alice", channel="$x",
                                                                                   exp=int(NOW) + 30)})
        self.clock.advance(1000)
        self.assertEqual(client.channels, {"$x"})

    def test_subRefreshOfServerSideSubscription(self) -> None:
        node = self.node()
        client, transport = self.connectAs(node, "alice", channels=["news"])
        self.call(client, transport, "sub_refresh", {"channel": "news", "token": token(sub="alice", channel="news")})
        self.assertDisconnected(transport, 3501, "bad request")

    # Limits

    def test_limits(self) -> None:
        """
        client_channel_limit (server-side subscriptions included) -> 106; a channel subscribed already
        (client- or server-side) -> 105.
        """
        node = self.node(**SUBSCRIBE, client_channel_limit=2)
        client, transport = self.connectAs(node, "alice", channels=["a"])
        self.assertEqual(self.errorCode(client, transport, "subscribe", {"channel": "a"}), 105)
        self.assertEqual(self.errorCode(client, transport, "subscribe", {"channel": "b"}), 0)
        self.assertEqual(self.errorCode(client, transport, "subscribe", {"channel": "b"}), 105)
        self.assertEqual(self.errorCode(client, transport, "subscribe", {"channel": "c"}), 106)
        self.ok(client, transport, "unsubscribe", {"channel": "b"})
        self.assertEqual(self.errorCode(client, transport, "subscribe", {"channel": "c"}), 0)
        self.assertIsNone(transport.closed)


    def test_subRefreshProxy(self) -> None:
        """
        With proxy_sub_refresh the backend, not the client, extends an expiring subscription: at expiry the
        sub refresh proxy is asked; a new expire_at (and info) keeps it, "expired" ends it with unsubscribe 2501.
        """
        answers: list[dict] = [{"result": {"expire_at": int(NOW) + 100, "info": {"fresh": 1}}}]
        backend = Backend(lambda body: answers.pop(0))
        node = self.node(
            backend=backend, proxy_sub_refresh_endpoint="http://backend/sub_refresh",
            allow_anonymous_connect_without_token=True,
            namespaces=[{"name": "ns", "proxy_sub_refresh": True}],
        )
        client, transport = self.client(node, token(sub="alice", exp=int(NOW) + 3600))
        self.ok(client, transport, "subscribe",
                {"channel": "ns:a", "token": token(sub="alice", channel="ns:a", exp=int(NOW) + 30)})
        self.tick(60)  # checked on the presence timer (27 s): at 54 s the subscription has expired
        self.assertEqual(backend.last["path"], "/sub_refresh")
        self.assertEqual(client.subs["ns:a"].chanInfo, b'{"fresh":1}')
        answers.append({"result": {"expired": True}})
        self.tick(100)
        self.assertEqual(
            self.pushes(transport, "unsubscribe", "ns:a"),
            [{"channel": "ns:a", "unsubscribe": {"code": 2501, "reason": "subscription expired"}}],
        )
        self.assertNotIn("ns:a", client.subs)


class DeltaTestsMixin(ChannelHelpers):
    """Fossil delta publications (reference/messages.md section 4; httpstream.protocol.delta)."""

    DELTA: ClassVar[dict[str, Any]] = {**ANONYMOUS, **SUBSCRIBE, **HISTORY, "allow_recovery": True, "allowed_delta_types": ["fossil"],
             "delta_publish": True}

    @staticmethod
    def payload(n: int) -> bytes:
        return orjson.dumps({"text": "the same long text in every publication " * 3, "n": n, "caf\u00e9": "\u00e9t\u00e9"})

    def data(self, pub: dict[str, Any]) -> bytes:
        """The bytes a delta subscription's C{data} stands for: JSON carries them as a JSON string."""
        if self.protocol == "json":
            return orjson.loads(pub["data"]).encode("utf-8")
        return pub["data"]

    def apply(self, publications: list[dict[str, Any]], base: bytes | None = None) -> list[bytes]:
        """What an SDK makes of delta publications: each delta applied to the last full value."""
        values = []
        for pub in publications:
            data = self.data(pub)
            if pub.get("delta"):
                assert base is not None, "a delta without base"
                data = applyFossilDelta(base, data)
            values.append(data)
            base = data
        return values

    def subscribe(self, node: Node, **request: Any) -> tuple[Client, FakeTransport, dict]:
        client, transport = self.client(node)
        result = self.ok(client, transport, "subscribe", {"channel": "news", "delta": "fossil", **request})
        return client, transport, result

    def test_payloadParsedOnce(self) -> None:
        """
        A publication's payload is parsed once on its way out to JSON subscribers, whatever variants they take
        (plain, full, delta): the codec checks the plain data, and the JSON strings the node writes for delta
        subscriptions are embedded as they are.
        """
        node = self.node(**self.DELTA)
        transports = []
        for request in ({"delta": "fossil"}, {"delta": "fossil"}, {}):
            transport = FakeTransport("json")
            node.newClient(transport).handleData(encodeCommands("json", [
                {"id": 1, "connect": {}}, {"id": 2, "subscribe": {"channel": "news", **request}},
            ]))
            transports.append(transport)
        self.clock.advance(0)
        parsed: list[bytes] = []

        class Counting:
            def __getattr__(self, name: str) -> Any:
                return getattr(orjson, name)

            def loads(self, data: Any) -> Any:
                parsed.append(bytes(data))
                return orjson.loads(data)

        self.patch(codec, "orjson", Counting())
        for n in range(3):
            self.publish(node, "news", self.payload(n))
        self.assertEqual(parsed, [self.payload(n) for n in range(3)])
        for transport in transports:
            pubs = [reply["push"]["pub"] for reply in transport.replies() if "pub" in reply.get("push", {})]
            self.assertEqual(len(pubs), 3)
        deltas = [reply["push"]["pub"].get("delta", False) for reply in transports[0].replies() if "push" in reply]
        self.assertEqual(deltas, [False, True, True])

    def test_negotiation(self) -> None:
        """
        delta "fossil" is granted where the channel's allowed_delta_types has it, else the result has no
        delta; any other delta type is a protocol error (3501).
        """
        for name, allowed, asked, expected in (
            ("allowed", ["fossil"], "fossil", True),
            ("not allowed", [], "fossil", False),
            ("not asked", ["fossil"], "", False),
            ("unknown type", ["fossil"], "xdelta", None),
        ):
            node = self.node(**ANONYMOUS, **SUBSCRIBE, allowed_delta_types=allowed)
            client, transport = self.client(node)
            reply = self.call(client, transport, "subscribe", {"channel": "news", "delta": asked})
            if expected is None:
                self.assertIsNone(reply, name)
                self.assertDisconnected(transport, 3501, "bad request")
            else:
                assert reply is not None
                self.assertEqual(reply["subscribe"].get("delta", False), expected, name)

    def test_deltas(self) -> None:
        """
        The first publication after subscribing is full, the next ones deltas (delta true) that turn the
        previous value into the exact data; a subscriber without delta gets the plain data.
        """
        node = self.node(**self.DELTA)
        _, transport, result = self.subscribe(node)
        self.assertTrue(result["delta"])
        plainClient, plainTransport = self.client(node)
        self.ok(plainClient, plainTransport, "subscribe", {"channel": "news"})
        sent = [self.payload(n) for n in range(4)]
        for data in sent:
            self.publish(node, "news", data)
        pubs = [push["pub"] for push in self.pushes(transport, "pub")]
        self.assertEqual([pub.get("delta", False) for pub in pubs], [False, True, True, True])
        self.assertEqual(self.apply(pubs), sent)
        for pub in pubs[1:]:
            self.assertLess(len(pub["data"]), len(sent[0]) / 2)
        self.assertEqual([push["pub"]["data"] for push in self.pushes(plainTransport, "pub")], sent)

    def test_jsonFullPayloadIsAString(self) -> None:
        """Over JSON a delta subscription's full data is the payload as a JSON string; Protobuf keeps bytes."""
        node = self.node(**self.DELTA)
        _, transport, _ = self.subscribe(node)
        self.publish(node, "news", b'{"a":1}')
        [push] = self.pushes(transport, "pub")
        expected = b'"{\\"a\\":1}"' if self.protocol == "json" else b'{"a":1}'
        self.assertEqual(push["pub"], {"data": expected, "offset": 1})

    def test_withoutDeltaPublish(self) -> None:
        """Without delta_publish there is no base: every publication full (a JSON string over JSON)."""
        node = self.node(**{**self.DELTA, "delta_publish": False})
        _, transport, _ = self.subscribe(node)
        sent = [self.payload(n) for n in range(3)]
        for data in sent:
            self.publish(node, "news", data)
        pubs = [push["pub"] for push in self.pushes(transport, "pub")]
        self.assertEqual([pub.get("delta", False) for pub in pubs], [False] * 3)
        self.assertEqual([self.data(pub) for pub in pubs], sent)

    def test_latecomerStartsFull(self) -> None:
        """A subscriber joining mid-stream gets a full publication first, then deltas."""
        node = self.node(**self.DELTA)
        self.subscribe(node)
        self.publish(node, "news", self.payload(0))
        _, transport, _ = self.subscribe(node)
        sent = [self.payload(n) for n in (1, 2)]
        for data in sent:
            self.publish(node, "news", data)
        pubs = [push["pub"] for push in self.pushes(transport, "pub")]
        self.assertEqual([pub.get("delta", False) for pub in pubs], [False, True])
        self.assertEqual(self.apply(pubs), sent)

    def test_fullAfterGapAndRecovery(self) -> None:
        """
        After a gap (Unsubscribe 2500) the client resubscribes recovering: the recovered publications come
        first full then as deltas against each other, and the next live one is a delta against the last.
        """
        node = self.node(**self.DELTA)
        client, transport, _ = self.subscribe(node, recoverable=True)
        first = self.payload(0)
        self.publish(node, "news", first)
        epoch = self.successResultOf(node.broker.history("news")).epoch
        missed = [self.payload(n) for n in (1, 2, 3)]
        # The stream keeps them all, but this node misses the first two (the memory broker delivers only to
        # channels it has subscribed).
        node.broker.channels.discard("news")
        for data in missed[:2]:
            self.publish(node, "news", data)
        node.broker.channels.add("news")
        self.publish(node, "news", missed[2])
        self.clock.advance(0)
        self.assertEqual(
            self.pushes(transport, "unsubscribe"),
            [{"channel": "news", "unsubscribe": {"code": 2500, "reason": "insufficient state"}}],
        )
        result = self.ok(client, transport, "subscribe", {
            "channel": "news", "delta": "fossil", "recoverable": True, "recover": True, "offset": 1, "epoch": epoch,
        })
        self.assertTrue(result["recovered"])
        recovered = result["publications"]
        self.assertEqual([pub.get("delta", False) for pub in recovered], [False, True, True])
        self.assertEqual(self.apply(recovered), missed)
        live = self.payload(4)
        self.publish(node, "news", live)
        [push] = self.pushes(transport, "pub")[1:]
        self.assertTrue(push["pub"].get("delta"))
        self.assertEqual(self.apply([push["pub"]], base=missed[-1]), [live])

    def test_encodedOncePerChannel(self) -> None:
        """Subscribers of one protocol and variant share one encoded push per publication."""
        node = self.node(**self.DELTA)
        transports = [self.subscribe(node)[1] for _ in range(3)]
        for n in range(2):
            self.publish(node, "news", self.payload(n))
        for index in (-2, -1):
            first = transports[0].messages[index]
            for transport in transports[1:]:
                self.assertIs(transport.messages[index], first)


class JSONChannelTests(ChannelTestsMixin, SynchronousTestCase):
    protocol = "json"


class ProtobufChannelTests(ChannelTestsMixin, SynchronousTestCase):
    protocol = "protobuf"


class JSONDeltaTests(DeltaTestsMixin, SynchronousTestCase):
    protocol = "json"


class ProtobufDeltaTests(DeltaTestsMixin, SynchronousTestCase):
    protocol = "protobuf"
