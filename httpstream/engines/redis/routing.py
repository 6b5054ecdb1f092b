# -*- test-case-name: tests.engines.test_redis_sharding,tests.engines.test_redis_cluster -*-
"""
Which Redis connections serve a channel: the seam between the broker, history and presence (what they store and
publish) and the topology (one Redis, shards of them, a Redis Cluster).

  - L{IRedisRoute}: the connections of one channel's keys and PUB/SUB name (one Redis, or the master of one
    Cluster slot).
  - L{IRedisRouter}: gives each channel its route; a L{RedisShard} is the router of one Redis,
    L{httpstream.engines.redis.sharding.ShardRing} of several, L{httpstream.engines.redis.cluster.RedisCluster}
    of a Cluster.
  - L{keyName}: a channel's key or PUB/SUB name, with the channel as a Cluster hash tag (C{{channel}}) where the
    router needs every key of a channel in one slot.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

from httpstream.logs import Logger

__all__ = ["IRedisRoute", "IRedisRouter", "channelOfName", "keyName", "tellReconnected"]

log = Logger()


class IRedisRoute(Interface):
    """The connections one channel's keys and PUB/SUB name live on."""

    publishCommand = Attribute(
        "C{b'PUBLISH'}, or C{b'SPUBLISH'} where PUB/SUB is sharded (a Cluster): the command, also inside scripts, "
        "that publishes on a channel's PUB/SUB name."
    )

    def execute(*args: Any, now: bool = False) -> "Deferred[Any]":
        """
        Run one command whose keys are the channel's; its reply, or a failure (L{RedisUnavailable} while the
        connection is down, L{RedisReplyError} for an error reply). With C{now}, the command is written to the
        socket at once rather than with the others of its reactor turn (for a command that is a batch already).
        """

    def eval(script: bytes, keys: Sequence[Any], args: Sequence[Any]) -> "Deferred[Any]":
        """Run a Lua script on the channel's keys."""

    def subscribe(name: bytes, handler: Callable[[bytes, bytes], None]) -> "Deferred[None]":
        """Receive the messages of PUB/SUB name C{name} (counted: as many L{unsubscribe} calls undo it)."""

    def unsubscribe(name: bytes) -> "Deferred[None]":
        """Undo one L{subscribe}."""


class IRedisRouter(Interface):
    """The Redis of an engine: the route of each channel, and what they share. Started as a service."""

    prefix = Attribute("The prefix of every key and PUB/SUB name (C{redis_prefix}).")
    hashTags = Attribute("True where a channel's keys must share a Cluster slot: L{keyName} writes C{{channel}}.")

    def route(channel: str) -> IRedisRoute:
        """The route of C{channel}'s keys and PUB/SUB name."""

    def everyRoute(name: str) -> "list[IRedisRoute]":
        """
        The routes the control plane's PUB/SUB name C{name} is subscribed on (each message is published on one
        of them): every shard, or the one Cluster slot of C{name}.
        """

    def addReconnectHandler(handler: Callable[[list[bytes]], None]) -> None:
        """
        Call C{handler(names)} with the PUB/SUB names subscribed again after a loss (a connection lost, a Cluster
        slot moved to another master): their messages sent meanwhile were lost for this node.
        """

    def whenReady() -> "Deferred[None]":
        """Fires once every connection is up."""

    def describe() -> str:
        """Where the Redis is, for the log (no password)."""


def keyName(prefix: str, kind: str, channel: str, hashTags: bool) -> bytes:
    """C{<prefix>.<kind>.<channel>}, or C{<prefix>.<kind>.{<channel>}} with hash tags (Centrifugo's Cluster keys)."""
    if hashTags:
        return f"{prefix}.{kind}.{{{channel}}}".encode()
    return f"{prefix}.{kind}.{channel}".encode()


def channelOfName(start: bytes, name: bytes, hashTags: bool) -> str:
    """The channel in a PUB/SUB name made by L{keyName} (C{start}: its C{<prefix>.<kind>.} part)."""
    channel = name[len(start) :]
    if hashTags and channel[:1] == b"{" and channel[-1:] == b"}":
        channel = channel[1:-1]
    return channel.decode("utf-8", "replace")


def tellReconnected(handlers: Sequence[Callable[[list[bytes]], None]], names: list[bytes]) -> None:
    """
    Call each reconnect handler (L{IRedisRouter.addReconnectHandler}) with C{names}; one that raises is logged
    and the others still run.
    """
    for handler in list(handlers):
        try:
            handler(names)
        except Exception:
            log.failure("Redis reconnect handler {handler}", handler=handler)
