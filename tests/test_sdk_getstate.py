"""
The official JS SDK's C{getState} subscription option (npm ``centrifuge`` 5.8, pinned in tests/sdk/package.json)
against a real server process over WebSocket, with the JSON and the Protobuf build, on the memory and the Redis
engine.

The SDK subscribes with the reject unrecovered flag: when the stream lost what the client missed (trimmed by
history_size, removed by the server API's history_remove, or the whole stream gone with its epoch after
history_meta_ttl), the server answers the subscribe with error 112 instead of C{recovered: false}, and the SDK asks
the application for its state again and subscribes from the position that returns. tests/sdk/getstate.mjs plays the
application (a database of what it published, getState reading the stream's top before its snapshot); these tests
check that every value published is either in a snapshot or received, none twice, and what went over the wire.
"""

from __future__ import annotations

import subprocess
import uuid
from typing import Any, Callable

import pytest

from tests.engines.test_engine_redis import REDIS_DB, REDIS_HOST, REDIS_PORT, requireRedis
from tests.serverprocess import ServerProcess
from tests.test_sdk_http_stream import SDK, assertCleanLog, by, explain, node, of, parseEvents

__all__ = ["node"]  # the fixture, imported so pytest finds it here

SCRIPT = SDK / "getstate.mjs"
API_KEY = "getstate-api-key"
Events = list[dict[str, Any]]

_CHANNEL = {"allow_subscribe_for_client": True, "allow_subscribe_for_anonymous": True, "force_recovery": True}

CONFIG: dict[str, Any] = {
    "api_key": API_KEY,
    "namespaces": [
        # Shorter than what a client misses in the "trim" case.
        {"name": "gs", **_CHANNEL, "history_size": 3, "history_ttl": "300s"},
        # A stream nobody touches for a second is gone, with its epoch.
        {"name": "gsexpire", **_CHANNEL, "history_size": 10, "history_ttl": "1s", "history_meta_ttl": "1s"},
    ],
}

# How the stream loses what the client missed: (namespace, script options).
LOSSES: dict[str, tuple[str, dict[str, Any]]] = {
    "trim": ("gs", {"before": 2, "missed": 5}),
    "remove": ("gs", {"before": 2, "missed": 2}),
    "expire": ("gsexpire", {"before": 2, "missed": 2, "wait": 2.5}),
}


def run(node: str, server: ServerProcess, protocol: str, lose: str) -> Events:
    namespace, options = LOSSES[lose]
    arguments = [
        node, str(SCRIPT), "--url", server.url, "--protocol", protocol, "--apikey", API_KEY,
        "--channel", f"{namespace}:{protocol}-{lose}", "--lose", lose,
    ]
    for name, value in options.items():
        arguments += [f"--{name}", str(value)]
    result = subprocess.run(arguments, check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, explain(server, result.stdout, result.stderr)
    return parseEvents(result.stdout)


def assertReloaded(events: Events, lose: str) -> None:
    """
    getState ran twice: once for the first subscribe, once after the server answered the recovering subscribe with
    112; both subscribes then recovered from the position getState returned, and nothing was lost or doubled.
    """
    _, options = LOSSES[lose]
    before, missed = options["before"], options["missed"]
    first, second = of(events, "s", "get_state")
    assert (first["offset"], first["state"]) == (0, [])
    (lost,) = [event for event in by(events, "checkpoint") if event["name"] == "lost"]
    assert second["state"] == lost["database"] == list(range(1, before + missed + 1))
    if lose == "expire":
        assert (second["offset"], second["epoch"] != first["epoch"]) == (0, True)
    else:
        assert (second["offset"], second["epoch"]) == (before + missed, first["epoch"])

    subscribed = of(events, "s", "subscribed")
    assert [(e["wasRecovering"], e["recovered"]) for e in subscribed] == [(True, True), (True, True)]
    assert subscribed[1]["streamPosition"]["epoch"] == second["epoch"]

    # The wire: every subscribe carries the SDK's flags (compaction 1, reject unrecovered 2); exactly one was
    # answered with 112, and it was a subscribe.
    wire = of(events, "s", "wire")
    subscribes = {e["id"]: e for e in wire if e["kind"] == "subscribe"}
    assert len(subscribes) == 3 and {e["flag"] for e in subscribes.values()} == {3}
    errors = [e for e in wire if e["kind"] == "error"]
    assert [e["code"] for e in errors] == [112] and errors[0]["id"] in subscribes

    # Received: the first ones live; after the reload only what the snapshot could not hold, in order: the
    # value published during getState (recovered by the subscribe) and the last one (live).
    received = [event["data"]["n"] for event in of(events, "s", "publication")]
    last = before + missed + 2
    assert received == [*range(1, before + 1), last - 1, last]
    (summary,) = of(events, "s", "summary")
    assert summary["database"] == list(range(1, last + 1))
    assert sorted(set(summary["loaded"]) | set(received)) == summary["database"]
    assert not of(events, "s", "sub_error") and not of(events, "s", "error")


@pytest.mark.parametrize("lose", list(LOSSES))
@pytest.mark.parametrize("protocol", ["json", "protobuf"])
def test_getStateAfterUnrecoverablePosition(
    node: str, startServer: Callable[..., ServerProcess], protocol: str, lose: str
) -> None:
    """The memory engine: each way of losing the missed publications ends in 112 and a reload, nothing lost."""
    server = startServer(CONFIG)
    assertReloaded(run(node, server, protocol, lose), lose)
    assertCleanLog(server)


@pytest.mark.parametrize("lose", list(LOSSES))
def test_getStateAfterUnrecoverablePositionRedis(
    node: str, startServer: Callable[..., ServerProcess], lose: str
) -> None:
    """The same on the Redis engine (Redis on 127.0.0.1:6379, a key prefix of its own, deleted afterwards)."""
    requireRedis()
    prefix = f"httpstream-getstate-{uuid.uuid4().hex[:12]}"
    server = startServer({**CONFIG, "engine": "redis", "redis_address": f"{REDIS_HOST}:{REDIS_PORT}",
                          "redis_db": REDIS_DB, "redis_prefix": prefix})
    try:
        assertReloaded(run(node, server, "protobuf", lose), lose)
        assertCleanLog(server)
    finally:
        server.stop()
        cli = ["redis-cli", "-h", REDIS_HOST, "-p", str(REDIS_PORT), "-n", str(REDIS_DB)]
        keys = subprocess.run(cli + ["--scan", "--pattern", f"{prefix}.*"], capture_output=True, text=True).stdout
        if keys.split():
            subprocess.run(cli + ["DEL", *keys.split()], capture_output=True, check=False)
