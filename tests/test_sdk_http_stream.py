"""
The official JS SDK (npm ``centrifuge``, pinned in tests/sdk/package.json) against a real ``twistd httpstream``
process, over transport http_stream only (commands going up through /emulation), with the JSON and the Protobuf
build: what an application using the SDK relies on (connect, subscribe, publish, fan-out, ping/pong, the server's
disconnect codes).

tests/sdk/http_stream.mjs drives the SDK and prints one JSON object per SDK event; these tests assert on them.
Node 20+ is required; the harness's node_modules are installed from the committed lock file (``npm ci``) when
missing or older than it.
"""

from __future__ import annotations

import json
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import jwt
import pytest

from tests.installlock import installing
from tests.serverprocess import BASE_CONFIG, ServerProcess

SDK = Path(__file__).parent / "sdk"
SCRIPT = SDK / "http_stream.mjs"

PROTOCOLS = ["json", "protobuf"]

# What each protocol publishes: JSON with nesting and non-ASCII text; for Protobuf, bytes that are not UTF-8 and
# hold the framing's own special bytes (00, a newline, varint continuation bytes).
PAYLOADS: dict[str, Any] = {
    "json": {"text": "héllo ☃ \"quoted\"", "n": [1, 2.5, None, -7], "nested": {"ok": True, "empty": {}}},
    "protobuf": bytes([0x00, 0x0A, 0x0D, 0xFF, 0x80, 0x81]) + b'{"not":"json"}' + bytes(range(256)),
}

Events = list[dict[str, Any]]


