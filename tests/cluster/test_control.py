"""
Tests for L{httpstream.cluster.control}: node announcements and expiry, requests between nodes, surveys, the built-in ops,
over an in-memory bus with a L{Clock}; and two controls talking through a real Redis.
"""

from __future__ import annotations

import socket
import time
import uuid
from typing import Any, Generator

from twisted.internet import reactor as globalReactor
from twisted.internet.defer import Deferred, fail, inlineCallbacks, succeed
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock, deferLater
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from httpstream.config import Config
from httpstream.cluster.control import (
    CODE_BAD_REQUEST,
    CODE_ERROR,
    CODE_NO_SESSION,
    CODE_OK,
    CODE_UNKNOWN_OP,
    Control,
    ControlStopped,
    ControlTimeout,
    OpError,
    Reply,
)
from httpstream.cluster.memory import memoryCluster
from httpstream.cluster.bus import IControlPubSub, MemoryBus, ShardPubSub, decodeMessage, encodeMessage
from httpstream.interfaces import IEmulationForwarder
from httpstream.emulation import EmulationResult
from httpstream.node.node import Node
from httpstream.interfaces import IClusterNodes
from httpstream.testing import FakeClient


def makeNode(clock: Clock, name: str) -> Node:
    return Node(Config(name=name), clock, nodeID=f"node-{name}")


class EncodingTests(SynchronousTestCase):
    def test_roundTripWithBytes(self) -> None:
        """
        Bytes anywhere in a message travel as base64 and come back as bytes; the rest is plain JSON.
        """
        message = {"a": b"\x00\xffraw", "b": [1, {"c": b'{"x":1}'}], "d": "text", "e": None, "t": (1, 2)}
        encoded = encodeMessage(message)
        self.assertNotIn(b"\x00", encoded)
        self.assertEqual(
            decodeMessage(encoded), {"a": b"\x00\xffraw", "b": [1, {"c": b'{"x":1}'}], "d": "text", "e": None,
                                     "t": [1, 2]},
        )

    def test_notEncodable(self) -> None:
        self.assertRaises(TypeError, encodeMessage, {"a": object()})

    def test_interfaces(self) -> None:
        self.assertTrue(verifyObject(IControlPubSub, MemoryBus().pubsub()))


