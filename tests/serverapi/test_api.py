"""
The server API in memory (reference/messages.md section 8): L{httpstream.serverapi.api.ServerAPI} on a node with fake
connections, each method's request and result shapes and its errors, batch ordering, idempotent publishing on a
L{Clock}; and L{httpstream.serverapi.http.APIHandler} through the Klein app with C{treq.testing.StubTreq}: the ways a key
is given, the error modes, and the HTTP statuses of refused requests.
"""

from __future__ import annotations

import base64
import json
from typing import Any, Callable

import jwt
import orjson
from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from httpstream import logs
from httpstream.engines.idempotency import DEFAULT_RESULT_TTL as IDEMPOTENCY_WINDOW
from httpstream.serverapi.api import BAD_REQUEST_LOG_INTERVAL, APIError, ServerAPI
from httpstream.client.client import Client
from httpstream.serverapi.http import MAX_BODY
from httpstream.origin import OriginChecker
from httpstream.policy.rpc import RPCError
from httpstream.testing import FakeTransport, connectClient, encodeCommands, makeNode
from httpstream.web.app import makeApp

SECRET = "api-test-secret-0123456789abcdef0123456789"
KEY = "the-api-key"

SETTINGS: dict[str, Any] = {
    "token_hmac_secret_key": SECRET,
    "allow_subscribe_for_client": True,
    "namespaces": [
        {
            "name": "chat",
            "presence": True,
            "join_leave": True,
            "allow_subscribe_for_client": True,
            "allow_publish_for_client": True,
            "history_size": 10,
            "history_ttl": "1h",
        },
        {"name": "plain"},
    ],
    "api_key": KEY,
}


def token(user: str, **claims: Any) -> str:
    return jwt.encode({"sub": user, **claims}, SECRET, algorithm="HS256")


class APITestCase(SynchronousTestCase):
    """A node on a Clock, its ServerAPI, and helpers to connect users and run calls."""

    settings: dict[str, Any] = SETTINGS

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.node = makeNode(self.settings, self.clock)
        self.api = ServerAPI(self.node)

    def connect(
        self, user: str, channels: tuple[str, ...] = (), protocol: str = "json"
    ) -> tuple[Client, FakeTransport]:
        """A connected client of C{user} (subscribed to C{channels}), its transport cleared of the replies so far."""
        client, transport = connectClient(self.node, FakeTransport(protocol), token=token(user))
        self.clock.advance(0)
        assert transport.replies()[0].get("connect"), transport.replies()
        for index, channel in enumerate(channels, start=2):
            client.handleData(encodeCommands(protocol, [{"id": index, "subscribe": {"channel": channel}}]))
            self.clock.advance(0)
        assert not [r for r in transport.replies() if "error" in r], transport.replies()
        transport.clear()
        return client, transport

    def pushes(self, transport: FakeTransport) -> list[dict[str, Any]]:
        self.clock.advance(0)
        return [reply["push"] for reply in transport.replies() if "push" in reply]

    def ok(self, d: Deferred[dict]) -> dict:
        self.clock.advance(0)
        return self.successResultOf(d)

    def error(self, d: Deferred[Any]) -> int:
        """The code of the API error the call failed with."""
        self.clock.advance(0)
        return self.failureResultOf(d, APIError).value.error.code


class PublishTests(APITestCase):
    def test_publishReachesSubscribers(self) -> None:
        """A publication reaches every subscriber (not others); without history the result is empty."""
        _, alice = self.connect("alice", ("news",))
        _, bob = self.connect("bob", ("news",))
        _, carol = self.connect("carol", ("other",))
        self.assertEqual(self.ok(self.api.publish(channel="news", data=b'{"text":"hi"}')), {})
        for transport in (alice, bob):
            self.assertEqual(self.pushes(transport), [{"channel": "news", "pub": {"data": b'{"text":"hi"}'}}])
        self.assertEqual(self.pushes(carol), [])

    def test_publishWithHistory(self) -> None:
        """In a namespace with history the result is the stream position, the same as history's."""
        first = self.ok(self.api.publish(channel="chat:room", data=b"1"))
        second = self.ok(self.api.publish(channel="chat:room", data=b"2"))
        self.assertEqual(first["offset"], 1)
        self.assertEqual(second["offset"], 2)
        self.assertEqual(first["epoch"], second["epoch"])
        self.assertTrue(first["epoch"])
        history = self.ok(self.api.history(channel="chat:room", limit=-1))
        self.assertEqual((history["offset"], history["epoch"]), (2, first["epoch"]))

    def test_skipHistory(self) -> None:
        self.ok(self.api.publish(channel="chat:room", data=b"1", skip_history=True))
        self.assertEqual(self.ok(self.api.history(channel="chat:room", limit=-1))["publications"], [])

    def test_tags(self) -> None:
        _, alice = self.connect("alice", ("news",))
        self.ok(self.api.publish(channel="news", data=b"1", tags={"kind": "x"}))
        self.assertEqual(self.pushes(alice), [{"channel": "news", "pub": {"data": b"1", "tags": {"kind": "x"}}}])

    def test_b64data(self) -> None:
        """b64data is decoded and published as the raw bytes; it wins over data."""
        _, alice = self.connect("alice", ("news",))
        encoded = base64.b64encode(b'{"binary":true}').decode()
        self.ok(self.api.publish(channel="news", data=b'"ignored"', b64data=encoded))
        self.assertEqual(self.pushes(alice), [{"channel": "news", "pub": {"data": b'{"binary":true}'}}])

    def test_badRequests(self) -> None:
        """107 without channel or data, with bad base64; 102 for a namespace that is not configured."""
        self.assertEqual(self.error(self.api.publish(data=b"1")), 107)
        self.assertEqual(self.error(self.api.publish(channel="", data=b"1")), 107)
        self.assertEqual(self.error(self.api.publish(channel="news")), 107)
        self.assertEqual(self.error(self.api.publish(channel="news", data=b"")), 107)
        self.assertEqual(self.error(self.api.publish(channel="news", b64data="not base64!")), 107)
        self.assertEqual(self.error(self.api.publish(channel="nope:x", data=b"1")), 102)

    def test_idempotencyKey(self) -> None:
        """
        The same key on the same channel within 5 minutes publishes once and answers the first result again;
        another channel or an expired window publishes anew.
        """
        first = self.ok(self.api.publish(channel="chat:a", data=b"1", idempotency_key="k"))
        again = self.ok(self.api.publish(channel="chat:a", data=b"2", idempotency_key="k"))
        self.assertEqual(again, first)
        self.assertEqual(self.ok(self.api.publish(channel="chat:b", data=b"3", idempotency_key="k"))["offset"], 1)
        self.assertEqual(
            [p["data"] for p in self.ok(self.api.history(channel="chat:a", limit=-1))["publications"]], [b"1"]
        )
        self.clock.advance(IDEMPOTENCY_WINDOW - 1)
        self.assertEqual(self.ok(self.api.publish(channel="chat:a", data=b"4", idempotency_key="k")), first)
        self.clock.advance(2)
        later = self.ok(self.api.publish(channel="chat:a", data=b"5", idempotency_key="k"))
        self.assertEqual(later["offset"], 2)
        self.assertEqual(
            [p["data"] for p in self.ok(self.api.history(channel="chat:a", limit=-1))["publications"]], [b"1", b"5"]
        )

    def test_idempotencyResultsExpire(self) -> None:
        """Remembered results are dropped once their window has passed (the cache does not grow forever)."""
        for n in range(50):
            self.ok(self.api.publish(channel="chat:a", data=b"1", idempotency_key=f"k{n}"))
        self.clock.advance(IDEMPOTENCY_WINDOW / 2)
        self.ok(self.api.publish(channel="chat:a", data=b"1", idempotency_key="late"))
        self.assertEqual(len(self.node.broker.idempotent.results), 51)
        self.clock.advance(IDEMPOTENCY_WINDOW / 2 + 1)
        self.ok(self.api.publish(channel="chat:a", data=b"1", idempotency_key="new"))
        self.assertEqual(set(self.node.broker.idempotent.results), {("chat:a", "late"), ("chat:a", "new")})

    def test_withoutIdempotencyKeyEveryCallPublishes(self) -> None:
        self.ok(self.api.publish(channel="chat:a", data=b"1"))
        self.ok(self.api.publish(channel="chat:a", data=b"1"))
        self.assertEqual(self.ok(self.api.history(channel="chat:a", limit=-1))["offset"], 2)

    def test_failedPublishIsNotRemembered(self) -> None:
        """A publish that failed may be retried with its key."""
        self.assertEqual(self.error(self.api.publish(channel="nope:x", data=b"1", idempotency_key="k")), 102)
        self.assertEqual(self.error(self.api.publish(channel="nope:x", data=b"1", idempotency_key="k")), 102)


