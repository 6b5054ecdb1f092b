"""
Tests for the seam between a connection and its policy: the L{Client} state machine driven by a L{FakePolicy}
(it applies what the policy decides, and asks with what the client sent), the configured policy
(L{httpstream.policy.clientpolicy.ConfiguredPolicy}) on its own, and the embedding program's
L{ApplicationPolicy} in front of it.
"""

from __future__ import annotations

from typing import Any

import jwt
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from httpstream.client.client import Client
from httpstream.config import ChannelOptions
from httpstream.decisions import (
    ConnectDecision,
    ConnectRequest,
    Connection,
    GrantedSubscription,
    PublishDecision,
    RefreshDecision,
    Refused,
    SubscribeDecision,
    SubscribeRequest,
)
from httpstream.node.node import Node
from httpstream.policy.application import ApplicationPolicy
from httpstream.protocol import codes
from httpstream.testing import FakePolicy, FakeTransport, encodeCommands, makeNode
from httpstream.values import ClientInfo

SECRET = "a-test-secret-long-enough-for-hs512-keys-which-want-64-bytes!!!!"
NOW = 1_700_000_000.0


def token(**claims: Any) -> str:
    return jwt.encode(claims, SECRET, algorithm="HS256")


class FakePolicyClientTests(SynchronousTestCase):
    """The client applies the decisions of its node's policy; here a L{FakePolicy} that records the questions."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.policy = FakePolicy()
        self.node = makeNode({"ping_interval": -1}, self.clock, policy=self.policy)

    def open(self, **transportArgs: Any) -> tuple[Client, FakeTransport]:
        transport = FakeTransport("json", **transportArgs)
        client = self.node.newClient(transport)
        assert isinstance(client, Client)
        return client, transport

    def send(self, client: Client, *commands: dict[str, Any]) -> Deferred[None]:
        d = client.handleData(encodeCommands("json", commands))
        self.clock.advance(0)
        return d

    def connected(self) -> tuple[Client, FakeTransport]:
        client, transport = self.open()
        self.send(client, {"id": 1, "connect": {}})
        self.assertIn("connect", transport.replies()[0])
        transport.clear()
        return client, transport

    def asked(self, method: str) -> tuple[Any, ...]:
        """The arguments of the last call of C{method}."""
        return [args for name, args in self.policy.asked if name == method][-1]

    def test_connectAsksWithTheRequest(self) -> None:
        """The connect command's fields reach the policy as a L{ConnectRequest}, with the connection."""
        client, transport = self.open()
        self.send(client, {"id": 1, "connect": {"token": "t", "name": "js", "version": "5", "data": b'{"a":1}',
                                                "subs": {"x": {}, "y": {}}}})
        connection, request = self.asked("connecting")
        self.assertIsInstance(connection, Connection)
        self.assertEqual((connection.clientID, connection.transport, connection.user), (client.clientID, "http_stream", ""))
        self.assertEqual(request, ConnectRequest(token="t", data=b'{"a":1}', name="js", version="5", channels=("x", "y")))

    def test_connectDecisionApplied(self) -> None:
        """
        What the policy decides is the connection: its user and info (in ClientInfo), its data and expiry in the
        ConnectResult, its server-side subscriptions (each asked as granted, with what was granted, and made as
        the policy then decides), and the policy then sees the user.
        """
        self.policy.answers["connecting"] = ConnectDecision(
            user="alice", info=b'{"n":1}', expireAt=NOW + 60, data=b'"hi"',
            subscriptions={"news": GrantedSubscription(data=b'"sub"'), "chat": None},
        )
        self.policy.answers["subscribing"] = lambda connection, request: SubscribeDecision(
            data=request.granted.data, presence=request.channel == "chat",
        )
        client, transport = self.open()
        self.send(client, {"id": 1, "connect": {}})
        [reply] = transport.replies()
        result = reply["connect"]
        self.assertEqual((result["data"], result["expires"], result["ttl"]), (b'"hi"', True, 60))
        self.assertEqual(result["subs"]["news"], {"data": b'"sub"'})
        self.assertEqual(result["subs"]["chat"], {})
        self.assertEqual(client.clientInfo(), ClientInfo("alice", client.clientID, b'{"n":1}'))
        granted = [args[1] for name, args in self.policy.asked if name == "subscribing"]
        self.assertEqual([(r.channel, r.granted) for r in granted],
                         [("news", GrantedSubscription(data=b'"sub"')), ("chat", GrantedSubscription())])
        self.assertEqual((client.subs["news"].presence, client.subs["chat"].presence), (False, True))
        self.assertEqual(client.connection().user, "alice")
        self.assertIn(client.clientID, self.node.clients)

    def test_connectRefused(self) -> None:
        """A refusal with an error is the connect's error reply; one with a disconnect ends the connection."""
        self.policy.answers["connecting"] = Refused(codes.ERROR_TOKEN_EXPIRED)
        client, transport = self.open()
        self.send(client, {"id": 1, "connect": {}})
        self.assertEqual(transport.replies(), [{"id": 1, "error": {"code": 109, "message": "token expired"}}])
        self.policy.answers["connecting"] = Refused(codes.DISCONNECT_INVALID_TOKEN)
        client, transport = self.open()
        self.send(client, {"id": 1, "connect": {}})
        self.assertEqual(transport.closed, (3500, "invalid token"))
        self.assertNotIn(client.clientID, self.node.clients)

    def test_connectFailureIsInternal(self) -> None:
        """A policy that fails unexpectedly costs the command error 100, not the server."""
        self.policy.answers["connecting"] = RuntimeError("backend down")
        client, transport = self.open()
        self.send(client, {"id": 1, "connect": {}})
        self.assertEqual(transport.replies()[0]["error"]["code"], 100)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_laterFramesWaitForTheDecision(self) -> None:
        """While the policy decides, later frames wait: replies keep the order of the commands."""
        decision: Deferred[SubscribeDecision] = Deferred()
        client, transport = self.connected()
        self.policy.answers["subscribing"] = decision
        first = self.send(client, {"id": 2, "subscribe": {"channel": "a"}})
        second = self.send(client, {"id": 3, "rpc": {"data": b"1"}})
        self.assertEqual(transport.replies(), [])
        self.assertNoResult(first)
        decision.callback(SubscribeDecision())
        self.clock.advance(0)
        self.successResultOf(first)
        self.successResultOf(second)
        self.assertEqual([reply["id"] for reply in transport.replies()], [2, 3])

    def test_subscribeAsksWithTheRequest(self) -> None:
        """The subscribe command's fields reach the policy, with the channel's options from the policy."""
        options = ChannelOptions(history_size=10, history_ttl=60)
        self.policy.options = options
        client, transport = self.connected()
        self.send(client, {"id": 2, "subscribe": {"channel": "a", "token": "t", "data": b"1", "recoverable": True,
                                                  "positioned": True, "join_leave": True, "delta": "fossil"}})
        _, request = self.asked("subscribing")
        self.assertEqual(request, SubscribeRequest("a", options, token="t", data=b"1", recoverable=True,
                                                   positioned=True, joinLeave=True, delta=True))
        self.assertEqual(self.asked("channelOptions"), ("a", False))

    def test_subscribeDecisionApplied(self) -> None:
        """
        The subscription gets what the policy decided: data and expiry in the result, its info in ClientInfo, and
        a positioned one the position the policy reads.
        """
        self.policy.answers["subscribing"] = SubscribeDecision(
            info=b'{"c":1}', data=b'"d"', expireAt=NOW + 30, positioned=True, recoverable=True,
        )
        self.policy.stream = self.policy.stream.__class__([], 7, "e1")
        client, transport = self.connected()
        self.send(client, {"id": 2, "subscribe": {"channel": "a"}})
        self.assertEqual(transport.replies(), [{"id": 2, "subscribe": {
            "data": b'"d"', "expires": True, "ttl": 30, "recoverable": True, "positioned": True,
            "offset": 7, "epoch": "e1",
        }}])
        self.assertEqual(client.clientInfo(client.subs["a"]).chanInfo, b'{"c":1}')
        self.assertEqual(client.channels, {"a"})

    def test_subscribeRefused(self) -> None:
        """An unknown channel (the policy's options refuse it) or a refused subscription is the error reply."""
        client, transport = self.connected()
        self.policy.answers["channelOptions"] = Refused(codes.ERROR_UNKNOWN_CHANNEL)
        self.send(client, {"id": 2, "subscribe": {"channel": "x:a"}})
        self.assertEqual(transport.replies(), [{"id": 2, "error": {"code": 102, "message": "unknown channel"}}])
        self.assertNotIn("subscribing", self.policy.methods())
        del self.policy.answers["channelOptions"]
        self.policy.answers["subscribing"] = Refused(codes.ERROR_PERMISSION_DENIED)
        self.send(client, {"id": 3, "subscribe": {"channel": "a"}})
        self.assertEqual(transport.replies()[-1], {"id": 3, "error": {"code": 103, "message": "permission denied"}})
        self.assertEqual(client.channels, set())

    def test_publishedDataIsThePolicys(self) -> None:
        """The policy may replace a publication's data (a publish proxy does): subscribers get its data."""
        self.policy.answers["publishing"] = lambda connection, channel, options, data, subscribed: PublishDecision(
            b'"changed"'
        )
        client, transport = self.connected()
        self.send(client, {"id": 2, "subscribe": {"channel": "a"}})
        self.send(client, {"id": 3, "publish": {"channel": "a", "data": b'"sent"'}})
        replies = transport.replies()
        self.assertIn({"id": 3, "publish": {}}, replies)
        [push] = [reply for reply in replies if "push" in reply]
        self.assertEqual(push["push"]["pub"]["data"], b'"changed"')
        self.assertTrue(self.asked("publishing")[4], "the publisher is subscribed")

    def test_rpcAndMessage(self) -> None:
        """An RPC is answered with the policy's data; a message it refuses with a disconnect ends the connection."""
        self.policy.answers["rpc"] = lambda connection, method, data: b'{"m":"' + method.encode() + b'"}'
        client, transport = self.connected()
        self.send(client, {"id": 2, "rpc": {"method": "echo", "data": b"1"}})
        self.assertEqual(transport.replies(), [{"id": 2, "rpc": {"data": b'{"m":"echo"}'}}])
        self.policy.answers["message"] = Refused(codes.DISCONNECT_NOT_AVAILABLE)
        self.send(client, {"send": {"data": b"1"}})
        self.assertEqual(transport.closed, (3508, "not available"))

    def test_refresh(self) -> None:
        """The client's refresh asks with its token; the new expiry is in the reply and moves the expiry timer."""
        self.policy.answers["connecting"] = ConnectDecision(user="u", expireAt=NOW + 10)
        client, transport = self.connected()
        self.policy.answers["refreshing"] = RefreshDecision(expireAt=NOW + 100, info=b'"new"')
        self.send(client, {"id": 2, "refresh": {"token": "fresh"}})
        self.assertEqual(self.asked("refreshing")[1], "fresh")
        self.assertEqual(transport.replies(), [{"id": 2, "refresh": {"expires": True, "ttl": 100}}])
        self.assertEqual(client.connInfo, b'"new"')
        self.clock.advance(50)
        self.assertFalse(client.closed)

    def test_serverRefreshAtExpiry(self) -> None:
        """
        A connection the server refreshes is not told its ttl; when it expires the policy is asked (token "")
        and its new expiry keeps the connection; "expired" ends it with 3005.
        """
        self.policy.answers["connecting"] = ConnectDecision(user="u", expireAt=NOW + 10, serverRefresh=True)
        client, transport = self.open()
        self.send(client, {"id": 1, "connect": {}})
        self.assertNotIn("ttl", transport.replies()[0]["connect"])
        self.policy.answers["refreshing"] = RefreshDecision(expireAt=NOW + 40)
        self.clock.advance(40)
        self.assertEqual(self.asked("refreshing")[1], "")
        self.assertFalse(client.closed)
        self.policy.answers["refreshing"] = RefreshDecision(expired=True)
        self.clock.advance(60)
        self.assertEqual(transport.closed, (3005, "connection expired"))

    def test_historyRefused(self) -> None:
        """A history read the policy refuses is the error reply (107 for a filter the stream refuses)."""
        client, transport = self.connected()
        self.policy.answers["history"] = Refused(codes.ERROR_BAD_REQUEST)
        self.send(client, {"id": 2, "history": {"channel": "a", "limit": 5}})
        self.assertEqual(transport.replies(), [{"id": 2, "error": {"code": 107, "message": "bad request"}}])
        _, channel, _, subscribed, since, limit, reverse = self.asked("history")
        self.assertEqual((channel, subscribed, since, limit, reverse), ("a", False, None, 5, False))


