"""
The official Python SDK (PyPI ``centrifuge-python``, in the ``test`` extra) against a real ``twistd httpstream``
process over WebSocket, JSON and Protobuf: connect, subscribe, publish, fan-out, pings, an invalid token.

tests/python_sdk/sdk_client.py drives the SDK in a process of its own per scenario (the SDK's generated
``client_pb2`` would clash with httpstream's in one process) and prints one JSON object per SDK event and per
WebSocket frame; these tests assert on them.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from tests.serverprocess import ServerProcess
from tests.test_sdk_http_stream import by, of, token
from tests.test_sdk_websocket import (
    PROTOCOLS,
    Events,
    ScenarioProcess,
    assertCleanLog,
    dataArgument,
    expectedData,
    optionArguments,
    run,
)

SCRIPT = Path(__file__).parent / "python_sdk" / "sdk_client.py"


def clientCommand(server: ServerProcess, protocol: str, scenario: str, **options: Any) -> list[str]:
    command = [
        sys.executable, str(SCRIPT),
        "--url", server.url,
        "--protocol", protocol,
        "--scenario", scenario,
        "--data", dataArgument(protocol),
    ]
    return command + optionArguments(options)


def assertFramesAre(events: Events, protocol: str) -> None:
    frames = by(events, "ws_send") + by(events, "ws_recv")
    assert frames
    assert {event["binary"] for event in frames} == {protocol == "protobuf"}, frames


@pytest.fixture(scope="module", autouse=True)
def sdkInstalled() -> None:
    """The SDK is importable by the interpreter the scripts run on (checked without importing it here)."""
    import importlib.util

    if importlib.util.find_spec("centrifuge") is None:
        pytest.fail("centrifuge-python is not installed: pip install -e '.[test]'")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_publishReachesPublisherAndSecondClient(startServer: Callable[..., ServerProcess], protocol: str) -> None:
    """
    Two Python SDK clients connect over WebSocket (Protobuf: subprotocol centrifuge-protobuf negotiated and binary
    frames both ways; JSON: no subprotocol, text frames) and subscribe; the first publishes: both receive exactly
    the data published, attributed to the publisher.
    """
    server = startServer()
    events = run(clientCommand(server, protocol, "pubsub", channel=f"py-{protocol}"), server)

    clients = {}
    for who in ("a", "b"):
        (connected,) = of(events, who, "connected")
        clients[who] = connected["client"]
        assert [event["subprotocol"] for event in of(events, who, "ws_open")] == [
            "centrifuge-protobuf" if protocol == "protobuf" else None
        ]
        assert of(events, who, "subscribed") == [{"event": "subscribed", "who": who, "channel": f"py-{protocol}"}]
    assert clients["a"] != clients["b"]
    assertFramesAre(events, protocol)

    for who in ("a", "b"):
        (publication,) = of(events, who, "publication")
        assert publication["data"] == expectedData(protocol)
        assert publication["info"] == {"client": clients["a"], "user": ""}
    assert not by(events, "error")
    assert [(event["code"], event["reason"]) for event in by(events, "disconnected")] == [
        (0, "disconnect called")
    ] * 2
    assert server.output.count("connected over websocket") == 2
    assertCleanLog(server)


def test_pingsAnsweredKeepConnection(startServer: Callable[..., ServerProcess]) -> None:
    """
    With a 1 s ping interval and an 800 ms pong timeout a JSON and a Protobuf client answer the server's pings and
    stay on their one connection for 2.5 s, which then still delivers a publication.
    """
    server = startServer({"ping_interval": "1s", "pong_timeout": "800ms"})
    scenarios = {
        protocol: ScenarioProcess(
            clientCommand(server, protocol, "ping", channel=f"ping-{protocol}", duration=2.5), server
        )
        for protocol in PROTOCOLS
    }
    try:
        for protocol, scenario in scenarios.items():
            events = scenario.finish()
            assert len(of(events, "a", "ws_open")) == 1
            assert [event["event"] for event in of(events, "a", "connecting")] == ["connecting"]
            # Each ping is one frame holding one empty command: 2 bytes "{}" in JSON, the byte 00 in Protobuf.
            pingSize = 1 if protocol == "protobuf" else 2
            pings = [event for event in of(events, "a", "ws_recv") if event["size"] == pingSize]
            pongs = [event for event in of(events, "a", "ws_send") if event["size"] == pingSize]
            assert len(pings) >= 2 and len(pongs) == len(pings), events
            assert of(events, "a", "publication")[0]["data"] == expectedData(protocol)
    finally:
        for scenario in scenarios.values():
            scenario.kill()
    assert "3012" not in server.output and "no pong" not in server.output
    assertCleanLog(server)


def test_invalidTokenDisconnects3500(startServer: Callable[..., ServerProcess]) -> None:
    """A valid token connects as its user; a forged one ends in disconnected 3500 "invalid token", for good."""
    server = startServer()
    good = token({"sub": "py-user", "exp": int(time.time()) + 3600})
    forged = token({"sub": "py-user"}, secret="another-secret-0123456789abcdef0123456789")
    events = run(clientCommand(server, "json", "token", channel="tokens", token=[good, forged]), server)

    assert len(of(events, "t0", "connected")) == 1
    assert of(events, "t0", "publication")[0]["info"]["user"] == "py-user"
    assert not of(events, "t1", "connected")
    assert [(event["code"], event["reason"]) for event in of(events, "t1", "disconnected")] == [
        (3500, "invalid token")
    ]
    assert len(of(events, "t1", "ws_open")) == 1  # no reconnect after a terminal code
    assertCleanLog(server)
