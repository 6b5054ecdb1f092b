"""
What the in-memory HTTP tests share: the config every test server starts from (that of the real-process tests,
tests/serverprocess.py, without the listening address) and the requests an SDK makes, on a L{MemoryServer}.
"""

from __future__ import annotations

import json
from typing import Any, Iterator, Optional

import orjson
import pytest

from httpstream.protocol import client_pb2
from httpstream.protocol.framing import varint_delimit
from httpstream.testing import MemoryConnection, MemoryServer, Response

BASE_CONFIG: dict[str, Any] = {
    "http_stream": True,
    "allow_anonymous_connect_without_token": True,
    "allow_subscribe_for_anonymous": True,
    "allow_subscribe_for_client": True,
    "allow_publish_for_anonymous": True,
    "allow_publish_for_client": True,
    "token_hmac_secret_key": "test-secret-0123456789abcdef0123456789",
    "log_level": "debug",
}


def serve(overrides: Optional[dict[str, Any]] = None) -> MemoryServer:
    """A L{MemoryServer} on L{BASE_CONFIG} plus C{overrides}."""
    config = dict(BASE_CONFIG)
    config.update(overrides or {})
    return MemoryServer(config)


def serverFixture(overrides: dict[str, Any]) -> Any:
    """A pytest fixture: a fresh server per test (each one costs milliseconds), closed after it."""

    @pytest.fixture
    def server() -> Iterator[MemoryServer]:
        with serve(overrides) as memory:
            yield memory

    return server


def openStream(
    server: MemoryServer, body: bytes, protobuf: bool = False, headers: Optional[dict[str, str]] = None
) -> MemoryConnection:
    allHeaders = {"Content-Type": "application/octet-stream" if protobuf else "application/json"}
    allHeaders.update(headers or {})
    return server.open("POST", "/connection/http_stream", allHeaders, body)


def connectStream(server: MemoryServer, protobuf: bool = False, **connect: Any) -> tuple[MemoryConnection, Any]:
    """Open an http_stream with a connect command; return it and its connect result."""
    if protobuf:
        command = client_pb2.Command(id=1)
        command.connect.SetInParent()
        for key, value in connect.items():
            setattr(command.connect, key, value)
        body = varint_delimit([command.SerializeToString()])
    else:
        body = orjson.dumps({"id": 1, "connect": connect})
    stream = openStream(server, body, protobuf)
    assert stream.status == 200, stream.response
    reply = stream.received()[0]
    return stream, (reply.connect if protobuf else reply["connect"])


def emulate(
    server: MemoryServer, node: str, session: str, commands: list[Any], headers: Optional[dict[str, str]] = None
) -> Response:
    """POST JSON commands for a session through /emulation, as the JS SDK does."""
    data = "\n".join(json.dumps(c) for c in commands)
    body = json.dumps({"session": session, "node": node, "data": data}).encode()
    allHeaders = {"Content-Type": "application/json"}
    allHeaders.update(headers or {})
    return server.request("POST", "/emulation", allHeaders, body)


def emulateProtobuf(server: MemoryServer, node: str, session: str, commands: list[Any]) -> Response:
    """POST Protobuf Commands through /emulation as an EmulationRequest."""
    data = varint_delimit([c.SerializeToString() for c in commands])
    body = client_pb2.EmulationRequest(node=node, session=session, data=data).SerializeToString()
    return server.request("POST", "/emulation", {"Content-Type": "application/octet-stream"}, body)


def assertStillServing(server: MemoryServer) -> None:
    stream, result = connectStream(server)
    assert result["client"]
    stream.close()
