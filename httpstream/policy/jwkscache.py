# -*- test-case-name: tests.policy.test_jwks -*-
"""
The keys of JWKS endpoints, fetched without blocking the reactor and kept as Centrifugo keeps them
(C{internal/jwks}: C{Manager}, C{TTLCache}).

A key is kept for an hour after it was last fetched or used (each use extends it), so a connection whose key is
cached is verified at once, without asking the endpoint, and keeps working while the endpoint is down; a key the
endpoint no longer lists stays usable until it has gone unused for that hour. A C{kid} that is not cached (a new key
after a rotation, an expired one, or a made-up one) has the endpoint's whole set fetched again, and then is found
or not.

Bounds Centrifugo leaves out, against a client that sends tokens with made-up C{kid}s: every C{kid} missing at
the same time waits for the same fetch, and one fetch of an endpoint starts at least L{REFETCH_INTERVAL} after the
previous one started (a missing C{kid} waits for it, rather than being refused, so a genuine rotation is never
turned away). A fetch is an HTTP GET with Centrifugo's one-second timeout, tried twice, whose answer may be at
most L{MAX_BODY_SIZE} bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Optional
from urllib.parse import urlsplit

import attrs
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from httpstream.logs import Logger
from httpstream.policy.httpbody import BodyTooLarge, readBody
from httpstream.policy.jwks import KeySetError, PublicJWK, parseKeySet
from httpstream.policy.jwtverify import InvalidToken

if TYPE_CHECKING:
    from twisted.web.iweb import IAgent

__all__ = ["KEY_TTL", "MAX_BODY_SIZE", "REFETCH_INTERVAL", "FetchError", "JWKSFetcher", "KeyCache"]

log = Logger()

#: Seconds a key stays cached after it was last fetched or used (Centrifugo's C{_defaultTTL}).
KEY_TTL = 3600.0
#: Least seconds between the starts of two fetches of one endpoint.
REFETCH_INTERVAL = 1.0
#: Largest JWKS answer read, in bytes (a set of a few keys is a few kilobytes).
MAX_BODY_SIZE = 1 << 20
#: Seconds one GET may take, body included (Centrifugo's C{_defaultTimeout}), and how many are tried.
FETCH_TIMEOUT = 1.0
FETCH_ATTEMPTS = 2

Fetch = Callable[[str], "Deferred[bytes]"]


class FetchError(Exception):
    """The endpoint did not answer a key set: connection error, timeout, status, size."""


@attrs.define
class _Key:
    jwk: PublicJWK
    expires: float


@attrs.define
class _Endpoint:
    """One resolved endpoint URL: when its last fetch started, and the fetch in flight or due, with its waiters."""

    lastStart: Optional[float] = None
    busy: bool = False  # a fetch is in flight or scheduled
    due: Optional[IDelayedCall] = None
    waiters: list[tuple[str, Deferred[PublicJWK]]] = attrs.Factory(list)


class KeyCache:
    """The keys of the JWKS endpoints of one token configuration, by endpoint URL and C{kid}."""

    def __init__(self, fetch: Fetch, clock: IReactorTime, *, ttl: float = KEY_TTL,
                 refetchInterval: float = REFETCH_INTERVAL) -> None:
        """
        @param fetch: GETs a URL: fires with the body, or fails (L{JWKSFetcher}, or a fake in tests).
        @param clock: the time of keys' expiry and of the fetch interval.
        """
        self._fetch = fetch
        self._clock = clock
        self._ttl = ttl
        self._interval = refetchInterval
        self._keys: dict[tuple[str, str], _Key] = {}
        self._endpoints: dict[str, _Endpoint] = {}

    def cached(self, url: str, kid: str) -> Optional[PublicJWK]:
        """The key if it is cached and not expired (its hour starts again), else None."""
        now = self._clock.seconds()
        entry = self._keys.get((url, kid))
        if entry is None:
            return None
        if entry.expires < now:
            del self._keys[(url, kid)]
            return None
        entry.expires = now + self._ttl
        return entry.jwk

    def load(self, url: str, kid: str) -> Deferred[PublicJWK]:
        """
        Fetch C{url}'s key set (sharing a fetch in flight or due; no sooner than the interval allows) and fire
        with the key C{kid}.

        @return: fails with L{InvalidToken} when the set has no such key or could not be fetched.
        """
        endpoint = self._endpoints.setdefault(url, _Endpoint())
        waiter: Deferred[PublicJWK] = Deferred()
        endpoint.waiters.append((kid, waiter))
        if not endpoint.busy:
            endpoint.busy = True
            wait = 0.0
            if endpoint.lastStart is not None:
                wait = endpoint.lastStart + self._interval - self._clock.seconds()
            if wait > 0:
                endpoint.due = self._clock.callLater(wait, self._start, url, endpoint)
            else:
                self._start(url, endpoint)
        return waiter

    def _start(self, url: str, endpoint: _Endpoint) -> None:
        endpoint.due = None
        endpoint.lastStart = self._clock.seconds()
        d = maybeDeferred(self._fetch, url)
        d.addCallbacks(lambda body: self._fetched(url, endpoint, body),
                       lambda failure: self._failed(url, endpoint, failure))

    def _fetched(self, url: str, endpoint: _Endpoint, body: bytes) -> None:
        try:
            keys = parseKeySet(body)
        except KeySetError as e:
            self._failed(url, endpoint, Failure(e))
            return
        now = self._clock.seconds()
        # Keys nobody used for their hour go (Centrifugo's cleanup ticker), so made-up URLs or kids leave nothing.
        for stale in [where for where, entry in self._keys.items() if entry.expires < now]:
            del self._keys[stale]
        expires = now + self._ttl
        for kid, jwk in keys.items():
            self._keys[(url, kid)] = _Key(jwk, expires)
        self._answer(endpoint, lambda kid: keys.get(kid) or InvalidToken("JWKS: public key not found"))

    def _failed(self, url: str, endpoint: _Endpoint, failure: Failure) -> None:
        reason = failure.getErrorMessage() or type(failure.value).__name__
        log.warn("JWKS fetch from {endpoint} failed: {reason}", endpoint=redacted(url), reason=reason)
        self._answer(endpoint, lambda kid: InvalidToken(f"JWKS fetch failed: {reason}"))

    def _answer(self, endpoint: _Endpoint, outcome: Callable[[str], PublicJWK | Exception]) -> None:
        waiters, endpoint.waiters, endpoint.busy = endpoint.waiters, [], False
        for kid, waiter in waiters:
            if waiter.called:
                continue  # cancelled: the client went away
            result = outcome(kid)
            if isinstance(result, Exception):
                waiter.errback(Failure(result))
            else:
                waiter.callback(result)


def redacted(url: str) -> str:
    """The URL for logs: no user, password or query (where tokens for the endpoint may be)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host += f":{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


