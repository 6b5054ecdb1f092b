"""
A real ``twistd httpstream`` process on Redis shards and on a Redis Cluster, both started by the tests: a
WebSocket subscriber per channel receives, through the server, the publications the server API makes, with
channels on every shard (checked through the keys in each Redis). One shard killed: its channels' publications
fail with error 100 while the other's keep flowing; started again, its channels work again.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from httpstream.engines.redis.routing import keyName
from httpstream.engines.redis.sharding import consistentIndex
from httpstream.engines.redis.slots import keySlot
from tests.engines.redisclusterprocess import OwnCluster
from tests.serverprocess import ServerProcess
from tests.test_redis_restart import API_KEY, OwnRedis, api, waitForLog
from tests.wsclient import TEXT, WebSocket


class Subscriber:
    """A JSON-protocol WebSocket client subscribed to one channel; L{received} reads its publications' data."""

    def __init__(self, port: int, channel: str) -> None:
        self.channel = channel
        self.ws = WebSocket(port, timeout=0.5)
        assert self.ws.status == 101
        self.ws.send(json.dumps({"id": 1, "connect": {}}).encode() + b"\n"
                     + json.dumps({"id": 2, "subscribe": {"channel": channel}}).encode())
        self.data: list[Any] = []
        deadline = time.monotonic() + 10
        while not self._subscribed:
            assert time.monotonic() < deadline, f"no subscribe reply for {channel}"
            self._read()

    _subscribed = False

    def _read(self) -> None:
        try:
            frame = self.ws.recv()
        except socket.timeout:
            return
        if frame.opcode != TEXT:
            return
        for line in frame.payload.split(b"\n"):
            message = json.loads(line)
            if message.get("id") == 2:
                assert "error" not in message, message
                self._subscribed = True
            publication = message.get("push", {}).get("pub")
            if publication is not None:
                self.data.append(publication["data"])

    def waitFor(self, data: Any, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while data not in self.data:
            if time.monotonic() > deadline:
                return False
            self._read()
        return True

    def close(self) -> None:
        self.ws.close()


def publish(server: ServerProcess, channel: str, data: Any) -> dict[str, Any]:
    return api(server, "publish", {"channel": channel, "data": data})


def channelsOnShards(count: int) -> list[str]:
    found: dict[int, str] = {}
    for i in range(1000):
        found.setdefault(consistentIndex(f"room{i}", count), f"room{i}")
    return [found[index] for index in range(count)]


CONFIG = {
    "engine": "redis",
    "api_key": API_KEY,
    "history_size": 10,
    "history_ttl": "300s",
}


@pytest.fixture
def shards(tmp_path: Path) -> Iterator[list[OwnRedis]]:
    started = []
    for index in range(2):
        directory = tmp_path / f"redis{index}"
        directory.mkdir()
        redis = OwnRedis(directory)
        redis.start()
        started.append(redis)
    yield started
    for redis in started:
        redis.kill()


def keys(redis: OwnRedis, prefix: str) -> list[str]:
    assert redis.cli is not None
    output = subprocess.run([redis.cli, "-p", str(redis.port), "KEYS", f"{prefix}.*"], capture_output=True, text=True)
    return sorted(output.stdout.split())


def test_shards(startServer: Callable[..., ServerProcess], shards: list[OwnRedis]) -> None:
    prefix = f"httpstream-shards-{uuid.uuid4().hex[:8]}"
    server = startServer({**CONFIG, "redis_prefix": prefix,
                          "redis_address": [f"127.0.0.1:{redis.port}" for redis in shards]})
    server.waitForPort()
    channels = channelsOnShards(2)
    subscribers = [Subscriber(server.waitForPort(), channel) for channel in channels]
    try:
        for index, channel in enumerate(channels):
            assert "error" not in publish(server, channel, {"n": 1})
            assert subscribers[index].waitFor({"n": 1})
            assert keys(shards[index], prefix) == [f"{prefix}.history.meta.{channel}", f"{prefix}.history.stream.{channel}"]

        shards[1].kill()
        waitForLog(server, lambda output: "connection to redis://127.0.0.1:%d/0 lost" % shards[1].port in output,
                   "shard 1 lost")
        assert publish(server, channels[1], {"n": 2})["error"]["code"] == 100
        assert "error" not in publish(server, channels[0], {"n": 2})
        assert subscribers[0].waitFor({"n": 2})

        shards[1].start()
        # Publications go through once the command connection is back; the subscriber hears them once the
        # PUB/SUB connection has subscribed its channel again.
        deadline, n = time.monotonic() + 20, 3
        while True:
            assert time.monotonic() < deadline, server.output
            reply = publish(server, channels[1], {"n": n})
            if "error" not in reply and subscribers[1].waitFor({"n": n}, timeout=0.5):
                break
            n += 1
        assert "Traceback" not in server.output
    finally:
        for subscriber in subscribers:
            subscriber.close()


@pytest.fixture
def cluster() -> Iterator[OwnCluster]:
    own = OwnCluster(3)
    try:
        own.start()
        yield own
    finally:
        own.stop()


def test_cluster(startServer: Callable[..., ServerProcess], cluster: OwnCluster) -> None:
    prefix = f"httpstream-cluster-{uuid.uuid4().hex[:8]}"
    server = startServer({**CONFIG, "redis_prefix": prefix,
                          "redis_cluster_address": [f"127.0.0.1:{cluster.ports[0]}"]})
    port = server.waitForPort()
    # A channel in a slot of each master.
    channels: dict[int, str] = {}
    for i in range(10000):
        owner = cluster.ownerOf(keySlot(keyName(prefix, "client", f"room{i}", True)))
        assert owner is not None
        channels.setdefault(owner, f"room{i}")
        if len(channels) == 3:
            break
    subscribers = {owner: Subscriber(port, channel) for owner, channel in channels.items()}
    try:
        for owner, channel in channels.items():
            assert "error" not in publish(server, channel, {"on": owner})
            assert subscribers[owner].waitFor({"on": owner})
            history = api(server, "history", {"channel": channel, "limit": 10})
            assert [p["data"] for p in history["result"]["publications"]] == [{"on": owner}]
            assert f"{prefix}.history.stream.{{{channel}}}" in cluster.cli(owner, "KEYS", f"{prefix}.*").split()
        assert "Traceback" not in server.output
    finally:
        for subscriber in subscribers.values():
            subscriber.close()
