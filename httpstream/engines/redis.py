# -*- test-case-name: tests.test_engine_redis,tests.test_engine_contract -*-
"""
The Redis engine: PUB/SUB, history streams and presence shared by every node that uses the same Redis.

It follows Centrifugo's Redis engine (centrifuge ``broker_redis.go``, ``presence_redis.go``):

  - L{RedisShard} owns two connections to one Redis: one for commands and Lua scripts, one in subscribe mode for
    PUB/SUB. Each is kept up by a L{ClientService} with exponential backoff; while a connection is down, whatever
    needs it fails at once (L{RedisUnavailable}) instead of waiting or pretending. When the PUB/SUB connection
    comes back, every channel is subscribed again and the reconnect handlers run: publications sent while it
    was down were lost for this node's subscribers.
  - L{RedisBroker} (L{IBroker}): a channel's publications go to the PUB/SUB channel C{<prefix>.client.<channel>};
    its history is a Redis stream C{<prefix>.history.stream.<channel>} (entry id C{<offset>-0}, one field
    C{d}: the encoded publication) and a hash C{<prefix>.history.meta.<channel>} (C{s}: top offset, C{e}:
    epoch). Publishing with history is one Lua script: create the epoch when missing, increment the top,
    XADD with an exact MAXLEN, set both TTLs (PEXPIRE: milliseconds) and PUBLISH, so offsets reach
    subscribers in order. Reading history is one script too (it creates the stream and renews its meta TTL).
  - L{RedisPresence} (L{IPresenceManager}): a hash C{<prefix>.presence.data.<channel>} (client id -> info)
    and a sorted set C{<prefix>.presence.expire.<channel>} (client id -> expiry time): an entry the node stops
    refreshing disappears after C{global_presence_ttl}, even when its node died.

Publications and client infos are stored as JSON (orjson): a C{bytes} field becomes a string when it is UTF-8
(JSON payloads, the usual case, cost nothing extra) or a one-item list holding its base64 form, so dicts come back
exactly as they went in. A PUB/SUB message is C{<offset>:<epoch>:<json>} (C{0::<json>} without history), or a
join or leave: C{j<json>} or C{l<json>}, the client's info.

Not supported: Redis Cluster and Sentinel (one Redis, or a proxy in front of several).
"""

from __future__ import annotations

import base64
import math
import random
import string
import time
import urllib.parse
from typing import Any, Callable, Optional, Sequence, Union

import attrs
import orjson
import txredisapi
from twisted.application.internet import ClientService
from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, gatherResults, maybeDeferred, succeed
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure
from zope.interface import implementer

from httpstream.engines import (
    DEFAULT_HISTORY_META_TTL,
    EngineUnavailable,
    HistoryError,
    HistoryResult,
    checkHistoryRequest,
    checkSinceEpoch,
    hasHistory,
)
from httpstream.interfaces import IBroker, IPresenceManager
from httpstream.logs import Logger

__all__ = [
    "DEFAULT_PRESENCE_TTL",
    "RedisAddress",
    "RedisBroker",
    "RedisPresence",
    "RedisReplyError",
    "RedisShard",
    "RedisUnavailable",
    "parseAddress",
]

DEFAULT_PORT = 6379
DEFAULT_PRESENCE_TTL = 60.0  # Centrifugo's global_presence_ttl
_EPOCH_LETTERS = string.ascii_letters
_MAX_OFFSET = 2**63  # stream ids are unsigned 64-bit: a client's larger since offset means "past the top" all the same

log = Logger()


class RedisUnavailable(txredisapi.ConnectionError, EngineUnavailable):
    """
    The connection a call needs is down (Redis unreachable, restarting, refusing our credentials), or was lost
    before the reply came.
    """


class RedisReplyError(EngineUnavailable):
    """
    Redis answered with an error, or with what this engine never writes (a value of another shape under its keys,
    another program's message on its channels): the call fails as in an outage (the client gets error 100, the
    log one line without a traceback), never with a traceback into the client.
    """


# Addresses


@attrs.frozen
class RedisAddress:
    """Where and how to connect: the parts of C{redis_address} and the keys that complete it."""

    host: str
    port: int = DEFAULT_PORT
    db: int = 0
    user: str = ""
    password: str = attrs.field(default="", repr=False)
    tls: bool = False

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'rediss' if self.tls else 'redis'}://{host}:{self.port}/{self.db}"


def parseAddress(address: str, db: int = 0, user: str = "", password: str = "", tls: bool = False) -> RedisAddress:
    """
    Read C{redis_address}: C{host:port} (C{[v6]:port}; the port may be left out), or a URL
    C{redis://[[user]:password@]host[:port][/db]} (C{rediss://} for TLS) whose parts win over the other arguments.

    @raise ValueError: an address that is neither.
    """
    if "://" in address:
        parts = urllib.parse.urlsplit(address)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError(f"unknown scheme {parts.scheme!r} (redis:// or rediss://)")
        try:
            port = parts.port or DEFAULT_PORT
        except ValueError:
            raise ValueError("invalid port") from None
        if not parts.hostname:
            raise ValueError("no host")
        path = parts.path.strip("/")
        if path:
            if not path.isdigit():
                raise ValueError(f"invalid database number {path!r}")
            db = int(path)
        if parts.username:
            user = urllib.parse.unquote(parts.username)
        if parts.password:
            password = urllib.parse.unquote(parts.password)
        return RedisAddress(parts.hostname, port, db, user, password, tls or parts.scheme == "rediss")
    host, port = address, DEFAULT_PORT
    if address.startswith("["):
        host, bracket, rest = address[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError("expected [address]:port")
        if rest:
            port = _port(rest[1:])
    elif address.count(":") == 1:
        host, _, portText = address.partition(":")
        port = _port(portText)
    elif ":" in address:
        raise ValueError("an IPv6 address needs brackets: [address]:port")
    if not host:
        raise ValueError("no host")
    return RedisAddress(host, port, db, user, password, tls)


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"invalid port {text!r}")
    return int(text)


