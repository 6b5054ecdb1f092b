# -*- test-case-name: tests.serverapi.test_api -*-
"""
Centrifugo's server API as Python methods (https://centrifugal.dev/docs/server/server_api): what ``POST /api/<method>`` calls, and what a program embedding
httpstream calls directly.

Every method takes the request object's fields as keyword arguments, with Centrifugo's names and raw-JSON
C{bytes} for C{data}/C{info}, and returns a Deferred firing with the result dict, or failing with L{APIError}:
L{BadRequest} (107) for a request whose fields do not decode (L{httpstream.serverapi.requests}), the method's own code
for what the node refuses, and 100 only for a fault of the server, logged once with a request id.

The methods live by concept (L{publishing}, L{users}, L{channels}); this module runs them by name, translates their
failures, and runs C{batch}.
"""

from __future__ import annotations

import secrets
import time
from typing import Any, Callable, Optional

from twisted.internet.defer import Deferred, DeferredList, fail, maybeDeferred, succeed
from twisted.python.failure import Failure

from httpstream.logs import Logger
from httpstream.readers import FieldError, Fields
from httpstream.serverapi.channels import ChannelMethods
from httpstream.serverapi.errors import (
    ERROR_BAD_REQUEST,
    ERROR_INTERNAL,
    ERROR_METHOD_NOT_FOUND,
    ERROR_NOT_AVAILABLE,
    ERROR_UNKNOWN_CHANNEL,
    ERROR_UNRECOVERABLE_POSITION,
    APIError,
    BadRequest,
    ServerFault,
    errorOf,
    translated,
)
from httpstream.serverapi.maps import MapMethods
from httpstream.serverapi.publishing import Publishing
from httpstream.serverapi.requests import BatchRequest
from httpstream.serverapi.sharedpoll import SharedPollMethods
from httpstream.serverapi.users import FORCE_DISCONNECT, SERVER_UNSUBSCRIBE, UserMethods

__all__ = [
    "BAD_REQUEST_LOG_INTERVAL",
    "ERROR_BAD_REQUEST",
    "ERROR_INTERNAL",
    "ERROR_METHOD_NOT_FOUND",
    "ERROR_NOT_AVAILABLE",
    "ERROR_UNKNOWN_CHANNEL",
    "ERROR_UNRECOVERABLE_POSITION",
    "FORCE_DISCONNECT",
    "SERVER_UNSUBSCRIBE",
    "APIError",
    "BadRequest",
    "ServerAPI",
    "ServerFault",
]

Result = Deferred[dict[str, Any]]

# Seconds between two info lines naming a bad request's field (the others go to debug): a caller sending
# garbage must not be able to flood the log.
BAD_REQUEST_LOG_INTERVAL = 10.0


def _fields(request: Any) -> Fields:
    try:
        return Fields(request)
    except FieldError as e:
        raise BadRequest(e) from None