class BroadcastTests(APITestCase):
    def test_responsesInChannelOrder(self) -> None:
        """One response per channel in the order given; a bad channel gets its error, the others publish."""
        _, alice = self.connect("alice", ("news",))
        result = self.ok(self.api.broadcast(channels=["chat:a", "nope:x", "news", ""], data=b'"x"'))
        responses = result["responses"]
        self.assertEqual(len(responses), 4)
        self.assertEqual(responses[0]["result"]["offset"], 1)
        self.assertEqual(responses[1], {"error": {"code": 102, "message": "unknown channel"}})
        self.assertEqual(responses[2], {"result": {}})
        self.assertEqual(responses[3], {"error": {"code": 107, "message": "bad request"}})
        self.assertEqual(self.pushes(alice), [{"channel": "news", "pub": {"data": b'"x"'}}])

    def test_badRequests(self) -> None:
        self.assertEqual(self.error(self.api.broadcast(channels=[], data=b"1")), 107)
        self.assertEqual(self.error(self.api.broadcast(data=b"1")), 107)
        self.assertEqual(self.error(self.api.broadcast(channels=["news"])), 107)
        self.assertEqual(self.error(self.api.broadcast(channels="news", data=b"1")), 107)

    def test_idempotencyPerChannel(self) -> None:
        self.ok(self.api.publish(channel="chat:a", data=b"1", idempotency_key="k"))
        result = self.ok(self.api.broadcast(channels=["chat:a", "chat:b"], data=b"2", idempotency_key="k"))
        self.assertEqual([r["result"]["offset"] for r in result["responses"]], [1, 1])
        self.assertEqual(self.ok(self.api.history(channel="chat:a", limit=-1))["offset"], 1)
        self.assertEqual(self.ok(self.api.history(channel="chat:b", limit=-1))["offset"], 1)