# The wire: txredisapi's protocol with a reply parser that reads a whole TCP chunk in one go (its own parser takes
# a reactor turn for every bulk string after the first in a chunk: three per PUB/SUB message).

_INCOMPLETE = object()


class _Incomplete(Exception):
    pass


class _ReplyReader:
    """An incremental RESP2 parser: L{feed} bytes, then L{gets} replies until it returns L{_INCOMPLETE}."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._pos = 0

    def feed(self, data: bytes) -> None:
        if self._pos:
            del self._buffer[: self._pos]
            self._pos = 0
        self._buffer += data

    def gets(self) -> Any:
        if self._pos >= len(self._buffer):
            return _INCOMPLETE
        try:
            reply, self._pos = self._parse(self._pos)
        except _Incomplete:
            return _INCOMPLETE
        except RecursionError:
            # No reply of this engine nests more than three deep.
            raise txredisapi.InvalidResponse("reply nested too deep") from None
        return reply

    def _parse(self, pos: int) -> tuple[Any, int]:
        buffer = self._buffer
        end = buffer.find(b"\r\n", pos)
        if end < 0:
            raise _Incomplete()
        kind = buffer[pos]
        line = bytes(buffer[pos + 1 : end])
        pos = end + 2
        try:
            if kind == 0x24:  # $ bulk string
                length = int(line)
                if length < 0:
                    return None, pos
                if len(buffer) < pos + length + 2:
                    raise _Incomplete()
                return bytes(buffer[pos : pos + length]), pos + length + 2
            if kind == 0x2A:  # * array
                count = int(line)
                if count < 0:
                    return None, pos
                items = []
                for _ in range(count):
                    item, pos = self._parse(pos)
                    items.append(item)
                return items, pos
            if kind == 0x3A:  # : integer
                return int(line), pos
        except ValueError:
            raise txredisapi.InvalidResponse(f"invalid reply header {line!r}") from None
        if kind == 0x2B:  # + status
            return line.decode("utf-8", "replace"), pos
        if kind == 0x2D:  # - error
            return txredisapi.ResponseError(line.decode("utf-8", "replace")), pos
        raise txredisapi.InvalidResponse(f"unknown reply type {bytes([kind])!r}")


class _WholeReplies:
    """Mixed into txredisapi's protocols: parse with L{_ReplyReader}; tell the link when the connection ends."""

    factory: "_Link"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[call-arg]
        self._reader = _ReplyReader()

    def dataReceived(self, data: bytes, unpause: bool = False) -> None:
        self._reader.feed(data)
        while True:
            try:
                reply = self._reader.gets()
            except txredisapi.InvalidResponse as e:
                log.error("Redis {link}: {error}; closing the connection", link=self.factory.name, error=e)
                self.transport.abortConnection()  # type: ignore[attr-defined]
                return
            if reply is _INCOMPLETE:
                return
            self.replyReceived(reply)  # type: ignore[attr-defined]

    def connectionLost(self, reason: Failure) -> None:
        # The link first: txredisapi then fails the pending commands, whose errbacks may call again at once.
        self.factory.lost(self, reason)
        super().connectionLost(reason)  # type: ignore[misc]


class _CommandProtocol(_WholeReplies, txredisapi.BaseRedisProtocol):
    pass


class _SubscriberProtocol(_WholeReplies, txredisapi.SubscriberProtocol):
    def messageReceived(self, pattern: Optional[bytes], channel: bytes, message: bytes) -> None:
        self.factory.shard._message(channel, message)


