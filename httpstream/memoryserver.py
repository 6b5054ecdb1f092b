# -*- test-case-name: tests.web.test_memoryserver -*-
"""
A whole node serving HTTP in memory: the service L{httpstream.tap.makeService} builds (node, Klein app, Site, the
request and channel classes with their limits and deadlines) on a L{MemoryReactorClock}, with each HTTP connection
an in-memory pair of L{twisted.test.iosim.FakeTransport}s. No socket, no process, no real time: a test of a route,
a status, a header, CORS or a limit runs in milliseconds and sees exactly the bytes a socket would carry::

    server = MemoryServer({"http_stream": True, "allow_anonymous_connect_without_token": True})
    response = server.request(b"GET", b"/health")
    assert response.status == 200 and response.body == b"{}"
    stream = server.open(b"POST", b"/connection/http_stream", body=b'{"id":1,"connect":{}}')
    assert "connect" in stream.received()[0]
    server.advance(25)  # time passes: the server's ping goes out
    assert stream.received()[-1] == {}
    server.close()

Bytes move only when the test lets them: every call that sends (L{MemoryServer.request}, L{MemoryServer.open},
L{MemoryConnection.send}) and L{MemoryServer.advance} runs the reactor's due calls and moves bytes both ways until
nothing more happens. Only the memory engine can run here (a Redis engine would need real connections); flow
control is not simulated (a peer here reads everything at once), so slow-reader behaviour needs a real socket.
"""

from __future__ import annotations

import itertools
from typing import Any, Mapping, Optional, Union

import orjson
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.test import iosim as _iosim
from zope.interface import implementer

from httpstream.config import Config
from httpstream.logs import threshold
from httpstream.protocol import client_pb2
from httpstream.protocol.framing import split_varint
from httpstream.tap import HTTPStreamService, makeService

__all__ = ["MemoryConnection", "MemoryServer", "Response"]

Text = Union[str, bytes]

# twisted.test.iosim and MemoryReactorClock carry no annotations: reached through Any, so that what this module
# builds on them stays checked.
iosim: Any = _iosim
_MemoryReactorClock: Any = MemoryReactorClock

# The peer ports of in-memory connections: distinct, as a real client's would be.
_peerPorts = itertools.count(40000)


def _bytes(value: Text) -> bytes:
    return value.encode("latin-1") if isinstance(value, str) else value


class Response:
    """
    An HTTP response as a client reads it off the connection.

    @ivar status: the status code (0 until the status line has arrived).
    @ivar headers: the headers, names lower-cased, values as text (the last one of a repeated name).
    @ivar rawHeaders: every header line as sent, in order: (name, value) bytes.
    @ivar chunks: the body's HTTP chunks as they arrived (a chunked response), so a test sees chunk boundaries.
    @ivar body: the body so far (de-chunked).
    @ivar complete: the whole response has arrived (its last chunk, all of its length, or its connection closed).
    """

    def __init__(self, method: bytes) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.rawHeaders: list[tuple[bytes, bytes]] = []
        self.chunks: list[bytes] = []
        self.body = b""
        self.complete = False
        self._method = method

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.headers!r} {self.body[:200]!r}{'' if self.complete else ' ...'}>"


class _ResponseReader(Protocol):
    """The client side of one connection: parses one HTTP/1.1 response incrementally, keeps whatever follows."""

    def __init__(self, response: Response) -> None:
        self.response = response
        self.closed = False
        self.after = b""  # bytes past the response head of a 101 (the upgraded protocol's)
        self._buffer = b""
        self._mode = "head"  # then "length", "chunked", "close" (body until the connection ends), "done"
        self._remaining = 0

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        self._parse()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closed = True
        if self._mode == "close":
            self._finish()

    def _finish(self) -> None:
        self._mode = "done"
        self.response.complete = True

    def _parse(self) -> None:
        response = self.response
        while True:
            if self._mode == "done":
                self.after += self._buffer
                self._buffer = b""
                return
            if self._mode == "head":
                head, found, rest = self._buffer.partition(b"\r\n\r\n")
                if not found:
                    return
                self._buffer = rest
                self._readHead(head)
            elif self._mode == "length":
                part, self._buffer = self._buffer[: self._remaining], self._buffer[self._remaining :]
                response.body += part
                self._remaining -= len(part)
                if self._remaining:
                    return
                self._finish()
            elif self._mode == "close":
                response.body += self._buffer
                self._buffer = b""
                return
            elif not self._readChunk():
                return

    def _readHead(self, head: bytes) -> None:
        response = self.response
        lines = head.split(b"\r\n")
        response.status = int(lines[0].split()[1])
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            response.rawHeaders.append((name.strip(), value.strip()))
            response.headers[name.strip().decode("latin-1").lower()] = value.strip().decode("latin-1")
        if response._method == b"HEAD" or response.status < 200 or response.status in (204, 304):
            self._finish()
        elif response.headers.get("transfer-encoding", "").lower() == "chunked":
            self._mode = "chunked"
        elif "content-length" in response.headers:
            self._remaining = int(response.headers["content-length"])
            self._mode = "length"
            if not self._remaining:
                self._finish()
        else:
            self._mode = "close"

    def _readChunk(self) -> bool:
        """Take one whole chunk off the buffer; False when it has not all arrived yet."""
        sizeLine, found, rest = self._buffer.partition(b"\r\n")
        if not found:
            return False
        size = int(sizeLine.split(b";")[0], 16)
        if size == 0:
            # The last chunk, then (no trailers here) an empty line.
            if not rest.startswith(b"\r\n"):
                return False
            self._buffer = rest[2:]
            self._finish()
            return True
        if len(rest) < size + 2:
            return False
        data, self._buffer = rest[:size], rest[size + 2 :]
        self.response.chunks.append(data)
        self.response.body += data
        return True


