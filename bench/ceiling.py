"""
One command, one table: the same fan-out load against httpstream (http_stream JSON and Protobuf, SSE, WebSocket),
the bare twisted.web baseline of each transport (bench/baseline.py), the peers (bench/peers/: the ``websockets``
library's broadcast, aiohttp's StreamResponse) and the raw send floor (bench/floor.py), in interleaved rounds.

    .venv/bin/python -m bench.ceiling                     # 1000 subscribers, 100 publications at 20 and 50/s, 3 rounds
    .venv/bin/python -m bench.ceiling --reactor asyncio-uvloop --json out.json
    .venv/bin/python -m bench.ceiling --targets "httpstream http_stream,twisted.web http_stream" --rounds 5
    .venv/bin/python -m bench.ceiling --fanout-10k        # adds the fan-out to the last of 10,000 subscribers

Each round measures the floor, then runs every target in turn (the order rotates from round to round): a fresh
server process, N subscribers connected and subscribed, then one publish phase per rate on the same subscribers.
The peers need the ``bench`` extra (``pip install -e '.[bench]'``). See bench/README.md for the columns.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from bench import reactors
from bench.fanout import BenchError, Subscribers, configItem, raiseFileLimit, serverConfig
from bench.floor import publicationChunk, sendFloor
from bench.loadmodes import MODES
from bench.summary import summarize, table
from tests.serverprocess import ListeningProcess, ServerProcess

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Target:
    """One server speaking one transport. C{name} is what the table shows (and what --targets selects)."""

    system: str  # httpstream, twisted.web, websockets, aiohttp; httpstream@LABEL (--checkout)
    transport: str  # a key of bench.loadmodes.MODES
    reactor: str = "epoll"  # httpstream's only
    checkout: str = ""  # httpstream@LABEL's: the other checkout's directory

    @property
    def name(self) -> str:
        suffix = f" [{self.reactor}]" if self.system.startswith("httpstream") and self.reactor != "epoll" else ""
        return f"{self.system} {self.transport}{suffix}"


TRANSPORTS = ("http_stream", "http_stream-protobuf", "sse", "websocket")
BASELINES = [Target("twisted.web", t) for t in ("http_stream", "sse", "websocket")]
PEERS = [Target("websockets", "websocket"), Target("aiohttp", "sse")]


def allTargets(reactorNames: list[str], checkouts: Optional[list[str]] = None) -> list[Target]:
    """
    httpstream on every transport (under each reactor asked for), the same from each other checkout (its own
    venv's twistd), the baselines, the peers.
    """
    targets = [Target("httpstream", t) for t in TRANSPORTS]
    for checkout in checkouts or ():
        label = Path(checkout).resolve().name
        targets += [Target(f"httpstream@{label}", t, checkout=checkout) for t in TRANSPORTS]
    for name in reactorNames:
        if name != "epoll":
            targets += [Target("httpstream", t, name) for t in TRANSPORTS]
    return targets + BASELINES + PEERS


def start(target: Target, args: argparse.Namespace, directory: Path) -> ListeningProcess:
    """A fresh server for C{target}, serving once this returns."""
    if target.checkout:
        twistd = Path(target.checkout) / ".venv" / "bin" / "twistd"
        if not twistd.exists():
            raise BenchError(f"--checkout {target.checkout}: no {twistd} (make .venv/.installed there)")
        command = [str(twistd), "-n", "--pidfile=", "httpstream", "-c"]
        return ServerProcess(directory, serverConfig(args), name="ceiling", command=command)
    if target.system == "httpstream":
        command = None
        if target.reactor != "epoll":
            command = reactors.command(target.reactor) + ["-n", "--pidfile=", "httpstream", "-c"]
        return ServerProcess(directory, serverConfig(args), name="ceiling", command=command)
    module = {
        "twisted.web": "bench.baseline",
        "websockets": "bench.peers.websockets_broadcast",
        "aiohttp": "bench.peers.aiohttp_sse",
    }[target.system]
    process = ListeningProcess([sys.executable, "-m", module], cwd=ROOT)
    try:
        process.waitForPort()
    except RuntimeError as e:
        raise BenchError(str(e)) from None
    return process


async def phases(args: argparse.Namespace, server: ListeningProcess, transport: str) -> list[dict[str, Any]]:
    subscribers = Subscribers(args, server, MODES[transport])  # type: ignore[arg-type]
    try:
        connected = await subscribers.connect()
        return [{**connected, **await subscribers.publish(rate, args.messages)} for rate in args.rates]
    finally:
        subscribers.close()


def record(target: Target, round: int, out: dict[str, Any]) -> dict[str, Any]:
    """The numbers of one publish phase that the table uses (the full phase is kept under C{run})."""
    out = {k: v for k, v in out.items() if k != "fanout_ms_by_message"}
    problems = list(out.get("publish_problems", []))
    if out.get("streams_ended_early"):
        problems.append(f"streams ended early: {out['streams_ended_early']}")
    return {
        "target": target.name,
        "system": target.system,
        "transport": target.transport,
        "reactor": target.reactor,
        "round": round,
        "rate": out["rate"],
        "cpu_us": out["server_cpu_us_per_delivery"],
        "p50_ms": out["latency_p50_ms"],
        "p99_ms": out["latency_p99_ms"],
        "fanout_p50_ms": out["fanout_p50_ms"],
        "rss_kib": out["rss_per_connection_kib"],
        "other_cpus": out["other_busy_cpus"],
        "received": out["received"],
        "expected": out["expected"],
        "error": "; ".join(problems),
        "run": out,
    }


def runTarget(target: Target, args: argparse.Namespace, round: int) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="httpstream-ceiling-") as directory:
        try:
            server = start(target, args, Path(directory))
        except (BenchError, RuntimeError) as e:
            return [failed(target, round, rate, f"server did not start: {e}") for rate in args.rates]
        try:
            outs = asyncio.run(phases(args, server, target.transport))
        except BenchError as e:
            return [failed(target, round, rate, str(e)[:300]) for rate in args.rates]
        finally:
            server.stop()
    return [record(target, round, out) for out in outs]


def failed(target: Target, round: int, rate: float, error: str) -> dict[str, Any]:
    return {"target": target.name, "system": target.system, "transport": target.transport, "round": round,
            "rate": rate, "error": error, "received": 0, "expected": 0}


def parseArgs(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ceiling",
        description="The same fan-out against httpstream, a bare twisted.web server, the peers and the raw send "
        "floor, in interleaved rounds: one table of CPU per delivery, latency and ratios.",
    )
    parser.add_argument("--connections", "-n", type=int, default=1000, help="subscribers (default 1000)")
    parser.add_argument("--messages", "-m", type=int, default=100,
                        help="publications per rate and round (default 100)")
    parser.add_argument("--rates", default="20,50", help="publish rates, comma-separated (default 20,50)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--size", type=int, default=100, help="publication data, bytes of JSON (default 100)")
    parser.add_argument("--targets", default="",
                        help="comma-separated names to run (default all), e.g. 'httpstream sse,aiohttp sse'")
    parser.add_argument("--reactor", default="epoll",
                        help=f"httpstream's reactors, comma-separated, from {', '.join(reactors.REACTORS)}; "
                        "epoll (the default) always runs, each other one adds httpstream's rows under it")
    parser.add_argument("--checkout", metavar="DIR", action="append", default=[],
                        help="also run httpstream from another checkout (its .venv's twistd), as targets named "
                        "'httpstream@DIRNAME TRANSPORT': before and after a change in the same rounds (repeatable)")
    parser.add_argument("--fanout-10k", action="store_true",
                        help="also run the fan-out to the last of --fanout-connections subscribers (slow)")
    parser.add_argument("--fanout-connections", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=50, help="stream handshakes in flight (default 50)")
    parser.add_argument("--emulation-pool", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds allowed for each phase (default 60)")
    parser.add_argument("--set", metavar="KEY=JSON", action="append", default=[], type=configItem,
                        help="override an httpstream config key (repeatable)")
    parser.add_argument("--json", metavar="FILE", help="also write every number as JSON")
    args = parser.parse_args(argv)
    args.rates = [float(r) for r in args.rates.split(",") if r]
    reactorNames = [r for r in args.reactor.split(",") if r]
    for name in reactorNames:
        if name not in reactors.REACTORS:
            parser.error(f"--reactor {name!r}: one of {', '.join(reactors.REACTORS)}")
    targets = allTargets(reactorNames, args.checkout)
    if args.targets:
        wanted = [t.strip() for t in args.targets.split(",") if t.strip()]
        unknown = set(wanted) - {t.name for t in targets}
        if unknown:
            parser.error(f"--targets: unknown {sorted(unknown)}; known: {[t.name for t in targets]}")
        targets = [t for t in targets if t.name in wanted]
    args.targetList = targets
    args.profile = None
    if args.connections < 1 or args.messages < 2 or args.rounds < 1 or not args.rates:
        parser.error("--connections ≥ 1, --messages ≥ 2, --rounds ≥ 1 and at least one rate")
    return args


def fanout10k(args: argparse.Namespace) -> list[dict[str, Any]]:
    """httpstream and the baseline over http_stream with --fanout-connections subscribers, 20 publications at 2/s."""
    big = argparse.Namespace(**{**vars(args), "connections": args.fanout_connections, "messages": 20,
                                "rates": [2.0], "timeout": max(args.timeout, 120.0)})
    rows = []
    wanted = [Target("httpstream", "http_stream")]
    wanted += [t for t in args.targetList if t.checkout and t.transport == "http_stream"]
    for target in wanted + [Target("twisted.web", "http_stream")]:
        for rec in runTarget(target, big, 0):
            rows.append(rec)
            said = rec["error"] or (
                f"fan-out to last p50 {rec['fanout_p50_ms']:.0f} ms, latency p50/p99 {rec['p50_ms']:.0f}/"
                f"{rec['p99_ms']:.0f} ms, {rec['cpu_us']:.1f} µs CPU/delivery"
            )
            print(f"  {target.name}, {big.connections} subscribers: {said}", flush=True)
    return rows


def main(argv: Optional[list[str]] = None) -> int:
    args = parseArgs(argv)
    biggest = max(args.connections, args.fanout_connections if args.fanout_10k else 0)
    try:
        raiseFileLimit(max(biggest, 2 * args.connections) + args.emulation_pool + 64)
    except BenchError as e:
        sys.stderr.write(f"bench.ceiling: {e}\n")
        return 1
    payload = publicationChunk(args.size)
    records: list[dict[str, Any]] = []
    floors: dict[int, float] = {}
    floorRuns = []
    began = time.monotonic()
    targets: list[Target] = args.targetList
    for round in range(args.rounds):
        floor = sendFloor(args.connections, args.messages, payload)
        floors[round] = floor["us_per_send"]
        floorRuns.append(floor)
        print(f"round {round + 1}/{args.rounds}: raw send floor {floor['us_per_send']:.2f} µs/send", flush=True)
        # Rotate the order so that no target always runs first (or right after the same neighbour).
        shift = round % len(targets)
        for target in targets[shift:] + targets[:shift]:
            results = runTarget(target, args, round)
            records += results
            print(f"  {target.name}: " + ", ".join(
                f"{r['rate']:g}/s " + (f"FAILED {r['error']}" if r.get("error") else
                                      f"{r['cpu_us']:.1f} µs/delivery p50 {r['p50_ms']:.0f} ms")
                for r in results), flush=True)
    big = fanout10k(args) if args.fanout_10k else []
    rows = summarize(records, floors)
    print()
    print(
        f"bench.ceiling: {args.connections} subscribers, {args.messages} publications of ~{args.size} bytes per "
        f"rate, rates {'/'.join(f'{r:g}' for r in args.rates)} pub/s, {args.rounds} rounds, "
        f"{time.monotonic() - began:.0f} s; raw send floor {sorted(floors.values())[len(floors) // 2]:.2f} µs/send "
        f"(rounds: {', '.join(f'{v:.2f}' for v in floors.values())})"
    )
    print(table(rows))
    if big:
        print()
        print("| fan-out to the last subscriber | subscribers | p50 ms | max ms | latency p50 / p99 ms |")
        print("|---|---|---|---|---|")
        for rec in big:
            if rec.get("error"):
                print(f"| {rec['target']} | {args.fanout_connections} | failed: {rec['error'][:60]} | | |")
            else:
                run = rec["run"]
                print(f"| {rec['target']} | {args.fanout_connections} | {rec['fanout_p50_ms']:.0f} | "
                      f"{run['fanout_max_ms']:.0f} | {rec['p50_ms']:.0f} / {rec['p99_ms']:.0f} |")
    busy = [r["other_cpus_max"] for r in rows if r["other_cpus_max"] is not None]
    if busy and max(busy) > 0.25:
        print(f"note: other processes used up to {max(busy):.2f} cores during publish phases (column 'other CPU'): "
              "the machine was shared, read the ratios, not the absolute numbers.")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"args": {k: v for k, v in vars(args).items() if k != "targetList"}, "floors": floorRuns,
             "records": records, "summary": rows, "fanout_10k": big}, indent=2, default=str) + "\n")
    return 1 if any(r["failed"] for r in rows) or any(r.get("error") for r in big) else 0


if __name__ == "__main__":
    sys.exit(main())
