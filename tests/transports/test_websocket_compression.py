"""
permessage-deflate on ``/connection/websocket`` against a real server process, seen by a raw WebSocket client:
the extension negotiated as Centrifugo answers it when the client offers it and compression is on, and not
otherwise; publications over C{websocket_compression_min_size} compressed (RSV1 set) at the configured level,
inflating to exactly what an uncompressed subscriber receives, smaller ones sent as they are; a client's own
compressed commands read, and one that inflates past the limit closed with 1009.
"""

from __future__ import annotations

import zlib
from typing import Any, Iterator

import orjson
import pytest
import requests

from httpstream.protocol import client_pb2
from httpstream.protocol.framing import split_varint, varint_delimit
from tests.serverprocess import ServerProcess
from tests.wsclient import BINARY, CLOSE, PING, TEXT, Frame, WebSocket

KEY = "compression-api-key"
LEVEL = 9
MIN_SIZE = 200
LIMIT = 4096  # websocket_message_size_limit: compressed client messages may inflate to 10 times this
TAIL = b"\x00\x00\xff\xff"
# What browsers offer (Chrome, Firefox); Node's ws offers the same with client_max_window_bits.
OFFER = {"Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"}
CENTRIFUGO = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
# Publication data that compresses well and to different bytes at levels 1 and 9.
LARGE = {"items": [{"id": i, "text": f"item {i} of the feed", "score": i * i % 97} for i in range(100)]}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    overrides = {
        "api_key": KEY,
        "websocket": {"compression": True, "compression_level": LEVEL, "compression_min_size": MIN_SIZE},
        "websocket_message_size_limit": LIMIT,
    }
    with ServerProcess(tmp_path_factory.mktemp("wscompression"), overrides) as process:
        yield process


@pytest.fixture(scope="module")
def plainServer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("wsplain"), {"api_key": KEY}) as process:
        yield process


def publish(server: ServerProcess, channel: str, data: Any) -> None:
    body = {"channel": channel, "data": data}
    response = requests.post(f"{server.url}/api/publish", json=body, headers={"X-API-Key": KEY}, timeout=10)
    assert response.status_code == 200 and "error" not in response.json(), response.text


