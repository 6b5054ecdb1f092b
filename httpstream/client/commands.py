# -*- test-case-name: tests.client.test_client_channels -*-
"""
The commands of a connected client that leave the connection as it is (Centrifugo's ``client.go`` subscribe,
unsubscribe, publish, presence, presence_stats, history, sub_refresh, rpc, send): each checks its request, asks
the policy, and replies.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Protocol, Union, cast

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from httpstream.client.expiry import ttlUntil
from httpstream.client.host import ClientHost
from httpstream.client.mapflow import MapFlows
from httpstream.client.mapwrite import mapPublish
from httpstream.client.sharedpoll import Tracker, keyedRefresh
from httpstream.client.subscription import Subscription
from httpstream.client.subscriptions import Subscriptions
from httpstream.config import ChannelOptions
from httpstream.decisions import Connection, PublishDecision, RefreshDecision, Refused
from httpstream.interfaces import IClientPolicy
from httpstream.protocol import codes
from httpstream.values import ClientInfo, HistoryResult, StreamPosition

Result = Union[None, Deferred[Any]]


class Commander(Protocol):
    """The client, as its channel commands use it."""

    node: ClientHost
    policy: IClientPolicy
    subs: Subscriptions
    maps: MapFlows
    clientID: str
    user: str

    def connection(self) -> Connection: ...

    def clientInfo(self, sub: Optional[Subscription] = None) -> ClientInfo: ...

    def send(self, reply: dict[str, Any]) -> None: ...

    def replyError(self, commandID: int, error: codes.Error) -> None: ...

    def close(self, disconnect: codes.Disconnect, flush: bool = True) -> None: ...

    def logFailure(self, what: str, failure: Failure) -> None: ...

    def commandFailed(self, commandID: int, failure: Failure, method: str) -> None: ...

    def refused(self, commandID: int, refusal: Refused) -> None: ...

    def seconds(self) -> float: ...

    def refreshCommand(self, commandID: int, request: dict[str, Any]) -> Result: ...


class ChannelCommands:
    """The channel commands of one client, and its RPCs and asynchronous messages."""

    __slots__ = ("_client",)

    def __init__(self, client: Commander) -> None:
        self._client = client

    def connectAgain(self, commandID: int, request: dict[str, Any]) -> Result:
        self._client.close(codes.DISCONNECT_BAD_REQUEST)
        return None

    def ping(self, commandID: int, request: dict[str, Any]) -> Result:
        # A ping command of the client (not the pong, an empty command): Centrifugo answers 108.
        self._client.replyError(commandID, codes.ERROR_NOT_AVAILABLE)
        return None

    def refresh(self, commandID: int, request: dict[str, Any]) -> Result:
        return self._client.refreshCommand(commandID, request)

    def _channel(self, request: dict[str, Any]) -> str:
        channel: str = request.get("channel", "")
        if not channel:
            self._client.close(codes.DISCONNECT_BAD_REQUEST)
        return channel

    def subscribe(self, commandID: int, request: dict[str, Any]) -> Result:
        client = self._client
        channel = self._channel(request)
        if not channel:
            return None
        delta = request.get("delta", "")
        if delta and delta != "fossil":
            client.close(codes.DISCONNECT_BAD_REQUEST)
            return None
        if request.get("type") in (1, 2, 3):
            return client.maps.subscribe(commandID, request)  # a map subscribe: httpstream.client.mapflow

        def done(result: dict[str, Any]) -> None:
            client.send({"id": commandID, "subscribe": result})
            client.subs.joined(channel)

        return client.subs.subscribe(channel, request).addCallbacks(
            done, lambda f: client.commandFailed(commandID, f, "subscribe")
        )

    def unsubscribe(self, commandID: int, request: dict[str, Any]) -> Result:
        client = self._client
        channel = self._channel(request)
        if not channel:
            return None

        def leave(_: object = None) -> None:
            client.maps.cancel(channel)
            client.subs.leave(channel)
            client.send({"id": commandID, "unsubscribe": {}})

        # A subscribe to the channel still under way (commands running at once, or the API's) is let finish
        # first, as Centrifugo's unsubscribe waits for it: the client then ends up unsubscribed either way.
        underWay = client.subs.underWay(channel)
        if underWay is None:
            leave()
            return None
        return underWay.addCallback(leave)

    def _options(self, commandID: int, channel: str) -> Optional[ChannelOptions]:
        try:
            return self._client.policy.channelOptions(channel, False)
        except Refused as e:
            self._client.refused(commandID, e)
            return None

    def publish(self, commandID: int, request: dict[str, Any]) -> Result:
        client = self._client
        if request.get("type") == 1:
            return mapPublish(client, commandID, request)  # a map key's set or removal
        channel = request.get("channel", "")
        data = request.get("data", b"")
        if not channel or not data:
            client.close(codes.DISCONNECT_BAD_REQUEST)
            return None
        options = self._options(commandID, channel)
        if options is None:
            return None
        sub = client.subs.get(channel)
        d = client.policy.publishing(client.connection(), channel, options, data, sub is not None)

        def accepted(decision: PublishDecision) -> Deferred[Optional[StreamPosition]]:
            return client.node.publish(channel, decision.data, client.clientInfo(sub), skipHistory=decision.skipHistory,
                                       options=options)

        return d.addCallback(accepted).addCallbacks(
            lambda _: client.send({"id": commandID, "publish": {}}),
            lambda f: client.commandFailed(commandID, f, "publish"),
        )

    def presence(self, commandID: int, request: dict[str, Any]) -> Result:
        return self._presence(commandID, request, "presence")

    def presenceStats(self, commandID: int, request: dict[str, Any]) -> Result:
        return self._presence(commandID, request, "presence_stats")

    def _presence(self, commandID: int, request: dict[str, Any], method: str) -> Result:
        client = self._client
        channel = self._channel(request)
        options = self._options(commandID, channel) if channel else None
        if options is None:
            return None
        subscribed = channel in client.subs
        d: Deferred[Any]
        if method == "presence":
            d = client.policy.presence(client.connection(), channel, options, subscribed)
            d.addCallback(lambda presence: {"presence": {k: info.asDict() for k, info in presence.items()}})
        else:
            d = client.policy.presenceStats(client.connection(), channel, options, subscribed)
        return d.addCallbacks(
            lambda reply: client.send({"id": commandID, method: reply}),
            lambda f: client.commandFailed(commandID, f, method),
        )

    def history(self, commandID: int, request: dict[str, Any]) -> Result:
        client = self._client
        channel = self._channel(request)
        options = self._options(commandID, channel) if channel else None
        if options is None:
            return None
        # An empty since ({}) is still a since: offset 0 (reverse then answers 107).
        since = request.get("since")
        position = None if since is None else StreamPosition(since.get("offset", 0), since.get("epoch", ""))
        d = client.policy.history(client.connection(), channel, options, channel in client.subs,
                                  position, int(request.get("limit", 0) or 0), bool(request.get("reverse")))

        def answer(history: HistoryResult) -> None:
            client.send({"id": commandID, "history": history.asDict()})

        return d.addCallbacks(answer, lambda f: client.commandFailed(commandID, f, "history"))

    def subRefresh(self, commandID: int, request: dict[str, Any]) -> Result:
        client = self._client
        channel = self._channel(request)
        if not channel:
            return None
        kind = int(request.get("type", 0) or 0)
        if kind:
            return keyedRefresh(cast(Tracker, client), commandID, channel, kind, request)  # shared poll track / untrack
        sub = client.subs.get(channel)
        if sub is None or sub.subscribing:
            client.replyError(commandID, codes.ERROR_PERMISSION_DENIED)
            return None
        if sub.serverSide:
            # Only the server refreshes a server-side subscription.
            client.close(codes.DISCONNECT_BAD_REQUEST)
            return None
        token = request.get("token", "")
        if not token:
            client.replyError(commandID, codes.ERROR_BAD_REQUEST)
            return None

        def refreshed(decision: RefreshDecision) -> None:
            sub.expireAt, sub.chanInfo = decision.expireAt, decision.info
            result: dict[str, Any] = {}
            if decision.expireAt:
                result = {"expires": True, "ttl": ttlUntil(decision.expireAt, client.seconds())}
            client.send({"id": commandID, "sub_refresh": result})

        d = client.policy.subRefreshing(client.connection(), channel, sub.options, token)
        return d.addCallbacks(refreshed, lambda f: client.commandFailed(commandID, f, "sub_refresh"))

    def rpc(self, commandID: int, request: dict[str, Any]) -> Result:
        client = self._client
        d = client.policy.rpc(client.connection(), request.get("method", ""), request.get("data") or b"")
        return d.addCallbacks(
            lambda data: client.send({"id": commandID, "rpc": {"data": data} if data else {}}),
            lambda f: client.commandFailed(commandID, f, "rpc"),
        )

    def message(self, commandID: int, request: dict[str, Any]) -> Result:
        client = self._client

        def failed(failure: Failure) -> None:
            if isinstance(failure.value, Refused) and failure.value.disconnect is not None:
                client.close(failure.value.disconnect)
            else:
                client.logFailure("send", failure)

        return client.policy.message(client.connection(), request.get("data") or b"").addErrback(failed)


# Every command of a connected client, in the order of the Command fields (the first one present wins, as in
# Centrifugo): one table for every client, not a dict of bound methods per connection.
COMMANDS: tuple[tuple[str, Callable[[ChannelCommands, int, dict[str, Any]], Result]], ...] = (
    ("connect", ChannelCommands.connectAgain),
    ("subscribe", ChannelCommands.subscribe),
    ("unsubscribe", ChannelCommands.unsubscribe),
    ("publish", ChannelCommands.publish),
    ("presence", ChannelCommands.presence),
    ("presence_stats", ChannelCommands.presenceStats),
    ("history", ChannelCommands.history),
    ("ping", ChannelCommands.ping),
    ("send", ChannelCommands.message),
    ("rpc", ChannelCommands.rpc),
    ("refresh", ChannelCommands.refresh),
    ("sub_refresh", ChannelCommands.subRefresh),
)
