"""
Nothing lost through reconnects: 10,000 numbered publications to 50 recovering subscribers (the official JS SDK,
half over WebSocket, half over http_stream, in one Node process: tests/sdk/faults.mjs) whose connections the
server cuts five times each at random moments (the server API's disconnect with code 4000, after which the SDK
reconnects and recovers), on one node with the memory engine and on two nodes over Redis (subscribers spread over
both, publications through both); and on one node with every subscriber's TCP connection killed at once, five
times (``ss -K``). Every subscriber must end with every number once, in order.

The cluster test needs Redis on 127.0.0.1:6379 (database 9, a key prefix of its own, deleted afterwards), as
tests/cluster/test_cluster.py.
"""

from __future__ import annotations

import json
import random
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import pytest
import requests

from tests.serverprocess import ServerProcess
from tests.cluster.test_cluster import KEY, Cluster, startCluster  # noqa: F401  (startCluster: a fixture)
from tests.test_sdk_http_stream import SDK, ScenarioProcess, by, node, token  # noqa: F401  (node: a fixture)

SCRIPT = SDK / "faults.mjs"

# Recoverable "rec:" channels: history long enough for any gap a cut makes, and recovery of all of it.
REC: dict[str, Any] = {
    "name": "rec",
    "history_size": 10000,
    "history_ttl": "300s",
    "force_recovery": True,
    "allow_subscribe_for_client": True,
}
RECOVERY = {"client_recovery_max_publication_limit": 10000}

PUBLICATIONS = 10_000
SUBSCRIBERS = 50
CUTS = 5
CUT = {"code": 4000, "reason": "cut"}  # 4000-4499: the SDK reconnects
# The SDK events that tell how a client's connection went (faults.mjs prints them as they happen).
TIMELINE = ("connecting", "connected", "disconnected", "error", "subscribing", "subscribed", "sub_error")


class Swarm(ScenarioProcess):
    """tests/sdk/faults.mjs: many SDK clients in one Node process, each subscribed to one channel."""

    def __init__(
        self, node: str, directory: Path, clients: list[dict[str, str]], channel: str, logs: Any,  # noqa: F811
        numbers: bool = False, settle: float = 15,
    ) -> None:
        path = directory / f"clients-{uuid.uuid4().hex[:8]}.json"
        path.write_text(json.dumps(clients))
        command = [node, str(SCRIPT), "--clients", str(path), "--channel", channel, "--settle", str(settle),
                   "--deadline", "170"]
        if numbers:
            command.append("--numbers")
        super().__init__(command, logs, stdin=True)

    @property
    def pid(self) -> int:
        return self._process.pid

    def ready(self, timeout: float = 60) -> None:
        self.waitFor(lambda e: e["event"] == "ready", timeout, "ready (every client subscribed)", untilEnd=True)

    def summaries(self, expected: int, timeout: float = 90) -> dict[str, dict[str, Any]]:
        """Ask for the summaries once publication C{expected} has arrived everywhere; end the script."""
        self.send({"expect": expected})
        events = self.finish(timeout)
        summaries = {e["who"]: e for e in by(events, "summary")}
        # Each client's connection story, for the failure message of a client that went wrong.
        for event in events:
            if event["event"] in TIMELINE and event.get("who") in summaries:
                summaries[event["who"]].setdefault("timeline", []).append(
                    {k: v for k, v in event.items() if k not in ("who",)}
                )
        return summaries


@pytest.fixture
def swarms(node: str, tmp_path: Path) -> Iterator[Callable[..., Swarm]]:  # noqa: F811
    started: list[Swarm] = []

    def start(clients: list[dict[str, str]], channel: str, logs: Any, **options: Any) -> Swarm:
        swarm = Swarm(node, tmp_path, clients, channel, logs, **options)
        started.append(swarm)
        return swarm

    yield start
    for swarm in started:
        swarm.kill()


