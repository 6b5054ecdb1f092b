"""
Tests for L{httpstream.cluster.batches}: forwarded emulation requests batched per reactor turn and node, in memory
with a L{Clock}, and between two controls through a real Redis.
"""

from __future__ import annotations

from typing import Any, Generator

from twisted.internet import reactor as globalReactor
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from httpstream.cluster.bus import decodeMessage, encodeMessage
from httpstream.cluster.control import CODE_BAD_REQUEST, CODE_NO_SESSION, CODE_OK, Control
from httpstream.emulation import EmulationResult
from httpstream.testing import FakeClient
from tests.cluster.test_control import ClusterTestCase, TwoControlsOverRedis

FORWARDED, NO_SESSION, UNREACHABLE, REFUSED = (
    EmulationResult.FORWARDED, EmulationResult.NO_SESSION, EmulationResult.UNREACHABLE, EmulationResult.REFUSED,
)


class BatchTests(ClusterTestCase):
    """Node a forwards to node b (and c) over the in-memory bus."""

    def session(self, node: str, sessionID: str) -> FakeClient:
        client = FakeClient(sessionID=sessionID)
        self.nodes[node].registry.add(sessionID, client)
        return client

    def messages(self, channel: str) -> list[dict[str, Any]]:
        return [decodeMessage(m) for c, m in self.bus.published if c == channel]

    def test_oneTurnOnePublish(self) -> None:
        """
        The requests forwarded to a node in one reactor turn leave together, as one message, at the end of the
        turn; that node runs them in order and answers them all in one message; each request gets its own result.
        """
        s1, s2 = self.session("b", "s1"), self.session("b", "s2")
        before = len(self.bus.published)
        results = [
            self.a.forwardEmulation("node-b", session, data)
            for session, data in [("s1", b"1"), ("s2", b"2"), ("gone", b"3"), ("s1", b"\x00\xff4")]
        ]
        self.assertEqual(len(self.bus.published), before)
        for d in results:
            self.assertNoResult(d)
        self.clock.advance(0)
        self.assertEqual([self.successResultOf(d) for d in results], [FORWARDED, FORWARDED, NO_SESSION, FORWARDED])
        self.assertEqual((s1.data, s2.data), ([b"1", b"\x00\xff4"], [b"2"]))
        [batch] = self.messages("test.node.node-b")
        [answers] = self.messages("test.node.node-a")
        self.assertEqual((batch["type"], len(batch["items"])), ("emulation", 12))
        self.assertEqual(answers["type"], "emulated")
        self.assertEqual(answers["items"][1::2], [CODE_OK, CODE_OK, CODE_NO_SESSION, CODE_OK])
        self.assertEqual(len(self.bus.published), before + 2)
        self.assertEqual(len(self.a._deadlines), 0)

    def test_perNodeAndPerTurn(self) -> None:
        """One message per node per turn: two nodes, two messages; the next turn, another."""
        self.c.startService()
        self.session("b", "s1")
        self.session("c", "s3")
        d1 = self.a.forwardEmulation("node-b", "s1", b"x")
        d2 = self.a.forwardEmulation("node-c", "s3", b"y")
        d3 = self.a.forwardEmulation("node-b", "s1", b"z")
        self.clock.advance(0)
        self.assertEqual([self.successResultOf(d) for d in (d1, d2, d3)], [FORWARDED] * 3)
        self.assertEqual(len(self.messages("test.node.node-b")), 1)
        self.assertEqual(len(self.messages("test.node.node-c")), 1)
        d4 = self.a.forwardEmulation("node-b", "s1", b"w")
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(d4), FORWARDED)
        self.assertEqual(len(self.messages("test.node.node-b")), 2)

    def test_timeoutInABatch(self) -> None:
        """
        A request of a batch whose commands never finish times out alone (unreachable, after 10 s) while the
        others were answered; an answer after its timeout is ignored. Nothing is left scheduled.
        """
        self.session("b", "s1")
        stuck = self.session("b", "stuck")
        never: Deferred[None] = Deferred()
        stuck.handleData = lambda data: never  # type: ignore[method-assign]
        quick = self.a.forwardEmulation("node-b", "s1", b"1")
        slow = self.a.forwardEmulation("node-b", "stuck", b"2")
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(quick), FORWARDED)
        self.clock.advance(9.9)
        self.assertNoResult(slow)
        self.clock.advance(0.1)
        self.assertEqual(self.successResultOf(slow), UNREACHABLE)
        never.callback(None)  # b answers late: a has given up on it
        self.clock.advance(0)
        self.assertEqual(len(self.messages("test.node.node-a")), 2)
        self.assertEqual(len(self.a._deadlines), 0)
        self.assertEqual(len(self.clock.getDelayedCalls()), 2)  # the announcement loops only

    def test_deadNode(self) -> None:
        """A node that does not answer at all: every request of the batch is unreachable after 10 s."""
        self.b.pubsub.disconnect()
        results = [self.a.forwardEmulation("node-b", f"s{i}", b"x") for i in range(5)]
        self.clock.advance(0)
        self.clock.advance(9.9)
        for d in results:
            self.assertNoResult(d)
        self.clock.advance(0.1)
        self.assertEqual([self.successResultOf(d) for d in results], [UNREACHABLE] * 5)

    def test_notSent(self) -> None:
        """A batch that cannot be published: each of its requests is unreachable at once, logged once."""
        self.a.pubsub.disconnect()
        results = [self.a.forwardEmulation("node-b", f"s{i}", b"x") for i in range(3)]
        self.clock.advance(0)
        self.assertEqual([self.successResultOf(d) for d in results], [UNREACHABLE] * 3)
        self.assertEqual(len(self.a._deadlines), 0)
        self.assertEqual(len(self.clock.getDelayedCalls()), 2)

    def test_badItems(self) -> None:
        """
        Items that are not a request (bad base64, a session that is not a string) are answered 1; an item without
        an integer id is skipped; the good ones run.
        """
        client = self.session("b", "s1")
        items = [1, "s1", "eA==", 2, "s1", "not base64!", 3, 7, "eA==", "x", "s1", "eA==", 4, "s1"]
        self.b._received("test.node.node-b", encodeMessage({"type": "emulation", "from": "node-a", "items": items}))
        [answers] = self.messages("test.node.node-a")
        self.assertEqual(answers["items"], [1, CODE_OK, 2, CODE_BAD_REQUEST, 3, CODE_BAD_REQUEST])
        self.assertEqual(client.data, [b"x"])

    def test_failingRequestAlone(self) -> None:
        """A request whose run raises is answered 4 (logged); the rest of its batch runs."""
        client = self.session("b", "s1")
        emulate = self.nodes["b"].emulate

        def failing(session: str, nodeID: str, data: bytes) -> Any:
            if data == b"boom":
                raise ZeroDivisionError()
            return emulate(session, nodeID, data)

        self.nodes["b"].emulate = failing  # type: ignore[method-assign]
        results = [self.a.forwardEmulation("node-b", "s1", data) for data in (b"1", b"boom", b"2")]
        self.clock.advance(0)
        self.assertEqual([self.successResultOf(d) for d in results], [FORWARDED, REFUSED, FORWARDED])
        self.assertEqual(client.data, [b"1", b"2"])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_notAList(self) -> None:
        before = len(self.bus.published)
        for items in (None, {"a": 1}, "x"):
            self.b._received("test.node.node-b", encodeMessage({"type": "emulation", "from": "node-a", "items": items}))
            self.a._received("test.node.node-a", encodeMessage({"type": "emulated", "from": "node-b", "items": items}))
        self.assertEqual(len(self.bus.published), before)

    def test_answersOnlyFromTheTarget(self) -> None:
        """An answer naming a request sent to another node is ignored."""
        self.b.pubsub.disconnect()
        d = self.a.forwardEmulation("node-b", "s1", b"x")
        self.clock.advance(0)
        [batch] = self.messages("test.node.node-b")
        rid = batch["items"][0]
        self.a._received("test.node.node-a", encodeMessage({"type": "emulated", "from": "node-x", "items": [rid, 0]}))
        self.assertNoResult(d)
        self.a._received("test.node.node-a", encodeMessage({"type": "emulated", "from": "node-b", "items": [rid, 0]}))
        self.assertEqual(self.successResultOf(d), FORWARDED)

    def test_refusedByCustomHandler(self) -> None:
        """A node whose emulation op is not the built-in one runs it for each request; its codes come back."""

        def refuse(payload: Any, origin: str) -> None:
            from httpstream.cluster.control import OpError

            raise OpError(9)

        self.b.register("emulation", refuse)
        d = self.a.forwardEmulation("node-b", "s1", b"x")
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(d), REFUSED)

    def test_olderNode(self) -> None:
        """
        A node that announced no control protocol (an older httpstream) gets one request per emulation request,
        sent at once, and answers as before.
        """
        client = self.session("b", "s1")
        self.a._received("test.control", encodeMessage({"type": "node", "from": "node-b", "node": {"name": "b"}}))
        d = self.a.forwardEmulation("node-b", "s1", b"x")
        self.assertEqual(self.successResultOf(d), FORWARDED)
        [request] = self.messages("test.node.node-b")
        self.assertEqual((request["type"], request["op"], request["payload"]),
                         ("request", "emulation", {"session": "s1", "data": b"x"}))
        self.assertEqual(client.data, [b"x"])

    def test_announcesProtocol(self) -> None:
        [announcement, *_] = [m for m in self.messages("test.control") if m["from"] == "node-a"]
        self.assertEqual(announcement["proto"], 2)
        self.assertNotIn("proto", self.a.nodes()[1])  # not part of the info the API lists

    def test_stop(self) -> None:
        """Stopping: forwards not sent or not answered are unreachable; answers due leave first."""
        self.b.pubsub.disconnect()
        sent = self.a.forwardEmulation("node-b", "s1", b"x")
        self.clock.advance(0)
        unsent = self.a.forwardEmulation("node-b", "s1", b"y")
        self.a.stopService()
        self.assertEqual([self.successResultOf(sent), self.successResultOf(unsent)], [UNREACHABLE] * 2)
        self.assertEqual(len(self.messages("test.node.node-b")), 1)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)  # b's announcement loop


