"""
The ttl a connect or refresh reply tells, counted as Centrifugo counts it (centrifuge's client.go: the token's exp
minus the current Unix second).
"""

from __future__ import annotations

from httpstream.client.expiry import MAX_TTL, ttlUntil


def test_ttlCountsFromTheWholeSecond() -> None:
    """
    A token whose exp is less than a second away but in the next Unix second has a ttl of 1, not 0 (an SDK reads
    "expires" with a ttl of 0 as no ttl: centrifuge-python failed on it).
    """
    assert ttlUntil(1001, 1000.7) == 1
    assert ttlUntil(1002, 1000.0) == 2
    assert ttlUntil(1002, 1000.99) == 2
    assert ttlUntil(1000, 1000.5) == 0
    assert ttlUntil(999, 1000.5) == 0
    assert ttlUntil(2**40, 0.5) == MAX_TTL
