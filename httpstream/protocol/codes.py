"""
Centrifugo's reply error codes, disconnect codes and unsubscribe codes, with the messages and reasons the SDKs
expect, and the bits of a SubscribeRequest's C{flag}. This is their one home: the client, the server API and the
transports take them from here.

Sources: centrifugal/centrifuge ``errors.go``, ``disconnect.go`` and ``client.go`` (the subscription flags);
https://centrifugal.dev/docs/server/codes.
"""

from __future__ import annotations

from typing import NamedTuple

import attrs


@attrs.frozen
class Error:
    """A reply error: sent as ``{"id": N, "error": {"code": .., "message": ..}}``."""

    code: int
    message: str
    temporary: bool = False

    def toDict(self) -> dict[str, str | int | bool]:
        error: dict[str, str | int | bool] = {"code": self.code, "message": self.message}
        if self.temporary:
            error["temporary"] = True
        return error


@attrs.frozen
class Disconnect:
    """A disconnect: pushed (emulated transports) or sent as a close frame (WebSocket), then the end."""

    code: int
    reason: str


class Unsubscribe(NamedTuple):
    """
    An unsubscribe push's code and reason (a tuple: it spreads into C{serverUnsubscribe(channel, code, reason)}).
    From 2500 on the SDK subscribes again by itself (centrifuge C{unsubscribe.go}).
    """

    code: int
    reason: str


ERROR_INTERNAL = Error(100, "internal server error", temporary=True)
ERROR_UNAUTHORIZED = Error(101, "unauthorized")
ERROR_UNKNOWN_CHANNEL = Error(102, "unknown channel")
ERROR_PERMISSION_DENIED = Error(103, "permission denied")
ERROR_METHOD_NOT_FOUND = Error(104, "method not found")
ERROR_ALREADY_SUBSCRIBED = Error(105, "already subscribed")
ERROR_LIMIT_EXCEEDED = Error(106, "limit exceeded")
ERROR_BAD_REQUEST = Error(107, "bad request")
ERROR_NOT_AVAILABLE = Error(108, "not available")
ERROR_TOKEN_EXPIRED = Error(109, "token expired")
ERROR_EXPIRED = Error(110, "expired")
ERROR_TOO_MANY_REQUESTS = Error(111, "too many requests", temporary=True)
ERROR_UNRECOVERABLE_POSITION = Error(112, "unrecoverable position")

# SubscribeRequest.flag bits (the SDK's subscriptionFlags). The SDK offers channel compaction on every subscribe
# (not implemented here: the offer is ignored, as by a server without it). With reject unrecovered (the SDK's
# getState option) a recovery that fails is answered with ERROR_UNRECOVERABLE_POSITION instead of recovered false:
# the SDK then reloads the application's state and subscribes again from the position it returns.
SUBSCRIBE_FLAG_CHANNEL_COMPACTION = 1
SUBSCRIBE_FLAG_REJECT_UNRECOVERED = 2

# The server API answers with the same codes (Centrifugo's apiproto), but its error has no "temporary" flag.
API_ERROR_INTERNAL = attrs.evolve(ERROR_INTERNAL, temporary=False)

UNSUBSCRIBE_SERVER = Unsubscribe(2000, "server unsubscribe")
UNSUBSCRIBE_INSUFFICIENT_STATE = Unsubscribe(2500, "insufficient state")
UNSUBSCRIBE_EXPIRED = Unsubscribe(2501, "subscription expired")

# 3000 is internal: the connection ends without anything being sent.
DISCONNECT_CONNECTION_CLOSED = Disconnect(3000, "connection closed")
DISCONNECT_SHUTDOWN = Disconnect(3001, "shutdown")
DISCONNECT_SERVER_ERROR = Disconnect(3004, "internal server error")
DISCONNECT_EXPIRED = Disconnect(3005, "connection expired")
DISCONNECT_SUBSCRIPTION_EXPIRED = Disconnect(3006, "subscription expired")
DISCONNECT_SLOW = Disconnect(3008, "slow")
DISCONNECT_WRITE_ERROR = Disconnect(3009, "write error")
DISCONNECT_INSUFFICIENT_STATE = Disconnect(3010, "insufficient state")
DISCONNECT_FORCE_RECONNECT = Disconnect(3011, "force reconnect")
DISCONNECT_NO_PONG = Disconnect(3012, "no pong")
DISCONNECT_TOO_MANY_REQUESTS = Disconnect(3013, "too many requests")
DISCONNECT_INVALID_TOKEN = Disconnect(3500, "invalid token")
DISCONNECT_BAD_REQUEST = Disconnect(3501, "bad request")
DISCONNECT_STALE = Disconnect(3502, "stale")
DISCONNECT_FORCE_NO_RECONNECT = Disconnect(3503, "force disconnect")
DISCONNECT_CONNECTION_LIMIT = Disconnect(3504, "connection limit")
DISCONNECT_CHANNEL_LIMIT = Disconnect(3505, "channel limit")
DISCONNECT_INAPPROPRIATE_PROTOCOL = Disconnect(3506, "inappropriate protocol")
DISCONNECT_PERMISSION_DENIED = Disconnect(3507, "permission denied")
DISCONNECT_NOT_AVAILABLE = Disconnect(3508, "not available")
DISCONNECT_TOO_MANY_ERRORS = Disconnect(3509, "too many errors")


# A unidirectional client gets no error reply: its failed connect becomes a disconnect (centrifuge client.go
# defaultUniErrorCodeToDisconnect); any other error is 3004.
_UNIDIRECTIONAL_DISCONNECTS = {
    ERROR_EXPIRED.code: DISCONNECT_EXPIRED,
    ERROR_TOKEN_EXPIRED.code: DISCONNECT_EXPIRED,
    ERROR_TOO_MANY_REQUESTS.code: DISCONNECT_TOO_MANY_REQUESTS,
    ERROR_PERMISSION_DENIED.code: DISCONNECT_PERMISSION_DENIED,
}


def unidirectionalDisconnect(error: Error) -> Disconnect:
    """The disconnect that ends a unidirectional connection instead of C{error}'s reply."""
    return _UNIDIRECTIONAL_DISCONNECTS.get(error.code, DISCONNECT_SERVER_ERROR)
