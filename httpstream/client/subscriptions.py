# -*- test-case-name: tests.client.test_client_channels,tests.client.test_client -*-
"""
The subscriptions one client holds: how one is made once the policy accepted it (hub, presence, position in the
stream), what reaches each (publications, positioned and maybe as Fossil deltas; join and leave), and how they end
(unsubscribe, expiry, a lost position).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Optional, cast

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from httpstream.client.expiry import ttlUntil
from httpstream.client.holder import Holder
from httpstream.client.sharedpoll import SharedPollSubscription, Tracker
from httpstream.client.subfilter import requestedFilter
from httpstream.client.subscription import Subscription
from httpstream.config import Config
from httpstream.config.mapoptions import subscriptionTypeAllowed
from httpstream.config.sharedpoll import isSharedPoll
from httpstream.decisions import GrantedSubscription, Refused, SubscribeDecision, SubscribeRequest
from httpstream.interfaces import IClient
from httpstream.logs import Logger
from httpstream.protocol import codes
from httpstream.values import StreamPosition

from httpstream.protocol.codes import (
    DISCONNECT_INSUFFICIENT_STATE,
    DISCONNECT_SUBSCRIPTION_EXPIRED,
    SUBSCRIBE_FLAG_REJECT_UNRECOVERED,
    UNSUBSCRIBE_EXPIRED,
    UNSUBSCRIBE_INSUFFICIENT_STATE,
)

# Each kind of client's key of the plain variant in a publication's frames, shared (see Subscriptions.__init__).
_PLAIN_KEYS: dict[tuple[str, str, bool], tuple[str, str, bool]] = {}

# The Subscribe push carries these SubscribeResult fields (client.proto Subscribe).
_SUBSCRIBE_PUSH_FIELDS = ("recoverable", "epoch", "offset", "positioned", "data")


class _Passed:
    """A publication its tags filter excluded, waiting with the others for the subscribe reply."""

    __slots__ = ("frames",)

    def __init__(self, frames: Any) -> None:
        self.frames = frames


class Subscriptions(Mapping[str, Subscription]):
    """A client's subscriptions by channel (subscribing ones included), read as a mapping."""

    __slots__ = ("_client", "_reactor", "_config", "_subs", "_underWay", "_member", "_plain")

    log = Logger()

    def __init__(self, client: Holder, reactor: IReactorTime, config: Config) -> None:
        self._client = client
        self._reactor = reactor
        self._config = config
        self._subs: dict[str, Subscription] = {}
        # Channels whose subscribe is under way (from the policy's decision to the reply), with the unsubscribes
        # waiting for it: a second subscribe is refused and the channel limit counts them, even when several
        # commands run at once (client_concurrency), as Centrifugo reserves a channel before asking.
        self._underWay: dict[str, list[Deferred[None]]] = {}
        # The same client, as the node's hub holds it.
        self._member: IClient = IClient(client)
        # The key of this client's plain push in a publication's frames (PublicationFrames.frame's arguments): one
        # tuple for every client of the same kind, which the frames' dict finds by identity.
        key = (client.protocol, "plain", client.unidirectional)
        self._plain = _PLAIN_KEYS.setdefault(key, key)

    def __getitem__(self, channel: str) -> Subscription:
        return self._subs[channel]

    def __iter__(self) -> Iterator[str]:
        return iter(self._subs)

    def __len__(self) -> int:
        return len(self._subs)

    # Subscribing

    def subscribe(self, channel: str, request: dict[str, Any],
                  granted: Optional[GrantedSubscription] = None) -> Deferred[dict[str, Any]]:
        """
        Run Centrifugo's subscribe for C{channel}: ask the policy, then join the hub, presence and the stream.
        Fires with the SubscribeResult dict, or fails with L{Refused}. The caller sends the result, then calls
        L{joined}.

        @param request: the client's SubscribeRequest; for a server-side subscription (C{granted} set) only its
            C{recover}, C{offset}, C{epoch} count (ConnectRequest.subs, the API's recover_since).

        A failed recovery asked to be refused (the reject unrecovered C{flag}) fails with L{Refused} (112) and
        leaves no subscription behind.
        """
        client, policy = self._client, self._client.policy
        try:
            options = policy.channelOptions(channel, granted is not None)
        except Refused as e:
            return fail(e)
        if channel in self._subs or channel in self._underWay:
            return fail(Refused(codes.ERROR_ALREADY_SUBSCRIBED))
        if not subscriptionTypeAllowed(0 if granted is not None else request.get("type", 0), options):
            return fail(Refused(codes.ERROR_PERMISSION_DENIED))
        if granted is None and len(self._subs.keys() | self._underWay.keys()) >= self._config.client_channel_limit:
            return fail(Refused(codes.ERROR_LIMIT_EXCEEDED))
        self._underWay[channel] = []
        if granted is None:
            ask = SubscribeRequest(
                channel, options, token=request.get("token", ""), data=request.get("data"),
                recoverable=bool(request.get("recoverable")), positioned=bool(request.get("positioned")),
                joinLeave=bool(request.get("join_leave")), delta=request.get("delta") == "fossil",
            )
        else:
            ask = SubscribeRequest(channel, options, granted=granted)
        # Only the client's own subscribe may ask: a server-side one has no application to reload its state.
        reject = granted is None and bool(int(request.get("flag", 0)) & SUBSCRIBE_FLAG_REJECT_UNRECOVERED)

        def allowed(decision: SubscribeDecision) -> Deferred[dict[str, Any]]:
            sub = Subscription(channel, options, serverSide=ask.serverSide)
            if granted is None:
                # Checked once the subscription is allowed, as upstream (a refused one gets 103, not 107).
                sub.tagsFilter = requestedFilter(request, options, client.clientID, channel)
            return self._join(sub, decision, request, reject)

        d = policy.subscribing(client.connection(), ask).addCallback(allowed)

        def failed(failure: Failure) -> Failure:
            self._settled(channel)
            return failure

        # On success the caller sends the reply, then calls joined, which settles it.
        return d.addErrback(failed)

    def _settled(self, channel: str) -> None:
        """C{channel}'s subscribe is over, one way or the other: the unsubscribes waiting for it go on."""
        for waiter in self._underWay.pop(channel, ()):
            waiter.callback(None)

    def reserved(self, channel: str) -> bool:
        """C{channel} is subscribed, or its subscribe is under way."""
        return channel in self._subs or channel in self._underWay

    def install(self, sub: Subscription) -> None:
        """
        Hold C{sub}, subscribing (publications wait in it until L{joined}), for a subscribe run elsewhere (a map
        subscribe's LIVE reply: L{httpstream.client.mapflow}); L{drop} undoes it.
        """
        self._subs[sub.channel] = sub
        self._underWay.setdefault(sub.channel, [])

    def underWay(self, channel: str) -> Optional[Deferred[None]]:
        """
        A Deferred firing once C{channel}'s subscribe under way is over (its reply sent), or None when there is
        none: an unsubscribe waits for it, so that it never comes between a subscribe and its reply.
        """
        waiters = self._underWay.get(channel)
        if waiters is None:
            return None
        waiter: Deferred[None] = Deferred()
        waiters.append(waiter)
        return waiter

    def _join(self, sub: Subscription, decision: SubscribeDecision, request: dict[str, Any],
              rejectUnrecovered: bool = False) -> Deferred[dict[str, Any]]:
        client, node, channel = self._client, self._client.node, sub.channel
        sub.chanInfo, sub.expireAt = decision.info, decision.expireAt
        if isSharedPoll(sub.options):
            # No stream, hub, presence or position: the node polls the keys the client will track (deltas are
            # per key: SharedPollSubscription).
            sub.delta = decision.delta
            self._subs[channel] = sub
            sub.keyed = SharedPollSubscription(cast(Tracker, client), sub)
            return succeed(self._result(sub, sub.keyed.join()))
        sub.presence, sub.joinLeave, sub.pushJoinLeave = decision.presence, decision.joinLeave, decision.pushJoinLeave
        sub.recoverable, sub.positioned, sub.delta = decision.recoverable, decision.positioned, decision.delta
        sub.serverRefresh = decision.serverRefresh
        result: dict[str, Any] = {}
        if decision.data is not None:
            result["data"] = decision.data
        self._subs[channel] = sub

        def stillWanted(value: Any) -> Any:
            # The client went away, or was unsubscribed, while the engine worked: go no further.
            if self._subs.get(channel) is not sub:
                raise Refused(codes.ERROR_INTERNAL)
            return value

        def failed(failure: Failure) -> Failure:
            if self._subs.get(channel) is sub:
                self.drop(channel)
            return failure

        d = node.addSubscription(channel, self._member, tagsFilter=sub.tagsFilter).addCallback(stillWanted)
        if sub.presence:
            d.addCallback(lambda _: node.presence.add(channel, client.clientID, client.clientInfo(sub)))
            d.addCallback(stillWanted)
        if sub.positioned:
            recover = None
            if request.get("recover"):
                recover = StreamPosition(int(request.get("offset", 0) or 0), request.get("epoch", "") or "")
            d.addCallback(lambda _: client.policy.position(sub, recover, client.protocol, rejectUnrecovered))
            d.addCallback(stillWanted)
            d.addCallback(result.update)
        d.addCallback(lambda _: self._result(sub, result))
        return d.addErrback(failed)

    def _result(self, sub: Subscription, result: dict[str, Any]) -> dict[str, Any]:
        if sub.expireAt:
            result["expires"] = True
            result["ttl"] = ttlUntil(sub.expireAt, self._reactor.seconds())
        if sub.recoverable:
            result["recoverable"] = True
        if sub.positioned:
            result["positioned"] = True
        if sub.delta:
            result["delta"] = True
        if not result.get("offset"):
            result.pop("offset", None)
        return result

    def serverSubscribe(self, channel: str, request: dict[str, Any]) -> Deferred[None]:
        """The server API's subscribe: subscribe server-side and tell the client with a C{subscribe} push."""
        client = self._client
        recovery: dict[str, Any] = {}
        since = request.get("recover_since")
        if isinstance(since, dict):
            recovery = {"recover": True, "offset": since.get("offset", 0), "epoch": since.get("epoch", "")}
        override = request.get("override") or {}
        granted = GrantedSubscription(
            info=request.get("info"), data=request.get("data"),
            override={k: bool(v.get("value")) for k, v in override.items() if isinstance(v, dict)},
        )

        def subscribed(result: dict[str, Any]) -> None:
            push = {k: v for k, v in result.items() if k in _SUBSCRIBE_PUSH_FIELDS}
            client.push({"channel": channel, "subscribe": push})
            self.joined(channel)

        def failed(failure: Failure) -> None:
            self.log.info("client {client}: server subscribe to {channel} failed: {error}",
                          client=client.clientID, channel=channel, error=failure.getErrorMessage())

        return self.subscribe(channel, recovery, granted).addCallbacks(subscribed, failed)

    def joined(self, channel: str) -> None:
        """The subscribe reply (or push) is out: deliver what waited for it, then announce the join."""
        client = self._client
        sub = self._subs.get(channel)
        if sub is None or client.closed:
            self._settled(channel)
            return
        sub.subscribing = False
        buffered, sub.buffered = sub.buffered, None
        for frames in buffered or ():
            if isinstance(frames, _Passed):
                self.passPublication(frames.frames)
            else:
                self.deliverPublication(frames)
        if sub.joinLeave and self._subs.get(channel) is sub and not client.closed:
            # After the reply, so the subscriber may receive its own join.
            client.node.joinLeave(channel, client.clientInfo(sub), True)
        self._settled(channel)

    # Leaving

    def leave(self, channel: str) -> None:
        """Unsubscribe from C{channel} (nothing is sent to the client); subscribers hear the leave."""
        sub = self._subs.get(channel)
        if sub is None:
            return
        self.drop(channel)
        if sub.joinLeave and not sub.subscribing:
            self._client.node.joinLeave(channel, self._client.clientInfo(sub), False)

    def drop(self, channel: str) -> None:
        """Forget C{channel}'s subscription: out of the hub and presence, without a leave."""
        client, node = self._client, self._client.node
        sub = self._subs.pop(channel, None)
        if sub is None:
            return
        if sub.keyed is not None:
            sub.keyed.close()
            return
        node.removeSubscription(channel, self._member)
        for mapChannel, key, remove, _ in sub.mapKeys:
            if remove:
                node.background(node.maps.remove(mapChannel, key)).addErrback(
                    lambda f: self.log.failure("map key remove {channel}", f, channel=mapChannel))
        if sub.presence:
            node.background(node.presence.remove(channel, client.clientID)).addErrback(
                lambda f: self.log.failure("presence remove {channel}", f, channel=channel)
            )

    def leaveAll(self) -> None:
        for channel in list(self._subs):
            self.leave(channel)

    def serverUnsubscribe(self, channel: str, code: int, reason: str) -> None:
        """End a subscription from the server side: an Unsubscribe push (client-side subs resubscribe >= 2500)."""
        client = self._client
        sub = self._subs.get(channel)
        if sub is None or client.closed:
            return
        if sub.serverSide and code >= 2500:
            client.close(DISCONNECT_INSUFFICIENT_STATE if code == UNSUBSCRIBE_INSUFFICIENT_STATE.code else DISCONNECT_SUBSCRIPTION_EXPIRED)
            return
        self.leave(channel)
        client.push({"channel": channel, "unsubscribe": {"code": code, "reason": reason}})

    # Expiry and positions (on the client's presence timer)

    def checkExpired(self) -> None:
        """Unsubscribe (2501) channels whose subscription token ran out more than the grace period ago."""
        now = self._reactor.seconds()
        grace = self._config.client_expired_sub_close_delay
        client = self._client
        for channel, sub in list(self._subs.items()):
            if sub.keyed is not None:
                sub.keyed.checkExpiry(now)
            if not sub.expireAt or sub.expireAt > now:
                continue
            if sub.serverRefresh:
                # The backend refreshes this subscription (Centrifugo's sub refresh proxy), not the client.
                if not sub.refreshing:
                    sub.refreshing = True
                    client.policy.subRefreshing(client.connection(), channel, sub.options, "").addBoth(
                        self._refreshed, channel, sub
                    )
            elif sub.expireAt + grace <= now:
                self.serverUnsubscribe(channel, *UNSUBSCRIBE_EXPIRED)

    def _refreshed(self, decision: Any, channel: str, sub: Subscription) -> None:
        sub.refreshing = False
        if self._client.closed or self._subs.get(channel) is not sub:
            return
        if isinstance(decision, Failure) or decision.expired:
            self.serverUnsubscribe(channel, *UNSUBSCRIBE_EXPIRED)
            return
        sub.expireAt = decision.expireAt
        if decision.info is not None or decision.replaceInfo:
            sub.chanInfo = decision.info

    def checkPositions(self, channels: Optional[list[str]] = None) -> None:
        """
        Unsubscribe (2500) positioned channels whose position no longer matches their stream's top: those due
        for a check, or right away C{channels} (publications of which may have been missed).
        """
        for channel, sub in list(self._subs.items()):
            if channels is not None and channel not in channels:
                continue
            # A map subscription's position is in its map's stream, not in the history the policy reads.
            check = self._client.maps.checkPosition if sub.isMap else self._client.policy.checkPosition
            d = check(sub, channels is not None)
            if d is not None:
                d.addCallback(self._positionChecked, channel, sub)

    def _positionChecked(self, valid: bool, channel: str, sub: Subscription) -> None:
        if not valid and self._subs.get(channel) is sub:
            self.serverUnsubscribe(channel, *UNSUBSCRIBE_INSUFFICIENT_STATE)

    # What reaches a subscription

    def deliverPublication(self, frames: Any) -> None:
        # Once per subscriber per publication (the client's own deliverPublication is this method): what can be
        # looked up once per publication is in the frames, the rest is attribute reads and one call, the enqueue.
        client = self._client
        sub = self._subs.get(frames.channel)
        if sub is None or client.closed:
            return
        if sub.subscribing:
            if sub.buffered is None:
                sub.buffered = []
            sub.buffered.append(frames)
            return
        offset = frames.publication.offset
        if sub.positioned and offset and not self._advance(sub, frames):
            return
        variant = "plain"
        if sub.delta:
            base = frames.deltaBaseOffset()
            variant = "delta" if base >= 0 and base == sub.deltaBase else "full"
            sub.deltaBase = offset if offset else -1
            frame = frames.frame(client.protocol, variant, client.unidirectional)
        else:
            frame = frames[self._plain]
        if frame is None:
            client.close(codes.DISCONNECT_INAPPROPRIATE_PROTOCOL)
            return
        client.writer.enqueue(frame)

    def passPublication(self, frames: Any) -> None:
        """A publication its tags filter excludes: not sent, but a positioned subscription's position moves on."""
        sub = self._subs.get(frames.channel)
        if sub is None or self._client.closed:
            return
        if sub.subscribing:
            if sub.buffered is None:
                sub.buffered = []
            sub.buffered.append(_Passed(frames))
            return
        if sub.positioned and frames.publication.offset:
            self._advance(sub, frames)

    def _advance(self, sub: Subscription, frames: Any) -> bool:
        """
        Move a positioned subscription to the publication's offset. @return: False when the publication is not the
        next one (already sent: skip it; a gap or another epoch: the subscription is ended with 2500).
        """
        offset = frames.publication.offset
        if frames.epoch and sub.epoch and frames.epoch != sub.epoch:
            self.serverUnsubscribe(sub.channel, *UNSUBSCRIBE_INSUFFICIENT_STATE)
            return False
        if offset <= sub.offset:
            return False  # already sent (recovery overlapping live publications)
        if offset != sub.offset + 1:
            self.serverUnsubscribe(sub.channel, *UNSUBSCRIBE_INSUFFICIENT_STATE)
            return False
        sub.offset = offset
        return True

    def deliverJoinLeave(self, channel: str, frame: bytes) -> None:
        sub = self._subs.get(channel)
        # Not while subscribing: nothing of the channel may reach the client before its subscribe reply.
        if sub is not None and sub.pushJoinLeave and not sub.subscribing and not self._client.closed:
            self._client.queue(frame)
