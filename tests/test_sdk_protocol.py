"""
The official JS SDK (npm ``centrifuge``, pinned in tests/sdk/package.json) against a real server process over
transport http_stream, with the JSON and the Protobuf build, through the protocol features beyond publish/subscribe:
connection tokens and their refresh, expired tokens, subscription tokens on private channels, presence, join/leave,
history, recovery after a network cut, RPC (in-process handlers and the HTTP proxy to a real backend) and fossil
deltas.

tests/sdk/protocol.mjs drives the SDK, mints the HS256 tokens as an application backend would, and prints one JSON
object per SDK event, plus what it saw on the wire (the kind of every command it sent through /emulation, every
reply and push it read from the stream); these tests assert on both.
"""

from __future__ import annotations

import base64
import json
import subprocess
from typing import Any, Callable, Iterator

import pytest

from tests.proxybackend import ProxyBackend, Reply, echoRPC
from tests.serverprocess import EMBEDDED, ServerProcess
from tests.test_sdk_http_stream import SDK, assertCleanLog, by, explain, node, of, parseEvents

__all__ = ["node"]  # the fixture, imported so pytest finds it here

SCRIPT = SDK / "protocol.mjs"
PROTOCOLS = ["json", "protobuf"]
Events = list[dict[str, Any]]

_ANONYMOUS = {
    "allow_subscribe_for_client": True,
    "allow_subscribe_for_anonymous": True,
    "allow_publish_for_client": True,
    "allow_publish_for_anonymous": True,
}
_HISTORY = {"history_size": 10, "history_ttl": "300s"}

# One configuration serves every test; each uses its own namespace (channels are also named per protocol).
CONFIG: dict[str, Any] = {
    # A connection whose token ran out is closed 1 s later (25 s by default): a missed refresh shows quickly.
    "client_expired_close_delay": "1s",
    "namespaces": [
        # "$private:..." channels: the "$" is stripped before the namespace is looked up; subscribing needs a
        # subscription token even though clients may subscribe here.
        {"name": "private", "allow_subscribe_for_client": True, "allow_publish_for_subscriber": True},
        {"name": "presence", "presence": True, "allow_subscribe_for_client": True,
         "allow_presence_for_subscriber": True},
        {"name": "joinleave", "presence": True, "join_leave": True, "force_push_join_leave": True,
         "allow_subscribe_for_client": True},
        {"name": "history", **_ANONYMOUS, **_HISTORY, "allow_history_for_subscriber": True,
         "allow_history_for_anonymous": True},
        {"name": "recovery", **_ANONYMOUS, **_HISTORY, "force_recovery": True},
        {"name": "shortrecovery", **_ANONYMOUS, "history_size": 2, "history_ttl": "300s", "force_recovery": True},
        {"name": "delta", **_ANONYMOUS, **_HISTORY, "allowed_delta_types": ["fossil"], "delta_publish": True},
        {"name": "deltarecovery", **_ANONYMOUS, **_HISTORY, "allowed_delta_types": ["fossil"], "delta_publish": True,
         "force_recovery": True},
    ],
}

# What the rpc scenario sends (as JSON text bytes for Protobuf), and the bytes that are not JSON it also echoes.
RPC_VALUE = {"text": 'héllo ☃ "quoted"', "n": [1, 2.5, None, -7], "nested": {"ok": True, "empty": {}}}
RPC_BYTES = bytes([0x00, 0x0A, 0x0D, 0xFF, 0x80, 0x81]) + b'{"not":"json"' + bytes(range(256))


