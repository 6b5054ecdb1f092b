"""
A real server process started from a Centrifugo v6 YAML file with CENTRIFUGO_* environment overrides, checked over
the wire: the API key, token key and transport switch from the environment and the origins from the file work.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Iterator

import jwt
import orjson
import pytest

from tests.serverprocess import ListeningProcess, twistdCommand
from tests.wire import Stream, request

API_KEY = "env-api-key-6c1f0e2b9d"
HMAC_KEY = "env-hmac-key-0123456789abcdef0123456789"

V6_YAML = """\
# Centrifugo v6 names; the API key, the token key and http_stream come from the environment.
http_server:
  address: 127.0.0.1
  port: 0
log:
  level: info
client:
  allowed_origins:
    - https://app.example.com
    - https://*.example.org
  allow_anonymous_connect_without_token: true
channel:
  without_namespace:
    allow_subscribe_for_client: true
  namespaces:
    - name: chat
      allow_subscribe_for_client: true
"""


def environment(**variables: str) -> dict[str, str]:
    """This process's environment without its own CENTRIFUGO_* variables, plus C{variables}."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("CENTRIFUGO_")}
    env.update(variables)
    return env


def command(path: Path) -> list[str]:
    return twistdCommand() + ["-n", "--pidfile=", "httpstream", "-c", str(path)]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ListeningProcess]:
    directory = tmp_path_factory.mktemp("configv6")
    path = directory / "config.yaml"
    path.write_text(V6_YAML)
    env = environment(
        CENTRIFUGO_HTTP_API_KEY=API_KEY,
        CENTRIFUGO_CLIENT_TOKEN_HMAC_SECRET_KEY=HMAC_KEY,
        CENTRIFUGO_HTTP_STREAM_ENABLED="true",
        CENTRIFUGO_CHANNEL_NAMESPACES_CHAT_PRESENCE="true",
        CENTRIFUGO_NOT_A_SETTING="1",
    )
    process = ListeningProcess(command(path), cwd=directory, env=env)
    process.waitForPort(timeout=60)
    yield process
    process.stop()


def api(port: int, method: str, body: dict, key: str) -> tuple[int, bytes]:
    response = request(
        port, "POST", f"/api/{method}", orjson.dumps(body), {"Content-Type": "application/json", "X-API-Key": key}
    )
    try:
        return response.status, response.body()
    finally:
        response.close()


def test_apiKeyFromEnvironment(server: ListeningProcess) -> None:
    status, body = api(server.port, "info", {}, API_KEY)
    assert status == 200, body
    assert "nodes" in orjson.loads(body)["result"]
    status, _ = api(server.port, "info", {}, "wrong-key")
    assert status == 401


def test_originFromV6List(server: ListeningProcess) -> None:
    """
    Allowed origins get the CORS headers that let a browser read the stream; another origin does not (whether the
    server then refuses it or leaves the blocking to the browser, as Centrifugo's HTTP transports do).
    """
    for origin in ["https://app.example.com", "https://x.example.org"]:
        stream = Stream(server.port, orjson.dumps({"id": 1, "connect": {}}), headers={"Origin": origin})
        try:
            assert stream.response.status == 200, origin
            assert stream.response.headers.get("access-control-allow-origin") == origin
            assert "client" in stream.next()["connect"]
        finally:
            stream.close()
    stream = Stream(server.port, orjson.dumps({"id": 1, "connect": {}}), headers={"Origin": "https://evil.example"})
    try:
        assert "access-control-allow-origin" not in stream.response.headers
    finally:
        stream.close()


def test_tokenKeyFromEnvironment(server: ListeningProcess) -> None:
    token = jwt.encode({"sub": "alice", "exp": int(time.time()) + 600}, HMAC_KEY, algorithm="HS256")
    stream = Stream(server.port, orjson.dumps({"id": 1, "connect": {"token": token}}))
    try:
        assert stream.response.status == 200
        assert stream.next()["connect"]["client"]
        # The namespace's presence came from CENTRIFUGO_CHANNEL_NAMESPACES_CHAT_PRESENCE.
        status, body = api(server.port, "presence_stats", {"channel": "chat:room"}, API_KEY)
        assert status == 200 and "result" in orjson.loads(body), body
        status, body = api(server.port, "presence_stats", {"channel": "news"}, API_KEY)
        assert orjson.loads(body)["error"]["code"] == 108, body
    finally:
        stream.close()


def test_logNamesVariablesNotValues(server: ListeningProcess) -> None:
    output = server.output
    assert (
        "environment variables applied: CENTRIFUGO_CHANNEL_NAMESPACES_CHAT_PRESENCE "
        "CENTRIFUGO_CLIENT_TOKEN_HMAC_SECRET_KEY CENTRIFUGO_HTTP_API_KEY CENTRIFUGO_HTTP_STREAM_ENABLED" in output
    ), output
    assert "environment variable CENTRIFUGO_NOT_A_SETTING is unknown and was ignored" in output
    assert API_KEY not in output and HMAC_KEY not in output


def test_badVariableStopsStartUp(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(V6_YAML)
    result = subprocess.run(
        command(path), env=environment(CENTRIFUGO_HTTP_SERVER_PORT="80a"), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines == ['httpstream: environment variable CENTRIFUGO_HTTP_SERVER_PORT: expected an integer, got "80a"'], (
        result.stderr
    )
