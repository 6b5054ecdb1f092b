"""
Tests for L{httpstream.tokens}: connection JWTs signed with the HMAC secret, checked against an injected time.
"""

from __future__ import annotations

import base64
from typing import Any

import jwt
import orjson
from cryptography.hazmat.primitives.asymmetric import rsa
from twisted.trial.unittest import SynchronousTestCase

from httpstream.tokens import ConnectClaims, InvalidToken, TokenExpired, TokenVerifier

SECRET = "a-test-secret-long-enough-for-hs512-keys-which-want-64-bytes!!!!"
NOW = 1_700_000_000.0


def sign(claims: dict[str, Any], algorithm: str = "HS256", key: Any = SECRET) -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


def unsigned(claims: dict[str, Any]) -> str:
    """A token with C{alg: none} and no signature."""

    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(obj)).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


class AlgorithmTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.verifier = TokenVerifier(SECRET)

    def test_hmacAccepted(self) -> None:
        for algorithm in ("HS256", "HS384", "HS512"):
            claims = self.verifier.verifyConnect(sign({"sub": "alice"}, algorithm), NOW)
            self.assertEqual(claims, ConnectClaims(user="alice"), algorithm)

    def test_noneRefused(self) -> None:
        self.assertRaises(InvalidToken, self.verifier.verifyConnect, unsigned({"sub": "alice"}), NOW)

    def test_rsaRefused(self) -> None:
        """
        An RS256 token is refused: no RSA key is configured, and the HMAC secret must never check it.
        """
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        token = sign({"sub": "alice"}, "RS256", key)
        self.assertRaises(InvalidToken, self.verifier.verifyConnect, token, NOW)

    def test_wrongSecret(self) -> None:
        token = sign({"sub": "alice"}, key="another-secret-long-enough-for-hs512-keys-which-want-64-bytes!!")
        self.assertRaises(InvalidToken, self.verifier.verifyConnect, token, NOW)

    def test_noSecretConfigured(self) -> None:
        """
        Without a configured secret every token is invalid, even one signed with an empty key.
        """
        verifier = TokenVerifier("")
        self.assertRaises(InvalidToken, verifier.verifyConnect, sign({"sub": "alice"}), NOW)

    def test_garbage(self) -> None:
        for token in ("not-a-jwt", "a.b.c", "", sign({"sub": "alice"})[:-5]):
            self.assertRaises(InvalidToken, self.verifier.verifyConnect, token, NOW)


class ClaimTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.verifier = TokenVerifier(SECRET)

    def verify(self, claims: dict[str, Any], now: float = NOW) -> ConnectClaims:
        return self.verifier.verifyConnect(sign(claims), now)

    def test_anonymous(self) -> None:
        self.assertEqual(self.verify({}).user, "")
        self.assertEqual(self.verify({"sub": ""}).user, "")

    def test_subMustBeString(self) -> None:
        self.assertRaises(InvalidToken, self.verify, {"sub": 42})

    def test_exp(self) -> None:
        """
        exp in the future: valid, and the connection expires then; exp now or past: expired (error 109).
        """
        self.assertEqual(self.verify({"sub": "a", "exp": NOW + 60}).expireAt, NOW + 60)
        self.assertRaises(TokenExpired, self.verify, {"sub": "a", "exp": NOW})
        self.assertRaises(TokenExpired, self.verify, {"sub": "a", "exp": NOW - 1})

    def test_expAgainstInjectedTime(self) -> None:
        """
        The injected time decides, not the wall clock: a token long expired by the clock of this machine is valid
        at an earlier C{now}.
        """
        token = sign({"sub": "a", "exp": 1000})
        self.assertEqual(self.verifier.verifyConnect(token, 999).expireAt, 1000)
        self.assertRaises(TokenExpired, self.verifier.verifyConnect, token, 1000)

    def test_nbf(self) -> None:
        self.assertRaises(TokenExpired, self.verify, {"sub": "a", "nbf": NOW + 10})
        self.assertEqual(self.verify({"sub": "a", "nbf": NOW - 10}).user, "a")

    def test_noExpiry(self) -> None:
        self.assertEqual(self.verify({"sub": "a"}).expireAt, 0)

    def test_expireAtOverridesExp(self) -> None:
        """
        expire_at sets the connection expiry (0: never) while exp only validates the token.
        """
        self.assertEqual(self.verify({"sub": "a", "exp": NOW + 60, "expire_at": NOW + 3600}).expireAt, NOW + 3600)
        self.assertEqual(self.verify({"sub": "a", "exp": NOW + 60, "expire_at": 0}).expireAt, 0)
        self.assertRaises(TokenExpired, self.verify, {"sub": "a", "exp": NOW - 1, "expire_at": NOW + 3600})

    def test_timesMustBeNumbers(self) -> None:
        for key in ("exp", "nbf", "expire_at"):
            self.assertRaises(InvalidToken, self.verify, {"sub": "a", key: "soon"})
            self.assertRaises(InvalidToken, self.verify, {"sub": "a", key: True})

    def test_info(self) -> None:
        """
        info becomes the raw JSON of ClientInfo.conn_info; b64info gives its decoded bytes.
        """
        self.assertEqual(self.verify({"sub": "a", "info": {"name": "Alice"}}).info, b'{"name":"Alice"}')
        self.assertEqual(self.verify({"sub": "a", "info": "x"}).info, b'"x"')
        b64 = base64.b64encode(b'{"b":1}').decode()
        self.assertEqual(self.verify({"sub": "a", "b64info": b64}).info, b'{"b":1}')
        self.assertIsNone(self.verify({"sub": "a"}).info)
        self.assertRaises(InvalidToken, self.verify, {"sub": "a", "b64info": "not base64!"})

    def test_channelClaimRefused(self) -> None:
        """
        A subscription token (it has a channel claim) is not a connection token.
        """
        self.assertRaises(InvalidToken, self.verify, {"sub": "a", "channel": "news"})

    def test_audienceNotChecked(self) -> None:
        """
        With no audience configured, an aud claim does not make the token invalid (as in Centrifugo).
        """
        self.assertEqual(self.verify({"sub": "a", "aud": "somebody"}).user, "a")
