# -*- test-case-name: tests.cluster.test_control -*-
"""
What the control plane between nodes (L{httpstream.cluster.control}) travels through: its messages, and the PUB/SUB that
carries them, as an interface with two providers: L{ShardPubSub} on the Redis engine's own connections, and
L{MemoryBus} between the nodes of one process (tests).

Wire format: one orjson-encoded JSON object per PUB/SUB message, C{bytes} anywhere inside written as
C{{"$b64": "<base64>"}} (so raw-JSON payloads and emulation commands travel unchanged)::

    {"type": "node", "from": A, "node": {"uid", "name", "version", "num_clients", "num_users", "num_channels",
                                         "num_subs", "uptime"}, "proto": 2}          on the control channel
    {"type": "leave", "from": A}                                                     on the control channel
    {"type": "request", "from": A, "id": 7, "op": "emulation", "payload": ...}       on B's node channel
                                                                                     (or the control channel)
    {"type": "reply", "from": B, "id": 7, "code": 0, "result": ...}                  on A's node channel

Control protocol 2 (C{"proto"} in the announcement; a node without it speaks 1, and ignores messages of types it
does not know) adds forwarded emulation requests in batches (L{httpstream.cluster.batches}), sent only to nodes that
announced 2. Their lists are flat, and the data is a base64 string, not a C{{"$b64"}} object (a batch is read
without walking it for those)::

    {"type": "emulation", "from": A, "items": [7, "<session>", "<base64 data>", 8, ...]}  on B's node channel
    {"type": "emulated", "from": B, "items": [7, 0, 8, 2, ...]}                           on A's node channel
                                                                                 (request id, reply code, ...)
"""

from __future__ import annotations

import base64
from typing import Any, Callable, Optional, Protocol, Sequence

import orjson
from twisted.internet.defer import Deferred, fail, gatherResults, succeed
from twisted.internet.interfaces import IReactorTime
from zope.interface import Interface, implementer


class NotConnected(Exception):
    """The PUB/SUB connection is down: a message could not be published."""


# Encoding


