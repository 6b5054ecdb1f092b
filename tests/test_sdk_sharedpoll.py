"""
Shared poll subscriptions with the official JS SDK (npm ``centrifuge`` 5.8, tests/sdk/sharedpoll.mjs) against real
server processes over WebSocket, JSON and Protobuf, with a real HTTP backend (L{SharedState}) the server polls:
signatures made in Node with the HMAC the server checks, track/untrack/trackedKeys, changes pushed when the backend
changes, reconnect replay with the versions kept, a refused key untracked, signature expiry and refresh; on the
memory engine and on two nodes over Redis (each polls for its own subscribers).
"""

from __future__ import annotations

import subprocess
import threading
import uuid
from typing import Any, Callable

import pytest

from tests.engines.test_engine_redis import REDIS_DB, REDIS_HOST, REDIS_PORT, requireRedis
from tests.proxybackend import ProxyBackend
from tests.serverprocess import ServerProcess
from tests.test_sdk_http_stream import SDK, assertCleanLog, by, explain, node, of, parseEvents

__all__ = ["node"]

SCRIPT = SDK / "sharedpoll.mjs"
SECRET = "test-poll-secret-0123456789abcdef"
API_KEY = "sharedpoll-api-key"
Events = list[dict[str, Any]]


class SharedState:
    """The application's backend: per-channel key -> (data, version), answered as Centrifugo's refresh proxy."""

    def __init__(self) -> None:
        self.state: dict[str, dict[str, tuple[Any, int]]] = {}
        self.lock = threading.Lock()
        self.backend = ProxyBackend({"/refresh": self.refresh, "/set": self.set})

    def set(self, body: Any) -> Any:
        with self.lock:
            self.state.setdefault(body["channel"], {})[body["key"]] = (body["data"], body["version"])
        return {}

    def refresh(self, body: Any) -> Any:
        with self.lock:
            known = dict(self.state.get(body["channel"], {}))
        items = []
        for item in body["items"]:
            if item["key"] in known:
                data, version = known[item["key"]]
                if not version or version > item.get("version", 0):
                    items.append({"key": item["key"], "data": data, **({"version": version} if version else {})})
        return {"result": {"items": items}}

    def __enter__(self) -> "SharedState":
        return self

    def __exit__(self, *exc: object) -> None:
        self.backend.close()

    def polls(self, channel: str) -> list[list[str]]:
        """The keys of each refresh request for C{channel}, in order."""
        return [[i["key"] for i in r.body["items"]] for r in self.backend.requestsTo("/refresh")
                if r.body["channel"] == channel]


def config(state: SharedState, **extra: Any) -> dict[str, Any]:
    namespace = {"allow_subscribe_for_client": True, "allow_subscribe_for_anonymous": True,
                 "subscription_type": "shared_poll", "shared_poll_proxy_name": "poll_backend",
                 "shared_poll_refresh_interval": "200ms", "shared_poll_refresh_batch_size": 100,
                 "shared_poll_max_keys_per_connection": 100}
    return {
        "shared_poll_hmac_secret_key": SECRET,
        "proxies": [{"name": "poll_backend", "endpoint": state.backend.endpoint("/refresh"), "timeout": "5s"}],
        "namespaces": [{"name": "poll", **namespace, "shared_poll_mode": "versioned",
                        "shared_poll_publish_enabled": True}, {"name": "pollvl", **namespace},
                       {"name": "polld", **namespace, "shared_poll_mode": "versioned",
                        "allowed_delta_types": ["fossil"]}],
        "api_key": API_KEY,
        **extra,
    }


def run(node: str, servers: list[ServerProcess], state: SharedState, protocol: str, channel: str,
        scenario: str, *extra: str) -> Events:
    arguments = [node, str(SCRIPT), "--url", ",".join(s.url for s in servers), "--backend",
                 state.backend.endpoint(""), "--protocol", protocol, "--channel", channel, "--secret", SECRET,
                 "--scenario", scenario, "--apikey", API_KEY, *extra]
    result = subprocess.run(arguments, check=False, capture_output=True, text=True, timeout=90)
    assert result.returncode == 0, explain(servers[0], result.stdout, result.stderr)
    return parseEvents(result.stdout)