def run(node: str, server: ServerProcess, protocol: str, scenario: str, **options: Any) -> Events:
    """Run one scenario of protocol.mjs to its end; fail with everything that was said if it did not succeed."""
    arguments = [
        node, str(SCRIPT),
        "--url", server.url,
        "--protocol", protocol,
        "--scenario", scenario,
        "--secret", server.config["token_hmac_secret_key"],
    ]
    for name, value in options.items():
        arguments += [f"--{name}", str(value)]
    result = subprocess.run(arguments, check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, explain(server, result.stdout, result.stderr)
    events = parseEvents(result.stdout)
    # The spy in the script read every stream completely, and no request failed below the SDK.
    assert not by(events, "spy_error") and not by(events, "fetch_error"), explain(server, result.stdout, "")
    return events


def recv(events: Events, who: str, kind: str) -> Events:
    """The replies/pushes of C{kind} that C{who} read from its stream."""
    return [event for event in of(events, who, "recv") if event["kind"] == kind]


def sent(events: Events, who: str, command: str) -> Events:
    """The emulation POSTs of C{who} that carried a C{command}."""
    return [event for event in of(events, who, "emulation") if command in event["commands"]]


def clientID(events: Events, who: str) -> str:
    (connected,) = of(events, who, "connected")
    return connected["client"]


def publications(events: Events, who: str) -> list[tuple[int, Any]]:
    """(offset, n) of every publication C{who} received, in order."""
    return [(event["offset"], event["data"]["n"]) for event in of(events, who, "publication")]


def pubFrames(events: Events, who: str) -> Events:
    return recv(events, who, "push:pub")


@pytest.fixture
def server(startServer: Callable[..., ServerProcess]) -> ServerProcess:
    return startServer(CONFIG)


@pytest.fixture
def backend() -> Iterator[ProxyBackend]:
    """The application backend of the RPC proxy: echoes "backend.echo", refuses "backend.fail" with 4001."""

    def rpc(body: Any) -> Any:
        if body.get("method") == "backend.echo":
            return echoRPC(body)
        if body.get("method") == "backend.fail":
            return {"error": {"code": 4001, "message": "backend refused"}}
        return Reply(500, b"unexpected method")

    with ProxyBackend({"/rpc": rpc}) as running:
        yield running


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_tokenRefreshedBeforeExpiry(node: str, server: ServerProcess, protocol: str) -> None:
    """
    A connection token that expires 3 s after connect, with a getToken that mints fresh ones: the SDK refreshes
    (refresh commands through /emulation, answered with a new ttl) before expiry, again and again, and stays on
    its one connection well past the first token's expiry plus the 1 s grace, where it still receives what it
    publishes. A second client whose getToken never answers is cut off by the server then (3005, so the SDK
    reconnects): the refresh was needed.
    """
    events = run(node, server, protocol, "refresh", channel=f"refresh-{protocol}", ttl=3, duration=5)

    r, lazy = clientID(events, "r"), clientID(events, "lazy")
    (connectedR,) = of(events, "r", "connected")
    states = [(event["from"], event["to"]) for event in of(events, "r", "state")]
    assert states == [("disconnected", "connecting"), ("connecting", "connected"), ("connected", "disconnected")]
    (connect,) = recv(events, "r", "connect")
    assert connect["expires"] is True and 1 <= connect["ttl"] <= 3, connect

    # Refreshed at least twice (ttl 2-3 s each, for 5 s), each through getToken and a refresh command.
    assert len(of(events, "r", "get_token")) >= 2, events
    refreshes = sent(events, "r", "refresh")
    assert len(refreshes) >= 2 and all(event["status"] == 204 for event in refreshes), refreshes
    results = recv(events, "r", "refresh")
    assert len(results) >= 2 and all(event["expires"] and 1 <= event["ttl"] <= 3 for event in results), results
    assert not [event for event in of(events, "r", "error")]

    # Still delivering after the first token expired (3 s) and its grace (1 s) were over.
    (publication,) = of(events, "r", "publication")
    assert publication["data"]["text"] == "still here"
    assert publication["t"] - connectedR["t"] > 4500, events

    # The client that could not refresh was closed by the server at expiry + grace, with 3005.
    (connectedLazy,) = of(events, "lazy", "connected")  # its reconnect gets 109, and getToken never answers
    cutOff = of(events, "lazy", "connecting")[1]  # [0] is its first connect
    assert (cutOff["code"], cutOff["reason"]) == (3005, "connection expired"), events
    assert 2500 <= cutOff["t"] - connectedLazy["t"] <= 6000, (cutOff, connectedLazy)
    assert [event["code"] for event in recv(events, "lazy", "push:disconnect")] == [3005]
    assert of(events, "lazy", "get_token"), "the SDK did try to refresh"

    output = server.output
    assert f"client {lazy} disconnected: 3005" in output
    assert f"client {r} disconnected: 3005" not in output
    assertCleanLog(server)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_expiredToken(node: str, server: ServerProcess, protocol: str) -> None:
    """
    An expired connection token gets error 109 "token expired" (not a disconnect): the SDK with a getToken fetches
    a new token and connects with it; without getToken it reports the configuration error and ends disconnected
    with code 1 "unauthorized", without trying again.
    """
    events = run(node, server, protocol, "expired")

    # e1: 109, then exactly one getToken, then connected.
    assert [event["code"] for event in recv(events, "e1", "error")] == [109]
    errors = of(events, "e1", "error")
    assert [(event["type"], event["error"]["code"]) for event in errors] == [("connect", 109)]
    (getToken,) = of(events, "e1", "get_token")
    (connected,) = of(events, "e1", "connected")
    assert errors[0]["t"] <= getToken["t"] <= connected["t"]
    assert [event["expires"] for event in recv(events, "e1", "connect")] == [True]

    # e2: 109, no getToken to call: unauthorized, once, no reconnect.
    assert [event["code"] for event in recv(events, "e2", "error")] == [109]
    assert [(event["type"], event["error"]["code"]) for event in of(events, "e2", "error")] == [
        ("connect", 109), ("configuration", 12)  # errorCodes.badConfiguration
    ]
    assert [(event["code"], event["reason"]) for event in of(events, "e2", "disconnected")] == [(1, "unauthorized")]
    assert not of(events, "e2", "connected")
    assert len(of(events, "e2", "stream")) == 1
    assertCleanLog(server)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_subscriptionTokenOnPrivateChannel(node: str, server: ServerProcess, protocol: str) -> None:
    """
    A "$" channel (namespace "private", which allows client subscriptions) refuses a subscription without a token
    with 103; with a subscription token (sub, channel, exp, info) from getToken the subscription succeeds, and the
    token's info travels as chan_info of the subscriber's publications. A token minted for another channel
    disconnects the client with 3500 "invalid token".
    """
    channel = f"$private:room-{protocol}"
    events = run(node, server, protocol, "subtoken", channel=channel)

    unsubscribed = of(events, "u", "unsubscribed")
    assert [(event["code"], event["reason"]) for event in unsubscribed] == [(103, "permission denied")]
    assert [event["code"] for event in recv(events, "u", "error")] == [103]
    assert [event["channel"] for event in of(events, "u", "get_sub_token")] == [channel]
    assert len(of(events, "u", "subscribed")) == 1
    (publication,) = of(events, "u", "publication")
    assert publication["data"] == {"n": 1, "text": "private"}
    assert publication["info"] == {"client": clientID(events, "u"), "user": "alice", "chanInfo": {"role": "moderator"}}

    assert not of(events, "m", "subscribed")
    assert [(event["code"], event["reason"]) for event in of(events, "m", "disconnected")] == [(3500, "invalid token")]
    assertCleanLog(server)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_presenceOfTwoClients(node: str, server: ServerProcess, protocol: str) -> None:
    """
    Two subscribers of a channel with presence (allow_presence_for_subscriber): presence lists both connections
    with their users, presence_stats counts 2 clients and 2 users (for either of them), and 1 and 1 once one has
    unsubscribed.
    """
    events = run(node, server, protocol, "presence", channel=f"presence:{protocol}")

    a, b = clientID(events, "a"), clientID(events, "b")
    (presence,) = by(events, "presence")
    assert presence["clients"] == {a: {"client": a, "user": "user-a"}, b: {"client": b, "user": "user-b"}}
    stats = [(event["who"], event["numClients"], event["numUsers"], event.get("after")) for event in
             by(events, "presence_stats")]
    assert stats == [("a", 2, 2, None), ("b", 2, 2, None), ("a", 1, 1, "b unsubscribed")]
    assertCleanLog(server)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_joinAndLeaveSeenByOtherClient(node: str, server: ServerProcess, protocol: str) -> None:
    """
    join_leave with force_push_join_leave: client B sees A's join when A subscribes, its leave when A
    unsubscribes, its join again on resubscribe and its leave when A disconnects, each with A's client id and user.
    """
    events = run(node, server, protocol, "joinleave", channel=f"joinleave:{protocol}")

    a = clientID(events, "a")
    aboutA = [event for event in events if event.get("who") == "b" and event["event"] in ("join", "leave")
              and event["info"]["client"] == a]
    assert [event["event"] for event in aboutA] == ["join", "leave", "join", "leave"], events
    assert all(event["info"] == {"client": a, "user": "user-a"} for event in aboutA)
    # On the wire: B got exactly these pushes about A (no duplicates).
    # On the wire B got exactly the pushes the SDK reported: A's two joins and two leaves, and its own join (sent
    # after its subscribe reply, to every subscriber).
    assert len(recv(events, "b", "push:join")) == len(of(events, "b", "join")) == 3
    assert len(recv(events, "b", "push:leave")) == len(of(events, "b", "leave")) == 2
    assertCleanLog(server)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_historyLimitAndReverse(node: str, server: ServerProcess, protocol: str) -> None:
    """
    After 5 publications (history_size 10): no limit gives only the stream position (top 5 and the epoch);
    limit 2 the two oldest, oldest first; limit 2 reverse the two newest, newest first; since an offset the ones
    after it (reverse: before it, newest first); a since position of another epoch is error 112.
    """
    events = run(node, server, protocol, "history", channel=f"history:{protocol}")

    results = {event["query"]: event for event in by(events, "history")}
    top = results["position only"]
    assert (top["offset"], top["publications"]) == (5, []) and top["epoch"]

    def page(query: str) -> list[tuple[int, int]]:
        result = results[query]
        assert (result["offset"], result["epoch"]) == (5, top["epoch"]), result
        return [(pub["offset"], pub["data"]["n"]) for pub in result["publications"]]

    assert page("limit 2") == [(1, 1), (2, 2)]
    assert page("limit 2 reverse") == [(5, 5), (4, 4)]
    assert page("all") == [(n, n) for n in range(1, 6)]
    assert page("since 2 limit 2") == [(3, 3), (4, 4)]
    assert page("since 3 reverse") == [(2, 2), (1, 1)]
    assert results["wrong epoch"]["error"] == {"code": 112, "message": "unrecoverable position"}
    assertCleanLog(server)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_recoveryAfterNetworkCut(node: str, server: ServerProcess, protocol: str) -> None:
    """
    A subscriber of a force_recovery channel receives publications 1-2; its network is cut (the stream breaks,
    its requests are held); 3-5 are published meanwhile. When the network is back the SDK reconnects, resubscribes
    with its position and gets exactly 3, 4, 5 in order from the subscribe reply (recovered: true), then 6 live:
    nothing lost, nothing twice.
    """
    events = run(node, server, protocol, "recovery", channel=f"recovery:{protocol}", before=2, missed=3)

    first, second = of(events, "s", "subscribed")
    assert (first["recoverable"], first["positioned"], first["wasRecovering"]) == (True, True, False)
    assert (second["wasRecovering"], second["recovered"], second["hasRecoveredPublications"]) == (True, True, True)
    replies = recv(events, "s", "subscribe")
    assert [(reply["wasRecovering"], reply["recovered"], reply["publications"]) for reply in replies] == [
        (False, False, 0), (True, True, 3)
    ]
    assert publications(events, "s") == [(n, n) for n in range(1, 7)]
    # Two connections: the cut one and the new one.
    ids = [event["client"] for event in of(events, "s", "connected")]
    assert len(ids) == 2 and ids[0] != ids[1]
    (down,) = [event for event in of(events, "s", "network") if event["state"] == "down"]
    assert any(event["t"] >= down["t"] for event in of(events, "s", "connecting"))
    assert server.logged(f"client {ids[0]} went away (connection lost)")  # the server saw the cut
    assertCleanLog(server)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_recoveryFailsWhenHistoryTooShort(node: str, server: ServerProcess, protocol: str) -> None:
    """
    The same cut with history_size 2 while 5 publications are missed: the resubscribe reports wasRecovering true,
    recovered false, with no publications and the stream top as position (the application must reload); the
    next publication arrives live.
    """
    events = run(node, server, protocol, "recovery", channel=f"shortrecovery:{protocol}", before=1, missed=5)

    first, second = of(events, "s", "subscribed")
    assert first["wasRecovering"] is False
    assert (second["wasRecovering"], second["recovered"], second["hasRecoveredPublications"]) == (True, False, False)
    assert second["streamPosition"]["offset"] == 6
    assert [reply["publications"] for reply in recv(events, "s", "subscribe")] == [0, 0]
    assert publications(events, "s") == [(1, 1), (7, 7)]
    assertCleanLog(server)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_rpcInProcessAndThroughProxy(
    node: str, startServer: Callable[..., ServerProcess], backend: ProxyBackend, protocol: str
) -> None:
    """
    httpstream embedded with in-process RPC handlers, and an RPC proxy to a real HTTP backend for other methods:
    echo returns the data exactly, whoami the caller, fail error 4000; backend.echo is answered by the backend
    (which got the client, transport http_stream, protocol, user, method and data), backend.fail with the
    backend's error 4001. Protobuf also round-trips bytes that are not JSON both ways.
    """
    server = startServer(
        {"proxy_rpc_endpoint": backend.endpoint("/rpc"), "proxy_rpc_timeout": "3s"}, command=EMBEDDED
    )
    events = run(node, server, protocol, "rpc")

    client = clientID(events, "a")
    calls = {event["method"]: event for event in by(events, "rpc")}
    assert calls["echo"]["data"] == RPC_VALUE
    assert calls["whoami"]["data"] == {"user": "rpc-user", "client": client}
    assert calls["fail"]["error"] == {"code": 4000, "message": "custom failure"}
    assert calls["backend.echo"]["data"] == RPC_VALUE
    assert calls["backend.fail"]["error"] == {"code": 4001, "message": "backend refused"}

    requests = backend.requestsTo("/rpc")
    assert [request.body["method"] for request in requests] == ["backend.echo", "backend.fail"] + (
        ["backend.echo"] if protocol == "protobuf" else []
    )
    echo = requests[0].body
    assert {key: echo[key] for key in ("client", "transport", "protocol", "user", "method")} == {
        "client": client, "transport": "http_stream", "protocol": protocol, "user": "rpc-user",
        "method": "backend.echo",
    }
    assert requests[0].headers["content-type"] == "application/json"
    if protocol == "json":
        assert (echo["encoding"], echo["data"]) == ("json", RPC_VALUE)
    else:
        # httpstream sends a Protobuf client's payload as base64 (policy/proxy.py: "binary" context, an extension).
        assert echo["encoding"] == "binary"
        assert json.loads(base64.b64decode(echo["b64data"])) == RPC_VALUE
        assert calls["echo bytes"]["hex"] == RPC_BYTES.hex()
        assert calls["backend.echo bytes"]["hex"] == RPC_BYTES.hex()
        assert requests[2].payload() == RPC_BYTES
    assertCleanLog(server)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_fossilDeltaEndToEnd(node: str, server: ServerProcess, protocol: str) -> None:
    """
    A subscriber with delta 'fossil' on a namespace with allowed_delta_types ["fossil"] and delta_publish gets 8
    similar ~3 KB publications, each decoded by the SDK to exactly what was published (the script compares them),
    and on the wire the first came whole and the other 7 as deltas, a fraction of the size a subscriber without
    delta received for the same publications.
    """
    events = run(node, server, protocol, "delta", channel=f"delta:{protocol}", count=8)

    (subscribeD,) = recv(events, "d", "subscribe")
    (subscribeN,) = recv(events, "n", "subscribe")
    assert (subscribeD["delta"], subscribeN["delta"]) == (True, False)
    framesD, framesN = pubFrames(events, "d"), pubFrames(events, "n")
    assert [frame["delta"] for frame in framesD] == [False] + [True] * 7
    assert [frame["delta"] for frame in framesN] == [False] * 8
    assert [frame["offset"] for frame in framesD] == list(range(1, 9))
    bytesD, bytesN = sum(frame["size"] for frame in framesD[1:]), sum(frame["size"] for frame in framesN[1:])
    assert bytesD * 5 < bytesN, (bytesD, bytesN)
    (stats,) = by(events, "delta_stats")
    assert (stats["numPublications"], stats["numFullPayloads"], stats["numDeltaPayloads"]) == (8, 1, 7)
    assert publications(events, "d") == publications(events, "n") == [(n, n) for n in range(1, 9)]
    assertCleanLog(server)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_fossilDeltaAcrossRecovery(node: str, server: ServerProcess, protocol: str) -> None:
    """
    Deltas and recovery together (force_recovery): the delta subscriber gets 1-4 (whole, then deltas), loses its
    network while 5-7 are published, recovers them in the subscribe reply as upstream sends them (5 whole, 6 and 7
    as deltas), and then gets 8-10 as deltas against the recovered 7, all decoding to exactly what was published.
    """
    events = run(node, server, protocol, "delta", channel=f"deltarecovery:{protocol}", count=10, cutafter=4, missed=3)

    replies = recv(events, "d", "subscribe")
    assert [(reply["delta"], reply["wasRecovering"], reply["recovered"], reply["publications"]) for reply in replies] == [
        (True, False, False, 0), (True, True, True, 3)
    ]
    frames = pubFrames(events, "d")
    assert [frame["offset"] for frame in frames] == [1, 2, 3, 4, 8, 9, 10]
    assert [frame["delta"] for frame in frames] == [False, True, True, True, True, True, True]
    assert publications(events, "d") == publications(events, "n") == [(n, n) for n in range(1, 11)]
    (stats,) = by(events, "delta_stats")
    assert (stats["numPublications"], stats["numDeltaPayloads"]) == (10, 8)
    assertCleanLog(server)
