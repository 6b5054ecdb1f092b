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

With C{token_jwks_public_endpoint} the keys are the endpoint's (L{httpstream.policy.jwks}), and only they are (the
HMAC, RSA and ECDSA keys are then not used, as in Centrifugo): the token's C{kid} names one. A key that is not cached
yet is fetched without blocking (L{httpstream.policy.jwkscache}): L{TokenVerifier.connectClaims} and
L{TokenVerifier.subscribeClaims} wait for it; the synchronous L{TokenVerifier.verifyConnect} and
L{TokenVerifier.verifySubscribe} raise L{KeyNotCached} instead. A key that cannot be had (not in the set, endpoint
down) makes the token invalid, as Centrifugo's C{ErrInvalidToken}. With C{separate_subscription_token_config}
subscription tokens have their own keys and claim rules (the C{subscription_token_*} keys).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime

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
from httpstream.policy.jwks import checkSignature
from httpstream.policy.jwkscache import JWKSFetcher, KeyCache
from httpstream.policy.jwksurl import JWKSEndpoint
from httpstream.policy.jwtverify import InvalidToken, PublicKey, Signatures, Token, TokenExpired, checkTimes, parse
from httpstream.readers import OVERRIDES, FieldError, SubOptions

if TYPE_CHECKING:
    from httpstream.config import Config

__all__ = [
    "OVERRIDES",
    "ConnectClaims",
    "InvalidToken",
    "KeyNotCached",
    "SubOptions",
    "SubscribeClaims",
    "TokenExpired",
    "TokenVerifier",
]


_Claims = TypeVar("_Claims")


