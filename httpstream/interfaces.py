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

    name = Attribute("Centrifugo's transport name: 'http_stream', 'sse' or 'websocket'.")
    protocol = Attribute("'json' or 'protobuf'.")
    emulated = Attribute("True when commands after connect arrive through /emulation (connect result gets session and node).")
    pushDisconnect = Attribute("True when a Disconnect push must precede the end of the connection (False: close frame).")

    def writeMessages(messages: Sequence[bytes]) -> None:
        """
        Write encoded messages (one Reply each, unframed) as one unit on the wire: one chunk, one event batch or
        one frame.
        """

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
    closed = Attribute("True once the connection has ended.")

    def handleData(data: bytes) -> "Deferred[None]":
        """
        Run a frame of encoded commands (an http_stream body, an emulation payload, a WebSocket message) in order.

        @return: a Deferred that fires when every command has been run (its reply queued), never with a failure.
        """

    def deliver(frame: bytes, size: int) -> None:
        """
        Queue one already-encoded message (a publication push shared by every subscriber of a channel).

        @param size: its length in bytes, counted against the client's queue limit.
        """

    def disconnect(code: int, reason: str) -> None:
        """End the connection with this disconnect code and reason (pushed first where the transport wants it)."""

    def transportClosed() -> None:
        """Tell the client the peer went away (aborted request, dropped socket): clean up without writing."""


class ISessionRegistry(Interface):
    """
    Emulation sessions on this node: session id to the live client that owns the stream.

    An /emulation POST names a session and the node that owns it; the registry answers for this node, and knows
    which other nodes are alive (one, itself, with the memory engine).
    """

    nodeID = Attribute("This node's id (a UUIDv4 string chosen at start).")

    def add(session: str, client: IClient) -> None:
        """Register a connected emulated client under its session id."""

    def remove(session: str) -> None:
        """Forget a session (its connection ended). Unknown sessions are ignored."""

    def get(session: str) -> Optional[IClient]:
        """Return the live client for a session of this node, or None."""

    def isKnownNode(node: str) -> bool:
        """Return True when C{node} is this node or a live node of the cluster."""

    def __len__() -> int:
        """The number of live sessions on this node."""


class IBroker(Interface):
    """
    Moves publications between nodes: PUB/SUB per channel.

    The node subscribes a channel here when its first local subscriber arrives and unsubscribes when the last one
    leaves; every publication on a subscribed channel, from any node, comes back through the handler.
    """

    def setHandler(handler: Callable[[str, dict], None]) -> None:
        """
        Set the callable that receives C{(channel, publication)} for every publication on a subscribed channel.
        A publication is a dict in the protocol's dict form (see L{httpstream.protocol}): data, info, offset, tags.
        """

    def subscribe(channel: str) -> "Deferred[None]":
        """Start receiving publications of C{channel} on this node."""

    def unsubscribe(channel: str) -> "Deferred[None]":
        """Stop receiving publications of C{channel} on this node."""

    def publish(channel: str, publication: dict) -> "Deferred[dict]":
        """
        Publish to every node subscribed to C{channel}.

        @return: a Deferred firing with the stream position dict (C{offset}, C{epoch}; empty without history),
            or failing when the publication could not be sent (never a false success).
        """
