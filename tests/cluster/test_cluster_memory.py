"""
Two nodes of a cluster in one process, joined by the control plane over an in-memory bus on a L{Clock}: the server
API acting on users' connections of the other node, C{info} and C{channels} over both, and C{/emulation} POSTs
forwarded to the node whose session they name (no sticky sessions). The real cluster (two processes, Redis, the JS
SDK) is tests/cluster/test_cluster.py.
"""

from __future__ import annotations

import json
from typing import Any

import jwt
from treq.testing import StubTreq
from twisted.internet.defer import fail
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from httpstream.serverapi.api import APIError, ServerAPI
from httpstream.cluster.memory import memoryCluster
from httpstream.node.node import Node
from httpstream.origin import OriginChecker
from httpstream.config.sharedpoll import SharedPollOptions
from httpstream.testing import FakeClient, FakeTransport, connectClient, encodeCommands, makeNode
from httpstream.testing.sharedpoll import FakeKeyedSubscriber
from httpstream.web.app import makeApp

SECRET = "cluster-test-secret-0123456789abcdef0123456789"
SETTINGS: dict[str, Any] = {
    "token_hmac_secret_key": SECRET,
    "http_stream": True,
    "namespaces": [{"name": "chat", "allow_subscribe_for_client": True}],
}


class ClusterTestCase(SynchronousTestCase):
    """Nodes a and b, each with its ServerAPI, their controls started on one bus."""

    settings: dict[str, Any] = SETTINGS

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.a = makeNode(self.settings, self.clock, nodeID="node-a")
        self.b = makeNode(self.settings, self.clock, nodeID="node-b")
        self.controls = memoryCluster(self.clock, [self.a, self.b])
        for node, control in zip((self.a, self.b), self.controls):
            node.useControl(control)
            control.startService()
            self.addCleanup(lambda c=control: c.running and c.stopService())
        self.apiA, self.apiB = ServerAPI(self.a), ServerAPI(self.b)

    def connect(self, node: Node, user: str, *channels: str) -> FakeTransport:
        client, transport = connectClient(node, FakeTransport(), token=jwt.encode({"sub": user}, SECRET))
        for index, channel in enumerate(channels, start=2):
            client.handleData(encodeCommands("json", [{"id": index, "subscribe": {"channel": channel}}]))
        self.clock.advance(0)
        transport.batches.clear()
        return transport

    def pushes(self, transport: FakeTransport) -> list[dict[str, Any]]:
        self.clock.advance(0)
        return [json.loads(line) for batch in transport.batches for message in batch
                for line in message.splitlines() if line]


class UserMethodTests(ClusterTestCase):
    def test_disconnectReachesOtherNode(self) -> None:
        """An API disconnect sent to b cuts the user's connection on a, with the code asked for."""
        onA = self.connect(self.a, "alice")
        other = self.connect(self.a, "bob")
        result = self.apiB.disconnect(user="alice", disconnect={"code": 4001, "reason": "bye"})
        self.assertEqual(self.successResultOf(result), {})
        self.assertEqual(onA.closes, [(4001, "bye")])
        self.assertEqual(other.closes, [])

    def test_unsubscribeReachesOtherNode(self) -> None:
        onA = self.connect(self.a, "alice", "chat:x")
        self.successResultOf(self.apiB.unsubscribe(user="alice", channel="chat:x"))
        (push,) = self.pushes(onA)
        self.assertEqual(push["push"]["channel"], "chat:x")
        self.assertIn("unsubscribe", push["push"])

    def test_subscribeReachesOtherNode(self) -> None:
        onA = self.connect(self.a, "alice")
        self.successResultOf(self.apiB.subscribe(user="alice", channel="chat:y", data={"hello": 1}))
        (push,) = self.pushes(onA)
        self.assertEqual(push["push"]["channel"], "chat:y")
        self.assertEqual(push["push"]["subscribe"]["data"], {"hello": 1})

    def test_refreshReachesOtherNode(self) -> None:
        """A refresh with expired=true sent to b ends the user's connection on a (3005 token expired)."""
        onA = self.connect(self.a, "alice")
        self.successResultOf(self.apiB.refresh(user="alice", expired=True))
        self.clock.advance(0)
        self.assertEqual([code for code, _ in onA.closes], [3005])

    def test_checkedBeforeAnyNodeActs(self) -> None:
        """A bad request is answered by the node it was sent to; no node acts on it."""
        self.connect(self.a, "alice", "chat:x")
        published = len(self.controls[1].pubsub._bus.published)
        error = self.failureResultOf(self.apiB.unsubscribe(user="alice", channel="nope:x"), APIError)
        self.assertEqual(error.value.error.code, 102)
        self.assertEqual(len(self.controls[1].pubsub._bus.published), published)

    def test_nodeFailedIsNoSuccess(self) -> None:
        """A node that could not run the method makes the call fail with 100, not a false success."""
        self.controls[0].setUserHandler(lambda method, request: fail(RuntimeError("boom")))
        error = self.failureResultOf(self.apiB.disconnect(user="alice"), APIError)
        self.assertEqual(error.value.error.code, 100)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_busDownIsNoSuccess(self) -> None:
        self.controls[1].pubsub.disconnect()
        error = self.failureResultOf(self.apiB.disconnect(user="alice"), APIError)
        self.assertEqual(error.value.error.code, 100)


