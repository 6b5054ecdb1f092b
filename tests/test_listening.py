"""
What an operator sees of the listening port: a taken port or an address not on the host is one line and exit 1;
responses name no third-party server; a plain request to the WebSocket endpoint is answered as Centrifugo does.
"""

from __future__ import annotations

import json
import socket
import subprocess
import http.client
import urllib.parse
from pathlib import Path
from typing import Callable

import pytest

from tests.serverprocess import BASE_CONFIG, ServerProcess, twistdCommand


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


def fetch(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    # http.client, not urllib: urllib replaces a request's Connection header with "close".
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.request(method, parts.path, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def test_noServerBanner(startServer: Callable[..., ServerProcess]) -> None:
    server = startServer({"health": True, "prometheus": True, "api_insecure": True})
    for path, method in [("/health", "GET"), ("/metrics", "GET"), ("/nope", "GET"), ("/api/info", "POST"),
                         ("/connection/http_stream", "GET"), ("/emulation", "OPTIONS")]:
        status, headers, _ = fetch(server.url + path, method)
        assert "server" not in headers, (path, status, headers)
    # The WebSocket handshake is autobahn's own response: no banner there either.
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"GET /connection/websocket HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            assert chunk, head
            head += chunk
    assert head.startswith(b"HTTP/1.1 101") and b"\r\nserver:" not in head.lower(), head


@pytest.mark.parametrize(
    "method, headers, status, body",
    [
        ("GET", {}, 400, b"Bad Request\n"),
        ("POST", {}, 400, b"Bad Request\n"),
        ("POST", {"Connection": "Upgrade", "Upgrade": "websocket"}, 405, b"Method Not Allowed\n"),
    ],
)
def test_notAHandshakeOnWebSocketEndpoint(
    startServer: Callable[..., ServerProcess], method: str, headers: dict[str, str], status: int, body: bytes
) -> None:
    server = startServer()
    got, responseHeaders, content = fetch(server.url + "/connection/websocket", method, headers)
    assert (got, content) == (status, body)
    assert responseHeaders["content-type"] == "text/plain; charset=utf-8"
    assert responseHeaders["sec-websocket-version"] == "13"
