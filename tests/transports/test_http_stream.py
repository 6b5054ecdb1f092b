"""
POST /connection/http_stream on the in-memory server: the status codes and headers of the stream, its frames, the
server's ping, CORS preflights and the body limit (the real Site, Klein app and resource; no socket).
"""

from __future__ import annotations

import orjson
import pytest

from httpstream.protocol import client_pb2
from httpstream.testing import MemoryServer
from tests.web.helpers import assertStillServing, connectStream, emulate, emulateProtobuf, openStream, serverFixture

LIMIT = 2000  # small body limits, so "one byte over" is cheap to send

OVERRIDES = {
    "http_stream_max_request_body_size": LIMIT,
    "emulation_max_request_body_size": LIMIT,
    "allowed_origins": ["https://*.example.com"],
    "ping_interval": "2s",
    "pong_timeout": "1s",
}

server = serverFixture(OVERRIDES)


def test_streamHeadersAndConnectReply(server: MemoryServer) -> None:
    stream = openStream(server, b'{"id":7,"connect":{"name":"js"}}')
    response = stream.response
    assert response.status == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "private, no-cache, no-store, must-revalidate, max-age=0"
    assert response.headers["pragma"] == "no-cache"
    assert response.headers["expire"] == "0"
    assert response.headers["x-accel-buffering"] == "no"
    assert response.headers["transfer-encoding"] == "chunked"
    first = response.chunks[0]
    assert first.endswith(b"\n") and first.count(b"\n") == 1
    reply = orjson.loads(first)
    assert reply["id"] == 7
    result = reply["connect"]
    assert set(result) >= {"client", "version", "ping", "pong", "session", "node"}
    assert result["ping"] == 2 and result["pong"] is True
    assert result["session"] != result["client"]
    assert not response.complete
    stream.close()


def test_protobufStream(server: MemoryServer) -> None:
    stream, result = connectStream(server, protobuf=True)
    assert stream.headers["content-type"] == "application/octet-stream"
    assert result.client and result.session and result.node and result.ping == 2 and result.pong
    stream.close()


def test_serverPingThenNoPongDisconnect(server: MemoryServer) -> None:
    stream, result = connectStream(server)
    assert len(stream.received()) == 1
    server.advance(2)
    # A ping is an empty reply, alone in its chunk.
    assert stream.response.chunks[-1] == b"{}\n"
    assert stream.received()[-1] == {}
    # Not answering it: 3012 "no pong" as a Disconnect push, then the end of the stream.
    server.advance(1)
    assert stream.received()[-1] == {"push": {"disconnect": {"code": 3012, "reason": "no pong"}}}
    assert stream.response.complete


def test_pongKeepsStreamOpen(server: MemoryServer) -> None:
    stream, result = connectStream(server)
    for _ in range(2):
        server.advance(2)
        assert stream.received()[-1] == {}
        assert emulate(server, result["node"], result["session"], [{}]).status == 204
    server.advance(1.5)  # past the pong timeout of the last ping
    assert not stream.response.complete
    assertStillServing(server)
    stream.close()


def test_protobufPingIsZeroByte(server: MemoryServer) -> None:
    stream, result = connectStream(server, protobuf=True)
    server.advance(2)
    assert stream.response.chunks[-1] == b"\x00"
    # Answer with a Protobuf pong (an empty Command) through a Protobuf EmulationRequest.
    assert emulateProtobuf(server, result.node, result.session, [client_pb2.Command()]).status == 204
    server.advance(2)
    assert stream.response.chunks[-1] == b"\x00"
    assert not stream.response.complete
    stream.close()


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize("path", ["/connection/http_stream", "/emulation"])
def test_otherMethods405(server: MemoryServer, method: str, path: str) -> None:
    response = server.request(method, path)
    assert response.status == 405
    assert response.body == b""


@pytest.mark.parametrize("path", ["/connection/http_stream", "/emulation"])
def test_preflightAllowedOrigin(server: MemoryServer, path: str) -> None:
    response = server.request(
        "OPTIONS",
        path,
        headers={
            "Origin": "https://App.Example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert response.status == 204
    assert response.headers["access-control-max-age"] == "300"
    assert response.headers["access-control-allow-methods"] == "POST, OPTIONS"
    assert response.headers["access-control-allow-origin"] == "https://App.Example.com"
    assert response.headers["access-control-allow-headers"] == "content-type"
    assert response.headers["access-control-allow-credentials"] == "true"
    assert response.body == b""


@pytest.mark.parametrize("path", ["/connection/http_stream", "/emulation"])
def test_preflightRefusedOriginGetsNoCORS(server: MemoryServer, path: str) -> None:
    response = server.request("OPTIONS", path, headers={"Origin": "https://example.com.evil.org"})
    # Refused outright (tests/transports/test_origins.py has every transport), without CORS headers.
    assert response.status == 403
    for name in ("access-control-allow-origin", "access-control-allow-credentials", "access-control-allow-headers"):
        assert name not in response.headers


def test_streamCORSOnAllowedOrigin(server: MemoryServer) -> None:
    stream = openStream(server, b'{"id":1,"connect":{}}', headers={"Origin": "https://a.example.com"})
    assert stream.headers["access-control-allow-origin"] == "https://a.example.com"
    assert "connect" in stream.received()[0]
    stream.close()


def test_streamBodyOneByteOverLimit413(server: MemoryServer) -> None:
    command = b'{"id":1,"connect":{"name":"'
    body = command + b"x" * (LIMIT + 1 - len(command) - 3) + b'"}}'
    assert len(body) == LIMIT + 1
    response = server.request("POST", "/connection/http_stream", body=body)
    assert response.status == 413
    # At the limit exactly, it streams.
    stream = openStream(server, body[: LIMIT - 3] + b'"}}')
    assert stream.status == 200
    assert "connect" in stream.received()[0]
    stream.close()
    assertStillServing(server)


@pytest.mark.parametrize(
    "body", [b"", b"not json", b'{"id":1,"connect":{}}\n\n', b'{"id":1,"subscribe":{"channel":"a"}}']
)
def test_malformedOrNonConnectBody(server: MemoryServer, body: bytes) -> None:
    stream = openStream(server, body)
    assert stream.status == 200
    assert stream.response.complete
    assert stream.received()[-1] == {"push": {"disconnect": {"code": 3501, "reason": "bad request"}}}
    stream.close()
    assertStillServing(server)


def test_protobufGarbageBody(server: MemoryServer) -> None:
    stream = openStream(server, b"\xff\xff\xff\xff\xff\x01", protobuf=True)
    assert stream.status == 200
    assert stream.response.complete
    assert stream.received()[-1].push.disconnect.code == 3501
    stream.close()
    assertStillServing(server)


def test_unknownPath404(server: MemoryServer) -> None:
    assert server.request("GET", "/nothing/here").status == 404


def test_httpStreamDisabledAnswers404() -> None:
    from tests.web.helpers import serve

    with serve({"http_stream": False}) as disabled:
        for path in ("/connection/http_stream", "/emulation"):
            assert disabled.request("POST", path, body=b'{"id":1,"connect":{}}').status == 404
