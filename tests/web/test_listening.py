"""
What an operator sees of the listening port: a taken port or an address not on the host is one line and exit 1 (a
real twistd on real sockets); responses name no third-party server and a plain request to the WebSocket endpoint is
answered as Centrifugo does (the same site, in memory).
"""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import pytest

from tests.serverprocess import BASE_CONFIG, twistdCommand
from tests.web.helpers import MemoryWebSocket, serve


def start(tmp_path: Path, **overrides: object) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(dict(BASE_CONFIG, **overrides)))
    return subprocess.run(
        twistdCommand() + ["-n", "--pidfile=", "httpstream", "-c", str(path)],
        capture_output=True, text=True, timeout=30, cwd=tmp_path,
    )


def errorLines(output: str) -> list[str]:
    return [line for line in output.splitlines() if "#error]" in line or "#critical]" in line or "Traceback" in line]


def test_portInUseIsOneLine(tmp_path: Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        result = start(tmp_path, port=port)
    finally:
        taken.close()
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert errorLines(output) == [line for line in output.splitlines() if "cannot listen" in line], output
    assert f"cannot listen on 127.0.0.1:{port}: address already in use" in output
    assert len(errorLines(output)) == 1


def test_addressNotOnHostIsOneLine(tmp_path: Path) -> None:
    result = start(tmp_path, address="192.0.2.1")  # TEST-NET-1: never an address of this host
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert len(errorLines(output)) == 1 and "cannot listen on 192.0.2.1:0: cannot assign requested address" in output


def test_noServerBanner() -> None:
    with serve({"health": True, "prometheus": True, "api_insecure": True}) as server:
        for path, method in [("/health", "GET"), ("/metrics", "GET"), ("/nope", "GET"), ("/api/info", "POST"),
                             ("/connection/http_stream", "GET"), ("/emulation", "OPTIONS")]:
            response = server.request(method, path)
            assert response.status and "server" not in response.headers, (path, response)
        # The WebSocket handshake is autobahn's own response: no banner there either.
        websocket = MemoryWebSocket(server)
        assert websocket.status == 101 and "server" not in websocket.headers, websocket.headers


@pytest.mark.parametrize(
    "method, headers, status, body",
    [
        ("GET", {}, 400, b"Bad Request\n"),
        ("POST", {}, 400, b"Bad Request\n"),
        ("POST", {"Connection": "Upgrade", "Upgrade": "websocket"}, 405, b"Method Not Allowed\n"),
    ],
)
def test_notAHandshakeOnWebSocketEndpoint(method: str, headers: dict[str, str], status: int, body: bytes) -> None:
    with serve() as server:
        response = server.request(method, "/connection/websocket", headers)
    assert (response.status, response.body) == (status, body)
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["sec-websocket-version"] == "13"
