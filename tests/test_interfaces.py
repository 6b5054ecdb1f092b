"""
Every implementation of every interface in L{httpstream.interfaces} provides it (C{verifyObject}), the shipped
fakes included; and the fakes of L{httpstream.testing} behave as their interfaces say.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IPushProducer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest
from zope.interface.interface import InterfaceClass
from zope.interface.verify import verifyObject

from httpstream import interfaces
from httpstream.cluster.memory import memoryCluster
from httpstream.engines import HistoryResult
from httpstream.engines.memory import MemoryBroker, MemoryPresence
from httpstream.engines.maps import IMapBroker
from httpstream.engines.memorymap import MemoryMapBroker
from httpstream.interfaces import (
    IBroker,
    IClient,
    IClientPolicy,
    IClusterNodes,
    IEmulationForwarder,
    IHistory,
    IOriginChecker,
    IPresenceManager,
    ISessionRegistry,
    ITransport,
)
from httpstream.node import sharedpollseam
from httpstream.node.sharedpollseam import IKeyedSubscriber, ISharedPoll
from httpstream.origin import OriginChecker
from httpstream.protocol import JSON, PROTOBUF
from httpstream.node.registry import LocalNodes, SessionRegistry
from httpstream.policy.application import ApplicationPolicy
from httpstream.policy.clientpolicy import ConfiguredPolicy
from httpstream.testing import (
    FakeClient,
    FakePolicy,
    FakeTransport,
    ManualBroker,
    decodeReply,
    encodeCommands,
    makeNode,
)
from httpstream.transports.http_stream import HTTPStreamTransport
from httpstream.client.sharedpoll import SharedPollSubscription
from httpstream.client.subscription import Subscription
from httpstream.client.writer import Writer
from httpstream.config import ChannelOptions
from httpstream.node.sharedpoll import SharedPolls
from httpstream.testing.sharedpoll import FakeKeyedSubscriber, FakePollBackend
from httpstream.values import Publication


def implementations() -> dict[InterfaceClass, list[Any]]:
    """One instance of each implementation (in each of its shapes) per interface."""
    node = makeNode()
    return {
        IOriginChecker: [OriginChecker([]), OriginChecker(["*"]), OriginChecker(["https://*.example.com"])],
        ITransport: [
            HTTPStreamTransport(DummyRequest([b""]), protobuf=False),
            HTTPStreamTransport(DummyRequest([b""]), protobuf=True),
            FakeTransport("json"),
            FakeTransport("protobuf", emulated=False, pushDisconnect=False, name="websocket"),
        ],
        IClient: [
            node.newClient(FakeTransport("json")),
            node.newClient(FakeTransport("protobuf", emulated=False)),
            FakeClient(),
        ],
        ISessionRegistry: [SessionRegistry(), node.registry],
        IClusterNodes: [LocalNodes("node"), node.nodes],
        IHistory: [MemoryBroker(), ManualBroker(), node.broker],
        IBroker: [MemoryBroker(), MemoryBroker(Clock()), ManualBroker(), node.broker],
        IPresenceManager: [MemoryPresence()],
        IEmulationForwarder: memoryCluster(Clock(), [node]),
        IClientPolicy: [node.policy, ConfiguredPolicy(node), ApplicationPolicy(FakePolicy()), FakePolicy()],
        ISharedPoll: [node.sharedPoll, SharedPolls(Clock(), FakePollBackend().refresh)],
        IKeyedSubscriber: [FakeKeyedSubscriber(), _sharedPollSubscription(node)],
    }


def _sharedPollSubscription(node: Any) -> SharedPollSubscription:
    client = node.newClient(FakeTransport("json"))
    return SharedPollSubscription(client, Subscription("poll:c", ChannelOptions(subscription_type="shared_poll")))


class VerifyTests(SynchronousTestCase):
    def test_everyInterfaceCovered(self) -> None:
        """
        Each interface declared in L{httpstream.interfaces} (and the shared poll seam's module) is checked here: a new seam needs its implementations
        listed.
        """
        declared = {
            value for module in (interfaces, sharedpollseam) for value in vars(module).values()
            if isinstance(value, InterfaceClass) and value.__module__ == module.__name__
        }
        self.assertEqual(declared, set(implementations()))

    def test_mapBroker(self) -> None:
        """L{IMapBroker} (in the engines package): the memory one, and the node's default."""
        for broker in [MemoryMapBroker(Clock()), makeNode().mapBroker]:
            self.assertTrue(verifyObject(IMapBroker, broker))

    def test_verifyObject(self) -> None:
        for interface, objects in implementations().items():
            for obj in objects:
                self.assertTrue(verifyObject(interface, obj), f"{obj!r} does not provide {interface.__name__}")

    def test_transportAttributes(self) -> None:
        """
        A transport's attributes have the values the client reads: protocol "json" or "protobuf", booleans for
        emulated and pushDisconnect.
        """
        for transport in implementations()[ITransport]:
            self.assertIn(transport.protocol, ("json", "protobuf"))
            self.assertIn(transport.name, ("http_stream", "sse", "websocket"))
            self.assertIsInstance(transport.emulated, bool)
            self.assertIsInstance(transport.pushDisconnect, bool)

    def test_writerIsPushProducer(self) -> None:
        writer = Writer(Clock(), FakeTransport(), 100, lambda: None)
        self.assertTrue(verifyObject(IPushProducer, writer))

    def test_clientRegistersWriter(self) -> None:
        """
        A client registers its writer with its transport, so the transport can pause it.
        """
        transport = FakeTransport()
        client = makeNode().newClient(transport)
        self.assertIs(transport.producer, client.writer)
        self.assertTrue(verifyObject(IPushProducer, transport.producer))


class FakeTransportTests(SynchronousTestCase):
    def test_records(self) -> None:
        transport = FakeTransport()
        transport.writeMessages([b"{}", b'{"id":1,"publish":{}}'])
        transport.writeMessages([b"{}"])
        self.assertEqual(transport.batches, [[b"{}", b'{"id":1,"publish":{}}'], [b"{}"]])
        self.assertEqual(transport.replies(), [{}, {"id": 1, "publish": {}}, {}])
        self.assertIsNone(transport.closed)
        transport.close(3501, "bad request")
        self.assertEqual(transport.closed, (3501, "bad request"))

    def test_contract(self) -> None:
        """
        Writing after close, or closing twice, breaks the ITransport contract: the fake says so loudly.
        """
        transport = FakeTransport()
        transport.close(3001, "shutdown")
        self.assertRaises(AssertionError, transport.writeMessages, [b"{}"])
        self.assertRaises(AssertionError, transport.close, 3001, "shutdown")

    def test_unknownProtocol(self) -> None:
        self.assertRaises(ValueError, FakeTransport, "xml")

    def test_pauseResume(self) -> None:
        clock = Clock()
        transport = FakeTransport()
        writer = Writer(clock, transport, 0, lambda: None)
        transport.registerProducer(writer)
        transport.pause()
        writer.enqueue(b"{}")
        clock.advance(0)
        self.assertEqual(transport.batches, [])
        transport.resume()
        clock.advance(0)
        self.assertEqual(transport.batches, [[b"{}"]])


class CodecHelperTests(SynchronousTestCase):
    COMMANDS: list[dict[str, Any]] = [
        {"id": 1, "connect": {"token": "t", "name": "js"}},
        {"id": 2, "publish": {"channel": "news", "data": b'{"x":[1,2]}'}},
        {},
    ]

    def test_encodeCommands(self) -> None:
        """
        encodeCommands frames commands the way the server's codecs read them, both giving the same dicts.
        """
        for codec in (JSON, PROTOBUF):
            self.assertEqual(codec.decode_commands(encodeCommands(codec.name, self.COMMANDS)), self.COMMANDS)

    def test_decodeReply(self) -> None:
        """
        decodeReply reads what the server's codecs write, with the same dict for both.
        """
        reply = {"push": {"channel": "news", "pub": {"data": b'{"x":1}', "info": {"user": "u", "client": "c"}}}}
        for codec in (JSON, PROTOBUF):
            self.assertEqual(decodeReply(codec.name, codec.encode_reply(reply)), reply)
            self.assertEqual(decodeReply(codec.name, codec.encode_reply({})), {})

    def test_decodeReplyRefusesNonReply(self) -> None:
        self.assertRaises(ValueError, decodeReply, "json", b'{"id":"one"}')


class ManualBrokerTests(SynchronousTestCase):
    def test_operationsWait(self) -> None:
        broker = ManualBroker()
        received: list[tuple[str, dict]] = []
        broker.setHandler(lambda channel, pub, epoch: received.append((channel, pub)))
        subscribed = broker.subscribe("news")
        published = broker.publish("news", Publication(b"1"))
        self.assertNoResult(subscribed)
        self.assertEqual(broker.channels, set())
        broker.complete()
        self.assertIsNone(self.successResultOf(subscribed))
        self.assertEqual(broker.channels, {"news"})
        self.assertNoResult(published)
        broker.complete()
        self.assertIsNone(self.successResultOf(published))
        self.assertEqual(received, [("news", Publication(b"1"))])

    def test_historyWaits(self) -> None:
        """
        History operations wait too, then answer from the inner memory broker (on the given clock).
        """
        clock = Clock()
        broker = ManualBroker(clock)
        published = broker.publish("news", Publication(b"1"), historySize=5, historyTTL=10)
        read = broker.history("news", limit=-1)
        removed = broker.removeHistory("news")
        self.assertEqual([op for op, _, _ in broker.pending], ["publish", "history", "removeHistory"])
        broker.completeAll()
        epoch = self.successResultOf(published).epoch
        self.assertEqual(self.successResultOf(read), HistoryResult([Publication(b"1", 1)], 1, epoch))
        self.assertIsNone(self.successResultOf(removed))

    def test_reconnect(self) -> None:
        """reconnect plays a networked broker's PUB/SUB coming back: the reconnect handler hears the channels."""
        broker = ManualBroker()
        broker.reconnect(["news"])  # no handler yet: nothing to tell
        reported: list[list[str]] = []
        broker.setReconnectHandler(reported.append)
        broker.reconnect(["news", "other"])
        self.assertEqual(reported, [["news", "other"]])

    def test_fail(self) -> None:
        broker = ManualBroker()
        d = broker.subscribe("news")
        broker.fail(ValueError("nope"))
        self.failureResultOf(d, ValueError)
        self.assertEqual(broker.pending, [])
        self.assertEqual(broker.channels, set())


class MakeNodeTests(SynchronousTestCase):
    def test_unknownKey(self) -> None:
        """
        A misspelt key is an error, not a silently ignored warning.
        """
        self.assertRaises(ValueError, makeNode, {"allow_anonymous_conect_without_token": True})

    def test_settings(self) -> None:
        clock = Clock()
        node = makeNode({"ping_interval": "5s", "pong_timeout": "2s"}, clock)
        self.assertEqual(node.config.ping_interval, 5.0)
        self.assertIs(node.reactor, clock)
