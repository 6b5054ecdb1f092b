"""
Two real ``twistd httpstream`` processes ("A" and "B") with ``"engine": "redis"`` on the same Redis and prefix form
one cluster: what an application behind a load balancer relies on, seen through the official JS SDK on transport
http_stream (tests/sdk/cluster.mjs, tests/sdk/api_subscriber.mjs) and the server API.

- a client's emulation POSTs may land on the other node than its stream, and are forwarded to it;
- publications, presence (with join/leave) and history are shared, so a client that reconnects to the other node
  recovers what it missed;
- the server API's user methods (disconnect, unsubscribe, subscribe) sent to one node reach the user's connections
  on the other; ``info`` lists every node, ``channels`` counts the subscribers of every node;
- an emulation POST naming a node that is not in the cluster is answered 404.

They need Redis on 127.0.0.1:6379 (``make test`` and CI start it; by hand: ``scripts/ensure-redis``). Each test
forms its own cluster, with a Redis prefix of its own (``httpstream-test-<hex>``) in database 9, and deletes the
keys under that prefix afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.serverprocess import ServerProcess
from tests.engines.test_engine_redis import REDIS_HOST, REDIS_PORT, requireRedis
from tests.test_sdk_http_stream import (  # noqa: F401  (node: a fixture)
    PAYLOADS,
    PROTOCOLS,
    Events,
    ScenarioProcess,
    by,
    node,
    of,
    parseEvents,
    token,
)

SDK = Path(__file__).parent.parent / "sdk"
SCRIPT = SDK / "cluster.mjs"
SUBSCRIBER = SDK / "api_subscriber.mjs"

REDIS_DB = 9
KEY = "cluster-test-api-key"

# "room:" channels: everything the cluster shares (presence with join/leave, history, recovery), open to anyone.
ROOM: dict[str, Any] = {
    "name": "room",
    "presence": True,
    "join_leave": True,
    "history_size": 10,
    "history_ttl": "300s",
    "force_recovery": True,
    **{
        key: True
        for key in (
            "allow_subscribe_for_client",
            "allow_subscribe_for_anonymous",
            "allow_publish_for_client",
            "allow_publish_for_anonymous",
            "allow_presence_for_client",
            "allow_history_for_client",
            "allow_presence_for_anonymous",
            "allow_history_for_anonymous",
        )
    },
}

FORMED_TIMEOUT = 10.0


def deleteKeys(prefix: str) -> None:
    """Delete every key under C{prefix} in L{REDIS_DB} (what the test's cluster left: history, presence)."""
    cli = ["redis-cli", "-h", REDIS_HOST, "-p", str(REDIS_PORT), "-n", str(REDIS_DB)]
    found = subprocess.run(cli + ["--scan", "--pattern", f"{prefix}.*"], capture_output=True, text=True, check=True)
    keys = found.stdout.split()
    for start in range(0, len(keys), 500):
        subprocess.run(cli + ["DEL", *keys[start:start + 500]], capture_output=True, check=True)


def api(server: ServerProcess, method: str, body: dict[str, Any] | None = None) -> Any:
    """Call the server API; return its result (fail on an error reply)."""
    response = requests.post(f"{server.url}/api/{method}", json=body or {}, headers={"X-API-Key": KEY}, timeout=15)
    assert response.status_code == 200, (method, response.status_code, response.text)
    reply = response.json()
    assert "error" not in reply, (method, body, reply)
    return reply["result"]


def nodeNames(server: ServerProcess) -> list[str]:
    return sorted(entry["name"] for entry in api(server, "info")["nodes"])


def _ownEntry(server: ServerProcess) -> dict[str, Any]:
    """The node's own entry in its info (its counts are current; the others' are as last announced)."""
    (entry,) = [e for e in api(server, "info")["nodes"] if e["name"] == server.config["name"]]
    return entry


@dataclass
class Cluster:
    """Nodes A and B of one Redis cluster."""

    a: ServerProcess
    b: ServerProcess
    prefix: str
    # SDK processes of the test, ended before the nodes are stopped (see assertCleanLogs).
    clients: list[ScenarioProcess] = field(default_factory=list)

    @property
    def output(self) -> str:
        """Both logs (what L{ScenarioProcess} shows when an SDK script fails)."""
        return f"--- node A ---\n{self.a.output}\n--- node B ---\n{self.b.output}"

    def waitFormed(self, timeout: float = FORMED_TIMEOUT) -> None:
        """Wait until each node's info lists both nodes (they announce themselves every 3 s)."""
        deadline = time.monotonic() + timeout
        while True:
            names = [nodeNames(self.a), nodeNames(self.b)]
            if names == [["node-a", "node-b"]] * 2:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"the cluster did not form in {timeout} s: info lists {names}\n{self.output}")
            time.sleep(0.1)

    def assertCleanLogs(self) -> None:
        """
        End the SDK processes still running and wait until the nodes have let their clients go; then stop both
        nodes and check neither logged an error (an exception in a callback, a failed forward). What a node does
        when it is stopped with clients still connected is test_shutdownRemovesPresence's.
        """
        for client in self.clients:
            client.kill()
        deadline = time.monotonic() + FORMED_TIMEOUT
        for server in (self.a, self.b):
            while server.alive() and (count := _ownEntry(server)["num_clients"]) != 0:
                assert time.monotonic() < deadline, f"{server.url} still has {count} clients\n{self.output}"
                time.sleep(0.05)
        self.a.stop()
        self.b.stop()
        for server in (self.a, self.b):
            output = server.output
            for sign in ("Traceback (most recent call last)", "Unhandled error", "#critical]"):
                assert sign not in output, self.output


