"""
Tests for L{httpstream.policy.jwks}, L{httpstream.policy.jwkscache}, L{httpstream.policy.jwksurl} and the JWKS and
separate subscription token parts of L{httpstream.policy.tokens}: in memory, with a fake endpoint and a L{Clock}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from treq.testing import RequestTraversalAgent

from httpstream.config import ConfigError, config_from_dict
from httpstream.decisions import Connection, ConnectRequest, Refused, SubscribeRequest
from httpstream.policy.jwks import KeySetError, checkSignature, parseKeySet
from httpstream.policy.jwkscache import FetchError, JWKSFetcher, KeyCache, redacted
from httpstream.policy.jwksurl import JWKSEndpoint, goCleanPath
from httpstream.policy.jwtverify import parse
from httpstream.policy.tokens import InvalidToken, KeyNotCached, TokenExpired, TokenVerifier
from httpstream.protocol import codes
from httpstream.testing import makeNode
from tests.policy.jwkshelpers import ED25519, EC_P256, EC_P384, RSA_A, RSA_B, jwk, keySet, signed

URL = "https://auth.example.com/.well-known/jwks.json"
NOW = 1_700_000_000.0
SECRET = "a-test-secret-long-enough-for-hs512-keys-which-want-64-bytes!!!!"
SUB_SECRET = "a-subscription-secret-long-enough-for-hs512-keys-want-64-bytes!!"


class FakeEndpoint:
    """A JWKS endpoint the test answers: each fetch waits until L{answer} or L{refuse}."""

    def __init__(self) -> None:
        self.fetches: list[str] = []
        self.pending: list[Deferred[bytes]] = []

    def __call__(self, url: str) -> Deferred[bytes]:
        self.fetches.append(url)
        d: Deferred[bytes] = Deferred()
        self.pending.append(d)
        return d

    def answer(self, body: bytes) -> None:
        self.pending.pop(0).callback(body)

    def refuse(self, reason: str = "connection refused") -> None:
        self.pending.pop(0).errback(Failure(ConnectionError(reason)))


def claims(**extra: Any) -> dict[str, Any]:
    return {"sub": "alice", "exp": int(NOW) + 3600, **extra}


class KeySetTests(SynchronousTestCase):
    """What a JWKS document gives: its usable signature keys by kid, each with the algorithms it allows."""

    def test_kinds(self) -> None:
        keys = parseKeySet(keySet(
            jwk(RSA_A, "rsa"), jwk(RSA_B, "rsa-256", alg="RS256"), jwk(EC_P256, "ec256"), jwk(EC_P384, "ec384"),
            jwk(ED25519, "ed"),
        ))
        self.assertEqual({kid: key.algorithms for kid, key in keys.items()}, {
            "rsa": ("RS256", "RS384", "RS512"), "rsa-256": ("RS256",), "ec256": ("ES256",), "ec384": ("ES384",),
            "ed": ("EdDSA",),
        })

    def test_leftOut(self) -> None:
        """Keys not for signatures, without kid, of another kind, or whose numbers are not a key, are left out."""
        keys = parseKeySet(keySet(
            jwk(RSA_A, "enc", use="enc"), {k: v for k, v in jwk(RSA_A, "nouse").items() if k != "use"},
            {**jwk(RSA_A, ""), "kid": ""}, {"kty": "oct", "k": "c2VjcmV0", "kid": "oct", "use": "sig"},
            {**jwk(RSA_A, "broken"), "n": "!!"}, jwk(EC_P256, "mismatch", alg="ES384"), jwk(RSA_B, "good"),
            jwk(RSA_A, "ps", alg="PS256"),
        ))
        self.assertEqual(list(keys), ["good"])

    def test_notASet(self) -> None:
        for body in (b"<html>", b"[]", b'{"keys": {}}', b'{"keys": []}', b"{}"):
            self.assertRaises(KeySetError, parseKeySet, body)

    def test_signature(self) -> None:
        """A token verifies with its key's algorithms only, and with that key only."""
        keys = parseKeySet(keySet(jwk(RSA_A, "a", alg="RS256"), jwk(EC_P256, "e"), jwk(ED25519, "d")))
        checkSignature(parse(signed(claims(), RSA_A, "a")), keys["a"])
        checkSignature(parse(signed(claims(), EC_P256, "e", "ES256")), keys["e"])
        checkSignature(parse(signed(claims(), ED25519, "d", "EdDSA")), keys["d"])
        for token, key in ((signed(claims(), RSA_A, "a", "RS512"), "a"), (signed(claims(), RSA_B, "a"), "a"),
                           (signed(claims(), RSA_A, "a"), "e"), (signed(claims(), SECRET, "a", "HS256"), "a")):
            self.assertRaises(InvalidToken, checkSignature, parse(token), keys[key])


