# -*- test-case-name: tests.test_client_channels -*-
"""
The channel commands of a client (Centrifugo's ``client.go`` subscribe, unsubscribe, publish, presence, history,
sub_refresh), and what reaches a subscription: publications (positioned, maybe as Fossil deltas), join and leave.

Kept apart from L{httpstream.client} (the connection's state machine) as a mixin: both halves share the client's
state, but this one is only about channels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure

from httpstream import codes
from httpstream.channels import ChannelError
from httpstream.config import ChannelOptions
from httpstream.engines import HistoryError, HistoryResult
from httpstream.proxy import ProxyDisconnect, ProxyError, ProxySubscribeRequest
from httpstream.subscription import PublicationFrames, Subscription, asJSONString
from httpstream.tokens import InvalidToken, TokenExpired

if TYPE_CHECKING:
    from httpstream.client import Client

UNSUBSCRIBE_INSUFFICIENT_STATE = (2500, "insufficient state")
UNSUBSCRIBE_EXPIRED = (2501, "subscription expired")
UNSUBSCRIBE_SERVER = (2000, "server unsubscribe")
DISCONNECT_INSUFFICIENT_STATE = codes.Disconnect(3010, "insufficient state")
DISCONNECT_SUBSCRIPTION_EXPIRED = codes.Disconnect(3006, "subscription expired")


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
        Fires with the SubscribeResult dict, or fails with L{SubscribeError}.
        """
        rules = self.node.rules
        try:
            options = rules.options(channel)
        except ChannelError as e:
            return _failed(SubscribeError(e.error))
        if channel in self.subs:
            return _failed(SubscribeError(codes.ERROR_ALREADY_SUBSCRIBED))
        if not serverSide and len(self.subs) >= self._config.client_channel_limit:
            return _failed(SubscribeError(codes.ERROR_LIMIT_EXCEEDED))
        sub = Subscription(channel, options, serverSide=serverSide)
        token = request.get("token", "")
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
                return _failed(SubscribeError(codes.ERROR_TOKEN_EXPIRED))
            except InvalidToken:
                return _failed(SubscribeError(codes.ERROR_PERMISSION_DENIED))
            if claims.channel != channel or claims.user != self.user or (claims.client and claims.client != self.clientID):
                return _failed(SubscribeError(disconnect=codes.DISCONNECT_INVALID_TOKEN))
            sub.chanInfo = claims.info
            if claims.data is not None:
                result["data"] = claims.data
            override = dict(claims.override)
            if claims.expireAt and not self._config.client_insecure:
                if claims.expireAt <= self._reactor.seconds():
                    return _failed(SubscribeError(codes.ERROR_TOKEN_EXPIRED))
                sub.expireAt = float(claims.expireAt)
        elif rules.subscribeProxied(channel, options, False) and self.node.proxy.enabled("subscribe"):
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
                return _failed(SubscribeError(error))
        return self._completeSubscribe(sub, request, result, override)

    def _completeSubscribe(self: "Client", sub: Subscription, request: dict, result: dict[str, Any],
                           override: dict[str, bool]) -> Deferred[dict]:
        rules, options, channel = self.node.rules, sub.options, sub.channel
        historyAccess = rules.historyAccess(self.user, channel, options, True)
        presenceAccess = rules.presenceAccess(self.user, channel, options, True)
        sub.presence = override.get("presence", options.presence)
        sub.joinLeave = override.get("join_leave", options.join_leave)
        forcePush = override.get("force_push_join_leave", options.force_push_join_leave)
        sub.pushJoinLeave = sub.joinLeave and (
            forcePush or (bool(request.get("join_leave")) and presenceAccess) or self._config.client_insecure
        )
        forcedOptions = options
        if "force_recovery" in override or "force_positioning" in override:
            import dataclasses

            forcedOptions = dataclasses.replace(
                options,
                force_recovery=override.get("force_recovery", options.force_recovery),
                force_positioning=override.get("force_positioning", options.force_positioning),
            )
        hasHistory = options.history
        sub.recoverable = hasHistory and rules.recovery(forcedOptions, bool(request.get("recoverable")), historyAccess)
        sub.positioned = hasHistory and (
            sub.recoverable or rules.positioning(forcedOptions, bool(request.get("positioned")), historyAccess)
        )
        sub.delta = request.get("delta") == "fossil" and "fossil" in options.allowed_delta_types
        self.subs[channel] = sub
        self.channels.add(channel)

        def fail(failure: Failure) -> Failure:
            self._dropSubscription(channel)
            return failure

        d = self.node.addSubscription(channel, self)
        if sub.presence:
            d.addCallback(lambda _: self.node.presence.add(channel, self.clientID, self.clientInfo(sub)))
        if sub.positioned:
            d.addCallback(lambda _: self._position(sub, request, result))
        d.addCallback(lambda _: self._subscribeResult(sub, result))
        return d.addErrback(fail)

    def _position(self: "Client", sub: Subscription, request: dict, result: dict[str, Any]) -> Deferred[None]:
        options = sub.options
        metaTTL = options.history_meta_ttl or self._config.global_history_meta_ttl
        recovering = sub.recoverable and bool(request.get("recover"))
        if not recovering:
            d = self.node.broker.history(sub.channel, None, 0, False, metaTTL)

            def positioned(history: HistoryResult) -> None:
                sub.offset, sub.epoch = history.offset, history.epoch
                result["offset"], result["epoch"] = history.offset, history.epoch

            return d.addCallback(positioned)
        clientOffset = int(request.get("offset", 0) or 0)
        clientEpoch = request.get("epoch", "") or ""
        limit = self._config.client_recovery_max_publication_limit
        cache = options.force_recovery_mode == "cache"
        since = None if cache else {"offset": clientOffset, "epoch": ""}
        d = self.node.broker.history(sub.channel, since, 1 if cache else (limit + 1 if limit else -1), cache, metaTTL)

        def recovered(history: HistoryResult) -> None:
            publications = history.publications
            sameEpoch = not clientEpoch or clientEpoch == history.epoch
            if cache:
                ok = sameEpoch and (history.offset == clientOffset
                                    or (publications and publications[0].get("offset") == history.offset))
                publications = [p for p in publications if p.get("offset", 0) > clientOffset] if ok else []
            else:
                contiguous = all(p.get("offset") == clientOffset + i + 1 for i, p in enumerate(publications))
                lastOffset = publications[-1]["offset"] if publications else clientOffset
                ok = sameEpoch and contiguous and lastOffset == history.offset and (
                    not limit or len(publications) <= limit
                )
            result["was_recovering"] = True
            result["epoch"] = history.epoch
            if ok:
                result["recovered"] = True
                result["offset"] = clientOffset
                if publications:
                    result["publications"] = [self._recoveredPublication(sub, p) for p in publications]
            else:
                result["offset"] = history.offset
            sub.offset, sub.epoch = history.offset, history.epoch
            if ok and publications:
                sub.deltaBase = history.offset

        def unrecoverable(failure: Failure) -> None:
            # Another epoch (the stream was lost): not an error on recovery, just "not recovered".
            failure.trap(HistoryError)
            d2 = self.node.broker.history(sub.channel, None, 0, False, metaTTL)

            def position(history: HistoryResult) -> None:
                result.update(was_recovering=True, offset=history.offset, epoch=history.epoch)
                sub.offset, sub.epoch = history.offset, history.epoch

            return d2.addCallback(position)

        return d.addCallbacks(recovered, unrecoverable)

    def _recoveredPublication(self: "Client", sub: Subscription, publication: dict) -> dict:
        if sub.delta and self.protocol == "json":
            publication = dict(publication, data=asJSONString(publication["data"]))
        return publication

    def _subscribeResult(self: "Client", sub: Subscription, result: dict[str, Any]) -> dict:
        if sub.expireAt:
            result["expires"] = True
            result["ttl"] = max(0, int(sub.expireAt - self._reactor.seconds()))
        if sub.recoverable:
            result["recoverable"] = True
        if sub.positioned:
            result["positioned"] = True
            result.setdefault("offset", sub.offset)
            result.setdefault("epoch", sub.epoch)
        if sub.delta:
            result["delta"] = True
        if not result.get("offset"):
            result.pop("offset", None)
        return result

    def _afterSubscribe(self: "Client", channel: str) -> None:
        sub = self.subs.get(channel)
        if sub is not None and sub.joinLeave and not self.closed:
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
        if sub.joinLeave:
            self.node.joinLeave(channel, {"leave": {"info": self.clientInfo(sub)}})

    def _dropSubscription(self: "Client", channel: str) -> None:
        sub = self.subs.pop(channel, None)
        if channel in self.channels:
            self.channels.discard(channel)
            self.node.removeSubscription(channel, self)
        if sub is not None and sub.presence:
            self.node.presence.remove(channel, self.clientID).addErrback(
                lambda f: self.log.failure("presence remove {channel}", f, channel=channel)
            )

    def serverUnsubscribe(self: "Client", channel: str, code: int, reason: str) -> None:
        """End a subscription from the server side: an Unsubscribe push (client-side subs resubscribe >= 2500)."""
        sub = self.subs.get(channel)
        if sub is None or self.closed:
            return
        if sub.serverSide and code >= 2500:
            self._disconnect(DISCONNECT_INSUFFICIENT_STATE if code == 2500 else DISCONNECT_SUBSCRIPTION_EXPIRED)
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
        if options.proxy_publish and self.node.proxy.enabled("publish"):
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
        since = request.get("since") or None
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
        token = request.get("token", "")
        if not channel or not token:
            self._disconnect(codes.DISCONNECT_BAD_REQUEST)
            return None
        sub = self.subs.get(channel)
        if sub is None:
            self._replyError(commandID, codes.ERROR_PERMISSION_DENIED)
            return None
        result: dict[str, Any] = {}
        try:
            claims = self.node.tokens.verifySubscribe(token, self._reactor.seconds())
        except TokenExpired:
            # Centrifugo's client-side sub_refresh path ignores "expired": success without expiry.
            self._send({"id": commandID, "sub_refresh": result})
            return None
        except InvalidToken:
            self._disconnect(codes.DISCONNECT_INVALID_TOKEN)
            return None
        if claims.channel != channel or claims.user != self.user or (claims.client and claims.client != self.clientID):
            self._disconnect(codes.DISCONNECT_INVALID_TOKEN)
            return None
        sub.expireAt = 0.0 if self._config.client_insecure else float(claims.expireAt)
        if claims.info is not None:
            sub.chanInfo = claims.info
        if sub.expireAt:
            result = {"expires": True, "ttl": max(0, int(sub.expireAt - self._reactor.seconds()))}
        self._send({"id": commandID, "sub_refresh": result})
        return None

    def checkSubscriptionsExpired(self: "Client") -> None:
        """Unsubscribe (2501) channels whose subscription token ran out more than the grace period ago."""
        now = self._reactor.seconds()
        grace = self._config.client_expired_sub_close_delay
        for channel, sub in list(self.subs.items()):
            if sub.expireAt and sub.expireAt + grace <= now:
                self.serverUnsubscribe(channel, *UNSUBSCRIBE_EXPIRED)

    # What reaches a subscription

    def deliverPublication(self: "Client", frames: PublicationFrames) -> None:
        channel = frames.channel
        sub = self.subs.get(channel)
        if sub is None or self.closed:
            return
        offset = int(frames.publication.get("offset", 0) or 0)
        if sub.positioned and offset:
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
        if sub is not None and sub.pushJoinLeave and not self.closed:
            self._queue(frame)


def _failed(error: Exception) -> Deferred[Any]:
    d: Deferred[Any] = Deferred()
    d.errback(Failure(error))
    return d


def _proxyFailure(failure: Failure) -> Failure:
    if failure.check(ProxyError):
        raise SubscribeError(failure.value.error)
    if failure.check(ProxyDisconnect):
        raise SubscribeError(disconnect=failure.value.disconnect)
    return failure


__all__ = ["ChannelCommands", "SubscribeError", "succeed"]