@pytest.fixture
def startCluster(startServer: Callable[..., ServerProcess]) -> Iterator[Callable[..., Cluster]]:
    """Start nodes A and B (their own Redis prefix; config overrides for both) and wait until they formed."""
    requireRedis()
    clusters: list[Cluster] = []

    def start(overrides: dict[str, Any] | None = None) -> Cluster:
        prefix = f"httpstream-test-{uuid.uuid4().hex[:12]}"
        config = {
            "engine": "redis",
            "redis_address": f"{REDIS_HOST}:{REDIS_PORT}",
            "redis_prefix": prefix,
            "redis_db": REDIS_DB,
            "api_key": KEY,
            "namespaces": [ROOM],
            **(overrides or {}),
        }
        with ThreadPoolExecutor(2) as pool:
            a, b = pool.map(
                lambda name: startServer({**config, "name": f"node-{name}"}, name=f"node-{name}"), ("a", "b")
            )
        cluster = Cluster(a, b, prefix)
        clusters.append(cluster)
        cluster.waitFormed()
        return cluster

    yield start
    for cluster in clusters:
        # Stopped first, so that nothing writes under the prefix once its keys are gone.
        cluster.a.stop()
        cluster.b.stop()
        deleteKeys(cluster.prefix)


@pytest.fixture
def cluster(startCluster: Callable[..., Cluster]) -> Cluster:
    return startCluster()


@pytest.fixture
def scenarios(node: str) -> Iterator[Callable[..., ScenarioProcess]]:  # noqa: F811
    """Start tests/sdk/cluster.mjs scenarios in the background (killed after the test if still running)."""
    started: list[ScenarioProcess] = []

    def start(cluster: Cluster, protocol: str, scenario: str, **options: Any) -> ScenarioProcess:
        data = PAYLOADS[protocol]
        command = [
            node, str(SCRIPT),
            "--a", cluster.a.url,
            "--b", cluster.b.url,
            "--protocol", protocol,
            "--scenario", scenario,
            "--data", data.hex() if protocol == "protobuf" else json.dumps(data),
        ]
        # The script gives up (and says so) before finish() would.
        options.setdefault("deadline", 20)
        for name, value in options.items():
            command += [f"--{name}", str(value)]
        process = ScenarioProcess(command, cluster)  # type: ignore[arg-type]  # only its .output is read
        started.append(process)
        cluster.clients.append(process)
        return process

    yield start
    for process in started:
        process.kill()


class Subscriber(ScenarioProcess):
    """One SDK client of tests/sdk/api_subscriber.mjs (stream and commands on one node), in the background."""

    clientID = ""


@pytest.fixture
def subscribers(node: str) -> Iterator[Callable[..., Subscriber]]:  # noqa: F811
    """Start api_subscriber.mjs clients (on a node, as a user, on channels); each waits until it is ready."""
    started: list[Subscriber] = []

    def start(cluster: Cluster, server: ServerProcess, user: str, *channels: str, who: str = "a") -> Subscriber:
        command = [node, str(SUBSCRIBER), "--url", server.url, "--token", token({"sub": user}), "--who", who]
        for channel in channels:
            command += ["--channel", channel]
        process = Subscriber(command, cluster)  # type: ignore[arg-type]
        started.append(process)
        cluster.clients.append(process)
        process.clientID = process.waitFor(event("connected"))["client"]
        process.waitFor(event("ready"))
        return process

    yield start
    for process in started:
        process.kill()


