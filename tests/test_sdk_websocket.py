"""
The official JS SDK (npm ``centrifuge``, pinned in tests/sdk/package.json) against a real ``twistd httpstream``
process over WebSocket (the ``ws`` package), with the transport list an application writes: WebSocket first,
http_stream as the fallback. JSON and the Protobuf build: connect, subscribe, publish, fan-out, the fallback when
WebSocket is switched off, disconnect codes carried by close frames, pings answered over the socket.

tests/sdk/transports.mjs drives the SDK and prints one JSON object per SDK event and per WebSocket frame; these
tests assert on them. The helpers here (running a scenario, in the foreground or in the background) are shared by
tests/test_sdk_sse.py and tests/test_python_sdk.py.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.serverprocess import ServerProcess
from tests.test_sdk_http_stream import ScenarioProcess, by, explain, node, of, parseEvents, token  # noqa: F401  (node: a fixture)

SCRIPT = Path(__file__).parent / "sdk" / "transports.mjs"

PROTOCOLS = ["json", "protobuf"]

# The seed's transport list: WebSocket, then http_stream.
WEBSOCKET_FIRST = "websocket,http_stream"

# What each protocol publishes: JSON with nesting, non-ASCII text, escaped newlines and U+2028 (a line separator to
# JavaScript); for Protobuf, bytes that are not UTF-8 and hold the framing's own special bytes (00, a newline,
# varint continuation bytes).
PAYLOADS: dict[str, Any] = {
    "json": {
        "text": "héllo ☃ \"quoted\"\nsecond line\r\n\u2028data: not an event",
        "n": [1, 2.5, None, -7],
        "nested": {"ok": True, "empty": {}},
    },
    "protobuf": bytes([0x00, 0x0A, 0x0D, 0xFF, 0x80, 0x81]) + b'{"not":"json"}' + bytes(range(256)),
}

Events = list[dict[str, Any]]


def dataArgument(protocol: str) -> str:
    data = PAYLOADS[protocol]
    return data.hex() if protocol == "protobuf" else json.dumps(data)


def expectedData(protocol: str) -> Any:
    """The data as the scripts print what the SDK delivered."""
    payload = PAYLOADS[protocol]
    return {"hex": payload.hex()} if protocol == "protobuf" else payload


def nodeCommand(
    executable: str, server: ServerProcess, protocol: str, transports: str, scenario: str, **options: Any
) -> list[str]:
    command = [
        executable, str(SCRIPT),
        "--url", server.url,
        "--protocol", protocol,
        "--transports", transports,
        "--scenario", scenario,
    ]
    if "data" not in options:
        command += ["--data", dataArgument(protocol)]
    return command + optionArguments(options)


def optionArguments(options: dict[str, Any]) -> list[str]:
    arguments = []
    for name, value in options.items():
        for item in value if isinstance(value, list) else [value]:
            arguments += [f"--{name}", str(item)]
    return arguments


def run(command: list[str], server: ServerProcess, timeout: float = 60) -> Events:
    """Run a scenario to its end; it must pass its own checks."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, explain(server, result.stdout, result.stderr)
    return parseEvents(result.stdout)


@pytest.fixture
def background() -> Iterator[Callable[[list[str], ServerProcess], ScenarioProcess]]:
    """Start scenarios in the background; any still running after the test are killed."""
    started: list[ScenarioProcess] = []

    def start(command: list[str], server: ServerProcess) -> ScenarioProcess:
        process = ScenarioProcess(command, server)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


def assertCleanLog(server: ServerProcess) -> None:
    """
    Stop the server and check it logged no error (an exception in a callback leaves a client half-closed).

    At log_level debug autobahn logs every clean close with "Traceback (failure with no frames)": not an error.
    """
    server.stop()
    output = server.output
    for sign in ("Traceback (most recent call last)", "Unhandled error", "#error]", "#critical]"):
        assert sign not in output, output


def assertFramesAre(events: Events, protocol: str) -> None:
    """Every frame either way was of the protocol's kind: text for JSON, binary for Protobuf."""
    frames = by(events, "ws_send") + by(events, "ws_recv")
    assert frames
    assert {event["binary"] for event in frames} == {protocol == "protobuf"}, frames


