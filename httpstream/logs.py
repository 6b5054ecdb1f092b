# -*- test-case-name: tests.test_tap -*-
"""
httpstream's loggers, filtered by the ``log_level`` setting.

Every module takes its L{Logger} from here: their events pass one level threshold before reaching Twisted's
global publisher, so ``log_level`` quiets httpstream without touching the observers of a program that embeds it.
"""

from __future__ import annotations

import sys
from typing import Optional

from twisted.logger import (
    FilteringLogObserver,
    ILogFilterPredicate,
    LogEvent,
    LogLevel,
    PredicateResult,
    globalLogPublisher,
)
from twisted.logger import Logger as _Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from httpstream.engines import EngineUnavailable

# Centrifugo's level names; "none" silences httpstream.
LEVELS: dict[str, Optional[LogLevel]] = {
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "warning": LogLevel.warn,
    "error": LogLevel.error,
    "none": None,
}


# Typed once here: constantly's NamedConstant attributes are untyped (Any) to the checker.
_MAYBE: PredicateResult = PredicateResult.maybe
_NO: PredicateResult = PredicateResult.no


@implementer(ILogFilterPredicate)
class Threshold:
    """Passes events at or above C{level}; none at all when C{level} is None."""

    def __init__(self, level: Optional[LogLevel] = LogLevel.info) -> None:
        self.level = level

    def __call__(self, event: LogEvent) -> PredicateResult:
        if self.level is not None and event.get("log_level", LogLevel.info) >= self.level:
            return _MAYBE
        return _NO


threshold = Threshold()
_observer = FilteringLogObserver(globalLogPublisher, [threshold])


class _OutageAwareLogger(_Logger):
    def failure(self, format: str, failure: Optional[Failure] = None, level: LogLevel = LogLevel.critical,
                **kwargs: object) -> None:
        """
        As Twisted's, except for an engine outage (Redis down): a warning with its message and no traceback,
        since every call fails the same expected way until it is back, and the log would drown in them.
        """
        if failure is not None and failure.check(EngineUnavailable):
            self.warn(format + ": {error}", error=failure.getErrorMessage(), **kwargs)
            return
        super().failure(format, failure, level, **kwargs)


def Logger() -> _Logger:
    """A twisted.logger Logger (named after the class or module that holds it) behind the C{log_level} filter."""
    # Named after the caller's module, as twisted's own Logger() would be (a class attribute is renamed after
    # its class when first read).
    return _OutageAwareLogger(namespace=sys._getframe(1).f_globals.get("__name__"), observer=_observer)


def setLogLevel(name: str) -> None:
    """Apply a C{log_level} value; the config has already refused unknown names."""
    threshold.level = LEVELS.get(name, LogLevel.info)
