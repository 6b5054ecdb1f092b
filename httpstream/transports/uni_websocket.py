# -*- test-case-name: tests.transports.test_uni_websocket -*-
"""
``/connection/uni_websocket``: the unidirectional WebSocket (Centrifugo's ``internal/uniws``), on autobahn as
L{httpstream.transports.websocket} is.

The bare JSON ConnectRequest comes in the ``cf_connect`` query parameter of the upgrade (400 when it is not one) or
as the client's first message (close 3501 when it is not one); what the client sends after it is read and ignored,
each message within C{uni_websocket_message_size_limit} (1009 beyond). No subprotocol is negotiated: JSON only.

Each push goes in its own text message: the ``connect`` result first, then publications of the server-side
subscriptions and empty pings. A disconnect is pushed and then sent as the close frame, with the same code. The
connection is also kept alive with WebSocket ping frames every C{ping_interval} (25 s when pings are off); a peer
that does not answer one within C{pong_timeout} (10 s when off) is dropped.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from autobahn.websocket.types import ConnectionDeny, ConnectionRequest

from httpstream.interfaces import IOriginChecker
from httpstream.logs import Logger
from httpstream.node.node import Node
from httpstream.protocol import codes
from httpstream.transports._uni import CONNECT_PARAM, readConnectRequest
from httpstream.transports.websocket import (
    CentrifugeWebSocketFactory,
    CentrifugeWebSocketProtocol,
    UpgradeResource,
    WebSocketTransport,
)
from httpstream.transports.wslean import compact

# Centrifugo's (internal/uniws/config.go) where its own settings are 0 or off.
DEFAULT_MESSAGE_SIZE_LIMIT = 65536
DEFAULT_FRAME_PING_INTERVAL = 25.0
DEFAULT_FRAME_PONG_TIMEOUT = 10.0

_log = Logger()


class UniWebSocketTransport(WebSocketTransport):
    """One unidirectional WebSocket: a text message per push, a disconnect pushed before its close frame."""

    __slots__ = ()

    name = "uni_websocket"
    pushDisconnect = True
    unidirectional = True

    def __init__(self, connection: "UniWebSocketProtocol") -> None:
        super().__init__(connection, protobuf=False)

    def payloads(self, messages: Sequence[bytes]) -> list[bytes]:
        # One push per message, as Centrifugo sends them (join_push_messages off): its readers parse a message as
        # one push.
        return list(messages)


class UniWebSocketProtocol(CentrifugeWebSocketProtocol):
    """Autobahn's side of one unidirectional connection: the connect request in, pushes out."""

    factory: "UniWebSocketFactory"

    def __init__(self) -> None:
        super().__init__()
        self._connectRequest: Optional[dict[str, Any]] = None
        self._connectRead = False

    def onConnect(self, request: ConnectionRequest) -> Optional[str]:
        origin = request.headers.get("origin")
        if not self.factory.origins.check(origin):
            _log.info("uni_websocket upgrade refused: origin {origin!r} not allowed", origin=origin)
            raise ConnectionDeny(403, "origin not allowed")
        raw = ((request.params or {}).get(CONNECT_PARAM) or [""])[0]
        if raw:
            self._connectRequest = readConnectRequest(raw.encode("utf-8"), UniWebSocketTransport.name)
            if self._connectRequest is None:
                raise ConnectionDeny(400, "invalid connect request")
        # No subprotocol: Centrifugo's upgrader offers none.
        return None

    def onOpen(self) -> None:
        transport = UniWebSocketTransport(self)
        self._transport = transport
        self._client = client = self.factory.node.newClient(transport)
        compact(self)
        if self._connectRequest is not None:
            self._connectRead = True
            client.connect(self._connectRequest)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        client, transport = self._client, self._transport
        if client is None or transport is None or self._connectRead:
            return  # after the connect request, messages are read and dropped
        self._connectRead = True
        connect = readConnectRequest(payload, UniWebSocketTransport.name)
        if connect is None:
            # As Centrifugo: only the close frame tells why (no client had connected to push to).
            transport.close(codes.DISCONNECT_BAD_REQUEST.code, codes.DISCONNECT_BAD_REQUEST.reason)
            client.transportClosed()
            return
        client.connect(connect)


class UniWebSocketFactory(CentrifugeWebSocketFactory):
    """Unidirectional connections to one node, with WebSocket ping frames as Centrifugo sends them."""

    protocol = UniWebSocketProtocol  # autobahn builds it with no arguments

    def __init__(self, node: Node, origins: IOriginChecker, messageSizeLimit: int) -> None:
        super().__init__(node, origins, messageSizeLimit or DEFAULT_MESSAGE_SIZE_LIMIT)
        config = node.config
        self.setProtocolOptions(  # type: ignore[no-untyped-call]
            autoPingInterval=config.ping_interval if config.ping_interval > 0 else DEFAULT_FRAME_PING_INTERVAL,
            autoPingTimeout=config.pong_timeout if config.pong_timeout > 0 else DEFAULT_FRAME_PONG_TIMEOUT,
        )


def uniWebsocketResource(node: Node, origins: IOriginChecker, messageSizeLimit: int) -> Any:
    """The resource a Klein route returns for ``/connection/uni_websocket``."""
    return UpgradeResource(UniWebSocketFactory(node, origins, messageSizeLimit))