class ConnectionControlTests(APITestCase):
    def test_disconnectDefault(self) -> None:
        """Every connection of the user gets 3503 "force disconnect" (pushed on http_stream); others stay."""
        _, first = self.connect("alice")
        _, second = self.connect("alice")
        _, bob = self.connect("bob")
        self.assertEqual(self.ok(self.api.disconnect(user="alice")), {})
        for transport in (first, second):
            self.assertEqual(self.pushes(transport), [{"disconnect": {"code": 3503, "reason": "force disconnect"}}])
            self.assertEqual(transport.closed, (3503, "force disconnect"))
        self.assertIsNone(bob.closed)
        self.assertEqual(self.ok(self.api.info())["nodes"][0]["num_clients"], 1)

    def test_disconnectCustom(self) -> None:
        _, alice = self.connect("alice")
        self.ok(self.api.disconnect(user="alice", disconnect={"code": 4501, "reason": "bye"}))
        self.assertEqual(alice.closed, (4501, "bye"))

    def test_disconnectClientAndWhitelist(self) -> None:
        _, firstTransport = self.connect("alice")
        second, secondTransport = self.connect("alice")
        third, thirdTransport = self.connect("alice")
        self.ok(self.api.disconnect(user="alice", client=second.clientID))
        self.assertEqual(
            [t.closed for t in (firstTransport, secondTransport, thirdTransport)],
            [None, (3503, "force disconnect"), None],
        )
        self.ok(self.api.disconnect(user="alice", whitelist=[third.clientID]))
        self.assertEqual(firstTransport.closed, (3503, "force disconnect"))
        self.assertIsNone(thirdTransport.closed)

    def test_disconnectSession(self) -> None:
        first, firstTransport = self.connect("alice")
        _, secondTransport = self.connect("alice")
        self.ok(self.api.disconnect(user="alice", session=first.sessionID))
        self.assertEqual(firstTransport.closed, (3503, "force disconnect"))
        self.assertIsNone(secondTransport.closed)

    def test_userRequired(self) -> None:
        for method in ("disconnect", "unsubscribe", "subscribe", "refresh"):
            self.assertEqual(self.error(self.api.call(method, {"channel": "news"})), 107, method)

    def test_unsubscribe(self) -> None:
        """The user's connections get an unsubscribe push with 2000 "server unsubscribe" and stop receiving."""
        _, alice = self.connect("alice", ("news", "chat:a"))
        _, bob = self.connect("bob", ("news",))
        self.assertEqual(self.ok(self.api.unsubscribe(user="alice", channel="news")), {})
        self.assertEqual(
            self.pushes(alice), [{"channel": "news", "unsubscribe": {"code": 2000, "reason": "server unsubscribe"}}]
        )
        alice.clear()
        self.ok(self.api.publish(channel="news", data=b"1"))
        self.assertEqual(self.pushes(alice), [])
        self.assertEqual(self.pushes(bob), [{"channel": "news", "pub": {"data": b"1"}}])

    def test_unsubscribeEveryChannel(self) -> None:
        """Without a channel: from every channel the user is subscribed to."""
        client, alice = self.connect("alice", ("news", "chat:a"))
        self.ok(self.api.unsubscribe(user="alice"))
        unsubscribed = {p["channel"] for p in self.pushes(alice) if "unsubscribe" in p}
        self.assertEqual(unsubscribed, {"news", "chat:a"})
        self.assertEqual(client.subs, {})

    def test_unsubscribeUnknownNamespace(self) -> None:
        self.assertEqual(self.error(self.api.unsubscribe(user="alice", channel="nope:x")), 102)

    def test_subscribe(self) -> None:
        """A server-side subscribe pushes subscribe to the user's connections; they then receive publications."""
        _, alice = self.connect("alice")
        _, bob = self.connect("bob")
        self.assertEqual(self.ok(self.api.subscribe(user="alice", channel="news")), {})
        self.assertEqual(self.pushes(alice), [{"channel": "news", "subscribe": {}}])
        alice.clear()
        self.ok(self.api.publish(channel="news", data=b"1"))
        self.assertEqual(self.pushes(alice), [{"channel": "news", "pub": {"data": b"1"}}])
        self.assertEqual(self.pushes(bob), [])

    def test_subscribeErrors(self) -> None:
        self.assertEqual(self.error(self.api.subscribe(user="alice", channel="nope:x")), 102)
        self.assertEqual(self.error(self.api.subscribe(user="alice")), 107)

    def test_refreshExpired(self) -> None:
        _, alice = self.connect("alice")
        self.ok(self.api.refresh(user="alice", expired=True))
        self.assertEqual(alice.closed, (3005, "connection expired"))

    def test_refreshExpireAt(self) -> None:
        """A new expiry time is pushed as a refresh with the ttl left."""
        _, alice = self.connect("alice")
        self.ok(self.api.refresh(user="alice", expire_at=int(self.clock.seconds()) + 600))
        self.assertEqual(self.pushes(alice), [{"refresh": {"expires": True, "ttl": 600}}])
        self.assertIsNone(alice.closed)


