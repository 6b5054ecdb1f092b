# -*- test-case-name: tests.transports.test_websocket_transport,tests.transports.test_websocket_http,tests.transports.test_websocket_delivery,tests.transports.test_websocket_compression -*-
"""
``/connection/websocket`` (centrifugal/centrifuge ``handler_websocket.go``), on autobahn.

Why autobahn and not ``twisted.web.websocket``: a browser refuses a handshake that does not echo the subprotocol
it offered, and the Protobuf build of the JS SDK offers ``centrifuge-protobuf``. Twisted 26.10's WebSocket resource
accepts the handshake without negotiating any subprotocol; autobahn lets ``onConnect`` choose one, refuse with a
status (403 for a bad origin), and sends close frames with our 3xxx codes and reasons.

The transport only frames bytes: JSON replies joined by newlines in text frames, Protobuf replies varint-delimited
in binary frames; a disconnect is a close frame, never a push.

Autobahn's size limits apply to what it sends as well as to what it reads, so it is given none: the inbound limit
(C{websocket_message_size_limit}) is checked here on every frame a client sends, and a flushed batch is split into
WebSocket messages of at most C{websocket_write_batch_size} bytes, each holding whole protocol messages; a reply
or push larger than that goes alone in its own message. Nothing the writer hands over is refused for its size.

With C{websocket_compression} on, a client that offers permessage-deflate gets it (L{httpstream.transports.deflate}:
no context takeover, so one compression of a publication serves all its subscribers); each WebSocket message over
C{websocket_compression_min_size} bytes then goes compressed, the others as they are.

On a connection without compression the transport frames its messages itself: a server's frames are unmasked, so
a message alone in its batch (nearly every publication) is framed once for every connection on the same protocol
(L{httpstream.transports.framecache}), and a batch's frames go out as one write. Every write of the connection,
autobahn's own frames included, goes straight to the socket when nothing waits before it
(L{httpstream.directwrite}).
"""

from __future__ import annotations

import struct
from typing import Any, Optional, Sequence

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.protocol import WebSocketProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from httpstream.protocol import codes
from httpstream.interfaces import IClient, IOriginChecker, ITransport
from httpstream.logs import Logger
from httpstream.node.node import Node
from httpstream.protocol.framing import encode_varint, varint_delimit
from httpstream.transports.deflate import Compression, Deflaters, SharedDeflate, acceptOffer
from httpstream.directwrite import writeNow
from httpstream.transports.framecache import LARGEST, FrameCache
from httpstream.transports.handoff import untie
from httpstream.transports.wslean import compact, install, sendQueue

SUBPROTOCOLS = ("centrifuge-json", "centrifuge-protobuf")

# A close reason must fit a control frame: 125 bytes less the 2-byte code.
_MAX_REASON = 123

_OPEN = WebSocketProtocol.STATE_OPEN
_MESSAGE_TOO_BIG = WebSocketProtocol.CLOSE_STATUS_CODE_MESSAGE_TOO_BIG


def closeCode(code: int) -> int:
    """
    The close frame code for a disconnect code.

    A server's close frame may carry 1000 or an application code (3000-4999), nothing else (RFC 6455 7.4; autobahn
    raises for the rest). Centrifuge does not check: it writes the code's low 16 bits (1005 as no code at all), so
    the peer sees an invalid close frame (it fails the connection and the SDK reconnects), no code, or an unrelated
    one. Here such a code becomes 3011 "force reconnect": valid on the wire, and the SDKs reconnect as they would.
    """
    if code == 1000 or 3000 <= code <= 4999:
        return code
    return codes.DISCONNECT_FORCE_RECONNECT.code


_TEXT, _BINARY = 0x1, 0x2
_FIN = 0x80
_HEAD16 = struct.Struct("!BBH")
_HEAD64 = struct.Struct("!BBQ")


def messageFrame(opcode: int, payload: bytes) -> bytes:
    """One whole WebSocket message as a server sends it: a single final frame, unmasked (RFC 6455 5.2)."""
    length = len(payload)
    if length < 126:
        head = bytes((_FIN | opcode, length))
    elif length < 0x10000:
        head = _HEAD16.pack(_FIN | opcode, 126, length)
    else:
        head = _HEAD64.pack(_FIN | opcode, 127, length)
    return head + payload