class ClusterTestCase(SynchronousTestCase):
    """Three nodes a, b, c on one in-memory bus; a and b started, c not."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.bus = MemoryBus()
        self.nodes = {name: makeNode(self.clock, name) for name in "abc"}
        self.controls = {
            name: Control(self.clock, node, self.bus.pubsub(), prefix="test") for name, node in self.nodes.items()
        }
        self.a, self.b, self.c = (self.controls[n] for n in "abc")
        self.a.startService()
        self.b.startService()
        self.addCleanup(self._stopAll)

    def _stopAll(self) -> None:
        for control in self.controls.values():
            if control.running:
                control.stopService()

    def published(self, channel: str, kind: str) -> list[dict[str, Any]]:
        messages = [decodeMessage(m) for c, m in self.bus.published if c == channel]
        return [m for m in messages if m["type"] == kind]

    def echo(self, control: Control) -> list[tuple[Any, str]]:
        calls: list[tuple[Any, str]] = []

        def handler(payload: Any, origin: str) -> Any:
            calls.append((payload, origin))
            return {"echo": payload, "by": control.nodeID}

        control.register("echo", handler)
        return calls


class AnnouncementTests(ClusterTestCase):
    def test_knowEachOther(self) -> None:
        """
        Started nodes announce themselves at once, so each knows the other; a node always knows itself.
        """
        self.assertTrue(self.a.isKnownNode("node-b"))
        self.assertTrue(self.b.isKnownNode("node-a"))
        self.assertTrue(self.a.isKnownNode("node-a"))
        self.assertFalse(self.a.isKnownNode("node-c"))
        self.assertFalse(self.a.isKnownNode(""))

    def test_aloneKnowsItself(self) -> None:
        self.c.pubsub.disconnect()
        self.assertTrue(self.c.isKnownNode("node-c"))
        self.assertEqual([n["uid"] for n in self.c.nodes()], ["node-c"])

    def test_everyThreeSeconds(self) -> None:
        """
        Each node announces its info on C{<prefix>.control} every 3 s.
        """
        before = len(self.published("test.control", "node"))
        self.clock.advance(3)
        after = self.published("test.control", "node")[before:]
        self.assertEqual(sorted(m["from"] for m in after), ["node-a", "node-b"])
        self.clock.advance(3)
        self.assertEqual(len(self.published("test.control", "node")), before + 4)

    def test_info(self) -> None:
        """
        The announced info is the C{info} API's node entry; nodes() lists this node first, then the others.
        """
        node = self.nodes["b"]
        client = FakeClient(user="u1")
        node.clientConnected(client)
        node.clientConnected(FakeClient(user="u1"))
        node.hub.add("news", client)
        self.clock.advance(5)
        self.clock.advance(1)  # the 6 s announcement
        info = self.a.nodes()
        self.assertEqual([n["uid"] for n in info], ["node-a", "node-b"])
        self.assertEqual(info[1], {
            "uid": "node-b", "name": "b", "version": node.version, "num_clients": 2, "num_users": 1,
            "num_channels": 1, "num_subs": 1, "uptime": 6,
        })
        self.assertEqual(info[0]["num_clients"], 0)
        self.assertEqual(self.b.localInfo(), info[1])

    def test_expiry(self) -> None:
        """
        A node not announced for over 7 s is forgotten.
        """
        self.clock.advance(2)
        self.b.pubsub.disconnect()  # b's last announcement was 2 s ago
        self.clock.advance(5)
        self.assertTrue(self.a.isKnownNode("node-b"))
        self.clock.advance(0.5)
        self.assertFalse(self.a.isKnownNode("node-b"))
        self.assertEqual([n["uid"] for n in self.a.nodes()], ["node-a"])
        self.assertTrue(self.b.isKnownNode("node-b"))

    def test_refreshKeeps(self) -> None:
        """
        Announcements every 3 s keep a node known indefinitely.
        """
        for _ in range(10):
            self.clock.advance(3)
            self.assertTrue(self.a.isKnownNode("node-b"))

    def test_reconnectAnnounces(self) -> None:
        """
        A node announces itself as soon as its subscription is back, and the others know it again.
        """
        self.b.pubsub.disconnect()
        self.clock.advance(8)
        self.assertFalse(self.a.isKnownNode("node-b"))
        self.b.pubsub.reconnect()
        self.assertTrue(self.a.isKnownNode("node-b"))

    def test_newcomerLearnsAtOnce(self) -> None:
        """
        A node hearing from an unknown node announces itself back, so the newcomer knows the cluster at once.
        """
        self.clock.advance(1)
        self.c.startService()
        self.assertTrue(self.c.isKnownNode("node-a"))
        self.assertTrue(self.c.isKnownNode("node-b"))
        self.assertTrue(self.a.isKnownNode("node-c"))

    def test_leave(self) -> None:
        """
        A stopping node says so: the others forget it without waiting 7 s.
        """
        self.b.stopService()
        self.assertFalse(self.a.isKnownNode("node-b"))
        self.assertEqual(self.published("test.control", "leave")[-1]["from"], "node-b")

    def test_ownMessagesIgnored(self) -> None:
        """
        A node does not list itself from its own announcements nor serve its own requests.
        """
        calls = self.echo(self.a)
        self.a._received("test.control", encodeMessage({"type": "node", "from": "node-a", "node": {"uid": "x"}}))
        self.a._received("test.control", encodeMessage(
            {"type": "request", "from": "node-a", "id": 1, "op": "echo", "payload": 1}
        ))
        self.assertNotIn("node-a", self.a._nodes)
        self.assertEqual(calls, [])

    def test_foreignMessagesIgnored(self) -> None:
        for raw in [b"\x0a\x03abc", b"[]", b'{"type":"node"}', b'{"type":"request","from":"x","id":"1"}',
                    b'{"type":"node","from":"x","node":3}', b'{"type":"what","from":"x"}']:
            self.a._received("test.control", raw)
        self.assertFalse(self.a.isKnownNode("x"))


class RequestTests(ClusterTestCase):
    def test_requestReply(self) -> None:
        """
        A request goes to the target's node channel; the target runs the op's handler and replies on the
        origin's node channel with the request's id.
        """
        calls = self.echo(self.b)
        reply = self.successResultOf(self.a.request("node-b", "echo", {"data": b"\x01\x02", "n": 1}))
        self.assertEqual(reply, Reply("node-b", CODE_OK, {"echo": {"data": b"\x01\x02", "n": 1}, "by": "node-b"}))
        self.assertEqual(calls, [({"data": b"\x01\x02", "n": 1}, "node-a")])
        [request] = self.published("test.node.node-b", "request")
        [answer] = self.published("test.node.node-a", "reply")
        self.assertEqual((request["from"], request["op"]), ("node-a", "echo"))
        self.assertEqual((answer["from"], answer["id"], answer["code"]), ("node-b", request["id"], CODE_OK))
        self.assertEqual(self.a._pending, {})

    def test_idsIncrease(self) -> None:
        self.echo(self.b)
        for _ in range(3):
            self.successResultOf(self.a.request("node-b", "echo"))
        ids = [m["id"] for m in self.published("test.node.node-b", "request")]
        self.assertEqual(ids, sorted(set(ids)))
        self.assertEqual(len(ids), 3)

    def test_toItself(self) -> None:
        """
        A request to this node runs in-process: nothing is published.
        """
        calls = self.echo(self.a)
        before = len(self.bus.published)
        reply = self.successResultOf(self.a.request("node-a", "echo", 5))
        self.assertEqual(reply, Reply("node-a", CODE_OK, {"echo": 5, "by": "node-a"}))
        self.assertEqual(calls, [(5, "node-a")])
        self.assertEqual(len(self.bus.published), before)

    def test_deferredHandler(self) -> None:
        """
        The reply waits for a handler's Deferred.
        """
        later: Deferred[str] = Deferred()
        self.b.register("slow", lambda payload, origin: later)
        d = self.a.request("node-b", "slow")
        self.assertNoResult(d)
        later.callback("done")
        self.assertEqual(self.successResultOf(d), Reply("node-b", CODE_OK, "done"))

    def test_codes(self) -> None:
        """
        L{OpError} replies with its code and result; an unknown op gets code 3; a failing handler code 4.
        """
        def refuse(payload: Any, origin: str) -> None:
            raise OpError(7, {"why": "no"})

        def broken(payload: Any, origin: str) -> None:
            raise ZeroDivisionError()

        self.b.register("refuse", refuse)
        self.b.register("broken", broken)
        self.assertEqual(self.successResultOf(self.a.request("node-b", "refuse")), Reply("node-b", 7, {"why": "no"}))
        self.assertEqual(self.successResultOf(self.a.request("node-b", "nope")), Reply("node-b", CODE_UNKNOWN_OP))
        self.assertEqual(self.successResultOf(self.a.request("node-b", "broken")), Reply("node-b", CODE_ERROR))
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_unencodableResult(self) -> None:
        self.b.register("odd", lambda payload, origin: object())
        self.assertEqual(self.successResultOf(self.a.request("node-b", "odd")), Reply("node-b", CODE_ERROR))

    def test_timeout(self) -> None:
        """
        Without a reply in 10 s the request fails with L{ControlTimeout}; a late reply is ignored.
        """
        self.b.pubsub.disconnect()
        d = self.a.request("node-b", "echo")
        self.clock.advance(9.9)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        self.failureResultOf(d, ControlTimeout)
        [request] = self.published("test.node.node-b", "request")
        self.a._received("test.node.node-a", encodeMessage(
            {"type": "reply", "from": "node-b", "id": request["id"], "code": 0, "result": None}
        ))
        self.assertEqual(self.a._pending, {})

    def test_customTimeout(self) -> None:
        self.b.pubsub.disconnect()
        d = self.a.request("node-b", "echo", timeout=1)
        self.clock.advance(1)
        self.failureResultOf(d, ControlTimeout)

    def test_replyFromAnotherNodeIgnored(self) -> None:
        self.b.pubsub.disconnect()
        d = self.a.request("node-b", "echo")
        [request] = self.published("test.node.node-b", "request")
        self.a._received("test.node.node-a", encodeMessage(
            {"type": "reply", "from": "node-x", "id": request["id"], "code": 0, "result": None}
        ))
        self.assertNoResult(d)
        self.clock.advance(10)
        self.failureResultOf(d, ControlTimeout)

    def test_publishFails(self) -> None:
        """
        A request that cannot be sent fails at once with the publish error.
        """
        self.a.pubsub.disconnect()
        d = self.a.request("node-b", "echo")
        f = self.failureResultOf(d)
        self.assertIn("Not connected", f.getErrorMessage())
        self.assertEqual(self.a._pending, {})

    def test_unencodablePayload(self) -> None:
        self.failureResultOf(self.a.request("node-b", "echo", object()), TypeError)
        self.assertEqual(self.a._pending, {})

    def test_stopFailsPending(self) -> None:
        self.b.pubsub.disconnect()
        d = self.a.request("node-b", "echo")
        self.a.stopService()
        self.failureResultOf(d, ControlStopped)
        # Only b's announcement loop is left: a's loop and the request's timer are gone.
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)

    def test_asynchronousBus(self) -> None:
        """
        Replies that arrive on later reactor turns (as from Redis) are matched the same way.
        """
        clock = Clock()
        bus = MemoryBus(clock)
        a, b = (Control(clock, makeNode(clock, n), bus.pubsub(), prefix="x") for n in "ab")
        a.startService()
        b.startService()
        clock.advance(0)
        clock.advance(0)
        self.assertTrue(a.isKnownNode("node-b"))
        self.echo(b)
        d = a.request("node-b", "echo", 1)
        self.assertNoResult(d)
        clock.advance(0)
        clock.advance(0)
        self.assertEqual(self.successResultOf(d).result, {"echo": 1, "by": "node-b"})
        a.stopService()
        b.stopService()


class SurveyTests(ClusterTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.c.startService()

    def test_gather(self) -> None:
        """
        A survey is one message on the control channel; every node (this one in-process) answers.
        """
        calls = {name: self.echo(control) for name, control in self.controls.items()}
        before = len(self.bus.published)
        replies = self.successResultOf(self.a.survey("echo", {"q": b"?"}))
        self.assertEqual(set(replies), {"node-a", "node-b", "node-c"})
        for nodeID, reply in replies.items():
            self.assertEqual(reply, Reply(nodeID, CODE_OK, {"echo": {"q": b"?"}, "by": nodeID}))
        self.assertEqual([len(c) for c in calls.values()], [1, 1, 1])
        requests = [decodeMessage(m) for c, m in self.bus.published[before:] if c == "test.control"]
        self.assertEqual(len(requests), 1)
        self.assertEqual(len(self.clock.getDelayedCalls()), 3)  # the three announcement loops, no timer left

    def test_alone(self) -> None:
        """
        With no other live node, a survey runs in-process only.
        """
        self.b.pubsub.disconnect()
        self.c.pubsub.disconnect()
        self.clock.advance(8)
        self.echo(self.a)
        before = len(self.bus.published)
        replies = self.successResultOf(self.a.survey("echo", 1))
        self.assertEqual(list(replies), ["node-a"])
        self.assertEqual(len(self.bus.published), before)

    def test_missingSkipped(self) -> None:
        """
        A node that does not answer within the timeout is left out.
        """
        for control in self.controls.values():
            self.echo(control)
        self.c.pubsub.disconnect()
        d = self.a.survey("echo", 1)
        self.assertNoResult(d)
        self.clock.advance(10)
        self.assertEqual(set(self.successResultOf(d)), {"node-a", "node-b"})

    def test_leaveCompletes(self) -> None:
        """
        A node leaving while a survey waits for it is no longer waited for.
        """
        for control in self.controls.values():
            self.echo(control)
        slow: Deferred[int] = Deferred()
        self.c.register("echo", lambda payload, origin: slow)
        d = self.a.survey("echo", 1)
        self.assertNoResult(d)
        self.c.stopService()
        self.assertEqual(set(self.successResultOf(d)), {"node-a", "node-b"})

    def test_waitsForLocal(self) -> None:
        later: Deferred[int] = Deferred()
        self.echo(self.b)
        self.echo(self.c)
        self.a.register("echo", lambda payload, origin: later)
        d = self.a.survey("echo")
        self.assertNoResult(d)
        later.callback(3)
        self.assertEqual(self.successResultOf(d)["node-a"], Reply("node-a", CODE_OK, 3))

    def test_publishFails(self) -> None:
        calls = self.echo(self.a)
        self.a.pubsub.disconnect()
        self.failureResultOf(self.a.survey("echo"))
        self.assertEqual(calls, [])
        self.assertEqual(self.a._pending, {})


class BuiltinOpTests(ClusterTestCase):
    def test_emulation(self) -> None:
        """
        The emulation op runs the data on the session's client of the target node, and replies once it ran.
        """
        client = FakeClient(sessionID="s1")
        ran: Deferred[None] = Deferred()
        client.handleData = lambda data: (client.data.append(data), ran)[1]  # type: ignore[method-assign]
        self.nodes["b"].registry.add("s1", client)
        d = self.a.forwardEmulation("node-b", "s1", b'{"id":1}\n{"id":2}')
        self.assertEqual(client.data, [])  # sent at the end of the reactor turn, with the turn's others
        self.clock.advance(0)
        self.assertEqual(client.data, [b'{"id":1}\n{"id":2}'])
        self.assertNoResult(d)
        ran.callback(None)
        self.clock.advance(0)  # an answer that comes later leaves at the end of its turn
        self.assertEqual(self.successResultOf(d), EmulationResult.FORWARDED)

    def test_emulationProvidesForwarder(self) -> None:
        self.assertTrue(verifyObject(IEmulationForwarder, self.a))

    def test_emulationNoSession(self) -> None:
        """No such session on the target: code 2 on the wire, no session for the node that asked."""
        reply = self.successResultOf(self.a.request("node-b", "emulation", {"session": "nope", "data": b"{}"}))
        self.assertEqual(reply.code, CODE_NO_SESSION)
        d = self.a.forwardEmulation("node-b", "nope", b"{}")
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(d), EmulationResult.NO_SESSION)

    def test_emulationLocal(self) -> None:
        client = FakeClient(sessionID="s1")
        self.nodes["a"].registry.add("s1", client)
        before = len(self.bus.published)
        self.assertEqual(
            self.successResultOf(self.a.forwardEmulation("node-a", "s1", b"\x00")), EmulationResult.FORWARDED
        )
        self.assertEqual(client.data, [b"\x00"])
        self.assertEqual(len(self.bus.published), before)

    def test_emulationBadPayload(self) -> None:
        reply = self.successResultOf(self.a.request("node-b", "emulation", {"session": "s1", "data": "text"}))
        self.assertEqual(reply.code, CODE_BAD_REQUEST)

    def test_emulationRefused(self) -> None:
        """A node that does not understand the request (here: it has no emulation op) refuses it."""
        self.b._handlers.pop("emulation")
        d = self.a.forwardEmulation("node-b", "s1", b"{}")
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(d), EmulationResult.REFUSED)

    def test_emulationTimeout(self) -> None:
        """A node that does not answer in 10 s is unreachable (logged), never a failure."""
        self.b.pubsub.disconnect()
        d = self.a.forwardEmulation("node-b", "s1", b"{}")
        self.assertNoResult(d)
        self.clock.advance(10)
        self.assertEqual(self.successResultOf(d), EmulationResult.UNREACHABLE)

    def test_emulationNotSent(self) -> None:
        """A request that cannot be published (the bus link is down here) is unreachable at once."""
        self.a.pubsub.disconnect()
        d = self.a.forwardEmulation("node-b", "s1", b"{}")
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(d), EmulationResult.UNREACHABLE)

    def test_info(self) -> None:
        reply = self.successResultOf(self.a.request("node-b", "info"))
        self.assertEqual(reply.result, self.b.localInfo())

    def test_channels(self) -> None:
        """
        The channels of every node, with their clients summed, filtered by the pattern on each node.
        """
        for name, channels in [("a", ["news", "chat:1"]), ("b", ["news", "chat:2", "chat:2"])]:
            for channel in channels:
                self.nodes[name].hub.add(channel, FakeClient())
        self.assertEqual(self.successResultOf(self.a.channels()), {"news": 2, "chat:1": 1, "chat:2": 2})
        self.assertEqual(self.successResultOf(self.b.channels("chat:*")), {"chat:1": 1, "chat:2": 2})

    def test_user(self) -> None:
        """
        A user op runs the API method through each node's user handler, with the request as the API got it.
        """
        seen: list[tuple[str, str, dict]] = []
        for control in (self.a, self.b):
            control.setUserHandler(lambda m, r, n=control.nodeID: seen.append((n, m, r)) or succeed({}))
        request = {"user": "u1", "disconnect": {"code": 4000, "reason": "bye"}, "info": b'{"x":1}'}
        replies = self.successResultOf(self.a.userOp("disconnect", request))
        self.assertEqual({n: r.code for n, r in replies.items()}, {"node-a": CODE_OK, "node-b": CODE_OK})
        self.assertEqual(sorted(seen), [("node-a", "disconnect", request), ("node-b", "disconnect", request)])

    def test_userBadMethod(self) -> None:
        self.b.setUserHandler(lambda m, r: {})
        reply = self.successResultOf(self.a.request("node-b", "user", {"method": "publish", "request": {}}))
        self.assertEqual(reply.code, CODE_BAD_REQUEST)

    def test_userNoHandler(self) -> None:
        reply = self.successResultOf(self.a.request("node-b", "user", {"method": "refresh", "request": {}}))
        self.assertEqual(reply.code, CODE_UNKNOWN_OP)


class RegistryTests(ClusterTestCase):
    def test_controlIsClusterNodes(self) -> None:
        self.assertTrue(verifyObject(IClusterNodes, self.a))

    def test_nodeFollowsNodeList(self) -> None:
        """
        A node that joined a cluster through a control knows the live nodes, and forgets them when they expire.
        """
        node = self.nodes["a"]
        self.assertFalse(node.nodes.isKnownNode("node-b"))
        node.useControl(self.a)
        self.assertTrue(node.nodes.isKnownNode("node-a"))
        self.assertTrue(node.nodes.isKnownNode("node-b"))
        self.assertFalse(node.nodes.isKnownNode("node-c"))
        self.assertFalse(node.nodes.isKnownNode(""))
        self.b.pubsub.disconnect()
        self.clock.advance(8)
        self.assertFalse(node.nodes.isKnownNode("node-b"))

    def test_memoryCluster(self) -> None:
        clock = Clock()
        a, b = memoryCluster(clock, [makeNode(clock, "a"), makeNode(clock, "b")])
        a.startService()
        b.startService()
        self.assertTrue(a.isKnownNode("node-b"))
        a.stopService()
        b.stopService()


class FakeShard:
    """The part of a RedisShard a L{ShardPubSub} uses, in memory; C{lose} and C{reconnect} play a lost link."""

    publishCommand = b"PUBLISH"

    def __init__(self) -> None:
        self.up = True
        self.handlers: dict[bytes, Any] = {}
        self.published: list[tuple[bytes, bytes]] = []
        self.reconnectHandlers: list[Any] = []
        self.ready: Deferred[None] = Deferred()

    def subscribe(self, channel: bytes, handler: Any) -> Deferred[None]:
        self.handlers[channel] = handler
        return succeed(None) if self.up else fail(ConnectionRefusedError())

    def unsubscribe(self, channel: bytes) -> Deferred[None]:
        self.handlers.pop(channel, None)
        return succeed(None)

    def execute(self, *args: Any, now: bool = False) -> Deferred[Any]:
        if not self.up:
            return fail(ConnectionRefusedError())
        self.published.append(args[1:])
        return succeed(1)

    def addReconnectHandler(self, handler: Any) -> None:
        self.reconnectHandlers.append(handler)

    def whenReady(self) -> Deferred[None]:
        return self.ready

    def everyRoute(self, name: str) -> list["FakeShard"]:
        return [self]

    def reconnect(self) -> None:
        self.up = True
        for handler in self.reconnectHandlers:
            handler(list(self.handlers))


class ShardPubSubTests(SynchronousTestCase):
    """L{ShardPubSub}: the control plane on the Redis engine's connections."""

    def setUp(self) -> None:
        self.shard = FakeShard()
        self.pubsub = ShardPubSub(self.shard)
        self.messages: list[tuple[str, bytes]] = []
        self.ready: list[int] = []

    def start(self) -> None:
        self.pubsub.start(["p.control", "p.node.a"], lambda c, m: self.messages.append((c, m)),
                          lambda: self.ready.append(1))

    def test_interface(self) -> None:
        self.assertTrue(verifyObject(IControlPubSub, self.pubsub))

    def test_subscribesAndDelivers(self) -> None:
        """Both channels are subscribed; messages reach the handler with the channel as text, bytes unchanged."""
        self.start()
        self.assertEqual(set(self.shard.handlers), {b"p.control", b"p.node.a"})
        self.assertEqual(self.ready, [1])
        self.shard.handlers[b"p.control"](b"p.control", b"\x00\xff")
        self.assertEqual(self.messages, [("p.control", b"\x00\xff")])

    def test_publish(self) -> None:
        self.start()
        self.assertIsNone(self.successResultOf(self.pubsub.publish("p.node.b", b"\x01msg")))
        self.assertEqual(self.shard.published, [(b"p.node.b", b"\x01msg")])

    def test_publishWhileDown(self) -> None:
        """A publish while Redis is down fails at once: a request is not left waiting for a reply never asked."""
        self.start()
        self.shard.up = False
        self.failureResultOf(self.pubsub.publish("p.control", b"x"), ConnectionRefusedError)

    def test_readyAgainAfterReconnect(self) -> None:
        """Each time the shard has subscribed the channels again, the control plane is told (it announces)."""
        self.start()
        self.shard.reconnect()
        self.assertEqual(self.ready, [1, 1])

    def test_downAtStart(self) -> None:
        """Redis down at start: ready once the shard's first connections are up."""
        self.shard.up = False
        self.start()
        self.assertEqual(self.ready, [])
        self.shard.ready.callback(None)
        self.assertEqual(self.ready, [1])

    def test_stop(self) -> None:
        """Stopped: the channels are unsubscribed and a later reconnection does not announce."""
        self.start()
        self.successResultOf(self.pubsub.stop())
        self.assertEqual(self.shard.handlers, {})
        self.shard.reconnect()
        self.assertEqual(self.ready, [1])


