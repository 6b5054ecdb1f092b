"""
The demo chat at ``/demo/`` in a real browser: Debian's Chromium (``/usr/bin/chromium``) driven by playwright-core
(tests/browser/demo.mjs), against real ``twistd httpstream`` processes.

- same origin: two tabs of the page the server itself serves chat over http_stream, over WebSocket, and with the
  SDK's fallback list when the WebSocket upgrade is refused;
- cross origin: the page comes from a second server (another port) and connects to a server whose
  ``allowed_origins`` lists that origin: the browser's CORS preflights are answered and the chat works; with the
  origin not listed the browser never connects and no message gets through.

A screenshot of the page after a message went across is written to tests/_output/demo.png.

What it needs is installed here when missing: Chromium with apt-get (the tests are skipped, saying why, only when
apt-get cannot install it), playwright-core with ``npm ci`` in tests/browser, and the JS SDK the demo serves with
``npm ci`` in web/.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.installlock import installing
from tests.serverprocess import ServerProcess

ROOT = Path(__file__).parent.parent
HARNESS = Path(__file__).parent / "browser"
SCRIPT = HARNESS / "demo.mjs"
WEB = ROOT / "web"
SDK_DIR = WEB / "node_modules" / "centrifuge" / "dist"
OUTPUT = Path(__file__).parent / "_output"
CHROMIUM = Path("/usr/bin/chromium")

Events = list[dict[str, Any]]


def _stale(directory: Path) -> bool:
    # npm writes node_modules/.package-lock.json on every install: older than the lock file means another install.
    installed = directory / "node_modules" / ".package-lock.json"
    return not installed.exists() or installed.stat().st_mtime < (directory / "package-lock.json").stat().st_mtime


def _npmCi(directory: Path) -> None:
    if not _stale(directory):
        return
    with installing(f"npm-{directory.name}"):
        _npmCiLocked(directory)


def _npmCiLocked(directory: Path) -> None:
    if not _stale(directory):
        return  # another worker installed it meanwhile
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail(f"npm is not on PATH: it is needed once to install {directory} (npm ci)")
    result = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"], cwd=directory, check=False, capture_output=True, text=True, timeout=300
    )
    if result.returncode != 0 or _stale(directory):
        pytest.fail(f"npm ci in {directory} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")


def _aptGet(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["apt-get", *arguments],
        check=False,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )


def _ensureChromium() -> None:
    """Install Debian's Chromium when it is missing; skip (saying why) only when apt-get cannot."""
    if CHROMIUM.exists():
        return
    with installing("apt-get"):
        _installChromium()


