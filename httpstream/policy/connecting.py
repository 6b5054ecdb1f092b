# -*- test-case-name: tests.client.test_clientpolicy,tests.client.test_client_connect -*-
"""
Who may connect and for how long, from the configuration: the connection token, else the connect proxy, else
anonymous access (Centrifugo's OnConnecting), and the refresh of a connection by a new token or the refresh proxy
(OnRefresh).
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

import orjson
from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure

from httpstream.decisions import (
    ConnectDecision,
    ConnectRequest,
    Connection,
    GrantedSubscription,
    RefreshDecision,
    Refused,
)
from httpstream.logs import Logger
from httpstream.policy.channels import ChannelError
from httpstream.policy.host import PolicyHost
from httpstream.policy.proxy import ProxyConnectRequest, ProxyContext, ProxyDisconnect, ProxyError
from httpstream.policy.tokens import ConnectClaims, InvalidToken, TokenExpired
from httpstream.protocol import codes

log = Logger()


def proxyRefusal(failure: Failure) -> Failure:
    """A proxy's (or an RPC handler's) error or disconnect as the client's L{Refused}; other failures as they are."""
    if isinstance(failure.value, ProxyError):
        raise Refused(failure.value.error)
    if isinstance(failure.value, ProxyDisconnect):
        raise Refused(failure.value.disconnect)
    return failure


def tokenRefusal(
    expired: Union[codes.Error, codes.Disconnect], invalid: Union[codes.Error, codes.Disconnect]
) -> Callable[[Failure], Failure]:
    """
    An errback for a token's verification: an expired token as the L{Refused} C{expired}, an invalid one as
    C{invalid} (each command answers them with its own codes); other failures as they are.
    """

    def refused(failure: Failure) -> Failure:
        if isinstance(failure.value, TokenExpired):
            raise Refused(expired)
        if isinstance(failure.value, InvalidToken):
            raise Refused(invalid)
        return failure

    return refused


_CONNECT_REFUSAL = tokenRefusal(codes.ERROR_TOKEN_EXPIRED, codes.DISCONNECT_INVALID_TOKEN)


def connecting(node: PolicyHost, connection: Connection, request: ConnectRequest,
               context: ProxyContext) -> Deferred[ConnectDecision]:
    config = node.config
    if request.token:
        # Fires at once, unless the token names a JWKS key that is still to be fetched.
        verified = node.tokens.connectClaims(request.token, node.reactor)
        return verified.addCallbacks(lambda claims: _fromToken(node, claims),
                                     lambda failure: _refusedToken(connection, failure))
    if node.proxy.enabled("connect") and not config.client_insecure:
        d = node.proxy.connect(context, ProxyConnectRequest(
            data=request.data, name=request.name, version=request.version, channels=list(request.channels),
        ))
        return d.addErrback(proxyRefusal).addCallback(lambda reply: _proxied(node, reply))
    if not (config.client_insecure or config.allow_anonymous_connect_without_token):
        return fail(Refused(codes.DISCONNECT_BAD_REQUEST))
    return _accept(node, ConnectDecision())


def _refusedToken(connection: Connection, failure: Failure) -> Failure:
    if isinstance(failure.value, InvalidToken):
        log.info("client {client}: invalid token: {error}", client=connection.clientID, error=str(failure.value))
    return _CONNECT_REFUSAL(failure)


def _fromToken(node: PolicyHost, claims: ConnectClaims) -> Deferred[ConnectDecision]:
    config = node.config
    if not config.client_insecure and 0 < claims.expireAt <= node.reactor.seconds():
        # The token is valid (exp passed the check) but its expire_at is over: Centrifugo's "expired".
        return fail(Refused(codes.ERROR_EXPIRED))
    if not claims.user and config.disallow_anonymous_connection_tokens and not config.client_insecure:
        return fail(Refused(codes.DISCONNECT_PERMISSION_DENIED))
    subs: dict[str, Optional[GrantedSubscription]] = {
        channel: _granted(claims.subs.get(channel)) for channel in claims.channels
    }
    for channel, options in claims.subs.items():
        subs.setdefault(channel, _granted(options))
    return _accept(node, ConnectDecision(
        user=claims.user, info=claims.info, meta=None if claims.meta is None else orjson.dumps(claims.meta),
        expireAt=0.0 if config.client_insecure else float(claims.expireAt), subscriptions=subs,
    ))


