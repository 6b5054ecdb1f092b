# -*- test-case-name: tests.policy.test_tokens -*-
"""
JSON Web Tokens as Centrifugo v5 verifies them (C{internal/jwtverify} over C{cristalhq/jwt}): the compact form, the
keys and the one algorithm each enables, the signature, and the registered claims' times.

Keys: HS256/384/512 with C{token_hmac_secret_key}, RS256/384/512 with C{token_rsa_public_key}, ES256/384/512 with
C{token_ecdsa_public_key} (only the one algorithm whose curve is the key's). Any other algorithm, C{none} included,
or one whose key is not configured, makes the token invalid.

What a token grants is read by L{httpstream.policy.claims}; L{httpstream.policy.tokens} puts the checks in
Centrifugo's order.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.x509 import load_pem_x509_certificate
from jwt.algorithms import get_default_algorithms

from httpstream.config import ConfigError
from httpstream.readers import Fields

__all__ = [
    "ECDSA_ALGORITHMS",
    "HMAC_ALGORITHMS",
    "RSA_ALGORITHMS",
    "InvalidToken",
    "PublicKey",
    "Signatures",
    "Token",
    "TokenExpired",
    "checkTimes",
    "parse",
]

HMAC_ALGORITHMS = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
RSA_ALGORITHMS = ("RS256", "RS384", "RS512")
#: An ECDSA key enables the one algorithm made for its curve (Go's C{jwt.NewVerifierES} refuses the others).
ECDSA_ALGORITHMS = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}

PublicKey = str | bytes | RSAPublicKey | EllipticCurvePublicKey | None

_SEGMENT = re.compile(rb"[A-Za-z0-9_-]*")


# Checks a signature (signing input, signature) with one key and algorithm.
Verifier = Callable[[bytes, bytes], bool]


class InvalidToken(Exception):
    """
    Bad format, signature, algorithm or claims: a connection is refused with 3500, a subscription with error 103.
    """


class TokenExpired(Exception):
    """The token's C{exp} (or C{nbf}) does not admit it now: error 109, the SDK asks for a new token."""


@attrs.frozen
class Token:
    """A token in its parts, decoded but not yet verified."""

    #: The JOSE header (an object).
    header: dict[str, Any]
    #: The claims object as decoded, for readers that walk it by path (C{token_user_id_claim}).
    payload: dict[str, Any]
    #: The claims, read with their types.
    claims: Fields
    #: What the signature covers: the first two segments as sent.
    signingInput: bytes
    signature: bytes


def parse(token: object) -> Token:
    """
    Split and decode a compact JWT.

    @raise InvalidToken: not three base64url segments, or a header or claims that are not JSON objects.
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
    payload = _json(_b64url(payloadPart))
    if not isinstance(payload, dict):
        raise InvalidToken("claims must be an object")
    return Token(header, payload, Fields(payload), headerPart + b"." + payloadPart, _b64url(signaturePart))


def checkTimes(claims: Fields, now: float) -> None:
    """
    @raise TokenExpired: C{exp} is not after C{now}, or C{nbf} not before it (cristalhq/jwt: no leeway).
    @raise FieldError: C{exp} or C{nbf} is not a number.
    """
    exp = claims.number("exp")
    if exp is not None and not exp > now:
        raise TokenExpired()
    nbf = claims.number("nbf")
    if nbf is not None and not nbf < now:
        raise TokenExpired()


class Signatures:
    """The enabled algorithms, each with its key, and the check of a token's signature."""

    def __init__(self, hmacSecret: str, rsaPublicKey: PublicKey, ecdsaPublicKey: PublicKey,
                 prefix: str = "token_") -> None:
        """
        @param prefix: of the configuration keys named in errors (C{subscription_token_} for the other set).
        @raise ConfigError: a key is unusable, named by its configuration key.
        """
        # Verification functions by algorithm name: (signing input, signature) -> valid.
        self._verifiers: dict[str, Verifier] = {}
        if hmacSecret:
            secret = hmacSecret.encode("utf-8")
            for name, digest in HMAC_ALGORITHMS.items():
                self._verifiers[name] = _hmacVerifier(secret, digest)
        rsaKey = _publicKey(f"{prefix}rsa_public_key", rsaPublicKey, RSAPublicKey)
        if rsaKey is not None:
            for name in RSA_ALGORITHMS:
                self._verifiers[name] = _pyjwtVerifier(name, rsaKey)
        ecKey = _publicKey(f"{prefix}ecdsa_public_key", ecdsaPublicKey, EllipticCurvePublicKey)
        if ecKey is not None:
            name = ECDSA_ALGORITHMS.get(ecKey.curve.name, "")
            if not name:
                raise ConfigError(
                    f'config key "{prefix}ecdsa_public_key": curve {ecKey.curve.name} is not P-256, P-384 or P-521'
                )
            self._verifiers[name] = _pyjwtVerifier(name, ecKey)

    @property
    def algorithms(self) -> tuple[str, ...]:
        return tuple(self._verifiers)

    def check(self, token: Token) -> None:
        """@raise InvalidToken: the header's algorithm is not enabled, or the signature does not verify."""
        checkWith(self._verifiers, token, "unsupported or disabled JWT algorithm")


def checkWith(verifiers: Mapping[str, Verifier], token: Token, unknownAlgorithm: str) -> None:
    """
    Verify C{token}'s signature with the verifier of its header's algorithm among C{verifiers}.

    @param unknownAlgorithm: the message when none is for that algorithm (the algorithm's name comes from the
        token: it is kept out of the message, and so out of logs).
    @raise InvalidToken: no verifier for the algorithm, or the signature does not verify.
    """
    algorithm = token.header.get("alg")
    verifier = verifiers.get(algorithm) if isinstance(algorithm, str) else None
    if verifier is None:
        raise InvalidToken(unknownAlgorithm)
    try:
        valid = verifier(token.signingInput, token.signature)
    except (ValueError, TypeError):
        valid = False
    if not valid:
        raise InvalidToken("signature verification failed")


def _hmacVerifier(secret: bytes, digest: Callable[..., Any]) -> Verifier:
    # Not PyJWT's HMACAlgorithm: it refuses secrets that look like PEM, SSH or JWK text, and Centrifugo takes any
    # string's bytes as the HMAC key.
    def verify(message: bytes, signature: bytes) -> bool:
        return hmac.compare_digest(hmac.new(secret, message, digest).digest(), signature)

    return verify


def _pyjwtVerifier(name: str, key: Any) -> Verifier:
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
