"""
A Redis Cluster of the test's own: masters started from ``redis-server --cluster-enabled yes`` on free ports (each
with its cluster bus port, +10000, free too), joined with ``redis-cli --cluster create``; no replicas, no
persistence, in a temporary directory removed after.
"""

from __future__ import annotations

import json
import random
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Any, Optional

from twisted.internet import reactor
from twisted.internet.defer import Deferred


def _free(port: int) -> bool:
    for candidate in (port, port + 10000):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", candidate))
            except OSError:
                return False
    return True


def freeClusterPorts(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = random.randrange(20000, 55000)
        if port not in ports and _free(port):
            ports.append(port)
    return ports


class OwnCluster:
    """C{masters} redis-servers joined as one cluster: L{start}, L{cli}, L{stop}."""

    def __init__(self, masters: int = 3) -> None:
        self.binary = shutil.which("redis-server")
        self.cliBinary = shutil.which("redis-cli")
        if self.binary is None or self.cliBinary is None:
            raise AssertionError("redis-server and redis-cli must be installed: the Cluster tests start their own")
        self.ports = freeClusterPorts(masters)
        self.directory = tempfile.mkdtemp(prefix="httpstream-cluster-")
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    def startNode(self, port: int) -> None:
        assert self.binary is not None
        self.processes[port] = subprocess.Popen(
            [self.binary, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
             "--cluster-config-file", f"nodes-{port}.conf", "--cluster-node-timeout", "2000", "--save", "",
             "--appendonly", "no", "--dir", self.directory],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def start(self, timeout: float = 30.0) -> None:
        for port in self.ports:
            self.startNode(port)
        deadline = time.monotonic() + timeout
        while not all(self.cli(port, "PING") == "PONG" for port in self.ports):
            if time.monotonic() > deadline:
                raise AssertionError("the cluster's redis-servers did not answer")
            time.sleep(0.05)
        assert self.cliBinary is not None
        subprocess.run(
            [self.cliBinary, "--cluster", "create", *[f"127.0.0.1:{p}" for p in self.ports],
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=timeout,
        )
        while not all("cluster_state:ok" in self.cli(port, "CLUSTER", "INFO") for port in self.ports):
            if time.monotonic() > deadline:
                raise AssertionError("the cluster did not come up (cluster_state:ok)")
            time.sleep(0.1)

    def cli(self, port: int, *args: str) -> str:
        assert self.cliBinary is not None
        result = subprocess.run(
            [self.cliBinary, "-h", "127.0.0.1", "-p", str(port), *args],
            capture_output=True, text=True, timeout=10, check=False,
        )
        return result.stdout.strip()

    def nodeID(self, port: int) -> str:
        return self.cli(port, "CLUSTER", "MYID")

    def ownerOf(self, slot: int) -> Optional[int]:
        """The port of the master serving C{slot}, by the first node's view."""
        for entry in json.loads(self.cli(self.ports[0], "--json", "CLUSTER", "SLOTS")):
            if entry[0] <= slot <= entry[1]:
                return int(entry[2][1])
        return None

    def moveSlot(self, slot: int, source: int, target: int) -> None:
        """Migrate C{slot} with its keys from the master on port C{source} to the one on C{target}, by hand."""
        sourceID, targetID = self.nodeID(source), self.nodeID(target)
        self.cli(target, "CLUSTER", "SETSLOT", str(slot), "IMPORTING", sourceID)
        self.cli(source, "CLUSTER", "SETSLOT", str(slot), "MIGRATING", targetID)
        while True:
            keys = self.cli(source, "CLUSTER", "GETKEYSINSLOT", str(slot), "100").split()
            if not keys:
                break
            self.cli(source, "MIGRATE", "127.0.0.1", str(target), "", "0", "5000", "KEYS", *keys)
        for port in self.ports:
            self.cli(port, "CLUSTER", "SETSLOT", str(slot), "NODE", targetID)

    def stop(self) -> None:
        for process in self.processes.values():
            process.kill()
            process.wait()
        self.processes.clear()
        shutil.rmtree(self.directory, ignore_errors=True)


class ClusterOnce:
    """Mixed into a test case: a three-master L{OwnCluster} started once for its tests (C{cluster})."""

    cluster: OwnCluster

    @classmethod
    def setUpClass(cls) -> None:
        cls.cluster = OwnCluster(3)
        try:
            cls.cluster.start()
        except BaseException:
            cls.cluster.stop()
            raise

    @classmethod
    def tearDownClass(cls) -> None:
        cls.cluster.stop()

    def startRouter(self, port: int, prefix: str, **options: Any) -> "Deferred[Any]":
        """A started L{RedisCluster} seeded with the master on C{port}, once its slot map is read and it is up."""
        from httpstream.engines.redis import RedisCluster

        router = RedisCluster(reactor, [f"127.0.0.1:{port}"], prefix=prefix, **options)
        router.startService()
        self.addCleanup(router.stopService)  # type: ignore[attr-defined]
        ready = router.whenReady()
        ready.addTimeout(15, reactor)
        return ready.addCallback(lambda _: router)