def closeFrames(events: Events, who: str) -> list[tuple[int, str]]:
    return [(event["code"], event["reason"]) for event in of(events, who, "ws_close")]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_websocketFirstConnectsOverWebSocket(
    node: str, startServer: Callable[..., ServerProcess], protocol: str  # noqa: F811
) -> None:
    """
    With the list [websocket, http_stream] both SDK clients connect over WebSocket (the Protobuf build with the
    subprotocol centrifuge-protobuf echoed, JSON with none) and never try http_stream; the first publishes and both
    receive exactly the data published, attributed to the publisher.
    """
    server = startServer()
    events = run(nodeCommand(node, server, protocol, WEBSOCKET_FIRST, "pubsub", channel=f"ws-{protocol}"), server)

    clients = {}
    for who in ("a", "b"):
        (connected,) = of(events, who, "connected")
        assert connected["transport"] == "websocket"
        clients[who] = connected["client"]
        assert of(events, who, "ws_open") == [
            {"event": "ws_open", "who": who, "protocol": "centrifuge-protobuf" if protocol == "protobuf" else ""}
        ]
        assert of(events, who, "subscribed") == [{"event": "subscribed", "who": who, "channel": f"ws-{protocol}"}]
    assert clients["a"] != clients["b"]
    assert not by(events, "stream") and not by(events, "emulation"), "http_stream was tried"
    assertFramesAre(events, protocol)

    for who in ("a", "b"):
        (publication,) = of(events, who, "publication")
        assert publication["data"] == expectedData(protocol)
        assert publication["info"] == {"client": clients["a"], "user": ""}
    assert not by(events, "error") and not by(events, "ws_error")
    assert [(event["code"], event["reason"]) for event in by(events, "disconnected")] == [
        (0, "disconnect called")
    ] * 2
    assert server.output.count("connected over websocket") == 2
    assertCleanLog(server)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_websocketDisabledFallsBackToHttpStream(
    node: str, startServer: Callable[..., ServerProcess], protocol: str  # noqa: F811
) -> None:
    """
    With websocket_disable the upgrade is answered 404; the same list then falls back to http_stream, where
    publishing and receiving work as before.
    """
    server = startServer({"websocket_disable": True})
    events = run(nodeCommand(node, server, protocol, WEBSOCKET_FIRST, "pubsub", channel="fallback"), server)

    for who in ("a", "b"):
        errors = of(events, who, "ws_error")
        assert errors and all("404" in event["message"] for event in errors), errors
        assert not of(events, who, "ws_open")
        (connected,) = of(events, who, "connected")
        assert connected["transport"] == "http_stream"
        (stream,) = of(events, who, "stream")
        assert stream["status"] == 200
        (publication,) = of(events, who, "publication")
        assert publication["data"] == expectedData(protocol)
    assert all(event["status"] == 204 for event in by(events, "emulation"))
    assert server.output.count("connected over http_stream") == 2
    assert "connected over websocket" not in server.output
    assertCleanLog(server)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_invalidTokenClosesWith3500(
    node: str, startServer: Callable[..., ServerProcess], protocol: str  # noqa: F811
) -> None:
    """
    A valid token connects over WebSocket as its user; a forged one gets a close frame 3500 "invalid token",
    which the SDK reports as disconnected 3500 without trying again (nor falling back to http_stream).
    """
    server = startServer()
    good = token({"sub": "user-7", "exp": int(time.time()) + 3600})
    forged = token({"sub": "user-7"}, secret="another-secret-0123456789abcdef0123456789")
    events = run(
        nodeCommand(node, server, protocol, WEBSOCKET_FIRST, "token", channel="tokens", token=[good, forged]),
        server,
    )

    assert [event["transport"] for event in of(events, "t0", "connected")] == ["websocket"]
    (publication,) = of(events, "t0", "publication")
    assert publication["info"]["user"] == "user-7"
    assert publication["data"] == expectedData(protocol)

    assert not of(events, "t1", "connected")
    assert closeFrames(events, "t1") == [(3500, "invalid token")]
    assert [(event["code"], event["reason"]) for event in of(events, "t1", "disconnected")] == [
        (3500, "invalid token")
    ]
    assert [(event["from"], event["to"]) for event in of(events, "t1", "state")] == [
        ("disconnected", "connecting"),
        ("connecting", "disconnected"),
    ]
    assert not of(events, "t1", "stream"), "fell back to http_stream after a terminal code"
    assertCleanLog(server)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_serverShutdownClosesWith3001(
    node: str,  # noqa: F811
    startServer: Callable[..., ServerProcess],
    background: Callable[[list[str], ServerProcess], ScenarioProcess],
    protocol: str,
) -> None:
    """
    Stopping the server (SIGTERM) sends a close frame 3001 "shutdown": the SDK goes to connecting with that code,
    to reconnect, its subscription waiting to be resubscribed.
    """
    server = startServer()
    scenario = background(nodeCommand(node, server, protocol, WEBSOCKET_FIRST, "shutdown", channel="news"), server)
    scenario.waitFor(lambda event: event["event"] == "ready")
    assert server.stop() in (0, -signal.SIGTERM)
    events = scenario.finish()

    assert [event["transport"] for event in of(events, "a", "connected")] == ["websocket"]
    after = events[[event["event"] for event in events].index("ready") + 1:]
    assert closeFrames(after, "a")[0] == (3001, "shutdown"), after
    states = [(event["from"], event["to"]) for event in of(after, "a", "state")]
    assert states[0] == ("connected", "connecting"), after
    assert of(after, "a", "connecting")[0] == {"event": "connecting", "who": "a", "code": 3001, "reason": "shutdown"}
    assert [(event["code"], event["reason"]) for event in of(after, "a", "disconnected")] == [(0, "disconnect called")]
    assert of(after, "a", "subscribing")
    assert not of(events, "a", "unsubscribed")
    assertCleanLog(server)


