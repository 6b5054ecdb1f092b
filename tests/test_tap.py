"""The twistd plugin and the embedding entry point: options, config errors an operator can act on, the service."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from twisted.application.service import IService, MultiService
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock as MemoryReactor
from twisted.logger import LogLevel, formatEvent
from zope.interface.verify import verifyObject

from httpstream.config import config_from_dict
from httpstream.logs import setLogLevel, threshold
from httpstream.tap import HTTPStreamService, Options, makeService
from tests.serverprocess import twistdCommand

REPO = Path(__file__).resolve().parent.parent


def twistd(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(twistdCommand() + ["-n", "--pidfile=", *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_helpDocumentsConfigOption(tmp_path: Path) -> None:
    result = subprocess.run(twistdCommand() + ["httpstream", "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "-c, --config=" in result.stdout
    assert "config.json" in result.stdout


@pytest.mark.parametrize(
    "content,expected",
    [
        (None, "cannot read config file"),
        ("{not json", "cannot parse config file"),
        ('{"port": "eighty"}', "port"),
        ('{"ping_interval": "soon"}', "ping_interval"),
        ('{"ping_interval": "5s", "pong_timeout": "8s"}', "pong_timeout"),
    ],
)
def test_badConfigIsOneLineAndNonZeroExit(tmp_path: Path, content: str | None, expected: str) -> None:
    path = tmp_path / "config.json"
    if content is not None:
        path.write_text(content)
    result = twistd("httpstream", "--config", str(path), cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("httpstream: ") and expected in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


def test_unknownKeyIsAWarning(startServer) -> None:
    server = startServer({"no_such_option": 1})
    assert 'config key "no_such_option" is unknown' in server.output
    assert server.alive()


def test_logLevelErrorStillAnnouncesPort(startServer) -> None:
    server = startServer({"log_level": "error"})
    from tests.wire import connectStream

    stream, result = connectStream(server.port)
    stream.close()
    assert "listening on http://127.0.0.1:" in server.output
    assert f"client {result['client']} connected" not in server.output  # a debug line, filtered out


def test_portInUseExitsNonZero(startServer, tmp_path: Path) -> None:
    first = startServer()
    path = tmp_path / "taken.json"
    path.write_text(json.dumps({"address": "127.0.0.1", "port": first.port}))
    result = twistd("httpstream", "-c", str(path), cwd=tmp_path)
    assert result.returncode == 1
    assert "address already in use" in result.stdout + result.stderr


def test_exampleConfigIsValid() -> None:
    options = Options()
    options.parseOptions(["-c", str(REPO / "config.example.json")])
    assert options.config.http_stream is True
    assert options.warnings == []


def test_makeServiceEmbeds() -> None:
    """A program adds the service to its own MultiService, on the reactor it passes in."""
    reactor = MemoryReactor()
    service = makeService({"config": {"port": 0, "address": "127.0.0.1", "http_stream": True}}, reactor=reactor)
    assert isinstance(service, HTTPStreamService)
    verifyObject(IService, service)
    parent = MultiService()
    service.setServiceParent(parent)
    parent.startService()
    port, _, backlog, interface = reactor.tcpServers[0]
    assert (port, backlog, interface) == (0, 1024, "127.0.0.1")
    assert service.node.config.http_stream is True
    parent.stopService()
    assert service.port is None


def _stoppingService(timeout: str) -> tuple[HTTPStreamService, MemoryReactor, list[Deferred[None]]]:
    """A started service whose node's shutdown never finishes (an engine call that hangs), on a memory reactor."""
    reactor = MemoryReactor()
    service = makeService({"config": {"port": 0, "shutdown_timeout": timeout}}, reactor=reactor)
    service.startService()
    hanging: list[Deferred[None]] = []

    def shutdown(timeout: float) -> Deferred[None]:
        hanging.append(Deferred())
        return hanging[-1]

    service.node.shutdown = shutdown  # type: ignore[method-assign]
    return service, reactor, hanging


def test_stopGivesUpAtShutdownTimeout() -> None:
    """
    A stop whose node shutdown hangs still finishes once shutdown_timeout has passed (so twistd exits), logging
    "shutdown timeout reached"; the port was closed first.
    """
    from twisted.logger import globalLogPublisher

    service, reactor, hanging = _stoppingService("3s")
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        stopped = service.stopService()
        assert service.port is None and hanging
        reactor.advance(2.9)
        assert not stopped.called
        reactor.advance(0.2)
        assert stopped.called
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert any("shutdown timeout reached" in formatEvent(e) for e in events), [formatEvent(e) for e in events]


def test_stopWithoutTimeout() -> None:
    """A stop that finishes in time fires at once and cancels its timer (nothing left on the reactor)."""
    service, reactor, hanging = _stoppingService("30s")
    stopped = service.stopService()
    assert not stopped.called
    hanging[0].callback(None)
    assert stopped.called
    assert not reactor.getDelayedCalls()


def test_makeServiceTakesAConfig() -> None:
    config, _ = config_from_dict({"port": 0})
    service = makeService({"config": config}, reactor=MemoryReactor())
    assert service.node.config is config


def test_logLevel() -> None:
    try:
        setLogLevel("error")
        assert threshold({"log_level": LogLevel.info}).name == "no"
        assert threshold({"log_level": LogLevel.error}).name == "maybe"
        setLogLevel("none")
        assert threshold({"log_level": LogLevel.critical}).name == "no"
    finally:
        setLogLevel("info")


def test_engineOutageLoggedWithoutTraceback() -> None:
    """
    While Redis is down every call fails the same expected way: a warning naming it, not a critical traceback
    per request; any other failure keeps its traceback.
    """
    from twisted.logger import globalLogPublisher
    from twisted.python.failure import Failure

    from httpstream.engines import EngineUnavailable
    from httpstream.logs import Logger

    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        log = Logger()
        log.failure("publish to {channel}", Failure(EngineUnavailable("no connection to Redis")), channel="news")
        try:
            raise ValueError("a bug")
        except ValueError:
            log.failure("publish to {channel}", channel="news")
    finally:
        globalLogPublisher.removeObserver(events.append)
    outage, bug = [e for e in events if e.get("log_namespace") == __name__]
    assert outage["log_level"] == LogLevel.warn and "log_failure" not in outage
    assert formatEvent(outage) == "publish to news: no connection to Redis"
    assert bug["log_level"] == LogLevel.critical and bug["log_failure"].check(ValueError)


def test_wheelCarriesThePlugin(tmp_path: Path) -> None:
    """`pip install .` installs the dropin beside Twisted's own (no __init__.py that would shadow them)."""
    import sys
    import zipfile

    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(REPO), "-w", str(tmp_path)],
        check=True, capture_output=True, timeout=300,
    )
    (wheel,) = tmp_path.glob("httpstream-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "twisted/plugins/httpstream_plugin.py" in names
    assert "twisted/__init__.py" not in names and "twisted/plugins/__init__.py" not in names
    assert "httpstream/protocol/client_pb2.py" in names and "httpstream/py.typed" in names
