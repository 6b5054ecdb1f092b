# -*- test-case-name: tests.web.test_httpchannel -*-
"""
The HTTP/1.1 channel every connection starts on, with read deadlines for the request phase (Go's
``ReadHeaderTimeout`` and ``ReadTimeout``, which Centrifugo sets to 10 s and 30 s).

Twisted's channel has only an idle timeout, reset by every byte: a peer that sends one byte a second (slowloris)
holds its connection, its parser state and a request object for ever. Here a request's headers must be complete
within C{readHeaderTimeout} of its first byte, and the whole request (its body too) within C{readTimeout}; a peer
that misses either gets 408 and the connection is closed. As in Go, a connection's first request is timed from the
connection's start, so one that sends nothing (or trickles its TLS handshake, below this channel) is closed, quietly,
at the header deadline. The deadlines end once a request has been read: the long-lived responses (http_stream, SSE)
and a WebSocket taken over by autobahn are past them.

A later request on a keep-alive connection that arrives whole in one read (nearly all of them) schedules no timer.
"""

from __future__ import annotations

from typing import Callable, Optional

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IDelayedCall, ITransport
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.http_headers import Headers

from httpstream.directwrite import writeNow
from httpstream.web.lineparsing import InPlaceLineChannel

from httpstream.logs import Logger

log = Logger()

REQUEST_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


class ReadDeadlineChannel(InPlaceLineChannel):
    """
    An L{HTTPChannel} (parsing in place: L{InPlaceLineChannel}) whose requests must be read within deadlines
    (seconds; 0 turns one off).

    @cvar readHeaderTimeout: the request line and headers, from the request's first byte (from the connection's
        start for its first request).
    @cvar readTimeout: the whole request, body included, from the same moment (it also bounds the headers).
    """

    readHeaderTimeout = 10.0
    readTimeout = 30.0

    # HTTPFactory.buildProtocol sets it to the site's reactor's callLater (TimeoutMixin's own uses the global one).
    callLater: Callable[[float, Callable[[], None]], IDelayedCall]

    # True from a request's first byte (the connection's start, for its first request) until it has been read whole.
    _reading = False
    _headersRead = False
    _readCall: Optional[IDelayedCall] = None
    _silent = True  # nothing received on this connection yet

    # The overrides call HTTPChannel's methods by name, not through super(): they are unannotated, and the types
    # gate (untyped_calls_exclude) only recognises a call to Twisted's code when it names Twisted's class.
    def connectionMade(self) -> None:
        HTTPChannel.connectionMade(self)
        limit = self._headerLimit()
        if limit:
            self._reading = True
            self._readCall = self.callLater(limit, self._readTimedOut)

    def _headerLimit(self) -> float:
        header, whole = self.readHeaderTimeout, self.readTimeout
        if header and whole:
            return min(header, whole)
        return header or whole

    def dataReceived(self, data: bytes) -> None:
        self._silent = False
        # While a request is being answered the channel only buffers what comes next (a pipelined request, or
        # nothing at all for a stream): that is not a request being read yet.
        if not self._handlingRequest:
            self._reading = True
        InPlaceLineChannel.dataReceived(self, data)
        if not self._reading and self._midRequest():
            # A request begun behind one that was read (and answered) within this read: pipelined, it is timed too.
            self._reading = True
        if self._reading and self._readCall is None:
            # The request began in this read (any earlier one would have armed the timer): its clock starts now.
            limit = self.readTimeout if self._headersRead else self._headerLimit()
            if limit:
                self._readCall = self.callLater(limit, self._readTimedOut)

    def _midRequest(self) -> bool:
        """Whether a request is partly received (its first bytes, its request line, its headers or its body)."""
        transport = self.transport
        if self._handlingRequest or transport is None or getattr(transport, "disconnecting", False):
            return False
        return bool(self._receivedHeaderSize or not self.line_mode or self._at < len(self._received))

    def allHeadersReceived(self) -> None:
        self._headersRead = True
        call = self._readCall
        if call is not None and self.length != 0:
            # Now the body's deadline, which counts from the same first byte.
            if self.readTimeout:
                call.delay(self.readTimeout - self._headerLimit())
            else:
                call.cancel()
                self._readCall = None
        HTTPChannel.allHeadersReceived(self)

    def allContentReceived(self) -> None:
        # Before the request is rendered: a response that lives on (a stream) is past its deadlines.
        self._stopReading()
        HTTPChannel.allContentReceived(self)

    def loseConnection(self) -> None:
        # Closing already (a 400, a timeout, a response on a non-persistent connection): nothing more to time.
        self._stopReading()
        HTTPChannel.loseConnection(self)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._stopReading()
        HTTPChannel.connectionLost(self, reason)

    # Set by the request while it writes a response that is only its head (see UnbrandedRequest.write).
    headOnly = False

    def writeHeaders(self, version: bytes, code: bytes, reason: bytes, headers: Headers) -> None:
        if not self.headOnly:
            HTTPChannel.writeHeaders(self, version, code, reason, headers)
            return
        # A 204, an empty error, a stream's head: sent now, in one send() when nothing waits before it, rather
        # than after a poll and two epoll_ctl (directwrite.py). A head with a body keeps Twisted's buffer,
        # so that head and body leave together.
        sequence = [version, b" ", code, b" ", reason, b"\r\n"]
        for name, values in headers.getAllRawHeaders():
            for value in values:
                sequence.extend((name, b": ", value, b"\r\n"))
        sequence.append(b"\r\n")
        writeNow(self.transport, b"".join(sequence))

    def _stopReading(self) -> None:
        self._reading = self._headersRead = False
        call, self._readCall = self._readCall, None
        if call is not None and call.active():
            call.cancel()

    def _readTimedOut(self) -> None:
        self._readCall = None
        if self._silent:
            # Browsers open spare connections they may never use: routine, and nothing to answer.
            log.debug("HTTP client {peer}: nothing received within {limit}s; connection closed",
                      peer=_peer(self.transport), limit=self._headerLimit())
            self.loseConnection()
            return
        if self._headersRead:
            part, key, limit = "body", "http_server_read_timeout", self.readTimeout
        else:
            part, key, limit = "headers", "http_server_read_header_timeout", self._headerLimit()
        log.info(
            "HTTP client {peer}: request {part} not read within {limit}s ({key}); connection closed",
            peer=_peer(self.transport), part=part, limit=limit, key=key,
        )
        transport = self.transport
        assert transport is not None  # connectionLost cancels the deadline
        transport.write(REQUEST_TIMEOUT)
        self.loseConnection()


def _peer(transport: ITransport | None) -> str:
    address = transport.getPeer() if transport is not None else None
    if isinstance(address, (IPv4Address, IPv6Address)):
        return f"{address.host}:{address.port}"
    return str(address)


def readDeadlineChannel(readHeaderTimeout: float, readTimeout: float) -> type[ReadDeadlineChannel]:
    """A L{ReadDeadlineChannel} class with these deadlines, for a Site's C{protocol}."""
    header, whole = readHeaderTimeout, readTimeout

    class Channel(ReadDeadlineChannel):
        readHeaderTimeout = header
        readTimeout = whole

    Channel.__name__ = Channel.__qualname__ = ReadDeadlineChannel.__name__
    return Channel
