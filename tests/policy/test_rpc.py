"""
Tests for L{httpstream.policy.rpc}: Python RPC handlers and send hooks, and how an RPC is dispatched between them, the
RPC proxy, 104 and 108.
"""

from __future__ import annotations

from typing import Any

from treq.testing import StubTreq
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from httpstream.protocol import codes
from httpstream.config import Config
from httpstream.policy.proxy import ProxyClient, ProxyContext, ProxyDisconnect, ProxyError
from httpstream.policy.rpc import RPCContext, RPCDisconnect, RPCError, RPCRegistry
from tests.policy.test_proxy import Backend

CTX = RPCContext(clientID="c1", transport="websocket", protocol="json", user="u1")


class HandleTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.registry = RPCRegistry()

    def test_contextIsTheProxyContext(self) -> None:
        """One value per connection serves the proxy and the Python handlers."""
        self.assertIs(RPCContext, ProxyContext)

    def test_synchronousHandler(self) -> None:
        calls = []

        def echo(ctx: RPCContext, data: bytes) -> bytes:
            calls.append((ctx, data))
            return b'{"echo":' + data + b"}"

        self.registry.register("echo", echo)
        self.assertEqual(self.successResultOf(self.registry.handle(CTX, "echo", b"[1]")), b'{"echo":[1]}')
        self.assertEqual(calls, [(CTX, b"[1]")])

    def test_asynchronousHandler(self) -> None:
        pending: defer.Deferred[bytes] = defer.Deferred()
        self.registry.register("slow", lambda ctx, data: pending)
        d = self.registry.handle(CTX, "slow", b"")
        self.assertNoResult(d)
        pending.callback(b'"done"')
        self.assertEqual(self.successResultOf(d), b'"done"')

    def test_noneAndBuffers(self) -> None:
        """None means no data (b""); bytearray and memoryview are accepted as bytes."""
        self.registry.register("none", lambda ctx, data: None)
        self.registry.register("array", lambda ctx, data: bytearray(b"12"))
        self.registry.register("view", lambda ctx, data: memoryview(b"34"))
        self.assertEqual(self.successResultOf(self.registry.handle(CTX, "none", b"")), b"")
        self.assertEqual(self.successResultOf(self.registry.handle(CTX, "array", b"")), b"12")
        self.assertEqual(self.successResultOf(self.registry.handle(CTX, "view", b"")), b"34")

    def test_unknownMethod(self) -> None:
        """A method that is not registered: 104 "method not found"."""
        error = self.failureResultOf(self.registry.handle(CTX, "nope", b""), RPCError).value
        self.assertEqual(error.error, codes.ERROR_METHOD_NOT_FOUND)

    def test_rpcError(self) -> None:
        """A handler raising RPCError answers with that error, as given or from a codes.Error."""

        def deny(ctx: RPCContext, data: bytes) -> bytes:
            raise RPCError(1403, "not yours", temporary=True)

        self.registry.register("deny", deny)
        self.registry.register("later", lambda ctx, data: defer.fail(RPCError(codes.ERROR_PERMISSION_DENIED)))
        error = self.failureResultOf(self.registry.handle(CTX, "deny", b""), RPCError).value
        self.assertEqual(error.error, codes.Error(1403, "not yours", True))
        error = self.failureResultOf(self.registry.handle(CTX, "later", b""), RPCError).value
        self.assertEqual(error.error, codes.ERROR_PERMISSION_DENIED)

    def test_disconnect(self) -> None:
        def kick(ctx: RPCContext, data: bytes) -> bytes:
            raise RPCDisconnect(4500, "banned")

        self.registry.register("kick", kick)
        disconnect = self.failureResultOf(self.registry.handle(CTX, "kick", b""), RPCDisconnect).value
        self.assertEqual(disconnect.disconnect, codes.Disconnect(4500, "banned"))
        self.assertEqual(RPCDisconnect(codes.DISCONNECT_FORCE_NO_RECONNECT).disconnect,
                         codes.DISCONNECT_FORCE_NO_RECONNECT)

    def test_errorsAreProxyErrors(self) -> None:
        """One except clause catches proxied and local RPC failures alike."""
        self.assertIsInstance(RPCError(1000, "x"), ProxyError)
        self.assertIsInstance(RPCDisconnect(4000, "x"), ProxyDisconnect)

    def test_unexpectedException(self) -> None:
        """Any other exception is logged and answered with 100 "internal server error"."""

        def broken(ctx: RPCContext, data: bytes) -> bytes:
            raise ZeroDivisionError()

        self.registry.register("broken", broken)
        error = self.failureResultOf(self.registry.handle(CTX, "broken", b""), RPCError).value
        self.assertEqual(error.error, codes.ERROR_INTERNAL)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_notBytes(self) -> None:
        self.registry.register("dict", lambda ctx, data: {"a": 1})
        error = self.failureResultOf(self.registry.handle(CTX, "dict", b""), RPCError).value
        self.assertEqual(error.error, codes.ERROR_INTERNAL)
        self.assertEqual(len(self.flushLoggedErrors(TypeError)), 1)

    def test_cancelPassesThrough(self) -> None:
        pending: defer.Deferred[bytes] = defer.Deferred()
        self.registry.register("slow", lambda ctx, data: pending)
        d = self.registry.handle(CTX, "slow", b"")
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_registerReplacesAndUnregister(self) -> None:
        self.registry.register("m", lambda ctx, data: b"1")
        self.registry.register("m", lambda ctx, data: b"2")
        self.registry.register("", lambda ctx, data: b"unnamed")
        self.assertEqual(self.successResultOf(self.registry.handle(CTX, "m", b"")), b"2")
        self.assertEqual(self.successResultOf(self.registry.handle(CTX, "", b"")), b"unnamed")
        self.assertEqual(self.registry.methods(), ["", "m"])
        self.assertIn("m", self.registry)
        self.assertEqual(len(self.registry), 2)
        self.registry.unregister("m")
        self.registry.unregister("never")
        self.assertNotIn("m", self.registry)

    def test_notCallable(self) -> None:
        self.assertRaises(TypeError, self.registry.register, "m", b"not a function")
        self.assertRaises(TypeError, self.registry.onSend, None)


