"""
The official Python SDK (PyPI ``centrifuge-python``) against a real server process over WebSocket, JSON and
Protobuf, through the protocol features beyond publish/subscribe: connection tokens and their refresh, expired
tokens, subscription tokens on ``$`` channels, presence, join/leave, history, recovery after a network cut, RPC
(in-process handlers and the HTTP proxy to a real backend) and fossil deltas.

tests/python_sdk/protocol_client.py drives the SDK, one process per scenario (the SDK's generated ``client_pb2``
would clash with httpstream's in one process), mints HS256 tokens as an application backend would, and prints
one JSON object per SDK event and per command and reply it saw on the WebSocket; these tests assert on both.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.proxybackend import ProxyBackend, Reply, echoRPC
from tests.serverprocess import EMBEDDED, ServerProcess
from tests.test_sdk_http_stream import by, of
from tests.test_sdk_websocket import assertCleanLog, explain, parseEvents

SCRIPT = Path(__file__).parent / "python_sdk" / "protocol_client.py"
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
    # A connection whose token ran out is closed 1 s later (25 s by default), a subscription unsubscribed 1 s
    # later as the presence timer (every 1 s, not 27 s) finds it: a missed refresh shows quickly.
    "client_expired_close_delay": "1s",
    "client_expired_sub_close_delay": "1s",
    "client_presence_update_interval": "1s",
    "namespaces": [
        # "$private:..." channels: the "$" is stripped before the namespace is looked up; subscribing needs a
        # subscription token even though clients may subscribe here.
        {"name": "private", "allow_subscribe_for_client": True, "allow_publish_for_subscriber": True},
        {"name": "presence", "presence": True, "allow_subscribe_for_client": True,
         "allow_presence_for_subscriber": True},
        {"name": "joinleave", "join_leave": True, "force_push_join_leave": True, "allow_subscribe_for_client": True},
        # join/leave pushed only to subscribers asking for them (SubscribeRequest.join_leave) who may see presence.
        {"name": "jlflag", "join_leave": True, "allow_subscribe_for_client": True, "allow_presence_for_client": True},
        {"name": "history", **_HISTORY, "allow_subscribe_for_client": True, "allow_publish_for_subscriber": True,
         "allow_history_for_subscriber": True},
        # Recovery for subscribers that ask for it (recoverable), or for all (force_recovery).
        {"name": "recovery", **_ANONYMOUS, **_HISTORY, "allow_recovery": True},
        {"name": "shortrecovery", **_ANONYMOUS, "history_size": 2, "history_ttl": "300s", "force_recovery": True},
        {"name": "delta", **_ANONYMOUS, **_HISTORY, "allowed_delta_types": ["fossil"], "delta_publish": True},
        {"name": "deltarecovery", **_ANONYMOUS, **_HISTORY, "allowed_delta_types": ["fossil"], "delta_publish": True,
         "force_recovery": True},
    ],
}


def run(server: ServerProcess, protocol: str, scenario: str, **options: Any) -> Events:
    """Run one scenario of protocol_client.py to its end; fail with everything that was said if it did not pass."""
    command = [
        sys.executable, str(SCRIPT),
        "--url", server.url,
        "--protocol", protocol,
        "--scenario", scenario,
        "--secret", server.config["token_hmac_secret_key"],
    ]
    for name, value in options.items():
        if value is True:
            command.append(f"--{name}")
        elif value is not False:
            command += [f"--{name}", str(value)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, explain(server, result.stdout, result.stderr)
    return parseEvents(result.stdout)


def received(events: Events, who: str, kind: str) -> Events:
    """The replies/pushes of C{kind} ("reply:subscribe", "push:pub", "error", ...) C{who} read."""
    return [event for event in of(events, who, "in") if event["kind"] == kind]


def sent(events: Events, who: str, kind: str) -> Events:
    """The commands of C{kind} ("subscribe", "refresh", ...) C{who} sent."""
    return [event for event in of(events, who, "out") if event["kind"] == kind]


def clientID(events: Events, who: str, index: int = 0) -> str:
    return of(events, who, "connected")[index]["client"]


def results(events: Events) -> dict[str, dict]:
    """The result events by call name (each name is used once per scenario)."""
    return {event["name"]: event for event in by(events, "result")}


def published(events: Events) -> list[Any]:
    return [event["data"] for event in by(events, "published")]


def expectedInfo(value: Any, protocol: str) -> Any:
    """conn_info / chan_info from a token's claim as the SDK gives it: JSON, or the raw JSON bytes (Protobuf)."""
    if protocol == "protobuf":
        return {"hex": json.dumps(value, separators=(",", ":")).encode("utf-8").hex()}
    return value


