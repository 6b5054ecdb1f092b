# -*- test-case-name: tests.client.test_clientpolicy -*-
"""An in-memory L{IClientPolicy} that says yes, records every question, and can be scripted per method."""

from __future__ import annotations

from typing import Any, Optional, Sequence

from twisted.internet.defer import Deferred, fail, succeed
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

__all__ = ["FakePolicy"]


@implementer(IClientPolicy)
class FakePolicy:
    """
    An L{IClientPolicy} that says yes: anonymous connections, every channel (with options L{options}), every
    subscription (with L{SubscribeDecision} defaults: no presence, no positioning), publication and read, RPCs
    echoing their data, messages taken. It records what it was asked; a test makes it answer otherwise through
    L{answers}. Pass it to L{makeNode} as C{policy}.

    @ivar asked: C{(method, args)} for every call, in order.
    @ivar answers: method name -> what that method answers from now on: a decision value (fired at once), a
        L{Refused} or other exception (a failure; raised for C{channelOptions}), or a callable taking the call's
        arguments and returning either, or a Deferred.
    @ivar options: the channel options of every channel.
    @ivar presenceEntries: what C{presence} reads.
    @ivar stream: the history and position every channel reads (a L{HistoryResult}).
    """

    def __init__(self, options: Optional[ChannelOptions] = None) -> None:
        self.asked: list[tuple[str, tuple[Any, ...]]] = []
        self.answers: dict[str, Any] = {}
        self.options = options if options is not None else ChannelOptions()
        self.presenceEntries: dict[str, ClientInfo] = {}
        self.stream = HistoryResult([], 0, "fake-epoch")

    def _answer(self, method: str, default: Any, *args: Any) -> Deferred[Any]:
        self.asked.append((method, args))
        answer = self.answers.get(method, default)
        if callable(answer) and not isinstance(answer, type):
            answer = answer(*args)
        if isinstance(answer, Deferred):
            return answer
        if isinstance(answer, BaseException):
            return fail(answer)
        return succeed(answer)

    def methods(self) -> list[str]:
        """The methods asked, in order."""
        return [method for method, _ in self.asked]

    def connecting(self, connection: Connection, request: ConnectRequest) -> Deferred[ConnectDecision]:
        return self._answer("connecting", ConnectDecision(), connection, request)

    def refreshing(self, connection: Connection, token: str) -> Deferred[RefreshDecision]:
        return self._answer("refreshing", RefreshDecision(), connection, token)

    def channelOptions(self, channel: str, serverSide: bool) -> ChannelOptions:
        self.asked.append(("channelOptions", (channel, serverSide)))
        answer = self.answers.get("channelOptions", self.options)
        if callable(answer) and not isinstance(answer, type):
            answer = answer(channel, serverSide)
        if isinstance(answer, BaseException):
            raise answer
        return answer  # type: ignore[no-any-return]

    def subscribing(self, connection: Connection, request: SubscribeRequest) -> Deferred[SubscribeDecision]:
        return self._answer("subscribing", SubscribeDecision(), connection, request)

    def subRefreshing(self, connection: Connection, channel: str, options: ChannelOptions,
                      token: str) -> Deferred[RefreshDecision]:
        return self._answer("subRefreshing", RefreshDecision(), connection, channel, options, token)

    def mapWriting(self, connection: Connection, channel: str, options: ChannelOptions, key: str, data: bytes,
                   remove: bool, subscribed: bool) -> Deferred[MapWriteDecision]:
        return self._answer("mapWriting", MapWriteDecision(key), connection, channel, options, key, data, remove,
                            subscribed)

    def tracking(self, connection: Connection, channel: str, options: ChannelOptions,
                 batches: Sequence[TrackBatch]) -> Deferred[list[int]]:
        return self._answer("tracking", [0] * len(batches), connection, channel, options, batches)

    def publishing(self, connection: Connection, channel: str, options: ChannelOptions, data: bytes,
                   subscribed: bool) -> Deferred[PublishDecision]:
        return self._answer("publishing", PublishDecision(data), connection, channel, options, data, subscribed)

    def presence(self, connection: Connection, channel: str, options: ChannelOptions,
                 subscribed: bool) -> Deferred[dict[str, ClientInfo]]:
        return self._answer("presence", dict(self.presenceEntries), connection, channel, options, subscribed)

    def presenceStats(self, connection: Connection, channel: str, options: ChannelOptions,
                      subscribed: bool) -> Deferred[dict[str, int]]:
        users = {info.user for info in self.presenceEntries.values()}
        stats = {"num_clients": len(self.presenceEntries), "num_users": len(users)}
        return self._answer("presenceStats", stats, connection, channel, options, subscribed)

    def history(self, connection: Connection, channel: str, options: ChannelOptions, subscribed: bool,
                since: Optional[StreamPosition], limit: int, reverse: bool) -> Deferred[HistoryResult]:
        return self._answer("history", self.stream, connection, channel, options, subscribed, since, limit, reverse)

    def rpc(self, connection: Connection, method: str, data: bytes) -> Deferred[bytes]:
        return self._answer("rpc", data, connection, method, data)

    def message(self, connection: Connection, data: bytes) -> Deferred[None]:
        return self._answer("message", None, connection, data)

    def position(self, subscription: Any, recover: Optional[StreamPosition], protocol: str,
                 rejectUnrecovered: bool = False) -> Deferred[dict[str, Any]]:
        subscription.offset, subscription.epoch = self.stream.offset, self.stream.epoch
        return self._answer("position", {"offset": self.stream.offset, "epoch": self.stream.epoch},
                            subscription, recover, protocol, rejectUnrecovered)

    def checkPosition(self, subscription: Any, force: bool) -> Optional[Deferred[bool]]:
        self.asked.append(("checkPosition", (subscription, force)))
        if "checkPosition" not in self.answers:
            return None
        return self._answer("checkPosition", None, subscription, force)
