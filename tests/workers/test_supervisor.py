"""
Tests for L{httpstream.workers.supervisor} and L{httpstream.workers.relay}, in memory: a reactor that records the
processes it is asked to start, a clock, sockets that are only numbers. The real processes are in
tests/workers/test_workers_process.py.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
from typing import Any, Optional

from twisted.internet.address import IPv4Address
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import Logger, LogLevel, LogPublisher, eventAsJSON
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from httpstream.config import Config
from httpstream.workers.relay import STATUS_FD, WorkerProtocol, describeEnd
from httpstream.workers.supervisor import STOP_GRACE, Backoff, OpenSocket, Supervisor

COMMAND = ["twistd", "-n", "httpstream", "-c", "config.json"]


class FakePort:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.stopped = False

    def fileno(self) -> int:
        return self.fd

    def getHost(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", 8000)

    def stopListening(self) -> None:
        self.stopped = True


class FakeProcessTransport:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.signals: list[str] = []

    def signalProcess(self, name: str) -> None:
        self.signals.append(name)


class ProcessReactor(MemoryReactorClock):
    """A memory reactor that records spawnProcess calls and connects each protocol to a fake process."""

    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[tuple[WorkerProtocol, list[str], dict[int, Any]]] = []
        self.nextPid = 1000

    def spawnProcess(self, protocol: WorkerProtocol, executable: str, args: list[str], env: Any = None,
                     path: Any = None, uid: Any = None, gid: Any = None, usePTY: bool = False,
                     childFDs: Optional[dict[int, Any]] = None) -> FakeProcessTransport:
        self.nextPid += 1
        transport = FakeProcessTransport(self.nextPid)
        protocol.makeConnection(transport)
        self.spawned.append((protocol, args, dict(childFDs or {})))
        return transport


def ended(code: int = 1, signal: Optional[int] = None) -> Failure:
    if code == 0 and signal is None:
        return Failure(ProcessDone(0))
    return Failure(ProcessTerminated(exitCode=None if signal else code, signal=signal))


class SupervisorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = ProcessReactor()
        self.ports = [FakePort(7), FakePort(9)]
        self.config = Config(engine="redis", workers=2, shutdown_timeout=3.0)
        self.supervisor = Supervisor(
            self.reactor, self.config, 2, COMMAND, reloadOnHUP=False, backoff=Backoff(first=0.5, most=4, stable=10),
            open=lambda reactor, config, listen: [OpenSocket(f"tcp:{p.fd}", p, "http") for p in self.ports],
            environ={"X": "1"},
        )

    def process(self, index: int) -> WorkerProtocol:
        return [p for p, _, _ in self.reactor.spawned if p.index == index][-1]

    def test_startsEveryWorkerWithTheSocketsHandedDown(self) -> None:
        """
        Each worker runs the command with its number, the sockets' descriptors in it (4 and 5: after the status
        pipe) mapped to the supervisor's own, and the status pipe on 3.
        """
        self.supervisor.startService()
        self.assertEqual(len(self.reactor.spawned), 2)
        for index, (process, args, childFDs) in enumerate(self.reactor.spawned, start=1):
            self.assertEqual(process.index, index)
            self.assertEqual(args, [*COMMAND, "--worker", str(index), "--inherit", "4,5", "--status-fd", "3",
                                    "--supervisor", str(os.getpid())])
            self.assertEqual(childFDs, {0: "w", 1: "r", 2: "r", STATUS_FD: "r", 4: 7, 5: 9})

    def test_announcesOnceEveryWorkerAccepts(self) -> None:
        events: list[dict[str, Any]] = []
        self.supervisor.announce = Logger(observer=LogPublisher(events.append))
        self.supervisor.startService()
        self.process(1).childDataReceived(STATUS_FD, b"ready\n")
        self.assertEqual(events, [])
        self.process(2).childDataReceived(STATUS_FD, b"rea")
        self.process(2).childDataReceived(STATUS_FD, b"dy\n")
        texts = [e["log_format"].format(**e) for e in events]
        self.assertEqual(texts, [f"httpstream {__import__('httpstream').__version__}: 2 workers listening on "
                                 "http://127.0.0.1:8000"] * 2)

    def test_restartsAWorkerThatEndsWithBackoff(self) -> None:
        """
        A worker that ends is started again after the back-off's first delay; one that ends again soon after
        waits twice as long, up to the most; one that ran longer than the stable time starts after the first.
        """
        self.supervisor.startService()
        delays = []
        for _ in range(5):
            self.process(1).processEnded(ended(signal=9))
            before = len(self.reactor.spawned)
            call = self.supervisor.slots[0].restart
            assert call is not None
            delays.append(call.getTime() - self.reactor.seconds())
            self.reactor.advance(delays[-1])
            self.assertEqual(len(self.reactor.spawned), before + 1)
        self.assertEqual(delays, [0.5, 1.0, 2.0, 4.0, 4.0])
        self.reactor.advance(11)
        self.process(1).processEnded(ended(code=1))
        call = self.supervisor.slots[0].restart
        assert call is not None
        self.assertEqual(call.getTime() - self.reactor.seconds(), 0.5)
        # The other worker was never touched.
        self.assertEqual(len([p for p, _, _ in self.reactor.spawned if p.index == 2]), 1)

    def test_workerThatCannotBeStartedIsTriedAgain(self) -> None:
        """A fork that fails (out of processes) is logged in one line and tried again after the back-off."""
        events: list[dict[str, Any]] = []
        self.supervisor.log = Logger(observer=LogPublisher(events.append))  # type: ignore[assignment]
        spawn = self.reactor.spawnProcess
        failing = [OSError(11, "Resource temporarily unavailable")] * 2

        def spawnProcess(*args: Any, **kwargs: Any) -> Any:
            if failing and args[0].index == 2:
                raise failing.pop()
            return spawn(*args, **kwargs)

        self.reactor.spawnProcess = spawnProcess  # type: ignore[method-assign]
        self.supervisor.startService()
        self.assertEqual([p.index for p, _, _ in self.reactor.spawned], [1])
        self.assertIn("worker 2 could not be started (Resource temporarily unavailable); trying again in 0.5s",
                      [e["log_format"].format(**e) for e in events])
        self.reactor.advance(0.5)
        self.assertEqual([p.index for p, _, _ in self.reactor.spawned], [1])
        self.reactor.advance(1.0)
        self.assertEqual([p.index for p, _, _ in self.reactor.spawned], [1, 2])

    def test_stopTerminatesEveryWorkerAndWaits(self) -> None:
        self.supervisor.startService()
        stopped = self.supervisor.stopService()
        for index in (1, 2):
            self.assertEqual(self.process(index).transport.signals, ["TERM"])  # type: ignore[union-attr]
        self.assertNoResult(stopped)
        self.process(1).processEnded(ended(code=0))
        self.assertNoResult(stopped)
        self.process(2).processEnded(ended(code=0))
        self.successResultOf(stopped)
        self.assertTrue(all(port.stopped for port in self.ports))
        # No worker is started again once stopping.
        self.reactor.advance(60)
        self.assertEqual(len(self.reactor.spawned), 2)

    def test_stopKillsAWorkerPastTheShutdownTimeout(self) -> None:
        self.supervisor.startService()
        stopped = self.supervisor.stopService()
        self.process(1).processEnded(ended(code=0))
        self.reactor.advance(self.config.shutdown_timeout + STOP_GRACE)
        self.assertEqual(self.process(2).transport.signals, ["TERM", "KILL"])  # type: ignore[union-attr]
        self.process(2).processEnded(ended(signal=9))
        self.successResultOf(stopped)

    def test_stopCancelsAPendingRestart(self) -> None:
        self.supervisor.startService()
        self.process(1).processEnded(ended(signal=9))
        stopped = self.supervisor.stopService()
        self.process(2).processEnded(ended(code=0))
        self.successResultOf(stopped)
        self.reactor.advance(60)
        self.assertEqual(len(self.reactor.spawned), 2)

    def test_reloadForwardsSIGHUP(self) -> None:
        self.supervisor.startService()
        self.supervisor.reload()
        for index in (1, 2):
            self.assertEqual(self.process(index).transport.signals, ["HUP"])  # type: ignore[union-attr]


class RelayTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.ready: list[WorkerProtocol] = []
        self.ends: list[Failure] = []
        self.process = WorkerProtocol(
            3, self.ready.append, lambda process, reason: self.ends.append(reason), LogPublisher(self.events.append)
        )
        self.process.makeConnection(FakeProcessTransport(4242))  # type: ignore[arg-type]

    def test_relaysRecordsWithTheirLevelAndTheWorkerAsSystem(self) -> None:
        """A JSON record, even in pieces, is published with its own level and format, the worker as its system."""
        record = ("\x1e" + eventAsJSON({
            "log_level": LogLevel.error, "log_format": "lost {what}", "what": "redis", "log_time": 1.0,
            "log_namespace": "httpstream.engines",
        }) + "\n").encode()
        self.process.childDataReceived(1, record[:10])
        self.assertEqual(self.events, [])
        self.process.childDataReceived(1, record[10:] + record)
        self.assertEqual(len(self.events), 2)
        event = self.events[0]
        self.assertEqual(event["log_level"], LogLevel.error)
        self.assertEqual(event["log_format"].format(**event), "lost redis")
        self.assertEqual(event["log_system"], "worker 3 pid 4242")

    def test_standardErrorLinesAreWarnings(self) -> None:
        self.process.childDataReceived(2, b"Traceback (most\nrecent call last")
        self.process.processEnded(ended(code=1))
        self.assertEqual([e["line"] for e in self.events], ["Traceback (most", "recent call last"])
        self.assertEqual({e["log_level"] for e in self.events}, {LogLevel.warn})
        self.assertEqual(len(self.ends), 1)

    def test_outputThatIsNotARecordIsALine(self) -> None:
        """What a worker prints on its standard output is relayed as a line, even when it reads as JSON."""
        self.process.childDataReceived(1, b"42\nnull\n[1, 2]\n\"text\"\nhello {\n")
        self.assertEqual([e["line"] for e in self.events], ["42", "null", "[1, 2]", '"text"', "hello {"])

    def test_readyOnce(self) -> None:
        self.process.childDataReceived(STATUS_FD, b"ready\nready\n")
        self.assertEqual(self.ready, [self.process])

    def test_describeEnd(self) -> None:
        self.assertEqual(describeEnd(ended(code=0)), "exited with code 0")
        self.assertEqual(describeEnd(ended(code=3)), "exited with code 3")
        self.assertEqual(describeEnd(ended(signal=signal.SIGKILL)), "killed by signal 9")


def test_childLogIsJSON(capsys: Any) -> None:
    from httpstream.workers.childlog import observer

    observer()({"log_level": LogLevel.info, "log_format": "hello {who}", "who": "x", "log_time": 1.0})
    out = capsys.readouterr().out
    assert out.startswith("\x1e") and json.loads(out[1:])["who"] == "x"


def _configFile(text: str) -> str:
    descriptor, path = tempfile.mkstemp(suffix=".json")
    with os.fdopen(descriptor, "w") as f:
        f.write(text)
    return path


class ConfigTests(SynchronousTestCase):
    """The key "workers": a number or "auto", the same name in v5 and v6 style, CENTRIFUGO_WORKERS."""

    def test_values(self) -> None:
        from httpstream.config import config_from_dict
        from httpstream.config.options import cpuCount

        self.assertEqual(config_from_dict({"workers": 3, "engine": "redis"})[0].workerCount(), 3)
        auto = config_from_dict({"workers": "auto", "engine": {"type": "redis"}})[0]
        self.assertEqual((auto.workers, auto.workerCount()), (0, cpuCount()))
        self.assertEqual(Config().workerCount(), 1)

    def test_refusals(self) -> None:
        from httpstream.config import ConfigError, config_from_dict

        for value in ("many", -1, True, 1.5):
            with self.assertRaises(ConfigError) as raised:
                config_from_dict({"workers": value, "engine": "redis"})
            self.assertIn('config key "workers": expected a number of worker processes (1 or more) or "auto"',
                          str(raised.exception))
        with self.assertRaises(ConfigError) as raised:
            config_from_dict({"workers": 2})
        self.assertIn('2 worker processes need "engine": "redis"', str(raised.exception))

    def test_environment(self) -> None:
        from httpstream.config import ConfigError, read_config

        path = _configFile('{"engine": "redis"}')
        self.assertEqual(read_config(path, {"CENTRIFUGO_WORKERS": "auto"}).config.workers, 0)
        self.assertEqual(read_config(path, {"CENTRIFUGO_WORKERS": "4"}).config.workers, 4)
        with self.assertRaises(ConfigError):
            read_config(path, {"CENTRIFUGO_WORKERS": "some"})
        with self.assertRaises(ConfigError):
            read_config(path, {"CENTRIFUGO_PORT": "auto"})  # only "workers" takes the word

    def test_unixSocketsAreNotShared(self) -> None:
        from httpstream.listeners import ListenError
        from httpstream.workers.supervisor import checkSockets

        with self.assertRaises(ListenError) as raised:
            checkSockets(MemoryReactorClock(), Config(engine="redis"), ["unix:/tmp/x.sock"])
        self.assertIn("workers share TCP sockets only", str(raised.exception))
        self.assertEqual([d for d, _ in checkSockets(MemoryReactorClock(), Config(port=0), [])],
                         ["tcp:port=0:backlog=1024"])

    def test_optionOverridesTheConfig(self) -> None:
        from httpstream.tap import Options

        path = _configFile('{"engine": "redis", "workers": 4}')
        options = Options()
        options.parseOptions(["-c", path, "--workers", "2"])
        self.assertEqual(options.config.workers, 2)
        options = Options()
        options.parseOptions(["-c", path, "--worker", "1"])  # a worker supervises nobody
        self.assertEqual(options.config.workers, 1)
