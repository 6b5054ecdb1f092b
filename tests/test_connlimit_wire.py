"""
The node's connection limits on real sockets against a real ``twistd httpstream`` process, and with the official JS
SDK (tests/sdk/transports.mjs, scenario ``connlimit``): a refused WebSocket upgrade or http_stream POST is an empty
503, and the SDK takes it as Centrifugo's, a failed transport it retries with backoff until the node has room.
Every status and count detail runs in memory (tests/web/test_connlimit.py, tests/node/test_connlimit.py).
"""

from __future__ import annotations

import base64
import os
from typing import Callable

import pytest

from tests.serverprocess import ServerProcess
from tests.test_sdk_websocket import assertCleanLog, nodeCommand, run
from tests.test_sdk_http_stream import node, of  # noqa: F401  (node: a fixture)
from tests.wire import connectStream, request

UPGRADE = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13"}


def upgrade(port: int) -> int:
    """The status of a WebSocket handshake (the connection then closed)."""
    key = base64.b64encode(os.urandom(16)).decode()
    response = request(port, "GET", "/connection/websocket", headers={**UPGRADE, "Sec-WebSocket-Key": key})
    response.close()
    return response.status


def test_connectionLimitOnTheWire(startServer: Callable[..., ServerProcess]) -> None:
    """
    With the node full, a WebSocket upgrade and an http_stream POST are both answered 503 with an empty body;
    once a connection ends, the next one is served.
    """
    server = startServer({"client_connection_limit": 1})
    stream, result = connectStream(server.port)
    assert result["client"]
    assert upgrade(server.port) == 503
    refused = request(server.port, "POST", "/connection/http_stream", b'{"id":1,"connect":{}}',
                      {"Content-Type": "application/json"})
    assert (refused.status, refused.headers.get("content-length"), refused.body()) == (503, "0", b"")
    refused.close()
    stream.close()
    # The server sees the socket close on its own time: the place is free once it has.
    for _ in range(200):
        if upgrade(server.port) == 101:
            break
    else:
        pytest.fail("the closed stream's place was never freed")
    assert server.logged("node connection limit reached (1)")


def test_rateLimitOnTheWire(startServer: Callable[..., ServerProcess]) -> None:
    """
    Past client_connection_rate_limit new connections a second, an upgrade or a stream POST gets 503.
    """
    server = startServer({"client_connection_rate_limit": 2})
    # The bucket starts full: the first two pass whatever the time.
    assert [upgrade(server.port) for _ in range(2)] == [101, 101]

    def post() -> int:
        response = request(server.port, "POST", "/connection/http_stream", b'{"id":1,"connect":{}}',
                           {"Content-Type": "application/json"})
        response.close()
        return response.status

    # Half a second refills a token: ten requests in a row cannot all come that slowly.
    assert 503 in [post() for _ in range(10)]
    assert 503 in [upgrade(server.port) for _ in range(10)]


@pytest.mark.parametrize("transport", ["websocket", "http_stream"])
def test_sdkRetriesUntilTheNodeHasRoom(
    node: str, startServer: Callable[..., ServerProcess], transport: str  # noqa: F811
) -> None:
    """
    The SDK refused by client_connection_limit stays "connecting" (no disconnected event: nothing it should give
    up on), retries with its backoff, and connects once the other client has left.
    """
    server = startServer({"client_connection_limit": 1})
    events = run(nodeCommand(node, server, "json", transport, "connlimit", count=2), server)
    if transport == "websocket":
        assert {event["message"] for event in of(events, "b", "ws_error")} == {"Unexpected server response: 503"}
    else:
        assert {event["status"] for event in of(events, "b", "stream")} == {503, 200}
    (summary,) = of(events, "b", "summary")
    assert summary["refusals"] >= 2 and summary["disconnected"] is False
    assert [event["transport"] for event in of(events, "b", "connected")] == [transport]
    states = [(event["from"], event["to"]) for event in of(events, "b", "state")]
    assert states[:2] == [("disconnected", "connecting"), ("connecting", "connected")], states
    assertCleanLog(server)
