# -*- test-case-name: tests.workers.test_supervisor -*-
"""
The supervisor's side of one worker process: L{WorkerProtocol} publishes the worker's log records in the
supervisor's log (the worker writes them as JSON, L{httpstream.workers.childlog}), logs what it writes to its
standard error line by line, hears its "ready" on the status pipe, and reports its end.

Relayed events are published as they are, past httpstream's C{log_level} filter: the worker has filtered them
already with the same setting.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Optional

from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import LogLevel, LogPublisher, eventFromJSON, globalLogPublisher
from twisted.python.failure import Failure

__all__ = ["STATUS_FD", "WorkerProtocol", "describeEnd"]

# The worker's descriptors: 1 its log (JSON records), 2 its standard error, STATUS_FD the status pipe ("ready").
STATUS_FD = 3
_RECORD = b"\x1e"
# A record or line longer than this is cut: a worker must not grow the supervisor's memory without bound.
_MAX_PENDING = 1 << 20


def describeEnd(reason: Failure) -> str:
    """How a process ended, in words: C{exited with code 1}, C{killed by signal 9}."""
    error = reason.value
    if isinstance(error, ProcessDone):
        return "exited with code 0"
    if isinstance(error, ProcessTerminated):
        if error.signal is not None:
            return f"killed by signal {error.signal}"
        return f"exited with code {error.exitCode}"
    return f"ended ({error})"


class WorkerProtocol(ProcessProtocol):
    """
    One worker process, seen from the supervisor.

    @ivar system: how the worker is named in the log: C{worker 1 pid 1234} once it runs.
    """

    def __init__(
        self,
        index: int,
        onReady: Callable[["WorkerProtocol"], None],
        onEnded: Callable[["WorkerProtocol", Failure], None],
        publisher: Optional[LogPublisher] = None,
    ) -> None:
        self.index = index
        self.system = f"worker {index}"
        self.ready = False
        self._onReady = onReady
        self._onEnded = onEnded
        self._publish: Callable[[Any], None] = publisher if publisher is not None else globalLogPublisher
        self._buffers: dict[int, bytes] = {1: b"", 2: b"", STATUS_FD: b""}

    @property
    def pid(self) -> Optional[int]:
        pid: Optional[int] = getattr(self.transport, "pid", None)
        return pid

    def connectionMade(self) -> None:
        self.system = f"worker {self.index} pid {self.pid}"

    def signal(self, name: str) -> bool:
        """Send the process a signal (C{"TERM"}, C{"HUP"}, C{"KILL"}); False when it has already ended."""
        if self.transport is None or self.pid is None:
            return False
        try:
            self.transport.signalProcess(name)
        except Exception:  # ProcessExitedAlready, or OSError for a pid already reaped
            return False
        return True

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if childFD not in self._buffers:
            return
        pending = self._buffers[childFD] + data
        # A record is RS, JSON text (whose newlines are escaped) and a newline: every descriptor is read by line.
        *complete, rest = pending.split(b"\n")
        if len(rest) > _MAX_PENDING:
            complete.append(rest)
            rest = b""
        self._buffers[childFD] = rest
        for chunk in complete:
            self._received(childFD, chunk)

    def _received(self, childFD: int, chunk: bytes) -> None:
        if childFD == 1:
            self._relay(chunk)
        elif childFD == 2:
            self._line(chunk)
        elif chunk.strip() == b"ready" and not self.ready:
            self.ready = True
            self._onReady(self)

    def _relay(self, record: bytes) -> None:
        text = record.decode("utf-8", "replace").strip().lstrip(_RECORD.decode())
        if not text:
            return
        try:
            event = eventFromJSON(text)
        except ValueError:
            event = None
        if not isinstance(event, dict):
            # Not a record (a print() in the worker, which may be JSON too: 42, null): shown as a line of output.
            self._line(record)
            return
        event["log_system"] = self.system
        self._publish(event)

    def _line(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace").rstrip()
        if text:
            self._publish({
                "log_level": LogLevel.warn, "log_namespace": "httpstream.workers", "log_system": self.system,
                "log_format": "{line}", "line": text, "log_time": time.time(),
            })

    def processEnded(self, reason: Failure) -> None:
        for childFD in (1, 2):
            rest, self._buffers[childFD] = self._buffers[childFD], b""
            if rest:
                self._received(childFD, rest)
        self._onEnded(self, reason)
