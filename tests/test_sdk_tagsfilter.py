"""
The official JS SDK's publication tags filters (npm ``centrifuge`` 5.8: the ``tagsFilter`` subscription option and
``setTagsFilter``) against real server processes over WebSocket, with the JSON and the Protobuf build: on the memory
engine, and on Redis with two nodes (the subscriber on one, the publications through the other's server API).

tests/sdk/tagsfilter.mjs subscribes with a filter, publishes tagged publications (``publish`` and ``broadcast``),
changes the filter between an unsubscribe and a subscribe, and tries a malformed filter and a filter in a namespace
without ``allow_tags_filter``; these tests check what arrived, in what order, and that the refusals were
subscription errors (107), not disconnects.
"""

from __future__ import annotations

import subprocess
import uuid
from typing import Any, Callable

import pytest

from tests.engines.test_engine_redis import REDIS_DB, REDIS_HOST, REDIS_PORT, requireRedis
from tests.serverprocess import ServerProcess
from tests.test_sdk_http_stream import SDK, assertCleanLog, by, explain, node, parseEvents

__all__ = ["node"]  # the fixture, imported so pytest finds it here

SCRIPT = SDK / "tagsfilter.mjs"
API_KEY = "tagsfilter-api-key"
Events = list[dict[str, Any]]

_OPEN = {"allow_subscribe_for_client": True, "allow_subscribe_for_anonymous": True}
CONFIG: dict[str, Any] = {
    "api_key": API_KEY,
    "namespaces": [
        {"name": "tagged", **_OPEN, "allow_tags_filter": True, "history_size": 20, "history_ttl": "300s",
         "force_recovery": True},
        {"name": "plain", **_OPEN},
    ],
}


def run(node: str, server: ServerProcess, protocol: str, api: ServerProcess | None = None) -> Events:
    channel = f"tagged:{protocol}-{uuid.uuid4().hex[:8]}"
    arguments = [
        node, str(SCRIPT), "--url", server.url, "--apiurl", (api or server).url, "--protocol", protocol,
        "--apikey", API_KEY, "--channel", channel, "--unfiltered", "plain:x",
    ]
    result = subprocess.run(arguments, check=False, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, explain(server, result.stdout, result.stderr)
    return parseEvents(result.stdout)


def assertFiltered(events: Events) -> None:
    received = {}
    for event in by(events, "publication"):
        received.setdefault(event["sub"], []).append(event["n"])
    # Only the matching ones, in order; the first filter's, then the second's.
    assert received == {"eng": [1, 4, 6, 8, 9, 12, 14]}, events
    tags = {event["n"]: event["tags"] for event in by(events, "publication")}
    assert tags[1] == {"team": "eng"} and tags[12] == {"team": "sales", "prio": "2"}
    # The refused filters: the subscriptions ended with 107, the connection stayed.
    ended = {event["sub"]: event["code"] for event in by(events, "unsubscribed") if event["sub"] != "eng"}
    assert ended == {"bad": 107, "not_allowed": 107}, events
    assert by(events, "disconnected") == [] or all(e["code"] == 0 for e in by(events, "disconnected")), events
    assert [e["sub"] for e in by(events, "subscribed")] == ["eng", "eng"]


@pytest.mark.parametrize("protocol", ["json", "protobuf"])
def test_tagsFilter(node: str, startServer: Callable[..., ServerProcess], protocol: str) -> None:
    """The memory engine."""
    server = startServer(CONFIG)
    assertFiltered(run(node, server, protocol))
    assertCleanLog(server)


@pytest.mark.parametrize("protocol", ["json", "protobuf"])
def test_tagsFilterRedisTwoNodes(node: str, startServer: Callable[..., ServerProcess], protocol: str) -> None:
    """
    Redis, two nodes: the subscriber on node 1, every publication (with its tags) through node 2's server API.
    Redis on 127.0.0.1:6379, a key prefix of its own, deleted afterwards.
    """
    requireRedis()
    prefix = f"httpstream-tagsfilter-{uuid.uuid4().hex[:12]}"
    config = {**CONFIG, "engine": "redis", "redis_address": f"{REDIS_HOST}:{REDIS_PORT}", "redis_db": REDIS_DB,
              "redis_prefix": prefix}
    one = startServer({**config, "name": "node-1"}, name="node-1")
    two = startServer({**config, "name": "node-2"}, name="node-2")
    try:
        assertFiltered(run(node, one, protocol, api=two))
        assertCleanLog(one)
        assertCleanLog(two)
    finally:
        one.stop()
        two.stop()
        cli = ["redis-cli", "-h", REDIS_HOST, "-p", str(REDIS_PORT), "-n", str(REDIS_DB)]
        keys = subprocess.run(cli + ["--scan", "--pattern", f"{prefix}.*"], capture_output=True, text=True).stdout
        if keys.split():
            subprocess.run(cli + ["DEL", *keys.split()], capture_output=True, check=False)