def event(kind: str, **fields: Any) -> Callable[[dict[str, Any]], bool]:
    """A waitFor predicate: an event of C{kind} whose fields include C{fields}."""
    return lambda e: e["event"] == kind and all(e.get(k) == v for k, v in fields.items())


def room() -> str:
    return f"room:{uuid.uuid4().hex[:8]}"


def assertAllEmulation204(events: Events) -> None:
    emulation = by(events, "emulation")
    assert emulation and all(e["status"] == 204 for e in emulation), emulation
    assert not by(events, "fetch_error") and not by(events, "error") and not by(events, "sub_error"), events


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_commandsThroughOtherNode(
    cluster: Cluster, scenarios: Callable[..., ScenarioProcess], protocol: str
) -> None:
    """
    Behind a load balancer without sticky sessions, a client's stream is on node A while every emulation POST it
    makes lands on node B: B forwards the commands to A and answers 204, so the client connects, subscribes,
    publishes and receives its own publication, with the JSON and the Protobuf protocol alike.
    """
    channel = room()
    events = scenarios(cluster, protocol, "own", channel=channel).finish()

    streams = of(events, "a", "stream")
    assert [(e["node"], e["status"]) for e in streams] == [("A", 200)], events
    assert streams[0]["contentType"] == ("application/octet-stream" if protocol == "protobuf" else "application/json")
    emulation = of(events, "a", "emulation")
    # The connect (and the subscribe with it) go in the stream's request; the publish at least is a POST, to B.
    assert emulation and {e["node"] for e in emulation} == {"B"}, events
    assertAllEmulation204(events)
    (connected,) = of(events, "a", "connected")
    assert connected["transport"] == "http_stream"
    (publication,) = of(events, "a", "publication")
    assert (publication["channel"], publication["n"]) == (channel, 1)
    assert publication["info"] == {"client": connected["client"], "user": ""}
    assert publication["offset"] == 1
    # Never dropped: the one disconnect is the script's own.
    assert [(e["code"], e["reason"]) for e in of(events, "a", "disconnected")] == [(0, "disconnect called")]
    cluster.assertCleanLogs()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_publicationsReachOtherNode(
    cluster: Cluster, scenarios: Callable[..., ScenarioProcess], protocol: str
) -> None:
    """
    A client connected to node A receives what a client connected to node B publishes in a channel, and the
    other way round, in the order published, with the publisher's client id.
    """
    channel = room()
    events = scenarios(cluster, protocol, "crossnode", channel=channel).finish()

    assert {e["node"] for e in of(events, "a", "stream") + of(events, "a", "emulation")} == {"A"}
    assert {e["node"] for e in of(events, "b", "stream") + of(events, "b", "emulation")} == {"B"}
    clients = {who: of(events, who, "connected")[0]["client"] for who in ("a", "b")}
    for who in ("a", "b"):
        received = of(events, who, "publication")
        assert [(e["n"], e["offset"]) for e in received] == [(1, 1), (2, 2)], events
        assert [e["info"]["client"] for e in received] == [clients["a"], clients["b"]]
    assertAllEmulation204(events)
    cluster.assertCleanLogs()


