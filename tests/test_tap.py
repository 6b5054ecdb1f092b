"""The twistd plugin and the embedding entry point: options, config errors an operator can act on, the service."""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from twisted.application.service import IService, MultiService
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.error import CannotListenError
from twisted.internet.testing import MemoryReactorClock as MemoryReactor
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.scripts.twistd import ServerOptions
from zope.interface.verify import verifyObject

from httpstream.config import config_from_dict
from httpstream.logs import setLogLevel, threshold
from httpstream.tap import HTTPStreamService, ListenError, Options, configListenDescription, makeService
from httpstream.testing import MemoryServer
from tests.serverprocess import twistdCommand
from tests.tlscerts import selfSigned
from tests.web.helpers import connectStream

REPO = Path(__file__).resolve().parent.parent


def twistd(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(twistdCommand() + ["-n", "--pidfile=", *args], cwd=cwd, capture_output=True, text=True, timeout=60)


def test_helpDocumentsConfigOption(capsys: pytest.CaptureFixture[str]) -> None:
    # twistd's own option parsing, in this process: the plugin is found as twistd finds it.
    with pytest.raises(SystemExit) as exited:
        ServerOptions().parseOptions(["httpstream", "--help"])
    assert exited.value.code in (None, 0)
    out = capsys.readouterr().out
    assert "-c, --config=" in out
    assert "config.json" in out


BAD_CONFIGS = [
    (None, "cannot read config file"),
    ("{not json", "cannot parse config file"),
    ('{"port": "eighty"}', "port"),
    ('{"ping_interval": "soon"}', "ping_interval"),
    ('{"ping_interval": "5s", "pong_timeout": "8s"}', "pong_timeout"),
    # Refused when the service is built (the TLS set-up), not by the file's reader.
    ('{"tls": true, "tls_cert": "absent.pem", "tls_key": "absent.key"}', '"tls_cert"'),
]


def writeBad(tmp_path: Path, content: str | None) -> Path:
    path = tmp_path / "config.json"
    if content is not None:
        path.write_text(content)
    return path


def assertOneLine(stderr: str, expected: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("httpstream: ") and expected in lines[0]
    assert "Traceback" not in stderr


@pytest.mark.parametrize("content,expected", BAD_CONFIGS)
def test_badConfigIsOneLineAndNonZeroExit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, expected: str
) -> None:
    """twistd's start-up in this process (the plugin's options, then makeService): one line and exit status 1."""
    path = writeBad(tmp_path, content)
    with pytest.raises(SystemExit) as exited:
        options = Options()
        options.parseOptions(["--config", str(path)])
        makeService(options, MemoryReactor())
    assert exited.value.code == 1
    out, err = capsys.readouterr()
    assertOneLine(err, expected)
    assert "Traceback" not in out


@pytest.mark.parametrize("content,expected", [BAD_CONFIGS[0], BAD_CONFIGS[-1]])
def test_twistdProcessRefusesBadConfigWithOneLine(tmp_path: Path, content: str | None, expected: str) -> None:
    """The real twistd process: a refusal of the file's reader and one of the service's, each one line, exit 1."""
    result = twistd("httpstream", "--config", str(writeBad(tmp_path, content)), cwd=tmp_path)
    assert result.returncode == 1
    assertOneLine(result.stderr, expected)
    assert "Traceback" not in result.stdout


def test_unknownKeyIsAWarning() -> None:
    with MemoryServer({"no_such_option": 1, "http_stream": True, "allow_anonymous_connect_without_token": True}) \
            as server:
        assert 'config key "no_such_option" is unknown' in server.logged
        stream, result = connectStream(server)
        assert result["client"]
        stream.close()


def test_logLevelErrorStillAnnouncesPort() -> None:
    with MemoryServer({"log_level": "error", "http_stream": True, "allow_anonymous_connect_without_token": True}) \
            as server:
        stream, result = connectStream(server)
        stream.close()
        assert "listening on http://" in server.logged  # (the memory reactor's port is 0.0.0.0)
        assert result["client"] and f"client {result['client']}" not in server.logged  # debug lines, filtered out
    with MemoryServer({"log_level": "debug", "http_stream": True, "allow_anonymous_connect_without_token": True}) \
            as server:
        stream, result = connectStream(server)
        stream.close()
        assert f"client {result['client']} connected" in server.logged  # what the filter would have shown


class TakenPortReactor(MemoryReactor):  # type: ignore[misc]
    """A reactor whose every port is taken, as the kernel says when another process holds it."""

    def listenTCP(self, port: int, factory: object, backlog: int = 50, interface: str = "") -> object:
        raise CannotListenError(interface, port, OSError(errno.EADDRINUSE, os.strerror(errno.EADDRINUSE)))


def test_portInUseExitsNonZero() -> None:
    """
    Under twistd (the process is the service's) a taken port is one error line and exit 1; embedded, the error is
    the embedding program's. (tests/web/test_listening.py takes a real port from a real twistd.)
    """
    config, _ = config_from_dict({"address": "127.0.0.1", "port": 8123})
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        with pytest.raises(SystemExit) as exited:
            HTTPStreamService(config, TakenPortReactor(), tuneGC=True).startService()
        assert exited.value.code == 1
        with pytest.raises(CannotListenError):
            HTTPStreamService(config, TakenPortReactor()).startService()
    finally:
        globalLogPublisher.removeObserver(events.append)
        setLogLevel("info")
    errors = [formatEvent(e) for e in events if e.get("log_level") in (LogLevel.error, LogLevel.critical)]
    assert errors == ["cannot listen on 127.0.0.1:8123: address already in use"]


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


# -- where the service listens: endpoint descriptions


def _started(config: dict, listen: list[str] | None = None) -> tuple[HTTPStreamService, MemoryReactor]:
    reactor = MemoryReactor()
    options: dict = {"config": config}
    if listen is not None:
        options["listen"] = listen
    service = makeService(options, reactor=reactor)
    service.startService()
    return service, reactor


def test_configBuildsTheDescription() -> None:
    """The config's address and port become a tcp (IPv4) or tcp6 (IPv6) description with the large backlog."""
    assert configListenDescription(config_from_dict({"port": 8000})[0]) == "tcp:port=8000:backlog=1024"
    ipv4 = config_from_dict({"port": 8001, "address": "127.0.0.1"})[0]
    assert configListenDescription(ipv4) == "tcp:port=8001:backlog=1024:interface=127.0.0.1"
    ipv6 = config_from_dict({"port": 8002, "address": "::1"})[0]
    assert configListenDescription(ipv6) == r"tcp6:port=8002:backlog=1024:interface=\:\:1"


def test_configIPv6Listens() -> None:
    service, reactor = _started({"port": 8002, "address": "::1"})
    assert isinstance(service.listeners[0].endpoint, TCP6ServerEndpoint)
    assert [(port, backlog, interface) for port, _, backlog, interface in reactor.tcpServers] == [(8002, 1024, "::1")]
    service.stopService()


def test_configAllInterfaces() -> None:
    service, reactor = _started({"port": 8003})
    assert isinstance(service.listeners[0].endpoint, TCP4ServerEndpoint)
    port, factory, backlog, interface = reactor.tcpServers[0]
    assert (port, factory, backlog, interface) == (8003, service.site, 1024, "")
    service.stopService()


def test_configTLSWrapsTheSite(tmp_path: Path) -> None:
    """The config's tls wraps the site on the config's TCP port (its PEMs need not be files)."""
    cert, key = selfSigned(tmp_path)
    service, reactor = _started({"port": 8443, "tls": True, "tls_cert_pem": cert.read_text(),
                                 "tls_key_pem": key.read_text()})
    (listener,) = service.listeners
    assert listener.scheme == "https"
    port, factory, _, _ = reactor.tcpServers[0]
    assert port == 8443 and isinstance(factory, TLSMemoryBIOFactory) and factory.wrappedFactory is service.site
    service.stopService()


def test_listenReplacesAddressAndPort() -> None:
    """--listen descriptions, one or several, replace the config's address and port; the site serves on each."""
    service, reactor = _started(
        {"port": 8000, "address": "0.0.0.0"},
        ["tcp:8123:interface=127.0.0.1", "tcp6:port=8124:interface=\\:\\:1:backlog=7"],
    )
    listened = [(port, factory, backlog, interface) for port, factory, backlog, interface in reactor.tcpServers]
    assert listened == [(8123, service.site, 1024, "127.0.0.1"), (8124, service.site, 7, "::1")]
    assert len(service.ports) == 2 and service.port is service.ports[0]
    service.stopService()
    assert service.ports == [] and service.port is None


def test_listenStopsEveryPort() -> None:
    service, reactor = _started({"port": 0}, ["tcp:0", "tcp:0"])
    stopped: list[int] = []
    for index, port in enumerate(service.ports):
        port.stopListening = lambda index=index: stopped.append(index)  # type: ignore[method-assign]
    service.stopService()
    assert stopped == [0, 1]


def test_listenSSL(tmp_path: Path) -> None:
    """An ssl: description listens with TLS through the reactor's listenSSL, and the service says https."""
    cert, key = selfSigned(tmp_path)
    service, reactor = _started({"port": 8000}, [f"ssl:8443:privateKey={key}:certKey={cert}:interface=127.0.0.1"])
    assert reactor.tcpServers == []
    ((port, factory, _, backlog, interface),) = reactor.sslServers
    assert (port, factory, backlog, interface) == (8443, service.site, 1024, "127.0.0.1")
    assert service.listeners[0].scheme == "https"
    service.stopService()


def test_listenWithConfigTLSWarns(tmp_path: Path) -> None:
    """--listen replaces the config's tls too: said once at start rather than silently serving plain HTTP."""
    from twisted.logger import globalLogPublisher

    cert, key = selfSigned(tmp_path)
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        service, reactor = _started({"port": 8000, "tls": True, "tls_cert": str(cert), "tls_key": str(key)},
                                    ["tcp:8123"])
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert not isinstance(reactor.tcpServers[0][1], TLSMemoryBIOFactory)
    assert any("--listen replaces the config's \"tls\"" in formatEvent(e) for e in events)
    service.stopService()


@pytest.mark.parametrize("description", ["foo:8000", "tcp:port=abc", "tcp:8000:bogus=1", "ssl:8443:privateKey=/nope"])
def test_badListenRaisesForEmbedders(description: str) -> None:
    with pytest.raises(ListenError, match="'" + description.split(":")[0]):
        makeService({"config": {"port": 0}, "listen": [description]}, reactor=MemoryReactor())


def test_listenOptionRepeats(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text("{}")
    options = Options()
    options.parseOptions(["-c", str(path), "--listen", "tcp:1", "--listen", "ssl:2:privateKey=k"])
    assert options["listen"] == ["tcp:1", "ssl:2:privateKey=k"]
    assert Options()["listen"] == []


def test_badListenIsOneLineAndNonZeroExit(tmp_path: Path) -> None:
    (tmp_path / "c.json").write_text("{}")
    result = twistd("httpstream", "-c", "c.json", "--listen", "tcp:nope", cwd=tmp_path)
    assert result.returncode == 1
    assert "httpstream: --listen 'tcp:nope': invalid literal" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_listenServesOnEachPort(tmp_path: Path) -> None:
    """
    twistd httpstream --listen (twice): both ports serve and are announced; the config's own port (held by this
    test, so that using it would fail start-up) is not used.
    """
    import socket
    import urllib.request

    from tests.serverprocess import ListeningProcess

    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen()
    try:
        path = tmp_path / "c.json"
        path.write_text(json.dumps({"address": "127.0.0.1", "port": held.getsockname()[1], "health": True}))
        command = twistdCommand() + ["-n", "--pidfile=", "httpstream", "-c", str(path),
                                     "--listen", "tcp:0:interface=127.0.0.1", "--listen", "tcp:0:interface=127.0.0.1"]
        with ListeningProcess(command, cwd=tmp_path) as server:
            server.waitForPort()
            ports = [int(m) for m in re.findall(r"listening on http://127\.0\.0\.1:(\d+)", server.output)]
            deadline = time.monotonic() + 10
            while len(ports) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
                ports = [int(m) for m in re.findall(r"listening on http://127\.0\.0\.1:(\d+)", server.output)]
            assert len(set(ports)) == 2 and held.getsockname()[1] not in ports, server.output
            for port in ports:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as response:
                    assert (response.status, response.read()) == (200, b"{}")
    finally:
        held.close()


# -- the embedding API: the server API's methods, through the one ServerAPI.call


def test_embeddingAPIGoesThroughCall() -> None:
    service = makeService({"config": {"port": 0, "namespaces": [{"name": "chat", "history_size": 5,
                                                                  "history_ttl": "60s", "presence": True}]}},
                          reactor=MemoryReactor())
    calls: list[tuple[str, dict]] = []
    call = service.api.call
    service.api.call = lambda method, request: (calls.append((method, dict(request))), call(method, request))[1]  # type: ignore[method-assign]
    assert _result(service.publish("chat:a", b'{"n":1}', skip_history=False))["offset"] == 1
    assert _result(service.history("chat:a", limit=-1))["publications"][0]["data"] == b'{"n":1}'
    assert _result(service.unsubscribe("alice")) == {}
    assert _result(service.channels()) == {"channels": {}}
    _result(service.presenceStats("chat:a"))
    assert calls[:4] == [
        ("publish", {"channel": "chat:a", "data": b'{"n":1}', "skip_history": False}),
        ("history", {"channel": "chat:a", "limit": -1}),
        ("unsubscribe", {"user": "alice", "channel": ""}),
        ("channels", {"pattern": ""}),
    ]
    assert calls[4][0] == "presence_stats"
    assert service.historyRemove.__name__ == "historyRemove"


def test_embeddingAPIErrors() -> None:
    """A refused call fails with APIError (unknown namespace: 102); a call missing an argument raises TypeError."""
    from httpstream.serverapi.api import APIError

    service = makeService({"config": {"port": 0}}, reactor=MemoryReactor())
    failure = _failure(service.publish("nope:x", b"{}"))
    assert failure.check(APIError) and failure.value.error.code == 102
    with pytest.raises(TypeError, match="missing required argument 'data'"):
        service.publish("news")
    with pytest.raises(TypeError, match="takes 1 positional"):
        service.presence("a", "b")
    with pytest.raises(TypeError, match="multiple values for argument 'channel'"):
        service.history("a", channel="b")


def _result(d: Deferred) -> Any:
    outcome: list = []
    d.addBoth(outcome.append)
    assert outcome and not isinstance(outcome[0], Failure), outcome
    return outcome[0]


def _failure(d: Deferred) -> Failure:
    outcome: list = []
    d.addBoth(outcome.append)
    assert outcome and isinstance(outcome[0], Failure), outcome
    return outcome[0]