class KeyCacheTests(SynchronousTestCase):
    """Keys kept an hour from their last use; a missing kid fetched, shared, and no more than once a second."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.endpoint = FakeEndpoint()
        self.cache = KeyCache(self.endpoint, self.clock)

    def test_fetchOnceThenCached(self) -> None:
        self.assertIsNone(self.cache.cached(URL, "a"))
        d = self.cache.load(URL, "a")
        self.assertNoResult(d)
        self.endpoint.answer(keySet(jwk(RSA_A, "a"), jwk(RSA_B, "b")))
        self.assertEqual(self.successResultOf(d).kid, "a")
        self.assertEqual(self.cache.cached(URL, "b").kid, "b")  # type: ignore[union-attr]
        self.assertEqual(self.endpoint.fetches, [URL])

    def test_rotation(self) -> None:
        """A kid that appears later is fetched again; the old key stays cached while used."""
        self.cache.load(URL, "a")
        self.endpoint.answer(keySet(jwk(RSA_A, "a")))
        self.clock.advance(60)
        d = self.cache.load(URL, "b")
        self.endpoint.answer(keySet(jwk(RSA_B, "b")))
        self.assertEqual(self.successResultOf(d).kid, "b")
        self.assertEqual(self.cache.cached(URL, "a").kid, "a")  # type: ignore[union-attr]
        self.assertEqual(len(self.endpoint.fetches), 2)

    def test_unknownKid(self) -> None:
        d = self.cache.load(URL, "nope")
        self.endpoint.answer(keySet(jwk(RSA_A, "a")))
        self.assertIn("public key not found", str(self.failureResultOf(d, InvalidToken).value))

    def test_sharedAndSpaced(self) -> None:
        """
        Missing kids asked for at the same time share one fetch; the next fetch waits until a second after the
        previous one started, and serves every kid asked for meanwhile.
        """
        first = [self.cache.load(URL, f"x{i}") for i in range(5)]
        self.assertEqual(len(self.endpoint.fetches), 1)
        self.endpoint.answer(keySet(jwk(RSA_A, "a")))
        for d in first:
            self.failureResultOf(d, InvalidToken)
        self.clock.advance(0.25)
        later = [self.cache.load(URL, kid) for kid in ("y", "b", "z")]
        self.assertEqual(len(self.endpoint.fetches), 1)
        self.clock.advance(0.74)
        self.assertEqual(len(self.endpoint.fetches), 1)
        self.clock.advance(0.01)
        self.assertEqual(len(self.endpoint.fetches), 2)
        self.endpoint.answer(keySet(jwk(RSA_B, "b")))
        self.failureResultOf(later[0], InvalidToken)
        self.assertEqual(self.successResultOf(later[1]).kid, "b")
        self.failureResultOf(later[2], InvalidToken)

    def test_hostileKids(self) -> None:
        """A flood of made-up kids over ten seconds costs at most one fetch a second."""
        results = []
        for i in range(1000):
            results.append(self.cache.load(URL, f"random-{i}"))
            self.clock.advance(0.01)
            while self.endpoint.pending:
                self.endpoint.answer(keySet(jwk(RSA_A, "a")))
        self.clock.advance(1)
        while self.endpoint.pending:
            self.endpoint.answer(keySet(jwk(RSA_A, "a")))
        self.assertLessEqual(len(self.endpoint.fetches), 11)
        for d in results:
            self.failureResultOf(d, InvalidToken)

    def test_endpointDown(self) -> None:
        """A failed fetch makes the waiting tokens invalid; keys cached before keep working."""
        self.cache.load(URL, "a")
        self.endpoint.answer(keySet(jwk(RSA_A, "a")))
        self.clock.advance(5)
        d = self.cache.load(URL, "b")
        self.endpoint.refuse()
        self.assertIn("JWKS fetch failed", str(self.failureResultOf(d, InvalidToken).value))
        self.assertEqual(self.cache.cached(URL, "a").kid, "a")  # type: ignore[union-attr]
        self.clock.advance(5)
        d = self.cache.load(URL, "b")
        self.endpoint.answer(b"not json")
        self.failureResultOf(d, InvalidToken)

    def test_expiry(self) -> None:
        """A key expires an hour after it was last fetched or used; each use extends it."""
        self.cache.load(URL, "a")
        self.endpoint.answer(keySet(jwk(RSA_A, "a"), jwk(RSA_B, "b")))
        self.clock.advance(3000)
        self.assertIsNotNone(self.cache.cached(URL, "a"))
        self.clock.advance(3000)
        self.assertIsNotNone(self.cache.cached(URL, "a"))
        self.assertIsNone(self.cache.cached(URL, "b"))

    def test_cancelledWaiter(self) -> None:
        """A waiter whose client went away is left alone when the fetch ends."""
        d = self.cache.load(URL, "a")
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.endpoint.answer(keySet(jwk(RSA_A, "a")))
        self.assertIsNotNone(self.cache.cached(URL, "a"))

    def test_keyedByURL(self) -> None:
        """A kid cached for one endpoint URL does not answer for another."""
        self.cache.load(URL, "a")
        self.endpoint.answer(keySet(jwk(RSA_A, "a")))
        self.assertIsNone(self.cache.cached(URL + "2", "a"))

    def test_redacted(self) -> None:
        self.assertEqual(redacted("https://user:pw@auth.example.com:8443/jwks?token=s"),
                         "https://auth.example.com:8443/jwks")


class EndpointTemplateTests(SynchronousTestCase):
    """The endpoint URL filled from the token's iss/aud named groups, and Centrifugo's safety check."""

    def test_resolve(self) -> None:
        endpoint = JWKSEndpoint("https://{{tenant}}.example.com/{{realm}}/jwks", issuerRegex="(?P<tenant>a|b)",
                                audienceRegex="(?P<realm>x|y)")
        self.assertEqual(endpoint.placeholders, ("tenant", "realm"))
        self.assertEqual(endpoint.resolve({"tenant": "a", "realm": "y"}), "https://a.example.com/y/jwks")
        self.assertRaises(InvalidToken, endpoint.resolve, {"tenant": "a"})  # "//jwks": not a clean path

    def test_unsafe(self) -> None:
        for issuer in ("(?P<tenant>.+)", "(?P<tenant>[a-z]+)", r"(?P<tenant>\w+)", "(?P<tenant>a|b*)",
                       "(?P<tenant>(?i)a)"):
            with self.assertRaises(ConfigError, msg=issuer) as raised:
                JWKSEndpoint("https://e.com/{{tenant}}/jwks", issuerRegex=issuer)
            self.assertIn('config key "token_jwks_public_endpoint"', str(raised.exception))
        JWKSEndpoint("https://e.com/{{tenant}}/jwks", issuerRegex="(?P<tenant>.+)", skipSafetyCheck=True)
        JWKSEndpoint("https://e.com/{{tenant}}/jwks", issuerRegex=r"^https://(?P<tenant>a\.b|c(?:d|e))$")
        JWKSEndpoint("https://e.com/jwks", issuerRegex="(?P<tenant>.+)")  # not used in the URL

    def test_badTemplates(self) -> None:
        for url in ("ftp://e.com/jwks", "https://e.com/{{tenant/jwks", "https://e.com/jwks/",
                    "https://e.com/a/../jwks"):
            self.assertRaises(ConfigError, JWKSEndpoint, url)

    def test_goCleanPath(self) -> None:
        for path, clean in (("", "."), ("/", "/"), ("/a/b/", "/a/b"), ("//a", "/a"), ("/a/./b/../c", "/a/c"),
                            ("/../a", "/a"), ("a/../..", ".."), ("a//b", "a/b")):
            self.assertEqual(goCleanPath(path), clean, path)


class JWKSVerifierTests(SynchronousTestCase):
    """TokenVerifier with token_jwks_public_endpoint: the endpoint's keys only, waited for when not cached."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)
        self.endpoint = FakeEndpoint()

    def verifier(self, **settings: Any) -> TokenVerifier:
        config, _ = config_from_dict({"token_jwks_public_endpoint": URL, **settings})
        return TokenVerifier.fromConfig(config, self.clock, self.endpoint)

    def test_connectWaitsForKey(self) -> None:
        verifier = self.verifier()
        token = signed(claims(), RSA_A, "a")
        self.assertRaises(KeyNotCached, verifier.verifyConnect, token, NOW)
        d = verifier.connectClaims(token, self.clock)
        self.assertNoResult(d)
        self.endpoint.answer(keySet(jwk(RSA_A, "a")))
        self.assertEqual(self.successResultOf(d).user, "alice")
        self.assertEqual(verifier.verifyConnect(token, NOW).user, "alice")  # cached now
        self.assertEqual(self.endpoint.fetches, [URL])

    def test_refusals(self) -> None:
        """No kid, a forged signature, a kid the set lacks: invalid; an expired token with a cached key: expired."""
        verifier = self.verifier(token_hmac_secret_key=SECRET)
        self.failureResultOf(verifier.connectClaims(signed(claims(), RSA_A, None), self.clock), InvalidToken)
        # The HMAC key is not used once a JWKS endpoint is set (Centrifugo's choice).
        hmacSigned = verifier.connectClaims(signed(claims(), SECRET, "a", "HS256"), self.clock)
        forged = verifier.connectClaims(signed(claims(), RSA_B, "a"), self.clock)
        self.endpoint.answer(keySet(jwk(RSA_A, "a")))
        self.failureResultOf(hmacSigned, InvalidToken)
        self.failureResultOf(forged, InvalidToken)
        self.assertEqual(len(self.endpoint.fetches), 1)
        expired = signed(claims(exp=int(NOW) - 1), RSA_A, "a")
        self.failureResultOf(verifier.connectClaims(expired, self.clock), TokenExpired)
        self.clock.advance(2)
        unknown = verifier.connectClaims(signed(claims(), RSA_A, "c"), self.clock)
        self.endpoint.refuse()
        self.failureResultOf(unknown, InvalidToken)

    def test_templatedEndpoint(self) -> None:
        """The issuer's named group picks the tenant's endpoint; keys are cached per endpoint."""
        verifier = self.verifier(token_jwks_public_endpoint="https://auth.example.com/{{tenant}}/jwks",
                                 token_issuer_regex="^https://auth.example.com/(?P<tenant>acme|globex)$")
        acme = verifier.connectClaims(signed(claims(iss="https://auth.example.com/acme"), RSA_A, "k"), self.clock)
        self.endpoint.answer(keySet(jwk(RSA_A, "k")))
        self.successResultOf(acme)
        globex = verifier.connectClaims(signed(claims(iss="https://auth.example.com/globex"), RSA_A, "k"),
                                        self.clock)
        self.endpoint.answer(keySet(jwk(RSA_B, "k")))  # globex's "k" is another key
        self.failureResultOf(globex, InvalidToken)
        self.assertEqual(self.endpoint.fetches, ["https://auth.example.com/acme/jwks",
                                                 "https://auth.example.com/globex/jwks"])
        other = signed(claims(iss="https://auth.example.com/evil"), RSA_A, "k")
        self.failureResultOf(verifier.connectClaims(other, self.clock), InvalidToken)
        self.assertEqual(len(self.endpoint.fetches), 2)

    def test_unsafeTemplateRefused(self) -> None:
        with self.assertRaises(ConfigError):
            self.verifier(token_jwks_public_endpoint="https://{{tenant}}.example.com/jwks",
                          token_issuer_regex="(?P<tenant>.*)")


