"""
Helpers for the in-memory client tests (tests/test_client_*.py): a node on a fake clock, connections, one command
at a time with its reply, the pushes a connection received.
"""

from __future__ import annotations

from typing import Any

from treq.testing import StubTreq
from twisted.web.resource import Resource

from httpstream.client.client import Client
from httpstream.client.factory import ClientFactory
from httpstream.config import config_from_dict
from httpstream.node.node import Node
from httpstream.policy.proxy import ProxyClient
from httpstream.testing import FakeTransport, decodeReply
from tests.client.test_client import NOW, SECRET, ClientHelpers, token

__all__ = ["NOW", "SECRET", "ChannelHelpers", "token"]


class ChannelHelpers(ClientHelpers):
    """L{ClientHelpers} plus commands by name, pushes by kind, and nodes with a proxy backend."""

    def setUp(self) -> None:
        super().setUp()
        self._ids: dict[str, int] = {}

    def node(self, broker: Any = None, backend: Resource | None = None, mapBroker: Any = None,
             **settings: Any) -> Node:
        """
        A node with C{settings} (Centrifugo keys; C{namespaces} a list of dicts), pings off unless asked, and the
        proxy talking to C{backend} (a twisted.web resource) through StubTreq.
        """
        settings.setdefault("token_hmac_secret_key", SECRET)
        settings.setdefault("ping_interval", -1)
        config, warnings = config_from_dict({"name": "test", **settings})
        if warnings:
            raise ValueError("; ".join(warnings))
        proxy = ProxyClient(config, self.clock, StubTreq(backend if backend is not None else Resource()))
        return Node(config, self.clock, broker=broker, proxy=proxy, clientFactory=ClientFactory(self.clock),
                    mapBroker=mapBroker)

    def client(self, node: Node, jwt: str = "", **transportArgs: Any) -> tuple[Client, FakeTransport]:
        """A connected client (its transport cleared): L{connected} for this test's protocol."""
        return self.connected(node, jwt, **transportArgs)

    def call(self, client: Client, transport: FakeTransport, method: str, request: dict[str, Any]) -> dict | None:
        """Send one command; return its reply (None when none came, e.g. the client was disconnected)."""
        commandID = self._ids.get(client.clientID, 1) + 1
        self._ids[client.clientID] = commandID
        before = len(transport.messages)
        self.send(client, {"id": commandID, method: request})
        for message in transport.messages[before:]:
            reply = decodeReply(transport.protocol, message)
            if reply.get("id") == commandID:
                return reply
        return None

    def ok(self, client: Client, transport: FakeTransport, method: str, request: dict[str, Any]) -> dict:
        """L{call}, which must succeed: its result."""
        reply = self.call(client, transport, method, request)
        self.assertIsNotNone(reply, f"no reply to {method} {request!r}; closed: {transport.closed}")
        assert reply is not None
        self.assertIn(method, reply, reply)
        return reply[method]

    def errorCode(self, client: Client, transport: FakeTransport, method: str, request: dict[str, Any]) -> int:
        """L{call}: the code of its error reply (0 for a result; the disconnect code when it disconnected)."""
        reply = self.call(client, transport, method, request)
        if reply is None:
            return transport.closed[0] if transport.closed else -1
        return reply["error"]["code"] if "error" in reply else 0

    def pushes(self, transport: FakeTransport, kind: str, channel: str | None = None) -> list[dict]:
        """The pushes of C{kind} ("pub", "join", ...) written so far, as C{{"channel": .., kind: ..}}."""
        found = []
        for reply in transport.replies():
            push = reply.get("push")
            if push is not None and kind in push and (channel is None or push.get("channel") == channel):
                found.append(push)
        return found

    def tick(self, seconds: float, step: float = 1.0) -> None:
        """Let C{seconds} pass in steps (a L{Clock} runs a repeating timer once per C{advance})."""
        for _ in range(round(seconds / step)):
            self.clock.advance(step)

    def publish(self, node: Node, channel: str, data: bytes = b'{"n":1}', **kwargs: Any) -> dict:
        """Publish through the node (as the server API does) and let the writers write."""
        d = node.publish(channel, data, **kwargs)
        self.clock.advance(0)
        return self.successResultOf(d)
