"""
Fault tolerance of a real ``twistd httpstream`` process with ``"engine": "redis"`` when its Redis goes away and
comes back empty: a redis-server these tests start themselves on a free port (without persistence, so a restart
loses every stream and epoch), kill, and start again on the same port. The machine's Redis on 6379 is never used.

What must hold, as Centrifugo does it: while Redis is down every call that needs it answers an error (never a false
success), the node keeps running and keeps its clients connected; once Redis is back, the node subscribes its
channels again and tells each positioned subscriber that lost its place (unsubscribe 2500 "insufficient state":
the SDK resubscribes, and its recovery fails, ``recovered: false``), and new publications flow again.

The server log must hold no "Unhandled error" and no traceback: a call failing while Redis is down is a warning.

The SDK side is the official JS SDK over http_stream, driven by tests/sdk/redis_restart.mjs (Node 20+, see
tests/test_sdk_http_stream.py).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pytest

from tests.serverprocess import ServerProcess
from tests.test_sdk_http_stream import SDK, ScenarioProcess, node  # noqa: F401 (node: a fixture)

SCRIPT = SDK / "redis_restart.mjs"
API_KEY = "redis-restart-api-key"
NAMESPACE = "rr"

Events = list[dict[str, Any]]


# Redis of our own


class OwnRedis:
    """A redis-server on a free loopback port, without persistence, that a test kills and starts again."""

    def __init__(self, directory: Path) -> None:
        self.binary = shutil.which("redis-server")
        self.cli = shutil.which("redis-cli")
        if self.binary is None or self.cli is None:
            pytest.fail("redis-server and redis-cli must be installed: these tests start a Redis of their own")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.directory = directory
        self.process: Optional[subprocess.Popen[bytes]] = None
        # More redis-server arguments (e.g. persistence, which the defaults turn off).
        self.arguments: list[str] = []

    def start(self, timeout: float = 10.0) -> None:
        assert self.process is None
        assert self.binary is not None
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--daemonize", "no", "--dir", str(self.directory), *self.arguments],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"redis-server on port {self.port} exited with {self.process.returncode}")
            if self.ping():
                return
            time.sleep(0.05)
        self.kill()
        pytest.fail(f"redis-server on port {self.port} did not answer PING within {timeout}s")

    def ping(self) -> bool:
        assert self.cli is not None
        result = subprocess.run(
            [self.cli, "-h", "127.0.0.1", "-p", str(self.port), "ping"],
            capture_output=True, text=True, timeout=5, check=False,
        )
        return result.stdout.strip() == "PONG"

    def stop(self) -> None:
        """Stop it as an operator would (SIGTERM: a persistent Redis saves its data first)."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(30)
            self.process = None

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[OwnRedis]:
    directory = tmp_path / "redis"
    directory.mkdir()
    own = OwnRedis(directory)
    own.start()
    try:
        yield own
    finally:
        own.kill()


@pytest.fixture
def startRedisServer(
    startServer: Callable[..., ServerProcess], redis: OwnRedis
) -> Callable[[], ServerProcess]:
    """
    Start a server using C{redis}, with the recoverable namespace "rr" (history 10 for 300s, forced recovery,
    presence), once both its connections to Redis are up.
    """

    def start() -> ServerProcess:
        permissions = {
            f"allow_{action}_for_{who}": True
            for action in ("subscribe", "publish", "history", "presence")
            for who in ("client", "anonymous")
        }
        namespace = {
            "name": NAMESPACE,
            **permissions,
            "history_size": 10,
            "history_ttl": "300s",
            "force_recovery": True,
            "presence": True,
        }
        server = startServer({
            "engine": "redis",
            "redis_address": f"127.0.0.1:{redis.port}",
            "redis_prefix": f"httpstream-restart-{uuid.uuid4().hex[:12]}",
            "api_key": API_KEY,
            "namespaces": [namespace],
        })
        # The server listens before its connections to Redis are up (calls fail with 100 until then).
        waitForLog(server, lambda output: upCount(output) >= 2, "Redis connections up")
        return server

    return start


# Helpers


