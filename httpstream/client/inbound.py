# -*- test-case-name: tests.client.test_client -*-
"""
The way in: frames of encoded commands are decoded and run in order, one command after the other even when one
waits on the policy or the engine (later frames wait behind it), each counted by outcome and latency.

With C{client_concurrency} above 1 (Centrifugo's ``client.concurrency``), the commands Centrifugo hands to its
handlers in parallel (L{CONCURRENT}) stop holding the queue: up to that many are in flight, and the next command
waits for one of them to end, as Centrifugo's reader waits on its semaphore. The others still run in order.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Optional, Protocol, Union

from twisted.internet.defer import Deferred, succeed
from twisted.python.failure import Failure

from httpstream.logs import Logger
from httpstream.protocol import Codec, DecodeError, codes

# Frames waiting while an earlier one waits on the engine; past this a peer is flooding us.
MAX_PENDING_FRAMES = 128

Result = Union[None, Deferred[Any]]
Handler = Callable[[int, dict[str, Any]], Result]

# Stands after the good commands of a frame that went bad: the client is disconnected when it is reached.
BAD_FRAME: dict[str, Any] = {}

# The commands Centrifugo runs concurrently under client.concurrency (its client handler's OnSubscribe, OnPublish,
# OnHistory, OnPresence, OnPresenceStats, OnRPC, OnRefresh, OnSubRefresh); connect, unsubscribe, send and pongs
# run in order whatever the setting.
CONCURRENT = frozenset({"subscribe", "publish", "history", "presence", "presence_stats", "rpc", "refresh",
                        "sub_refresh"})


def _settled(d: Deferred[Any]) -> bool:
    """
    Whether C{d} has its result now. Not C{d.called}: a Deferred whose callback returned a Deferred still waiting
    (a policy's decision, then the engine's subscribe) is called but has no result yet.
    """
    settled = False

    def settle(result: Any) -> Any:
        nonlocal settled
        settled = True
        return result

    d.addBoth(settle)
    return settled


class Commanded(Protocol):
    """The client, as its command queue uses it."""

    clientID: str

    @property
    def closed(self) -> bool:
        """Whether the connection has ended (nothing more runs)."""

    def dispatch(self, command: dict[str, Any]) -> Result:
        """
        Run one decoded command (L{BAD_FRAME} for the place where a frame went bad), returning None or a Deferred
        the next command waits for.
        """

    def close(self, disconnect: codes.Disconnect, flush: bool = True) -> None:
        """End the connection with a disconnect."""

    def replyError(self, commandID: int, error: codes.Error) -> None:
        """Send a command's error reply (a handler that raised gets error 100)."""