def test_pingsAnsweredOverWebSocketKeepConnection(
    node: str,  # noqa: F811
    startServer: Callable[..., ServerProcess],
    background: Callable[[list[str], ServerProcess], ScenarioProcess],
) -> None:
    """
    With a 1 s ping interval and an 800 ms pong timeout, a JSON and a Protobuf client (side by side) each get the
    server's pings as WebSocket frames holding one empty command, answer each with an empty command frame, and stay
    on their one connection for 3.5 s, which then still delivers a publication.
    """
    server = startServer({"ping_interval": "1s", "pong_timeout": "800ms"})
    scenarios = {
        protocol: background(
            nodeCommand(node, server, protocol, WEBSOCKET_FIRST, "ping", channel=f"ping-{protocol}", duration=3.5),
            server,
        )
        for protocol in PROTOCOLS
    }
    for protocol, scenario in scenarios.items():
        events = scenario.finish()
        states = [(event["from"], event["to"]) for event in by(events, "state")]
        assert states == [("disconnected", "connecting"), ("connecting", "connected"), ("connected", "disconnected")]
        assert [event["transport"] for event in by(events, "connected")] == ["websocket"]
        # The first ping comes 0.5-1 s after connect, then one every second: at least three within 3.5 s.
        pings = [event for event in by(events, "ws_recv") if event["ping"]]
        pongs = [event for event in by(events, "ws_send") if event["pong"]]
        assert len(pings) >= 3, events
        assert len(pongs) == len(pings), events
        assertFramesAre(events, protocol)
        assert of(events, "a", "publication")[0]["data"] == expectedData(protocol)
        assert not by(events, "error") and not by(events, "ws_error")
    output = server.output
    assert output.count("connected over websocket") == 2
    assert "3012" not in output and "no pong" not in output, output
    assertCleanLog(server)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_messageOverSizeLimitDisconnects(
    node: str, startServer: Callable[..., ServerProcess], protocol: str  # noqa: F811
) -> None:
    """
    A frame over websocket_message_size_limit is closed with 1009, which the SDK reports as disconnected 3
    "message size limit exceeded" (and does not reconnect).
    """
    server = startServer({"websocket_message_size_limit": 1024})
    big = bytes(range(256)) * 8 if protocol == "protobuf" else {"text": "x" * 2048}
    data = big.hex() if isinstance(big, bytes) else json.dumps(big)
    events = run(nodeCommand(node, server, protocol, WEBSOCKET_FIRST, "oversize", channel="big", data=data), server)

    assert [event["transport"] for event in of(events, "a", "connected")] == ["websocket"]
    assert [event["code"] for event in of(events, "a", "ws_close")] == [1009]
    assert [(event["code"], event["reason"]) for event in of(events, "a", "disconnected")] == [
        (3, "message size limit exceeded")
    ]
    assert not of(events, "a", "published") and not of(events, "a", "publication")
    assert len(of(events, "a", "ws_open")) == 1
    assertCleanLog(server)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_recoveryOver64KiBArrives(
    node: str, startServer: Callable[..., ServerProcess], protocol: str  # noqa: F811
) -> None:
    """
    The SDK resubscribing with recover after missing 150 publications of ~1 KiB gets them all, in order, in a
    subscribe reply far over 64 KiB (one WebSocket message of its own): none lost to an outbound size limit.
    """
    namespace = {"name": "rec", "history_size": 1000, "history_ttl": "300s", "force_recovery": True,
                 "allow_subscribe_for_client": True, "allow_subscribe_for_anonymous": True,
                 "allow_publish_for_client": True, "allow_publish_for_anonymous": True}
    server = startServer({"namespaces": [namespace]})
    events = run(nodeCommand(node, server, protocol, "websocket", "recover", channel="rec:sdk", count=150,
                             deadline=40), server, timeout=90)
    [result] = of(events, "a", "recovered")
    assert (result["count"], result["numbers_in_order"], result["recovered"]) == (150, True, True)
    assert max(event["size"] for event in of(events, "a", "ws_recv")) > 150_000
    assertCleanLog(server)


