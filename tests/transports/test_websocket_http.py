"""
/connection/websocket on the in-memory server: the handshake (subprotocols echoed, Protobuf selected), what is
refused at the HTTP level (400, 403, 404, 405), and frames of a connection through autobahn on an in-memory
transport.
"""

from __future__ import annotations

import orjson
import pytest

from httpstream.protocol import client_pb2
from httpstream.protocol.framing import split_varint, varint_delimit
from httpstream.testing import MemoryServer
from tests.web.helpers import (
    BINARY, CLOSE, TEXT, MemoryWebSocket, closeFrame, connectStream, emulate, serve, serverFixture,
)

LIMIT = 4096

server = serverFixture(
    {"websocket_message_size_limit": LIMIT, "allowed_origins": ["https://*.example.com"],
     "ping_interval": "2s", "pong_timeout": "1s"}
)


def connectJSON(server: MemoryServer, **headers: str) -> tuple[MemoryWebSocket, dict]:  # type: ignore[type-arg]
    ws = MemoryWebSocket(server, headers=headers)
    assert ws.status == 101
    ws.send(b'{"id":1,"connect":{"name":"test"}}')
    ((opcode, payload),) = ws.frames()
    assert opcode == TEXT
    return ws, orjson.loads(payload)["connect"]


def test_jsonHandshakeAndConnect(server: MemoryServer) -> None:
    ws = MemoryWebSocket(server)
    assert ws.status == 101
    assert "sec-websocket-protocol" not in ws.headers  # nothing offered, nothing echoed
    ws.send(b'{"id":1,"connect":{}}')
    ((opcode, payload),) = ws.frames()
    assert opcode == TEXT
    assert not payload.endswith(b"\n")  # a single message goes as it is
    result = orjson.loads(payload)["connect"]
    assert result["client"] and result["ping"] == 2 and result["pong"] is True
    # Only emulated transports get a session and a node.
    assert "session" not in result and "node" not in result
    ws.close()


def test_batchIsNewlineJoinedWithoutTrailingNewline(server: MemoryServer) -> None:
    ws = MemoryWebSocket(server)
    # The JS SDK sends its connect and subscribes in one frame.
    ws.send(b'{"id":1,"connect":{}}\n{"id":2,"subscribe":{"channel":"ws"}}')
    frames = ws.frames()
    messages = [orjson.loads(line) for _, payload in frames for line in payload.split(b"\n")]
    assert [m["id"] for m in messages] == [1, 2]
    assert messages[1] == {"id": 2, "subscribe": {}}
    assert not any(payload.endswith(b"\n") for _, payload in frames)
    ws.close()


@pytest.mark.parametrize(
    "path,headers,echoed",
    [
        ("/connection/websocket", {"Sec-WebSocket-Protocol": "centrifuge-protobuf"}, "centrifuge-protobuf"),
        ("/connection/websocket?cf_protocol=protobuf", {}, None),
        ("/connection/websocket?format=protobuf", {}, None),
    ],
)
def test_protobufSelection(server: MemoryServer, path: str, headers: dict, echoed: str | None) -> None:  # type: ignore[type-arg]
    ws = MemoryWebSocket(server, path, headers)
    assert ws.status == 101
    assert ws.headers.get("sec-websocket-protocol") == echoed
    command = client_pb2.Command(id=1)
    command.connect.SetInParent()
    ws.send(varint_delimit([command.SerializeToString()]), BINARY)
    ((opcode, payload),) = ws.frames()
    assert opcode == BINARY
    (frame,) = split_varint(payload, 1 << 20)
    reply = client_pb2.Reply()
    reply.ParseFromString(frame)
    assert reply.id == 1 and reply.connect.client and not reply.connect.session
    ws.close()


def test_emptyProtocolHeaderTolerated(server: MemoryServer) -> None:
    ws = MemoryWebSocket(server, headers={"Sec-WebSocket-Protocol": ""})
    assert ws.status == 101
    assert not ws.headers.get("sec-websocket-protocol")
    ws.close()


