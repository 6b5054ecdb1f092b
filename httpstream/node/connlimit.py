# -*- test-case-name: tests.node.test_connlimit -*-
"""
Whether this node takes one more connection (Centrifugo's ``ConnLimit`` middleware): C{client_connection_rate_limit}
new connections a second and C{client_connection_limit} connections at once. A request to a connection endpoint
beyond either is answered 503 before anything else looks at it; the SDKs take that as a failed transport and
reconnect with their backoff, which is what spreads a reconnect storm out.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.internet.interfaces import IReactorTime

from httpstream.config import Config
from httpstream.logs import Logger
from httpstream.node.ratelimit import TokenBucket

# Centrifugo warns at most this often (seconds) while the connection limit refuses requests.
LOG_THROTTLE = 3.0


class ConnLimit:
    """
    The admission of new connections of one node, read from its configuration at each request (so a reload
    changes the limits of the next one).

    @param settings: the node's configuration now.
    @param connections: how many connections the node has open now: those connecting count as well as those
        connected, so a burst of requests that all arrive before any has connected cannot go past the limit.
    @param metrics: the node's L{httpstream.metrics.Metrics}.
    """

    log = Logger()

    def __init__(
        self, clock: IReactorTime, settings: Callable[[], Config], connections: Callable[[], int], metrics: Any
    ) -> None:
        self._clock = clock
        self._settings = settings
        self._connections = connections
        self._metrics = metrics
        self._bucket: Optional[TokenBucket] = None
        self._loggedAt: Optional[float] = None

    def admit(self) -> bool:
        """Whether a request to a connection endpoint may go on; False means it is to be answered 503."""
        config = self._settings()
        if not self._rateAllows(config.client_connection_rate_limit):
            self._metrics.connRateLimited.inc()
            return False
        limit = config.client_connection_limit
        if limit > 0 and self._connections() >= limit:
            self._metrics.connLimitReached.inc()
            now = self._clock.seconds()
            if self._loggedAt is None or now - self._loggedAt > LOG_THROTTLE:
                self._loggedAt = now
                self.log.warn("node connection limit reached ({limit})", limit=limit)
            return False
        return True

    def _rateAllows(self, rate: int) -> bool:
        if rate <= 0:
            self._bucket = None
            return True
        bucket = self._bucket
        if bucket is None or bucket.burst != rate:
            # Documented as connections a second: a burst of that many, refilled at that rate. (Centrifugo's
            # limiter refills one a second whatever the setting, which makes the setting a burst size.)
            self._bucket = bucket = TokenBucket(self._clock, rate, rate)
        return bucket.allow()