class CommandQueue:
    """
    The commands of one connection, run one at a time (or up to C{concurrency} of L{CONCURRENT} at once).

    @param client: whose commands they are.
    @param concurrency: C{client_concurrency}; 0 or 1 runs every command after the previous one has ended.
    """

    __slots__ = ("_client", "_codec", "_metrics", "_transport", "_concurrency", "_pending", "_running", "_errored",
                 "_inFlight", "_room")

    log = Logger()

    def __init__(self, client: Commanded, codec: Codec, metrics: Any, transport: str, concurrency: int = 0) -> None:
        self._client = client
        self._codec = codec
        self._metrics = metrics
        self._transport = transport
        self._concurrency = concurrency
        # Frames waiting behind a command that waits (a list: at most MAX_PENDING_FRAMES, and small when empty).
        self._pending: list[tuple[list[dict[str, Any]], int, Deferred[None]]] = []
        self._running = False
        # Command id -> whether it has replied with an error, while it runs (several may, with concurrency); made
        # when a command runs and dropped when none does, so an idle connection holds no table.
        self._errored: Optional[dict[int, bool]] = None
        # Concurrent commands in flight, and what the queue waits on while they fill every place.
        self._inFlight = 0
        self._room: Optional[Deferred[None]] = None

    @property
    def _clientID(self) -> str:
        return self._client.clientID

    def _close(self, disconnect: codes.Disconnect) -> None:
        self._client.close(disconnect)

    def _erroredOf(self, commandID: int) -> bool:
        """Whether command C{commandID} replied with an error; it is no longer running."""
        errored = self._errored
        if errored is None:
            return False
        result = errored.pop(commandID, False)
        if not errored:
            self._errored = None
        return result

    def handleData(self, data: bytes) -> Deferred[None]:
        if self._client.closed:
            return succeed(None)
        try:
            commands = self._codec.decode_commands(data)
            self._metrics.child(self._metrics.messagesReceived, self._transport).inc(len(commands))
        except DecodeError as e:
            self.log.info("client {client}: bad frame: {error}", client=self._clientID, error=str(e))
            # As Centrifugo: the commands before the bad one run, then the client is cut off (3501).
            commands = [*e.commands, BAD_FRAME] if e.commands else []
        return self.handleCommands(commands)

    def handleCommands(self, commands: list[dict[str, Any]]) -> Deferred[None]:
        """Run decoded commands as one frame: after those already waiting, the connection cut off when none."""
        done: Deferred[None] = Deferred()
        if not commands:
            self._close(codes.DISCONNECT_BAD_REQUEST)
            done.callback(None)
            return done
        if len(self._pending) >= MAX_PENDING_FRAMES:
            self._close(codes.DISCONNECT_TOO_MANY_REQUESTS)
            done.callback(None)
            return done
        self._pending.append((commands, 0, done))
        if not self._running:
            self._drain()
        return done

    def _drain(self) -> None:
        self._running = True
        client = self._client
        while self._pending:
            commands, start, done = self._pending.pop(0)
            for index in range(start, len(commands)):
                if client.closed:
                    break
                result = client.dispatch(commands[index])
                if isinstance(result, Deferred) and not _settled(result):
                    self._pending.insert(0, (commands, index + 1, done))
                    result.addBoth(self._resume)
                    return
            done.callback(None)
        self._running = False

    def _resume(self, result: Any) -> None:
        if isinstance(result, Failure):
            self.log.failure("client {client}: command failed", result, client=self._clientID)
        self._drain()

    def clear(self) -> None:
        """The connection ended: the frames still waiting are done (their commands will not run)."""
        while self._pending:
            self._pending.pop(0)[2].callback(None)

    def errorReplied(self, commandID: int) -> None:
        """The running command C{commandID} replied with an error: it counts as "error"."""
        if self._errored is not None and commandID in self._errored:
            self._errored[commandID] = True

    def run(self, method: str, handler: Handler, commandID: int, request: dict[str, Any]) -> Result:
        """
        Run one command's handler, counting it by outcome (an error reply counts as "error") and latency.

        @return: what the queue waits for before the next command: the handler's result, or for a concurrent
            command in flight, None while there is room for another (a Deferred of the room otherwise).
        """
        started = time.perf_counter()
        if self._errored is None:
            self._errored = {}
        self._errored[commandID] = False
        try:
            result = handler(commandID, request)
        except Exception:
            self.log.failure("client {client}: {method} failed", client=self._clientID, method=method)
            self._client.replyError(commandID, codes.ERROR_INTERNAL)
            self._erroredOf(commandID)
            self._observe(method, started, "error")
            return None
        if not isinstance(result, Deferred):
            self._observe(method, started, "error" if self._erroredOf(commandID) else "ok")
            return result
        result.addBoth(self._observed, method, started, commandID)
        if self._concurrency > 1 and method in CONCURRENT and not _settled(result):
            return self._flying(result)
        return result

    def _observed(self, result: Any, method: str, started: float, commandID: int) -> Any:
        failed = self._erroredOf(commandID) or isinstance(result, Failure)
        self._observe(method, started, "error" if failed else "ok")
        return result

    def _flying(self, result: Deferred[Any]) -> Result:
        """A concurrent command is in flight: the queue goes on while there is room for another."""
        self._inFlight += 1
        result.addBoth(self._landed)
        if self._inFlight < self._concurrency:
            return None
        self._room = Deferred()
        return self._room

    def _landed(self, result: Any) -> None:
        self._inFlight -= 1
        if isinstance(result, Failure):
            self.log.failure("client {client}: command failed", result, client=self._clientID)
        room, self._room = self._room, None
        if room is not None:
            room.callback(None)

    def _observe(self, method: str, started: float, outcome: str) -> None:
        metrics = self._metrics
        metrics.child(metrics.commands, method, outcome).inc()
        metrics.child(metrics.commandDuration, method).observe(time.perf_counter() - started)