class AggregateTests(ClusterTestCase):
    def test_infoListsEveryNode(self) -> None:
        self.connect(self.b, "carol")
        self.clock.advance(3)  # another node's counts are as it last announced them
        nodes = self.successResultOf(self.apiA.info())["nodes"]
        self.assertEqual([(n["uid"], n["num_clients"]) for n in nodes], [("node-a", 0), ("node-b", 1)])

    def test_numNodesMetric(self) -> None:
        """Prometheus shows how many nodes each one sees, and the count drops when one stops."""
        self.assertIn(b"httpstream_node_num_nodes 2.0", self.a.metrics.exposition())
        self.controls[1].stopService()
        self.assertIn(b"httpstream_node_num_nodes 1.0", self.a.metrics.exposition())

    def test_channelsSumsNodes(self) -> None:
        self.connect(self.a, "alice", "chat:x")
        self.connect(self.b, "bob", "chat:x", "chat:z")
        result = self.successResultOf(self.apiA.channels())
        self.assertEqual(result, {"channels": {"chat:x": {"num_clients": 2}, "chat:z": {"num_clients": 1}}})
        result = self.successResultOf(self.apiB.channels(pattern="chat:z*"))
        self.assertEqual(result, {"channels": {"chat:z": {"num_clients": 1}}})


class EmulationForwardingTests(ClusterTestCase):
    """POST /emulation to node b for a session of node a."""

    def setUp(self) -> None:
        super().setUp()
        self.session = FakeClient(sessionID="s1")
        self.a.registry.add("s1", self.session)
        self.treq = StubTreq(makeApp(self.b, OriginChecker(())).resource())

    def post(self, node: str, session: str = "s1") -> Any:
        body = {"session": session, "node": node, "data": '{"id":1,"rpc":{}}'}
        return self.treq.post("http://b/emulation", json=body)

    def status(self, d: Any) -> int:
        self.treq.flush()
        self.clock.advance(0)  # forwarded requests leave in one batch at the end of the reactor turn
        self.treq.flush()
        return self.successResultOf(d).code

    def test_forwarded(self) -> None:
        self.assertEqual(self.status(self.post("node-a")), 204)
        self.assertEqual(self.session.data, [b'{"id":1,"rpc":{}}'])
        samples = self.b.metrics.emulation.labels("forwarded")._value.get()
        self.assertEqual(samples, 1)

    def test_unknownSessionThere(self) -> None:
        """Like a dead session on this node: 204, the commands dropped (the SDK times out and reconnects)."""
        self.assertEqual(self.status(self.post("node-a", session="gone")), 204)
        self.assertEqual(self.session.data, [])

    def test_unknownNode404(self) -> None:
        self.assertEqual(self.status(self.post("node-c")), 404)

    def test_noAnswer500(self) -> None:
        """Node a still listed but not answering (its bus link lost): 500 after the request timeout (10 s)."""
        self.controls[0].pubsub.disconnect()
        d = self.post("node-a")
        self.treq.flush()
        self.assertNoResult(d)
        self.clock.advance(10)
        self.assertEqual(self.status(d), 500)
        self.assertEqual(self.session.data, [])


class SharedPollPublishTests(ClusterTestCase):
    """The server API's shared_poll_publish on one node reaches the trackers of the key on every node."""

    settings = {
        **SETTINGS,
        "shared_poll_hmac_secret_key": "poll-secret",
        "proxies": [{"name": "backend", "endpoint": "http://127.0.0.1:9/refresh"}],
        "namespaces": [{"name": "poll", "subscription_type": "shared_poll", "shared_poll_proxy_name": "backend",
                        "shared_poll_mode": "versioned", "shared_poll_publish_enabled": True}],
    }

    def test_everyNode(self) -> None:
        trackers = []
        for node in (self.a, self.b):
            tracker = FakeKeyedSubscriber()
            node.sharedPoll.join("poll:p", SharedPollOptions.of(node.rules.options("poll:p")), tracker)
            node.sharedPoll.track("poll:p", tracker, ["k"])
            trackers.append(tracker)
        d = self.apiB.call("shared_poll_publish", {"channel": "poll:p", "key": "k", "data": {"v": 1}, "version": 3})
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(d), {})
        for tracker in trackers:
            self.assertEqual(tracker.received(), [("k", 3, b'{"v":1}', False)])
