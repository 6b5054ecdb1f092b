# -*- test-case-name: tests.workers.test_supervisor -*-
"""
A worker's log observer (C{twistd --logger httpstream.workers.childlog.observer}): every event as one JSON record on
standard output, which the supervisor reads (L{httpstream.workers.relay}) and publishes in its own log, with its
level, time and failure intact and the worker named as the event's system.
"""

from __future__ import annotations

import sys

from twisted.logger import ILogObserver, jsonFileLogObserver

__all__ = ["observer"]


def observer() -> ILogObserver:
    """JSON records (Twisted's record-separated format) on this process's real standard output."""
    return jsonFileLogObserver(sys.stdout)