# One message alone, by protocol: its payload as L{packBatch} makes it, in one frame. (A unidirectional connection
# sends one message per WebSocket message: the same frame.)
_FRAMES = {
    "json": FrameCache(lambda message: messageFrame(_TEXT, message)),
    "protobuf": FrameCache(lambda message: messageFrame(_BINARY, encode_varint(len(message)) + message)),
}


def _prefixSize(length: int) -> int:
    """The bytes of a message's varint length prefix (7 bits a byte)."""
    return 1 if length < 0x80 else 2 if length < 0x4000 else (length.bit_length() + 6) // 7


def packBatch(messages: Sequence[bytes], maxSize: int, protobuf: bool) -> list[bytes]:
    """
    The payloads of the WebSocket messages that carry one flushed batch, in order.

    JSON messages are joined by newlines, Protobuf ones varint-delimited. Each payload holds whole protocol
    messages and is at most C{maxSize} bytes, except one holding a single message larger than that; C{maxSize}
    0 puts the whole batch in one payload.
    """
    join = varint_delimit if protobuf else b"\n".join
    # Fast path, nearly every batch: surely within the size even with a 5-byte prefix (or a newline) per message.
    if not maxSize or sum(map(len, messages)) + 5 * len(messages) <= maxSize:
        return [join(messages)]
    payloads: list[bytes] = []
    group: list[bytes] = []
    size = 0
    for message in messages:
        alone = len(message) + (_prefixSize(len(message)) if protobuf else 0)
        # A JSON newline goes between two messages, not before the first.
        cost = alone + 1 if group and not protobuf else alone
        if group and size + cost > maxSize:
            payloads.append(join(group))
            group, size, cost = [], 0, alone
        group.append(message)
        size += cost
    payloads.append(join(group))
    return payloads


