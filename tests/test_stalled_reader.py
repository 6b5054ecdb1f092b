"""
The owned write path on real sockets (issue 16): a subscriber whose socket stops being read does not hold back the
others, and what queued behind its busy socket reaches it complete, in order and coalesced once it reads again; for
every transport and codec (http_stream JSON and Protobuf, SSE, WebSocket JSON and Protobuf), against a real
``twistd httpstream``.

Each reader parses its stream strictly, unit by unit (an HTTP chunk, a WebSocket message): a unit must hold whole
protocol messages, so a frame cut or merged wrongly fails the test, and each publication's number must come once,
in order.
"""

from __future__ import annotations

import selectors
import threading
import time
import urllib.parse
from typing import Any, Iterator

import orjson
import pytest

from httpstream.protocol.framing import split_varint
from httpstream.testing import decodeReply, encodeCommands
from tests.peers import API, API_KEY, openSocket, token, waitFor
from tests.serverprocess import ServerProcess

CASES = [("http_stream", "json"), ("http_stream", "protobuf"), ("sse", "json"), ("websocket", "json"),
         ("websocket", "protobuf")]
# ~5 MB for a reader that stops reading: more than the kernel's buffers take (a 4 KiB receive window, the server's
# send buffer), so most of it must wait in the server, behind a socket that is not writable.
PUBLICATIONS = 300
PAD = 16 * 1024
HEALTHY = 3
WAIT = 60.0


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    overrides = {
        "sse": True,
        # Room for everything the stalled reader misses: it is held back, never cut (3008 is test_slow_peers').
        "client_queue_max_size": 64 << 20,
        "ping_interval": -1,
        "pong_timeout": -1,
        "api_key": API_KEY,
        "log_level": "info",
    }
    with ServerProcess(tmp_path_factory.mktemp("stalled"), overrides) as process:
        yield process


