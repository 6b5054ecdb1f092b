# -*- test-case-name: tests.cluster.test_batches -*-
"""
Forwarded emulation requests in batches: the emulation requests a node forwards to another in one reactor turn go out
as one PUB/SUB message, and the replies to them likewise, where one message per request used to.

A node that serves the HTTP side of a cluster's emulation (a POST landing on B for a session of A) forwards every
request to the session's node and waits for its answer. One PUBLISH per request cost B a Redis command each (a
txredisapi Deferred, its reply-timeout call, a write), and A one decoded control message and one reply PUBLISH
each. Here the requests read in one turn of B's reactor wait in a per-node outbox and leave together at the end of
the turn: one PUBLISH to A's node channel. A runs them in order (so one session's commands keep theirs), and answers
those that ran at once in one PUBLISH as soon as it has run the batch; answers that come later (a command waiting for
Redis) are gathered per turn. Each request still has its own id, timeout and answer: a batch is only how they travel.

The messages are L{httpstream.cluster.bus}'s C{"emulation"} and C{"emulated"}, sent only to nodes that announced
control protocol 2 (older nodes get one C{"request"} per emulation request, as before). The deadlines are the
control plane's shared L{Deadlines}.
"""

from __future__ import annotations

import binascii
from typing import Any, Callable, Optional

import orjson
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure

from httpstream.cluster.deadlines import Deadlines
from httpstream.cluster.replies import CODE_BAD_REQUEST, CODE_ERROR, CODE_NO_SESSION, CODE_OK
from httpstream.emulation import EmulationResult
from httpstream.logs import Logger

__all__ = ["EmulationBatches"]

# What a forwarding node makes of an answer's code (anything else: the other node did not take the request).
_RESULTS = {CODE_OK: EmulationResult.FORWARDED, CODE_NO_SESSION: EmulationResult.NO_SESSION}


