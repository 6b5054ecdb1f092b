# -*- test-case-name: tests.workers.test_workers_process -*-
"""
A worker's side of C{--workers} (L{httpstream.workers}): tell the supervisor once the node accepts connections, end
with it, and stop once on its SIGTERM.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ReactorNotRunning

from httpstream.logs import Logger

__all__ = ["serveAsWorker", "twistdCommand"]

_PR_SET_PDEATHSIG = 1
log = Logger()


def twistdCommand() -> list[str]:
    """twistd from the environment this process runs in, whatever PATH says."""
    from pathlib import Path

    script = Path(sys.executable).with_name("twistd")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def serveAsWorker(reactor: Any, accepting: Deferred[None], statusFd: int, supervisor: int) -> None:
    """
    Run this process as a worker of the supervisor whose pid is C{supervisor}: say "ready" on C{statusFd} once
    C{accepting} fires, be ended (SIGTERM) when the supervisor ends however it does, and take SIGTERM once.

    @raise SystemExit: the supervisor has already gone.
    """
    _endWithParent(supervisor)
    accepting.addCallback(lambda _: os.write(statusFd, b"ready\n"))
    reactor.callWhenRunning(_stopOnce, reactor)


def _endWithParent(supervisor: int) -> None:
    # Linux: the kernel sends SIGTERM when the parent dies, even by SIGKILL, so that no worker is left behind.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: the supervisor's SIGTERM is the way
    if os.getppid() != supervisor:  # it died before prctl took effect
        sys.stderr.write("httpstream: the supervisor has gone; this worker stops\n")
        raise SystemExit(1)


def _stopOnce(reactor: Any) -> None:
    # Twisted's handlers call reactor.stop() on every SIGTERM and SIGINT: a second one while stopping (systemd
    # signals the whole control group, then the supervisor does) would log ReactorNotRunning as unhandled. A
    # terminal's Ctrl-C reaches the whole process group: the supervisor stops the workers itself, so SIGINT is
    # ignored here.
    def stop() -> None:
        try:
            reactor.stop()
        except ReactorNotRunning:
            pass

    signal.signal(signal.SIGTERM, lambda signum, frame: reactor.callFromThread(stop))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    log.debug("worker of pid {pid}", pid=os.getppid())
