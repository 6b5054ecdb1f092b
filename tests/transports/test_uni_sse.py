"""
/connection/uni_sse on the in-memory server: unidirectional Server-Sent Events (Centrifugo's ``internal/unisse``).
The bare ConnectRequest in ``cf_connect`` (GET, none at all being an empty one) or in a POST body; one ``data:``
event per bare push after the opening ``\\r\\n``; refusals 400, 405, 413; the switch that turns it off.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import jwt
import pytest

from httpstream.memoryserver import MemoryConnection
from httpstream.testing import MemoryServer
from tests.web.helpers import serve, serverFixture

LIMIT = 2000
KEY = "uni-sse-api-key"
SECRET = "uni-sse-secret-0123456789abcdef0123456789"
PATH = "/connection/uni_sse"

server = serverFixture(
    {
        "uni_sse": True,
        "uni_sse_max_request_body_size": LIMIT,
        "ping_interval": "2s",
        "pong_timeout": "1s",
        "api_key": KEY,
        "token_hmac_secret_key": SECRET,
    }
)


def token(user: str, **claims: Any) -> str:
    return jwt.encode({"sub": user, **claims}, SECRET, algorithm="HS256")


def openSSE(server: MemoryServer, connect: Any) -> MemoryConnection:
    return server.open("GET", f"{PATH}?cf_connect=" + quote(json.dumps(connect)))


def assertEvents(stream: MemoryConnection) -> None:
    """The opening chunk, then whole events, each a single ``data:`` line."""
    assert stream.response.chunks[0] == b"\r\n"
    for chunk in stream.response.chunks[1:]:
        assert chunk.endswith(b"\n\n"), chunk
        for event in chunk.split(b"\n\n"):
            if event.strip():
                assert event.startswith(b"data: ") and b"\n" not in event, event


def test_getStreamsBarePushEvents(server: MemoryServer) -> None:
    stream = openSSE(server, {"token": token("alice", channels=["news"])})
    assert stream.status == 200
    assert stream.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert stream.headers["cache-control"] == "private, no-cache, no-store, must-revalidate, max-age=0"
    [connect] = stream.received()
    assert connect["connect"]["subs"] == {"news": {}} and "pong" not in connect["connect"]
    published = server.request("POST", "/api/publish", {"X-API-Key": KEY},
                               json.dumps({"channel": "news", "data": {"t": "a\nb"}}).encode())
    assert published.status == 200
    assert stream.received()[-1] == {"channel": "news", "pub": {"data": {"t": "a\nb"}}}
    server.advance(2)
    server.advance(2)
    assert stream.received()[-1] == {}
    server.request("POST", "/api/disconnect", {"X-API-Key": KEY}, b'{"user": "alice"}')
    assert stream.received()[-1] == {"disconnect": {"code": 3503, "reason": "force disconnect"}}
    assert stream.response.complete
    assertEvents(stream)


@pytest.mark.parametrize("path", [PATH, f"{PATH}?cf_connect="])
def test_noConnectParamIsAnEmptyRequest(server: MemoryServer, path: str) -> None:
    """What a bare C{new EventSource(url)} sends: an anonymous connection (the test config allows those)."""
    stream = server.open("GET", path)
    assert stream.status == 200
    assert "connect" in stream.received()[0]
    stream.close()


def test_postBody(server: MemoryServer) -> None:
    stream = server.open("POST", PATH, body=json.dumps({"token": token("bob")}).encode())
    assert stream.status == 200
    assert stream.received()[0]["connect"]["client"]
    stream.close()


@pytest.mark.parametrize("connect", ["not json", "[]", '{"token": 1}'])
def test_malformedConnect400(server: MemoryServer, connect: str) -> None:
    assert server.request("GET", f"{PATH}?cf_connect=" + quote(connect)).status == 400
    assert server.request("POST", PATH, body=connect.encode()).status == 400


def test_postOverLimit413(server: MemoryServer) -> None:
    assert server.request("POST", PATH, body=b" " * (LIMIT + 1)).status == 413


@pytest.mark.parametrize("method", ["OPTIONS", "PUT", "DELETE"])
def test_otherMethods405(server: MemoryServer, method: str) -> None:
    assert server.request(method, PATH).status == 405


def test_badTokenGetsDisconnectEvent(server: MemoryServer) -> None:
    stream = openSSE(server, {"token": "x"})
    assert stream.status == 200
    assert stream.received() == [{"disconnect": {"code": 3500, "reason": "invalid token"}}]
    assert stream.response.complete


def test_disabled404() -> None:
    with serve({"uni_sse": False}) as disabled:
        assert disabled.request("GET", PATH).status == 404
