"""
The official JS SDK connecting with tokens whose keys a real JWKS endpoint publishes (token_jwks_public_endpoint),
to a real server process, over WebSocket: across a key rotation, with a made-up key id, and with the endpoint down.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterator

import pytest

from tests.jwksserver import JWKSServer
from tests.policy.jwkshelpers import EC_P256, RSA_A, RSA_B, jwk, keySet, signed
from tests.serverprocess import ServerProcess
from tests.test_sdk_http_stream import node, of  # noqa: F401  (node: a fixture)
from tests.test_sdk_websocket import assertCleanLog, nodeCommand, run


@pytest.fixture
def jwksServer() -> Iterator[Callable[[list[bytes]], JWKSServer]]:
    started: list[JWKSServer] = []

    def start(sets: list[bytes]) -> JWKSServer:
        server = JWKSServer(sets)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


def token(privateKey: Any, kid: str, algorithm: str = "RS256") -> str:
    return signed({"sub": f"user-{kid}", "exp": int(time.time()) + 3600}, privateKey, kid, algorithm)


def outcomes(events: list[dict[str, Any]], count: int) -> list[Any]:
    """For each token in turn: "connected", or the disconnect code the SDK reported."""
    result: list[Any] = []
    for index in range(count):
        who = f"t{index}"
        if of(events, who, "connected"):
            result.append("connected")
        else:
            result.append([event["code"] for event in of(events, who, "disconnected")])
    return result


def test_rotationUnknownKidAndEndpointDown(
    node: str, startServer: Callable[..., ServerProcess],  # noqa: F811
    jwksServer: Callable[[list[bytes]], JWKSServer],
) -> None:
    """
    The endpoint publishes key A, then (rotated) B and an EC key. A token signed with A connects (one fetch); one
    signed with B has its new kid fetched once more; A still connects, from the cache; a made-up kid costs one more
    fetch and is refused with 3500 "invalid token". Then the endpoint goes down: tokens whose keys are cached
    keep connecting, and one with a new kid is refused with 3500.
    """
    endpoint = jwksServer([keySet(jwk(RSA_A, "A")), keySet(jwk(RSA_B, "B"), jwk(EC_P256, "E"))])
    server = startServer({"token_jwks_public_endpoint": endpoint.url})
    tokens = [token(RSA_A, "A"), token(RSA_B, "B"), token(RSA_A, "A"), token(RSA_A, "made-up")]
    events = run(nodeCommand(node, server, "json", "websocket", "token", channel="jwks", token=tokens), server)
    assert outcomes(events, 4) == ["connected", "connected", "connected", [3500]]
    (publication,) = of(events, "t1", "publication")
    assert publication["info"]["user"] == "user-B"
    assert endpoint.requests == 3

    endpoint.down = True
    tokens = [token(RSA_B, "B"), token(RSA_A, "A"), token(EC_P256, "E", "ES256"), token(RSA_B, "new")]
    events = run(nodeCommand(node, server, "json", "websocket", "token", channel="jwks", token=tokens), server)
    # E was in the fetched set: cached with it, although no token had used it yet.
    assert outcomes(events, 4) == ["connected", "connected", "connected", [3500]]
    assert endpoint.requests == 5  # the failed fetch, tried twice
    assert server.logged("JWKS fetch from http://127.0.0.1")
    assertCleanLog(server)
