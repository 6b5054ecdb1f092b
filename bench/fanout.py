"""
Fan-out benchmark: N http_stream subscribers on one channel, M publications into it.

    .venv/bin/python -m bench.fanout [--connections 1000] [--messages 100] [--rate 20]

The server runs as its own process (``twistd -n httpstream``); this process is the load generator: raw asyncio
sockets that write the HTTP/1.1 requests themselves and parse the chunked streams incrementally, so one
connection costs a few small objects here and the measurement is not a client library's. Latency is the receive
time at a subscriber minus the send time stamped into the publication's data (``time.time_ns()`` on both sides:
one machine, one clock). See bench/README.md for how to read the table.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any, Optional

import orjson

from tests.serverprocess import ServerProcess

CHANNEL = "bench"
HOST = "127.0.0.1"

class BenchError(Exception):
    """The run could not be completed or measured; the message says what is missing."""


# The server


def serverConfig(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "http_stream": True,
        "allow_anonymous_connect_without_token": True,
        "allow_subscribe_for_anonymous": True,
        "allow_subscribe_for_client": True,
        "allow_publish_for_anonymous": True,
        "allow_publish_for_client": True,
        "log_level": "error",
        # No server ping during a run: it would only add "{}" lines and pongs to send.
        "ping_interval": "1h",
        "pong_timeout": "8s",
        # Every subscriber may fall behind by a whole run's publications without being cut off as slow.
        "client_queue_max_size": 64 * 1024 * 1024,
        "sse": True,
        **dict(args.set),
    }


def rssKiB(pid: int) -> int:
    """Resident set size of a process, from /proc/<pid>/status VmRSS (kB)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise BenchError(f"no VmRSS for pid {pid}")


_TICK = os.sysconf("SC_CLK_TCK")