class _Link(Factory):
    """
    One connection to Redis, kept up by a L{ClientService}: L{protocol} is the connected protocol (TLS, AUTH,
    SELECT and a PING done), None while there is none.

    Also the protocols' factory: txredisapi's protocol reports a failed AUTH or SELECT to C{connectionError} and
    C{stopTrying}; the link logs it and keeps trying, backing off, as the server may be fixed.
    """

    isLazy = False  # read by txredisapi's protocol
    noisy = False

    def __init__(
        self,
        shard: "RedisShard",
        name: str,
        protocolClass: type,
        endpoint: Any,
        onReady: Callable[[Any, bool], None],
        onLost: Callable[[], None] = lambda: None,
    ) -> None:
        self.shard = shard
        self.name = name
        self._protocolClass = protocolClass
        self._onReady = onReady
        self._onLost = onLost
        self.protocol: Any = None
        self._everReady = False
        self._rejected = 0  # connections in a row that closed before they were usable
        self._errorLogged = False  # txredisapi reported why the current attempt failed
        self._waiting: list[Deferred[None]] = []
        self._service = ClientService(endpoint, self, retryPolicy=self._retryDelay, clock=shard.reactor)

    def start(self) -> None:
        self._service.startService()

    def stop(self) -> Deferred[None]:
        return self._service.stopService()

    def whenReady(self) -> Deferred[None]:
        if self.protocol is not None:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiting.append(d)
        return d

    def buildProtocol(self, addr: Any) -> Any:
        address = self.shard.address
        protocol = self._protocolClass(
            charset=None,
            convertNumbers=False,
            replyTimeout=self.shard.replyTimeout,
            password=address.password or None,
            username=(address.user or None) if address.password else None,
            dbid=address.db or None,
        )
        protocol.factory = self
        protocol.callLater = self.shard.reactor.callLater  # type: ignore[attr-defined]
        self._rejected += 1
        self._errorLogged = False
        protocol.whenConnected().addCallback(self._check)
        return protocol

    def _check(self, protocol: Any) -> None:
        # txredisapi calls a connection up as soon as AUTH and SELECT are done, and at once without them, even
        # before a TLS handshake: one round trip proves it usable.
        d = maybeDeferred(protocol.execute_command, "PING")
        d.addCallbacks(lambda _: self._ready(protocol), lambda _: None)  # lost: lost() tells why

    def _ready(self, protocol: Any) -> None:
        if not protocol.connected:
            return
        self._rejected = 0
        self.protocol = protocol
        reconnect, self._everReady = self._everReady, True
        log.info("Redis {link} connection to {address} is up", link=self.name, address=str(self.shard.address))
        # Before the waiters, whose callbacks may already use the connection (resubscribing comes first).
        self._onReady(protocol, reconnect)
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)

    def lost(self, protocol: Any, reason: Failure) -> None:
        if self.protocol is protocol:
            self.protocol = None
            if self.shard.running:
                log.warn(
                    "Redis {link} connection to {address} lost ({reason}); reconnecting",
                    link=self.name,
                    address=str(self.shard.address),
                    reason=reason.getErrorMessage(),
                )
            self._onLost()
        elif not self._errorLogged and self.shard.running:
            log.warn(
                "Redis {link} connection to {address} failed ({reason}); retrying",
                link=self.name,
                address=str(self.shard.address),
                reason=reason.getErrorMessage(),
            )

    # Called by txredisapi's protocol when AUTH or SELECT fails (it then closes the connection).
    def connectionError(self, why: str) -> None:
        self._errorLogged = True
        log.error("Redis {link} at {address}: {why}", link=self.name, address=str(self.shard.address), why=why)

    def stopTrying(self) -> None:
        pass

    def _retryDelay(self, attempt: int) -> float:
        # ClientService counts failed attempts from the last TCP connection; a connection refused by AUTH or
        # SELECT is one too, or a wrong password would reconnect in a tight loop.
        attempt = max(attempt, self._rejected)
        delay = min(self.shard.initialRetryDelay * 2 ** min(attempt - 1, 30), self.shard.maxRetryDelay)
        return delay * (1 + 0.2 * self.shard.rng.random())

    def call(self, method: str, *args: Any, **kwargs: Any) -> Deferred[Any]:
        """Run a protocol method (a command) on the connection; fail at once without one."""
        protocol = self.protocol
        if protocol is None or not protocol.connected:
            return fail(RedisUnavailable(f"no {self.name} connection to Redis at {self.shard.address}"))
        return maybeDeferred(getattr(protocol, method), *args, **kwargs).addErrback(self._lost)

    def _lost(self, failure: Failure) -> Failure:
        if failure.check(txredisapi.ConnectionError) and not failure.check(RedisUnavailable):
            return Failure(RedisUnavailable(f"{self.name} connection to Redis lost: {failure.getErrorMessage()}"))
        if failure.check(txredisapi.ResponseError):
            return Failure(RedisReplyError(f"Redis error reply: {failure.getErrorMessage()}"))
        return failure


