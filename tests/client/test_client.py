"""
Tests for L{httpstream.client.client}: one connection's protocol state machine, in memory, on a fake clock.

The behaviour SDKs rely on (reference/messages.md sections 1.5, 2, 3 and 6) is checked on both codecs by
L{ClientTestsMixin}; wire details of one codec live in their own classes.
"""

from __future__ import annotations

import uuid
from typing import Any, Optional

import jwt
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from httpstream.client.client import MAX_PENDING_FRAMES, Client
from httpstream.node.node import Node
from httpstream.testing import FakeTransport, ManualBroker, encodeCommands, makeNode

SECRET = "a-test-secret-long-enough-for-hs512-keys-which-want-64-bytes!!!!"
NOW = 1_700_000_000.0

# A server where anyone may connect, subscribe and publish.
OPEN = {
    "allow_anonymous_connect_without_token": True,
    "allow_subscribe_for_client": True,
    "allow_subscribe_for_anonymous": True,
    "allow_publish_for_client": True,
    "allow_publish_for_anonymous": True,
}
NO_PING = {"ping_interval": -1}


def token(**claims: Any) -> str:
    return jwt.encode(claims, SECRET, algorithm="HS256")


def error(commandID: int, code: int, message: str, temporary: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if temporary:
        body["temporary"] = True
    return {"id": commandID, "error": body}


def disconnectPush(code: int, reason: str) -> dict[str, Any]:
    return {"push": {"disconnect": {"code": code, "reason": reason}}}


def publication(channel: str, data: bytes, **info: Any) -> dict[str, Any]:
    return {"push": {"channel": channel, "pub": {"data": data, "info": info}}}


class ClientHelpers:
    """Builds nodes and connections on a fake clock; set C{protocol}."""

    protocol = "json"

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)

    def node(self, broker: Optional[ManualBroker] = None, **settings: Any) -> Node:
        settings.setdefault("token_hmac_secret_key", SECRET)
        return makeNode(settings, self.clock, broker=broker)

    def open(self, node: Node, **transportArgs: Any) -> tuple[Client, FakeTransport]:
        transport = FakeTransport(self.protocol, **transportArgs)
        return node.newClient(transport), transport

    def send(self, client: Client, *commands: dict[str, Any]) -> Deferred[None]:
        """Send one frame of commands and let the writer write (one reactor turn)."""
        d = client.handleData(encodeCommands(self.protocol, commands))
        self.clock.advance(0)
        return d

    def connected(self, node: Node, jwt: str = "", **transportArgs: Any) -> tuple[Client, FakeTransport]:
        """A client past a successful connect, its transport cleared."""
        client, transport = self.open(node, **transportArgs)
        self.send(client, {"id": 1, "connect": {"token": jwt} if jwt else {}})
        [reply] = transport.replies()
        self.assertIn("connect", reply, reply)
        transport.clear()
        return client, transport

    def assertDisconnected(self, transport: FakeTransport, code: int, reason: str, pushed: bool = True) -> None:
        """Closed with this code; on a transport that wants it, the Disconnect push was the last thing written."""
        self.assertEqual(transport.closed, (code, reason))
        if pushed:
            self.assertEqual(transport.replies()[-1:], [disconnectPush(code, reason)])

    def assertOpen(self, client: Client, transport: FakeTransport) -> None:
        self.assertIsNone(transport.closed)
        self.assertFalse(client.closed)

    def waitForPing(self, transport: FakeTransport, limit: float) -> float:
        """Advance time until a server ping (an empty Reply) is written; return how long it took."""
        waited = 0.0
        while waited < limit + 0.05:
            self.clock.advance(0.1)
            waited += 0.1
            if {} in transport.replies():
                return waited
        self.fail(f"no ping within {limit}s")