class SeparateSubscriptionTokenTests(SynchronousTestCase):
    """separate_subscription_token_config: subscription tokens have their own keys, audience and issuer."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(NOW)

    def node(self, **settings: Any) -> Any:
        base = {"token_hmac_secret_key": SECRET, "separate_subscription_token_config": True,
                "subscription_token_hmac_secret_key": SUB_SECRET, "subscription_token_audience": "subs",
                "subscription_token_issuer": "me"}
        return makeNode({**base, **settings}, self.clock)

    def subscribe(self, node: Any, token: str) -> Deferred[Any]:
        connection = Connection(clientID="c1", transport="websocket", protocol="json", user="alice")
        return node.policy.subscribing(connection, SubscribeRequest("news", node.rules.options("news"), token=token))

    def test_ownKeyAudienceIssuer(self) -> None:
        node = self.node()
        good = {"sub": "alice", "channel": "news", "aud": "subs", "iss": "me"}
        self.successResultOf(self.subscribe(node, signed(good, SUB_SECRET, None, "HS256")))
        for token in (signed(good, SECRET, None, "HS256"),  # the connection key
                      signed({**good, "aud": "other"}, SUB_SECRET, None, "HS256"),
                      signed({**good, "iss": "else"}, SUB_SECRET, None, "HS256")):
            failure = self.failureResultOf(self.subscribe(node, token), Refused)
            self.assertEqual(failure.value.error, codes.ERROR_PERMISSION_DENIED)

    def test_connectionTokensUnchanged(self) -> None:
        """Connection tokens keep the token_* keys (no audience needed), not the subscription ones."""
        node = self.node()
        connection = Connection(clientID="c1", transport="websocket", protocol="json")
        good = signed({"sub": "alice"}, SECRET, None, "HS256")
        self.successResultOf(node.policy.connecting(connection, ConnectRequest(token=good)))
        wrong = signed({"sub": "alice", "aud": "subs", "iss": "me"}, SUB_SECRET, None, "HS256")
        failure = self.failureResultOf(node.policy.connecting(connection, ConnectRequest(token=wrong)), Refused)
        self.assertEqual(failure.value.disconnect, codes.DISCONNECT_INVALID_TOKEN)

    def test_offUsesConnectionKeys(self) -> None:
        node = self.node(separate_subscription_token_config=False)
        good = {"sub": "alice", "channel": "news"}
        self.successResultOf(self.subscribe(node, signed(good, SECRET, None, "HS256")))
        self.failureResultOf(self.subscribe(node, signed(good, SUB_SECRET, None, "HS256")), Refused)

    def test_configErrorsNameTheirKey(self) -> None:
        with self.assertRaises(ConfigError) as raised:
            self.node(subscription_token_rsa_public_key="not a pem")
        self.assertIn('"subscription_token_rsa_public_key"', str(raised.exception))


class _JWKSResource(Resource):
    """Answers GETs as told: a status and body, or never (NOT_DONE_YET); counts them."""

    isLeaf = True

    def __init__(self, status: int = 200, body: bytes = b"", hang: bool = False) -> None:
        super().__init__()
        self.status, self.body, self.hang, self.requests = status, body, hang, 0

    def render_GET(self, request: Any) -> Any:
        self.requests += 1
        if self.hang:
            return NOT_DONE_YET
        request.setResponseCode(self.status)
        return self.body


class FetcherTests(SynchronousTestCase):
    """JWKSFetcher: status 200 only, two tries of a second each, a bounded body; over treq's in-memory agent."""

    def fetch(self, resource: _JWKSResource, **options: Any) -> tuple[Deferred[bytes], RequestTraversalAgent, Clock]:
        clock = Clock()
        agent = RequestTraversalAgent(resource)
        d = JWKSFetcher(clock, agent, **options)(URL)
        agent.flush()
        return d, agent, clock

    def test_body(self) -> None:
        body = keySet(jwk(RSA_A, "a"))
        d, _, _ = self.fetch(_JWKSResource(body=body))
        self.assertEqual(self.successResultOf(d), body)

    def test_statusTriedTwice(self) -> None:
        resource = _JWKSResource(status=503, body=b"down")
        d, _, _ = self.fetch(resource)
        self.assertIn("503", str(self.failureResultOf(d, FetchError).value))
        self.assertEqual(resource.requests, 2)

    def test_tooLarge(self) -> None:
        d, _, _ = self.fetch(_JWKSResource(body=b"x" * 2000), maxSize=1000)
        self.assertIn("larger than 1000", str(self.failureResultOf(d, FetchError).value))

    def test_timeout(self) -> None:
        resource = _JWKSResource(hang=True)
        d, agent, clock = self.fetch(resource)
        self.assertNoResult(d)
        clock.advance(1)
        agent.flush()
        self.assertEqual(resource.requests, 2)
        self.assertNoResult(d)
        clock.advance(1)
        self.assertIn("timeout", str(self.failureResultOf(d, FetchError).value))