class RedisShard(Service):
    """
    The connections to one Redis, shared by a L{RedisBroker}, a L{RedisPresence} and anything else that needs
    PUB/SUB (a control channel): start it as a service (C{setServiceParent}) before they are used.

    @ivar prefix: the prefix of every key and PUB/SUB channel name (C{redis_prefix}).
    @ivar address: the L{RedisAddress}.
    """

    def __init__(
        self,
        reactor: Any,
        address: Union[str, RedisAddress] = "127.0.0.1:6379",
        *,
        prefix: str = "httpstream",
        db: int = 0,
        user: str = "",
        password: str = "",
        tls: bool = False,
        trustRoot: Any = None,
        connectTimeout: float = 5.0,
        replyTimeout: Optional[float] = 5.0,
        initialRetryDelay: float = 0.1,
        maxRetryDelay: float = 5.0,
        pubsubPingInterval: float = 1.0,
        rng: Optional[random.Random] = None,
    ) -> None:
        """
        @param reactor: connects (L{IReactorTCP}) and times (L{IReactorTime}).
        @param address: C{host:port} or a C{redis://} / C{rediss://} URL (see L{parseAddress}).
        @param db: the database of keys (C{SELECT}); PUB/SUB is the same in every database.
        @param user: the ACL user (with a password); a URL's wins.
        @param password: the password (C{AUTH}); a URL's wins.
        @param tls: connect with TLS (needs pyOpenSSL and service_identity: C{twisted[tls]}); the certificate is
            checked against C{trustRoot} (an L{IOpenSSLTrustRoot}; None: the platform's) and the host name.
        @param replyTimeout: seconds to wait for a reply before the connection is dropped (None: forever).
        @param initialRetryDelay: seconds before the first reconnection attempt; each next one waits twice as
            long, up to C{maxRetryDelay} (plus up to 20% jitter).
        @param pubsubPingInterval: seconds between PINGs on the PUB/SUB connection, which otherwise only
            receives: a connection gone silent (a network blackhole) is dropped and made again once a PING has
            no reply within C{replyTimeout}, as the command connection is by the next command.
        @raise ValueError: a bad address, or TLS asked for without pyOpenSSL.
        """
        self.reactor = reactor
        self.address = address if isinstance(address, RedisAddress) else parseAddress(address, db, user, password, tls)
        self.prefix = prefix
        self.replyTimeout = replyTimeout
        self.initialRetryDelay = initialRetryDelay
        self.maxRetryDelay = maxRetryDelay
        self.pubsubPingInterval = pubsubPingInterval
        self._pinging: Optional[LoopingCall] = None
        self.rng = rng if rng is not None else random.Random()
        endpoint: Any = HostnameEndpoint(reactor, self.address.host, self.address.port, timeout=connectTimeout)
        if self.address.tls:
            try:
                from twisted.internet.ssl import optionsForClientTLS
            except ImportError:
                raise ValueError("Redis over TLS needs pyOpenSSL and service_identity (pip install 'twisted[tls]')")
            endpoint = wrapClientTLS(optionsForClientTLS(self.address.host, trustRoot=trustRoot), endpoint)
        self._commands = _Link(self, "commands", _CommandProtocol, endpoint, lambda protocol, reconnect: None)
        self._pubsub = _Link(self, "pubsub", _SubscriberProtocol, endpoint, self._pubsubReady)
        # PUB/SUB channel -> how many subscribe calls it has had without an unsubscribe, and its handler.
        self._counts: dict[bytes, int] = {}
        self._handlers: dict[bytes, Callable[[bytes, bytes], None]] = {}
        # Channels whose SUBSCRIBE is in flight -> the later subscribe calls waiting for its outcome.
        self._inflight: dict[bytes, list[Deferred[None]]] = {}
        self._reconnectHandlers: list[Callable[[list[bytes]], None]] = []

    @classmethod
    def fromConfig(cls, reactor: Any, config: Any, **kwargs: Any) -> "RedisShard":
        """A shard for the C{redis_*} keys of a L{httpstream.config.Config}."""
        return cls(
            reactor,
            config.redis_url or config.redis_address,
            prefix=config.redis_prefix,
            db=config.redis_db,
            user=config.redis_user,
            password=config.redis_password,
            tls=config.redis_tls,
            **kwargs,
        )

    def startService(self) -> None:
        super().startService()
        self._commands.start()
        self._pubsub.start()

    def stopService(self) -> Deferred[None]:
        super().stopService()
        self._stopPinging()
        return gatherResults([self._commands.stop(), self._pubsub.stop()], consumeErrors=True).addCallback(
            lambda _: None
        )

    @property
    def connected(self) -> bool:
        """True while both connections are up."""
        return self._commands.protocol is not None and self._pubsub.protocol is not None

    def whenReady(self) -> Deferred[None]:
        """A Deferred firing once both connections are up (at once when they are)."""
        return gatherResults([self._commands.whenReady(), self._pubsub.whenReady()]).addCallback(lambda _: None)

    # Commands

    def execute(self, *args: Any) -> Deferred[Any]:
        """
        Run one command on the command connection (bytes come back as bytes).

        @return: its reply, or a failure: L{RedisUnavailable} at once while the connection is down,
            C{txredisapi.ConnectionError} when it is lost before the reply, L{RedisReplyError} for an error reply.
        """
        return self._commands.call("execute_command", *args)

    def eval(self, script: bytes, keys: Sequence[Any], args: Sequence[Any]) -> Deferred[Any]:
        """Run a Lua script (EVALSHA, EVAL the first time on each connection) on the command connection."""
        return self._commands.call("eval", script, list(keys), list(args))

    # PUB/SUB

    def subscribe(self, channel: bytes, handler: Callable[[bytes, bytes], None]) -> Deferred[None]:
        """
        Receive the messages of a PUB/SUB channel: C{handler(channel, message)}. Calls are counted: the first
        sends SUBSCRIBE, and as many L{unsubscribe} calls are needed to stop.

        @return: a Deferred firing once Redis has confirmed the subscription, or failing (L{RedisUnavailable} at
            once while the PUB/SUB connection is down). The call counts either way (unsubscribe to undo it), and
            a channel still wanted when the connection comes back is subscribed again.
        """
        count = self._counts.get(channel, 0)
        self._counts[channel] = count + 1
        self._handlers[channel] = handler
        protocol = self._pubsub.protocol
        if protocol is None:
            return fail(RedisUnavailable(f"no pubsub connection to Redis at {self.address}"))
        if count == 0:
            return self._subscribe(protocol, channel)
        waiting = self._inflight.get(channel)
        if waiting is None:
            return succeed(None)
        d: Deferred[None] = Deferred()
        waiting.append(d)
        return d

    def unsubscribe(self, channel: bytes) -> Deferred[None]:
        """Undo one L{subscribe} call; the last one sends UNSUBSCRIBE. A lost connection counts as success."""
        count = self._counts.get(channel, 0)
        if count > 1:
            self._counts[channel] = count - 1
            return succeed(None)
        if count == 0:
            return succeed(None)
        del self._counts[channel]
        del self._handlers[channel]
        protocol = self._pubsub.protocol
        if protocol is None:
            return succeed(None)  # the next connection will not subscribe it
        d = maybeDeferred(protocol.execute_command, "UNSUBSCRIBE", channel)
        d.addErrback(lambda f: f.trap(txredisapi.ConnectionError))
        return d.addCallback(lambda _: None)

    def addReconnectHandler(self, handler: Callable[[list[bytes]], None]) -> None:
        """
        Call C{handler(channels)} each time the PUB/SUB connection is back after a loss, once it has subscribed
        the C{channels} again and the command connection is up: messages published while it was down never
        reached this node.
        """
        self._reconnectHandlers.append(handler)

    def _subscribe(self, protocol: Any, channel: bytes) -> Deferred[None]:
        # One channel per SUBSCRIBE: Redis confirms each channel separately, and txredisapi matches one
        # confirmation to one command.
        waiting: list[Deferred[None]] = []
        self._inflight[channel] = waiting

        def settled(result: Any) -> Any:
            if self._inflight.get(channel) is waiting:
                del self._inflight[channel]
            for d in waiting:
                if isinstance(result, Failure):
                    d.errback(result)
                else:
                    d.callback(None)
            return result if isinstance(result, Failure) else None

        # (txredisapi's subscribe() would iterate a bytes name as a list of channels.)
        return maybeDeferred(protocol.execute_command, "SUBSCRIBE", channel, apply_timeout=False).addBoth(settled)

    def _pubsubReady(self, protocol: Any, reconnect: bool) -> None:
        self._startPinging(protocol)
        channels = list(self._counts)
        subscribed = gatherResults([self._subscribe(protocol, channel) for channel in channels], consumeErrors=True)
        if reconnect:
            log.info("Redis pubsub: subscribed {count} channels again", count=len(channels))
            # The handlers will likely read history to check positions: wait for the command connection too.
            subscribed.addCallback(lambda _: self._commands.whenReady())
            subscribed.addCallbacks(lambda _: self._reconnected(channels), lambda _: None)  # lost again: next time
        else:
            subscribed.addErrback(lambda _: None)

    def _startPinging(self, protocol: Any) -> None:
        self._stopPinging()
        if not self.replyTimeout or self.pubsubPingInterval <= 0:
            return  # a PING without a reply timeout would find nothing

        def ping() -> None:
            if self._pubsub.protocol is not protocol:
                self._stopPinging()  # lost: the next connection pings for itself
                return
            # No reply within replyTimeout makes txredisapi drop the connection; the link then reconnects.
            maybeDeferred(protocol.execute_command, "PING").addErrback(lambda _: None)

        self._pinging = LoopingCall(ping)
        self._pinging.clock = self.reactor
        self._pinging.start(self.pubsubPingInterval, now=False)

    def _stopPinging(self) -> None:
        pinging, self._pinging = self._pinging, None
        if pinging is not None and pinging.running:
            pinging.stop()

    def _reconnected(self, channels: list[bytes]) -> None:
        for handler in list(self._reconnectHandlers):
            try:
                handler(channels)
            except Exception:
                log.failure("Redis reconnect handler {handler}", handler=handler)

    def _message(self, channel: bytes, message: bytes) -> None:
        handler = self._handlers.get(channel)
        if handler is None:
            return  # unsubscribed; the UNSUBSCRIBE is in flight
        try:
            handler(channel, message)
        except Exception:
            log.failure("Redis message on {channel}", channel=channel)


