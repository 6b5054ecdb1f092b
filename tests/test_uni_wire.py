"""
The unidirectional transports on real sockets against a real ``twistd httpstream`` process: uni_http_stream read
by curl (the plain HTTP client it is made for), uni_sse and uni_websocket byte by byte. Publications come through
the server API; the connections are subscribed server-side (the token's ``channels``). Every status code, limit
and refusal of the HTTP ones is also tested in memory (tests/transports/test_uni_*.py).
"""

from __future__ import annotations

import json
import subprocess
from typing import Any, Iterator
from urllib.parse import quote

import jwt
import orjson
import pytest

from tests.serverprocess import ServerProcess
from tests.wire import request
from tests.wsclient import CLOSE, PING, PONG, TEXT, Frame, WebSocket

SECRET = "uni-wire-secret-0123456789abcdef0123456789"
KEY = "uni-wire-api-key"
LIMIT = 1000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    process = ServerProcess(
        tmp_path_factory.mktemp("uni"),
        {
            "uni_http_stream": True,
            "uni_sse": True,
            "uni_websocket": True,
            "uni_websocket_message_size_limit": LIMIT,
            "token_hmac_secret_key": SECRET,
            "api_key": KEY,
            "ping_interval": "2s",
            "pong_timeout": "1s",
        },
    )
    yield process
    process.stop()


def token(user: str, *channels: str) -> str:
    return jwt.encode({"sub": user, "channels": list(channels)}, SECRET, algorithm="HS256")


def api(server: ServerProcess, method: str, body: dict[str, Any]) -> Any:
    response = request(server.port, "POST", f"/api/{method}", json.dumps(body).encode(), {"X-API-Key": KEY})
    assert response.status == 200, response.status
    result = orjson.loads(response.body())
    response.close()
    return result


