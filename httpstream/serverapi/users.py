# -*- test-case-name: tests.serverapi.test_api,tests.cluster.test_cluster_memory -*-
"""
The server API's methods acting on a user's connections: C{subscribe}, C{unsubscribe}, C{disconnect},
C{refresh}. In a cluster each runs on every node: the control plane's survey brings the request, decoded here
again, to L{UserMethods.runHere} on each.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.python.failure import Failure

from httpstream.logs import Logger
from httpstream.protocol import codes
from httpstream.readers import Fields
from httpstream.serverapi.channels import channelOptions
from httpstream.serverapi.errors import ERROR_BAD_REQUEST, APIError, ServerFault
from httpstream.serverapi.requests import (
    DisconnectRequest,
    RefreshRequest,
    SubscribeRequest,
    UnsubscribeRequest,
    UserRequest,
)

__all__ = ["FORCE_DISCONNECT", "SERVER_UNSUBSCRIBE", "UserMethods"]

FORCE_DISCONNECT = codes.DISCONNECT_FORCE_NO_RECONNECT
SERVER_UNSUBSCRIBE = codes.UNSUBSCRIBE_SERVER


class UserMethods:
    """The methods acting on users' connections, over one node (and, through its control plane, the others)."""

    log = Logger()

    def __init__(self, node: Any) -> None:
        self.node = node

    def subscribe(self, f: Fields) -> Deferred[dict[str, Any]]:
        request = SubscribeRequest.read(f)
        if not request.user:
            raise APIError(ERROR_BAD_REQUEST)
        channelOptions(self.node, request.channel)
        return self._onEveryNode("subscribe", request)

    def unsubscribe(self, f: Fields) -> Deferred[dict[str, Any]]:
        request = UnsubscribeRequest.read(f)
        if not request.user:
            raise APIError(ERROR_BAD_REQUEST)
        if request.channel:
            # Centrifugo answers 102 for a channel of an unknown namespace (no channel: every subscription).
            channelOptions(self.node, request.channel)
        return self._onEveryNode("unsubscribe", request)

    def disconnect(self, f: Fields) -> Deferred[dict[str, Any]]:
        request = DisconnectRequest.read(f)
        if not request.user:
            raise APIError(ERROR_BAD_REQUEST)
        return self._onEveryNode("disconnect", request)

    def refresh(self, f: Fields) -> Deferred[dict[str, Any]]:
        request = RefreshRequest.read(f)  # a bad b64info is the caller's error, answered before any node acts
        if not request.user:
            raise APIError(ERROR_BAD_REQUEST)
        return self._onEveryNode("refresh", request)

    def runHere(self, method: str, request: dict[str, Any]) -> Deferred[dict[str, Any]]:
        """
        A method of L{httpstream.cluster.control.USER_METHODS} on this node's connections only, with the request as
        L{_onEveryNode} sent it (decoded again: what the control plane brings is input like any other).

        @raise FieldError: the request does not decode.
        """
        read, here = self._HERE[method]
        return here(self, read(Fields(request)))

    def _onEveryNode(self, method: str, request: UserRequest) -> Deferred[dict[str, Any]]:
        """
        Run a method acting on a user's connections: here alone, or in a cluster on every node (the control
        plane's survey runs L{runHere} on each). A node that failed to makes the call fail (100), never a false
        success; a node that did not answer in time is left out, as Centrifugo's fire-and-forget would.
        """
        control = self.node.control
        if control is None:
            return self._HERE[method][1](self, request)

        def checked(replies: dict[str, Any]) -> dict[str, Any]:
            failed = sorted(node for node, reply in replies.items() if not reply.ok)
            if failed:
                raise ServerFault(f"failed on nodes {', '.join(failed)}")
            return {}

        def unsent(f: Failure) -> dict[str, Any]:
            raise ServerFault(f"not sent to the other nodes: {f.getErrorMessage()}")

        # Only decoded fields travel: nothing unchecked rides along to the other nodes.
        d: Deferred[dict[str, Any]] = control.userOp(method, request.asDict())
        return d.addCallbacks(checked, unsent)

    def _forEachClient(self, method: str, request: UserRequest,
                       act: Callable[[Any], Any]) -> Deferred[dict[str, Any]]:
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

        def done(_: Any) -> dict[str, Any]:
            if failed:
                raise ServerFault(f"{len(failed)} of {len(calls)} connections failed")
            return {}

        return gatherResults(calls).addCallback(done)

    def _subscribeHere(self, request: SubscribeRequest) -> Deferred[dict[str, Any]]:
        shape = request.asDict()
        return self._forEachClient("subscribe", request, lambda c: c.serverSubscribe(request.channel, shape))

    def _unsubscribeHere(self, request: UnsubscribeRequest) -> Deferred[dict[str, Any]]:
        def unsubscribe(client: Any) -> None:
            for name in [request.channel] if request.channel else list(client.subs):
                client.serverUnsubscribe(name, *SERVER_UNSUBSCRIBE)

        return self._forEachClient("unsubscribe", request, unsubscribe)

    def _disconnectHere(self, request: DisconnectRequest) -> Deferred[dict[str, Any]]:
        code = request.code or FORCE_DISCONNECT.code
        reason = request.reason or (FORCE_DISCONNECT.reason if code == FORCE_DISCONNECT.code else "")
        keep = set(request.whitelist)

        def disconnect(client: Any) -> None:
            if client.clientID not in keep:
                client.disconnect(code, reason)

        return self._forEachClient("disconnect", request, disconnect)

    def _refreshHere(self, request: RefreshRequest) -> Deferred[dict[str, Any]]:
        def refresh(client: Any) -> None:
            client.serverRefresh(expired=request.expired, expireAt=float(request.expireAt), info=request.info)

        return self._forEachClient("refresh", request, refresh)

    # Each user method: its request's decoder, and what it does to this node's connections.
    _HERE: dict[str, tuple[Callable[[Fields], Any], Callable[[UserMethods, Any], Deferred[dict[str, Any]]]]] = {
        "subscribe": (SubscribeRequest.read, _subscribeHere),
        "unsubscribe": (UnsubscribeRequest.read, _unsubscribeHere),
        "disconnect": (DisconnectRequest.read, _disconnectHere),
        "refresh": (RefreshRequest.read, _refreshHere),
    }