class JWKSFetcher:
    """
    GETs a JWKS endpoint with treq, as Centrifugo's C{Manager.fetchKey}: status 200 only, C{FETCH_ATTEMPTS} tries
    of at most C{FETCH_TIMEOUT} seconds each (the body included), and no more than C{MAX_BODY_SIZE} bytes read.
    """

    def __init__(self, reactor: Any, agent: Optional[IAgent] = None, *, timeout: float = FETCH_TIMEOUT,
                 attempts: int = FETCH_ATTEMPTS, maxSize: int = MAX_BODY_SIZE) -> None:
        """
        @param reactor: runs the timeouts and, without C{agent}, the HTTP client.
        @param agent: the HTTP agent (C{treq.testing.StubTreq}'s in tests); None: an C{Agent} without a pool of
            kept-alive connections (a fetch is rare: once an hour, or on a new key).
        """
        from treq.client import HTTPClient

        if agent is None:
            from twisted.web.client import Agent, HTTPConnectionPool

            agent = Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))
        self._http = HTTPClient(agent)
        self._reactor = reactor
        self._timeout = timeout
        self._attempts = attempts
        self._maxSize = maxSize

    def __call__(self, url: str) -> Deferred[bytes]:
        return self._attempt(url, self._attempts)

    def _attempt(self, url: str, left: int) -> Deferred[bytes]:
        d = self._get(url)
        if left > 1:
            d.addErrback(lambda _: self._attempt(url, left - 1))
        return d

    def _get(self, url: str) -> Deferred[bytes]:
        def read(response: Any) -> Deferred[bytes]:
            if response.code != 200:
                raise FetchError(f"unexpected HTTP status code: {response.code}")

            def tooLarge(failure: Failure) -> bytes:
                failure.trap(BodyTooLarge)
                raise FetchError(failure.getErrorMessage())

            return readBody(response, self._maxSize).addErrback(tooLarge)

        def timedOut(result: Any, timeout: float) -> Any:
            return Failure(FetchError("timeout")) if isinstance(result, Failure) else result

        d: Deferred[bytes] = self._http.get(url).addCallback(read)
        return d.addTimeout(self._timeout, self._reactor, onTimeoutCancel=timedOut)