# Encoding. Bytes fields are known from the protocol's schema (client.proto): Publication.data and prev_data,
# ClientInfo.conn_info and chan_info.

_PUBLICATION_BYTES = ("data", "prev_data")
_INFO_BYTES = ("conn_info", "chan_info")
_INFO_STRINGS = ("user", "client")
# The other Publication fields a stored one may carry, with their JSON types.
_PUBLICATION_SCALARS: dict[str, type] = {
    "time": int, "version": int, "score": int, "delta": bool, "removed": bool, "channel": str, "key": str, "epoch": str,
}


def _packBytes(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value)
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return [base64.b64encode(value).decode("ascii")]
    return value


def _readBytes(value: Any, what: str) -> bytes:
    if type(value) is str:
        return value.encode("utf-8")
    if type(value) is list and len(value) == 1 and type(value[0]) is str:
        try:
            return base64.b64decode(value[0], validate=True)
        except ValueError:
            pass
    raise RedisReplyError(f"{what}: not bytes as this engine stores them")


def _packInfo(info: dict[str, Any]) -> dict[str, Any]:
    packed = dict(info)
    for key in _INFO_BYTES:
        if key in packed:
            packed[key] = _packBytes(packed[key])
    return packed


def _readInfo(value: Any) -> dict[str, Any]:
    """A stored ClientInfo; fields this version does not know are left out."""
    if type(value) is not dict:
        raise RedisReplyError("client info: not an object")
    info: dict[str, Any] = {}
    for key, item in value.items():
        if key in _INFO_STRINGS:
            if type(item) is not str:
                raise RedisReplyError(f"client info: {key} is not a string")
            info[key] = item
        elif key in _INFO_BYTES:
            info[key] = _readBytes(item, f"client info: {key}")
    return info


def _readTags(value: Any) -> dict[str, str]:
    if type(value) is not dict or not all(type(k) is str and type(v) is str for k, v in value.items()):
        raise RedisReplyError("publication: tags are not strings")
    return value


def _json(data: Any, what: str) -> Any:
    if type(data) is not bytes:
        raise RedisReplyError(f"{what}: not a bulk string")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        raise RedisReplyError(f"{what}: not JSON") from None


def encodePublication(publication: dict[str, Any]) -> bytes:
    """A publication dict (its C{offset} left out) as stored and published. @raise TypeError: not encodable."""
    packed = {}
    for key, value in publication.items():
        if key == "offset":
            continue
        if key in _PUBLICATION_BYTES:
            value = _packBytes(value)
        elif key == "info" and isinstance(value, dict):
            value = _packInfo(value)
        packed[key] = value
    return orjson.dumps(packed)


