"""
The load generator's other transports, beside bench.fanout's http_stream JSON stream: http_stream with Protobuf,
SSE and WebSocket subscribers, each a raw asyncio protocol in bench.fanout's style (hand-written HTTP, incremental
parsing, a few small objects per connection). L{MODES} maps a transport name to how a run opens, subscribes and
publishes on it:

- http_stream, http_stream-protobuf, sse: subscribers and the publisher are sessions whose commands go through
  POST /emulation (a Protobuf session's as a Protobuf EmulationRequest; the publisher is a JSON session, so the
  publication data are the same JSON bytes for every mode);
- websocket: commands go in the connection's own frames; the publisher is one more WebSocket.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from typing import Any, Optional
from urllib.parse import quote

import orjson

from bench.fanout import (
    CHANNEL,
    HOST,
    BenchError,
    EmulationPool,
    Mode,
    Results,
    StreamConnection,
    openStream,
)
from httpstream.protocol import client_pb2
from httpstream.protocol.framing import varint_delimit

# Protobuf


def protobufCommands(commands: list[dict]) -> bytes:
    """Commands given as JSON-shaped dicts, as varint-delimited Protobuf (publish data stay JSON bytes)."""
    encoded = []
    for command in commands:
        message = client_pb2.Command(id=command["id"])
        if "subscribe" in command:
            message.subscribe.channel = command["subscribe"]["channel"]
        elif "publish" in command:
            message.publish.channel = command["publish"]["channel"]
            message.publish.data = orjson.dumps(command["publish"]["data"])
        elif "connect" in command:
            message.connect.SetInParent()
        else:
            raise ValueError(f"no Protobuf form for {command!r} here")
        encoded.append(message.SerializeToString())
    return varint_delimit(encoded)


def protobufEmulation(session: str, node: str, commands: bytes) -> bytes:
    """The body of POST /emulation for a Protobuf session (no length prefix)."""
    return client_pb2.EmulationRequest(session=session, node=node, data=commands).SerializeToString()


class ProtobufStream(StreamConnection):
    """POST /connection/http_stream with Content-Type application/octet-stream: varint-delimited Replies."""

    protobuf = True

    def __init__(self, port: int, results: Results) -> None:
        self._pending = bytearray()
        super().__init__(port, results)

    def request(self, port: int) -> bytes:
        body = protobufCommands([{"id": 1, "connect": {}}])
        return (
            b"POST /connection/http_stream HTTP/1.1\r\n"
            + f"Host: {HOST}:{port}\r\n".encode()
            + b"Content-Type: application/octet-stream\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )

    def _chunk(self, chunk: bytes, now: int) -> None:
        # A Reply is written whole in one chunk, but nothing here relies on it: a partial one waits for the rest.
        pending = self._pending
        pending += chunk
        pos, end = 0, len(pending)
        while pos < end:
            length, shift, at = 0, 0, pos
            while at < end:
                byte = pending[at]
                at += 1
                length |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    break
            else:
                break  # the length itself is cut off
            if end - at < length:
                break
            if length:  # an empty message is a ping
                self._reply(client_pb2.Reply.FromString(bytes(pending[at : at + length])), now)
            pos = at + length
        del pending[:pos]

    def _reply(self, reply: client_pb2.Reply, now: int) -> None:
        if reply.HasField("push"):
            push = reply.push
            if push.HasField("pub"):
                self.received += 1
                self._results.delivered(now, orjson.loads(push.pub.data))
            elif push.HasField("disconnect"):
                self._disconnected(f"{push.disconnect.code} {push.disconnect.reason}")
            return
        if not reply.id:
            return
        if reply.HasField("connect"):
            self._connected(reply.connect.session, reply.connect.node)
        if reply.HasField("error"):
            self._answer(reply.id, None, f"command {reply.id} failed: {reply.error.code} {reply.error.message}")
        else:
            self._answer(reply.id, reply, "")


class ProtobufMode(Mode):
    """Protobuf subscribers; the publisher stays a JSON session (its data reach them as the same bytes)."""

    name = "http_stream-protobuf"
    stream = ProtobufStream

    async def publisher(self, port: int, results: Results, timeout: float) -> Any:
        return await Mode().publisher(port, results, timeout)


# SSE


class SSEStream(StreamConnection):
    """GET /connection/sse?cf_connect=...: a chunked text/event-stream, one C{data: JSON} event per message."""

    def __init__(self, port: int, results: Results) -> None:
        self._events = bytearray()
        super().__init__(port, results)

    def request(self, port: int) -> bytes:
        connect = quote('{"id":1,"connect":{}}', safe="")
        return (
            f"GET /connection/sse?cf_connect={connect} HTTP/1.1\r\n"
            f"Host: {HOST}:{port}\r\nAccept: text/event-stream\r\n\r\n"
        ).encode()

    def _chunk(self, chunk: bytes, now: int) -> None:
        events = self._events
        events += chunk
        pos = 0
        while (end := events.find(b"\n\n", pos)) >= 0:
            for line in bytes(events[pos:end]).split(b"\n"):
                # The stream opens with a bare "\r\n" (so that EventSource's onopen fires): not a field.
                if line.startswith(b"data:"):
                    self._dispatch(orjson.loads(line[5:]), now)
            pos = end + 2
        del events[:pos]


class SSEMode(Mode):
    name = "sse"
    stream = SSEStream


# WebSocket


def maskedFrame(payload: bytes, opcode: int = 0x1) -> bytes:
    """A client's frame: FIN, C{opcode}, masked with a random key (RFC 6455 5.3)."""
    key = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, 0x80 | n])
    elif n < 65536:
        head = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + n.to_bytes(8, "big")
    keys = (key * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(keys, "big")).to_bytes(n, "big")
    return head + key + masked