class ChannelTests(APITestCase):
    def test_presence(self) -> None:
        """Presence: client id -> {user, client}; stats count clients and distinct users."""
        a1, _ = self.connect("alice", ("chat:room",))
        a2, _ = self.connect("alice", ("chat:room",))
        b, _ = self.connect("bob", ("chat:room",))
        presence = self.ok(self.api.presence(channel="chat:room"))["presence"]
        self.assertEqual(set(presence), {a1.clientID, a2.clientID, b.clientID})
        self.assertEqual(presence[b.clientID]["user"], "bob")
        self.assertEqual(presence[b.clientID]["client"], b.clientID)
        self.assertEqual(
            self.ok(self.api.presence_stats(channel="chat:room")), {"num_clients": 3, "num_users": 2}
        )
        self.assertEqual(self.ok(self.api.presence(channel="chat:empty")), {"presence": {}})
        self.assertEqual(self.ok(self.api.presence_stats(channel="chat:empty")), {"num_clients": 0, "num_users": 0})

    def test_presenceErrors(self) -> None:
        """108 where presence is off, 102 for an unknown namespace, 107 without channel."""
        for method in ("presence", "presence_stats"):
            self.assertEqual(self.error(self.api.call(method, {"channel": "news"})), 108)
            self.assertEqual(self.error(self.api.call(method, {"channel": "nope:x"})), 102)
            self.assertEqual(self.error(self.api.call(method, {})), 107)

    def test_history(self) -> None:
        for n in range(1, 6):
            self.ok(self.api.publish(channel="chat:h", data=str(n).encode(), tags={"n": str(n)} if n == 5 else None))
        everything = self.ok(self.api.history(channel="chat:h", limit=-1))
        epoch = everything["epoch"]
        self.assertEqual([p["data"] for p in everything["publications"]], [b"1", b"2", b"3", b"4", b"5"])
        self.assertEqual([p["offset"] for p in everything["publications"]], [1, 2, 3, 4, 5])
        self.assertEqual(everything["publications"][4]["tags"], {"n": "5"})
        self.assertEqual(everything["offset"], 5)
        # Without limit: only the position (Centrifugo's API).
        self.assertEqual(self.ok(self.api.history(channel="chat:h")), {"publications": [], "offset": 5, "epoch": epoch})
        limited = self.ok(self.api.history(channel="chat:h", limit=2))
        self.assertEqual([p["offset"] for p in limited["publications"]], [1, 2])
        since = self.ok(self.api.history(channel="chat:h", limit=-1, since={"offset": 3, "epoch": epoch}))
        self.assertEqual([p["offset"] for p in since["publications"]], [4, 5])
        reverse = self.ok(self.api.history(channel="chat:h", limit=2, reverse=True))
        self.assertEqual([p["offset"] for p in reverse["publications"]], [5, 4])

    def test_historyErrors(self) -> None:
        """112 for a since position of another epoch, 108 without history, 102, 107."""
        self.ok(self.api.publish(channel="chat:h", data=b"1"))
        self.assertEqual(
            self.error(self.api.history(channel="chat:h", limit=-1, since={"offset": 1, "epoch": "other"})), 112
        )
        self.assertEqual(self.error(self.api.history(channel="news", limit=-1)), 108)
        self.assertEqual(self.error(self.api.history(channel="nope:x")), 102)
        self.assertEqual(self.error(self.api.call("history", {})), 107)

    def test_historyRemove(self) -> None:
        """The publications go; the stream's position stays."""
        self.ok(self.api.publish(channel="chat:h", data=b"1"))
        self.ok(self.api.publish(channel="chat:h", data=b"2"))
        self.assertEqual(self.ok(self.api.history_remove(channel="chat:h")), {})
        history = self.ok(self.api.history(channel="chat:h", limit=-1))
        self.assertEqual(history["publications"], [])
        self.assertEqual(history["offset"], 2)

    def test_historyRemoveErrors(self) -> None:
        self.assertEqual(self.error(self.api.history_remove(channel="news")), 108)
        self.assertEqual(self.error(self.api.history_remove(channel="nope:x")), 102)
        self.assertEqual(self.error(self.api.call("history_remove", {})), 107)

    def test_channels(self) -> None:
        """Channels with subscribers on this node and their counts, filtered by a glob."""
        self.connect("alice", ("chat:a", "chat:b", "news"))
        self.connect("bob", ("chat:a",))
        self.assertEqual(
            self.ok(self.api.channels()),
            {"channels": {"chat:a": {"num_clients": 2}, "chat:b": {"num_clients": 1}, "news": {"num_clients": 1}}},
        )
        self.assertEqual(
            self.ok(self.api.channels(pattern="chat:*")),
            {"channels": {"chat:a": {"num_clients": 2}, "chat:b": {"num_clients": 1}}},
        )
        self.assertEqual(self.ok(self.api.channels(pattern="c?at:{b,c}")), {"channels": {"chat:b": {"num_clients": 1}}})
        self.assertEqual(self.ok(self.api.channels(pattern="none*")), {"channels": {}})
        self.assertEqual(self.error(self.api.channels(pattern="[unclosed")), 107)

    def test_info(self) -> None:
        self.connect("alice", ("chat:a", "news"))
        self.connect("alice", ("chat:a",))
        self.connect("bob")
        self.clock.advance(42)
        (node,) = self.ok(self.api.info())["nodes"]
        self.assertEqual(
            node,
            {
                "uid": self.node.id, "name": "test", "version": self.node.version, "num_clients": 3, "num_users": 2,
                "num_channels": 2, "num_subs": 3, "uptime": 42,
            },
        )


class RPCAndBatchTests(APITestCase):
    def setUp(self) -> None:
        super().setUp()
        self.waiting: dict[str, Deferred[bytes]] = {}
        self.calls: list[str] = []

        def wait(ctx: Any, data: bytes) -> Deferred[bytes]:
            name = orjson.loads(data)
            self.calls.append(name)
            self.waiting[name] = Deferred()
            return self.waiting[name]

        def fail(ctx: Any, data: bytes) -> None:
            raise RPCError(4000, "custom failure")

        self.node.rpc.register("echo", lambda ctx, data: data)
        self.node.rpc.register("wait", wait)
        self.node.rpc.register("fail", fail)

    def test_rpc(self) -> None:
        self.assertEqual(self.ok(self.api.rpc(method="echo", params=b'{"x":1}')), {"data": b'{"x":1}'})
        self.assertEqual(self.error(self.api.rpc(method="missing")), 104)
        self.assertEqual(self.error(self.api.rpc()), 107)
        self.assertEqual(self.error(self.api.rpc(method="fail")), 4000)

    def test_unknownMethodAndBadRequest(self) -> None:
        self.assertEqual(self.error(self.api.call("no_such_method", {})), 104)
        self.assertEqual(self.error(self.api.call("publish", ["not", "an", "object"])), 107)  # type: ignore[arg-type]

    def test_batchSequential(self) -> None:
        """Commands run one after the other: a later one sees what an earlier one did; replies keyed by method."""
        d = self.api.batch(commands=[
            {"publish": {"channel": "chat:a", "data": b"1"}},
            {"rpc": {"method": "wait", "params": b'"first"'}},
            {"history": {"channel": "chat:a", "limit": -1}},
            {"presence": {"channel": "nope:x"}},
            {"nonsense": {}},
            {"publish": {}, "info": {}},
        ])
        self.clock.advance(0)
        self.assertNoResult(d)
        self.assertEqual(self.calls, ["first"])
        self.waiting["first"].callback(b'"done"')
        replies = self.ok(d)["replies"]
        self.assertEqual(replies[0]["publish"]["offset"], 1)
        self.assertEqual(replies[1], {"rpc": {"data": b'"done"'}})
        self.assertEqual([p["data"] for p in replies[2]["history"]["publications"]], [b"1"])
        self.assertEqual(replies[3], {"error": {"code": 102, "message": "unknown channel"}})
        self.assertEqual(replies[4], {"error": {"code": 104, "message": "method not found"}})
        self.assertEqual(replies[5], {"error": {"code": 107, "message": "bad request"}})

    def test_batchSequentialWaits(self) -> None:
        """A command does not start before the one before it has finished."""
        d = self.api.batch(commands=[
            {"rpc": {"method": "wait", "params": b'"a"'}},
            {"rpc": {"method": "wait", "params": b'"b"'}},
        ])
        self.assertEqual(self.calls, ["a"])
        self.waiting["a"].callback(b"1")
        self.assertEqual(self.calls, ["a", "b"])
        self.waiting["b"].callback(b"2")
        self.assertEqual(self.ok(d)["replies"], [{"rpc": {"data": b"1"}}, {"rpc": {"data": b"2"}}])

    def test_batchParallel(self) -> None:
        """parallel: every command starts at once; replies stay in command order whatever order they finish in."""
        d = self.api.batch(parallel=True, commands=[
            {"rpc": {"method": "wait", "params": b'"a"'}},
            {"rpc": {"method": "wait", "params": b'"b"'}},
            {"rpc": {"method": "missing"}},
        ])
        self.assertEqual(self.calls, ["a", "b"])
        self.waiting["b"].callback(b'"B"')
        self.assertNoResult(d)
        self.waiting["a"].callback(b'"A"')
        self.assertEqual(
            self.ok(d)["replies"],
            [
                {"rpc": {"data": b'"A"'}},
                {"rpc": {"data": b'"B"'}},
                {"error": {"code": 104, "message": "method not found"}},
            ],
        )

    def test_batchBadRequest(self) -> None:
        self.assertEqual(self.error(self.api.batch(commands={"publish": {}})), 107)
        self.assertEqual(self.ok(self.api.batch(commands=[])), {"replies": []})