class MemoryConnection:
    """
    One in-memory HTTP connection to a L{MemoryServer} and the response it is reading.

    @ivar response: the L{Response} as it has arrived so far.
    """

    def __init__(self, server: "MemoryServer", response: Response) -> None:
        self._server = server
        self._reader = _ResponseReader(response)
        self.response = response
        peer = IPv4Address("TCP", "127.0.0.1", next(_peerPorts))
        site: Any = server.site
        protocol = site.buildProtocol(peer)
        self._clientIO = iosim.FakeTransport(self._reader, isServer=False, hostAddress=peer, peerAddress=server.address)
        serverIO = iosim.FakeTransport(protocol, isServer=True, hostAddress=server.address, peerAddress=peer)
        self._pump = iosim.connect(protocol, serverIO, self._reader, self._clientIO, greet=False, clock=server.reactor)

    @property
    def status(self) -> int:
        return self.response.status

    @property
    def headers(self) -> dict[str, str]:
        return self.response.headers

    @property
    def closed(self) -> bool:
        """The connection has ended (closed by either side)."""
        return self._reader.closed

    @property
    def upgraded(self) -> bytes:
        """What the server sent after a 101 response's head: the upgraded protocol's bytes (a WebSocket's frames)."""
        return self._reader.after

    def send(self, data: bytes) -> None:
        """Write bytes as the client and let the server act on them."""
        self._clientIO.write(data)
        self._server.settle()

    def close(self) -> None:
        """Close the connection from the client's side, as a browser leaving the page does."""
        self._clientIO.loseConnection()
        self._server.settle()

    def received(self) -> list[Any]:
        """
        The messages of the streamed body so far, decoded by its content type: for C{application/json}, one dict
        per line (C{orjson.loads}); for C{application/octet-stream}, a C{client_pb2.Reply} per varint-delimited
        frame (a 0-byte frame, the Protobuf ping, is an empty Reply); for C{text/event-stream}, the JSON of each
        event's C{data}. Whole messages only: chunks always end on a message boundary.
        """
        contentType = self.response.headers.get("content-type", "").split(";")[0].strip()
        out: list[Any] = []
        if contentType == "application/octet-stream":
            for chunk in self.response.chunks:
                for frame in split_varint(chunk, 1 << 24):
                    reply = client_pb2.Reply()
                    reply.ParseFromString(frame)
                    out.append(reply)
        elif contentType == "text/event-stream":
            for event in self.response.body.split(b"\n\n"):
                data = [line[5:].lstrip() for line in event.split(b"\n") if line.startswith(b"data:")]
                if data:
                    out.append(orjson.loads(b"\n".join(data)))
        else:
            for chunk in self.response.chunks:
                out.extend(orjson.loads(line) for line in chunk.split(b"\n") if line)
        return out

    def _pumpOnce(self) -> bool:
        return bool(self._pump.flush())

    def _pending(self) -> bool:
        io = self._pump
        return bool(io.serverIO.stream or io.clientIO.stream) or (
            (io.serverIO.disconnecting or io.clientIO.disconnecting)
            and not (io.serverIO.disconnected and io.clientIO.disconnected)
        )


def encodeRequest(
    method: Text, path: Text, headers: Optional[Mapping[Text, Text]] = None, body: bytes = b"", host: bytes = b""
) -> bytes:
    """
    One HTTP/1.1 request's bytes: the request line, C{Host} (unless given), C{Content-Length} (unless a length
    or a transfer encoding is given), the headers, and the body as given.
    """
    given = {_bytes(name).lower(): _bytes(value) for name, value in (headers or {}).items()}
    lines = [_bytes(method) + b" " + _bytes(path) + b" HTTP/1.1"]
    if b"host" not in given:
        lines.append(b"Host: " + host)
    if b"content-length" not in given and b"transfer-encoding" not in given:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    lines += [_bytes(name) + b": " + _bytes(value) for name, value in (headers or {}).items()]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


