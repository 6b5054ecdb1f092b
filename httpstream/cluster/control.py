# -*- test-case-name: tests.cluster.test_control -*-
"""
The control plane between the nodes of a cluster (Centrifuge's control channel, centrifugal/centrifuge ``node.go``
and ``internal/controlpb``, in a JSON form of httpstream's own): who is alive, and requests
from one node to another or to all of them, over PUB/SUB (Redis in production, L{MemoryBus} in tests).

Channels, as Centrifugo names them: C{<prefix>.control} (every node reads it) and C{<prefix>.node.<nodeID>}
(one node reads it). Each node announces itself on the control channel every 3 s; a node not heard from for over
7 s is forgotten (a node always knows itself). A request names an op; the target runs the handler registered for
it and replies on the origin's node channel with the request's id, a code and a result. A survey is one request
published on the control channel: every node answers, and the origin gathers the answers of the nodes it knew
when it asked (a node that does not answer in time is left out). Every node ignores its own messages.

The messages and the PUB/SUB they travel through are L{httpstream.cluster.bus}'s.
Ids increase per origin (one counter for requests and surveys). This is not Centrifugo's protobuf
C{controlpb.Command}: httpstream nodes do not join a cluster of Centrifugo nodes (the guide says byte
compatibility only matters then); a foreign message that does not decode is ignored.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.python.failure import Failure
from zope.interface import implementer

from httpstream.cluster.batches import EmulationBatches
from httpstream.cluster.bus import IControlPubSub, encodeMessage, loadMessage, restoreBytes
from httpstream.cluster.deadlines import Deadlines
from httpstream.cluster.ops import USER_METHODS, BuiltinOps
from httpstream.cluster.replies import (
    CODE_BAD_REQUEST,  # noqa: F401  (tests import the codes from here)
    CODE_ERROR,
    CODE_NO_SESSION,
    CODE_OK,
    CODE_UNKNOWN_OP,
    ControlledNode,
    ControlStopped,
    ControlTimeout,
    OpError,
    PendingRequest,
    PendingSurvey,
    Reply,
)
from httpstream.interfaces import IClusterNodes, IEmulationForwarder
from httpstream.logs import Logger
from httpstream.emulation import EmulationResult

ANNOUNCE_INTERVAL = 3.0  # Centrifugo's node info send interval
NODE_TTL = 7.0  # a node not announced for longer is forgotten
REQUEST_TIMEOUT = 10.0  # Centrifugo's defaultSurveyTimeout

# The control protocol this node speaks, in its announcements: 2 adds batched emulation forwarding
# (httpstream.cluster.batches); a node that announces none speaks 1 and gets one request per emulation request.
PROTOCOL = 2

Handler = Callable[[Any, str], Any]


@implementer(IClusterNodes, IEmulationForwarder)
class Control(Service):
    """
    This node's side of the control plane: its announcements, the list of live nodes, and requests between
    nodes. A service: start it with the node (it announces at once, then every 3 s), stop it with the node.

    Built-in ops: C{"emulation"} (payload C{{"session", "data"}}: run the data on that session's client of this
    node through the node's C{emulate}, code 2 when there is none), C{"info"} (this node's info), C{"channels"} (payload C{{"pattern"}}: this
    node's C{{channel: num_clients}}), C{"user"} (payload C{{"method", "request"}}: an API method acting on a
    user's connections, run by the handler given to L{setUserHandler}). L{register} adds others.

    @param node: the L{httpstream.node.node.Node} (its C{id}, C{info()}, C{channelCounts()} and C{emulate()} are
        used).
    @param pubsub: the L{IControlPubSub} (a L{ShardPubSub}, or a L{MemoryBus}'s in tests).
    @param prefix: the channel prefix (Centrifugo's C{redis_prefix}, default C{centrifugo}).
    """

    log = Logger()

    def __init__(
        self,
        reactor: IReactorTime,
        node: ControlledNode,
        pubsub: IControlPubSub,
        prefix: str = "centrifugo",
        requestTimeout: float = REQUEST_TIMEOUT,
        announceInterval: float = ANNOUNCE_INTERVAL,
        nodeTTL: float = NODE_TTL,
    ) -> None:
        self._reactor = reactor
        self.node = node
        self.nodeID: str = node.id
        self.pubsub = pubsub
        self.prefix = prefix
        self.controlChannel = f"{prefix}.control"
        self.requestTimeout = requestTimeout
        self.announceInterval = announceInterval
        self.nodeTTL = nodeTTL
        # Other nodes: id -> (their last announced info, when it arrived, their control protocol).
        self._nodes: dict[str, tuple[dict[str, Any], float, int]] = {}
        self._lastID = 0
        self._pending: dict[int, PendingRequest | PendingSurvey] = {}
        # Every request's timeout, forwarded emulation requests' included: one reactor call for all of them.
        self._deadlines = Deadlines(reactor, self._expire)
        self._batches = EmulationBatches(
            reactor,
            self.nodeID,
            lambda nodeID, message: self.pubsub.publish(self.nodeChannel(nodeID), message),
            self._runEmulation,
            self._deadlines,
        )
        self._loop: Optional[LoopingCall] = None
        self._ops = BuiltinOps(node)
        self._handlers: dict[str, Handler] = {
            "emulation": self._ops.emulation,
            "info": lambda payload, origin: self.localInfo(),
            "channels": self._ops.channels,
            "user": self._ops.user,
        }

    def nodeChannel(self, nodeID: str) -> str:
        """The channel only C{nodeID} reads."""
        return f"{self.prefix}.node.{nodeID}"

    # Service

    def startService(self) -> None:
        Service.startService(self)
        self.pubsub.start([self.controlChannel, self.nodeChannel(self.nodeID)], self._received, self.announce)
        self._loop = LoopingCall(self._tick)
        self._loop.clock = self._reactor
        self._loop.start(self.announceInterval, now=True)

    def stopService(self) -> Deferred[None]:
        Service.stopService(self)
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        self._batches.stop()
        # Tell the others now rather than let them wait 7 s; best effort, the connection closes right after.
        self._publish(self.controlChannel, {"type": "leave", "from": self.nodeID}).addErrback(lambda _: None)
        pending, self._pending = self._pending, {}
        self._deadlines.clear()
        for entry in pending.values():
            entry.deferred.errback(ControlStopped())
        return self.pubsub.stop()

    # Nodes

    def localInfo(self) -> dict[str, Any]:
        """This node's info, as the C{info} API method lists it."""
        return self.node.info()

    def announce(self) -> None:
        """Publish this node's info on the control channel."""
        d = self._publish(
            self.controlChannel, {"type": "node", "from": self.nodeID, "node": self.localInfo(), "proto": PROTOCOL}
        )
        d.addErrback(lambda f: self.log.debug("announcement not sent: {error}", error=f.getErrorMessage()))

    def _tick(self) -> None:
        try:
            self._prune()
            self.announce()
        except Exception:
            self.log.failure("control plane tick")

    def _prune(self) -> None:
        deadline = self._reactor.seconds() - self.nodeTTL
        for nodeID, (_, seen, _) in list(self._nodes.items()):
            if seen < deadline:
                del self._nodes[nodeID]
                self.log.info("node {node} is gone (not announced for {ttl} s)", node=nodeID, ttl=self.nodeTTL)

    def _liveOthers(self) -> list[str]:
        self._prune()
        return list(self._nodes)

    def isKnownNode(self, nodeID: str) -> bool:
        """True when C{nodeID} is this node or announced itself within the last 7 s."""
        if nodeID == self.nodeID:
            return True
        entry = self._nodes.get(nodeID)
        return entry is not None and self._reactor.seconds() - entry[1] <= self.nodeTTL

    def nodes(self) -> list[dict[str, Any]]:
        """The info of every live node, this one first (fresh) then the others (as last announced)."""
        return [self.localInfo()] + [entry[0] for entry in (self._nodes[n] for n in self._liveOthers())]

    def _announced(self, origin: str, info: Any, protocol: Any) -> None:
        if type(info) is not dict:
            return
        isNew = not self.isKnownNode(origin)
        self._nodes[origin] = (dict(info, uid=origin), self._reactor.seconds(), protocol if type(protocol) is int else 1)
        if isNew:
            self.log.info("node {node} joined", node=origin)
            # Let a newcomer learn about this node now rather than in up to 3 s.
            self.announce()

    def _left(self, origin: str) -> None:
        if self._nodes.pop(origin, None) is not None:
            self.log.info("node {node} left", node=origin)
        for rid, entry in list(self._pending.items()):
            if isinstance(entry, PendingSurvey) and origin in entry.expected:
                entry.expected.discard(origin)
                self._surveyProgress(rid, entry)

    # Ops

    def register(self, op: str, handler: Handler) -> None:
        """
        Run C{handler(payload, originNodeID)} for requests naming C{op}; it returns the result (or a Deferred
        of it), or raises L{OpError} to reply with another code.
        """
        self._handlers[op] = handler

    def setUserHandler(self, handler: Callable[[str, dict[str, Any]], Any]) -> None:
        """
        Run C{handler(method, request)} for the C{"user"} op: an API method of L{USER_METHODS} on this node's
        connections of the user (the request as the API got it). Its result (or Deferred) is the reply's.
        """
        self._ops.userHandler = handler

    def _run(self, op: str, payload: Any, origin: str) -> Deferred[tuple[int, Any]]:
        handler = self._handlers.get(op)
        if handler is None:
            return succeed((CODE_UNKNOWN_OP, None))

        def failed(f: Failure) -> tuple[int, Any]:
            error = f.value
            if isinstance(error, OpError):
                return error.code, error.result
            self.log.failure("control op {op} from {origin}", f, op=op, origin=origin)
            return CODE_ERROR, None

        return maybeDeferred(handler, payload, origin).addCallbacks(lambda result: (CODE_OK, result), failed)

    def _runEmulation(self, session: str, data: bytes, origin: str) -> Deferred[int]:
        """One request of a batch from C{origin}: its reply code (the C{"emulation"} op's handler, as for a request)."""
        handler = self._handlers.get("emulation")
        if handler == self._ops.emulation:
            return self._ops.emulationCode(session, data, origin)
        return self._run("emulation", {"session": session, "data": data}, origin).addCallback(lambda answer: answer[0])

    # Requests

    def _newID(self) -> int:
        self._lastID += 1
        return self._lastID

    def _publish(self, channel: str, message: dict[str, Any]) -> Deferred[None]:
        try:
            encoded = encodeMessage(message)
        except TypeError:
            return fail()
        return self.pubsub.publish(channel, encoded)

    def request(self, target: str, op: str, payload: Any = None, timeout: Optional[float] = None) -> Deferred[Reply]:
        """
        Run C{op} on node C{target} (in-process when it is this node) and get its L{Reply}.

        @return: a Deferred firing with the reply whatever its code; failing with L{ControlTimeout} when none
            came in C{timeout} seconds (default 10), or with the publish error when the request could not be sent.
        """
        if target == self.nodeID:
            return self._run(op, payload, self.nodeID).addCallback(lambda answer: Reply(target, *answer))
        rid = self._newID()
        entry = PendingRequest(Deferred(), target)
        # Registered before publishing: a reply may come back before publish returns.
        self._pending[rid] = entry
        self._deadlines.add(rid, self.requestTimeout if timeout is None else timeout)
        message = {"type": "request", "from": self.nodeID, "id": rid, "op": op, "payload": payload}
        self._publish(self.nodeChannel(target), message).addErrback(self._sendFailed, rid)
        return entry.deferred

    def survey(self, op: str, payload: Any = None, timeout: Optional[float] = None) -> Deferred[dict[str, Reply]]:
        """
        Run C{op} on every live node, this one included (in-process), and gather their replies.

        @return: a Deferred firing with C{{nodeID: Reply}} once every node known when asking has replied, or
            after C{timeout} seconds (default 10) with the replies that came (missing nodes are left out); failing
            with the publish error when the request could not be sent.
        """
        others = self._liveOthers()
        if not others:
            return self._run(op, payload, self.nodeID).addCallback(
                lambda answer: {self.nodeID: Reply(self.nodeID, *answer)}
            )
        rid = self._newID()
        entry = PendingSurvey(Deferred(), set(others))
        self._pending[rid] = entry
        self._deadlines.add(rid, self.requestTimeout if timeout is None else timeout)
        message = {"type": "request", "from": self.nodeID, "id": rid, "op": op, "payload": payload}
        self._publish(self.controlChannel, message).addErrback(self._sendFailed, rid)
        if rid in self._pending:

            def ranHere(answer: tuple[int, Any]) -> None:
                entry.replies[self.nodeID] = Reply(self.nodeID, *answer)
                entry.localDone = True
                self._surveyProgress(rid, entry)

            self._run(op, payload, self.nodeID).addCallback(ranHere)
        return entry.deferred

    def _sendFailed(self, failure: Failure, rid: int) -> None:
        entry = self._pending.pop(rid, None)
        if entry is None:
            return
        self._deadlines.settled()
        entry.deferred.errback(failure)

    def _expire(self, rid: int) -> bool:
        """Request C{rid}'s deadline has passed (L{Deadlines}): whether it was still waiting."""
        entry = self._pending.pop(rid, None)
        if isinstance(entry, PendingRequest):
            entry.deferred.errback(ControlTimeout(f"node {entry.target} did not reply"))
        elif isinstance(entry, PendingSurvey):
            self.log.debug("survey {id}: no reply from {nodes}", id=rid, nodes=sorted(entry.expected))
            entry.deferred.callback(entry.replies)
        else:
            return self._batches.expire(rid)
        return True

    def _surveyProgress(self, rid: int, entry: PendingSurvey) -> None:
        if entry.localDone and not entry.expected and self._pending.get(rid) is entry:
            del self._pending[rid]
            self._deadlines.settled()
            entry.deferred.callback(entry.replies)

    def _replied(self, origin: str, message: dict[str, Any]) -> None:
        rid, code = message.get("id"), message.get("code")
        if type(rid) is not int or type(code) is not int:
            return
        entry = self._pending.get(rid)
        reply = Reply(origin, code, message.get("result"))
        if isinstance(entry, PendingRequest) and entry.target == origin:
            del self._pending[rid]
            self._deadlines.settled()
            entry.deferred.callback(reply)
        elif isinstance(entry, PendingSurvey):
            # A node that joined after the survey started answers too: keep its reply, wait only for the others.
            entry.replies[origin] = reply
            entry.expected.discard(origin)
            self._surveyProgress(rid, entry)

    def _serve(self, origin: str, message: dict[str, Any]) -> None:
        rid, op = message.get("id"), message.get("op")
        if type(rid) is not int or type(op) is not str:
            return

        def answer(result: tuple[int, Any]) -> Deferred[None]:
            code, value = result
            reply = {"type": "reply", "from": self.nodeID, "id": rid, "code": code, "result": value}
            try:
                encoded = encodeMessage(reply)
            except TypeError:
                self.log.error("control op {op}: result cannot be encoded", op=op)
                encoded = encodeMessage(dict(reply, code=CODE_ERROR, result=None))
            return self.pubsub.publish(self.nodeChannel(origin), encoded)

        d = self._run(op, message.get("payload"), origin).addCallback(answer)
        d.addErrback(lambda f: self.log.warn("control reply to {node} not sent: {error}", node=origin,
                                             error=f.getErrorMessage()))

    def _received(self, channel: str, raw: bytes) -> None:
        try:
            message = loadMessage(raw)
        except ValueError:
            self.log.debug("undecodable control message on {channel}", channel=channel)
            return
        if type(message) is not dict:
            return
        origin = message.get("from")
        if type(origin) is not str or not origin or origin == self.nodeID:
            return
        kind = message.get("type")
        # The batches carry no bytes as {"$b64"} objects: they skip the walk that restores them.
        if kind == "emulated":
            self._batches.answered(origin, message.get("items"))
            return
        if kind == "emulation":
            self._batches.serve(origin, message.get("items"))
            return
        try:
            message = restoreBytes(message)
        except ValueError:
            self.log.debug("undecodable control message on {channel}", channel=channel)
            return
        if kind == "node":
            self._announced(origin, message.get("node"), message.get("proto"))
        elif kind == "request":
            self._serve(origin, message)
        elif kind == "reply":
            self._replied(origin, message)
        elif kind == "leave":
            self._left(origin)

    # What the rest of httpstream calls

    def forwardEmulation(
        self, nodeID: str, session: str, data: bytes, timeout: Optional[float] = None
    ) -> Deferred[EmulationResult]:
        """
        Run emulation C{data} on C{session} of node C{nodeID} (see L{IEmulationForwarder}): the reply's code says
        whether it ran there; no reply in C{timeout} seconds (default 10) or a request that could not be sent is
        L{EmulationResult.UNREACHABLE}, logged.

        To a node of control protocol 2 the request leaves with the others of this reactor turn, in one message
        (L{EmulationBatches}); to an older node, alone (a C{"request"} of op C{"emulation"}).
        """
        known = self._nodes.get(nodeID)
        if known is not None and known[2] >= 2:
            timeout = self.requestTimeout if timeout is None else timeout
            return self._batches.forward(nodeID, self._newID(), session, data, timeout)

        def replied(reply: Reply) -> EmulationResult:
            if reply.code == CODE_OK:
                return EmulationResult.FORWARDED
            if reply.code == CODE_NO_SESSION:
                return EmulationResult.NO_SESSION
            return EmulationResult.REFUSED

        def failed(f: Failure) -> EmulationResult:
            self.log.warn("emulation for node {node} failed: {error}", node=nodeID, error=f.getErrorMessage())
            return EmulationResult.UNREACHABLE

        d = self.request(nodeID, "emulation", {"session": session, "data": data}, timeout)
        return d.addCallbacks(replied, failed)

    def userOp(self, method: str, request: dict[str, Any]) -> Deferred[dict[str, Reply]]:
        """Run an API method of L{USER_METHODS} on the user's connections of every node (see L{survey})."""
        return self.survey("user", {"method": method, "request": request})

    def channels(self, pattern: str = "") -> Deferred[dict[str, int]]:
        """The channels with subscribers on any node matching C{pattern}, with their total number of clients."""

        def merge(replies: dict[str, Reply]) -> dict[str, int]:
            total: dict[str, int] = {}
            for reply in replies.values():
                if reply.code == CODE_OK and type(reply.result) is dict:
                    for channel, count in reply.result.items():
                        total[channel] = total.get(channel, 0) + int(count)
            return total

        return self.survey("channels", {"pattern": pattern}).addCallback(merge)

