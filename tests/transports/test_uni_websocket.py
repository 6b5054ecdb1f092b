"""
/connection/uni_websocket on the in-memory server (Centrifugo's ``internal/uniws``): no subprotocol, the connect
request as the first message or in ``cf_connect``, a text message per bare push, later messages dropped, and what is
refused (400, 403, 404, 405, close 3501 and 1009). Ping frames and their timeout are tested on real sockets
(tests/test_uni_wire.py).
"""

from __future__ import annotations

import json
from urllib.parse import quote

import jwt
import orjson
import pytest

from httpstream.testing import MemoryServer
from tests.web.helpers import BASE_CONFIG, CLOSE, TEXT, MemoryWebSocket, closeFrame, serve, serverFixture

LIMIT = 1024
KEY = "uni-websocket-api-key"
PATH = "/connection/uni_websocket"

server = serverFixture(
    {"uni_websocket": True, "uni_websocket_message_size_limit": LIMIT, "allowed_origins": ["https://*.example.com"],
     "api_key": KEY, "client_stale_close_delay": "3s"}
)


def api(server: MemoryServer, method: str, body: dict) -> None:  # type: ignore[type-arg]
    assert server.request("POST", f"/api/{method}", {"X-API-Key": KEY}, json.dumps(body).encode()).status == 200


def pushes(ws: MemoryWebSocket) -> list[object]:
    frames = ws.frames()
    assert all(opcode == TEXT for opcode, _ in frames), frames
    return [orjson.loads(payload) for _, payload in frames]


def test_firstMessageConnects(server: MemoryServer) -> None:
    ws = MemoryWebSocket(server, PATH, {"Sec-WebSocket-Protocol": "centrifuge-json"})
    assert ws.status == 101
    assert "sec-websocket-protocol" not in ws.headers  # Centrifugo's upgrader offers none
    ws.send(orjson.dumps({"token": jwt.encode({"sub": "wsuser"}, BASE_CONFIG["token_hmac_secret_key"])}))
    [connect] = pushes(ws)
    assert connect["connect"]["client"]  # type: ignore[index]
    ws.send(b'{"token": "later messages are dropped, whatever they hold"}')
    api(server, "subscribe", {"user": "wsuser", "channel": "news"})
    api(server, "publish", {"channel": "news", "data": "a"})
    api(server, "publish", {"channel": "news", "data": "b"})
    # One WebSocket message per push.
    assert pushes(ws) == [
        {"channel": "news", "subscribe": {}},
        {"channel": "news", "pub": {"data": "a"}},
        {"channel": "news", "pub": {"data": "b"}},
    ]
    api(server, "disconnect", {"user": "wsuser"})
    frames = ws.frames()
    assert frames[0] == (TEXT, b'{"disconnect":{"code":3503,"reason":"force disconnect"}}')
    assert frames[1][0] == CLOSE and closeFrame(frames[1][1]) == (3503, "force disconnect")
    ws.close()


def test_connectParam(server: MemoryServer) -> None:
    ws = MemoryWebSocket(server, f"{PATH}?cf_connect=" + quote(json.dumps({"name": "curl"})))
    assert ws.status == 101
    [connect] = pushes(ws)
    assert "connect" in connect  # type: ignore[operator]
    ws.close()


def test_badFirstMessageCloses3501(server: MemoryServer) -> None:
    ws = MemoryWebSocket(server, PATH)
    ws.send(b'{"token": 1}')
    [(opcode, payload)] = ws.frames()  # only the close frame: no client connected to push to
    assert opcode == CLOSE and closeFrame(payload) == (3501, "bad request")
    ws.close()


def test_messageOverLimitCloses1009(server: MemoryServer) -> None:
    ws = MemoryWebSocket(server, PATH)
    ws.send(b'{"data":"' + b"y" * LIMIT + b'"}')
    [(opcode, payload)] = ws.frames()
    assert opcode == CLOSE and closeFrame(payload)[0] == 1009
    ws.close()


def test_staleWithoutConnect(server: MemoryServer) -> None:
    """No connect request within client_stale_close_delay: the disconnect push, then the close frame (3502)."""
    ws = MemoryWebSocket(server, PATH)
    server.advance(3)
    frames = ws.frames()
    assert frames[0] == (TEXT, b'{"disconnect":{"code":3502,"reason":"stale"}}')
    assert frames[1][0] == CLOSE and closeFrame(frames[1][1]) == (3502, "stale")
    ws.close()


def test_refusedHandshakes(server: MemoryServer) -> None:
    assert MemoryWebSocket(server, f"{PATH}?cf_connect=" + quote("{oops")).status == 400
    assert MemoryWebSocket(server, PATH, {"Origin": "https://evil.org"}).status == 403
    assert MemoryWebSocket(server, PATH, {"Origin": "https://app.example.com"}).status == 101


@pytest.mark.parametrize(
    "method,headers,status",
    [("GET", {}, 400), ("POST", {"Connection": "Upgrade", "Upgrade": "websocket"}, 405)],
)
def test_notAHandshakeRefused(server: MemoryServer, method: str, headers: dict[str, str], status: int) -> None:
    assert server.request(method, PATH, headers).status == status


def test_disabled404() -> None:
    with serve({"uni_websocket": False}) as disabled:
        assert MemoryWebSocket(disabled, PATH).status == 404
