"""
The http_stream and emulation endpoints on a real socket against a real ``twistd httpstream`` process: every
status code and header of reference/transports.md sections 1, 3 and 5, and the server surviving bad input.
"""

from __future__ import annotations

import json
import time
from typing import Iterator

import orjson
import pytest

from httpstream.protocol import client_pb2
from tests.serverprocess import ServerProcess
from tests.wire import Stream, connectStream, emulate, emulateProtobuf, request

LIMIT = 2000  # small body limits, so "one byte over" is cheap to send


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    overrides = {
        "http_stream_max_request_body_size": LIMIT,
        "emulation_max_request_body_size": LIMIT,
        "allowed_origins": ["https://*.example.com"],
        "ping_interval": "2s",
        "pong_timeout": "1s",
    }
    with ServerProcess(tmp_path_factory.mktemp("wire"), overrides) as process:
        yield process


def assertStillServing(server: ServerProcess) -> None:
    assert server.alive()
    stream, result = connectStream(server.port)
    assert result["client"]
    stream.close()


# POST /connection/http_stream


def test_streamHeadersAndConnectReply(server: ServerProcess) -> None:
    stream = Stream(server.port, b'{"id":7,"connect":{"name":"js"}}')
    response = stream.response
    assert response.status == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "private, no-cache, no-store, must-revalidate, max-age=0"
    assert response.headers["pragma"] == "no-cache"
    assert response.headers["expire"] == "0"
    assert response.headers["x-accel-buffering"] == "no"
    assert response.headers["transfer-encoding"] == "chunked"
    first = stream.chunk()
    assert first is not None and first.endswith(b"\n") and first.count(b"\n") == 1
    reply = orjson.loads(first)
    assert reply["id"] == 7
    result = reply["connect"]
    assert set(result) >= {"client", "version", "ping", "pong", "session", "node"}
    assert result["ping"] == 2 and result["pong"] is True
    assert result["session"] != result["client"]
    stream.close()


def test_protobufStream(server: ServerProcess) -> None:
    stream, result = connectStream(server.port, protobuf=True)
    assert stream.response.headers["content-type"] == "application/octet-stream"
    assert result.client and result.session and result.node and result.ping == 2 and result.pong
    stream.close()


def test_serverPingThenNoPongDisconnect(server: ServerProcess) -> None:
    stream, result = connectStream(server.port)
    started = time.monotonic()
    # A ping is an empty reply, alone on its line.
    assert stream.chunks[-1] != b"{}\n"
    assert stream.next() == {}
    assert time.monotonic() - started <= 2.5
    # Not answering it: 3012 "no pong" as a Disconnect push, then the end of the stream.
    assert stream.next() == {"push": {"disconnect": {"code": 3012, "reason": "no pong"}}}
    assert stream.chunk() is None
    stream.close()


def test_pongKeepsStreamOpen(server: ServerProcess) -> None:
    stream, result = connectStream(server.port)
    for _ in range(2):
        assert stream.next() == {}
        assert emulate(server.port, result["node"], result["session"], [{}]).status == 204
    assertStillServing(server)
    stream.close()


def test_protobufPingIsZeroByte(server: ServerProcess) -> None:
    stream, result = connectStream(server.port, protobuf=True)
    assert stream.chunk() == b"\x00"
    # Answer with a Protobuf pong (an empty Command) through a Protobuf EmulationRequest.
    assert emulateProtobuf(server.port, result.node, result.session, [client_pb2.Command()]).status == 204
    assert stream.chunk() == b"\x00"
    stream.close()


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize("path", ["/connection/http_stream", "/emulation"])
def test_otherMethods405(server: ServerProcess, method: str, path: str) -> None:
    response = request(server.port, method, path)
    assert response.status == 405
    assert response.body() == b""
    response.close()


