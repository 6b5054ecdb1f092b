"""``/connection/sse`` on a real socket (reference/transports.md section 2): events, statuses, emulation upstream."""

from __future__ import annotations

import json
from typing import Iterator
from urllib.parse import quote

import orjson
import pytest

from tests.serverprocess import ServerProcess
from tests.wire import emulate, request

LIMIT = 2000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    overrides = {"sse": True, "http_stream": False, "sse_max_request_body_size": LIMIT,
                 "allowed_origins": ["http://page.test"], "ping_interval": "2s", "pong_timeout": "1s"}
    with ServerProcess(tmp_path_factory.mktemp("sse"), overrides) as process:
        yield process


class Events:
    """Reads an event stream chunk by chunk and yields the JSON of each ``data:`` event."""

    def __init__(self, response) -> None:  # type: ignore[no-untyped-def]
        self.response = response
        self.raw = b""
        self._pending: list = []

    def next(self):  # type: ignore[no-untyped-def]
        while not self._pending:
            chunk = self.response.chunk()
            if chunk is None:
                raise EOFError("stream ended")
            self.raw += chunk
            assert chunk.endswith(b"\n\n") or chunk == b"\r\n", chunk
            for event in chunk.split(b"\n\n"):
                if event.strip():
                    assert event.startswith(b"data: "), event
                    self._pending.append(orjson.loads(event[len(b"data: "):]))
        return self._pending.pop(0)


def openSSE(port: int, connect: dict, headers: dict | None = None):  # type: ignore[no-untyped-def]
    path = "/connection/sse?cf_connect=" + quote(json.dumps({"id": 1, "connect": connect}))
    response = request(port, "GET", path, headers=headers)
    return response, Events(response)


def test_getStreamsEvents(server: ServerProcess) -> None:
    response, events = openSSE(server.port, {})
    assert response.status == 200
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert response.headers["cache-control"] == "private, no-cache, no-store, must-revalidate, max-age=0"
    assert response.headers["x-accel-buffering"] == "no"
    assert response.chunk() == b"\r\n"  # first, so that onopen fires
    reply = events.next()
    assert reply["id"] == 1
    result = reply["connect"]
    assert result["session"] and result["node"] and result["client"]
    # Upstream through /emulation, replies and publications down the event stream.
    emulate(server.port, result["node"], result["session"], [
        {"id": 2, "subscribe": {"channel": "news"}},
        {"id": 3, "publish": {"channel": "news", "data": {"t": "x\ny"}}},
    ])
    got = [events.next() for _ in range(3)]
    assert {"id": 2, "subscribe": {}} in got and {"id": 3, "publish": {}} in got
    assert {"push": {"channel": "news", "pub": {"data": {"t": "x\ny"},
                                                 "info": {"user": "", "client": result["client"]}}}} in got
    # A server ping is an empty event; unanswered, the stream ends with a Disconnect push event.
    message = events.next()
    assert message == {}
    assert events.next() == {"push": {"disconnect": {"code": 3012, "reason": "no pong"}}}
    response.close()


def test_postBody(server: ServerProcess) -> None:
    response = request(server.port, "POST", "/connection/sse", b'{"id":1,"connect":{}}')
    assert response.status == 200
    events = Events(response)
    assert "connect" in events.next()
    response.close()


def test_postOverLimit413(server: ServerProcess) -> None:
    response = request(server.port, "POST", "/connection/sse", b"x" * (LIMIT + 1))
    assert response.status == 413
    response.close()


@pytest.mark.parametrize("path", ["/connection/sse", "/connection/sse?cf_connect="])
def test_missingConnect400(server: ServerProcess, path: str) -> None:
    response = request(server.port, "GET", path)
    assert response.status == 400
    response.close()


@pytest.mark.parametrize("method", ["OPTIONS", "PUT", "DELETE"])
def test_otherMethods405(server: ServerProcess, method: str) -> None:
    response = request(server.port, method, "/connection/sse")
    assert response.status == 405
    response.close()


def test_corsEchoedForAllowedOrigin(server: ServerProcess) -> None:
    response, events = openSSE(server.port, {}, {"Origin": "http://page.test"})
    assert response.headers["access-control-allow-origin"] == "http://page.test"
    response.close()


def test_badConnectGetsDisconnectEvent(server: ServerProcess) -> None:
    response = request(server.port, "GET", "/connection/sse?cf_connect=" + quote("not json"))
    assert response.status == 200
    events = Events(response)
    assert events.next() == {"push": {"disconnect": {"code": 3501, "reason": "bad request"}}}
    response.close()


def test_sseDisabled404AndEmulationFollowsEitherFlag(startServer) -> None:
    server = startServer({"sse": False, "http_stream": False})
    for path in ("/connection/sse?cf_connect=x", "/emulation"):
        response = request(server.port, "GET", path)
        assert response.status == 404
        response.close()
