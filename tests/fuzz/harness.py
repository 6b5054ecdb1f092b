"""
What every fuzz test of a client entry point shares: a node on the memory engine and a fake clock, a log observer
that fails the example on any event at level error or above, the documented answers, and the round trip that
shows the node still serves a valid client afterwards.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any, Optional

from twisted.internet.task import Clock
from twisted.logger import LogEvent, LogLevel, formatEvent, globalLogPublisher

from httpstream.client.factory import ClientFactory
from httpstream.protocol import codes
from httpstream.client.factory import ClientFactory
from httpstream.config import config_from_dict
from httpstream.protocol.codes import DISCONNECT_INSUFFICIENT_STATE, DISCONNECT_SUBSCRIPTION_EXPIRED
from httpstream.node.node import Node
from httpstream.protocol import client_pb2
from httpstream.testing import FakeTransport, decodeReply, encodeCommands, makeNode

from .strategies import NOW, SECRET

_ALLOW = {
    f"allow_{action}_for_{who}": True
    for action in ("subscribe", "publish", "presence", "history")
    for who in ("client", "anonymous")
}

# A node where every command can get far: history and recovery, presence and join/leave, deltas, user-limited
# and private channels, an RPC method and a send hook (registered by makeFuzzNode).
SETTINGS: dict[str, Any] = {
    "token_hmac_secret_key": SECRET,
    "allow_anonymous_connect_without_token": True,
    **_ALLOW,
    "namespaces": [
        {
            "name": "hist",
            "history_size": 5,
            "history_ttl": "60s",
            "allow_recovery": True,
            "allow_positioning": True,
            "allowed_delta_types": ["fossil"],
            "delta_publish": True,
            "allow_user_limited_channels": True,
            **_ALLOW,
        },
        {"name": "pres", "presence": True, "join_leave": True, "force_push_join_leave": True, **_ALLOW},
    ],
}

# The reply errors and disconnects a client may get for what it sends: Centrifugo's codes, less the server faults
# (100, 3004), which client input must never cause.
ERRORS = {
    error.code: error.message
    for name, error in vars(codes).items()
    if name.startswith("ERROR_") and error is not codes.ERROR_INTERNAL
}
DISCONNECTS = {
    disconnect.code: disconnect.reason
    for disconnect in [
        *(value for name, value in vars(codes).items() if name.startswith("DISCONNECT_")),
        DISCONNECT_INSUFFICIENT_STATE,
        DISCONNECT_SUBSCRIPTION_EXPIRED,
    ]
    if disconnect is not codes.DISCONNECT_SERVER_ERROR
}
UNSUBSCRIBES = {2000, 2500, 2501}


_PROGRESS = os.environ.get("HTTPSTREAM_FUZZ_PROGRESS", "")
_counts: dict[str, int] = {}
_started = time.monotonic()


def progress() -> None:
    """
    Count one example of the running test; with C{HTTPSTREAM_FUZZ_PROGRESS} set to a directory, write the count
    there every 1,000 examples (a long run can be watched, and reported on if it must be stopped).
    """
    if not _PROGRESS:
        return
    name = os.environ.get("PYTEST_CURRENT_TEST", "unknown").split(" ")[0].replace("/", "_").replace(":", "_")
    count = _counts[name] = _counts.get(name, 0) + 1
    if count % 1000 == 0:
        with open(os.path.join(_PROGRESS, name), "w") as f:
            f.write(f"{count} examples, {time.monotonic() - _started:.0f} s since the session started\n")


class LogWatch:
    """Collects the log events at level error and above while it is installed (a context manager)."""

    def __init__(self) -> None:
        self.errors: list[LogEvent] = []

    def __call__(self, event: LogEvent) -> None:
        if event.get("log_level", LogLevel.info) >= LogLevel.error:
            self.errors.append(event)

    def __enter__(self) -> "LogWatch":
        progress()
        globalLogPublisher.addObserver(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        globalLogPublisher.removeObserver(self)

    def check(self) -> None:
        if self.errors:
            shown = []
            for event in self.errors:
                failure = event.get("log_failure")
                shown.append(formatEvent(event) + ("\n" + failure.getTraceback() if failure is not None else ""))
            raise AssertionError("error-level log events:\n" + "\n".join(shown))


def makeFuzzNode(clock: Optional[Clock] = None, broker: Any = None, presence: Any = None) -> Node:
    """A node with L{SETTINGS}, on a fake clock at L{NOW} unless given one, on the memory engine unless given one."""
    if clock is None:
        clock = Clock()
        clock.advance(NOW)
    if presence is None:
        node = makeNode(SETTINGS, clock, broker=broker)
    else:
        config, _ = config_from_dict({"name": "test", **SETTINGS})
        node = Node(config, clock, broker=broker, presence=presence, rng=random.Random(0),
                    clientFactory=ClientFactory(clock))
    node.rpc.register("echo", lambda ctx, data: data)
    node.rpc.register("fail", _rpcFails)
    node.rpc.onSend(lambda ctx, data: None)
    return node


def _rpcFails(ctx: Any, data: bytes) -> bytes:
    from httpstream.policy.rpc import RPCError

    raise RPCError(4000, "custom")


def checkReply(protocol: str, message: bytes, serverFault: bool = False) -> dict[str, Any]:
    """
    One message a client was sent: a well-formed Reply with only documented errors and disconnects.

    @param serverFault: the engine was made to fail, so error 100 and disconnect 3004 are right answers too.
    """
    if protocol == "json":
        assert b"\n" not in message, message
    reply = decodeReply(protocol, message)
    if protocol == "protobuf":
        client_pb2.Reply.FromString(message)  # strict: the whole message parses
    error = reply.get("error")
    if error is not None:
        code = error.get("code")
        assert code in ERRORS or 400 <= code < 2000 or (serverFault and code == 100), reply
    push = reply.get("push", {})
    if "disconnect" in push:
        code = push["disconnect"].get("code")
        if not (serverFault and code == codes.DISCONNECT_SERVER_ERROR.code):
            assert code in DISCONNECTS, reply
            assert push["disconnect"].get("reason") == DISCONNECTS[code], reply
    if "unsubscribe" in push:
        assert push["unsubscribe"].get("code") in UNSUBSCRIBES, reply
    return reply


def checkTransport(transport: FakeTransport, serverFault: bool = False) -> list[dict[str, Any]]:
    """Everything a fake transport was given is documented: its replies, and the code it was closed with."""
    replies = [checkReply(transport.protocol, message, serverFault) for message in transport.messages]
    if transport.closed is not None:
        code, reason = transport.closed
        if not (serverFault and code == codes.DISCONNECT_SERVER_ERROR.code):
            assert code in DISCONNECTS and DISCONNECTS[code] == reason, transport.closed
    return replies


def checkServes(node: Node, protocol: str) -> None:
    """A new client can still connect, subscribe, publish and receive its publication on C{node}."""
    clock = node.reactor
    transport = FakeTransport(protocol)
    client = node.newClient(transport)
    client.handleData(encodeCommands(protocol, [
        {"id": 1, "connect": {}},
        {"id": 2, "subscribe": {"channel": "hist:check"}},
        {"id": 3, "publish": {"channel": "hist:check", "data": b'{"ok":true}'}},
    ]))
    clock.advance(0)  # type: ignore[attr-defined]
    replies = transport.replies()
    assert transport.closed is None, (transport.closed, replies)
    assert [r.get("id") for r in replies if "id" in r][:3] == [1, 2, 3], replies
    assert any(r.get("push", {}).get("pub", {}).get("data") == b'{"ok":true}' for r in replies), replies
    client.transportClosed()
    assert client.clientID not in node.clients


def checkGone(node: Node, client: Any) -> None:
    """A closed client left nothing behind on the node (no subscription, no registration)."""
    assert client.closed
    assert client.clientID not in node.clients
    for channel in node.hub.channels():
        assert client not in node.hub.subscribers(channel), channel
    if client.sessionID:
        assert node.registry.get(client.sessionID) is None
