"""
Keys, JWKS documents and signed tokens for the JWKS tests (in memory and over real sockets).
"""

from __future__ import annotations

from typing import Any

import jwt
import orjson
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

RSA_A = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_B = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_P256 = ec.generate_private_key(ec.SECP256R1())
EC_P384 = ec.generate_private_key(ec.SECP384R1())
ED25519 = ed25519.Ed25519PrivateKey.generate()


def jwk(privateKey: Any, kid: str, **extra: Any) -> dict[str, Any]:
    """The public JWK of a private key, meant for signatures (C{use: sig}) unless C{extra} says otherwise."""
    public = privateKey.public_key()
    if isinstance(privateKey, rsa.RSAPrivateKey):
        spec = RSAAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(privateKey, ec.EllipticCurvePrivateKey):
        spec = ECAlgorithm.to_jwk(public, as_dict=True)
    else:
        spec = OKPAlgorithm.to_jwk(public, as_dict=True)
    return {**spec, "kid": kid, "use": "sig", **extra}


def keySet(*keys: dict[str, Any]) -> bytes:
    return orjson.dumps({"keys": list(keys)})


def signed(claims: dict[str, Any], privateKey: Any, kid: str | None, algorithm: str = "RS256") -> str:
    headers = {} if kid is None else {"kid": kid}
    return jwt.encode(claims, privateKey, algorithm=algorithm, headers=headers)
