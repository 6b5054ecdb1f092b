"""
Tests for emulation: L{httpstream.node.node.Node.emulate} (where a request's commands go and what became of them)
and C{POST /emulation} (L{httpstream.transports.emulation}) answering each outcome, in memory.
"""

from __future__ import annotations

from typing import Any

from treq.testing import StubTreq
from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from httpstream.interfaces import IClusterNodes, IEmulationForwarder
from httpstream.emulation import EmulationResult
from httpstream.origin import OriginChecker
from httpstream.testing import FakeClient, makeNode
from httpstream.web.app import makeApp


@implementer(IEmulationForwarder)
class FakeForwarder:
    """Records forwarded requests and answers each with C{result} (a Deferred the test fires, or a value)."""

    def __init__(self, result: Any = EmulationResult.FORWARDED) -> None:
        self.result = result
        self.calls: list[tuple[str, str, bytes]] = []

    def forwardEmulation(self, nodeID: str, session: str, data: bytes) -> Deferred[EmulationResult]:
        self.calls.append((nodeID, session, data))
        return self.result if isinstance(self.result, Deferred) else succeed(self.result)


@implementer(IClusterNodes)
class KnownNodes:
    """A cluster's live nodes as the control plane would list them."""

    def __init__(self, *nodes: str) -> None:
        self.nodes = set(nodes)

    def isKnownNode(self, node: str) -> bool:
        return node in self.nodes


class NodeEmulateTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.node = makeNode(nodeID="node-a")
        self.client = FakeClient(sessionID="s1")
        self.node.registry.add("s1", self.client)

    def emulate(self, session: str = "s1", nodeID: str = "node-a", data: bytes = b"{}") -> EmulationResult:
        result: EmulationResult = self.successResultOf(self.node.emulate(session, nodeID, data))
        return result

    def test_delivered(self) -> None:
        """A session of this node runs the commands, and the result waits until they have run."""
        ran: Deferred[None] = Deferred()
        self.client.handleData = lambda data: (self.client.data.append(data), ran)[1]  # type: ignore
        d = self.node.emulate("s1", "node-a", b'{"id":1}')
        self.assertEqual(self.client.data, [b'{"id":1}'])
        self.assertNoResult(d)
        ran.callback(None)
        self.assertEqual(self.successResultOf(d), EmulationResult.DELIVERED)
        self.assertTrue(EmulationResult.DELIVERED.ran)

    def test_noSession(self) -> None:
        self.assertEqual(self.emulate(session="gone"), EmulationResult.NO_SESSION)
        self.assertFalse(EmulationResult.NO_SESSION.ran)

    def test_unknownNode(self) -> None:
        """A node neither this one nor a live one: nothing runs, even with a forwarder."""
        forwarder = FakeForwarder()
        self.node.emulationForwarder = forwarder
        self.assertEqual(self.emulate(nodeID="node-x"), EmulationResult.UNKNOWN_NODE)
        self.assertEqual((forwarder.calls, self.client.data), ([], []))

    def test_otherNodeForwarded(self) -> None:
        """A session of another live node goes through the forwarder, whose answer is the node's."""
        self.node.nodes = KnownNodes("node-a", "node-b")
        forwarder = FakeForwarder(Deferred())
        self.node.emulationForwarder = forwarder
        d = self.node.emulate("s9", "node-b", b"\x00")
        self.assertEqual(forwarder.calls, [("node-b", "s9", b"\x00")])
        self.assertNoResult(d)
        forwarder.result.callback(EmulationResult.UNREACHABLE)
        self.assertEqual(self.successResultOf(d), EmulationResult.UNREACHABLE)
        self.assertEqual(self.client.data, [])

    def test_otherNodeWithoutCluster(self) -> None:
        """Without a forwarder, a session is looked up here whatever node is named (a node alone has no other)."""
        self.node.nodes = KnownNodes("node-a", "node-b")
        self.assertEqual(self.emulate(nodeID="node-b"), EmulationResult.DELIVERED)
        self.assertEqual(self.emulate(session="gone", nodeID="node-b"), EmulationResult.NO_SESSION)

    def test_useControlForwards(self) -> None:
        """Joining a cluster makes its control plane the forwarder."""
        from httpstream.cluster.memory import memoryCluster

        (control,) = memoryCluster(self.node.reactor, [self.node])
        self.node.useControl(control)
        self.assertIs(self.node.emulationForwarder, control)

    def test_fakeForwarder(self) -> None:
        self.assertTrue(verifyObject(IEmulationForwarder, FakeForwarder()))


class EmulationEndpointTests(SynchronousTestCase):
    """POST /emulation through the whole Klein app, in memory: each outcome's status and metric."""

    def setUp(self) -> None:
        self.node = makeNode({"http_stream": True}, nodeID="node-a")
        self.node.nodes = KnownNodes("node-a", "node-b")
        self.forwarder = FakeForwarder()
        self.node.emulationForwarder = self.forwarder
        self.client = FakeClient(sessionID="s1")
        self.node.registry.add("s1", self.client)
        self.treq = StubTreq(makeApp(self.node, OriginChecker(())).resource())

    def post(self, node: str, session: str = "s1", **kwargs: Any) -> Any:
        body = {"session": session, "node": node, "data": '{"id":1}'}
        d = self.treq.post("http://a/emulation", **({"json": body} if not kwargs else kwargs))
        self.treq.flush()
        return d

    def status(self, d: Any) -> int:
        response = self.successResultOf(d)
        self.assertEqual(self.successResultOf(response.content()), b"")
        code: int = response.code
        return code

    def counted(self, outcome: str) -> float:
        value: float = self.node.metrics.emulation.labels(outcome)._value.get()
        return value

    def test_delivered(self) -> None:
        self.assertEqual(self.status(self.post("node-a")), 204)
        self.assertEqual(self.client.data, [b'{"id":1}'])
        self.assertEqual(self.counted("ok"), 1)

    def test_noSession(self) -> None:
        self.assertEqual(self.status(self.post("node-a", session="gone")), 204)
        self.assertEqual(self.counted("no_session"), 1)

    def test_unknownNode(self) -> None:
        self.assertEqual(self.status(self.post("node-x")), 404)
        self.assertEqual(self.counted("unknown_node"), 1)

    def test_badBody(self) -> None:
        self.assertEqual(self.status(self.post("node-a", data=b"{not json")), 400)
        self.assertEqual(self.counted("bad_request"), 1)
        self.assertEqual(self.client.data, [])

    def test_forwardedOutcomes(self) -> None:
        """What the node that holds the session made of it: 204 whenever it answered, 500 when it did not."""
        for result, status in [
            (EmulationResult.FORWARDED, 204),
            (EmulationResult.NO_SESSION, 204),
            (EmulationResult.REFUSED, 204),
            (EmulationResult.UNREACHABLE, 500),
        ]:
            self.forwarder.result = result
            before = self.counted(result.value)
            self.assertEqual(self.status(self.post("node-b")), status, result)
            self.assertEqual(self.counted(result.value), before + 1, result)
        self.assertEqual(self.forwarder.calls[-1], ("node-b", "s1", b'{"id":1}'))
        self.assertEqual(self.client.data, [])

    def test_answersOnceRun(self) -> None:
        """The response waits for the commands to have run on the other node."""
        self.forwarder.result = Deferred()
        d = self.post("node-b")
        self.assertNoResult(d)
        self.forwarder.result.callback(EmulationResult.FORWARDED)
        self.treq.flush()
        self.assertEqual(self.status(d), 204)
