# -*- test-case-name: tests.policy.test_jwks -*-
"""
JSON Web Key Sets (RFC 7517) as Centrifugo reads them from C{token_jwks_public_endpoint} (C{internal/jwks} over
C{rakutentech/jwk-go}), and the check of a token's signature with one of their keys.

A set is C{{"keys": [...]}}. Only keys meant for signatures (C{"use": "sig"}) count, each found by its C{kid}. Three
kinds verify tokens, each with the algorithms Centrifugo allows it: C{RSA} (RS256/384/512, or only the key's C{alg}
when it names one), C{EC} (the one ES algorithm of the key's curve) and C{OKP} Ed25519 (EdDSA). A key of another
kind, or one whose numbers do not make a key, is left out (Centrifugo refuses the whole set for the latter; either
way a token naming it is invalid).

Where the keys come from and how long they are kept is L{httpstream.policy.jwkscache}'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import orjson
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm, get_default_algorithms
from jwt.exceptions import InvalidKeyError

from httpstream.logs import Logger
from httpstream.policy.jwtverify import ECDSA_ALGORITHMS, RSA_ALGORITHMS, InvalidToken, Token, Verifier, checkWith

__all__ = ["KeySetError", "PublicJWK", "checkSignature", "parseKeySet"]

log = Logger()


class KeySetError(Exception):
    """The endpoint's answer is not a key set (not JSON, no C{keys} list)."""


@attrs.frozen
class PublicJWK:
    """One usable signature key of a set: its id and a verification function for each algorithm it allows."""

    kid: str
    #: Algorithm name -> (signing input, signature) -> valid.
    verifiers: Mapping[str, Verifier] = attrs.field(repr=False)

    @property
    def algorithms(self) -> tuple[str, ...]:
        return tuple(self.verifiers)


def parseKeySet(body: bytes) -> dict[str, PublicJWK]:
    """
    The usable signature keys of a JWKS document, by C{kid} (a later key with the same C{kid} wins, as it
    overwrites the earlier one in Centrifugo's cache).

    @raise KeySetError: not a JSON object with a C{keys} list, or a list without any key (Centrifugo's "public key
        not found" for every kid).
    """
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise KeySetError("JWKS response is not JSON") from None
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list):
        raise KeySetError('JWKS response has no "keys" list')
    if not keys:
        raise KeySetError("JWKS response has no keys")
    found: dict[str, PublicJWK] = {}
    for spec in keys:
        if not isinstance(spec, dict) or spec.get("use") != "sig":
            continue  # Centrifugo takes signature keys only
        kid = spec.get("kid")
        if not isinstance(kid, str) or not kid:
            continue  # a token must name its key: one without an id can never be chosen
        try:
            verifiers = _verifiers(spec)
        except (InvalidKeyError, ValueError, TypeError, KeyError):
            log.warn("JWKS key {kid}: not a usable public key, ignored", kid=kid)
            continue
        if verifiers:
            found[kid] = PublicJWK(kid, verifiers)
    return found


def checkSignature(token: Token, key: PublicJWK) -> None:
    """
    @raise InvalidToken: the token's algorithm is not one the key allows, or its signature does not verify.
    """
    checkWith(key.verifiers, token, "JWT algorithm does not match the JWKS key")


def _verifiers(spec: dict[str, Any]) -> dict[str, Verifier]:
    """The algorithms a key allows, each with its verification function; {} for a kind Centrifugo refuses."""
    kty, alg = spec.get("kty"), spec.get("alg") or ""
    if not isinstance(alg, str):
        return {}
    # The public part only: a set that (wrongly) publishes a private key still verifies with its public half.
    public = {name: value for name, value in spec.items() if name not in ("d", "p", "q", "dp", "dq", "qi", "oth")}
    if kty == "RSA":
        rsaKey = RSAAlgorithm.from_jwk(public)
        if not isinstance(rsaKey, RSAPublicKey):
            return {}
        # "alg" is optional (RFC 7517 4.4): without it the token's RS algorithm is taken.
        names = (alg,) if alg else RSA_ALGORITHMS
        return {name: _verifier(name, rsaKey) for name in names if name in RSA_ALGORITHMS}
    if kty == "EC":
        ecKey = ECAlgorithm.from_jwk(public)
        if not isinstance(ecKey, EllipticCurvePublicKey):
            return {}
        name = ECDSA_ALGORITHMS.get(ecKey.curve.name, "")
        if not name or (alg and alg != name):
            return {}  # Go's NewVerifierES: only the algorithm made for the key's curve
        return {name: _verifier(name, ecKey)}
    if kty == "OKP" and spec.get("crv") == "Ed25519":
        okpKey = OKPAlgorithm.from_jwk(public)
        if not isinstance(okpKey, Ed25519PublicKey):
            return {}
        return {"EdDSA": _verifier("EdDSA", okpKey)}
    return {}


def _verifier(name: str, key: Any) -> Verifier:
    algorithm = get_default_algorithms()[name]

    def verify(message: bytes, signature: bytes) -> bool:
        return bool(algorithm.verify(message, key, signature))

    return verify
