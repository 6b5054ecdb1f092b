"""
The ttl a connect or refresh reply tells: whole seconds to the expiry, never 0 before it.
"""

from __future__ import annotations

from httpstream.client.expiry import MAX_TTL, ttlUntil


def test_ttlNeverZeroBeforeTheExpiry() -> None:
    """
    A token less than a second from its exp is told a ttl of 1, not 0 (an SDK reads "expires" with a ttl of 0 as
    no ttl: centrifuge-python failed on it); whole seconds otherwise; 0 once it has passed.
    """
    assert ttlUntil(1001, 1000.7) == 1
    assert ttlUntil(1001, 1000.999) == 1
    assert ttlUntil(1002, 1000.0) == 2
    assert ttlUntil(1002, 1000.5) == 1
    assert ttlUntil(1000, 1000.0) == 0
    assert ttlUntil(999, 1000.5) == 0
    assert ttlUntil(2**40, 0.5) == MAX_TTL