@implementer(ITransport)
class WebSocketTransport:
    """One WebSocket connection, as the client sees it."""

    __slots__ = ("_connection", "_tcp", "_writeBatchSize", "_compression", "_framings", "requestHeaders",
                 "protocol", "finished")

    name = "websocket"
    emulated = False
    pushDisconnect = False
    unidirectional = False

    def __init__(
        self,
        connection: "CentrifugeWebSocketProtocol",
        protobuf: bool,
        writeBatchSize: int = 0,
        compression: Optional[Compression] = None,
    ) -> None:
        """
        @param compression: the endpoint's settings when this connection negotiated permessage-deflate, else None.
        """
        self._connection = connection
        # The connection's TCP (or TLS) transport, which autobahn keeps for the connection's life: read here once
        # rather than from autobahn's large instance dict on every delivery.
        self._tcp: Any = connection.transport
        self._writeBatchSize = writeBatchSize
        self._compression = compression
        # The upgrade request's headers (autobahn keeps them lower-cased, one value each), which the connection
        # lets go of once open (L{compact}).
        self.requestHeaders = connection.http_headers
        self.protocol = "protobuf" if protobuf else "json"
        # A message alone in its frame, shared by every connection on the same protocol.
        self._framings = _FRAMES[self.protocol]
        self.finished = False

    def writeMessage(self, message: bytes) -> None:
        # Nearly every publication, once per subscriber: its frame made by the first connection, written as
        # CentrifugeWebSocketProtocol.sendData would (straight to the socket unless autobahn's own queue waits).
        connection = self._connection
        if self._compression is not None or self.finished or connection.state != _OPEN or connection.send_queue:
            self.writeMessages((message,))
            return
        framings = self._framings
        writeNow(self._tcp, framings[message] if len(message) <= LARGEST else framings.framed(message))

    def writeMessages(self, messages: Sequence[bytes]) -> None:
        # Once the peer has begun closing (or gone) nothing can reach it; autobahn would raise.
        if self.finished or self._connection.state != _OPEN:
            return
        binary = self.protocol == "protobuf"
        compression = self._compression
        if compression is None:
            data = self._framings.framed(messages[0]) if len(messages) == 1 else self.frames(messages)
            self._connection.sendData(data)
            return
        for payload in self.payloads(messages):
            # Autobahn decides per message: doNotCompress sends a small one plainly (RSV1 clear) on a connection
            # that negotiated compression, as Centrifugo does up to websocket_compression_min_size.
            plain = not compression.compresses(len(payload))
            self._connection.sendMessage(  # type: ignore[no-untyped-call]
                payload, isBinary=binary, doNotCompress=plain
            )

    def frames(self, messages: Sequence[bytes]) -> bytes:
        """The uncompressed frames of the WebSocket messages that carry a batch (or one message), as one write."""
        opcode = _BINARY if self.protocol == "protobuf" else _TEXT
        payloads = self.payloads(messages)
        if len(payloads) == 1:
            return messageFrame(opcode, payloads[0])
        return b"".join([messageFrame(opcode, payload) for payload in payloads])

    def payloads(self, messages: Sequence[bytes]) -> list[bytes]:
        """The WebSocket messages that carry one flushed batch."""
        # One JSON message goes as it is; a batch is newline-joined with no trailing newline.
        return packBatch(messages, self._writeBatchSize, self.protocol == "protobuf")

    def registerProducer(self, producer: IPushProducer) -> None:
        # The TCP transport (a consumer), which autobahn types as a bare ITransport.
        transport: Any = self._connection.transport
        # Twisted Web's channel was the TCP transport's producer until autobahn took the connection over.
        if getattr(transport, "producer", None) is not None:
            transport.unregisterProducer()
        transport.registerProducer(producer, True)

    def close(self, code: int, reason: str) -> None:
        if self.finished:
            return
        self.finished = True
        if self._connection.state != _OPEN:
            return  # the peer closed first: autobahn finishes that handshake itself
        encoded = reason.encode("utf-8", "replace")[:_MAX_REASON].decode("utf-8", "ignore")
        try:
            self._connection.sendClose(code=closeCode(code), reason=encoded)
        except Exception as e:
            # Never leave the socket open behind a client the node has already forgotten.
            _log.warn("websocket close ({code}) failed, aborting the connection: {error!r}", code=code, error=e)
            self.abort()

    def abort(self) -> None:
        """Drop the TCP connection at once (no close frame)."""
        self.finished = True
        transport: Any = self._connection.transport  # a TCP transport (ITCPTransport), typed ITransport
        if transport is not None:
            transport.abortConnection()

    def lost(self) -> None:
        self.finished = True


# Not the protocol's own `log`: that is autobahn's, and ours would let its internal debug chatter through.
_log = Logger()


class CentrifugeWebSocketProtocol(WebSocketServerProtocol):
    """Autobahn's side of one connection: handshake choices, then frames in and out of a L{Client}."""

    factory: "CentrifugeWebSocketFactory"

    # Class attributes until set: one connection's dict holds only what differs (L{httpstream.transports.wslean}).
    _protobuf = False
    _transport: Optional[WebSocketTransport] = None
    _client: Optional[IClient] = None

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
        compression: Optional[Compression] = None
        negotiated = self._perMessageCompress
        if negotiated is not None and self.factory.deflaters is not None:
            # Autobahn made its own compressor from our acceptance (it looks the class up by extension name in a
            # module-wide table we leave alone); the connection's outgoing messages go through the endpoint's
            # shared deflater instead, before any message is sent.
            shared = SharedDeflate.taking(negotiated, self.factory.deflaters)
            self._perMessageCompress = shared
            self.websocket_extensions_in_use = [shared]
            compression = self.factory.compression
        self._transport = WebSocketTransport(self, self._protobuf, self.factory.writeBatchSize, compression)
        self._client = self.factory.node.newClient(self._transport)
        compact(self)

    def onMessageFrameBegin(self, length: int) -> None:
        super().onMessageFrameBegin(length)
        # Checked as each frame header arrives (autobahn counts the message so far, this frame included), before
        # its payload is buffered: autobahn drops the payload of a connection it is failing.
        limit = self.factory.messageSizeLimit
        if limit and not self.failedByMe and self.message_data_total_length > limit:
            self._fail_connection(_MESSAGE_TOO_BIG, "message size limit exceeded")

    def _max_message_size_exceeded(self, msg_size: int, max_msg_size: int, reason: str) -> None:
        # Autobahn's hook for a client's compressed message that inflates past the limit: the same 1009 and reason
        # as a message too large on the wire (its own reason would name its unused limit, 0).
        self._fail_connection(_MESSAGE_TOO_BIG, "message size limit exceeded")

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if self._client is not None:
            self._client.handleData(payload)

    def sendData(self, data: bytes, sync: bool = False, chopsize: Optional[int] = None) -> None:
        # Every write of the connection (the transport's frames, autobahn's handshake, pings and close frames):
        # straight to the socket when nothing waits before it, and without autobahn's debug line per write, whose
        # arguments it formats even when nobody logs them. Its queue (sync writes, chopped ones) keeps its own way.
        if sync or chopsize or self.send_queue:
            sendQueue(self)  # an open connection makes its queue only now
            super().sendData(data, sync, chopsize)
        else:
            writeNow(self.transport, data)

    def onClose(self, wasClean: bool, code: Optional[int], reason: Optional[str]) -> None:
        if self._client is not None and self._transport is not None:
            self._transport.lost()
            self._client.transportClosed()


