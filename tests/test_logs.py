"""
Tests for L{httpstream.logs}: outages (types registered by the modules that define them) are one warning line
without a traceback; logs itself imports none of those modules.
"""

from __future__ import annotations

import subprocess
import sys

from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from httpstream import logs


class _StoreDown(Exception):
    pass


class _StoreDownHard(_StoreDown):
    pass


class OutageTests(SynchronousTestCase):
    def capture(self) -> list[dict]:
        events: list[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        return events

    def test_registeredOutage(self) -> None:
        """
        A failure of a registered type, or of a subclass, is a warning with its message; before registration it
        was a critical event with its traceback.
        """
        events = self.capture()
        log = logs.Logger()
        log.failure("publish to {channel}", Failure(_StoreDown("store down")), channel="news")
        self.addCleanup(setattr, logs, "_outages", logs._outages)
        logs.registerOutage(_StoreDown)
        log.failure("publish to {channel}", Failure(_StoreDownHard("still down")), channel="news")
        before, after = [e for e in events if e.get("log_namespace") == __name__]
        self.assertEqual(before["log_level"], LogLevel.critical)
        self.assertIn("log_failure", before)
        self.assertEqual(after["log_level"], LogLevel.warn)
        self.assertNotIn("log_failure", after)
        self.assertEqual(formatEvent(after), "publish to news: still down")
        self.assertEqual(len(self.flushLoggedErrors(_StoreDown)), 1)  # the one before registration

    def test_registerTwice(self) -> None:
        self.addCleanup(setattr, logs, "_outages", logs._outages)
        logs.registerOutage(_StoreDown)
        logs.registerOutage(_StoreDown)
        self.assertEqual(logs._outages.count(_StoreDown), 1)

    def test_importsNoEngine(self) -> None:
        """logs sits below every layer: importing it brings no engine in."""
        code = "import sys, httpstream.logs; print(sorted(m for m in sys.modules if m.startswith('httpstream.')))"
        output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        self.assertNotIn("httpstream.engines", output)


class ThresholdTests(SynchronousTestCase):
    def test_belowTheLevelNothingIsBuilt(self) -> None:
        """
        An event below C{log_level} is dropped before Twisted builds it (its format is never looked at); at or
        above, it reaches the observers; C{none} drops everything.
        """
        events: list[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.addCleanup(setattr, logs.threshold, "level", logs.threshold.level)
        log = logs.Logger()
        built: list[LogLevel] = []
        emit = logs._Logger.emit

        def counting(self: object, level: LogLevel, *args: object, **kwargs: object) -> None:
            built.append(level)
            emit(self, level, *args, **kwargs)  # type: ignore[arg-type]

        self.patch(logs._Logger, "emit", counting)
        logs.setLogLevel("info")
        log.debug("hidden {x}", x=0)
        self.assertEqual(built, [])
        log.info("shown {x}", x=1)
        logs.setLogLevel("debug")
        log.debug("now shown {x}", x=2)
        logs.setLogLevel("none")
        log.error("never shown")
        mine = [formatEvent(e) for e in events if e.get("log_namespace") == __name__]
        self.assertEqual(mine, ["shown 1", "now shown 2"])
        self.assertEqual(built, [LogLevel.info, LogLevel.debug])
