"""
/connection/uni_http_stream on the in-memory server: a POST whose body is a bare ConnectRequest opens a stream of
newline-terminated bare JSON pushes (Centrifugo's ``internal/unihttpstream``): the connect result, publications of
the server-side subscriptions (token ``channels``, the personal channel), pings, the closing disconnect; its
refusals (400, 405, 413), CORS preflight, and the switch that turns it off.
"""

from __future__ import annotations

import json
from typing import Any

import jwt
import orjson
import pytest

from httpstream.memoryserver import MemoryConnection
from httpstream.testing import MemoryServer
from tests.web.helpers import emulate, serve, serverFixture

LIMIT = 2000
KEY = "uni-http-stream-api-key"
SECRET = "uni-http-stream-secret-0123456789abcdef"
PATH = "/connection/uni_http_stream"

server = serverFixture(
    {
        "uni_http_stream": True,
        "uni_http_stream_max_request_body_size": LIMIT,
        "allowed_origins": ["http://page.test"],
        "ping_interval": "2s",
        "pong_timeout": "1s",
        "api_key": KEY,
        "token_hmac_secret_key": SECRET,
        "user_subscribe_to_personal": True,
    }
)


def token(user: str, **claims: Any) -> str:
    return jwt.encode({"sub": user, **claims}, SECRET, algorithm="HS256")


def api(server: MemoryServer, method: str, body: dict[str, Any]) -> Any:
    response = server.request("POST", f"/api/{method}", {"X-API-Key": KEY}, json.dumps(body).encode())
    assert response.status == 200, response
    return orjson.loads(response.body)


def openUni(server: MemoryServer, connect: Any, headers: dict[str, str] | None = None) -> MemoryConnection:
    return server.open("POST", PATH, headers, orjson.dumps(connect))


def assertLines(stream: MemoryConnection) -> None:
    """Every chunk holds whole pushes, each one line of JSON ending with a newline."""
    for chunk in stream.response.chunks:
        assert chunk.endswith(b"\n") and b"\n\n" not in chunk, chunk


def test_streamsBarePushes(server: MemoryServer) -> None:
    """
    The connect push (server-side subscriptions: the token's channels and the personal one), a publication from
    the server API, a ping, and the API's disconnect, each a bare push on its own line; then the stream ends.
    """
    stream = openUni(server, {"token": token("alice", channels=["news"])})
    assert stream.status == 200
    assert stream.headers["content-type"] == "text/plain; charset=utf-8"
    assert stream.headers["cache-control"] == "private, no-cache, no-store, must-revalidate, max-age=0"
    assert stream.headers["x-accel-buffering"] == "no"
    [connect] = stream.received()
    result = connect["connect"]
    assert set(connect) == {"connect"}
    assert result["subs"] == {"news": {}, "#alice": {}}
    assert result["ping"] == 2 and "pong" not in result and "node" not in result and result["session"]
    api(server, "publish", {"channel": "news", "data": {"text": "hi\nthere"}})
    assert stream.received()[-1] == {"channel": "news", "pub": {"data": {"text": "hi\nthere"}}}
    # Pings are empty pushes, unanswered for longer than pong_timeout without harm.
    server.advance(2)
    server.advance(2)
    assert stream.received()[-1] == {} and not stream.response.complete
    api(server, "disconnect", {"user": "alice"})
    assert stream.received()[-1] == {"disconnect": {"code": 3503, "reason": "force disconnect"}}
    assert stream.response.complete
    assertLines(stream)


def test_serverSubscribeAndUnsubscribePushes(server: MemoryServer) -> None:
    """The server API's subscribe and unsubscribe reach the connection as bare pushes."""
    stream = openUni(server, {"token": token("bob")})
    api(server, "subscribe", {"user": "bob", "channel": "extra"})
    assert stream.received()[-1] == {"channel": "extra", "subscribe": {}}
    api(server, "publish", {"channel": "extra", "data": 1})
    assert stream.received()[-1] == {"channel": "extra", "pub": {"data": 1}}
    api(server, "unsubscribe", {"user": "bob", "channel": "extra"})
    assert stream.received()[-1] == {"channel": "extra", "unsubscribe": {"code": 2000, "reason": "server unsubscribe"}}
    stream.close()


def test_nullIsAnEmptyRequest(server: MemoryServer) -> None:
    """C{null} connects as an empty request would (anonymously, as the test config allows)."""
    stream = server.open("POST", PATH, body=b"null")
    assert stream.status == 200
    [push] = stream.received()
    assert push["connect"]["client"]
    stream.close()


def test_anonymousRefused() -> None:
    """Without credentials, where anonymous connections are not allowed: 3501 in a 200 stream, which then ends."""
    with serve({"uni_http_stream": True, "allow_anonymous_connect_without_token": False}) as memory:
        stream = memory.open("POST", PATH, body=b"{}")
        assert stream.status == 200
        assert stream.received() == [{"disconnect": {"code": 3501, "reason": "bad request"}}]
        assert stream.response.complete


def test_invalidAndExpiredTokens(server: MemoryServer) -> None:
    """A bad token ends the stream with 3500; an expired one (error 109 elsewhere) with 3005."""
    stream = openUni(server, {"token": "not-a-jwt"})
    assert stream.received() == [{"disconnect": {"code": 3500, "reason": "invalid token"}}]
    expired = openUni(server, {"token": token("carol", exp=int(server.reactor.seconds()) - 60)})
    assert expired.received() == [{"disconnect": {"code": 3005, "reason": "connection expired"}}]


@pytest.mark.parametrize("body", [b"", b"{", b"[]", b"5", b'{"token": 5}', b'{"subs": []}'])
def test_malformedConnectRequest400(server: MemoryServer, body: bytes) -> None:
    response = server.request("POST", PATH, body=body)
    assert response.status == 400 and response.body == b""


def test_overLimit413(server: MemoryServer) -> None:
    body = orjson.dumps({"data": "x" * LIMIT})
    assert server.request("POST", PATH, body=body).status == 413


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_otherMethods405(server: MemoryServer, method: str) -> None:
    assert server.request(method, PATH).status == 405


def test_preflightAndCORS(server: MemoryServer) -> None:
    """An allowed origin's preflight gets 204 and Centrifugo's headers; its stream the CORS headers."""
    preflight = server.request("OPTIONS", PATH, {"Origin": "http://page.test"})
    assert preflight.status == 204
    assert preflight.headers["access-control-allow-methods"] == "POST, OPTIONS"
    assert preflight.headers["access-control-allow-origin"] == "http://page.test"
    stream = openUni(server, {"token": token("dave")}, {"Origin": "http://page.test"})
    assert stream.headers["access-control-allow-origin"] == "http://page.test"
    stream.close()
    assert server.request("POST", PATH, {"Origin": "http://evil.test"}, b"{}").status == 403


def test_sessionIsNoEmulationSession() -> None:
    """With /emulation served (http_stream on), the connect push's session reaches nothing: no command runs."""
    with serve({"uni_http_stream": True, "http_stream": True}) as memory:
        stream = memory.open("POST", PATH, body=b"{}")
        [connect] = stream.received()
        session = connect["connect"]["session"]
        emulate(memory, memory.node.id, session, [{"id": 2, "subscribe": {"channel": "x"}}])
        assert stream.received() == [connect]
        assert not memory.node.hub.subscribers("x")
        stream.close()


def test_disabled404() -> None:
    with serve({"uni_http_stream": False}) as disabled:
        assert disabled.request("POST", PATH, body=b"{}").status == 404
