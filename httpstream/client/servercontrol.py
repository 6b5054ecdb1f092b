# -*- test-case-name: tests.test_api -*-
"""
What the server API does to one connection: subscribe it to a channel, refresh its expiry (Centrifugo's
server-side ``subscribe`` and ``refresh``), as pushes the SDKs act on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from httpstream.protocol import codes
from httpstream.readers import Fields, SubOptions
if TYPE_CHECKING:
    from httpstream.client.client import Client


class ServerControl:
    """Mixed into L{Client}."""

    def serverSubscribe(self: "Client", channel: str, request: dict[str, Any]) -> Deferred[None]:
        """Subscribe server-side and tell the client with a C{subscribe} push (its SDK then emits events)."""
        params = {"recoverable": True, "positioned": True, "join_leave": True}
        since = request.get("recover_since")
        if isinstance(since, dict):
            params.update(recover=True, offset=since.get("offset", 0), epoch=since.get("epoch", ""))
        d = self.subscribeChannel(channel, params, True, SubOptions.read(Fields(request)))

        def subscribed(result: dict) -> None:
            push = {k: v for k, v in result.items() if k in _SUBSCRIBE_PUSH_FIELDS}
            self._send({"push": {"channel": channel, "subscribe": push}})
            self._afterSubscribe(channel)

        def failed(failure: Failure) -> None:
            self.log.info("client {client}: server subscribe to {channel} failed: {error}",
                          client=self.clientID, channel=channel, error=failure.getErrorMessage())

        return d.addCallbacks(subscribed, failed)

    def serverRefresh(self: "Client", expired: bool, expireAt: float, info: Optional[bytes]) -> None:
        """The API's refresh: end an expired connection (3005), or move its expiry and push C{refresh}."""
        if self.closed:
            return
        if expired:
            self._disconnect(codes.DISCONNECT_EXPIRED)
            return
        if info is not None:
            self.connInfo = info
        self._expireAt = expireAt
        self._cancel("_expireCall")
        push: dict[str, Any] = {}
        if expireAt:
            self._scheduleExpiry()
            push = {"expires": True, "ttl": self._ttl()}
        self._send({"push": {"refresh": push}})


# The Subscribe push carries these SubscribeResult fields (client.proto Subscribe).
_SUBSCRIBE_PUSH_FIELDS = ("recoverable", "epoch", "offset", "positioned", "data")