class ClientTestsMixin(ClientHelpers):
    """The protocol behaviour, run on each codec."""

    # Connect

    def test_anonymousConnect(self) -> None:
        """
        With anonymous connections allowed, a connect without token gets the ConnectResult: a UUIDv4 client id,
        the server version, the ping interval with pong required, and on an emulated transport a session (a
        UUIDv4 of its own) and this node's id. The client is then known to the node and its session registry.
        """
        node = self.node(**OPEN)
        client, transport = self.open(node)
        self.send(client, {"id": 1, "connect": {}})
        [reply] = transport.replies()
        result = reply["connect"]
        self.assertEqual(reply["id"], 1)
        self.assertEqual(
            result,
            {
                "client": client.clientID,
                "version": node.version,
                "ping": 25,
                "pong": True,
                "session": client.sessionID,
                "node": node.id,
            },
        )
        self.assertEqual(uuid.UUID(result["client"]).version, 4)
        self.assertEqual(uuid.UUID(result["session"]).version, 4)
        self.assertNotEqual(result["session"], result["client"])
        self.assertTrue(client.connected)
        self.assertEqual(client.user, "")
        self.assertIs(node.clients[client.clientID], client)
        self.assertIs(node.registry.get(client.sessionID), client)
        self.assertIsNone(transport.closed)

    def test_connectEchoesCommandID(self) -> None:
        client, transport = self.open(self.node(**OPEN))
        self.send(client, {"id": 42, "connect": {}})
        self.assertEqual(transport.replies()[0]["id"], 42)

    def test_notEmulated(self) -> None:
        """
        A transport that is not emulated (WebSocket) gets no session and no node, and is not registered.
        """
        node = self.node(**OPEN)
        client, transport = self.open(node, emulated=False, pushDisconnect=False, name="websocket")
        self.send(client, {"id": 1, "connect": {}})
        result = transport.replies()[0]["connect"]
        self.assertNotIn("session", result)
        self.assertNotIn("node", result)
        self.assertEqual(client.sessionID, "")
        self.assertEqual(len(node.registry), 0)
        self.assertIn(client.clientID, node.clients)

    def test_anonymousRefused(self) -> None:
        """
        No token and no anonymous option: disconnect 3501 "bad request" (not an error reply), pushed first.
        """
        node = self.node()
        client, transport = self.open(node)
        self.send(client, {"id": 1, "connect": {}})
        self.assertEqual(transport.replies(), [disconnectPush(3501, "bad request")])
        self.assertDisconnected(transport, 3501, "bad request")
        self.assertTrue(client.closed)
        self.assertEqual(node.clients, {})

    def test_insecureAllowsAnonymous(self) -> None:
        client, transport = self.connected(self.node(client_insecure=True))
        self.assertTrue(client.connected)

    def test_firstCommandMustBeConnect(self) -> None:
        for command in (
            {"id": 1, "subscribe": {"channel": "news"}},
            {"id": 1, "rpc": {"method": "x"}},
            {},
        ):
            client, transport = self.open(self.node(**OPEN))
            self.send(client, command)
            self.assertEqual(transport.replies(), [disconnectPush(3501, "bad request")], command)
            self.assertDisconnected(transport, 3501, "bad request")

    def test_connectWithoutID(self) -> None:
        """
        A connect with id 0 is taken as a pong, which is a protocol error before connecting.
        """
        client, transport = self.open(self.node(**OPEN))
        self.send(client, {"connect": {}})
        self.assertDisconnected(transport, 3501, "bad request")

    def test_secondConnect(self) -> None:
        client, transport = self.connected(self.node(**OPEN))
        self.send(client, {"id": 2, "connect": {}})
        self.assertEqual(transport.replies(), [disconnectPush(3501, "bad request")])
        self.assertDisconnected(transport, 3501, "bad request")

    def test_frameGoingBad(self) -> None:
        """
        A frame whose later command cannot be decoded: the commands before it run, then 3501 (Centrifugo decodes
        and handles a frame's commands one by one).
        """
        bad = b'\n{"id":"x"}' if self.protocol == "json" else b"\x80"  # a wrong type; a truncated varint
        client, transport = self.open(self.node(**OPEN))
        client.handleData(encodeCommands(self.protocol, [{"id": 1, "connect": {}}]) + bad)
        self.clock.advance(0)
        replies = transport.replies()
        self.assertEqual(replies[0]["connect"]["client"], client.clientID)
        self.assertEqual(replies[1:], [disconnectPush(3501, "bad request")])
        self.assertDisconnected(transport, 3501, "bad request")

    def test_tokenConnect(self) -> None:
        """
        A valid HS256 token: the user is its sub, and its exp gives expires and the ttl in seconds.
        """
        node = self.node()
        client, transport = self.open(node)
        self.send(client, {"id": 1, "connect": {"token": token(sub="alice", exp=int(NOW) + 3600)}})
        result = transport.replies()[0]["connect"]
        self.assertEqual(result["expires"], True)
        self.assertEqual(result["ttl"], 3600)
        self.assertEqual(client.user, "alice")

    def test_tokenWithoutExp(self) -> None:
        client, transport = self.open(self.node())
        self.send(client, {"id": 1, "connect": {"token": token(sub="alice")}})
        result = transport.replies()[0]["connect"]
        self.assertNotIn("expires", result)
        self.assertNotIn("ttl", result)

    def test_insecureIgnoresExpiry(self) -> None:
        client, transport = self.open(self.node(client_insecure=True))
        self.send(client, {"id": 1, "connect": {"token": token(sub="alice", exp=int(NOW) + 60)}})
        self.assertNotIn("expires", transport.replies()[0]["connect"])

    def test_expiredToken(self) -> None:
        """
        An expired token gets error 109 "token expired" (the SDK fetches a new token and reconnects); the
        connection stays open but unusable: its next command is a 3501.
        """
        node = self.node(**OPEN)
        client, transport = self.open(node)
        self.send(client, {"id": 1, "connect": {"token": token(sub="alice", exp=int(NOW) - 1)}})
        self.assertEqual(transport.replies(), [error(1, 109, "token expired")])
        self.assertIsNone(transport.closed)
        self.assertFalse(client.connected)
        self.assertEqual(node.clients, {})
        self.send(client, {"id": 2, "connect": {}})
        self.assertDisconnected(transport, 3501, "bad request")

    def test_failedConnectGoesStale(self) -> None:
        client, transport = self.open(self.node(**OPEN))
        self.send(client, {"id": 1, "connect": {"token": token(sub="alice", exp=int(NOW) - 1)}})
        self.clock.advance(10)
        self.assertDisconnected(transport, 3502, "stale")

    def test_badToken(self) -> None:
        """
        A token that is not valid (bad signature, or not signed with the configured secret): 3500 "invalid token".
        """
        for jwtToken in (
            jwt.encode({"sub": "alice"}, "another-secret-long-enough-for-hs512-keys-which-want-64-bytes!!", "HS256"),
            "garbage",
        ):
            client, transport = self.open(self.node(**OPEN))
            self.send(client, {"id": 1, "connect": {"token": jwtToken}})
            self.assertDisconnected(transport, 3500, "invalid token")

    def test_tokenWithoutConfiguredSecret(self) -> None:
        client, transport = self.open(self.node(token_hmac_secret_key=""))
        self.send(client, {"id": 1, "connect": {"token": token(sub="alice")}})
        self.assertDisconnected(transport, 3500, "invalid token")

    def test_anonymousToken(self) -> None:
        """
        A valid token with an empty sub connects anonymously, even without the anonymous options.
        """
        client, transport = self.open(self.node())
        self.send(client, {"id": 1, "connect": {"token": token(sub="")}})
        self.assertIn("connect", transport.replies()[0])
        self.assertEqual(client.user, "")

    def test_expireAtInThePast(self) -> None:
        """
        A valid token whose expire_at has passed: error 110 "expired".
        """
        client, transport = self.open(self.node())
        self.send(client, {"id": 1, "connect": {"token": token(sub="a", exp=int(NOW) + 60, expire_at=int(NOW) - 1)}})
        self.assertEqual(transport.replies(), [error(1, 110, "expired")])
        self.assertFalse(client.connected)

    def test_tokenInfoInPublications(self) -> None:
        """
        The token's info is the publisher's conn_info in its publications' ClientInfo.
        """
        node = self.node(allow_subscribe_for_client=True, allow_publish_for_client=True)
        subscriber, subscriberTransport = self.connected(node, token(sub="bob"))
        publisher, _ = self.connected(node, token(sub="alice", info={"name": "Alice"}))
        self.send(subscriber, {"id": 2, "subscribe": {"channel": "news"}})
        subscriberTransport.clear()
        self.send(publisher, {"id": 2, "publish": {"channel": "news", "data": b'{"x":1}'}})
        self.assertEqual(
            subscriberTransport.replies(),
            [publication("news", b'{"x":1}', user="alice", client=publisher.clientID, conn_info=b'{"name":"Alice"}')],
        )

    # Subscribe, unsubscribe

    def test_subscribe(self) -> None:
        node = self.node(**OPEN)
        client, transport = self.connected(node)
        self.send(client, {"id": 2, "subscribe": {"channel": "news"}})
        self.assertEqual(transport.replies(), [{"id": 2, "subscribe": {}}])
        self.assertEqual(client.channels, {"news"})
        self.assertEqual(node.hub.subscribers("news"), [client])

    def test_subscribePermissionDenied(self) -> None:
        client, transport = self.connected(self.node(allow_anonymous_connect_without_token=True))
        self.send(client, {"id": 2, "subscribe": {"channel": "news"}})
        self.assertEqual(transport.replies(), [error(2, 103, "permission denied")])
        self.assertEqual(client.channels, set())
        self.assertOpen(client, transport)

    def test_subscribePrivateChannel(self) -> None:
        client, transport = self.connected(self.node(**OPEN))
        self.send(client, {"id": 2, "subscribe": {"channel": "$secret"}})
        self.assertEqual(transport.replies(), [error(2, 103, "permission denied")])

    def test_alreadySubscribed(self) -> None:
        client, transport = self.connected(self.node(**OPEN))
        self.send(client, {"id": 2, "subscribe": {"channel": "news"}}, {"id": 3, "subscribe": {"channel": "news"}})
        self.assertEqual(transport.replies(), [{"id": 2, "subscribe": {}}, error(3, 105, "already subscribed")])

    def test_channelLimit(self) -> None:
        client, transport = self.connected(self.node(client_channel_limit=2, **OPEN))
        self.send(
            client,
            {"id": 2, "subscribe": {"channel": "a"}},
            {"id": 3, "subscribe": {"channel": "b"}},
            {"id": 4, "subscribe": {"channel": "c"}},
        )
        self.assertEqual(transport.replies()[2], error(4, 106, "limit exceeded"))
        self.assertEqual(client.channels, {"a", "b"})

    def test_badChannel(self) -> None:
        """
        A channel too long or not ASCII: error 107 "bad request", the connection stays.
        """
        client, transport = self.connected(self.node(channel_max_length=10, **OPEN))
        self.send(client, {"id": 2, "subscribe": {"channel": "a" * 11}}, {"id": 3, "subscribe": {"channel": "\u00e9"}})
        self.assertEqual(transport.replies(), [error(2, 107, "bad request"), error(3, 107, "bad request")])
        self.assertOpen(client, transport)

    def test_subscribeWithoutChannel(self) -> None:
        client, transport = self.connected(self.node(**OPEN))
        self.send(client, {"id": 2, "subscribe": {}})
        self.assertDisconnected(transport, 3501, "bad request")

    def test_subscribeBrokerFailure(self) -> None:
        """
        When the broker cannot subscribe, the client gets the temporary error 100 (the SDK retries) and is not
        left half subscribed.
        """
        broker = ManualBroker()
        node = self.node(broker=broker, **OPEN)
        client, transport = self.connected(node)
        self.send(client, {"id": 2, "subscribe": {"channel": "news"}})
        self.assertEqual(transport.replies(), [])
        broker.fail()
        self.clock.advance(0)
        self.assertEqual(len(self.flushLoggedErrors(ConnectionError)), 1)
        self.assertEqual(transport.replies(), [error(2, 100, "internal server error", temporary=True)])
        self.assertEqual(client.channels, set())
        self.assertEqual(node.hub.subscribers("news"), [])
        self.assertOpen(client, transport)

    def test_subscribeSharedBrokerFailure(self) -> None:
        """
        Two clients subscribing while the broker subscribe is in flight both learn of its failure: neither is
        left believing it is subscribed to a channel the broker never joined.
        """
        broker = ManualBroker()
        node = self.node(broker=broker, **OPEN)
        (a, aTransport), (b, bTransport) = self.connected(node), self.connected(node)
        self.send(a, {"id": 2, "subscribe": {"channel": "news"}})
        self.send(b, {"id": 2, "subscribe": {"channel": "news"}})
        self.assertEqual(bTransport.replies(), [])
        broker.fail()
        self.clock.advance(0)
        self.flushLoggedErrors(ConnectionError)
        for client, transport in ((a, aTransport), (b, bTransport)):
            self.assertEqual(transport.replies(), [error(2, 100, "internal server error", temporary=True)])
            self.assertEqual(client.channels, set())
        self.assertEqual(node.hub.channels(), [])

    def test_unsubscribe(self) -> None:
        node = self.node(**OPEN)
        client, transport = self.connected(node)
        self.send(client, {"id": 2, "subscribe": {"channel": "news"}})
        self.send(client, {"id": 3, "unsubscribe": {"channel": "news"}})
        self.assertEqual(transport.replies()[1], {"id": 3, "unsubscribe": {}})
        self.assertEqual(client.channels, set())
        self.assertEqual(node.hub.channels(), [])
        self.assertEqual(node.broker.channels, set())

    def test_unsubscribeUnknownChannel(self) -> None:
        client, transport = self.connected(self.node(**OPEN))
        self.send(client, {"id": 2, "unsubscribe": {"channel": "never"}})
        self.assertEqual(transport.replies(), [{"id": 2, "unsubscribe": {}}])

    def test_unsubscribeWithoutChannel(self) -> None:
        client, transport = self.connected(self.node(**OPEN))
        self.send(client, {"id": 2, "unsubscribe": {}})
        self.assertDisconnected(transport, 3501, "bad request")

    # Publish

    def test_publish(self) -> None:
        """
        A publish is answered with an empty result; the memory engine delivers the publication to a subscribed
        publisher before that reply. Anonymous publishers have user "" in their ClientInfo.
        """
        client, transport = self.connected(self.node(**OPEN))
        self.send(client, {"id": 2, "subscribe": {"channel": "news"}})
        transport.clear()
        self.send(client, {"id": 3, "publish": {"channel": "news", "data": b'{"text":"hi"}'}})
        self.assertEqual(
            transport.replies(),
            [publication("news", b'{"text":"hi"}', client=client.clientID), {"id": 3, "publish": {}}],
        )

    def test_publishWithoutSubscribers(self) -> None:
        client, transport = self.connected(self.node(**OPEN))
        self.send(client, {"id": 2, "publish": {"channel": "news", "data": b"1"}})
        self.assertEqual(transport.replies(), [{"id": 2, "publish": {}}])

    def test_publishPermissionDenied(self) -> None:
        client, transport = self.connected(
            self.node(allow_anonymous_connect_without_token=True, allow_publish_for_client=True)
        )
        self.send(client, {"id": 2, "publish": {"channel": "news", "data": b"1"}})
        self.assertEqual(transport.replies(), [error(2, 103, "permission denied")])
        self.assertOpen(client, transport)

    def test_publishForSubscriber(self) -> None:
        client, transport = self.connected(
            self.node(
                allow_anonymous_connect_without_token=True,
                allow_subscribe_for_client=True,
                allow_subscribe_for_anonymous=True,
                allow_publish_for_subscriber=True,
                allow_publish_for_anonymous=True,
            )
        )
        self.send(client, {"id": 2, "publish": {"channel": "news", "data": b"1"}})
        self.send(client, {"id": 3, "subscribe": {"channel": "news"}})
        transport.clear()
        self.send(client, {"id": 4, "publish": {"channel": "news", "data": b"1"}})
        self.assertEqual(transport.replies()[-1], {"id": 4, "publish": {}})

    def test_publishBadChannel(self) -> None:
        client, transport = self.connected(self.node(**OPEN))
        self.send(client, {"id": 2, "publish": {"channel": "\u00e9", "data": b"1"}})
        self.assertEqual(transport.replies(), [error(2, 107, "bad request")])

    def test_publishWithoutDataOrChannel(self) -> None:
        for request in ({"channel": "news"}, {"data": b"1"}):
            client, transport = self.connected(self.node(**OPEN))
            self.send(client, {"id": 2, "publish": request})
            self.assertDisconnected(transport, 3501, "bad request")

    def test_publishBrokerFailure(self) -> None:
        broker = ManualBroker()
        client, transport = self.connected(self.node(broker=broker, **OPEN))
        self.send(client, {"id": 2, "publish": {"channel": "news", "data": b"1"}})
        broker.fail()
        self.clock.advance(0)
        self.assertEqual(len(self.flushLoggedErrors(ConnectionError)), 1)
        self.assertEqual(transport.replies(), [error(2, 100, "internal server error", temporary=True)])

    # Other commands

    def test_notAvailable(self) -> None:
        """
        rpc (no handler), the ping command, and presence/history with a channel (not enabled): error 108.
        """
        client, transport = self.connected(self.node(**OPEN))
        self.send(
            client,
            {"id": 2, "rpc": {"method": "m", "data": b"{}"}},
            {"id": 3, "ping": {}},
            {"id": 4, "presence": {"channel": "news"}},
            {"id": 5, "presence_stats": {"channel": "news"}},
            {"id": 6, "history": {"channel": "news"}},
        )
        self.assertEqual(transport.replies(), [error(i, 108, "not available") for i in range(2, 7)])
        self.assertOpen(client, transport)

    def test_channelRequired(self) -> None:
        for method in ("presence", "presence_stats", "history", "sub_refresh"):
            client, transport = self.connected(self.node(**OPEN))
            self.send(client, {"id": 2, method: {}})
            self.assertDisconnected(transport, 3501, "bad request")

    def test_sendWithoutHandler(self) -> None:
        client, transport = self.connected(self.node(**OPEN))
        self.send(client, {"send": {"data": b"{}"}})
        self.assertDisconnected(transport, 3508, "not available")

    def test_unknownCommand(self) -> None:
        client, transport = self.connected(self.node(**OPEN))
        self.send(client, {"id": 2})
        self.assertDisconnected(transport, 3501, "bad request")

    def test_commandWithoutIDIsAPong(self) -> None:
        """
        id 0 without send is a pong, whatever else the command holds; with no ping outstanding that is a 3501.
        """
        client, transport = self.connected(self.node(**OPEN))
        self.send(client, {"subscribe": {"channel": "news"}})
        self.assertDisconnected(transport, 3501, "bad request")
        self.assertEqual(client.channels, set())

    def test_badFrame(self) -> None:
        for frame in (b"", self.garbage):
            client, transport = self.connected(self.node(**OPEN))
            client.handleData(frame)
            self.clock.advance(0)
            self.assertDisconnected(transport, 3501, "bad request")

    def test_badFrameBeforeConnect(self) -> None:
        client, transport = self.open(self.node(**OPEN))
        client.handleData(self.garbage)
        self.assertDisconnected(transport, 3501, "bad request")

    # Refresh and expiry

    def test_expiry(self) -> None:
        """
        A connection whose token is not refreshed is closed with 3005 client_expired_close_delay (25 s) after
        its expiry, not before.
        """
        client, transport = self.connected(self.node(**NO_PING), token(sub="a", exp=int(NOW) + 60))
        self.clock.advance(60 + 25 - 0.5)
        self.assertOpen(client, transport)
        self.clock.advance(1)
        self.assertDisconnected(transport, 3005, "connection expired")

    def test_refresh(self) -> None:
        client, transport = self.connected(self.node(**NO_PING), token(sub="a", exp=int(NOW) + 60))
        self.clock.advance(30)
        self.send(client, {"id": 2, "refresh": {"token": token(sub="a", exp=int(NOW) + 120)}})
        self.assertEqual(transport.replies(), [{"id": 2, "refresh": {"expires": True, "ttl": 90}}])
        self.clock.advance(60)  # past the first token's expiry and close delay
        self.assertOpen(client, transport)
        self.clock.advance(120 + 25 - 90 + 1)
        self.assertDisconnected(transport, 3005, "connection expired")

    def test_refreshWithoutExpiry(self) -> None:
        client, transport = self.connected(self.node(**NO_PING), token(sub="a", exp=int(NOW) + 60))
        self.send(client, {"id": 2, "refresh": {"token": token(sub="a")}})
        self.assertEqual(transport.replies(), [{"id": 2, "refresh": {}}])
        self.clock.advance(1000)
        self.assertOpen(client, transport)

    def test_refreshOtherUser(self) -> None:
        client, transport = self.connected(self.node(), token(sub="a", exp=int(NOW) + 60))
        self.send(client, {"id": 2, "refresh": {"token": token(sub="b", exp=int(NOW) + 120)}})
        self.assertDisconnected(transport, 3500, "invalid token")

    def test_refreshExpiredToken(self) -> None:
        client, transport = self.connected(self.node(), token(sub="a", exp=int(NOW) + 60))
        self.send(client, {"id": 2, "refresh": {"token": token(sub="a", exp=int(NOW) - 1)}})
        self.assertDisconnected(transport, 3005, "connection expired")

    def test_refreshWithoutToken(self) -> None:
        client, transport = self.connected(self.node(), token(sub="a", exp=int(NOW) + 60))
        self.send(client, {"id": 2, "refresh": {}})
        self.assertDisconnected(transport, 3501, "bad request")

    # Ping, pong, staleness

    def test_pingWithinInterval(self) -> None:
        """
        The first server ping (an empty Reply) is written between interval/2 and interval after connect.
        """
        client, self.transport = self.connected(self.node(**OPEN))
        waited = self.waitForPing(self.transport, 25)
        self.assertGreaterEqual(waited, 12.5 - 0.1)
        self.assertEqual(self.transport.replies(), [{}])

    def test_noPong(self) -> None:
        """
        No pong within pong_timeout (8 s) of a ping: 3012 "no pong".
        """
        client, self.transport = self.connected(self.node(**OPEN))
        self.waitForPing(self.transport, 25)
        self.clock.advance(7.8)
        self.assertOpen(client, self.transport)
        self.clock.advance(0.3)
        self.assertDisconnected(self.transport, 3012, "no pong")

    def test_pongKeepsConnection(self) -> None:
        """
        Answering every ping keeps the connection; pings keep coming every interval.
        """
        client, self.transport = self.connected(self.node(**OPEN))
        self.waitForPing(self.transport, 25)
        for _ in range(5):
            self.clock.advance(1)
            self.send(client, {})
            self.transport.clear()
            # Every interval (25 s) after the previous ping, one second of which has passed.
            self.assertTrue(23.85 <= self.waitForPing(self.transport, 25) <= 24.15)
        self.assertOpen(client, self.transport)

    def test_unexpectedPong(self) -> None:
        """
        A second pong for the same ping: 3501.
        """
        client, self.transport = self.connected(self.node(**OPEN))
        self.waitForPing(self.transport, 25)
        self.send(client, {})
        self.assertOpen(client, self.transport)
        self.send(client, {})
        self.assertDisconnected(self.transport, 3501, "bad request")

    def test_pingDisabled(self) -> None:
        client, transport = self.open(self.node(ping_interval=-1, **OPEN))
        self.send(client, {"id": 1, "connect": {}})
        result = transport.replies()[0]["connect"]
        self.assertNotIn("ping", result)
        self.assertNotIn("pong", result)
        transport.clear()
        self.clock.pump([10] * 100)
        self.assertEqual(transport.batches, [])
        self.assertOpen(client, transport)

    def test_pongDisabled(self) -> None:
        """
        With pong_timeout -1 the server still pings but asks for no pong, and never closes for a missing one.
        """
        client, transport = self.open(self.node(pong_timeout=-1, ping_interval="10s", **OPEN))
        self.send(client, {"id": 1, "connect": {}})
        result = transport.replies()[0]["connect"]
        self.assertEqual(result["ping"], 10)
        self.assertNotIn("pong", result)
        transport.clear()
        self.clock.pump([1] * 100)
        self.assertGreaterEqual(len(transport.replies()), 9)
        self.assertEqual({str(r) for r in transport.replies()}, {"{}"})
        self.assertOpen(client, transport)

    def test_configuredPingInterval(self) -> None:
        client, self.transport = self.connected(self.node(ping_interval="4s", pong_timeout="2s", **OPEN))
        self.assertLessEqual(self.waitForPing(self.transport, 4), 4)

    def test_stale(self) -> None:
        """
        No connect within client_stale_close_delay: 3502 "stale".
        """
        client, transport = self.open(self.node(client_stale_close_delay="5s", **OPEN))
        self.clock.advance(4.9)
        self.assertIsNone(transport.closed)
        self.clock.advance(0.2)
        self.assertDisconnected(transport, 3502, "stale")

    def test_connectedNeverStale(self) -> None:
        client, transport = self.connected(self.node(**NO_PING, **OPEN))
        self.clock.pump([10] * 100)
        self.assertOpen(client, transport)

    # Queue, disconnect

    def test_slow(self) -> None:
        """
        A subscriber whose queue exceeds client_queue_max_size is closed with 3008 "slow"; the publisher is not
        affected.
        """
        node = self.node(client_queue_max_size=1000, **OPEN)
        subscriber, subscriberTransport = self.connected(node)
        publisher, publisherTransport = self.connected(node)
        self.send(subscriber, {"id": 2, "subscribe": {"channel": "news"}})
        subscriberTransport.clear()
        subscriberTransport.pause()
        data = b'"' + b"x" * 100 + b'"'
        for i in range(20):
            self.send(publisher, {"id": i + 2, "publish": {"channel": "news", "data": data}})
        self.assertEqual(subscriberTransport.closed, (3008, "slow"))
        # A peer that does not read would not read a Disconnect push either: nothing more is written.
        self.assertEqual(subscriberTransport.batches, [])
        self.assertTrue(subscriber.closed)
        self.assertEqual(node.hub.subscribers("news"), [])
        self.assertEqual(len(publisherTransport.replies()), 20)
        self.assertOpen(publisher, publisherTransport)

    def test_slowInOneTurn(self) -> None:
        """
        A burst larger than the queue within one reactor turn is also too much, even for a reading peer.
        """
        node = self.node(client_queue_max_size=1000, **OPEN)
        subscriber, subscriberTransport = self.connected(node)
        self.send(subscriber, {"id": 2, "subscribe": {"channel": "news"}})
        subscriberTransport.clear()
        for _ in range(20):
            node.publish("news", b'"' + b"x" * 100 + b'"')
        self.clock.advance(0)
        self.assertEqual(subscriberTransport.closed, (3008, "slow"))
        # The peer still reads: what fitted, then the Disconnect push, so the SDK learns the code.
        replies = subscriberTransport.replies()
        self.assertEqual(replies[-1], {"push": {"disconnect": {"code": 3008, "reason": "slow"}}})
        self.assertTrue(all("pub" in reply["push"] for reply in replies[:-1]))
        self.assertLessEqual(sum(map(len, subscriberTransport.messages[:-1])), 1000)

    def test_disconnectPushBeforeClose(self) -> None:
        """
        A server disconnect flushes what is queued, then writes the Disconnect push, then closes the transport.
        """
        node = self.node(**OPEN)
        client, transport = self.connected(node)
        client.handleData(encodeCommands(self.protocol, [{"id": 2, "subscribe": {"channel": "news"}}]))
        client.disconnect(3503, "force disconnect")
        self.assertEqual(len(transport.batches), 1)
        self.assertEqual(transport.replies(), [{"id": 2, "subscribe": {}}, disconnectPush(3503, "force disconnect")])
        self.assertDisconnected(transport, 3503, "force disconnect")
        self.assertEqual(node.clients, {})
        self.assertIsNone(node.registry.get(client.sessionID))
        self.assertEqual(node.hub.channels(), [])
        self.assertEqual(node.broker.channels, set())

    def test_disconnectWithoutPush(self) -> None:
        """
        A transport with its own close frame (WebSocket) gets no Disconnect push, only the close code.
        """
        client, transport = self.connected(self.node(**OPEN), emulated=False, pushDisconnect=False)
        client.disconnect(3503, "force disconnect")
        self.assertEqual(transport.batches, [])
        self.assertDisconnected(transport, 3503, "force disconnect", pushed=False)

    def test_connectionClosedIsNotPushed(self) -> None:
        """
        3000 is internal: the connection ends without a push.
        """
        client, transport = self.connected(self.node(**OPEN))
        client.disconnect(3000, "connection closed")
        self.assertEqual(transport.batches, [])
        self.assertEqual(transport.closed, (3000, "connection closed"))

    def test_disconnectOnce(self) -> None:
        client, transport = self.connected(self.node(**OPEN))
        client.disconnect(3503, "force disconnect")
        client.disconnect(3001, "shutdown")
        self.assertEqual(transport.closes, [(3503, "force disconnect")])

    def test_commandsAfterDisconnectIgnored(self) -> None:
        client, transport = self.connected(self.node(**OPEN))
        client.disconnect(3503, "force disconnect")
        transport.clear()
        d = self.send(client, {"id": 2, "subscribe": {"channel": "news"}})
        self.assertIsNone(self.successResultOf(d))
        self.clock.advance(100)
        self.assertEqual(transport.batches, [])
        self.assertEqual(client.channels, set())

    def test_transportClosed(self) -> None:
        """
        When the peer goes away the client cleans up (node, registry, hub, timers) without writing or closing.
        """
        node = self.node(**OPEN)
        client, transport = self.connected(node)
        self.send(client, {"id": 2, "subscribe": {"channel": "news"}})
        transport.clear()
        client.transportClosed()
        self.assertTrue(client.closed)
        self.assertEqual(node.clients, {})
        self.assertEqual(len(node.registry), 0)
        self.assertEqual(node.hub.channels(), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        node.publish("news", b"1")
        self.clock.advance(100)
        self.assertEqual(transport.batches, [])
        self.assertEqual(transport.closes, [])

    def test_noTimersAfterClose(self) -> None:
        client, transport = self.connected(self.node(**OPEN), token(sub="a", exp=int(NOW) + 60))
        client.disconnect(3503, "force disconnect")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    # Order

    def test_commandsOfAFrameInOrder(self) -> None:
        """
        The commands of one frame run in order, and their replies go out as one batch.
        """
        client, transport = self.open(self.node(**OPEN))
        self.send(
            client,
            {"id": 1, "connect": {}},
            {"id": 2, "subscribe": {"channel": "a"}},
            {"id": 3, "rpc": {"method": "m"}},
            {"id": 4, "subscribe": {"channel": "b"}},
        )
        self.assertEqual(len(transport.batches), 1)
        self.assertEqual([reply["id"] for reply in transport.replies()], [1, 2, 3, 4])

    def test_framesInOrderAcrossAWait(self) -> None:
        """
        While a command waits on the engine, later frames wait behind it: replies keep the order of the commands
        and each frame's Deferred fires once its commands have run.
        """
        broker = ManualBroker()
        client, transport = self.connected(self.node(broker=broker, **OPEN))
        first = self.send(client, {"id": 2, "subscribe": {"channel": "a"}})
        # The second frame waits again in its middle: its last command still runs before the third frame.
        second = self.send(client, {"id": 3, "subscribe": {"channel": "b"}}, {"id": 4, "rpc": {"method": "m"}})
        third = self.send(client, {"id": 5, "rpc": {"method": "m"}})
        self.assertEqual(transport.batches, [])
        self.assertNoResult(first)
        broker.complete()
        self.clock.advance(0)
        self.assertIsNone(self.successResultOf(first))
        self.assertNoResult(second)
        self.assertNoResult(third)
        self.assertEqual([reply["id"] for reply in transport.replies()], [2])
        broker.complete()
        self.clock.advance(0)
        self.assertIsNone(self.successResultOf(second))
        self.assertIsNone(self.successResultOf(third))
        self.assertEqual([reply["id"] for reply in transport.replies()], [2, 3, 4, 5])
        self.assertEqual(client.channels, {"a", "b"})

    def test_tooManyPendingFrames(self) -> None:
        """
        A peer that keeps sending while a command waits is cut off with 3013 "too many requests" past
        MAX_PENDING_FRAMES frames in flight; the waiting frames' Deferreds still fire.
        """
        broker = ManualBroker()
        client, transport = self.connected(self.node(broker=broker, **OPEN))
        waiting = [self.send(client, {"id": 2, "subscribe": {"channel": "a"}})]
        for i in range(MAX_PENDING_FRAMES - 1):
            waiting.append(self.send(client, {"id": 3 + i, "rpc": {"method": "m"}}))
        self.assertIsNone(transport.closed)
        last = self.send(client, {"id": 1000, "rpc": {"method": "m"}})
        self.assertDisconnected(transport, 3013, "too many requests")
        for d in waiting + [last]:
            self.assertIsNone(self.successResultOf(d))
        broker.completeAll()
        self.clock.advance(0)


class JSONClientTests(ClientTestsMixin, SynchronousTestCase):
    protocol = "json"
    garbage = b"{not json"


class ProtobufClientTests(ClientTestsMixin, SynchronousTestCase):
    protocol = "protobuf"
    garbage = b"\x03\xff\xff\xff"


class JSONWireTests(ClientHelpers, SynchronousTestCase):
    """What a JSON client sees byte for byte."""

    protocol = "json"

    def test_pingIsEmptyObject(self) -> None:
        client, self.transport = self.connected(self.node(**OPEN))
        self.waitForPing(self.transport, 25)
        self.assertEqual(self.transport.messages, [b"{}"])

    def test_connectReplyStartsWithID(self) -> None:
        client, transport = self.open(self.node(**OPEN))
        self.send(client, {"id": 3, "connect": {}})
        self.assertTrue(transport.messages[0].startswith(b'{"id":3,"connect":{"client":"'))

    def test_anonymousUserWritten(self) -> None:
        """
        ClientInfo.user is always written, even empty (the SDKs read it).
        """
        client, transport = self.connected(self.node(**OPEN))
        self.send(client, {"id": 2, "subscribe": {"channel": "news"}})
        transport.clear()
        self.send(client, {"id": 3, "publish": {"channel": "news", "data": b'{"a": [1, 2]}'}})
        self.assertEqual(
            transport.messages[0],
            b'{"push":{"channel":"news","pub":{"data":{"a":[1,2]},"info":{"user":"","client":"'
            + client.clientID.encode()
            + b'"}}}}',
        )

    def test_disconnectPushBytes(self) -> None:
        client, transport = self.connected(self.node(**OPEN))
        client.disconnect(3012, "no pong")
        self.assertEqual(transport.messages, [b'{"push":{"disconnect":{"code":3012,"reason":"no pong"}}}'])

    def test_errorBytes(self) -> None:
        client, transport = self.connected(self.node(allow_anonymous_connect_without_token=True))
        self.send(client, {"id": 2, "subscribe": {"channel": "news"}})
        self.assertEqual(transport.messages, [b'{"id":2,"error":{"code":103,"message":"permission denied"}}'])

    def test_blankLine(self) -> None:
        client, transport = self.connected(self.node(**OPEN))
        client.handleData(b'{"id":2,"rpc":{}}\n\n{"id":3,"rpc":{}}')
        self.assertDisconnected(transport, 3501, "bad request")

    def test_trailingNewline(self) -> None:
        client, transport = self.connected(self.node(**OPEN))
        client.handleData(b'{"id":2,"rpc":{}}\n')
        self.clock.advance(0)
        self.assertEqual(transport.replies(), [error(2, 108, "not available")])


class ProtobufWireTests(ClientHelpers, SynchronousTestCase):
    """What a Protobuf client sees byte for byte."""

    protocol = "protobuf"

    def test_garbage(self) -> None:
        """
        A length prefix longer than what follows, or bytes that are not a Command: 3501.
        """
        for frame in (b"\x05abc", b"\x03\xff\xff\xff"):
            client, transport = self.connected(self.node(**OPEN))
            client.handleData(frame)
            self.assertDisconnected(transport, 3501, "bad request")

    def test_pingIsEmptyMessage(self) -> None:
        client, self.transport = self.connected(self.node(**OPEN))
        self.waitForPing(self.transport, 25)
        self.assertEqual(self.transport.messages, [b""])

    def test_pongIsZeroByte(self) -> None:
        client, self.transport = self.connected(self.node(**OPEN))
        self.waitForPing(self.transport, 25)
        client.handleData(b"\x00")
        self.clock.advance(8.5)
        self.assertOpen(client, self.transport)

    def test_binaryData(self) -> None:
        """
        Protobuf carries any bytes as data, JSON or not.
        """
        client, transport = self.connected(self.node(**OPEN))
        self.send(client, {"id": 2, "subscribe": {"channel": "bin"}})
        transport.clear()
        self.send(client, {"id": 3, "publish": {"channel": "bin", "data": b"\x00\xffbinary"}})
        self.assertEqual(transport.replies()[0], publication("bin", b"\x00\xffbinary", client=client.clientID))


class FanOutTests(SynchronousTestCase):
    """Publications across connections and codecs."""

    def test_everySubscriberOncePerProtocol(self) -> None:
        """
        A publication reaches every subscriber, each protocol's subscribers sharing one encoding.
        """
        clock = Clock()
        node = makeNode(OPEN, clock)
        subscribers: list[tuple[Client, FakeTransport]] = []
        for protocol in ("json", "json", "json", "protobuf", "protobuf"):
            transport = FakeTransport(protocol)
            client = node.newClient(transport)
            client.handleData(
                encodeCommands(protocol, [{"id": 1, "connect": {}}, {"id": 2, "subscribe": {"channel": "news"}}])
            )
            subscribers.append((client, transport))
        publisher = FakeTransport("json")
        publisherClient = node.newClient(publisher)
        publisherClient.handleData(encodeCommands("json", [{"id": 1, "connect": {}}]))
        clock.advance(0)
        publisher.clear()
        for _, transport in subscribers:
            transport.clear()
        publisherClient.handleData(
            encodeCommands("json", [{"id": 2, "publish": {"channel": "news", "data": b'{"n":1}'}}])
        )
        clock.advance(0)
        expected = publication("news", b'{"n":1}', client=publisherClient.clientID)
        frames: dict[str, set[int]] = {"json": set(), "protobuf": set()}
        for _, transport in subscribers:
            [message] = transport.messages
            self.assertEqual(transport.replies(), [expected])
            frames[transport.protocol].add(id(message))
        self.assertEqual({protocol: len(ids) for protocol, ids in frames.items()}, {"json": 1, "protobuf": 1})
        self.assertEqual(publisher.replies(), [{"id": 2, "publish": {}}])

    def test_binaryFromProtobufToJSON(self) -> None:
        """
        Binary data published by a Protobuf client disconnects JSON subscribers with 3506 (after the push of
        that reason) and reaches Protobuf ones.
        """
        clock = Clock()
        node = makeNode(OPEN, clock)
        transports = {}
        for protocol in ("json", "protobuf"):
            transport = transports[protocol] = FakeTransport(protocol)
            node.newClient(transport).handleData(
                encodeCommands(protocol, [{"id": 1, "connect": {}}, {"id": 2, "subscribe": {"channel": "bin"}}])
            )
        clock.advance(0)
        publisher = node.newClient(FakeTransport("protobuf"))
        publisher.handleData(
            encodeCommands(
                "protobuf",
                [{"id": 1, "connect": {}}, {"id": 2, "publish": {"channel": "bin", "data": b"\xff"}}],
            )
        )
        clock.advance(0)
        self.assertEqual(transports["json"].closed, (3506, "inappropriate protocol"))
        self.assertEqual(transports["json"].replies()[-1], disconnectPush(3506, "inappropriate protocol"))
        self.assertEqual(
            transports["protobuf"].replies()[-1], publication("bin", b"\xff", client=publisher.clientID)
        )
