# -*- test-case-name: tests.policy.test_rpc -*-
"""
RPC methods and ``send`` hooks written in Python by a program that embeds httpstream.

Centrifugo answers a client's ``rpc`` through its RPC proxy; a program embedding httpstream can also answer in
process, as a Centrifuge-library server does with ``OnRPC`` and ``OnMessage``. L{RPCRegistry.dispatch} combines
both the way Centrifugo v5 decides (``internal/client/handler.go`` and ``internal/proxy/rpc_handler.go``; codes of
centrifugal/centrifuge ``errors.go``):

    1. a method registered here runs here;
    2. else the RPC proxy, when configured, gets the call (whatever the method: the backend decides);
    3. else error 104 "method not found" if any method is registered here (a handler exists, the method not);
    4. else error 108 "not available" (no RPC handler at all).

A ``send`` (asynchronous message, no reply) goes to every hook added with L{RPCRegistry.onSend}; with no hook the
client is disconnected with 3508 "not available" (Centrifuge's ``client.go`` without an ``OnMessage`` handler).
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

from twisted.internet.defer import CancelledError, Deferred, fail, maybeDeferred, succeed
from twisted.python.failure import Failure

from httpstream.protocol import codes
from httpstream.logs import Logger
from httpstream.policy.proxy import ProxyClient, ProxyContext, ProxyDisconnect, ProxyError

__all__ = ["RPCContext", "RPCDisconnect", "RPCError", "RPCHandler", "RPCRegistry", "SendHandler"]

RPCContext = ProxyContext
"""
What a handler learns about the calling connection: the same value the proxy uses (client id, transport,
protocol, user, meta, forwarded headers), so one object per connection serves both.
"""

RPCHandler = Callable[[RPCContext, bytes], Union[bytes, None, "Deferred[Optional[bytes]]"]]
"""C{handler(ctx, data) -> bytes | None | Deferred}: the RPCResult data (None: no data)."""

SendHandler = Callable[[RPCContext, bytes], Union[None, "Deferred[None]"]]
"""C{hook(ctx, data)}: a client's asynchronous message; nothing is sent back."""


class RPCError(ProxyError):
    """
    Raised by an RPC handler to answer the call with an error reply.

    A subclass of L{ProxyError}, so the client code handles proxied and local RPC failures with one clause.
    Applications should use codes 400-1999 (Centrifugo's rule for custom errors) or one of L{httpstream.protocol.codes}.
    """

    def __init__(self, code: Union[int, codes.Error], message: str = "", temporary: bool = False) -> None:
        """
        @param code: the error code, or a whole L{codes.Error} (then C{message} and C{temporary} are ignored).
        """
        error = code if isinstance(code, codes.Error) else codes.Error(code, message, temporary)
        super().__init__(error)


class RPCDisconnect(ProxyDisconnect):
    """
    Raised by an RPC handler or a send hook to disconnect the client (codes 4000-4499 let it reconnect,
    4500-4999 do not). A subclass of L{ProxyDisconnect}.
    """

    def __init__(self, code: Union[int, codes.Disconnect], reason: str = "") -> None:
        disconnect = code if isinstance(code, codes.Disconnect) else codes.Disconnect(code, reason)
        super().__init__(disconnect)


