"""
Map subscriptions with the official JS SDK (tests/sdk/maps.mjs, as tests/test_sdk_maps.py) on the Redis engine with
two server processes: the subscribers on node 1, every server API write through node 2, and the writing client and
the presence member connected to node 2. Snapshots of many pages, writes while paging, updates, removals, recovery
after a reconnect, the two 112 strategies, map clients presence and tags filters: every write crosses Redis.

Then a Redis of the test's own, restarted empty under a synced subscriber: no write comes, and yet the node's
position check (forced by the map broker's PUB/SUB reconnect) unsubscribes it with 2500, and the SDK syncs again.

Redis on 127.0.0.1:6379 (a key prefix of each test's own, deleted afterwards) and a redis-server started here.
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.engines.test_engine_redis import REDIS_DB, REDIS_HOST, REDIS_PORT, requireRedis
from tests.serverprocess import ServerProcess
from tests.test_redis_restart import OwnRedis, upCount, waitForLog
from tests.test_sdk_http_stream import ScenarioProcess, assertCleanLog, by, node
from tests.test_sdk_maps import API_KEY, CONFIG, PROTOCOLS, SCRIPT, Events, run

__all__ = ["node"]  # the fixture, imported so pytest finds it here


def deleteKeys(prefix: str) -> None:
    cli = ["redis-cli", "-h", REDIS_HOST, "-p", str(REDIS_PORT), "-n", str(REDIS_DB)]
    keys = subprocess.run(cli + ["--scan", "--pattern", f"{prefix}.*"], capture_output=True, text=True).stdout
    if keys.split():
        subprocess.run(cli + ["DEL", *keys.split()], capture_output=True, check=False)


@pytest.fixture
def nodes(startServer: Callable[..., ServerProcess]) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    requireRedis()
    prefix = f"httpstream-maps-{uuid.uuid4().hex[:12]}"
    config = {**CONFIG, "engine": "redis", "redis_address": f"{REDIS_HOST}:{REDIS_PORT}", "redis_db": REDIS_DB,
              "redis_prefix": prefix}
    one = startServer({**config, "name": "node-1"}, name="node-1")
    two = startServer({**config, "name": "node-2"}, name="node-2")
    for server in (one, two):
        waitForLog(server, lambda output: upCount(output) >= 2, "Redis connections up")
    try:
        yield one, two
    finally:
        one.stop()
        two.stop()
        deleteKeys(prefix)


def across(node: str, nodes: tuple[ServerProcess, ServerProcess], protocol: str, scenario: str, channel: str,
           **options: Any) -> Events:
    one, two = nodes
    events = run(node, one, protocol, scenario, channel, apiurl=two.url, writeurl=two.url, **options)
    assertCleanLog(one)
    assertCleanLog(two)
    return events


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("namespace", ["positioned", "streamless"])
def test_snapshot(node: str, nodes: tuple[ServerProcess, ServerProcess], protocol: str, namespace: str) -> None:
    """25 keys at 2 a page: 13 subscribe frames, the sync exactly the keys written."""
    events = across(node, nodes, protocol, "snapshot", f"{namespace}:snap", keys=25)
    (sync,) = by(events, "sync")
    assert len(sync["keys"]) == 25
    assert by(events, "wire")[0]["frames"] == 13


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("namespace", ["positioned", "streamless"])
def test_writesWhilePaging(node: str, nodes: tuple[ServerProcess, ServerProcess], protocol: str,
                           namespace: str) -> None:
    events = across(node, nodes, protocol, "during", f"{namespace}:during", keys=9)
    assert by(events, "wire")[0]["frames"] >= 5
    assert by(events, "result")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_updates(node: str, nodes: tuple[ServerProcess, ServerProcess], protocol: str) -> None:
    """Sets and removals from the subscriber, from a client of node 2 and from node 2's API."""
    across(node, nodes, protocol, "updates", "positioned:updates")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_recovery(node: str, nodes: tuple[ServerProcess, ServerProcess], protocol: str) -> None:
    events = across(node, nodes, protocol, "recover", "positioned:recover")
    assert [(e["recovered"], e["wasRecovering"]) for e in by(events, "subscribed")] == [(False, False), (True, True)]
    assert len(by(events, "sync")) == 1


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_fromScratch(node: str, nodes: tuple[ServerProcess, ServerProcess], protocol: str) -> None:
    events = across(node, nodes, protocol, "scratch", "smallstream:scratch")
    syncs = by(events, "sync")
    assert len(syncs) == 2 and len(syncs[1]["keys"]) == 8


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_fatal(node: str, nodes: tuple[ServerProcess, ServerProcess], protocol: str) -> None:
    events = across(node, nodes, protocol, "fatal", "smallstream:fatal")
    assert [e["code"] for e in by(events, "unsubscribed")][-1] == 112


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_clientsPresence(node: str, nodes: tuple[ServerProcess, ServerProcess], protocol: str) -> None:
    """The watcher on node 1 sees the member of node 2 come and go."""
    events = across(node, nodes, protocol, "presence", "prestest:room")
    (sync,) = [e for e in by(events, "sync") if e["who"] == "w"]
    assert sync["keys"] == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_tagsFilter(node: str, nodes: tuple[ServerProcess, ServerProcess], protocol: str) -> None:
    events = across(node, nodes, protocol, "tags", "tagged:tags")
    assert [len(e["keys"]) for e in by(events, "sync")] == [2, 4]


@pytest.fixture
def ownRedis(tmp_path: Path) -> Iterator[OwnRedis]:
    directory = tmp_path / "redis"
    directory.mkdir()
    redis = OwnRedis(directory)
    redis.start()
    try:
        yield redis
    finally:
        redis.kill()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_redisRestartedUnderASubscriber(node: str, startServer: Callable[..., ServerProcess], ownRedis: OwnRedis,
                                        protocol: str) -> None:
    server = startServer({**CONFIG, "engine": "redis", "redis_address": f"127.0.0.1:{ownRedis.port}",
                          "redis_prefix": "maps-restart"})
    waitForLog(server, lambda output: upCount(output) >= 2, "Redis connections up")
    command = [node, str(SCRIPT), "--url", server.url, "--protocol", protocol, "--apikey", API_KEY,
               "--scenario", "restart", "--channel", f"positioned:restart-{protocol}"]
    scenario = ScenarioProcess(command, server)
    scenario.waitFor(lambda e: e["event"] == "ready", what="the first sync", untilEnd=True)
    ownRedis.kill()
    ownRedis.start()
    events = scenario.finish(timeout=40)
    assert len(by(events, "sync")) == 2
    assert [e["code"] for e in by(events, "unsubscribed")] == []  # resubscribed by itself: never unsubscribed
    assertCleanLog(server)