def test_centrifugeJsonEchoed(server: MemoryServer) -> None:
    ws, result = connectJSON(server, **{"Sec-WebSocket-Protocol": "centrifuge-json"})
    assert ws.headers["sec-websocket-protocol"] == "centrifuge-json"
    ws.close()


def test_originRefused403(server: MemoryServer) -> None:
    ws = MemoryWebSocket(server, headers={"Origin": "https://evil.org"})
    assert ws.status == 403
    ws.close()
    ws, _ = connectJSON(server, Origin="https://app.example.com")
    ws.close()


def test_disconnectIsACloseFrame(server: MemoryServer) -> None:
    ws = MemoryWebSocket(server)
    ws.send(b'{"id":1,"subscribe":{"channel":"a"}}')  # not a connect first
    ((opcode, payload),) = ws.frames()
    # No Disconnect push on WebSocket: the close frame carries the code and the reason.
    assert opcode == CLOSE
    assert closeFrame(payload) == (3501, "bad request")
    ws.close()


def test_messageOverLimitCloses1009(server: MemoryServer) -> None:
    ws, _ = connectJSON(server)
    ws.send(b'{"id":2,"publish":{"channel":"x","data":"' + b"y" * LIMIT + b'"}}')
    ((opcode, payload),) = ws.frames()
    assert opcode == CLOSE and closeFrame(payload)[0] == 1009
    ws.close()
    ws, _ = connectJSON(server)  # and the server goes on
    ws.close()


def test_pingThenNoPongClose3012(server: MemoryServer) -> None:
    ws, _ = connectJSON(server)
    server.advance(2)
    assert ws.frames() == [(TEXT, b"{}")]
    ws.send(b"{}")  # a pong keeps it open for this round
    server.advance(2)
    assert ws.frames() == [(TEXT, b"{}")]
    server.advance(1)
    ((opcode, payload),) = ws.frames()
    assert opcode == CLOSE
    assert closeFrame(payload) == (3012, "no pong")
    ws.close()


def test_websocketAndHttpStreamShareChannels(server: MemoryServer) -> None:
    """One protocol core: a WebSocket publication reaches an http_stream subscriber and back."""
    stream, result = connectStream(server)
    emulate(server, result["node"], result["session"], [{"id": 2, "subscribe": {"channel": "mixed"}}])
    assert stream.received()[-1] == {"id": 2, "subscribe": {}}
    ws, wsResult = connectJSON(server)
    ws.send(b'{"id":2,"subscribe":{"channel":"mixed"}}')
    assert [orjson.loads(payload) for _, payload in ws.frames()] == [{"id": 2, "subscribe": {}}]
    ws.send(b'{"id":3,"publish":{"channel":"mixed","data":{"from":"ws"}}}')
    pub = {"channel": "mixed", "pub": {"data": {"from": "ws"}, "info": {"user": "", "client": wsResult["client"]}}}
    assert stream.received()[-1] == {"push": pub}
    got = [orjson.loads(line) for _, payload in ws.frames() for line in payload.split(b"\n")]
    assert {"id": 3, "publish": {}} in got and {"push": pub} in got
    ws.close()
    stream.close()


@pytest.mark.parametrize(
    "method,headers,status",
    [
        ("GET", {}, 400),  # no upgrade asked for
        ("POST", {"Connection": "Upgrade", "Upgrade": "websocket"}, 405),
    ],
)
def test_notAHandshakeRefused(server: MemoryServer, method: str, headers: dict, status: int) -> None:  # type: ignore[type-arg]
    response = server.request(method, "/connection/websocket", headers)
    assert response.status == status
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["sec-websocket-version"] == "13"


def test_websocketDisabled404() -> None:
    with serve({"websocket_disable": True}) as disabled:
        ws = MemoryWebSocket(disabled)
        assert ws.status == 404
        ws.close()