def deflate(message: bytes, level: int, windowBits: int = 15) -> bytes:
    """RFC 7692 7.2.1 with a compressor of its own: what any correct server at that level sends."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, -windowBits)
    return (compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


def inflate(payload: bytes, windowBits: int = 15) -> bytes:
    return zlib.decompressobj(-windowBits).decompress(payload + TAIL)


class Client:
    """A raw JSON (or Protobuf) WebSocket client, connected and subscribed to one channel."""

    def __init__(self, server: ServerProcess, channel: str, offer: str = "", protobuf: bool = False) -> None:
        headers = {"Sec-WebSocket-Extensions": offer} if offer else {}
        path = "/connection/websocket?cf_protocol=protobuf" if protobuf else "/connection/websocket"
        self.ws = WebSocket(server.port, path, headers)
        assert self.ws.status == 101
        self.extensions = self.ws.headers.get("sec-websocket-extensions")
        self.protobuf = protobuf
        if protobuf:
            command = client_pb2.Command(id=1)
            command.connect.SetInParent()
            second = client_pb2.Command(id=2)
            second.subscribe.channel = channel
            self.ws.send(varint_delimit([command.SerializeToString(), second.SerializeToString()]), BINARY)
        else:
            self.ws.send(b'{"id":1,"connect":{}}\n{"id":2,"subscribe":{"channel":"%s"}}' % channel.encode())
        # Both replies, together well under the minimum size: one plain frame.
        replies = self.frame()
        assert not replies.rsv1 and len(replies.payload) <= MIN_SIZE

    def frame(self) -> Frame:
        """The next data frame (server pings are answered by the SDK, not needed here: 25 s apart)."""
        frame = self.ws.recv()
        while frame.opcode == PING:
            frame = self.ws.recv()
        assert frame.opcode == (BINARY if self.protobuf else TEXT), frame
        return frame

    def close(self) -> None:
        self.ws.close()


def test_negotiatedAsCentrifugo(server: ServerProcess) -> None:
    """
    A client offering permessage-deflate gets Centrifugo's answer; one offering nothing, or an extension the
    server does not have, gets no extension at all.
    """
    offered = Client(server, "negotiation", OFFER["Sec-WebSocket-Extensions"])
    assert offered.extensions == CENTRIFUGO
    plain = Client(server, "negotiation")
    assert plain.extensions is None
    other = Client(server, "negotiation", "x-webkit-deflate-frame")
    assert other.extensions is None
    for client in (offered, plain, other):
        client.close()


def test_largePublicationCompressedAtLevel(server: ServerProcess) -> None:
    """
    A publication over the minimum size reaches a subscriber that negotiated compression as one frame with RSV1
    set, compressed at the configured level (9: the bytes zlib gives at 9, not at 1), and inflating to exactly the
    frame an uncompressed subscriber of the same channel receives. Two compressed subscribers get the same bytes.
    """
    compressed = [Client(server, "large", OFFER["Sec-WebSocket-Extensions"]) for _ in range(2)]
    plain = Client(server, "large")
    publish(server, "large", LARGE)

    expected = plain.frame()
    assert not expected.rsv1 and orjson.loads(expected.payload)["push"]["pub"]["data"] == LARGE
    frames = [client.frame() for client in compressed]
    assert all(frame.rsv1 for frame in frames)
    assert frames[0].payload == frames[1].payload
    payload = frames[0].payload
    assert inflate(payload) == expected.payload
    assert len(payload) * 4 < len(expected.payload)
    assert deflate(expected.payload, 1) != deflate(expected.payload, LEVEL)  # the check below can tell them apart
    assert payload == deflate(expected.payload, LEVEL)
    for client in compressed + [plain]:
        client.close()


def test_smallPublicationSentPlain(server: ServerProcess) -> None:
    """A publication of at most websocket_compression_min_size bytes goes uncompressed (RSV1 clear), unchanged."""
    compressed = Client(server, "small", OFFER["Sec-WebSocket-Extensions"])
    plain = Client(server, "small")
    publish(server, "small", {"n": 1})
    expected = plain.frame()
    frame = compressed.frame()
    assert len(frame.payload) <= MIN_SIZE
    assert not frame.rsv1 and frame.payload == expected.payload
    compressed.close()
    plain.close()


def test_protobufCompressed(server: ServerProcess) -> None:
    """A Protobuf subscriber gets a binary frame with RSV1 set, inflating to its varint-delimited push."""
    client = Client(server, "proto", OFFER["Sec-WebSocket-Extensions"], protobuf=True)
    publish(server, "proto", LARGE)
    frame = client.frame()
    assert frame.rsv1
    (raw,) = split_varint(inflate(frame.payload), 1 << 20)
    reply = client_pb2.Reply()
    reply.ParseFromString(raw)
    assert orjson.loads(reply.push.pub.data) == LARGE
    client.close()


def test_serverWindowLimitHonoured(server: ServerProcess) -> None:
    """A client that limits the server's window to 2^10 bytes is told so, and can inflate with that window."""
    client = Client(server, "window", "permessage-deflate; server_max_window_bits=10")
    assert client.extensions == (
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=10; client_no_context_takeover"
    )
    publish(server, "window", LARGE)
    frame = client.frame()
    assert frame.rsv1 and orjson.loads(inflate(frame.payload, 10))["push"]["pub"]["data"] == LARGE
    client.close()


def test_clientCompressedCommands(server: ServerProcess) -> None:
    """
    A command the client compresses itself is read (its publish is delivered); one that inflates past 10 times
    websocket_message_size_limit, though small on the wire, closes the connection with 1009.
    """
    client = Client(server, "upload", OFFER["Sec-WebSocket-Extensions"])
    data = {"text": "compressed by the client " * 40}
    client.ws.send(deflate(orjson.dumps({"id": 3, "publish": {"channel": "upload", "data": data}}), 6), rsv1=True)
    messages = [orjson.loads(line) for line in inflate(client.frame().payload).split(b"\n")]
    if len(messages) == 1:  # the reply and the push may come in one frame or two
        frame = client.frame()
        messages.append(orjson.loads(inflate(frame.payload) if frame.rsv1 else frame.payload))
    assert {"id": 3, "publish": {}} in messages
    assert [m["push"]["pub"]["data"] for m in messages if "push" in m] == [data]

    bomb = orjson.dumps({"id": 4, "publish": {"channel": "upload", "data": {"text": "x" * (10 * LIMIT)}}})
    wire = deflate(bomb, 9)
    assert len(wire) < LIMIT
    client.ws.send(wire, rsv1=True)
    frame = client.ws.recv()
    assert frame.opcode == CLOSE and (frame.closeCode, frame.closeReason) == (1009, "message size limit exceeded")
    client.close()


def test_offNotNegotiated(plainServer: ServerProcess) -> None:
    """With websocket_compression off (the default) an offer is ignored and publications go uncompressed."""
    client = Client(plainServer, "off", OFFER["Sec-WebSocket-Extensions"])
    assert client.extensions is None
    publish(plainServer, "off", LARGE)
    frame = client.frame()
    assert not frame.rsv1 and orjson.loads(frame.payload)["push"]["pub"]["data"] == LARGE
    client.close()
