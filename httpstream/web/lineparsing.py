# -*- test-case-name: tests.web.test_lineparsing -*-
"""
Twisted's HTTP/1.1 channel, parsing what it has received in place instead of copying it line by line.

L{twisted.protocols.basic.LineReceiver}, under L{HTTPChannel}, takes each line with C{buffer.split(b"\\r\\n", 1)}:
every header line copies all that follows it. And while a request is answered, the channel moves what follows it
(the next pipelined requests) to a list, joins it again when the response is done and feeds it back through the
same parser. A connection carrying many small pipelined requests (C{POST /emulation} in bursts, up to 16 KiB held
plus one 64 KiB read) so copied that tail some seven times per request: a quarter of the forwarding node's CPU in
C{bench.emulation}'s cross-node burst, and quadratic in what is queued.

Here the received bytes stay in one buffer with an offset: a line is the only slice taken, a request body is handed
over cut to its C{Content-Length} (what follows stays unparsed), and bytes that arrive while a request is being
answered stay where they are until C{requestDone} puts the channel back in line mode, with the same 16 KiB bound
(past it, the socket is no longer read) as Twisted's list, but kept also while the response waits for a peer that
does not read (where Twisted's channel reads on without bound). Everything else (header limits, chunked bodies, C{Expect},
persistence, the 400s) is Twisted's own code, called exactly as L{LineReceiver.dataReceived} calls it.
"""

from __future__ import annotations

from typing import Any

from twisted.web.http import HTTPChannel, _IdentityTransferDecoder

__all__ = ["InPlaceLineChannel"]

DELIMITER = b"\r\n"


class InPlaceLineChannel(HTTPChannel):
    """
    An L{HTTPChannel} whose C{dataReceived} parses in place (see the module docstring); a drop-in replacement.

    @ivar _received: bytes received; those from C{_at} on are not parsed yet.
    """

    _received = b""
    _at = 0

    def dataReceived(self, data: bytes) -> None:
        self.resetTimeout()  # type: ignore[no-untyped-call]  # HTTPChannel's own first step (TimeoutMixin)
        self._parse(data)

    def setLineMode(self, extra: bytes = b"") -> None:
        self.line_mode = 1
        # requestDone: the next pipelined request may already be here, kept in place, whether or not Twisted's list
        # got anything. Through dataReceived, as LineReceiver does, so that a subclass sees the bytes resume.
        if extra or (self._at < len(self._received) and not self._busyReceiving):
            self.dataReceived(extra)

    def _finishRequestBody(self, data: bytes) -> None:
        # A chunked body's decoder hands back what followed its last chunk (a body of known length was cut to size,
        # so it has nothing to hand back). Twisted parks it in its list, to be parsed after the response; here it
        # goes back in front of the unparsed bytes, ahead of anything that arrives while the request is answered.
        if data:
            self._received = data + self._received[self._at:]
            self._at = 0
        HTTPChannel._finishRequestBody(self, b"")

    def clearLineBuffer(self) -> bytes:
        rest = self._received[self._at:]
        self._received, self._at = b"", 0
        return rest

    def _parse(self, data: bytes) -> Any:
        if data:
            # Only the unparsed part is kept: one copy per read, none per line.
            self._received = self._received[self._at:] + data if self._received else data
            self._at = 0
        if self._busyReceiving:
            return None  # the loop below, further up the stack, goes on with it
        try:
            self._busyReceiving = True
            return self._loop()
        finally:
            self._busyReceiving = False

    def _loop(self) -> Any:
        limit = self.MAX_LENGTH
        while self._at < len(self._received) and not self.paused:
            received, at = self._received, self._at
            if self.line_mode:
                end = received.find(DELIMITER, at)
                if end == -1:
                    if len(received) - at >= limit + len(DELIMITER):
                        line = self.clearLineBuffer()
                        return self.lineLengthExceeded(line)  # type: ignore[no-untyped-call]
                    return None
                if end - at > limit:
                    exceeded = self.clearLineBuffer()
                    return self.lineLengthExceeded(exceeded)  # type: ignore[no-untyped-call]
                self._at = end + len(DELIMITER)
                why = self.lineReceived(received[at:end])  # type: ignore[no-untyped-call]
                transport: Any = self.transport
                if why or transport and transport.disconnecting:
                    return why
            elif self._handlingRequest:
                # Pipelined bytes behind a request being answered: kept here for requestDone (Twisted keeps them in
                # its list), and as there, past 16 KiB the socket is not read until the response is done. Also while
                # the response waits for the transport (Twisted's channel reads on then, without bound: its own
                # pause left the socket read, as a request was being answered); the socket is read again when the
                # request is done (requestDone) or, if it was done meanwhile, when the transport has sent it all
                # (resumeProducing).
                if len(received) - at > self._optimisticEagerReadSize:
                    self._networkProducer.pauseProducing()
                return None
            else:
                decoder = self._transferDecoder
                if type(decoder) is _IdentityTransferDecoder and decoder.contentLength is not None:
                    # A body of known length: just that, so that what follows is not copied along.
                    end = at + decoder.contentLength
                else:
                    end = len(received)  # chunked: the decoder keeps its own buffer
                chunk = received[at:end] if at or end < len(received) else received
                self._at = min(end, len(received))
                self.rawDataReceived(chunk)
        return None
