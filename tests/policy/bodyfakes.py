"""
A fake HTTP response (C{IResponse}'s C{code}, C{length} and C{deliverBody}) whose body arrives in chunks, and a
fake HTTP client that answers every POST with one; for the bounded readers of backend answers.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.iweb import UNKNOWN_LENGTH


class ChunkedResponse:
    """
    Delivers C{chunks} one at a time while the reader has not closed the connection, then ends the body (with
    C{end}, or never when C{end} is None: a backend that stalls). It is its own transport, so it sees the reader's
    C{loseConnection} and stops delivering.
    """

    length = UNKNOWN_LENGTH

    def __init__(self, code: int, chunks: Iterable[bytes], end: Optional[Exception] = ResponseDone()) -> None:
        self.code = code
        self._chunks = chunks
        self._end = end
        self.delivered = 0
        self.lost = False
        self.protocol: Optional[Protocol] = None

    def deliverBody(self, protocol: Protocol) -> None:
        self.protocol = protocol
        protocol.makeConnection(self)  # type: ignore[arg-type]
        for chunk in self._chunks:
            if self.lost:
                return
            protocol.dataReceived(chunk)
            self.delivered += 1
        if self._end is not None and not self.lost:
            protocol.connectionLost(Failure(self._end))

    def loseConnection(self) -> None:
        self.lost = True


class OneAnswer:
    """An HTTP client (L{httpstream.policy.proxy.HTTPPoster}) answering every POST with the next of C{responses}."""

    def __init__(self, *responses: ChunkedResponse) -> None:
        self.responses = list(responses)
        self.posted: list[tuple[str, Optional[bytes]]] = []

    def post(self, url: str, data: Optional[bytes] = None, **kwargs: Any) -> "Deferred[Any]":
        self.posted.append((url, data))
        return succeed(self.responses.pop(0))
