# -*- test-case-name: tests.test_tokens -*-
"""
Connection and subscription JWTs, verified as Centrifugo v5 verifies them (C{internal/jwtverify}).

Keys: HS256/384/512 with C{token_hmac_secret_key}, RS256/384/512 with C{token_rsa_public_key}, ES256/384/512 with
C{token_ecdsa_public_key} (only the one algorithm whose curve is the key's). Any other algorithm, C{none} included,
or one whose key is not configured, makes the token invalid.

The order of the checks is Centrifugo's, because it decides which error a client sees: everything that makes a token
invalid (format, claim types, C{aud}, C{iss}, signature, a C{channel} claim in a connection token) is checked before
C{exp} and C{nbf}, so only a genuine token is ever reported as expired (error 109: the SDK fetches a new one);
C{exp}/C{nbf} are checked against the injected clock (no leeway: valid while C{nbf < now < exp}); C{iat} is not
checked. An invalid token is reported by L{InvalidToken}, whose message is short and never contains the token.

Raw JSON values (C{info}, C{data}) are handed on as compact JSON bytes, the C{b64} variants as their decoded bytes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.x509 import load_pem_x509_certificate
from jwt.algorithms import get_default_algorithms

from httpstream.config import ConfigError

if TYPE_CHECKING:
    from httpstream.config import Config

__all__ = [
    "ConnectClaims",
    "InvalidToken",
    "SubOptions",
    "SubscribeClaims",
    "TokenExpired",
    "TokenVerifier",
]

HMAC_ALGORITHMS = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
RSA_ALGORITHMS = ("RS256", "RS384", "RS512")
#: An ECDSA key enables the one algorithm made for its curve (Go's C{jwt.NewVerifierES} refuses the others).
ECDSA_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
#: The channel options a token may override, each given as C{{"value": bool}}.
OVERRIDES = ("presence", "join_leave", "force_push_join_leave", "force_positioning", "force_recovery")

_SEGMENT = re.compile(rb"[A-Za-z0-9_-]*")


class InvalidToken(Exception):
    """
    Bad format, signature, algorithm or claims: a connection is refused with 3500, a subscription with error 103.
    """


class TokenExpired(Exception):
    """The token's C{exp} (or C{nbf}) does not admit it now: error 109, the SDK asks for a new token."""


@attrs.frozen
class SubOptions:
    """One server-side subscription granted by a connection token (an entry of its C{subs} claim)."""

    #: C{info} as raw JSON bytes or C{b64info} decoded (becomes the subscriber's ClientInfo.chan_info), or None.
    info: bytes | None = None
    #: C{data} as raw JSON bytes or C{b64data} decoded (sent with the subscribe push), or None.
    data: bytes | None = None
    #: The channel options the token overrides (names from L{OVERRIDES}); an option absent here keeps the channel's.
    override: Mapping[str, bool] = attrs.field(factory=dict)


@attrs.frozen
class ConnectClaims:
    """What a connection token grants."""

    #: The user id (the claim named by C{token_user_id_claim}); "" is anonymous.
    user: str
    #: Unix time (whole seconds) at which the connection expires, or 0 when it does not. C{expire_at} when the
    #: token has it (> 0: then; 0 or less: never), else C{exp}. It may already be past: the caller answers 110.
    expireAt: int = 0
    #: C{info} as raw JSON bytes or C{b64info} decoded (becomes ClientInfo.conn_info), or None.
    info: bytes | None = None
    #: The channels to subscribe server-side at connect, in the token's order, without duplicates: the keys of
    #: C{subs} when that claim is not empty (it wins), else the C{channels} claim. Names are not validated here.
    channels: tuple[str, ...] = ()
    #: Options of each channel of L{channels} (a plain C{SubOptions()} for one from the C{channels} claim).
    subs: Mapping[str, SubOptions] = attrs.field(factory=dict)
    #: The C{meta} claim as parsed JSON (normally an object), or None: for the server only, never sent to clients.
    meta: Any = None


