"""
Tests for L{httpstream.hub}: who is subscribed where, and a fan-out that encodes a push once per protocol.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from httpstream.hub import Hub
from httpstream.testing import FakeClient, decodeReply

PUSH = {"push": {"channel": "news", "pub": {"data": b'{"x":1}', "info": {"user": "u", "client": "c"}}}}


class MembershipTests(SynchronousTestCase):
    def test_firstAndLast(self) -> None:
        """
        add says when a channel gets its first local subscriber and remove when it loses its last: the node
        (un)subscribes the broker then.
        """
        hub = Hub()
        a, b = FakeClient(), FakeClient()
        self.assertTrue(hub.add("news", a))
        self.assertFalse(hub.add("news", b))
        self.assertFalse(hub.remove("news", a))
        self.assertTrue(hub.remove("news", b))
        self.assertEqual(hub.channels(), [])

    def test_removeUnknown(self) -> None:
        hub = Hub()
        a, b = FakeClient(), FakeClient()
        self.assertFalse(hub.remove("news", a))
        hub.add("news", a)
        self.assertFalse(hub.remove("news", b))
        self.assertFalse(hub.remove("other", a))
        self.assertEqual(hub.subscribers("news"), [a])

    def test_addTwice(self) -> None:
        """
        A client counts once per channel, however often it is added.
        """
        hub = Hub()
        a = FakeClient()
        hub.add("news", a)
        self.assertFalse(hub.add("news", a))
        self.assertEqual(hub.numSubscriptions(), 1)
        self.assertTrue(hub.remove("news", a))

    def test_counts(self) -> None:
        hub = Hub()
        a, b = FakeClient(), FakeClient()
        hub.add("news", a)
        hub.add("news", b)
        hub.add("chat", a)
        self.assertEqual(sorted(hub.channels()), ["chat", "news"])
        self.assertEqual(hub.numSubscriptions(), 3)
        self.assertEqual(set(hub.subscribers("news")), {a, b})
        self.assertEqual(hub.subscribers("nothing"), [])


class BroadcastTests(SynchronousTestCase):
    def test_everySubscriber(self) -> None:
        """
        A push reaches every subscriber of its channel, and only them.
        """
        hub = Hub()
        subscribers = [FakeClient() for _ in range(3)]
        other = FakeClient()
        for client in subscribers:
            hub.add("news", client)
        hub.add("chat", other)
        self.assertEqual(hub.broadcast("news", PUSH), 3)
        for client in subscribers:
            self.assertEqual(len(client.delivered), 1)
            frame, size = client.delivered[0]
            self.assertEqual(size, len(frame))
            self.assertEqual(decodeReply("json", frame), PUSH)
        self.assertEqual(other.delivered, [])

    def test_encodedOncePerProtocol(self) -> None:
        """
        Every subscriber of a protocol gets the very same bytes object: the push was encoded once for all of them,
        and once more for the other protocol.
        """
        hub = Hub()
        jsonClients = [FakeClient("json") for _ in range(3)]
        protobufClients = [FakeClient("protobuf") for _ in range(3)]
        for client in jsonClients + protobufClients:
            hub.add("news", client)
        self.assertEqual(hub.broadcast("news", PUSH), 6)
        jsonFrame = jsonClients[0].delivered[0][0]
        protobufFrame = protobufClients[0].delivered[0][0]
        for client in jsonClients:
            self.assertIs(client.delivered[0][0], jsonFrame)
        for client in protobufClients:
            self.assertIs(client.delivered[0][0], protobufFrame)
        self.assertEqual(decodeReply("json", jsonFrame), PUSH)
        self.assertEqual(decodeReply("protobuf", protobufFrame), PUSH)
        self.assertNotEqual(jsonFrame, protobufFrame)

    def test_noSubscribers(self) -> None:
        self.assertEqual(Hub().broadcast("news", PUSH), 0)

    def test_binaryToJSONClient(self) -> None:
        """
        Data that is not JSON cannot reach a JSON client: it is disconnected with 3506 "inappropriate protocol"
        and the Protobuf subscribers still get the publication.
        """
        hub = Hub()
        jsonClient, protobufClient = FakeClient("json"), FakeClient("protobuf")
        hub.add("bin", jsonClient)
        hub.add("bin", protobufClient)
        push = {"push": {"channel": "bin", "pub": {"data": b"\xff\x00binary"}}}
        self.assertEqual(hub.broadcast("bin", push), 1)
        self.assertEqual(jsonClient.delivered, [])
        self.assertEqual(jsonClient.disconnects, [(3506, "inappropriate protocol")])
        self.assertEqual(decodeReply("protobuf", protobufClient.delivered[0][0]), push)

    def test_subscriberLeavingDuringBroadcast(self) -> None:
        """
        A subscriber disconnected by the fan-out (and so removed from the hub) does not break the loop.
        """
        hub = Hub()

        class Leaving(FakeClient):
            def disconnect(self, code: int, reason: str) -> None:
                super().disconnect(code, reason)
                hub.remove("bin", self)

        leaving, staying = Leaving("json"), FakeClient("protobuf")
        hub.add("bin", leaving)
        hub.add("bin", staying)
        hub.broadcast("bin", {"push": {"channel": "bin", "pub": {"data": b"\xff"}}})
        self.assertEqual(len(staying.delivered), 1)
        self.assertEqual(hub.subscribers("bin"), [staying])
