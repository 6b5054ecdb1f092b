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
from httpstream.memoryserver import MemoryConnection, Response
from httpstream.testing import MemoryServer
from tests.serverprocess import BASE_CONFIG as PROCESS_CONFIG

# The process tests' base config without its OS-chosen port: in memory the port is the default's, 8000.
BASE_CONFIG: dict[str, Any] = {key: value for key, value in PROCESS_CONFIG.items() if key != "port"}


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


TEXT, BINARY, CLOSE = 0x1, 0x2, 0x8


class MemoryWebSocket:
    """
    A WebSocket client on an in-memory connection: the handshake's status and headers, then frames as they are
    on the wire (opcode, payload, close code and reason).
    """

    def __init__(self, server: MemoryServer, path: str = "/connection/websocket",
                 headers: Optional[dict[str, str]] = None) -> None:
        allHeaders = {
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version": "13",
        }
        allHeaders.update(headers or {})
        self.connection = server.open("GET", path, allHeaders)
        self.status = self.connection.status
        self.headers = self.connection.headers
        self._offset = 0

    def send(self, payload: bytes, opcode: int = TEXT) -> None:
        """One masked frame (a zero mask: masking is the client's duty, not its contents)."""
        n = len(payload)
        if n < 126:
            length = bytes([0x80 | n])
        elif n < 65536:
            length = bytes([0x80 | 126]) + n.to_bytes(2, "big")
        else:
            length = bytes([0x80 | 127]) + n.to_bytes(8, "big")
        self.connection.send(bytes([0x80 | opcode]) + length + b"\0\0\0\0" + payload)

    def frames(self) -> list[tuple[int, bytes]]:
        """The frames received since the last call: (opcode, payload)."""
        data, out = self.connection.upgraded, []
        while len(data) - self._offset >= 2:
            first, second = data[self._offset], data[self._offset + 1]
            n, start = second & 0x7F, self._offset + 2
            if n == 126:
                n, start = int.from_bytes(data[start:start + 2], "big"), start + 2
            elif n == 127:
                n, start = int.from_bytes(data[start:start + 8], "big"), start + 8
            if len(data) < start + n:
                break
            out.append((first & 0x0F, data[start:start + n]))
            self._offset = start + n
        return out

    def close(self) -> None:
        self.connection.close()


def closeFrame(payload: bytes) -> tuple[int, str]:
    """A close frame's code and reason."""
    return int.from_bytes(payload[:2], "big"), payload[2:].decode("utf-8")