def test_presenceSpansNodes(cluster: Cluster, scenarios: Callable[..., ScenarioProcess], tmp_path: Path) -> None:
    """
    Presence is the cluster's: a client on A is told (join) when a client on B subscribes, and (leave) when it
    unsubscribes; the SDK's presence call on either node, and the server API's presence and presence_stats on
    either node, list the clients of both.
    """
    channel = room()
    go = tmp_path / "go"
    scenario = scenarios(cluster, "json", "presence", channel=channel, go=go)
    scenario.waitFor(event("ready"))
    events = scenario.seen()
    clients = sorted(of(events, who, "connected")[0]["client"] for who in ("a", "b"))
    for who in ("a", "b"):
        assert of(events, who, "presence") == [{"event": "presence", "who": who, "clients": clients}], events
    for server in (cluster.a, cluster.b):
        presence = api(server, "presence", {"channel": channel})["presence"]
        assert sorted(presence) == clients
        assert sorted(entry["client"] for entry in presence.values()) == clients
        assert api(server, "presence_stats", {"channel": channel})["num_clients"] == 2
    go.touch()
    events = scenario.finish()

    aID, bID = (of(events, who, "connected")[0]["client"] for who in ("a", "b"))
    joins = [e["client"] for e in of(events, "a", "join")]
    # a may also be told of its own join (Centrifugo sends it to every subscriber asking for join/leave).
    assert joins.count(bID) == 1 and set(joins) <= {aID, bID}, events
    assert [e["client"] for e in of(events, "a", "leave")] == [bID]
    assertAllEmulation204(events)
    cluster.assertCleanLogs()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_recoveryOnOtherNode(cluster: Cluster, scenarios: Callable[..., ScenarioProcess], protocol: str) -> None:
    """
    A client subscribed on node A goes away and comes back through node B (its stream; its commands now go to A):
    the same subscription recovers the publications made meanwhile (wasRecovering and recovered, every one once,
    in order, offsets following on); a new client on A told where the app left off (`since`) gets them too.
    """
    channel = room()
    events = scenarios(cluster, protocol, "recovery", channel=channel).finish()

    assert [e["node"] for e in of(events, "a", "stream")] == ["A", "B"], events
    moved = [e["event"] for e in events].index("moved")
    before, after = events[:moved], events[moved:]
    assert {e["node"] for e in of(before, "a", "emulation")} == {"B"}
    assert {e["node"] for e in of(after, "a", "emulation")} == {"A"}

    first, second = of(events, "a", "subscribed")
    assert (first["wasRecovering"], first["recovered"], first["recoverable"]) == (False, False, True)
    assert (second["wasRecovering"], second["recovered"]) == (True, True), events
    assert second["streamPosition"]["epoch"] == first["streamPosition"]["epoch"]
    assert [(e["n"], e["offset"]) for e in of(events, "a", "publication")] == [(1, 1), (2, 2), (3, 3), (4, 4)]

    (since,) = of(events, "c", "since")
    assert (since["offset"], since["epoch"]) == (1, first["streamPosition"]["epoch"])
    (subscribed,) = of(events, "c", "subscribed")
    assert (subscribed["wasRecovering"], subscribed["recovered"]) == (True, True), events
    assert [(e["n"], e["offset"]) for e in of(events, "c", "publication")] == [(2, 2), (3, 3), (4, 4)]

    # Not only in the SDK: the API's history on either node has the four publications (JSON ones: the JSON API
    # embeds a publication's data as it is, which the Protobuf client's bytes are not).
    if protocol == "json":
        for server in (cluster.a, cluster.b):
            history = api(server, "history", {"channel": channel, "limit": 10})
            assert [(p["offset"], p["data"]["n"]) for p in history["publications"]] == [(1, 1), (2, 2), (3, 3), (4, 4)]
            assert history["epoch"] == first["streamPosition"]["epoch"]
    assertAllEmulation204(events)
    cluster.assertCleanLogs()


def test_apiDisconnectReachesOtherNode(cluster: Cluster, subscribers: Callable[..., Subscriber]) -> None:
    """
    disconnect sent to node B cuts the user's connections on node A as well as on B, with the code and reason
    given (4001: the SDK reconnects; 4500: it does not), and leaves other users alone.
    """
    user, other = f"user-{uuid.uuid4().hex[:8]}", f"other-{uuid.uuid4().hex[:8]}"
    channel = room()
    onA = subscribers(cluster, cluster.a, user, channel, who="onA")
    onB = subscribers(cluster, cluster.b, user, channel, who="onB")
    bystander = subscribers(cluster, cluster.a, other, channel, who="bystander")

    api(cluster.b, "disconnect", {"user": user, "disconnect": {"code": 4001, "reason": "come back"}})
    for process in (onA, onB):
        assert process.waitFor(event("connecting", code=4001))["reason"] == "come back"
        assert process.waitFor(event("connected"))["client"] != process.clientID
        process.waitFor(event("subscribed", channel=channel))

    api(cluster.b, "disconnect", {"user": user, "disconnect": {"code": 4500, "reason": "banned"}})
    for process in (onA, onB):
        got = process.waitFor(event("disconnected"))
        assert (got["code"], got["reason"]) == (4500, "banned")
        process.finish()

    api(cluster.b, "publish", {"channel": channel, "data": {"still": "here"}})
    assert bystander.waitFor(event("publication", channel=channel))["data"] == {"still": "here"}
    assert not bystander.seen("disconnected")
    assert [e["code"] for e in bystander.seen("connecting")] == [0]
    cluster.assertCleanLogs()


