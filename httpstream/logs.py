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

# The exception types that mean an expected outage (a store the server needs is down), registered by the modules
# that define them (the engines: L{httpstream.engines.EngineUnavailable}), so that this module, which every other
# one imports, imports none of them.
_outages: tuple[type[BaseException], ...] = ()


def registerOutage(*types: type[BaseException]) -> None:
    """
    Log a failure of one of C{types} (or a subclass) as an outage: a warning with its message, no traceback
    (see L{_OutageAwareLogger.failure}).
    """
    global _outages
    _outages = _outages + tuple(t for t in types if t not in _outages)


class _OutageAwareLogger(_Logger):
    def emit(self, level: LogLevel, format: Optional[str] = None, **kwargs: object) -> None:
        # Below the threshold nothing is built: Twisted makes the event (a dict, the source's lookup) before any
        # filter sees it, some 2 µs per debug call, and debug calls sit on hot paths (the access log line of every
        # emulation POST). The filter behind (L{Threshold}) stays for events that come in other ways.
        limit = threshold.level
        if limit is None or level < limit:
            return
        super().emit(level, format, **kwargs)

    def failure(self, format: str, failure: Optional[Failure] = None, level: LogLevel = LogLevel.critical,
                **kwargs: object) -> None:
        """
        As Twisted's, except for an outage (Redis down: a type given to L{registerOutage}): a warning with its
        message and no traceback, since every call fails the same expected way until it is back, and the log would
        drown in them.
        """
        if failure is not None and isinstance(failure.value, _outages):
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
