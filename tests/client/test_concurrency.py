"""
Tests for C{client_concurrency} (L{httpstream.client.inbound}): the commands Centrifugo runs in parallel (subscribe,
publish, history, presence, presence_stats, rpc, refresh, sub_refresh) stop holding one connection's queue, up to
that many in flight; the others still run in order; a subscribe under way reserves its channel.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from httpstream.client.client import Client
from httpstream.decisions import Refused, SubscribeDecision
from httpstream.protocol import codes
from httpstream.testing import FakePolicy, FakeTransport, encodeCommands, makeNode


class ConcurrencyTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.policy = FakePolicy()
        # Each RPC's answer, by its method name: a Deferred the test fires.
        self.rpcs: dict[str, Deferred[bytes]] = {}
        self.policy.answers["rpc"] = lambda connection, method, data: self.rpcs.setdefault(method, Deferred())

    def connected(self, concurrency: int, **settings: Any) -> tuple[Client, FakeTransport]:
        node = makeNode({"ping_interval": -1, "client_concurrency": concurrency, **settings}, self.clock,
                        policy=self.policy)
        self.node = node
        transport = FakeTransport("json")
        client = node.newClient(transport)
        assert isinstance(client, Client)
        self.send(client, {"id": 1, "connect": {}})
        self.assertIn("connect", transport.replies()[0])
        transport.clear()
        return client, transport

    def send(self, client: Client, *commands: dict[str, Any]) -> Deferred[None]:
        d = client.handleData(encodeCommands("json", commands))
        self.clock.advance(0)
        return d

    def rpc(self, commandID: int, method: str) -> dict[str, Any]:
        return {"id": commandID, "rpc": {"method": method, "data": b'"' + method.encode() + b'"'}}

    def asked(self, method: str) -> list[tuple[Any, ...]]:
        return [args for name, args in self.policy.asked if name == method]

    def test_sequentialByDefault(self) -> None:
        """
        With 0 or 1 (Centrifugo's default), an RPC waiting on the backend holds the commands after it.
        """
        for concurrency in (0, 1):
            self.rpcs.clear()
            client, transport = self.connected(concurrency)
            self.send(client, self.rpc(2, "a"), self.rpc(3, "b"))
            self.assertEqual(list(self.rpcs), ["a"])
            self.rpcs["a"].callback(b'"a"')
            self.rpcs["b"].callback(b'"b"')
            self.clock.advance(0)
            self.assertEqual([reply["id"] for reply in transport.replies()], [2, 3])

    def test_upToConcurrencyInFlight(self) -> None:
        """
        With N, up to N commands wait on the backend at once; the next one starts when one of them ends, and
        replies come as they end (the SDK matches them by id).
        """
        client, transport = self.connected(2)
        frame = self.send(client, self.rpc(2, "a"), self.rpc(3, "b"), self.rpc(4, "c"), self.rpc(5, "d"))
        self.assertEqual(list(self.rpcs), ["a", "b"])
        self.assertNoResult(frame)
        self.rpcs["b"].callback(b'"b"')
        self.clock.advance(0)
        self.assertEqual(list(self.rpcs), ["a", "b", "c"])
        self.assertEqual([reply["id"] for reply in transport.replies()], [3])
        self.rpcs["c"].callback(b'"c"')
        self.rpcs["a"].callback(b'"a"')
        self.clock.advance(0)
        # Every command has started: the frame is done though "d" is still in flight.
        self.assertEqual(list(self.rpcs), ["a", "b", "c", "d"])
        self.successResultOf(frame)
        self.rpcs["d"].callback(b'"d"')
        self.clock.advance(0)
        self.assertEqual([reply["id"] for reply in transport.replies()], [3, 4, 2, 5])

    def test_everyConcurrentKind(self) -> None:
        """
        subscribe, publish, history, presence, presence_stats and rpc all run at once; pongs, send and
        unsubscribe of another channel are not held behind them.
        """
        pending: Deferred[Any] = Deferred()
        for method in ("subscribing", "publishing", "history", "presence", "presenceStats", "message"):
            self.policy.answers[method] = lambda *args: pending
        client, transport = self.connected(8)
        self.send(
            client,
            {"id": 2, "subscribe": {"channel": "s"}},
            {"id": 3, "publish": {"channel": "p", "data": b"{}"}},
            {"id": 4, "history": {"channel": "h"}},
            {"id": 5, "presence": {"channel": "h"}},
            {"id": 6, "presence_stats": {"channel": "h"}},
            self.rpc(7, "r"),
            {"id": 8, "unsubscribe": {"channel": "other"}},
        )
        for method in ("subscribing", "publishing", "history", "presence", "presenceStats", "rpc"):
            self.assertEqual(len(self.asked(method)), 1, method)
        self.assertEqual(transport.replies(), [{"id": 8, "unsubscribe": {}}])

    def test_sameChannelTwice(self) -> None:
        """
        A second subscribe to a channel whose subscribe is under way is refused (105), as once it is made.
        """
        decision: Deferred[SubscribeDecision] = Deferred()
        self.policy.answers["subscribing"] = lambda connection, request: decision
        client, transport = self.connected(4)
        self.send(client, {"id": 2, "subscribe": {"channel": "a"}}, {"id": 3, "subscribe": {"channel": "a"}})
        self.assertEqual(transport.replies(), [{"id": 3, "error": {"code": 105, "message": "already subscribed"}}])
        decision.callback(SubscribeDecision())
        self.clock.advance(0)
        self.assertEqual(transport.replies()[-1], {"id": 2, "subscribe": {}})
        self.assertEqual(list(self.node.hub.subscribers("a")), [client])

    def test_channelLimitCountsSubscribesUnderWay(self) -> None:
        """
        client_channel_limit counts the subscribes under way: commands at once cannot go past it.
        """
        decisions: list[Deferred[SubscribeDecision]] = []
        self.policy.answers["subscribing"] = lambda connection, request: decisions.append(Deferred()) or decisions[-1]
        client, transport = self.connected(4, client_channel_limit=2)
        self.send(client, *({"id": n, "subscribe": {"channel": f"c{n}"}} for n in (2, 3, 4)))
        self.assertEqual(transport.replies(), [{"id": 4, "error": {"code": 106, "message": "limit exceeded"}}])
        decisions[0].errback(Refused(codes.ERROR_PERMISSION_DENIED))
        self.clock.advance(0)
        # A refused one frees its place.
        self.send(client, {"id": 5, "subscribe": {"channel": "c5"}})
        self.assertEqual(len(decisions), 3)

    def test_unsubscribeWaitsForTheSubscribe(self) -> None:
        """
        An unsubscribe of a channel whose subscribe is under way waits for its reply, then unsubscribes: the
        client ends up unsubscribed, and the replies keep the order of the commands.
        """
        decision: Deferred[SubscribeDecision] = Deferred()
        self.policy.answers["subscribing"] = lambda connection, request: decision
        client, transport = self.connected(4)
        self.send(client, {"id": 2, "subscribe": {"channel": "a"}}, {"id": 3, "unsubscribe": {"channel": "a"}},
                  self.rpc(4, "after"))
        self.assertEqual(transport.replies(), [])
        self.assertEqual(list(self.rpcs), [])  # held behind the unsubscribe, which runs in order
        decision.callback(SubscribeDecision())
        self.clock.advance(0)
        self.assertEqual(transport.replies(), [{"id": 2, "subscribe": {}}, {"id": 3, "unsubscribe": {}}])
        self.assertEqual((dict(client.subs), list(self.node.hub.subscribers("a"))), ({}, []))
        self.assertEqual(list(self.rpcs), ["after"])

    def test_unsubscribeAfterRefusedSubscribe(self) -> None:
        """
        A refused subscribe under way lets the waiting unsubscribe go on too (nothing to leave).
        """
        decision: Deferred[SubscribeDecision] = Deferred()
        self.policy.answers["subscribing"] = lambda connection, request: decision
        client, transport = self.connected(4)
        self.send(client, {"id": 2, "subscribe": {"channel": "a"}}, {"id": 3, "unsubscribe": {"channel": "a"}})
        decision.errback(Refused(codes.ERROR_PERMISSION_DENIED))
        self.clock.advance(0)
        self.assertEqual(sorted(reply["id"] for reply in transport.replies()), [2, 3])
        self.assertEqual(dict(client.subs), {})
        # The channel is free again.
        self.policy.answers["subscribing"] = SubscribeDecision()
        self.send(client, {"id": 4, "subscribe": {"channel": "a"}})
        self.assertEqual(transport.replies()[-1], {"id": 4, "subscribe": {}})

    def test_outcomesCountedPerCommand(self) -> None:
        """
        Each command in flight is counted by its own outcome, however their replies interleave.
        """
        client, transport = self.connected(4)
        self.send(client, self.rpc(2, "bad"), self.rpc(3, "good"))
        self.rpcs["good"].callback(b'"ok"')
        self.rpcs["bad"].errback(Refused(codes.ERROR_NOT_AVAILABLE))
        self.clock.advance(0)
        registry = self.node.metrics.registry
        count = lambda result: registry.get_sample_value(  # noqa: E731
            "httpstream_client_num_commands_total", {"method": "rpc", "result": result})
        self.assertEqual((count("ok"), count("error")), (1.0, 1.0))

    def test_failureInFlightLoggedQueueGoesOn(self) -> None:
        """
        An unexpected failure of a command in flight is error 100 and a logged traceback; the connection goes on.
        """
        client, transport = self.connected(2)
        self.send(client, self.rpc(2, "a"), self.rpc(3, "b"), self.rpc(4, "c"))
        self.rpcs["a"].errback(RuntimeError("backend bug"))
        self.clock.advance(0)
        self.assertEqual(transport.replies()[0]["error"]["code"], 100)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertIn("c", self.rpcs)
        self.assertFalse(client.closed)

    def test_closedWhileInFlight(self) -> None:
        """
        A connection that ends with commands in flight writes nothing more when they end.
        """
        client, transport = self.connected(4)
        self.send(client, self.rpc(2, "a"), self.rpc(3, "b"))
        client.transportClosed()
        self.rpcs["a"].callback(b'"a"')
        self.rpcs["b"].callback(b'"b"')
        self.clock.advance(0)
        self.assertEqual(transport.replies(), [])