def test_apiUnsubscribeAndSubscribeReachOtherNode(
    cluster: Cluster, subscribers: Callable[..., Subscriber]
) -> None:
    """
    unsubscribe sent to node B ends the user's subscription on node A (the SDK's unsubscribed, 2000 "server
    unsubscribe"); subscribe sent to B gives the user's client on A a server-side subscription it announces and
    receives publications of (published through B).
    """
    user = f"user-{uuid.uuid4().hex[:8]}"
    channel, serverSide = room(), room()
    alice = subscribers(cluster, cluster.a, user, channel, who="alice")

    api(cluster.b, "unsubscribe", {"user": user, "channel": channel})
    got = alice.waitFor(event("unsubscribed", channel=channel))
    assert (got["code"], got["reason"]) == (2000, "server unsubscribe")

    api(cluster.b, "subscribe", {"user": user, "channel": serverSide})
    alice.waitFor(event("server_subscribed", channel=serverSide))
    api(cluster.b, "publish", {"channel": serverSide, "data": {"to": "server-side"}})
    assert alice.waitFor(event("server_publication", channel=serverSide))["data"] == {"to": "server-side"}
    for server in (cluster.a, cluster.b):
        assert api(server, "presence_stats", {"channel": serverSide})["num_clients"] == 1
        assert api(server, "presence_stats", {"channel": channel})["num_clients"] == 0
    cluster.assertCleanLogs()


def test_emulationForUnknownNode404(cluster: Cluster) -> None:
    """
    An emulation POST naming a node that is not in the cluster is answered 404 (the SDK then reconnects) by
    either node, JSON or Protobuf; one naming a node of the cluster (with a session it does not have) 204.
    """
    from httpstream.protocol import client_pb2

    uids = {entry["name"]: entry["uid"] for entry in api(cluster.a, "info")["nodes"]}
    for server in (cluster.a, cluster.b):
        response = requests.post(
            f"{server.url}/emulation", json={"session": "x", "node": "no-such-node", "data": "{}"}, timeout=5
        )
        assert response.status_code == 404, response.text
        body = client_pb2.EmulationRequest(node="no-such-node", session="x", data=b"\x00").SerializeToString()
        response = requests.post(
            f"{server.url}/emulation", data=body, headers={"Content-Type": "application/octet-stream"}, timeout=5
        )
        assert response.status_code == 404, response.text
    # Known nodes: commands for an unknown session are dropped, answered 204 as ever, whether the node named is
    # the one asked or the other (which the commands are forwarded to).
    for server, name in ((cluster.a, "node-a"), (cluster.a, "node-b"), (cluster.b, "node-a")):
        response = requests.post(
            f"{server.url}/emulation", json={"session": "x", "node": uids[name], "data": "{}"}, timeout=15
        )
        assert response.status_code == 204, (name, response.status_code, response.text)
    cluster.assertCleanLogs()


def test_infoListsEveryNode(cluster: Cluster, subscribers: Callable[..., Subscriber]) -> None:
    """
    info on either node lists both nodes (each once, by uid and name) with their own counts: a client connected
    to B shows in B's entry as seen from A (within a few announcements).
    """
    for server in (cluster.a, cluster.b):
        nodes = api(server, "info")["nodes"]
        assert sorted(entry["name"] for entry in nodes) == ["node-a", "node-b"]
        assert len({entry["uid"] for entry in nodes}) == 2
        for entry in nodes:
            assert entry["version"] and entry["uptime"] >= 0
    channel = room()
    subscribers(cluster, cluster.b, "bob", channel, who="bob")

    deadline = time.monotonic() + FORMED_TIMEOUT
    while True:
        entries = {entry["name"]: entry for entry in api(cluster.a, "info")["nodes"]}
        seen = (entries["node-b"]["num_clients"], entries["node-b"]["num_users"], entries["node-b"]["num_channels"])
        if seen == (1, 1, 1):
            break
        assert time.monotonic() < deadline, f"A's info never showed B's client: {entries}"
        time.sleep(0.2)
    assert entries["node-a"]["num_clients"] == 0
    cluster.assertCleanLogs()


