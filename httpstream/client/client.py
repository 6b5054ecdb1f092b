# -*- test-case-name: tests.client.test_client,tests.client.test_client_connect,tests.client.test_client_channels -*-
"""
One connection's protocol state machine (Centrifugo's ``client.go``), the same for every transport.

Commands arrive as encoded frames (an http_stream body, an emulation payload, a WebSocket message) and are run in
order, one frame after the other even when a command waits on the engine. Replies and pushes are encoded with the
connection's codec and queued on its L{Writer}; the transport only frames them.

Every decision (who connects, who subscribes, publishes, what an RPC answers) comes from the node's policy
(L{IClientPolicy}); the channel commands are in L{httpstream.client.commands}, the subscriptions this client holds
in L{httpstream.client.subscriptions}.
"""

from __future__ import annotations

import random
import uuid
from functools import partial
from types import MappingProxyType
from typing import Any, Callable, Mapping, Optional, Sequence

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from zope.interface import implementer

from httpstream.client.commands import COMMANDS, ChannelCommands
from httpstream.client.expiry import Expiry
from httpstream.client.heartbeat import Heartbeat
from httpstream.client.host import ClientHost
from httpstream.client.inbound import BAD_FRAME, MAX_PENDING_FRAMES, CommandQueue, Result
from httpstream.client.mapflow import MapFlows
from httpstream.client.subscription import Subscription
from httpstream.client.subscriptions import Subscriptions
from httpstream.client.sweep import Sweep
from httpstream.client.writer import Flusher, Writer
from httpstream.decisions import ConnectDecision, ConnectRequest, Connection, GrantedSubscription, Refused
from httpstream.interfaces import IClient, IClientPolicy, ITransport
from httpstream.logs import Logger
from httpstream.protocol import EncodeError, codecFor, codes
from httpstream.values import ClientInfo

__all__ = ["MAX_PENDING_FRAMES", "Client"]

_CONNECTING, _CONNECTED, _CLOSED = "connecting", "connected", "closed"

# What a connection without emulated headers shares with every other one.
_NO_HEADERS: Mapping[str, str] = MappingProxyType({})


