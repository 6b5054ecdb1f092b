# -*- test-case-name: tests.client.test_clientpolicy -*-
"""
The client policy a node gets from its configuration: tokens, namespaces and their permissions, the proxies,
the RPC methods and send hooks registered in process, and recovery from history. One L{IClientPolicy}; the
client's state machine asks it and applies what it answers.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence
from weakref import WeakKeyDictionary

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure
from zope.interface import implementer

from httpstream.config import ChannelOptions
from httpstream.decisions import (
    ConnectDecision,
    ConnectRequest,
    Connection,
    MapWriteDecision,
    PublishDecision,
    RefreshDecision,
    Refused,
    SubscribeDecision,
    SubscribeRequest,
    TrackBatch,
)
from httpstream.config.sharedpoll import isSharedPoll
from httpstream.engines import HistoryError
from httpstream.interfaces import IClientPolicy
from httpstream.policy import connecting, subscribing
from httpstream.policy.channels import ChannelError
from httpstream.policy.connecting import proxyRefusal
from httpstream.policy.host import PolicyHost
from httpstream.policy.maps import mapWriteKey
from httpstream.policy.proxy import ProxyContext
from httpstream.policy.recovery import checkPosition, historyTop, position
from httpstream.policy.tracksignature import TrackSignatures
from httpstream.protocol import codes
from httpstream.values import ClientInfo, HistoryResult, StreamPosition

__all__ = ["ConfiguredPolicy"]


def _historyRefusal(failure: Failure) -> Failure:
    if isinstance(failure.value, HistoryError):
        raise Refused(failure.value.error)
    return failure


@implementer(IClientPolicy)
class ConfiguredPolicy:
    """
    Decisions from the node's configuration, token verifier, channel rules, proxy and RPC registry, read on each
    call (a reload replaces them on the node).
    """

    def __init__(self, node: PolicyHost) -> None:
        self._node = node
        # What the proxy and RPC handlers learn about a connection, made once per connection value.
        self._contexts: WeakKeyDictionary[Connection, ProxyContext] = WeakKeyDictionary()

    def context(self, connection: Connection) -> ProxyContext:
        """The proxy's (and the in-process RPC handlers') view of C{connection}."""
        context = self._contexts.get(connection)
        if context is None:
            context = ProxyContext(
                clientID=connection.clientID,
                transport=connection.transport,
                protocol=connection.protocol,
                encoding="binary" if connection.protocol == "protobuf" else "json",
                user=connection.user,
                meta=connection.meta,
                headers=self._node.proxy.headersFor(connection.requestHeaders, connection.emulatedHeaders),
            )
            self._contexts[connection] = context
        return context

    def connecting(self, connection: Connection, request: ConnectRequest) -> Deferred[ConnectDecision]:
        return connecting.connecting(self._node, connection, request, self.context(connection))

    def refreshing(self, connection: Connection, token: str) -> Deferred[RefreshDecision]:
        return connecting.refreshing(self._node, connection, token, self.context(connection))

    def channelOptions(self, channel: str, serverSide: bool) -> ChannelOptions:
        rules = self._node.rules
        try:
            return rules.namespaceOptions(channel) if serverSide else rules.options(channel)
        except ChannelError as e:
            raise Refused(e.error)

    def subscribing(self, connection: Connection, request: SubscribeRequest) -> Deferred[SubscribeDecision]:
        return subscribing.subscribing(self._node, connection, request, lambda: self.context(connection))

    def subRefreshing(self, connection: Connection, channel: str, options: ChannelOptions,
                      token: str) -> Deferred[RefreshDecision]:
        return subscribing.subRefreshing(self._node, connection, channel, options, token,
                                         lambda: self.context(connection))

    def mapWriting(self, connection: Connection, channel: str, options: ChannelOptions, key: str, data: bytes,
                   remove: bool, subscribed: bool) -> Deferred[MapWriteDecision]:
        # Centrifugo's OnMapPublish / OnMapRemove: the namespace's map publish (remove) proxy decides when it has
        # one, its map permissions and client_key otherwise.
        node = self._node
        enabled, proxyName = ((options.map_remove_proxy_enabled, options.map_remove_proxy_name) if remove
                              else (options.map_publish_proxy_enabled, options.map_publish_proxy_name))
        if enabled:
            event = "map_remove" if remove else "map_publish"
            if not node.proxy.enabled(event, proxyName):
                return fail(Refused(codes.ERROR_NOT_AVAILABLE))
            ctx = self.context(connection)
            d = (node.proxy.mapRemove(ctx, channel, key, proxyName) if remove
                 else node.proxy.mapPublish(ctx, channel, key, data, proxyName))
            return d.addErrback(proxyRefusal).addCallback(_proxiedMapWrite, key)
        try:
            return succeed(MapWriteDecision(mapWriteKey(node.config, options, connection.clientID, connection.user,
                                                        subscribed, key, remove)))
        except Refused as e:
            return fail(e)

    def tracking(self, connection: Connection, channel: str, options: ChannelOptions,
                 batches: Sequence[TrackBatch]) -> Deferred[list[int]]:
        # Centrifugo's OnTrack: the application signed the keys (httpstream.policy.tracksignature).
        if not isSharedPoll(options):
            return fail(Refused(codes.ERROR_PERMISSION_DENIED))
        signatures = TrackSignatures.fromConfig(self._node.config)
        try:
            return succeed(signatures.check(channel, connection.user, batches, self._node.reactor.seconds()))
        except Refused as e:
            return fail(e)

    def publishing(self, connection: Connection, channel: str, options: ChannelOptions, data: bytes,
                   subscribed: bool) -> Deferred[PublishDecision]:
        node = self._node
        if options.proxy_publish or options.publish_proxy_name:  # a name alone turns the proxy on (v5)
            proxyName = options.publish_proxy_name
            if not node.proxy.enabled("publish", proxyName):
                return fail(Refused(codes.ERROR_NOT_AVAILABLE))

            def proxied(reply: Optional[dict[str, Any]]) -> PublishDecision:
                reply = reply or {}
                return PublishDecision(reply.get("data") or data, skipHistory=bool(reply.get("skip_history")))

            d = node.proxy.publish(self.context(connection), channel, data, proxyName)
            return d.addErrback(proxyRefusal).addCallback(proxied)
        error = node.rules.canPublish(connection.user, channel, options, subscribed)
        if error is not None:
            return fail(Refused(error))
        return succeed(PublishDecision(data))

    def presence(self, connection: Connection, channel: str, options: ChannelOptions,
                 subscribed: bool) -> Deferred[dict[str, ClientInfo]]:
        error = self._node.rules.canPresence(connection.user, channel, options, subscribed)
        if error is not None:
            return fail(Refused(error))
        return self._node.presence.presence(channel)

    def presenceStats(self, connection: Connection, channel: str, options: ChannelOptions,
                      subscribed: bool) -> Deferred[dict[str, int]]:
        error = self._node.rules.canPresence(connection.user, channel, options, subscribed)
        if error is not None:
            return fail(Refused(error))
        return self._node.presence.stats(channel)

    def history(self, connection: Connection, channel: str, options: ChannelOptions, subscribed: bool,
                since: Optional[StreamPosition], limit: int, reverse: bool) -> Deferred[HistoryResult]:
        node = self._node
        error = node.rules.canHistory(connection.user, channel, options, subscribed)
        if error is not None:
            return fail(Refused(error))
        cap = node.config.client_history_max_publication_limit
        if cap and (limit < 0 or limit > cap):
            limit = cap
        metaTTL = options.history_meta_ttl or node.config.global_history_meta_ttl
        d: Deferred[HistoryResult] = node.broker.history(channel, since, limit, reverse, metaTTL)
        return d.addErrback(_historyRefusal)

    def rpc(self, connection: Connection, method: str, data: bytes) -> Deferred[bytes]:
        node = self._node
        return node.rpc.dispatch(self.context(connection), method, data, node.proxy).addErrback(proxyRefusal)

    def message(self, connection: Connection, data: bytes) -> Deferred[None]:
        return self._node.rpc.handleSend(self.context(connection), data).addErrback(proxyRefusal)

    def position(self, subscription: Any, recover: Optional[StreamPosition], protocol: str,
                 rejectUnrecovered: bool = False) -> Deferred[dict[str, Any]]:
        node = self._node
        return position(node.broker, node.config, subscription, recover, protocol, node.reactor.seconds(),
                        rejectUnrecovered)

    def checkPosition(self, subscription: Any, force: bool) -> Optional[Deferred[bool]]:
        node = self._node
        return checkPosition(historyTop(node.broker, node.config, subscription), node.config, subscription,
                             node.reactor, force=force)


def _proxiedMapWrite(decision: MapWriteDecision, key: str) -> MapWriteDecision:
    """A map publish/remove proxy's result: its key when it names one, else the client's (which must not be empty)."""
    if not decision.key and not key:
        raise Refused(codes.ERROR_BAD_REQUEST)
    return decision if decision.key else attrs.evolve(decision, key=key)