def decodePublication(data: bytes) -> dict[str, Any]:
    """
    The dict L{encodePublication} was given (less its offset), its fields checked against the protocol's
    Publication; fields this version does not know are left out.

    @raise RedisReplyError: C{data} is not a publication as this engine stores them.
    """
    stored = _json(data, "publication")
    if type(stored) is not dict or "data" not in stored:
        raise RedisReplyError("publication: not an object with data")
    publication: dict[str, Any] = {}
    for key, value in stored.items():
        if key in _PUBLICATION_BYTES:
            publication[key] = _readBytes(value, f"publication: {key}")
        elif key == "info":
            publication[key] = _readInfo(value)
        elif key == "tags":
            publication[key] = _readTags(value)
        elif key in _PUBLICATION_SCALARS:
            if type(value) is not _PUBLICATION_SCALARS[key]:
                raise RedisReplyError(f"publication: {key} of the wrong type")
            publication[key] = value
    return publication


def encodeInfo(info: dict[str, Any]) -> bytes:
    """A ClientInfo dict as stored in presence."""
    return orjson.dumps(_packInfo(info))


def decodeInfo(data: bytes) -> dict[str, Any]:
    """A ClientInfo as stored in presence. @raise RedisReplyError: not one."""
    return _readInfo(_json(data, "client info"))


def _readInt(value: Any, what: str) -> int:
    """A non-negative integer reply, or a bulk string of one (what Lua's numbers and strings become)."""
    if type(value) is int and value >= 0:
        return value
    if type(value) is bytes and 0 < len(value) <= 20 and value.isdigit():
        return int(value)
    raise RedisReplyError(f"{what}: not an integer")


def _readText(value: Any, what: str) -> str:
    if type(value) is bytes:
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            pass
    raise RedisReplyError(f"{what}: not UTF-8 text")


def readPublishReply(reply: Any) -> dict[str, Any]:
    """The publish script's C{{top, epoch}}. @raise RedisReplyError: another shape."""
    if type(reply) is not list or len(reply) != 2:
        raise RedisReplyError("publish: not a [top, epoch] reply")
    return {"offset": _readInt(reply[0], "publish: top"), "epoch": _readText(reply[1], "publish: epoch")}


def readHistoryReply(reply: Any) -> HistoryResult:
    """
    The history script's C{{top, epoch, entries}}, each entry C{[b"<offset>-0", [b"d", publication]]}.

    @raise RedisReplyError: another shape.
    """
    if type(reply) is not list or len(reply) != 3 or type(reply[2]) is not list:
        raise RedisReplyError("history: not a [top, epoch, entries] reply")
    top, epoch = _readInt(reply[0], "history: top"), _readText(reply[1], "history: epoch")
    publications = []
    for entry in reply[2]:
        if type(entry) is not list or len(entry) != 2 or type(entry[0]) is not bytes or type(entry[1]) is not list:
            raise RedisReplyError("history: not a stream entry")
        entryID, fields = entry
        offset = _readInt(entryID.partition(b"-")[0], "history: entry id")
        payloads = [fields[i + 1] for i in range(0, len(fields) - 1, 2) if fields[i] == b"d"]
        publication = decodePublication(payloads[0] if payloads else None)
        publication["offset"] = offset
        publications.append(publication)
    return HistoryResult(publications, top, epoch)


def readPresenceReply(reply: Any) -> dict[str, dict]:
    """HGETALL of a presence hash: client id -> ClientInfo. @raise RedisReplyError: another shape."""
    if type(reply) is not list or len(reply) % 2:
        raise RedisReplyError("presence: not a list of pairs")
    return {_readText(reply[i], "presence: client id"): decodeInfo(reply[i + 1]) for i in range(0, len(reply), 2)}


def readPubSubMessage(message: bytes) -> tuple[int, str, dict[str, Any]]:
    """
    A PUB/SUB publication C{<offset>:<epoch>:<json>}: C{(offset, epoch, publication)}.

    @raise RedisReplyError: not one.
    """
    offset, _, rest = message.partition(b":")
    epoch, _, payload = rest.partition(b":")
    return _readInt(offset, "message: offset"), _readText(epoch, "message: epoch"), decodePublication(payload)


def _milliseconds(seconds: float) -> int:
    """A TTL for PEXPIRE: whole milliseconds, at least one (0 would delete the key)."""
    return max(1, math.ceil(seconds * 1000))


# Lua. Numbers pass as strings; "%d" keeps large offsets out of Lua's exponent notation.

_PUBLISH = b"""
-- KEYS: meta hash, stream. ARGV: publication, size, ttl ms, meta ttl ms, epoch if new, PUB/SUB channel.
local epoch = redis.call("hget", KEYS[1], "e")
if not epoch then
  epoch = ARGV[5]
  redis.call("del", KEYS[2])
  redis.call("hset", KEYS[1], "e", epoch, "s", 0)
end
local top = redis.call("hincrby", KEYS[1], "s", 1)
local offset = string.format("%d", top)
redis.call("pexpire", KEYS[1], ARGV[4])
redis.call("xadd", KEYS[2], "MAXLEN", ARGV[2], offset .. "-0", "d", ARGV[1])
redis.call("pexpire", KEYS[2], ARGV[3])
redis.call("publish", ARGV[6], offset .. ":" .. epoch .. ":" .. ARGV[1])
return {top, epoch}
"""