@implementer(IClient)
class Client:
    """
    A connection between one SDK client and this node.

    @ivar subs: the subscriptions it holds (and those being made), by channel.
    @ivar sweepAt: the deadline of its own timer on the node's L{Sweep}: staleness before connect, the presence
        refresh after.
    """

    # A node holds tens of thousands of these: no per-instance dict, and nothing made before it is needed.
    __slots__ = (
        "node", "policy", "transport", "protocol", "_codec", "_reactor", "_config", "clientID", "sessionID",
        "unidirectional", "user", "connInfo", "meta", "subs", "maps", "_commands", "_connection", "_emulatedHeaders",
        "_state", "_connectTried", "_expiry", "_inbound", "_heartbeat", "writer", "_sweep", "sweepAt", "closed",
        "deliverPublication",
    )

    log = Logger()

    # IClient.deliverPublication: the subscriptions' own method, bound per client (see __init__).
    deliverPublication: Callable[[Any], None]

    def __init__(
        self,
        node: ClientHost,
        transport: ITransport,
        reactor: IReactorTime,
        rng: Optional[random.Random] = None,
        flusher: Optional[Flusher] = None,
        sweep: Optional[Sweep] = None,
    ) -> None:
        self.node = node
        self.policy: IClientPolicy = node.policy
        self.transport = transport
        self.protocol: str = transport.protocol
        self._codec = codecFor(transport.protocol)
        self._reactor = reactor
        self._config = node.config
        self.clientID = str(uuid.uuid4())
        self.sessionID = str(uuid.uuid4()) if transport.emulated else ""
        # The client never sends a command: its connect request comes through connect(), and it gets bare pushes.
        self.unidirectional: bool = transport.unidirectional
        self.user = ""
        self.connInfo: Optional[bytes] = None
        self.meta: Optional[bytes] = None
        self.subs = Subscriptions(self, reactor, self._config)
        self.maps = MapFlows(self)
        # The node calls it once per subscriber per publication: bound straight to the subscriptions, a call less
        # on every delivery than a method of the client's that hands it on.
        self.deliverPublication = self.subs.deliverPublication
        self._commands = ChannelCommands(self)
        self._connection: Optional[Connection] = None
        self._emulatedHeaders = _NO_HEADERS
        self._state = _CONNECTING
        # True once the connection has ended (the state is _CLOSED): read on every delivery, so a plain attribute.
        self.closed = False
        self._connectTried = False
        self._sweep = sweep = sweep if sweep is not None else Sweep(reactor)
        self.sweepAt = 0.0
        self._expiry = Expiry(self, sweep, self._config.client_expired_close_delay)
        self._inbound = CommandQueue(self, self._codec, node.metrics, transport.name, self._config.client_concurrency)
        # A unidirectional client cannot answer pings: they only tell it the connection is alive.
        self._heartbeat = Heartbeat(sweep, rng or random.Random(), self._config.ping_interval,
                                    0 if self.unidirectional else self._config.pong_timeout, self)
        self.writer = Writer(
            reactor, transport, self._config.client_queue_max_size, self._slow, flusher, self._writeFailed,
            node.metrics.sent(transport.name),  # counted per message: bound once
        )
        transport.registerProducer(self.writer)
        # Until it connects, its timer is the stale deadline.
        sweep.scheduleIn(self, self._config.client_stale_close_delay)

    @property
    def connected(self) -> bool:
        return self._state == _CONNECTED

    @property
    def channels(self) -> set[str]:
        """The channels this client is subscribed to (or subscribing)."""
        return set(self.subs)

    def connection(self) -> Connection:
        """This connection as its policy sees it (a new value once what it says has changed)."""
        if self._connection is None:
            self._connection = Connection(
                clientID=self.clientID, transport=self.transport.name, protocol=self.protocol, user=self.user,
                meta=self.meta, requestHeaders=self.transport.requestHeaders, emulatedHeaders=self._emulatedHeaders,
            )
        return self._connection

    def seconds(self) -> float:
        return self._reactor.seconds()

    def handleData(self, data: bytes) -> Deferred[None]:
        return self._inbound.handleData(data)

    def connect(self, request: dict[str, Any]) -> Deferred[None]:
        # As centrifuge's unidirectionalConnect: a connect command with id 1, whose result goes out as a push.
        return self._inbound.handleCommands([{"id": 1, "connect": request}])

    def dispatch(self, command: dict[str, Any]) -> Result:
        """Run one decoded command (the L{CommandQueue} calls it, in order)."""
        if command is BAD_FRAME:
            self.close(codes.DISCONNECT_BAD_REQUEST)
            return None
        commandID = command.get("id", 0)
        if self._state != _CONNECTED:
            if "connect" in command and commandID > 0 and not self._connectTried and not self.closed:
                self._connectTried = True
                return self._inbound.run("connect", self._connect, commandID, command["connect"])
            # Anything before a successful connect, a second connect, or a connect taken as a pong.
            self.close(codes.DISCONNECT_BAD_REQUEST)
            return None
        if commandID == 0 and "send" not in command:
            if not self._heartbeat.pong():
                # Centrifugo treats a pong nobody asked for as a protocol violation.
                self.close(codes.DISCONNECT_BAD_REQUEST)
            return None
        for method, handler in COMMANDS:
            if method in command:
                return self._inbound.run(method, partial(handler, self._commands), commandID, command[method])
        self.close(codes.DISCONNECT_BAD_REQUEST)
        return None

    # Connection commands

    def _connect(self, commandID: int, request: dict[str, Any]) -> Result:
        headers = request.get("headers")
        if isinstance(headers, dict):
            self._emulatedHeaders = headers
            self._connection = None
        ask = ConnectRequest(
            token=request.get("token", ""), data=request.get("data"), name=request.get("name", ""),
            version=request.get("version", ""), channels=tuple(request.get("subs") or {}),
        )
        return self.policy.connecting(self.connection(), ask).addCallbacks(
            lambda decision: self._connected(commandID, request, decision),
            lambda failure: self.commandFailed(commandID, failure, "connect"),
        )

    def _connected(self, commandID: int, request: dict[str, Any], decision: ConnectDecision) -> Result:
        self.user, self.connInfo, self.meta = decision.user, decision.info, decision.meta
        self._connection = None  # the user is known now
        self._state = _CONNECTED
        self._sweep.cancel(self)
        self.node.clientConnected(self)
        result: dict[str, Any] = {"client": self.clientID, "version": self.node.version}
        if decision.data is not None:
            result["data"] = decision.data
        self._expiry.start(decision.expireAt, decision.serverRefresh)
        if decision.expireAt and not decision.serverRefresh:
            result["expires"] = True
            result["ttl"] = self._expiry.ttl()
        config = self._config
        if config.ping_interval > 0:
            result["ping"] = int(config.ping_interval)
            if config.pong_timeout > 0 and not self.unidirectional:
                result["pong"] = True
        if self.transport.emulated:
            result["session"] = self.sessionID
            result["node"] = self.node.id
        elif self.unidirectional:
            # Centrifuge names a unidirectional session too; it is never registered, so /emulation cannot reach it.
            result["session"] = str(uuid.uuid4())
        recover = request.get("subs") or {}
        subscribed: dict[str, dict[str, Any]] = {}
        d: Deferred[Any] = succeed(None)
        for channel, granted in decision.subscriptions.items():
            # What the SDK sends for a server-side sub it knows: where to recover it from.
            wanted = recover.get(channel) or {}
            d.addCallback(self._subscribeGranted, channel, wanted, granted or GrantedSubscription(), subscribed)

        def reply(_: object) -> None:
            if self.closed:
                return
            if subscribed:
                result["subs"] = subscribed
            if self.unidirectional:
                self.push({"connect": result})
            else:
                self.send({"id": commandID, "connect": result})
            for channel in subscribed:
                self.subs.joined(channel)
            self._heartbeat.start()
            self._schedulePresence()
            self.log.debug(
                "client {client} connected over {transport} as {user!r}",
                client=self.clientID, transport=self.transport.name, user=self.user,
            )

        def failed(failure: Failure) -> None:
            # Connected already, without a reply: Centrifugo ends such a connection (3004, the client reconnects).
            if isinstance(failure.value, Refused) and failure.value.disconnect is not None:
                self.close(failure.value.disconnect)
                return
            if not isinstance(failure.value, Refused):
                self.log.failure("client {client}: server-side subscribe failed", failure, client=self.clientID)
            self.close(codes.DISCONNECT_SERVER_ERROR)

        return d.addCallbacks(reply, failed)

    def commandFailed(self, commandID: int, failure: Failure, method: str) -> None:
        """A command's Deferred failed: a refusal is its error reply or disconnect; anything else is error 100."""
        if isinstance(failure.value, Refused):
            self.refused(commandID, failure.value)
            return
        self.log.failure("client {client}: {method} failed", failure, client=self.clientID, method=method)
        self.replyError(commandID, codes.ERROR_INTERNAL)

    def refused(self, commandID: int, refusal: Refused) -> None:
        """The policy said no: the command's error reply, or the end of the connection."""
        if refusal.disconnect is not None:
            self.close(refusal.disconnect)
        elif refusal.error is not None:
            self.replyError(commandID, refusal.error)

    def _subscribeGranted(self, _: object, channel: str, recovery: dict[str, Any], granted: GrantedSubscription,
                          subscribed: dict[str, dict[str, Any]]) -> Deferred[None]:
        return self.subs.subscribe(channel, recovery, granted).addCallback(
            lambda result: subscribed.__setitem__(channel, result)
        )

    def logFailure(self, what: str, failure: Failure) -> None:
        self.log.failure("client {client}: {what} failed", failure, client=self.clientID, what=what)

    def clientInfo(self, sub: Optional[Subscription] = None) -> ClientInfo:
        """This connection's L{ClientInfo}, with C{sub}'s channel info when given."""
        return ClientInfo(self.user, self.clientID, self.connInfo, sub.chanInfo if sub is not None else None)

    # What the server API does to this connection

    def serverSubscribe(self, channel: str, request: dict[str, Any]) -> Deferred[None]:
        """Subscribe server-side and tell the client with a C{subscribe} push (its SDK then emits events)."""
        return self.subs.serverSubscribe(channel, request)

    def serverUnsubscribe(self, channel: str, code: int, reason: str) -> None:
        """End a subscription from the server side: an Unsubscribe push (client-side subs resubscribe >= 2500)."""
        self.subs.serverUnsubscribe(channel, code, reason)

    def refreshCommand(self, commandID: int, request: dict[str, Any]) -> Result:
        return self._expiry.refreshCommand(commandID, request)

    def serverRefresh(self, expired: bool, expireAt: float, info: Optional[bytes]) -> None:
        """The API's refresh: end an expired connection (3005), or move its expiry and push C{refresh}."""
        self._expiry.apiRefresh(expired, expireAt, info)

    # Timers: ping/pong, presence, staleness (on the node's sweep)

    def sendPing(self) -> None:
        self.send({})

    def pongMissed(self) -> None:
        self.close(codes.DISCONNECT_NO_PONG)

    def swept(self) -> None:
        if self._state == _CONNECTING:
            self._stale()
        elif self._state == _CONNECTED:
            self._updatePresence()

    def _schedulePresence(self) -> None:
        if not self.closed:
            self._sweep.scheduleIn(self, self._config.client_presence_update_interval)

    def _updatePresence(self) -> None:
        """
        Centrifugo's presence timer: refresh presence entries, end expired subscriptions and those whose
        position was lost.
        """
        if self.closed:
            return
        for channel, sub in list(self.subs.items()):
            if sub.presence:
                self.node.presence.add(channel, self.clientID, self.clientInfo(sub)).addErrback(
                    lambda f: self.log.failure("presence update", f)
                )
        self.maps.tick()
        self.subs.checkExpired()
        self.subs.checkPositions()
        self._schedulePresence()

    def _stale(self) -> None:
        if not self.connected:
            self.close(codes.DISCONNECT_STALE)

    def queue(self, message: bytes, force: bool = False) -> None:
        """Queue one encoded message on the writer, counting it."""
        self.writer.enqueue(message, force)  # which counts it in the transport's metrics

    def _slow(self) -> None:
        self.node.metrics.overflows.inc()
        # The one trace an operator gets of a client cut for not reading (its SDK reconnects, often at once).
        self.log.info(
            "client {client} of user {user!r} over {transport} disconnected: 3008 slow (outgoing queue past "
            "client_queue_max_size, {limit} bytes; peer {state})",
            client=self.clientID, user=self.user, transport=self.transport.name,
            limit=self._config.client_queue_max_size,
            state="not reading" if self.writer.paused else "reading too slowly",
        )
        # A burst that overflowed a reading client still reaches it, with the 3008 push after it, so the SDK
        # learns the code; a peer that stopped reading (paused writer) would never read them: just cut it off.
        self.close(codes.DISCONNECT_SLOW, flush=not self.writer.paused)

    # Outbound

    def send(self, reply: dict[str, Any]) -> None:
        """Encode and queue a reply or push (nothing once closed; one the codec refuses ends the connection)."""
        if self.closed:
            return
        try:
            message = self._codec.encode_reply(reply)
        except EncodeError:
            self.close(codes.DISCONNECT_INAPPROPRIATE_PROTOCOL)
            return
        self.queue(message)

    def push(self, push: dict[str, Any]) -> None:
        """Encode and queue a push, as the transport carries it (bare on a unidirectional one)."""
        if self.closed:
            return
        try:
            message = self._codec.encode_push(push, self.unidirectional)
        except EncodeError:
            self.close(codes.DISCONNECT_INAPPROPRIATE_PROTOCOL)
            return
        self.queue(message)

    def replyError(self, commandID: int, error: codes.Error) -> None:
        self._inbound.errorReplied(commandID)
        if self.unidirectional:
            # No replies on a unidirectional connection: its failed connect ends it.
            self.close(codes.unidirectionalDisconnect(error))
            return
        self.send({"id": commandID, "error": error.toDict()})

    # The end

    def passPublication(self, frames: Any) -> None:
        self.subs.passPublication(frames)

    def deliverJoinLeave(self, channel: str, frame: bytes) -> None:
        self.subs.deliverJoinLeave(channel, frame)

    def checkPositions(self, channels: Sequence[str]) -> None:
        self.subs.checkPositions(list(channels))

    def disconnect(self, code: int, reason: str) -> None:
        self.close(codes.Disconnect(code, reason))

    def _writeFailed(self, failure: Failure) -> None:
        # Once per connection (the writer stops): the batch may be partly lost, so the client must reconnect.
        self.log.failure("client {client}: writing to its {transport} failed; closing the connection (3009)", failure,
                         client=self.clientID, transport=self.transport.name)
        self.close(codes.DISCONNECT_WRITE_ERROR, flush=False)

    def close(self, disconnect: codes.Disconnect, flush: bool = True) -> None:
        """End the connection with C{disconnect}, pushed first (with what is queued) when C{flush}."""
        if self.closed:
            return
        self._state = _CLOSED
        self.closed = True
        try:
            self.node.metrics.disconnects.labels(str(disconnect.code)).inc()
            if flush and self.transport.pushDisconnect and disconnect.code != codes.DISCONNECT_CONNECTION_CLOSED.code:
                # Past the queue limit on purpose: the client must learn why it was cut off.
                self.queue(self._codec.encode_disconnect(disconnect, self.unidirectional), force=True)
            if flush:
                self.writer.flush(final=True)
            self.writer.stop()
            self._cleanup()
        finally:
            # Whatever happened above, the connection must not stay open behind a client the node forgot.
            self.log.debug("client {client} disconnected: {code} {reason}", client=self.clientID,
                           code=disconnect.code, reason=disconnect.reason)
            try:
                self.transport.close(disconnect.code, disconnect.reason)
            except Exception:
                self.log.failure("client {client}: closing its {transport} failed", client=self.clientID,
                                 transport=self.transport.name)

    def transportClosed(self) -> None:
        if self.closed:
            return
        self._state = _CLOSED
        self.closed = True
        self.writer.stop()
        self._cleanup()
        self.log.debug("client {client} went away (connection lost)", client=self.clientID)

    def _cleanup(self) -> None:
        self._heartbeat.stop()
        self._expiry.stop()
        self._sweep.cancel(self)
        self._inbound.clear()
        self.subs.leaveAll()
        self.node.clientClosed(self)
