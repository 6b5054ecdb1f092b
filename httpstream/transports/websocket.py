# -*- test-case-name: tests.test_wire_websocket -*-
"""
``/connection/websocket`` (reference/transports.md section 4), on autobahn.

Why autobahn and not ``twisted.web.websocket``: a browser refuses a handshake that does not echo the subprotocol
it offered, and the Protobuf build of the JS SDK offers ``centrifuge-protobuf``. Twisted 26.10's WebSocket resource
accepts the handshake without negotiating any subprotocol; autobahn lets ``onConnect`` choose one, refuse with a
status (403 for a bad origin), and sends close frames with our 3xxx codes and reasons.

The transport only frames bytes: JSON replies joined by newlines in one text frame, Protobuf replies
varint-delimited in one binary frame; a disconnect is a close frame, never a push.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from httpstream.client import Client
from httpstream.interfaces import IOriginChecker, ITransport
from httpstream.logs import Logger
from httpstream.node import Node
from httpstream.protocol.framing import varint_delimit

SUBPROTOCOLS = ("centrifuge-json", "centrifuge-protobuf")

# A close reason must fit a control frame: 125 bytes less the 2-byte code.
_MAX_REASON = 123


@implementer(ITransport)
class WebSocketTransport:
    """One WebSocket connection, as the client sees it."""

    name = "websocket"
    emulated = False
    pushDisconnect = False

    def __init__(self, connection: "CentrifugeWebSocketProtocol", protobuf: bool) -> None:
        self._connection = connection
        # The upgrade request's headers (autobahn keeps them lower-cased, one value each).
        self.requestHeaders = dict(connection.http_headers)
        self.protocol = "protobuf" if protobuf else "json"
        self.finished = False

    def writeMessages(self, messages: Sequence[bytes]) -> None:
        if self.finished:
            return
        if self.protocol == "protobuf":
            self._connection.sendMessage(varint_delimit(messages), isBinary=True)
        else:
            # One message goes as it is; a batch is newline-joined with no trailing newline.
            self._connection.sendMessage(b"\n".join(messages), isBinary=False)

    def registerProducer(self, producer: IPushProducer) -> None:
        transport = self._connection.transport
        # Twisted Web's channel was the TCP transport's producer until autobahn took the connection over.
        if getattr(transport, "producer", None) is not None:
            transport.unregisterProducer()
        transport.registerProducer(producer, True)

    def close(self, code: int, reason: str) -> None:
        if self.finished:
            return
        self.finished = True
        encoded = reason.encode("utf-8")[:_MAX_REASON].decode("utf-8", "ignore")
        self._connection.sendClose(code=code, reason=encoded)

    def lost(self) -> None:
        self.finished = True


# Not the protocol's own `log`: that is autobahn's, and ours would let its internal debug chatter through.
_log = Logger()


class CentrifugeWebSocketProtocol(WebSocketServerProtocol):
    """Autobahn's side of one connection: handshake choices, then frames in and out of a L{Client}."""

    factory: "CentrifugeWebSocketFactory"

    def __init__(self) -> None:
        super().__init__()
        self._protobuf = False
        self._transport: Optional[WebSocketTransport] = None
        self._client: Optional[Client] = None

    def onConnect(self, request: ConnectionRequest) -> Optional[str]:
        origin = request.headers.get("origin")
        if not self.factory.origins.check(origin):
            _log.info("websocket upgrade refused: origin {origin!r} not allowed", origin=origin)
            raise ConnectionDeny(403, "origin not allowed")
        offered = [p for p in request.protocols if p]  # an empty Sec-WebSocket-Protocol header offers nothing
        chosen = next((p for p in offered if p in SUBPROTOCOLS), None)
        params = request.params or {}  # the query string, name -> list of values
        self._protobuf = (
            chosen == "centrifuge-protobuf"
            or "protobuf" in params.get("cf_protocol", ())
            or "protobuf" in params.get("format", ())
        )
        return chosen

    def onOpen(self) -> None:
        self._transport = WebSocketTransport(self, self._protobuf)
        self._client = self.factory.node.newClient(self._transport)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self._client is not None:
            self._client.handleData(payload)

    def onClose(self, wasClean: bool, code: Optional[int], reason: Optional[str]) -> None:
        if self._client is not None and self._transport is not None:
            self._transport.lost()
            self._client.transportClosed()


class CentrifugeWebSocketFactory(WebSocketServerFactory):
    """Connections to one node; frames and messages above C{messageSizeLimit} bytes close with 1009."""

    protocol = CentrifugeWebSocketProtocol

    def __init__(self, node: Node, origins: IOriginChecker, messageSizeLimit: int) -> None:
        super().__init__()
        self.node = node
        self.origins = origins
        self.setProtocolOptions(
            maxMessagePayloadSize=messageSizeLimit,
            maxFramePayloadSize=messageSizeLimit,
            # As Centrifugo: wait up to 5 s for the peer's close frame, then drop the connection.
            closeHandshakeTimeout=5,
            # Failing a connection (a message over the limit) sends a close frame with the code (1009), which the
            # SDKs report; autobahn's default drops the TCP connection without one.
            failByDrop=False,
            # Our own origin check runs in onConnect (403); autobahn's would answer differently.
            allowedOrigins=["*"],
        )
        self.noisy = False
        # No "Server: AutobahnPython" in the handshake: Centrifugo (Go's net/http) names no server either.
        self.server = None


def websocketResource(node: Node, origins: IOriginChecker, messageSizeLimit: int) -> Any:
    """The resource a Klein route returns for ``/connection/websocket``."""
    return WebSocketResource(CentrifugeWebSocketFactory(node, origins, messageSizeLimit))