def cpuSeconds(pid: int) -> float:
    """User + system CPU time a process has used, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # After the command name: state is field 3, utime 14 and stime 15 (1-based, man 5 proc).
    return (int(fields[11]) + int(fields[12])) / _TICK


def processTree(pid: int) -> list[int]:
    """C{pid} and its children (a --workers server's worker processes), from /proc/<pid>/task/*/children."""
    children: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                children += [int(child) for child in f.read().split()]
    except OSError:
        pass
    return [pid, *children]


def treeCpuSeconds(pid: int) -> float:
    """CPU seconds of C{pid} and its live children (the supervisor and its workers)."""
    total = 0.0
    for each in processTree(pid):
        try:
            total += cpuSeconds(each)
        except OSError:
            pass  # ended meanwhile
    return total


def treeRssKiB(pid: int) -> int:
    return sum(rssKiB(each) for each in processTree(pid))


def machineCpu() -> tuple[int, int, int]:
    """(busy, steal, total) jiffies over all CPUs since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal guest guest_nice (guests are already counted in user/nice)
    total = sum(fields[:8])
    idle = fields[3] + fields[4]
    return total - idle, fields[7], total


def ownCpuSeconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def raiseFileLimit(needed: int) -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE towards C{needed} (the server, started later, inherits it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if soft != resource.RLIM_INFINITY and soft < needed:
        raise BenchError(f"need {needed} file descriptors but the hard limit is {hard}: raise `ulimit -Hn`")
    return soft, hard


# The client side


class Results:
    """What every subscriber stream reports into."""

    def __init__(self, expected: int, messages: int) -> None:
        self.reset(expected, messages)

    def reset(self, expected: int, messages: int) -> None:
        """Start a new publish phase on the same streams (bench.ceiling runs several rates on one set)."""
        self.expected = expected
        self.received = 0
        self.latencies: list[int] = []  # ns, one per delivery
        self.lastPerMessage = [0] * messages  # ns: the latest delivery of each publication
        self.firstDelivery = 0
        self.lastDelivery = 0
        self.disconnects: dict[str, int] = {}
        self.ended: dict[str, int] = {}  # why streams ended or broke before the run was over
        self.errors: list[str] = []
        self.done = asyncio.get_running_loop().create_future()

    def delivered(self, now: int, data: dict) -> None:
        latency = now - data["t"]
        self.latencies.append(latency)
        i = data["i"]
        if latency > self.lastPerMessage[i]:
            self.lastPerMessage[i] = latency
        if not self.firstDelivery:
            self.firstDelivery = now
        self.lastDelivery = now
        self.received += 1
        if self.received >= self.expected and not self.done.done():
            self.done.set_result(None)


class StreamConnection(asyncio.Protocol):
    """
    One POST /connection/http_stream: writes the request, then parses the chunked response incrementally and
    dispatches each newline-terminated JSON message: replies resolve the waiter of their id, publications are
    timed, a disconnect push is counted.
    """

    # The session's protocol, for the emulation requests that carry its commands.
    protobuf = False
    # The connect reply must carry session and node (it must, for emulation; a WebSocket needs neither).
    needsSession = True

    def __init__(self, port: int, results: Results) -> None:
        self._request = self.request(port)
        self._results = results
        self._buffer = bytearray()
        self._headDone = False
        self._chunkLeft = -1  # -1: a chunk-size line comes next
        self._waiters: dict[int, asyncio.Future] = {}
        # Waited for from the start: the reply can arrive before create_connection() returns the protocol.
        self.connected = self.reply(1)
        self.transport: Optional[asyncio.Transport] = None
        self.session = ""
        self.node = ""
        self.received = 0
        self.disconnect = ""  # the disconnect push, "code reason", if one came
        self.stage = "tcp connect"  # how far it got, for the error when a phase times out
        self.closed = False
        self.finished = False  # the run is over: an end of stream is expected now

    def request(self, port: int) -> bytes:
        """The bytes that open this stream."""
        body = b'{"id":1,"connect":{}}'
        return (
            b"POST /connection/http_stream HTTP/1.1\r\n"
            + f"Host: {HOST}:{port}\r\n".encode()
            + b"Content-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )

    def reply(self, commandID: int) -> asyncio.Future:
        """A future for the reply to command C{commandID} on this stream."""
        future = asyncio.get_running_loop().create_future()
        self._waiters[commandID] = future
        return future

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self._request)  # type: ignore[union-attr]
        self.stage = "request sent, no response head"

    def data_received(self, data: bytes) -> None:
        now = time.time_ns()
        buffer = self._buffer
        buffer += data
        pos = 0
        if not self._headDone:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buffer[:end]).decode("latin-1").lower()
            status = head.split(" ", 2)[1]
            if status != "200" or "transfer-encoding: chunked" not in head:
                self._fail(f"stream answered {head.splitlines()[0]!r}")
                return
            self._headDone = True
            self.stage = "response head, no connect reply"
            pos = end + 4
        size = len(buffer)
        while True:
            if self._chunkLeft < 0:
                eol = buffer.find(b"\r\n", pos)
                if eol < 0:
                    break
                self._chunkLeft = int(bytes(buffer[pos:eol]).split(b";")[0], 16)
                pos = eol + 2
                if self._chunkLeft == 0:
                    self._end(f"stream ended ({self.disconnect or 'no disconnect push'})")
                    return
            if size - pos < self._chunkLeft + 2:
                break
            chunk = bytes(buffer[pos : pos + self._chunkLeft])
            pos += self._chunkLeft + 2
            self._chunkLeft = -1
            self._chunk(chunk, now)
        del buffer[:pos]

    def _chunk(self, chunk: bytes, now: int) -> None:
        """One chunk of the body: newline-delimited JSON messages (http_stream's JSON framing)."""
        for line in chunk.split(b"\n"):
            if line:
                self._dispatch(orjson.loads(line), now)

    def _dispatch(self, message: dict, now: int) -> None:
        push = message.get("push")
        if push is not None:
            pub = push.get("pub")
            if pub is not None:
                self.received += 1
                self._results.delivered(now, pub["data"])
            elif "disconnect" in push:
                d = push["disconnect"]
                self._disconnected(f'{d.get("code")} {d.get("reason", "")}')
            return
        commandID = message.get("id")
        if commandID is None:
            return  # a server ping
        if "connect" in message:
            self._connected(message["connect"].get("session", ""), message["connect"].get("node", ""))
        if "error" in message:
            self._answer(commandID, None, f"command {commandID} failed: {message['error']}")
        else:
            self._answer(commandID, message, "")

    def _connected(self, session: str, node: str) -> None:
        self.stage = "connected"
        self.session = session
        self.node = node

    def _disconnected(self, key: str) -> None:
        self.disconnect = key
        self._results.disconnects[key] = self._results.disconnects.get(key, 0) + 1

    def _answer(self, commandID: int, message: Any, error: str) -> None:
        waiter = self._waiters.pop(commandID, None)
        if waiter is not None and not waiter.done():
            if error:
                waiter.set_exception(BenchError(error))
            else:
                waiter.set_result(message)

    def _fail(self, reason: str) -> None:
        self._results.errors.append(reason)
        self._end(reason)

    def _end(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        if not self.finished:
            self._results.ended[reason] = self._results.ended.get(reason, 0) + 1
        for waiter in self._waiters.values():
            if not waiter.done():
                waiter.set_exception(BenchError(reason))
        self._waiters.clear()
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._end(f"connection lost: {exc or 'closed by server'}")

    def close(self) -> None:
        self.finished = True
        if self.transport is not None:
            self.transport.close()


class EmulationConnection:
    """A keep-alive HTTP/1.1 connection for POST /emulation requests, one at a time or pipelined."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._reader: Optional[asyncio.StreamReader] = None
        self._writer: Optional[asyncio.StreamWriter] = None
        self._inFlight: deque[asyncio.Future] = deque()
        self._readLoop: Optional[asyncio.Task] = None

    def _request(self, stream: StreamConnection, commands: list[dict]) -> bytes:
        if stream.protobuf:
            # A protobuf session takes an EmulationRequest whose data is its varint-delimited Commands.
            from bench.loadmodes import protobufCommands, protobufEmulation

            body = protobufEmulation(stream.session, stream.node, protobufCommands(commands))
            contentType = b"application/octet-stream"
        else:
            data = "\n".join(orjson.dumps(c).decode() for c in commands)
            body = orjson.dumps({"session": stream.session, "node": stream.node, "data": data})
            contentType = b"application/json"
        return (
            b"POST /emulation HTTP/1.1\r\n"
            + f"Host: {HOST}:{self._port}\r\n".encode()
            + b"Content-Type: " + contentType + b"\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )

    async def open(self) -> None:
        if self._writer is None or self._writer.is_closing():
            self._reader, self._writer = await asyncio.open_connection(HOST, self._port)

    async def _response(self) -> None:
        """Read one response; raise unless it is the 204 that says the commands have run."""
        assert self._reader is not None
        head = (await self._reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
        status = head.split(" ", 2)[1]
        length = re.search(r"content-length:\s*(\d+)", head)
        if length:
            await self._reader.readexactly(int(length.group(1)))
        elif "transfer-encoding: chunked" in head:
            while size := int((await self._reader.readuntil(b"\r\n")).split(b";")[0], 16):
                await self._reader.readexactly(size + 2)
            await self._reader.readuntil(b"\r\n")
        if "connection: close" in head or not (length or status == "204" or "chunked" in head):
            self.close()
        if status != "204":
            raise BenchError(f"POST /emulation answered {status}")

    async def post(self, stream: StreamConnection, commands: list[dict]) -> None:
        """Run C{commands} on C{stream}'s session and wait for the 204; their replies come on the stream."""
        await self.open()
        assert self._writer is not None
        self._writer.write(self._request(stream, commands))
        await self._response()

    def send(self, stream: StreamConnection, commands: list[dict]) -> asyncio.Future:
        """
        Pipelined: write the request now, without waiting for earlier answers (the server answers in order).
        The connection must be open. @return: a future for its 204.
        """
        assert self._writer is not None, "open() first"
        future = asyncio.get_running_loop().create_future()
        self._inFlight.append(future)
        self._writer.write(self._request(stream, commands))
        if self._readLoop is None:
            self._readLoop = asyncio.ensure_future(self._readResponses())
        return future

    async def _readResponses(self) -> None:
        try:
            while True:
                try:
                    await self._response()
                    outcome: Optional[BenchError] = None
                except BenchError as e:
                    outcome = e
                if not self._inFlight:
                    raise BenchError("POST /emulation: an answer to no request")
                future = self._inFlight.popleft()
                if outcome is None:
                    future.set_result(None)
                else:
                    future.set_exception(outcome)
        except (asyncio.IncompleteReadError, ConnectionError, BenchError) as e:
            while self._inFlight:
                self._inFlight.popleft().set_exception(BenchError(f"emulation connection lost: {e!r}"))

    def close(self) -> None:
        if self._readLoop is not None:
            self._readLoop.cancel()
            self._readLoop = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class EmulationPool:
    """A few keep-alive emulation connections shared by many sessions."""

    def __init__(self, port: int, size: int) -> None:
        self._idle: asyncio.Queue[EmulationConnection] = asyncio.Queue()
        self._all = [EmulationConnection(port) for _ in range(size)]
        for connection in self._all:
            self._idle.put_nowait(connection)

    async def post(self, stream: StreamConnection, commands: list[dict]) -> None:
        connection = await self._idle.get()
        try:
            await connection.post(stream, commands)
        except BaseException:
            connection.close()
            raise
        finally:
            self._idle.put_nowait(connection)

    def close(self) -> None:
        for connection in self._all:
            connection.close()


async def openStream(
    port: int,
    results: Results,
    timeout: float,
    opened: Optional[list[StreamConnection]] = None,
    kind: type[StreamConnection] = StreamConnection,
) -> StreamConnection:
    loop = asyncio.get_running_loop()

    def factory() -> StreamConnection:
        stream = kind(port, results)
        if opened is not None:
            opened.append(stream)
        return stream

    _, stream = await asyncio.wait_for(loop.create_connection(factory, HOST, port), timeout)
    await asyncio.wait_for(stream.connected, timeout)
    if kind.needsSession and not (stream.session and stream.node):
        raise BenchError("connect reply has no session/node: is http_stream emulation enabled?")
    return stream


async def subscribe(pool: EmulationPool, stream: StreamConnection, timeout: float) -> None:
    reply = stream.reply(2)
    await asyncio.wait_for(pool.post(stream, [{"id": 2, "subscribe": {"channel": CHANNEL}}]), timeout)
    await asyncio.wait_for(reply, timeout)


class Publisher:
    """One more session, not subscribed, whose publish commands go out through POST /emulation, pipelined."""

    def __init__(self, stream: StreamConnection, emulation: EmulationConnection) -> None:
        self._stream = stream
        self._emulation = emulation

    def publish(self, command: dict) -> tuple[asyncio.Future, Optional[asyncio.Future]]:
        """Send C{command}: (its reply on the stream, the POST's 204 or None when there is no such answer)."""
        reply = self._stream.reply(command["id"])
        return reply, self._emulation.send(self._stream, [command])

    def close(self) -> None:
        self._emulation.close()
        self._stream.close()


class Mode:
    """
    How the load generator speaks one transport: open a subscriber, subscribe it, publish. This one is
    http_stream with JSON (bench.loadmodes has the others: Protobuf http_stream, SSE, WebSocket).
    """

    name = "http_stream"
    stream: type[StreamConnection] = StreamConnection

    async def open(
        self, port: int, results: Results, timeout: float, opened: Optional[list[StreamConnection]] = None
    ) -> StreamConnection:
        return await openStream(port, results, timeout, opened, self.stream)

    async def subscribe(self, pool: EmulationPool, stream: StreamConnection, timeout: float) -> None:
        await subscribe(pool, stream, timeout)

    async def publisher(self, port: int, results: Results, timeout: float) -> Publisher:
        stream = await self.open(port, results, timeout)
        emulation = EmulationConnection(port)
        await emulation.open()
        return Publisher(stream, emulation)


async def gatherAll(label: str, coroutines: list, timeout: float) -> list:
    """Run them all; on any failure or past C{timeout}, say how many made it and why the rest did not."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    if not tasks:
        return []
    done, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    failures = [t.exception() for t in done if t.exception() is not None]
    if pending or failures:
        ok = len(done) - len(failures)
        reasons: dict[str, int] = {}
        for f in failures:
            key = f"{type(f).__name__}: {f}"
            reasons[key] = reasons.get(key, 0) + 1
        detail = "; ".join(f"{n}x {r}" for r, n in sorted(reasons.items(), key=lambda x: -x[1])[:5])
        raise BenchError(
            f"{label}: {ok} of {len(tasks)} succeeded, {len(failures)} failed, {len(pending)} timed out "
            f"after {timeout:g}s. {detail}"
        )
    return [t.result() for t in tasks]


class Profiler:
    """py-spy record on the server for the publish phase (optional; py-spy must be installed)."""

    def __init__(self, pid: int, output: Optional[str]) -> None:
        self._process: Optional[subprocess.Popen] = None
        if not output:
            return
        pyspy = Path(sys.executable).with_name("py-spy")
        command = [str(pyspy) if pyspy.exists() else "py-spy", "record", "--pid", str(pid), "--output", output,
                   "--rate", "200", "--nonblocking"]
        command += ["--format", "raw"] if output.endswith((".txt", ".folded")) else []
        try:
            self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        except FileNotFoundError:
            raise BenchError("--profile needs py-spy: .venv/bin/pip install py-spy") from None
        time.sleep(1.0)  # py-spy attaches
        if self._process.poll() is not None:
            raise BenchError(f"py-spy failed: {self._process.stderr.read().decode()}")  # type: ignore[union-attr]

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
            try:
                self._process.wait(30)
            except subprocess.TimeoutExpired:
                self._process.kill()


# The run


def percentile(ordered: list[int], p: float) -> int:
    if not ordered:
        return 0
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def padding(size: int) -> str:
    """Filler that brings a publication's data, C{{"t":<19 digits>,"i":<i>}}, to about C{size} bytes."""
    return "x" * max(0, size - 40)


class Subscribers:
    """N streams on one server, connected and subscribed to the channel, for one or more publish phases."""

    def __init__(self, args: argparse.Namespace, server: ServerProcess, mode: Mode) -> None:
        self.args = args
        self.port, self.pid = server.port, server.pid
        self.mode = mode
        self.results = Results(0, 1)
        self.streams: list[StreamConnection] = []
        self.pool = EmulationPool(self.port, args.emulation_pool)
        self.nextID = 3  # 1 connect, 2 subscribe

    async def connect(self) -> dict[str, Any]:
        args, n, pid = self.args, self.args.connections, self.pid
        out: dict[str, Any] = {"transport": self.mode.name}
        gc.collect()
        time.sleep(0.5)
        out["rss_before_kib"] = treeRssKiB(pid)
        # Connect: at most --concurrency handshakes in flight, a steady ramp rather than a SYN flood.
        gate = asyncio.Semaphore(args.concurrency)

        async def connectOne() -> StreamConnection:
            async with gate:
                return await self.mode.open(self.port, self.results, args.timeout, self.streams)

        start = time.perf_counter()
        try:
            await gatherAll("connect", [connectOne() for _ in range(n)], args.timeout)
        except BenchError as e:
            stages: dict[str, int] = {}
            for stream in self.streams:
                if stream.stage != "connected":
                    stages[stream.stage] = stages.get(stream.stage, 0) + 1
            raise BenchError(f"{e} Stuck streams: {stages or 'none'}") from None
        out["connect_s"] = time.perf_counter() - start

        start = time.perf_counter()
        await gatherAll(
            "subscribe", [self.mode.subscribe(self.pool, s, args.timeout) for s in self.streams], args.timeout
        )
        out["subscribe_s"] = time.perf_counter() - start

        await asyncio.sleep(1.0)
        out["rss_connected_kib"] = treeRssKiB(pid)
        out["rss_per_connection_kib"] = (out["rss_connected_kib"] - out["rss_before_kib"]) / n
        # With --workers: how the kernel and the workers spread the streams (each worker is a node of its own).
        perNode: dict[str, int] = {}
        for stream in self.streams:
            perNode[stream.node] = perNode.get(stream.node, 0) + 1
        out["subscribers_per_node"] = sorted(perNode.values(), reverse=True)
        return out

    async def publish(self, rate: float, m: int, profile: Optional[str] = None) -> dict[str, Any]:
        """One publish phase: M publications at C{rate}, open-loop; every number of it."""
        args, n, pid, results = self.args, self.args.connections, self.pid, self.results
        results.reset(n * m, m)
        for stream in self.streams:
            stream.received = 0
        out: dict[str, Any] = {"connections": n, "messages": m, "rate": rate, "transport": self.mode.name}
        pad = padding(args.size) if args.size else ""
        # The publisher is one more connection, not subscribed: its stream carries only the publish replies.
        publisher = await self.mode.publisher(self.port, results, args.timeout)
        reader = None
        if getattr(args, "reader", "python") == "native":  # (bench.ceiling's namespace has no --reader)
            from bench.native import NativeReader

            reader = NativeReader(self.streams, n * m, m, args.timeout, args.reader_gather_ms)
            await reader.start()
        profiler = Profiler(pid, profile)
        # The load generator's own collector must not pause the receive loop mid-measurement (what it parses is
        # freed by reference counting; nothing here makes cycles per message).
        gc.collect()
        gc.freeze()
        gc.disable()
        serverCpu0, ownCpu0, machine0 = treeCpuSeconds(pid), ownCpuSeconds(), machineCpu()
        publishStart = time.time_ns()
        startClock = time.perf_counter()
        replies, accepted = [], []
        publishProblems: list[str] = []
        try:
            # Open loop: each publication goes out at its scheduled time whether or not the server has answered
            # the earlier ones (requests are pipelined), so a slow server shows as latency rather than as a
            # publisher that politely waits (coordinated omission). --rate 0 sends them all at once.
            for i in range(m):
                if rate > 0:
                    delay = startClock + i / rate - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                commandID = self.nextID
                self.nextID += 1
                sentAt = time.time_ns()
                if i == 0:
                    firstSend = sentAt
                data: dict[str, Any] = {"t": sentAt, "i": i}
                if pad:
                    data["p"] = pad
                reply, answer = publisher.publish({"id": commandID, "publish": {"channel": CHANNEL, "data": data}})
                replies.append(reply)
                if answer is not None:
                    accepted.append(answer)
            publishEnd = time.time_ns()
            # Failures here are reported with the deliveries rather than ending the run.
            for label, futures in (("publish requests (204)", accepted), ("publish replies", replies)):
                try:
                    await gatherAll(label, futures, args.timeout)
                except BenchError as e:
                    publishProblems.append(str(e))
            if reader is not None:
                await reader.finish(results)
            else:
                try:
                    await asyncio.wait_for(asyncio.shield(results.done), args.timeout)
                except asyncio.TimeoutError:
                    pass
        finally:
            serverCpu, ownCpu = treeCpuSeconds(pid) - serverCpu0, ownCpuSeconds() - ownCpu0
            if reader is not None:
                ownCpu += reader.cpuSeconds
            windowNs = time.time_ns() - publishStart
            machine = [after - before for after, before in zip(machineCpu(), machine0)]
            gc.enable()
            gc.unfreeze()
            profiler.stop()
            publisher.close()
        out["rss_after_publish_kib"] = treeRssKiB(pid)

        out["expected"] = n * m
        out["received"] = results.received
        phaseNs = max(results.lastDelivery, publishEnd) - publishStart
        out["publish_phase_s"] = phaseNs / 1e9
        # Sends 0..m-1 span m-1 intervals.
        out["publish_rate"] = (m - 1) / ((sentAt - firstSend) / 1e9) if sentAt > firstSend else 0.0
        out["deliveries_per_s"] = results.received / (phaseNs / 1e9) if phaseNs > 0 else 0.0
        ordered = sorted(results.latencies)
        for name, p in (("p50", 50), ("p90", 90), ("p99", 99)):
            out[f"latency_{name}_ms"] = percentile(ordered, p) / 1e6
        out["latency_max_ms"] = (ordered[-1] if ordered else 0) / 1e6
        fanout = sorted(x for x in results.lastPerMessage if x)
        out["fanout_p50_ms"] = percentile(fanout, 50) / 1e6
        out["fanout_max_ms"] = (fanout[-1] if fanout else 0) / 1e6
        out["fanout_ms_by_message"] = [round(x / 1e6, 2) for x in results.lastPerMessage]
        out["server_cpu_s"] = serverCpu
        out["loadgen_cpu_s"] = ownCpu
        # CPU per delivery: the server's whole CPU over the window (publish requests included) per delivery.
        out["server_cpu_us_per_delivery"] = 1e6 * serverCpu / results.received if results.received else 0.0
        # CPU is read over the whole publish window, which ends when the last delivery arrives (or at the timeout).
        out["server_cpu_pct"] = 100 * serverCpu / (windowNs / 1e9)
        out["loadgen_cpu_pct"] = 100 * ownCpu / (windowNs / 1e9)
        # Everything that ran on the machine (other processes included), in CPUs' worth: 2.0 = both cores busy.
        out["machine_busy_cpus"] = (os.cpu_count() or 1) * machine[0] / machine[2] if machine[2] else 0.0
        out["machine_steal_pct"] = 100 * machine[1] / machine[2] if machine[2] else 0.0
        out["other_busy_cpus"] = max(0.0, out["machine_busy_cpus"] - (serverCpu + ownCpu) / (windowNs / 1e9))
        out["streams_ended_early"] = dict(results.ended)
        out["disconnects"] = dict(results.disconnects)
        short = [s.received for s in self.streams if s.received < m]
        out["subscribers_short"] = len(short)
        out["publish_problems"] = publishProblems
        return out

    def close(self) -> None:
        self.pool.close()
        for stream in self.streams:
            stream.close()


async def run(args: argparse.Namespace, server: ServerProcess, mode: Optional[Mode] = None) -> dict[str, Any]:
    """bench.fanout's run: connect and subscribe N streams, then one publish phase at --rate."""
    subscribers = Subscribers(args, server, mode or Mode())
    try:
        connected = await subscribers.connect()
        out = await subscribers.publish(args.rate, args.messages, args.profile)
    finally:
        subscribers.close()
    return {**connected, **out}


def table(out: dict[str, Any], args: argparse.Namespace) -> str:
    rows = [
        ("connections", f"{out['connections']}"),
        ("messages", f"{out['messages']}"),
        ("publish rate target / achieved (msg/s)",
         f"{'unlimited' if args.rate <= 0 else format(args.rate, 'g')} / {out['publish_rate']:.1f}"),
        ("connect time, all N (s)", f"{out['connect_s']:.2f}  ({out['connections'] / out['connect_s']:.0f}/s)"),
        ("subscribe time, all N (s)", f"{out['subscribe_s']:.2f}  ({out['connections'] / out['subscribe_s']:.0f}/s)"),
        ("deliveries expected / received", f"{out['expected']} / {out['received']}"),
        ("publish phase, first send to last delivery (s)", f"{out['publish_phase_s']:.2f}"),
        ("deliveries/s", f"{out['deliveries_per_s']:.0f}"),
        ("latency p50 / p90 / p99 / max (ms)",
         f"{out['latency_p50_ms']:.1f} / {out['latency_p90_ms']:.1f} / {out['latency_p99_ms']:.1f} / "
         f"{out['latency_max_ms']:.1f}"),
        ("fan-out, send to last subscriber p50 / max (ms)", f"{out['fanout_p50_ms']:.1f} / {out['fanout_max_ms']:.1f}"),
        ("server RSS before connections (MiB)", f"{out['rss_before_kib'] / 1024:.1f}"),
        ("server RSS after connections (MiB)", f"{out['rss_connected_kib'] / 1024:.1f}"),
        ("server RSS per connection (KiB)", f"{out['rss_per_connection_kib']:.1f}"),
        ("server RSS after publishing (MiB)", f"{out['rss_after_publish_kib'] / 1024:.1f}"),
        ("CPU in publish phase: server / load generator (%)",
         f"{out['server_cpu_pct']:.0f} / {out['loadgen_cpu_pct']:.0f}"),
        ("other processes' CPU in publish phase (cores) / steal (%)",
         f"{out['other_busy_cpus']:.2f} / {out['machine_steal_pct']:.1f}"),
    ]
    width = max(len(name) for name, _ in rows)
    valueWidth = max(len(value) for _, value in rows)
    line = f"+-{'-' * width}-+-{'-' * valueWidth}-+"
    body = [line] + [f"| {name:<{width}} | {value:>{valueWidth}} |" for name, value in rows] + [line]
    config = (
        f"bench.fanout: --transport {args.transport} --connections {args.connections} --messages {args.messages} "
        f"--rate {args.rate:g} --size {args.size} "
        f"--concurrency {args.concurrency} --emulation-pool {args.emulation_pool} --timeout {args.timeout:g}; "
        f"server: twistd httpstream, {engineText(args)}, sse on, log_level error, ping_interval 1h"
        + "".join(f", {key}={json.dumps(value)}" for key, value in args.set)
        + "; "
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, RLIMIT_NOFILE {args.nofile}"
    )
    return config + "\n" + "\n".join(body)


def engineText(args: argparse.Namespace) -> str:
    workers = getattr(args, "current_workers", 0)
    if not workers:
        return "memory engine"
    return f"redis engine at {args.redis}, {workers} worker{'s' if workers > 1 else ''}"


def countList(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"expected numbers of 1 or more, got {text!r}")
    return counts


def rateList(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected rates separated by commas, got {text!r}") from None


def configItem(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def parseArgs(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.fanout",
        description="Fan-out over http_stream: N subscribers of one channel, M publications, delivery latency and "
        "server memory. Prints a table.",
    )
    parser.add_argument("--connections", "-n", type=int, default=1000, help="subscriber streams (default 1000)")
    parser.add_argument("--messages", "-m", type=int, default=100, help="publications (default 100)")
    parser.add_argument("--rate", type=float, default=20.0,
                        help="publications per second, sent open-loop on schedule (default 20); 0 sends all of "
                        "them at once (a burst: peak deliveries/s, latency is then mostly queueing)")
    parser.add_argument("--concurrency", type=int, default=50, help="stream handshakes in flight (default 50)")
    parser.add_argument("--emulation-pool", type=int, default=16,
                        help="keep-alive connections carrying the subscribe requests (default 16)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds allowed for each phase (default 60)")
    parser.add_argument("--profile", metavar="FILE",
                        help="record the server with py-spy during the publish phase (FILE.svg: flame graph; "
                        "FILE.txt: collapsed stacks); needs `pip install py-spy` in the venv")
    parser.add_argument("--json", metavar="FILE", help="also write the measurements as JSON")
    parser.add_argument("--transport", default="http_stream",
                        choices=["http_stream", "http_stream-protobuf", "sse", "websocket"],
                        help="how the subscribers (and the publisher) connect (default http_stream, JSON)")
    parser.add_argument("--size", type=int, default=0,
                        help="pad each publication's data to about this many bytes of JSON (default: no padding, "
                        "about 40 bytes)")
    parser.add_argument("--set", metavar="KEY=JSON", action="append", default=[], type=configItem,
                        help='override a server config key, e.g. --set client_queue_max_size=65536 '
                        '(repeatable; the value is JSON, a bare word is taken as a string)')
    parser.add_argument("--workers", type=countList, default=[],
                        help="run the server with the Redis engine and this many worker processes (twistd httpstream "
                        "--workers N); a list such as 1,2 runs each in turn on fresh servers and prints a "
                        "comparison (default: one process on the memory engine)")
    parser.add_argument("--rates", type=rateList, default=[],
                        help="several publish phases on the same subscribers, one per rate (e.g. 5,10,20,40); the "
                        "comparison names the highest rate held with p99 <= 100 ms")
    parser.add_argument("--redis", default="127.0.0.1:6379", help="redis_address with --workers (default "
                        "127.0.0.1:6379; each run uses a key prefix of its own)")
    parser.add_argument("--reader", default="python", choices=["python", "native"],
                        help="who reads the subscribers' deliveries during a publish phase: this process (default) "
                        "or bench/reader.c, built with the machine's C compiler, which needs a small part of a "
                        "core instead of most of one (bench/native.py; JSON transports only)")
    parser.add_argument("--reader-gather-ms", type=float, default=0.0,
                        help="with --reader native: pause this long after each poll so that each read brings more "
                        "deliveries (a read costs the machine about what the server's send does); latencies then "
                        "read up to (subscribers / 1024) pauses late (default 0)")
    args = parser.parse_args(argv)
    if args.reader == "native" and args.transport == "http_stream-protobuf":
        parser.error("--reader native finds JSON publications; it cannot read http_stream-protobuf")
    if args.connections < 1 or args.messages < 1 or args.concurrency < 1 or args.emulation_pool < 1:
        parser.error("--connections, --messages, --concurrency and --emulation-pool must be at least 1")
    return args


def startServer(args: argparse.Namespace, directory: Path, workers: int) -> ServerProcess:
    """The server of one run: as before, or on Redis with C{workers} processes (once every worker accepts)."""
    config = serverConfig(args)
    if workers:
        config.update({
            "engine": "redis", "redis_address": args.redis, "workers": workers,
            "redis_prefix": f"bench-fanout-{os.getpid()}-{time.monotonic_ns()}",
        })
    try:
        server = ServerProcess(directory, config, name=f"bench-{workers}")
    except RuntimeError as e:
        raise BenchError(str(e)) from None
    if workers > 1:
        # Each worker logs its own listening line; the supervisor's comes once all of them accept.
        deadline = time.monotonic() + 30
        while f"{workers} workers listening on" not in server.output:
            if time.monotonic() > deadline or not server.alive():
                server.stop()
                raise BenchError(f"the workers did not all start:\n{server.output[-4000:]}")
            time.sleep(0.05)
    return server


async def runPhases(args: argparse.Namespace, server: ServerProcess, rates: list[float]) -> list[dict[str, Any]]:
    """Connect and subscribe once, then one publish phase per rate."""
    from bench.loadmodes import MODES

    subscribers = Subscribers(args, server, MODES[args.transport])
    phases = []
    try:
        connected = await subscribers.connect()
        for rate in rates:
            phases.append({**connected, **await subscribers.publish(rate, args.messages, args.profile)})
    finally:
        subscribers.close()
    return phases


def comparison(records: list[dict[str, Any]]) -> str:
    """One row per (workers, rate), and per worker count the highest rate held with p99 <= 100 ms."""
    lines = [
        "| workers | subscribers per worker | pub/s | deliveries/s | p50 / p99 ms | server CPU % | load generator CPU % "
        "| other CPU (cores) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    held: dict[int, float] = {}
    for r in records:
        lines.append(
            f"| {r['workers']} | {'/'.join(map(str, r['subscribers_per_node']))} | "
            f"{'burst' if r['rate'] <= 0 else format(r['rate'], 'g')} | {r['deliveries_per_s']:.0f} | "
            f"{r['latency_p50_ms']:.1f} / {r['latency_p99_ms']:.1f} | {r['server_cpu_pct']:.0f} | "
            f"{r['loadgen_cpu_pct']:.0f} | {r['other_busy_cpus']:.2f} |"
        )
        if r["rate"] > 0 and r["latency_p99_ms"] <= 100 and r["received"] == r["expected"]:
            held[r["workers"]] = max(held.get(r["workers"], 0.0), r["rate"])
    for workers in sorted({r["workers"] for r in records}):
        lines.append(f"highest rate held with p99 <= 100 ms, {workers} worker(s): "
                     + (f"{held[workers]:g}/s" if workers in held else "none of the rates run"))
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    args = parseArgs(argv)
    needed = args.connections + args.emulation_pool + 64
    records: list[dict[str, Any]] = []
    rates = args.rates or [args.rate]
    try:
        # Both ends of every stream live on this machine: the server needs one descriptor per stream as well.
        soft, _ = raiseFileLimit(needed)
        args.nofile = soft
        for workers in args.workers or [0]:
            args.current_workers = workers
            with tempfile.TemporaryDirectory(prefix="httpstream-bench-") as directory:
                server = startServer(args, Path(directory), workers)
                try:
                    phases = asyncio.run(runPhases(args, server, rates))
                except BaseException:
                    if not server.alive():
                        sys.stderr.write(f"server exited:\n{server.output[-4000:]}\n")
                    raise
                finally:
                    server.stop()
            for out in phases:
                out["workers"] = workers
                print(table(out, args))
                records.append(out)
    except BenchError as e:
        sys.stderr.write(f"bench.fanout: {e}\n")
        return 1
    if len(records) > 1:
        print(comparison(records))
    if any(out["other_busy_cpus"] > 0.25 or out["machine_steal_pct"] > 5 for out in records):
        worst = max(out["other_busy_cpus"] for out in records)
        print(
            f"note: other processes used up to {worst:.2f} cores during a publish phase: on this 2-core machine "
            "that competes with the server and the load generator, so latency is inflated; rerun on a quiet "
            "machine to compare numbers."
        )
    if args.json:
        Path(args.json).write_text(json.dumps(records[0] if len(records) == 1 else records, indent=2) + "\n")
    problems: list[str] = []
    status = 0
    for out in records:
        problems = list(out["publish_problems"])
        if out["received"] < out["expected"]:
            problems.append(
                f"{out['expected'] - out['received']} of {out['expected']} deliveries missing "
                f"({out['subscribers_short']} subscribers short)"
            )
        status |= exitStatus("bench.fanout", out, problems)
    return status


def exitStatus(bench: str, out: dict[str, Any], problems: list[str]) -> int:
    """
    Add the streams' own problems (ended early, disconnect pushes) to a run's C{problems}; say them all on
    stderr and return 1 when there are any (a run whose numbers are not to be trusted), else 0.
    """
    if out["streams_ended_early"]:
        problems.append(
            f"{sum(out['streams_ended_early'].values())} streams ended early: "
            + ", ".join(f"{n}x {r}" for r, n in out["streams_ended_early"].items())
        )
    if out["disconnects"]:
        problems.append("disconnect pushes: " + ", ".join(f"{n}x {r}" for r, n in out["disconnects"].items()))
    if problems:
        sys.stderr.write(f"{bench}: FAILED: " + "; ".join(problems) + "\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