class _Observed:
    """Log events of httpstream at every level while a test runs (the log_level filter lowered to debug)."""

    def __init__(self, case: SynchronousTestCase) -> None:
        self.events: list[dict[str, Any]] = []
        previous = logs.threshold.level
        logs.threshold.level = LogLevel.debug
        globalLogPublisher.addObserver(self.events.append)
        case.addCleanup(globalLogPublisher.removeObserver, self.events.append)
        case.addCleanup(setattr, logs.threshold, "level", previous)

    def at(self, level: LogLevel) -> list[str]:
        return [formatEvent(e) for e in self.events if e.get("log_level") == level
                and e.get("log_namespace", "").startswith("httpstream")]


class InputBoundaryTests(APITestCase):
    """Every field is decoded by type: a wrong one is 107 "bad request", never a fault (issue 14, P2)."""

    BAD: list[tuple[str, dict[str, Any]]] = [
        ("publish", {"channel": "chat:a", "data": b"1", "idempotency_key": ["a"]}),
        ("publish", {"channel": "chat:a", "data": b"1", "tags": ["a"]}),
        ("publish", {"channel": "chat:a", "data": b"1", "tags": {"k": 1}}),
        ("publish", {"channel": "chat:a", "b64data": 5}),
        ("publish", {"channel": ["chat:a"], "data": b"1"}),
        ("publish", {"channel": "chat:a", "data": b"1", "skip_history": "yes"}),
        ("broadcast", {"channels": ["chat:a", 5], "data": b"1"}),
        ("disconnect", {"user": "alice", "disconnect": "now"}),
        ("disconnect", {"user": "alice", "disconnect": {"code": "4000"}}),
        ("disconnect", {"user": "alice", "disconnect": {"code": -5}}),
        ("disconnect", {"user": "alice", "disconnect": {"code": 2**32}}),
        ("disconnect", {"user": "alice", "disconnect": {"code": 4000.5}}),
        ("disconnect", {"user": "alice", "disconnect": {"code": True}}),
        ("disconnect", {"user": "alice", "disconnect": {"code": 4000, "reason": 1}}),
        ("disconnect", {"user": "alice", "whitelist": "c1"}),
        ("disconnect", {"user": "alice", "whitelist": [1]}),
        ("disconnect", {"user": 5}),
        ("subscribe", {"user": "alice", "channel": "news", "override": {"presence": True}}),
        ("subscribe", {"user": "alice", "channel": "news", "recover_since": {"offset": -1}}),
        ("subscribe", {"user": "alice", "channel": "news", "expire_at": "soon"}),
        ("unsubscribe", {"user": "alice", "channel": 1}),
        ("refresh", {"user": "alice", "expire_at": 1.5}),
        ("refresh", {"user": "alice", "expired": 1}),
        ("refresh", {"user": "alice", "b64info": "%%%"}),
        ("history", {"channel": "chat:a", "limit": "10"}),
        ("history", {"channel": "chat:a", "limit": 2**31}),
        ("history", {"channel": "chat:a", "since": 5}),
        ("history", {"channel": "chat:a", "since": {"offset": "1"}}),
        ("history", {"channel": "chat:a", "since": {"offset": -1}}),
        ("history", {"channel": "chat:a", "since": {"offset": 1, "epoch": 7}}),
        ("history", {"channel": "chat:a", "reverse": "true"}),
        ("history_remove", {"channel": {}}),
        ("presence", {"channel": None, "x": 1} | {"channel": 3}),
        ("presence_stats", {"channel": [1]}),
        ("channels", {"pattern": 5}),
        ("rpc", {"method": 5}),
        ("batch", {"commands": {"publish": {}}}),
        ("batch", {"commands": [], "parallel": "yes"}),
    ]

    def test_wrongFieldIsBadRequest(self) -> None:
        """
        Each wrong field answers 107; none is logged as a fault (a traceback would fail the test); the node
        goes on serving. Before the readers, several of these were 100 with a traceback (an unhashable
        idempotency_key, int() of a disconnect code, set() of a whitelist, since.get of a number, ...).
        """
        self.connect("alice", ("news",))
        for method, request in self.BAD:
            self.assertEqual(self.error(self.api.call(method, request)), 107, (method, request))
        self.assertEqual(self.ok(self.api.publish(channel="chat:a", data=b"1"))["offset"], 1)

    def test_notAnObject(self) -> None:
        for request in (None, [], "x", 5):
            self.assertEqual(self.error(self.api.call("info", request)), 107)  # type: ignore[arg-type]

    def test_badRequestNamesTheField(self) -> None:
        """The field's path is in the log: at info once per interval (with the count left out), else at debug."""
        observed = _Observed(self)
        for _ in range(3):
            self.error(self.api.history(channel="chat:a", since={"offset": "x"}))
        info = observed.at(LogLevel.info)
        self.assertEqual(len(info), 1, info)
        self.assertIn("since.offset", info[0])
        self.assertEqual(len(observed.at(LogLevel.debug)), 2)
        self.clock.advance(BAD_REQUEST_LOG_INTERVAL)
        self.error(self.api.publish(channel="chat:a", data=b"1", tags={"k": 1}))
        info = observed.at(LogLevel.info)
        self.assertEqual(len(info), 2, info)
        self.assertIn("tags.k", info[1])
        self.assertIn("2 more", info[1])

    def test_disconnectCodeAnyUint32(self) -> None:
        """Centrifugo takes any uint32 code (apiproto Disconnect.code); what a transport can carry is its own."""
        _, alice = self.connect("alice")
        self.ok(self.api.disconnect(user="alice", disconnect={"code": 70000, "reason": "x"}))
        self.assertEqual(alice.closed, (70000, "x"))

    def test_sinceTyped(self) -> None:
        """A well-typed since reaches the engine (offset 0 with reverse is the engine's 107; a wrong epoch 112)."""
        self.ok(self.api.publish(channel="chat:a", data=b"1"))
        result = self.ok(self.api.history(channel="chat:a", limit=-1, since={"offset": 0}))
        self.assertEqual([p["data"] for p in result["publications"]], [b"1"])
        self.assertEqual(self.error(self.api.history(channel="chat:a", since={"offset": 0}, reverse=True)), 107)
        self.assertEqual(self.error(self.api.history(channel="chat:a", since={"offset": 0, "epoch": "no"})), 112)
        self.assertEqual(self.ok(self.api.history(channel="chat:a", since={"offset": 2**64 - 1}))["offset"], 1)


