"""
POST /emulation on the in-memory server: commands of a session whose replies go down its stream, bad envelopes,
unknown nodes, dead sessions, the body limit.
"""

from __future__ import annotations

import json

import pytest

from httpstream.protocol import client_pb2
from httpstream.testing import MemoryServer
from tests.transports.test_http_stream import LIMIT, OVERRIDES
from tests.web.helpers import assertStillServing, connectStream, emulate, emulateProtobuf, serverFixture

server = serverFixture(OVERRIDES)


def test_emulationRunsCommandsRepliesOnStream(server: MemoryServer) -> None:
    stream, result = connectStream(server)
    response = emulate(
        server,
        result["node"],
        result["session"],
        [
            {"id": 2, "subscribe": {"channel": "wire"}},
            {"id": 3, "publish": {"channel": "wire", "data": {"text": "héllo"}}},
        ],
    )
    assert response.status == 204
    received = stream.received()[1:]
    assert len(received) == 3
    assert {"id": 2, "subscribe": {}} in received
    assert {"id": 3, "publish": {}} in received
    pushes = [m["push"] for m in received if "push" in m]
    assert pushes == [
        {"channel": "wire", "pub": {"data": {"text": "héllo"}, "info": {"user": "", "client": result["client"]}}}
    ]
    # Batches go out as whole chunks: every chunk ends on a message boundary.
    assert all(chunk.endswith(b"\n") for chunk in stream.response.chunks)
    stream.close()


def test_emulationPublicationReachesOtherStream(server: MemoryServer) -> None:
    a, resultA = connectStream(server)
    b, resultB = connectStream(server, protobuf=True)
    assert emulate(server, resultA["node"], resultA["session"], [{"id": 2, "subscribe": {"channel": "room"}}]).status == 204
    assert a.received()[-1] == {"id": 2, "subscribe": {}}
    command = client_pb2.Command(id=2)
    command.subscribe.channel = "room"
    assert emulateProtobuf(server, resultB.node, resultB.session, [command]).status == 204
    assert b.received()[-1].id == 2
    publish = client_pb2.Command(id=3)
    publish.publish.channel = "room"
    publish.publish.data = b'{"n":1}'
    emulateProtobuf(server, resultB.node, resultB.session, [publish])
    assert any(r.push.pub.data == b'{"n":1}' for r in b.received()[-2:])
    # The publisher's ClientInfo travels with it (user and client always written, messages.md 1.1).
    assert a.received()[-1] == {
        "push": {"channel": "room", "pub": {"data": {"n": 1}, "info": {"user": "", "client": resultB.client}}}
    }
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
def test_emulationBadEnvelope400(server: MemoryServer, body: bytes, contentType: str) -> None:
    response = server.request("POST", "/emulation", {"Content-Type": contentType}, body)
    assert response.status == 400
    assertStillServing(server)


def test_emulationUnknownNode404(server: MemoryServer) -> None:
    stream, result = connectStream(server)
    response = emulate(server, "not-a-node", result["session"], [{"id": 2, "subscribe": {"channel": "x"}}])
    assert response.status == 404
    stream.close()


def test_emulationDeadSession204(server: MemoryServer) -> None:
    stream, result = connectStream(server)
    stream.close()
    # The server notices the closed stream and forgets the session.
    assert f"client {result['client']} went away" in server.logged
    assert emulate(server, result["node"], result["session"], [{"id": 2, "subscribe": {"channel": "x"}}]).status == 204
    assert emulate(server, result["node"], "no-such-session", [{}]).status == 204
    assertStillServing(server)


def test_emulationBodyOneByteOver413(server: MemoryServer) -> None:
    stream, result = connectStream(server)
    envelope = {"session": result["session"], "node": result["node"], "data": ""}
    base = len(json.dumps(envelope).encode())
    envelope["data"] = "x" * (LIMIT + 1 - base)
    body = json.dumps(envelope).encode()
    assert len(body) == LIMIT + 1
    response = server.request("POST", "/emulation", {"Content-Type": "application/json"}, body)
    assert response.status == 413
    # The session lives on: a pong-free command still runs.
    assert emulate(server, result["node"], result["session"], [{"id": 2, "subscribe": {"channel": "y"}}]).status == 204
    assert stream.received()[-1] == {"id": 2, "subscribe": {}}
    stream.close()


def test_emulationMalformedCommandsDisconnect3501(server: MemoryServer) -> None:
    stream, result = connectStream(server)
    assert emulate(server, result["node"], result["session"], []).status == 204  # "" is a blank frame
    assert stream.response.complete
    assert stream.received()[-1] == {"push": {"disconnect": {"code": 3501, "reason": "bad request"}}}
    stream.close()
