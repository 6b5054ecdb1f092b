# -*- test-case-name: tests.test_interfaces -*-
"""
The seams of httpstream, as zope interfaces.

Every collaborator that another part of the server (or an embedding program) may want to replace is described
here, so the in-memory implementations and the fakes in tests can be checked with ``verifyObject``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

    from httpstream.config import ChannelOptions
    from httpstream.decisions import (
        ConnectDecision, ConnectRequest, Connection, MapWriteDecision, PublishDecision, RefreshDecision,
        SubscribeDecision, SubscribeRequest, TrackBatch,
    )
    from httpstream.emulation import EmulationResult
    from httpstream.values import ClientInfo, HistoryResult, Publication, StreamPosition


class IOriginChecker(Interface):
    """Decides whether a browser Origin may use this server (Centrifugo's ``allowed_origins`` rules)."""

    def check(origin: Optional[str]) -> bool:
        """
        Return True when a request with this Origin header value passes.

        @param origin: the ``Origin`` header value, or None when the request has none.
        """


class ITransport(Interface):
    """
    The bytes side of one client connection.

    A transport frames already-encoded messages for its wire and reports what the protocol code must know about
    it; it holds no protocol logic.
    """

    name = Attribute(
        "Centrifugo's transport name: 'http_stream', 'sse', 'websocket', 'uni_http_stream', 'uni_sse' or "
        "'uni_websocket'."
    )
    protocol = Attribute("'json' or 'protobuf'.")
    emulated = Attribute("True when commands after connect arrive through /emulation (connect result gets session and node).")
    pushDisconnect = Attribute("True when a Disconnect push must precede the end of the connection (False: close frame).")
    unidirectional = Attribute(
        "True when the client never sends commands: the transport hands its connect request to IClient.connect, "
        "and it gets bare pushes (no Reply around them, no replies at all) and pings it need not answer."
    )
    requestHeaders = Attribute(
        "The HTTP headers of the request that opened the connection (a Headers object or a mapping), which the "
        "proxy forwards per proxy_http_headers; None when there are none."
    )

    def writeMessages(messages: Sequence[bytes]) -> None:
        """Write encoded messages (one Reply each, unframed) as one unit on the wire: a chunk, events, a frame."""

    def writeMessage(message: bytes) -> None:
        """Write one message alone, as C{writeMessages([message])} would: a batch of one, framed without a batch."""

    def close(code: int, reason: str) -> None:
        """
        End the connection. Called once, after any Disconnect push has been handed to L{writeMessages}.

        @param code: the disconnect code (a WebSocket uses it for its close frame).
        @param reason: the disconnect reason.
        """

    def registerProducer(producer: Any) -> None:
        """
        Register a push producer (the client's writer) that the transport pauses while the peer is not reading
        and resumes when it reads again.
        """


class IClient(Interface):
    """One connection's protocol state machine, as the transports and the node see it."""

    clientID = Attribute("The connection id (UUIDv4 string), also sent as ConnectResult.client.")
    sessionID = Attribute("The emulation session id (UUIDv4 string) for emulated transports, else ''.")
    user = Attribute("The authenticated user id ('' when anonymous). Meaningful once connected.")
    protocol = Attribute("'json' or 'protobuf' (the transport's).")
    unidirectional = Attribute("The transport's C{unidirectional}: pushes to it are encoded bare.")
    closed = Attribute("True once the connection has ended.")

    def handleData(data: bytes) -> "Deferred[None]":
        """
        Run a frame of encoded commands (an http_stream body, an emulation payload, a WebSocket message) in order.

        @return: a Deferred that fires when every command has been run (its reply queued), never with a failure.
        """

    def connect(request: dict[str, Any]) -> "Deferred[None]":
        """
        Connect with the ConnectRequest a unidirectional transport read (a request body, C{cf_connect}, a first
        WebSocket message), as a dict of the codec's shape. Its result is pushed (C{{"connect": ...}}); a refusal
        ends the connection with a disconnect, never an error reply.

        @return: a Deferred that fires once the connect has run, never with a failure.
        """

    def deliverPublication(frames: Any) -> None:
        """
        Queue a publication of a channel this client is subscribed to, from the L{PublicationFrames} its node
        shares among the subscribers (encoded once per protocol and variant). A positioned subscription checks
        the offset (a gap ends it with unsubscribe 2500); a delta one picks the delta or the full variant.
        """

    def passPublication(frames: Any) -> None:
        """
        A publication of a channel this client is subscribed to that its subscription's tags filter excludes:
        nothing is sent, but a positioned subscription moves its position past it (so the next one is no gap).
        """

    def deliverJoinLeave(channel: str, frame: bytes) -> None:
        """Queue an encoded join or leave push of C{channel}, if this client's subscription asked for them."""

    def disconnect(code: int, reason: str) -> None:
        """End the connection with this disconnect code and reason (pushed first where the transport wants it)."""

    def transportClosed() -> None:
        """Tell the client the peer went away (aborted request, dropped socket): clean up without writing."""

    def checkPositions(channels: Sequence[str]) -> None:
        """
        Publications of C{channels} may have been missed (the broker's link was down): compare the positions of
        this client's positioned subscriptions among them with their streams now (unsubscribe 2500 when lost).
        Channels it is not subscribed to are ignored.
        """


class IClientPolicy(Interface):
    """
    The decisions a connection asks its node for (Centrifuge's ``events.go``: OnConnecting, OnRefresh,
    OnSubscribe, OnSubRefresh, OnPublish, OnRPC, OnMessage, and the presence and history permissions), so that
    the client's state machine holds no policy.

    Every method that may wait returns a Deferred: it fires with the decision, or fails with
    L{httpstream.decisions.Refused} (the command's error reply, or the disconnect that ends the connection); any
    other failure is the server's fault (error 100). The client validates the protocol itself (missing fields,
    state) before it asks.
    """

    def connecting(connection: "Connection", request: "ConnectRequest") -> "Deferred[ConnectDecision]":
        """
        Accept a connection or refuse it: who the user is, when the connection expires, which server-side
        subscriptions it gets (their namespaces checked, the channel limit applied).
        """

    def refreshing(connection: "Connection", token: str) -> "Deferred[RefreshDecision]":
        """
        Refresh a connection: with the client's new C{token} (its refresh command), or with C{token} "" when it
        expired and L{ConnectDecision.serverRefresh} said the server refreshes it.
        """

    def channelOptions(channel: str, serverSide: bool) -> "ChannelOptions":
        """
        The options of C{channel}'s namespace, for any command on it.

        @param serverSide: a server-side subscription: only the namespace must exist, the name is not validated.
        @raise Refused: an unknown namespace (102) or a channel name refused (102/107).
        """

    def subscribing(connection: "Connection", request: "SubscribeRequest") -> "Deferred[SubscribeDecision]":
        """
        Accept a subscription or refuse it (a server-side one, C{request.granted} set, is accepted), and say what
        it gets: info, data, expiry, presence, join/leave, positioning, recovery, delta.
        """

    def subRefreshing(connection: "Connection", channel: str, options: "ChannelOptions",
                      token: str) -> "Deferred[RefreshDecision]":
        """
        Refresh a subscription: with the client's new subscription C{token}, or with C{token} "" when it expired
        and L{SubscribeDecision.serverRefresh} said the server refreshes it.
        """

    def publishing(connection: "Connection", channel: str, options: "ChannelOptions", data: bytes,
                   subscribed: bool) -> "Deferred[PublishDecision]":
        """Accept a client's publication (maybe with other data) or refuse it."""

    def mapWriting(connection: "Connection", channel: str, options: "ChannelOptions", key: str, data: bytes,
                   remove: bool, subscribed: bool) -> "Deferred[MapWriteDecision]":
        """Let a client set (or C{remove}) a map key to C{data}: what to write (key, maybe other data), or L{Refused}."""

    def tracking(connection: "Connection", channel: str, options: "ChannelOptions",
                 batches: "Sequence[TrackBatch]") -> "Deferred[list[int]]":
        """Let a shared poll subscriber track C{batches}' keys: each batch's expiry (0: none), or L{Refused}."""

    def presence(connection: "Connection", channel: str, options: "ChannelOptions",
                 subscribed: bool) -> "Deferred[dict[str, ClientInfo]]":
        """The presence of C{channel} (client id -> L{ClientInfo}), if the connection may read it."""

    def presenceStats(connection: "Connection", channel: str, options: "ChannelOptions",
                      subscribed: bool) -> "Deferred[dict[str, int]]":
        """The presence counts of C{channel} (C{num_clients}, C{num_users}), if the connection may read them."""

    def history(connection: "Connection", channel: str, options: "ChannelOptions", subscribed: bool,
                since: "Optional[StreamPosition]", limit: int, reverse: bool) -> "Deferred[HistoryResult]":
        """
        C{channel}'s history as the client's history command asks (the limit capped as configured), if the
        connection may read it; a refused filter fails with L{Refused} (107, 112).
        """

    def rpc(connection: "Connection", method: str, data: bytes) -> "Deferred[bytes]":
        """Answer a client's RPC: the RPCResult data (C{b""} for none)."""

    def message(connection: "Connection", data: bytes) -> "Deferred[None]":
        """Take a client's asynchronous C{send}; refused with a disconnect when nobody takes them (3508)."""

    def position(subscription: Any, recover: "Optional[StreamPosition]", protocol: str,
                 rejectUnrecovered: bool = False) -> "Deferred[dict[str, Any]]":
        """
        Where a positioned subscription starts in its stream, and what a recovering one missed: set the
        subscription's C{offset} and C{epoch} to the top, and fire with the SubscribeResult fields that say so
        (C{offset}, C{epoch}, C{was_recovering}, C{recovered}, C{publications}), in the protocol's dict form.

        @param subscription: the client's L{httpstream.client.subscription.Subscription}.
        @param recover: the position the client asks to recover from (its C{offset} and C{epoch}), or None
            when it does not ask to recover.
        @param rejectUnrecovered: the client set the reject unrecovered subscribe flag: a failed recovery fails
            with L{Refused} (112 unrecoverable position) instead of firing with C{recovered: false}.
        """

    def checkPosition(subscription: Any, force: bool) -> "Optional[Deferred[bool]]":
        """
        Compare a positioned subscription's position with its stream's top when a check is due (or now, with
        C{force}): None when none is due, else a Deferred firing with False once the position is lost.
        """


class ISessionRegistry(Interface):
    """
    Emulation sessions of this node: session id to the live client that owns the stream.

    An /emulation POST names a session and the node that owns it; once the node is this one, the registry says
    which client carries the session. Whether another node exists is not the registry's business
    (L{IClusterNodes}).
    """

    def add(session: str, client: IClient) -> None:
        """Register a connected emulated client under its session id (replacing any client it had)."""

    def remove(session: str) -> None:
        """Forget a session (its connection ended). Unknown sessions are ignored."""

    def get(session: str) -> Optional[IClient]:
        """Return the live client for a session of this node, or None."""

    def __len__() -> int:
        """The number of live sessions on this node."""


class IClusterNodes(Interface):
    """
    The nodes alive in this node's cluster, as far as this node knows: itself alone without a cluster; in a
    cluster, those that announced themselves recently (the control plane's list, whose entries expire).
    """

    def isKnownNode(node: str) -> bool:
        """
        Return True when C{node} is this node or a live node of the cluster (an emulation request naming it can be
        served); False for the empty id.
        """


class IEmulationForwarder(Interface):
    """
    How a node reaches the emulation sessions of the other nodes of its cluster (the control plane, in
    L{httpstream.cluster.control}). A node alone has none: a session of another node is then no session.
    """

    def forwardEmulation(nodeID: str, session: str, data: bytes) -> "Deferred[EmulationResult]":
        """
        Run emulation C{data} (encoded commands) on C{session} of node C{nodeID}, another node.

        @return: a Deferred firing, once that node has run them or dropped them, with
            L{EmulationResult.FORWARDED}, L{EmulationResult.NO_SESSION} (no such session there) or
            L{EmulationResult.REFUSED} (that node did not understand the request); with
            L{EmulationResult.UNREACHABLE} when that node did not answer in time or could not be asked. It never
            fails.
        """


# What a broker calls back with: (channel, publication, epoch) for a publication; (channel, info, join) for a join
# (join True) or a leave; (channels) for the channels whose publications may have been lost.
PublicationHandler = Callable[[str, "Publication", str], None]
JoinLeaveHandler = Callable[[str, "ClientInfo", bool], None]
ReconnectHandler = Callable[[list[str]], None]


class IHistory(Interface):
    """
    Each channel's history stream: the newest publications with their offsets, under an epoch (the incarnation of
    the stream: a stream lost and created again has another one, so a position from the old one is refused).

    Appending is not here: it is part of publishing (L{IBroker.publish}), in one atomic step, so offsets reach
    subscribers in order. Readers of history (recovery, the history API) need only this.
    """

    def history(
        channel: str,
        since: "Optional[StreamPosition]" = None,
        limit: int = 0,
        reverse: bool = False,
        metaTTL: float = 0,
    ) -> "Deferred[HistoryResult]":
        """
        Read C{channel}'s history stream, creating an empty one (new epoch, top 0) when it has none, and keep
        the stream for C{metaTTL} more seconds (0: the engine's default).

        Filter (Centrifugo's HistoryFilter):
          - C{limit} 0: no publications, only the position; negative: no limit.
          - without C{since}: oldest first (newest first with C{reverse}), up to C{limit}.
          - with C{since} (a L{StreamPosition}; its epoch "" matches any): forward, offsets greater than
            C{since.offset} (from the oldest retained one when the next was trimmed; none when it is the top);
            reverse, offsets smaller than C{since.offset}, newest first.

        @return: a Deferred firing with an L{httpstream.engines.HistoryResult} (publications, offset = top,
            epoch), or failing with L{httpstream.engines.BadHistoryRequest} (107: C{reverse} with
            C{since.offset} 0), L{httpstream.engines.UnrecoverablePosition} (112: C{since.epoch} non-empty and
            not the stream's), or an engine error.
        """

    def removeHistory(channel: str) -> "Deferred[None]":
        """
        Drop C{channel}'s stored publications, keeping its top and epoch (the next publication continues the
        offsets). A channel without a stream is left without one.
        """


class IBroker(IHistory):
    """
    Moves publications between nodes: PUB/SUB per channel, and each channel's history stream (as Centrifugo's
    Broker, it keeps history too: appending and publishing must be one atomic step, so offsets reach subscribers
    in order).

    The node subscribes a channel here when its first local subscriber arrives and unsubscribes when the last one
    leaves; every publication on a subscribed channel, from any node, comes back through the handler.
    """

    def setHandler(handler: PublicationHandler) -> None:
        """
        Set the callable that receives C{(channel, publication, epoch)} for every publication on a subscribed
        channel, a L{Publication} (data, info, offset, tags). C{epoch} is the epoch of the stream the publication
        was appended to, "" when it was not (no history): the handler decides what a positioned subscriber in
        another epoch does (it lost its place).
        """

    def setJoinLeaveHandler(handler: JoinLeaveHandler) -> None:
        """
        Set the callable that receives C{(channel, info, join)} for every join (C{join} True) or leave sent on a
        subscribed channel, C{info} being the L{ClientInfo} of who came or went.
        """

    def setReconnectHandler(handler: ReconnectHandler) -> None:
        """
        Set the callable that receives C{(channels)} when publications of those subscribed channels may not have
        reached this node (a networked broker's PUB/SUB connection was lost and is back, the channels subscribed
        again). Positioned subscribers should then compare their position with the stream's top. A broker that
        never loses publications (the memory one) never calls it.
        """

    def publishJoinLeave(channel: str, info: "ClientInfo", join: bool) -> "Deferred[None]":
        """
        Send a join (C{join} True) or leave of C{info} to every node subscribed to C{channel} (this one
        included), as Centrifugo's brokers do, so subscribers on every node see who came and went. Nothing is
        stored.
        """

    def subscribe(channel: str) -> "Deferred[None]":
        """Start receiving publications of C{channel} on this node."""

    def unsubscribe(channel: str) -> "Deferred[None]":
        """Stop receiving publications of C{channel} on this node."""

    def publish(
        channel: str,
        publication: "Publication",
        historySize: int = 0,
        historyTTL: float = 0,
        historyMetaTTL: float = 0,
        idempotencyKey: str = "",
        idempotentResultTTL: float = 0,
    ) -> "Deferred[Optional[StreamPosition]]":
        """
        Publish to every node subscribed to C{channel}, appending to the channel's history stream in the same
        atomic step when it has one (C{historySize} > 0 and C{historyTTL} > 0).

        With history the publication gets C{offset} = top + 1 (the first is 1); the stream keeps the newest
        C{historySize} items, clears them (keeping top and epoch) C{historyTTL} seconds after this publish, and
        is dropped (top and epoch) after C{historyMetaTTL} seconds without use (0: the engine's default, 30
        days). Without history the publication has no offset and the top does not move.

        The handler and the stream get the publication with its offset (0 without history).

        With C{idempotencyKey}, a publish whose key C{channel} has seen within C{idempotentResultTTL} seconds (0:
        5 minutes) publishes nothing and fires with the first one's result; what remembers the key is where the
        publication is stored (the engine, in the same atomic step), so every node sees it, and a publish whose
        reply was lost is known to a retry.

        @param publication: data, info, tags; its C{offset} is ignored.
        @return: a Deferred firing with the publication's L{StreamPosition} with history, None without, or
            failing when the publication could not be sent (never a false success).
        """


class IPresenceManager(Interface):
    """
    Who is subscribed to a channel, across nodes: channel -> client id -> ClientInfo.

    The memory manager keeps entries until removed; a networked one may expire entries the node stops
    refreshing (Centrifugo's Redis presence: C{global_presence_ttl}).
    """

    def add(channel: str, clientID: str, info: "ClientInfo") -> "Deferred[None]":
        """Record (or refresh, replacing its info) C{clientID} in C{channel}'s presence."""

    def remove(channel: str, clientID: str) -> "Deferred[None]":
        """Remove C{clientID} from C{channel}'s presence. Unknown clients and channels are ignored."""

    def presence(channel: str) -> "Deferred[dict[str, ClientInfo]]":
        """
        @return: a Deferred firing with C{{clientID: info}} for every client present in C{channel} (C{{}} when
            none).
        """

    def stats(channel: str) -> "Deferred[dict[str, int]]":
        """
        @return: a Deferred firing with C{{"num_clients": n, "num_users": m}}: the entries, and the distinct user
            ids among them (anonymous "" counts as one user).
        """
