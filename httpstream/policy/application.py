# -*- test-case-name: tests.client.test_clientpolicy -*-
"""
Decisions made in process by a program that embeds httpstream, as a Centrifuge-library server makes them with
its ``OnConnecting``, ``OnSubscribe``, ``OnPublish`` handlers: the program sets the callables it wants on the
node's L{ApplicationPolicy} (C{service.node.policy}); what it leaves unset, or a callable that returns None, is
decided by the configured policy behind it. Its RPC methods and send hooks stay where they were
(C{node.rpc.register}, C{node.rpc.onSend}): the configured policy answers with them.

A callable may return the decision, a Deferred of it, or None (no opinion), and may raise (or fail with)
L{httpstream.decisions.Refused} to refuse.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Sequence, TypeVar

from twisted.internet.defer import Deferred, maybeDeferred
from zope.interface import implementer

from httpstream.config import ChannelOptions
from httpstream.decisions import (
    ConnectDecision,
    ConnectRequest,
    Connection,
    MapWriteDecision,
    PublishDecision,
    RefreshDecision,
    SubscribeDecision,
    SubscribeRequest,
    TrackBatch,
)
from httpstream.interfaces import IClientPolicy
from httpstream.values import ClientInfo, HistoryResult, StreamPosition

__all__ = ["ApplicationPolicy"]

T = TypeVar("T")

ConnectingHandler = Callable[[Connection, ConnectRequest], Any]
SubscribingHandler = Callable[[Connection, SubscribeRequest], Any]
PublishingHandler = Callable[[Connection, str, bytes], Any]


@implementer(IClientPolicy)
class ApplicationPolicy:
    """
    The embedding program's decisions, in front of C{fallback} (the configured policy).

    @ivar onConnecting: C{(connection, request)} -> L{ConnectDecision}: who connects (its decision is taken as
        is: no connection limit or channel checks are added).
    @ivar onSubscribing: C{(connection, request)} -> L{SubscribeDecision}, for the client's own subscribes (a
        server-side one is granted already).
    @ivar onPublishing: C{(connection, channel, data)} -> L{PublishDecision}.
    """

    def __init__(self, fallback: IClientPolicy) -> None:
        self.fallback = fallback
        self.onConnecting: Optional[ConnectingHandler] = None
        self.onSubscribing: Optional[SubscribingHandler] = None
        self.onPublishing: Optional[PublishingHandler] = None

    def _ask(self, handler: Optional[Callable[..., Any]], fallback: Callable[[], Deferred[T]],
             *args: Any) -> Deferred[T]:
        if handler is None:
            return fallback()

        def decided(decision: Any) -> Any:
            return fallback() if decision is None else decision

        d: Deferred[T] = maybeDeferred(handler, *args).addCallback(decided)
        return d

    def connecting(self, connection: Connection, request: ConnectRequest) -> Deferred[ConnectDecision]:
        return self._ask(self.onConnecting, lambda: self.fallback.connecting(connection, request),
                         connection, request)

    def refreshing(self, connection: Connection, token: str) -> Deferred[RefreshDecision]:
        return self.fallback.refreshing(connection, token)

    def channelOptions(self, channel: str, serverSide: bool) -> ChannelOptions:
        return self.fallback.channelOptions(channel, serverSide)

    def subscribing(self, connection: Connection, request: SubscribeRequest) -> Deferred[SubscribeDecision]:
        handler = None if request.serverSide else self.onSubscribing
        return self._ask(handler, lambda: self.fallback.subscribing(connection, request), connection, request)

    def subRefreshing(self, connection: Connection, channel: str, options: ChannelOptions,
                      token: str) -> Deferred[RefreshDecision]:
        return self.fallback.subRefreshing(connection, channel, options, token)

    def mapWriting(self, connection: Connection, channel: str, options: ChannelOptions, key: str, data: bytes,
                   remove: bool, subscribed: bool) -> Deferred[MapWriteDecision]:
        return self.fallback.mapWriting(connection, channel, options, key, data, remove, subscribed)

    def tracking(self, connection: Connection, channel: str, options: ChannelOptions,
                 batches: Sequence[TrackBatch]) -> Deferred[list[int]]:
        return self.fallback.tracking(connection, channel, options, batches)

    def publishing(self, connection: Connection, channel: str, options: ChannelOptions, data: bytes,
                   subscribed: bool) -> Deferred[PublishDecision]:
        return self._ask(
            self.onPublishing, lambda: self.fallback.publishing(connection, channel, options, data, subscribed),
            connection, channel, data,
        )

    def presence(self, connection: Connection, channel: str, options: ChannelOptions,
                 subscribed: bool) -> Deferred[dict[str, ClientInfo]]:
        return self.fallback.presence(connection, channel, options, subscribed)

    def presenceStats(self, connection: Connection, channel: str, options: ChannelOptions,
                      subscribed: bool) -> Deferred[dict[str, int]]:
        return self.fallback.presenceStats(connection, channel, options, subscribed)

    def history(self, connection: Connection, channel: str, options: ChannelOptions, subscribed: bool,
                since: Optional[StreamPosition], limit: int, reverse: bool) -> Deferred[HistoryResult]:
        return self.fallback.history(connection, channel, options, subscribed, since, limit, reverse)

    def rpc(self, connection: Connection, method: str, data: bytes) -> Deferred[bytes]:
        return self.fallback.rpc(connection, method, data)

    def message(self, connection: Connection, data: bytes) -> Deferred[None]:
        return self.fallback.message(connection, data)

    def position(self, subscription: Any, recover: Optional[StreamPosition], protocol: str,
                 rejectUnrecovered: bool = False) -> Deferred[dict[str, Any]]:
        return self.fallback.position(subscription, recover, protocol, rejectUnrecovered)

    def checkPosition(self, subscription: Any, force: bool) -> Optional[Deferred[bool]]:
        return self.fallback.checkPosition(subscription, force)