def _installChromium() -> None:
    if CHROMIUM.exists():
        return  # another worker installed it meanwhile
    if shutil.which("apt-get") is None:
        pytest.skip(f"{CHROMIUM} is missing and there is no apt-get to install it (apt-get install chromium)")
    packages = ["install", "-y", "chromium", "chromium-driver"]
    result = _aptGet(*packages)
    if result.returncode != 0:
        # A fresh machine has no package lists yet.
        update = _aptGet("update")
        result = _aptGet(*packages) if update.returncode == 0 else update
    if result.returncode != 0 or not CHROMIUM.exists():
        pytest.skip(
            f"Chromium cannot be installed here (apt-get exited {result.returncode}), so the browser tests "
            f"cannot run:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        )


@pytest.fixture(scope="module")
def node() -> str:
    """The node executable, with Chromium, playwright-core and the demo's SDK installed (once per module)."""
    _ensureChromium()
    executable = shutil.which("node")
    if executable is None:
        pytest.fail("node (Node.js 20 or newer) is not on PATH: the browser tests drive Chromium from Node")
    _npmCi(HARNESS)
    _npmCi(WEB)
    assert (SDK_DIR / "centrifuge.js").is_file(), f"npm ci in {WEB} did not install {SDK_DIR}/centrifuge.js"
    return executable


@pytest.fixture
def demoServer(startServer: Callable[..., ServerProcess]) -> Callable[..., ServerProcess]:
    """Start a server that serves the demo page (the SDK from web/, whatever the server's working directory)."""

    def start(name: str = "server", **overrides: Any) -> ServerProcess:
        config = {"demo": True, "demo_sdk_dir": str(SDK_DIR), **overrides}
        return startServer(config, name)

    return start


def page(host: ServerProcess, **query: str) -> str:
    """The demo page served by C{host}, with its settings in the query string."""
    return f"{host.url}/demo/?{urlencode(query)}"


def runBrowser(
    node: str, servers: list[ServerProcess], tabs: list[str], expect: str, **options: str | list[str]
) -> Events:
    """
    Open C{tabs} in one Chromium and check C{expect}; fail with every event and server log if it did not. An
    option given as a list is repeated.
    """
    arguments = [node, str(SCRIPT), "--expect", expect, "--chromium", str(CHROMIUM)]
    for url in tabs:
        arguments += ["--tab", url]
    for name, value in options.items():
        for item in value if isinstance(value, list) else [value]:
            arguments += [f"--{name}", item]
    result = subprocess.run(arguments, check=False, capture_output=True, text=True, timeout=60, cwd=HARNESS)
    logs = "\n".join(f"--- {server.configPath.name} log:\n{server.output}" for server in servers)
    assert result.returncode == 0, f"browser events:\n{result.stdout}\nnode stderr:\n{result.stderr}\n{logs}"
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def tabs(events: Events) -> dict[int, dict[str, Any]]:
    return {event["tab"]: event for event in events if event["event"] == "tab"}


def received(events: Events) -> dict[str, set[int]]:
    """Each message's text -> the tabs that showed it."""
    shown: dict[str, set[int]] = {}
    for event in events:
        if event["event"] == "received":
            shown.setdefault(event["text"], set()).add(event["tab"])
    return shown


def test_sameOriginHTTPStream(node: str, demoServer: Callable[..., ServerProcess]) -> None:
    """
    Two tabs of the page the server serves chat over http_stream: same-origin requests need no allowed_origins.
    The screenshot is taken here, after the message went across.
    """
    server = demoServer()
    OUTPUT.mkdir(exist_ok=True)
    screenshot = OUTPUT / "demo.png"
    screenshot.unlink(missing_ok=True)
    events = runBrowser(
        node,
        [server],
        [page(server, transport="http_stream", name="alice"), page(server, transport="http_stream", name="bob")],
        "connected",
        message=["hello over http_stream ☃", "hi alice, bob here"],
        screenshot=str(screenshot),
    )
    assert {tab["transport"] for tab in tabs(events).values()} == {"http_stream"}
    assert received(events) == {"hello over http_stream ☃": {0, 1}, "hi alice, bob here": {0, 1}}
    assert screenshot.stat().st_size > 0
    assert server.logged("POST /emulation 204")


def test_sameOriginWebSocket(node: str, demoServer: Callable[..., ServerProcess]) -> None:
    """
    The same over WebSocket. A browser sends Origin on the upgrade, which is refused unless allowed_origins
    lists the page's origin (Centrifugo does the same).
    """
    server = demoServer(allowed_origins=["http://127.0.0.1:*"])
    events = runBrowser(
        node,
        [server],
        [page(server, transport="websocket", name="carol"), page(server, transport="websocket", name="dave")],
        "connected",
        message="hello over websocket",
    )
    assert {tab["transport"] for tab in tabs(events).values()} == {"websocket"}
    assert received(events) == {"hello over websocket": {0, 1}}


def test_fallbackProtobufAndSSE(node: str, demoServer: Callable[..., ServerProcess]) -> None:
    """
    The page's default transport list (websocket, then http_stream) falls back to http_stream when the upgrade is
    refused (the page's origin is not listed); tabs on the Protobuf build and on SSE chat with it.
    """
    server = demoServer(sse=True)
    events = runBrowser(
        node,
        [server],
        [
            page(server, name="erin"),
            page(server, transport="http_stream", protocol="protobuf", name="frank"),
            page(server, transport="sse", name="gina"),
        ],
        "connected",
        message=["from the fallback", "from protobuf", "from sse"],
    )
    states = tabs(events)
    assert [states[tab]["transport"] for tab in range(3)] == ["http_stream", "http_stream", "sse"]
    assert "(protobuf)" in states[1]["detail"]
    assert received(events) == {text: {0, 1, 2} for text in ["from the fallback", "from protobuf", "from sse"]}
    assert server.logged("websocket upgrade refused")


@pytest.fixture
def pageServer(demoServer: Callable[..., ServerProcess]) -> ServerProcess:
    """A second server that only serves the page: another port, so another origin."""
    return demoServer(name="page")


def test_crossOriginAllowed(node: str, demoServer: Callable[..., ServerProcess], pageServer: ServerProcess) -> None:
    """
    A page from another origin connects over http_stream to a server whose allowed_origins lists it: the browser
    preflights the stream and the emulation POSTs, the server answers them, and the chat works.
    """
    server = demoServer(allowed_origins=[pageServer.url], log_level="debug")
    events = runBrowser(
        node,
        [server, pageServer],
        [
            page(pageServer, server=server.url, transport="http_stream", name="grace"),
            page(pageServer, server=server.url, transport="http_stream", name="heidi"),
        ],
        "connected",
        message=["hello across origins", "and back"],
    )
    assert {tab["transport"] for tab in tabs(events).values()} == {"http_stream"}
    assert received(events) == {"hello across origins": {0, 1}, "and back": {0, 1}}
    # The browser really sent CORS preflights (the SDK's application/json POSTs require them).
    assert server.logged("OPTIONS /connection/http_stream 204")
    assert server.logged("OPTIONS /emulation 204")
    assert server.logged("POST /emulation 204")
    # Nothing reached the page's server but the page.
    assert "/connection/" not in pageServer.output and "/emulation" not in pageServer.output


def test_crossOriginRefused(node: str, demoServer: Callable[..., ServerProcess], pageServer: ServerProcess) -> None:
    """
    The same page with its origin not in allowed_origins (which lists the same port under another host name): the
    preflights are refused (403, no CORS headers), so the browser never sends the stream's POST; the WebSocket
    upgrade is refused. No tab ever connects and no message gets through.
    """
    server = demoServer(allowed_origins=[f"http://localhost:{pageServer.port}"], log_level="debug")
    events = runBrowser(
        node,
        [server, pageServer],
        [
            page(pageServer, server=server.url, transport="http_stream", name="ivan"),
            page(pageServer, server=server.url, transport="http_stream", name="judy"),
            page(pageServer, server=server.url, transport="websocket", name="mallory"),
        ],
        "blocked",
        wait="3",
    )
    states = tabs(events)
    assert len(states) == 3
    for tab in states.values():
        assert tab["state"] == "connecting" and not tab["everConnected"], tab
        assert tab["messages"] == [], tab
    # The browser asked (preflight refused) and then did not send the stream's POST.
    assert server.logged("OPTIONS /connection/http_stream 403")
    assert not re.search(r"POST /connection/http_stream|POST /emulation|connected over", server.output)
    assert server.logged("websocket upgrade refused")
    blocked = [e["text"] for e in events if e["event"] == "console" and "CORS policy" in e.get("text", "")]
    assert blocked, events