@pytest.fixture(scope="session")
def node() -> str:
    """The node executable, with the harness's dependencies installed (once per session)."""
    executable = shutil.which("node")
    if executable is None:
        pytest.fail("node (Node.js 20 or newer) is not on PATH: the SDK tests need it to run the official JS SDK")
    version = subprocess.run([executable, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    match = re.match(r"v(\d+)\.", version)
    if match is None or int(match.group(1)) < 20:
        pytest.fail(f"the SDK tests need Node.js 20 or newer (global fetch and ReadableStream); found {version}")
    if _harnessStale():
        with installing("npm-sdk"):
            _installHarness()
    return executable


def _installHarness() -> None:
    if _harnessStale():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail(f"npm is not on PATH: it is needed once to install the SDK harness ({SDK}: npm ci)")
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"], cwd=SDK, capture_output=True, text=True, timeout=300
        )
        if result.returncode != 0:
            pytest.fail(f"npm ci in {SDK} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
        if _harnessStale():
            pytest.fail(f"npm ci in {SDK} left node_modules older than package-lock.json")


def _harnessStale() -> bool:
    # npm writes node_modules/.package-lock.json on every install: older than the lock file means another install.
    installed = SDK / "node_modules" / ".package-lock.json"
    return not installed.exists() or installed.stat().st_mtime < (SDK / "package-lock.json").stat().st_mtime


def scriptArguments(server: ServerProcess, protocol: str, scenario: str, **options: Any) -> list[str]:
    data = PAYLOADS[protocol]
    arguments = [
        str(SCRIPT),
        "--url", server.url,
        "--protocol", protocol,
        "--scenario", scenario,
        "--data", data.hex() if protocol == "protobuf" else json.dumps(data),
    ]
    for name, value in options.items():
        for item in value if isinstance(value, list) else [value]:
            arguments += [f"--{name}", str(item)]
    return arguments


def parseEvents(stdout: str) -> Events:
    # Not splitlines(): it also splits at U+2028, which JSON.stringify leaves unescaped inside strings.
    return [json.loads(line) for line in stdout.split("\n") if line.strip()]


def explain(server: ServerProcess, stdout: str, stderr: str) -> str:
    return f"SDK events:\n{stdout}\nnode stderr:\n{stderr}\nserver log:\n{server.output}"


def runScenario(node: str, server: ServerProcess, protocol: str, scenario: str, **options: Any) -> Events:
    """Run one scenario to its end; fail with everything that was said if the script did not succeed."""
    result = subprocess.run(
        [node] + scriptArguments(server, protocol, scenario, **options),
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, explain(server, result.stdout, result.stderr)
    return parseEvents(result.stdout)


class ScenarioProcess:
    """
    A scenario running in the background, so the test can act on the server while the SDK watches.

    @param stdin: keep the script's stdin open for L{send} (a script that takes commands).
    """

    def __init__(self, command: list[str], server: ServerProcess, stdin: bool = False) -> None:
        self._server = server
        self._process = subprocess.Popen(
            command, stdin=subprocess.PIPE if stdin else None, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )
        self._lines: queue.Queue[Optional[str]] = queue.Queue()
        self._stdout: list[str] = []
        self._stderr: list[str] = []
        # Both pipes are drained by threads (never by communicate(), which would take lines from waitFor).
        self._readers = [
            threading.Thread(target=self._read, daemon=True),
            threading.Thread(target=self._readErrors, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _readErrors(self) -> None:
        assert self._process.stderr is not None
        self._stderr.extend(self._process.stderr)

    def explain(self) -> str:
        return explain(self._server, "".join(self._stdout), "".join(self._stderr))

    def seen(self, kind: Optional[str] = None) -> Events:
        """The events L{waitFor} has read so far (of C{kind} only, when given)."""
        return [e for e in parseEvents("".join(self._stdout)) if kind is None or e["event"] == kind]

    def send(self, command: dict[str, Any]) -> None:
        """Write one JSON command line on the script's stdin (started with C{stdin=True})."""
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps(command) + "\n")
        self._process.stdin.flush()

    def waitFor(
        self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 15.0, what: str = "", untilEnd: bool = False
    ) -> dict[str, Any]:
        """
        The next event (after those already read) that matches; fail with everything said if none comes.

        @param untilEnd: fail at once when the script ends ("fail" or "timeout") instead of reading on.
        """
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                line = None
            if line is None:
                self.kill()
                raise AssertionError(f"no such SDK event {what} within {timeout} s\n" + self.explain())
            self._stdout.append(line)
            event = json.loads(line)
            if untilEnd and event["event"] in ("fail", "timeout"):
                self.kill()
                raise AssertionError(f"the SDK script ended ({event}) waiting for {what}\n{self.explain()}")
            if predicate(event):
                return event

    def finish(self, timeout: float = 30.0) -> Events:
        """Wait for the script's end and return every event it printed."""
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        for reader in self._readers:
            reader.join(5)
        while (line := self._lines.get_nowait()) is not None:
            self._stdout.append(line)
        assert self._process.returncode == 0, self.explain()
        return parseEvents("".join(self._stdout))

    def kill(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait()


@pytest.fixture
def scenarios(node: str) -> Iterator[Callable[..., ScenarioProcess]]:
    started: list[ScenarioProcess] = []

    def start(server: ServerProcess, protocol: str, scenario: str, **options: Any) -> ScenarioProcess:
        process = ScenarioProcess([node] + scriptArguments(server, protocol, scenario, **options), server)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


def of(events: Events, who: str, kind: str) -> Events:
    return [event for event in events if event.get("who") == who and event["event"] == kind]


def by(events: Events, kind: str) -> Events:
    return [event for event in events if event["event"] == kind]


def expectedData(protocol: str) -> Any:
    """The data as the script prints what the SDK delivered."""
    payload = PAYLOADS[protocol]
    return {"hex": payload.hex()} if protocol == "protobuf" else payload


def assertCleanLog(server: ServerProcess) -> None:
    """Stop the server and check it logged no error (an exception in a callback leaves a client half-closed)."""
    server.stop()
    output = server.output
    assert "Traceback" not in output and "Unhandled error" not in output, output


def token(claims: dict[str, Any], secret: str = BASE_CONFIG["token_hmac_secret_key"]) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_publishReachesPublisherAndSecondClient(
    node: str, startServer: Callable[..., ServerProcess], protocol: str
) -> None:
    """
    Two SDK clients connect over http_stream and subscribe; the first publishes: both receive exactly the data
    published, attributed to the publisher, and every emulation POST was answered 204.
    """
    # "chat:" is a namespace, which must be configured (else 102 unknown channel), with the same permissions.
    chat = {key: True for key in BASE_CONFIG if key.startswith(("allow_subscribe", "allow_publish"))}
    server = startServer({"namespaces": [{"name": "chat", **chat}]})
    events = runScenario(node, server, protocol, "pubsub", channel=f"chat:{protocol}")

    clients = {}
    for who in ("a", "b"):
        (connected,) = of(events, who, "connected")
        assert connected["transport"] == "http_stream"
        clients[who] = connected["client"]
        assert of(events, who, "subscribed") == [{"event": "subscribed", "who": who, "channel": f"chat:{protocol}"}]
        (stream,) = of(events, who, "stream")
        assert stream["status"] == 200
        assert stream["contentType"] == ("application/octet-stream" if protocol == "protobuf" else "application/json")
    assert clients["a"] != clients["b"]

    for who in ("a", "b"):
        (publication,) = of(events, who, "publication")
        assert publication["data"] == expectedData(protocol)
        assert publication["info"] == {"client": clients["a"], "user": ""}

    emulation = by(events, "emulation")
    assert emulation and all(event["status"] == 204 for event in emulation)
    assert not by(events, "error")
    # Nobody was dropped: the only disconnects are the ones the script asked for at the end.
    assert [(event["code"], event["reason"]) for event in by(events, "disconnected")] == [
        (0, "disconnect called")
    ] * 2
    assertCleanLog(server)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_pingsAnsweredKeepConnection(node: str, startServer: Callable[..., ServerProcess], protocol: str) -> None:
    """
    With a 1 s ping interval and an 800 ms pong timeout the SDK answers each server ping through /emulation and
    stays on its one connection for 3.5 s, which then still delivers a publication; once the SDK disconnects, the server drops
    the session instead of pinging it into a 3012.
    """
    server = startServer({"ping_interval": "1s", "pong_timeout": "800ms"})
    events = runScenario(node, server, protocol, "ping", channel="ping", duration=3.5)

    states = [(event["from"], event["to"]) for event in by(events, "state")]
    assert states == [("disconnected", "connecting"), ("connecting", "connected"), ("connected", "disconnected")]
    # The first ping comes 0.5-1 s after connect, then one every second: at least three within 3.5 s.
    pongs = [event for event in by(events, "emulation") if event["pong"]]
    assert len(pongs) >= 3, events
    assert all(event["status"] == 204 for event in by(events, "emulation"))
    assert of(events, "a", "publication")[0]["data"] == expectedData(protocol)
    assert not by(events, "error")
    # The SDK has gone: the server must have dropped the session, or its next ping would go unanswered (3012).
    time.sleep(1.7)
    output = server.output
    assert output.count("connected over http_stream") == 1
    assert "3012" not in output and "no pong" not in output, output
    assertCleanLog(server)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_invalidTokenDisconnects3500(node: str, startServer: Callable[..., ServerProcess], protocol: str) -> None:
    """
    A valid token connects as its user; a token signed with another key, or not a JWT at all, ends in the SDK's
    disconnected state with the server's code 3500 "invalid token", and the SDK does not try again.
    """
    server = startServer()
    good = token({"sub": "user-42", "exp": int(time.time()) + 3600})
    forged = token({"sub": "user-42"}, secret="another-secret-0123456789abcdef0123456789")
    events = runScenario(node, server, protocol, "token", channel="tokens", token=[good, forged, "not-a-jwt"])

    assert len(of(events, "t0", "connected")) == 1
    (publication,) = of(events, "t0", "publication")
    assert publication["info"]["user"] == "user-42"
    assert publication["data"] == expectedData(protocol)

    for who in ("t1", "t2"):
        assert not of(events, who, "connected")
        assert [(event["code"], event["reason"]) for event in of(events, who, "disconnected")] == [
            (3500, "invalid token")
        ]
        assert [(event["from"], event["to"]) for event in of(events, who, "state")] == [
            ("disconnected", "connecting"),
            ("connecting", "disconnected"),
        ]
    assertCleanLog(server)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_serverShutdownReported3001(
    node: str,
    startServer: Callable[..., ServerProcess],
    scenarios: Callable[..., ScenarioProcess],
    protocol: str,
) -> None:
    """
    Stopping the server (SIGTERM) makes the SDK report code 3001 "shutdown" and go to connecting, to reconnect
    (3001 is not terminal), with its subscription waiting to be resubscribed rather than dropped.
    """
    server = startServer()
    scenario = scenarios(server, protocol, "shutdown", channel="news")
    scenario.waitFor(lambda event: event["event"] == "ready")
    # twistd ends by re-raising the signal it stopped on (Twisted's _exitSignal): -SIGTERM is a clean stop.
    assert server.stop() in (0, -signal.SIGTERM)
    events = scenario.finish()

    after = events[[event["event"] for event in events].index("ready") + 1:]
    states = [(event["from"], event["to"]) for event in of(after, "a", "state")]
    assert states[0] == ("connected", "connecting"), after
    assert of(after, "a", "connecting")[0] == {"event": "connecting", "who": "a", "code": 3001, "reason": "shutdown"}
    # The only disconnect is the script's own, once it has seen the code.
    disconnects = [(event["code"], event["reason"]) for event in of(after, "a", "disconnected")]
    assert disconnects == [(0, "disconnect called")], after
    assert of(after, "a", "subscribing")
    assert not of(events, "a", "unsubscribed")
    assertCleanLog(server)
