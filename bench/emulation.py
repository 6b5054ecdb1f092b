"""
Emulation round trip within one node and across two: the cost of forwarding ``POST /emulation`` over Redis.

    .venv/bin/python -m bench.emulation [--connections 50] [--requests 2000] [--rate 200]

Two servers, A and B (``twistd -n httpstream``, engine "redis", one Redis prefix unique to the run), form a
cluster. N http_stream connections are opened on A. Then, for each case, M commands are sent to those sessions as
``POST /emulation`` requests:

- same node: the POST goes to A, which owns the sessions and runs the commands in-process;
- cross node: the POST goes to B, which forwards it to A over Redis (a request on A's node channel, A runs the
  commands, a reply back to B) and answers 204 once A has run them.

For each command the load generator times (a) the reply with its id arriving on the stream from A and (b) the
POST's own answer, both from the moment the POST was written. Same raw-asyncio client as bench.fanout; see
bench/README.md for how to read the table.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import socket
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from bench.fanout import (
    HOST,
    BenchError,
    EmulationConnection,
    Profiler,
    Results,
    StreamConnection,
    configItem,
    cpuSeconds,
    exitStatus,
    gatherAll,
    machineCpu,
    ownCpuSeconds,
    percentile,
    raiseFileLimit,
)
from tests.serverprocess import ServerProcess

API_KEY = "bench-emulation-api-key"
CHANNEL = "bench-emulation"
CASES = {"same": "same node", "cross": "cross node"}


# The servers


def serverConfig(args: argparse.Namespace, name: str, prefix: str) -> dict[str, Any]:
    """What A and B add to the test servers' base config (http_stream, anonymous connect/subscribe/publish)."""
    return {
        "name": name,
        "api_key": API_KEY,
        "engine": "redis",
        "redis_address": args.redis,
        "redis_prefix": prefix,
        "redis_db": args.redis_db,
        "log_level": "error",
        # No server ping during a run: it would only add "{}" lines and pong POSTs.
        "ping_interval": "1h",
        "pong_timeout": "8s",
        **dict(args.set),
    }


def checkRedis(address: str) -> None:
    """Fail early, with what to do, when nothing listens at a host:port Redis address (URLs are left to the server)."""
    if "://" in address:
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=2).close()
    except (OSError, ValueError) as e:
        raise BenchError(
            f"no Redis at {address} ({e}): start one with scripts/ensure-redis (`make bench-emulation` does)"
        ) from None


