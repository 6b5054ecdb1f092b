"""
Tests for the reject unrecovered subscribe flag (L{httpstream.client.subscriptions}, L{httpstream.policy.recovery}):
the JS SDK's C{getState} option sets it, and a recovery that fails is then answered with error 112 "unrecoverable
position" instead of C{recovered: false}; the SDK reloads the application's state and subscribes again from the
position that returns. In memory, on a fake clock, on both codecs.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import fail
from twisted.trial.unittest import SynchronousTestCase

from httpstream.client.client import Client
from httpstream.node.node import Node
from httpstream.protocol.codes import SUBSCRIBE_FLAG_CHANNEL_COMPACTION, SUBSCRIBE_FLAG_REJECT_UNRECOVERED
from httpstream.testing import FakeTransport
from tests.client.test_client_channels import HISTORY, ChannelTestsMixin, offsets
from tests.clienthelpers import ChannelHelpers, token

# What the SDK sends with getState: both flags.
GET_STATE = SUBSCRIBE_FLAG_CHANNEL_COMPACTION | SUBSCRIBE_FLAG_REJECT_UNRECOVERED


class UnrecoveredTestsMixin(ChannelHelpers):

    def connectAs(self, node: Node, user: str) -> tuple[Client, FakeTransport]:
        return self.client(node, token(sub=user))

    # A node whose "news" holds publications 1..n: the channel tests' own.
    recoveryNode = ChannelTestsMixin.recoveryNode

    def recovering(self, offset: int, epoch: str, flag: int = GET_STATE, **extra: Any) -> dict[str, Any]:
        request = {"channel": "news", "recoverable": True, "recover": True, "offset": offset, "epoch": epoch,
                   "flag": flag, **extra}
        return {k: v for k, v in request.items() if v}

    def assertNothingLeft(self, node: Node, client: Client, transport: FakeTransport) -> None:
        """The connection stays, subscribed to nothing; the node holds nothing of the refused subscription."""
        self.assertIsNone(transport.closed)
        self.assertEqual(client.channels, set())
        self.assertEqual(node.hub.channels(), [])
        self.assertEqual(self.successResultOf(node.presence.presence("news")), {})
        before = len(transport.messages)
        self.publish(node, "news", b'{"n":99}')
        self.assertEqual(len(transport.messages), before)

    def test_refusedWhenNotRecovered(self) -> None:
        """
        With the flag, each way a stream recovery fails (another epoch; publications trimmed by history_size,
        removed, expired; more missed than client_recovery_max_publication_limit) is error 112, and the
        connection is left as it was: no subscription, nothing in the hub or presence, no publication.
        """
        cases: list[tuple[str, dict[str, Any], int, int, str | None]] = [
            # name, settings, publications, client offset, client epoch (None: the stream's)
            ("other epoch", {}, 3, 1, "ZZZZ"),
            ("trimmed", {"history_size": 2}, 5, 1, None),
            ("over the limit", {"client_recovery_max_publication_limit": 2}, 3, 0, None),
            ("removed", {}, 3, 1, "removed"),
            ("expired", {"history_ttl": "5s", "history_meta_ttl": "3600s"}, 3, 1, "expired"),
            ("ahead of the stream", {}, 3, 7, None),
        ]
        for name, settings, count, clientOffset, clientEpoch in cases:
            node, epoch = self.recoveryNode(count, presence=True, **settings)
            if clientEpoch == "removed":
                self.successResultOf(node.broker.removeHistory("news"))
            elif clientEpoch == "expired":
                self.clock.advance(6)
            if clientEpoch is None or clientEpoch in ("removed", "expired"):
                clientEpoch = epoch
            client, transport = self.connectAs(node, "alice")
            reply = self.call(client, transport, "subscribe", self.recovering(clientOffset, clientEpoch))
            self.assertEqual(reply and reply.get("error"), {"code": 112, "message": "unrecoverable position"}, name)
            self.assertNothingLeft(node, client, transport)

    def test_recoveredWithTheFlag(self) -> None:
        """When recovery succeeds the flag changes nothing: the missed publications, recovered true."""
        node, epoch = self.recoveryNode(3)
        client, transport = self.connectAs(node, "alice")
        result = self.ok(client, transport, "subscribe", self.recovering(1, epoch))
        self.assertEqual(offsets(result.pop("publications")), [2, 3])
        self.assertEqual(result, {"recoverable": True, "positioned": True, "was_recovering": True,
                                  "recovered": True, "offset": 1, "epoch": epoch})
        self.publish(node, "news", b'{"n":4}')
        self.assertEqual([push["pub"]["offset"] for push in self.pushes(transport, "pub")], [4])

    def test_notRefused(self) -> None:
        """
        recovered false as before: without the flag (the compaction bit alone is not it); in cache recovery mode
        (upstream rejects in stream mode only); and when nothing is recovered at all (no recover asked, or a
        channel that does not recover, where the client's recover is ignored).
        """
        cases: list[tuple[str, dict[str, Any], dict[str, Any], bool]] = [
            # name, settings, request, was_recovering
            ("no flag", {}, self.recovering(1, "ZZZZ", flag=0), True),
            ("compaction only", {}, self.recovering(1, "ZZZZ", flag=SUBSCRIBE_FLAG_CHANNEL_COMPACTION), True),
            ("cache mode", {"force_recovery_mode": "cache"}, self.recovering(1, "ZZZZ"), True),
            ("not recovering", {}, {"channel": "news", "recoverable": True, "flag": GET_STATE}, False),
            ("not recoverable", {"allow_recovery": False}, self.recovering(1, "ZZZZ", recoverable=False), False),
        ]
        for name, settings, request, wasRecovering in cases:
            node, epoch = self.recoveryNode(3, **settings)
            client, transport = self.connectAs(node, "alice")
            result = self.ok(client, transport, "subscribe", request)
            self.assertNotIn("recovered", result, name)
            self.assertEqual(result.get("was_recovering", False), wasRecovering, name)
            self.assertEqual(client.channels, {"news"}, name)

    def test_subscribeAgainFromTheReloadedPosition(self) -> None:
        """After 112 the same connection subscribes again from the top the application read: recovered."""
        node, epoch = self.recoveryNode(5, history_size=2)
        client, transport = self.connectAs(node, "alice")
        self.assertEqual(self.errorCode(client, transport, "subscribe", self.recovering(1, epoch)), 112)
        top = self.successResultOf(node.broker.history("news"))
        result = self.ok(client, transport, "subscribe", self.recovering(top.offset, top.epoch))
        self.assertEqual(result.get("recovered"), True)
        self.publish(node, "news", b'{"n":6}')
        self.assertEqual([push["pub"]["offset"] for push in self.pushes(transport, "pub")], [6])

    def test_serverSideSubscriptionIgnoresTheFlag(self) -> None:
        """ConnectRequest.subs recovers a server-side subscription: the flag is not the client's to set there."""
        node = self.node(namespaces=[{"name": "srv", **HISTORY, "force_recovery": True}])
        self.publish(node, "srv:x")
        client, transport = self.open(node)
        self.send(client, {"id": 1, "connect": {
            "token": token(sub="alice", channels=["srv:x"]),
            "subs": {"srv:x": {"recover": True, "offset": 1, "epoch": "ZZZZ", "flag": GET_STATE}},
        }})
        [reply] = transport.replies()
        sub = reply["connect"]["subs"]["srv:x"]
        self.assertEqual(sub.get("was_recovering"), True)
        self.assertNotIn("recovered", sub)
        self.assertEqual(client.channels, {"srv:x"})

    def test_engineFailureIsNotUnrecoverable(self) -> None:
        """An engine that fails while recovering is still error 100 (temporary: the SDK retries), not 112."""
        node, epoch = self.recoveryNode(3)
        node.broker.history = lambda *a, **k: fail(ConnectionError("engine down"))  # type: ignore[method-assign]
        client, transport = self.connectAs(node, "alice")
        self.assertEqual(self.errorCode(client, transport, "subscribe", self.recovering(1, epoch)), 100)
        self.assertEqual(client.channels, set())
        self.flushLoggedErrors(ConnectionError)


class JSONUnrecoveredTests(UnrecoveredTestsMixin, SynchronousTestCase):
    protocol = "json"


class ProtobufUnrecoveredTests(UnrecoveredTestsMixin, SynchronousTestCase):
    protocol = "protobuf"
