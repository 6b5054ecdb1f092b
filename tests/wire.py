"""
Raw HTTP/1.1 on a real socket, for the wire tests: exact status lines, headers and chunk boundaries, which an HTTP
library would hide.
"""

from __future__ import annotations

import json
import socket
from typing import Any, Optional

import orjson

from httpstream.protocol import client_pb2
from httpstream.protocol.framing import split_varint


class Response:
    """One HTTP response read off a socket: status, headers (lower-cased names), and its body chunk by chunk."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = b""
        head = self._readUntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        self.chunked = self.headers.get("transfer-encoding") == "chunked"

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self._buffer += data
        return bool(data)

    def _readUntil(self, marker: bytes) -> bytes:
        while marker not in self._buffer:
            if not self._fill():
                raise EOFError(f"connection closed before {marker!r}; got {self._buffer!r}")
        head, _, self._buffer = self._buffer.partition(marker)
        return head

    def _readExactly(self, n: int) -> bytes:
        while len(self._buffer) < n:
            if not self._fill():
                raise EOFError("connection closed mid-body")
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def chunk(self) -> Optional[bytes]:
        """The next HTTP chunk, or None at the terminating chunk."""
        assert self.chunked, self.headers
        size = int(self._readUntil(b"\r\n").split(b";")[0], 16)
        data = self._readExactly(size)
        assert self._readExactly(2) == b"\r\n"
        return data if size else None

    def body(self) -> bytes:
        """The whole (non-streaming) body."""
        if self.chunked:
            parts = []
            while (part := self.chunk()) is not None:
                parts.append(part)
            return b"".join(parts)
        return self._readExactly(int(self.headers.get("content-length", "0")))

    def close(self) -> None:
        self.sock.close()


def request(
    port: int,
    method: str,
    path: str,
    body: bytes = b"",
    headers: Optional[dict[str, str]] = None,
    timeout: float = 10.0,
) -> Response:
    """Send one request on a new connection and read the response head."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Content-Length: {len(body)}"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    return Response(sock)


class Stream:
    """An open http_stream connection, JSON or Protobuf, yielding decoded replies as dicts (JSON) or Replies."""

    def __init__(self, port: int, body: bytes, protobuf: bool = False, headers: Optional[dict[str, str]] = None):
        allHeaders = {"Content-Type": "application/octet-stream" if protobuf else "application/json"}
        allHeaders.update(headers or {})
        self.protobuf = protobuf
        self.port = port
        self.response = request(port, "POST", "/connection/http_stream", body, allHeaders)
        self.chunks: list[bytes] = []

    def chunk(self) -> Optional[bytes]:
        data = self.response.chunk()
        if data is not None:
            self.chunks.append(data)
        return data

    def messages(self) -> Optional[list[Any]]:
        """The messages of the next chunk (None at the end of the stream); a chunk always holds whole ones."""
        data = self.chunk()
        if data is None:
            return None
        if self.protobuf:
            out = []
            for frame in split_varint(data, 1 << 24):
                reply = client_pb2.Reply()
                reply.ParseFromString(frame)
                out.append(reply)
            return out
        assert data.endswith(b"\n"), data
        return [orjson.loads(line) for line in data[:-1].split(b"\n")]

    def next(self) -> Any:
        """The next single message (reading chunks as needed)."""
        if not getattr(self, "_queue", None):
            messages = self.messages()
            if messages is None:
                raise EOFError("stream ended")
            self._queue = messages
        return self._queue.pop(0)

    def close(self) -> None:
        self.response.close()


def connectStream(port: int, protobuf: bool = False, **connect: Any) -> tuple[Stream, Any]:
    """Open a stream with a connect command; return it and its connect result."""
    if protobuf:
        command = client_pb2.Command(id=1)
        command.connect.SetInParent()
        for key, value in connect.items():
            setattr(command.connect, key, value)
        body = encodeFrames([command.SerializeToString()])
    else:
        body = orjson.dumps({"id": 1, "connect": connect})
    stream = Stream(port, body, protobuf)
    assert stream.response.status == 200, stream.response.status
    reply = stream.next()
    return stream, (reply.connect if protobuf else reply["connect"])


def encodeFrames(frames: list[bytes]) -> bytes:
    from httpstream.protocol.framing import varint_delimit

    return varint_delimit(frames)


def emulate(port: int, node: str, session: str, commands: list[dict], headers: Optional[dict[str, str]] = None) -> Response:
    """POST JSON commands for a session through /emulation, as the JS SDK does."""
    data = "\n".join(json.dumps(c) for c in commands)
    body = json.dumps({"session": session, "node": node, "data": data}).encode()
    allHeaders = {"Content-Type": "application/json"}
    allHeaders.update(headers or {})
    response = request(port, "POST", "/emulation", body, allHeaders)
    response.body()
    response.close()
    return response


def emulateProtobuf(port: int, node: str, session: str, commands: list[Any]) -> Response:
    """POST Protobuf Commands through /emulation as an EmulationRequest."""
    data = encodeFrames([c.SerializeToString() for c in commands])
    body = client_pb2.EmulationRequest(node=node, session=session, data=data).SerializeToString()
    response = request(port, "POST", "/emulation", body, {"Content-Type": "application/octet-stream"})
    response.body()
    response.close()
    return response