class EmulationBatches:
    """
    Both ends of batched emulation forwarding, for one node's control plane.

    @param publish: C{publish(nodeID, message)} sends an encoded message to that node's channel; its Deferred fails
        when it could not be sent.
    @param run: C{run(session, data, origin)} runs one forwarded request here; a Deferred of its reply code (it never
        fails).
    """

    log = Logger()

    def __init__(
        self,
        reactor: IReactorTime,
        nodeID: str,
        publish: Callable[[str, bytes], "Deferred[None]"],
        run: Callable[[str, bytes, str], "Deferred[int]"],
        deadlines: Deadlines,
    ) -> None:
        self._reactor = reactor
        self._nodeID = nodeID
        self._publish = publish
        self._run = run
        self._deadlines = deadlines
        # Node -> the requests sent to it, by id, waiting for their answers.
        self._waiting: dict[str, dict[int, Deferred[EmulationResult]]] = {}
        # Node -> what leaves at the end of this turn: requests (flat: id, session, base64 data, id, ...) and
        # answers (flat: id, code, id, code, ...).
        self._requests: dict[str, list[Any]] = {}
        self._answers: dict[str, list[int]] = {}
        # While a batch runs: its origin and the answers that leave with it (rather than at the end of the turn).
        self._serving: Optional[tuple[str, list[int]]] = None
        self._call: Optional[IDelayedCall] = None

    # The forwarding node

    def forward(self, nodeID: str, rid: int, session: str, data: bytes, timeout: float) -> Deferred[EmulationResult]:
        """Send request C{rid} to C{nodeID} with this turn's batch; its result once answered (or timed out)."""
        d: Deferred[EmulationResult] = Deferred()
        waiting = self._waiting.get(nodeID)
        if waiting is None:
            waiting = self._waiting[nodeID] = {}
        waiting[rid] = d
        self._deadlines.add(rid, timeout)
        batch = self._requests.get(nodeID)
        if batch is None:
            batch = self._requests[nodeID] = []
            self._soon()
        batch += (rid, session, binascii.b2a_base64(data, newline=False).decode("ascii"))
        return d

    def answered(self, origin: str, items: Any) -> None:
        """The answers of an C{"emulated"} message from C{origin}: fire the requests they name."""
        waiting = self._waiting.get(origin)
        if not waiting or type(items) is not list:
            return
        settled = 0
        for i in range(0, len(items) - 1, 2):
            rid = items[i]
            d = waiting.pop(rid, None) if type(rid) is int else None
            if d is None:
                continue  # timed out already, or not ours
            settled += 1
            d.callback(_RESULTS.get(items[i + 1], EmulationResult.REFUSED))
        if settled:
            self._deadlines.settled(settled)

    def expire(self, rid: int) -> bool:
        """Request C{rid}'s deadline has passed: answer it unreachable. @return: whether it was still waiting."""
        for nodeID, waiting in self._waiting.items():
            d = waiting.pop(rid, None)
            if d is not None:
                self.log.warn("emulation for node {node} failed: node {node} did not reply", node=nodeID)
                d.callback(EmulationResult.UNREACHABLE)
                return True
        return False

    def _notSent(self, failure: Failure, nodeID: str, batch: list[Any]) -> None:
        waiting = self._waiting.get(nodeID, {})
        fired = [d for d in (waiting.pop(rid, None) for rid in batch[0::3]) if d is not None]
        if not fired:
            return
        self.log.warn("emulation for node {node} failed: {error} ({count} requests)", node=nodeID,
                      error=failure.getErrorMessage(), count=len(fired))
        self._deadlines.settled(len(fired))
        for d in fired:
            d.callback(EmulationResult.UNREACHABLE)

    # The session's node

    def serve(self, origin: str, items: Any) -> None:
        """
        Run the requests of an C{"emulation"} message from C{origin}, in order; the answers of those done at once
        leave now, in one message.
        """
        if type(items) is not list:
            return
        answers: list[int] = []
        self._serving = (origin, answers)
        try:
            self._serveItems(origin, items)
        finally:
            self._serving = None
        if answers:
            self._sendAnswers(origin, answers)

    def _serveItems(self, origin: str, items: list[Any]) -> None:
        for i in range(0, len(items) - 2, 3):
            rid, session, data = items[i], items[i + 1], items[i + 2]
            if type(rid) is not int:
                continue
            try:
                raw = binascii.a2b_base64(data) if type(data) is str else None
            except binascii.Error:
                raw = None
            if type(session) is not str or raw is None:
                self._answer(origin, rid, CODE_BAD_REQUEST)
                continue
            try:
                ran = self._run(session, raw, origin)
            except Exception:
                # One request's failure must not lose the rest of the batch.
                self.log.failure("forwarded emulation request from {origin}", origin=origin)
                self._answer(origin, rid, CODE_ERROR)
                continue
            ran.addCallback(self._ran, origin, rid)

    def _ran(self, code: int, origin: str, rid: int) -> None:
        self._answer(origin, rid, code)

    def _answer(self, origin: str, rid: int, code: int) -> None:
        serving = self._serving
        if serving is not None and serving[0] == origin:
            serving[1].extend((rid, code))
            return
        answers = self._answers.get(origin)
        if answers is None:
            answers = self._answers[origin] = []
            self._soon()
        answers += (rid, code)

    def _sendAnswers(self, origin: str, answers: list[int]) -> None:
        message = orjson.dumps({"type": "emulated", "from": self._nodeID, "items": answers})
        self._publish(origin, message).addErrback(
            lambda f: self.log.warn("emulation answers to {node} not sent: {error}", node=origin,
                                    error=f.getErrorMessage())
        )

    # Once per turn

    def _soon(self) -> None:
        if self._call is None:
            self._call = self._reactor.callLater(0, self.flush)

    def flush(self) -> None:
        """Send what waits: each node's requests as one message, and each node's answers as one."""
        if self._call is not None:
            if self._call.active():
                self._call.cancel()
            self._call = None
        requests, self._requests = self._requests, {}
        answers, self._answers = self._answers, {}
        for nodeID, batch in requests.items():
            message = orjson.dumps({"type": "emulation", "from": self._nodeID, "items": batch})
            self._publish(nodeID, message).addErrback(self._notSent, nodeID, batch)
        for origin, items in answers.items():
            if items:
                self._sendAnswers(origin, items)

    def stop(self) -> None:
        """
        The control plane stops: the answers due leave now; requests not sent or not answered are unreachable.
        """
        self._requests = {}  # never sent: failed with the others below
        self.flush()
        waiting, self._waiting = self._waiting, {}
        for table in waiting.values():
            for d in table.values():
                d.callback(EmulationResult.UNREACHABLE)
