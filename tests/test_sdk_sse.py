"""
The official JS SDK (npm ``centrifuge``, pinned in tests/sdk/package.json) against a real ``twistd httpstream``
process over SSE (the ``eventsource`` package; JSON only, commands going up through /emulation): connect,
subscribe, publish, fan-out, pings, the server's disconnect codes, and the fallback when SSE is switched off.

tests/sdk/transports.mjs drives the SDK; the helpers are tests/test_sdk_websocket.py's.
"""

from __future__ import annotations

import signal
import time
from typing import Callable

from tests.serverprocess import ServerProcess
from tests.test_sdk_http_stream import by, node, of, token  # noqa: F401  (node: a fixture)
from tests.test_sdk_websocket import (
    ScenarioProcess,
    assertCleanLog,
    background,  # noqa: F401  (a fixture)
    expectedData,
    nodeCommand,
    run,
)

SSE = {"sse": True}
EVENT_STREAM = "text/event-stream; charset=utf-8"


def test_ssePublishReachesPublisherAndSecondClient(
    node: str, startServer: Callable[..., ServerProcess]  # noqa: F811
) -> None:
    """
    Two SDK clients connect over SSE alone and subscribe; the first publishes data whose strings hold newlines,
    U+2028 and "data: " (which must not break the event framing): both receive exactly what was published,
    attributed to the publisher, and every emulation POST was answered 204.
    """
    server = startServer(SSE)
    events = run(nodeCommand(node, server, "json", "sse", "pubsub", channel="sse-chat"), server)

    clients = {}
    for who in ("a", "b"):
        (connected,) = of(events, who, "connected")
        assert connected["transport"] == "sse"
        clients[who] = connected["client"]
        (stream,) = of(events, who, "sse")
        assert (stream["status"], stream["contentType"]) == (200, EVENT_STREAM)
        assert of(events, who, "subscribed") == [{"event": "subscribed", "who": who, "channel": "sse-chat"}]
    assert clients["a"] != clients["b"]

    for who in ("a", "b"):
        (publication,) = of(events, who, "publication")
        assert publication["data"] == expectedData("json")
        assert publication["info"] == {"client": clients["a"], "user": ""}

    emulation = by(events, "emulation")
    assert emulation and all(event["status"] == 204 for event in emulation)
    assert not by(events, "error") and not by(events, "fetch_error")
    assert [(event["code"], event["reason"]) for event in by(events, "disconnected")] == [
        (0, "disconnect called")
    ] * 2
    assert server.output.count("connected over sse") == 2
    assertCleanLog(server)


def test_sseDisabledFallsBackToHttpStream(node: str, startServer: Callable[..., ServerProcess]) -> None:  # noqa: F811
    """SSE is off by default (the endpoint answers 404): the list [sse, http_stream] then connects over http_stream."""
    server = startServer()
    events = run(nodeCommand(node, server, "json", "sse,http_stream", "pubsub", channel="fallback"), server)

    for who in ("a", "b"):
        assert [event["status"] for event in of(events, who, "sse")] == [404]
        assert [event["transport"] for event in of(events, who, "connected")] == ["http_stream"]
        (publication,) = of(events, who, "publication")
        assert publication["data"] == expectedData("json")
    assert "connected over sse" not in server.output
    assertCleanLog(server)


def test_ssePingsAnsweredKeepConnection(node: str, startServer: Callable[..., ServerProcess]) -> None:  # noqa: F811
    """
    With a 1 s ping interval and an 800 ms pong timeout the SDK answers each ping event through /emulation and
    stays on its one event stream for 2.5 s, which then still delivers a publication.
    """
    server = startServer({**SSE, "ping_interval": "1s", "pong_timeout": "800ms"})
    events = run(nodeCommand(node, server, "json", "sse", "ping", channel="ping", duration=2.5), server)

    states = [(event["from"], event["to"]) for event in by(events, "state")]
    assert states == [("disconnected", "connecting"), ("connecting", "connected"), ("connected", "disconnected")]
    assert len(by(events, "sse")) == 1
    # The first ping comes 0.5-1 s after connect, then one every second: at least two within 2.5 s.
    pongs = [event for event in by(events, "emulation") if event["pong"]]
    assert len(pongs) >= 2, events
    assert all(event["status"] == 204 for event in by(events, "emulation"))
    assert of(events, "a", "publication")[0]["data"] == expectedData("json")
    assert "3012" not in server.output and "no pong" not in server.output
    assertCleanLog(server)


def test_sseInvalidTokenDisconnects3500(node: str, startServer: Callable[..., ServerProcess]) -> None:  # noqa: F811
    """
    A valid token connects over SSE as its user; a forged one ends in the SDK's disconnected state with code 3500
    "invalid token" (from the Disconnect push that ends the event stream), and the SDK does not try again.
    """
    server = startServer(SSE)
    good = token({"sub": "user-9", "exp": int(time.time()) + 3600})
    forged = token({"sub": "user-9"}, secret="another-secret-0123456789abcdef0123456789")
    events = run(nodeCommand(node, server, "json", "sse", "token", channel="tokens", token=[good, forged]), server)

    assert [event["transport"] for event in of(events, "t0", "connected")] == ["sse"]
    assert of(events, "t0", "publication")[0]["info"]["user"] == "user-9"
    assert not of(events, "t1", "connected")
    assert [(event["code"], event["reason"]) for event in of(events, "t1", "disconnected")] == [
        (3500, "invalid token")
    ]
    assert len(of(events, "t1", "sse")) == 1
    assertCleanLog(server)


def test_sseServerShutdownReported3001(
    node: str,  # noqa: F811
    startServer: Callable[..., ServerProcess],
    background: Callable[[list[str], ServerProcess], ScenarioProcess],  # noqa: F811
) -> None:
    """Stopping the server (SIGTERM) makes the SDK on SSE report 3001 "shutdown" and go to connecting."""
    server = startServer(SSE)
    scenario = background(nodeCommand(node, server, "json", "sse", "shutdown", channel="news"), server)
    scenario.waitFor(lambda event: event["event"] == "ready")
    assert server.stop() in (0, -signal.SIGTERM)
    events = scenario.finish()

    after = events[[event["event"] for event in events].index("ready") + 1:]
    states = [(event["from"], event["to"]) for event in of(after, "a", "state")]
    assert states[0] == ("connected", "connecting"), after
    assert of(after, "a", "connecting")[0] == {"event": "connecting", "who": "a", "code": 3001, "reason": "shutdown"}
    assert [(event["code"], event["reason"]) for event in of(after, "a", "disconnected")] == [(0, "disconnect called")]
    assert of(after, "a", "subscribing")
    assertCleanLog(server)
