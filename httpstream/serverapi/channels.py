# -*- test-case-name: tests.serverapi.test_api -*-
"""
The server API's methods about channels and the node: C{presence}, C{presence_stats}, C{history},
C{history_remove}, C{channels}, C{info}, and the server-side C{rpc}.
"""

from __future__ import annotations

from typing import Any, Union

from twisted.internet.defer import Deferred

from httpstream.origin import OriginPatternError, compile_origin_pattern
from httpstream.policy.channels import ChannelError
from httpstream.policy.proxy import ProxyContext
from httpstream.readers import Fields
from httpstream.serverapi.errors import ERROR_BAD_REQUEST, ERROR_METHOD_NOT_FOUND, ERROR_NOT_AVAILABLE, APIError
from httpstream.serverapi.requests import HistoryRequest
from httpstream.values import ClientInfo, HistoryResult

__all__ = ["ChannelMethods", "channelOptions"]


def channelOptions(node: Any, channel: str) -> Any:
    """
    The options of C{channel}'s namespace.

    @raise APIError: 107 for no channel, the channel rules' error (102 unknown namespace) otherwise.
    """
    if not channel:
        raise APIError(ERROR_BAD_REQUEST)
    try:
        return node.rules.options(channel)
    except ChannelError as e:
        raise APIError(e.error) from None


class ChannelMethods:
    """What the API asks of one node's (or, through its control plane, the cluster's) channels."""

    def __init__(self, node: Any) -> None:
        self.node = node

    def presence(self, f: Fields) -> Deferred[dict[str, Any]]:
        channel = f.string("channel")
        if not channelOptions(self.node, channel).presence:
            raise APIError(ERROR_NOT_AVAILABLE)
        d: Deferred[dict[str, ClientInfo]] = self.node.presence.presence(channel)
        return d.addCallback(lambda p: {"presence": {client: info.asDict() for client, info in p.items()}})

    def presenceStats(self, f: Fields) -> Deferred[dict[str, Any]]:
        channel = f.string("channel")
        if not channelOptions(self.node, channel).presence:
            raise APIError(ERROR_NOT_AVAILABLE)
        d: Deferred[dict[str, Any]] = self.node.presence.stats(channel)
        return d

    def history(self, f: Fields) -> Deferred[dict[str, Any]]:
        request = HistoryRequest.read(f)
        options = channelOptions(self.node, request.channel)
        if not options.history:
            raise APIError(ERROR_NOT_AVAILABLE)
        metaTTL = options.history_meta_ttl or self.node.config.global_history_meta_ttl
        d: Deferred[HistoryResult] = self.node.broker.history(request.channel, request.since, request.limit,
                                                              request.reverse, metaTTL)
        return d.addCallback(HistoryResult.asDict)

    def historyRemove(self, f: Fields) -> Deferred[dict[str, Any]]:
        channel = f.string("channel")
        if not channelOptions(self.node, channel).history:
            raise APIError(ERROR_NOT_AVAILABLE)
        d: Deferred[Any] = self.node.broker.removeHistory(channel)
        return d.addCallback(lambda _: {})

    def channels(self, f: Fields) -> Union[dict[str, Any], Deferred[dict[str, Any]]]:
        pattern = f.string("pattern")

        def answer(counts: dict[str, int]) -> dict[str, Any]:
            return {"channels": {channel: {"num_clients": count} for channel, count in counts.items()}}

        try:
            compile_origin_pattern(pattern)  # a bad one is the caller's error, answered before any node is asked
        except OriginPatternError:
            raise APIError(ERROR_BAD_REQUEST) from None
        control = self.node.control
        if control is not None:
            d: Deferred[dict[str, int]] = control.channels(pattern)
            return d.addCallback(answer)
        return answer(self.node.channelCounts(pattern))

    def info(self, f: Fields) -> dict[str, Any]:
        control = self.node.control
        return {"nodes": control.nodes() if control is not None else [self.node.info()]}

    def rpc(self, f: Fields) -> Deferred[dict[str, Any]]:
        method, params = f.string("method"), f.raw("params")
        if not method:
            raise APIError(ERROR_BAD_REQUEST)
        if method not in self.node.rpc:
            raise APIError(ERROR_METHOD_NOT_FOUND)
        ctx = ProxyContext(clientID="", transport="api")
        d: Deferred[Any] = self.node.rpc.handle(ctx, method, params or b"null")
        return d.addCallback(lambda data: {"data": data} if data else {})
