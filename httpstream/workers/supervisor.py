# -*- test-case-name: tests.workers.test_supervisor -*-
"""
The parent process of C{--workers N}: L{Supervisor} opens the listening sockets once and starts N worker processes
that all accept from them (each adopts the inherited descriptors: L{httpstream.listeners.adopt}).

Why one shared socket rather than C{SO_REUSEPORT} (one socket per worker, the kernel hashing connections over
them): every idle worker is woken for a new connection and the first to call C{accept} takes it, so a busy worker
takes fewer; a restarting worker loses no connection waiting in the backlog (a C{SO_REUSEPORT} socket that closes
drops the connections queued on it); the supervisor opens the port once, so C{port 0}, TLS and every endpoint
description work unchanged. Measured in docs/deployment.md.
"""

from __future__ import annotations

import dataclasses
import os
import signal
from typing import Any, Callable, Optional, Sequence

from twisted.application.service import Service
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IDelayedCall, IListeningPort, IStreamServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger as _TwistedLogger
from twisted.python.failure import Failure

from httpstream.config import Config
from httpstream.listeners import ListenError, configListenDescription, endpointFor, kindOf, withBacklog
from httpstream.logs import Logger, setLogLevel
from httpstream import __version__
from httpstream.workers.relay import STATUS_FD, WorkerProtocol, describeEnd

__all__ = ["Backoff", "OpenSocket", "Supervisor", "checkSockets", "openSockets"]

# After shutdown_timeout, the time a worker still gets to exit before it is killed (its own stop gives up at
# shutdown_timeout; this covers its process exit).
STOP_GRACE = 5.0
# The first inherited socket's descriptor in a worker (0-2 are standard, 3 the status pipe).
FIRST_SOCKET_FD = STATUS_FD + 1


@dataclasses.dataclass(frozen=True)
class Backoff:
    """
    How long before a worker that ended is started again: C{first} seconds, doubled for each further end that came
    within C{stable} seconds of its start (a crash loop), up to C{most}; a worker that ran longer starts again
    after C{first}.
    """

    first: float = 0.5
    most: float = 30.0
    stable: float = 10.0

    def delay(self, failures: int) -> float:
        return float(min(self.most, self.first * 2 ** max(0, failures - 1)))


@dataclasses.dataclass
class OpenSocket:
    """A listening socket the supervisor opened: its description, port (never read here) and scheme."""

    description: str
    port: IListeningPort
    scheme: str

    @property
    def fd(self) -> int:
        fd: int = self.port.fileno()  # type: ignore[attr-defined]
        return fd


@dataclasses.dataclass
class _Slot:
    index: int
    process: Optional[WorkerProtocol] = None
    startedAt: float = 0.0
    failures: int = 0
    restart: Optional[IDelayedCall] = None


class _NeverServed(Protocol):
    """The supervisor never accepts on its sockets (their reading is stopped); this only satisfies listen()."""


def checkSockets(reactor: Any, config: Config, listen: Sequence[str]) -> list[tuple[str, IStreamServerEndpoint]]:
    """
    The endpoints of C{listen} (or of the config's address and port) that workers can share.

    @raise ListenError: a description that does not parse, or a UNIX socket (a worker that stops would remove its
        file for every worker).
    """
    endpoints = []
    for description in list(listen) or [configListenDescription(config)]:
        if kindOf(description) == "unix":
            raise ListenError(f"{description!r}: workers share TCP sockets only (use tcp: or ssl:)")
        endpoints.append((description, endpointFor(reactor, description, withBacklog(description))))
    return endpoints


