"""
``/connection/websocket`` on a real socket against a real server process (reference/transports.md section 4):
the handshake and its subprotocol, frame types and batching, close frames carrying the disconnect code, limits.
"""

from __future__ import annotations

from typing import Iterator

import orjson
import pytest

from httpstream.protocol import client_pb2
from httpstream.protocol.framing import split_varint, varint_delimit
from tests.serverprocess import ServerProcess
from tests.wire import connectStream, emulate
from tests.wsclient import BINARY, CLOSE, TEXT, WebSocket

LIMIT = 4096


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    overrides = {
        "websocket_message_size_limit": LIMIT,
        "allowed_origins": ["https://*.example.com"],
        "ping_interval": "2s",
        "pong_timeout": "1s",
    }
    with ServerProcess(tmp_path_factory.mktemp("ws"), overrides) as process:
        yield process


def connectJSON(port: int, **headers: str) -> tuple[WebSocket, dict]:
    ws = WebSocket(port, headers=headers)
    assert ws.status == 101
    ws.send(b'{"id":1,"connect":{"name":"test"}}')
    frame = ws.recv()
    assert frame.opcode == TEXT
    return ws, orjson.loads(frame.payload)["connect"]


def protobufCommand(**fields: object) -> client_pb2.Command:
    command = client_pb2.Command(id=fields.pop("id", 0))
    for name, value in fields.items():
        getattr(command, name).SetInParent()
        for key, v in (value or {}).items():  # type: ignore[union-attr]
            setattr(getattr(command, name), key, v)
    return command


def replies(payload: bytes) -> list[client_pb2.Reply]:
    out = []
    for frame in split_varint(payload, 1 << 20):
        reply = client_pb2.Reply()
        reply.ParseFromString(frame)
        out.append(reply)
    return out


def test_jsonHandshakeAndConnect(server: ServerProcess) -> None:
    ws = WebSocket(server.port)
    assert ws.status == 101
    assert "sec-websocket-protocol" not in ws.headers  # nothing offered, nothing echoed
    ws.send(b'{"id":1,"connect":{}}')
    frame = ws.recv()
    assert frame.opcode == TEXT
    assert not frame.payload.endswith(b"\n")  # a single message goes as it is
    result = orjson.loads(frame.payload)["connect"]
    assert result["client"] and result["ping"] == 2 and result["pong"] is True
    # Only emulated transports get a session and a node.
    assert "session" not in result and "node" not in result
    ws.close()


def test_batchIsNewlineJoinedWithoutTrailingNewline(server: ServerProcess) -> None:
    ws = WebSocket(server.port)
    # The JS SDK sends its connect and subscribes in one frame.
    ws.send(b'{"id":1,"connect":{}}\n{"id":2,"subscribe":{"channel":"ws"}}')
    frame = ws.recv()
    lines = frame.payload.split(b"\n")
    messages = [orjson.loads(line) for line in lines]
    if len(messages) == 1:  # the two replies may still come in two frames
        messages.append(orjson.loads(ws.recv().payload))
    assert [m["id"] for m in messages] == [1, 2]
    assert messages[1] == {"id": 2, "subscribe": {}}
    assert not frame.payload.endswith(b"\n")
    ws.close()


@pytest.mark.parametrize(
    "path,headers,echoed",
    [
        ("/connection/websocket", {"Sec-WebSocket-Protocol": "centrifuge-protobuf"}, "centrifuge-protobuf"),
        ("/connection/websocket?cf_protocol=protobuf", {}, None),
        ("/connection/websocket?format=protobuf", {}, None),
    ],
)
def test_protobufSelection(server: ServerProcess, path: str, headers: dict, echoed: str | None) -> None:
    ws = WebSocket(server.port, path, headers)
    assert ws.status == 101
    assert ws.headers.get("sec-websocket-protocol") == echoed
    ws.send(varint_delimit([protobufCommand(id=1, connect={}).SerializeToString()]), BINARY)
    frame = ws.recv()
    assert frame.opcode == BINARY
    (reply,) = replies(frame.payload)
    assert reply.id == 1 and reply.connect.client and not reply.connect.session
    ws.close()


