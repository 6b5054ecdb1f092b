"""
SIGHUP reloads what Centrifugo reloads (channel and namespace options, token keys) into a running server, with the
official JS SDK connected through it: the connection stays, and a namespace added to the file is served at once.
"""

from __future__ import annotations

import json
import os
import signal
import time

import jwt
from typing import Any, Callable

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from httpstream.policy.channels import ChannelError
from httpstream.config import config_from_dict
from httpstream.tap import makeService
from httpstream.policy.tokens import InvalidToken
from tests.serverprocess import ServerProcess
from tests.test_sdk_http_stream import SDK, ScenarioProcess, node  # noqa: F401 (node: fixture)

SCRIPT = SDK / "reload.mjs"

FRESH = {
    "name": "fresh",
    "history_size": 10,
    "history_ttl": "60s",
    "force_recovery": True,
    "allow_subscribe_for_client": True,
    "allow_subscribe_for_anonymous": True,
}


def rewrite(server: ServerProcess, **changes: Any) -> None:
    config = dict(server.config, **changes)
    server.configPath.write_text(json.dumps(config))


def waitForLog(server: ServerProcess, text: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in server.output:
        assert time.monotonic() < deadline, f"no {text!r} in the log:\n{server.output}"
        time.sleep(0.05)


def test_sighupAddsNamespaceUnderAConnectedClient(node: str, startServer: Callable[..., ServerProcess]) -> None:
    server = startServer({"log_level": "info"})
    for transports in ("websocket", "http_stream"):
        scenario = ScenarioProcess(
            [node, str(SCRIPT), "--url", server.url, "--channel", f"fresh:{transports}", "--transports", transports],
            server,
        )
        refused = scenario.waitFor(lambda e: e["event"] == "refused", what="a refused subscribe", untilEnd=True)
        assert refused["code"] == 102, refused  # unknown channel: no such namespace yet
        rewrite(server, namespaces=[FRESH])
        os.kill(server.pid, signal.SIGHUP)
        events = scenario.finish()
        subscribed = [e for e in events if e["event"] == "subscribed"]
        assert subscribed and subscribed[0]["recoverable"] is True, scenario.explain()  # the namespace's options
        assert [e["event"] for e in events].count("connected") == 1, scenario.explain()
        assert not [e for e in events if e["event"] in ("disconnected", "connecting") and e.get("code")], events
        waitForLog(server, "config reloaded from")
        assert "changed namespaces" in server.output
        rewrite(server, namespaces=[])  # the next round starts without the namespace again
        os.kill(server.pid, signal.SIGHUP)
        waitForLog(server, "config reloaded from", timeout=15)
    assert server.alive()


def test_invalidFileKeepsRunningConfig(startServer: Callable[..., ServerProcess]) -> None:
    server = startServer({"log_level": "info", "namespaces": [FRESH]})
    server.configPath.write_text('{"port": "not a number"')
    os.kill(server.pid, signal.SIGHUP)
    waitForLog(server, "config reload failed, keeping the running config")
    rewrite(server, namespaces=[FRESH], history_size="many")
    os.kill(server.pid, signal.SIGHUP)
    waitForLog(server, 'config key "history_size"')
    assert server.alive()
    lines = [line for line in server.output.splitlines() if "config reload failed" in line]
    assert len(lines) == 2 and "Traceback" not in server.output, server.output


def test_keysNeedingRestartAreNamedNotApplied(startServer: Callable[..., ServerProcess]) -> None:
    server = startServer({"log_level": "info"})
    port = server.port
    rewrite(server, port=port + 1 if port < 65535 else port - 1, history_size=5, history_ttl="10s")
    os.kill(server.pid, signal.SIGHUP)
    waitForLog(server, "config reloaded from")
    assert "need a restart, not applied: port" in server.output
    assert "changed history_size, history_ttl" in server.output
    assert server.alive()


class EmbeddedReloadTests(SynchronousTestCase):
    """L{HTTPStreamService.reload}: what SIGHUP runs, for a program that embeds httpstream and reloads itself."""

    def test_appliesChannelOptionsKeepsThePort(self) -> None:
        service = makeService({"config": {"port": 8123, "token_hmac_secret_key": "a" * 32}}, reactor=Clock())
        self.assertRaises(ChannelError, service.node.rules.options, "fresh:x")
        new = config_from_dict({"port": 9000, "namespaces": [FRESH], "token_hmac_secret_key": "b" * 32})[0]
        applied = service.reload(new)
        self.assertEqual(applied, ["token_hmac_secret_key", "namespaces"])
        self.assertEqual(service.node.rules.options("fresh:x").history_size, 10)
        self.assertEqual(service.config.port, 8123)
        signed = {key: jwt.encode({"sub": "u"}, key * 32, algorithm="HS256") for key in "ab"}
        self.assertEqual(service.node.tokens.verifyConnect(signed["b"], 0).user, "u")
        self.assertRaises(InvalidToken, service.node.tokens.verifyConnect, signed["a"], 0)
