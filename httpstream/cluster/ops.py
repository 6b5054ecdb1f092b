# -*- test-case-name: tests.cluster.test_control -*-
"""
The control plane's built-in ops: what a node runs when another node asks (L{httpstream.cluster.control.Control}
registers them under their names): C{"emulation"}, C{"channels"}, C{"user"}; C{"info"} is the node's own.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from httpstream.cluster.replies import CODE_BAD_REQUEST, CODE_ERROR, CODE_NO_SESSION, CODE_OK, CODE_UNKNOWN_OP
from httpstream.cluster.replies import ControlledNode, OpError
from httpstream.emulation import EmulationResult
from httpstream.logs import Logger
from httpstream.origin import OriginPatternError

__all__ = ["USER_METHODS", "BuiltinOps"]

# The server API methods acting on a user's connections, which must reach them on every node.
USER_METHODS = frozenset({"disconnect", "unsubscribe", "subscribe", "refresh"})


class BuiltinOps:
    """The built-in ops of one node's control plane; L{userHandler} runs the C{"user"} op (None: unknown op)."""

    log = Logger()

    def __init__(self, node: ControlledNode) -> None:
        self.node = node
        self.userHandler: Optional[Callable[[str, dict[str, Any]], Any]] = None

    def emulation(self, payload: Any, origin: str) -> Deferred[None]:
        """Payload C{{"session", "data"}}: run the data on that session's client here; code 2 when there is none."""
        session = payload.get("session") if type(payload) is dict else None
        data = payload.get("data") if type(payload) is dict else None
        if type(session) is not str or type(data) is not bytes:
            raise OpError(CODE_BAD_REQUEST)

        def ran(result: EmulationResult) -> None:
            if result is EmulationResult.NO_SESSION:
                raise OpError(CODE_NO_SESSION)

        # The node asked is the one that holds the session: the node runs the data on it, never forwarding again.
        d: Deferred[EmulationResult] = self.node.emulate(session, self.node.id, data)
        return d.addCallback(ran)

    def emulationCode(self, session: str, data: bytes, origin: str) -> Deferred[int]:
        """L{emulation} for a request of a batch: its reply code, without the payload dict and L{OpError}."""
        d: Deferred[EmulationResult] = self.node.emulate(session, self.node.id, data)
        return d.addCallbacks(_emulationCode, self._emulationFailed, errbackArgs=(origin,))

    def _emulationFailed(self, f: Failure, origin: str) -> int:
        self.log.failure("control op {op} from {origin}", f, op="emulation", origin=origin)
        return CODE_ERROR

    def channels(self, payload: Any, origin: str) -> dict[str, int]:
        """Payload C{{"pattern"}}: this node's C{{channel: num_clients}}."""
        pattern = (payload.get("pattern") if type(payload) is dict else None) or ""
        try:
            return self.node.channelCounts(pattern)
        except (OriginPatternError, TypeError):
            raise OpError(CODE_BAD_REQUEST) from None

    def user(self, payload: Any, origin: str) -> Any:
        """Payload C{{"method", "request"}}: an API method of L{USER_METHODS} on this node's connections of a user."""
        method = payload.get("method") if type(payload) is dict else None
        request = payload.get("request") if type(payload) is dict else None
        if method not in USER_METHODS or type(request) is not dict:
            raise OpError(CODE_BAD_REQUEST)
        if self.userHandler is None:
            raise OpError(CODE_UNKNOWN_OP)
        return self.userHandler(method, request)


def _emulationCode(result: EmulationResult) -> int:
    return CODE_NO_SESSION if result is EmulationResult.NO_SESSION else CODE_OK
