"""
Tests for L{httpstream.node.node}: the node's identity, its clients and sessions, and publications through its broker.
"""

from __future__ import annotations

import uuid

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

import httpstream
from httpstream.client.client import Client
from httpstream.config import config_from_dict
from httpstream.node.node import SHUTDOWN_TIMEOUT
from httpstream.node.registry import SessionRegistry
from httpstream.testing import (
    FakeClient,
    FakeTransport,
    ManualBroker,
    connectClient,
    encodeCommands,
    makeNode,
)
from httpstream.values import Publication

OPEN = {
    "allow_anonymous_connect_without_token": True,
    "allow_subscribe_for_client": True,
    "allow_subscribe_for_anonymous": True,
}


class IdentityTests(SynchronousTestCase):
    def test_randomID(self) -> None:
        """
        Each node gets its own UUIDv4, which it knows as itself.
        """
        a, b = makeNode(), makeNode()
        self.assertEqual(uuid.UUID(a.id).version, 4)
        self.assertNotEqual(a.id, b.id)
        self.assertTrue(a.nodes.isKnownNode(a.id))
        self.assertFalse(a.nodes.isKnownNode(b.id))

    def test_givenID(self) -> None:
        self.assertEqual(makeNode(nodeID="node-1").id, "node-1")

    def test_version(self) -> None:
        self.assertEqual(makeNode().version, httpstream.__version__)

    def test_injectedRegistry(self) -> None:
        registry = SessionRegistry()
        node = makeNode(OPEN, registry=registry)
        client, _ = connectClient(node)
        self.assertIs(node.registry, registry)
        self.assertIs(registry.get(client.sessionID), client)

    def test_tokensUseConfiguredSecret(self) -> None:
        import jwt

        secret = "x" * 64
        node = makeNode({"token_hmac_secret_key": secret})
        self.assertEqual(node.tokens.verifyConnect(jwt.encode({"sub": "a"}, secret, "HS256"), 0).user, "a")


class ClientsTests(SynchronousTestCase):
    def test_newClientNotCountedUntilConnected(self) -> None:
        node = makeNode(OPEN)
        transport = FakeTransport()
        client = node.newClient(transport)
        self.assertIsInstance(client, Client)
        self.assertIs(client.node, node)
        self.assertIs(client.transport, transport)
        self.assertEqual(node.clients, {})
        client.handleData(b'{"id":1,"connect":{}}')
        self.assertEqual(node.clients, {client.clientID: client})

    def test_connectedAndClosed(self) -> None:
        """
        A connected client is listed, and its session registered when it has one; closing undoes both.
        """
        node = makeNode()
        emulated = FakeClient(sessionID="s1")
        direct = FakeClient()
        node.clientConnected(emulated)  # type: ignore[arg-type]
        node.clientConnected(direct)  # type: ignore[arg-type]
        self.assertEqual(set(node.clients), {emulated.clientID, direct.clientID})
        self.assertIs(node.registry.get("s1"), emulated)
        self.assertEqual(len(node.registry), 1)
        node.clientClosed(emulated)  # type: ignore[arg-type]
        node.clientClosed(direct)  # type: ignore[arg-type]
        self.assertEqual(node.clients, {})
        self.assertIsNone(node.registry.get("s1"))

    def test_clientClosedTwice(self) -> None:
        node = makeNode()
        client = FakeClient(sessionID="s1")
        node.clientConnected(client)  # type: ignore[arg-type]
        node.clientClosed(client)  # type: ignore[arg-type]
        node.clientClosed(client)  # type: ignore[arg-type]
        self.assertEqual(node.clients, {})

    def test_shutdown(self) -> None:
        """
        Shutdown disconnects every client with 3001 "shutdown" (they reconnect), pushed first.
        """
        clock = Clock()
        node = makeNode(OPEN, clock)
        transports = []
        for protocol in ("json", "protobuf"):
            _, transport = connectClient(node, FakeTransport(protocol))
            transports.append(transport)
        clock.advance(0)
        self.assertIsNone(self.successResultOf(node.shutdown()))
        self.assertEqual(node.clients, {})
        for transport in transports:
            self.assertEqual(transport.closed, (3001, "shutdown"))
            self.assertEqual(transport.replies()[-1], {"push": {"disconnect": {"code": 3001, "reason": "shutdown"}}})


    def test_shutdownWaitsForEngineCalls(self) -> None:
        """
        Shutdown fires once the engine calls nobody waits for (leaves, presence removals) have settled, failed
        ones included, so the engine is not stopped under them; at most SHUTDOWN_TIMEOUT seconds.
        """
        clock = Clock()
        node = makeNode(OPEN, clock)
        leave, removal = Deferred(), Deferred()
        node.background(leave)
        node.background(removal)
        node.background(succeed(None))
        stopped = node.shutdown()
        leave.callback(None)
        self.assertNoResult(stopped)
        removal.errback(RuntimeError("Redis went away"))
        self.assertIsNone(self.successResultOf(stopped))

        stuck: Deferred[None] = Deferred()
        node.background(stuck)
        stopped = node.shutdown()
        clock.advance(SHUTDOWN_TIMEOUT - 0.1)
        self.assertNoResult(stopped)
        clock.advance(0.1)
        self.assertIsNone(self.successResultOf(stopped))


class SubscriptionTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.broker = ManualBroker()
        self.node = makeNode(broker=self.broker)

    def operations(self) -> list[tuple[str, str]]:
        return [(operation, channel) for operation, channel, _ in self.broker.pending]

    def test_firstSubscriberSubscribesBroker(self) -> None:
        a, b = FakeClient(), FakeClient()
        first = self.node.addSubscription("news", a)  # type: ignore[arg-type]
        self.assertEqual(self.operations(), [("subscribe", "news")])
        self.assertNoResult(first)
        second = self.node.addSubscription("news", b)  # type: ignore[arg-type]
        self.assertEqual(self.operations(), [("subscribe", "news")])
        self.broker.complete()
        self.assertIsNone(self.successResultOf(first))
        self.assertIsNone(self.successResultOf(second))
        self.assertEqual(self.broker.channels, {"news"})

    def test_laterSubscribersWaitForTheBroker(self) -> None:
        """
        Subscribers arriving while the broker subscribe is in flight wait for it too: none is told it is
        subscribed before publications can reach it.
        """
        a, b = FakeClient(), FakeClient()
        first = self.node.addSubscription("news", a)  # type: ignore[arg-type]
        second = self.node.addSubscription("news", b)  # type: ignore[arg-type]
        self.assertNoResult(second)
        self.broker.complete()
        self.assertIsNone(self.successResultOf(first))
        self.assertIsNone(self.successResultOf(second))
        third = self.node.addSubscription("news", FakeClient())  # type: ignore[arg-type]
        self.assertIsNone(self.successResultOf(third))
        self.assertEqual(self.broker.pending, [])

    def test_brokerFailureReachesEveryWaiter(self) -> None:
        """
        When the broker cannot subscribe, every subscriber that waited on it fails (and can say so), not only
        the first.
        """
        a, b = FakeClient(), FakeClient()
        first = self.node.addSubscription("news", a)  # type: ignore[arg-type]
        second = self.node.addSubscription("news", b)  # type: ignore[arg-type]
        self.broker.fail()
        self.failureResultOf(first, ConnectionError)
        self.failureResultOf(second, ConnectionError)

    def test_resubscribeWhileUnsubscribing(self) -> None:
        """
        A channel left and joined again while the broker is still busy with the first subscribe gets a new one;
        the first one's outcome does not settle the new subscriber.
        """
        a, b = FakeClient(), FakeClient()
        self.node.addSubscription("news", a)  # type: ignore[arg-type]
        self.node.removeSubscription("news", a)  # type: ignore[arg-type]
        again = self.node.addSubscription("news", b)  # type: ignore[arg-type]
        self.assertEqual(self.operations(), [("subscribe", "news"), ("unsubscribe", "news"), ("subscribe", "news")])
        self.broker.complete()
        self.broker.complete()
        self.assertNoResult(again)
        self.broker.complete()
        self.assertIsNone(self.successResultOf(again))
        self.assertEqual(self.broker.channels, {"news"})

    def test_lastSubscriberUnsubscribesBroker(self) -> None:
        a, b = FakeClient(), FakeClient()
        self.node.addSubscription("news", a)  # type: ignore[arg-type]
        self.node.addSubscription("news", b)  # type: ignore[arg-type]
        self.broker.completeAll()
        self.node.removeSubscription("news", a)  # type: ignore[arg-type]
        self.assertEqual(self.operations(), [])
        self.node.removeSubscription("news", b)  # type: ignore[arg-type]
        self.assertEqual(self.operations(), [("unsubscribe", "news")])
        self.broker.complete()
        self.assertEqual(self.broker.channels, set())

    def test_removeUnknownSubscription(self) -> None:
        self.node.removeSubscription("news", FakeClient())  # type: ignore[arg-type]
        self.assertEqual(self.operations(), [])

    def test_unsubscribeFailureLogged(self) -> None:
        """
        A broker that fails to unsubscribe is logged; the client leaving is not affected.
        """
        client = FakeClient()
        self.node.addSubscription("news", client)  # type: ignore[arg-type]
        self.broker.complete()
        self.node.removeSubscription("news", client)  # type: ignore[arg-type]
        self.broker.fail()
        self.assertEqual(len(self.flushLoggedErrors(ConnectionError)), 1)
        self.assertEqual(self.node.hub.channels(), [])


