"""
Fuzz the WebSocket entry point in process: autobahn's server protocol of C{/connection/websocket} over an
in-memory transport, on the node's fake clock (txaio's timers too), fed the bytes of a client's handshake and
frames: text and binary messages of valid, almost valid and random commands in the negotiated codec, fragments,
control frames, reserved opcodes, invalid UTF-8, messages over the limit.

Every example: no exception, no log event at error level, every message the server sends a documented reply, a
close code a documented one (Centrifugo's, or the WebSocket protocol's own for a broken frame), the connection
leaves nothing on the node once closed, and the node still serves a client.
"""

from __future__ import annotations

from typing import Any, Iterator, Optional

import txaio
from hypothesis import example, given
from hypothesis import strategies as st
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from httpstream.origin import OriginChecker
from httpstream.protocol.framing import split_varint
from httpstream.transports.websocket import CentrifugeWebSocketFactory

from .harness import DISCONNECTS, LogWatch, checkReply, checkServes, makeFuzzNode
from .strategies import connect_frame, frames, mostly

txaio.use_twisted()

LIMIT = 4096
# What the WebSocket protocol itself closes with for a broken frame (RFC 6455 7.4.1): normal, going away,
# protocol error, unsupported data, invalid payload (bad UTF-8), policy, too big.
WEBSOCKET_CLOSES = {1000, 1001, 1002, 1003, 1007, 1008, 1009}

_KEY = b"dGhlIHNhbXBsZSBub25jZQ=="


def _handshake(subprotocol: Optional[bytes], query: bytes) -> bytes:
    lines = [
        b"GET /connection/websocket" + query + b" HTTP/1.1",
        b"Host: localhost",
        b"Upgrade: websocket",
        b"Connection: Upgrade",
        b"Sec-WebSocket-Key: " + _KEY,
        b"Sec-WebSocket-Version: 13",
    ]
    if subprotocol is not None:
        lines.append(b"Sec-WebSocket-Protocol: " + subprotocol)
    return b"\r\n".join(lines) + b"\r\n\r\n"


def clientFrame(opcode: int, payload: bytes, fin: bool = True, mask: bytes = b"\x37\xfa\x21\x3d") -> bytes:
    """A masked frame, as a client sends."""
    head = bytes([(0x80 if fin else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def serverFrames(data: bytes) -> Iterator[tuple[int, bytes]]:
    """The (opcode, payload) of each unmasked frame the server wrote (none is fragmented here)."""
    pos = 0
    while pos < len(data):
        opcode, n = data[pos] & 0x0F, data[pos + 1] & 0x7F
        assert data[pos] & 0x80, "a fragmented server frame"
        assert not data[pos + 1] & 0x80, "a masked server frame"
        pos += 2
        if n == 126:
            n, pos = int.from_bytes(data[pos : pos + 2], "big"), pos + 2
        elif n == 127:
            n, pos = int.from_bytes(data[pos : pos + 8], "big"), pos + 8
        assert pos + n <= len(data), "a truncated server frame"
        yield opcode, data[pos : pos + n]
        pos += n


@st.composite
def _clientFrames(draw: st.DrawFn, protocol: str) -> bytes:
    """One client frame, or a message split into fragments; mostly a whole message of commands."""
    kind = draw(st.integers(0, 19))
    message = draw(frames(protocol))
    opcode = 2 if protocol == "protobuf" else 1
    if kind < 14:
        return clientFrame(opcode, message)
    if kind == 14 and len(message) > 1:
        cut = draw(st.integers(1, len(message) - 1))
        return clientFrame(opcode, message[:cut], fin=False) + clientFrame(0, message[cut:])
    if kind == 15:
        return clientFrame(draw(st.sampled_from([1, 2])), message)  # the other frame type
    if kind == 16:
        return clientFrame(9, draw(st.binary(max_size=8)))  # ping
    if kind == 17:
        return clientFrame(opcode, b"x" * (LIMIT + 1))
    if kind == 18:
        return clientFrame(draw(st.sampled_from([0, 3, 4, 5, 6, 7, 11, 12, 15])), message[:100])
    return draw(st.binary(max_size=16))


_SUBPROTOCOLS = {
    "json": st.sampled_from([(b"centrifuge-json", b""), (None, b""), (b"", b""), (b"other", b"")]),
    "protobuf": st.sampled_from([(b"centrifuge-protobuf", b""), (None, b"?cf_protocol=protobuf"),
                                 (b"other, centrifuge-protobuf", b""), (None, b"?format=protobuf")]),
}


def _cases(protocol: str) -> st.SearchStrategy[tuple]:
    return st.tuples(
        st.just(protocol),
        _SUBPROTOCOLS[protocol],
        mostly(connect_frame(protocol), frames(protocol)),
        st.lists(st.tuples(_clientFrames(protocol), st.sampled_from([0.0, 0.0, 1.0, 30.0])), max_size=4),
    )


@given(case=st.sampled_from(["json", "protobuf"]).flatmap(_cases))
# A text frame of invalid UTF-8: autobahn closes (1007) and refuses to send; the client's ping came later.
@example(case=("json", (b"centrifuge-json", b""), b'{"id":1,"connect":{}}', [(b"\x81\x817\xfa!=\xb7", 30.0)]))
def test_websocket(case: tuple) -> None:
    protocol, (subprotocol, query), message, rest = case
    first = clientFrame(2 if protocol == "protobuf" else 1, message)
    with LogWatch() as watch:
        node = makeFuzzNode()
        clock = node.reactor
        saved, txaio.config.loop = txaio.config.loop, clock
        try:
            _run(node, protocol, _handshake(subprotocol, query), first, rest)
        finally:
            txaio.config.loop = saved
        checkServes(node, protocol)
    watch.check()


def _run(node: Any, protocol: str, handshake: bytes, first: bytes, rest: list[tuple[bytes, float]]) -> None:
    clock = node.reactor
    factory = CentrifugeWebSocketFactory(node, OriginChecker(()), LIMIT)
    connection = factory.buildProtocol(None)
    transport = StringTransport()
    connection.makeConnection(transport)
    connection.dataReceived(handshake)
    head, _, written = transport.value().partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 "), head
    transport.clear()
    out = [written]
    for frame, wait in [(first, 0.0), *rest]:
        if transport.disconnecting:
            break
        connection.dataReceived(frame)
        clock.advance(wait)
        out.append(transport.value())
        transport.clear()
    closes = _check(protocol, b"".join(out))
    if closes:
        code = closes[0]
        assert code in DISCONNECTS or code in WEBSOCKET_CLOSES, code
    connection.connectionLost(Failure(ConnectionDone()))
    clock.advance(10)  # autobahn's close handshake timeout, and whatever else was waiting
    assert not node.clients, node.clients
    assert not node.hub.channels(), node.hub.channels()


def _check(protocol: str, data: bytes) -> list[int]:
    """Every server frame is a documented reply (or a pong, or a close); return the close codes."""
    closes = []
    for opcode, payload in serverFrames(data):
        assert not closes, "a frame after the close"
        if opcode == 8:
            closes.append(int.from_bytes(payload[:2], "big") if payload else 1005)
        elif opcode == 10:
            continue
        elif protocol == "json":
            assert opcode == 1, opcode
            for message in payload.split(b"\n"):
                checkReply("json", message)
        else:
            assert opcode == 2, opcode
            for message in split_varint(payload, 2**31):
                checkReply("protobuf", message)
    return closes
