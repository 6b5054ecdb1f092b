# -*- test-case-name: tests.policy.test_tracksignature -*-
"""
Track signatures of shared poll channels (Centrifugo's ``internal/client/track_signature.go``): the application
signs the keys a user may track in a channel, and the SDK sends the signature with them.

A signature is C{"<iat>:<expiry>:<hmac_hex>"}, iat and expiry in unix seconds (expiry 0: never), where
C{hmac_hex} is the hex HMAC-SHA256, under C{shared_poll.hmac_secret_key}, of
C{iat NUL expiry NUL user NUL channel NUL hex(sha256(keys joined by NUL))}: NUL separators, so that a colon in a
user id or channel cannot shift between fields. It covers exactly the batch's keys, in the batch's order.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, Optional, Sequence

from httpstream.decisions import Refused, TrackBatch
from httpstream.protocol import codes

__all__ = ["GRACE", "TrackSignatures", "makeSignature"]

# Seconds a signature is still accepted after its expiry (Centrifugo's gracePeriodSeconds).
GRACE = 5


def _mac(secret: str, iat: str, expiry: str, user: str, channel: str, keys: Sequence[str]) -> str:
    keysHash = hashlib.sha256("\x00".join(keys).encode("utf-8")).hexdigest()
    payload = "\x00".join((iat, expiry, user, channel, keysHash)).encode("utf-8")
    return hmac.new(secret.encode("utf-8"), payload, hashlib.sha256).hexdigest()


def makeSignature(secret: str, channel: str, user: str, keys: Sequence[str], iat: int, expiry: int) -> str:
    """The signature an application gives a user for tracking C{keys} in C{channel} (for tests and Python apps)."""
    return f"{iat}:{expiry}:{_mac(secret, str(iat), str(expiry), user, channel, keys)}"


def _split(signature: str) -> Optional[tuple[str, str, str, int, int]]:
    parts = signature.split(":", 2)
    if len(parts) != 3:
        return None
    iat, expiry, mac = parts
    try:
        return iat, expiry, mac, int(iat), int(expiry)
    except ValueError:
        return None


class TrackSignatures:
    """
    Checks the signed batches of a track request with the configured secret (and the previous one, while
    rotating).
    """

    def __init__(self, secret: str, previous: str = "", previousValidUntil: int = 0) -> None:
        self._secret = secret
        self._previous = previous
        self._previousValidUntil = previousValidUntil

    @classmethod
    def fromConfig(cls, config: Any) -> "TrackSignatures":
        return cls(config.shared_poll_hmac_secret_key, config.shared_poll_hmac_previous_secret_key,
                   config.shared_poll_hmac_previous_secret_key_valid_until)

    def valid(self, channel: str, user: str, signature: str, keys: Sequence[str]) -> bool:
        """Whether C{signature} was made for C{keys} of C{channel} and C{user} with one of the secrets."""
        parts = _split(signature)
        if parts is None:
            return False
        iat, expiry, mac, iatValue, _ = parts
        if hmac.compare_digest(mac.encode(), _mac(self._secret, iat, expiry, user, channel, keys).encode()):
            return True
        if not self._previous or (self._previousValidUntil and iatValue > self._previousValidUntil):
            return False
        return hmac.compare_digest(mac.encode(), _mac(self._previous, iat, expiry, user, channel, keys).encode())

    def check(self, channel: str, user: str, batches: Sequence[TrackBatch], now: float) -> list[int]:
        """
        The expiry (unix seconds, 0: none) of each batch, once every signature is valid and not expired.

        @raise Refused: 100 without a secret, 103 for an invalid signature, 109 for one expired more than
            L{GRACE} seconds ago (the SDK then asks the application for a new one).
        """
        if not self._secret:
            raise Refused(codes.ERROR_INTERNAL)
        expiries: list[int] = []
        for batch in batches:
            if not self.valid(channel, user, batch.signature, batch.keys):
                raise Refused(codes.ERROR_PERMISSION_DENIED)
            parts = _split(batch.signature)
            assert parts is not None
            expiry = parts[4]
            if expiry > 0 and expiry + GRACE < now:
                raise Refused(codes.ERROR_TOKEN_EXPIRED)
            expiries.append(max(expiry, 0))
        return expiries