def test_curlReadsUniHTTPStream(server: ServerProcess) -> None:
    """
    curl POSTs the connect request and prints the pushes as they come, one JSON line each: the connect result,
    a publication, pings, the disconnect; then the stream ends properly (curl exits 0).
    """
    body = json.dumps({"token": token("alice", "news")})
    curl = subprocess.Popen(
        ["curl", "-sS", "-N", "--max-time", "30", "-X", "POST", "--data-binary", body,
         f"{server.url}/connection/uni_http_stream"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert curl.stdout is not None
    try:
        connect = orjson.loads(curl.stdout.readline())
        assert connect["connect"]["subs"] == {"news": {}}
        assert "pong" not in connect["connect"] and connect["connect"]["ping"] == 2
        api(server, "publish", {"channel": "news", "data": {"text": "over curl"}})
        lines = [orjson.loads(curl.stdout.readline())]
        while lines[-1] == {}:
            lines.append(orjson.loads(curl.stdout.readline()))
        assert lines[-1] == {"channel": "news", "pub": {"data": {"text": "over curl"}}}
        # Two ping intervals unanswered (curl cannot answer): pings keep coming, nothing ends.
        pings = 0
        while pings < 2:
            line = orjson.loads(curl.stdout.readline())
            assert line == {}, line
            pings += 1
        api(server, "disconnect", {"user": "alice"})
        rest = [orjson.loads(line) for line in curl.stdout.read().splitlines()]
        assert rest[-1] == {"disconnect": {"code": 3503, "reason": "force disconnect"}}
        assert set(map(json.dumps, rest[:-1])) <= {"{}"}
        assert curl.wait(timeout=10) == 0, curl.stderr.read() if curl.stderr else ""
    finally:
        curl.kill()
        curl.wait()


def test_uniHTTPStreamChunks(server: ServerProcess) -> None:
    """On the wire: one HTTP chunk per batch, whole newline-terminated pushes; the end is the terminating chunk."""
    response = request(server.port, "POST", "/connection/uni_http_stream", json.dumps({"token": token("bob")}).encode())
    assert response.status == 200 and response.chunked
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    chunk = response.chunk()
    assert chunk is not None and chunk.endswith(b"\n") and chunk.count(b"\n") == 1
    assert "connect" in orjson.loads(chunk)
    api(server, "disconnect", {"user": "bob"})
    chunks = []
    while (chunk := response.chunk()) is not None:
        chunks.append(chunk)
    assert chunks[-1] == b'{"disconnect":{"code":3503,"reason":"force disconnect"}}\n'
    response.close()


def test_uniSSEEvents(server: ServerProcess) -> None:
    """A GET with cf_connect: the opening CRLF, then one data: event per push, a ping among them."""
    path = "/connection/uni_sse?cf_connect=" + quote(json.dumps({"token": token("carol", "feed")}))
    response = request(server.port, "GET", path)
    assert response.status == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.chunk() == b"\r\n"
    event = response.chunk()
    assert event is not None and event.startswith(b"data: {\"connect\":") and event.endswith(b"\n\n")
    api(server, "publish", {"channel": "feed", "data": [1, 2]})
    events = [response.chunk()]
    while events[-1] == b"data: {}\n\n":
        events.append(response.chunk())
    assert events[-1] == b'data: {"channel":"feed","pub":{"data":[1,2]}}\n\n'
    while response.chunk() != b"data: {}\n\n":
        pass
    api(server, "disconnect", {"user": "carol"})
    last = None
    while (chunk := response.chunk()) is not None:
        last = chunk
    assert last == b'data: {"disconnect":{"code":3503,"reason":"force disconnect"}}\n\n'
    response.close()


def nextMessage(ws: WebSocket) -> Frame:
    """The next frame that is not a ping (a ping frame is answered, as any WebSocket client does)."""
    while True:
        frame = ws.recv()
        if frame.opcode == PING:
            ws.send(frame.payload, PONG)
            continue
        if frame.opcode == TEXT and frame.payload == b"{}":
            continue
        return frame


def test_uniWebSocketFirstMessage(server: ServerProcess) -> None:
    """
    The connect request as the first message; no subprotocol; one text message per push; what the client sends
    later is ignored; a disconnect is a push and then a close frame with the same code and reason.
    """
    ws = WebSocket(server.port, "/connection/uni_websocket")
    try:
        assert ws.status == 101
        assert "sec-websocket-protocol" not in ws.headers
        ws.send(json.dumps({"token": token("dave", "room")}).encode())
        connect = nextMessage(ws)
        assert connect.opcode == TEXT
        assert orjson.loads(connect.payload)["connect"]["subs"] == {"room": {}}
        ws.send(b"anything at all: it is read and dropped")
        api(server, "publish", {"channel": "room", "data": {"n": 1}})
        api(server, "publish", {"channel": "room", "data": {"n": 2}})
        assert nextMessage(ws).payload == b'{"channel":"room","pub":{"data":{"n":1}}}'
        assert nextMessage(ws).payload == b'{"channel":"room","pub":{"data":{"n":2}}}'
        api(server, "disconnect", {"user": "dave"})
        assert nextMessage(ws).payload == b'{"disconnect":{"code":3503,"reason":"force disconnect"}}'
        close = nextMessage(ws)
        assert (close.opcode, close.closeCode, close.closeReason) == (CLOSE, 3503, "force disconnect")
    finally:
        ws.close()


def test_uniWebSocketConnectParamAndPings(server: ServerProcess) -> None:
    """cf_connect in the upgrade's query; WebSocket ping frames and empty pushes keep the connection alive."""
    path = "/connection/uni_websocket?cf_connect=" + quote(json.dumps({"token": token("erin")}))
    ws = WebSocket(server.port, path)
    try:
        assert ws.status == 101
        assert "connect" in orjson.loads(ws.recv().payload)
        seen: set[Any] = set()
        while not {"ping frame", "ping push"} <= seen:
            frame = ws.recv()
            if frame.opcode == PING:
                ws.send(frame.payload, PONG)
                seen.add("ping frame")
            elif frame.opcode == TEXT and frame.payload == b"{}":
                seen.add("ping push")
            else:
                raise AssertionError(frame)
        api(server, "disconnect", {"user": "erin"})
        assert nextMessage(ws).payload.startswith(b'{"disconnect"')
    finally:
        ws.close()


def test_uniWebSocketRefusals(server: ServerProcess) -> None:
    """
    A first message that is no ConnectRequest: only the close frame 3501; a message over the limit: 1009; a bad
    cf_connect: the upgrade answered 400.
    """
    ws = WebSocket(server.port, "/connection/uni_websocket")
    ws.send(b"[not a connect request")
    close = ws.recv()
    assert (close.opcode, close.closeCode, close.closeReason) == (CLOSE, 3501, "bad request")
    ws.close()
    big = WebSocket(server.port, "/connection/uni_websocket")
    big.send(b'{"data":"' + b"x" * LIMIT + b'"}')
    close = big.recv()
    assert (close.opcode, close.closeCode) == (CLOSE, 1009)
    big.close()
    refused = WebSocket(server.port, "/connection/uni_websocket?cf_connect=" + quote("{nope"))
    assert refused.status == 400
    refused.close()


def test_uniWebSocketNoPongIsDropped(server: ServerProcess) -> None:
    """A peer that never answers a WebSocket ping frame is dropped within ping_interval + pong_timeout."""
    ws = WebSocket(server.port, "/connection/uni_websocket", timeout=15)
    try:
        ws.send(b"{}")
        frames = []
        with pytest.raises((EOFError, ConnectionResetError)):
            while True:
                frames.append(ws.recv())
        assert any(frame.opcode == PING for frame in frames)
    finally:
        ws.close()