@pytest.mark.parametrize("path", ["/connection/http_stream", "/emulation"])
def test_preflightAllowedOrigin(server: ServerProcess, path: str) -> None:
    response = request(
        server.port,
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
    assert response.body() == b""
    response.close()


@pytest.mark.parametrize("path", ["/connection/http_stream", "/emulation"])
def test_preflightRefusedOriginGetsNoCORS(server: ServerProcess, path: str) -> None:
    response = request(server.port, "OPTIONS", path, headers={"Origin": "https://example.com.evil.org"})
    # Refused outright (tests/test_origins_wire.py has every transport), without CORS headers.
    assert response.status == 403
    for name in ("access-control-allow-origin", "access-control-allow-credentials", "access-control-allow-headers"):
        assert name not in response.headers
    response.close()


def test_streamCORSOnAllowedOrigin(server: ServerProcess) -> None:
    stream = Stream(server.port, b'{"id":1,"connect":{}}', headers={"Origin": "https://a.example.com"})
    assert stream.response.headers["access-control-allow-origin"] == "https://a.example.com"
    assert "connect" in stream.next()
    stream.close()


def test_streamBodyOneByteOverLimit413(server: ServerProcess) -> None:
    command = b'{"id":1,"connect":{"name":"'
    body = command + b"x" * (LIMIT + 1 - len(command) - 3) + b'"}}'
    assert len(body) == LIMIT + 1
    response = request(server.port, "POST", "/connection/http_stream", body)
    assert response.status == 413
    response.close()
    # At the limit exactly, it streams.
    stream = Stream(server.port, body[: LIMIT - 3] + b'"}}')
    assert stream.response.status == 200
    assert "connect" in stream.next()
    stream.close()
    assertStillServing(server)


@pytest.mark.parametrize("body", [b"", b"not json", b'{"id":1,"connect":{}}\n\n', b'{"id":1,"subscribe":{"channel":"a"}}'])
def test_malformedOrNonConnectBody(server: ServerProcess, body: bytes) -> None:
    stream = Stream(server.port, body)
    assert stream.response.status == 200
    messages = []
    while (batch := stream.messages()) is not None:
        messages.extend(batch)
    assert messages[-1] == {"push": {"disconnect": {"code": 3501, "reason": "bad request"}}}
    stream.close()
    assertStillServing(server)


def test_protobufGarbageBody(server: ServerProcess) -> None:
    stream = Stream(server.port, b"\xff\xff\xff\xff\xff\x01", protobuf=True)
    assert stream.response.status == 200
    replies = []
    while (batch := stream.messages()) is not None:
        replies.extend(batch)
    assert replies[-1].push.disconnect.code == 3501
    stream.close()
    assertStillServing(server)


# POST /emulation


def test_emulationRunsCommandsRepliesOnStream(server: ServerProcess) -> None:
    stream, result = connectStream(server.port)
    response = emulate(
        server.port,
        result["node"],
        result["session"],
        [
            {"id": 2, "subscribe": {"channel": "wire"}},
            {"id": 3, "publish": {"channel": "wire", "data": {"text": "héllo"}}},
        ],
    )
    assert response.status == 204
    received = [stream.next() for _ in range(3)]
    assert {"id": 2, "subscribe": {}} in received
    assert {"id": 3, "publish": {}} in received
    pushes = [m["push"] for m in received if "push" in m]
    assert pushes == [
        {"channel": "wire", "pub": {"data": {"text": "héllo"}, "info": {"user": "", "client": result["client"]}}}
    ]
    # Batches go out as whole chunks: every chunk ends on a message boundary.
    assert all(chunk.endswith(b"\n") for chunk in stream.chunks)
    stream.close()


def test_emulationPublicationReachesOtherStream(server: ServerProcess) -> None:
    a, resultA = connectStream(server.port)
    b, resultB = connectStream(server.port, protobuf=True)
    assert emulate(server.port, resultA["node"], resultA["session"], [{"id": 2, "subscribe": {"channel": "room"}}]).status == 204
    assert a.next() == {"id": 2, "subscribe": {}}
    command = client_pb2.Command(id=2)
    command.subscribe.channel = "room"
    assert emulateProtobuf(server.port, resultB.node, resultB.session, [command]).status == 204
    assert b.next().id == 2
    publish = client_pb2.Command(id=3)
    publish.publish.channel = "room"
    publish.publish.data = b'{"n":1}'
    emulateProtobuf(server.port, resultB.node, resultB.session, [publish])
    replies = [b.next(), b.next()]
    assert any(r.push.pub.data == b'{"n":1}' for r in replies)
    message = a.next()
    while message == {}:  # a server ping may come first
        message = a.next()
    # The publisher's ClientInfo travels with it (user and client always written, messages.md 1.1).
    assert message == {"push": {"channel": "room", "pub": {"data": {"n": 1}, "info": {"user": "", "client": resultB.client}}}}
    a.close()
    b.close()


@pytest.mark.parametrize(
    "body,contentType",
    [
        (b"not json", "application/json"),
        (b"[1,2]", "application/json"),
        (b'{"session":"s","node":"n","data":{"id":1}}', "application/json"),
        (b"\xff\xff\xff", "application/octet-stream"),
    ],
)
def test_emulationBadEnvelope400(server: ServerProcess, body: bytes, contentType: str) -> None:
    response = request(server.port, "POST", "/emulation", body, {"Content-Type": contentType})
    assert response.status == 400
    response.close()
    assertStillServing(server)


def test_emulationUnknownNode404(server: ServerProcess) -> None:
    stream, result = connectStream(server.port)
    response = emulate(server.port, "not-a-node", result["session"], [{"id": 2, "subscribe": {"channel": "x"}}])
    assert response.status == 404
    stream.close()


def test_emulationDeadSession204(server: ServerProcess) -> None:
    stream, result = connectStream(server.port)
    stream.close()
    # The server notices the closed stream and forgets the session.
    deadline = time.monotonic() + 5
    while f"client {result['client']} went away" not in server.output and time.monotonic() < deadline:
        time.sleep(0.05)
    assert f"client {result['client']} went away" in server.output
    assert emulate(server.port, result["node"], result["session"], [{"id": 2, "subscribe": {"channel": "x"}}]).status == 204
    assert emulate(server.port, result["node"], "no-such-session", [{}]).status == 204
    assertStillServing(server)


def test_emulationBodyOneByteOver413(server: ServerProcess) -> None:
    stream, result = connectStream(server.port)
    envelope = {"session": result["session"], "node": result["node"], "data": ""}
    base = len(json.dumps(envelope).encode())
    envelope["data"] = "x" * (LIMIT + 1 - base)
    body = json.dumps(envelope).encode()
    assert len(body) == LIMIT + 1
    response = request(server.port, "POST", "/emulation", body, {"Content-Type": "application/json"})
    assert response.status == 413
    response.close()
    # The session lives on: a pong-free command still runs.
    assert emulate(server.port, result["node"], result["session"], [{"id": 2, "subscribe": {"channel": "y"}}]).status == 204
    assert stream.next() in ({"id": 2, "subscribe": {}}, {})
    stream.close()


def test_emulationMalformedCommandsDisconnect3501(server: ServerProcess) -> None:
    stream, result = connectStream(server.port)
    assert emulate(server.port, result["node"], result["session"], []).status == 204  # "" is a blank frame
    messages = []
    while (batch := stream.messages()) is not None:
        messages.extend(batch)
    assert messages[-1] == {"push": {"disconnect": {"code": 3501, "reason": "bad request"}}}
    stream.close()


def test_unknownPath404(server: ServerProcess) -> None:
    response = request(server.port, "GET", "/nothing/here")
    assert response.status == 404
    response.close()


# Configuration switches


def test_httpStreamDisabledAnswers404(startServer) -> None:
    server = startServer({"http_stream": False})
    for path in ("/connection/http_stream", "/emulation"):
        response = request(server.port, "POST", path, b'{"id":1,"connect":{}}')
        assert response.status == 404
        response.close()


def test_slowReaderIsCutOff(startServer) -> None:
    """A reader that stops reading pauses the writes, its queue fills, and it is cut off with 3008."""
    server = startServer({"client_queue_max_size": 200_000, "ping_interval": -1, "pong_timeout": -1})
    slow, resultSlow = connectStream(server.port)
    emulate(server.port, resultSlow["node"], resultSlow["session"], [{"id": 2, "subscribe": {"channel": "big"}}])
    assert slow.next() == {"id": 2, "subscribe": {}}
    slow.response.sock.setsockopt(__import__("socket").SOL_SOCKET, __import__("socket").SO_RCVBUF, 4096)
    publisher, result = connectStream(server.port)
    payload = "x" * 60000
    deadline = time.monotonic() + 30
    sent = 0
    while "3008" not in server.output and time.monotonic() < deadline:
        emulate(server.port, result["node"], result["session"],
                [{"id": 10 + sent, "publish": {"channel": "big", "data": {"p": payload}}}])
        sent += 1
        publisher.chunk()
    assert "disconnected: 3008 slow" in server.output
    # Far less than the 60 kB x publications it was sent: the kernel's buffers plus the bounded queue.
    assert sent > 10
    publisher.close()
    slow.close()
    assertStillServing(server)
