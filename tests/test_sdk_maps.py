"""
Map subscriptions with the official JS SDK (npm ``centrifuge`` 5.8, pinned in tests/sdk/package.json) against a real
server process over WebSocket, with the JSON and the Protobuf build, on the memory engine: snapshots of 0, 1 and
many pages (page sizes set small here, so the SDK really pages), writes through the server API while it pages,
updates from clients and the API, recovery, the two 112 strategies, map clients presence, tags filters
(``tagsFilter``, ``setTagsFilter``). tests/test_sdk_maps_redis.py runs the same on Redis with two nodes. tests/sdk/maps.mjs plays
each scenario and checks the SDK's map against the model of every write.
"""

from __future__ import annotations

import subprocess
from typing import Any, Callable

import pytest

from tests.serverprocess import ServerProcess
from tests.test_sdk_http_stream import SDK, assertCleanLog, by, explain, node, parseEvents

__all__ = ["node"]  # the fixture, imported so pytest finds it here

SCRIPT = SDK / "maps.mjs"
API_KEY = "maps-api-key"
Events = list[dict[str, Any]]

PAGES = {"min_page_size": 1, "max_page_size": 2, "default_page_size": 2}
WRITE = {"allow_publish_for_client": True, "allow_remove_for_client": True}
CONFIG: dict[str, Any] = {
    "api_key": API_KEY,
    "client_insecure": True,
    "namespaces": [
        {"name": "streamless", "subscription_type": "map",
         "map": {"mode": "ephemeral", "key_ttl": "60s", **PAGES, **WRITE}},
        {"name": "positioned", "subscription_type": "map", "map": {"mode": "persistent", **PAGES, **WRITE}},
        {"name": "smallstream", "subscription_type": "map",
         "map": {"mode": "persistent", "stream_size": 2, "stream_ttl": "60s"}},
        {"name": "prestest", "subscription_type": "map", "map_clients_presence_channel_prefix": "prescli:",
         "map": {"mode": "ephemeral", "key_ttl": "60s"}},
        {"name": "prescli", "subscription_type": "map_clients", "map": {"mode": "ephemeral", "key_ttl": "60s"}},
        {"name": "tagged", "subscription_type": "map", "allow_tags_filter": True,
         "map": {"mode": "persistent", **PAGES}},
    ],
}
PROTOCOLS = ["json", "protobuf"]


@pytest.fixture
def server(startServer: Callable[..., ServerProcess]) -> ServerProcess:
    return startServer(CONFIG)


def run(node: str, server: ServerProcess, protocol: str, scenario: str, channel: str, **options: Any) -> Events:
    arguments = [node, str(SCRIPT), "--url", server.url, "--protocol", protocol, "--apikey", API_KEY,
                 "--scenario", scenario, "--channel", f"{channel}-{protocol}"]
    for name, value in options.items():
        arguments += [f"--{name}", str(value)]
    result = subprocess.run(arguments, check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, explain(server, result.stdout, result.stderr)
    return parseEvents(result.stdout)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("namespace", ["positioned", "streamless"])
@pytest.mark.parametrize("keys", [0, 1, 7])
def test_snapshot(node: str, server: ServerProcess, protocol: str, namespace: str, keys: int) -> None:
    """The sync holds exactly the keys written (the script checks); 7 keys at 2 a page take 4 subscribe frames."""
    events = run(node, server, protocol, "snapshot", f"{namespace}:snap{keys}", keys=keys)
    (sync,) = by(events, "sync")
    assert len(sync["keys"]) == keys
    (wire,) = by(events, "wire")
    assert wire["frames"] == max(1, -(-keys // 2))
    assertCleanLog(server)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("namespace", ["positioned", "streamless"])
def test_writesWhilePaging(node: str, server: ServerProcess, protocol: str, namespace: str) -> None:
    """Sets, updates and removals through the server API between the SDK's pages: nothing lost, nothing twice."""
    events = run(node, server, protocol, "during", f"{namespace}:during", keys=9)
    (wire,) = by(events, "wire")
    assert wire["frames"] >= 5
    assert by(events, "result")
    assertCleanLog(server)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_updates(node: str, server: ServerProcess, protocol: str) -> None:
    run(node, server, protocol, "updates", "positioned:updates")
    assertCleanLog(server)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_recovery(node: str, server: ServerProcess, protocol: str) -> None:
    events = run(node, server, protocol, "recover", "positioned:recover")
    assert [(e["recovered"], e["wasRecovering"]) for e in by(events, "subscribed")] == [(False, False), (True, True)]
    assert len(by(events, "sync")) == 1
    assertCleanLog(server)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_fromScratch(node: str, server: ServerProcess, protocol: str) -> None:
    events = run(node, server, protocol, "scratch", "smallstream:scratch")
    syncs = by(events, "sync")
    assert len(syncs) == 2 and len(syncs[1]["keys"]) == 8
    assert [e["recovered"] for e in by(events, "subscribed")] == [False, False]
    assertCleanLog(server)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_fatal(node: str, server: ServerProcess, protocol: str) -> None:
    events = run(node, server, protocol, "fatal", "smallstream:fatal")
    assert [e["code"] for e in by(events, "unsubscribed")][-1] == 112
    assertCleanLog(server)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_clientsPresence(node: str, server: ServerProcess, protocol: str) -> None:
    events = run(node, server, protocol, "presence", "prestest:room")
    (sync,) = [e for e in by(events, "sync") if e["who"] == "w"]
    assert sync["keys"] == []
    assertCleanLog(server)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_tagsFilter(node: str, server: ServerProcess, protocol: str) -> None:
    """Only the eng keys synced and followed; setTagsFilter then subscribe: a full sync of the sales keys."""
    events = run(node, server, protocol, "tags", "tagged:tags")
    assert [len(e["keys"]) for e in by(events, "sync")] == [2, 4]
    assert [e["recovered"] for e in by(events, "subscribed")] == [False, False]
    assertCleanLog(server)