def test_channelsAggregatesNodes(cluster: Cluster, subscribers: Callable[..., Subscriber]) -> None:
    """channels on either node lists the channels subscribed on both, counting the subscribers of both."""
    shared, onlyB = room(), room()
    subscribers(cluster, cluster.a, "alice", shared, who="alice")
    subscribers(cluster, cluster.b, "bob", shared, onlyB, who="bob")

    for server in (cluster.a, cluster.b):
        channels = api(server, "channels")["channels"]
        assert {name: info["num_clients"] for name, info in channels.items()} == {shared: 2, onlyB: 1}, channels
    cluster.assertCleanLogs()


def test_emulationToVanishedNode500ThenForgotten(cluster: Cluster) -> None:
    """
    A node that dies without a word (SIGKILL) stays in the list until its announcements are 7 s old: an emulation
    POST naming it meanwhile is answered 500 once the forward times out, and 404 once the node is forgotten.
    """
    uids = {entry["name"]: entry["uid"] for entry in api(cluster.a, "info")["nodes"]}
    os.kill(cluster.b.pid, signal.SIGKILL)
    cluster.b.stop()
    body = {"session": "x", "node": uids["node-b"], "data": "{}"}
    started = time.monotonic()
    response = requests.post(f"{cluster.a.url}/emulation", json=body, timeout=30)
    statuses = [(response.status_code, round(time.monotonic() - started, 1))]
    if response.status_code == 404:
        pytest.fail(f"answered 404 at once: B was forgotten before its announcements were 7 s old ({statuses})")
    assert response.status_code == 500, statuses

    deadline = time.monotonic() + 15
    while True:
        response = requests.post(f"{cluster.a.url}/emulation", json=body, timeout=30)
        statuses.append((response.status_code, round(time.monotonic() - started, 1)))
        if response.status_code == 404:
            break
        assert time.monotonic() < deadline, statuses
        time.sleep(0.2)
    assert nodeNames(cluster.a) == ["node-a"]
    output = cluster.a.output
    cluster.a.stop()
    assert "Traceback (most recent call last)" not in output and "Unhandled error" not in output, output


def test_shutdownRemovesPresence(
    cluster: Cluster,
    scenarios: Callable[..., ScenarioProcess],
    subscribers: Callable[..., Subscriber],
    tmp_path: Path,
) -> None:
    """
    A node stopped (SIGTERM, as in a rolling deploy) while its clients are subscribed takes them out of the
    cluster's presence as it disconnects them (3001 shutdown): the other node's presence no longer lists them
    (instead of for up to global_presence_ttl, 60 s), and its subscribers asking for join/leave are told they left.
    """
    channel = room()
    go = tmp_path / "go"
    watcher = scenarios(cluster, "json", "watch", channel=channel, go=go)
    watcher.waitFor(event("ready"))
    bob = subscribers(cluster, cluster.b, "bob", channel, who="bob")
    watcher.waitFor(event("join", client=bob.clientID))
    aID = watcher.seen("connected")[0]["client"]
    assert sorted(api(cluster.a, "presence", {"channel": channel})["presence"]) == sorted([aID, bob.clientID])

    cluster.b.stop()
    assert bob.waitFor(event("connecting"))["code"] == 3001
    assert sorted(api(cluster.a, "presence", {"channel": channel})["presence"]) == [aID], cluster.output
    watcher.waitFor(event("leave", client=bob.clientID), timeout=5)
    go.touch()
    watcher.finish()
    cluster.assertCleanLogs()


def test_shutdownLogsNoRedisFailure(cluster: Cluster, subscribers: Callable[..., Subscriber]) -> None:
    """
    Stopping a node with subscribed clients is routine (a deploy): it disconnects them, removes their presence and
    publishes their leave messages before it closes its Redis connections, so it logs no failure about them.
    """
    channel = room()
    bob = subscribers(cluster, cluster.b, "bob", channel, who="bob")
    cluster.b.stop()
    assert bob.waitFor(event("connecting"))["code"] == 3001
    output = cluster.b.output
    for sign in ("Traceback (most recent call last)", "Unhandled error", "#critical]", "#error]", "#warn]"):
        assert sign not in output, output
    cluster.assertCleanLogs()