class FaultTests(APITestCase):
    """100 only for faults of the server: each logged once, with a request id that the reply does not carry."""

    def test_disconnectGoesOnPastAFailingConnection(self) -> None:
        """
        A connection whose disconnect raises does not stop the loop: the user's other connections are
        disconnected, the failure is logged once, and the call answers 100 (issue 14, P1: the loop stopped at the
        first, and the others stayed connected).
        """
        first, _ = self.connect("alice")
        _, second = self.connect("alice")

        disconnect = Client.disconnect

        def broken(client: Client, code: int, reason: str) -> None:
            if client is first:
                raise ValueError(f"invalid close code {code}")
            disconnect(client, code, reason)

        # On the class: a Client has __slots__, so no method of one instance can be replaced.
        self.patch(Client, "disconnect", broken)
        observed = _Observed(self)
        self.assertEqual(self.error(self.api.disconnect(user="alice")), 100)
        self.assertEqual(second.closed, (3503, "force disconnect"))
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        (line,) = observed.at(LogLevel.error)
        self.assertIn("request", line)
        self.assertIn("1 of 2 connections failed", line)

    def test_unsubscribeAndRefreshGoOn(self) -> None:
        """The same for unsubscribe and refresh: one connection that raises does not keep the others."""
        clients = [self.connect("alice", ("news",))[0] for _ in range(2)]

        def breaking(name: str) -> Callable[..., Any]:
            method = getattr(Client, name)

            def broken(client: Client, *args: Any, **kwargs: Any) -> Any:
                if client is clients[0]:
                    raise RuntimeError("broken connection")
                return method(client, *args, **kwargs)

            return broken

        # On the class: a Client has __slots__, so no method of one instance can be replaced.
        self.patch(Client, "serverUnsubscribe", breaking("serverUnsubscribe"))
        self.patch(Client, "serverRefresh", breaking("serverRefresh"))
        self.assertEqual(self.error(self.api.unsubscribe(user="alice", channel="news")), 100)
        self.assertNotIn("news", clients[1].subs)
        self.assertEqual(self.error(self.api.refresh(user="alice", expired=True)), 100)
        self.assertTrue(clients[1].closed)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)

    def test_faultLoggedOnceWithRequestID(self) -> None:
        """An unexpected exception is one failure event naming a request id; the reply is a bare 100."""

        def broken(channel: str) -> Any:
            raise RuntimeError("boom")

        self.node.presence.presence = broken  # type: ignore[method-assign]
        observed = _Observed(self)
        error = self.failureResultOf(self.api.presence(channel="chat:a"), APIError).value.error
        self.assertEqual((error.code, error.message), (100, "internal server error"))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        (event,) = [e for e in observed.events if e.get("log_failure") is not None]
        self.assertRegex(formatEvent(event), r"api presence failed \(request [0-9a-f]{8}\)")


class BatchIndependenceTests(APITestCase):
    def test_eachCommandDecodedAlone(self) -> None:
        """A command with a wrong field gets 107 in its own reply; the others run; a batch in a batch is 104."""
        replies = self.ok(self.api.batch(commands=[
            {"publish": {"channel": "chat:a", "data": b"1", "tags": "x"}},
            {"publish": {"channel": "chat:a", "data": b"2"}},
            {"history": {"channel": "chat:a", "limit": "all"}},
            {"batch": {"commands": []}},
            None,
        ]))["replies"]
        self.assertEqual(replies[0], {"error": {"code": 107, "message": "bad request"}})
        self.assertEqual(replies[1]["publish"]["offset"], 1)
        self.assertEqual(replies[2], {"error": {"code": 107, "message": "bad request"}})
        self.assertEqual(replies[3], {"error": {"code": 104, "message": "method not found"}})
        self.assertEqual(replies[4], {"error": {"code": 107, "message": "bad request"}})


# The HTTP layer


