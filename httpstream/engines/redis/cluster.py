# -*- test-case-name: tests.engines.test_redis_cluster -*-
"""
L{RedisCluster}: a Redis Cluster (C{redis_cluster_address}) as the router of the Redis engine.

Every key of a channel carries the channel as a hash tag (C{<prefix>.history.stream.{<channel>}}), as Centrifugo
writes them, so a channel's keys and PUB/SUB name share one slot and its scripts run on that slot's master. Its
PUB/SUB is Redis 7's sharded PUB/SUB (SSUBSCRIBE, SPUBLISH, also inside the publishing script): a channel's messages
go through its slot's master only, not through every node of the cluster.

One L{RedisShard} per master (a command and a sharded PUB/SUB connection), found from the seed addresses with
CLUSTER SLOTS, again every C{refreshInterval} and whenever a master redirects: a command answered MOVED is sent to
the new master at once (the slot map patched, then read again); ASK sends ASKING and the command to the importing
master, once; TRYAGAIN (a slot half migrated) is retried shortly. A PUB/SUB name whose slot moved (Redis
unsubscribes it by itself, or the master refuses it) is subscribed at the new master, and the reconnect handlers
hear about it: its messages sent meanwhile were lost for this node.

Not done: reading from replicas; a master lost for good is only replaced once the cluster has failed over and the
next refresh sees it.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import attrs
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, fail, gatherResults, succeed
from twisted.internet.task import LoopingCall, deferLater
from twisted.python.failure import Failure
from zope.interface import implementer

from httpstream.engines.redis.address import RedisAddress, parseAddress
from httpstream.engines.redis.errors import RedisReplyError, RedisUnavailable
from httpstream.engines.redis.routing import IRedisRoute, IRedisRouter, keyName, tellReconnected
from httpstream.engines.redis.shard import RedisShard
from httpstream.engines.redis.slots import SLOTS, Redirection, SlotRange, keySlot, readClusterSlots, readRedirection
from httpstream.logs import Logger

__all__ = ["RedisCluster"]

log = Logger()

_TRYAGAIN_DELAY = 0.05
_TRYAGAIN_RETRIES = 20  # a second: a slot's migration (its keys MIGRATEd) is usually done by then


@attrs.define
class _Subscription:
    """A sharded PUB/SUB name this node wants: its slot, handler, how many subscribe calls, and the master it is on."""

    slot: int
    handler: Callable[[bytes, bytes], None]
    count: int = 1
    node: Optional[RedisShard] = None
    waiting: Optional[list[Deferred[None]]] = None  # later subscribe calls while the first is in flight


@implementer(IRedisRoute)
class _SlotRoute:
    """One slot of a L{RedisCluster}: its commands go to the slot's master, following redirections."""

    publishCommand = b"SPUBLISH"

    def __init__(self, cluster: "RedisCluster", slot: int) -> None:
        self._cluster = cluster
        self.slot = slot

    def execute(self, *args: Any, now: bool = False) -> Deferred[Any]:
        return self._cluster.call(self.slot, lambda node, asking: node.execute(*args, asking=asking, now=now))

    def eval(self, script: bytes, keys: Sequence[Any], args: Sequence[Any]) -> Deferred[Any]:
        return self._cluster.call(self.slot, lambda node, asking: node.eval(script, keys, args, asking))

    def subscribe(self, name: bytes, handler: Callable[[bytes, bytes], None]) -> Deferred[None]:
        return self._cluster.subscribe(self.slot, name, handler)

    def unsubscribe(self, name: bytes) -> Deferred[None]:
        return self._cluster.unsubscribe(name)


