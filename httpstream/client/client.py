# -*- test-case-name: tests.test_client,tests.test_client_connect,tests.test_client_channels -*-
"""
One connection's protocol state machine (Centrifugo's ``client.go``), the same for every transport.

Commands arrive as encoded frames (an http_stream body, an emulation payload, a WebSocket message) and are run in
order, one frame after the other even when a command waits on the engine. Replies and pushes are encoded with the
connection's codec and queued on its L{Writer}; the transport only frames them.
"""

from __future__ import annotations

import random
import time
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

import orjson
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure
from zope.interface import implementer

from httpstream.protocol import codes
from httpstream.client.channelcommands import ChannelCommands, SubscribeError
from httpstream.policy.channels import ChannelError
from httpstream.client.servercontrol import ServerControl
from httpstream.interfaces import IClient, ITransport
from httpstream.logs import Logger
from httpstream.protocol import DecodeError, EncodeError, codecFor
from httpstream.policy.proxy import ProxyConnectRequest, ProxyContext, ProxyDisconnect, ProxyError
from httpstream.client.subscription import Subscription
from httpstream.policy.tokens import InvalidToken, TokenExpired
from httpstream.client.writer import Writer

if TYPE_CHECKING:
    from httpstream.node.node import Node

_CONNECTING, _CONNECTED, _CLOSED = "connecting", "connected", "closed"

# Frames waiting while an earlier one waits on the engine; past this a peer is flooding us.
MAX_PENDING_FRAMES = 128

Result = Union[None, Deferred]

# Stands after the good commands of a frame that went bad: the client is disconnected when it is reached.
_BAD_FRAME: dict = {}


