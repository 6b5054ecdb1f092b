"""
A server started from a Centrifugo v6 YAML file with CENTRIFUGO_* environment overrides: the API key, token key and
transport switch from the environment and the origins from the file work (the config read as twistd reads it,
served in memory); a real twistd process logs the variables it applied by name only.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Iterator

import jwt
import orjson
import pytest

from httpstream.config import read_config
from httpstream.tap import Options
from httpstream.testing import MemoryServer
from tests.serverprocess import ListeningProcess, twistdCommand
from tests.web.helpers import openStream

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


VARIABLES = {
    "CENTRIFUGO_HTTP_API_KEY": API_KEY,
    "CENTRIFUGO_CLIENT_TOKEN_HMAC_SECRET_KEY": HMAC_KEY,
    "CENTRIFUGO_HTTP_STREAM_ENABLED": "true",
    "CENTRIFUGO_CHANNEL_NAMESPACES_CHAT_PRESENCE": "true",
    "CENTRIFUGO_NOT_A_SETTING": "1",
}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[MemoryServer]:
    path = tmp_path / "config.yaml"
    path.write_text(V6_YAML)
    with MemoryServer(read_config(path, environment(**VARIABLES)).config) as memory:
        yield memory


def api(server: MemoryServer, method: str, body: dict, key: str) -> tuple[int, bytes]:
    response = server.request(
        "POST", f"/api/{method}", {"Content-Type": "application/json", "X-API-Key": key}, orjson.dumps(body)
    )
    return response.status, response.body


def test_apiKeyFromEnvironment(server: MemoryServer) -> None:
    status, body = api(server, "info", {}, API_KEY)
    assert status == 200, body
    assert "nodes" in orjson.loads(body)["result"]
    status, _ = api(server, "info", {}, "wrong-key")
    assert status == 401


def test_originFromV6List(server: MemoryServer) -> None:
    """
    Allowed origins get the CORS headers that let a browser read the stream; another origin does not (whether the
    server then refuses it or leaves the blocking to the browser, as Centrifugo's HTTP transports do).
    """
    connect = orjson.dumps({"id": 1, "connect": {}})
    for origin in ["https://app.example.com", "https://x.example.org"]:
        stream = openStream(server, connect, headers={"Origin": origin})
        assert stream.status == 200, origin
        assert stream.headers.get("access-control-allow-origin") == origin
        assert "client" in stream.received()[0]["connect"]
        stream.close()
    stream = openStream(server, connect, headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in stream.headers
    stream.close()


def test_tokenKeyFromEnvironment(server: MemoryServer) -> None:
    token = jwt.encode({"sub": "alice", "exp": int(time.time()) + 600}, HMAC_KEY, algorithm="HS256")
    stream = openStream(server, orjson.dumps({"id": 1, "connect": {"token": token}}))
    assert stream.status == 200
    assert stream.received()[0]["connect"]["client"]
    # The namespace's presence came from CENTRIFUGO_CHANNEL_NAMESPACES_CHAT_PRESENCE.
    status, body = api(server, "presence_stats", {"channel": "chat:room"}, API_KEY)
    assert status == 200 and "result" in orjson.loads(body), body
    status, body = api(server, "presence_stats", {"channel": "news"}, API_KEY)
    assert orjson.loads(body)["error"]["code"] == 108, body
    stream.close()


def test_logNamesVariablesNotValues(tmp_path: Path) -> None:
    """The real twistd process, with the variables in its environment: its log names them, never their values."""
    path = tmp_path / "config.yaml"
    path.write_text(V6_YAML)
    process = ListeningProcess(command(path), cwd=tmp_path, env=environment(**VARIABLES))
    try:
        process.waitForPort(timeout=60)
        output = process.output
    finally:
        process.stop()
    assert (
        "environment variables applied: CENTRIFUGO_CHANNEL_NAMESPACES_CHAT_PRESENCE "
        "CENTRIFUGO_CLIENT_TOKEN_HMAC_SECRET_KEY CENTRIFUGO_HTTP_API_KEY CENTRIFUGO_HTTP_STREAM_ENABLED" in output
    ), output
    assert "environment variable CENTRIFUGO_NOT_A_SETTING is unknown and was ignored" in output
    assert API_KEY not in output and HMAC_KEY not in output


def test_badVariableStopsStartUp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """twistd's start-up in this process: the plugin's options read the process environment, as twistd's do."""
    path = tmp_path / "config.yaml"
    path.write_text(V6_YAML)
    for name in os.environ:
        if name.startswith("CENTRIFUGO_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CENTRIFUGO_HTTP_SERVER_PORT", "80a")
    with pytest.raises(SystemExit) as exited:
        Options().parseOptions(["-c", str(path)])
    assert exited.value.code == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ['httpstream: environment variable CENTRIFUGO_HTTP_SERVER_PORT: expected an integer, got "80a"']
