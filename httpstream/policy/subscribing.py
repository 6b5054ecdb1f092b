# -*- test-case-name: tests.client.test_clientpolicy,tests.client.test_client_channels -*-
"""
Who may subscribe to a channel and what the subscription gets, from the configuration: the subscription token,
else the subscribe proxy, else the namespace's permissions (Centrifugo's OnSubscribe), and the refresh of a
subscription by a new token or the sub refresh proxy (OnSubRefresh).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional

from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure

from httpstream.decisions import Connection, RefreshDecision, Refused, SubscribeDecision, SubscribeRequest
from httpstream.policy.connecting import proxyRefusal, tokenRefusal
from httpstream.policy.host import PolicyHost
from httpstream.policy.proxy import ProxyContext, ProxySubscribeRequest
from httpstream.policy.tokens import InvalidToken, SubscribeClaims, TokenExpired
from httpstream.protocol import codes
from httpstream.config import ChannelOptions

# A subscription token that is expired or invalid: errors for the subscribe command, the connection stays.
_SUBSCRIBE_REFUSAL = tokenRefusal(codes.ERROR_TOKEN_EXPIRED, codes.ERROR_PERMISSION_DENIED)


def tokenMatches(claims: SubscribeClaims, channel: str, connection: Connection) -> bool:
    """A subscription token is for this channel, this user, and (when it names one) this connection."""
    return claims.channel == channel and claims.user == connection.user and claims.client in ("", connection.clientID)


def subscribing(node: PolicyHost, connection: Connection, request: SubscribeRequest,
                context: Callable[[], ProxyContext]) -> Deferred[SubscribeDecision]:
    channel, options = request.channel, request.options
    if request.granted is not None:
        granted = request.granted
        return succeed(_decide(node, connection, request, granted.info, granted.data, 0.0, granted.override))
    if request.token:
        def fromToken(claims: SubscribeClaims) -> SubscribeDecision:
            if not tokenMatches(claims, channel, connection):
                raise Refused(codes.DISCONNECT_INVALID_TOKEN)
            expireAt = 0.0
            if claims.expireAt and not node.config.client_insecure:
                if claims.expireAt <= node.reactor.seconds():
                    # exp admits the token but its expire_at is over: Centrifugo's "expired", as at connect.
                    raise Refused(codes.ERROR_EXPIRED)
                expireAt = float(claims.expireAt)
            return _decide(node, connection, request, claims.info, claims.data, expireAt, claims.override)

        # Fires at once, unless the token names a JWKS key that is still to be fetched.
        return node.tokens.subscribeClaims(request.token, node.reactor).addCallbacks(fromToken, _SUBSCRIBE_REFUSAL)
    rules = node.rules
    if rules.subscribeProxied(channel, options, False):
        # The namespace's named proxy, or the subscribe proxy (108 when it has no endpoint).
        proxyName = options.subscribe_proxy_name
        if not node.proxy.enabled("subscribe", proxyName):
            return fail(Refused(codes.ERROR_NOT_AVAILABLE))
        d = node.proxy.subscribe(context(), channel, ProxySubscribeRequest(data=request.data), proxyName)

        def proxied(reply: Optional[dict[str, Any]]) -> SubscribeDecision:
            reply = reply or {}
            expireAt = float(reply["expire_at"]) if reply.get("expire_at") else 0.0
            return _decide(node, connection, request, reply.get("info"), reply.get("data"), expireAt,
                           reply.get("override") or {})

        return d.addErrback(proxyRefusal).addCallback(proxied)
    error = rules.canSubscribe(connection.user, channel, options, False)
    if error is not None:
        return fail(Refused(error))
    return succeed(_decide(node, connection, request, None, None, 0.0, {}))


def _decide(node: PolicyHost, connection: Connection, request: SubscribeRequest, info: Optional[bytes],
            data: Optional[bytes], expireAt: float, override: Mapping[str, bool]) -> SubscribeDecision:
    """
    What an accepted subscription gets: the channel options, but what the token, proxy or API overrides wins, and
    what the client asks for counts only on its own subscribe, its permissions judged as Centrifugo's OnSubscribe
    does, before the client is subscribed.
    """
    rules, options, channel, user = node.rules, request.options, request.channel, connection.user
    serverSide = request.serverSide
    historyAccess = not serverSide and rules.historyAccess(user, channel, options, False)
    presenceAccess = not serverSide and rules.presenceAccess(user, channel, options, False)
    forceRecovery = override.get("force_recovery", options.force_recovery)
    forcePositioning = override.get("force_positioning", options.force_positioning)
    recoverable = options.history and (
        forceRecovery or (request.recoverable and (options.allow_recovery or historyAccess))
    )
    positioned = options.history and (
        recoverable or forcePositioning or (request.positioned and (options.allow_positioning or historyAccess))
    )
    return SubscribeDecision(
        info=info,
        data=data,
        expireAt=expireAt,
        presence=override.get("presence", options.presence),
        joinLeave=override.get("join_leave", options.join_leave),
        pushJoinLeave=override.get("force_push_join_leave", options.force_push_join_leave) or (
            request.joinLeave and options.join_leave and presenceAccess
        ),
        recoverable=recoverable,
        positioned=positioned,
        delta=request.delta and "fossil" in options.allowed_delta_types,
        serverRefresh=bool(options.proxy_sub_refresh or options.sub_refresh_proxy_name)
        and node.proxy.enabled("sub_refresh", options.sub_refresh_proxy_name),
    )


def subRefreshing(node: PolicyHost, connection: Connection, channel: str, options: ChannelOptions, token: str,
                  context: Callable[[], ProxyContext]) -> Deferred[RefreshDecision]:
    if not token:
        # The subscription expired and the sub refresh proxy decides.
        def refreshed(reply: Any) -> RefreshDecision:
            return RefreshDecision(expired=bool(reply["expired"]), expireAt=float(reply["expire_at"] or 0),
                                   info=reply.get("info"))

        return node.proxy.subRefresh(context(), channel, options.sub_refresh_proxy_name).addCallback(refreshed)

    def refused(failure: Failure) -> Any:
        if isinstance(failure.value, TokenExpired):
            # Centrifugo's handler answers "expired", which its client-side sub_refresh does not check: it takes
            # the empty reply as is, a success without expiry that leaves the subscription without expiry and info.
            return RefreshDecision(replaceInfo=True)
        if isinstance(failure.value, InvalidToken):
            raise Refused(codes.DISCONNECT_INVALID_TOKEN)
        return failure

    def fromRefreshToken(claims: SubscribeClaims) -> RefreshDecision:
        if not tokenMatches(claims, channel, connection):
            raise Refused(codes.DISCONNECT_INVALID_TOKEN)
        expireAt = 0.0 if node.config.client_insecure else float(claims.expireAt)
        if expireAt and expireAt < node.reactor.seconds():
            raise Refused(codes.ERROR_EXPIRED)
        return RefreshDecision(expireAt=expireAt, info=claims.info, replaceInfo=True)

    return node.tokens.subscribeClaims(token, node.reactor).addCallbacks(fromRefreshToken, refused)