class ConfiguredPolicyTests(SynchronousTestCase):
    """The node's configured policy on its own: the decisions, without a client."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)

    def node(self, **settings: Any) -> Node:
        settings.setdefault("token_hmac_secret_key", SECRET)
        return makeNode(settings, self.clock)

    def connection(self, user: str = "") -> Connection:
        return Connection(clientID="c1", transport="http_stream", protocol="json", user=user)

    def refusal(self, d: Deferred[Any]) -> Refused:
        failure = self.failureResultOf(d, Refused)
        assert isinstance(failure.value, Refused)
        return failure.value

    def test_anonymousConnect(self) -> None:
        """Without a token, a connection is anonymous where allowed, else refused with 3501."""
        decision = self.successResultOf(self.node(allow_anonymous_connect_without_token=True).policy.connecting(
            self.connection(), ConnectRequest()))
        self.assertEqual(decision, ConnectDecision())
        refusal = self.refusal(self.node().policy.connecting(self.connection(), ConnectRequest()))
        self.assertEqual(refusal.disconnect, codes.DISCONNECT_BAD_REQUEST)

    def test_tokenConnect(self) -> None:
        """
        A connection token gives the user, info, expiry and server-side channels (plus the personal channel when
        configured); an expired token is error 109, a bad one disconnect 3500.
        """
        node = self.node(user_subscribe_to_personal=True)
        jwtoken = token(sub="alice", info={"a": 1}, exp=int(NOW) + 60, channels=["news"])
        decision = self.successResultOf(node.policy.connecting(self.connection(), ConnectRequest(token=jwtoken)))
        self.assertEqual((decision.user, decision.info, decision.expireAt), ("alice", b'{"a":1}', NOW + 60))
        self.assertEqual(list(decision.subscriptions), ["news", "#alice"])
        expired = token(sub="alice", exp=int(NOW) - 1)
        self.assertEqual(self.refusal(node.policy.connecting(self.connection(), ConnectRequest(token=expired))).error,
                         codes.ERROR_TOKEN_EXPIRED)
        self.assertEqual(self.refusal(node.policy.connecting(self.connection(), ConnectRequest(token="x.y.z")))
                         .disconnect, codes.DISCONNECT_INVALID_TOKEN)

    def test_serverSideChannelInUnknownNamespace(self) -> None:
        """A granted channel whose namespace does not exist refuses the connection with 102."""
        node = self.node()
        jwtoken = token(sub="alice", channels=["nope:news"])
        refusal = self.refusal(node.policy.connecting(self.connection(), ConnectRequest(token=jwtoken)))
        self.assertEqual(refusal.error, codes.ERROR_UNKNOWN_CHANNEL)

    def test_subscribePermissions(self) -> None:
        """
        Without permission a subscribe is refused with 103; with it, the decision follows the channel options and
        what the client asked (join/leave pushes only with presence access); a granted one needs no permission.
        """
        node = self.node(namespaces=[{"name": "open", "allow_subscribe_for_client": True, "presence": True,
                                      "join_leave": True, "allow_presence_for_client": True}])
        policy = node.policy
        closed = policy.channelOptions("news", False)
        refusal = self.refusal(policy.subscribing(self.connection("u"), SubscribeRequest("news", closed)))
        self.assertEqual(refusal.error, codes.ERROR_PERMISSION_DENIED)
        options = policy.channelOptions("open:a", False)
        decision = self.successResultOf(policy.subscribing(
            self.connection("u"), SubscribeRequest("open:a", options, joinLeave=True)))
        self.assertEqual((decision.presence, decision.joinLeave, decision.pushJoinLeave), (True, True, True))
        granted = self.successResultOf(policy.subscribing(
            self.connection("u"), SubscribeRequest("news", closed, granted=GrantedSubscription(info=b"1"))))
        self.assertEqual(granted.info, b"1")

    def test_channelOptionsRefused(self) -> None:
        """An unknown namespace is refused with 102, for any command."""
        with self.assertRaises(Refused) as raised:
            self.node().policy.channelOptions("nope:a", False)
        self.assertEqual(raised.exception.error, codes.ERROR_UNKNOWN_CHANNEL)

    def test_publishAndReads(self) -> None:
        """Publishing needs permission (103); presence and history need the feature on (108)."""
        node = self.node()
        policy, options = node.policy, node.policy.channelOptions("news", False)
        self.assertEqual(self.refusal(policy.publishing(self.connection("u"), "news", options, b"1", True)).error,
                         codes.ERROR_PERMISSION_DENIED)
        self.assertEqual(self.refusal(policy.presence(self.connection("u"), "news", options, True)).error,
                         codes.ERROR_NOT_AVAILABLE)
        self.assertEqual(self.refusal(policy.history(self.connection("u"), "news", options, True, None, 0, False))
                         .error, codes.ERROR_NOT_AVAILABLE)

    def test_rpcAndSend(self) -> None:
        """
        An RPC method registered on C{node.rpc} answers in process; without it and without a proxy: 104 when
        others are registered. A send without hooks is refused with 3508.
        """
        node = self.node()
        node.rpc.register("echo", lambda ctx, data: data)
        self.assertEqual(self.successResultOf(node.policy.rpc(self.connection(), "echo", b"1")), b"1")
        self.assertEqual(self.refusal(node.policy.rpc(self.connection(), "other", b"1")).error,
                         codes.ERROR_METHOD_NOT_FOUND)
        self.assertEqual(self.refusal(node.policy.message(self.connection(), b"1")).disconnect,
                         codes.DISCONNECT_NOT_AVAILABLE)

    def test_reloadApplies(self) -> None:
        """A reloaded configuration decides from then on (the policy reads the node's rules on every call)."""
        node = self.node()
        self.assertRaises(Refused, node.policy.channelOptions, "ns:a", False)
        reloaded = makeNode({"token_hmac_secret_key": SECRET, "namespaces": [{"name": "ns"}]}, self.clock).config
        node.reload(reloaded)
        self.assertIsInstance(node.policy.channelOptions("ns:a", False), ChannelOptions)


class ApplicationPolicyTests(SynchronousTestCase):
    """An embedding program's decisions, in front of the configured policy."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.node = makeNode({"ping_interval": -1, "allow_subscribe_for_client": True}, self.clock)
        assert isinstance(self.node.policy, ApplicationPolicy)
        self.app: ApplicationPolicy = self.node.policy

    def connect(self) -> tuple[Client, FakeTransport]:
        transport = FakeTransport("json")
        client = self.node.newClient(transport)
        assert isinstance(client, Client)
        client.handleData(encodeCommands("json", [{"id": 1, "connect": {}}]))
        self.clock.advance(0)
        return client, transport

    def test_connectingHook(self) -> None:
        """
        The program's C{onConnecting} decides who connects (here where the configuration admits nobody without
        a token); returning None leaves it to the configuration (3501 here); raising L{Refused} refuses.
        """
        self.app.onConnecting = lambda connection, request: ConnectDecision(user="embedded")
        client, transport = self.connect()
        self.assertEqual(client.user, "embedded")
        self.assertIn("connect", transport.replies()[0])
        self.app.onConnecting = lambda connection, request: None
        client, transport = self.connect()
        self.assertEqual(transport.closed, (3501, "bad request"))

        def refuse(connection: Connection, request: ConnectRequest) -> None:
            raise Refused(codes.DISCONNECT_PERMISSION_DENIED)

        self.app.onConnecting = refuse
        client, transport = self.connect()
        self.assertEqual(transport.closed, (3507, "permission denied"))

    def test_publishingHook(self) -> None:
        """The program's C{onPublishing} may accept (and change) what the configuration would refuse."""
        self.app.onConnecting = lambda connection, request: ConnectDecision(user="u")
        self.app.onPublishing = lambda connection, channel, data: PublishDecision(data.upper())
        client, transport = self.connect()
        transport.clear()
        client.handleData(encodeCommands("json", [{"id": 2, "subscribe": {"channel": "a"}},
                                                  {"id": 3, "publish": {"channel": "a", "data": b'"x"'}}]))
        self.clock.advance(0)
        [push] = [reply for reply in transport.replies() if "push" in reply]
        self.assertEqual(push["push"]["pub"]["data"], b'"X"')

    def test_subscribingHookOnlyForTheClientsOwn(self) -> None:
        """C{onSubscribing} is asked for the client's subscribes, not for server-side ones (granted already)."""
        asked: list[str] = []
        self.app.onSubscribing = lambda connection, request: asked.append(request.channel)
        self.app.onConnecting = lambda connection, request: ConnectDecision(user="u", subscriptions={"granted": None})
        client, transport = self.connect()
        client.handleData(encodeCommands("json", [{"id": 2, "subscribe": {"channel": "own"}}]))
        self.assertEqual(asked, ["own"])
        self.assertEqual(client.channels, {"granted", "own"})