@attrs.frozen
class SubscribeClaims:
    """What a subscription token grants."""

    #: The user the token is for ("" anonymous); the caller checks it is the connection's user.
    user: str
    #: The channel the token is for; the caller checks it is the requested channel.
    channel: str
    #: When not "", the only client id that may use the token; the caller checks it.
    client: str = ""
    #: Unix time (whole seconds) at which the subscription expires, or 0 when it does not (as in L{ConnectClaims}).
    expireAt: int = 0
    #: C{info} / C{b64info} (becomes ClientInfo.chan_info), or None.
    info: bytes | None = None
    #: C{data} / C{b64data} (becomes SubscribeResult.data), or None.
    data: bytes | None = None
    #: The channel options the token overrides (names from L{OVERRIDES}).
    override: Mapping[str, bool] = attrs.field(factory=dict)


PublicKey = str | bytes | RSAPublicKey | EllipticCurvePublicKey | None


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
        # Verification functions by algorithm name: (signing input, signature) -> valid.
        self._verifiers: dict[str, Callable[[bytes, bytes], bool]] = {}
        if hmacSecret:
            secret = hmacSecret.encode("utf-8")
            for name, digest in HMAC_ALGORITHMS.items():
                self._verifiers[name] = _hmacVerifier(secret, digest)
        rsaKey = _publicKey("token_rsa_public_key", rsaPublicKey, RSAPublicKey)
        if rsaKey is not None:
            for name in RSA_ALGORITHMS:
                self._verifiers[name] = _pyjwtVerifier(name, rsaKey)
        ecKey = _publicKey("token_ecdsa_public_key", ecdsaPublicKey, EllipticCurvePublicKey)
        if ecKey is not None:
            name = ECDSA_ALGORITHMS.get(ecKey.curve.name, "")
            if not name:
                raise ConfigError(
                    f'config key "token_ecdsa_public_key": curve {ecKey.curve.name} is not P-256, P-384 or P-521'
                )
            self._verifiers[name] = _pyjwtVerifier(name, ecKey)
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
        return tuple(self._verifiers)

    def verifyConnect(self, token: str, now: float) -> ConnectClaims:
        """
        Verify a connection token (C{ConnectRequest.token} or C{RefreshRequest.token}).

        @param now: The current Unix time, from the reactor.
        @raise InvalidToken: The token is not valid (disconnect 3500).
        @raise TokenExpired: The token is valid but not now (error 109 at connect, disconnect 3005 at refresh).
        """
        claims = self._verify(token)
        channel = _string(claims, "channel")
        channelsClaim = _strings(claims, "channels")
        subsClaim = _object(claims, "subs")
        expireAt = _expireAt(claims)
        if channel:
            raise InvalidToken("connection token can not have a channel claim")
        _checkTimes(claims, now)
        subs: dict[str, SubOptions] = {}
        if subsClaim:
            for name, options in subsClaim.items():
                subs[name] = _subOptions(options)
        else:
            for name in channelsClaim:
                subs[name] = SubOptions()
        return ConnectClaims(
            user=self._user(claims),
            expireAt=expireAt,
            info=_raw(claims, "info", "b64info"),
            channels=tuple(subs),
            subs=subs,
            meta=claims.get("meta"),
        )

    def verifySubscribe(self, token: str, now: float) -> SubscribeClaims:
        """
        Verify a subscription token (C{SubscribeRequest.token} or C{SubRefreshRequest.token}).

        The caller compares C{user}, C{channel} and C{client} with the connection and the request.

        @param now: The current Unix time, from the reactor.
        @raise InvalidToken: The token is not valid, or has no channel (error 103 at subscribe).
        @raise TokenExpired: The token is valid but not now (error 109).
        """
        claims = self._verify(token)
        channel = _string(claims, "channel")
        client = _string(claims, "client")
        expireAt = _expireAt(claims)
        _checkTimes(claims, now)
        if not channel:
            raise InvalidToken("subscription token must have a channel claim")
        return SubscribeClaims(
            user=self._user(claims),
            channel=channel,
            client=client,
            expireAt=expireAt,
            info=_raw(claims, "info", "b64info"),
            data=_raw(claims, "data", "b64data"),
            override=_override(claims.get("override")),
        )

    def _verify(self, token: str) -> dict[str, Any]:
        """
        Decode a token and check everything but the times: format, registered claim types, aud, iss, signature.
        """
        if not isinstance(token, str):
            raise InvalidToken("token must be a string")
        try:
            raw = token.encode("ascii")
        except UnicodeEncodeError:
            raise InvalidToken("malformed token") from None
        parts = raw.split(b".")
        if len(parts) != 3:
            raise InvalidToken("malformed token")
        headerPart, payloadPart, signaturePart = parts
        header = _json(_b64url(headerPart))
        if not isinstance(header, dict):
            raise InvalidToken("malformed token header")
        claims = _json(_b64url(payloadPart))
        if not isinstance(claims, dict):
            raise InvalidToken("claims must be an object")
        signature = _b64url(signaturePart)

        for key in ("exp", "nbf", "iat"):
            _number(claims, key)
        for key in ("sub", "iss", "jti"):
            _string(claims, key)
        audiences = _audiences(claims)
        issuer = _string(claims, "iss")
        if self._audience and self._audience not in audiences:
            raise InvalidToken("invalid audience")
        if self._issuer and issuer != self._issuer:
            raise InvalidToken("invalid issuer")
        if self._issuerRe is not None and self._issuerRe.search(issuer) is None:
            raise InvalidToken("issuer not matched")
        if self._audienceRe is not None and not any(self._audienceRe.search(aud) for aud in audiences):
            raise InvalidToken("audience not matched")

        algorithm = header.get("alg")
        verifier = self._verifiers.get(algorithm) if isinstance(algorithm, str) else None
        if verifier is None:
            # The algorithm's name comes from the token: keep it out of the message (and so out of logs).
            raise InvalidToken("unsupported or disabled JWT algorithm")
        try:
            valid = verifier(headerPart + b"." + payloadPart, signature)
        except (ValueError, TypeError):
            valid = False
        if not valid:
            raise InvalidToken("signature verification failed")
        return claims

    def _user(self, claims: dict[str, Any]) -> str:
        """The user id: the claim at C{token_user_id_claim}, as a string (gjson's C{String()}; missing: "")."""
        value: Any = claims
        for step in self._userIDPath:
            if isinstance(value, dict):
                value = value.get(step)
            elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
                value = value[int(step)]
            else:
                return ""
        if value is None:
            return ""
        if isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "true" if value else "false"
        return orjson.dumps(value).decode("utf-8")


