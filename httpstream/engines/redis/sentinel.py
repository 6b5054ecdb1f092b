# -*- test-case-name: tests.engines.test_engine_sentinel -*-
"""
Redis Sentinel: where the master of a name is now, and word of its moves.

L{Sentinels} asks the Sentinels in turn (C{SENTINEL get-master-addr-by-name}; one that is down or does not know the
name: the next), and keeps one of them watched on PUB/SUB for C{+switch-master}, the event a Sentinel publishes when
a failover has promoted a replica. A L{RedisShard} built with a L{SentinelConfig} connects through
L{MasterEndpoint}, which asks for the master before every connection, and checks what it reached is a master.

Each question is a short connection of its own (a question is asked only when a connection to the master is made),
written and read here with L{httpstream.engines.redis.resp}: a Sentinel speaks plain RESP.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Optional, Sequence

import attrs
import txredisapi
from twisted.application.internet import ClientService
from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.interfaces import IDelayedCall, IStreamClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from httpstream.engines.redis.errors import RedisUnavailable
from httpstream.engines.redis.resp import INCOMPLETE, ReplyReader, encodeCommand
from httpstream.logs import Logger

__all__ = [
    "DEFAULT_SENTINEL_PORT", "MasterEndpoint", "NotMaster", "SentinelConfig", "Sentinels", "parseSentinels",
    "verifyMaster",
]

log = Logger()

DEFAULT_SENTINEL_PORT = 26379
SWITCH_MASTER = b"+switch-master"

# Builds the endpoint of one address: (host, port, tls) -> endpoint.
EndpointFor = Callable[[str, int, bool], IStreamClientEndpoint]


@attrs.frozen
class SentinelConfig:
    """The Sentinels of one master and how to talk to them (the master's own credentials are the shard's)."""

    addresses: tuple[tuple[str, int], ...]
    masterName: str
    user: str = ""
    password: str = attrs.field(default="", repr=False)
    tls: bool = False


def parseSentinels(
    entry: str, masterName: str, user: str = "", password: str = "", tls: bool = False
) -> SentinelConfig:
    """
    Read one C{redis_sentinel_address} entry: C{host[:port]} comma-separated (port 26379 when left out).

    @raise ValueError: a bad address, or no master name.
    """
    if not masterName:
        raise ValueError("a Sentinel master name is required")
    addresses = []
    for item in entry.split(","):
        item = item.strip()
        if item.startswith("["):
            host, bracket, rest = item[1:].partition("]")
            if not bracket or (rest and not rest.startswith(":")):
                raise ValueError(f"expected [address]:port, got {item!r}")
            portText = rest[1:]
        elif item.count(":") > 1:
            raise ValueError(f"an IPv6 address needs brackets: [address]:port, got {item!r}")
        else:
            host, _, portText = item.partition(":")
        if not host:
            raise ValueError(f"no host in {item!r}")
        if portText and (not portText.isdigit() or not 0 < int(portText) < 65536):
            raise ValueError(f"invalid port in {item!r}")
        addresses.append((host, int(portText) if portText else DEFAULT_SENTINEL_PORT))
    return SentinelConfig(tuple(addresses), masterName, user, password, tls)


class NotMaster(RedisUnavailable):
    """A connection reached a Redis that is not the master (a replica, or a Sentinel): it is dropped."""


def verifyMaster(execute: Callable[..., Any]) -> Deferred[None]:
    """
    Ask a new connection's Redis its C{ROLE} (C{execute(*command)} returns a Deferred reply).

    @return: a Deferred firing once it says master; failing with L{NotMaster} when not.
    """

    def check(reply: Any) -> None:
        # A master answers [b"master", offset, replicas], a replica [b"slave", host, port, state, offset] (of which
        # txredisapi's subscriber protocol passes on the last three: anything but b"master" is not a master).
        role = reply[0] if type(reply) is list and reply else reply
        if role != b"master":
            raise NotMaster("not the master (a replica or a Sentinel)")

    return maybeDeferred(execute, "ROLE").addCallback(check)


def _show(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Question(Protocol):
    """Send commands at once, collect as many replies, hang up."""

    def __init__(self, commands: Sequence[Sequence[Any]]) -> None:
        self._commands = commands
        self._reader = ReplyReader()
        self._replies: list[Any] = []
        self.answered: Deferred[list[Any]] = Deferred(lambda _: self._abort())

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def connectionMade(self) -> None:
        self.transport.write(b"".join(encodeCommand(*command) for command in self._commands))  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self._reader.feed(data)
        try:
            while (reply := self._reader.gets()) is not INCOMPLETE:
                self._replies.append(reply)
        except txredisapi.InvalidResponse as e:
            self._abort()
            if not self.answered.called:
                self.answered.errback(e)
            return
        if len(self._replies) >= len(self._commands) and not self.answered.called:
            self.transport.loseConnection()  # type: ignore[union-attr]
            self.answered.callback(self._replies)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if not self.answered.called:
            self.answered.errback(reason)


class _Watch(Protocol):
    """Subscribed to C{+switch-master} on one Sentinel."""

    def __init__(self, sentinels: "Sentinels", address: tuple[str, int]) -> None:
        self._sentinels = sentinels
        self._address = address
        self._reader = ReplyReader()
        self._unconfirmed: Optional[IDelayedCall] = None
        self._silent = False

    def connectionMade(self) -> None:
        commands = self._sentinels._auth() + [("SUBSCRIBE", SWITCH_MASTER)]
        self.transport.write(b"".join(encodeCommand(*command) for command in commands))  # type: ignore[union-attr]
        # A Sentinel that takes the connection and never answers would leave every failover unheard: the next one.
        if self._sentinels._timeout:
            self._unconfirmed = self._sentinels.reactor.callLater(self._sentinels._timeout, self._hangUp)

    def _hangUp(self) -> None:
        self._unconfirmed = None
        self._silent = True
        self.transport.abortConnection()  # type: ignore[union-attr]

    def _confirmed(self) -> None:
        unconfirmed, self._unconfirmed = self._unconfirmed, None
        if unconfirmed is not None and unconfirmed.active():
            unconfirmed.cancel()

    def dataReceived(self, data: bytes) -> None:
        self._reader.feed(data)
        try:
            while (reply := self._reader.gets()) is not INCOMPLETE:
                self._reply(reply)
        except txredisapi.InvalidResponse as e:
            log.error("Redis Sentinel {address}: {error}; closing", address=_show(self._address), error=e)
            self.transport.abortConnection()  # type: ignore[union-attr]

    def _reply(self, reply: Any) -> None:
        if isinstance(reply, txredisapi.ResponseError):
            log.error("Redis Sentinel {address} refused to be watched: {error}", address=_show(self._address),
                      error=reply)
            self.transport.loseConnection()  # type: ignore[union-attr]
        elif type(reply) is list and len(reply) == 3 and reply[1] == SWITCH_MASTER:
            if reply[0] == b"subscribe":
                self._confirmed()
                self._sentinels._watching(self._address)
            elif reply[0] == b"message" and type(reply[2]) is bytes:
                self._sentinels._switched(self._address, reply[2])

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self._confirmed()
        if self._silent:
            reason = Failure(RedisUnavailable(f"no reply to SUBSCRIBE within {self._sentinels._timeout:g} s"))
        self._sentinels._unwatched(self._address, reason)


@implementer(IStreamClientEndpoint)
class _NextSentinel:
    """Each connection to the next Sentinel in turn: the watch moves on when its Sentinel goes away."""

    def __init__(self, sentinels: "Sentinels") -> None:
        self._sentinels = sentinels
        self._turn = 0

    def connect(self, protocolFactory: Any) -> Deferred[Any]:
        addresses = self._sentinels.addresses
        address = addresses[self._turn % len(addresses)]
        self._turn += 1
        self._sentinels._watchAddress = address

        def failed(failure: Failure) -> Failure:
            self._sentinels._unwatched(address, failure)
            return failure

        return self._sentinels._endpointFor(address).connect(protocolFactory).addErrback(failed)


class _WatchFactory(Factory):
    noisy = False

    def __init__(self, sentinels: "Sentinels") -> None:
        self._sentinels = sentinels

    def buildProtocol(self, addr: Any) -> _Watch:
        return _Watch(self._sentinels, self._sentinels._watchAddress)


class Sentinels:
    """
    The Sentinels of one master: L{masterAddress} asks where it is; L{watch} hears when a failover moves it.

    @ivar addresses: the Sentinels, the one that answered last first.
    """

    def __init__(
        self,
        reactor: Any,
        config: SentinelConfig,
        endpointFor: EndpointFor,
        timeout: Optional[float] = 5.0,
        initialRetryDelay: float = 0.1,
        maxRetryDelay: float = 5.0,
        rng: Optional[random.Random] = None,
    ) -> None:
        """
        @param reactor: times the questions (L{IReactorTime}); connects through C{endpointFor}.
        @param endpointFor: the endpoint of C{(host, port, tls)} (TLS checked as the shard checks the master's).
        @param timeout: seconds a Sentinel has to answer (None: forever).
        @param initialRetryDelay: seconds before the watch connects again after a loss, doubling up to
            C{maxRetryDelay}.
        @param rng: the retry delays' jitter (the shard's).
        """
        self.reactor = reactor
        self.config = config
        self.addresses = list(config.addresses)
        self._endpointFor0 = endpointFor
        self._timeout = timeout
        self._initialRetryDelay, self._maxRetryDelay = initialRetryDelay, maxRetryDelay
        self._rng = rng if rng is not None else random.Random()
        self._watch: Optional[ClientService] = None
        self._onSwitch: Callable[[str, int], None] = lambda host, port: None
        self._onWatching: Callable[[], None] = lambda: None
        self._unwatchedLogged = False
        self._watchAddress = self.addresses[0]

    def _retryDelay(self, attempt: int) -> float:
        # As the shard's connections back off: doubling, bounded, with 20% jitter.
        delay = min(self._initialRetryDelay * 2.0 ** min(attempt - 1, 30), self._maxRetryDelay)
        return delay * (1 + 0.2 * self._rng.random())

    @property
    def masterName(self) -> str:
        return self.config.masterName

    def _endpointFor(self, address: tuple[str, int]) -> IStreamClientEndpoint:
        return self._endpointFor0(address[0], address[1], self.config.tls)

    def _auth(self) -> list[tuple[str, ...]]:
        if not self.config.password:
            return []
        if self.config.user:
            return [("AUTH", self.config.user, self.config.password)]
        return [("AUTH", self.config.password)]

    # Asking

    def masterAddress(self) -> Deferred[tuple[str, int]]:
        """
        Where the master is now, as the first Sentinel that knows says; that Sentinel is asked first next time.

        @return: C{(host, port)}, or a failure (L{RedisUnavailable}) naming why each Sentinel did not say.
        """
        reasons: list[str] = []

        def ask(index: int) -> Deferred[tuple[str, int]]:
            if index == len(self.addresses):
                return fail(RedisUnavailable(
                    f"no Sentinel gave the address of master {self.masterName!r} ({'; '.join(reasons)})"
                ))
            address = self.addresses[index]
            d = self._ask(address)

            def answered(host: str, port: int) -> tuple[str, int]:
                self.addresses.remove(address)
                self.addresses.insert(0, address)
                return host, port

            def failed(failure: Failure) -> Deferred[tuple[str, int]]:
                reasons.append(f"{_show(address)}: {failure.getErrorMessage() or failure.value.__class__.__name__}")
                return ask(index + 1)

            return d.addCallback(lambda hostPort: answered(*hostPort)).addErrback(failed)

        return ask(0)

    def _ask(self, address: tuple[str, int]) -> Deferred[tuple[str, int]]:
        question = _Question(self._auth() + [("SENTINEL", "get-master-addr-by-name", self.masterName)])
        factory = Factory.forProtocol(lambda: question)
        factory.noisy = False  # a question per connection made: no "Starting factory" lines
        d: Deferred[Any] = self._endpointFor(address).connect(factory)
        d.addCallback(lambda _: question.answered)
        if self._timeout:
            d.addTimeout(self._timeout, self.reactor)
        return d.addCallback(self._readAnswer)

    def _readAnswer(self, replies: list[Any]) -> tuple[str, int]:
        for reply in replies:
            if isinstance(reply, txredisapi.ResponseError):
                raise RedisUnavailable(f"error reply: {reply}")
        answer = replies[-1]
        if answer is None:
            raise RedisUnavailable(f"does not know master {self.masterName!r}")
        if (type(answer) is not list or len(answer) != 2 or type(answer[0]) is not bytes
                or type(answer[1]) is not bytes or not answer[1].isdigit()):
            raise RedisUnavailable(f"not a [host, port] answer: {answer!r}")
        return answer[0].decode("utf-8", "replace"), int(answer[1])

    # Watching

    def watch(self, onSwitch: Callable[[str, int], None], onWatching: Callable[[], None] = lambda: None) -> None:
        """
        Start watching for C{+switch-master} of this master: C{onSwitch(host, port)} with its new address each time
        a failover moves it, C{onWatching()} each time a Sentinel is watched anew (a failover may have happened while
        none was). The watch moves to the next Sentinel when its own goes away.
        """
        self._onSwitch = onSwitch
        self._onWatching = onWatching
        self._watch = ClientService(
            _NextSentinel(self), _WatchFactory(self), retryPolicy=self._retryDelay, clock=self.reactor
        )
        self._watch.startService()

    def stop(self) -> Deferred[None]:
        watch, self._watch = self._watch, None
        if watch is None:
            return succeed(None)
        return watch.stopService()

    def _watching(self, address: tuple[str, int]) -> None:
        self._unwatchedLogged = False
        log.info("Redis Sentinel {address}: watching master {name}", address=_show(address), name=self.masterName)
        self._onWatching()

    def _unwatched(self, address: tuple[str, int], reason: Failure) -> None:
        if self._watch is not None and not self._unwatchedLogged:
            self._unwatchedLogged = True
            log.warn("Redis Sentinel {address}: watch lost ({reason}); trying the next Sentinel",
                     address=_show(address), reason=reason.getErrorMessage())

    def _switched(self, address: tuple[str, int], message: bytes) -> None:
        # "<master name> <old ip> <old port> <new ip> <new port>"
        parts = message.decode("utf-8", "replace").split()
        if len(parts) != 5 or parts[0] != self.masterName or not parts[4].isdigit():
            return  # another master's, or not understood
        log.info("Redis Sentinel {address}: master {name} moved from {old} to {new}", address=_show(address),
                 name=self.masterName, old=_show((parts[1], int(parts[2]) if parts[2].isdigit() else 0)),
                 new=_show((parts[3], int(parts[4]))))
        self._onSwitch(parts[3], int(parts[4]))


@implementer(IStreamClientEndpoint)
class MasterEndpoint:
    """Connects to the master the Sentinels name at the time: a reconnection follows a failover."""

    def __init__(
        self, sentinels: Sentinels, endpointFor: Callable[[str, int], IStreamClientEndpoint],
        found: Callable[[str, int], None] = lambda host, port: None,
    ) -> None:
        """
        @param endpointFor: the endpoint of the master at C{(host, port)}.
        @param found: told each address the Sentinels gave, before connecting to it.
        """
        self._sentinels = sentinels
        self._endpointFor = endpointFor
        self._found = found

    def __repr__(self) -> str:
        # ClientService's retry log lines name the endpoint.
        sentinels = ",".join(map(_show, self._sentinels.addresses))
        return f"<master {self._sentinels.masterName!r} via Sentinel {sentinels}>"

    def connect(self, protocolFactory: Any) -> Deferred[Any]:
        def connect(hostPort: tuple[str, int]) -> Deferred[Any]:
            self._found(*hostPort)
            return self._endpointFor(*hostPort).connect(protocolFactory)

        return self._sentinels.masterAddress().addCallback(connect)
