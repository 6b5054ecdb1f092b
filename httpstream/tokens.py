# -*- test-case-name: tests.test_tokens -*-
"""
Connection JWTs, checked against the injected clock.

PyJWT checks the signature; expiry is checked here against the reactor's clock so that tests can move time, and so
that an expired token (error 109: the SDK fetches a new one) is told apart from an invalid one (disconnect 3500).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Optional

import attrs
import jwt
import orjson

HMAC_ALGORITHMS = ("HS256", "HS384", "HS512")


class InvalidToken(Exception):
    """Bad signature, format, algorithm or claims: the connection is refused with 3500."""


class TokenExpired(Exception):
    """The token's C{exp} (or C{nbf}) does not admit it now: error 109, the SDK asks for a new token."""


@attrs.frozen
class ConnectClaims:
    """What a connection token grants."""

    user: str
    #: Unix time at which the connection expires, or 0 when it does not.
    expireAt: float = 0
    #: The token's C{info} as raw JSON bytes (becomes ClientInfo.conn_info), or None.
    info: Optional[bytes] = None


class TokenVerifier:
    """
    Verifies connection tokens signed with the configured HMAC secret.

    An algorithm without a configured key, C{none} included, is refused.
    """

    def __init__(self, hmacSecret: str = "") -> None:
        self._hmacSecret = hmacSecret.encode("utf-8")

    def verifyConnect(self, token: str, now: float) -> ConnectClaims:
        claims = self._decode(token)
        if "channel" in claims:
            # A subscription token used as a connection token.
            raise InvalidToken("unexpected channel claim")
        self._checkTimes(claims, now)
        user = claims.get("sub", "")
        if not isinstance(user, str):
            raise InvalidToken("sub must be a string")
        expireAt = _number(claims, "expire_at")
        if expireAt is None:
            expireAt = _number(claims, "exp") or 0
        return ConnectClaims(user=user, expireAt=expireAt, info=_info(claims))

    def _decode(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as e:
            raise InvalidToken(str(e)) from None
        algorithm = header.get("alg")
        if algorithm not in HMAC_ALGORITHMS or not self._hmacSecret:
            raise InvalidToken(f"algorithm {algorithm!r} has no configured key")
        try:
            claims = jwt.decode(
                token,
                self._hmacSecret,
                algorithms=[algorithm],
                # Times are checked against the injected clock in _checkTimes.
                options={"verify_exp": False, "verify_nbf": False, "verify_iat": False, "verify_aud": False},
            )
        except jwt.PyJWTError as e:
            raise InvalidToken(str(e)) from None
        if not isinstance(claims, dict):
            raise InvalidToken("claims must be an object")
        return claims

    @staticmethod
    def _checkTimes(claims: dict[str, Any], now: float) -> None:
        exp = _number(claims, "exp")
        if exp is not None and exp <= now:
            raise TokenExpired()
        nbf = _number(claims, "nbf")
        if nbf is not None and nbf > now:
            raise TokenExpired()


def _number(claims: dict[str, Any], key: str) -> Optional[float]:
    value = claims.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidToken(f"{key} must be a number")
    return float(value)


def _info(claims: dict[str, Any]) -> Optional[bytes]:
    if claims.get("info") is not None:
        return orjson.dumps(claims["info"])
    b64info = claims.get("b64info")
    if b64info:
        try:
            return base64.b64decode(b64info, validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise InvalidToken("b64info is not base64") from None
    return None