@pytest.fixture
def server(startServer: Callable[..., ServerProcess]) -> ServerProcess:
    return startServer(CONFIG)


@pytest.fixture(scope="module", autouse=True)
def sdkInstalled() -> None:
    """The SDK is importable by the interpreter the scripts run on (checked without importing it here)."""
    import importlib.util

    if importlib.util.find_spec("centrifuge") is None:
        pytest.fail("centrifuge-python is not installed: pip install -e '.[test]'")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_tokenRefreshedBeforeExpiry(server: ServerProcess, protocol: str) -> None:
    """
    A connection token that expires about 3 s after it was minted, with a get_token that mints fresh ones: the SDK
    sends refresh commands (each answered with a new expiry) before the token runs out, again and again, and stays
    on its one connection well past the first token's expiry plus the server's 1 s grace, where it still receives
    what it publishes.
    """
    events = run(server, protocol, "refresh", channel=f"refresh-{protocol}", ttl=3, duration=5)

    client = clientID(events, "r")
    assert len(of(events, "r", "ws_open")) == 1
    assert [event["event"] for event in events if event.get("who") == "r" and event["event"] in (
        "connecting", "connected", "disconnected")] == ["connecting", "connected", "disconnected"]
    (connect,) = received(events, "r", "reply:connect")
    assert connect["expires"] is True and 1 <= connect["ttl"] <= 3, connect

    # The connect and at least two refreshes (every 2-3 s for 5 s) each took a token from get_token.
    assert len(of(events, "r", "get_token")) >= 3, events
    refreshes = sent(events, "r", "refresh")
    assert len(refreshes) >= 2 and all(event["token"] for event in refreshes), refreshes
    replies = received(events, "r", "reply:refresh")
    # Every refresh is answered, except one the scenario's own end may catch in flight.
    assert len(refreshes) - 1 <= len(replies) <= len(refreshes), events
    assert all(reply["expires"] is True and 1 <= reply["ttl"] <= 3 for reply in replies), replies
    assert not of(events, "r", "error")

    # Still delivering after the first token expired (<= 3 s) and its grace (1 s) were over.
    (publication,) = of(events, "r", "publication")
    assert publication["data"] == published(events)[0]
    assert publication["t"] - of(events, "r", "connected")[0]["t"] > 4500, events
    assert f"client {client} disconnected: 3005" not in server.output
    assertCleanLog(server)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_subscriptionTokenRefreshed(server: ServerProcess, protocol: str) -> None:
    """
    A subscription token of a "$" channel that expires about 3 s after it was minted, with the subscription's
    get_token minting fresh ones: the SDK sends sub_refresh commands (each answered with a new expiry) before it
    runs out, and the subscription stays well past the first token's expiry plus the 1 s grace, still delivering.
    The control: a subscription whose token (given up front, no get_token) is never refreshed is unsubscribed by
    the server with 2501 "subscription expired"; the SDK resubscribes with the same token, gets 109 and, with no
    get_token, ends unsubscribed (code 1 "unauthorized").
    """
    refreshed, expiring = f"$private:subrefresh-{protocol}", f"$private:subexpire-{protocol}"
    events = run(server, protocol, "subrefresh", channel=refreshed, channel2=expiring, ttl=3, duration=5)

    def about(channel: str, kind: str) -> Events:
        return [event for event in of(events, "r", kind) if event.get("channel") == channel]

    # The refreshed one: subscribed once, refreshed at least twice, each with a new token, never left until its
    # publication arrived (the SDK's own disconnect() at the end moves it back to subscribing).
    end = next(index for index, event in enumerate(events) if event["event"] == "publication")
    assert [event["event"] for event in events[:end] if event.get("channel") == refreshed
            and event["event"] in ("subscribing", "subscribed", "unsubscribed")] == ["subscribing", "subscribed"]
    (reply,) = [event for event in received(events, "r", "reply:subscribe") if event["id"] == sent(
        events, "r", "subscribe")[0]["id"]]
    assert reply["expires"] is True and 1 <= reply["ttl"] <= 3, reply
    assert len(about(refreshed, "sub_token")) >= 3
    refreshes = sent(events, "r", "sub_refresh")
    assert len(refreshes) >= 2 and all(event["channel"] == refreshed and event["token"] for event in refreshes)
    replies = received(events, "r", "reply:sub_refresh")
    # Every refresh is answered, except one the scenario's own end may catch in flight.
    assert len(refreshes) - 1 <= len(replies) <= len(refreshes) and len(replies) >= 2, events
    assert all(reply["expires"] is True and 1 <= reply["ttl"] <= 3 for reply in replies), replies
    (publication,) = about(refreshed, "publication")
    assert publication["data"] == published(events)[0]
    assert publication["t"] - about(refreshed, "subscribed")[0]["t"] > 4500
    assert not of(events, "r", "sub_error") or all(event["channel"] == expiring for event in of(events, "r", "sub_error"))

    # The one never refreshed: 2501 from the server, then 109 on the resubscribe, then given up.
    unsubscribes = [event for event in received(events, "r", "push:unsubscribe") if event["channel"] == expiring]
    assert [(event["code"], event["reason"]) for event in unsubscribes] == [(2501, "subscription expired")]
    assert [(event["code"], event["reason"]) for event in about(expiring, "subscribing")] == [
        (0, "subscribe called"), (2501, "subscription expired")
    ]
    assert [event["code"] for event in received(events, "r", "error")] == [109]
    assert [(event["code"], event["reason"]) for event in about(expiring, "unsubscribed")] == [(1, "unauthorized")]
    assert [event["code"] for event in about(expiring, "sub_error")] == [12]  # bad configuration: no get_token
    assert len(of(events, "r", "ws_open")) == 1
    assertCleanLog(server)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_expiredToken(server: ServerProcess, protocol: str) -> None:
    """
    An expired connection token gets error 109 "token expired" (not a disconnect): with a get_token the SDK fetches
    a new one and connects (e1). A connection not refreshed is closed 1 s after its token expired with 3005
    "connection expired" (the SDK reconnects; its token is expired by then: 109; with no get_token it ends
    disconnected, code 1 "unauthorized") (e2). A refresh with an expired token is closed with 3005 too (e3).
    """
    events = run(server, protocol, "expired")

    # e1: 109 (a temporary connect error to the SDK), one get_token, connected on a second WebSocket.
    assert [event["code"] for event in received(events, "e1", "error")] == [109]
    assert [(event["code"], event.get("reply_code")) for event in of(events, "e1", "error")] == [(13, 109)]
    (getToken,) = of(events, "e1", "get_token")
    (connected,) = of(events, "e1", "connected")
    assert of(events, "e1", "error")[0]["t"] <= getToken["t"] <= connected["t"]
    assert len(of(events, "e1", "ws_open")) == 2

    # e2: connected until 1 s after its token's exp, closed with 3005, the reconnect refused with 109.
    (connected,) = of(events, "e2", "connected")
    assert received(events, "e2", "reply:connect")[0]["expires"] is True
    connecting = [(event["code"], event["reason"]) for event in of(events, "e2", "connecting")]
    assert connecting[:2] == [(0, "connect called"), (3005, "connection expired")], events
    closed = of(events, "e2", "connecting")[1]
    assert 800 <= closed["t"] - connected["t"] <= 3500, (connected, closed)
    assert [event["code"] for event in received(events, "e2", "error")] == [109]
    assert [(event["code"], event.get("reply_code")) for event in of(events, "e2", "error")] == [(13, 109), (12, None)]
    assert [(event["code"], event["reason"]) for event in of(events, "e2", "disconnected")] == [(1, "unauthorized")]
    assert len(of(events, "e2", "ws_open")) == 2

    # e3: the refresh carried an expired token: closed with 3005; reconnect with it: 109; a new token connects.
    assert len(of(events, "e3", "get_token")) == 3
    assert len(sent(events, "e3", "refresh")) == 1
    assert not received(events, "e3", "reply:refresh")
    assert (3005, "connection expired") in [(event["code"], event["reason"]) for event in of(events, "e3", "connecting")]
    assert [event["code"] for event in received(events, "e3", "error")] == [109]
    assert len(of(events, "e3", "connected")) == 2
    assert len(of(events, "e3", "ws_open")) == 3

    output = server.output
    assert f"client {clientID(events, 'e2')} disconnected: 3005" in output
    assert f"client {clientID(events, 'e3')} disconnected: 3005" in output
    assertCleanLog(server)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_subscriptionTokenOnPrivateChannel(server: ServerProcess, protocol: str) -> None:
    """
    A "$" channel (in namespace "private", which allows client subscriptions) refuses a subscription without a
    token with 103 "permission denied" (the SDK gives up: unsubscribed); with a subscription token from get_token
    (sub, channel, exp, info) it subscribes, and the token's info travels as chan_info of its publications.
    """
    channel = f"$private:room-{protocol}"
    events = run(server, protocol, "private", channel=channel)

    subscribes = sent(events, "p", "subscribe")
    assert [event.get("token", False) for event in subscribes] == [False, True]
    assert [(event["code"], event["message"]) for event in received(events, "p", "error")] == [
        (103, "permission denied")
    ]
    assert [(event["code"], event["reason"]) for event in of(events, "p", "unsubscribed")] == [
        (103, "permission denied")
    ]
    assert [event["channel"] for event in of(events, "p", "sub_token")] == [channel]
    assert len(of(events, "p", "subscribed")) == 1
    (publication,) = of(events, "p", "publication")
    assert publication["data"] == published(events)[0]
    assert publication["info"] == {
        "client": clientID(events, "p"), "user": "py-private", "conn_info": None,
        "chan_info": expectedInfo({"role": "tester"}, protocol),
    }
    assertCleanLog(server)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_presence(server: ServerProcess, protocol: str) -> None:
    """
    alice (two connections, the first with info in its token) and bob subscribe to a channel with presence for
    subscribers: presence lists the three connections with their users (and conn_info), presence_stats counts 3
    clients of 2 users; after bob unsubscribed, 2 of 1, and bob may no longer ask (103); after alice's second
    connection went away, 1 of 1.
    """
    events = run(server, protocol, "presence", channel=f"presence:room-{protocol}")

    alice, alice2, bob = (clientID(events, who) for who in ("alice", "alice2", "bob"))
    answers = results(events)

    def entry(client: str, user: str, info: Any = None) -> dict:
        return {"client": client, "user": user, "conn_info": info, "chan_info": None}

    aliceEntry = entry(alice, "alice", expectedInfo({"name": "Alice"}, protocol))
    assert answers["presence"]["value"] == {"clients": {
        alice: aliceEntry, alice2: entry(alice2, "alice"), bob: entry(bob, "bob"),
    }}
    assert answers["presence_stats"]["value"] == {"num_clients": 3, "num_users": 2}
    assert answers["sub.presence_stats"]["value"] == {"num_clients": 3, "num_users": 2}
    assert answers["presence after bob left"]["value"] == {"clients": {alice: aliceEntry, alice2: entry(alice2, "alice")}}
    assert answers["presence_stats after bob left"]["value"] == {"num_clients": 2, "num_users": 1}
    assert answers["presence unsubscribed"]["error"] == {"code": 103, "message": "permission denied"}
    assert answers["presence_stats after alice2 left"]["value"] == {"num_clients": 1, "num_users": 1}
    assertCleanLog(server)