def clientSpecs(servers: Sequence[ServerProcess], count: int, prefix: str = "u") -> list[dict[str, str]]:
    """C{count} clients, each its own user, spread over C{servers} and alternating WebSocket and http_stream."""
    transports = ("websocket", "http_stream")
    return [
        {
            "who": f"{prefix}{i}",
            "url": servers[i % len(servers)].url,
            "transport": transports[(i // len(servers)) % 2],
            "token": token({"sub": f"{prefix}{i}"}),
        }
        for i in range(count)
    ]


class Publisher:
    """
    Numbered publications ({"n": N}) through the server API's batch method, one batch after the other (so the
    numbers are the order the engine stored them in), through each server in turn.

    @ivar accepted: (n, offset, epoch) of every publication the API accepted.
    @ivar refused: how many publish calls were answered an error (each retried until accepted).
    @ivar refusals: (n, seconds the call took) of each.
    """

    def __init__(self, servers: Sequence[ServerProcess], channel: str, key: str = KEY) -> None:
        self.servers = list(servers)
        self.channel = channel
        self.key = key
        self.sessions = [requests.Session() for _ in self.servers]
        self.accepted: list[tuple[int, int, str]] = []
        self.refused = 0
        self.errors: list[Any] = []
        self.refusals: list[tuple[int, float]] = []  # (n, seconds the call took) of each refused publish
        self.slowest = 0.0  # seconds, the longest publish call

    def publishBatch(self, index: int, numbers: Sequence[int], timeout: float = 30) -> list[int]:
        """Publish C{numbers} through server C{index}: the numbers not accepted (an error reply)."""
        # With an idempotency key, as an application that retries should: a retry must not publish twice.
        commands = [{"publish": {"channel": self.channel, "data": {"n": n}, "idempotency_key": f"n{n}"}}
                    for n in numbers]
        started = time.monotonic()
        response = self.sessions[index].post(
            f"{self.servers[index].url}/api/batch", json={"commands": commands},
            headers={"X-API-Key": self.key}, timeout=timeout,
        )
        took = time.monotonic() - started
        self.slowest = max(self.slowest, took)
        assert response.status_code == 200, response.text
        replies = response.json()["replies"]
        refused = []
        for n, reply in zip(numbers, replies):
            if "error" in reply:
                refused.append(n)
                self.errors.append(reply["error"])
                self.refusals.append((n, took))
            else:
                result = reply["publish"]
                self.accepted.append((n, int(result["offset"]), result["epoch"]))
        self.refused += len(refused)
        return refused

    def publishAll(
        self, total: int, duration: float, batch: int = 20, during: Optional[Callable[[int], None]] = None
    ) -> float:
        """
        Publish 1..C{total} in about C{duration} seconds, servers in turn; a refused number is published again
        (after 50 ms) before any later one. C{during(n)} is called after each batch. Returns the seconds taken.
        """
        started = time.monotonic()
        n, turn = 1, 0
        while n <= total:
            numbers = list(range(n, min(n + batch, total + 1)))
            refused = self.publishBatch(turn % len(self.servers), numbers)
            turn += 1
            n = refused[0] if refused else numbers[-1] + 1
            if refused:
                time.sleep(0.05)
            if during is not None:
                during(n - 1)
            ahead = started + duration * (n - 1) / total - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        return time.monotonic() - started


class Cutter(threading.Thread):
    """
    Runs cuts at moments of the publishing counted in publications (see L{progress}), not seconds, so a slow
    machine still cuts during the publishing. A cut returns what went wrong, or None.
    """

    def __init__(self, schedule: Sequence[tuple[int, Callable[[], Optional[str]]]]) -> None:
        super().__init__(daemon=True)
        self.schedule = sorted(schedule, key=lambda entry: entry[0])
        self.published = 0
        self.done = 0
        self.failures: list[str] = []
        self._moved = threading.Condition()

    def progress(self, published: int) -> None:
        """The publisher's callback: C{published} numbers are out."""
        with self._moved:
            self.published = published
            self._moved.notify()

    def run(self) -> None:
        for at, cut in self.schedule:
            with self._moved:
                if not self._moved.wait_for(lambda: self.published >= at, timeout=120):
                    self.failures.append(f"publishing stalled before publication {at}")
                    return
            failure = cut()
            if failure:
                self.failures.append(failure)
            self.done += 1


def moments(cuts: int, total: int, rng: random.Random) -> list[int]:
    """One moment in each of C{cuts} equal parts of C{total} publications, in its middle 40%: a client has
    reconnected before its next cut."""
    span = total / cuts
    return [int(span * (k + 0.3 + 0.4 * rng.random())) for k in range(cuts)]


def apiCuts(servers: Sequence[ServerProcess], users: Sequence[str], cuts: int, total: int,
            rng: random.Random) -> list[tuple[int, Callable[[], Optional[str]]]]:
    """Each user's connections cut C{cuts} times: the server API's disconnect (a reconnect code), to any server."""
    session = requests.Session()

    def cut(user: str, server: ServerProcess) -> Callable[[], Optional[str]]:
        def disconnect() -> Optional[str]:
            try:
                response = session.post(
                    f"{server.url}/api/disconnect", json={"user": user, "disconnect": CUT},
                    headers={"X-API-Key": KEY}, timeout=15,
                )
            except requests.RequestException as e:
                return f"{user}: {e!r}"
            if response.status_code != 200 or "error" in response.json():
                return f"{user}: {response.status_code} {response.text}"
            return None

        return disconnect

    return [(at, cut(user, rng.choice(list(servers)))) for user in users for at in moments(cuts, total, rng)]


def tcpCuts(pid: int, servers: Sequence[ServerProcess], cuts: int, total: int,
            rng: random.Random) -> list[tuple[int, Callable[[], Optional[str]]]]:
    """
    Every connection process C{pid} has to the servers killed at once, C{cuts} times (C{ss -K}: the kernel aborts
    the client's socket and resets the connection, as a NAT or load balancer that drops it).
    """
    ports = {server.port for server in servers}

    def kill() -> Optional[str]:
        listed = subprocess.run(["ss", "-tnpH", "state", "established"], capture_output=True, text=True, check=True)
        local = []
        for line in listed.stdout.splitlines():
            fields = line.split()  # Recv-Q Send-Q Local:Port Peer:Port Process
            if len(fields) >= 5 and f"pid={pid}," in line and int(fields[3].rsplit(":", 1)[1]) in ports:
                local.append(int(fields[2].rsplit(":", 1)[1]))
        if not local:
            return "no connection to kill"
        expression = " or ".join(f"sport = :{port}" for port in local)
        killed = subprocess.run(["ss", "-K", "-tnH", "state", "established", f"( {expression} )"],
                                capture_output=True, text=True)
        return None if killed.returncode == 0 else f"ss -K: {killed.stderr}"

    return [(at, kill) for at in moments(cuts, total, rng)]


def cutAndCount(
    servers: Sequence[ServerProcess], swarms: Callable[..., Swarm], logs: Any, duration: float = 15.0,
    how: str = "api",
) -> dict[str, dict[str, Any]]:
    """
    The scenario of these tests: subscribe, publish while cutting (C{how}: "api" or "tcp"), and return every
    client's summary.
    """
    channel = f"rec:{uuid.uuid4().hex[:8]}"
    specs = clientSpecs(servers, SUBSCRIBERS)
    swarm = swarms(specs, channel, logs)
    swarm.ready()
    seed = random.Random().randrange(1 << 30)
    rng = random.Random(seed)
    if how == "api":
        schedule = apiCuts(servers, [spec["who"] for spec in specs], CUTS, PUBLICATIONS, rng)
    else:
        schedule = tcpCuts(swarm.pid, servers, CUTS, PUBLICATIONS, rng)
    cutter = Cutter(schedule)
    publisher = Publisher(servers, channel)
    cutter.start()
    took = publisher.publishAll(PUBLICATIONS, duration, during=cutter.progress)
    cutter.join(30)
    summaries = swarm.summaries(PUBLICATIONS)
    print(
        f"\n{len(servers)} node(s), {how} cuts: {PUBLICATIONS} publications in {took:.1f} s (slowest batch "
        f"{publisher.slowest * 1000:.0f} ms), {cutter.done} cuts (seed {seed}), "
        f"{len(summaries)} subscribers: lost {sum(s['lost'] for s in summaries.values())}, duplicated "
        f"{sum(s['duplicated'] for s in summaries.values())}, out of order "
        f"{sum(s['outOfOrder'] for s in summaries.values())}, reconnects "
        f"{sum(s['reconnects'] for s in summaries.values())}, recoveries "
        f"{sum(s['recoveries'] for s in summaries.values())} (not recovered "
        f"{sum(s['notRecovered'] for s in summaries.values())})"
    )
    assert not cutter.failures, cutter.failures
    assert publisher.refused == 0, publisher.errors[:5]
    assert [n for n, _, _ in publisher.accepted] == list(range(1, PUBLICATIONS + 1))
    assert [offset for _, offset, _ in publisher.accepted] == list(range(1, PUBLICATIONS + 1))
    assert len(summaries) == SUBSCRIBERS
    return summaries


def assertNothingLost(summaries: dict[str, dict[str, Any]]) -> None:
    bad = {
        who: {k: s.get(k) for k in ("lost", "duplicated", "outOfOrder", "reconnects", "recoveries", "notRecovered",
                                    "timeline")}
        for who, s in summaries.items()
        if (s["lost"], s["duplicated"], s["outOfOrder"], s["notRecovered"]) != (0, 0, 0, 0)
        or s["received"] != PUBLICATIONS or s["reconnects"] != CUTS or s["recoveries"] != CUTS
    }
    assert not bad, json.dumps(bad, indent=1)


def test_cutSubscribersLoseNothingOneNode(
    startServer: Callable[..., ServerProcess], swarms: Callable[..., Swarm]
) -> None:
    """
    One node, memory engine: 50 subscribers (25 WebSocket, 25 http_stream), each cut 5 times while 10,000
    publications go out, each reconnect recovering (recovered: true); every subscriber receives 1..10,000 once
    each, in order.
    """
    server = startServer({"api_key": KEY, "namespaces": [REC], "log_level": "info", **RECOVERY})
    summaries = cutAndCount([server], swarms, server)
    assertNothingLost(summaries)
    output = server.output
    assert "Traceback" not in output and "Unhandled error" not in output, output[-5000:]


def test_cutSubscribersLoseNothingTwoNodes(
    startCluster: Callable[..., Cluster], swarms: Callable[..., Swarm]  # noqa: F811
) -> None:
    """
    Two nodes on Redis: the 50 subscribers alternate between them (and between WebSocket and http_stream), the
    batches of publications alternate between them, cuts are sent to either; every subscriber receives
    1..10,000 once each, in order.
    """
    cluster = startCluster({"namespaces": [REC], "log_level": "info", **RECOVERY})
    summaries = cutAndCount([cluster.a, cluster.b], swarms, cluster)
    assertNothingLost(summaries)
    cluster.assertCleanLogs()


def test_tcpKilledSubscribersLoseNothing(
    startServer: Callable[..., ServerProcess], swarms: Callable[..., Swarm]
) -> None:
    """
    One node: every subscriber's TCP connection (and any emulation request in flight) is killed at once, five
    times, as by a load balancer or NAT dropping them: the server learns of it by a reset, each SDK reconnects
    and recovers (50 reconnecting together each time); every subscriber receives 1..10,000 once each, in order.
    """
    server = startServer({"api_key": KEY, "namespaces": [REC], "log_level": "info", **RECOVERY})
    summaries = cutAndCount([server], swarms, server, how="tcp")
    assertNothingLost(summaries)
    output = server.output
    assert "Traceback" not in output and "Unhandled error" not in output, output[-5000:]


def test_harnessLosesNoEventWhenTheReaderLags(node: str) -> None:  # noqa: F811
    """
    A script's events all arrive whole, even when it writes more than the pipe holds before the test reads and
    then exits (Node queues such writes, and process.exit dropped them: a summary cut at 4 KiB, no "done").
    """
    harness = (SDK / "harness.mjs").as_uri()
    script = (f"import {{ emit, finish }} from '{harness}';"
              "for (let i = 0; i < 10; i++) emit('big', { i, pad: 'x'.repeat(30000) }); finish(0);")
    process = subprocess.Popen([node, "--input-type=module", "-e", script], stdout=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)  # the pipe fills while nobody reads
        output = process.stdout.read() if process.stdout is not None else ""
    finally:
        process.wait(30)
    events = [json.loads(line) for line in output.split("\n") if line]
    assert [(e["event"], e.get("i")) for e in events] == [("big", i) for i in range(10)] + [("done", None)]
    assert process.returncode == 0