class ServerAPI:
    """
    The server API of one node (in a cluster, methods acting on users reach every node).

    @ivar publishing: C{publish} and C{broadcast}.
    @ivar users: the methods acting on users' connections.
    @ivar channelMethods: presence, history, channels, info and rpc.
    """

    log = Logger()

    def __init__(self, node: Any, clock: Optional[Callable[[], float]] = None) -> None:
        self.node = node
        if clock is None:
            clock = getattr(node.reactor, "seconds", time.time)
        self._now: Callable[[], float] = clock
        self._badRequestLogged = -BAD_REQUEST_LOG_INTERVAL
        self._badRequestsQuiet = 0
        self.publishing = Publishing(node, self._translate)
        self.users = UserMethods(node)
        self.channelMethods = ChannelMethods(node)
        self.maps = MapMethods(node)
        self.sharedPoll = SharedPollMethods(node)
        if node.control is not None:
            node.control.setUserHandler(self.runHere)

    def call(self, method: str, request: dict[str, Any]) -> Result:
        """Run one API method by name (the HTTP API and batch use this)."""
        handler = self.METHODS.get(method)
        if handler is None:
            return fail(APIError(ERROR_METHOD_NOT_FOUND))
        d: Result = maybeDeferred(self._decoded, handler, request)
        return d.addErrback(self._translate, method)

    def runHere(self, method: str, request: dict[str, Any]) -> Result:
        """
        A method of L{httpstream.cluster.control.USER_METHODS} on this node's connections only, with the request as
        the node that was called sent it (decoded again: what the control plane brings is input like any other).
        """
        try:
            return self.users.runHere(method, request)
        except FieldError as e:
            raise BadRequest(e) from None

    def _decoded(self, handler: Callable[[ServerAPI, Fields], Any], request: Any) -> Any:
        try:
            return handler(self, _fields(request))
        except FieldError as e:
            raise BadRequest(e) from None

    def _translate(self, failure: Failure, method: str) -> Failure:
        """
        Protocol-level failures become Centrifugo's API errors; anything else is a fault, logged once.

        @raise APIError: what the call answers.
        """
        if isinstance(failure.value, BadRequest):
            self._logBadRequest(method, failure.value.field)
            return failure
        known = translated(failure)
        if known is not None:
            raise known
        # The id ties the log line to the call (a reply tells the caller nothing of the server's insides).
        requestID = secrets.token_hex(4)
        if isinstance(failure.value, ServerFault):
            self.log.error("api {method} failed (request {requestID}): {reason}", method=method,
                           requestID=requestID, reason=failure.getErrorMessage())
        else:
            self.log.failure("api {method} failed (request {requestID})", failure, method=method,
                             requestID=requestID)
        raise APIError(ERROR_INTERNAL)

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

    def _batch(self, f: Fields) -> Result:
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
                    replies[index] = {"error": errorOf(result).toDict()}
                else:
                    replies[index] = {method: result}

            # Centrifugo's Command has no batch: 104 (and no recursion as deep as the JSON nests).
            d = fail(APIError(ERROR_METHOD_NOT_FOUND)) if method == "batch" else self.call(method, body)
            return d.addBoth(store)

        d: Deferred[Any]
        if request.parallel:
            d = DeferredList([run(i) for i in range(len(commands))])
        else:
            def next(_: Any, index: int) -> Deferred[None]:
                return run(index)

            d = succeed(None)
            for i in range(len(commands)):
                d.addCallback(next, i)
        # batch answers at the top level: {"replies": [...]}, not inside "result".
        return d.addCallback(lambda _: {"replies": replies})

    # The methods by name, each with the request's fields as keyword arguments.

    def publish(self, **request: Any) -> Result:
        return self.call("publish", request)

    def broadcast(self, **request: Any) -> Result:
        return self.call("broadcast", request)

    def subscribe(self, **request: Any) -> Result:
        return self.call("subscribe", request)

    def unsubscribe(self, **request: Any) -> Result:
        return self.call("unsubscribe", request)

    def disconnect(self, **request: Any) -> Result:
        return self.call("disconnect", request)

    def refresh(self, **request: Any) -> Result:
        return self.call("refresh", request)

    def presence(self, **request: Any) -> Result:
        return self.call("presence", request)

    def presence_stats(self, **request: Any) -> Result:
        return self.call("presence_stats", request)

    def history(self, **request: Any) -> Result:
        return self.call("history", request)

    def history_remove(self, **request: Any) -> Result:
        return self.call("history_remove", request)

    def channels(self, **request: Any) -> Result:
        return self.call("channels", request)

    def info(self, **request: Any) -> Result:
        return self.call("info", request)

    def rpc(self, **request: Any) -> Result:
        return self.call("rpc", request)

    def batch(self, **request: Any) -> Result:
        return self.call("batch", request)

    METHODS: dict[str, Callable[[ServerAPI, Fields], Any]] = {
        "publish": lambda api, f: api.publishing.publish(f),
        "broadcast": lambda api, f: api.publishing.broadcast(f),
        "subscribe": lambda api, f: api.users.subscribe(f),
        "unsubscribe": lambda api, f: api.users.unsubscribe(f),
        "disconnect": lambda api, f: api.users.disconnect(f),
        "refresh": lambda api, f: api.users.refresh(f),
        "presence": lambda api, f: api.channelMethods.presence(f),
        "presence_stats": lambda api, f: api.channelMethods.presenceStats(f),
        "history": lambda api, f: api.channelMethods.history(f),
        "history_remove": lambda api, f: api.channelMethods.historyRemove(f),
        "channels": lambda api, f: api.channelMethods.channels(f),
        "info": lambda api, f: api.channelMethods.info(f),
        "rpc": lambda api, f: api.channelMethods.rpc(f),
        "batch": lambda api, f: api._batch(f),
        "map_publish": lambda api, f: api.maps.publish(f),
        "map_remove": lambda api, f: api.maps.remove(f),
        "map_read_state": lambda api, f: api.maps.readState(f),
        "map_read_stream": lambda api, f: api.maps.readStream(f),
        "map_stats": lambda api, f: api.maps.stats(f),
        "map_clear": lambda api, f: api.maps.clear(f),
        "shared_poll_publish": lambda api, f: api.sharedPoll.publish(f),
    }