def joinsAndLeaves(events: Events, who: str, channel: str, exclude: str) -> list[tuple[str, str]]:
    """(join|leave, client) of every join/leave C{who} saw in C{channel}, except about client C{exclude}."""
    return [
        (event["event"], event["info"]["client"]) for event in events
        if event.get("who") == who and event["event"] in ("join", "leave") and event["channel"] == channel
        and event["info"]["client"] != exclude
    ]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_joinAndLeave(server: ServerProcess, protocol: str) -> None:
    """
    With force_push_join_leave, "a" sees b join and leave (unsubscribe), and c join and leave (disconnect), with
    their users and conn_info. With join_leave only, "a" subscribed with the SDK's join_leave flag (and presence
    permission) sees the others join and leave; "quiet", subscribed without the flag, sees nothing.
    """
    forced, flagged = f"joinleave:room-{protocol}", f"jlflag:room-{protocol}"
    events = run(server, protocol, "joinleave", channel=forced, channel2=flagged)

    a, b, c, quiet = (clientID(events, who) for who in ("a", "b", "c", "quiet"))
    assert joinsAndLeaves(events, "a", forced, exclude=a) == [("join", b), ("leave", b), ("join", c), ("leave", c)]
    aboutB = [event["info"] for event in events if event.get("who") == "a" and event["event"] in ("join", "leave")
              and event["info"]["client"] == b]
    assert aboutB and all(info == {"client": b, "user": "user-b", "conn_info": expectedInfo({"name": "B"}, protocol),
                                   "chan_info": None} for info in aboutB), aboutB

    (flagSubscribe,) = [event for event in sent(events, "a", "subscribe") if event["channel"] == flagged]
    assert flagSubscribe.get("join_leave") is True
    assert joinsAndLeaves(events, "a", flagged, exclude=a) == [("join", quiet), ("join", b), ("leave", b)]
    assert joinsAndLeaves(events, "quiet", flagged, exclude="") == []
    assert not received(events, "quiet", "push:join") and not received(events, "quiet", "push:leave")
    assertCleanLog(server)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_historyLimitAndReverse(server: ServerProcess, protocol: str) -> None:
    """
    After 5 publications (history_size 10): limit 0 gives only the stream position (top 5 and the epoch); limit 2
    the two oldest, oldest first; reverse the two newest, newest first; -1 all; since an offset the ones after it
    (reverse: before it, newest first); a position of another epoch is error 112; a client not subscribed gets 103
    (history for subscribers only); a channel without history 108.
    """
    events = run(server, protocol, "history", channel=f"history:log-{protocol}", channel2=f"nohistory-{protocol}",
                 count=5)

    data = published(events)
    assert len(data) == 5
    h = clientID(events, "h")
    answers = results(events)
    top = answers["limit 0"]["value"]
    assert (top["offset"], top["publications"]) == (5, []) and top["epoch"], top

    def page(name: str) -> list[int]:
        value = answers[name]["value"]
        assert (value["offset"], value["epoch"]) == (5, top["epoch"]), value
        for pub in value["publications"]:
            assert pub["data"] == data[pub["offset"] - 1], pub
            assert pub["info"] == {"client": h, "user": "py-history", "conn_info": None, "chan_info": None}
        return [pub["offset"] for pub in value["publications"]]

    assert page("limit 2") == [1, 2]
    assert page("limit 2 reverse") == [5, 4]
    assert page("limit -1") == [1, 2, 3, 4, 5]
    assert page("since 2 limit 2") == [3, 4]
    assert page("since 4 reverse") == [3, 2, 1]
    # (JSON sends limit 0 and reverse false as such; Protobuf leaves zero values out.)
    assert [(event.get("limit", 0), event.get("reverse", False)) for event in sent(events, "h", "history")][:3] == [
        (0, False), (2, False), (2, True)
    ]
    assert answers["since other epoch"]["error"] == {"code": 112, "message": "unrecoverable position"}
    assert answers["not subscribed"]["error"] == {"code": 103, "message": "permission denied"}
    assert answers["no history"]["error"] == {"code": 108, "message": "not available"}
    assertCleanLog(server)