# Publication data of ~10 KB that compresses well: JSON text, and for Protobuf bytes repeating every 256.
LARGE_DATA = {
    "json": json.dumps({"items": [{"id": i, "text": f"item {i} of the feed"} for i in range(300)]}),
    "protobuf": (bytes(range(256)) * 40).hex(),
}
CENTRIFUGO_DEFLATE = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"


@pytest.mark.parametrize(
    "protocol,compression,offered",
    [("json", True, True), ("protobuf", True, True), ("json", False, True), ("protobuf", False, True),
     ("json", True, False)],
)
def test_publicationsWithCompression(
    node: str, startServer: Callable[..., ServerProcess], protocol: str, compression: bool, offered: bool  # noqa: F811
) -> None:
    """
    Node's ws offers permessage-deflate by default. With websocket_compression on, both SDK clients negotiate it as
    Centrifugo answers, and a ~10 KB publication (compressed by the publishing client on its way in, by the server
    on its way out) is delivered intact while far fewer bytes than that were read from the socket; with it off,
    or when the client does not offer it, nothing is negotiated and the publication is read at full size.
    """
    server = startServer({"websocket_compression": compression, "websocket_compression_min_size": 256})
    options: dict[str, Any] = {"data": LARGE_DATA[protocol]}
    if not offered:
        options["deflate"] = "off"
    events = run(nodeCommand(node, server, protocol, "websocket", "pubsub", channel="deflate", **options), server)

    negotiated = compression and offered
    expected = json.loads(LARGE_DATA["json"]) if protocol == "json" else {"hex": LARGE_DATA["protobuf"]}
    for who in ("a", "b"):
        assert [event["extensions"] for event in of(events, who, "ws_upgrade")] == [
            CENTRIFUGO_DEFLATE if negotiated else None
        ]
        (publication,) = of(events, who, "publication")
        assert publication["data"] == expected
        frame = max(of(events, who, "ws_recv"), key=lambda event: event["size"])
        assert frame["size"] > 10_000
        # wire counts everything read so far, the handshake and the connect and subscribe replies included.
        if negotiated:
            assert frame["wire"] * 4 < frame["size"], frame
        else:
            assert frame["wire"] > frame["size"], frame
    assertFramesAre(events, protocol)
    assert not by(events, "error") and not by(events, "ws_error")
    assertCleanLog(server)
