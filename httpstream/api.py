# -*- test-case-name: tests.test_api -*-
"""
Centrifugo's server API as Python methods (reference/messages.md section 8): what ``POST /api/<method>`` calls,
and what a program embedding httpstream calls directly.

Every method takes the request object's fields as keyword arguments, with Centrifugo's names and raw-JSON
C{bytes} for C{data}/C{info}, and returns a Deferred firing with the result dict, or failing with L{APIError}.
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import Any, Callable, Optional

from twisted.internet.defer import Deferred, DeferredList, fail, maybeDeferred, succeed
from twisted.python.failure import Failure

from httpstream import codes
from httpstream.channels import ChannelError
from httpstream.control import CODE_OK
from httpstream.engines import HistoryError, HistoryResult
from httpstream.logs import Logger
from httpstream.origin import OriginPatternError, compile_origin_pattern
from httpstream.proxy import ProxyContext, ProxyError

# Centrifugo's API error codes (apiproto errors.go).
ERROR_INTERNAL = codes.Error(100, "internal server error")
ERROR_UNKNOWN_CHANNEL = codes.Error(102, "unknown channel")
ERROR_METHOD_NOT_FOUND = codes.Error(104, "method not found")
ERROR_BAD_REQUEST = codes.Error(107, "bad request")
ERROR_NOT_AVAILABLE = codes.Error(108, "not available")
ERROR_UNRECOVERABLE_POSITION = codes.Error(112, "unrecoverable position")

IDEMPOTENCY_WINDOW = 300.0  # a repeated idempotency_key within 5 minutes publishes once
FORCE_DISCONNECT = codes.DISCONNECT_FORCE_NO_RECONNECT
SERVER_UNSUBSCRIBE = (2000, "server unsubscribe")


class APIError(Exception):
    """An API call that answers C{{"error": {"code", "message"}}}."""

    def __init__(self, error: codes.Error) -> None:
        super().__init__(error.message)
        self.error = error


def payload(request: dict[str, Any], name: str) -> Optional[bytes]:
    """C{name} (raw JSON bytes) or C{b64name} (base64) of a request, or None."""
    encoded = request.get("b64" + name)
    if encoded:
        try:
            return base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise APIError(ERROR_BAD_REQUEST) from None
    return request.get(name)


class ServerAPI:
    """The server API of one node (in a cluster, methods acting on users reach every node)."""

    log = Logger()

    def __init__(self, node: Any, clock: Optional[Callable[[], float]] = None) -> None:
        self.node = node
        self._now = clock or getattr(node.reactor, "seconds", time.time)
        self._idempotent: dict[tuple[str, str], tuple[float, dict]] = {}
        if node.control is not None:
            node.control.setUserHandler(self.runHere)

    def call(self, method: str, request: dict[str, Any]) -> Deferred[dict]:
        """Run one API method by name (the HTTP API and batch use this)."""
        handler = self.METHODS.get(method)
        if handler is None:
            return fail(APIError(ERROR_METHOD_NOT_FOUND))
        if not isinstance(request, dict):
            return fail(APIError(ERROR_BAD_REQUEST))
        return maybeDeferred(handler, self, request).addErrback(_translate)

    # Publishing

    def publish(self, **request: Any) -> Deferred[dict]:
        return self.call("publish", request)

    def _publish(self, request: dict[str, Any]) -> Deferred[dict]:
        channel = request.get("channel") or ""
        data = payload(request, "data")
        if not isinstance(channel, str) or not channel or not data:
            raise APIError(ERROR_BAD_REQUEST)
        key = request.get("idempotency_key") or ""
        now = self._now()
        if key:
            self._expireIdempotent(now)
            known = self._idempotent.get((channel, key))
            if known is not None and known[0] > now:
                return succeed(dict(known[1]))
        tags = request.get("tags") or None
        d = self.node.publish(channel, data, None, skipHistory=bool(request.get("skip_history")), tags=tags)

        def published(result: dict) -> dict:
            if key:
                self._idempotent.pop((channel, key), None)  # re-inserted at the end, in expiry order
                self._idempotent[(channel, key)] = (now + IDEMPOTENCY_WINDOW, result)
            return dict(result)

        return d.addCallback(published)

    def _expireIdempotent(self, now: float) -> None:
        """
        Drop remembered results whose window has passed. Entries are kept in insertion order, which is (nearly)
        expiry order: the oldest go from the front, so a busy channel of keyed publications costs O(1) each
        rather than a pass over every key of the last five minutes.
        """
        cache = self._idempotent
        while cache:
            oldest = next(iter(cache))
            if cache[oldest][0] > now:
                break
            del cache[oldest]

    def broadcast(self, **request: Any) -> Deferred[dict]:
        return self.call("broadcast", request)

    def _broadcast(self, request: dict[str, Any]) -> Deferred[dict]:
        channels = request.get("channels")
        if not isinstance(channels, list) or not channels or not payload(request, "data"):
            raise APIError(ERROR_BAD_REQUEST)
        calls = [self.call("publish", dict(request, channel=channel)) for channel in channels]
        d = DeferredList(calls, consumeErrors=True)
        return d.addCallback(lambda results: {"responses": [_reply(ok, value) for ok, value in results]})

    # Users' connections

    def _clients(self, request: dict[str, Any]) -> list[Any]:
        user = request.get("user")
        if not isinstance(user, str):
            raise APIError(ERROR_BAD_REQUEST)
        client, session = request.get("client") or "", request.get("session") or ""
        return [
            c for c in list(self.node.clients.values())
            if c.user == user and (not client or c.clientID == client) and (not session or c.sessionID == session)
        ]

    def subscribe(self, **request: Any) -> Deferred[dict]:
        return self.call("subscribe", request)

    def _subscribe(self, request: dict[str, Any]) -> Deferred[dict]:
        if not request.get("user"):
            raise APIError(ERROR_BAD_REQUEST)
        self._options(request.get("channel") or "")
        return self._onEveryNode("subscribe", request)

    def _subscribeHere(self, request: dict[str, Any]) -> Deferred[dict]:
        channel = request["channel"]
        calls = [client.serverSubscribe(channel, request) for client in self._clients(request)]
        return DeferredList(calls, consumeErrors=True).addCallback(lambda _: {})

    def unsubscribe(self, **request: Any) -> Deferred[dict]:
        return self.call("unsubscribe", request)

    def _unsubscribe(self, request: dict[str, Any]) -> Deferred[dict]:
        if not request.get("user"):
            raise APIError(ERROR_BAD_REQUEST)
        if request.get("channel"):
            # Centrifugo answers 102 for a channel of an unknown namespace (no channel: every subscription).
            self._options(request["channel"])
        return self._onEveryNode("unsubscribe", request)

    def _unsubscribeHere(self, request: dict[str, Any]) -> dict:
        channel = request.get("channel") or ""
        for client in self._clients(request):
            for name in [channel] if channel else list(client.subs):
                client.serverUnsubscribe(name, *SERVER_UNSUBSCRIBE)
        return {}

    def disconnect(self, **request: Any) -> Deferred[dict]:
        return self.call("disconnect", request)

    def _disconnect(self, request: dict[str, Any]) -> Deferred[dict]:
        if not request.get("user"):
            raise APIError(ERROR_BAD_REQUEST)
        return self._onEveryNode("disconnect", request)

    def _disconnectHere(self, request: dict[str, Any]) -> dict:
        spec = request.get("disconnect") or {}
        code = int(spec.get("code") or FORCE_DISCONNECT.code)
        reason = spec.get("reason") or (FORCE_DISCONNECT.reason if code == FORCE_DISCONNECT.code else "")
        keep = set(request.get("whitelist") or ())
        for client in self._clients(request):
            if client.clientID not in keep:
                client.disconnect(code, reason)
        return {}

    def refresh(self, **request: Any) -> Deferred[dict]:
        return self.call("refresh", request)

    def _refresh(self, request: dict[str, Any]) -> Deferred[dict]:
        if not request.get("user"):
            raise APIError(ERROR_BAD_REQUEST)
        payload(request, "info")  # a bad b64info is the caller's error, answered before any node acts
        return self._onEveryNode("refresh", request)

    def _refreshHere(self, request: dict[str, Any]) -> dict:
        for client in self._clients(request):
            client.serverRefresh(
                expired=bool(request.get("expired")),
                expireAt=float(request.get("expire_at") or 0),
                info=payload(request, "info"),
            )
        return {}

    def _onEveryNode(self, method: str, request: dict[str, Any]) -> Deferred[dict]:
        """
        Run a method acting on a user's connections: here alone, or in a cluster on every node (the control
        plane's survey runs L{runHere} on each). A node that failed to makes the call fail (100), never a false
        success; a node that did not answer in time is left out, as Centrifugo's fire-and-forget would.
        """
        control = self.node.control
        if control is None:
            return maybeDeferred(self.runHere, method, request)

        def checked(replies: dict[str, Any]) -> dict:
            failed = sorted(node for node, reply in replies.items() if reply.code != CODE_OK)
            if failed:
                self.log.error("API {method} failed on nodes {nodes}", method=method, nodes=failed)
                raise APIError(ERROR_INTERNAL)
            return {}

        def unsent(f: Failure) -> None:
            self.log.error("API {method} not sent to the other nodes: {error}", method=method,
                           error=f.getErrorMessage())
            raise APIError(ERROR_INTERNAL)

        return control.userOp(method, request).addCallbacks(checked, unsent)

    def runHere(self, method: str, request: dict[str, Any]) -> Any:
        """A method of L{httpstream.control.USER_METHODS} on this node's connections only (already checked)."""
        return self._HERE[method](self, request)

    # Channels: presence, history, listing

    def _options(self, channel: str) -> Any:
        if not isinstance(channel, str) or not channel:
            raise APIError(ERROR_BAD_REQUEST)
        try:
            return self.node.rules.options(channel)
        except ChannelError as e:
            raise APIError(e.error) from None

    def presence(self, **request: Any) -> Deferred[dict]:
        return self.call("presence", request)

    def _presence(self, request: dict[str, Any]) -> Deferred[dict]:
        if not self._options(request.get("channel")).presence:
            raise APIError(ERROR_NOT_AVAILABLE)
        return self.node.presence.presence(request["channel"]).addCallback(lambda p: {"presence": p})

    def presence_stats(self, **request: Any) -> Deferred[dict]:
        return self.call("presence_stats", request)

    def _presenceStats(self, request: dict[str, Any]) -> Deferred[dict]:
        if not self._options(request.get("channel")).presence:
            raise APIError(ERROR_NOT_AVAILABLE)
        return self.node.presence.stats(request["channel"])

    def history(self, **request: Any) -> Deferred[dict]:
        return self.call("history", request)

    def _history(self, request: dict[str, Any]) -> Deferred[dict]:
        options = self._options(request.get("channel"))
        if not options.history:
            raise APIError(ERROR_NOT_AVAILABLE)
        metaTTL = options.history_meta_ttl or self.node.config.global_history_meta_ttl
        d = self.node.broker.history(
            request["channel"], request.get("since") or None, int(request.get("limit") or 0),
            bool(request.get("reverse")), metaTTL,
        )

        def answer(history: HistoryResult) -> dict:
            return {"publications": history.publications, "offset": history.offset, "epoch": history.epoch}

        return d.addCallback(answer)

    def history_remove(self, **request: Any) -> Deferred[dict]:
        return self.call("history_remove", request)

    def _historyRemove(self, request: dict[str, Any]) -> Deferred[dict]:
        if not self._options(request.get("channel")).history:
            raise APIError(ERROR_NOT_AVAILABLE)
        return self.node.broker.removeHistory(request["channel"]).addCallback(lambda _: {})

    def channels(self, **request: Any) -> Deferred[dict]:
        return self.call("channels", request)

    def _channels(self, request: dict[str, Any]) -> Any:
        pattern = request.get("pattern") or ""
        if not isinstance(pattern, str):
            raise APIError(ERROR_BAD_REQUEST)

        def answer(counts: dict[str, int]) -> dict:
            return {"channels": {channel: {"num_clients": count} for channel, count in counts.items()}}

        try:
            compile_origin_pattern(pattern)  # a bad one is the caller's error, answered before any node is asked
        except OriginPatternError:
            raise APIError(ERROR_BAD_REQUEST) from None
        control = self.node.control
        if control is not None:
            return control.channels(pattern).addCallback(answer)
        return answer(self.node.channelCounts(pattern))

    def info(self, **request: Any) -> Deferred[dict]:
        return self.call("info", request)

    def _info(self, request: dict[str, Any]) -> dict:
        control = self.node.control
        return {"nodes": control.nodes() if control is not None else [self.node.info()]}

    def rpc(self, **request: Any) -> Deferred[dict]:
        return self.call("rpc", request)

    def _rpc(self, request: dict[str, Any]) -> Deferred[dict]:
        method = request.get("method")
        if not isinstance(method, str) or not method:
            raise APIError(ERROR_BAD_REQUEST)
        if method not in self.node.rpc:
            raise APIError(ERROR_METHOD_NOT_FOUND)
        ctx = ProxyContext(clientID="", transport="api")
        d = self.node.rpc.handle(ctx, method, request.get("params") or b"null")
        return d.addCallback(lambda data: {"data": data} if data else {})

    def batch(self, **request: Any) -> Deferred[dict]:
        return self.call("batch", request)

    def _batch(self, request: dict[str, Any]) -> Deferred[dict]:
        commands = request.get("commands")
        if not isinstance(commands, list):
            raise APIError(ERROR_BAD_REQUEST)
        replies: list[Any] = [None] * len(commands)

        def run(index: int) -> Deferred[None]:
            command = commands[index]
            if not isinstance(command, dict) or len(command) != 1:
                replies[index] = {"error": ERROR_BAD_REQUEST.toDict()}
                return succeed(None)
            ((method, body),) = command.items()

            def store(result: Any) -> None:
                if isinstance(result, Failure):
                    replies[index] = {"error": _errorOf(result).toDict()}
                else:
                    replies[index] = {method: result}

            return self.call(method, body).addBoth(store)

        if request.get("parallel"):
            d = DeferredList([run(i) for i in range(len(commands))])
        else:
            d = succeed(None)
            for i in range(len(commands)):
                d.addCallback(lambda _, i=i: run(i))
        # batch answers at the top level: {"replies": [...]}, not inside "result".
        return d.addCallback(lambda _: {"replies": replies})

    METHODS: dict[str, Callable[["ServerAPI", dict], Any]] = {
        "publish": _publish,
        "broadcast": _broadcast,
        "subscribe": _subscribe,
        "unsubscribe": _unsubscribe,
        "disconnect": _disconnect,
        "refresh": _refresh,
        "presence": _presence,
        "presence_stats": _presenceStats,
        "history": _history,
        "history_remove": _historyRemove,
        "channels": _channels,
        "info": _info,
        "rpc": _rpc,
        "batch": _batch,
    }

    _HERE: dict[str, Callable[["ServerAPI", dict], Any]] = {
        "subscribe": _subscribeHere,
        "unsubscribe": _unsubscribeHere,
        "disconnect": _disconnectHere,
        "refresh": _refreshHere,
    }


def _errorOf(failure: Failure) -> codes.Error:
    if failure.check(APIError):
        return failure.value.error
    return ERROR_INTERNAL


def _translate(failure: Failure) -> Failure:
    """Protocol-level failures become API errors with Centrifugo's API codes."""
    if failure.check(APIError):
        return failure
    if failure.check(ChannelError):
        return Failure(APIError(failure.value.error))
    if failure.check(HistoryError):
        error = failure.value.error
        return Failure(APIError(ERROR_UNRECOVERABLE_POSITION if error.code == 112 else ERROR_BAD_REQUEST))
    if failure.check(ProxyError):
        return Failure(APIError(failure.value.error))
    return failure


def _reply(ok: bool, value: Any) -> dict:
    if ok:
        return {"result": value}
    return {"error": _errorOf(value).toDict()}