def versions(events: Events, who: str, key: str) -> list[Any]:
    return [(u["data"] or {}).get("v") for u in of(events, who, "update") if u["key"] == key]


def assertMain(events: Events, state: SharedState, protocol: str, channel: str) -> None:
    # Every change reached each client tracking the key, once, in order.
    assert versions(events, "b", "k1") == ["k1-1", "k1-2", "k1-3"]
    assert versions(events, "b", "k2") == ["k2-1", "k2-2"]
    assert versions(events, "a", "k1") == ["k1-1", "k1-2", "k1-3"]
    # "a" untracked k2 before it changed: nothing more of it, and its SDK no longer lists it.
    assert versions(events, "a", "k2") == ["k2-1"]
    tracked = by(events, "tracked")
    assert tracked[0]["keys"] == ["k1"]
    # The key the application signed wrongly: refused (103), untracked by the SDK, reported as removed.
    assert {"who": "a", "type": "track", "code": 103}.items() <= next(
        e for e in by(events, "sub_error") if e["type"] == "track").items()
    assert tracked[1]["keys"] == ["k1"]
    assert [u for u in of(events, "a", "update") if u["key"] == "bad"] == [
        {"event": "update", "who": "a", "key": "bad", "data": None, "removed": True}]
    # The backend: never a key twice in one request (one poll per key, whatever the number of trackers).
    for keys in state.polls(channel):
        assert len(keys) == len(set(keys))
    if protocol == "json":
        assertWire(events, channel)


def assertWire(events: Events, channel: str) -> None:
    wire = [e for e in by(events, "wire") if e["who"] == "a"]
    subscribes = [e for e in wire if e["kind"] == "subscribe"]
    assert [s.get("type") for s in subscribes] == [4, 4]
    if channel.startswith("pollvl"):
        assert len(subscribes[0]["epoch"]) == 8
    else:
        assert "epoch" not in subscribes[0]
    tracks = [e for e in wire if e["dir"] == "out" and e.get("type") == 1]
    # After the reconnect the SDK replays its signature with the version it has of k1 (the second one), so the
    # server sends only the third, once: as a reply item or a push, never the second again.
    replay = tracks[1]
    items = [item for batch in replay["track"] for item in batch["items"]]
    k1 = next(item for item in items if item["key"] == "k1")
    assert k1.get("version", 0) > 0
    delivered = [e["version"] for e in wire if e["kind"] == "pub" and e["key"] == "k1"]
    for reply in (e for e in wire if e["kind"] == "sub_refresh" and e["dir"] == "in"):
        delivered += [i["version"] for i in reply.get("items", []) if i["key"] == "k1"]
        if reply.get("expires"):
            assert 50 <= reply.get("ttl", 0) <= 60
    assert len(delivered) == len(set(delivered)) == 3


@pytest.mark.parametrize("protocol", ["json", "protobuf"])
@pytest.mark.parametrize("namespace", ["poll", "pollvl"])
def test_sharedPoll(node: str, startServer: Callable[..., ServerProcess], protocol: str, namespace: str) -> None:
    with SharedState() as state:
        server = startServer(config(state))
        channel = f"{namespace}:{protocol}-{uuid.uuid4().hex[:8]}"
        events = run(node, [server], state, protocol, channel, "main")
        assertMain(events, state, protocol, channel)
        assertCleanLog(server)