def _bytesAsBase64(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$b64": base64.b64encode(value).decode("ascii")}
    raise TypeError(f"cannot encode {type(value).__name__}")


def encodeMessage(message: dict[str, Any]) -> bytes:
    """Encode a control message (bytes anywhere inside as C{{"$b64": ...}}). @raise TypeError: not encodable."""
    return orjson.dumps(message, default=_bytesAsBase64)


def restoreBytes(value: Any) -> Any:
    """A loaded message with its C{{"$b64": ...}} objects back as bytes. @raise ValueError: bad base64."""
    return _restore(value)


def loadMessage(raw: bytes) -> Any:
    """A control message as JSON, its C{{"$b64": ...}} objects left as they are. @raise ValueError: not JSON."""
    return orjson.loads(raw)


def _restore(value: Any) -> Any:
    if type(value) is dict:
        if len(value) == 1 and type(value.get("$b64")) is str:
            return base64.b64decode(value["$b64"])
        return {key: _restore(item) for key, item in value.items()}
    if type(value) is list:
        return [_restore(item) for item in value]
    return value


def decodeMessage(raw: bytes) -> Any:
    """Decode a control message. @raise ValueError: not JSON (or bad base64)."""
    return _restore(orjson.loads(raw))


# PUB/SUB


class IControlPubSub(Interface):
    """The PUB/SUB connection a L{Control} talks through: it stays subscribed across reconnections."""

    def start(
        channels: Sequence[str], onMessage: Callable[[str, bytes], None], onReady: Optional[Callable[[], None]]
    ) -> None:
        """
        Subscribe C{channels} and keep them subscribed: C{onMessage(channel, message)} receives every message,
        C{onReady()} is called each time the subscription is (re)established.
        """

    def publish(channel: str, message: bytes) -> "Deferred[None]":
        """Publish C{message} on C{channel}; the Deferred fails when it could not be sent."""

    def stop() -> "Deferred[None]":
        """Unsubscribe and close the connections."""


class MemoryBus:
    """
    In-memory PUB/SUB between the L{Control}s of one process, standing in for Redis in tests.

    Delivery is synchronous, or on the next turn of C{clock} when one is given.

    @ivar published: every C{(channel, message)} published, in order.
    """

    def __init__(self, clock: Optional[IReactorTime] = None) -> None:
        self._clock = clock
        self._subscribers: dict[str, list[MemoryPubSub]] = {}
        self.published: list[tuple[str, bytes]] = []

    def pubsub(self) -> "MemoryPubSub":
        """A new connection to this bus."""
        return MemoryPubSub(self)

    def _subscribe(self, channel: str, pubsub: "MemoryPubSub") -> None:
        subscribers = self._subscribers.setdefault(channel, [])
        if pubsub not in subscribers:
            subscribers.append(pubsub)

    def _unsubscribe(self, pubsub: "MemoryPubSub") -> None:
        for subscribers in self._subscribers.values():
            if pubsub in subscribers:
                subscribers.remove(pubsub)

    def _publish(self, channel: str, message: bytes) -> None:
        self.published.append((channel, message))
        for pubsub in list(self._subscribers.get(channel, ())):
            if self._clock is None:
                pubsub._deliver(channel, message)
            else:
                self._clock.callLater(0, pubsub._deliver, channel, message)


@implementer(IControlPubSub)
class MemoryPubSub:
    """One connection to a L{MemoryBus}; L{disconnect} and L{reconnect} simulate losing it."""

    def __init__(self, bus: MemoryBus) -> None:
        self._bus = bus
        self._channels: list[str] = []
        self._onMessage: Optional[Callable[[str, bytes], None]] = None
        self._onReady: Optional[Callable[[], None]] = None
        self.connected = False

    def start(
        self,
        channels: Sequence[str],
        onMessage: Callable[[str, bytes], None],
        onReady: Optional[Callable[[], None]] = None,
    ) -> None:
        self._channels = list(channels)
        self._onMessage = onMessage
        self._onReady = onReady
        self.reconnect()

    def publish(self, channel: str, message: bytes) -> Deferred[None]:
        if not self.connected:
            return fail(NotConnected("Not connected"))
        self._bus._publish(channel, message)
        return succeed(None)

    def stop(self) -> Deferred[None]:
        self.disconnect()
        return succeed(None)

    def disconnect(self) -> None:
        """Lose the connection: nothing is sent or received until L{reconnect}."""
        self.connected = False
        self._bus._unsubscribe(self)

    def reconnect(self) -> None:
        """Connect again and re-subscribe."""
        self.connected = True
        for channel in self._channels:
            self._bus._subscribe(channel, self)
        if self._onReady is not None:
            self._onReady()

    def _deliver(self, channel: str, message: bytes) -> None:
        if self.connected and self._onMessage is not None:
            self._onMessage(channel, message)


class Route(Protocol):
    """What L{ShardPubSub} uses of an L{httpstream.engines.redis.routing.IRedisRoute} (imported late: txredisapi)."""

    publishCommand: bytes

    def subscribe(self, channel: bytes, handler: Callable[[bytes, bytes], None]) -> Deferred[None]: ...
    def unsubscribe(self, channel: bytes) -> Deferred[None]: ...
    def execute(self, *args: Any, now: bool = False) -> Deferred[Any]: ...


class Router(Protocol):
    """What L{ShardPubSub} uses of an L{httpstream.engines.redis.routing.IRedisRouter}."""

    def everyRoute(self, name: str) -> Sequence[Route]: ...
    def addReconnectHandler(self, handler: Callable[[list[bytes]], None]) -> None: ...
    def whenReady(self) -> Deferred[None]: ...


@implementer(IControlPubSub)
class ShardPubSub:
    """
    The control plane's PUB/SUB over the Redis engine's own connections (one pair per node and Redis, TLS and ACL
    users included): the router keeps the channels subscribed across reconnections, as it does the broker's.

    With several shards, as Centrifugo: each control channel is subscribed on every shard, and each message is
    published on one of them, the next in turn, or the one after when it fails (a shard that is down leaves the
    control plane working). In a Redis Cluster, a control channel lives on its slot's master.
    """

    def __init__(self, shard: Router) -> None:
        self._router = shard
        self._channels: list[bytes] = []
        self._running = False
        self._turn = 0

    def start(
        self,
        channels: Sequence[str],
        onMessage: Callable[[str, bytes], None],
        onReady: Optional[Callable[[], None]] = None,
    ) -> None:
        self._channels = [channel.encode() for channel in channels]
        self._running = True

        def message(channel: bytes, data: bytes) -> None:
            onMessage(channel.decode("utf-8", "replace"), data)

        def ready(_: object = None) -> None:
            if self._running and onReady is not None:
                onReady()

        def reconnected(channels: list[bytes]) -> None:
            if set(self._channels) & set(channels):
                ready()

        self._router.addReconnectHandler(reconnected)
        calls = [
            route.subscribe(channel, message)
            for channel in self._channels
            for route in self._router.everyRoute(channel.decode())
        ]
        subscribed = gatherResults(calls, consumeErrors=True)
        # Redis down at start: the shard subscribes once it connects (not a reconnection: no handler runs then).
        subscribed.addCallbacks(ready, lambda _: self._router.whenReady().addCallback(ready))

    def publish(self, channel: str, message: bytes) -> Deferred[None]:
        routes = list(self._router.everyRoute(channel))
        self._turn += 1
        first = self._turn % len(routes)
        return self._publish(routes[first:] + routes[:first], channel.encode(), message)

    def _publish(self, routes: list[Route], channel: bytes, message: bytes) -> Deferred[None]:
        route, rest = routes[0], routes[1:]
        # At once: a control message is already its turn's batch (forwarded emulation requests, their answers).
        d = route.execute(route.publishCommand, channel, message, now=True).addCallback(lambda _: None)
        if rest:
            d.addErrback(lambda _: self._publish(rest, channel, message))
        return d

    def stop(self) -> Deferred[None]:
        self._running = False
        calls = [
            route.unsubscribe(channel)
            for channel in self._channels
            for route in self._router.everyRoute(channel.decode())
        ]
        return gatherResults(calls, consumeErrors=True).addCallback(lambda _: None)