class JWKSPolicyTests(SynchronousTestCase):
    """The configured policy with a JWKS endpoint: a connect waits for the key; a missing key is 3500."""

    def test_connectAndSubscribe(self) -> None:
        clock = Clock()
        clock.advance(NOW)
        endpoint = FakeEndpoint()
        node = makeNode({"token_jwks_public_endpoint": URL}, clock)
        node.tokens = TokenVerifier.fromConfig(node.config, clock, endpoint)
        connection = Connection(clientID="c1", transport="websocket", protocol="json", user="alice")
        d = node.policy.connecting(connection, ConnectRequest(token=signed(claims(), RSA_A, "a")))
        self.assertNoResult(d)
        endpoint.answer(keySet(jwk(RSA_A, "a")))
        self.assertEqual(self.successResultOf(d).user, "alice")
        clock.advance(1)
        refused = node.policy.connecting(connection, ConnectRequest(token=signed(claims(), RSA_A, "b")))
        endpoint.answer(keySet(jwk(RSA_A, "a")))
        self.assertEqual(self.failureResultOf(refused, Refused).value.disconnect, codes.DISCONNECT_INVALID_TOKEN)
        subToken = signed(claims(channel="news"), RSA_A, "a")
        self.successResultOf(node.policy.subscribing(
            connection, SubscribeRequest("news", node.rules.options("news"), token=subToken)))
