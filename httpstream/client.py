# -*- test-case-name: tests.test_client -*-
"""
One connection's protocol state machine (Centrifugo's ``client.go``), the same for every transport.

Commands arrive as encoded frames (an http_stream body, an emulation payload, a WebSocket message) and are run in
order, one frame after the other even when a command waits on the engine. Replies and pushes are encoded with the
connection's codec and queued on its L{Writer}; the transport only frames them.
"""

from __future__ import annotations

import random
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure
from zope.interface import implementer

from httpstream import codes
from httpstream.interfaces import IClient, ITransport
from httpstream.logs import Logger
from httpstream.protocol import DecodeError, EncodeError, codecFor
from httpstream.tokens import InvalidToken, TokenExpired
from httpstream.writer import Writer

if TYPE_CHECKING:
    from httpstream.node import Node

_CONNECTING, _CONNECTED, _CLOSED = "connecting", "connected", "closed"

# Frames waiting while an earlier one waits on the engine; past this a peer is flooding us.
MAX_PENDING_FRAMES = 128

Result = Union[None, Deferred]


@implementer(IClient)
class Client:
    """
    A connection between one SDK client and this node.

    @ivar channels: the channels this client is subscribed to (or subscribing).
    """

    log = Logger()

    def __init__(
        self,
        node: "Node",
        transport: ITransport,
        reactor: IReactorTime,
        rng: Optional[random.Random] = None,
    ) -> None:
        self.node = node
        self.transport = transport
        self.protocol = transport.protocol
        self._codec = codecFor(transport.protocol)
        self._reactor = reactor
        self._rng = rng or random.Random()
        self._config = node.config
        self.clientID = str(uuid.uuid4())
        self.sessionID = str(uuid.uuid4()) if transport.emulated else ""
        self.user = ""
        self.connInfo: Optional[bytes] = None
        self.channels: set[str] = set()
        self._state = _CONNECTING
        self._connectTried = False
        self._expireAt = 0.0
        self._pending: deque[tuple[list[dict], int, Deferred[None]]] = deque()
        self._running = False
        self._pingOutstanding = False
        self._pingCall: Optional[IDelayedCall] = None
        self._pongCall: Optional[IDelayedCall] = None
        self._expireCall: Optional[IDelayedCall] = None
        self.writer = Writer(reactor, transport, self._config.client_queue_max_size, self._slow, node.flusher)
        transport.registerProducer(self.writer)
        self._staleCall: Optional[IDelayedCall] = reactor.callLater(
            self._config.client_stale_close_delay, self._stale
        )

    @property
    def closed(self) -> bool:
        return self._state == _CLOSED

    @property
    def connected(self) -> bool:
        return self._state == _CONNECTED

    # Inbound

    def handleData(self, data: bytes) -> Deferred[None]:
        done: Deferred[None] = Deferred()
        if self.closed:
            done.callback(None)
            return done
        try:
            commands = self._codec.decode_commands(data)
        except DecodeError as e:
            self.log.info("client {client}: bad frame: {error}", client=self.clientID, error=str(e))
            commands = []
        if not commands:
            self._disconnect(codes.DISCONNECT_BAD_REQUEST)
            done.callback(None)
            return done
        if len(self._pending) >= MAX_PENDING_FRAMES:
            self._disconnect(codes.DISCONNECT_TOO_MANY_REQUESTS)
            done.callback(None)
            return done
        self._pending.append((commands, 0, done))
        if not self._running:
            self._drain()
        return done

    def _drain(self) -> None:
        self._running = True
        while self._pending:
            commands, start, done = self._pending.popleft()
            for index in range(start, len(commands)):
                if self.closed:
                    break
                result = self._dispatch(commands[index])
                if isinstance(result, Deferred) and not result.called:
                    self._pending.appendleft((commands, index + 1, done))
                    result.addBoth(self._resume)
                    return
            done.callback(None)
        self._running = False

    def _resume(self, result: Any) -> None:
        if isinstance(result, Failure):
            self.log.failure("client {client}: command failed", result, client=self.clientID)
        self._drain()

    def _dispatch(self, command: dict) -> Result:
        commandID = command.get("id", 0)
        if self._state != _CONNECTED:
            if "connect" in command and commandID > 0 and not self._connectTried and not self.closed:
                self._connectTried = True
                return self._connect(commandID, command["connect"])
            # Anything before a successful connect, a second connect, or a connect taken as a pong.
            self._disconnect(codes.DISCONNECT_BAD_REQUEST)
            return None
        if commandID == 0 and "send" not in command:
            return self._pong()
        for method, handler in self._handlers.items():
            if method in command:
                try:
                    return handler(self, commandID, command[method])
                except Exception:
                    self.log.failure("client {client}: {method} failed", client=self.clientID, method=method)
                    self._replyError(commandID, codes.ERROR_INTERNAL)
                    return None
        self._disconnect(codes.DISCONNECT_BAD_REQUEST)
        return None

    # Commands

    def _connect(self, commandID: int, request: dict) -> Result:
        config = self._config
        token = request.get("token", "")
        if token:
            try:
                claims = self.node.tokens.verifyConnect(token, self._reactor.seconds())
            except TokenExpired:
                self._replyError(commandID, codes.ERROR_TOKEN_EXPIRED)
                return None
            except InvalidToken as e:
                self.log.info("client {client}: invalid token: {error}", client=self.clientID, error=str(e))
                self._disconnect(codes.DISCONNECT_INVALID_TOKEN)
                return None
            if not config.client_insecure and 0 < claims.expireAt <= self._reactor.seconds():
                # The token is valid (exp passed the check) but its expire_at is over: Centrifugo's "expired".
                self._replyError(commandID, codes.ERROR_EXPIRED)
                return None
            self.user, self.connInfo = claims.user, claims.info
            if not config.client_insecure:
                self._expireAt = claims.expireAt
        elif not (config.client_insecure or config.allow_anonymous_connect_without_token):
            self._disconnect(codes.DISCONNECT_BAD_REQUEST)
            return None
        self._state = _CONNECTED
        self._cancel("_staleCall")
        result: dict[str, Any] = {"client": self.clientID, "version": self.node.version}
        if self._expireAt:
            result["expires"] = True
            result["ttl"] = self._ttl()
            self._scheduleExpiry()
        if config.ping_interval > 0:
            result["ping"] = int(config.ping_interval)
            if config.pong_timeout > 0:
                result["pong"] = True
        if self.transport.emulated:
            result["session"] = self.sessionID
            result["node"] = self.node.id
        self.node.clientConnected(self)
        self._send({"id": commandID, "connect": result})
        self._schedulePing(first=True)
        self.log.debug(
            "client {client} connected over {transport} as {user!r}",
            client=self.clientID, transport=self.transport.name, user=self.user,
        )
        return None

    def _refresh(self, commandID: int, request: dict) -> Result:
        token = request.get("token", "")
        if not token:
            self._disconnect(codes.DISCONNECT_BAD_REQUEST)
            return None
        try:
            claims = self.node.tokens.verifyConnect(token, self._reactor.seconds())
        except TokenExpired:
            self._disconnect(codes.DISCONNECT_EXPIRED)
            return None
        except InvalidToken:
            self._disconnect(codes.DISCONNECT_INVALID_TOKEN)
            return None
        if claims.user != self.user:
            self._disconnect(codes.DISCONNECT_INVALID_TOKEN)
            return None
        self._expireAt = 0.0 if self._config.client_insecure else claims.expireAt
        self.connInfo = claims.info or self.connInfo
        self._cancel("_expireCall")
        result: dict[str, Any] = {}
        if self._expireAt:
            result = {"expires": True, "ttl": self._ttl()}
            self._scheduleExpiry()
        self._send({"id": commandID, "refresh": result})
        return None

    def _subscribe(self, commandID: int, request: dict) -> Result:
        channel = request.get("channel", "")
        if not channel:
            self._disconnect(codes.DISCONNECT_BAD_REQUEST)
            return None
        error = self.node.rules.validate(channel)
        if error is None and channel in self.channels:
            error = codes.ERROR_ALREADY_SUBSCRIBED
        if error is None and len(self.channels) >= self._config.client_channel_limit:
            error = codes.ERROR_LIMIT_EXCEEDED
        if error is None and not self.node.rules.canSubscribe(self.user, channel):
            error = codes.ERROR_PERMISSION_DENIED
        if error is not None:
            self._replyError(commandID, error)
            return None
        self.channels.add(channel)
        d = self.node.addSubscription(channel, self)

        def subscribed(_: object) -> None:
            if not self.closed:
                self._send({"id": commandID, "subscribe": {}})

        def failed(failure: Failure) -> None:
            self.log.failure("client {client}: subscribe to {channel} failed", failure,
                             client=self.clientID, channel=channel)
            self.channels.discard(channel)
            self.node.removeSubscription(channel, self)
            self._replyError(commandID, codes.ERROR_INTERNAL)

        return d.addCallbacks(subscribed, failed)

    def _unsubscribe(self, commandID: int, request: dict) -> Result:
        channel = request.get("channel", "")
        if not channel:
            self._disconnect(codes.DISCONNECT_BAD_REQUEST)
            return None
        if channel in self.channels:
            self.channels.discard(channel)
            self.node.removeSubscription(channel, self)
        self._send({"id": commandID, "unsubscribe": {}})
        return None

    def _publish(self, commandID: int, request: dict) -> Result:
        channel = request.get("channel", "")
        data = request.get("data", b"")
        if not channel or not data:
            self._disconnect(codes.DISCONNECT_BAD_REQUEST)
            return None
        error = self.node.rules.validate(channel)
        if error is None and not self.node.rules.canPublish(self.user, channel, channel in self.channels):
            error = codes.ERROR_PERMISSION_DENIED
        if error is not None:
            self._replyError(commandID, error)
            return None
        publication = {"data": data, "info": self.clientInfo()}
        d = self.node.publish(channel, publication)

        def published(_: object) -> None:
            self._send({"id": commandID, "publish": {}})

        def failed(failure: Failure) -> None:
            self.log.failure("client {client}: publish to {channel} failed", failure,
                             client=self.clientID, channel=channel)
            self._replyError(commandID, codes.ERROR_INTERNAL)

        return d.addCallbacks(published, failed)

    def _notAvailable(self, commandID: int, request: dict) -> Result:
        self._replyError(commandID, codes.ERROR_NOT_AVAILABLE)
        return None

    def _channelRequired(self, commandID: int, request: dict) -> Result:
        # presence, presence_stats and history: a protocol error without a channel, else not available yet.
        if not request.get("channel"):
            self._disconnect(codes.DISCONNECT_BAD_REQUEST)
            return None
        return self._notAvailable(commandID, request)

    def _send_(self, commandID: int, request: dict) -> Result:
        # No handler for asynchronous messages is configured.
        self._disconnect(codes.DISCONNECT_NOT_AVAILABLE)
        return None

    # In the order of the Command fields: the first one present wins, as in Centrifugo.
    _handlers: dict[str, Callable[["Client", int, dict], Result]] = {
        "connect": lambda self, commandID, request: self._disconnect(codes.DISCONNECT_BAD_REQUEST),
        "subscribe": _subscribe,
        "unsubscribe": _unsubscribe,
        "publish": _publish,
        "presence": _channelRequired,
        "presence_stats": _channelRequired,
        "history": _channelRequired,
        "ping": _notAvailable,
        "send": _send_,
        "rpc": _notAvailable,
        "refresh": _refresh,
        "sub_refresh": _channelRequired,
    }

    def clientInfo(self) -> dict[str, Any]:
        info: dict[str, Any] = {"user": self.user, "client": self.clientID}
        if self.connInfo is not None:
            info["conn_info"] = self.connInfo
        return info

    # Ping, pong, expiry, staleness

    def _schedulePing(self, first: bool = False) -> None:
        interval = self._config.ping_interval
        if interval <= 0 or self.closed:
            return
        delay = self._rng.uniform(interval / 2, interval) if first else interval
        self._pingCall = self._reactor.callLater(delay, self._ping)

    def _ping(self) -> None:
        self._pingCall = None
        if self.closed:
            return
        self._send({})
        if self._config.pong_timeout > 0 and not self._pingOutstanding:
            self._pingOutstanding = True
            self._pongCall = self._reactor.callLater(self._config.pong_timeout, self._noPong)
        self._schedulePing()

    def _noPong(self) -> None:
        self._pongCall = None
        if self._pingOutstanding:
            self._disconnect(codes.DISCONNECT_NO_PONG)

    def _pong(self) -> Result:
        if not self._pingOutstanding:
            # Centrifugo treats a pong nobody asked for as a protocol violation.
            self._disconnect(codes.DISCONNECT_BAD_REQUEST)
            return None
        self._pingOutstanding = False
        self._cancel("_pongCall")
        return None

    def _ttl(self) -> int:
        return max(0, int(self._expireAt - self._reactor.seconds()))

    def _scheduleExpiry(self) -> None:
        delay = max(0.0, self._expireAt - self._reactor.seconds()) + self._config.client_expired_close_delay
        self._expireCall = self._reactor.callLater(delay, self._checkExpired)

    def _checkExpired(self) -> None:
        self._expireCall = None
        if self._expireAt and self._expireAt <= self._reactor.seconds():
            self._disconnect(codes.DISCONNECT_EXPIRED)

    def _stale(self) -> None:
        self._staleCall = None
        if not self.connected:
            self._disconnect(codes.DISCONNECT_STALE)

    def _slow(self) -> None:
        # A burst that overflowed a reading client still reaches it, with the 3008 push after it, so the SDK
        # learns the code; a peer that stopped reading (paused writer) would never read them: just cut it off.
        self._disconnect(codes.DISCONNECT_SLOW, flush=not self.writer.paused)

    # Outbound

    def _send(self, reply: dict) -> None:
        if self.closed:
            return
        try:
            message = self._codec.encode_reply(reply)
        except EncodeError:
            self._disconnect(codes.DISCONNECT_INAPPROPRIATE_PROTOCOL)
            return
        self.writer.enqueue(message)

    def _replyError(self, commandID: int, error: codes.Error) -> None:
        self._send({"id": commandID, "error": error.toDict()})

    def deliver(self, frame: bytes, size: int) -> None:
        if not self.closed:
            self.writer.enqueue(frame)

    def disconnect(self, code: int, reason: str) -> None:
        self._disconnect(codes.Disconnect(code, reason))

    def _disconnect(self, disconnect: codes.Disconnect, flush: bool = True) -> None:
        if self.closed:
            return
        self._state = _CLOSED
        if flush and self.transport.pushDisconnect and disconnect.code != codes.DISCONNECT_CONNECTION_CLOSED.code:
            message = self._codec.encode_reply(
                {"push": {"disconnect": {"code": disconnect.code, "reason": disconnect.reason}}}
            )
            # Past the queue limit on purpose: the client must learn why it was cut off.
            self.writer.enqueue(message, force=True)
        if flush:
            self.writer.flush()
        self.writer.stop()
        self._cleanup()
        self.log.debug("client {client} disconnected: {code} {reason}", client=self.clientID,
                       code=disconnect.code, reason=disconnect.reason)
        self.transport.close(disconnect.code, disconnect.reason)

    def transportClosed(self) -> None:
        if self.closed:
            return
        self._state = _CLOSED
        self.writer.stop()
        self._cleanup()
        self.log.debug("client {client} went away (connection lost)", client=self.clientID)

    def _cleanup(self) -> None:
        for name in ("_staleCall", "_pingCall", "_pongCall", "_expireCall"):
            self._cancel(name)
        while self._pending:
            self._pending.popleft()[2].callback(None)
        for channel in list(self.channels):
            self.node.removeSubscription(channel, self)
        self.channels.clear()
        self.node.clientClosed(self)

    def _cancel(self, name: str) -> None:
        call: Optional[IDelayedCall] = getattr(self, name)
        if call is not None and call.active():
            call.cancel()
        setattr(self, name, None)
