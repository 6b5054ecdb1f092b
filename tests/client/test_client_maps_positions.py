"""
The position check of map subscriptions (L{httpstream.client.mapflow.MapFlows.checkPosition}): against the map's
change stream, on the presence timer and forced when the map broker says its PUB/SUB connection came back (the node
wires L{IMapBroker.setReconnectHandler}); a lost position ends the subscription with 2500 (the SDK subscribes again).
In memory, on a fake clock, on both codecs; tests/engines/test_redis_maps_reconnect.py does it with Redis restarted.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.trial.unittest import SynchronousTestCase

from httpstream.engines.memorymap import MemoryMapBroker
from httpstream.interfaces import ReconnectHandler
from httpstream.policy.recovery import IN_FLIGHT_GRACE
from httpstream.testing import FakeTransport
from tests.client.test_client_maps import MapTestsMixin
from tests.clienthelpers import ChannelHelpers

NAMESPACES = [
    {"name": "pos", "subscription_type": "map", "map": {"mode": "persistent"}},
    {"name": "eph", "subscription_type": "map", "map": {"mode": "ephemeral", "key_ttl": "600s"}},
]
CHECK_DELAY = 10.0


class LossyMapBroker(MemoryMapBroker):
    """A memory map broker whose writes can be lost on their way to this node, and that says so as Redis's does."""

    reconnectHandler: Optional[ReconnectHandler] = None
    deaf = False

    def setReconnectHandler(self, handler: ReconnectHandler) -> None:
        self.reconnectHandler = handler

    def _deliver(self, channel: str, publication: Any, epoch: str) -> None:
        if not self.deaf:
            super()._deliver(channel, publication, epoch)


class MapPositionMixin(ChannelHelpers):
    sub, sync, live, put = MapTestsMixin.sub, MapTestsMixin.sync, MapTestsMixin.live, MapTestsMixin.put

    def setUp(self) -> None:
        super().setUp()
        self.broker = LossyMapBroker(self.clock)
        self.mapNode = self.node(client_insecure=True, namespaces=NAMESPACES, mapBroker=self.broker,
                                 client_channel_position_check_delay=f"{CHECK_DELAY}s")

    def subscribed(self, channel: str) -> tuple[Any, FakeTransport]:
        client, transport = self.client(self.mapNode)
        self.sync(client, transport, channel)
        return client, transport

    def unsubscribes(self, transport: FakeTransport, channel: str) -> list[Any]:
        self.clock.advance(0)
        return [push["unsubscribe"].get("code") for push in self.pushes(transport, "unsubscribe", channel)]

    def missedWrite(self, channel: str, key: str = "missed") -> None:
        self.broker.deaf = True
        self.put(self.mapNode, channel, key)
        self.broker.deaf = False

    def test_theNodeHearsTheMapBrokersReconnects(self) -> None:
        self.assertIsNotNone(self.broker.reconnectHandler)

    def test_forcedCheckAfterAReconnect(self) -> None:
        for channel in ("pos:a", "eph:a"):
            client, transport = self.subscribed(channel)
            self.missedWrite(channel)
            assert self.broker.reconnectHandler is not None
            self.broker.reconnectHandler([channel])
            self.assertEqual(self.unsubscribes(transport, channel), [])  # it may still be on its way
            self.clock.advance(IN_FLIGHT_GRACE)
            self.assertEqual(self.unsubscribes(transport, channel), [2500])
            self.assertNotIn(channel, client.channels)

    def test_forcedCheckNothingMissed(self) -> None:
        client, transport = self.subscribed("pos:a")
        self.put(self.mapNode, "pos:a", "k")
        assert self.broker.reconnectHandler is not None
        self.broker.reconnectHandler(["pos:a", "pos:other"])
        self.clock.advance(IN_FLIGHT_GRACE)
        self.assertEqual(self.unsubscribes(transport, "pos:a"), [])
        self.put(self.mapNode, "pos:a", "k2")
        self.assertEqual([p["key"] for p in self.live(transport, "pos:a")], ["k", "k2"])

    def test_anotherEpochAfterAReconnect(self) -> None:
        """A map whose Redis came back empty: a new epoch, lost at once."""
        client, transport = self.subscribed("pos:a")
        self.successResultOf(self.broker.clear("pos:a"))
        assert self.broker.reconnectHandler is not None
        self.broker.reconnectHandler(["pos:a"])
        self.assertEqual(self.unsubscribes(transport, "pos:a"), [2500])

    def test_dueCheckOnThePresenceTimer(self) -> None:
        """A quiet map's missed last write is found by the checks due every position check delay (two in a row)."""
        client, transport = self.subscribed("pos:a")
        self.missedWrite("pos:a")
        self.tick(60)  # the presence timer (27s) runs the checks due
        self.assertEqual(self.unsubscribes(transport, "pos:a"), [2500])

    def test_dueCheckRightPositionStays(self) -> None:
        client, transport = self.subscribed("pos:a")
        self.put(self.mapNode, "pos:a", "k")
        self.tick(CHECK_DELAY * 5)
        self.assertEqual(self.unsubscribes(transport, "pos:a"), [])
        self.assertIn("pos:a", client.channels)


class JSONMapPositionTests(MapPositionMixin, SynchronousTestCase):
    protocol = "json"


class ProtobufMapPositionTests(MapPositionMixin, SynchronousTestCase):
    protocol = "protobuf"