# Real Redis


def redisAvailable(host: str = "127.0.0.1", port: int = 6379) -> bool:
    try:
        socket.create_connection((host, port), timeout=0.5).close()
        return True
    except OSError:
        return False


class TwoControlsOverRedis:
    """
    A TestCase mixin: two controls (C{self.a}, C{self.b}) on a unique prefix of a real Redis (127.0.0.1:6379;
    scripts/ensure-redis starts one), stopped after the test.
    """

    timeout = 30

    def setUp(self) -> Any:
        if not redisAvailable():
            raise SkipTest("no Redis on 127.0.0.1:6379")
        self.prefix = f"httpstream-test-{uuid.uuid4().hex}"
        self.controls = []
        for name in "ab":
            from httpstream.engines.redis import RedisShard  # txredisapi installs the global reactor

            shard = RedisShard(globalReactor, "127.0.0.1:6379", prefix=self.prefix, maxRetryDelay=0.2)
            shard.startService()
            self.addCleanup(shard.stopService)
            node = Node(Config(name=name), globalReactor, nodeID=f"{name}-{uuid.uuid4()}")
            control = Control(globalReactor, node, ShardPubSub(shard), prefix=self.prefix, requestTimeout=5)
            control.startService()
            self.controls.append(control)
            self.addCleanup(self._stop, control)
        self.a, self.b = self.controls

    def _stop(self, control: Control) -> Any:
        if control.running:
            return control.stopService()
        return None

    @inlineCallbacks
    def waitFor(self, condition: Any, seconds: float = 15.0) -> Generator[Any, Any, None]:
        # Generous: a busy machine (the suite runs in several workers) slows Redis round trips and reconnects.
        deadline = time.monotonic() + seconds
        while not condition():
            if time.monotonic() > deadline:
                self.fail("condition not met in time")
            yield deferLater(globalReactor, 0.05, lambda: None)