install(CentrifugeWebSocketProtocol)


class CentrifugeWebSocketFactory(WebSocketServerFactory):
    """
    Connections to one node; a client message above C{messageSizeLimit} bytes closes with 1009, and outgoing
    batches are split at C{writeBatchSize} bytes (0: no limit either way). With C{compression}, permessage-deflate
    is accepted when a client offers it.
    """

    protocol = CentrifugeWebSocketProtocol  # type: ignore[assignment]  # autobahn builds it with no arguments

    def __init__(
        self,
        node: Node,
        origins: IOriginChecker,
        messageSizeLimit: int,
        writeBatchSize: int = 65536,
        compression: Optional[Compression] = None,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.node = node
        self.origins = origins
        self.messageSizeLimit = messageSizeLimit
        self.writeBatchSize = writeBatchSize
        self.compression = compression
        self.deflaters = Deflaters(compression.level) if compression is not None else None
        self.setProtocolOptions(  # type: ignore[no-untyped-call]
            # Autobahn's limits would refuse our own large messages too (PayloadExceededError): see the module.
            maxMessagePayloadSize=0,
            maxFramePayloadSize=0,
            # As Centrifugo: wait up to 5 s for the peer's close frame, then drop the connection.
            closeHandshakeTimeout=5,
            # Failing a connection (a message over the limit) sends a close frame with the code (1009), which the
            # SDKs report; autobahn's default drops the TCP connection without one.
            failByDrop=False,
            # Our own origin check runs in onConnect (403); autobahn's would answer 400, "null" included.
            allowedOrigins=["*"],
            allowNullOrigin=True,
        )
        if compression is not None:
            limit = compression.decompressedLimit
            self.setProtocolOptions(  # type: ignore[no-untyped-call]
                perMessageCompressionAccept=lambda offers: acceptOffer(offers, limit)
            )
        self.noisy = False
        # No "Server: AutobahnPython" in the handshake: Centrifugo (Go's net/http) names no server either.
        self.server = None


def websocketResource(
    node: Node,
    origins: IOriginChecker,
    messageSizeLimit: int,
    writeBatchSize: int = 65536,
    compression: Optional[Compression] = None,
) -> Any:
    """The resource a Klein route returns for ``/connection/websocket``."""
    return UpgradeResource(CentrifugeWebSocketFactory(node, origins, messageSizeLimit, writeBatchSize, compression))


class UpgradeResource(WebSocketResource):
    """Autobahn's resource, which lets twisted.web's request and channel go once autobahn has the connection."""

    def __init__(self, factory: CentrifugeWebSocketFactory) -> None:
        WebSocketResource.__init__(self, factory)

    def render(self, request: Any) -> Any:
        result = WebSocketResource.render(self, request)
        channel = request.channel
        if channel is not None and channel.transport is None:
            untie(request)  # the connection is autobahn's (taken even when the handshake failed)
        return result
