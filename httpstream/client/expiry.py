# -*- test-case-name: tests.client.test_client_connect,tests.client.test_clientpolicy -*-
"""
When a connection expires, and how it lives on: the client's refresh command with a new token, the server API's
refresh, or (when the policy says the server refreshes it) the policy asked again at expiry (Centrifugo's
``client.go`` expire, refreshCmd and the refresh proxy).
"""

from __future__ import annotations

from typing import Any, Optional, Protocol

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from httpstream.client.sweep import Sweep
from httpstream.decisions import Connection, RefreshDecision
from httpstream.interfaces import IClientPolicy
from httpstream.protocol import codes


# The protocol's ttl fields are uint32 seconds: an expiry further away (a proxy's or a token's expire_at in the far
# future) is told as the largest ttl, never as a number the client cannot decode.
MAX_TTL = 2**32 - 1


def ttlUntil(expireAt: float, now: float) -> int:
    """
    Whole seconds from C{now} to C{expireAt}, within the protocol's uint32: at least 1 while it has not passed (an
    SDK reads "expires" with a ttl of 0 as no ttl at all: centrifuge-python failed on it), 0 once it has.
    """
    if expireAt <= now:
        return 0
    return min(MAX_TTL, max(1, int(expireAt - now)))


class Expiring(Protocol):
    """The client, as its expiry uses it."""

    policy: IClientPolicy
    connInfo: Optional[bytes]

    @property
    def closed(self) -> bool: ...

    def connection(self) -> Connection: ...

    def send(self, reply: dict[str, Any]) -> None: ...

    def push(self, push: dict[str, Any]) -> None: ...

    def close(self, disconnect: codes.Disconnect, flush: bool = True) -> None: ...

    def commandFailed(self, commandID: int, failure: Failure, method: str) -> None: ...


class Expiry:
    """
    The expiry of one connection.

    @ivar expireAt: Unix time at which the connection expires; 0 when it does not.
    @ivar serverRefresh: the server refreshes the connection when it expires; the client is not told a ttl.
    @ivar sweepAt: its deadline on the node's L{Sweep} (the expiry plus the close delay), 0 when there is none.
    @param closeDelay: how long past its expiry a connection may still be refreshed (client_expired_close_delay).
    """

    __slots__ = ("_client", "_sweep", "_closeDelay", "expireAt", "serverRefresh", "sweepAt")

    def __init__(self, client: Expiring, sweep: Sweep, closeDelay: float) -> None:
        self._client = client
        self._sweep = sweep
        self._closeDelay = closeDelay
        self.expireAt = 0.0
        self.serverRefresh = False
        self.sweepAt = 0.0

    def start(self, expireAt: float, serverRefresh: bool) -> None:
        self.expireAt, self.serverRefresh = expireAt, serverRefresh
        self._schedule()

    def ttl(self) -> int:
        return ttlUntil(self.expireAt, self._sweep.seconds())

    def stop(self) -> None:
        self._sweep.cancel(self)

    def _schedule(self) -> None:
        self.stop()
        if self.expireAt:
            now = self._sweep.seconds()
            self._sweep.schedule(self, now + max(0.0, self.expireAt - now) + self._closeDelay)

    def apply(self, decision: RefreshDecision) -> None:
        """A refresh the policy (or the API) decided: the new expiry and info."""
        self.expireAt = decision.expireAt
        if decision.info is not None or decision.replaceInfo:
            self._client.connInfo = decision.info
        self._schedule()

    def refreshCommand(self, commandID: int, request: dict[str, Any]) -> Optional[Deferred[None]]:
        """The client's refresh command."""
        client = self._client
        token = request.get("token", "")
        if not token or self.serverRefresh:
            # No token, or the server refreshes this connection itself (refresh proxy).
            client.close(codes.DISCONNECT_BAD_REQUEST)
            return None

        def refreshed(decision: RefreshDecision) -> None:
            self.apply(decision)
            client.send({"id": commandID, "refresh": {"expires": True, "ttl": self.ttl()} if self.expireAt else {}})

        return client.policy.refreshing(client.connection(), token).addCallbacks(
            refreshed, lambda f: client.commandFailed(commandID, f, "refresh")
        )

    def apiRefresh(self, expired: bool, expireAt: float, info: Optional[bytes]) -> None:
        """The server API's refresh: end an expired connection (3005), or move its expiry and push C{refresh}."""
        client = self._client
        if client.closed:
            return
        if expired:
            client.close(codes.DISCONNECT_EXPIRED)
            return
        self.apply(RefreshDecision(expireAt=expireAt, info=info))
        client.push({"refresh": {"expires": True, "ttl": self.ttl()} if expireAt else {}})

    def swept(self) -> None:
        client = self._client
        if not self.expireAt or self.expireAt > self._sweep.seconds() or client.closed:
            return
        if not self.serverRefresh:
            client.close(codes.DISCONNECT_EXPIRED)
            return

        def refreshed(decision: RefreshDecision) -> None:
            if decision.expired:
                client.close(codes.DISCONNECT_EXPIRED)
            else:
                self.apply(decision)

        client.policy.refreshing(client.connection(), "").addCallbacks(
            refreshed, lambda f: client.close(codes.DISCONNECT_EXPIRED)
        )