def _granted(options: Any) -> Optional[GrantedSubscription]:
    if options is None:
        return None
    return GrantedSubscription(info=options.info, data=options.data, override=dict(options.override))


def _proxied(node: PolicyHost, reply: Optional[dict[str, Any]]) -> Deferred[ConnectDecision]:
    if reply is None:
        if not node.config.allow_anonymous_connect_without_token:
            return fail(Refused(codes.DISCONNECT_BAD_REQUEST))
        return _accept(node, ConnectDecision())
    subs: dict[str, Optional[GrantedSubscription]] = {channel: None for channel in reply["channels"]}
    for channel, options in reply["subs"].items():
        subs[channel] = _granted(options)  # a SubOptions, as the token's
    return _accept(node, ConnectDecision(
        user=reply["user"], info=reply["info"], meta=reply["meta"],
        expireAt=float(reply["expire_at"]) if reply["expire_at"] else 0.0, data=reply["data"], subscriptions=subs,
    ))


def _accept(node: PolicyHost, decision: ConnectDecision) -> Deferred[ConnectDecision]:
    """The checks every accepted connection passes: the user's connection limit, the server-side channels."""
    config = node.config
    limit = config.client_user_connection_limit
    if decision.user and limit and node.userConnections(decision.user) >= limit:
        return fail(Refused(codes.DISCONNECT_CONNECTION_LIMIT))
    subs = dict(decision.subscriptions)
    if decision.user and config.user_subscribe_to_personal:
        subs[node.rules.personalChannel(decision.user)] = None
    for channel in subs:
        try:
            # Server-side channels are granted, not validated as names: only their namespace must exist.
            node.rules.namespaceOptions(channel)
        except ChannelError as e:
            return fail(Refused(e.error))
    if config.client_channel_limit and len(subs) > config.client_channel_limit:
        return fail(Refused(codes.DISCONNECT_CHANNEL_LIMIT))
    # With a refresh proxy the server refreshes every connection (Centrifugo's ClientSideRefresh is off).
    return succeed(ConnectDecision(
        user=decision.user, info=decision.info, meta=decision.meta, expireAt=decision.expireAt, data=decision.data,
        subscriptions=subs, serverRefresh=node.proxy.enabled("refresh"),
    ))


def refreshing(node: PolicyHost, connection: Connection, token: str,
               context: ProxyContext) -> Deferred[RefreshDecision]:
    if not token:
        # The connection expired and the refresh proxy decides (the client asks only with serverRefresh).
        def refreshed(reply: dict[str, Any]) -> RefreshDecision:
            return RefreshDecision(expired=bool(reply["expired"]), expireAt=float(reply["expire_at"] or 0),
                                   info=reply.get("info"))

        return node.proxy.refresh(context).addCallback(refreshed)

    def fromToken(claims: ConnectClaims) -> RefreshDecision:
        if claims.user != connection.user:
            raise Refused(codes.DISCONNECT_INVALID_TOKEN)
        expireAt = 0.0 if node.config.client_insecure else float(claims.expireAt)
        # An empty info keeps the old one.
        return RefreshDecision(expireAt=expireAt, info=claims.info or None)

    return node.tokens.connectClaims(token, node.reactor).addCallbacks(
        fromToken, tokenRefusal(codes.DISCONNECT_EXPIRED, codes.DISCONNECT_INVALID_TOKEN)
    )
