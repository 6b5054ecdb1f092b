"""
Idle connections: memory per connection and the CPU of keeping them (pings), per transport, against httpstream
(one or more checkouts) and the bare twisted.web baseline.

    .venv/bin/python -m bench.idle [--connections 1000,5000,10000,20000] [--transports http_stream,sse,websocket]
        [--tree main=/work/main] [--baseline-tree PATH] [--ping-interval 5] [--window 10]

For each server and transport one server process is started and N connections are opened from this process (raw
asyncio sockets: a connect command each, the connect reply awaited, then nothing but reading), ramping through
the points. At each point it prints the server's RSS per connection ((VmRSS now - VmRSS before the first
connection) / N) and its CPU over a C{--window} of idling, pings included. Pings go every C{--ping-interval}
seconds (25 in production: the CPU column is also shown scaled to 25 s, which assumes the idle cost is the pings');
C{pong_timeout} is -1, so the load generator never answers (a pong over http_stream or SSE is an /emulation
request, measured by bench.emulation). The baseline has no pings at all: its CPU is the floor of an idle reactor.

The open-files limit caps a point: the server needs one descriptor per connection and cannot raise its hard
limit, so a point above it runs with as many connections as fit (said in the table).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional
from urllib.parse import quote

from bench.fanout import cpuSeconds, machineCpu, ownCpuSeconds, rssKiB
from tests.serverprocess import ListeningProcess, ServerProcess, twistdCommand

HOST = "127.0.0.1"
CONNECT = b'{"id":1,"connect":{}}'
# Descriptors the server keeps besides connections (listening socket, log, pipes, epoll, ...).
RESERVED_FDS = 100


def serverConfig(pingInterval: float) -> dict[str, Any]:
    return {
        "http_stream": True,
        "sse": True,
        "log_level": "error",
        "ping_interval": f"{pingInterval}s",
        "pong_timeout": -1,
        "client_stale_close_delay": "60s",
    }


class IdleConnection(asyncio.Protocol):
    """One connection that sends its connect command, waits for the reply, then only reads (and drops) pings."""

    def __init__(self, request: bytes, frame: bytes = b"") -> None:
        self._request = request
        self._frame = frame  # a WebSocket's connect, sent after the handshake
        self._seen = b""
        self.connected: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: Optional[asyncio.Transport] = None
        self.received = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        if self.connected.done():
            return
        self._seen += data
        if self._frame and b"\r\n\r\n" in self._seen:
            self.transport.write(self._frame)  # type: ignore[union-attr]
            self._seen, self._frame = self._seen.split(b"\r\n\r\n", 1)[1], b""
        if b'"connect"' in self._seen:
            self._seen = b""
            self.connected.set_result(None)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        if not self.connected.done():
            self.connected.set_exception(ConnectionError(f"closed before the connect reply: {self._seen[:200]!r}"))


def request(transport: str, port: int) -> tuple[bytes, bytes]:
    """The bytes that open one connection of C{transport} (and a WebSocket's connect frame)."""
    host = f"Host: {HOST}:{port}\r\n".encode()
    if transport == "http_stream":
        return (b"POST /connection/http_stream HTTP/1.1\r\n" + host + b"Content-Type: application/json\r\n"
                + f"Content-Length: {len(CONNECT)}\r\n\r\n".encode() + CONNECT, b"")
    if transport == "sse":
        return (f"GET /connection/sse?cf_connect={quote(CONNECT)} HTTP/1.1\r\n".encode() + host
                + b"Accept: text/event-stream\r\n\r\n", b"")
    if transport == "websocket":
        handshake = (b"GET /connection/websocket HTTP/1.1\r\n" + host + b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        mask = b"\x01\x02\x03\x04"
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(CONNECT))
        return handshake, bytes([0x81, 0x80 | len(CONNECT)]) + mask + payload
    raise ValueError(transport)


async def openMany(port: int, transport: str, count: int, concurrency: int,
                   into: list[IdleConnection]) -> None:
    loop = asyncio.get_running_loop()
    data, frame = request(transport, port)
    gate = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with gate:
            _, connection = await loop.create_connection(lambda: IdleConnection(data, frame), HOST, port)
            await asyncio.wait_for(connection.connected, 30)
            into.append(connection)

    await asyncio.gather(*(one() for _ in range(count)))


async def ramp(server: ListeningProcess, transport: str, points: list[int], args: argparse.Namespace,
               label: str) -> list[dict[str, Any]]:
    pid = server.pid
    await asyncio.sleep(1)
    before = rssKiB(pid)
    connections: list[IdleConnection] = []
    rows = []
    for point in points:
        await openMany(server.port, transport, point - len(connections), args.concurrency, connections)
        await asyncio.sleep(args.settle)
        rss = rssKiB(pid)
        cpu0, own0, machine0, wall0 = cpuSeconds(pid), ownCpuSeconds(), machineCpu(), time.monotonic()
        await asyncio.sleep(args.window)
        cpu1, own1, machine1, wall1 = cpuSeconds(pid), ownCpuSeconds(), machineCpu(), time.monotonic()
        if not server.alive():
            raise RuntimeError(f"{label} died:\n{server.output[-2000:]}")
        wall = wall1 - wall0
        ticks = (machine1[2] - machine0[2]) or 1
        busyCores = (machine1[0] - machine0[0]) / ticks * (os.cpu_count() or 1)
        serverCores = (cpu1 - cpu0) / wall
        row = {
            "server": label, "transport": transport, "connections": len(connections),
            "rss_before_kib": before, "rss_kib": rss,
            "kib_per_connection": (rss - before) / len(connections),
            "server_cpu_percent": 100 * serverCores,
            "server_cpu_percent_at_25s": 100 * serverCores * args.ping_interval / 25,
            "other_cpu_cores": max(0.0, busyCores - serverCores - (own1 - own0) / wall),
        }
        rows.append(row)
        print(f"  {label:<14} {transport:<11} {row['connections']:>6}  {row['kib_per_connection']:6.1f} KiB"
              f"  cpu {row['server_cpu_percent']:5.1f} %  (@25 s {row['server_cpu_percent_at_25s']:4.1f} %)"
              f"  others {row['other_cpu_cores']:.2f} cores", flush=True)
    for connection in connections:
        if connection.transport is not None:
            connection.transport.abort()
    return rows


def servers(args: argparse.Namespace, directory: Path) -> list[tuple[str, Any]]:
    """(label, a function starting that server) for every server to measure, in run order."""
    here = Path(__file__).resolve().parent.parent
    found: list[tuple[str, Any]] = []
    for name, tree in [("httpstream", here)] + [(n, Path(t)) for n, t in args.tree]:
        twistd = tree / ".venv" / "bin" / "twistd"
        command = ([str(twistd)] if twistd.exists() else twistdCommand()) + ["-n", "--pidfile=", "httpstream", "-c"]
        found.append((name, lambda command=command, name=name: ServerProcess(
            directory, serverConfig(args.ping_interval), name=name.replace("/", "_"), command=command)))
    baselineTree = Path(args.baseline_tree) if args.baseline_tree else here
    if (baselineTree / "bench" / "baseline.py").exists():
        def baseline() -> ListeningProcess:
            process = ListeningProcess([sys.executable, "-m", "bench.baseline", "--port", "0"], cwd=baselineTree,
                                       env={**os.environ, "PYTHONPATH": str(baselineTree)})
            process.waitForPort()
            return process
        found.append(("baseline", baseline))
    elif not args.no_baseline:
        print(f"(no bench/baseline.py in {baselineTree}: the baseline is not measured; see --baseline-tree)")
    return found


def parseArgs(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.idle", description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", default="1000,5000,10000,20000",
                        help="the points, comma-separated (connections are added, not reopened)")
    parser.add_argument("--transports", default="http_stream,sse,websocket")
    parser.add_argument("--tree", action="append", default=[], type=lambda t: tuple(t.split("=", 1)),
                        metavar="NAME=PATH", help="also measure the httpstream of another checkout (its .venv)")
    parser.add_argument("--baseline-tree", default="", help="a checkout holding bench/baseline.py (default: this)")
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--ping-interval", type=float, default=5.0, help="seconds (production: 25)")
    parser.add_argument("--window", type=float, default=10.0, help="seconds of idling measured at each point")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds after opening before measuring")
    parser.add_argument("--concurrency", type=int, default=200, help="handshakes in flight")
    parser.add_argument("--json", default="", help="write every number to this file")
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    args = parseArgs(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the servers started below inherit it
    cap = (hard if hard != resource.RLIM_INFINITY else 1 << 20) - RESERVED_FDS
    wanted = [int(p) for p in args.connections.split(",")]
    points = sorted({min(p, cap) for p in wanted})
    if points[-1] < max(wanted):
        print(f"(open-files hard limit {hard}: the largest point runs with {points[-1]} connections)")
    print(f"pings every {args.ping_interval:g} s, {args.window:g} s windows; KiB = (VmRSS - VmRSS before) / N")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as directory:
        chosen = servers(args, Path(directory))
        if args.no_baseline:
            chosen = [(n, s) for n, s in chosen if n != "baseline"]
        for transport in args.transports.split(","):
            for label, start in chosen:
                server = start()
                try:
                    rows += asyncio.run(ramp(server, transport, points, args, label))
                finally:
                    server.stop()
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
