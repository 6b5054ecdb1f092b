"""
Many bare client connections from one asyncio loop, for the fault tests (tests/test_faults_shutdown.py): WebSocket
and http_stream connections that send a connect command, wait for its reply, then report how the server ended them
(the close frame's code and reason for WebSocket, the disconnect push for http_stream).

JSON protocol only; no SDK: a thousand SDK clients would need a thousand timers and reconnect loops, and what is
checked here is the bytes the server sends as it goes.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
from dataclasses import dataclass
from typing import Optional

CONNECT = json.dumps({"id": 1, "connect": {}}).encode()


@dataclass
class Ending:
    """How the server ended one connection: the disconnect code and reason, or what went wrong instead."""

    transport: str
    code: Optional[int] = None
    reason: str = ""
    problem: str = ""


class _Connection:
    transport = ""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: Optional[asyncio.StreamReader] = None
        self.writer: Optional[asyncio.StreamWriter] = None

    async def open(self) -> None:
        """Connect and wait for the connect reply."""
        raise NotImplementedError

    async def ending(self) -> Ending:
        """Read until the server ends the connection."""
        raise NotImplementedError

    def close(self) -> None:
        if self.writer is not None:
            self.writer.transport.abort()


class WebSocketConnection(_Connection):
    transport = "websocket"

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port, limit=1 << 20)
        key = base64.b64encode(os.urandom(16)).decode()
        self.writer.write(
            (
                "GET /connection/websocket HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{self.port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise AssertionError(f"WebSocket handshake refused: {head!r}")
        self.writer.write(_frame(0x1, CONNECT))
        opcode, payload = await self._readFrame()
        if opcode != 0x1 or b'"id":1' not in payload:
            raise AssertionError(f"no connect reply: {opcode} {payload!r}")

    async def _readFrame(self) -> tuple[int, bytes]:
        assert self.reader is not None
        first, second = await self.reader.readexactly(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", await self.reader.readexactly(8))
        return first & 0x0F, await self.reader.readexactly(length)

    async def ending(self) -> Ending:
        assert self.writer is not None
        while True:
            try:
                opcode, payload = await self._readFrame()
            except (asyncio.IncompleteReadError, ConnectionError) as e:
                return Ending(self.transport, problem=f"connection ended without a close frame: {e!r}")
            if opcode == 0x9:  # a ping: answer, as a client must
                self.writer.write(_frame(0xA, payload))
            elif opcode == 0x8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                return Ending(self.transport, code, payload[2:].decode("utf-8", "replace"))


class HTTPStreamConnection(_Connection):
    """An http_stream; with C{channel}, its first body also subscribes to that channel."""

    transport = "http_stream"

    def __init__(self, port: int, channel: str = "") -> None:
        super().__init__(port)
        self.channel = channel

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port, limit=1 << 20)
        body = CONNECT
        if self.channel:
            body += b"\n" + json.dumps({"id": 2, "subscribe": {"channel": self.channel}}).encode()
        self.writer.write(
            (
                "POST /connection/http_stream HTTP/1.1\r\n"
                f"Host: 127.0.0.1:{self.port}\r\n"
                "Content-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body
        )
        head = await self.reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200") or b"chunked" not in head.lower():
            raise AssertionError(f"http_stream refused: {head!r}")
        replies: dict[int, dict] = {}
        while len(replies) < (2 if self.channel else 1):
            messages = await self._chunk()
            if messages is None:
                raise AssertionError(f"stream ended before the replies: {replies!r}")
            replies.update((m["id"], m) for m in messages if "id" in m)
        if "connect" not in replies[1] or (self.channel and "subscribe" not in replies[2]):
            raise AssertionError(f"connect or subscribe refused: {replies!r}")

    async def _chunk(self) -> Optional[list[dict]]:
        """The JSON messages of the next chunk; None for the last (empty) chunk."""
        assert self.reader is not None
        size = int((await self.reader.readuntil(b"\r\n")).strip(), 16)
        data = await self.reader.readexactly(size + 2)
        if size == 0:
            return None
        return [json.loads(line) for line in data[:-2].split(b"\n") if line.strip()]

    async def ending(self) -> Ending:
        disconnect: Optional[dict] = None
        while True:
            try:
                messages = await self._chunk()
            except (asyncio.IncompleteReadError, ConnectionError, ValueError) as e:
                return Ending(self.transport, problem=f"stream ended without its last chunk: {e!r}")
            if messages is None:
                if disconnect is None:
                    return Ending(self.transport, problem="stream ended without a disconnect push")
                return Ending(self.transport, disconnect.get("code"), disconnect.get("reason", ""))
            for message in messages:
                if "disconnect" in message.get("push", {}):
                    disconnect = message["push"]["disconnect"]


def _frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame (a client must mask)."""
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return header + mask + masked


async def openMany(
    port: int, websockets: int, streams: int, channel: str = "", concurrency: int = 100
) -> list[_Connection]:
    """
    Open C{websockets} + C{streams} connections, at most C{concurrency} handshakes at a time (the streams
    subscribed to C{channel} when given).
    """
    connections: list[_Connection] = [WebSocketConnection(port) for _ in range(websockets)]
    connections += [HTTPStreamConnection(port, channel) for _ in range(streams)]
    gate = asyncio.Semaphore(concurrency)

    async def open(connection: _Connection) -> None:
        async with gate:
            await asyncio.wait_for(connection.open(), 30)

    await asyncio.gather(*(open(connection) for connection in connections))
    return connections