def openSockets(reactor: Any, config: Config, listen: Sequence[str]) -> list[OpenSocket]:
    """
    Listen on C{listen} (endpoint descriptions) or the config's address and port, without ever accepting: the
    workers do.

    @raise ListenError: as L{checkSockets}.
    @raise CannotListenError: the port cannot be had.
    """
    sockets = []
    for description, endpoint in checkSockets(reactor, config, listen):
        kind = kindOf(description)
        outcome: list[Any] = []
        endpoint.listen(Factory.forProtocol(_NeverServed)).addBoth(outcome.append)
        if not outcome:
            raise ListenError(f"{description!r} does not listen at once")
        if isinstance(outcome[0], Failure):
            outcome[0].raiseException()
        port: IListeningPort = outcome[0]
        port.stopReading()  # type: ignore[attr-defined]
        scheme = "https" if kind == "ssl" or (not listen and config.tls) else "http"
        sockets.append(OpenSocket(description, port, scheme))
    return sockets


class Supervisor(Service):
    """
    Runs C{count} workers behind the sockets it opens; restarts one that ends, forwards SIGHUP, stops them all.

    @ivar sockets: the listening sockets, once started.
    """

    log = Logger()
    announce = _TwistedLogger()

    def __init__(
        self,
        reactor: Any,
        config: Config,
        count: int,
        command: Sequence[str],
        listen: Sequence[str] = (),
        reloadOnHUP: bool = True,
        backoff: Backoff = Backoff(),
        open: Callable[[Any, Config, Sequence[str]], list[OpenSocket]] = openSockets,
        environ: Optional[dict[str, str]] = None,
    ) -> None:
        """
        @param command: the worker's command line, its worker options excepted (L{workerArguments} adds them).
        @param listen: endpoint descriptions, as given to C{--listen} (else the config's address and port).
        @param reloadOnHUP: install a SIGHUP handler that forwards the signal to every worker.
        """
        self.reactor = reactor
        self.config = config
        self.count = count
        self.command = list(command)
        self.listen = tuple(listen)
        self.backoff = backoff
        self.sockets: list[OpenSocket] = []
        self.slots = [_Slot(index) for index in range(1, count + 1)]
        self._open = open
        self._reloadOnHUP = reloadOnHUP
        self._environ = environ if environ is not None else dict(os.environ)
        self._announced = False
        self._stopping = False
        self._stopped: Optional[Deferred[None]] = None

    # Starting

    def startService(self) -> None:
        setLogLevel(self.config.log_level)
        try:
            self.sockets = self._open(self.reactor, self.config, self.listen)
        except CannotListenError as error:
            reason = getattr(error.socketError, "strerror", None) or str(error.socketError)
            self.log.error(
                "cannot listen on {address}:{port}: {reason}",
                address=error.interface or "*", port=error.port, reason=reason.lower(),
            )
            raise SystemExit(1)
        if self._reloadOnHUP:
            signal.signal(signal.SIGHUP, lambda signum, frame: self.reactor.callFromThread(self.reload))
        super().startService()  # type: ignore[no-untyped-call]
        self.log.info("starting {count} workers", count=self.count)
        for slot in self.slots:
            self._spawn(slot)

    def workerArguments(self, slot: _Slot) -> list[str]:
        """The command line of C{slot}'s worker: the command, then where its sockets and status pipe are."""
        fds = ",".join(str(FIRST_SOCKET_FD + k) for k in range(len(self.sockets)))
        return [
            *self.command, "--worker", str(slot.index), "--inherit", fds, "--status-fd", str(STATUS_FD),
            "--supervisor", str(os.getpid()),
        ]

    def _spawn(self, slot: _Slot) -> None:
        slot.restart = None
        if self._stopping:
            return
        childFDs: dict[int, Any] = {0: "w", 1: "r", 2: "r", STATUS_FD: "r"}
        for k, opened in enumerate(self.sockets):
            childFDs[FIRST_SOCKET_FD + k] = opened.fd
        process = WorkerProtocol(slot.index, self._ready, self._ended)
        arguments = self.workerArguments(slot)
        slot.startedAt = self.reactor.seconds()
        try:
            self.reactor.spawnProcess(process, arguments[0], arguments, env=self._environ, childFDs=childFDs)
        except OSError as error:
            # No fork or no pipe (out of memory, processes or descriptors): tried again as a worker that died at
            # once, rather than a traceback and a worker fewer for good.
            slot.failures += 1
            delay = self.backoff.delay(slot.failures)
            self.log.error("worker {index} could not be started ({error}); trying again in {delay:.1f}s",
                           index=slot.index, error=error.strerror or error, delay=delay)
            slot.restart = self.reactor.callLater(delay, self._spawn, slot)
            return
        slot.process = process
        self.log.info("worker {index} started (pid {pid})", index=slot.index, pid=process.pid)

    def _ready(self, process: WorkerProtocol) -> None:
        if self._announced or not all(slot.process is not None and slot.process.ready for slot in self.slots):
            return
        self._announced = True
        for opened in self.sockets:
            host = opened.port.getHost()
            where = (
                f"{opened.scheme}://{host.host}:{host.port}" if isinstance(host, (IPv4Address, IPv6Address))
                else f"{opened.scheme} on {opened.description}"
            )
            # The line an operator (and the test harness) waits for: every worker accepts.
            self.announce.info(
                "httpstream {version}: {count} workers listening on {where}",
                version=__version__, count=self.count, where=where,
            )

    def _ended(self, process: WorkerProtocol, reason: Failure) -> None:
        slot = self.slots[process.index - 1]
        if slot.process is process:
            slot.process = None
        how = describeEnd(reason)
        if self._stopping:
            self.log.info("{system} {how}", system=process.system, how=how)
            self._checkStopped()
            return
        ranFor = self.reactor.seconds() - slot.startedAt
        slot.failures = slot.failures + 1 if ranFor < self.backoff.stable else 1
        delay = self.backoff.delay(slot.failures)
        self.log.warn(
            "{system} {how} after {ranFor:.1f}s; restarting it in {delay:.1f}s",
            system=process.system, how=how, ranFor=ranFor, delay=delay,
        )
        slot.restart = self.reactor.callLater(delay, self._spawn, slot)

    # Reloading

    def reload(self) -> None:
        """SIGHUP: every worker reloads the config file itself (and logs what it applied)."""
        running = [slot.process for slot in self.slots if slot.process is not None]
        sent = sum(process.signal("HUP") for process in running)
        self.log.info("config reload: SIGHUP forwarded to {sent} workers", sent=sent)

    # Stopping

    def stopService(self) -> Deferred[None]:
        """
        SIGTERM to every worker, each of which stops as one node does (clients disconnected with 3001, within
        C{shutdown_timeout}); a worker still running C{STOP_GRACE} seconds after that is killed. Then the sockets
        close.
        """
        super().stopService()  # type: ignore[no-untyped-call]
        self._stopping = True
        for slot in self.slots:
            if slot.restart is not None and slot.restart.active():
                slot.restart.cancel()
            slot.restart = None
        self._stopped = Deferred()
        running = [slot.process for slot in self.slots if slot.process is not None]
        self.log.info("stopping {count} workers", count=len(running))
        for process in running:
            process.signal("TERM")
        timer = self.reactor.callLater(self.config.shutdown_timeout + STOP_GRACE, self._kill)
        stopped: Deferred[None] = self._stopped
        self._checkStopped()

        def closeSockets(_: object) -> Deferred[Any]:
            if timer.active():
                timer.cancel()
            sockets, self.sockets = self.sockets, []
            return gatherResults([maybeDeferred(opened.port.stopListening) for opened in sockets])

        stopped.addCallback(closeSockets)
        stopped.addCallback(lambda _: None)
        return stopped

    def _kill(self) -> None:
        for slot in self.slots:
            if slot.process is not None:
                self.log.warn("{system} still running after the shutdown timeout: killed", system=slot.process.system)
                slot.process.signal("KILL")

    def _checkStopped(self) -> None:
        if self._stopped is not None and not self._stopped.called and all(s.process is None for s in self.slots):
            self._stopped.callback(None)
