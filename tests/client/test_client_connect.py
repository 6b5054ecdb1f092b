"""
Tests for connecting (L{httpstream.client.client}): connection token claims and server-side subscriptions, expiry and
refresh, the anonymous and connection-limit rules, personal channels, the connect and refresh proxies, RPC and
send. In memory, on a fake clock, on both codecs (reference/messages.md sections 1.5, 3, 6, 7).
"""

from __future__ import annotations

import base64
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from httpstream.client.client import Client
from httpstream.node.node import Node
from httpstream.policy.rpc import RPCContext, RPCDisconnect, RPCError
from httpstream.values import ClientInfo
from httpstream.testing import FakeTransport, ManualBroker
from tests.clienthelpers import NOW, ChannelHelpers, token
from tests.policy.test_proxy import Backend

ANONYMOUS = {"allow_anonymous_connect_without_token": True}
HISTORY = {"history_size": 10, "history_ttl": "300s"}
PROXY = "http://backend.test/centrifugo/"


class ConnectTestsMixin(ChannelHelpers):
    """Connect behaviour, run on each codec."""

    def connect(self, node: Node, request: dict[str, Any] | None = None) -> tuple[Client, FakeTransport, dict]:
        """Send a connect; return the client, its transport and the reply (C{{}} when none came)."""
        client, transport = self.open(node)
        self.send(client, {"id": 1, "connect": request or {}})
        replies = [reply for reply in transport.replies() if reply.get("id") == 1]
        return client, transport, replies[0] if replies else {}

    # Token claims

    def test_tokenInfo(self) -> None:
        """The token's info (or b64info, decoded) is the connection's conn_info in presence and publications."""
        for claims, expected in (({"info": {"a": 1}}, b'{"a":1}'),
                                 ({"b64info": base64.b64encode(b'{"b":2}').decode()}, b'{"b":2}')):
            node = self.node(presence=True, allow_subscribe_for_client=True, allow_publish_for_client=True)
            client, transport = self.client(node, token(sub="alice", **claims))
            self.ok(client, transport, "subscribe", {"channel": "news"})
            self.ok(client, transport, "publish", {"channel": "news", "data": b"{}"})
            info = ClientInfo("alice", client.clientID, expected)
            self.assertEqual(self.successResultOf(node.presence.presence("news")), {client.clientID: info})
            self.assertEqual(self.pushes(transport, "pub")[0]["pub"]["info"],
                             {"user": "alice", "client": client.clientID, "conn_info": expected})

    def test_tokenChannels(self) -> None:
        """
        The channels claim subscribes the connection server-side before the reply, which lists them in subs;
        publications of those channels reach it.
        """
        node = self.node()
        client, transport, reply = self.connect(node, {"token": token(sub="alice", channels=["a", "b"])})
        self.assertEqual(reply["connect"]["subs"], {"a": {}, "b": {}})
        self.assertEqual(client.channels, {"a", "b"})
        self.assertEqual(node.hub.subscribers("a"), [client])
        self.publish(node, "b", b'{"x":1}')
        self.assertEqual(self.pushes(transport, "pub"), [{"channel": "b", "pub": {"data": b'{"x":1}'}}])

    def test_tokenSubs(self) -> None:
        """
        The subs claim (it wins over channels): its info becomes chan_info, its data the SubscribeResult data,
        its override the channel options (presence here).
        """
        node = self.node()
        subs = {"a": {"info": {"role": "x"}, "data": {"hello": 1}, "override": {"presence": {"value": True}}}}
        client, _, reply = self.connect(node, {"token": token(sub="alice", subs=subs, channels=["b"])})
        self.assertEqual(reply["connect"]["subs"], {"a": {"data": b'{"hello":1}'}})
        self.assertEqual(self.successResultOf(node.presence.presence("a")), {
            client.clientID: ClientInfo("alice", client.clientID, chanInfo=b'{"role":"x"}'),
        })

    def test_serverSideChannelNames(self) -> None:
        """
        Server-side channels are granted, not checked like client subscriptions: an unknown namespace fails
        the connect with 102, but a name a client could not subscribe to (not ASCII, private) is fine.
        """
        node = self.node(namespaces=[{"name": "ns"}])
        client, _transport, reply = self.connect(node, {"token": token(sub="alice", channels=["ns:a", "nope:b"])})
        self.assertEqual(reply, {"id": 1, "error": {"code": 102, "message": "unknown channel"}})
        self.assertFalse(client.connected)
        self.assertEqual(node.hub.channels(), [])
        client, _, reply = self.connect(node, {"token": token(sub="alice", channels=["caf\u00e9", "$p", "ns:a"])})
        self.assertEqual(set(reply["connect"]["subs"]), {"caf\u00e9", "$p", "ns:a"})

    def test_serverSideSubscriptionOptions(self) -> None:
        """
        A server-side subscription is recoverable, positioned and gets join/leave pushes only as the channel
        forces it (Centrifugo builds its options from force_* alone): allow_* and read permissions count only
        for what a client asks for itself.
        """
        base = {"name": "ns", **HISTORY, "join_leave": True, "presence": True}
        allowed = {**base, "allow_recovery": True, "allow_positioning": True, "allow_history_for_client": True,
                   "allow_presence_for_client": True}
        forced = {**base, "force_recovery": True, "force_push_join_leave": True}
        for name, namespace, recoverable in (("allowed", allowed, False), ("forced", forced, True)):
            node = self.node(namespaces=[namespace])
            _client, transport, reply = self.connect(node, {"token": token(sub="alice", channels=["ns:a"])})
            result = reply["connect"]["subs"]["ns:a"]
            self.assertEqual(result.get("recoverable", False), recoverable, name)
            self.assertEqual(result.get("positioned", False), recoverable, name)
            self.connect(node, {"token": token(sub="bob", channels=["ns:a"])})
            joins = [push["join"]["info"]["user"] for push in self.pushes(transport, "join")]
            self.assertEqual(joins, ["alice", "bob"] if recoverable else [], name)

    def test_channelLimitAtConnect(self) -> None:
        """More server-side channels than client_channel_limit: disconnect 3505."""
        _, transport, reply = self.connect(self.node(client_channel_limit=2),
                                           {"token": token(sub="alice", channels=["a", "b", "c"])})
        self.assertEqual(reply, {})
        self.assertDisconnected(transport, 3505, "channel limit")

    def test_serverSideSubscribeFailure(self) -> None:
        """When the engine cannot subscribe a server-side channel the connection ends with 3004 (reconnect)."""
        broker = ManualBroker(self.clock)
        node = self.node(broker=broker)
        _client, transport, _reply = self.connect(node, {"token": token(sub="alice", channels=["a"])})
        broker.fail()
        self.clock.advance(0)
        self.assertEqual(len(self.flushLoggedErrors(ConnectionError)), 1)
        self.assertDisconnected(transport, 3004, "internal server error")
        self.assertEqual(node.clients, {})
        self.assertEqual(node.hub.channels(), [])

    def test_expiry(self) -> None:
        """
        expire_at (else exp) sets the connection's expiry: expires/ttl in the result; expire_at 0 means never.
        """
        for claims, expected in (
            ({"exp": int(NOW) + 60}, {"expires": True, "ttl": 60}),
            ({"expire_at": int(NOW) + 100}, {"expires": True, "ttl": 100}),
            ({"exp": int(NOW) + 60, "expire_at": int(NOW) + 300}, {"expires": True, "ttl": 300}),
            ({"exp": int(NOW) + 60, "expire_at": 0}, {}),
        ):
            _, _, reply = self.connect(self.node(), {"token": token(sub="alice", **claims)})
            result = reply["connect"]
            self.assertEqual({k: result[k] for k in ("expires", "ttl") if k in result}, expected, claims)

    def test_meta(self) -> None:
        """The meta claim stays on the server (for the proxies): it is never sent to the client."""
        client, transport, _reply = self.connect(self.node(), {"token": token(sub="alice", meta={"plan": "gold"})})
        self.assertEqual(client.meta, b'{"plan":"gold"}')
        self.assertNotIn(b"gold", b"".join(transport.messages))

    # Refresh and expiry

    def test_refresh(self) -> None:
        """
        refresh with a new token of the same user: RefreshResult expires/ttl (nothing without expiry); another
        user or an invalid token -> 3500; an expired one -> 3005; no token -> 3501.
        """
        cases: list[tuple[str, dict[str, Any], Any]] = [
            ("later", {"token": token(sub="alice", exp=int(NOW) + 600)}, {"expires": True, "ttl": 590}),
            ("never", {"token": token(sub="alice")}, {}),
            ("other user", {"token": token(sub="bob", exp=int(NOW) + 600)}, (3500, "invalid token")),
            ("invalid", {"token": "not.a.token"}, (3500, "invalid token")),
            ("expired", {"token": token(sub="alice", exp=int(NOW) + 5)}, (3005, "connection expired")),
            ("no token", {}, (3501, "bad request")),
        ]
        for name, request, expected in cases:
            client, transport = self.client(self.node(), token(sub="alice", exp=int(NOW) + 60))
            self.clock.advance(10)
            if isinstance(expected, dict):
                self.assertEqual(self.ok(client, transport, "refresh", request), expected, name)
                self.assertIsNone(transport.closed, name)
            else:
                self.assertIsNone(self.call(client, transport, "refresh", request), name)
                self.assertDisconnected(transport, *expected)

    def test_notRefreshed(self) -> None:
        """Not refreshed: 3005 once client_expired_close_delay has passed after the expiry."""
        _client, transport = self.client(self.node(client_expired_close_delay="5s"),
                                        token(sub="alice", exp=int(NOW) + 60))
        self.clock.advance(64)
        self.assertIsNone(transport.closed)
        self.clock.advance(1.5)
        self.assertDisconnected(transport, 3005, "connection expired")

    # Who may connect

    def test_anonymousTokens(self) -> None:
        """A token without user is refused with 3507 under disallow_anonymous_connection_tokens."""
        node = self.node(disallow_anonymous_connection_tokens=True, **ANONYMOUS)
        _, transport, reply = self.connect(node, {"token": token(exp=int(NOW) + 60)})
        self.assertEqual(reply, {})
        self.assertDisconnected(transport, 3507, "permission denied")
        # Users with tokens, and anonymous connections without token, are not concerned.
        self.assertIn("connect", self.connect(node, {"token": token(sub="alice")})[2])
        self.assertIn("connect", self.connect(node)[2])

    def test_userConnectionLimit(self) -> None:
        """
        client_user_connection_limit: one more connection of a user is refused with 3504; a closed one frees
        its place; anonymous connections are not counted.
        """
        node = self.node(client_user_connection_limit=2, **ANONYMOUS)
        first, _, _ = self.connect(node, {"token": token(sub="alice")})
        self.connect(node, {"token": token(sub="alice")})
        _, transport, reply = self.connect(node, {"token": token(sub="alice")})
        self.assertEqual(reply, {})
        self.assertDisconnected(transport, 3504, "connection limit")
        self.assertIn("connect", self.connect(node, {"token": token(sub="bob")})[2])
        for _ in range(3):
            self.assertIn("connect", self.connect(node)[2])
        first.transportClosed()
        self.assertIn("connect", self.connect(node, {"token": token(sub="alice")})[2])

    def test_personalChannel(self) -> None:
        """
        user_subscribe_to_personal subscribes each user's connection to #<user> (<ns>:#<user> with
        user_personal_channel_namespace, which the config requires to exist); anonymous connections get none.
        """
        cases: list[tuple[str, dict[str, Any], str, Any]] = [
            ("top level", {}, "alice", {"#alice": {}}),
            ("namespace", {"user_personal_channel_namespace": "personal", "namespaces": [{"name": "personal"}]},
             "alice", {"personal:#alice": {}}),
            ("anonymous", {}, "", None),
            ("any user id", {}, "\u00e9l\u00e8ve", {"#\u00e9l\u00e8ve": {}}),
        ]
        for name, settings, user, expected in cases:
            node = self.node(user_subscribe_to_personal=True, **ANONYMOUS, **settings)
            _, _, reply = self.connect(node, {"token": token(sub=user)} if user else {})
            self.assertEqual(reply["connect"].get("subs"), expected, name)

    def test_personalChannelMessages(self) -> None:
        """What is published to a user's personal channel reaches every connection of that user."""
        node = self.node(user_subscribe_to_personal=True)
        transports = [self.client(node, token(sub="alice"))[1] for _ in range(2)]
        self.publish(node, "#alice", b'{"to":"alice"}')
        for transport in transports:
            self.assertEqual(self.pushes(transport, "pub"), [{"channel": "#alice", "pub": {"data": b'{"to":"alice"}'}}])

    # Connect and refresh proxies

    def proxyNode(self, backend: Backend, *names: str, **settings: Any) -> Node:
        endpoints = {f"proxy_{name}_endpoint": PROXY + name for name in names}
        return self.node(backend=backend, **endpoints, **settings)

    def test_connectProxy(self) -> None:
        """
        Without a token the connect proxy decides: its user, info (conn_info), data (ConnectResult.data) and
        channels (server-side subscriptions); the meta stays on the server. A token skips the proxy.
        """
        backend = Backend({"result": {"user": "56", "info": {"i": 1}, "data": {"d": 2}, "channels": ["news"],
                                      "meta": {"m": 3}}})
        node = self.proxyNode(backend, "connect")
        client, _transport, reply = self.connect(node, {"data": b'{"hello":1}', "name": "js", "version": "5"})
        result = reply["connect"]
        self.assertEqual((result["data"], result["subs"]), (b'{"d":2}', {"news": {}}))
        self.assertEqual((client.user, client.connInfo, client.meta), ("56", b'{"i":1}', b'{"m":3}'))
        body = backend.last["body"]
        self.assertEqual((body["name"], body["version"]), ("js", "5"))
        if self.protocol == "json":
            self.assertEqual(body["data"], {"hello": 1})
        else:
            # Protobuf payloads are any bytes: they travel base64 (httpstream's per-connection binary encoding).
            self.assertEqual(base64.b64decode(body["b64data"]), b'{"hello":1}')
        self.connect(node, {"token": token(sub="alice")})
        self.assertEqual(len(backend.requests), 1)

    def test_connectProxySubs(self) -> None:
        """
        The connect proxy's subs, as a token's: info becomes chan_info, data the SubscribeResult data, override the
        channel options (presence here); a channel of both channels and subs takes its subs options.
        """
        backend = Backend({"result": {"user": "56", "channels": ["a", "b"], "subs": {"a": {
            "info": {"role": "x"}, "b64data": base64.b64encode(b'{"hello":1}').decode(),
            "override": {"presence": {"value": True}}}}}})
        node = self.proxyNode(backend, "connect")
        client, _, reply = self.connect(node)
        self.assertEqual(reply["connect"]["subs"], {"a": {"data": b'{"hello":1}'}, "b": {}})
        self.assertEqual(self.successResultOf(node.presence.presence("a")), {
            client.clientID: ClientInfo("56", client.clientID, chanInfo=b'{"role":"x"}'),
        })

    def test_connectProxyOutcomes(self) -> None:
        """
        The proxy's error is the connect's error reply, its disconnect a disconnect; a failed call is 100; no
        result connects anonymously only where anonymous connections are allowed; an unknown namespace in its
        channels is 102.
        """
        cases: list[tuple[str, Any, dict[str, Any], Any]] = [
            ("error", {"error": {"code": 1000, "message": "custom"}}, {}, {"code": 1000, "message": "custom"}),
            ("disconnect", {"disconnect": {"code": 4501, "reason": "go away"}}, {}, (4501, "go away")),
            ("failed call", (500, b"oops"), {}, {"code": 100, "message": "internal server error", "temporary": True}),
            ("no result", {}, {}, (3501, "bad request")),
            ("no result, anonymous allowed", {}, ANONYMOUS, ""),
            ("anonymous user", {"result": {"user": ""}}, {}, ""),
            ("unknown namespace", {"result": {"user": "a", "channels": ["nope:x"]}}, {},
             {"code": 102, "message": "unknown channel"}),
        ]
        for name, answer, settings, expected in cases:
            node = self.proxyNode(Backend(answer), "connect", **settings)
            client, transport, reply = self.connect(node)
            if isinstance(expected, str):
                self.assertIn("connect", reply, name)
                self.assertEqual(client.user, expected, name)
            elif isinstance(expected, dict):
                self.assertEqual(reply, {"id": 1, "error": expected}, name)
                self.assertFalse(client.connected, name)
            else:
                self.assertEqual(reply, {}, name)
                self.assertDisconnected(transport, *expected)

    def test_proxyForwardsRequestHeaders(self) -> None:
        """
        The headers of the HTTP request that opened the connection, and the emulated connect.headers, reach the
        proxy when proxy_http_headers lists them; others do not.
        """
        backend = Backend({"result": {"user": "56"}})
        node = self.proxyNode(backend, "connect", proxy_http_headers=["X-Request-Id", "X-Emulated"])
        client, transport = self.open(node, requestHeaders={"x-request-id": "r1", "cookie": "secret"})
        self.send(client, {"id": 1, "connect": {"headers": {"X-Emulated": "e1"}}})
        headers = backend.last["headers"]
        self.assertEqual(headers.getRawHeaders("x-request-id"), ["r1"])
        self.assertEqual(headers.getRawHeaders("x-emulated"), ["e1"])
        self.assertIsNone(headers.getRawHeaders("cookie"))

    def test_refreshProxy(self) -> None:
        """
        With a refresh proxy the server refreshes the connection: no expires in the ConnectResult, a refresh
        command is a protocol error, and at expiry (+ client_expired_close_delay) the proxy extends it or
        ends it with 3005.
        """
        answers: list[dict] = [{"result": {"user": "56", "expire_at": int(NOW) + 60}}]
        backend = Backend(lambda body: answers.pop(0))
        node = self.proxyNode(backend, "connect", "refresh", client_expired_close_delay="5s")
        client, transport, reply = self.connect(node)
        self.assertNotIn("expires", reply["connect"])
        answers.append({"result": {"expire_at": int(NOW) + 200, "info": {"fresh": True}}})
        self.clock.advance(66)
        self.assertEqual(backend.last["path"], "/centrifugo/refresh")
        self.assertEqual(client.connInfo, b'{"fresh":true}')
        answers.append({"result": {"expired": True}})
        self.clock.advance(140)
        self.assertDisconnected(transport, 3005, "connection expired")

    def test_refreshCommandWithRefreshProxy(self) -> None:
        node = self.proxyNode(Backend(), "refresh")
        client, transport = self.client(node, token(sub="alice", exp=int(NOW) + 60))
        self.call(client, transport, "refresh", {"token": token(sub="alice", exp=int(NOW) + 600)})
        self.assertDisconnected(transport, 3501, "bad request")

    # RPC and send

    def test_rpc(self) -> None:
        """
        rpc: a method registered in process answers (or fails with its RPCError, or disconnects); another
        method goes to the RPC proxy when there is one, else 104; with no handler at all 108.
        """
        node = self.proxyNode(Backend({"result": {"data": {"from": "proxy"}}}), "rpc")
        calls: list[tuple[str, bytes]] = []

        def echo(ctx: RPCContext, data: bytes) -> bytes:
            calls.append((ctx.user, data))
            return data

        def refuse(ctx: RPCContext, data: bytes) -> None:
            raise RPCError(1001, "refused")

        def leave(ctx: RPCContext, data: bytes) -> None:
            raise RPCDisconnect(4500, "bye")

        for name, handler in (("echo", echo), ("refuse", refuse), ("leave", leave)):
            node.rpc.register(name, handler)
        client, transport = self.client(node, token(sub="alice"))
        self.assertEqual(self.ok(client, transport, "rpc", {"method": "echo", "data": b'{"x":1}'}),
                         {"data": b'{"x":1}'})
        self.assertEqual(calls, [("alice", b'{"x":1}')])
        self.assertEqual(self.ok(client, transport, "rpc", {"method": "other", "data": b"{}"}),
                         {"data": b'{"from":"proxy"}'})
        self.assertEqual(self.call(client, transport, "rpc", {"method": "refuse"}),
                         {"id": 4, "error": {"code": 1001, "message": "refused"}})
        self.assertIsNone(self.call(client, transport, "rpc", {"method": "leave"}))
        self.assertDisconnected(transport, 4500, "bye")

    def test_rpcWithoutProxy(self) -> None:
        for registered, expected in ((False, 108), (True, 104)):
            node = self.node()
            if registered:
                node.rpc.register("known", lambda ctx, data: data)
            client, transport = self.client(node, token(sub="alice"))
            self.assertEqual(self.errorCode(client, transport, "rpc", {"method": "unknown"}), expected)

    def test_send(self) -> None:
        """send reaches the hooks with the connection's context and gets no reply; without a hook: 3508."""
        node = self.node()
        received: list[tuple[str, bytes]] = []
        node.rpc.onSend(lambda ctx, data: received.append((ctx.user, data)))
        client, transport = self.client(node, token(sub="alice"))
        self.send(client, {"send": {"data": b'{"m":1}'}})
        self.assertEqual(received, [("alice", b'{"m":1}')])
        self.assertEqual(transport.replies(), [])
        self.assertIsNone(transport.closed)
        client, transport = self.client(self.node(), token(sub="alice"))
        self.send(client, {"send": {"data": b'{"m":1}'}})
        self.assertDisconnected(transport, 3508, "not available")


class JSONConnectTests(ConnectTestsMixin, SynchronousTestCase):
    protocol = "json"


class ProtobufConnectTests(ConnectTestsMixin, SynchronousTestCase):
    protocol = "protobuf"