class KeyNotCached(InvalidToken):
    """The token names a JWKS key that is not cached: fetch C{url}'s set and look for C{kid} again."""

    def __init__(self, url: str, kid: str) -> None:
        super().__init__("JWKS key not cached")
        self.url = url
        self.kid = kid


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
        jwksEndpoint: str = "",
        skipJWKSSafetyCheck: bool = False,
        keys: Optional[KeyCache] = None,
        subscription: Optional[TokenVerifier] = None,
        prefix: str = "token_",
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
        @param jwksEndpoint: C{token_jwks_public_endpoint}: when set, tokens are verified with its keys only.
        @param skipJWKSSafetyCheck: C{token_insecure_skip_jwks_endpoint_safety_check}.
        @param keys: where the endpoint's keys are kept (required with C{jwksEndpoint}).
        @param subscription: verifies subscription tokens instead (C{separate_subscription_token_config}).
        @param prefix: of the configuration keys named in errors.
        """
        self._signatures = Signatures(hmacSecret, rsaPublicKey, ecdsaPublicKey, prefix)
        if audience and audienceRegex:
            raise ConfigError(f'config key "{prefix}audience_regex": can not be used together with {prefix}audience')
        if issuer and issuerRegex:
            raise ConfigError(f'config key "{prefix}issuer_regex": can not be used together with {prefix}issuer')
        self._audience = audience
        self._audienceRe = _compile(f"{prefix}audience_regex", audienceRegex)
        self._issuer = issuer
        self._issuerRe = _compile(f"{prefix}issuer_regex", issuerRegex)
        self._userIDPath = tuple(userIDClaim.split(".")) if userIDClaim else ("sub",)
        self._jwks: Optional[JWKSEndpoint] = None
        if jwksEndpoint:
            if keys is None:
                raise ValueError("a JWKS endpoint needs a KeyCache")
            self._jwks = JWKSEndpoint(jwksEndpoint, f"{prefix}jwks_public_endpoint", issuerRegex=issuerRegex,
                                      audienceRegex=audienceRegex, skipSafetyCheck=skipJWKSSafetyCheck)
        self._keys = keys
        self._subscription = subscription

    @classmethod
    def fromConfig(cls, config: Config, reactor: Optional[IReactorTime] = None,
                   fetch: Optional[Callable[[str], Deferred[bytes]]] = None) -> TokenVerifier:
        """
        The verifier configured by the C{token_*} keys, and the C{subscription_token_*} ones when
        C{separate_subscription_token_config} is on.

        @param reactor: runs JWKS fetches and their timeouts, and tells the time of cached keys' expiry (None: the
            global reactor, imported only when a JWKS endpoint is configured).
        @param fetch: GETs a JWKS URL (tests); None: L{JWKSFetcher} on C{reactor}.
        @raise ConfigError: A key is unusable (bad PEM, wrong key type, bad regex, conflicting keys, unsafe JWKS
            template).
        """
        subscription = None
        if config.separate_subscription_token_config:
            subscription = cls._configured(config, "subscription_token_", reactor, fetch, None)
        return cls._configured(config, "token_", reactor, fetch, subscription)

    @classmethod
    def _configured(cls, config: Config, prefix: str, reactor: Optional[IReactorTime],
                    fetch: Optional[Callable[[str], Deferred[bytes]]],
                    subscription: Optional[TokenVerifier]) -> TokenVerifier:
        def key(name: str) -> Any:
            return getattr(config, prefix + name)

        keys = None
        if key("jwks_public_endpoint"):
            if reactor is None:
                from twisted.internet import reactor as globalReactor

                reactor = globalReactor
            assert reactor is not None
            keys = KeyCache(fetch if fetch is not None else JWKSFetcher(reactor), reactor)
        return cls(
            key("hmac_secret_key"),
            rsaPublicKey=key("rsa_public_key"),
            ecdsaPublicKey=key("ecdsa_public_key"),
            audience=key("audience"),
            audienceRegex=key("audience_regex"),
            issuer=key("issuer"),
            issuerRegex=key("issuer_regex"),
            userIDClaim=key("user_id_claim"),
            jwksEndpoint=key("jwks_public_endpoint"),
            skipJWKSSafetyCheck=key("insecure_skip_jwks_endpoint_safety_check"),
            keys=keys,
            subscription=subscription,
            prefix=prefix,
        )

    @property
    def algorithms(self) -> tuple[str, ...]:
        """The enabled algorithms (Centrifugo logs them at start); with JWKS, those its keys may have."""
        if self._jwks is not None:
            return ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "EdDSA")
        return self._signatures.algorithms

    def connectClaims(self, token: str, clock: IReactorTime) -> Deferred[ConnectClaims]:
        """
        L{verifyConnect}, waiting for a JWKS key that is not cached yet (its time is taken once the key is here).

        @return: fails with L{InvalidToken} or L{TokenExpired}, as L{verifyConnect} raises them.
        """
        return self._later(lambda: self.verifyConnect(token, clock.seconds()))

    def subscribeClaims(self, token: str, clock: IReactorTime) -> Deferred[SubscribeClaims]:
        """L{verifySubscribe}, waiting for a JWKS key that is not cached yet."""
        if self._subscription is not None:
            return self._subscription.subscribeClaims(token, clock)
        return self._later(lambda: self.verifySubscribe(token, clock.seconds()))

    def _later(self, verify: Callable[[], _Claims]) -> Deferred[_Claims]:
        try:
            return succeed(verify())
        except KeyNotCached as missing:
            assert self._keys is not None

            def again(_: object) -> _Claims:
                try:
                    return verify()
                except KeyNotCached:
                    raise InvalidToken("JWKS: public key not found") from None

            return self._keys.load(missing.url, missing.kid).addCallback(again)
        except Exception:
            return fail()

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
        if self._subscription is not None:
            return self._subscription.verifySubscribe(token, now)
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
        # The regexps' named groups fill a templated JWKS URL: the issuer's first, then the audience's.
        variables: dict[str, str] = {}
        if self._issuerRe is not None:
            found = self._issuerRe.search(issuer)
            if found is None:
                raise InvalidToken("issuer not matched")
            variables.update((k, v or "") for k, v in found.groupdict().items())
        if self._audienceRe is not None:
            found = next((m for m in map(self._audienceRe.search, aud) if m is not None), None)
            if found is None:
                raise InvalidToken("audience not matched")
            variables.update((k, v or "") for k, v in found.groupdict().items())
        if self._jwks is None:
            self._signatures.check(parsed)
            return parsed
        assert self._keys is not None
        kid = parsed.header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("JWKS: kid is not provided")
        url = self._jwks.resolve(variables)
        jwk = self._keys.cached(url, kid)
        if jwk is None:
            raise KeyNotCached(url, kid)
        checkSignature(parsed, jwk)
        return parsed


def _compile(configKey: str, pattern: str) -> re.Pattern[str] | None:
    # Centrifugo compiles Go (RE2) regexps; Python's syntax agrees for the patterns one writes for aud/iss.
    if not pattern:
        return None
    try:
        return re.compile(pattern)
    except re.error as e:
        raise ConfigError(f'config key "{configKey}": invalid regular expression ({e})') from None
