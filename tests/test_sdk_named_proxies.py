"""
Named proxies and RPC namespaces (Centrifugo's granular proxies) with the official JS SDK over WebSocket, against a
real server process and two real HTTP backends: a channel namespace's subscribe proxy and each RPC namespace's
proxy reach their own backend, and each backend sees only its own calls. The server reads a v6 configuration
(proxies, channel.namespaces[].subscribe_proxy_name, rpc.namespaces).
"""

from __future__ import annotations

import subprocess
from typing import Any, Callable

import pytest

from tests.proxybackend import ProxyBackend, Reply
from tests.serverprocess import ServerProcess
from tests.test_sdk_http_stream import SDK, assertCleanLog, by, explain, node, parseEvents

__all__ = ["node"]  # the fixture, imported so pytest finds it here

SCRIPT = SDK / "named_proxies.mjs"


def alpha(body: Any) -> Any:
    """The chat backend: allows subscriptions (with data saying so) and answers chat:* RPCs."""
    if "channel" in body:
        return {"result": {"data": {"from": "alpha", "channel": body["channel"]}}}
    if body.get("method", "").startswith("chat:"):
        return {"result": {"data": {"from": "alpha", "method": body["method"]}}}
    return Reply(500, b"not alpha's")


def beta(body: Any) -> Any:
    """The billing backend: answers billing:pay, refuses billing:refund with its own error."""
    if body.get("method") == "billing:pay":
        return {"result": {"data": {"from": "beta", "method": body["method"]}}}
    if body.get("method") == "billing:refund":
        return {"error": {"code": 4002, "message": "no refunds"}}
    return Reply(500, b"not beta's")


@pytest.mark.parametrize("protocol", ["json", "protobuf"])
def test_namedProxiesAndRPCNamespaces(node: str, startServer: Callable[..., ServerProcess], protocol: str) -> None:
    with ProxyBackend({"/alpha": alpha}) as backendA, ProxyBackend({"/beta": beta}) as backendB:
        server = startServer({
            "proxies": [
                {"name": "alpha", "endpoint": backendA.endpoint("/alpha"), "timeout": "3s",
                 "http": {"static_headers": {"X-Backend-Key": "alpha-key"}}},
                {"name": "beta", "endpoint": backendB.endpoint("/beta"), "timeout": "3s"},
            ],
            "channel": {"namespaces": [
                {"name": "chat", "subscribe_proxy_enabled": True, "subscribe_proxy_name": "alpha"},
                {"name": "open", "allow_subscribe_for_client": True, "allow_subscribe_for_anonymous": True},
            ]},
            "rpc": {"namespaces": [
                {"name": "billing", "proxy_enabled": True, "proxy_name": "beta"},
                {"name": "chat", "proxy_enabled": True, "proxy_name": "alpha"},
            ]},
        })
        result = subprocess.run(
            [node, str(SCRIPT), "--url", server.url, "--protocol", protocol],
            check=False, capture_output=True, text=True, timeout=60,
        )
        assert result.returncode == 0, explain(server, result.stdout, result.stderr)
        events = parseEvents(result.stdout)

        subscribed = {event["channel"]: event["data"] for event in by(events, "subscribed")}
        assert subscribed == {"chat:room": {"from": "alpha", "channel": "chat:room"}, "open:room": None}
        calls = {event["method"]: event for event in by(events, "rpc")}
        assert calls["billing:pay"]["data"] == {"from": "beta", "method": "billing:pay"}
        assert calls["chat:hello"]["data"] == {"from": "alpha", "method": "chat:hello"}
        assert calls["billing:refund"]["error"] == {"code": 4002, "message": "no refunds"}
        assert calls["nope:x"]["error"]["code"] == 104  # no such RPC namespace
        assert calls["plain"]["error"]["code"] == 108  # rpc.without_namespace has no proxy

        # Each backend saw its own calls only, in order; alpha's requests carried its static header.
        requestsA = backendA.requestsTo("/alpha")
        assert [r.body.get("channel") or r.body.get("method") for r in requestsA] == ["chat:room", "chat:hello"]
        assert all(r.headers["x-backend-key"] == "alpha-key" for r in requestsA)
        assert [r.body["method"] for r in backendB.requestsTo("/beta")] == ["billing:pay", "billing:refund"]
        assert all("x-backend-key" not in r.headers for r in backendB.requestsTo("/beta"))
        assertCleanLog(server)