_HISTORY = b"""
-- KEYS: meta hash, stream. ARGV: epoch if new, meta ttl ms, since epoch, count (-1 all, 0 none), reverse,
-- lowest id, highest id.
local state = redis.call("hmget", KEYS[1], "s", "e")
local top, epoch = tonumber(state[1]) or 0, state[2]
if not epoch then
  epoch = ARGV[1]
  top = 0
  redis.call("del", KEYS[2])
  redis.call("hset", KEYS[1], "e", epoch, "s", 0)
end
redis.call("pexpire", KEYS[1], ARGV[2])
local count = tonumber(ARGV[4])
if count == 0 or (ARGV[3] ~= "" and ARGV[3] ~= epoch) then
  return {top, epoch, {}}
end
local entries
if ARGV[5] == "1" then
  if count > 0 then
    entries = redis.call("xrevrange", KEYS[2], ARGV[7], ARGV[6], "COUNT", count)
  else
    entries = redis.call("xrevrange", KEYS[2], ARGV[7], ARGV[6])
  end
elseif count > 0 then
  entries = redis.call("xrange", KEYS[2], ARGV[6], ARGV[7], "COUNT", count)
else
  entries = redis.call("xrange", KEYS[2], ARGV[6], ARGV[7])
end
return {top, epoch, entries}
"""

_PRESENCE_ADD = b"""
-- KEYS: expiry zset, data hash. ARGV: key ttl ms, entry expiry time, client id, info.
redis.call("zadd", KEYS[1], ARGV[2], ARGV[3])
redis.call("hset", KEYS[2], ARGV[3], ARGV[4])
redis.call("pexpire", KEYS[1], ARGV[1])
redis.call("pexpire", KEYS[2], ARGV[1])
"""

_PRESENCE_REMOVE = b"""
-- KEYS: expiry zset, data hash. ARGV: client id.
redis.call("hdel", KEYS[2], ARGV[1])
redis.call("zrem", KEYS[1], ARGV[1])
"""

_PRESENCE_GET = b"""
-- KEYS: expiry zset, data hash. ARGV: now. Drops the expired entries first.
local expired = redis.call("zrangebyscore", KEYS[1], "-inf", ARGV[1])
if #expired > 0 then
  for i = 1, #expired, 1000 do
    redis.call("hdel", KEYS[2], unpack(expired, i, math.min(i + 999, #expired)))
  end
  redis.call("zremrangebyscore", KEYS[1], "-inf", ARGV[1])
end
return redis.call("hgetall", KEYS[2])
"""


@implementer(IBroker)
class RedisBroker:
    """
    PUB/SUB and history streams in Redis (see the module docstring for the keys and scripts).

    Every Deferred fires later (after a round trip), and fails while the command connection is down: a
    publication is never reported sent when it was not. A publisher may get its publish result before its own
    publication comes back through PUB/SUB.
    """

    def __init__(
        self,
        shard: RedisShard,
        historyMetaTTL: float = DEFAULT_HISTORY_META_TTL,
        rng: Optional[random.Random] = None,
        passEpoch: bool = False,
    ) -> None:
        """
        @param shard: the connections (started separately).
        @param historyMetaTTL: how long an unused stream lives when a call passes no meta TTL (seconds).
        @param rng: the source of epochs (8 letters: a stream recreated after Redis lost it gets another one).
        @param passEpoch: call the handler as C{handler(channel, publication, epoch)}, the epoch of the stream
            the publication was stored in ("" without history), as L{httpstream.node.node.Node} accepts: a
            positioned subscriber can tell that the stream it follows was lost.
        """
        self._shard = shard
        self._prefix = shard.prefix
        self._defaultMetaTTL = historyMetaTTL
        self._rng = rng if rng is not None else random.Random()
        self._passEpoch = passEpoch
        self._handler: Optional[Callable[..., None]] = None
        self._joinLeaveHandler: Optional[Callable[[str, dict], None]] = None
        self._reconnectHandler: Optional[Callable[[list[str]], None]] = None
        self._client = f"{self._prefix}.client.".encode()
        shard.addReconnectHandler(self._reconnected)

    def setHandler(self, handler: Callable[..., None]) -> None:
        self._handler = handler

    def setJoinLeaveHandler(self, handler: Callable[[str, dict], None]) -> None:
        self._joinLeaveHandler = handler

    def publishJoinLeave(self, channel: str, push: dict) -> Deferred[None]:
        kind, body = ("j", push["join"]) if "join" in push else ("l", push["leave"])
        try:
            payload = kind.encode() + encodeInfo(body["info"])
        except TypeError:
            return fail()
        return self._shard.execute("PUBLISH", self._pubsubName(channel), payload).addCallback(lambda _: None)

    def setReconnectHandler(self, handler: Callable[[list[str]], None]) -> None:
        """
        Call C{handler(channels)} when the PUB/SUB connection is back after a loss, with the channels it has
        subscribed again (the command connection is up by then): their publications sent while it was down did
        not reach this node, so positioned subscribers should compare their position with the stream's top (a
        history call with limit 0) and be unsubscribed with 2500 (insufficient state) on a gap or another epoch,
        to resubscribe and recover, as Centrifugo's periodic position check would find.
        """
        self._reconnectHandler = handler

    def subscribe(self, channel: str) -> Deferred[None]:
        return self._shard.subscribe(self._pubsubName(channel), self._message)

    def unsubscribe(self, channel: str) -> Deferred[None]:
        return self._shard.unsubscribe(self._pubsubName(channel))

    def publish(
        self,
        channel: str,
        publication: dict,
        historySize: int = 0,
        historyTTL: float = 0,
        historyMetaTTL: float = 0,
    ) -> Deferred[dict]:
        try:
            payload = encodePublication(publication)
        except TypeError:
            return fail()
        if not hasHistory(historySize, historyTTL):
            d = self._shard.execute("PUBLISH", self._pubsubName(channel), b"0::" + payload)
            return d.addCallback(lambda _: {})
        d = self._shard.eval(
            _PUBLISH,
            self._historyKeys(channel),
            [
                payload,
                historySize,
                _milliseconds(historyTTL),
                _milliseconds(historyMetaTTL or self._defaultMetaTTL),
                self._newEpoch(),
                self._pubsubName(channel),
            ],
        )
        return d.addCallback(readPublishReply)

    def history(
        self,
        channel: str,
        since: Optional[dict] = None,
        limit: int = 0,
        reverse: bool = False,
        metaTTL: float = 0,
    ) -> Deferred[HistoryResult]:
        try:
            checkHistoryRequest(since, reverse)
        except HistoryError:
            return fail()
        lowest, highest, sinceEpoch = b"-", b"+", ""
        if since is not None:
            sinceEpoch = since.get("epoch", "")
            sinceOffset = min(max(since.get("offset", 0), 0), _MAX_OFFSET)
            if reverse:
                highest = b"%d" % (sinceOffset - 1)
            else:
                lowest = b"%d" % (sinceOffset + 1)
        d = self._shard.eval(
            _HISTORY,
            self._historyKeys(channel),
            [
                self._newEpoch(),
                _milliseconds(metaTTL or self._defaultMetaTTL),
                sinceEpoch,
                min(limit, 2**31) if limit >= 0 else -1,  # (Lua numbers are doubles)
                b"1" if reverse else b"0",
                lowest,
                highest,
            ],
        )

        def read(reply: Any) -> HistoryResult:
            result = readHistoryReply(reply)
            checkSinceEpoch(since, result.offset, result.epoch)
            return result

        return d.addCallback(read)

    def removeHistory(self, channel: str) -> Deferred[None]:
        return self._shard.execute("DEL", self._historyKeys(channel)[1]).addCallback(lambda _: None)

    def _pubsubName(self, channel: str) -> bytes:
        return self._client + channel.encode()

    def _historyKeys(self, channel: str) -> tuple[bytes, bytes]:
        return (f"{self._prefix}.history.meta.{channel}".encode(), f"{self._prefix}.history.stream.{channel}".encode())

    def _newEpoch(self) -> str:
        return "".join(self._rng.choice(_EPOCH_LETTERS) for _ in range(8))

    def _message(self, name: bytes, message: bytes) -> None:
        channel = name[len(self._client) :].decode("utf-8", "replace")
        if message[:1] in (b"j", b"l"):
            self._joinLeave(channel, message)
            return
        if self._handler is None:
            return
        try:
            offset, epoch, publication = readPubSubMessage(message)
        except RedisReplyError as e:
            log.warn("Redis: undecodable publication on {channel} dropped: {error}", channel=channel, error=e)
            return
        if offset:
            publication["offset"] = offset
        if self._passEpoch:
            self._handler(channel, publication, epoch)
        else:
            self._handler(channel, publication)

    def _joinLeave(self, channel: str, message: bytes) -> None:
        if self._joinLeaveHandler is None:
            return
        try:
            info = decodeInfo(message[1:])
        except RedisReplyError as e:
            log.warn("Redis: undecodable join/leave on {channel} dropped: {error}", channel=channel, error=e)
            return
        self._joinLeaveHandler(channel, {"join" if message[:1] == b"j" else "leave": {"info": info}})

    def _reconnected(self, names: list[bytes]) -> None:
        if self._reconnectHandler is None:
            return
        prefix = self._client
        self._reconnectHandler([name[len(prefix) :].decode() for name in names if name.startswith(prefix)])