class PublishTests(SynchronousTestCase):
    def test_publishReachesSubscribers(self) -> None:
        """
        A publication goes through the broker and comes back as a push to every local subscriber.
        """
        node = makeNode()
        a, b, other = FakeClient(), FakeClient("protobuf"), FakeClient()
        node.addSubscription("news", a)  # type: ignore[arg-type]
        node.addSubscription("news", b)  # type: ignore[arg-type]
        node.addSubscription("chat", other)  # type: ignore[arg-type]
        d = node.publish("news", b'{"x":1}')
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(len(a.delivered), 1)
        self.assertEqual(len(b.delivered), 1)
        self.assertEqual(other.delivered, [])
        self.assertIn(b'"channel":"news"', a.delivered[0][0])

    def test_publishWaitsForBroker(self) -> None:
        """
        The publish Deferred is the broker's: it fires when the broker has taken the publication, with its
        result, and fails when the broker fails.
        """
        broker = ManualBroker()
        node = makeNode(broker=broker)
        d = node.publish("news", b"1")
        self.assertNoResult(d)
        broker.complete()
        self.assertIsNone(self.successResultOf(d))
        failed = node.publish("news", b"1")
        broker.fail()
        self.failureResultOf(failed, ConnectionError)

    def test_publishWithoutSubscribers(self) -> None:
        node = makeNode()
        self.assertIsNone(self.successResultOf(node.publish("nobody", b"1")))

    def test_optionsResolvedOnce(self) -> None:
        """
        A publication's channel options are resolved once on its way out: in L{Node.publish}, not at all when the
        caller has them already (a client's publish command); the fan-out resolves what it needs once while the
        channel has subscribers here, not per publication.
        """
        node = makeNode(OPEN)
        client = FakeClient()
        node.addSubscription("news", client)  # type: ignore[arg-type]
        resolved: list[str] = []
        options = node.rules.options
        self.patch(node.rules, "options", lambda channel: resolved.append(channel) or options(channel))
        node.publish("news", b"1")
        node.publish("news", b"2")
        self.assertEqual(resolved, ["news", "news", "news"])
        del resolved[:]
        node.publish("news", b"3", options=options("news"))
        self.assertEqual(resolved, [])
        self.assertEqual(len(client.delivered), 3)

    def test_reloadedOptionsApplyToFanOut(self) -> None:
        """
        A reload applies to the fan-out of the channels already subscribed: deltas stop when delta_publish is
        turned off, and start when it is turned on again.
        """
        node = makeNode({**OPEN, "delta_publish": True})
        previous: list[object] = []
        client = FakeClient()
        self.patch(client, "deliverPublication", lambda frames: previous.append(frames.previous))
        node.addSubscription("news", client)  # type: ignore[arg-type]
        node.publish("news", b"1")
        node.publish("news", b"2")
        self.assertEqual(previous, [None, Publication(b"1")])
        node.reload(config_from_dict(OPEN)[0])
        node.publish("news", b"3")
        self.assertIsNone(previous[-1])
        node.reload(config_from_dict({**OPEN, "delta_publish": True})[0])
        node.publish("news", b"4")
        node.publish("news", b"5")
        self.assertEqual(previous[-2:], [None, Publication(b"4")])

    def test_unsubscribedChannelGetsNothing(self) -> None:
        node = makeNode()
        client = FakeClient()
        node.addSubscription("news", client)  # type: ignore[arg-type]
        node.removeSubscription("news", client)  # type: ignore[arg-type]
        node.publish("news", b"1")
        self.assertEqual(client.delivered, [])


class BrokerReconnectTests(SynchronousTestCase):
    def test_reconnectChecksPositions(self) -> None:
        """
        When the broker reports channels whose publications may have been lost (its PUB/SUB connection came back),
        the node checks its positioned subscribers of those channels against the stream (a history read).
        """
        broker = ManualBroker()
        node = makeNode(
            {**OPEN, "history_size": 10, "history_ttl": "300s", "allow_positioning": True},
            broker=broker,
        )
        client, transport = connectClient(node)
        client.handleData(encodeCommands("json", [{"id": 2, "subscribe": {"channel": "news", "positioned": True}}]))
        broker.completeAll()
        node.reactor.advance(0)  # type: ignore[attr-defined]
        self.assertEqual([reply.get("id") for reply in transport.replies()], [1, 2])
        self.assertIn("subscribe", transport.replies()[1])
        broker.reconnect(["other"])
        self.assertEqual(broker.pending, [])
        broker.reconnect(["news"])
        self.assertEqual([(operation, channel) for operation, channel, _ in broker.pending], [("history", "news")])


class StreamEpochTests(SynchronousTestCase):
    def test_lostStreamUnsubscribesPositioned(self) -> None:
        """
        On the memory engine too, a positioned subscriber whose stream was dropped (history_meta_ttl without use)
        and made again is unsubscribed with 2500 by the next publication (another epoch), instead of silently
        missing the new stream's publications, whose offsets start again at 1.
        """
        node = makeNode({**OPEN, "history_size": 10, "history_ttl": "5s", "history_meta_ttl": "10s",
                         "allow_positioning": True})
        node.publish("news", b'{"n":1}')
        client, transport = connectClient(node)
        client.handleData(encodeCommands("json", [{"id": 2, "subscribe": {"channel": "news", "positioned": True}}]))
        node.reactor.advance(11)  # type: ignore[attr-defined]
        node.publish("news", b'{"n":2}')
        node.reactor.advance(0)  # type: ignore[attr-defined]
        pushes = [reply for reply in transport.replies() if "push" in reply]
        self.assertEqual(pushes, [{"push": {"channel": "news", "unsubscribe": {"code": 2500,
                                                                                "reason": "insufficient state"}}}])