class Reader:
    """
    One subscriber on a raw socket, subscribed server-side to C{channel} by its connection token, whose stream is
    parsed as it is fed.

    @ivar units: how many HTTP chunks or WebSocket messages carried publications.
    @ivar numbers: the publications' numbers, in arrival order.
    """

    def __init__(self, transport: str, codec: str, port: int, channel: str, receiveBuffer: int = 0) -> None:
        self.transport, self.codec = transport, codec
        self.sock = openSocket(port, receiveBuffer)
        self.units = 0
        self.numbers: list[int] = []
        self.other: list[dict[str, Any]] = []  # every other message: the connect reply, a disconnect push
        self._buffer = b""
        self._head = False
        self._events = b""  # SSE text not yet split into events
        request, self._afterHead = self._opening(port, {"token": token("reader", [channel])})
        self.sock.sendall(request)
        while not self.other:  # the connect reply
            self.readSome()

    def _opening(self, port: int, connect: dict[str, Any]) -> tuple[bytes, bytes]:
        """The request, and what to send once its response's head has come (a WebSocket's connect command)."""
        command = {"id": 1, "connect": connect}
        host = f"Host: 127.0.0.1:{port}\r\n"
        if self.transport == "http_stream":
            body = encodeCommands(self.codec, [command])
            kind = "application/octet-stream" if self.codec == "protobuf" else "application/json"
            return (f"POST /connection/http_stream HTTP/1.1\r\n{host}Content-Type: {kind}\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n").encode() + body, b""
        if self.transport == "sse":
            query = urllib.parse.urlencode({"cf_connect": orjson.dumps(command).decode()})
            return f"GET /connection/sse?{query} HTTP/1.1\r\n{host}\r\n".encode(), b""
        subprotocol = f"centrifuge-{self.codec}"
        upgrade = (f"GET /connection/websocket HTTP/1.1\r\n{host}Upgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                   f"Sec-WebSocket-Protocol: {subprotocol}\r\n\r\n").encode()
        payload = encodeCommands(self.codec, [command])
        opcode = 0x2 if self.codec == "protobuf" else 0x1
        # A masked client frame (a zero mask leaves the payload as it is), its length in the fewest bytes.
        size = len(payload)
        length = bytes((0x80 | size,)) if size < 126 else bytes((0x80 | 126,)) + size.to_bytes(2, "big")
        return upgrade, bytes((0x80 | opcode,)) + length + b"\0" * 4 + payload

    def readSome(self) -> bool:
        """Read what the socket has (blocking until something comes) and parse it; False at the end."""
        data = self.sock.recv(1 << 20)
        if not data:
            return False
        self.feed(data)
        return True

    def feed(self, data: bytes) -> None:
        self._buffer += data
        if not self._head:
            head, found, rest = self._buffer.partition(b"\r\n\r\n")
            if not found:
                return
            status = int(head.split(b" ", 2)[1])
            assert status in (101, 200), head
            self._head, self._buffer = True, rest
            if self._afterHead:
                self.sock.sendall(self._afterHead)
        parse = self._frames if self.transport == "websocket" else self._chunks
        parse()

    def _chunks(self) -> None:
        buffer = self._buffer
        while True:
            line, found, rest = buffer.partition(b"\r\n")
            if not found:
                break
            size = int(line, 16)
            if len(rest) < size + 2:
                break
            assert rest[size:size + 2] == b"\r\n", "a chunk longer than its size line says"
            body, buffer = rest[:size], rest[size + 2:]
            if self.transport == "sse":
                self._sse(body)
            elif body:
                self._unit(split_varint(body, 1 << 24) if self.codec == "protobuf" else self._lines(body))
        self._buffer = buffer

    def _lines(self, body: bytes) -> list[bytes]:
        assert body.endswith(b"\n"), "an http_stream JSON chunk holds whole newline-terminated messages"
        return body[:-1].split(b"\n")

    def _sse(self, body: bytes) -> None:
        # The stream opens with a bare CRLF (onopen); every chunk after it holds whole events.
        text = (self._events + body).lstrip(b"\r\n")
        assert text.endswith(b"\n\n") or not text, f"an SSE chunk cut inside an event: {text[-40:]!r}"
        self._events = b""
        if text:
            events = text[:-2].split(b"\n\n")
            assert all(event.startswith(b"data: ") for event in events), events[:3]
            self._unit([event[len(b"data: "):] for event in events])

    def _frames(self) -> None:
        buffer = self._buffer
        while len(buffer) >= 2:
            first, second = buffer[0], buffer[1]
            assert first & 0x70 == 0 and second & 0x80 == 0, "no RSV bits, no mask from a server"
            length, start = second, 2
            if second == 126:
                length, start = int.from_bytes(buffer[2:4], "big"), 4
            elif second == 127:
                length, start = int.from_bytes(buffer[2:10], "big"), 10
            if len(buffer) < start + length:
                break
            payload, buffer = buffer[start:start + length], buffer[start + length:]
            opcode = first & 0x0F
            assert first & 0x80, "the server sends whole messages, one frame each"
            assert opcode == (0x2 if self.codec == "protobuf" else 0x1), (opcode, payload[:100], len(self.numbers))
            self._unit(split_varint(payload, 1 << 24) if self.codec == "protobuf" else payload.split(b"\n"))
        self._buffer = buffer

    def _unit(self, messages: list[bytes]) -> None:
        counted = False
        for message in messages:
            reply = decodeReply(self.codec, message)
            pub = reply.get("push", {}).get("pub")
            if pub is None:
                self.other.append(reply)
                continue
            self.numbers.append(orjson.loads(pub["data"])["n"])
            if not counted:
                self.units, counted = self.units + 1, True

    def close(self) -> None:
        self.sock.close()


class ReadingThread:
    """Reads the given readers as data comes, in a thread, until stopped."""

    def __init__(self, readers: list[Reader]) -> None:
        self._selector = selectors.DefaultSelector()
        for reader in readers:
            reader.sock.setblocking(False)
            self._selector.register(reader.sock, selectors.EVENT_READ, reader)
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                for key, _ in self._selector.select(0.05):
                    try:
                        data = key.fileobj.recv(1 << 20)  # type: ignore[union-attr]
                    except BlockingIOError:
                        continue
                    if not data:
                        self._selector.unregister(key.fileobj)
                        continue
                    key.data.feed(data)
        except BaseException as e:  # a parse assertion: reported by stop()
            self.error = e

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._selector.close()
        if self.error is not None:
            raise self.error


@pytest.mark.parametrize(("transport", "codec"), CASES, ids=[f"{t}-{c}" for t, c in CASES])
def test_stalledReaderHoldsNobodyBackThenGetsEverythingCoalesced(server: ServerProcess, transport: str,
                                                                 codec: str) -> None:
    """
    One subscriber stops reading (a 4 KiB receive window, never read) while ~5 MB of publications go to its
    channel: the others receive every publication, in order, meanwhile. Then it reads: everything that queued
    behind its busy socket arrives complete and in order, in fewer chunks or WebSocket messages than publications
    (coalesced), and it was never disconnected.
    """
    channel = f"stall-{transport}-{codec}"
    stalled = Reader(transport, codec, server.port, channel, receiveBuffer=4096)
    healthy = [Reader(transport, codec, server.port, channel) for _ in range(HEALTHY)]
    reading = ReadingThread(healthy)
    api = API(server.port, channel=channel, size=PAD)
    try:
        for number in range(PUBLICATIONS):
            api.publish(number)
        everyone = waitFor(lambda: all(len(r.numbers) >= PUBLICATIONS for r in healthy) or reading.error is not None,
                           WAIT)
    finally:
        reading.stop()
        api.close()
    assert everyone, f"healthy readers got {[len(r.numbers) for r in healthy]} of {PUBLICATIONS}"
    for reader in healthy:
        assert reader.numbers == list(range(PUBLICATIONS))
        reader.close()
    assert stalled.numbers == [] or stalled.numbers == list(range(len(stalled.numbers)))
    deadline = time.monotonic() + WAIT
    stalled.sock.settimeout(WAIT)
    while len(stalled.numbers) < PUBLICATIONS and time.monotonic() < deadline:
        assert stalled.readSome(), f"the stream ended after {len(stalled.numbers)} publications: {stalled.other}"
    stalled.close()
    assert stalled.numbers == list(range(PUBLICATIONS))
    assert [r for r in stalled.other if "disconnect" in r.get("push", {})] == []
    print(f"\n{transport}/{codec}: the stalled reader got {PUBLICATIONS} publications in {stalled.units} units; "
          f"the healthy ones in {[r.units for r in healthy]}")
    assert stalled.units < PUBLICATIONS, "what queued behind the busy socket did not go out coalesced"

