# -*- test-case-name: tests.engines.test_engine_redis -*-
"""
L{RedisShard}: the two connections to one Redis that a node's broker, presence and control plane share, one for
commands and Lua scripts and one in subscribe mode for PUB/SUB, and the PUB/SUB channels subscribed on it.

While a connection is down, whatever needs it fails at once (L{RedisUnavailable}) instead of waiting or
pretending. When the PUB/SUB connection comes back, every channel is subscribed again and the reconnect handlers
run: messages published while it was down were lost for this node.

With Redis Sentinel (a L{SentinelConfig}), the shard asks the Sentinels for the master before each connection,
checks what it reached is the master (C{ROLE}), and drops both connections to follow the master when a Sentinel
announces a failover (C{+switch-master}) or Redis refuses a write as a replica (C{READONLY}): they reconnect to the
new master, PUB/SUB channels are subscribed again and the reconnect handlers run, as after any loss.
"""

from __future__ import annotations

import random
from typing import Any, Callable, Optional, Sequence, Union

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, gatherResults, maybeDeferred, succeed
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure
from zope.interface import implementer

import txredisapi

from httpstream.engines.redis.address import RedisAddress, parseAddress
from httpstream.engines.redis.connection import CommandProtocol, Link, ShardedSubscriberProtocol, SubscriberProtocol
from httpstream.engines.redis.errors import RedisReplyError, RedisUnavailable, asReplyError
from httpstream.engines.redis.routing import IRedisRoute, IRedisRouter, tellReconnected
from httpstream.engines.redis.sentinel import MasterEndpoint, SentinelConfig, Sentinels, parseSentinels, verifyMaster
from httpstream.engines.redis.slots import readRedirection
from httpstream.logs import Logger

__all__ = ["RedisShard"]

log = Logger()