@pytest.mark.parametrize("protocol", ["json", "protobuf"])
def test_sharedPollDeltas(node: str, startServer: Callable[..., ServerProcess], protocol: str) -> None:
    """
    The main scenario with delta: 'fossil' on every subscription, in a namespace allowing it, values of ~400 bytes:
    the SDK decodes every change to the same data (assertMain), the subscribe reply says delta, and changes of keys a
    client holds come as deltas.
    """
    with SharedState() as state:
        server = startServer(config(state))
        channel = f"polld:{protocol}-{uuid.uuid4().hex[:8]}"
        events = run(node, [server], state, protocol, channel, "main", "--delta", "--pad", "400")
        assertMain(events, state, protocol, channel)
        if protocol == "json":
            wire = by(events, "wire")
            assert all(e.get("delta") is True for e in wire if e["kind"] == "subscribe")
            # b's k1 changes (2 and 3) and k2's change (2) come as deltas against what b holds.
            assert len([e for e in wire if e["who"] == "b" and e["kind"] == "pub" and e.get("delta")]) >= 3
        assertCleanLog(server)


@pytest.mark.parametrize("protocol", ["json", "protobuf"])
def test_signatureExpiry(node: str, startServer: Callable[..., ServerProcess], protocol: str) -> None:
    """An expired signature gets 109 and a fresh one; one expiring in 2 s is refreshed when the reply's ttl ends."""
    with SharedState() as state:
        server = startServer(config(state))
        channel = f"poll:expiry-{uuid.uuid4().hex[:8]}"
        events = run(node, [server], state, protocol, channel, "expiry")
        signatures = by(events, "signature")
        assert signatures[0]["expired"] is True and len(signatures) >= 3
        errors = [e["code"] for e in by(events, "sub_error") if e["type"] == "track"]
        assert errors[:1] == [109]
        assert by(events, "tracked")[-1]["keys"] == ["k1"]
        if protocol == "json":
            replies = [e for e in by(events, "wire") if e["kind"] == "sub_refresh" and e["dir"] == "in"]
            assert replies and all(r.get("expires") is True and r.get("ttl", 0) <= 2 for r in replies)
        assertCleanLog(server)


def test_publishToEveryNode(node: str, startServer: Callable[..., ServerProcess]) -> None:
    """
    shared_poll_publish through either of two nodes on Redis reaches the SDK trackers of both when newer than what
    they have; an older version does not; a poll answering an older version than the published one changes
    nothing, a newer one gets through.
    """
    requireRedis()
    prefix = f"httpstream-sharedpoll-{uuid.uuid4().hex[:12]}"
    redis = {"engine": "redis", "redis_address": f"{REDIS_HOST}:{REDIS_PORT}", "redis_db": REDIS_DB,
             "redis_prefix": prefix}
    with SharedState() as state:
        first = startServer(config(state, **redis), name="one")
        second = startServer(config(state, **redis), name="two")
        channel = f"poll:publish-{uuid.uuid4().hex[:8]}"
        events = run(node, [first, second], state, "json", channel, "publish")
        for who in ("a", "b"):
            assert versions(events, who, "k1") == ["k1-1", "k1-pub5", "k1-pub6", "k1-7"], of(events, who, "update")
        assertCleanLog(first)
        assertCleanLog(second)


def test_twoNodesOnRedis(node: str, startServer: Callable[..., ServerProcess]) -> None:
    """Clients of two nodes (Redis engine) track the same keys: each node polls for its own, both get changes."""
    requireRedis()
    prefix = f"httpstream-sharedpoll-{uuid.uuid4().hex[:12]}"
    redis = {"engine": "redis", "redis_address": f"{REDIS_HOST}:{REDIS_PORT}", "redis_db": REDIS_DB,
             "redis_prefix": prefix}
    try:
        with SharedState() as state:
            first = startServer(config(state, **redis), name="one")
            second = startServer(config(state, **redis), name="two")
            channel = f"poll:cluster-{uuid.uuid4().hex[:8]}"
            events = run(node, [first, second], state, "protobuf", channel, "main")
            assertMain(events, state, "protobuf", channel)
            assertCleanLog(first)
            assertCleanLog(second)
    finally:
        cli = ["redis-cli", "-h", REDIS_HOST, "-p", str(REDIS_PORT), "-n", str(REDIS_DB)]
        keys = subprocess.run(cli + ["--scan", "--pattern", f"{prefix}.*"], capture_output=True, text=True).stdout
        if keys.split():
            subprocess.run(cli + ["DEL", *keys.split()], capture_output=True, check=False)
