# -*- test-case-name: tests.policy.test_proxy,tests.policy.test_sharedpoll_backend -*-
"""
One HTTP call to the application backend, as Centrifugo's ``httpCaller.CallHTTP`` (``internal/proxy/http.go``)
makes it: POST a JSON body, take status 200 only, and have the whole answer within the proxy's timeout. Shared by
the proxy client (L{client}) and the shared poll refresh call (L{sharedpoll}).

Unlike Centrifugo, which reads the answer whole (``io.ReadAll``), at most L{MAX_RESPONSE_SIZE} bytes of it are
read: a backend that answers too much fails the call as a malformed answer does.
"""

from __future__ import annotations

from typing import Any, Optional, Protocol

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from httpstream.policy.httpbody import readBody
from httpstream.policy.proxy.errors import CallFailed

__all__ = ["MAX_RESPONSE_SIZE", "HTTPPoster", "callHTTP"]

# Centrifugo has no option for this (it reads proxy answers without a limit), so neither is there a config key:
# 16 MiB is far above any answer its proxy docs describe (a connect result's info and data, an RPC result, a shared
# poll batch of keys), and bounds what one call can make the node hold.
MAX_RESPONSE_SIZE = 16 * 1024 * 1024


class HTTPPoster(Protocol):
    """The part of treq's API the proxy uses: C{treq.testing.StubTreq} and C{treq.client.HTTPClient} fit."""

    def post(self, url: str, data: Optional[bytes] = None, **kwargs: Any) -> "Deferred[Any]":
        """POST C{data}; fire with an L{IResponse} (C{code}, C{deliverBody})."""


def callHTTP(
    http: HTTPPoster,
    reactor: IReactorTime,
    endpoint: str,
    headers: dict[bytes, list[bytes]],
    body: bytes,
    timeout: float,
    maxSize: int = MAX_RESPONSE_SIZE,
) -> "Deferred[bytes]":
    """
    POST C{body} to C{endpoint} and read the answer.

    @return: fires with the body of a 200 answer; fails with L{CallFailed} for another status or a timeout (the
        request, or the reading of its body, is cancelled), with L{httpstream.policy.httpbody.BodyTooLarge} for a
        body over C{maxSize} bytes, or with the HTTP client's error. Cancelling it cancels the request.
    """

    def read(response: Any) -> "Deferred[bytes]":
        content = readBody(response, maxSize)
        if response.code != 200:
            # Read (and drop) the body all the same, so the connection goes back to the pool in order (up to the
            # limit: a larger body closes it).
            def refuse(_: Any) -> bytes:
                raise CallFailed(f"unexpected HTTP status code: {response.code}")

            content.addBoth(refuse)
        return content

    def timedOut(result: Any, timeout: float) -> Any:
        # Cancelling the request shows as CancelledError or as treq's ResponseNeverReceived: either is a timeout.
        return Failure(CallFailed("timeout")) if isinstance(result, Failure) else result

    d: Deferred[Any] = maybeDeferred(http.post, endpoint, data=body, headers=headers).addCallback(read)
    return d.addTimeout(timeout, reactor, onTimeoutCancel=timedOut)