@implementer(IRedisRouter)
class RedisCluster(MultiService):
    """
    A Redis Cluster reached from seed addresses (any of its nodes): start it as a service.

    @ivar prefix: the prefix of every key and PUB/SUB name.
    """

    hashTags = True

    def __init__(
        self,
        reactor: Any,
        seeds: Sequence[str],
        *,
        prefix: str = "httpstream",
        user: str = "",
        password: str = "",
        tls: bool = False,
        refreshInterval: float = 5.0,
        maxRedirections: int = 5,
        **shardOptions: Any,
    ) -> None:
        """
        @param seeds: C{host:port} or C{redis://} addresses of some of the cluster's nodes.
        @param refreshInterval: seconds between two readings of the slot map (besides those redirections cause).
        @param maxRedirections: how many MOVED, ASK or TRYAGAIN answers one call follows before it fails.
        @param shardOptions: the rest of L{RedisShard}'s settings (timeouts, retry delays, C{trustRoot}, ...),
            for each master's connections.
        @raise ValueError: no seed, or a bad one.
        """
        super().__init__()  # type: ignore[no-untyped-call]
        if not seeds:
            raise ValueError("a Redis Cluster needs at least one seed address")
        self.reactor = reactor
        self.prefix = prefix
        self._seeds = [parseAddress(seed, 0, user, password, tls) for seed in seeds]
        self._shardOptions = shardOptions
        self._maxRedirections = maxRedirections
        self._nodes: dict[tuple[str, int], RedisShard] = {}
        self._owners: list[Optional[RedisShard]] = [None] * SLOTS
        self._subscriptions: dict[bytes, _Subscription] = {}
        self._reconnectHandlers: list[Callable[[list[bytes]], None]] = []
        self._refreshing: Optional[list[Deferred[None]]] = None
        self._unmappedLogged = False  # a failed reading of the slot map was logged (once until one succeeds)
        self._mapped: Optional[list[Deferred[None]]] = []  # None once a slot map was read
        self._refresher = LoopingCall(self._periodicRefresh)
        self._refresher.clock = reactor
        self._refreshInterval = refreshInterval
        for seed in self._seeds:
            self._node(seed.host, seed.port)

    # Service

    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        for seed in self._seeds:
            node = self._nodes.get((seed.host, seed.port))
            if node is not None:
                node.whenReady().addCallback(lambda _: self._firstMap())
        self._refresher.start(self._refreshInterval, now=False)

    def stopService(self) -> Deferred[None]:
        if self._refresher.running:
            self._refresher.stop()
        return super().stopService()  # type: ignore[no-any-return,no-untyped-call]

    # IRedisRouter

    def route(self, channel: str) -> IRedisRoute:
        # The slot Redis gives every key of the channel (they all carry the same hash tag).
        return _SlotRoute(self, keySlot(keyName(self.prefix, "client", channel, True)))

    def everyRoute(self, name: str) -> list[IRedisRoute]:
        return [_SlotRoute(self, keySlot(name.encode()))]

    def addReconnectHandler(self, handler: Callable[[list[bytes]], None]) -> None:
        self._reconnectHandlers.append(handler)

    def whenReady(self) -> Deferred[None]:
        """Fires once the slot map is read and every master's connections are up."""
        if self._mapped is None:
            mapped: Deferred[None] = succeed(None)
        else:
            mapped = Deferred()
            self._mapped.append(mapped)

        def masters(_: object) -> Deferred[None]:
            nodes = {id(node): node for node in self._owners if node is not None}
            return gatherResults([node.whenReady() for node in nodes.values()]).addCallback(lambda _: None)

        return mapped.addCallback(masters)

    def describe(self) -> str:
        return "cluster " + ",".join(str(seed) for seed in self._seeds)

    def masters(self) -> list[RedisShard]:
        """The masters that serve a slot, by the current slot map."""
        return list({id(node): node for node in self._owners if node is not None}.values())

    def ownerOf(self, slot: int) -> Optional[RedisShard]:
        return self._owners[slot]

    # Commands

    def call(
        self,
        slot: int,
        command: Callable[[RedisShard, bool], Deferred[Any]],
        redirections: int = 0,
        asking: Optional[RedisShard] = None,
        retries: int = 0,
    ) -> Deferred[Any]:
        """
        Run C{command(node, asking)} on the master of C{slot} (or on C{asking}, with ASKING), following MOVED and
        ASK answers up to C{maxRedirections} times, and retrying on TRYAGAIN (a script whose keys are split
        between two masters while their slot migrates) for up to a second.
        """
        node = asking or self._owners[slot]
        if node is None:
            return fail(RedisUnavailable(f"no Redis Cluster master known for slot {slot} yet"))
        d = command(node, asking is not None)

        def redirected(failure: Failure) -> Any:
            if not failure.check(RedisReplyError):
                return failure
            message = failure.getErrorMessage()
            if "TRYAGAIN" in message and retries < _TRYAGAIN_RETRIES:
                return deferLater(self.reactor, _TRYAGAIN_DELAY, self.call, slot, command, redirections, None, retries + 1)
            redirection = readRedirection(message)
            if redirection is None or redirections >= self._maxRedirections:
                return failure
            target = self._node(redirection.host, redirection.port)
            if redirection.kind == "ASK":
                return self.call(slot, command, redirections + 1, target, retries)
            self._moved(redirection, target)
            return self.call(slot, command, redirections + 1, None, retries)

        return d.addErrback(redirected)

    # Sharded PUB/SUB

    def subscribe(self, slot: int, name: bytes, handler: Callable[[bytes, bytes], None]) -> Deferred[None]:
        """Subscribe C{name} (of C{slot}) at its master; counted as L{RedisShard.subscribe}."""
        subscription = self._subscriptions.get(name)
        if subscription is not None:
            subscription.count += 1
            subscription.handler = handler
            if subscription.waiting is None:
                return succeed(None)
            d: Deferred[None] = Deferred()
            subscription.waiting.append(d)
            return d
        subscription = self._subscriptions[name] = _Subscription(slot, handler, waiting=[])

        def settled(result: Any) -> Any:
            waiting, subscription.waiting = subscription.waiting or [], None
            for d in waiting:
                if isinstance(result, Failure):
                    d.errback(result)
                else:
                    d.callback(None)
            return result

        return self._place(name, subscription).addBoth(settled)

    def unsubscribe(self, name: bytes) -> Deferred[None]:
        subscription = self._subscriptions.get(name)
        if subscription is None:
            return succeed(None)
        subscription.count -= 1
        if subscription.count > 0:
            return succeed(None)
        del self._subscriptions[name]
        node, subscription.node = subscription.node, None
        return node.unsubscribe(name) if node is not None else succeed(None)

    def _place(self, name: bytes, subscription: _Subscription, redirections: int = 0) -> Deferred[None]:
        node = self._owners[subscription.slot]
        if node is None:
            # Subscribed once the slot map is known (see _reconcile).
            return fail(RedisUnavailable(f"no Redis Cluster master known for slot {subscription.slot} yet"))
        subscription.node = node
        d = node.subscribe(name, subscription.handler)

        def refused(failure: Failure) -> Any:
            if not failure.check(RedisReplyError):
                return failure
            redirection = readRedirection(failure.getErrorMessage())
            if self._subscriptions.get(name) is not subscription or subscription.node is not node:
                return None  # unsubscribed or moved meanwhile
            node.forget(name)
            subscription.node = None
            if redirection is None or redirections >= self._maxRedirections:
                return failure
            self._moved(redirection, self._node(redirection.host, redirection.port))
            return self._place(name, subscription, redirections + 1)

        return d.addErrback(refused)

    def _nameMoved(self, name: bytes) -> None:
        # A master dropped or refused a name (its slot moved): read the map, then subscribe it where it is now.
        self.refresh().addErrback(lambda _: None)

    def _reconcile(self) -> None:
        """Move each subscription whose slot's master changed; tell the reconnect handlers about them."""
        moved: list[bytes] = []
        calls = []
        for name, subscription in list(self._subscriptions.items()):
            owner = self._owners[subscription.slot]
            if owner is None or owner is subscription.node:
                continue
            old, subscription.node = subscription.node, None
            if old is not None:
                old.forget(name)
            moved.append(name)
            calls.append(self._place(name, subscription))
        if not moved:
            return
        log.info("Redis Cluster: {count} PUB/SUB channels moved to another master", count=len(moved))
        gatherResults(calls, consumeErrors=True).addCallbacks(
            lambda _: self._reconnected(moved), lambda _: self._reconnected(moved)
        )

    def _reconnected(self, names: list[bytes]) -> None:
        tellReconnected(self._reconnectHandlers, names)

    # The slot map

    def _node(self, host: str, port: int) -> RedisShard:
        """The master at C{host}:C{port}: its connections, made (and started, when running) the first time."""
        node = self._nodes.get((host, port))
        if node is None:
            seed = self._seeds[0]
            address = RedisAddress(host, port, 0, seed.user, seed.password, seed.tls)
            node = RedisShard(self.reactor, address, prefix=self.prefix, sharded=True, **self._shardOptions)
            node.onMoved = self._nameMoved
            node.addReconnectHandler(self._reconnected)
            self._nodes[(host, port)] = node
            node.setServiceParent(self)  # type: ignore[no-untyped-call]
        return node

    def _moved(self, redirection: Redirection, target: RedisShard) -> None:
        if self._owners[redirection.slot] is not target:
            self._owners[redirection.slot] = target
            self.refresh().addErrback(lambda _: None)

    def _firstMap(self) -> None:
        if self._mapped is not None:
            self.refresh().addErrback(lambda _: None)

    def _periodicRefresh(self) -> None:
        self.refresh().addErrback(lambda _: None)

    def refresh(self) -> Deferred[None]:
        """
        Read the slot map (CLUSTER SLOTS) from the first node that answers, then move the subscriptions whose
        master changed. Calls during a refresh share it.
        """
        d: Deferred[None] = Deferred()
        if self._refreshing is not None:
            self._refreshing.append(d)
            return d
        self._refreshing = [d]
        candidates = [node for node in self._nodes.values() if node.connected] or list(self._nodes.values())
        self._ask(candidates, []).addBoth(self._refreshed)
        return d

    def _ask(self, candidates: list[RedisShard], reasons: list[str]) -> Deferred[None]:
        if not candidates:
            return fail(RedisUnavailable(f"no node of the Redis Cluster answers CLUSTER SLOTS ({'; '.join(reasons)})"))
        node, rest = candidates[0], candidates[1:]
        d = node.execute(b"CLUSTER", b"SLOTS")
        d.addCallback(lambda reply: self._apply(readClusterSlots(reply, node.address.host)))

        def failed(failure: Failure) -> Deferred[None]:
            reasons.append(f"{node.address}: {failure.getErrorMessage()}")
            return self._ask(rest, reasons)

        return d.addErrback(failed)

    def _apply(self, ranges: Sequence[SlotRange]) -> None:
        owners: list[Optional[RedisShard]] = [None] * SLOTS
        for slots in ranges:
            node = self._node(slots.host, slots.port)
            owners[slots.start : slots.end + 1] = [node] * (slots.end - slots.start + 1)
        changed = owners != self._owners
        self._owners = owners
        if changed:
            masters = sorted(str(node.address) for node in self.masters())
            log.info("Redis Cluster slot map: {count} masters ({masters})", count=len(masters), masters=" ".join(masters))
        self._forgetIdle()

    def _forgetIdle(self) -> None:
        # Connections to nodes that serve no slot (a replica seed, a removed master) and hold no subscription.
        used = {id(node) for node in self._owners if node is not None}
        used |= {id(s.node) for s in self._subscriptions.values() if s.node is not None}
        seeds = {(seed.host, seed.port) for seed in self._seeds}
        for key, node in list(self._nodes.items()):
            if id(node) not in used and key not in seeds:
                del self._nodes[key]
                node.disownServiceParent()  # type: ignore[no-untyped-call]

    def _refreshed(self, result: Any) -> None:
        waiting, self._refreshing = self._refreshing or [], None
        if isinstance(result, Failure) and self.running and not self._unmappedLogged:
            # Without it a node never ready (not a cluster, every node away) would wait for Redis without a word.
            self._unmappedLogged = True
            log.warn("Redis Cluster: the slot map could not be read: {why}; trying again every {interval:g} s",
                     why=result.getErrorMessage(), interval=self._refreshInterval)
        if not isinstance(result, Failure):
            self._unmappedLogged = False
            mapped, self._mapped = self._mapped, None
            for d in mapped or []:
                d.callback(None)
            self._reconcile()
        for d in waiting:
            if isinstance(result, Failure):
                d.errback(result)
            else:
                d.callback(None)
