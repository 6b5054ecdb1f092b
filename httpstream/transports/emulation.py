# -*- test-case-name: tests.node.test_emulation,tests.transports.test_http_stream,tests.web.test_metrics -*-
"""
``POST /emulation``: the upstream half of emulated transports (Centrifugo's C{/emulation} endpoint,
centrifugal/centrifuge C{emulation.go}).

The body names a session and its node and carries encoded commands; the node runs them (L{httpstream.node.node.Node.emulate}: here, or
on the node that holds the session). Their replies go down the session's stream, never in this response, which is
204 once they have run, whatever they did (an unknown session included, as in Centrifugo); 404 for a node that
does not exist, 500 when the node that holds the session did not answer. This module only decodes and answers:
where the session lives and how it is reached are the node's business.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.web import server
from twisted.web.server import NOT_DONE_YET

from httpstream.logs import Logger
from httpstream.emulation import EmulationResult
from httpstream.protocol import DecodeError, decode_emulation
from httpstream.transports._http import EmulationEndpoint, isProtobuf

# The HTTP status of each outcome: 204 whenever the request was understood and the node that holds the session
# answered, whether the session existed or not (the SDK learns of a dead session from its stream).
STATUS: dict[EmulationResult, int] = {
    EmulationResult.DELIVERED: 204,
    EmulationResult.FORWARDED: 204,
    EmulationResult.NO_SESSION: 204,
    EmulationResult.REFUSED: 204,
    EmulationResult.UNKNOWN_NODE: 404,
    EmulationResult.UNREACHABLE: 500,
}


class EmulationResource(EmulationEndpoint):
    """Hands emulation requests to the node and answers with what became of them."""

    log = Logger()

    def render(self, request: server.Request) -> bytes | int:
        result = super().render(request)
        if request.method == b"POST" and request.code in (403, 413):
            # Refused by the endpoint base before renderPost: an Origin not in allowed_origins, or a body over the
            # limit.
            self._count("forbidden" if request.code == 403 else "too_large")
        return result

    def _count(self, outcome: str) -> None:
        metrics = self._node.metrics
        metrics.child(metrics.emulation, outcome).inc()

    def renderPost(self, request: server.Request, body: bytes) -> bytes | int:
        try:
            node, session, data = decode_emulation(body, isProtobuf(request))
        except DecodeError as e:
            self.log.debug("bad emulation request: {error}", error=str(e))
            self._count("bad_request")
            request.setResponseCode(400)
            return b""
        done = self._node.emulate(session, node, data)
        return _answerWhenDone(request, done.addCallback(lambda result: self._answer(request, result)))

    def _answer(self, request: server.Request, result: EmulationResult) -> None:
        self._count(result.value)
        request.setResponseCode(STATUS[result])


def _answerWhenDone(request: server.Request, done: Deferred[None]) -> int:
    """Finish the response once C{done} fires, unless the peer has gone meanwhile (finishing then would raise)."""
    finished = [False]
    request.notifyFinish().addBoth(lambda _: finished.__setitem__(0, True))

    def answer(_: object) -> None:
        if not finished[0]:
            request.finish()

    done.addCallback(answer)
    return NOT_DONE_YET
