# -*- test-case-name: tests.engines.test_engine_redis -*-
"""
One connection to Redis kept up: L{Link} reconnects with exponential backoff (a L{ClientService}), proves each new
connection usable (AUTH, SELECT, a PING) before anyone uses it, and fails calls at once while it is down.

The protocols are txredisapi's, reading replies with L{httpstream.engines.redis.resp.ReplyReader}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

import txredisapi
from twisted.application.internet import ClientService
from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.python.failure import Failure
from zope.interface import implementer

from httpstream.directwrite import writeNow
from httpstream.engines.redis.errors import RedisReplyError, RedisUnavailable
from httpstream.engines.redis.resp import INCOMPLETE, ReplyReader
from httpstream.engines.redis.sentinel import NotMaster
from httpstream.logs import Logger

if TYPE_CHECKING:
    from httpstream.engines.redis.shard import RedisShard

__all__ = ["CommandProtocol", "Link", "ShardedSubscriberProtocol", "SubscriberProtocol"]

log = Logger()


class _WholeReplies:
    """Mixed into txredisapi's protocols: parse with L{ReplyReader}; tell the link when the connection ends."""

    factory: "Link"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._reader = ReplyReader()

    def dataReceived(self, data: bytes, unpause: bool = False) -> None:
        self._reader.feed(data)
        while True:
            try:
                reply = self._reader.gets()
            except txredisapi.InvalidResponse as e:
                log.error("Redis {link}: {error}; closing the connection", link=self.factory.name, error=e)
                self.transport.abortConnection()  # type: ignore[attr-defined]
                return
            if reply is INCOMPLETE:
                return
            self.replyReceived(reply)  # type: ignore[attr-defined]

    def connectionLost(self, reason: Failure) -> None:
        # The link first: txredisapi then fails the pending commands, whose errbacks may call again at once.
        self.factory.lost(self, reason)
        super().connectionLost(reason)  # type: ignore[misc]


class _Writes:
    """
    The command connection's transport as txredisapi's protocol sees it: while C{now} is set, a write goes straight
    to the socket when nothing waits before it (L{writeNow}); otherwise it waits in Twisted's buffer for the next
    poll, where the commands of a turn leave together. Everything else is the transport's.
    """

    __slots__ = ("transport", "now")

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.now = False

    def write(self, data: bytes) -> None:
        if self.now:
            writeNow(self.transport, data)
        else:
            self.transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


# (txredisapi has no type hints: its classes are Any to mypy.)
class CommandProtocol(_WholeReplies, txredisapi.BaseRedisProtocol):  # type: ignore[misc]
    """The command connection's protocol: commands and Lua scripts."""

    def makeConnection(self, transport: Any) -> None:
        super().makeConnection(_Writes(transport))

    def executeNow(self, *args: Any) -> Deferred[Any]:
        """
        L{execute_command}, written to the socket at once rather than on the next poll: for a command that is
        already the batch of its turn (the control plane's PUBLISH of forwarded emulation requests), whose latency
        is all that waiting would add. Most commands do better leaving with the others of their turn, in one send.
        """
        writes = self.transport
        writes.now = True
        try:
            return self.execute_command(*args)  # type: ignore[no-any-return]
        finally:
            writes.now = False

    def executeAsking(self, *args: Any) -> Deferred[Any]:
        """ASKING then the command (a Redis Cluster's ASK redirection); the command's reply."""
        # Both written at once on one connection: ASKING holds for the next command only.
        self.execute_command(b"ASKING").addErrback(lambda _: None)
        return self.execute_command(*args)  # type: ignore[no-any-return]


class SubscriberProtocol(_WholeReplies, txredisapi.SubscriberProtocol):  # type: ignore[misc]
    """The PUB/SUB connection's protocol: each message goes to the link's C{onMessage}."""

    def messageReceived(self, pattern: Optional[bytes], channel: bytes, message: bytes) -> None:
        self.factory.onMessage(channel, message)


