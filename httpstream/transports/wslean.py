# -*- test-case-name: tests.transports.test_wslean -*-
"""
What autobahn keeps for each open WebSocket connection, kept lean.

Autobahn's protocol holds everything in its instance dict, about a hundred attributes by the time a connection is
open: the 29 protocol options it copies from its factory into every connection, some forty state flags at their
starting values (None, False, 0), the opening handshake's request and response (raw bytes, header dict, path,
query), and an empty send queue (a C{deque}, whose first block alone is 0.5 KiB) that only its chopped or
synchronous writes use. That dict was 3.3 KB of a connection's ~12.

So, on the L{CentrifugeWebSocketProtocol<httpstream.transports.websocket.CentrifugeWebSocketProtocol>} class:
    - the options are read from the factory (L{FromFactory}), which autobahn then finds present and copies no
      more;
    - the state flags' starting values are class attributes (L{AT_REST}), and once the connection is open
      L{compact} drops each instance value that is still that very value, and what only the handshake used
      (L{HANDSHAKE_ONLY}, read as None afterwards), and gives the instance a dict sized for what is left (a dict
      never shrinks by deletion);
    - the send queue is made only when a chopped or synchronous write needs it (L{QUEUE}).
Autobahn reads and sets the same names as before: a value set again simply lives in the instance once more.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from autobahn.websocket.protocol import WebSocketServerProtocol

__all__ = ["FromFactory", "AT_REST", "HANDSHAKE_ONLY", "QUEUE", "install", "compact", "sendQueue"]

# The starting values autobahn's _connectionMade and opening handshake give (autobahn/websocket/protocol.py):
# only immutable ones, so a class attribute can stand for each on every connection.
AT_REST: dict[str, Any] = {
    "_perMessageCompress": None,
    "trackedTimings": None,
    "send_state": 0,  # WebSocketProtocol.SEND_STATE_GROUND
    "data": b"",
    "triggered": False,
    "wasMaxFramePayloadSizeExceeded": False,
    "wasMaxMessagePayloadSizeExceeded": False,
    "closedByMe": False,
    "failedByMe": False,
    "droppedByMe": False,
    "wasClean": False,
    "wasNotCleanReason": None,
    "wasServerConnectionDropTimeout": False,
    "wasOpenHandshakeTimeout": False,
    "wasCloseHandshakeTimeout": False,
    "wasServingFlashSocketPolicyFile": False,
    "localCloseCode": None,
    "localCloseReason": None,
    "remoteCloseCode": None,
    "remoteCloseReason": None,
    "openHandshakeTimeoutCall": None,
    "closeHandshakeTimeoutCall": None,
    "autoPingTimeoutCall": None,
    "autoPingPending": None,
    "autoPingPendingCall": None,
    "autoPingPendingSeq": 0,
    "autoPingPendingSent": None,
    "websocket_protocol_in_use": None,
    "inside_message": False,
    "current_frame": None,
    "_isMessageCompressed": False,
    "message_is_binary": False,
    "message_data": None,
    "frame_data": None,
}

# What only the opening handshake reads (autobahn's processHandshake, our onConnect and the transport's headers,
# taken before the compaction): None once the connection is open.
HANDSHAKE_ONLY = (
    "http_request_data",
    "http_status_line",
    "http_headers",
    "http_request_uri",
    "http_request_path",
    "http_request_params",
    "http_request_host",
    "http_response_data",
    "websocket_origin",
    "websocket_protocols",
    "websocket_extensions",
    "_wskey",
)

QUEUE = "send_queue"


class FromFactory:
    """A protocol option read from the connection's factory, where autobahn would copy it into the connection."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    # A non-data descriptor: should autobahn ever set the option on a connection, that value is the instance's.
    def __get__(self, instance: Any, owner: Any = None) -> Any:
        if instance is None:
            return self
        return getattr(instance.factory, self._name)


def install(protocol: type[WebSocketServerProtocol]) -> None:
    """Give C{protocol} (a subclass of autobahn's server protocol) the class attributes the compaction relies on."""
    for name in WebSocketServerProtocol.CONFIG_ATTRS:
        setattr(protocol, name, FromFactory(name))
    for name, value in AT_REST.items():
        setattr(protocol, name, value)
    for name in HANDSHAKE_ONLY:
        setattr(protocol, name, None)
    # Empty, as autobahn's len() checks find it; a write that needs the queue makes its own first (sendQueue).
    setattr(protocol, QUEUE, ())


def sendQueue(connection: Any) -> Any:
    """C{connection}'s own send queue, made now if it had none (before a chopped or synchronous write)."""
    state = connection.__dict__
    queue = state.get(QUEUE)
    if queue is None:
        queue = state[QUEUE] = deque()
    return queue


def compact(connection: Any) -> None:
    """Drop what an open connection keeps at its class's values, what only its handshake used, and its empty queue."""
    state = connection.__dict__
    for name in HANDSHAKE_ONLY:
        state.pop(name, None)
    for name, value in AT_REST.items():
        if name in state and state[name] is value:
            del state[name]
    queue = state.get(QUEUE)
    if queue is not None and not queue:
        del state[QUEUE]
    connection.__dict__ = dict(state)
