# -*- test-case-name: tests.test_api -*-
"""
Centrifugo's server API as Python methods (https://centrifugal.dev/docs/server/server_api): what ``POST /api/<method>`` calls,
and what a program embedding httpstream calls directly.

Every method takes the request object's fields as keyword arguments, with Centrifugo's names and raw-JSON
C{bytes} for C{data}/C{info}, and returns a Deferred firing with the result dict, or failing with L{APIError}:
L{BadRequest} (107) for a request whose fields do not decode (L{httpstream.serverapi.requests}), the method's own code
for what the node refuses, and 100 only for a fault of the server, logged once with a request id.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import replace
from typing import Any, Callable, Optional

from twisted.internet.defer import Deferred, DeferredList, fail, gatherResults, maybeDeferred, succeed
from twisted.python.failure import Failure

from httpstream.protocol import codes
from httpstream.serverapi.requests import (
    BatchRequest,
    DisconnectRequest,
    HistoryRequest,
    PublishRequest,
    RefreshRequest,
    SubscribeRequest,
    UnsubscribeRequest,
    UserRequest,
)
from httpstream.policy.channels import ChannelError
from httpstream.engines import HistoryError, HistoryResult
from httpstream.logs import Logger
from httpstream.origin import OriginPatternError, compile_origin_pattern
from httpstream.policy.proxy import ProxyContext, ProxyError
from httpstream.readers import FieldError, Fields

# Centrifugo's API error codes (apiproto errors.go) are the protocol's.
from httpstream.protocol.codes import (
    API_ERROR_INTERNAL as ERROR_INTERNAL,
    ERROR_BAD_REQUEST,
    ERROR_METHOD_NOT_FOUND,
    ERROR_NOT_AVAILABLE,
    ERROR_UNKNOWN_CHANNEL,
    ERROR_UNRECOVERABLE_POSITION,
    UNSUBSCRIBE_SERVER as SERVER_UNSUBSCRIBE,
)

IDEMPOTENCY_WINDOW = 300.0  # a repeated idempotency_key within 5 minutes publishes once
FORCE_DISCONNECT = codes.DISCONNECT_FORCE_NO_RECONNECT

# Seconds between two info lines naming a bad request's field (the others go to debug): a caller sending
# garbage must not be able to flood the log.
BAD_REQUEST_LOG_INTERVAL = 10.0


class APIError(Exception):
    """An API call that answers C{{"error": {"code", "message"}}}."""

    def __init__(self, error: codes.Error) -> None:
        super().__init__(error.message)
        self.error = error


class BadRequest(APIError):
    """
    A request that does not decode: error 107 "bad request" (Centrifugo answers a body its C{json.Unmarshal}
    refuses with HTTP 400; here the method's 107 names the mistake as for any other bad field).

    @ivar field: the L{FieldError} naming the field.
    """

    def __init__(self, field: FieldError) -> None:
        super().__init__(ERROR_BAD_REQUEST)
        self.field = field


class ServerFault(Exception):
    """A server-side failure told by its message (no traceback to show): error 100."""


def _fields(request: Any) -> Fields:
    try:
        return Fields(request)
    except FieldError as e:
        raise BadRequest(e) from None


class ServerAPI:
    """The server API of one node (in a cluster, methods acting on users reach every node)."""

    log = Logger()

    def __init__(self, node: Any, clock: Optional[Callable[[], float]] = None) -> None:
        self.node = node
        self._now = clock or getattr(node.reactor, "seconds", time.time)
        self._idempotent: dict[tuple[str, str], tuple[float, dict]] = {}
        self._badRequestLogged = -BAD_REQUEST_LOG_INTERVAL
        self._badRequestsQuiet = 0
        if node.control is not None:
            node.control.setUserHandler(self.runHere)

    def call(self, method: str, request: dict[str, Any]) -> Deferred[dict]:
        """Run one API method by name (the HTTP API and batch use this)."""
        handler = self.METHODS.get(method)
        if handler is None:
            return fail(APIError(ERROR_METHOD_NOT_FOUND))
        return maybeDeferred(self._decoded, handler, request).addErrback(self._translate, method)

    def _decoded(self, handler: Callable[["ServerAPI", Fields], Any], request: Any) -> Any:
        try:
            return handler(self, _fields(request))
        except FieldError as e:
            raise BadRequest(e) from None

    def _translate(self, failure: Failure, method: str) -> Failure:
        """Protocol-level failures become Centrifugo's API errors; anything else is a fault, logged once."""
        if failure.check(BadRequest):
            self._logBadRequest(method, failure.value.field)
            return failure
        translated = _translated(failure)
        if translated is not None:
            return translated
        # The id ties the log line to the call (a reply tells the caller nothing of the server's insides).
        requestID = secrets.token_hex(4)
        if failure.check(ServerFault):
            self.log.error("api {method} failed (request {requestID}): {reason}", method=method,
                           requestID=requestID, reason=failure.getErrorMessage())
        else:
            self.log.failure("api {method} failed (request {requestID})", failure, method=method,
                             requestID=requestID)
        return Failure(APIError(ERROR_INTERNAL))

    def _logBadRequest(self, method: str, field: FieldError) -> None:
        """Name the field: at info at most once per interval (counting those left out), else at debug."""
        now = self._now()
        if now - self._badRequestLogged >= BAD_REQUEST_LOG_INTERVAL:
            self.log.info("api {method}: bad request, {field} ({quiet} more since the last such line)",
                          method=method, field=str(field), quiet=self._badRequestsQuiet)
            self._badRequestLogged, self._badRequestsQuiet = now, 0
        else:
            self._badRequestsQuiet += 1
            self.log.debug("api {method}: bad request, {field}", method=method, field=str(field))

    # Publishing

    def publish(self, **request: Any) -> Deferred[dict]:
        return self.call("publish", request)

    def _publish(self, f: Fields) -> Deferred[dict]:
        return self._publishOne(PublishRequest.read(f))

    def _publishOne(self, request: PublishRequest) -> Deferred[dict]:
        channel, key = request.channel, request.idempotencyKey
        if not channel or not request.data:
            raise APIError(ERROR_BAD_REQUEST)
        now = self._now()
        if key:
            self._expireIdempotent(now)
            known = self._idempotent.get((channel, key))
            if known is not None and known[0] > now:
                return succeed(dict(known[1]))
        d = self.node.publish(channel, request.data, None, skipHistory=request.skipHistory,
                              tags=request.tags or None)

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

    def _broadcast(self, f: Fields) -> Deferred[dict]:
        channels = f.strings("channels")
        publication = PublishRequest.read(f, channel="")
        if not channels or not publication.data:
            raise APIError(ERROR_BAD_REQUEST)
        calls = [
            maybeDeferred(self._publishOne, replace(publication, channel=channel)).addErrback(
                self._translate, "broadcast")
            for channel in channels
        ]
        d = DeferredList(calls, consumeErrors=True)
        return d.addCallback(lambda results: {"responses": [_reply(ok, value) for ok, value in results]})

    # Users' connections

    def _forEachClient(self, method: str, request: UserRequest, act: Callable[[Any], Any]) -> Deferred[dict]:
        """
        Run C{act} on each of the user's connections here, on every one whatever another did: one that fails
        is logged once, and the call fails (100) once all have been tried.
        """
        failed: list[str] = []

        def logged(failure: Failure, client: Any) -> None:
            failed.append(client.clientID)
            self.log.failure("api {method}: connection {client} of user {user} failed", failure, method=method,
                             client=client.clientID, user=request.user)

        clients = [c for c in list(self.node.clients.values()) if request.targets(c)]
        calls = [maybeDeferred(act, client).addErrback(logged, client) for client in clients]

        def done(_: Any) -> dict:
            if failed:
                raise ServerFault(f"{len(failed)} of {len(calls)} connections failed")
            return {}

        return gatherResults(calls).addCallback(done)

    def subscribe(self, **request: Any) -> Deferred[dict]:
        return self.call("subscribe", request)

    def _subscribe(self, f: Fields) -> Deferred[dict]:
        request = SubscribeRequest.read(f)
        if not request.user:
            raise APIError(ERROR_BAD_REQUEST)
        self._options(request.channel)
        return self._onEveryNode("subscribe", request)

    def _subscribeHere(self, request: SubscribeRequest) -> Deferred[dict]:
        shape = request.asDict()
        return self._forEachClient("subscribe", request, lambda c: c.serverSubscribe(request.channel, shape))

    def unsubscribe(self, **request: Any) -> Deferred[dict]:
        return self.call("unsubscribe", request)

    def _unsubscribe(self, f: Fields) -> Deferred[dict]:
        request = UnsubscribeRequest.read(f)
        if not request.user:
            raise APIError(ERROR_BAD_REQUEST)
        if request.channel:
            # Centrifugo answers 102 for a channel of an unknown namespace (no channel: every subscription).
            self._options(request.channel)
        return self._onEveryNode("unsubscribe", request)

    def _unsubscribeHere(self, request: UnsubscribeRequest) -> Deferred[dict]:
        def unsubscribe(client: Any) -> None:
            for name in [request.channel] if request.channel else list(client.subs):
                client.serverUnsubscribe(name, *SERVER_UNSUBSCRIBE)

        return self._forEachClient("unsubscribe", request, unsubscribe)

    def disconnect(self, **request: Any) -> Deferred[dict]:
        return self.call("disconnect", request)

    def _disconnect(self, f: Fields) -> Deferred[dict]:
        request = DisconnectRequest.read(f)
        if not request.user:
            raise APIError(ERROR_BAD_REQUEST)
        return self._onEveryNode("disconnect", request)

    def _disconnectHere(self, request: DisconnectRequest) -> Deferred[dict]:
        code = request.code or FORCE_DISCONNECT.code
        reason = request.reason or (FORCE_DISCONNECT.reason if code == FORCE_DISCONNECT.code else "")
        keep = set(request.whitelist)

        def disconnect(client: Any) -> None:
            if client.clientID not in keep:
                client.disconnect(code, reason)

        return self._forEachClient("disconnect", request, disconnect)

    def refresh(self, **request: Any) -> Deferred[dict]:
        return self.call("refresh", request)

    def _refresh(self, f: Fields) -> Deferred[dict]:
        request = RefreshRequest.read(f)  # a bad b64info is the caller's error, answered before any node acts
        if not request.user:
            raise APIError(ERROR_BAD_REQUEST)
        return self._onEveryNode("refresh", request)

    def _refreshHere(self, request: RefreshRequest) -> Deferred[dict]:
        def refresh(client: Any) -> None:
            client.serverRefresh(expired=request.expired, expireAt=float(request.expireAt), info=request.info)

        return self._forEachClient("refresh", request, refresh)

    def _onEveryNode(self, method: str, request: UserRequest) -> Deferred[dict]:
        """
        Run a method acting on a user's connections: here alone, or in a cluster on every node (the control
        plane's survey runs L{runHere} on each). A node that failed to makes the call fail (100), never a false
        success; a node that did not answer in time is left out, as Centrifugo's fire-and-forget would.
        """
        control = self.node.control
        if control is None:
            return self._HERE[method][1](self, request)

        def checked(replies: dict[str, Any]) -> dict:
            failed = sorted(node for node, reply in replies.items() if not reply.ok)
            if failed:
                raise ServerFault(f"failed on nodes {', '.join(failed)}")
            return {}

        def unsent(f: Failure) -> None:
            raise ServerFault(f"not sent to the other nodes: {f.getErrorMessage()}")

        # Only decoded fields travel: nothing unchecked rides along to the other nodes.
        return control.userOp(method, request.asDict()).addCallbacks(checked, unsent)

    def runHere(self, method: str, request: dict[str, Any]) -> Deferred[dict]:
        """
        A method of L{httpstream.cluster.control.USER_METHODS} on this node's connections only, with the request as
        L{_onEveryNode} sent it (decoded again: what the control plane brings is input like any other).
        """
        read, here = self._HERE[method]
        return here(self, read(_fields(request)))

    # Channels: presence, history, listing

    def _options(self, channel: str) -> Any:
        if not channel:
            raise APIError(ERROR_BAD_REQUEST)
        try:
            return self.node.rules.options(channel)
        except ChannelError as e:
            raise APIError(e.error) from None

    def presence(self, **request: Any) -> Deferred[dict]:
        return self.call("presence", request)

    def _presence(self, f: Fields) -> Deferred[dict]:
        channel = f.string("channel")
        if not self._options(channel).presence:
            raise APIError(ERROR_NOT_AVAILABLE)
        return self.node.presence.presence(channel).addCallback(lambda p: {"presence": p})

    def presence_stats(self, **request: Any) -> Deferred[dict]:
        return self.call("presence_stats", request)

    def _presenceStats(self, f: Fields) -> Deferred[dict]:
        channel = f.string("channel")
        if not self._options(channel).presence:
            raise APIError(ERROR_NOT_AVAILABLE)
        return self.node.presence.stats(channel)

    def history(self, **request: Any) -> Deferred[dict]:
        return self.call("history", request)

    def _history(self, f: Fields) -> Deferred[dict]:
        request = HistoryRequest.read(f)
        options = self._options(request.channel)
        if not options.history:
            raise APIError(ERROR_NOT_AVAILABLE)
        metaTTL = options.history_meta_ttl or self.node.config.global_history_meta_ttl
        since = request.since.asDict() if request.since is not None else None
        d = self.node.broker.history(request.channel, since, request.limit, request.reverse, metaTTL)

        def answer(history: HistoryResult) -> dict:
            return {"publications": history.publications, "offset": history.offset, "epoch": history.epoch}

        return d.addCallback(answer)

    def history_remove(self, **request: Any) -> Deferred[dict]:
        return self.call("history_remove", request)

    def _historyRemove(self, f: Fields) -> Deferred[dict]:
        channel = f.string("channel")
        if not self._options(channel).history:
            raise APIError(ERROR_NOT_AVAILABLE)
        return self.node.broker.removeHistory(channel).addCallback(lambda _: {})

    def channels(self, **request: Any) -> Deferred[dict]:
        return self.call("channels", request)

    def _channels(self, f: Fields) -> Any:
        pattern = f.string("pattern")

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

    def _info(self, f: Fields) -> dict:
        control = self.node.control
        return {"nodes": control.nodes() if control is not None else [self.node.info()]}

    def rpc(self, **request: Any) -> Deferred[dict]:
        return self.call("rpc", request)

    def _rpc(self, f: Fields) -> Deferred[dict]:
        method, params = f.string("method"), f.raw("params")
        if not method:
            raise APIError(ERROR_BAD_REQUEST)
        if method not in self.node.rpc:
            raise APIError(ERROR_METHOD_NOT_FOUND)
        ctx = ProxyContext(clientID="", transport="api")
        d = self.node.rpc.handle(ctx, method, params or b"null")
        return d.addCallback(lambda data: {"data": data} if data else {})

    def batch(self, **request: Any) -> Deferred[dict]:
        return self.call("batch", request)

    def _batch(self, f: Fields) -> Deferred[dict]:
        request = BatchRequest.read(f)
        commands = request.commands
        replies: list[Any] = [None] * len(commands)

        def run(index: int) -> Deferred[None]:
            command = commands[index]
            if type(command) is not dict or len(command) != 1:
                replies[index] = {"error": ERROR_BAD_REQUEST.toDict()}
                return succeed(None)
            ((method, body),) = command.items()

            def store(result: Any) -> None:
                if isinstance(result, Failure):
                    replies[index] = {"error": _errorOf(result).toDict()}
                else:
                    replies[index] = {method: result}

            # Centrifugo's Command has no batch: 104 (and no recursion as deep as the JSON nests).
            d = fail(APIError(ERROR_METHOD_NOT_FOUND)) if method == "batch" else self.call(method, body)
            return d.addBoth(store)

        if request.parallel:
            d = DeferredList([run(i) for i in range(len(commands))])
        else:
            d = succeed(None)
            for i in range(len(commands)):
                d.addCallback(lambda _, i=i: run(i))
        # batch answers at the top level: {"replies": [...]}, not inside "result".
        return d.addCallback(lambda _: {"replies": replies})

    METHODS: dict[str, Callable[["ServerAPI", Fields], Any]] = {
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

    # Each user method: its request's decoder, and what it does to this node's connections.
    _HERE: dict[str, tuple[Callable[[Fields], Any], Callable[["ServerAPI", Any], Deferred[dict]]]] = {
        "subscribe": (SubscribeRequest.read, _subscribeHere),
        "unsubscribe": (UnsubscribeRequest.read, _unsubscribeHere),
        "disconnect": (DisconnectRequest.read, _disconnectHere),
        "refresh": (RefreshRequest.read, _refreshHere),
    }


def _errorOf(failure: Failure) -> codes.Error:
    if failure.check(APIError):
        return failure.value.error
    return ERROR_INTERNAL


def _translated(failure: Failure) -> Optional[Failure]:
    """An L{APIError} for a protocol-level failure (with Centrifugo's API codes); None for a server fault."""
    if failure.check(APIError):
        return failure
    if failure.check(ChannelError, ProxyError):
        return Failure(APIError(failure.value.error))
    if failure.check(HistoryError):
        error = failure.value.error
        return Failure(APIError(ERROR_UNRECOVERABLE_POSITION if error.code == ERROR_UNRECOVERABLE_POSITION.code else ERROR_BAD_REQUEST))
    return None


def _reply(ok: bool, value: Any) -> dict:
    if ok:
        return {"result": value}
    return {"error": _errorOf(value).toDict()}
