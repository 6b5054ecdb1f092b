# -*- test-case-name: tests.client.test_clientpolicy -*-
"""
The values a client and its policy (L{httpstream.interfaces.IClientPolicy}) exchange: what a connection is, what
it asks for, and what the policy decided (Centrifuge's ``events.go`` requests and replies).

Kept apart from both sides so that neither imports the other: the client (L{httpstream.client}) builds the
requests and applies the decisions; the policy (L{httpstream.policy}) reads requests and makes decisions.

May import: protocol codes (and, for types only, config values).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Optional, Union

import attrs

from httpstream.protocol import codes

if TYPE_CHECKING:
    from httpstream.config import ChannelOptions

__all__ = [
    "ConnectDecision",
    "ConnectRequest",
    "Connection",
    "GrantedSubscription",
    "MapWriteDecision",
    "PublishDecision",
    "RefreshDecision",
    "Refused",
    "SubscribeDecision",
    "SubscribeRequest",
    "TrackBatch",
]


class Refused(Exception):
    """
    The policy's "no": the command gets the reply error C{error}, or the connection ends with C{disconnect}.
    Exactly one of them is set.
    """

    def __init__(self, outcome: Union[codes.Error, codes.Disconnect]) -> None:
        super().__init__(outcome)
        self.error: Optional[codes.Error] = outcome if isinstance(outcome, codes.Error) else None
        self.disconnect: Optional[codes.Disconnect] = outcome if isinstance(outcome, codes.Disconnect) else None


# eq=False: a connection is compared by identity, so a policy may keep what it derived from one (a proxy
# context) in a WeakKeyDictionary; the client makes a new one whenever what it says changes.
@attrs.frozen(eq=False)
class Connection:
    """One connection as its policy sees it."""

    #: The connection id (UUIDv4 string).
    clientID: str
    #: Centrifugo's transport name: "http_stream", "sse", "websocket", "uni_http_stream", "uni_sse" or "uni_websocket".
    transport: str
    #: "json" or "protobuf".
    protocol: str
    #: The user id; "" before connect and for anonymous connections.
    user: str = ""
    #: The connection's meta (raw JSON), from its token or the connect proxy; never sent to clients.
    meta: Optional[bytes] = None
    #: The HTTP headers of the request that opened the connection (a Headers object or a mapping), or None.
    requestHeaders: Any = None
    #: The headers an emulated connection's connect command carries (ConnectRequest.headers).
    emulatedHeaders: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen
class ConnectRequest:
    """A client's connect command (ConnectRequest)."""

    token: str = ""
    #: The ConnectRequest data (raw JSON for JSON clients), or None.
    data: Optional[bytes] = None
    name: str = ""
    version: str = ""
    #: The server-side channels the client wants back (the keys of ConnectRequest.subs).
    channels: tuple[str, ...] = ()


@attrs.frozen
class GrantedSubscription:
    """A server-side subscription the policy or the server API grants (a token's C{subs} entry)."""

    #: Becomes the subscriber's ClientInfo.chan_info (raw JSON), or None.
    info: Optional[bytes] = None
    #: Sent with the subscribe result or push, or None.
    data: Optional[bytes] = None
    #: Channel options overridden for this subscription (presence, join_leave, force_recovery, ...).
    override: Mapping[str, bool] = attrs.field(factory=dict)


@attrs.frozen
class ConnectDecision:
    """A connection the policy accepted."""

    user: str = ""
    #: ClientInfo.conn_info (raw JSON), or None.
    info: Optional[bytes] = None
    meta: Optional[bytes] = None
    #: Unix time at which the connection expires; 0 when it does not.
    expireAt: float = 0.0
    #: ConnectResult.data, or None.
    data: Optional[bytes] = None
    #: Server-side subscriptions to make at connect, in order (None: the channel's options as they are).
    subscriptions: Mapping[str, Optional[GrantedSubscription]] = attrs.field(factory=dict)
    #: The server refreshes this connection when it expires (a refresh proxy): the client is not told its ttl.
    serverRefresh: bool = False


@attrs.frozen
class RefreshDecision:
    """A connection or subscription refreshed (Centrifuge's RefreshReply / SubRefreshReply)."""

    #: The connection (or subscription) must end now: it is expired for good.
    expired: bool = False
    #: Its new expiry (Unix time); 0 when it no longer expires.
    expireAt: float = 0.0
    #: New info (conn_info or chan_info), or None.
    info: Optional[bytes] = None
    #: True: L{info} replaces the old even when None; False: None keeps the old info.
    replaceInfo: bool = False


@attrs.frozen
class SubscribeRequest:
    """A subscription the client asks for, or one granted server-side (then L{granted} is set)."""

    channel: str
    #: The channel's options (from L{IClientPolicy.channelOptions}).
    options: ChannelOptions
    token: str = ""
    data: Optional[bytes] = None
    #: What the client's SubscribeRequest asks for (never for a server-side subscription).
    recoverable: bool = False
    positioned: bool = False
    joinLeave: bool = False
    #: The client negotiates Fossil deltas.
    delta: bool = False
    #: A server-side subscription: what was granted with it (None for the client's own subscribe).
    granted: Optional[GrantedSubscription] = None

    @property
    def serverSide(self) -> bool:
        return self.granted is not None


@attrs.frozen
class SubscribeDecision:
    """A subscription the policy accepted, and what it gets."""

    #: ClientInfo.chan_info for this subscription, or None.
    info: Optional[bytes] = None
    #: SubscribeResult.data, or None.
    data: Optional[bytes] = None
    #: Unix time at which the subscription expires; 0 when it does not.
    expireAt: float = 0.0
    presence: bool = False
    joinLeave: bool = False
    #: The subscriber gets join/leave pushes.
    pushJoinLeave: bool = False
    recoverable: bool = False
    positioned: bool = False
    delta: bool = False
    #: The server refreshes it when it expires (a sub refresh proxy), instead of the client's new token.
    serverRefresh: bool = False


@attrs.frozen
class PublishDecision:
    """A publication the policy accepted: what to publish (a proxy may change the data)."""

    data: bytes
    skipHistory: bool = False


@attrs.frozen
class MapWriteDecision:
    """
    A map write (publish or remove) the policy accepted: the key to write (C{map.client_key} or a proxy may choose
    it) and what a map publish/remove proxy changed (None/"": as the client sent, or nothing).
    """

    key: str
    data: Optional[bytes] = None
    tags: Optional[Mapping[str, str]] = None
    keyMode: str = ""
    idempotencyKey: str = ""


@attrs.frozen
class TrackBatch:
    """
    One signed batch of a shared poll track request (TrackBatch): the keys (with the versions the client has) that
    one signature of the application covers, in the order it signed them.
    """

    signature: str
    items: tuple[tuple[str, int], ...]

    @property
    def keys(self) -> list[str]:
        return [key for key, _ in self.items]