def test_emptyProtocolHeaderTolerated(server: ServerProcess) -> None:
    ws = WebSocket(server.port, headers={"Sec-WebSocket-Protocol": ""})
    assert ws.status == 101
    assert not ws.headers.get("sec-websocket-protocol")
    ws.close()


def test_centrifugeJsonEchoed(server: ServerProcess) -> None:
    ws, result = connectJSON(server.port, **{"Sec-WebSocket-Protocol": "centrifuge-json"})
    assert ws.headers["sec-websocket-protocol"] == "centrifuge-json"
    ws.close()


def test_originRefused403(server: ServerProcess) -> None:
    ws = WebSocket(server.port, headers={"Origin": "https://evil.org"})
    assert ws.status == 403
    ws.close()
    ws, _ = connectJSON(server.port, Origin="https://app.example.com")
    ws.close()


def test_disconnectIsACloseFrame(server: ServerProcess) -> None:
    ws = WebSocket(server.port)
    ws.send(b'{"id":1,"subscribe":{"channel":"a"}}')  # not a connect first
    frame = ws.recv()
    # No Disconnect push on WebSocket: the close frame carries the code and the reason.
    assert frame.opcode == CLOSE
    assert (frame.closeCode, frame.closeReason) == (3501, "bad request")
    ws.close()


def test_messageOverLimitCloses1009(server: ServerProcess) -> None:
    ws, _ = connectJSON(server.port)
    ws.send(b'{"id":2,"publish":{"channel":"x","data":"' + b"y" * LIMIT + b'"}}')
    frame = ws.recv()
    assert frame.opcode == CLOSE and frame.closeCode == 1009
    ws.close()
    ws, _ = connectJSON(server.port)  # and the server goes on
    ws.close()


def test_pingThenNoPongClose3012(server: ServerProcess) -> None:
    ws, _ = connectJSON(server.port)
    ping = ws.recv()
    assert (ping.opcode, ping.payload) == (TEXT, b"{}")
    ws.send(b"{}")  # a pong keeps it open for this round
    assert ws.recv().payload == b"{}"
    frame = ws.recv()
    assert frame.opcode == CLOSE
    assert (frame.closeCode, frame.closeReason) == (3012, "no pong")
    ws.close()


def test_websocketAndHttpStreamShareChannels(server: ServerProcess) -> None:
    """One protocol core: a WebSocket publication reaches an http_stream subscriber and back."""
    stream, result = connectStream(server.port)
    emulate(server.port, result["node"], result["session"], [{"id": 2, "subscribe": {"channel": "mixed"}}])
    assert stream.next() == {"id": 2, "subscribe": {}}
    ws, wsResult = connectJSON(server.port)
    ws.send(b'{"id":2,"subscribe":{"channel":"mixed"}}')
    assert orjson.loads(ws.recv().payload) == {"id": 2, "subscribe": {}}
    ws.send(b'{"id":3,"publish":{"channel":"mixed","data":{"from":"ws"}}}')
    pub = {"channel": "mixed", "pub": {"data": {"from": "ws"}, "info": {"user": "", "client": wsResult["client"]}}}
    message = stream.next()
    while message == {}:
        message = stream.next()
    assert message == {"push": pub}
    got = [orjson.loads(line) for line in ws.recv().payload.split(b"\n")]
    while len(got) < 2:
        got += [orjson.loads(line) for line in ws.recv().payload.split(b"\n")]
    assert {"id": 3, "publish": {}} in got and {"push": pub} in got
    ws.close()
    stream.close()


def test_websocketDisabled404(startServer) -> None:
    server = startServer({"websocket_disable": True})
    ws = WebSocket(server.port)
    assert ws.status == 404
    ws.close()