@implementer(IPresenceManager)
class RedisPresence:
    """
    Presence in Redis: entries expire C{ttl} seconds after their last L{add} (the client refreshes them every
    C{client_presence_update_interval}), so a dead node's clients disappear too.
    """

    def __init__(
        self, shard: RedisShard, ttl: float = DEFAULT_PRESENCE_TTL, clock: Optional[IReactorTime] = None
    ) -> None:
        """
        @param ttl: seconds an entry lives without a refresh (C{global_presence_ttl}).
        @param clock: whose C{seconds} dates the entries (None: C{time.time}); every node should agree on it.
        """
        self._shard = shard
        self._prefix = shard.prefix
        self._ttl = ttl
        self._now: Callable[[], float] = clock.seconds if clock is not None else time.time

    def add(self, channel: str, clientID: str, info: dict) -> Deferred[None]:
        try:
            encoded = encodeInfo(info)
        except TypeError:
            return fail()
        ttl, expireAt = _milliseconds(self._ttl), repr(self._now() + self._ttl)
        d = self._shard.eval(_PRESENCE_ADD, self._keys(channel), [ttl, expireAt, clientID, encoded])
        return d.addCallback(lambda _: None)

    def remove(self, channel: str, clientID: str) -> Deferred[None]:
        return self._shard.eval(_PRESENCE_REMOVE, self._keys(channel), [clientID]).addCallback(lambda _: None)

    def presence(self, channel: str) -> Deferred[dict[str, dict]]:
        d = self._shard.eval(_PRESENCE_GET, self._keys(channel), [repr(self._now())])
        return d.addCallback(readPresenceReply)

    def stats(self, channel: str) -> Deferred[dict[str, int]]:
        def count(clients: dict[str, dict]) -> dict[str, int]:
            users = {info.get("user", "") for info in clients.values()}
            return {"num_clients": len(clients), "num_users": len(users)}

        return self.presence(channel).addCallback(count)

    def _keys(self, channel: str) -> tuple[bytes, bytes]:
        return (
            f"{self._prefix}.presence.expire.{channel}".encode(),
            f"{self._prefix}.presence.data.{channel}".encode(),
        )