class RedisControlTests(TwoControlsOverRedis, TestCase):
    @inlineCallbacks
    def test_requestOverRedis(self) -> Generator[Any, Any, None]:
        """
        The nodes find each other through Redis and exchange a request, bytes included; after a lost subscriber
        connection, a node re-subscribes by itself; a stopped node is forgotten at once.
        """
        yield self.waitFor(lambda: self.a.isKnownNode(self.b.nodeID) and self.b.isKnownNode(self.a.nodeID))
        self.b.register("echo", lambda payload, origin: {"echo": payload, "origin": origin})
        reply = yield self.a.request(self.b.nodeID, "echo", {"data": b"\x00\xff"})
        self.assertEqual(reply, Reply(self.b.nodeID, CODE_OK, {"echo": {"data": b"\x00\xff"},
                                                              "origin": self.a.nodeID}))

        client = FakeClient(sessionID="s1")
        self.b.node.registry.add("s1", client)
        result = yield self.a.forwardEmulation(self.b.nodeID, "s1", b'{"id":1}')
        self.assertEqual((result, client.data), (EmulationResult.FORWARDED, [b'{"id":1}']))

        protocol = self.b.pubsub._router._pubsub.protocol
        protocol.transport.loseConnection()
        yield self.waitFor(lambda: self.b.pubsub._router._pubsub.protocol is not protocol)
        replies: list[Reply] = []

        @inlineCallbacks
        def ask() -> Generator[Any, Any, None]:
            replies.append((yield self.a.request(self.b.nodeID, "echo", 2, timeout=0.3)))

        deadline = time.monotonic() + 20
        while True:
            try:
                yield ask()
                break
            except ControlTimeout:
                if time.monotonic() > deadline:
                    raise
        self.assertEqual(replies[0].result["echo"], 2)

        infos = yield self.a.survey("info")
        self.assertEqual(set(infos), {self.a.nodeID, self.b.nodeID})
        self.assertEqual(infos[self.b.nodeID].result["name"], "b")

        yield self.b.stopService()
        yield self.waitFor(lambda: not self.a.isKnownNode(self.b.nodeID))


class ReplyTests(SynchronousTestCase):
    def test_ok(self) -> None:
        """Only code 0 is a reply whose op ran."""
        self.assertTrue(Reply("n", CODE_OK).ok)
        for code in (CODE_BAD_REQUEST, CODE_NO_SESSION, CODE_UNKNOWN_OP, CODE_ERROR):
            self.assertFalse(Reply("n", code).ok)
