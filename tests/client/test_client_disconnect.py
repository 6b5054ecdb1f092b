"""
Tests for the end of a L{httpstream.client.client.Client} when things go wrong: a transport whose write or close fails,
and disconnect codes a codec cannot carry. The client always ends up closed, gone from the node, and its
transport told to close (or aborted): never a zombie, never a traceback into the caller.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from httpstream.protocol import client_pb2
from httpstream.testing import FakeTransport
from tests.client.test_client import NO_PING, OPEN, ClientHelpers, disconnectPush


class FailingWrites(FakeTransport):
    """Writes raise once C{fail} is set."""

    fail = False

    def writeMessages(self, messages: Any) -> None:
        if self.fail:
            raise RuntimeError("write failed")
        super().writeMessages(messages)


class FailingClose(FakeTransport):
    def close(self, code: int, reason: str) -> None:
        super().close(code, reason)
        raise RuntimeError("close failed")


class DisconnectTests(ClientHelpers, SynchronousTestCase):
    def connectedOn(self, transport: FakeTransport) -> Any:
        node = self.node(**OPEN, **NO_PING)
        client = node.newClient(transport)
        self.send(client, {"id": 1, "connect": {}})
        self.send(client, {"id": 2, "subscribe": {"channel": "news"}})
        transport.clear()
        return node, client

    def test_writeErrorDisconnects3009(self) -> None:
        """
        A batch the transport refused is not dropped in silence: the client is disconnected with 3009 "write
        error" (its SDK reconnects and recovers), leaves the hub, and the error is logged once.
        """
        transport = FailingWrites()
        node, client = self.connectedOn(transport)
        transport.fail = True
        self.send(client, {"id": 3, "publish": {"channel": "news", "data": {"n": 1}}})
        self.send(client, {"id": 4, "publish": {"channel": "news", "data": {"n": 2}}})
        self.assertTrue(client.closed)
        self.assertEqual(transport.closed, (3009, "write error"))
        self.assertNotIn(client.clientID, node.clients)
        self.assertEqual(node.hub.subscribers("news"), [])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_disconnectPushedWhileTransportPaused(self) -> None:
        """
        A server-side disconnect while the transport is paused (its socket busy for a moment) still writes what was
        queued and the disconnect push, in order, before the transport closes.
        """
        transport = FakeTransport()
        node, client = self.connectedOn(transport)
        transport.pause()
        node.publish("news", b'{"n":1}')
        client.disconnect(4000, "go away")
        replies = transport.replies()
        self.assertEqual(replies[0]["push"]["pub"]["data"], b'{"n":1}')
        self.assertEqual(replies[-1], disconnectPush(4000, "go away"))
        self.assertEqual(transport.closed, (4000, "go away"))

    def test_closeErrorStillCleansUp(self) -> None:
        """A transport whose close raises: the client is closed and gone anyway, and the caller sees no error."""
        transport = FailingClose()
        node, client = self.connectedOn(transport)
        client.disconnect(4000, "custom")
        self.assertTrue(client.closed)
        self.assertNotIn(client.clientID, node.clients)
        self.assertEqual(transport.closed, (4000, "custom"))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_oddCodesInRange(self) -> None:
        """Any uint32 code goes in the Disconnect push as it is (the SDKs reconnect on the ones they do not know)."""
        for code in (70000, 999, 1005, 2**32 - 1):
            transport = FakeTransport("json")
            node, client = self.connectedOn(transport)
            client.disconnect(code, "odd")
            self.assertEqual(transport.replies()[-1], disconnectPush(code, "odd"))
            self.assertEqual(transport.closed, (code, "odd"))

    def test_codeOutOfRange(self) -> None:
        """
        The protocol's code is a uint32: a negative or larger code is pushed as 3011 "force reconnect" (what a
        WebSocket close frame gets for a code it cannot carry), in both codecs, instead of raising half way
        through the close (Protobuf's encoder refuses it) or sending what no SDK can decode.
        """
        for protocol in ("json", "protobuf"):
            self.protocol = protocol
            for code in (-5, 2**32, 2**70):
                transport = FakeTransport(protocol)
                node, client = self.connectedOn(transport)
                client.disconnect(code, "odd")
                self.assertTrue(client.closed)
                self.assertNotIn(client.clientID, node.clients)
                if protocol == "json":
                    self.assertEqual(transport.replies()[-1], disconnectPush(3011, "force reconnect"))
                else:
                    reply = client_pb2.Reply.FromString(transport.messages[-1])
                    self.assertEqual((reply.push.disconnect.code, reply.push.disconnect.reason),
                                     (3011, "force reconnect"))
                self.assertEqual(transport.closed, (code, "odd"))

    def test_reasonCodecCannotEncode(self) -> None:
        """A reason with a lone surrogate (no UTF-8 for it) does not stop the disconnect."""
        transport = FakeTransport("json")
        node, client = self.connectedOn(transport)
        client.disconnect(4000, "bad \ud800")
        self.assertEqual(transport.replies()[-1], disconnectPush(3011, "force reconnect"))
        self.assertTrue(client.closed)
