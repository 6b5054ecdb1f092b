"""
Tokens and channel rights over HTTP on the in-memory server (issue 14, item 5): connection tokens (``alg: none``,
a wrong key, expired, a wrong ``aud`` / ``iss``, HS256 "signed" with the RSA or ECDSA public key's PEM), subscription
tokens for another channel, user or client (disconnect 3500, as Centrifugo's handler does), an invalid one (103), an
expired one (109); private ``$`` and user-limited ``#`` channels without rights (103); client publish where it is
not allowed (103).
"""

from __future__ import annotations

import time

import jwt
import pytest

from httpstream.testing import MemoryServer
from tests.policy.test_tokens import EC_KEYS, RSA_KEY, handmade, pem
from tests.web.security import (
    OTHER_SECRET, SECRET, Session, claims, disconnectCode, errorCode, firstMessage, securityServer, subToken, token,
)

server = pytest.fixture(securityServer, name="server")


# Connection tokens


def test_validTokensConnect(server: MemoryServer) -> None:
    # The controls: each configured key admits its own tokens, so the refusals below are about the token.
    for connectToken in (token(), token(RSA_KEY, "RS256"), token(EC_KEYS["ES256"], "ES256")):
        assert "connect" in firstMessage(server, {"token": connectToken})


@pytest.mark.parametrize(
    "name, connectToken",
    [
        ("alg none", handmade({"alg": "none", "typ": "JWT"}, claims())),
        ("alg none, signed anyway", handmade({"alg": "none"}, claims(), SECRET.encode())),
        ("wrong key", token(OTHER_SECRET)),
        ("wrong aud", token(aud="another-app")),
        ("no aud", jwt.encode({k: v for k, v in claims().items() if k != "aud"}, SECRET, "HS256")),
        ("wrong iss", token(iss="someone-else")),
        ("HS256 with the RSA public key as secret", handmade({"alg": "HS256"}, claims(), pem(RSA_KEY).encode())),
        ("HS256 with the ECDSA public key as secret",
         handmade({"alg": "HS256"}, claims(), pem(EC_KEYS["ES256"]).encode())),
        ("ES384 (not the key's curve)", token(EC_KEYS["ES384"], "ES384")),
        ("expired and signed with a wrong key", token(OTHER_SECRET, exp=int(time.time()) - 60)),
        ("a subscription token", token(channel="$secret")),
        ("garbage", "not.a.jwt"),
    ],
)
def test_invalidConnectTokenDisconnects3500(server: MemoryServer, name: str, connectToken: str) -> None:
    message = firstMessage(server, {"token": connectToken})
    assert message == {"push": {"disconnect": {"code": 3500, "reason": "invalid token"}}}, name


def test_expiredConnectToken109(server: MemoryServer) -> None:
    # A genuine token past its exp: error 109, and the SDK asks for a new one.
    message = firstMessage(server, {"token": token(exp=int(time.time()) - 60)})
    assert message == {"id": 1, "error": {"code": 109, "message": "token expired"}}


# Subscription tokens and channel rights


def test_subscriptionTokens(server: MemoryServer) -> None:
    session = Session(server)
    # A private channel without a token, or with one that is not valid: 103, the connection stays.
    assert errorCode(session.command(subscribe={"channel": "$secret"})) == 103
    wrongKey = subToken("$secret", OTHER_SECRET)
    assert errorCode(session.command(subscribe={"channel": "$secret", "token": wrongKey})) == 103
    assert errorCode(session.command(subscribe={"channel": "$secret", "token": subToken("$secret", aud="x")})) == 103
    assert errorCode(session.command(
        subscribe={"channel": "$secret", "token": subToken("$secret", exp=int(time.time()) - 60)})) == 109
    assert "subscribe" in session.command(subscribe={"channel": "$secret", "token": subToken("$secret")})
    session.close()


@pytest.mark.parametrize(
    "name, subscribeToken",
    [
        ("another channel", subToken("$other")),
        ("another user", subToken("$secret", sub="bob")),
        ("another client", subToken("$secret", client="someone-else")),
    ],
)
def test_subscriptionTokenForSomeoneElseDisconnects3500(
    server: MemoryServer, name: str, subscribeToken: str
) -> None:
    """
    A valid subscription token that is not for this channel, user or client: Centrifugo's subscribe handler
    answers DisconnectInvalidToken (3500) there (internal/client/handler.go), not 103.
    """
    session = Session(server)
    reply = session.command(subscribe={"channel": "$secret", "token": subscribeToken})
    assert disconnectCode(reply) == 3500, (name, reply)
    assert session.stream.response.complete  # and the stream ends
    session.close()


def test_userLimitedChannel(server: MemoryServer) -> None:
    session = Session(server)
    assert errorCode(session.command(subscribe={"channel": "inbox#bob"})) == 103
    assert errorCode(session.command(subscribe={"channel": "inbox#bob,carol"})) == 103
    assert "subscribe" in session.command(subscribe={"channel": "inbox#alice"})
    session.close()
    # Anonymous: not alice's either.
    anonymous = Session(server, connectToken=token(sub=""))
    assert errorCode(anonymous.command(subscribe={"channel": "inbox#alice"})) == 103
    anonymous.close()


def test_clientPublishWhereNotAllowed(server: MemoryServer) -> None:
    session = Session(server)
    assert "subscribe" in session.command(subscribe={"channel": "inbox#alice"})
    assert errorCode(session.command(publish={"channel": "inbox#alice", "data": {"x": 1}})) == 103
    assert errorCode(session.command(publish={"channel": "news", "data": {"x": 1}})) == 103
    # The control: where the namespace allows it, the same command publishes.
    assert "publish" in session.command(publish={"channel": "pub:chat", "data": {"x": 1}})
    session.close()