class ShardedSubscriberProtocol(_WholeReplies, txredisapi.SubscriberProtocol):  # type: ignore[misc]
    """
    The PUB/SUB connection's protocol for sharded PUB/SUB (SSUBSCRIBE, Redis 7): C{smessage} pushes go to the
    link's C{onMessage}, and a C{sunsubscribe} push nobody asked for (Redis drops a name whose Cluster slot moved to
    another master) to its C{onDropped}, rather than into the reply of the next command (as txredisapi would).

    @ivar unsubscribing: the names whose SUNSUBSCRIBE was sent and not confirmed: their C{sunsubscribe} is a reply.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.unsubscribing: set[bytes] = set()

    def replyReceived(self, reply: Any) -> None:
        if isinstance(reply, list) and len(reply) == 3:
            kind = reply[0]
            if kind == b"smessage":
                self.factory.onMessage(reply[1], reply[2])
                return
            if kind == b"sunsubscribe":
                if reply[1] in self.unsubscribing:
                    self.unsubscribing.discard(reply[1])
                else:
                    self.factory.onDropped(reply[1])
                    return
        super().replyReceived(reply)


class Link(Factory):
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
        protocolClass: type[_WholeReplies],
        endpoint: IStreamClientEndpoint,
        onReady: Callable[[Any, bool], None],
        onLost: Callable[[], None] = lambda: None,
        onMessage: Callable[[bytes, bytes], None] = lambda channel, message: None,
        onDropped: Callable[[bytes], None] = lambda channel: None,
    ) -> None:
        """
        @param shard: the settings (address, timeouts, backoff, reactor) and whether it is running.
        @param name: what the log calls this connection ("commands", "pubsub").
        @param protocolClass: L{CommandProtocol} or L{SubscriberProtocol}.
        @param onReady: called with the protocol, and whether it replaces a lost one, once it is usable.
        @param onLost: called when the usable connection is lost.
        @param onMessage: called with C{(channel, message)} for each PUB/SUB message.
        @param onDropped: called with a sharded PUB/SUB name Redis unsubscribed by itself.
        """
        self.shard = shard
        self.name = name
        self._protocolClass = protocolClass
        self._onReady = onReady
        self._onLost = onLost
        self.onMessage = onMessage
        self.onDropped = onDropped
        self.protocol: Any = None
        self._everReady = False
        self._rejected = 0  # connections in a row that closed before they were usable
        self._errorLogged = False  # txredisapi reported why the current attempt failed
        self._waiting: list[Deferred[None]] = []
        self._service = ClientService(_Attempts(endpoint, self), self, retryPolicy=self._retryDelay, clock=shard.reactor)

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
        protocol: Any = self._protocolClass(
            charset=None,
            convertNumbers=False,
            replyTimeout=self.shard.replyTimeout,
            password=address.password or None,
            username=(address.user or None) if address.password else None,
            dbid=address.db or None,
        )
        protocol.factory = self
        protocol.callLater = self.shard.reactor.callLater
        self._rejected += 1
        self._errorLogged = False
        protocol.whenConnected().addCallback(self._check)
        return protocol

    def _check(self, protocol: Any) -> None:
        # txredisapi calls a connection up as soon as AUTH and SELECT are done, and at once without them, even
        # before a TLS handshake: one round trip proves it usable (with Sentinel, one that also asks the role).
        d = self.shard.verify(protocol)
        d.addCallbacks(lambda _: self._ready(protocol), lambda failure: self._refused(protocol, failure))

    def _refused(self, protocol: Any, failure: Failure) -> None:
        if not protocol.connected:
            return  # lost: lost() tells why
        # Still connected, never to be usable: closed, so that the link tries again with backoff.
        self._errorLogged = True
        if isinstance(failure.value, NotMaster):
            log.warn("Redis {link} connection to {address}: {why}; asking the Sentinels again", link=self.name,
                     address=str(self.shard.address), why=failure.getErrorMessage())
        else:
            # An error reply (NOAUTH: Redis wants a password and none is configured, so txredisapi sent no AUTH).
            log.error("Redis {link} connection to {address} refused: {why}; retrying", link=self.name,
                      address=str(self.shard.address), why=failure.getErrorMessage())
        protocol.transport.abortConnection()

    def drop(self, why: str) -> None:
        """Close the usable connection (if any) to make another: it follows the master after a failover."""
        protocol = self.protocol
        if protocol is not None and protocol.connected:
            log.info("Redis {link} connection to {address}: {why}; reconnecting", link=self.name,
                     address=str(self.shard.address), why=why)
            protocol.transport.abortConnection()

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
        elif not self._errorLogged:
            self._warnFailed(reason)

    def attemptFailed(self, failure: Failure) -> Failure:
        """A connection attempt that made no connection (refused, timed out, no master named by the Sentinels)."""
        self._warnFailed(failure)
        return failure

    def _warnFailed(self, failure: Failure) -> None:
        if self.shard.running:
            log.warn(
                "Redis {link} connection to {address} failed ({reason}); retrying",
                link=self.name,
                address=str(self.shard.address),
                reason=failure.getErrorMessage(),
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
        delay = min(self.shard.initialRetryDelay * 2.0 ** min(attempt - 1, 30), self.shard.maxRetryDelay)
        return delay * (1 + 0.2 * self.shard.rng.random())

    def call(self, command: Callable[[Any], Deferred[Any]]) -> Deferred[Any]:
        """
        Run C{command(protocol)} (a command sent on the connected protocol) and return its reply; fail at once
        without a connection.
        """
        protocol = self.protocol
        if protocol is None or not protocol.connected:
            return fail(RedisUnavailable(f"no {self.name} connection to Redis at {self.shard.address}"))
        return maybeDeferred(command, protocol).addErrback(self._lost, protocol)

    def _lost(self, failure: Failure, protocol: Any) -> Failure:
        error = failure.value
        if isinstance(error, txredisapi.ConnectionError) and not isinstance(error, RedisUnavailable):
            raise RedisUnavailable(f"{self.name} connection to Redis lost: {failure.getErrorMessage()}")
        if isinstance(error, txredisapi.ResponseError):
            message = failure.getErrorMessage()
            if "READONLY" in message and self.shard.sentinels is not None and protocol is self.protocol:
                # The master became a replica (a failover it missed, partitioned): the Sentinels know the new one.
                self.drop("it is a replica now (READONLY)")
            raise RedisReplyError(f"Redis error reply: {message}")
        return failure


@implementer(IStreamClientEndpoint)
class _Attempts:
    """
    A link's endpoint, telling it of each attempt that fails before a connection is made: ClientService only logs
    that it will retry, not why.
    """

    def __init__(self, endpoint: IStreamClientEndpoint, link: Link) -> None:
        self._endpoint = endpoint
        self._link = link

    def __repr__(self) -> str:
        return repr(self._endpoint)

    def connect(self, protocolFactory: Any) -> Deferred[Any]:
        return self._endpoint.connect(protocolFactory).addErrback(self._link.attemptFailed)