def nextFrame(buffer: bytearray, pos: int) -> Optional[tuple[int, bytes, int]]:
    """
    The server frame at C{pos} in C{buffer}: (its first byte: FIN, RSV and opcode; its payload; where the next one
    starts), or None while it is not all there. Server frames are never masked.
    """
    size = len(buffer)
    if size - pos < 2:
        return None
    first, n = buffer[pos], buffer[pos + 1] & 0x7F
    start = pos + 2
    if n == 126:
        if size - start < 2:
            return None
        n, start = int.from_bytes(buffer[start : start + 2], "big"), start + 2
    elif n == 127:
        if size - start < 8:
            return None
        n, start = int.from_bytes(buffer[start : start + 8], "big"), start + 8
    if size - start < n:
        return None
    return first, bytes(buffer[start : start + n]), start + n


class WebSocketStream(StreamConnection):
    """
    GET /connection/websocket upgraded (no subprotocol: JSON; no extension offered), then the connect command
    in the first frame. Text frames carry newline-delimited messages, as the http_stream body does.
    """

    needsSession = False

    def __init__(self, port: int, results: Results) -> None:
        self._frames = bytearray()
        self._upgraded = False
        super().__init__(port, results)

    def request(self, port: int) -> bytes:
        key = base64.b64encode(os.urandom(16)).decode()
        return (
            f"GET /connection/websocket HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()

    def send(self, payload: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(maskedFrame(payload))

    def data_received(self, data: bytes) -> None:
        now = time.time_ns()
        buffer = self._frames
        buffer += data
        pos = 0
        if not self._upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buffer[:end]).split(b"\r\n", 1)[0]
            if b" 101 " not in status + b" ":
                self._fail(f"upgrade answered {status.decode('latin-1')!r}")
                return
            self._upgraded = True
            self.stage = "upgraded, no connect reply"
            pos = end + 4
            self.send(b'{"id":1,"connect":{}}')
        while (found := nextFrame(buffer, pos)) is not None:
            first, payload, pos = found
            opcode = first & 0x0F
            if opcode == 0x8:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                self._end(f"close frame {code} {payload[2:].decode('utf-8', 'replace')}")
                return
            if opcode == 0x9:  # ping: answer with a pong carrying the same bytes
                if self.transport is not None:
                    self.transport.write(maskedFrame(payload, 0xA))
                continue
            if opcode in (0x1, 0x2):
                self._chunk(payload, now)
        del buffer[:pos]


class WebSocketPublisher:
    """One more WebSocket, not subscribed: its publish commands go in its frames, their replies come back."""

    def __init__(self, stream: WebSocketStream) -> None:
        self._stream = stream

    def publish(self, command: dict) -> tuple[asyncio.Future, Optional[asyncio.Future]]:
        reply = self._stream.reply(command["id"])
        self._stream.send(orjson.dumps(command))
        return reply, None

    def close(self) -> None:
        self._stream.close()


class WebSocketMode(Mode):
    name = "websocket"
    stream = WebSocketStream

    async def subscribe(self, pool: EmulationPool, stream: StreamConnection, timeout: float) -> None:
        assert isinstance(stream, WebSocketStream)
        reply = stream.reply(2)
        stream.send(orjson.dumps({"id": 2, "subscribe": {"channel": CHANNEL}}))
        await asyncio.wait_for(reply, timeout)

    async def publisher(self, port: int, results: Results, timeout: float) -> Any:
        stream = await openStream(port, results, timeout, None, WebSocketStream)
        if not isinstance(stream, WebSocketStream):
            raise BenchError("not a WebSocket")
        return WebSocketPublisher(stream)


MODES: dict[str, Mode] = {
    "http_stream": Mode(),
    "http_stream-protobuf": ProtobufMode(),
    "sse": SSEMode(),
    "websocket": WebSocketMode(),
}
