"""
Tests for L{httpstream.policy.tokens}: connection and subscription JWTs as Centrifugo v5 verifies them, checked against an
injected time.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
from collections.abc import Callable
from typing import Any, ClassVar

import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from twisted.trial.unittest import SynchronousTestCase

from httpstream.config import Config, ConfigError
from httpstream.policy.tokens import (
    ConnectClaims,
    InvalidToken,
    SubOptions,
    SubscribeClaims,
    TokenExpired,
    TokenVerifier,
)

SECRET = "a-test-secret-long-enough-for-hs512-keys-which-want-64-bytes!!!!"
OTHER_SECRET = "another-secret-long-enough-for-hs512-keys-which-want-64-bytes!!"
NOW = 1_700_000_000

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEYS = {
    "ES256": ec.generate_private_key(ec.SECP256R1()),
    "ES384": ec.generate_private_key(ec.SECP384R1()),
    "ES512": ec.generate_private_key(ec.SECP521R1()),
}
OTHER_EC_KEY = ec.generate_private_key(ec.SECP256R1())


def pem(privateKey: Any) -> str:
    return (
        privateKey.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sign(claims: dict[str, Any], algorithm: str = "HS256", key: Any = SECRET) -> str:
    try:
        return jwt.encode(claims, key, algorithm=algorithm)
    except TypeError:
        # PyJWT refuses to encode some claims of the wrong type (iss, for one): tokens other libraries make.
        assert algorithm == "HS256"
        return handmade({"alg": "HS256", "typ": "JWT"}, claims, key.encode())


def handmade(header: dict[str, Any], claims: Any, key: bytes = b"") -> str:
    """A token PyJWT would refuse to make: any header, any payload, HMAC-SHA256 over them with C{key}."""
    signingInput = f"{b64url(orjson.dumps(header))}.{b64url(orjson.dumps(claims))}"
    signature = hmac.new(key, signingInput.encode("ascii"), hashlib.sha256).digest() if key else b""
    return f"{signingInput}.{b64url(signature)}"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class AlgorithmTests(SynchronousTestCase):
    """
    Each algorithm family is accepted with its configured key, and refused without it or with another key.
    """

    def test_accepted(self) -> None:
        verifier = TokenVerifier(SECRET, rsaPublicKey=pem(RSA_KEY))
        cases: list[tuple[str, Any]] = [
            ("HS256", SECRET),
            ("HS384", SECRET),
            ("HS512", SECRET),
            ("RS256", RSA_KEY),
            ("RS384", RSA_KEY),
            ("RS512", RSA_KEY),
        ]
        for algorithm, key in cases:
            claims = verifier.verifyConnect(sign({"sub": "alice"}, algorithm, key), NOW)
            self.assertEqual(claims, ConnectClaims(user="alice"), algorithm)
        for algorithm, key in EC_KEYS.items():
            verifier = TokenVerifier(ecdsaPublicKey=pem(key))
            claims = verifier.verifyConnect(sign({"sub": "alice"}, algorithm, key), NOW)
            self.assertEqual(claims, ConnectClaims(user="alice"), algorithm)

    def test_enabledAlgorithms(self) -> None:
        """
        An ECDSA key enables only the algorithm of its curve; RSA and HMAC keys enable their three.
        """
        self.assertEqual(TokenVerifier().algorithms, ())
        self.assertEqual(TokenVerifier(SECRET).algorithms, ("HS256", "HS384", "HS512"))
        self.assertEqual(TokenVerifier(rsaPublicKey=pem(RSA_KEY)).algorithms, ("RS256", "RS384", "RS512"))
        for algorithm, key in EC_KEYS.items():
            self.assertEqual(TokenVerifier(ecdsaPublicKey=pem(key)).algorithms, (algorithm,))

    def test_refusedWithoutKey(self) -> None:
        """
        A token whose algorithm has no configured key is invalid, whatever keys the others have.
        """
        tokens = {
            "HS256": sign({"sub": "a"}, "HS256"),
            "HS512": sign({"sub": "a"}, "HS512"),
            "RS256": sign({"sub": "a"}, "RS256", RSA_KEY),
            "RS512": sign({"sub": "a"}, "RS512", RSA_KEY),
            "ES256": sign({"sub": "a"}, "ES256", EC_KEYS["ES256"]),
            "ES384": sign({"sub": "a"}, "ES384", EC_KEYS["ES384"]),
        }
        verifiers = {
            "HS": TokenVerifier(rsaPublicKey=pem(RSA_KEY), ecdsaPublicKey=pem(EC_KEYS["ES256"])),
            "RS": TokenVerifier(SECRET, ecdsaPublicKey=pem(EC_KEYS["ES256"])),
            "ES": TokenVerifier(SECRET, rsaPublicKey=pem(RSA_KEY)),
        }
        for algorithm, token in tokens.items():
            verifier = verifiers[algorithm[:2]]
            self.assertRaises(InvalidToken, verifier.verifyConnect, token, NOW)
        # An ES384 token with a P-256 key configured: ES384 is not enabled.
        verifier = TokenVerifier(ecdsaPublicKey=pem(EC_KEYS["ES256"]))
        self.assertRaises(InvalidToken, verifier.verifyConnect, tokens["ES384"], NOW)
        self.assertRaises(InvalidToken, TokenVerifier().verifyConnect, tokens["HS256"], NOW)

    def test_wrongKey(self) -> None:
        cases: list[tuple[TokenVerifier, str]] = [
            (TokenVerifier(SECRET), sign({"sub": "a"}, "HS256", OTHER_SECRET)),
            (TokenVerifier(rsaPublicKey=pem(RSA_KEY)), sign({"sub": "a"}, "RS256", OTHER_RSA_KEY)),
            (TokenVerifier(ecdsaPublicKey=pem(EC_KEYS["ES256"])), sign({"sub": "a"}, "ES256", OTHER_EC_KEY)),
        ]
        for verifier, token in cases:
            self.assertRaises(InvalidToken, verifier.verifyConnect, token, NOW)
            self.assertRaises(InvalidToken, verifier.verifySubscribe, token, NOW)

    def test_tamperedPayload(self) -> None:
        header, _, signature = sign({"sub": "alice"}).split(".")
        forged = f"{header}.{b64url(orjson.dumps({'sub': 'root'}))}.{signature}"
        self.assertRaises(InvalidToken, TokenVerifier(SECRET).verifyConnect, forged, NOW)

    def test_none(self) -> None:
        """
        C{alg: none} is refused, with or without a signature, whatever keys are configured.
        """
        verifier = TokenVerifier(SECRET, rsaPublicKey=pem(RSA_KEY), ecdsaPublicKey=pem(EC_KEYS["ES256"]))
        for alg in ("none", "None", "NONE"):
            token = handmade({"alg": alg, "typ": "JWT"}, {"sub": "a"})
            self.assertRaises(InvalidToken, verifier.verifyConnect, token, NOW)
        self.assertRaises(InvalidToken, verifier.verifyConnect, jwt.encode({"sub": "a"}, None, "none"), NOW)

    def test_unknownAlgorithms(self) -> None:
        verifier = TokenVerifier(SECRET)
        for header in ({"alg": "PS256"}, {"alg": "EdDSA"}, {"alg": "HS1"}, {"alg": 256}, {"typ": "JWT"}):
            token = handmade(header, {"sub": "a"}, SECRET.encode())
            self.assertRaises(InvalidToken, verifier.verifyConnect, token, NOW)

    def test_hmacWithPublicKeyRefused(self) -> None:
        """
        The algorithm-confusion attack: an HS256 token "signed" with the RSA public key's PEM, against a verifier
        that has only the RSA key, is refused.
        """
        token = handmade({"alg": "HS256"}, {"sub": "root"}, pem(RSA_KEY).encode())
        self.assertRaises(InvalidToken, TokenVerifier(rsaPublicKey=pem(RSA_KEY)).verifyConnect, token, NOW)

    def test_anyHmacSecret(self) -> None:
        """
        The HMAC key is the secret's bytes, whatever they look like (PyJWT's own HMAC refuses PEM-like secrets).
        """
        for secret in ("-----BEGIN PUBLIC KEY----- not really", "ssh-rsa AAAA", '{"kty": "oct"}', "short"):
            token = handmade({"alg": "HS256"}, {"sub": "a"}, secret.encode())
            self.assertEqual(TokenVerifier(secret).verifyConnect(token, NOW).user, "a", secret)

    def test_malformed(self) -> None:
        verifier = TokenVerifier(SECRET)
        good = sign({"sub": "alice"})
        header, payload, signature = good.split(".")
        for token in (
            "",
            "not-a-jwt",
            "a.b.c",
            "a.b.c.d",
            good[:-5],
            good + ".",
            f"{header}=.{payload}.{signature}",  # padding is not base64url without padding
            f"{header}.{payload}+.{signature}",
            f"{header}.{payload}.{signature}é",
            handmade({"alg": "HS256"}, [1, 2], SECRET.encode()),  # claims must be an object
            handmade({"alg": "HS256"}, "sub", SECRET.encode()),
            f"{b64url(b'[]')}.{payload}.{signature}",  # header must be an object
            f"{header}.{b64url(b'{not json')}.{signature}",
        ):
            self.assertRaises(InvalidToken, verifier.verifyConnect, token, NOW)
        for notAString in (None, 42, b"bytes", ["a"]):
            self.assertRaises(InvalidToken, verifier.verifyConnect, notAString, NOW)

    def test_messagesNeverHoldTheToken(self) -> None:
        """
        The exception messages (which the client logs) never contain the token or its parts.
        """
        verifier = TokenVerifier(SECRET, audience="app")
        for token in (
            sign({"sub": "alice"}, "HS256", OTHER_SECRET),
            sign({"sub": "alice"}, "RS256", RSA_KEY),
            sign({"sub": "alice", "aud": "other"}),
            sign({"sub": "alice", "aud": "app", "channel": "news"}),
            handmade({"alg": "secret-looking-alg"}, {"sub": "alice"}),
            "garbage-token-value",
        ):
            with self.assertRaises(InvalidToken) as caught:
                verifier.verifyConnect(token, NOW)
            message = str(caught.exception)
            for part in [token, *token.split(".")]:
                if len(part) > 3:
                    self.assertNotIn(part, message)
            self.assertNotIn("alice", message)
            self.assertNotIn("secret-looking-alg", message)


class ConfigTests(SynchronousTestCase):
    def config(self, **settings: Any) -> Config:
        return dataclasses.replace(Config(), **settings)

    def test_fromConfig(self) -> None:
        config = self.config(
            token_hmac_secret_key=SECRET,
            token_rsa_public_key=pem(RSA_KEY),
            token_ecdsa_public_key=pem(EC_KEYS["ES384"]),
            token_audience="app",
            token_issuer_regex=r"^https://auth\.example\.com/",
            token_user_id_claim="uid",
        )
        verifier = TokenVerifier.fromConfig(config)
        self.assertEqual(verifier.algorithms, ("HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES384"))
        claims = {"uid": "u1", "aud": "app", "iss": "https://auth.example.com/tenant"}
        self.assertEqual(verifier.verifyConnect(sign(claims, "ES384", EC_KEYS["ES384"]), NOW).user, "u1")
        self.assertRaises(InvalidToken, verifier.verifyConnect, sign({**claims, "aud": "x"}, "RS256", RSA_KEY), NOW)

    def test_defaults(self) -> None:
        verifier = TokenVerifier.fromConfig(Config())
        self.assertEqual(verifier.algorithms, ())
        self.assertRaises(InvalidToken, verifier.verifyConnect, sign({"sub": "a"}), NOW)

    def test_publicKeyFormats(self) -> None:
        """
        PKCS#1 RSA keys, certificates and key objects are accepted as well as PKIX PEM.
        """
        pkcs1 = (
            RSA_KEY.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
            .decode("ascii")
        )
        certificate = selfSignedCertificate(RSA_KEY)
        token = sign({"sub": "a"}, "RS256", RSA_KEY)
        for key in (pkcs1, certificate, RSA_KEY.public_key(), pem(RSA_KEY).encode("ascii")):
            self.assertEqual(TokenVerifier(rsaPublicKey=key).verifyConnect(token, NOW).user, "a")

    def test_badSettings(self) -> None:
        """
        Unusable token settings raise ConfigError naming the key.
        """
        cases: list[tuple[dict[str, Any], str]] = [
            ({"token_rsa_public_key": "not a pem"}, "token_rsa_public_key"),
            ({"token_rsa_public_key": pem(EC_KEYS["ES256"])}, "token_rsa_public_key"),
            ({"token_ecdsa_public_key": pem(RSA_KEY)}, "token_ecdsa_public_key"),
            (
                {"token_ecdsa_public_key": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"},
                "token_ecdsa_public_key",
            ),
            ({"token_audience_regex": "("}, "token_audience_regex"),
            ({"token_issuer_regex": "[a-"}, "token_issuer_regex"),
            ({"token_audience": "a", "token_audience_regex": "a"}, "token_audience_regex"),
            ({"token_issuer": "a", "token_issuer_regex": "a"}, "token_issuer_regex"),
        ]
        for settings, key in cases:
            with self.assertRaises(ConfigError) as caught:
                TokenVerifier.fromConfig(self.config(**settings))
            self.assertIn(f'"{key}"', str(caught.exception))

    def test_unsupportedCurve(self) -> None:
        key = ec.generate_private_key(ec.SECP256K1())
        self.assertRaises(ConfigError, TokenVerifier, ecdsaPublicKey=pem(key))


def selfSignedCertificate(key: rsa.RSAPrivateKey) -> str:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")])
    start = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")


class AudienceIssuerTests(SynchronousTestCase):
    """
    aud and iss, as strings, lists and regular expressions, for both kinds of token.
    """

    CASES: ClassVar[list[tuple[dict[str, str], dict[str, Any], bool]]] = [
        # (verifier settings, claims, valid)
        ({}, {"aud": "anything", "iss": "anyone"}, True),
        ({}, {}, True),
        ({"audience": "app"}, {"aud": "app"}, True),
        ({"audience": "app"}, {"aud": ["web", "app"]}, True),
        ({"audience": "app"}, {"aud": "web"}, False),
        ({"audience": "app"}, {"aud": ["web"]}, False),
        ({"audience": "app"}, {"aud": []}, False),
        ({"audience": "app"}, {}, False),
        ({"audience": "app"}, {"aud": "application"}, False),
        ({"audienceRegex": r"^app-\d+$"}, {"aud": "app-1"}, True),
        ({"audienceRegex": r"^app-\d+$"}, {"aud": ["web", "app-22"]}, True),
        ({"audienceRegex": r"^app-\d+$"}, {"aud": "app-x"}, False),
        ({"audienceRegex": r"^app-\d+$"}, {"aud": ["web"]}, False),
        ({"audienceRegex": r"^app-\d+$"}, {}, False),
        ({"audienceRegex": "app"}, {"aud": "my-app-1"}, True),  # Go's FindStringSubmatch: unanchored
        ({"issuer": "auth"}, {"iss": "auth"}, True),
        ({"issuer": "auth"}, {"iss": "other"}, False),
        ({"issuer": "auth"}, {}, False),
        ({"issuerRegex": r"^https://(?P<tenant>\w+)\.example\.com$"}, {"iss": "https://t1.example.com"}, True),
        ({"issuerRegex": r"^https://(?P<tenant>\w+)\.example\.com$"}, {"iss": "https://example.com"}, False),
        ({"issuerRegex": r"^https://(?P<tenant>\w+)\.example\.com$"}, {}, False),
        ({"issuerRegex": ".*"}, {}, True),  # a pattern that matches "" admits a token without iss, as in Go
        ({"audience": "app", "issuer": "auth"}, {"aud": "app", "iss": "auth"}, True),
        ({"audience": "app", "issuer": "auth"}, {"aud": "app", "iss": "x"}, False),
        ({"audience": "app", "issuerRegex": "^a"}, {"aud": "app", "iss": "auth"}, True),
        # Claims of the wrong type never decode, checked or not.
        ({}, {"aud": 42}, False),
        ({}, {"aud": ["app", 1]}, False),
        ({}, {"iss": ["auth"]}, False),
        ({"issuer": "auth"}, {"iss": ["auth"]}, False),
    ]

    def test_connect(self) -> None:
        self.check(lambda verifier, claims: verifier.verifyConnect(sign({"sub": "a", **claims}), NOW).user)

    def test_subscribe(self) -> None:
        self.check(
            lambda verifier, claims: verifier.verifySubscribe(sign({"sub": "a", "channel": "c", **claims}), NOW).user
        )

    def check(self, verify: Callable[[TokenVerifier, dict[str, Any]], str]) -> None:
        for settings, claims, valid in self.CASES:
            verifier = TokenVerifier(SECRET, **settings)
            if valid:
                self.assertEqual(verify(verifier, claims), "a", (settings, claims))
            else:
                self.assertRaises(InvalidToken, verify, verifier, claims)


class TimeTests(SynchronousTestCase):
    """
    exp and nbf against the injected time, with no leeway (valid while nbf < now < exp).
    """

    CASES: ClassVar[list[tuple[dict[str, Any], float, type[Exception] | None]]] = [
        ({"exp": NOW + 60}, NOW, None),
        ({"exp": NOW + 0.5}, NOW, None),
        ({"exp": NOW}, NOW, TokenExpired),
        ({"exp": NOW}, NOW - 0.001, None),
        ({"exp": NOW - 1}, NOW, TokenExpired),
        ({"exp": 1000}, 999, None),  # the injected time decides, not this machine's clock
        ({"exp": 1000}, 1000, TokenExpired),
        ({"nbf": NOW - 10}, NOW, None),
        ({"nbf": NOW}, NOW, TokenExpired),
        ({"nbf": NOW}, NOW + 0.001, None),
        ({"nbf": NOW + 10}, NOW, TokenExpired),
        ({"nbf": NOW - 10, "exp": NOW + 10}, NOW, None),
        ({"iat": NOW + 3600}, NOW, None),  # iat is not checked (Centrifugo does not)
        ({"exp": "soon"}, NOW, InvalidToken),
        ({"exp": True}, NOW, InvalidToken),
        ({"nbf": "now"}, NOW, InvalidToken),
        ({"iat": "then"}, NOW, InvalidToken),
        ({"jti": 7}, NOW, InvalidToken),
        ({"exp": None, "nbf": None}, NOW, None),  # null is absent
    ]

    def test_connect(self) -> None:
        self.check(lambda token, now: TokenVerifier(SECRET).verifyConnect(token, now), {})

    def test_subscribe(self) -> None:
        self.check(lambda token, now: TokenVerifier(SECRET).verifySubscribe(token, now), {"channel": "c"})

    def check(self, verify: Callable[[str, float], Any], extra: dict[str, Any]) -> None:
        for claims, now, error in self.CASES:
            token = sign({"sub": "a", **extra, **claims})
            if error is None:
                self.assertEqual(verify(token, now).user, "a", (claims, now))
            else:
                self.assertRaises(error, verify, token, now)

    def test_invalidBeforeExpired(self) -> None:
        """
        A token that is both invalid and expired is invalid: only a genuine token is reported as expired.
        """
        expired = {"sub": "a", "exp": NOW - 1}
        verifier = TokenVerifier(SECRET, audience="app")
        cases = [
            sign(expired, "HS256", OTHER_SECRET),
            sign({**expired, "aud": "web"}),
            sign({**expired, "aud": "app", "channel": "news"}),
            sign({**expired, "aud": "app", "sub": 42}),
            sign({**expired, "aud": "app", "expire_at": "later"}),
        ]
        for token in cases:
            self.assertRaises(InvalidToken, verifier.verifyConnect, token, NOW)

    def test_subscribeExpiredBeforeChannelRequired(self) -> None:
        """
        As in Centrifugo, an expired subscription token without channel is reported as expired.
        """
        token = sign({"sub": "a", "exp": NOW - 1})
        self.assertRaises(TokenExpired, TokenVerifier(SECRET).verifySubscribe, token, NOW)


class ExpireAtTests(SynchronousTestCase):
    """
    The connection (or subscription) expiry: expire_at when present (> 0: then; 0 or less: never), else exp.
    """

    CASES: ClassVar[list[tuple[dict[str, Any], Any]]] = [
        ({}, 0),
        ({"exp": NOW + 60}, NOW + 60),
        ({"exp": NOW + 60.9}, NOW + 60),  # whole seconds, as Go's ExpiresAt.Unix()
        ({"exp": NOW + 60, "expire_at": NOW + 3600}, NOW + 3600),
        ({"exp": NOW + 3600, "expire_at": NOW + 60}, NOW + 60),
        ({"expire_at": NOW + 3600}, NOW + 3600),
        ({"exp": NOW + 60, "expire_at": 0}, 0),
        ({"exp": NOW + 60, "expire_at": -5}, 0),
        ({"exp": NOW + 60, "expire_at": None}, NOW + 60),  # null is absent
        ({"exp": NOW + 60, "expire_at": NOW - 1}, NOW - 1),  # past: the caller answers 110 "expired"
        ({"exp": NOW - 1, "expire_at": NOW + 3600}, TokenExpired),  # exp still validates the token
        ({"expire_at": NOW + 0.5}, InvalidToken),  # a Go int64: floats do not decode
        ({"expire_at": float(NOW + 60)}, InvalidToken),
        ({"expire_at": "tomorrow"}, InvalidToken),
        ({"expire_at": True}, InvalidToken),
        ({"expire_at": 2**63 - 1}, 2**63 - 1),
        ({"expire_at": 2**63}, InvalidToken),  # past a Go int64: does not decode
    ]

    def test_connect(self) -> None:
        self.check(lambda token: TokenVerifier(SECRET).verifyConnect(token, NOW), {})

    def test_subscribe(self) -> None:
        self.check(lambda token: TokenVerifier(SECRET).verifySubscribe(token, NOW), {"channel": "c"})

    def check(self, verify: Callable[[str], Any], extra: dict[str, Any]) -> None:
        for claims, expected in self.CASES:
            token = sign({"sub": "a", **extra, **claims})
            if isinstance(expected, type):
                self.assertRaises(expected, verify, token)
            else:
                expireAt = verify(token).expireAt
                self.assertEqual(expireAt, expected, claims)
                self.assertIsInstance(expireAt, int)


class UserTests(SynchronousTestCase):
    CASES: ClassVar[list[tuple[str, dict[str, Any], Any]]] = [
        # (token_user_id_claim, claims, user)
        ("sub", {"sub": "alice"}, "alice"),
        ("sub", {}, ""),
        ("sub", {"sub": ""}, ""),
        ("sub", {"sub": None}, ""),
        ("sub", {"sub": 42}, InvalidToken),  # sub is a registered claim: a string
        ("", {"sub": "alice"}, "alice"),  # unset: sub
        ("user_id", {"user_id": "u1", "sub": "alice"}, "u1"),
        ("user_id", {"sub": "alice"}, ""),
        ("user_id", {"user_id": 42}, "42"),  # gjson's String()
        ("user_id", {"user_id": True}, "true"),
        ("user.id", {"user": {"id": "nested"}}, "nested"),
        ("user.id", {"user": "flat"}, ""),
        ("users.1", {"users": ["a", "b"]}, "b"),
        ("user_id", {"user_id": 42, "sub": 42}, InvalidToken),
    ]

    def test_connect(self) -> None:
        self.check(lambda verifier, claims: verifier.verifyConnect(sign(claims), NOW).user)

    def test_subscribe(self) -> None:
        self.check(lambda verifier, claims: verifier.verifySubscribe(sign({**claims, "channel": "c"}), NOW).user)

    def check(self, user: Callable[[TokenVerifier, dict[str, Any]], str]) -> None:
        for userIDClaim, claims, expected in self.CASES:
            verifier = TokenVerifier(SECRET, userIDClaim=userIDClaim)
            if isinstance(expected, type):
                self.assertRaises(expected, user, verifier, claims)
            else:
                self.assertEqual(user(verifier, claims), expected, (userIDClaim, claims))


class ConnectClaimTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.verifier = TokenVerifier(SECRET)

    def verify(self, claims: dict[str, Any]) -> ConnectClaims:
        return self.verifier.verifyConnect(sign({"sub": "a", **claims}), NOW)

    def test_info(self) -> None:
        """
        info becomes compact raw JSON (ClientInfo.conn_info); a non-empty b64info wins and gives its decoded bytes.
        """
        cases: list[tuple[dict[str, Any], Any]] = [
            ({}, None),
            ({"info": None}, None),
            ({"info": {"name": "Alice", "n": [1, 2]}}, b'{"name":"Alice","n":[1,2]}'),
            ({"info": "x"}, b'"x"'),
            ({"info": 0}, b"0"),
            ({"info": False}, b"false"),
            ({"b64info": b64(b"\x00\xffbinary")}, b"\x00\xffbinary"),
            ({"info": {"a": 1}, "b64info": b64(b"wins")}, b"wins"),
            ({"info": {"a": 1}, "b64info": ""}, b'{"a":1}'),
            ({"b64info": "not base64!"}, InvalidToken),
            ({"b64info": "YQ"}, InvalidToken),  # standard base64: padding required
            ({"b64info": 12}, InvalidToken),
        ]
        for claims, expected in cases:
            if isinstance(expected, type):
                self.assertRaises(expected, self.verify, claims)
            else:
                self.assertEqual(self.verify(claims).info, expected, claims)

    def test_channelClaimRefused(self) -> None:
        """
        A connection token must not have a channel claim (it would be a subscription token); an empty one is
        not a channel.
        """
        self.assertRaises(InvalidToken, self.verify, {"channel": "news"})
        self.assertRaises(InvalidToken, self.verify, {"channel": 1})
        self.assertEqual(self.verify({"channel": ""}).user, "a")

    def test_channels(self) -> None:
        claims = self.verify({"channels": ["news", "chat", "news"]})
        self.assertEqual(claims.channels, ("news", "chat"))
        self.assertEqual(claims.subs, {"news": SubOptions(), "chat": SubOptions()})
        self.assertEqual(self.verify({}).channels, ())
        self.assertEqual(self.verify({"channels": []}).subs, {})

    def test_subs(self) -> None:
        """
        subs gives each channel its info, data and overrides; when not empty it wins over channels.
        """
        claims = self.verify(
            {
                "channels": ["ignored"],
                "subs": {
                    "news": {"info": {"role": "reader"}, "data": {"welcome": True}},
                    "chat": {
                        "b64info": b64(b"\x01"),
                        "b64data": b64(b"\x02"),
                        "override": {"presence": {"value": True}, "join_leave": {"value": False}},
                    },
                    "plain": {},
                    "null": None,
                },
            }
        )
        self.assertEqual(claims.channels, ("news", "chat", "plain", "null"))
        self.assertEqual(
            claims.subs,
            {
                "news": SubOptions(info=b'{"role":"reader"}', data=b'{"welcome":true}'),
                "chat": SubOptions(info=b"\x01", data=b"\x02", override={"presence": True, "join_leave": False}),
                "plain": SubOptions(),
                "null": SubOptions(),
            },
        )
        self.assertEqual(self.verify({"channels": ["news"], "subs": {}}).channels, ("news",))

    def test_badChannelsAndSubs(self) -> None:
        for claims in (
            {"channels": "news"},
            {"channels": ["news", 1]},
            {"subs": ["news"]},
            {"subs": {"news": "yes"}},
            {"subs": {"news": {"b64data": "%%%"}}},
            {"subs": {"news": {"override": {"presence": True}}}},
        ):
            self.assertRaises(InvalidToken, self.verify, claims)

    def test_subsEntryHasNoExpiry(self) -> None:
        """A token's subs entry has no expire_at in Centrifugo's claims: whatever is there is not read."""
        claims = self.verify({"subs": {"news": {"expire_at": "whenever", "info": {"a": 1}}}})
        self.assertEqual(claims.subs, {"news": SubOptions(info=b'{"a":1}')})

    def test_meta(self) -> None:
        self.assertIsNone(self.verify({}).meta)
        self.assertEqual(self.verify({"meta": {"tier": "gold", "n": 1}}).meta, {"tier": "gold", "n": 1})

    def test_everything(self) -> None:
        claims = self.verify(
            {
                "exp": NOW + 60,
                "info": {"name": "Alice"},
                "channels": ["news"],
                "meta": {"m": 1},
                "jti": "id-1",
                "iat": NOW - 1,
            }
        )
        self.assertEqual(
            claims,
            ConnectClaims(
                user="a",
                expireAt=NOW + 60,
                info=b'{"name":"Alice"}',
                channels=("news",),
                subs={"news": SubOptions()},
                meta={"m": 1},
            ),
        )


class SubscribeClaimTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.verifier = TokenVerifier(SECRET)

    def verify(self, claims: dict[str, Any]) -> SubscribeClaims:
        return self.verifier.verifySubscribe(sign(claims), NOW)

    def test_fields(self) -> None:
        claims = self.verify(
            {
                "sub": "alice",
                "channel": "$secret",
                "client": "client-id",
                "exp": NOW + 60,
                "info": {"role": "admin"},
                "data": [1, 2],
                "override": {
                    "presence": {"value": True},
                    "join_leave": {"value": False},
                    "force_push_join_leave": {"value": True},
                    "force_positioning": {"value": True},
                    "force_recovery": {"value": False},
                },
            }
        )
        self.assertEqual(
            claims,
            SubscribeClaims(
                user="alice",
                channel="$secret",
                client="client-id",
                expireAt=NOW + 60,
                info=b'{"role":"admin"}',
                data=b"[1,2]",
                override={
                    "presence": True,
                    "join_leave": False,
                    "force_push_join_leave": True,
                    "force_positioning": True,
                    "force_recovery": False,
                },
            ),
        )

    def test_minimal(self) -> None:
        self.assertEqual(self.verify({"channel": "c"}), SubscribeClaims(user="", channel="c"))

    def test_b64(self) -> None:
        claims = self.verify({"channel": "c", "b64info": b64(b"\x00i"), "b64data": b64(b"\x00d"), "data": {"x": 1}})
        self.assertEqual((claims.info, claims.data), (b"\x00i", b"\x00d"))
        self.assertRaises(InvalidToken, self.verify, {"channel": "c", "b64data": "%%%"})

    def test_channelRequired(self) -> None:
        """
        A subscription token needs a channel: a connection token is not one.
        """
        for claims in ({"sub": "a"}, {"sub": "a", "channel": ""}, {"sub": "a", "channel": None}):
            self.assertRaises(InvalidToken, self.verify, claims)
        self.assertRaises(InvalidToken, self.verify, {"sub": "a", "channel": ["c"]})
        self.assertRaises(InvalidToken, self.verify, {"channel": "c", "client": 5})

    def test_override(self) -> None:
        cases: list[tuple[Any, Any]] = [
            (None, {}),
            ({}, {}),
            ({"presence": {"value": True}}, {"presence": True}),
            ({"presence": {}}, {"presence": False}),  # Go's omitempty bool: absent is false
            ({"presence": {"value": None}}, {"presence": False}),
            ({"presence": None}, {}),  # a null override is no override
            ({"position": {"value": True}, "recover": {"value": True}}, {}),  # v3 names: unknown, ignored
            ({"presence": {"value": "yes"}}, InvalidToken),
            ({"presence": {"value": 1}}, InvalidToken),
            ({"presence": True}, InvalidToken),
            ([], InvalidToken),
        ]
        for override, expected in cases:
            claims = {"channel": "c", "override": override}
            if isinstance(expected, type):
                self.assertRaises(expected, self.verify, claims)
            else:
                self.assertEqual(self.verify(claims).override, expected, override)