class HTTPAPITests(SynchronousTestCase):
    """POST /api/<method> through the Klein app, as cent and backends call it."""

    def stub(self, **settings: Any) -> StubTreq:
        self.clock = Clock()
        self.node = makeNode({**SETTINGS, **settings}, self.clock)
        self.node.rpc.register("echo", lambda ctx, data: data)
        return StubTreq(makeApp(self.node, OriginChecker(())).resource())

    def call(
        self,
        method: str,
        body: bytes | dict | None = None,
        headers: dict[str, str] | None = None,
        query: str = "",
        verb: str = "POST",
        treq: StubTreq | None = None,
    ) -> tuple[int, bytes, Any]:
        """The status, body and response of one request (with X-API-Key: KEY unless headers are given)."""
        treq = treq or self.treq
        data = orjson.dumps(body) if isinstance(body, dict) else body
        if headers is None:
            headers = {"X-API-Key": KEY}
        d = treq.request(verb, f"http://127.0.0.1/api/{method}{query}", data=data, headers=headers)
        treq.flush()
        response = self.successResultOf(d)
        content = self.successResultOf(response.content())
        return response.code, content, response

    def setUp(self) -> None:
        self.treq = self.stub()

    def test_publishAndResult(self) -> None:
        """A success is {"result": ...}; data is raw JSON both ways (not a string)."""
        code, body, response = self.call("publish", {"channel": "chat:a", "data": {"text": "hi", "n": [1, 2]}})
        self.assertEqual(code, 200)
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["application/json"])
        result = json.loads(body)["result"]
        self.assertEqual(result["offset"], 1)
        code, body, _ = self.call("history", {"channel": "chat:a", "limit": 10})
        self.assertEqual(
            json.loads(body)["result"]["publications"], [{"data": {"text": "hi", "n": [1, 2]}, "offset": 1}]
        )

    def test_clientInfoEmbedded(self) -> None:
        """Presence and history carry a client's conn_info (from its token) as embedded JSON."""
        client, _ = connectClient(self.node, token=token("alice", info={"name": "Alice"}))
        client.handleData(encodeCommands("json", [
            {"id": 2, "subscribe": {"channel": "chat:a"}},
            {"id": 3, "publish": {"channel": "chat:a", "data": b'{"x":1}'}},
        ]))
        self.clock.advance(0)
        expected = {"user": "alice", "client": client.clientID, "conn_info": {"name": "Alice"}}
        _, body, _ = self.call("presence", {"channel": "chat:a"})
        self.assertEqual(json.loads(body), {"result": {"presence": {client.clientID: expected}}})
        _, body, _ = self.call("history", {"channel": "chat:a", "limit": 10})
        (publication,) = json.loads(body)["result"]["publications"]
        self.assertEqual(publication, {"data": {"x": 1}, "info": expected, "offset": 1})

    def test_b64data(self) -> None:
        encoded = base64.b64encode(b'{"from":"b64"}').decode()
        self.call("publish", {"channel": "chat:a", "b64data": encoded})
        _, body, _ = self.call("history", {"channel": "chat:a", "limit": 10})
        self.assertEqual(json.loads(body)["result"]["publications"][0]["data"], {"from": "b64"})

    def test_errorInBody(self) -> None:
        """By default an API error answers 200 with {"error": {code, message}} (no temporary)."""
        code, body, _ = self.call("publish", {"channel": "nope:x", "data": 1})
        self.assertEqual((code, json.loads(body)), (200, {"error": {"code": 102, "message": "unknown channel"}}))
        code, body, _ = self.call("no_such_method", {})
        self.assertEqual((code, json.loads(body)), (200, {"error": {"code": 104, "message": "method not found"}}))

    def test_transportErrorMode(self) -> None:
        """api_error_mode transport: statuses with a bare {code, message} body."""
        treq = self.stub(api_error_mode="transport")
        for method, body, status, code in [
            ("publish", {"channel": "nope:x", "data": 1}, 404, 102),
            ("publish", {"channel": "chat:a"}, 400, 107),
            ("presence", {"channel": "news"}, 400, 108),
            ("no_such_method", {}, 404, 104),
            ("history", {"channel": "chat:a", "limit": 1, "since": {"offset": 5, "epoch": "x"}}, 416, 112),
        ]:
            status_, content, _ = self.call(method, body, treq=treq)
            self.assertEqual((status_, json.loads(content)["code"]), (status, code), method)
            self.assertEqual(set(json.loads(content)), {"code", "message"})
        status_, content, _ = self.call("info", {}, treq=treq)
        self.assertEqual(status_, 200)
        self.assertIn("result", json.loads(content))

    def test_transportErrorModeHeader(self) -> None:
        """The header X-Centrifugo-Error-Mode: transport asks for it per request."""
        code, body, _ = self.call(
            "publish", {"channel": "nope:x", "data": 1},
            headers={"X-API-Key": KEY, "X-Centrifugo-Error-Mode": "transport"},
        )
        self.assertEqual((code, json.loads(body)), (404, {"code": 102, "message": "unknown channel"}))

    def test_internalErrorInTransportMode(self) -> None:
        def broken(ctx: Any, data: bytes) -> bytes:
            raise RuntimeError("boom")

        self.node.rpc.register("broken", broken)
        code, body, _ = self.call(
            "rpc", {"method": "broken"}, headers={"X-API-Key": KEY, "X-Centrifugo-Error-Mode": "transport"}
        )
        self.assertEqual((code, json.loads(body)), (500, {"code": 100, "message": "internal server error"}))
        self.flushLoggedErrors(RuntimeError)

    def test_batchRepliesAtTopLevel(self) -> None:
        code, body, _ = self.call("batch", {"commands": [
            {"publish": {"channel": "chat:a", "data": {"n": 1}}},
            {"info": {}},
            {"rpc": {"method": "echo", "params": {"p": True}}},
            {"presence": {"channel": "news"}},
        ]})
        self.assertEqual(code, 200)
        document = json.loads(body)
        self.assertEqual(set(document), {"replies"})
        replies = document["replies"]
        self.assertEqual(replies[0]["publish"]["offset"], 1)
        self.assertEqual(replies[1]["info"]["nodes"][0]["uid"], self.node.id)
        self.assertEqual(replies[2], {"rpc": {"data": {"p": True}}})
        self.assertEqual(replies[3], {"error": {"code": 108, "message": "not available"}})

    def test_keyHeaders(self) -> None:
        """X-API-Key, Authorization: apikey (any case of the scheme), ?api_key= all work."""
        for headers, query in [
            ({"X-API-Key": KEY}, ""),
            ({"Authorization": f"apikey {KEY}"}, ""),
            ({"Authorization": f"APIKey {KEY}"}, ""),
            ({"Authorization": f"ApiKey   {KEY}"}, ""),
            ({}, f"?api_key={KEY}"),
        ]:
            code, body, _ = self.call("info", {}, headers=headers, query=query)
            self.assertEqual(code, 200, (headers, query))
            self.assertIn("result", json.loads(body))

    def test_unauthorized(self) -> None:
        """A missing or wrong key, or another scheme: 401 with an empty body."""
        for headers, query in [
            ({}, ""),
            ({"X-API-Key": "wrong"}, ""),
            ({"X-API-Key": KEY[:-1]}, ""),
            ({"Authorization": f"Bearer {KEY}"}, ""),
            ({"Authorization": KEY}, ""),
            ({}, "?api_key=wrong"),
        ]:
            code, body, _ = self.call("info", {}, headers=headers, query=query)
            self.assertEqual((code, body), (401, b""), (headers, query))

    def test_emptyConfiguredKey(self) -> None:
        """No api_key configured: every call is refused, an empty key given too."""
        treq = self.stub(api_key="")
        for headers in ({}, {"X-API-Key": ""}, {"X-API-Key": "anything"}):
            code, body, _ = self.call("info", {}, headers=headers, treq=treq)
            self.assertEqual((code, body), (401, b""))

    def test_insecure(self) -> None:
        treq = self.stub(api_key="", api_insecure=True)
        code, body, _ = self.call("info", {}, headers={}, treq=treq)
        self.assertEqual(code, 200)
        self.assertEqual(json.loads(body)["result"]["nodes"][0]["uid"], self.node.id)

    def test_disabled(self) -> None:
        treq = self.stub(api_disable=True)
        code, _, _ = self.call("info", {}, treq=treq)
        self.assertEqual(code, 404)

    def test_methodNotAllowed(self) -> None:
        for verb in ("GET", "PUT", "DELETE"):
            code, body, _ = self.call("info", None, verb=verb)
            self.assertEqual((code, body), (405, b""), verb)

    def test_badJSON(self) -> None:
        for body in (b"{not json", b"[1, 2]", b'"text"', b"\xff\xfe"):
            code, content, _ = self.call("publish", body)
            self.assertEqual((code, content), (400, b""), body)

    def test_emptyBodyIsAnEmptyRequest(self) -> None:
        code, body, _ = self.call("info", b"")
        self.assertEqual(code, 200)
        self.assertIn("nodes", json.loads(body)["result"])
        code, body, _ = self.call("publish", b"")
        self.assertEqual(json.loads(body), {"error": {"code": 107, "message": "bad request"}})

    def test_tooLarge(self) -> None:
        code, body, _ = self.call("publish", b'{"channel":"chat:a","data":"' + b"x" * MAX_BODY + b'"}')
        self.assertEqual((code, body), (413, b""))

    def test_unauthorizedBeforeBody(self) -> None:
        """Without the key nothing about the body is told: bad JSON from a stranger is 401, not 400."""
        code, _, _ = self.call("publish", b"{not json", headers={})
        self.assertEqual(code, 401)

    def test_apiMetrics(self) -> None:
        """Calls are counted by method and result (ok or the error code), unknown methods as "unknown"."""
        self.call("info", {})
        self.call("info", {})
        self.call("publish", {"channel": "nope:x", "data": 1})
        self.call("whatever", {})
        registry = self.node.metrics.registry
        value = registry.get_sample_value
        self.assertEqual(value("httpstream_api_num_requests_total", {"method": "info", "result": "ok"}), 2)
        self.assertEqual(value("httpstream_api_num_requests_total", {"method": "publish", "result": "102"}), 1)
        self.assertEqual(value("httpstream_api_num_requests_total", {"method": "unknown", "result": "104"}), 1)
        self.assertEqual(value("httpstream_api_command_duration_seconds_count", {"method": "info"}), 2)

    def test_undecodableFieldIs107(self) -> None:
        """
        A field of the wrong type or range is the method's 107 (HTTP 400 in transport error mode); in a batch only
        that command fails, and the batch's own fields are its body's.
        """
        cases = [
            ("publish", {"channel": "chat:a", "data": 1, "tags": [1]}),
            ("disconnect", {"user": "alice", "disconnect": {"code": -5}}),
            ("history", {"channel": "chat:a", "since": {"offset": "1"}}),
            ("batch", {"commands": 5}),
        ]
        for method, body in cases:
            code, content, _ = self.call(method, body)
            self.assertEqual((code, json.loads(content)), (200, {"error": {"code": 107, "message": "bad request"}}))
            transport = {"X-API-Key": KEY, "X-Centrifugo-Error-Mode": "transport"}
            code, content, _ = self.call(method, body, headers=transport)
            self.assertEqual((code, json.loads(content)), (400, {"code": 107, "message": "bad request"}))
        code, body, _ = self.call("batch", {"commands": [
            {"publish": {"channel": "chat:a", "data": 1, "idempotency_key": {}}},
            {"publish": {"channel": "chat:a", "data": 2}},
        ]})
        replies = json.loads(body)["replies"]
        self.assertEqual((code, replies[0]), (200, {"error": {"code": 107, "message": "bad request"}}))
        self.assertEqual(replies[1]["publish"]["offset"], 1)

    def test_deepUnknownField(self) -> None:
        """An unknown field nested as deep as the JSON parser allows is ignored (raw fields are not walked)."""
        deep = b"[" * 1000 + b"]" * 1000
        code, body, _ = self.call("publish", b'{"channel":"chat:a","data":{"x":1},"extra":' + deep + b"}")
        self.assertEqual((code, json.loads(body)["result"]["offset"]), (200, 1))

    def test_faultOfTheHTTPLayer(self) -> None:
        """A result that cannot be encoded is a 500 with no word of the server's insides, logged once."""

        self.patch(self.node, "info", lambda: object())
        code, body, _ = self.call("info", {})
        self.assertEqual((code, body), (500, b"Internal Server Error"))
        self.assertEqual(len(self.flushLoggedErrors(TypeError)), 1)

    def test_binaryPayloadInResult(self) -> None:
        """
        Binary data (published with b64data) cannot be embedded in a JSON reply: history answers Centrifugo's 500
        with one warning, never a reply that is not JSON (as it did: the bytes went out as they were).
        """
        self.call("publish", {"channel": "chat:a", "b64data": base64.b64encode(b"\x86\xe0W").decode()})
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        code, body, _ = self.call("history", {"channel": "chat:a", "limit": 10})
        self.assertEqual((code, body), (500, b"Internal Server Error"))
        (warning,) = [formatEvent(e) for e in events if e.get("log_level") == LogLevel.warn]
        self.assertIn("api history (request ", warning)
        code, body, _ = self.call("history", {"channel": "chat:a", "limit": 0})
        self.assertEqual(json.loads(body)["result"]["offset"], 1)