def api(server: ServerProcess, method: str, request: dict[str, Any], timeout: float = 15.0) -> dict[str, Any]:
    """One server API call (POST /api/METHOD, X-API-Key): the JSON body answered, with status 200."""
    call = urllib.request.Request(
        f"{server.url}/api/{method}",
        data=json.dumps(request).encode(),
        headers={"X-API-Key": API_KEY, "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(call, timeout=timeout) as response:
        assert response.status == 200
        return json.loads(response.read())


def waitForLog(server: ServerProcess, predicate: Callable[[str], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate(server.output):
            return
        assert server.alive(), f"the server exited while waiting for {what}:\n{server.output}"
        time.sleep(0.05)
    raise AssertionError(f"no {what} in the server log within {timeout}s:\n{server.output}")


def redisLost(output: str) -> bool:
    """Both of the node's connections to Redis (commands, pubsub) noticed it went away."""
    lines = output.splitlines()
    return all(any(f"Redis {link} connection to" in line and " lost " in line for line in lines)
               for link in ("commands", "pubsub"))


def refusedCount(output: str) -> int:
    """Reconnection attempts refused, as Twisted's ClientService logs them (the third retry follows two)."""
    return output.count("Scheduling retry 3 to connect")


def upCount(output: str) -> int:
    return sum("connection to redis://" in line and " is up" in line for line in output.splitlines())


def assertCleanLog(server: ServerProcess) -> None:
    """
    Stop the server: it must have stayed up all along and logged no unhandled error and no traceback (a call
    failing while Redis is down is a warning that names the outage).
    """
    assert server.alive(), f"the server process died:\n{server.output}"
    server.stop()
    output = server.output
    assert "Unhandled error" not in output, output
    assert "Traceback" not in output, output


class SDKClient(ScenarioProcess):
    """tests/sdk/redis_restart.mjs running in the background: its events as they come, commands on its stdin."""

    def __init__(self, node: str, server: ServerProcess, channel: str) -> None:  # noqa: F811
        command = [node, str(SCRIPT), "--url", server.url, "--channel", channel, "--deadline", "55"]
        super().__init__(command, server, stdin=True)

    @property
    def events(self) -> Events:
        """The events read so far (by L{expect})."""
        return self.seen()

    def expect(self, predicate: Callable[[dict[str, Any]], bool], what: str, timeout: float = 15.0) -> dict[str, Any]:
        """The next event that matches; fail at once if the script ends first."""
        return self.waitFor(predicate, timeout, what, untilEnd=True)

    def finish(self, timeout: float = 15.0) -> Events:
        """Ask the script to end; wait for it and return every event it printed."""
        self.send({"exit": True})
        return super().finish(timeout)


@pytest.fixture
def sdkClients(node: str) -> Iterator[Callable[[ServerProcess, str], SDKClient]]:  # noqa: F811
    started: list[SDKClient] = []

    def start(server: ServerProcess, channel: str) -> SDKClient:
        client = SDKClient(node, server, channel)
        started.append(client)
        return client

    yield start
    for client in started:
        client.kill()


def by(events: Events, kind: str) -> Events:
    return [event for event in events if event["event"] == kind]


def kind(name: str, **fields: Any) -> Callable[[dict[str, Any]], bool]:
    return lambda event: event["event"] == name and all(event.get(k) == v for k, v in fields.items())


# Tests


def test_sdkSubscriberLearnsItsPositionWasLostWhenRedisRestarts(
    startRedisServer: Callable[[], ServerProcess],
    redis: OwnRedis,
    sdkClients: Callable[[ServerProcess, str], SDKClient],
) -> None:
    """
    An SDK client (http_stream) subscribed to a channel with history and forced recovery receives a server API
    publication (offset 1 of epoch E). Redis is killed: a server API publish answers C{{"error": {"code": 100,
    "message": "internal server error"}}}, the client's own publish and history calls are rejected with error 100
    (temporary), the server process stays up and the client stays connected and subscribed (no connection or
    subscription event), while the node's reconnection attempts are refused and back off.

    Redis is started again, empty, on the same port: within the reconnect backoff the node resubscribes the
    channel and finds the stream's epoch changed, so the client gets unsubscribe push 2500 "insufficient state";
    the SDK reports C{subscribing} (code 2500, reason "insufficient state"), resubscribes asking to recover from
    (1, E), and reports C{subscribed} with C{wasRecovering: true, recovered: false} at the new stream's top
    (offset 0, a new epoch). A server API publication and the client's own one then reach it (offsets 1 and 2 of
    the new epoch). Nothing published while Redis was down is ever delivered, the client never disconnects, and the
    server logs no traceback.
    """
    server = startRedisServer()
    channel = f"{NAMESPACE}:news"
    client = sdkClients(server, channel)

    subscribed = client.expect(kind("subscribed"), "subscribed")
    assert subscribed["recoverable"] is True and subscribed["positioned"] is True
    assert subscribed["wasRecovering"] is False and subscribed["recovered"] is False
    assert subscribed["offset"] == 0 and subscribed["epoch"]

    published = api(server, "publish", {"channel": channel, "data": {"n": 1}})
    assert "error" not in published, published
    epoch = published["result"]["epoch"]
    assert published["result"]["offset"] == 1 and epoch
    first = client.expect(kind("publication"), "the first publication")
    assert (first["data"], first["offset"]) == ({"n": 1}, 1)

    # Redis goes away.
    redis.kill()
    waitForLog(server, redisLost, "lost connections to Redis")

    down = api(server, "publish", {"channel": channel, "data": {"n": "while down"}})
    assert down == {"error": {"code": 100, "message": "internal server error"}}
    client.send({"publish": {"n": "client while down"}})
    refused = client.expect(lambda e: e["event"].startswith("publish_"), "the client's publish answer")
    assert refused == {"event": "publish_error", "code": 100, "message": "internal server error", "temporary": True}
    client.send({"history": {}})
    refused = client.expect(lambda e: e["event"].startswith("history_"), "the client's history answer")
    assert refused == {"event": "history_error", "code": 100, "message": "internal server error", "temporary": True}
    # Let both connections' reconnection attempts be refused twice, so the node has backed off (about 0.7s).
    waitForLog(server, lambda output: refusedCount(output) >= 2, "refused reconnection attempts")
    assert server.alive(), server.output
    before = upCount(server.output)

    # Redis comes back, empty: the channel's stream and epoch are gone.
    redis.start()
    resubscribing = client.expect(kind("subscribing"), "subscribing after the restart", timeout=20)
    assert (resubscribing["code"], resubscribing["reason"]) == (2500, "insufficient state")
    resubscribed = client.expect(kind("subscribed"), "subscribed again", timeout=15)
    assert resubscribed["wasRecovering"] is True and resubscribed["recovered"] is False
    assert resubscribed["hasRecoveredPublications"] is False
    assert resubscribed["offset"] == 0 and resubscribed["epoch"] and resubscribed["epoch"] != epoch
    assert upCount(server.output) >= before + 2, server.output  # both connections came back

    published = api(server, "publish", {"channel": channel, "data": {"n": 2}})
    assert published["result"] == {"offset": 1, "epoch": resubscribed["epoch"]}, published
    after = client.expect(kind("publication"), "the publication after the restart")
    assert (after["data"], after["offset"]) == ({"n": 2}, 1)
    client.send({"publish": {"n": 3}})
    # The publication may come before the publish reply.
    client.expect(kind("publish_ok"), "the client's publish answer after the restart")
    early = [event for event in client.events if event["event"] == "publication" and event["data"] == {"n": 3}]
    (own,) = early or [client.expect(kind("publication"), "the client's own publication after the restart")]
    assert (own["data"], own["offset"]) == ({"n": 3}, 2)

    events = client.finish()
    assert [event["data"] for event in by(events, "publication")] == [{"n": 1}, {"n": 2}, {"n": 3}]
    # Subscribing: for subscribe() (0), for the lost position (2500), and for the script's own disconnect at the end
    # (1 "transport closed"); subscribed: the first time and once again.
    assert [event["code"] for event in by(events, "subscribing")] == [0, 2500, 1]
    assert len(by(events, "subscribed")) == 2
    assert not by(events, "unsubscribed") and not by(events, "sub_error") and not by(events, "error")
    # One connection all along: connecting only for connect(), disconnected only for the script's disconnect().
    assert [event["code"] for event in by(events, "connecting")] == [0]
    assert len(by(events, "connected")) == 1
    assert [event["code"] for event in by(events, "disconnected")] == [0]
    assertCleanLog(server)


def test_apiCallsNeedingRedisFailWhileItIsDown(
    startRedisServer: Callable[[], ServerProcess], redis: OwnRedis
) -> None:
    """
    While Redis is down, the server API's publish, history, presence and presence_stats answer
    C{{"error": {"code": 100, "message": "internal server error"}}}, never an empty success; once Redis is back
    (empty), they succeed again: history is empty, in a new epoch.
    """
    server = startRedisServer()
    channel = f"{NAMESPACE}:quiet"
    published = api(server, "publish", {"channel": channel, "data": {"n": 1}})
    epoch = published["result"]["epoch"]
    history = api(server, "history", {"channel": channel, "limit": 10})["result"]
    assert (history["offset"], history["epoch"], len(history["publications"])) == (1, epoch, 1)
    assert api(server, "presence", {"channel": channel}) == {"result": {"presence": {}}}

    redis.kill()
    waitForLog(server, redisLost, "lost connections to Redis")
    internal = {"error": {"code": 100, "message": "internal server error"}}
    calls: list[tuple[str, dict[str, Any]]] = [
        ("publish", {"channel": channel, "data": {"n": 2}}),
        ("history", {"channel": channel, "limit": 10}),
        ("presence", {"channel": channel}),
        ("presence_stats", {"channel": channel}),
    ]
    for method, request in calls:
        assert api(server, method, request) == internal, method
    assert server.alive(), server.output

    before = upCount(server.output)
    redis.start()
    waitForLog(server, lambda output: upCount(output) >= before + 2, "Redis connections up again", timeout=20)
    history = api(server, "history", {"channel": channel, "limit": 10})["result"]
    assert history["offset"] == 0 and history["epoch"] != epoch
    assert not history.get("publications")
    assert api(server, "presence", {"channel": channel}) == {"result": {"presence": {}}}
    assert api(server, "publish", {"channel": channel, "data": {"n": 3}})["result"]["offset"] == 1
    assertCleanLog(server)


def test_sdkSubscribeWhileRedisIsDownSucceedsOnceItIsBack(
    startRedisServer: Callable[[], ServerProcess],
    redis: OwnRedis,
    sdkClients: Callable[[ServerProcess, str], SDKClient],
) -> None:
    """
    An SDK client that connects while Redis is down connects (connecting needs no Redis), but its subscribe is
    rejected with the temporary error 100, which the SDK reports (C{sub_error}) and retries with backoff. Once Redis
    is back, a retry succeeds (not recovering: the client had no position) and publications reach it.
    """
    server = startRedisServer()
    redis.kill()
    waitForLog(server, redisLost, "lost connections to Redis")
    channel = f"{NAMESPACE}:later"
    client = sdkClients(server, channel)
    client.expect(kind("connected"), "connected")
    for attempt in range(2):
        error = client.expect(kind("sub_error"), f"subscribe error {attempt + 1}")
        assert error["error"] == {"code": 100, "message": "internal server error", "temporary": True}

    redis.start()
    subscribed = client.expect(kind("subscribed"), "subscribed once Redis is back", timeout=20)
    assert subscribed["wasRecovering"] is False and subscribed["offset"] == 0 and subscribed["epoch"]
    published = api(server, "publish", {"channel": channel, "data": {"n": 1}})
    assert published["result"] == {"offset": 1, "epoch": subscribed["epoch"]}, published
    publication = client.expect(kind("publication"), "the publication")
    assert (publication["data"], publication["offset"]) == ({"n": 1}, 1)

    events = client.finish()
    assert len(by(events, "subscribed")) == 1 and not by(events, "unsubscribed")
    assert all(event["error"]["code"] == 100 for event in by(events, "sub_error"))
    assert len(by(events, "connected")) == 1
    assertCleanLog(server)


def test_pubsubReconnectKeepsIntactPositions(
    startRedisServer: Callable[[], ServerProcess],
    redis: OwnRedis,
    sdkClients: Callable[[ServerProcess, str], SDKClient],
) -> None:
    """
    Redis drops the node's PUB/SUB connection (C{CLIENT KILL TYPE pubsub}) but keeps its data: the node reconnects,
    subscribes its channels again and checks positions, which are intact (same epoch and top), so the subscribed
    SDK client is told nothing (no 2500, no resubscribe) and keeps receiving publications in order.
    """
    server = startRedisServer()
    channel = f"{NAMESPACE}:steady"
    client = sdkClients(server, channel)
    subscribed = client.expect(kind("subscribed"), "subscribed")
    api(server, "publish", {"channel": channel, "data": {"n": 1}})
    client.expect(kind("publication", data={"n": 1}), "the first publication")

    assert redis.cli is not None
    killed = subprocess.run(
        [redis.cli, "-h", "127.0.0.1", "-p", str(redis.port), "CLIENT", "KILL", "TYPE", "pubsub"],
        capture_output=True, text=True, timeout=5, check=True,
    )
    assert killed.stdout.strip() == "1", killed.stdout  # the node's one PUB/SUB connection
    waitForLog(server, lambda output: "subscribed" in output and "channels again" in output, "the resubscription")
    time.sleep(0.5)  # the position check after the resubscription reads history: let it finish

    published = api(server, "publish", {"channel": channel, "data": {"n": 2}})
    assert published["result"] == {"offset": 2, "epoch": subscribed["epoch"]}, published
    publication = client.expect(kind("publication"), "the publication after the reconnection")
    assert (publication["data"], publication["offset"]) == ({"n": 2}, 2)

    events = client.finish()
    assert [event["data"] for event in by(events, "publication")] == [{"n": 1}, {"n": 2}]
    assert [event["code"] for event in by(events, "subscribing")] == [0, 1]  # subscribe(), then the final disconnect
    assert len(by(events, "subscribed")) == 1
    assertCleanLog(server)
