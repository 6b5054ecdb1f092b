"""
/connection/sse on the in-memory server: the event stream's headers and events, the connect command in the URL or
the body, its refusals (400, 405, 413) and the switch that turns it off.
"""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from httpstream.memoryserver import MemoryConnection
from httpstream.testing import MemoryServer
from tests.web.helpers import emulate, serve, serverFixture

LIMIT = 2000

server = serverFixture(
    {"sse": True, "http_stream": False, "sse_max_request_body_size": LIMIT,
     "allowed_origins": ["http://page.test"], "ping_interval": "2s", "pong_timeout": "1s"}
)


def openSSE(server: MemoryServer, connect: dict, headers: dict | None = None) -> MemoryConnection:  # type: ignore[type-arg]
    path = "/connection/sse?cf_connect=" + quote(json.dumps({"id": 1, "connect": connect}))
    return server.open("GET", path, headers=headers)


def assertEvents(stream: MemoryConnection) -> None:
    """Every chunk after the opening one holds whole events, each a single ``data:`` line."""
    for chunk in stream.response.chunks[1:]:
        assert chunk.endswith(b"\n\n"), chunk
        for event in chunk.split(b"\n\n"):
            if event.strip():
                assert event.startswith(b"data: ") and b"\n" not in event, event


def test_getStreamsEvents(server: MemoryServer) -> None:
    stream = openSSE(server, {})
    assert stream.status == 200
    assert stream.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert stream.headers["cache-control"] == "private, no-cache, no-store, must-revalidate, max-age=0"
    assert stream.headers["x-accel-buffering"] == "no"
    assert stream.response.chunks[0] == b"\r\n"  # first, so that onopen fires
    reply = stream.received()[0]
    assert reply["id"] == 1
    result = reply["connect"]
    assert result["session"] and result["node"] and result["client"]
    # Upstream through /emulation, replies and publications down the event stream.
    emulate(server, result["node"], result["session"], [
        {"id": 2, "subscribe": {"channel": "news"}},
        {"id": 3, "publish": {"channel": "news", "data": {"t": "x\ny"}}},
    ])
    got = stream.received()[1:]
    assert len(got) == 3
    assert {"id": 2, "subscribe": {}} in got and {"id": 3, "publish": {}} in got
    assert {"push": {"channel": "news", "pub": {"data": {"t": "x\ny"},
                                                 "info": {"user": "", "client": result["client"]}}}} in got
    # A server ping is an empty event; unanswered, the stream ends with a Disconnect push event.
    server.advance(2)
    assert stream.received()[-1] == {}
    server.advance(1)
    assert stream.received()[-1] == {"push": {"disconnect": {"code": 3012, "reason": "no pong"}}}
    assert stream.response.complete
    assertEvents(stream)


def test_postBody(server: MemoryServer) -> None:
    stream = server.open("POST", "/connection/sse", body=b'{"id":1,"connect":{}}')
    assert stream.status == 200
    assert "connect" in stream.received()[0]
    stream.close()


def test_postOverLimit413(server: MemoryServer) -> None:
    assert server.request("POST", "/connection/sse", body=b"x" * (LIMIT + 1)).status == 413


@pytest.mark.parametrize("path", ["/connection/sse", "/connection/sse?cf_connect="])
def test_missingConnect400(server: MemoryServer, path: str) -> None:
    assert server.request("GET", path).status == 400


@pytest.mark.parametrize("method", ["OPTIONS", "PUT", "DELETE"])
def test_otherMethods405(server: MemoryServer, method: str) -> None:
    assert server.request(method, "/connection/sse").status == 405


def test_corsEchoedForAllowedOrigin(server: MemoryServer) -> None:
    stream = openSSE(server, {}, {"Origin": "http://page.test"})
    assert stream.headers["access-control-allow-origin"] == "http://page.test"
    stream.close()


def test_badConnectGetsDisconnectEvent(server: MemoryServer) -> None:
    stream = server.open("GET", "/connection/sse?cf_connect=" + quote("not json"))
    assert stream.status == 200
    assert stream.received()[0] == {"push": {"disconnect": {"code": 3501, "reason": "bad request"}}}
    stream.close()


def test_sseDisabled404AndEmulationFollowsEitherFlag() -> None:
    with serve({"sse": False, "http_stream": False}) as disabled:
        for path in ("/connection/sse?cf_connect=x", "/emulation"):
            assert disabled.request("GET", path).status == 404
