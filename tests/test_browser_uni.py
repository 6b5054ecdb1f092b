"""
A plain ``EventSource`` in a real browser (Debian's Chromium driven by playwright-core: tests/browser/unisse.mjs)
against ``/connection/uni_sse`` of a real ``twistd httpstream`` process: the unidirectional SSE transport needs no
SDK. The connect request travels in ``cf_connect``; the connection is subscribed server-side by its token's
``channels``; a publication and a ping arrive as events, and the API's disconnect ends the stream with its push.

Chromium, playwright-core and the rest are installed as tests/test_browser.py does (its fixtures).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from urllib.parse import quote

import jwt

from tests.serverprocess import ServerProcess
from tests.test_browser import CHROMIUM, HARNESS, _ensureChromium, _npmCi

SECRET = "browser-uni-secret-0123456789abcdef0123456789"
KEY = "browser-uni-api-key"


def test_eventSourceOnUniSSE(startServer: Callable[..., ServerProcess]) -> None:
    _ensureChromium()
    _npmCi(HARNESS)
    server = startServer(
        {"uni_sse": True, "health": True, "token_hmac_secret_key": SECRET, "api_key": KEY, "ping_interval": "2s",
         "pong_timeout": "1s"}
    )
    connect = {"token": jwt.encode({"sub": "ada", "channels": ["board"]}, SECRET, algorithm="HS256")}
    arguments = [
        "node", "unisse.mjs", "--chromium", str(CHROMIUM),
        "--page", f"{server.url}/health",
        "--sse", f"{server.url}/connection/uni_sse?cf_connect={quote(json.dumps(connect))}",
        "--api", server.url, "--key", KEY, "--channel", "board", "--user", "ada",
    ]
    result = subprocess.run(arguments, check=False, capture_output=True, text=True, timeout=60, cwd=HARNESS)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{server.output}"
    events = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    seen = [event for event in events if event["event"] == "es"]
    assert seen[0] == {"event": "es", "type": "open"}
    messages = [event["data"] for event in seen if event["type"] == "message"]
    assert messages[0]["connect"]["subs"] == {"board": {}}
    assert "pong" not in messages[0]["connect"]
    assert {"channel": "board", "pub": {"data": {"text": "to an EventSource"}}} in messages
    assert {} in messages
    assert messages[-1] == {"disconnect": {"code": 3503, "reason": "force disconnect"}}
    # The stream's end is the EventSource's error; the page closed it there, so it did not reconnect.
    assert seen[-1]["type"] == "error"
    assert server.output.count("GET /connection/uni_sse") == 1