class DispatchTests(SynchronousTestCase):
    """Local handler, then the RPC proxy, then 104 or 108: Centrifugo's order (reference/messages.md 1.5)."""

    def setUp(self) -> None:
        self.registry = RPCRegistry()
        self.backend = Backend({"result": {"data": {"from": "backend"}}})
        clock = Clock()
        self.proxy = ProxyClient(Config(proxy_rpc_endpoint="http://backend.test/rpc"), clock, StubTreq(self.backend))
        self.noProxy = ProxyClient(Config(), clock, StubTreq(self.backend))

    def test_nothingAtAll(self) -> None:
        """No handler and no proxy: 108 "not available"."""
        for proxy in (None, self.noProxy):
            error = self.failureResultOf(self.registry.dispatch(CTX, "m", b"1", proxy), RPCError).value
            self.assertEqual(error.error, codes.ERROR_NOT_AVAILABLE)

    def test_unknownWithHandlers(self) -> None:
        """Handlers exist but not for this method, and no proxy: 104 "method not found"."""
        self.registry.register("other", lambda ctx, data: b"")
        error = self.failureResultOf(self.registry.dispatch(CTX, "m", b"1", self.noProxy), RPCError).value
        self.assertEqual(error.error, codes.ERROR_METHOD_NOT_FOUND)

    def test_localFirst(self) -> None:
        self.registry.register("m", lambda ctx, data: b'"local"')
        self.assertEqual(self.successResultOf(self.registry.dispatch(CTX, "m", b"1", self.proxy)), b'"local"')
        self.assertEqual(self.backend.requests, [])

    def test_proxyTakesTheRest(self) -> None:
        """Any method without a local handler goes to the proxy, which decides."""
        self.registry.register("other", lambda ctx, data: b"")
        self.assertEqual(self.successResultOf(self.registry.dispatch(CTX, "m", b"1", self.proxy)),
                         b'{"from":"backend"}')
        self.assertEqual(self.backend.last["body"]["method"], "m")

    def test_proxyWithoutData(self) -> None:
        self.backend.reply = {"result": {}}
        self.assertEqual(self.successResultOf(self.registry.dispatch(CTX, "m", b"1", self.proxy)), b"")

    def test_proxyErrorPassesThrough(self) -> None:
        self.backend.reply = {"error": {"code": 1404, "message": "unknown method"}}
        error = self.failureResultOf(self.registry.dispatch(CTX, "m", b"1", self.proxy), ProxyError).value
        self.assertEqual(error.error, codes.Error(1404, "unknown method"))


class SendTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.registry = RPCRegistry()

    def test_noHookDisconnects(self) -> None:
        """Without a hook a send disconnects the client with 3508 "not available"."""
        self.assertFalse(self.registry.handlesSend)
        failure = self.failureResultOf(self.registry.handleSend(CTX, b"{}"), RPCDisconnect)
        self.assertEqual(failure.value.disconnect, codes.DISCONNECT_NOT_AVAILABLE)

    def test_hooksInOrder(self) -> None:
        """Every hook sees the message; one returning a Deferred is waited for before the next."""
        seen: list[tuple[str, Any, bytes]] = []
        gate: defer.Deferred[None] = defer.Deferred()

        def first(ctx: RPCContext, data: bytes) -> defer.Deferred[None]:
            seen.append(("first", ctx, data))
            return gate

        self.registry.onSend(first)
        self.registry.onSend(lambda ctx, data: seen.append(("second", ctx, data)))
        self.assertTrue(self.registry.handlesSend)
        d = self.registry.handleSend(CTX, b'{"typing":true}')
        self.assertEqual([name for name, _, _ in seen], ["first"])
        self.assertNoResult(d)
        gate.callback(None)
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(seen, [("first", CTX, b'{"typing":true}'), ("second", CTX, b'{"typing":true}')])

    def test_failingHookLogged(self) -> None:
        """A hook that fails is logged; the others still run and the client stays."""
        seen = []

        def broken(ctx: RPCContext, data: bytes) -> None:
            raise ValueError("bad")

        self.registry.onSend(broken)
        self.registry.onSend(lambda ctx, data: seen.append(data))
        self.assertIsNone(self.successResultOf(self.registry.handleSend(CTX, b"1")))
        self.assertEqual(seen, [b"1"])
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_hookDisconnects(self) -> None:
        """A hook raising RPCDisconnect disconnects the client; later hooks are skipped."""
        seen = []

        def kick(ctx: RPCContext, data: bytes) -> None:
            raise RPCDisconnect(4501, "spam")

        self.registry.onSend(kick)
        self.registry.onSend(lambda ctx, data: seen.append(data))
        failure = self.failureResultOf(self.registry.handleSend(CTX, b"1"), RPCDisconnect)
        self.assertEqual(failure.value.disconnect, codes.Disconnect(4501, "spam"))
        self.assertEqual(seen, [])

    def test_removeHook(self) -> None:
        def hook(ctx: RPCContext, data: bytes) -> None:
            pass

        self.registry.onSend(hook)
        self.registry.removeSendHook(hook)
        self.registry.removeSendHook(hook)
        self.assertFalse(self.registry.handlesSend)
