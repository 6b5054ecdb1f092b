"""
Slow and dead peers against a real ``twistd httpstream`` process (issue 14, item 3):

- a subscriber that stops reading is cut with 3008 "slow" on every transport, with one log line, while the
  healthy subscribers of its channel get every publication (their latency and the server's RSS are printed);
- a peer that stops answering (half-open) is found by the ping/pong timeout: 3012 "no pong";
- a peer that trickles its request (slowloris) is cut at the header or body read deadline with 408, while open
  streams and WebSockets live on past both deadlines.

Durations are printed, never asserted; every wait has a generous deadline.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from bench.slowreader import SLOW_USER, measure, serverSettings
from httpstream.logs import threshold
from tests.peers import API, API_KEY, CHANNEL, TRANSPORTS, Subscriber, openSocket, waitFor
from tests.serverprocess import ServerProcess
from tests.client.test_client import OPEN, ClientHelpers

REPO = Path(__file__).resolve().parent.parent


# 1. The slow reader

RATE = 400.0  # publications per second


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_slowReaderCutHealthyServed(startServer, transport: str) -> None:
    """
    20 healthy subscribers and one that stops reading (a 4 KiB receive buffer it never reads), ~1 KiB
    publications at 400/s: the slow one is cut with 3008 and logged once; the healthy ones get all of them, in order;
    the slow connection ends. Latencies and RSS are printed (bench/slowreader.py measures the same, at 200/s).
    """
    server = startServer(serverSettings(queueMax=262144))
    # Twice the benchmark's rate halves the run: the slow reader is cut once the kernel's buffers (~2 MB on
    # loopback) and its queue are full, which takes ~5 s at 400 KiB/s; a healthy reader would have to stall
    # that long to be cut in its place.
    run = measure(server, transport, rate=RATE)
    assert len(run.slowLines) == 1, f"3008 lines for {run.slowClient}: {run.slowLines}\n{server.output[-3000:]}"
    line = run.slowLines[0]
    assert "3008 slow" in line and "client_queue_max_size" in line and SLOW_USER in line and transport in line
    # No payload and no token in it.
    assert "xxxx" not in line and "eyJ" not in line
    assert run.slowEnded
    assert run.missing == {} and run.disordered == []
    print("\n" + run.report())


class SlowLogTests(ClientHelpers, SynchronousTestCase):
    """The 3008 log line, in memory."""

    def setUp(self) -> None:
        super().setUp()
        self.events: list[dict] = []
        # log_level is process-wide: another test may have left it above info.
        self.addCleanup(setattr, threshold, "level", threshold.level)
        threshold.level = LogLevel.info
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def lines(self, level: LogLevel) -> list[str]:
        return [formatEvent(e) for e in self.events if e.get("log_level") == level]

    def test_slowIsLoggedOnceAtInfo(self) -> None:
        node = self.node(client_queue_max_size=1000, **OPEN)
        subscriber, transport = self.connected(node)
        publisher, _ = self.connected(node)
        self.send(subscriber, {"id": 2, "subscribe": {"channel": "news"}})
        transport.pause()
        for i in range(20):
            self.send(publisher, {"id": i + 2, "publish": {"channel": "news", "data": b'"' + b"s" * 100 + b'"'}})
        self.assertEqual(transport.closed, (3008, "slow"))
        lines = [line for line in self.lines(LogLevel.info) if subscriber.clientID in line]
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("3008 slow", lines[0])
        self.assertIn("client_queue_max_size, 1000 bytes", lines[0])
        self.assertIn("not reading", lines[0])
        self.assertNotIn("sss", lines[0])


# 2. Half-open peers


def test_silentPeerFoundByPongTimeout(startServer) -> None:
    """
    A WebSocket peer that goes silent after connecting (no pong, no reads, no FIN, as a peer that vanished) is
    disconnected with 3012 "no pong" and its connection dropped; the server's client count goes back down.
    """
    server = startServer({"ping_interval": "1s", "pong_timeout": "500ms", "api_key": API_KEY, "log_level": "debug"})
    api = API(server.port)
    peer = Subscriber("websocket", server.port, "ghost", [CHANNEL])
    try:
        assert api.numClients() == 1
        started = time.monotonic()
        assert waitFor(lambda: f"client {peer.clientID} disconnected: 3012 no pong" in server.output, 30), (
            server.output[-2000:]
        )
        found = time.monotonic() - started
        assert waitFor(lambda: api.numClients() == 0, 30)
        # Autobahn waits for the close handshake (5 s), then drops the connection.
        peer.drain(30)
        assert peer.ended
        print(f"\nsilent WebSocket peer found by the pong timeout after {found:.1f}s (ping 1s, pong 500ms)")
    finally:
        peer.close()
        api.close()


class Namespace:
    """
    A network namespace joined to this one by a veth pair: the server listens on C{hostAddress}, a peer inside
    reaches it, and L{blackhole} makes the peer vanish without a FIN (its side of the link goes down).
    """

    def __init__(self) -> None:
        tag = f"{os.getpid() % 100000}"
        self.name = f"hsslow{tag}"
        self._hostLink, self._peerLink = f"hsh{tag}", f"hsp{tag}"
        subnet = f"10.231.{os.getpid() % 250}"
        self.hostAddress, self.peerAddress = f"{subnet}.1", f"{subnet}.2"
        commands = [
            ["ip", "netns", "add", self.name],
            ["ip", "link", "add", self._hostLink, "type", "veth", "peer", "name", self._peerLink],
            ["ip", "link", "set", self._peerLink, "netns", self.name],
            ["ip", "addr", "add", f"{self.hostAddress}/30", "dev", self._hostLink],
            ["ip", "link", "set", self._hostLink, "up"],
            ["ip", "netns", "exec", self.name, "ip", "addr", "add", f"{self.peerAddress}/30", "dev", self._peerLink],
            ["ip", "netns", "exec", self.name, "ip", "link", "set", self._peerLink, "up"],
            ["ip", "netns", "exec", self.name, "ip", "link", "set", "lo", "up"],
        ]
        try:
            for command in commands:
                subprocess.run(command, check=True, capture_output=True, timeout=30)
        except (OSError, subprocess.SubprocessError) as e:
            self.delete()
            pytest.skip(f"no network namespaces here: {e}")

    def run(self, command: list[str]) -> subprocess.Popen[str]:
        return subprocess.Popen(["ip", "netns", "exec", self.name, *command], stdout=subprocess.PIPE, text=True,
                                cwd=REPO)

    def blackhole(self) -> None:
        subprocess.run(["ip", "netns", "exec", self.name, "ip", "link", "set", self._peerLink, "down"],
                       check=True, timeout=30)

    def delete(self) -> None:
        # Deleting the namespace deletes its end of the pair, and with it the other end.
        subprocess.run(["ip", "netns", "del", self.name], check=False, capture_output=True, timeout=30)
        subprocess.run(["ip", "link", "del", self._hostLink], check=False, capture_output=True, timeout=30)


def serverSockets(pid: int, peer: str) -> int:
    """How many TCP sockets of process C{pid} are connected to C{peer}."""
    command = ["ss", "-tnpH", "dst", peer]
    listing = subprocess.run(command, check=False, capture_output=True, text=True, timeout=30).stdout
    return sum(f"pid={pid}," in line for line in listing.splitlines())


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("ss"),
                    reason="needs root, ip and ss for a network namespace")
def test_vanishedPeerFoundByPongTimeout(startServer) -> None:
    """
    A WebSocket peer in another network namespace answers pings, then vanishes: its link goes down and its process
    is killed, so no FIN or RST ever arrives. The server finds it by the pong timeout (3012), drops the connection
    and its socket, and counts it gone.
    """
    namespace = Namespace()
    peer = None
    try:
        server = startServer({"address": namespace.hostAddress, "ping_interval": "1s", "pong_timeout": "500ms",
                              "api_key": API_KEY, "log_level": "debug"})
        api = API(server.port, namespace.hostAddress)
        peer = namespace.run([sys.executable, "-m", "tests.peers", namespace.hostAddress, str(server.port)])
        assert peer.stdout is not None
        clientID = peer.stdout.readline().strip()
        assert clientID, "the peer did not connect"
        # Alive: several pings answered.
        time.sleep(3.5)
        assert f"client {clientID} disconnected" not in server.output
        assert serverSockets(server.pid, namespace.peerAddress) == 1
        namespace.blackhole()
        peer.kill()
        peer.wait(30)
        started = time.monotonic()
        assert waitFor(lambda: f"client {clientID} disconnected: 3012 no pong" in server.output, 30), (
            server.output[-2000:]
        )
        found = time.monotonic() - started
        assert waitFor(lambda: api.numClients() == 0, 30)
        # Autobahn waits 5 s for a close frame that cannot come, then drops the connection.
        assert waitFor(lambda: serverSockets(server.pid, namespace.peerAddress) == 0, 30)
        dropped = time.monotonic() - started
        api.close()
        print(f"\nvanished peer (link down, no FIN): 3012 after {found:.1f}s, socket closed after {dropped:.1f}s "
              "(ping 1s, pong 500ms)")
    finally:
        if peer is not None and peer.poll() is None:
            peer.kill()
            peer.wait(30)
        namespace.delete()


# 3. Slowloris


HEADER_TIMEOUT, READ_TIMEOUT = 1.0, 2.0
DEADLINES = {"http_server_read_header_timeout": "1s", "http_server_read_timeout": "2s"}


@pytest.fixture(scope="module")
def deadlineServer(tmp_path_factory: pytest.TempPathFactory):
    overrides = {"sse": True, "ping_interval": -1, "pong_timeout": -1, "api_key": API_KEY, **DEADLINES}
    with ServerProcess(tmp_path_factory.mktemp("slowloris"), overrides) as process:
        yield process


def trickle(sock: socket.socket, data: bytes, every: float, limit: float) -> tuple[float, bytes]:
    """Send C{data} a byte each C{every} seconds until the server answers or closes; return (seconds, answer)."""
    sock.setblocking(False)
    started = time.monotonic()
    answer = b""
    for index in range(len(data)):
        try:
            chunk = sock.recv(4096)
            answer += chunk
            if not chunk:
                break
        except BlockingIOError:
            pass
        except OSError:
            break
        if answer or time.monotonic() - started > limit:
            break
        try:
            sock.send(data[index:index + 1])
        except OSError:
            break
        time.sleep(every)
    sock.setblocking(True)
    sock.settimeout(10)
    try:
        while chunk := sock.recv(4096):
            answer += chunk
    except OSError:
        pass
    return time.monotonic() - started, answer


def test_trickledHeadersCut(deadlineServer: ServerProcess) -> None:
    sock = openSocket(deadlineServer.port)
    request = b"GET /connection/websocket HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"y" * 200 + b"\r\n\r\n"
    # 25 s to send it all at this pace: an answer before then is the deadline's.
    took, answer = trickle(sock, request, 0.1, limit=20)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer
    # The log line is read from the server's pipe by a thread: it may come a moment after the answer.
    logged = r"request headers not read within 1(\.0)?s \(http_server_read_header_timeout\)"
    assert waitFor(lambda: re.search(logged, deadlineServer.output) is not None, 10), deadlineServer.output[-2000:]
    print(f"\ntrickled headers cut after {took:.2f}s (http_server_read_header_timeout {HEADER_TIMEOUT}s)")


def test_silentConnectionClosed(deadlineServer: ServerProcess) -> None:
    """A connection that sends nothing is closed at the header deadline, without an answer."""
    sock = openSocket(deadlineServer.port)
    sock.settimeout(30)
    started = time.monotonic()
    try:
        assert sock.recv(4096) == b""
    except ConnectionResetError:
        pass
    took = time.monotonic() - started
    sock.close()
    print(f"\nsilent connection closed after {took:.2f}s (http_server_read_header_timeout {HEADER_TIMEOUT}s)")


def test_trickledBodyCut(deadlineServer: ServerProcess) -> None:
    sock = openSocket(deadlineServer.port)
    body = b'{"id":1,"connect":{}}' + b" " * 500
    sock.sendall(b"POST /connection/http_stream HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n" % len(body))
    took, answer = trickle(sock, body, 0.1, limit=20)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer
    assert waitFor(lambda: "request body not read within 2" in deadlineServer.output, 10), deadlineServer.output[-2000:]
    print(f"\ntrickled body cut after {took:.2f}s (http_server_read_timeout {READ_TIMEOUT}s)")


@pytest.fixture(scope="module")
def idleSubscribers(deadlineServer: ServerProcess) -> Iterator[dict[str, Subscriber]]:
    """
    One subscriber per transport, opened together and left idle for twice both deadlines: each transport's test
    below checks its own, so the four share one wait instead of waiting in turn.
    """
    subscribers: dict[str, Subscriber] = {}
    try:
        for transport in TRANSPORTS:
            subscribers[transport] = Subscriber(transport, deadlineServer.port, f"patient-{transport}", [CHANNEL])
        time.sleep(2 * READ_TIMEOUT + 0.5)
        yield subscribers
    finally:
        for subscriber in subscribers.values():
            subscriber.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_openConnectionsOutliveDeadlines(
    deadlineServer: ServerProcess, idleSubscribers: dict[str, Subscriber], transport: str
) -> None:
    """Streams and WebSockets are past their request phase: idle for twice both deadlines, they still deliver."""
    api = API(deadlineServer.port)
    subscriber = idleSubscribers[transport]
    n = 7 + TRANSPORTS.index(transport)  # each test's own publication: the subscribers share the channel
    try:
        api.call("publish", {"channel": CHANNEL, "data": {"pad": "", "n": n, "ts": time.time()}})
        subscriber.sock.setblocking(True)
        subscriber.sock.settimeout(10)
        while n not in subscriber.received:
            data = subscriber.sock.recv(65536)
            assert data, f"{transport} closed"
            subscriber.feed(data, time.time())
    finally:
        api.close()