@implementer(ILogObserver)
class _LogCapture:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def __call__(self, event: LogEvent) -> None:
        text = formatEvent(event)
        failure = event.get("log_failure")
        if isinstance(failure, Failure):
            text += "\n" + failure.getTraceback()
        self.lines.append(text)


class MemoryServer:
    """
    A node started by L{makeService} on a L{MemoryReactorClock}, served over in-memory connections.

    @ivar reactor: the reactor and clock everything runs on; C{advance} moves its time.
    @ivar service: the L{HTTPStreamService}, started (stopped by L{close}).
    @ivar node: the service's node (its clients, hub and metrics).
    @ivar site: the twisted.web Site every connection is served by.
    @ivar address: the address the server listens on (C{config.port}, on 127.0.0.1 when no address is set).
    """

    def __init__(self, config: Union[Mapping[str, Any], Config], reactor: Optional[MemoryReactorClock] = None) -> None:
        """
        @param config: Centrifugo's keys (as a config file holds them) or a L{Config}.
        @param reactor: the reactor to run on (default: a new one, its clock at 0).
        """
        self.reactor: MemoryReactorClock = reactor if reactor is not None else _MemoryReactorClock()
        self._logs = _LogCapture()
        self._level = threshold.level
        globalLogPublisher.addObserver(self._logs)
        self.service: HTTPStreamService = makeService({"config": config}, reactor=self.reactor)
        self.node = self.service.node
        self.site = self.service.site
        self.service.startService()
        self.address = IPv4Address("TCP", self.service.config.address or "127.0.0.1", self.service.config.port)
        self._connections: list[MemoryConnection] = []
        self._closed = False

    @property
    def logged(self) -> str:
        """Everything the server logged since it was built (at its C{log_level}), one event per line."""
        return "\n".join(self._logs.lines)

    def connect(self, method: Text = b"GET") -> MemoryConnection:
        """
        A new connection with nothing sent yet: write a request with L{MemoryConnection.send} (raw bytes, for
        what L{open} does not write: chunked uploads, a request trickled in parts).

        @param method: the method of the request that will be sent (a response to HEAD has no body).
        """
        connection = MemoryConnection(self, Response(_bytes(method).upper()))
        self._connections.append(connection)
        return connection

    def open(
        self, method: Text, path: Text, headers: Optional[Mapping[Text, Text]] = None, body: bytes = b""
    ) -> MemoryConnection:
        """Send one request on a new connection and return it, its response as far as it has come (a stream)."""
        connection = self.connect(method)
        host = f"{self.address.host}:{self.address.port}".encode()
        connection.send(encodeRequest(method, path, headers, body, host=host))
        return connection

    def request(
        self, method: Text, path: Text, headers: Optional[Mapping[Text, Text]] = None, body: bytes = b""
    ) -> Response:
        """
        Send one request on a new connection and return its whole response; the connection is then closed.

        @raise AssertionError: the response has not ended (a stream: use L{open}).
        """
        connection = self.open(method, path, headers, body)
        response = connection.response
        assert response.complete, f"{_bytes(method)!r} {_bytes(path)!r}: the response has not ended: {response!r}"
        connection.close()
        return response

    def advance(self, seconds: float = 0) -> None:
        """Let C{seconds} of time pass (the calls due run), then move bytes until nothing more happens."""
        self.reactor.advance(seconds)
        self.settle()

    def settle(self) -> None:
        """Run the calls due now and move bytes on every connection until no connection moves any more."""
        moved = True
        while moved:
            moved = False
            for connection in list(self._connections):
                if connection._pumpOnce():
                    moved = True
                if connection._pump.clientIO.disconnected and connection._pump.serverIO.disconnected:
                    self._connections.remove(connection)
            # A call run by one connection's pump may have written to a connection pumped before it.
            moved = moved or any(connection._pending() for connection in self._connections)

    def close(self) -> None:
        """Stop the service as twistd would (clients disconnected 3001), close every connection, restore the log."""
        if self._closed:
            return
        self._closed = True
        stopped = self.service.stopService()
        self.settle()
        # The stop is bounded by shutdown_timeout: let it run out rather than leave the service half stopped.
        if not stopped.called:
            self.advance(self.service.config.shutdown_timeout)
        for connection in list(self._connections):
            connection.close()
        globalLogPublisher.removeObserver(self._logs)
        threshold.level = self._level

    def __enter__(self) -> "MemoryServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def connections(self) -> list[MemoryConnection]:
        """The connections not yet closed on both sides."""
        return list(self._connections)
