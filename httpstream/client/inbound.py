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
from collections import deque
from typing import Any, Callable, Optional, Union

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


class CommandQueue:
    """
    The commands of one connection, run one at a time (or up to C{concurrency} of L{CONCURRENT} at once).

    @param dispatch: runs one decoded command (L{BAD_FRAME} for the place where a frame went bad), returning
        None or a Deferred the next command waits for.
    @param close: ends the connection with a disconnect.
    @param closed: whether the connection has ended (nothing more runs).
    @param replyError: sends a command's error reply (a handler that raised gets error 100).
    @param concurrency: C{client_concurrency}; 0 or 1 runs every command after the previous one has ended.
    """

    log = Logger()

    def __init__(self, codec: Codec, metrics: Any, clientID: str, transport: str,
                 dispatch: Callable[[dict[str, Any]], Result], close: Callable[[codes.Disconnect], None],
                 closed: Callable[[], bool], replyError: Callable[[int, codes.Error], None],
                 concurrency: int = 0) -> None:
        self._codec = codec
        self._metrics = metrics
        self._clientID = clientID
        self._transport = transport
        self._dispatch = dispatch
        self._close = close
        self._closed = closed
        self._replyError = replyError
        self._concurrency = concurrency
        self._pending: deque[tuple[list[dict[str, Any]], int, Deferred[None]]] = deque()
        self._running = False
        # Command id -> whether it has replied with an error, while it runs (several may, with concurrency).
        self._errored: dict[int, bool] = {}
        # Concurrent commands in flight, and what the queue waits on while they fill every place.
        self._inFlight = 0
        self._room: Optional[Deferred[None]] = None

    def handleData(self, data: bytes) -> Deferred[None]:
        if self._closed():
            return succeed(None)
        try:
            commands = self._codec.decode_commands(data)
            self._metrics.messagesReceived.labels(self._transport).inc(len(commands))
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
        while self._pending:
            commands, start, done = self._pending.popleft()
            for index in range(start, len(commands)):
                if self._closed():
                    break
                result = self._dispatch(commands[index])
                if isinstance(result, Deferred) and not _settled(result):
                    self._pending.appendleft((commands, index + 1, done))
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
            self._pending.popleft()[2].callback(None)

    def errorReplied(self, commandID: int) -> None:
        """The running command C{commandID} replied with an error: it counts as "error"."""
        if commandID in self._errored:
            self._errored[commandID] = True

    def run(self, method: str, handler: Handler, commandID: int, request: dict[str, Any]) -> Result:
        """
        Run one command's handler, counting it by outcome (an error reply counts as "error") and latency.

        @return: what the queue waits for before the next command: the handler's result, or for a concurrent
            command in flight, None while there is room for another (a Deferred of the room otherwise).
        """
        started = time.perf_counter()
        self._errored[commandID] = False
        try:
            result = handler(commandID, request)
        except Exception:
            self.log.failure("client {client}: {method} failed", client=self._clientID, method=method)
            self._replyError(commandID, codes.ERROR_INTERNAL)
            self._errored.pop(commandID, None)
            self._observe(method, started, "error")
            return None
        if not isinstance(result, Deferred):
            self._observe(method, started, "error" if self._errored.pop(commandID, False) else "ok")
            return result
        result.addBoth(self._observed, method, started, commandID)
        if self._concurrency > 1 and method in CONCURRENT and not _settled(result):
            return self._flying(result)
        return result

    def _observed(self, result: Any, method: str, started: float, commandID: int) -> Any:
        failed = isinstance(result, Failure) or self._errored.pop(commandID, False)
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
        self._metrics.commands.labels(method, outcome).inc()
        self._metrics.commandDuration.labels(method).observe(time.perf_counter() - started)