RECOVERY: dict[str, dict[str, Any]] = {
    # Asked for by the subscriber (recoverable) where the namespace allows it: 2 received, 3 missed, 1 live.
    "recovered": {"channel": "recovery:feed", "recoverable": True, "before": 2, "missed": 3, "after": 1},
    # force_recovery with history_size 2: 1 received, 4 missed, of which only the last 2 are kept.
    "trimmed": {"channel": "shortrecovery:feed", "before": 1, "missed": 4, "after": 1},
    # force_recovery with delta fossil: the recovered publications are a full one and deltas, then deltas live.
    "delta": {"channel": "deltarecovery:feed", "delta": True, "before": 2, "missed": 3, "after": 2},
}


@pytest.mark.parametrize("variant", list(RECOVERY))
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_recoveryAfterNetworkCut(server: ServerProcess, protocol: str, variant: str) -> None:
    """
    A subscriber receives a few publications; its TCP connection is cut under the WebSocket (no close frame, as
    a network failure) and kept down while more are published; then the SDK reconnects and resubscribes with
    recover and its position. With the history intact: recovered true and exactly the missed publications, in
    order, in the subscribe reply, then the live ones, nothing twice. With the history trimmed past its position:
    recovered false, no publications, the stream top as the new position, then the live ones.
    """
    options = dict(RECOVERY[variant])
    options["channel"] = f"{options['channel']}-{protocol}"
    events = run(server, protocol, "recovery", **options)
    before, missed, after = options["before"], options["missed"], options["after"]
    total = before + missed + after
    data = published(events)
    assert len(data) == total

    # The cut: the SDK lost the transport (code 1, it reconnects), its subscription waited, a second WebSocket.
    connecting = [(event["code"], event["reason"]) for event in of(events, "s", "connecting")]
    assert connecting == [(0, "connect called"), (1, "transport closed")], connecting
    assert len(of(events, "s", "ws_open")) == 2
    first, second = of(events, "s", "subscribed")
    assert (first["recoverable"], first["positioned"], first["was_recovering"]) == (True, True, False)
    assert first["epoch"]
    resubscribe = sent(events, "s", "subscribe")[1]
    assert (resubscribe.get("recover"), resubscribe.get("offset"), resubscribe.get("epoch")) == (
        True, before, first["epoch"]
    ), resubscribe
    reply = received(events, "s", "reply:subscribe")[1]

    pubs = of(events, "s", "publication")
    if variant == "trimmed":
        assert (second["was_recovering"], second["recovered"]) == (True, False), second
        assert (second["offset"], second["epoch"]) == (before + missed, first["epoch"])
        assert "publications" not in reply, reply
        expected = list(range(1, before + 1)) + list(range(before + missed + 1, total + 1))
    else:
        assert (second["was_recovering"], second["recovered"]) == (True, True), second
        assert (second["offset"], second["epoch"]) == (before, first["epoch"])  # the client's own position
        assert [pub["offset"] for pub in reply["publications"]] == list(range(before + 1, before + missed + 1))
        expected = list(range(1, total + 1))
    assert [pub["offset"] for pub in pubs] == expected, pubs
    assert [pub["data"] for pub in pubs] == [data[offset - 1] for offset in expected]

    if variant == "delta":
        # Each subscribe answered delta; the recovered ones: the first whole, the next deltas against the one
        # before. Live ones are deltas again from the second on: httpstream diffs against the last publication
        # the node itself delivered (which it missed while the channel had no subscriber here), so the first live
        # one after the gap comes whole; Centrifugo OSS diffs against the stream's previous publication instead.
        assert [event.get("delta") for event in received(events, "s", "reply:subscribe")] == [True, True]
        assert [pub["delta"] for pub in reply["publications"]] == [False] + [True] * (missed - 1)
        live = received(events, "s", "push:pub")[before:]
        assert len(live) == after and live[-1]["delta"] is True, live
    assertCleanLog(server)


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
def test_rpc(startServer: Callable[..., ServerProcess], backend: ProxyBackend, protocol: str) -> None:
    """
    httpstream embedded with in-process RPC handlers and an RPC proxy: "echo" is answered in process with the data
    sent, "fail" with error 4000 "custom failure"; the other methods go to the backend over HTTP, which echoes
    "backend.echo" and refuses "backend.fail" with 4001 - the SDK gets exactly those answers.
    """
    server = startServer({**CONFIG, "proxy_rpc_endpoint": backend.endpoint("/rpc")}, command=EMBEDDED)
    events = run(server, protocol, "rpc")

    (sentData,) = [event["data"] for event in by(events, "rpc_data")]
    answers = results(events)
    assert answers["echo"]["value"] == {"data": sentData}
    assert answers["fail"]["error"] == {"code": 4000, "message": "custom failure"}
    assert answers["backend.echo"]["value"] == {"data": sentData}
    assert answers["backend.fail"]["error"] == {"code": 4001, "message": "backend refused"}

    # Only the methods without an in-process handler reached the backend, with the connection's identity.
    requests = backend.requestsTo("/rpc")
    assert [request.body["method"] for request in requests] == ["backend.echo", "backend.fail"]
    for request in requests:
        body = request.body
        assert (body["client"], body["user"], body["transport"], body["protocol"]) == (
            clientID(events, "r"), "py-rpc", "websocket", protocol
        ), body
        if protocol == "protobuf":
            assert body["encoding"] == "binary" and "b64data" in body
            assert request.payload() == bytes.fromhex(sentData["hex"])
        else:
            assert body.get("encoding", "json") == "json" and body["data"] == sentData
    assertCleanLog(server)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_fossilDelta(server: ServerProcess, protocol: str) -> None:
    """
    In a namespace with allowed_delta_types ["fossil"] and delta_publish, a subscriber asking for delta "fossil"
    gets delta: true in its subscribe reply, the first publication whole and the next ones as Fossil deltas the SDK
    applies: each arrives intact. A subscriber without delta gets each one whole.
    """
    count = 6
    events = run(server, protocol, "delta", channel=f"delta:feed-{protocol}", count=count)
    data = published(events)
    assert len(data) == count

    (subscribe,) = sent(events, "d", "subscribe")
    assert subscribe.get("delta") == "fossil"
    (reply,) = received(events, "d", "reply:subscribe")
    assert reply.get("delta") is True, reply
    assert [pub["data"] for pub in of(events, "d", "publication")] == data
    assert [pub["delta"] for pub in received(events, "d", "push:pub")] == [False] + [True] * (count - 1)

    (plainReply,) = received(events, "plain", "reply:subscribe")
    assert "delta" not in plainReply
    assert [pub["data"] for pub in of(events, "plain", "publication")] == data
    assert [pub["delta"] for pub in received(events, "plain", "push:pub")] == [False] * count
    assertCleanLog(server)