def apiInfo(port: int) -> dict[str, Any]:
    request = urllib.request.Request(
        f"http://{HOST}:{port}/api/info", data=b"{}", method="POST",
        headers={"X-API-Key": API_KEY, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())["result"]


def waitForCluster(servers: list[ServerProcess], timeout: float) -> float:
    """
    Wait until every server's /api/info lists all of them (each node has heard the others' heartbeats, so B
    knows A's node id and forwards to it rather than answering 404). @return: seconds waited.
    """
    start = time.monotonic()
    seen: dict[int, Any] = {}
    while True:
        ready = True
        for server in servers:
            try:
                nodes = apiInfo(server.port).get("nodes") or []
                seen[server.port] = sorted(n.get("name") or n.get("uid") for n in nodes)
            except (OSError, urllib.error.URLError, ValueError, KeyError) as e:
                nodes, seen[server.port] = [], repr(e)
            if len(nodes) < len(servers):
                ready = False
        if ready:
            return time.monotonic() - start
        for server in servers:
            if not server.alive():
                raise BenchError(f"a server exited while the cluster formed:\n{server.output[-4000:]}")
        if time.monotonic() - start > timeout:
            raise BenchError(
                f"the {len(servers)} servers did not see each other within {timeout:g}s: /api/info nodes by port "
                f"{seen}. Is the redis engine's control plane (node heartbeats) running?"
            )
        time.sleep(0.2)


# The client side


class _Stamp:
    """
    Stands in the stream's waiter table for one command: resolves C{future} with the time the chunk holding the
    reply was received (ns), read in L{TimedStream.data_received} before any parsing.
    """

    def __init__(self, stream: TimedStream, future: asyncio.Future) -> None:
        self._stream = stream
        self._future = future
        # Failures are counted from the future; one left behind when a stream closes is not worth a warning.
        future.add_done_callback(lambda f: f.cancelled() or f.exception())

    def done(self) -> bool:
        return self._future.done()

    def set_result(self, message: dict) -> None:
        self._future.set_result(self._stream.arrival)

    def set_exception(self, error: BaseException) -> None:
        self._future.set_exception(error)


class TimedStream(StreamConnection):
    """A bench.fanout stream that also tells when a given reply arrived."""

    def __init__(self, port: int, results: Results) -> None:
        self.arrival = 0
        self.nextID = 2  # 1 is the connect
        super().__init__(port, results)

    def _chunk(self, chunk: bytes, now: int) -> None:
        self.arrival = now
        super()._chunk(chunk, now)

    def timedReply(self, commandID: int) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self._waiters[commandID] = _Stamp(self, future)  # type: ignore[assignment]  # duck-typed: done/set_*
        return future


async def openStream(port: int, results: Results, timeout: float) -> TimedStream:
    loop = asyncio.get_running_loop()
    _, stream = await asyncio.wait_for(loop.create_connection(lambda: TimedStream(port, results), HOST, port), timeout)
    await asyncio.wait_for(stream.connected, timeout)
    if not (stream.session and stream.node):
        raise BenchError("connect reply has no session/node: is http_stream emulation enabled?")
    return stream


def command(args: argparse.Namespace, commandID: int) -> dict[str, Any]:
    if args.command == "publish":
        return {"id": commandID, "publish": {"channel": CHANNEL, "data": {"i": commandID}}}
    # Leaving a channel the client is not in: answered at once, touches no engine.
    return {"id": commandID, "unsubscribe": {"channel": CHANNEL}}


def poolSize(args: argparse.Namespace) -> int:
    """The POST connections: --emulation-pool, or one per session (0)."""
    return args.emulation_pool or args.connections


class Request:
    __slots__ = ("accepted", "answered", "reply", "sent")

    def __init__(self, sent: int, reply: asyncio.Future, accepted: asyncio.Future) -> None:
        self.sent = sent
        self.reply = reply
        self.accepted = accepted
        self.answered = 0  # when the POST's answer was read, ns

    def stampAnswer(self, _: asyncio.Future) -> None:
        self.answered = time.time_ns()


async def runCase(
    case: str, target: ServerProcess, servers: list[ServerProcess], streams: list[TimedStream],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Send --warmup then --requests commands to the streams' sessions through POSTs to C{target}."""
    pool = [EmulationConnection(target.port) for _ in range(poolSize(args))]
    try:
        for connection in pool:
            await connection.open()

        # Warm-up, closed loop and not measured: a failure here (404: B does not know A yet, 500: no answer over
        # Redis) ends the run with the reason rather than a table of errors.
        async def one(i: int) -> None:
            stream = streams[i % len(streams)]
            commandID, stream.nextID = stream.nextID, stream.nextID + 1
            reply = stream.timedReply(commandID)
            await pool[i % len(pool)].post(stream, [command(args, commandID)])
            await asyncio.wait_for(reply, args.timeout)

        for i in range(args.warmup):
            await gatherAll(f"{CASES[case]} warm-up", [one(i)], args.timeout)

        requests: list[Request] = []
        # py-spy on both servers for the measured phase only (--profile PREFIX: PREFIX-<case>-a.txt, -b.txt).
        profilers = [
            Profiler(s.pid, f"{args.profile}-{case}-{name}.txt" if args.profile else None)
            for s, name in zip(servers, "ab")
        ]
        gc.collect()
        gc.freeze()
        gc.disable()
        cpu0 = [cpuSeconds(s.pid) for s in servers]
        own0, machine0 = ownCpuSeconds(), machineCpu()
        start = time.time_ns()
        startClock = time.perf_counter()
        try:
            # Open loop, as in bench.fanout: request i goes out at start + i/rate whatever the server has answered,
            # pipelined round-robin over the pool's keep-alive connections.
            for i in range(args.requests):
                if args.rate > 0:
                    delay = startClock + i / args.rate - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                stream = streams[i % len(streams)]
                connection = pool[i % len(pool)]
                await connection.open()  # again if the server closed it
                commandID, stream.nextID = stream.nextID, stream.nextID + 1
                reply = stream.timedReply(commandID)
                sent = time.time_ns()
                accepted = connection.send(stream, [command(args, commandID)])
                request = Request(sent, reply, accepted)
                accepted.add_done_callback(request.stampAnswer)
                requests.append(request)
            lastSend = time.time_ns()
            pending = [r.reply for r in requests] + [r.accepted for r in requests]
            await asyncio.wait(pending, timeout=args.timeout)
            await asyncio.sleep(0)  # the done callbacks of the last answers
        finally:
            end = time.time_ns()
            cpu = [cpuSeconds(s.pid) - c for s, c in zip(servers, cpu0)]
            own = ownCpuSeconds() - own0
            machine = [after - before for after, before in zip(machineCpu(), machine0)]
            gc.enable()
            gc.unfreeze()
            for profiler in profilers:
                profiler.stop()
    finally:
        for connection in pool:
            connection.close()

    replyNs, postNs, finished = [], [], []
    nonOK: dict[str, int] = {}
    replyErrors: dict[str, int] = {}
    for r in requests:
        if r.accepted.done():
            error = r.accepted.exception()
            if error is None:
                postNs.append(r.answered - r.sent)
            else:
                key = str(error).replace("POST /emulation answered ", "")
                nonOK[key] = nonOK.get(key, 0) + 1
        else:
            r.accepted.cancel()
            nonOK["no answer"] = nonOK.get("no answer", 0) + 1
        if r.reply.done():
            error = r.reply.exception()
            if error is None:
                replyNs.append(r.reply.result() - r.sent)
                if r.answered:
                    finished.append(max(r.reply.result(), r.answered))
            else:
                replyErrors[str(error)] = replyErrors.get(str(error), 0) + 1
        else:
            r.reply.cancel()
            replyErrors["no reply"] = replyErrors.get("no reply", 0) + 1
    # In send order (None: no reply), to spot periodic stalls: --json writes them.
    byRequest = [
        round((r.reply.result() - r.sent) / 1e6, 3) if r.reply.done() and not r.reply.cancelled()
        and r.reply.exception() is None else None
        for r in requests
    ]
    replyNs.sort()
    postNs.sort()
    windowS = (end - start) / 1e9
    phaseS = ((max(finished) if finished else end) - start) / 1e9
    out: dict[str, Any] = {
        "case": CASES[case],
        "target_port": target.port,
        "requests": len(requests),
        "send_rate": (len(requests) - 1) / ((lastSend - requests[0].sent) / 1e9) if len(requests) > 1 else 0.0,
        "phase_s": phaseS,
        "throughput": len(finished) / phaseS if phaseS > 0 else 0.0,
        "non_204": sum(nonOK.values()),
        "non_204_by_status": nonOK,
        "replies_missing": sum(replyErrors.values()),
        "reply_problems": replyErrors,
        "server_cpu_pct": [100 * c / windowS for c in cpu],
        # CPU per completed request: steadier than req/s when other work shares the cores.
        "server_cpu_us_per_request": [1e6 * c / len(finished) if finished else 0.0 for c in cpu],
        "loadgen_cpu_pct": 100 * own / windowS,
        "reply_ms_by_request": byRequest,
    }
    for name, values in (("reply", replyNs), ("post", postNs)):
        for p in (50, 90, 99):
            out[f"{name}_p{p}_ms"] = percentile(values, p) / 1e6
        out[f"{name}_max_ms"] = (values[-1] if values else 0) / 1e6
    busy = (os.cpu_count() or 1) * machine[0] / machine[2] if machine[2] else 0.0
    out["other_busy_cpus"] = max(0.0, busy - (sum(cpu) + own) / windowS)
    out["machine_steal_pct"] = 100 * machine[1] / machine[2] if machine[2] else 0.0
    return out


async def run(args: argparse.Namespace, a: ServerProcess, b: ServerProcess) -> dict[str, Any]:
    results = Results(0, 0)  # no subscriptions: the streams carry replies only
    streams: list[TimedStream] = []
    out: dict[str, Any] = {"connections": args.connections, "cases": []}
    try:
        gate = asyncio.Semaphore(50)

        async def connectOne() -> None:
            async with gate:
                streams.append(await openStream(a.port, results, args.timeout))

        start = time.perf_counter()
        await gatherAll("connect", [connectOne() for _ in range(args.connections)], args.timeout)
        out["connect_s"] = time.perf_counter() - start
        out["node_a"] = streams[0].node
        servers = [a, b]
        for case in (["same", "cross"] if args.case == "both" else [args.case]):
            out["cases"].append(await runCase(case, a if case == "same" else b, servers, streams, args))
    finally:
        for stream in streams:
            stream.close()
    out["streams_ended_early"] = dict(results.ended)
    out["disconnects"] = dict(results.disconnects)
    return out


# Output


def table(out: dict[str, Any], args: argparse.Namespace) -> str:
    columns = [
        ("case", "<", lambda c: c["case"]),
        ("requests", ">", lambda c: str(c["requests"])),
        ("reply p50", ">", lambda c: f"{c['reply_p50_ms']:.2f}"),
        ("p99", ">", lambda c: f"{c['reply_p99_ms']:.2f}"),
        ("max", ">", lambda c: f"{c['reply_max_ms']:.2f}"),
        ("204 p50", ">", lambda c: f"{c['post_p50_ms']:.2f}"),
        ("p99", ">", lambda c: f"{c['post_p99_ms']:.2f}"),
        ("max", ">", lambda c: f"{c['post_max_ms']:.2f}"),
        ("req/s", ">", lambda c: f"{c['throughput']:.0f}"),
        ("non-204", ">", lambda c: str(c["non_204"])),
        ("no reply", ">", lambda c: str(c["replies_missing"])),
        ("CPU A/B %", ">", lambda c: "/".join(f"{x:.0f}" for x in c["server_cpu_pct"])),
        ("CPU µs/req A/B", ">", lambda c: "/".join(f"{x:.0f}" for x in c["server_cpu_us_per_request"])),
        # The load generator shares the 2 cores: near 100 % it, not the servers, would be the limit.
        ("load gen %", ">", lambda c: f"{c['loadgen_cpu_pct']:.0f}"),
        ("others", ">", lambda c: f"{c['other_busy_cpus']:.2f}"),
    ]
    cells = [[name for name, _, _ in columns]] + [[f(c) for _, _, f in columns] for c in out["cases"]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def render(row: list[str]) -> str:
        return "|" + "|".join(f" {v:{a}{w}} " for v, (_, a, _), w in zip(row, columns, widths)) + "|"

    body = [line, render(cells[0]), line] + [render(r) for r in cells[1:]] + [line]
    config = (
        f"bench.emulation: --connections {args.connections} --requests {args.requests} --rate {args.rate:g} "
        f"--emulation-pool {poolSize(args)} --warmup {args.warmup} --command {args.command}; "
        f"servers A and B: twistd httpstream, engine redis at {args.redis} (prefix {out['prefix']}), JSON, "
        f"log_level error, ping_interval 1h"
        + "".join(f", {key}={json.dumps(value)}" for key, value in args.set)
        + f"; cluster formed in {out['cluster_s']:.1f}s, {args.connections} streams on A in {out['connect_s']:.2f}s; "
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs\n"
        "latencies in ms from the POST being written: 'reply' until the command's reply arrives on the stream "
        "from A, '204' until the POST's own answer; req/s: requests completed (reply and 204) per second of the "
        "phase"
    )
    return config + "\n" + "\n".join(body)


def parseArgs(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.emulation",
        description="POST /emulation round trip on the node that owns the session and forwarded from another node "
        "over Redis: two servers (engine redis), N http_stream sessions on A, M commands posted to A then to B. "
        "Prints a table.",
    )
    parser.add_argument("--connections", "-n", type=int, default=50, help="http_stream sessions on A (default 50)")
    parser.add_argument("--requests", "-m", type=int, default=2000,
                        help="measured POST /emulation requests per case, one command each (default 2000)")
    parser.add_argument("--rate", type=float, default=200.0,
                        help="requests per second, sent open-loop on schedule (default 200); 0 sends them all at "
                        "once (a burst: capacity, latency is then mostly queueing)")
    parser.add_argument("--emulation-pool", type=int, default=0,
                        help="keep-alive connections the POSTs are pipelined over, round-robin; 0 (the default): one "
                        "per session, each session's POSTs on its own connection, as each browser sends its own")
    parser.add_argument("--warmup", type=int, default=50, help="unmeasured requests first, one at a time (default 50)")
    parser.add_argument("--command", choices=("unsubscribe", "publish"), default="unsubscribe",
                        help="the command each POST carries: unsubscribe from a channel the session is not in "
                        "(default: answered at once, no engine call, so only the routing is measured), or "
                        "publish to a channel nobody is subscribed to (adds a Redis PUBLISH on A)")
    parser.add_argument("--case", choices=("both", "same", "cross"), default="both", help="which cases (default both)")
    parser.add_argument("--redis", default="127.0.0.1:6379", help="redis_address (default 127.0.0.1:6379)")
    parser.add_argument("--redis-db", type=int, default=0, help="redis_db (default 0)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds allowed for each phase, and for the cluster to form (default 30)")
    parser.add_argument("--json", metavar="FILE", help="also write the measurements as JSON")
    parser.add_argument("--profile", metavar="PREFIX",
                        help="py-spy record both servers during each measured phase, as PREFIX-<case>-<a|b>.txt "
                        "(folded stacks; needs py-spy, the bench extra)")
    parser.add_argument("--set", metavar="KEY=JSON", action="append", default=[], type=configItem,
                        help="override a config key of both servers (repeatable; the value is JSON, a bare word "
                        "is taken as a string)")
    args = parser.parse_args(argv)
    if min(args.connections, args.requests) < 1 or min(args.warmup, args.emulation_pool) < 0:
        parser.error("--connections and --requests must be at least 1, --warmup and --emulation-pool at least 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parseArgs(argv)
    # One prefix per run: the cluster is these two servers, whatever else uses the same Redis.
    prefix = f"bench-emulation-{uuid.uuid4().hex[:12]}"
    try:
        raiseFileLimit(args.connections + 2 * poolSize(args) + 64)
        checkRedis(args.redis)
        with tempfile.TemporaryDirectory(prefix="httpstream-bench-") as directory:
            servers: list[ServerProcess] = []
            try:
                for name in ("a", "b"):
                    try:
                        config = serverConfig(args, f"bench-{name}", prefix)
                        servers.append(ServerProcess(Path(directory), config, name))
                    except RuntimeError as e:
                        raise BenchError(str(e)) from None
                a, b = servers
                clusterS = waitForCluster(servers, args.timeout)
                try:
                    out = asyncio.run(run(args, a, b))
                except BaseException:
                    for name, server in zip("AB", servers):
                        if not server.alive():
                            sys.stderr.write(f"server {name} exited:\n{server.output[-4000:]}\n")
                    raise
            finally:
                for server in servers:
                    server.stop()
    except BenchError as e:
        sys.stderr.write(f"bench.emulation: {e}\n")
        return 1
    out["prefix"] = prefix
    out["cluster_s"] = clusterS
    print(table(out, args))
    busy = max(c["other_busy_cpus"] for c in out["cases"])
    steal = max(c["machine_steal_pct"] for c in out["cases"])
    if busy > 0.25 or steal > 5:
        print(
            f"note: other processes used up to {busy:.2f} cores (steal {steal:.1f}%) during a measured phase: "
            "that competes with the servers and the load generator, so latency is inflated; rerun on a quiet "
            "machine to compare numbers."
        )
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    problems = []
    for c in out["cases"]:
        if c["non_204"]:
            problems.append(f"{c['case']}: {c['non_204']} POSTs not answered 204: {c['non_204_by_status']}")
        if c["replies_missing"]:
            problems.append(f"{c['case']}: {c['replies_missing']} replies missing: {c['reply_problems']}")
    return exitStatus("bench.emulation", out, problems)


if __name__ == "__main__":
    sys.exit(main())