# Keys


def _hmacVerifier(secret: bytes, digest: Callable[..., Any]) -> Callable[[bytes, bytes], bool]:
    # Not PyJWT's HMACAlgorithm: it refuses secrets that look like PEM, SSH or JWK text, and Centrifugo takes any
    # string's bytes as the HMAC key.
    def verify(message: bytes, signature: bytes) -> bool:
        return hmac.compare_digest(hmac.new(secret, message, digest).digest(), signature)

    return verify


def _pyjwtVerifier(name: str, key: Any) -> Callable[[bytes, bytes], bool]:
    algorithm = get_default_algorithms()[name]
    prepared = algorithm.prepare_key(key)

    def verify(message: bytes, signature: bytes) -> bool:
        return bool(algorithm.verify(message, prepared, signature))

    return verify


def _publicKey(configKey: str, value: PublicKey, kind: type) -> Any:
    """A public key from PEM text (a public key, PKCS#1 or PKIX, or a certificate) or a key object; None if unset."""
    if value is None or value == "" or value == b"":
        return None
    key: Any = value
    if isinstance(value, (str, bytes)):
        pem = value.encode("utf-8") if isinstance(value, str) else value
        try:
            key = serialization.load_pem_public_key(pem)
        except (ValueError, TypeError):
            try:
                key = load_pem_x509_certificate(pem).public_key()
            except (ValueError, TypeError):
                raise ConfigError(f'config key "{configKey}": expected a PEM public key or certificate') from None
    if not isinstance(key, kind):
        expected = "an RSA" if kind is RSAPublicKey else "an ECDSA"
        raise ConfigError(f'config key "{configKey}": expected {expected} public key')
    return key


