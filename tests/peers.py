"""
Raw subscribers for the slow and dead peer tests: one socket per connection on any of the three transports,
connected with a token whose C{channels} claim subscribes it server-side, so no command follows the connect.

What a subscriber receives is scanned, not parsed: every publication's data ends with C{"n":N,"ts":T}, and
chunk headers (http_stream), C{data:} prefixes (SSE) and frame headers (WebSocket) only ever sit between whole
messages, so a search over the bytes finds each one whatever the framing.
"""

from __future__ import annotations

import base64
import http.client
import os
import re
import selectors
import socket
import struct
import threading
import time
import urllib.parse
from typing import Any, Callable

import jwt
import orjson

from tests.serverprocess import BASE_CONFIG

TRANSPORTS = ("http_stream", "sse", "websocket")
API_KEY = "slow-peers-api-key-0123456789abcdef"
CHANNEL = "slow"
MARK = re.compile(rb'"n":(\d+),"ts":([0-9.]+)\}')
CLIENT_ID = re.compile(rb'"connect":\{"client":"([0-9a-f-]+)"')


def token(user: str, channels: list[str]) -> str:
    return jwt.encode({"sub": user, "channels": channels}, BASE_CONFIG["token_hmac_secret_key"], algorithm="HS256")


def openSocket(port: int, receiveBuffer: int = 0, host: str = "127.0.0.1") -> socket.socket:
    """A connected socket; with C{receiveBuffer}, a receive buffer that small (set first, so the window is small)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receiveBuffer:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receiveBuffer)
    sock.settimeout(20)
    sock.connect((host, port))
    return sock


def _wsFrame(payload: bytes, opcode: int = 0x1) -> bytes:
    """A masked client frame."""
    mask = os.urandom(4)
    length = len(payload)
    if length < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


class Subscriber:
    """
    One connection, opened and connected (its connect reply read) by the constructor.

    @ivar clientID: the client id from the connect reply.
    @ivar received: publication number -> latency (seconds from its C{ts} to when its bytes were read).
    @ivar ended: True once the server closed the connection (EOF or reset).
    """

    def __init__(self, transport: str, port: int, user: str, channels: list[str], receiveBuffer: int = 0,
                 host: str = "127.0.0.1") -> None:
        self.transport = transport
        self.sock = openSocket(port, receiveBuffer, host)
        self.received: dict[int, float] = {}
        self.order: list[int] = []
        self.ended = False
        self._tail = b""
        connect = orjson.dumps({"id": 1, "connect": {"token": token(user, channels)}})
        host = f"Host: {host}:{port}\r\n"
        if transport == "http_stream":
            self.sock.sendall(
                b"POST /connection/http_stream HTTP/1.1\r\n" + host.encode()
                + b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(connect) + connect
            )
        elif transport == "sse":
            query = urllib.parse.urlencode({"cf_connect": connect.decode()})
            self.sock.sendall(f"GET /connection/sse?{query} HTTP/1.1\r\n{host}\r\n".encode())
        else:
            key = base64.b64encode(os.urandom(16)).decode()
            self.sock.sendall(
                (f"GET /connection/websocket HTTP/1.1\r\n{host}Upgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                 "Sec-WebSocket-Protocol: centrifuge-json\r\n\r\n").encode()
            )
        head = self._readUntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        if status not in (101, 200):
            raise AssertionError(f"{transport} connect answered {head!r}")
        if transport == "websocket":
            self.sock.sendall(_wsFrame(connect))
        while not (found := CLIENT_ID.search(self._buffer)):
            self._fill()
        self.clientID = found.group(1).decode()
        self._tail = self._buffer[found.end():]
        self.sock.setblocking(False)

    _buffer = b""

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError(f"{self.transport}: closed early: {self._buffer!r}")
        self._buffer += data

    def _readUntil(self, marker: bytes) -> bytes:
        while marker not in self._buffer:
            self._fill()
        head, _, self._buffer = self._buffer.partition(marker)
        return head

    def feed(self, data: bytes, now: float) -> None:
        """Record the publications in C{data} (read at C{now})."""
        buffer = self._tail + data
        end = 0
        for match in MARK.finditer(buffer):
            number = int(match.group(1))
            self.received[number] = now - float(match.group(2))
            self.order.append(number)
            end = match.end()
        # What follows the last mark may be the start of the next one.
        self._tail = buffer[max(end, len(buffer) - 256):]

    def readable(self) -> None:
        try:
            data = self.sock.recv(262144)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self.ended = True
            return
        self.feed(data, time.time())

    def drain(self, timeout: float) -> bytes:
        """Read (blocking) until the server ends the connection or C{timeout}; return the bytes' last 4 KiB."""
        self.sock.setblocking(True)
        self.sock.settimeout(timeout)
        last = b""
        try:
            while True:
                data = self.sock.recv(262144)
                if not data:
                    self.ended = True
                    break
                last = (last + data)[-4096:]
        except TimeoutError:
            pass
        except OSError:  # reset: the server aborted a connection it had given up on
            self.ended = True
        return last

    def close(self) -> None:
        self.sock.close()