@implementer(IRedisRoute, IRedisRouter)
class RedisShard(Service):
    """
    The connections to one Redis, shared by a L{RedisBroker}, a L{RedisPresence} and anything else that needs
    PUB/SUB (a control channel): start it as a service (C{setServiceParent}) before they are used.

    It is the route of every channel (L{IRedisRoute}) and its own router (L{IRedisRouter}); a master of a Redis
    Cluster is one too, with C{sharded} PUB/SUB, under the cluster's router.

    @ivar prefix: the prefix of every key and PUB/SUB channel name (C{redis_prefix}).
    @ivar address: the L{RedisAddress}.
    """

    hashTags = False

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
        sharded: bool = False,
        sentinel: Optional[SentinelConfig] = None,
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
        @param sharded: PUB/SUB is Redis 7's sharded PUB/SUB (SSUBSCRIBE, SPUBLISH): a Cluster master's.
        @param sentinel: find the master through these Sentinels (the host and port of C{address} are then
            ignored; its user, password, db and TLS are the master's).
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
        self._connectTimeout = connectTimeout
        self._trustRoot = trustRoot
        if self.address.tls or (sentinel is not None and sentinel.tls):
            try:
                import twisted.internet.ssl  # noqa: F401
            except ImportError:
                raise ValueError("Redis over TLS needs pyOpenSSL and service_identity (pip install 'twisted[tls]')")
        endpoint: Optional[IStreamClientEndpoint] = None
        self.sentinels: Optional[Sentinels] = None
        if sentinel is None:
            endpoint = self._endpointFor(self.address.host, self.address.port, self.address.tls)
        else:
            self.sentinels = Sentinels(
                reactor, sentinel, self._endpointFor, replyTimeout, initialRetryDelay, maxRetryDelay, self.rng
            )
            # Until the Sentinels have named the master, the logs call it by its name.
            self.address = attrs.evolve(self.address, host=sentinel.masterName)
        # Link name -> the master address its connection was made to (with Sentinel).
        self._masters: dict[str, tuple[str, int]] = {}
        self.sharded = sharded
        self.publishCommand = b"SPUBLISH" if sharded else b"PUBLISH"
        self._subscribeCommand, self._unsubscribeCommand = (
            ("SSUBSCRIBE", "SUNSUBSCRIBE") if sharded else ("SUBSCRIBE", "UNSUBSCRIBE")
        )
        self._commands = Link(
            self, "commands", CommandProtocol, endpoint or self._masterEndpoint("commands"),
            lambda protocol, reconnect: None,
        )
        self._pubsub = Link(
            self,
            "pubsub",
            ShardedSubscriberProtocol if sharded else SubscriberProtocol,
            endpoint or self._masterEndpoint("pubsub"),
            self._pubsubReady,
            onMessage=self._message,
            onDropped=self._dropped,
        )
        # Called with a PUB/SUB name Redis stopped or refused (a Cluster slot that moved): see onMoved.
        self.onMoved: Optional[Callable[[bytes], None]] = None
        # PUB/SUB channel -> how many subscribe calls it has had without an unsubscribe, and its handler.
        self._counts: dict[bytes, int] = {}
        self._handlers: dict[bytes, Callable[[bytes, bytes], None]] = {}
        # Channels whose SUBSCRIBE is in flight -> the later subscribe calls waiting for its outcome.
        self._inflight: dict[bytes, list[Deferred[None]]] = {}
        self._reconnectHandlers: list[Callable[[list[bytes]], None]] = []

    @classmethod
    def fromConfig(
        cls, reactor: Any, config: Any, address: Union[str, RedisAddress, None] = None, **kwargs: Any
    ) -> "RedisShard":
        """A shard for the C{redis_*} keys of a L{httpstream.config.Config} (at C{address}: one shard's)."""
        sentinel = None
        if config.redis_sentinel_address:
            sentinel = parseSentinels(
                config.redis_sentinel_address[0],
                config.redis_sentinel_master_name,
                user=config.redis_sentinel_user,
                password=config.redis_sentinel_password,
                tls=config.redis_sentinel_tls,
            )
        return cls(
            reactor,
            address if address is not None else (config.redis_url or config.redis_address),
            prefix=config.redis_prefix,
            db=config.redis_db,
            user=config.redis_user,
            password=config.redis_password,
            tls=config.redis_tls,
            sentinel=sentinel,
            **kwargs,
        )

    def _endpointFor(self, host: str, port: int, tls: bool) -> IStreamClientEndpoint:
        endpoint: IStreamClientEndpoint = HostnameEndpoint(self.reactor, host, port, timeout=self._connectTimeout)
        if tls:
            from twisted.internet.ssl import optionsForClientTLS

            endpoint = wrapClientTLS(optionsForClientTLS(host, trustRoot=self._trustRoot), endpoint)
        return endpoint

    # (Twisted's Service has no type hints.)
    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        self._commands.start()
        self._pubsub.start()
        if self.sentinels is not None:
            self.sentinels.watch(self._switched, self._checkMaster)

    def stopService(self) -> Deferred[None]:
        super().stopService()  # type: ignore[no-untyped-call]
        self._stopPinging()
        stopped = [self._commands.stop(), self._pubsub.stop()]
        if self.sentinels is not None:
            stopped.append(self.sentinels.stop())
        return gatherResults(stopped, consumeErrors=True).addCallback(lambda _: None)

    @property
    def connected(self) -> bool:
        """True while both connections are up."""
        return self._commands.protocol is not None and self._pubsub.protocol is not None

    def whenReady(self) -> Deferred[None]:
        """A Deferred firing once both connections are up and the channels wanted subscribed (or refused)."""
        up = gatherResults([self._commands.whenReady(), self._pubsub.whenReady()])
        return up.addCallback(lambda _: self._subscribed())

    def _subscribed(self) -> Deferred[None]:
        # Sent is not confirmed: a node that announced itself at once, on the other connection, missed the answer.
        confirmed: list[Deferred[None]] = [Deferred() for _ in self._inflight]
        for waiting, d in zip(self._inflight.values(), confirmed):
            waiting.append(d)
        return gatherResults(confirmed, consumeErrors=True).addBoth(lambda _: None)

    # Routing (IRedisRouter): one Redis serves every channel.

    def route(self, channel: str) -> IRedisRoute:
        return self

    def everyRoute(self, name: str) -> list[IRedisRoute]:
        return [self]

    def describe(self) -> str:
        return str(self.address)
    # Following the master (Sentinel)

    def verify(self, protocol: Any) -> Deferred[Any]:
        """
        Prove a new connection usable before anyone uses it: a round trip (txredisapi calls a connection up before
        a TLS handshake), and with Sentinel, that it reached the master (L{NotMaster} when not).
        """
        if self.sentinels is None:
            return maybeDeferred(protocol.execute_command, "PING")
        return verifyMaster(protocol.execute_command)

    def _masterEndpoint(self, link: str) -> IStreamClientEndpoint:
        assert self.sentinels is not None

        def found(host: str, port: int) -> None:
            self._masters[link] = (host, port)
            self.address = attrs.evolve(self.address, host=host, port=port)

        return MasterEndpoint(self.sentinels, lambda host, port: self._endpointFor(host, port, self.address.tls), found)

    def _switched(self, host: str, port: int) -> None:
        self.follow((host, port), f"Sentinel moved the master to {host}:{port}")

    def _checkMaster(self) -> None:
        # A failover may have happened while no Sentinel was watched.
        connected = self._commands.protocol is not None or self._pubsub.protocol is not None
        if self.sentinels is not None and connected:
            self.sentinels.masterAddress().addCallbacks(
                lambda master: self.follow(master, f"Sentinel names the master {master[0]}:{master[1]}"),
                lambda _: None,
            )

    def follow(self, master: tuple[str, int], why: str) -> None:
        """
        Drop the connections made to another address than C{master}: they reconnect to the master the Sentinels
        name then (L{Link.drop}).
        """
        for link in (self._commands, self._pubsub):
            if self._masters.get(link.name) != master:
                link.drop(why)

    # Commands

    def execute(self, *args: Any, asking: bool = False, now: bool = False) -> Deferred[Any]:
        """
        Run one command on the command connection (bytes come back as bytes).

        @param asking: send ASKING first, on the same connection (a Cluster's ASK redirection).
        @param now: write it to the socket at once (L{CommandProtocol.executeNow}), not on the next poll.
        @return: its reply, or a failure: L{RedisUnavailable} at once while the connection is down,
            C{txredisapi.ConnectionError} when it is lost before the reply, L{RedisReplyError} for an error reply.
        """
        if asking:
            return self._commands.call(lambda protocol: protocol.executeAsking(*args))
        return self._commands.call(lambda protocol: (protocol.executeNow if now else protocol.execute_command)(*args))

    def eval(self, script: bytes, keys: Sequence[Any], args: Sequence[Any], asking: bool = False) -> Deferred[Any]:
        """
        Run a Lua script (EVALSHA, EVAL the first time on each connection) on the command connection; with
        C{asking}, ASKING then EVAL.
        """
        if asking:
            return self._commands.call(
                lambda protocol: protocol.executeAsking(b"EVAL", script, len(keys), *keys, *args)
            )
        return self._commands.call(lambda protocol: protocol.eval(script, list(keys), list(args)))

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
        return self._unsubscribe(protocol, channel)

    def forget(self, channel: bytes) -> None:
        """Drop C{channel} without telling Redis (which dropped it: its Cluster slot moved to another master)."""
        self._counts.pop(channel, None)
        self._handlers.pop(channel, None)

    def subscribedNames(self) -> list[bytes]:
        """The PUB/SUB names wanted (subscribed, or to be once connected)."""
        return list(self._counts)

    def _unsubscribe(self, protocol: Any, channel: bytes) -> Deferred[None]:
        if self.sharded:
            protocol.unsubscribing.add(channel)  # its reply is ours, not Redis dropping it
        d = maybeDeferred(protocol.execute_command, self._unsubscribeCommand, channel)
        d.addErrback(_lostIsUnsubscribed)
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
        d = maybeDeferred(protocol.execute_command, self._subscribeCommand, channel, apply_timeout=False)
        return d.addErrback(asReplyError).addBoth(settled)

    def _pubsubReady(self, protocol: Any, reconnect: bool) -> None:
        self._startPinging(protocol)
        channels = list(self._counts)
        subscribed = gatherResults(
            [self._subscribe(protocol, channel).addErrback(self._refused, channel) for channel in channels],
            consumeErrors=True,
        )
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
        tellReconnected(self._reconnectHandlers, channels)

    def _refused(self, failure: Failure, channel: bytes) -> Failure:
        # A Cluster master that no longer serves the slot answers MOVED: the cluster moves the name elsewhere.
        if self.onMoved is not None and isinstance(failure.value, RedisReplyError):
            if readRedirection(failure.getErrorMessage()) is not None:
                self.onMoved(channel)
        return failure

    def _dropped(self, channel: bytes) -> None:
        # Sharded PUB/SUB: Redis unsubscribed the name by itself (its slot moved to another master).
        if channel in self._counts and self.onMoved is not None:
            self.onMoved(channel)

    def _message(self, channel: bytes, message: bytes) -> None:
        handler = self._handlers.get(channel)
        if handler is None:
            return  # unsubscribed; the UNSUBSCRIBE is in flight
        try:
            handler(channel, message)
        except Exception:
            log.failure("Redis message on {channel}", channel=channel)


def _lostIsUnsubscribed(failure: Failure) -> Optional[Failure]:
    """A connection lost before UNSUBSCRIBE was confirmed: Redis dropped every subscription of it anyway."""
    return None if isinstance(failure.value, txredisapi.ConnectionError) else failure