def _compile(configKey: str, pattern: str) -> re.Pattern[str] | None:
    # Centrifugo compiles Go (RE2) regexps; Python's syntax agrees for the patterns one writes for aud/iss.
    if not pattern:
        return None
    try:
        return re.compile(pattern)
    except re.error as e:
        raise ConfigError(f'config key "{configKey}": invalid regular expression ({e})') from None


# Token parts and claim values. A claim whose value is null counts as absent (Go decodes null as the zero value).


def _b64url(segment: bytes) -> bytes:
    # Go's base64.RawURLEncoding: the URL-safe alphabet without padding.
    if _SEGMENT.fullmatch(segment) is None:
        raise InvalidToken("malformed token")
    try:
        return base64.urlsafe_b64decode(segment + b"=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise InvalidToken("malformed token") from None


def _json(data: bytes) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        raise InvalidToken("malformed token") from None


def _number(claims: dict[str, Any], key: str) -> float | None:
    value = claims.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidToken(f"{key} must be a number")
    return value


def _string(claims: Mapping[str, Any], key: str) -> str:
    value = claims.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidToken(f"{key} must be a string")
    return value


def _strings(claims: dict[str, Any], key: str) -> list[str]:
    value = claims.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidToken(f"{key} must be a list of strings")
    return value


def _object(claims: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = claims.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidToken(f"{key} must be an object")
    return value


def _audiences(claims: dict[str, Any]) -> list[str]:
    value = claims.get("aud")
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    raise InvalidToken("aud must be a string or a list of strings")


def _checkTimes(claims: dict[str, Any], now: float) -> None:
    # cristalhq/jwt: IsValidExpiresAt is exp.After(now), IsValidNotBefore is nbf.Before(now); no leeway.
    exp = _number(claims, "exp")
    if exp is not None and not exp > now:
        raise TokenExpired()
    nbf = _number(claims, "nbf")
    if nbf is not None and not nbf < now:
        raise TokenExpired()


def _expireAt(claims: dict[str, Any]) -> int:
    expireAt = claims.get("expire_at")
    if expireAt is not None:
        # A Go *int64: a float (even 1.0) or a string does not decode.
        if isinstance(expireAt, bool) or not isinstance(expireAt, int):
            raise InvalidToken("expire_at must be an integer")
        return max(expireAt, 0)
    exp = _number(claims, "exp")
    return math.floor(exp) if exp is not None else 0


def _raw(claims: Mapping[str, Any], key: str, b64key: str) -> bytes | None:
    """The raw JSON of C{claims[key]}, unless C{claims[b64key]} is set: then its decoded bytes (Centrifugo's order)."""
    encoded = _string(claims, b64key)
    if encoded:
        try:
            return base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidToken(f"{b64key} is not base64") from None
    value = claims.get(key)
    if value is None:
        return None
    return orjson.dumps(value)


def _subOptions(options: Any) -> SubOptions:
    if options is None:
        return SubOptions()
    if not isinstance(options, dict):
        raise InvalidToken("subs values must be objects")
    return SubOptions(
        info=_raw(options, "info", "b64info"),
        data=_raw(options, "data", "b64data"),
        override=_override(options.get("override")),
    )


def _override(value: Any) -> dict[str, bool]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidToken("override must be an object")
    override: dict[str, bool] = {}
    for name in OVERRIDES:
        option = value.get(name)
        if option is None:
            continue
        if not isinstance(option, dict):
            raise InvalidToken(f"override {name} must be an object")
        flag = option.get("value", False)
        if flag is None:
            flag = False
        if not isinstance(flag, bool):
            raise InvalidToken(f"override {name} value must be true or false")
        override[name] = flag
    return override