class ReaderLoop:
    """Reads every given subscriber in one thread until stopped."""

    def __init__(self, subscribers: list[Subscriber]) -> None:
        self.subscribers = subscribers
        self._selector = selectors.DefaultSelector()
        for subscriber in subscribers:
            self._selector.register(subscriber.sock, selectors.EVENT_READ, subscriber)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(0.1):
                subscriber: Subscriber = key.data
                subscriber.readable()
                if subscriber.ended:
                    self._selector.unregister(subscriber.sock)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._selector.close()


class API:
    """The server API over one keep-alive connection (its key is L{API_KEY}); publications of ~C{size} bytes."""

    def __init__(self, port: int, host: str = "127.0.0.1", channel: str = CHANNEL, size: int = 1000) -> None:
        self._connection = http.client.HTTPConnection(host, port, timeout=30)
        self.channel = channel
        self.pad = "x" * size

    def call(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        self._connection.request("POST", f"/api/{method}", orjson.dumps(body), {"X-API-Key": API_KEY})
        response = self._connection.getresponse()
        reply = orjson.loads(response.read())
        if response.status != 200 or "error" in reply:
            raise RuntimeError(f"/api/{method} answered {response.status}: {reply}")
        return reply

    def publish(self, number: int) -> None:
        self.call("publish", {"channel": self.channel, "data": {"pad": self.pad, "n": number, "ts": time.time()}})

    def numClients(self) -> int:
        return self.call("info", {})["result"]["nodes"][0]["num_clients"]

    def close(self) -> None:
        self._connection.close()


class Publisher:
    """Numbered publications at a steady rate."""

    def __init__(self, api: API, rate: float) -> None:
        self.api = api
        self.interval = 1.0 / rate
        self.sent = 0

    def publish(self, count: int = 0, until: Callable[[], bool] = lambda: False, limit: float = 60.0) -> range:
        """Publish C{count} (or until C{until()}, at most C{limit} seconds); return the numbers sent."""
        first = self.sent
        started = time.monotonic()
        deadline = started + limit
        while (self.sent - first < count) if count else not until():
            if time.monotonic() > deadline:
                break
            self.api.publish(self.sent)
            self.sent += 1
            pause = started + (self.sent - first) * self.interval - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        return range(first, self.sent)


def waitFor(condition: Callable[[], bool], timeout: float) -> bool:
    """Poll C{condition} until it holds or C{timeout} seconds pass; its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def rss(pid: int) -> int:
    """The process's resident set, in KiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class RSSSampler:
    """Samples a process's RSS every C{interval} seconds in a thread; C{peak} is the largest seen."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.peak = rss(pid)
        self._stop = threading.Event()
        self._interval = interval
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.peak = max(self.peak, rss(self.pid))
            except (OSError, RuntimeError):
                return

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(5)
        return self.peak


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def answerPings(subscriber: Subscriber) -> None:
    """Be a live WebSocket client for ever: answer every ping (an empty JSON reply) with a pong."""
    sock = subscriber.sock
    sock.setblocking(True)
    sock.settimeout(None)
    buffer = subscriber._buffer  # the frames after the handshake's head, the connect reply first
    while True:
        while len(buffer) < 2 or len(buffer) < _frameLength(buffer):
            data = sock.recv(65536)
            if not data:
                return
            buffer += data
        length = _frameLength(buffer)
        frame, buffer = buffer[:length], buffer[length:]
        if frame[0] & 0x0F == 0x1 and b"{}" in frame[2:].split(b"\n"):
            sock.sendall(_wsFrame(b"{}"))


def _frameLength(buffer: bytes) -> int:
    """The whole length of the (unmasked, server) frame at the start of C{buffer}, or 2**31 while unknown."""
    size = buffer[1] & 0x7F
    if size == 126:
        return 4 + struct.unpack("!H", buffer[2:4])[0] if len(buffer) >= 4 else 1 << 31
    if size == 127:
        return 10 + struct.unpack("!Q", buffer[2:10])[0] if len(buffer) >= 10 else 1 << 31
    return 2 + size


if __name__ == "__main__":
    # python -m tests.peers HOST PORT: a WebSocket client that answers pings, run inside a network namespace.
    import sys

    peer = Subscriber("websocket", int(sys.argv[2]), "ghost", ["slow"], host=sys.argv[1])
    print(peer.clientID, flush=True)
    answerPings(peer)