class RPCRegistry:
    """
    Python RPC methods and send hooks, by name.

    Usage, before the service starts::

        registry = RPCRegistry()
        registry.register("echo", lambda ctx, data: data)
        registry.onSend(lambda ctx, data: log(ctx.user, data))
    """

    log = Logger()

    def __init__(self) -> None:
        self._methods: dict[str, RPCHandler] = {}
        self._sendHooks: list[SendHandler] = []

    # RPC

    def register(self, method: str, handler: RPCHandler) -> None:
        """
        Answer RPC C{method} with C{handler}; replaces an earlier handler of the same method.

        @param method: the exact method name; C{""} takes the calls that name no method.
        @param handler: C{handler(ctx, data)} returning (or firing a Deferred with) the result bytes (raw JSON
            for JSON clients) or None, or raising L{RPCError} / L{RPCDisconnect}; any other exception becomes
            error 100 "internal server error".
        """
        if not callable(handler):
            raise TypeError(f"RPC handler for {method!r} is not callable: {handler!r}")
        self._methods[method] = handler

    def unregister(self, method: str) -> None:
        """Forget C{method}; no error if it was not registered."""
        self._methods.pop(method, None)

    def methods(self) -> list[str]:
        """The registered method names, sorted."""
        return sorted(self._methods)

    def __contains__(self, method: object) -> bool:
        return method in self._methods

    def __len__(self) -> int:
        return len(self._methods)

    def handle(self, ctx: RPCContext, method: str, data: bytes) -> "Deferred[bytes]":
        """
        Run the handler of C{method}.

        @return: a Deferred firing with the result data (C{b""} for none), or failing with L{RPCError}
            (104 for a method not registered here, 100 when the handler fails unexpectedly or returns something
            that is not bytes) or L{RPCDisconnect}.
        """
        handler = self._methods.get(method)
        if handler is None:
            return fail(RPCError(codes.ERROR_METHOD_NOT_FOUND))

        def checked(result: Any) -> bytes:
            if result is None:
                return b""
            if isinstance(result, (bytearray, memoryview)):
                result = bytes(result)
            if not isinstance(result, bytes):
                raise TypeError(f"RPC handler for {method!r} returned {type(result).__name__}, not bytes")
            return result

        def failed(failure: Failure) -> Failure:
            if isinstance(failure.value, (ProxyError, ProxyDisconnect, CancelledError)):
                return failure
            self.log.failure(
                "client {client}: RPC handler for {method!r} failed", failure, client=ctx.clientID, method=method
            )
            raise RPCError(codes.ERROR_INTERNAL)

        return maybeDeferred(handler, ctx, data).addCallback(checked).addErrback(failed)

    def dispatch(
        self, ctx: RPCContext, method: str, data: bytes, proxy: Optional[ProxyClient] = None
    ) -> "Deferred[bytes]":
        """
        Answer a client's RPC: here, through the RPC proxy, or with 104 / 108 (see the module docstring).

        @param proxy: the node's proxy client, or None.
        @return: a Deferred firing with the RPCResult data (C{b""} for none), or failing with L{ProxyError}
            (L{RPCError} is one) or L{ProxyDisconnect} (L{RPCDisconnect} is one).
        """
        if method in self._methods:
            return self.handle(ctx, method, data)
        if proxy is not None and proxy.enabled("rpc"):
            return proxy.rpc(ctx, method, data).addCallback(lambda result: result["data"] or b"")
        if self._methods:
            return fail(RPCError(codes.ERROR_METHOD_NOT_FOUND))
        return fail(RPCError(codes.ERROR_NOT_AVAILABLE))

    # send

    def onSend(self, hook: SendHandler) -> None:
        """Call C{hook(ctx, data)} for every asynchronous message a client sends; hooks run in the order added."""
        if not callable(hook):
            raise TypeError(f"send hook is not callable: {hook!r}")
        self._sendHooks.append(hook)

    def removeSendHook(self, hook: SendHandler) -> None:
        """Stop calling C{hook}; no error if it was not added."""
        if hook in self._sendHooks:
            self._sendHooks.remove(hook)

    @property
    def handlesSend(self) -> bool:
        """Whether any send hook is installed (without one a C{send} disconnects the client with 3508)."""
        return bool(self._sendHooks)

    def handleSend(self, ctx: RPCContext, data: bytes) -> "Deferred[None]":
        """
        Hand a client's C{send} data to every hook, one after the other (a hook returning a Deferred is waited
        for before the next runs, so messages of one client are seen in order).

        @return: a Deferred firing with None, or failing with L{RPCDisconnect}: 3508 "not available" when no hook
            is installed, or whatever disconnect a hook raised (the remaining hooks are skipped). Other hook
            failures are logged and do not stop the others.
        """
        if not self._sendHooks:
            return fail(RPCDisconnect(codes.DISCONNECT_NOT_AVAILABLE))
        d: Deferred[None] = succeed(None)
        for hook in list(self._sendHooks):
            d.addCallback(self._runSendHook, hook, ctx, data)
        return d

    def _runSendHook(self, _: None, hook: SendHandler, ctx: RPCContext, data: bytes) -> "Deferred[None]":
        def failed(failure: Failure) -> None:
            if isinstance(failure.value, (ProxyDisconnect, CancelledError)):
                failure.raiseException()
            self.log.failure("client {client}: send hook {hook!r} failed", failure, client=ctx.clientID, hook=hook)

        d: Deferred[None] = maybeDeferred(hook, ctx, data).addCallback(lambda _: None)
        return d.addErrback(failed)
