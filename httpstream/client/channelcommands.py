# -*- test-case-name: tests.test_client_channels -*-
"""
The channel commands of a client (Centrifugo's ``client.go`` subscribe, unsubscribe, publish, presence, history,
sub_refresh), and what reaches a subscription: publications (positioned, maybe as Fossil deltas), join and leave.

Kept apart from L{httpstream.client.client} (the connection's state machine) as a mixin: both halves share the client's
state, but this one is only about channels. Where a positioned subscription starts, what a recovering one gets
and the periodic check of positions are in L{httpstream.policy.recovery}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from twisted.internet.defer import Deferred, fail
from twisted.python.failure import Failure

from httpstream.protocol import codes
from httpstream.policy.channels import ChannelError
from httpstream.config import ChannelOptions
from httpstream.engines import HistoryError, HistoryResult
from httpstream.policy.proxy import ProxyDisconnect, ProxyError, ProxySubscribeRequest
from httpstream.policy.recovery import checkPosition, position
from httpstream.client.subscription import PublicationFrames, Subscription
from httpstream.policy.tokens import InvalidToken, TokenExpired
from httpstream.protocol.codes import (
    DISCONNECT_INSUFFICIENT_STATE,
    DISCONNECT_SUBSCRIPTION_EXPIRED,
    UNSUBSCRIBE_EXPIRED,
    UNSUBSCRIBE_INSUFFICIENT_STATE,
)

if TYPE_CHECKING:
    from httpstream.client.client import Client


class SubscribeError(Exception):
    """A subscribe that ends with an error reply (C{error}) or a disconnect (C{disconnect})."""

    def __init__(self, error: Optional[codes.Error] = None, disconnect: Optional[codes.Disconnect] = None) -> None:
        super().__init__(error or disconnect)
        self.error = error
        self.disconnect = disconnect


class ChannelCommands:
    """Mixed into L{Client}."""

    subs: dict[str, Subscription]

    # subscribe

    def _subscribe(self: "Client", commandID: int, request: dict) -> Any:
        channel = request.get("channel", "")
        if not channel:
            self._disconnect(codes.DISCONNECT_BAD_REQUEST)
            return None
        delta = request.get("delta", "")
        if delta and delta != "fossil":
            self._disconnect(codes.DISCONNECT_BAD_REQUEST)
            return None
        d = self.subscribeChannel(channel, request, serverSide=False)

        def done(result: dict) -> None:
            self._send({"id": commandID, "subscribe": result})
            self._afterSubscribe(channel)

        def failed(failure: Failure) -> None:
            self._subscribeFailed(commandID, failure)

        return d.addCallbacks(done, failed)

    def _subscribeFailed(self: "Client", commandID: int, failure: Failure) -> None:
        if failure.check(SubscribeError):
            error: SubscribeError = failure.value
            if error.disconnect is not None:
                self._disconnect(error.disconnect)
            elif error.error is not None:
                self._replyError(commandID, error.error)
            return
        self.log.failure("client {client}: subscribe failed", failure, client=self.clientID)
        self._replyError(commandID, codes.ERROR_INTERNAL)

    def subscribeChannel(self: "Client", channel: str, request: dict, serverSide: bool,
                         subOptions: Any = None) -> Deferred[dict]:
        """
        Run Centrifugo's subscribe for C{channel}: checks, token or proxy, presence, broker subscription, recovery.
        Fires with the SubscribeResult dict, or fails with L{SubscribeError}. The caller sends the result, then
        calls L{_afterSubscribe}.

        A server-side subscription (connection token, connect proxy, personal channel, server API) is granted:
        only its namespace is checked, and it is positioned, recoverable and gets join/leave pushes only as the
        channel options (or C{subOptions.override}) force; from C{request} it takes only C{recover}, C{offset},
        C{epoch} (ConnectRequest.subs).
        """
        rules = self.node.rules
        try:
            options = rules.namespaceOptions(channel) if serverSide else rules.options(channel)
        except ChannelError as e:
            return fail(SubscribeError(e.error))
        if channel in self.subs:
            return fail(SubscribeError(codes.ERROR_ALREADY_SUBSCRIBED))
        if not serverSide and len(self.subs) >= self._config.client_channel_limit:
            return fail(SubscribeError(codes.ERROR_LIMIT_EXCEEDED))
        sub = Subscription(channel, options, serverSide=serverSide)
        token = "" if serverSide else request.get("token", "")
        result: dict[str, Any] = {}
        override: dict[str, bool] = {}
        if serverSide:
            if subOptions is not None:
                sub.chanInfo = subOptions.info
                if subOptions.data is not None:
                    result["data"] = subOptions.data
                override = dict(subOptions.override)
        elif token:
            try:
                claims = self.node.tokens.verifySubscribe(token, self._reactor.seconds())
            except TokenExpired:
                return fail(SubscribeError(codes.ERROR_TOKEN_EXPIRED))
            except InvalidToken:
                return fail(SubscribeError(codes.ERROR_PERMISSION_DENIED))
            if not self._tokenMatches(claims, channel):
                return fail(SubscribeError(disconnect=codes.DISCONNECT_INVALID_TOKEN))
            sub.chanInfo = claims.info
            if claims.data is not None:
                result["data"] = claims.data
            override = dict(claims.override)
            if claims.expireAt and not self._config.client_insecure:
                if claims.expireAt <= self._reactor.seconds():
                    # exp admits the token but its expire_at is over: Centrifugo's "expired", as at connect.
                    return fail(SubscribeError(codes.ERROR_EXPIRED))
                sub.expireAt = float(claims.expireAt)
        elif rules.subscribeProxied(channel, options, False):
            if not self.node.proxy.enabled("subscribe"):
                return fail(SubscribeError(codes.ERROR_NOT_AVAILABLE))
            d = self.node.proxy.subscribe(
                self.proxyContext(), channel, ProxySubscribeRequest(data=request.get("data"))
            )

            def proxied(reply: Optional[dict]) -> Deferred[dict]:
                reply = reply or {}
                sub.chanInfo = reply.get("info")
                if reply.get("data") is not None:
                    result["data"] = reply["data"]
                if reply.get("expire_at"):
                    sub.expireAt = float(reply["expire_at"])
                return self._completeSubscribe(sub, request, result, dict(reply.get("override") or {}))

            return d.addErrback(_proxyFailure).addCallback(proxied)
        else:
            error = rules.canSubscribe(self.user, channel, options, False)
            if error is not None:
                return fail(SubscribeError(error))
        return self._completeSubscribe(sub, request, result, override)

    def _tokenMatches(self: "Client", claims: Any, channel: str) -> bool:
        """A subscription token is for this channel, this user, and (when it names one) this connection."""
        return claims.channel == channel and claims.user == self.user and claims.client in ("", self.clientID)

    def _completeSubscribe(self: "Client", sub: Subscription, request: dict, result: dict[str, Any],
                           override: dict[str, bool]) -> Deferred[dict]:
        rules, options, channel = self.node.rules, sub.options, sub.channel
        # What the client asks for counts only on its own subscribe; permissions are judged as Centrifugo's
        # OnSubscribe does, before the client is subscribed.
        asked = (lambda flag: False) if sub.serverSide else (lambda flag: bool(request.get(flag)))
        historyAccess = not sub.serverSide and rules.historyAccess(self.user, channel, options, False)
        presenceAccess = not sub.serverSide and rules.presenceAccess(self.user, channel, options, False)
        sub.presence = override.get("presence", options.presence)
        sub.joinLeave = override.get("join_leave", options.join_leave)
        sub.pushJoinLeave = override.get("force_push_join_leave", options.force_push_join_leave) or (
            asked("join_leave") and options.join_leave and presenceAccess
        )
        # Like the channel options, but what the token, proxy or API overrides wins (ChannelRules.recovery and
        # .positioning, with the forced flags overridden).
        forceRecovery = override.get("force_recovery", options.force_recovery)
        forcePositioning = override.get("force_positioning", options.force_positioning)
        hasHistory = options.history
        sub.recoverable = hasHistory and (
            forceRecovery or (asked("recoverable") and (options.allow_recovery or historyAccess))
        )
        sub.positioned = hasHistory and (
            sub.recoverable or forcePositioning
            or (asked("positioned") and (options.allow_positioning or historyAccess))
        )
        sub.delta = asked("delta") and request.get("delta") == "fossil" and "fossil" in options.allowed_delta_types
        self.subs[channel] = sub
        self.channels.add(channel)

        def stillWanted(value: Any) -> Any:
            # The client went away, or was unsubscribed, while the engine worked: go no further.
            if self.subs.get(channel) is not sub:
                raise SubscribeError(codes.ERROR_INTERNAL)
            return value

        def fail(failure: Failure) -> Failure:
            if self.subs.get(channel) is sub:
                self._dropSubscription(channel)
            return failure

        d = self.node.addSubscription(channel, self).addCallback(stillWanted)
        if sub.presence:
            d.addCallback(lambda _: self.node.presence.add(channel, self.clientID, self.clientInfo(sub)))
            d.addCallback(stillWanted)
        if sub.positioned:
            d.addCallback(lambda _: position(self.node.broker, self._config, sub, request, self.protocol,
                                             self._reactor.seconds()))
            d.addCallback(stillWanted)
            d.addCallback(result.update)
        d.addCallback(lambda _: self._subscribeResult(sub, result))
        return d.addErrback(fail)

    def _subscribeResult(self: "Client", sub: Subscription, result: dict[str, Any]) -> dict:
        if sub.expireAt:
            result["expires"] = True
            result["ttl"] = max(0, int(sub.expireAt - self._reactor.seconds()))
        if sub.recoverable:
            result["recoverable"] = True
        if sub.positioned:
            result["positioned"] = True
        if sub.delta:
            result["delta"] = True
        if not result.get("offset"):
            result.pop("offset", None)
        return result

    def _afterSubscribe(self: "Client", channel: str) -> None:
        """The subscribe reply (or push) is out: deliver what waited for it, then announce the join."""
        sub = self.subs.get(channel)
        if sub is None or self.closed:
            return
        sub.subscribing = False
        buffered, sub.buffered = sub.buffered, []
        for frames in buffered:
            self.deliverPublication(frames)
        if sub.joinLeave and self.subs.get(channel) is sub and not self.closed:
            # After the reply, so the subscriber may receive its own join.
            self.node.joinLeave(channel, {"join": {"info": self.clientInfo(sub)}})

    # unsubscribe

    def _unsubscribe(self: "Client", commandID: int, request: dict) -> Any:
        channel = request.get("channel", "")
        if not channel:
            self._disconnect(codes.DISCONNECT_BAD_REQUEST)
            return None
        self._leave(channel)
        self._send({"id": commandID, "unsubscribe": {}})
        return None

    def _leave(self: "Client", channel: str) -> None:
        sub = self.subs.get(channel)
        if sub is None:
            return
        self._dropSubscription(channel)
        if sub.joinLeave and not sub.subscribing:
            self.node.joinLeave(channel, {"leave": {"info": self.clientInfo(sub)}})

    def _dropSubscription(self: "Client", channel: str) -> None:
        sub = self.subs.pop(channel, None)
        if channel in self.channels:
            self.channels.discard(channel)
            self.node.removeSubscription(channel, self)
        if sub is not None and sub.presence:
            self.node.background(self.node.presence.remove(channel, self.clientID)).addErrback(
                lambda f: self.log.failure("presence remove {channel}", f, channel=channel)
            )

    def serverUnsubscribe(self: "Client", channel: str, code: int, reason: str) -> None:
        """End a subscription from the server side: an Unsubscribe push (client-side subs resubscribe >= 2500)."""
        sub = self.subs.get(channel)
        if sub is None or self.closed:
            return
        if sub.serverSide and code >= 2500:
            self._disconnect(DISCONNECT_INSUFFICIENT_STATE if code == UNSUBSCRIBE_INSUFFICIENT_STATE.code else DISCONNECT_SUBSCRIPTION_EXPIRED)
            return
        self._leave(channel)
        self._send({"push": {"channel": channel, "unsubscribe": {"code": code, "reason": reason}}})

    # publish

    def _publish(self: "Client", commandID: int, request: dict) -> Any:
        channel = request.get("channel", "")
        data = request.get("data", b"")
        if not channel or not data:
            self._disconnect(codes.DISCONNECT_BAD_REQUEST)
            return None
        rules = self.node.rules
        try:
            options = rules.options(channel)
        except ChannelError as e:
            self._replyError(commandID, e.error)
            return None
        sub = self.subs.get(channel)
        if options.proxy_publish:
            if not self.node.proxy.enabled("publish"):
                self._replyError(commandID, codes.ERROR_NOT_AVAILABLE)
                return None
            d = self.node.proxy.publish(self.proxyContext(), channel, data).addErrback(_proxyFailure)

            def proxied(reply: Optional[dict]) -> Deferred[dict]:
                reply = reply or {}
                return self.node.publish(
                    channel, reply.get("data") or data, self.clientInfo(sub), skipHistory=bool(reply.get("skip_history"))
                )

            d.addCallback(proxied)
        else:
            error = rules.canPublish(self.user, channel, options, sub is not None)
            if error is not None:
                self._replyError(commandID, error)
                return None
            d = self.node.publish(channel, data, self.clientInfo(sub))

        def published(_: object) -> None:
            self._send({"id": commandID, "publish": {}})

        def failed(failure: Failure) -> None:
            self._commandFailed(commandID, failure, "publish")

        return d.addCallbacks(published, failed)

    # presence, presence_stats, history

    def _channelOptions(self: "Client", commandID: int, request: dict) -> Optional[tuple[str, ChannelOptions]]:
        channel = request.get("channel", "")
        if not channel:
            self._disconnect(codes.DISCONNECT_BAD_REQUEST)
            return None
        try:
            return channel, self.node.rules.options(channel)
        except ChannelError as e:
            self._replyError(commandID, e.error)
            return None

    def _presence(self: "Client", commandID: int, request: dict) -> Any:
        return self._presenceCommand(commandID, request, "presence")

    def _presenceStats(self: "Client", commandID: int, request: dict) -> Any:
        return self._presenceCommand(commandID, request, "presence_stats")

    def _presenceCommand(self: "Client", commandID: int, request: dict, method: str) -> Any:
        found = self._channelOptions(commandID, request)
        if found is None:
            return None
        channel, options = found
        error = self.node.rules.canPresence(self.user, channel, options, channel in self.subs)
        if error is not None:
            self._replyError(commandID, error)
            return None
        if method == "presence":
            d = self.node.presence.presence(channel).addCallback(lambda p: {"presence": p})
        else:
            d = self.node.presence.stats(channel)
        return d.addCallbacks(
            lambda reply: self._send({"id": commandID, method: reply}),
            lambda f: self._commandFailed(commandID, f, method),
        )

    def _history(self: "Client", commandID: int, request: dict) -> Any:
        found = self._channelOptions(commandID, request)
        if found is None:
            return None
        channel, options = found
        error = self.node.rules.canHistory(self.user, channel, options, channel in self.subs)
        if error is not None:
            self._replyError(commandID, error)
            return None
        cap = self._config.client_history_max_publication_limit
        limit = int(request.get("limit", 0) or 0)
        if cap and (limit < 0 or limit > cap):
            limit = cap
        # An empty since ({}) is still a since: offset 0 (reverse then answers 107).
        since = request.get("since")
        metaTTL = options.history_meta_ttl or self._config.global_history_meta_ttl
        d = self.node.broker.history(channel, since, limit, bool(request.get("reverse")), metaTTL)

        def answer(history: HistoryResult) -> None:
            self._send({"id": commandID, "history": {
                "publications": history.publications, "offset": history.offset, "epoch": history.epoch,
            }})

        return d.addCallbacks(answer, lambda f: self._commandFailed(commandID, f, "history"))

    def _commandFailed(self: "Client", commandID: int, failure: Failure, method: str) -> None:
        if failure.check(HistoryError):
            self._replyError(commandID, failure.value.error)
        elif failure.check(SubscribeError) and failure.value.error is not None:
            self._replyError(commandID, failure.value.error)
        elif failure.check(SubscribeError) and failure.value.disconnect is not None:
            self._disconnect(failure.value.disconnect)
        else:
            self.log.failure("client {client}: {method} failed", failure, client=self.clientID, method=method)
            self._replyError(commandID, codes.ERROR_INTERNAL)

    # sub_refresh

    def _subRefresh(self: "Client", commandID: int, request: dict) -> Any:
        channel = request.get("channel", "")
        if not channel:
            self._disconnect(codes.DISCONNECT_BAD_REQUEST)
            return None
        sub = self.subs.get(channel)
        if sub is None or sub.subscribing:
            self._replyError(commandID, codes.ERROR_PERMISSION_DENIED)
            return None
        if sub.serverSide:
            # Only the server refreshes a server-side subscription.
            self._disconnect(codes.DISCONNECT_BAD_REQUEST)
            return None
        token = request.get("token", "")
        if not token:
            self._replyError(commandID, codes.ERROR_BAD_REQUEST)
            return None
        now = self._reactor.seconds()
        try:
            claims = self.node.tokens.verifySubscribe(token, now)
        except TokenExpired:
            # Centrifugo's handler answers "expired", which C's client-side sub_refresh does not check: it takes
            # the empty reply as is, a success without expiry that leaves the subscription without expiry and info.
            sub.expireAt, sub.chanInfo = 0.0, None
            self._send({"id": commandID, "sub_refresh": {}})
            return None
        except InvalidToken:
            self._disconnect(codes.DISCONNECT_INVALID_TOKEN)
            return None
        if not self._tokenMatches(claims, channel):
            self._disconnect(codes.DISCONNECT_INVALID_TOKEN)
            return None
        expireAt = 0.0 if self._config.client_insecure else float(claims.expireAt)
        result: dict[str, Any] = {}
        if expireAt:
            if expireAt < now:
                self._replyError(commandID, codes.ERROR_EXPIRED)
                return None
            result = {"expires": True, "ttl": int(expireAt - now)}
        sub.expireAt, sub.chanInfo = expireAt, claims.info
        self._send({"id": commandID, "sub_refresh": result})
        return None

    def checkSubscriptionsExpired(self: "Client") -> None:
        """Unsubscribe (2501) channels whose subscription token ran out more than the grace period ago."""
        now = self._reactor.seconds()
        grace = self._config.client_expired_sub_close_delay
        proxy = self.node.proxy
        for channel, sub in list(self.subs.items()):
            if not sub.expireAt or sub.expireAt > now:
                continue
            if sub.options.proxy_sub_refresh and proxy.enabled("sub_refresh"):
                # The backend refreshes this subscription (Centrifugo's sub refresh proxy), not the client.
                if not sub.extra.get("refreshing"):
                    sub.extra["refreshing"] = True
                    proxy.subRefresh(self.proxyContext(), channel).addBoth(self._subRefreshed, channel, sub)
            elif sub.expireAt + grace <= now:
                self.serverUnsubscribe(channel, *UNSUBSCRIBE_EXPIRED)

    def _subRefreshed(self: "Client", reply: Any, channel: str, sub: Subscription) -> None:
        sub.extra["refreshing"] = False
        if self.closed or self.subs.get(channel) is not sub:
            return
        if isinstance(reply, Failure) or reply["expired"]:
            self.serverUnsubscribe(channel, *UNSUBSCRIBE_EXPIRED)
            return
        sub.expireAt = float(reply["expire_at"] or 0)
        if reply.get("info") is not None:
            sub.chanInfo = reply["info"]

    def checkPositions(self: "Client", channels: Optional[list[str]] = None) -> None:
        """
        Unsubscribe (2500) positioned channels whose position no longer matches their stream's top: those due
        for a check, or right away C{channels} (publications of which may have been missed).
        """
        for channel, sub in list(self.subs.items()):
            if channels is not None and channel not in channels:
                continue
            d = checkPosition(self.node.broker, self._config, sub, self._reactor, force=channels is not None)
            if d is not None:
                d.addCallback(self._positionChecked, channel, sub)

    def _positionChecked(self: "Client", valid: bool, channel: str, sub: Subscription) -> None:
        if not valid and self.subs.get(channel) is sub:
            self.serverUnsubscribe(channel, *UNSUBSCRIBE_INSUFFICIENT_STATE)

    # What reaches a subscription

    def deliverPublication(self: "Client", frames: PublicationFrames) -> None:
        channel = frames.channel
        sub = self.subs.get(channel)
        if sub is None or self.closed:
            return
        if sub.subscribing:
            sub.buffered.append(frames)
            return
        offset = int(frames.publication.get("offset", 0) or 0)
        if sub.positioned and offset:
            if frames.epoch and sub.epoch and frames.epoch != sub.epoch:
                self.serverUnsubscribe(channel, *UNSUBSCRIBE_INSUFFICIENT_STATE)
                return
            if offset <= sub.offset:
                return  # already sent (recovery overlapping live publications)
            if offset != sub.offset + 1:
                self.serverUnsubscribe(channel, *UNSUBSCRIBE_INSUFFICIENT_STATE)
                return
            sub.offset = offset
        variant = "plain"
        if sub.delta:
            base = frames.deltaBaseOffset()
            variant = "delta" if base >= 0 and base == sub.deltaBase else "full"
            sub.deltaBase = offset if offset else -1
        frame = frames.frame(self.protocol, variant)
        if frame is None:
            self._disconnect(codes.DISCONNECT_INAPPROPRIATE_PROTOCOL)
            return
        self._queue(frame)

    def deliverJoinLeave(self: "Client", channel: str, frame: bytes) -> None:
        sub = self.subs.get(channel)
        # Not while subscribing: nothing of the channel may reach the client before its subscribe reply.
        if sub is not None and sub.pushJoinLeave and not sub.subscribing and not self.closed:
            self._queue(frame)


def _proxyFailure(failure: Failure) -> Failure:
    if failure.check(ProxyError):
        raise SubscribeError(failure.value.error)
    if failure.check(ProxyDisconnect):
        raise SubscribeError(disconnect=failure.value.disconnect)
    return failure


__all__ = ["ChannelCommands", "SubscribeError"]
