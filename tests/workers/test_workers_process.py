"""
``twistd -n httpstream --workers 2`` as operators run it: a real supervisor and two real worker processes behind
one port, on a redis-server of the test's own (a free port; tests/test_redis_restart.py's OwnRedis), with the
official JS SDK over http_stream (tests/sdk/workers.mjs) as the clients.

Which worker serves a client is told by the node id its connect reply named (each worker is a node of its own);
the supervisor's log names each worker's pid and node ("[worker 1 pid 1234] httpstream ... node ID listening").
"""

from __future__ import annotations

import json
import os
import re
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.serverprocess import BASE_CONFIG, ServerProcess, twistdCommand
from tests.test_redis_restart import OwnRedis, redis  # noqa: F401 (redis: a fixture)
from tests.tlscerts import selfSigned
from tests.test_sdk_http_stream import SDK, ScenarioProcess, node  # noqa: F401 (node: a fixture)

SCRIPT = SDK / "workers.mjs"
API_KEY = "workers-api-key"
CHANNEL = "rr:workers"
CLIENTS = 16
WORKER_LINE = re.compile(r"\[worker (?P<index>\d+) pid (?P<pid>\d+)\] httpstream \S+ node (?P<node>\S+) listening")

Events = list[dict[str, Any]]


class Workers:
    """A supervisor with two workers on C{redis}; the workers' pids and node ids as the log names them."""

    def __init__(
        self, directory: Path, redis: OwnRedis, count: int = 2, listen: tuple[str, ...] = (),  # noqa: F811
    ) -> None:
        self.count = count
        command = None
        if listen:
            command = twistdCommand() + ["-n", "--pidfile=", "httpstream"]
            for description in listen:
                command += ["--listen", description]
            command += ["-c"]
        self.server = ServerProcess(directory, {
            "engine": "redis",
            "redis_address": f"127.0.0.1:{redis.port}",
            "redis_prefix": f"httpstream-workers-{uuid.uuid4().hex[:12]}",
            "workers": count,
            "api_key": API_KEY,
            "prometheus": True,
            "health": True,
            "log_level": "info",
            "shutdown_timeout": "5s",
            "namespaces": [{
                "name": "rr", "history_size": 100, "history_ttl": "300s", "force_recovery": True, "presence": True,
                "allow_subscribe_for_client": True, "allow_publish_for_client": True,
                "allow_subscribe_for_anonymous": True, "allow_publish_for_anonymous": True,
            }],
        }, name="workers", command=command)
        # One line per listener, written together; the reader may see the first before the rest.
        lines = max(1, len(listen))
        self.waitForLog(
            lambda: self.server.output.count(f"{count} workers listening on") >= lines, "every worker accepting",
        )

    def waitForLog(self, predicate: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            assert self.server.alive(), f"the supervisor exited while waiting for {what}:\n{self.server.output}"
            time.sleep(0.05)
        raise AssertionError(f"no {what} in the log within {timeout}s:\n{self.server.output}")

    def workers(self) -> dict[int, tuple[int, str]]:
        """Worker number -> (pid, node id), the latest of each (a restarted worker has a new pid and node)."""
        found: dict[int, tuple[int, str]] = {}
        for match in WORKER_LINE.finditer(self.server.output):
            found[int(match.group("index"))] = (int(match.group("pid")), match.group("node"))
        return found

    def api(self, method: str, request: dict[str, Any]) -> dict[str, Any]:
        call = urllib.request.Request(
            f"{self.server.url}/api/{method}", data=json.dumps(request).encode(),
            headers={"X-API-Key": API_KEY, "Content-Type": "application/json"}, method="POST",
        )
        with urllib.request.urlopen(call, timeout=15) as response:
            result: dict[str, Any] = json.loads(response.read())
        assert "error" not in result, result
        return result

    def stopLeavingNothing(self) -> None:
        """SIGTERM to the supervisor: it ends as twistd does (by the signal, once stopped) and no worker is left."""
        pids = self.restartedPids()
        assert self.server.stop() in (0, -signal.SIGTERM), self.server.output
        assert "stopping 2 workers" in self.server.output
        for pid in pids:
            assert not alive(pid), f"worker pid {pid} outlived its supervisor:\n{self.server.output}"
        assert "Traceback" not in self.server.output, self.server.output

    def restartedPids(self) -> list[int]:
        """Every worker pid the log has named (restarted workers included)."""
        return [int(m.group("pid")) for m in WORKER_LINE.finditer(self.server.output)]


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


class Clients(ScenarioProcess):
    """tests/sdk/workers.mjs: CLIENTS SDK clients of one channel, and their events."""

    def __init__(self, node: str, workers: Workers, count: int = CLIENTS) -> None:  # noqa: F811
        command = [node, str(SCRIPT), "--url", workers.server.url, "--channel", CHANNEL, "--clients", str(count),
                   "--stagger", "20"]
        super().__init__(command, workers.server, stdin=True)
        self.count = count
        self.waitFor(lambda _: len(self.seen("subscribed")) >= count, 20, "every client subscribed", untilEnd=True)

    def nodes(self) -> dict[str, str]:
        """Client name -> the node of its latest connection."""
        return {e["who"]: e["node"] for e in self.seen("connected")}

    def offsets(self, who: str) -> list[int]:
        return [e["offset"] for e in self.seen("publication") if e["who"] == who]

    def waitForOffsets(self, expected: list[int], timeout: float = 20.0) -> None:
        def done(_: Any) -> bool:
            return all(self.offsets(f"c{i}")[-len(expected):] == expected for i in range(self.count))

        if not done(None):
            self.waitFor(done, timeout, f"offsets {expected[0]}..{expected[-1]} at every client", untilEnd=True)


@pytest.fixture
def workers(tmp_path: Path, redis: OwnRedis) -> Iterator[Workers]:  # noqa: F811
    started = Workers(tmp_path, redis)
    yield started
    started.server.stop()


@pytest.fixture
def clients(node: str, workers: Workers) -> Iterator[Clients]:  # noqa: F811
    """
    CLIENTS clients with some on each worker. On a loaded machine one worker may be off the CPU while all of them
    connect, and the other accepts every connection: then they are started again (the tests need both workers).
    """
    for _ in range(5):
        started = Clients(node, workers)
        if len(set(started.nodes().values())) == 2:
            break
        started.send({"exit": True})
        started.finish()
    yield started
    started.kill()


def test_memoryEngineWithWorkersIsRefusedInOneLine(tmp_path: Path) -> None:
    """With the memory engine, --workers 2 exits 1 with one line saying why."""
    path = tmp_path / "memory.json"
    path.write_text(json.dumps(BASE_CONFIG))
    result = subprocess.run(
        twistdCommand() + ["-n", "--pidfile=", "httpstream", "-c", str(path), "--workers", "2"],
        capture_output=True, text=True, timeout=30, cwd=tmp_path,
    )
    assert result.returncode == 1
    lines = (result.stdout + result.stderr).strip().splitlines()
    assert lines == [
        'httpstream: config keys "workers" and "engine": 2 worker processes need "engine": "redis" (with the '
        '"memory" engine each worker would be a server of its own: publications, presence and history would not '
        'be shared)'
    ]


def test_clientsOfEveryWorkerGetEveryPublicationInOrder(workers: Workers, clients: Clients) -> None:
    """
    16 SDK clients spread over both workers each receive every server API publication, in order (offsets 1..10);
    presence and history, asked of whichever worker the API request reaches, see all of them. SIGTERM to the
    supervisor then stops everything: no worker process is left.
    """
    nodes = {node for _, node in workers.workers().values()}
    assert len(nodes) == 2
    assert set(clients.nodes().values()) == nodes, "the clients did not land on both workers"
    for n in range(1, 11):
        workers.api("publish", {"channel": CHANNEL, "data": {"n": n}})
    clients.waitForOffsets(list(range(1, 11)))
    for i in range(CLIENTS):
        assert [e["data"]["n"] for e in clients.seen("publication") if e["who"] == f"c{i}"] == list(range(1, 11))
    for _ in range(4):  # new connections: answered by either worker
        presence = workers.api("presence", {"channel": CHANNEL})["result"]["presence"]
        assert len(presence) == CLIENTS
        history = workers.api("history", {"channel": CHANNEL, "limit": 100})["result"]["publications"]
        assert [p["data"]["n"] for p in history] == list(range(1, 11))
    clients.kill()
    workers.stopLeavingNothing()


def test_killedWorkerIsRestartedAndItsClientsRecover(workers: Workers, clients: Clients) -> None:
    """
    SIGKILL to worker 1: only its clients are dropped; they reconnect (to worker 2 or the restarted worker 1)
    and recover what was published meanwhile; the supervisor logs the death and starts worker 1 again.
    """
    before = workers.workers()
    killedPid, killedNode = before[1]
    onKilled = sorted(who for who, node in clients.nodes().items() if node == killedNode)
    others = sorted(who for who, node in clients.nodes().items() if node != killedNode)
    assert onKilled and others
    workers.api("publish", {"channel": CHANNEL, "data": {"n": 1}})
    clients.waitForOffsets([1])
    os.kill(killedPid, signal.SIGKILL)
    for n in range(2, 7):
        workers.api("publish", {"channel": CHANNEL, "data": {"n": n}})
    workers.waitForLog(
        lambda: f"worker 1 pid {killedPid} killed by signal 9" in workers.server.output, "the worker's death"
    )
    assert re.search(rf"worker 1 pid {killedPid} killed by signal 9 after [\d.]+s; restarting it in", workers.server.output)
    workers.waitForLog(lambda: workers.workers()[1][0] != killedPid, "worker 1 started again")
    clients.waitForOffsets(list(range(1, 7)))
    for who in onKilled:
        resubscribed = [e for e in clients.seen("subscribed") if e["who"] == who][-1]
        assert resubscribed["wasRecovering"] and resubscribed["recovered"], resubscribed
    for who in [f"c{i}" for i in range(CLIENTS)]:
        assert clients.offsets(who) == list(range(1, 7)), (who, clients.offsets(who))
    # The other worker's clients never noticed.
    dropped = {e["who"] for e in clients.seen("disconnected") + clients.seen("connecting") if e.get("code")}
    assert dropped <= set(onKilled), dropped
    assert len([e for e in clients.seen("connected") if e["who"] in others]) == len(others)
    clients.kill()
    workers.stopLeavingNothing()


def test_emulationPostsReachStreamsOnTheOtherWorker(workers: Workers, clients: Clients) -> None:
    """
    Every client publishes through its /emulation POSTs, which the kernel hands to either worker whatever worker
    holds the client's stream: every client receives every publication, and the workers' metrics (each scrape
    answered by one of them, its "worker" label saying which) show POSTs forwarded to the other worker.
    """
    assert len(set(clients.nodes().values())) == 2, "the clients did not land on both workers"
    for round in range(3):
        for i in range(CLIENTS):
            clients.send({"publish": {"who": f"c{i}", "data": {"n": round * CLIENTS + i}}})
    total = 3 * CLIENTS
    clients.waitFor(lambda _: len(clients.seen("publish_ok")) >= total, 40, "every publish answered", untilEnd=True)
    assert clients.seen("publish_error") == []
    clients.waitForOffsets(list(range(1, total + 1)), timeout=40)
    forwarded: dict[str, float] = {}
    deadline = time.monotonic() + 10
    while len(forwarded) < 2 and time.monotonic() < deadline:
        with urllib.request.urlopen(f"{workers.server.url}/metrics", timeout=5) as response:
            for line in response.read().decode().splitlines():
                match = re.match(r'httpstream_emulation_requests_total\{(.*)\} (\S+)', line)
                if match and 'outcome="forwarded"' in match.group(1):
                    worker = re.search(r'worker="(\d+)"', match.group(1))
                    assert worker is not None, line
                    forwarded[worker.group(1)] = float(match.group(2))
    assert sum(forwarded.values()) > 0, (forwarded, workers.server.output)


def test_tlsAndSeveralListenersWorkTheSame(tmp_path: Path, redis: OwnRedis) -> None:  # noqa: F811
    """
    --listen ssl:... and --listen tcp:...: the supervisor opens both, every worker serves both (its TLS from the
    ssl: description); a scrape over either reaches each worker in turn.
    """
    cert, key = selfSigned(tmp_path)
    workers = Workers(tmp_path, redis, listen=(
        f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}", "tcp:0:interface=127.0.0.1",
    ))
    try:
        ports = dict(re.findall(r"2 workers listening on (https?)://127\.0\.0\.1:(\d+)", workers.server.output))
        assert set(ports) == {"http", "https"}
        context = ssl.create_default_context(cafile=str(cert))
        for scheme, port in ports.items():
            seen: set[str] = set()
            deadline = time.monotonic() + 10
            while len(seen) < 2 and time.monotonic() < deadline:
                url = f"{scheme}://127.0.0.1:{port}/metrics"
                with urllib.request.urlopen(url, timeout=5, context=context if scheme == "https" else None) as r:
                    seen.update(re.findall(r'worker="(\d+)"', r.read().decode()))
            assert seen == {"1", "2"}, (scheme, seen)
        workers.stopLeavingNothing()
    finally:
        workers.server.stop()


def test_workersEndWhenTheSupervisorIsKilled(workers: Workers) -> None:
    """SIGKILL to the supervisor (it cannot stop them): the kernel ends its workers (PR_SET_PDEATHSIG)."""
    pids = workers.restartedPids()
    assert len(pids) == 2
    os.kill(workers.server.pid, signal.SIGKILL)
    assert workers.server.waitExit(10) == -signal.SIGKILL
    deadline = time.monotonic() + 15
    while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in pids), workers.server.output
