# -*- test-case-name: tests.test_interfaces,tests.client.test_client -*-
"""
In-memory fakes of httpstream's seams, for httpstream's own tests and for programs that embed it.

Everything here is deterministic: pass a L{twisted.internet.task.Clock} as the reactor (the client and its writer
only call C{callLater} and C{seconds}), move time with C{clock.advance}, and look at what a L{FakeTransport} was
asked to write::

    clock = Clock()
    node = makeNode({"allow_anonymous_connect_without_token": True}, clock)
    transport = FakeTransport("json")
    client = node.newClient(transport)
    client.handleData(encodeCommands("json", [{"id": 1, "connect": {}}]))
    clock.advance(0)  # the writer writes once per reactor turn
    assert transport.replies()[0]["connect"]["client"] == client.clientID

Commands and replies are the protocol's plain dicts (L{httpstream.protocol.codec}), the same for both codecs:
C{bytes} fields are raw JSON bytes for JSON and whatever was sent for Protobuf, zero values are left out.
L{FakePolicy} (L{httpstream.testing.policy}) is the policy's fake; L{MemoryServer} drives the whole HTTP server.

May import: anything of httpstream (it is the top layer, with tap, cli and service); nothing imports it but tests.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import orjson
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from zope.interface import implementer

from httpstream.client.client import Client
from httpstream.client.factory import ClientFactory
from httpstream.config import Config, config_from_dict
from httpstream.values import ClientInfo, HistoryResult, Publication, StreamPosition
from httpstream.engines.memory import MemoryBroker
from httpstream.interfaces import (
    IBroker,
    IClient,
    IClientPolicy,
    ISessionRegistry,
    ITransport,
    JoinLeaveHandler,
    PublicationHandler,
    ReconnectHandler,
)
from httpstream.memoryserver import MemoryServer
from httpstream.testing.policy import FakePolicy
from httpstream.node.node import Node
from httpstream.protocol import client_pb2, varint_delimit
from httpstream.protocol.codec import _pb_message, _raw_json
from httpstream.protocol.schema import json_reply

__all__ = [
    "FakeClient",
    "FakePolicy",
    "FakeTransport",
    "ManualBroker",
    "MemoryServer",
    "connectClient",
    "decodeReply",
    "encodeCommands",
    "makeNode",
]

_PROTOCOLS = ("json", "protobuf")


def encodeCommands(protocol: str, commands: Sequence[Mapping[str, Any]]) -> bytes:
    """
    Encode commands as one frame, the way an SDK sends them: JSON lines joined by C{\\n}, or varint-delimited
    Protobuf messages. C{bytes} fields (C{data}) hold raw JSON for JSON.
    """
    _checkProtocol(protocol)
    if protocol == "json":
        return b"\n".join(orjson.dumps(dict(command), default=_raw_json) for command in commands)
    return varint_delimit(client_pb2.Command(**command).SerializeToString() for command in commands)


def decodeReply(protocol: str, message: bytes) -> dict[str, Any]:
    """
    Decode one unframed Reply, as written to L{ITransport.writeMessages}, into the protocol's dict form.

    Both codecs give the same dict for the same reply, so a test can run on either: a server ping is C{{}}, a
    result with no fields C{{"id": 3, "publish": {}}}, a C{data} field the compact JSON bytes.
    """
    _checkProtocol(protocol)
    if protocol == "json":
        return json_reply(message)
    return _pb_message(client_pb2.Reply.FromString(message))


def _checkProtocol(protocol: str) -> None:
    if protocol not in _PROTOCOLS:
        raise ValueError(f"protocol must be 'json' or 'protobuf', not {protocol!r}")


@implementer(ITransport)
class FakeTransport:
    """
    An L{ITransport} that records what the client hands it.

    It holds the transport to its contract: a write after L{close}, or a second L{close}, raises AssertionError.

    @ivar batches: every L{writeMessages} call's messages, one list per call (one chunk on a real wire); a
        L{writeMessage} is a batch of one.
    @ivar closes: the C{(code, reason)} of the L{close} call (at most one).
    @ivar producer: the producer registered by the client (its writer), or None.
    """

    def __init__(
        self,
        protocol: str = "json",
        emulated: bool = True,
        pushDisconnect: bool = True,
        name: str = "http_stream",
        requestHeaders: Optional[Mapping[str, str]] = None,
        unidirectional: bool = False,
    ) -> None:
        """
        The defaults describe an http_stream connection; a WebSocket is C{emulated=False, pushDisconnect=False,
        name="websocket"}, a unidirectional one C{emulated=False, unidirectional=True, name="uni_sse"} (say).
        C{requestHeaders} stands for the headers of the HTTP request that opened it.
        """
        _checkProtocol(protocol)
        self.protocol = protocol
        self.requestHeaders = requestHeaders
        self.emulated = emulated
        self.pushDisconnect = pushDisconnect
        self.unidirectional = unidirectional
        self.name = name
        self.batches: list[list[bytes]] = []
        self.closes: list[tuple[int, str]] = []
        self.producer: Optional[IPushProducer] = None

    # ITransport

    def writeMessages(self, messages: Sequence[bytes]) -> None:
        if self.closes:
            raise AssertionError(f"writeMessages after close{self.closes[0]!r}: {list(messages)!r}")
        self.batches.append(list(messages))

    def writeMessage(self, message: bytes) -> None:
        self.writeMessages([message])

    def close(self, code: int, reason: str) -> None:
        if self.closes:
            raise AssertionError(f"close({code}, {reason!r}) after close{self.closes[0]!r}")
        self.closes.append((code, reason))

    def registerProducer(self, producer: Any) -> None:
        self.producer = producer

    # What tests look at

    @property
    def closed(self) -> Optional[tuple[int, str]]:
        """The C{(code, reason)} the transport was closed with, or None while open."""
        return self.closes[0] if self.closes else None

    @property
    def messages(self) -> list[bytes]:
        """Every message written, in order, whatever batch it came in."""
        return [message for batch in self.batches for message in batch]

    def replies(self) -> list[dict[str, Any]]:
        """Every message written, decoded with L{decodeReply}."""
        return [decodeReply(self.protocol, message) for message in self.messages]

    def clear(self) -> None:
        """Forget what was written so far (a test's next step starts from nothing)."""
        del self.batches[:]

    def pause(self) -> None:
        """Act as a peer that stopped reading: pause the registered producer."""
        assert self.producer is not None, "no producer registered"
        self.producer.pauseProducing()

    def resume(self) -> None:
        """Act as a peer that reads again: resume the registered producer."""
        assert self.producer is not None, "no producer registered"
        self.producer.resumeProducing()


@implementer(IClient)
class FakeClient:
    """
    An L{IClient} that records what it is given: a stand-in where the protocol state machine does not matter
    (the hub's fan-out, a session registry, an emulation endpoint).

    @ivar data: every frame passed to L{handleData}.
    @ivar connects: every request passed to L{connect}.
    @ivar delivered: every C{(frame, size)} queued by L{deliverPublication} and L{deliverJoinLeave}.
    @ivar passed: the frames of every publication its tags filter excluded (L{passPublication}).
    @ivar disconnects: every C{(code, reason)} passed to L{disconnect}.
    @ivar positionChecks: the channels of every L{checkPositions} call.
    """

    _count = 0

    def __init__(self, protocol: str = "json", user: str = "", clientID: str = "", sessionID: str = "",
                 unidirectional: bool = False) -> None:
        _checkProtocol(protocol)
        FakeClient._count += 1
        self.clientID = clientID or f"fake-client-{FakeClient._count}"
        self.sessionID = sessionID
        self.user = user
        self.protocol = protocol
        self.unidirectional = unidirectional
        self.connects: list[dict[str, Any]] = []
        self.closed = False
        self.data: list[bytes] = []
        self.delivered: list[tuple[bytes, int]] = []
        self.passed: list[Any] = []
        self.disconnects: list[tuple[int, str]] = []
        self.positionChecks: list[list[str]] = []

    def handleData(self, data: bytes) -> Deferred[None]:
        self.data.append(data)
        return succeed(None)

    def connect(self, request: dict[str, Any]) -> Deferred[None]:
        self.connects.append(request)
        return succeed(None)

    def deliverPublication(self, frames: Any) -> None:
        frame = frames.frame(self.protocol, "plain", self.unidirectional)
        self.delivered.append((frame, len(frame)))

    def passPublication(self, frames: Any) -> None:
        self.passed.append(frames)

    def deliverJoinLeave(self, channel: str, frame: bytes) -> None:
        self.delivered.append((frame, len(frame)))

    def disconnect(self, code: int, reason: str) -> None:
        self.disconnects.append((code, reason))
        self.closed = True

    def transportClosed(self) -> None:
        self.closed = True

    def checkPositions(self, channels: Sequence[str]) -> None:
        self.positionChecks.append(list(channels))


@implementer(IBroker)
class ManualBroker:
    """
    An L{IBroker} whose operations wait until the test completes them: for the states a real network broker
    (Redis) has and the L{MemoryBroker} never shows, such as a subscribe in flight.

    Each call is recorded in L{pending} as C{(operation, channel, deferred)}; L{complete} carries out the oldest on
    an inner L{MemoryBroker} (so publications then reach subscribed channels, and history is kept) and fires its
    Deferred with the inner result, L{fail} fails it instead.
    """

    def __init__(self, clock: Optional[IReactorTime] = None) -> None:
        """@param clock: the time the inner L{MemoryBroker}'s history TTLs follow (None: C{time.time})."""
        self._memory = MemoryBroker(clock)
        self._reconnectHandler: Optional[ReconnectHandler] = None
        self.pending: list[tuple[str, str, Deferred[Any]]] = []
        self._calls: list[Callable[[], Deferred[Any]]] = []

    @property
    def channels(self) -> set[str]:
        """The channels subscribed so far (completed subscribes only)."""
        return self._memory.channels

    def setHandler(self, handler: PublicationHandler) -> None:
        self._memory.setHandler(handler)

    def setJoinLeaveHandler(self, handler: JoinLeaveHandler) -> None:
        self._memory.setJoinLeaveHandler(handler)

    def setReconnectHandler(self, handler: ReconnectHandler) -> None:
        self._reconnectHandler = handler

    def reconnect(self, channels: Sequence[str]) -> None:
        """
        Act as a networked broker whose PUB/SUB connection came back: tell the reconnect handler that
        publications of C{channels} may have been lost.
        """
        if self._reconnectHandler is not None:
            self._reconnectHandler(list(channels))

    def publishJoinLeave(self, channel: str, info: ClientInfo, join: bool) -> Deferred[None]:
        # Not held: joins and leaves are fire-and-forget for the node.
        return self._memory.publishJoinLeave(channel, info, join)

    def subscribe(self, channel: str) -> Deferred[None]:
        return self._wait("subscribe", channel, self._memory.subscribe, channel)

    def unsubscribe(self, channel: str) -> Deferred[None]:
        return self._wait("unsubscribe", channel, self._memory.unsubscribe, channel)

    def publish(
        self,
        channel: str,
        publication: Publication,
        historySize: int = 0,
        historyTTL: float = 0,
        historyMetaTTL: float = 0,
        idempotencyKey: str = "",
        idempotentResultTTL: float = 0,
    ) -> Deferred[Optional[StreamPosition]]:
        return self._wait(
            "publish", channel, self._memory.publish, channel, publication, historySize, historyTTL, historyMetaTTL,
            idempotencyKey, idempotentResultTTL,
        )

    def history(
        self,
        channel: str,
        since: Optional[StreamPosition] = None,
        limit: int = 0,
        reverse: bool = False,
        metaTTL: float = 0,
    ) -> Deferred[HistoryResult]:
        return self._wait("history", channel, self._memory.history, channel, since, limit, reverse, metaTTL)

    def removeHistory(self, channel: str) -> Deferred[None]:
        return self._wait("removeHistory", channel, self._memory.removeHistory, channel)

    def _wait(self, operation: str, channel: str, call: Callable[..., Deferred[Any]], *args: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.pending.append((operation, channel, d))
        self._calls.append(lambda: call(*args))
        return d

    def complete(self) -> None:
        """Carry out the oldest pending operation and fire its Deferred with its result."""
        _, _, d = self.pending.pop(0)
        self._calls.pop(0)().chainDeferred(d)

    def completeAll(self) -> None:
        """Complete every pending operation, in order (including those completing adds)."""
        while self.pending:
            self.complete()

    def fail(self, reason: Union[Exception, Failure, None] = None) -> None:
        """Fail the oldest pending operation (a broker that lost its connection)."""
        _, _, d = self.pending.pop(0)
        self._calls.pop(0)
        d.errback(reason if reason is not None else ConnectionError("broker unavailable"))


def makeNode(
    settings: Union[Mapping[str, Any], Config, None] = None,
    clock: Optional[IReactorTime] = None,
    broker: Optional[IBroker] = None,
    registry: Optional[ISessionRegistry] = None,
    nodeID: Optional[str] = None,
    seed: int = 0,
    policy: Optional[IClientPolicy] = None,
) -> Node:
    """
    A L{Node} for tests: the config from a dict of Centrifugo keys (unknown keys are an error here, not a warning:
    in a test they are typos), a seeded random source so that ping times repeat.

    @param clock: the reactor's time; a new L{Clock} when not given (reach it as C{node.reactor}).
    """
    if isinstance(settings, Config):
        config = settings
    else:
        config, warnings = config_from_dict({"name": "test", **(settings or {})})
        if warnings:
            raise ValueError("; ".join(warnings))
    if clock is None:
        clock = Clock()
    return Node(config, clock, broker=broker, registry=registry, rng=random.Random(seed), nodeID=nodeID,
                clientFactory=ClientFactory(clock), policy=policy)


def connectClient(
    node: Node,
    transport: Optional[FakeTransport] = None,
    token: str = "",
    commandID: int = 1,
) -> tuple[Client, FakeTransport]:
    """
    Open a connection on C{node} and send its connect command (with C{token} when given).

    The connect reply is written on the next reactor turn (advance the clock by 0 to see it).
    """
    if transport is None:
        transport = FakeTransport()
    client = node.newClient(transport)
    assert isinstance(client, Client)
    request: dict[str, Any] = {"token": token} if token else {}
    client.handleData(encodeCommands(transport.protocol, [{"id": commandID, "connect": request}]))
    return client, transport
