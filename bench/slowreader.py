"""
Slow-reader benchmark: healthy subscribers on one channel, then one subscriber that stops reading.

    .venv/bin/python -m bench.slowreader [--transport http_stream] [--healthy 20] [--rate 200] [--size 1000]

Against a real server process (``twistd -n httpstream``): N healthy subscribers (raw sockets on one transport,
subscribed server-side by their connection token) read publications of ~SIZE bytes published through the server
API at RATE per second. Phase "without": 1000 publications, no slow reader. Then a subscriber with a 4 KiB
receive buffer that it never reads joins the channel; phase "with" lasts until the server logs its 3008 line;
phase "after": 600 more. For each phase the healthy subscribers' delivery latency (receive time minus the send
time stamped into the data) is printed, and the server's RSS before the slow reader joined, at its peak, and
after it was cut. tests/test_slow_peers.py runs the same measurement and asserts on what it found.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from tests.peers import (
    API,
    API_KEY,
    CHANNEL,
    TRANSPORTS,
    Publisher,
    ReaderLoop,
    RSSSampler,
    Subscriber,
    percentile,
    rss,
    waitFor,
)
from tests.serverprocess import ServerProcess

SLOW_USER = "slowpoke"


def serverSettings(queueMax: int = 262144) -> dict[str, Any]:
    """What the server under test needs: the API, every transport, no pings, info-level logs."""
    return {
        "sse": True,
        "client_queue_max_size": queueMax,
        "ping_interval": -1,
        "pong_timeout": -1,
        "api_key": API_KEY,
        "log_level": "info",
    }


@dataclass
class SlowReaderRun:
    """What one run measured and found."""

    transport: str
    healthy: int
    rate: float
    queueMax: int
    published: int = 0
    phases: dict[str, list[float]] = field(default_factory=dict)  # phase -> healthy latencies (s)
    cutAfter: float = 0.0  # seconds from the slow reader joining to its 3008 line
    cutPublications: int = 0
    slowClient: str = ""
    slowLines: list[str] = field(default_factory=list)  # the server's log lines naming it with 3008
    slowEnded: bool = False  # its connection was ended by the server
    missing: dict[str, int] = field(default_factory=dict)  # healthy client -> publications it did not get
    disordered: list[str] = field(default_factory=list)  # healthy clients that got them out of order
    rssBefore: int = 0  # KiB
    rssPeak: int = 0
    rssAfter: int = 0

    def report(self) -> str:
        def p(phase: str, q: float) -> str:
            return f"{percentile(self.phases.get(phase, []), q) * 1000:.1f}"

        t = f"[{self.transport}]"
        return "\n".join([
            f"{t} {self.published} publications at {self.rate:g}/s to {self.healthy} healthy subscribers; slow "
            f"reader cut after {self.cutAfter:.1f}s ({self.cutPublications} publications), "
            f"client_queue_max_size={self.queueMax}",
            f"{t} healthy latency p50/p99 ms: without slow reader {p('without', 50)}/{p('without', 99)}; with it "
            f"{p('with', 50)}/{p('with', 99)}; after the cut {p('after', 50)}/{p('after', 99)}",
            f"{t} server RSS before {self.rssBefore / 1024:.1f} MiB, peak {self.rssPeak / 1024:.1f} MiB, after "
            f"{self.rssAfter / 1024:.1f} MiB ({(self.rssAfter - self.rssBefore) / self.rssBefore * 100:+.1f} %)",
        ])


def measure(server: ServerProcess, transport: str, healthy: int = 20, rate: float = 200.0, size: int = 1000,
            queueMax: int = 262144, timeout: float = 90.0) -> SlowReaderRun:
    """One run against C{server} (started with L{serverSettings}(C{queueMax}))."""
    run = SlowReaderRun(transport, healthy, rate, queueMax)
    api = API(server.port, size=size)
    readers = [Subscriber(transport, server.port, f"healthy{i}", [CHANNEL]) for i in range(healthy)]
    loop = ReaderLoop(readers)
    slow: Optional[Subscriber] = None

    def slowLines() -> list[str]:
        return [line for line in server.output.splitlines() if slow is not None and slow.clientID in line
                and "3008" in line]

    try:
        publisher = Publisher(api, rate)
        publisher.publish(count=50)  # warm-up
        waitFor(lambda: all(len(r.received) == 50 for r in readers), timeout)
        without = publisher.publish(count=1000)
        # Measured once the server has carried traffic for a while: its first thousand publications grow the RSS
        # by ~10 % (allocator arenas, caches) with or without a slow reader.
        run.rssBefore = rss(server.pid)
        sampler = RSSSampler(server.pid)
        slow = Subscriber(transport, server.port, SLOW_USER, [CHANNEL], receiveBuffer=4096)
        run.slowClient = slow.clientID
        started = time.monotonic()
        withSlow = publisher.publish(until=lambda: bool(slowLines()), limit=timeout)
        run.cutAfter = time.monotonic() - started
        run.cutPublications = len(withSlow)
        after = publisher.publish(count=600)
        run.published = total = publisher.sent
        waitFor(lambda: all(len(r.received) == total for r in readers), timeout)
        run.rssPeak = sampler.stop()
        waitFor(lambda: api.numClients() == healthy, timeout)
        time.sleep(2)
        run.rssAfter = rss(server.pid)
        run.slowLines = slowLines()
        # A peer that reads nothing is not waited for: its connection ends once it reads what the kernel holds.
        slow.drain(30)
        run.slowEnded = slow.ended
        for reader in readers:
            if len(reader.received) != total:
                run.missing[reader.clientID] = total - len(reader.received)
            if reader.order != sorted(reader.order) or len(set(reader.order)) != len(reader.order):
                run.disordered.append(reader.clientID)
        for name, numbers in (("without", without), ("with", withSlow), ("after", after)):
            run.phases[name] = [r.received[n] for r in readers for n in numbers if n in r.received]
        return run
    finally:
        loop.stop()
        for reader in readers + ([slow] if slow else []):
            reader.close()
        api.close()


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.slowreader", description=__doc__.split("\n\n")[0])
    parser.add_argument("--transport", choices=TRANSPORTS, action="append",
                        help="transport of every subscriber (repeatable; default all three)")
    parser.add_argument("--healthy", type=int, default=20, help="healthy subscribers (default 20)")
    parser.add_argument("--rate", type=float, default=200.0, help="publications per second (default 200)")
    parser.add_argument("--size", type=int, default=1000, help="bytes of padding per publication (default 1000)")
    parser.add_argument("--queue", type=int, default=262144, help="client_queue_max_size (default 262144)")
    args = parser.parse_args(argv)
    failed = False
    for transport in args.transport or TRANSPORTS:
        with tempfile.TemporaryDirectory() as directory, \
                ServerProcess(Path(directory), serverSettings(args.queue)) as server:
            run = measure(server, transport, args.healthy, args.rate, args.size, args.queue)
        print(run.report(), flush=True)
        if not run.slowLines or not run.slowEnded or run.missing or run.disordered:
            failed = True
            print(f"[{transport}] FAILED: 3008 lines {run.slowLines}, slow connection ended {run.slowEnded}, "
                  f"missing {run.missing}, out of order {run.disordered}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
