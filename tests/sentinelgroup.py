"""
A Redis master, its replica and Sentinels watching them: real processes on free loopback ports in a temporary
directory, for the tests of the Redis engine's Sentinel support (tests/engines/test_engine_sentinel.py,
tests/test_redis_sentinel.py). The helpers block (redis-cli), each briefly.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Optional

HOST = "127.0.0.1"
MASTER_NAME = "httpstream-test"


def freePort() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def command(port: int, *args: str, timeout: float = 5) -> str:
    """One redis-cli command to the server or Sentinel on C{port}: its output, stripped ("" when it fails)."""
    cli = shutil.which("redis-cli")
    assert cli is not None, "redis-cli must be installed"
    try:
        result = subprocess.run([cli, "-h", HOST, "-p", str(port), *args], capture_output=True, text=True,
                                timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return ""
    return result.stdout.strip()


class SentinelGroup:
    """
    A master and one replica (C{redis-server --replicaof}), without persistence, and C{sentinels} Sentinels
    (C{redis-server --sentinel}) that fail the master over after C{downAfter} milliseconds without an answer.

    @ivar master: the port of the server that was master when started; L{currentMaster} asks the Sentinels.
    """

    def __init__(self, sentinels: int = 1, downAfter: int = 500, failoverTimeout: int = 2000) -> None:
        self.binary = shutil.which("redis-server")
        assert self.binary is not None, "redis-server must be installed: the Sentinel tests start their own"
        self.directory = Path(tempfile.mkdtemp(prefix="httpstream-sentinel-"))
        self.master, self.replica = freePort(), freePort()
        self.sentinelPorts = [freePort() for _ in range(sentinels)]
        self.downAfter, self.failoverTimeout = downAfter, failoverTimeout
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def sentinelAddress(self) -> str:
        """The C{redis_sentinel_address} entry: every Sentinel, comma-separated."""
        return ",".join(f"{HOST}:{port}" for port in self.sentinelPorts)

    def _server(self, port: int, *arguments: str) -> None:
        assert self.binary is not None
        directory = self.directory / str(port)
        directory.mkdir(exist_ok=True)
        self.processes[port] = subprocess.Popen(
            [self.binary, *arguments, "--port", str(port), "--bind", HOST, "--dir", str(directory),
             "--daemonize", "no", "--logfile", str(directory / "log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def start(self, timeout: float = 20.0) -> None:
        persistence = ("--save", "", "--appendonly", "no")
        self._server(self.master, *persistence)
        self._server(self.replica, *persistence, "--replicaof", HOST, str(self.master))
        quorum = len(self.sentinelPorts) // 2 + 1
        for port in self.sentinelPorts:
            path = self.directory / f"sentinel-{port}.conf"
            # Sentinel rewrites its file as it learns: each needs its own, writable.
            path.write_text(
                f"sentinel monitor {MASTER_NAME} {HOST} {self.master} {quorum}\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} {self.downAfter}\n"
                f"sentinel failover-timeout {MASTER_NAME} {self.failoverTimeout}\n"
                f"sentinel parallel-syncs {MASTER_NAME} 1\n"
            )
            self._server(port, str(path), "--sentinel")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._ready():
                return
            time.sleep(0.1)
        raise AssertionError(f"the Sentinel group did not come up within {timeout}s (logs in {self.directory})")

    def _ready(self) -> bool:
        if "master_link_status:up" not in command(self.replica, "INFO", "replication"):
            return False
        for port in self.sentinelPorts:
            # Each Sentinel must know the replica (it learns it from the master's INFO), and each other.
            info = command(port, "SENTINEL", "MASTER", MASTER_NAME).splitlines()
            fields = dict(zip(info[::2], info[1::2]))
            if fields.get("num-slaves") != "1" or int(fields.get("num-other-sentinels", "0")) != len(
                self.sentinelPorts
            ) - 1:
                return False
        return True

    def currentMaster(self) -> Optional[int]:
        """The master's port as the first Sentinel that answers says."""
        for port in self.sentinelPorts:
            answer = command(port, "SENTINEL", "get-master-addr-by-name", MASTER_NAME).split()
            if len(answer) == 2:
                return int(answer[1])
        return None

    def kill(self, port: int) -> None:
        process = self.processes.pop(port, None)
        if process is not None:
            process.send_signal(signal.SIGKILL)
            process.wait()

    def waitForFailover(self, timeout: float = 30.0) -> int:
        """Wait until the Sentinels name the replica master and it says so itself; its port."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.currentMaster() == self.replica and command(self.replica, "ROLE").startswith("master"):
                return self.replica
            time.sleep(0.1)
        raise AssertionError(f"no failover within {timeout}s (logs in {self.directory})")

    def stop(self) -> None:
        for port in list(self.processes):
            self.kill(port)
        shutil.rmtree(self.directory, ignore_errors=True)
