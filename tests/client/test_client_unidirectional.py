"""
A L{Client} on a unidirectional transport (uni_http_stream, uni_sse, uni_websocket), in memory: its connect request
comes from the transport (L{Client.connect}), never as a command; it gets bare pushes (no Reply around them, no
replies at all), its connect result as a C{connect} push, pings it need not answer, and its failed connect as a
disconnect (centrifuge ``client.go`` ``unidirectionalConnect``, ``encodeReply``, ``defaultUniErrorCodeToDisconnect``).
"""

from __future__ import annotations

from typing import Any

import orjson
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from httpstream.client.client import Client
from httpstream.decisions import ConnectDecision, Refused
from httpstream.node.frames import PublicationFrames
from httpstream.node.node import Node
from httpstream.protocol import codes
from httpstream.testing import FakePolicy, FakeTransport, makeNode
from httpstream.values import ClientInfo, Publication

NOW = 1_700_000_000.0


class UnidirectionalClientTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.policy = FakePolicy()

    def node(self, **settings: Any) -> Node:
        settings.setdefault("ping_interval", -1)
        return makeNode(settings, self.clock, policy=self.policy)

    def open(self, node: Node) -> tuple[Client, FakeTransport]:
        transport = FakeTransport("json", emulated=False, name="uni_sse", unidirectional=True)
        client = node.newClient(transport)
        assert isinstance(client, Client)
        return client, transport

    def connected(self, node: Node, request: dict[str, Any] | None = None) -> tuple[Client, FakeTransport]:
        client, transport = self.open(node)
        client.connect(request or {})
        self.clock.advance(0)
        return client, transport

    def written(self, transport: FakeTransport) -> list[Any]:
        return [orjson.loads(message) for message in transport.messages]

    def test_connectResultIsAPush(self) -> None:
        """
        The connect result goes out as a bare C{connect} push: a session of its own, no node (nothing may be
        emulated on it), the ping interval, and never C{pong} (the client cannot answer); the policy is asked with
        the request the transport read.
        """
        node = self.node(ping_interval="20s", pong_timeout="5s")
        client, transport = self.connected(node, {"token": "t", "data": b'{"a":1}', "name": "curl"})
        [push] = self.written(transport)
        result = push["connect"]
        self.assertEqual(set(push), {"connect"})
        self.assertEqual(result["client"], client.clientID)
        self.assertEqual(result["ping"], 20)
        self.assertNotIn("pong", result)
        self.assertNotIn("node", result)
        self.assertTrue(result["session"])
        # The session is only a name: no emulation request can reach this client.
        self.assertEqual(client.sessionID, "")
        self.assertIsNone(node.registry.get(result["session"]))
        [(method, (_, request))] = [call for call in self.policy.asked if call[0] == "connecting"]
        self.assertEqual((request.token, request.data, request.name), ("t", b'{"a":1}', "curl"))
        self.assertTrue(client.connected)

    def test_pingsNeedNoPong(self) -> None:
        """Pings are empty pushes, and the connection stays open past every pong timeout."""
        node = self.node(ping_interval="2s", pong_timeout="1s")
        client, transport = self.connected(node)
        transport.clear()
        self.clock.pump([0.5] * 20)
        self.assertGreaterEqual(self.written(transport).count({}), 4)
        self.assertEqual(set(map(bytes, transport.messages)), {b"{}"})
        self.assertIsNone(transport.closed)

    def test_serverSidePushesAreBare(self) -> None:
        """Server-side subscriptions in the connect push; publications, unsubscribes and disconnects bare."""
        self.policy.answers["connecting"] = ConnectDecision(user="alice", subscriptions={"news": None})
        node = self.node()
        client, transport = self.connected(node)
        [connect] = self.written(transport)
        self.assertEqual(connect["connect"]["subs"], {"news": {}})
        transport.clear()
        publication = Publication(data=b'{"x":1}', info=ClientInfo("bob", "c2"))
        client.deliverPublication(PublicationFrames("news", publication, None))
        client.serverUnsubscribe("news", *codes.UNSUBSCRIBE_SERVER)
        client.disconnect(3503, "force disconnect")
        self.assertEqual(
            self.written(transport),
            [
                {"channel": "news", "pub": {"data": {"x": 1}, "info": {"user": "bob", "client": "c2"}}},
                {"channel": "news", "unsubscribe": {"code": 2000, "reason": "server unsubscribe"}},
                {"disconnect": {"code": 3503, "reason": "force disconnect"}},
            ],
        )
        self.assertEqual(transport.closed, (3503, "force disconnect"))

    def test_joinLeaveFramesAreBareForUnidirectionalSubscribers(self) -> None:
        """The node encodes a join once per protocol and framing: a bare push for a unidirectional subscriber."""
        frames = PublicationFrames("news", Publication(data=b"{}"), None)
        bare = frames.frame("json", "plain", True) or b""
        self.assertEqual(orjson.loads(bare), {"channel": "news", "pub": {"data": {}}})
        self.assertEqual(orjson.loads(frames.frame("json", "plain") or b""),
                         {"push": {"channel": "news", "pub": {"data": {}}}})

    def test_refusedConnectDisconnects(self) -> None:
        """
        A connect error ends the connection instead of replying: expired and token-expired become 3005, too many
        requests 3013, permission denied 3507, anything else 3004; a refusal that is a disconnect stays one.
        """
        cases = [
            (codes.ERROR_TOKEN_EXPIRED, codes.DISCONNECT_EXPIRED),
            (codes.ERROR_EXPIRED, codes.DISCONNECT_EXPIRED),
            (codes.ERROR_TOO_MANY_REQUESTS, codes.DISCONNECT_TOO_MANY_REQUESTS),
            (codes.ERROR_PERMISSION_DENIED, codes.DISCONNECT_PERMISSION_DENIED),
            (codes.ERROR_UNAUTHORIZED, codes.DISCONNECT_SERVER_ERROR),
            (codes.DISCONNECT_INVALID_TOKEN, codes.DISCONNECT_INVALID_TOKEN),
        ]
        for refusal, disconnect in cases:
            self.policy.answers["connecting"] = Refused(refusal)
            client, transport = self.connected(self.node())
            self.assertEqual(
                self.written(transport), [{"disconnect": {"code": disconnect.code, "reason": disconnect.reason}}]
            )
            self.assertEqual(transport.closed, (disconnect.code, disconnect.reason))
            self.assertTrue(client.closed)

    def test_failingPolicyIsServerError(self) -> None:
        """A connect whose policy fails (a bug, a proxy down) ends the connection with 3004."""
        self.policy.answers["connecting"] = RuntimeError("boom")
        _, transport = self.connected(self.node())
        self.assertEqual(transport.closed, (3004, "internal server error"))
        self.flushLoggedErrors(RuntimeError)

    def test_staleWithoutConnect(self) -> None:
        """A transport that never hands a connect request over (no first message) ends stale, pushed bare."""
        client, transport = self.open(self.node(client_stale_close_delay="3s"))
        self.clock.advance(3)
        self.assertEqual(self.written(transport), [{"disconnect": {"code": 3502, "reason": "stale"}}])

    def test_secondConnectIsBadRequest(self) -> None:
        """Only one connect: a transport that handed a second one over gets the client cut off (3501)."""
        client, transport = self.connected(self.node())
        client.connect({})
        self.assertEqual(transport.closed, (3501, "bad request"))