@implementer(IClient)
class Client(ChannelCommands, ServerControl):
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
        self.meta: Optional[bytes] = None
        self.channels: set[str] = set()
        self.subs: dict[str, Subscription] = {}
        self._errorReplied = False
        self._proxyContext: Optional[ProxyContext] = None
        self._emulatedHeaders: dict[str, str] = {}
        self._proxyRefresh = False
        self._presenceCall: Optional[IDelayedCall] = None
        self._state = _CONNECTING
        self._connectTried = False
        self._expireAt = 0.0
        self._pending: deque[tuple[list[dict], int, Deferred[None]]] = deque()
        self._running = False
        self._pingOutstanding = False
        self._pingCall: Optional[IDelayedCall] = None
        self._pongCall: Optional[IDelayedCall] = None
        self._expireCall: Optional[IDelayedCall] = None
        self.writer = Writer(
            reactor, transport, self._config.client_queue_max_size, self._slow, node.flusher, self._writeFailed
        )
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
            self.node.metrics.messagesReceived.labels(self.transport.name).inc(len(commands))
        except DecodeError as e:
            self.log.info("client {client}: bad frame: {error}", client=self.clientID, error=str(e))
            # As Centrifugo: the commands before the bad one run, then the client is cut off (3501).
            commands = [*e.commands, _BAD_FRAME] if e.commands else []
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
        if command is _BAD_FRAME:
            self._disconnect(codes.DISCONNECT_BAD_REQUEST)
            return None
        commandID = command.get("id", 0)
        if self._state != _CONNECTED:
            if "connect" in command and commandID > 0 and not self._connectTried and not self.closed:
                self._connectTried = True
                return self._run("connect", self._connect, commandID, command["connect"])
            # Anything before a successful connect, a second connect, or a connect taken as a pong.
            self._disconnect(codes.DISCONNECT_BAD_REQUEST)
            return None
        if commandID == 0 and "send" not in command:
            return self._pong()
        for method, handler in self._handlers.items():
            if method in command:
                return self._run(method, handler, self, commandID, command[method])
        self._disconnect(codes.DISCONNECT_BAD_REQUEST)
        return None

    # Commands

    def _connect(self, commandID: int, request: dict) -> Result:
        config = self._config
        token = request.get("token", "")
        headers = request.get("headers")
        if isinstance(headers, dict):
            self._emulatedHeaders = headers
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
            if not claims.user and config.disallow_anonymous_connection_tokens and not config.client_insecure:
                self._disconnect(codes.DISCONNECT_PERMISSION_DENIED)
                return None
            self.user, self.connInfo = claims.user, claims.info
            self.meta = None if claims.meta is None else orjson.dumps(claims.meta)
            if not config.client_insecure:
                self._expireAt = float(claims.expireAt)
            serverSubs: dict[str, Any] = {channel: claims.subs.get(channel) for channel in claims.channels}
            for channel, options in claims.subs.items():
                serverSubs.setdefault(channel, options)
            return self._finishConnect(commandID, request, serverSubs, None)
        if self.node.proxy.enabled("connect") and not config.client_insecure:
            wanted = request.get("subs") or {}
            d = self.node.proxy.connect(self.proxyContext(), ProxyConnectRequest(
                data=request.get("data"), name=request.get("name", ""), version=request.get("version", ""),
                channels=list(wanted),
            ))
            return d.addCallbacks(
                lambda reply: self._proxiedConnect(commandID, request, reply),
                lambda failure: self._connectFailed(commandID, failure),
            )
        if not (config.client_insecure or config.allow_anonymous_connect_without_token):
            self._disconnect(codes.DISCONNECT_BAD_REQUEST)
            return None
        return self._finishConnect(commandID, request, {}, None)

    def _proxiedConnect(self, commandID: int, request: dict, reply: Optional[dict]) -> Result:
        config = self._config
        if reply is None:
            if not config.allow_anonymous_connect_without_token:
                self._disconnect(codes.DISCONNECT_BAD_REQUEST)
                return None
            return self._finishConnect(commandID, request, {}, None)
        self.user, self.connInfo, self.meta = reply["user"], reply["info"], reply["meta"]
        self._proxyContext = None  # the user is known now
        if reply["expire_at"]:
            self._expireAt = float(reply["expire_at"])
        serverSubs: dict[str, Any] = {channel: None for channel in reply["channels"]}
        serverSubs.update(reply["subs"])  # each a readers.SubOptions
        return self._finishConnect(commandID, request, serverSubs, reply["data"])

    def _connectFailed(self, commandID: int, failure: Failure) -> None:
        if failure.check(ProxyError):
            self._replyError(commandID, failure.value.error)
        elif failure.check(ProxyDisconnect):
            self._disconnect(failure.value.disconnect)
        elif failure.check(SubscribeError):
            if failure.value.disconnect is not None:
                self._disconnect(failure.value.disconnect)
            else:
                self._replyError(commandID, failure.value.error or codes.ERROR_INTERNAL)
        else:
            self.log.failure("client {client}: connect failed", failure, client=self.clientID)
            self._replyError(commandID, codes.ERROR_INTERNAL)

    def _finishConnect(self, commandID: int, request: dict, serverSubs: dict[str, Any],
                       data: Optional[bytes]) -> Result:
        config = self._config
        limit = config.client_user_connection_limit
        if self.user and limit and self.node.userConnections(self.user) >= limit:
            self._disconnect(codes.DISCONNECT_CONNECTION_LIMIT)
            return None
        if self.user and config.user_subscribe_to_personal:
            serverSubs[self.node.rules.personalChannel(self.user)] = None
        for channel in serverSubs:
            try:
                # Server-side channels are granted, not validated as names: only their namespace must exist.
                self.node.rules.namespaceOptions(channel)
            except ChannelError as e:
                self._replyError(commandID, e.error)
                return None
        if config.client_channel_limit and len(serverSubs) > config.client_channel_limit:
            self._disconnect(codes.DISCONNECT_CHANNEL_LIMIT)
            return None
        # With a refresh proxy the server refreshes every connection (Centrifugo's ClientSideRefresh is off).
        self._proxyRefresh = self.node.proxy.enabled("refresh")
        self._state = _CONNECTED
        self._cancel("_staleCall")
        self.node.clientConnected(self)
        result: dict[str, Any] = {"client": self.clientID, "version": self.node.version}
        if data is not None:
            result["data"] = data
        if self._expireAt and not self._proxyRefresh:
            result["expires"] = True
            result["ttl"] = self._ttl()
        if self._expireAt:
            self._scheduleExpiry()
        if config.ping_interval > 0:
            result["ping"] = int(config.ping_interval)
            if config.pong_timeout > 0:
                result["pong"] = True
        if self.transport.emulated:
            result["session"] = self.sessionID
            result["node"] = self.node.id
        recover = request.get("subs") or {}
        subscribed: dict[str, dict] = {}
        d: Deferred[Any] = succeed(None)
        for channel, options in serverSubs.items():
            # What the SDK sends for a server-side sub it knows: where to recover it from.
            wanted = recover.get(channel) or {}
            params = {key: wanted[key] for key in ("recover", "offset", "epoch") if key in wanted}
            d.addCallback(lambda _, c=channel, p=params, o=options: self.subscribeChannel(c, p, True, o))
            d.addCallback(lambda subResult, c=channel: subscribed.__setitem__(c, subResult))

        def reply(_: object) -> None:
            if self.closed:
                return
            if subscribed:
                result["subs"] = subscribed
            self._send({"id": commandID, "connect": result})
            for channel in subscribed:
                self._afterSubscribe(channel)
            self._schedulePing(first=True)
            self._schedulePresence()
            self.log.debug(
                "client {client} connected over {transport} as {user!r}",
                client=self.clientID, transport=self.transport.name, user=self.user,
            )

        def failed(failure: Failure) -> None:
            # Connected already, without a reply: Centrifugo ends such a connection (3004, the client reconnects).
            if failure.check(SubscribeError) and failure.value.disconnect is not None:
                self._disconnect(failure.value.disconnect)
                return
            if not failure.check(SubscribeError):
                self.log.failure("client {client}: server-side subscribe failed", failure, client=self.clientID)
            self._disconnect(codes.DISCONNECT_SERVER_ERROR)

        return d.addCallbacks(reply, failed)

    def _refresh(self, commandID: int, request: dict) -> Result:
        token = request.get("token", "")
        if not token or self._proxyRefresh:
            # No token, or the server refreshes this connection itself (refresh proxy).
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

    def _rpc(self, commandID: int, request: dict) -> Result:
        method = request.get("method", "")
        d = self.node.rpc.dispatch(self.proxyContext(), method, request.get("data") or b"", self.node.proxy)

        def answer(data: bytes) -> None:
            self._send({"id": commandID, "rpc": {"data": data} if data else {}})

        def failed(failure: Failure) -> None:
            if failure.check(ProxyDisconnect):
                self._disconnect(failure.value.disconnect)
            elif failure.check(ProxyError):
                self._replyError(commandID, failure.value.error)
            else:
                self._commandFailed(commandID, failure, "rpc")

        return d.addCallbacks(answer, failed)

    def _notAvailable(self, commandID: int, request: dict) -> Result:
        self._replyError(commandID, codes.ERROR_NOT_AVAILABLE)
        return None

    def _send_(self, commandID: int, request: dict) -> Result:
        d = self.node.rpc.handleSend(self.proxyContext(), request.get("data") or b"")

        def failed(failure: Failure) -> None:
            if failure.check(ProxyDisconnect):
                self._disconnect(failure.value.disconnect)
            else:
                self.log.failure("client {client}: send failed", failure, client=self.clientID)

        return d.addErrback(failed)

    # In the order of the Command fields: the first one present wins, as in Centrifugo.
    _handlers: dict[str, Callable[["Client", int, dict], Result]] = {
        "connect": lambda self, commandID, request: self._disconnect(codes.DISCONNECT_BAD_REQUEST),
        "subscribe": ChannelCommands._subscribe,
        "unsubscribe": ChannelCommands._unsubscribe,
        "publish": ChannelCommands._publish,
        "presence": ChannelCommands._presence,
        "presence_stats": ChannelCommands._presenceStats,
        "history": ChannelCommands._history,
        "ping": _notAvailable,
        "send": _send_,
        "rpc": _rpc,
        "refresh": _refresh,
        "sub_refresh": ChannelCommands._subRefresh,
    }

    def clientInfo(self, sub: Optional[Subscription] = None) -> dict[str, Any]:
        info: dict[str, Any] = {"user": self.user, "client": self.clientID}
        if self.connInfo is not None:
            info["conn_info"] = self.connInfo
        if sub is not None and sub.chanInfo is not None:
            info["chan_info"] = sub.chanInfo
        return info

    def proxyContext(self) -> ProxyContext:
        """What the proxy and RPC handlers learn about this connection (built once per user)."""
        if self._proxyContext is None or self._proxyContext.user != self.user:
            proxy = self.node.proxy
            self._proxyContext = ProxyContext(
                clientID=self.clientID,
                transport=self.transport.name,
                protocol=self.protocol,
                encoding="binary" if self.protocol == "protobuf" else "json",
                user=self.user,
                meta=self.meta,
                headers=proxy.headersFor(self.transport.requestHeaders, self._emulatedHeaders),
            )
        return self._proxyContext

    def _schedulePresence(self) -> None:
        if not self.closed:
            self._presenceCall = self._reactor.callLater(
                self._config.client_presence_update_interval, self._updatePresence
            )

    def _updatePresence(self) -> None:
        """
        Centrifugo's presence timer: refresh presence entries, end expired subscriptions and those whose
        position was lost.
        """
        self._presenceCall = None
        if self.closed:
            return
        for channel, sub in list(self.subs.items()):
            if sub.presence:
                self.node.presence.add(channel, self.clientID, self.clientInfo(sub)).addErrback(
                    lambda f: self.log.failure("presence update", f)
                )
        self.checkSubscriptionsExpired()
        self.checkPositions()
        self._schedulePresence()

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
        if not self._expireAt or self._expireAt > self._reactor.seconds() or self.closed:
            return
        if not self._proxyRefresh:
            self._disconnect(codes.DISCONNECT_EXPIRED)
            return

        def refreshed(reply: dict) -> None:
            if reply["expired"]:
                self._disconnect(codes.DISCONNECT_EXPIRED)
                return
            self._expireAt = float(reply["expire_at"])
            if reply.get("info") is not None:
                self.connInfo = reply["info"]
            if self._expireAt:
                self._scheduleExpiry()

        self.node.proxy.refresh(self.proxyContext()).addCallbacks(
            refreshed, lambda f: self._disconnect(codes.DISCONNECT_EXPIRED)
        )

    def _stale(self) -> None:
        self._staleCall = None
        if not self.connected:
            self._disconnect(codes.DISCONNECT_STALE)

    def _run(self, method: str, handler: Callable[..., Result], *args: Any) -> Result:
        """Run one command's handler, counting it by outcome (an error reply counts as "error") and latency."""
        started = time.perf_counter()
        self._errorReplied = False
        try:
            result = handler(*args)
        except Exception:
            self.log.failure("client {client}: {method} failed", client=self.clientID, method=method)
            self._replyError(args[-2], codes.ERROR_INTERNAL)
            self._observe(method, started, "error")
            return None
        if isinstance(result, Deferred):
            result.addBoth(self._observed, method, started)
        else:
            self._observe(method, started, "error" if self._errorReplied else "ok")
        return result

    def _observed(self, result: Any, method: str, started: float) -> Any:
        failed = isinstance(result, Failure) or self._errorReplied
        self._observe(method, started, "error" if failed else "ok")
        return result

    def _observe(self, method: str, started: float, outcome: str) -> None:
        metrics = self.node.metrics
        metrics.commands.labels(method, outcome).inc()
        metrics.commandDuration.labels(method).observe(time.perf_counter() - started)

    def _queue(self, message: bytes, force: bool = False) -> None:
        """Queue one encoded message on the writer, counting it."""
        if self.writer.enqueue(message, force):
            metrics = self.node.metrics
            metrics.messagesSent.labels(self.transport.name).inc()
            metrics.bytesSent.labels(self.transport.name).inc(len(message))

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
        self._queue(message)

    def _replyError(self, commandID: int, error: codes.Error) -> None:
        # Commands run one at a time (see _drain), so this marks the command being run.
        self._errorReplied = True
        self._send({"id": commandID, "error": error.toDict()})

    def disconnect(self, code: int, reason: str) -> None:
        self._disconnect(codes.Disconnect(code, reason))

    def _writeFailed(self, failure: Failure) -> None:
        # Once per connection (the writer stops): the batch may be partly lost, so the client must reconnect.
        self.log.failure("client {client}: writing to its {transport} failed; closing the connection (3009)", failure,
                         client=self.clientID, transport=self.transport.name)
        self._disconnect(codes.DISCONNECT_WRITE_ERROR, flush=False)

    def _disconnect(self, disconnect: codes.Disconnect, flush: bool = True) -> None:
        if self.closed:
            return
        self._state = _CLOSED
        try:
            self.node.metrics.disconnects.labels(str(disconnect.code)).inc()
            if flush and self.transport.pushDisconnect and disconnect.code != codes.DISCONNECT_CONNECTION_CLOSED.code:
                # Past the queue limit on purpose: the client must learn why it was cut off.
                self._queue(self._disconnectPush(disconnect), force=True)
            if flush:
                self.writer.flush()
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

    def _disconnectPush(self, disconnect: codes.Disconnect) -> bytes:
        # The protocol's code is a uint32. One outside it, or a reason the codec cannot encode, is pushed as what a
        # WebSocket close frame gets for a code it cannot carry, so every SDK reconnects as it would there.
        if 0 <= disconnect.code <= 0xFFFFFFFF:
            try:
                return self._codec.encode_reply(
                    {"push": {"disconnect": {"code": disconnect.code, "reason": disconnect.reason}}}
                )
            except EncodeError:
                pass
        fallback = codes.DISCONNECT_FORCE_RECONNECT
        return self._codec.encode_reply({"push": {"disconnect": {"code": fallback.code, "reason": fallback.reason}}})

    def transportClosed(self) -> None:
        if self.closed:
            return
        self._state = _CLOSED
        self.writer.stop()
        self._cleanup()
        self.log.debug("client {client} went away (connection lost)", client=self.clientID)

    def _cleanup(self) -> None:
        for name in ("_staleCall", "_pingCall", "_pongCall", "_expireCall", "_presenceCall"):
            self._cancel(name)
        while self._pending:
            self._pending.popleft()[2].callback(None)
        for channel in list(self.subs):
            self._leave(channel)
        for channel in list(self.channels):
            self.node.removeSubscription(channel, self)
        self.channels.clear()
        self.node.clientClosed(self)

    def _cancel(self, name: str) -> None:
        call: Optional[IDelayedCall] = getattr(self, name)
        if call is not None and call.active():
            call.cancel()
        setattr(self, name, None)
