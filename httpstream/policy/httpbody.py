# -*- test-case-name: tests.policy.test_httpbody -*-
"""
The body of a backend's HTTP response, read with a size limit: whoever answers our requests (a JWKS endpoint, the
application backend behind the proxies) must not be able to make the node hold an unbounded reply in memory.

A body over the limit fails the read with L{BodyTooLarge} at the first chunk past it, drops what was read, and
closes the connection (the rest is never read, so it cannot go back to a pool half read).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http import PotentialDataLoss

if TYPE_CHECKING:
    from twisted.web.iweb import IResponse

__all__ = ["BodyTooLarge", "readBody"]


class BodyTooLarge(Exception):
    """The response body is larger than the reader's limit."""


class _BoundedBody(Protocol):
    def __init__(self, maxSize: int, finished: "Deferred[bytes]") -> None:
        self._maxSize = maxSize
        self._finished: Optional[Deferred[bytes]] = finished
        self._chunks: list[bytes] = []
        self._size = 0

    def dataReceived(self, data: bytes) -> None:
        if self._finished is None:
            return  # refused or cancelled: whatever still arrives is dropped
        self._size += len(data)
        if self._size > self._maxSize:
            self.stop().errback(BodyTooLarge(f"response larger than {self._maxSize} bytes"))
            return
        self._chunks.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        finished, self._finished = self._finished, None
        if finished is None:
            return
        # A body without a length that ends with the connection is whole (as treq and twisted's readBody take it).
        if reason.check(ResponseDone, PotentialDataLoss):
            finished.callback(b"".join(self._chunks))
        else:
            finished.errback(reason)
        self._chunks = []

    def stop(self) -> "Deferred[bytes]":
        """Stop reading: forget the chunks, close the connection; the caller ends the Deferred returned."""
        finished, self._finished, self._chunks = self._finished, None, []
        assert finished is not None
        if self.transport is not None:
            self.transport.loseConnection()
        return finished


def readBody(response: "IResponse | Any", maxSize: int) -> "Deferred[bytes]":
    """
    Read C{response}'s body (an L{IResponse}: C{deliverBody}) whole, if it is at most C{maxSize} bytes.

    @return: fires with the body, or fails with L{BodyTooLarge} or the reason the body was cut short. Cancelling
        it closes the connection.
    """

    def cancel(d: "Deferred[bytes]") -> None:
        if protocol._finished is d:
            protocol.stop()  # the Deferred then fails with CancelledError

    finished: Deferred[bytes] = Deferred(cancel)
    protocol = _BoundedBody(maxSize, finished)
    response.deliverBody(protocol)
    return finished