class RedisBatchTests(TwoControlsOverRedis, TestCase):
    """Two controls on a unique prefix of a real Redis (127.0.0.1:6379), which know each other before each test."""

    def setUp(self) -> Any:
        super().setUp()
        return self.waitFor(lambda: self.a.isKnownNode(self.b.nodeID) and self.b.isKnownNode(self.a.nodeID))

    def recordPublishes(self, control: Control) -> list[str]:
        channels: list[str] = []
        publish = control.pubsub.publish

        def recording(channel: str, message: bytes) -> Deferred[None]:
            if channel != control.controlChannel:  # (announcements come every 3 s)
                channels.append(channel)
            return publish(channel, message)

        control.pubsub.publish = recording  # type: ignore[method-assign]
        return channels

    @inlineCallbacks
    def test_batchOverRedis(self) -> Generator[Any, Any, None]:
        """
        200 requests forwarded in one turn cross Redis as one PUBLISH each way; each waiter gets its own result,
        and each session its commands in order.
        """
        clients = {f"s{i}": FakeClient(sessionID=f"s{i}") for i in range(10)}
        for sessionID, client in clients.items():
            self.b.node.registry.add(sessionID, client)
        sentByA, sentByB = self.recordPublishes(self.a), self.recordPublishes(self.b)
        sessions = [f"s{i % 12}" for i in range(200)]  # s10 and s11 do not exist
        results = yield gatherResults(
            [self.a.forwardEmulation(self.b.nodeID, s, b"%d" % i) for i, s in enumerate(sessions)]
        )
        self.assertEqual(results, [NO_SESSION if s in ("s10", "s11") else FORWARDED for s in sessions])
        for sessionID, client in clients.items():
            self.assertEqual(client.data, [b"%d" % i for i, s in enumerate(sessions) if s == sessionID])
        self.assertEqual(sentByA, [self.b.nodeChannel(self.b.nodeID)])
        self.assertEqual(sentByB, [self.a.nodeChannel(self.a.nodeID)])

    @inlineCallbacks
    def test_timeoutInABatchOverRedis(self) -> Generator[Any, Any, None]:
        """One request of a batch never finishes on b: it alone is unreachable, after its timeout."""
        self.b.node.registry.add("s1", FakeClient(sessionID="s1"))
        stuck = FakeClient(sessionID="stuck")
        stuck.handleData = lambda data: Deferred()  # type: ignore[method-assign]
        self.b.node.registry.add("stuck", stuck)
        results = yield gatherResults([
            self.a.forwardEmulation(self.b.nodeID, "s1", b"1", timeout=0.5),
            self.a.forwardEmulation(self.b.nodeID, "stuck", b"2", timeout=0.5),
            self.a.forwardEmulation(self.b.nodeID, "s1", b"3", timeout=0.5),
        ])
        self.assertEqual(results, [FORWARDED, UNREACHABLE, FORWARDED])
        yield deferLater(globalReactor, 0, lambda: None)  # (the results fired from inside the sweep)
        self.assertEqual(len(self.a._deadlines), 0)
