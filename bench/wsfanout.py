"""
WebSocket fan-out with and without permessage-deflate: N WebSocket subscribers on one channel, M publications of
about S bytes, once with C{websocket_compression} off and once on (each a fresh server), reporting the server's
CPU per delivery and the bytes on the wire per delivery.

    .venv/bin/python -m bench.wsfanout [--connections 1000] [--messages 100] [--size 1000] [--rate 50]

Every subscriber offers permessage-deflate (as browsers do), so the two cases differ only in the server's key.
The load generator is raw asyncio sockets (bench.fanout's style); it inflates what it receives and counts the
publications. Other keys: C{--set KEY=JSON} (applied to both cases). See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import random
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any, Optional

import orjson

from bench.fanout import BenchError, configItem, cpuSeconds, machineCpu, raiseFileLimit, serverConfig
from bench.loadmodes import maskedFrame, nextFrame
from tests.serverprocess import ServerProcess

HOST = "127.0.0.1"
TAIL = b"\x00\x00\xff\xff"


class Subscriber(asyncio.Protocol):
    """One WebSocket connection: handshake offering permessage-deflate, then frames in, publications counted."""

    def __init__(self, port: int, counts: dict[str, int], done: asyncio.Event, expected: int) -> None:
        self._port = port
        self._counts = counts
        self._done = done
        self._expected = expected
        self._buffer = bytearray()
        self._upgraded = False
        self._inflater = zlib.decompressobj(-15)  # no context takeover: messages stand alone, one inflater will do
        self.upgraded = asyncio.get_running_loop().create_future()
        self.subscribed = asyncio.get_running_loop().create_future()
        self.transport: Optional[asyncio.Transport] = None
        self.extensions = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        key = base64.b64encode(os.urandom(16)).decode()
        self.transport.write(  # type: ignore[union-attr]
            f"GET /connection/websocket HTTP/1.1\r\nHost: {HOST}:{self._port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n".encode()
        )

    def send(self, payload: bytes) -> None:
        assert self.transport is not None
        self.transport.write(maskedFrame(payload))

    def data_received(self, data: bytes) -> None:
        self._counts["wire"] += len(data)
        buffer = self._buffer
        buffer += data
        pos = 0
        if not self._upgraded:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(buffer[:end]).decode("latin-1").lower()
            if " 101 " not in head.split("\r\n")[0]:
                self.upgraded.set_exception(BenchError(f"handshake answered {head.splitlines()[0]!r}"))
                return
            for line in head.split("\r\n"):
                if line.startswith("sec-websocket-extensions:"):
                    self.extensions = line.split(":", 1)[1].strip()
            self._upgraded = True
            self.upgraded.set_result(None)
            pos = end + 4
        while (found := nextFrame(buffer, pos)) is not None:
            first, payload, pos = found
            if first & 0x0F == 0x8:
                self._counts["closed"] += 1
                continue
            if first & 0x40:
                payload = self._inflater.decompress(payload + TAIL)
            self._message(payload)
        del buffer[:pos]

    def _message(self, payload: bytes) -> None:
        self._counts["messages"] += 1
        self._counts["payload"] += len(payload)
        for line in payload.split(b"\n"):
            if line.startswith(b'{"push"'):
                self._counts["received"] += 1
            elif not self.subscribed.done() and orjson.loads(line).get("id") == 2:
                self.subscribed.set_result(None)
        if self._counts["received"] >= self._expected:
            self._done.set()


async def runCase(args: argparse.Namespace, server: ServerProcess, compression: bool) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    counts = {"wire": 0, "payload": 0, "received": 0, "closed": 0, "messages": 0}
    done = asyncio.Event()
    expected = args.connections * args.messages
    gate = asyncio.Semaphore(50)
    subscribers: list[Subscriber] = []

    async def connect() -> None:
        async with gate:
            _, subscriber = await loop.create_connection(
                lambda: Subscriber(server.port, counts, done, expected), HOST, server.port
            )
            subscribers.append(subscriber)
            await asyncio.wait_for(subscriber.upgraded, args.timeout)
            subscriber.send(b'{"id":1,"connect":{}}\n{"id":2,"subscribe":{"channel":"bench"}}')
            await asyncio.wait_for(subscriber.subscribed, args.timeout)

    await asyncio.gather(*(connect() for _ in range(args.connections)))
    # The publisher: one more connection, not subscribed, publishing open-loop at --rate.
    _, publisher = await loop.create_connection(lambda: Subscriber(server.port, {**counts}, done, 1 << 60), HOST,
                                                server.port)
    await asyncio.wait_for(publisher.upgraded, args.timeout)
    publisher.send(b'{"id":1,"connect":{}}')
    await asyncio.sleep(0.5)
    # Rows of a feed, about 90 bytes each: typical JSON (repeated keys, varied values), the same in every run.
    rng = random.Random(7)
    words = ["price", "update", "market", "goal", "score", "match", "weather", "alert", "news", "rain", "team"]
    data = [{"id": rng.randrange(10**6), "user": f"user-{rng.randrange(10**4)}", "value": round(rng.random() * 1e3, 2),
             "text": " ".join(rng.choice(words) for _ in range(4))} for _ in range(max(1, args.size // 90))]
    counts.update(wire=0, payload=0, received=0, messages=0)
    cpuBefore, (busyBefore, _, totalBefore) = cpuSeconds(server.pid), machineCpu()
    start = time.monotonic()
    for i in range(args.messages):
        if args.rate:
            await asyncio.sleep(max(0.0, start + i / args.rate - time.monotonic()))
        command = {"id": 10 + i, "publish": {"channel": "bench", "data": {"n": i, "rows": data}}}
        publisher.send(orjson.dumps(command))
    try:
        await asyncio.wait_for(done.wait(), args.timeout)
    except asyncio.TimeoutError:
        raise BenchError(f"{expected - counts['received']} of {expected} deliveries missing") from None
    elapsed = time.monotonic() - start
    cpu = cpuSeconds(server.pid) - cpuBefore
    busyAfter, _, totalAfter = machineCpu()
    negotiated = sum(1 for s in subscribers if s.extensions.startswith("permessage-deflate"))
    for subscriber in subscribers + [publisher]:
        if subscriber.transport is not None:
            subscriber.transport.close()
    return {
        "case": "compressed" if compression else "plain",
        "negotiated": negotiated,
        "deliveries": counts["received"],
        "server_cpu_s": round(cpu, 3),
        "cpu_us_per_delivery": round(cpu * 1e6 / counts["received"], 2),
        "wire_bytes_per_delivery": round(counts["wire"] / counts["received"], 1),
        "payload_bytes_per_delivery": round(counts["payload"] / counts["received"], 1),
        # Above 1 when the server fell behind and flushed several publications in one WebSocket message.
        "deliveries_per_message": round(counts["received"] / counts["messages"], 2),
        "publish_phase_s": round(elapsed, 2),
        # Cores busy on the whole machine during the phase (server and load generator included): 2 cores here.
        "machine_busy_cores": round(2 * (busyAfter - busyBefore) / max(1, totalAfter - totalBefore), 2),
    }


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.wsfanout", description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", "-n", type=int, default=1000)
    parser.add_argument("--messages", "-m", type=int, default=100)
    parser.add_argument("--size", type=int, default=1000, help="publication data, about this many bytes of JSON")
    parser.add_argument("--rate", type=float, default=20.0, help="publications per second (0: all at once)")
    parser.add_argument("--level", type=int, default=1, help="websocket_compression_level (default 1)")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--set", metavar="KEY=JSON", action="append", default=[], type=configItem)
    args = parser.parse_args(argv)
    raiseFileLimit(args.connections + 64)
    rows = []
    try:
        for compression in (False, True):
            overrides = {**serverConfig(args), "websocket_compression": compression,
                         "websocket_compression_level": args.level}
            with tempfile.TemporaryDirectory(prefix="httpstream-bench-") as directory:
                with ServerProcess(Path(directory), overrides, name="wsbench") as server:
                    rows.append(asyncio.run(runCase(args, server, compression)))
    except BenchError as e:
        sys.stderr.write(f"bench.wsfanout: {e}\n")
        return 1
    keys = list(rows[0])
    widths = [max(len(k), *(len(str(r[k])) for r in rows)) for k in keys]
    print("| " + " | ".join(k.ljust(w) for k, w in zip(keys, widths)) + " |")
    for row in rows:
        print("| " + " | ".join(str(row[k]).rjust(w) for k, w in zip(keys, widths)) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
