# -*- test-case-name: tests.test_wire,tests.test_metrics -*-
"""
``POST /emulation``: the upstream half of emulated transports (reference/transports.md section 3).

The body names a session and its node and carries encoded commands. They run on the session's client exactly as
if they had come on its own connection; their replies go down the client's stream, never in this response, which
is 204 once they have run, whatever they did (an unknown session included, as in Centrifugo). In a cluster the
session may live on another node: the commands are forwarded to it (section 3.3).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.web import server
from twisted.web.server import NOT_DONE_YET

from httpstream.cluster.control import CODE_NO_SESSION, CODE_OK
from httpstream.logs import Logger
from httpstream.protocol import DecodeError, decode_emulation
from httpstream.transports._http import EmulationEndpoint, isProtobuf


class EmulationResource(EmulationEndpoint):
    """Routes emulation requests to the sessions of this node."""

    log = Logger()

    def render(self, request: server.Request) -> bytes | int:
        result = super().render(request)
        if request.method == b"POST" and request.code in (403, 413):
            # Refused by the endpoint base before renderPost: an Origin not in allowed_origins, or a body over the
            # limit.
            self._count("forbidden" if request.code == 403 else "too_large")
        return result

    def _count(self, outcome: str) -> None:
        self._node.metrics.emulation.labels(outcome).inc()

    def renderPost(self, request: server.Request, body: bytes) -> bytes | int:
        try:
            node, session, data = decode_emulation(body, isProtobuf(request))
        except DecodeError as e:
            self.log.debug("bad emulation request: {error}", error=str(e))
            self._count("bad_request")
            request.setResponseCode(400)
            return b""
        if not self._node.nodes.isKnownNode(node):
            self._count("unknown_node")
            request.setResponseCode(404)
            return b""
        control = self._node.control
        if node != self._node.id and control is not None:
            return self._forward(request, control, node, session, data)
        client = self._node.registry.get(session)
        if client is None:
            # A closed or unknown session: the commands are dropped; the SDK times out and reconnects.
            self._count("no_session")
            request.setResponseCode(204)
            return b""
        self._count("ok")
        request.setResponseCode(204)
        return _answerWhenDone(request, client.handleData(data))

    def _forward(self, request: server.Request, control: Any, node: str, session: str, data: bytes) -> int:
        """
        The session lives on another node (no sticky sessions): run the commands there through the control
        plane; 204 once that node ran them (or dropped them: no such session there), 500 when it did not answer.
        """

        def ran(code: int) -> None:
            self._count("forwarded" if code == CODE_OK else "no_session" if code == CODE_NO_SESSION else "bad_request")
            request.setResponseCode(204)

        def failed(f: Failure) -> None:
            self.log.warn("emulation for node {node} failed: {error}", node=node, error=f.getErrorMessage())
            self._count("forward_failed")
            request.setResponseCode(500)

        return _answerWhenDone(request, control.emulate(node, session, data).addCallbacks(ran, failed))


def _answerWhenDone(request: server.Request, done: Deferred[Any]) -> int:
    """Finish the response once C{done} fires, unless the peer has gone meanwhile (finishing then would raise)."""
    finished = [False]
    request.notifyFinish().addBoth(lambda _: finished.__setitem__(0, True))

    def answer(_: object) -> None:
        if not finished[0]:
            request.finish()

    done.addCallback(answer)
    return NOT_DONE_YET
