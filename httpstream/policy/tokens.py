# -*- test-case-name: tests.policy.test_tokens -*-
"""
Connection and subscription JWTs, verified as Centrifugo v5 verifies them (C{internal/jwtverify}).

The order of the checks is Centrifugo's, because it decides which error a client sees: everything that makes a token
invalid (format, claim types, C{aud}, C{iss}, signature, a C{channel} claim in a connection token) is checked before
C{exp} and C{nbf}, so only a genuine token is ever reported as expired (error 109: the SDK fetches a new one);
C{exp}/C{nbf} are checked against the injected clock (no leeway: valid while C{nbf < now < exp}); C{iat} is not
checked. An invalid token is reported by L{InvalidToken}, whose message is short and never contains the token.

The token's form, keys and signature are L{httpstream.policy.jwtverify}'s; what it grants is read by
L{httpstream.policy.claims}. This module puts them together.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from httpstream.config import ConfigError
from httpstream.policy.claims import (
    ConnectClaims,
    SubscribeClaims,
    audiences,
    expireAt,
    readConnect,
    readSubscribe,
    userID,
)
from httpstream.policy.jwtverify import InvalidToken, PublicKey, Signatures, Token, TokenExpired, checkTimes, parse
from httpstream.readers import OVERRIDES, FieldError, SubOptions

if TYPE_CHECKING:
    from httpstream.config import Config

__all__ = [
    "OVERRIDES",
    "ConnectClaims",
    "InvalidToken",
    "SubOptions",
    "SubscribeClaims",
    "TokenExpired",
    "TokenVerifier",
]


class TokenVerifier:
    """
    Verifies connection and subscription tokens with the configured keys and claim rules.

    Construct it with L{fromConfig}, or directly (tests, embedding). The constructor raises L{ConfigError} naming
    the configuration key of a bad argument.
    """

    def __init__(
        self,
        hmacSecret: str = "",
        *,
        rsaPublicKey: PublicKey = None,
        ecdsaPublicKey: PublicKey = None,
        audience: str = "",
        audienceRegex: str = "",
        issuer: str = "",
        issuerRegex: str = "",
        userIDClaim: str = "sub",
    ) -> None:
        """
        @param hmacSecret: C{token_hmac_secret_key}: its UTF-8 bytes are the key; "" disables HS*.
        @param rsaPublicKey: C{token_rsa_public_key}: PEM (public key or certificate) or a key; None/"" disables RS*.
        @param ecdsaPublicKey: C{token_ecdsa_public_key}: likewise for ES*.
        @param audience: C{token_audience}: when set, C{aud} (a string or a list) must contain it.
        @param audienceRegex: C{token_audience_regex}: when set, some C{aud} must match it (unanchored search).
        @param issuer: C{token_issuer}: when set, C{iss} must equal it.
        @param issuerRegex: C{token_issuer_regex}: when set, C{iss} must match it (unanchored search).
        @param userIDClaim: C{token_user_id_claim}: the claim holding the user id, a dotted path for nested ones.
        """
        self._signatures = Signatures(hmacSecret, rsaPublicKey, ecdsaPublicKey)
        if audience and audienceRegex:
            raise ConfigError('config key "token_audience_regex": can not be used together with token_audience')
        if issuer and issuerRegex:
            raise ConfigError('config key "token_issuer_regex": can not be used together with token_issuer')
        self._audience = audience
        self._audienceRe = _compile("token_audience_regex", audienceRegex)
        self._issuer = issuer
        self._issuerRe = _compile("token_issuer_regex", issuerRegex)
        self._userIDPath = tuple(userIDClaim.split(".")) if userIDClaim else ("sub",)

    @classmethod
    def fromConfig(cls, config: Config) -> TokenVerifier:
        """
        The verifier configured by the C{token_*} keys.

        @raise ConfigError: A key is unusable (bad PEM, wrong key type, bad regex, conflicting keys).
        """
        return cls(
            config.token_hmac_secret_key,
            rsaPublicKey=config.token_rsa_public_key,
            ecdsaPublicKey=config.token_ecdsa_public_key,
            audience=config.token_audience,
            audienceRegex=config.token_audience_regex,
            issuer=config.token_issuer,
            issuerRegex=config.token_issuer_regex,
            userIDClaim=config.token_user_id_claim,
        )

    @property
    def algorithms(self) -> tuple[str, ...]:
        """The enabled algorithms (Centrifugo logs them at start)."""
        return self._signatures.algorithms

    def verifyConnect(self, token: str, now: float) -> ConnectClaims:
        """
        Verify a connection token (C{ConnectRequest.token} or C{RefreshRequest.token}).

        @param now: The current Unix time, from the reactor.
        @raise InvalidToken: The token is not valid (disconnect 3500).
        @raise TokenExpired: The token is valid but not now (error 109 at connect, disconnect 3005 at refresh).
        """
        try:
            verified = self._verify(token)
            claims = verified.claims
            # Types first (a token Go would not decode is invalid, not expired); the subs entries are read after.
            channel = claims.string("channel")
            claims.strings("channels")
            claims.object("subs")
            expireAt(claims)
            if channel:
                raise InvalidToken("connection token can not have a channel claim")
            checkTimes(claims, now)
            return readConnect(claims, userID(verified.payload, self._userIDPath))
        except FieldError as e:
            raise InvalidToken(str(e)) from None

    def verifySubscribe(self, token: str, now: float) -> SubscribeClaims:
        """
        Verify a subscription token (C{SubscribeRequest.token} or C{SubRefreshRequest.token}).

        The caller compares C{user}, C{channel} and C{client} with the connection and the request.

        @param now: The current Unix time, from the reactor.
        @raise InvalidToken: The token is not valid, or has no channel (error 103 at subscribe).
        @raise TokenExpired: The token is valid but not now (error 109).
        """
        try:
            verified = self._verify(token)
            claims = verified.claims
            channel = claims.string("channel")
            claims.string("client")
            expireAt(claims)
            checkTimes(claims, now)
            if not channel:
                raise InvalidToken("subscription token must have a channel claim")
            return readSubscribe(claims, userID(verified.payload, self._userIDPath))
        except FieldError as e:
            raise InvalidToken(str(e)) from None

    def _verify(self, token: str) -> Token:
        """
        Decode a token and check everything but the times: format, registered claim types, aud, iss, signature.

        @raise FieldError: a registered claim of the wrong type.
        """
        parsed = parse(token)
        claims = parsed.claims
        for key in ("exp", "nbf", "iat"):
            claims.number(key)
        for key in ("sub", "iss", "jti"):
            claims.string(key)
        aud = audiences(claims)
        issuer = claims.string("iss")
        if self._audience and self._audience not in aud:
            raise InvalidToken("invalid audience")
        if self._issuer and issuer != self._issuer:
            raise InvalidToken("invalid issuer")
        if self._issuerRe is not None and self._issuerRe.search(issuer) is None:
            raise InvalidToken("issuer not matched")
        if self._audienceRe is not None and not any(self._audienceRe.search(a) for a in aud):
            raise InvalidToken("audience not matched")
        self._signatures.check(parsed)
        return parsed


def _compile(configKey: str, pattern: str) -> re.Pattern[str] | None:
    # Centrifugo compiles Go (RE2) regexps; Python's syntax agrees for the patterns one writes for aud/iss.
    if not pattern:
        return None
    try:
        return re.compile(pattern)
    except re.error as e:
        raise ConfigError(f'config key "{configKey}": invalid regular expression ({e})') from None
