"""
bench.ceiling's pieces, checked without timing anything: the table's arithmetic (medians, spread, ratios to the
baseline of the same transport and to the send floor), the load generator's parsers for Protobuf and SSE fed in
cut-up chunks, and the wire of the bare twisted.web baseline and the peers: a couple of subscribers and
publications over each transport on a real socket, with the load generator's own clients.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from bench.fanout import CHANNEL, EmulationPool, Results
from bench.floor import publicationChunk, sendFloor
from bench.loadmodes import MODES, ProtobufStream, SSEStream, protobufCommands
from bench.summary import baselineKey, summarize, table
from httpstream.protocol import client_pb2
from httpstream.protocol.framing import varint_delimit
from tests.serverprocess import ListeningProcess

ROOT = Path(__file__).resolve().parent.parent


def rec(target: str, transport: str, round: int, rate: float, cpu: float, **extra: Any) -> dict[str, Any]:
    return {"target": target, "transport": transport, "round": round, "rate": rate, "cpu_us": cpu,
            "p50_ms": 10.0 + round, "p99_ms": 30.0 + round, "fanout_p50_ms": 20.0, "rss_kib": 20.0,
            "other_cpus": 0.1 * (round + 1), "received": 100, "expected": 100, "error": "", **extra}


def test_summary_ratios_are_per_round_against_the_same_transport() -> None:
    records = [
        rec("httpstream http_stream", "http_stream", 0, 20, 40.0),
        rec("httpstream http_stream", "http_stream", 1, 20, 60.0),
        rec("httpstream http_stream", "http_stream", 2, 20, 30.0),
        rec("twisted.web http_stream", "http_stream", 0, 20, 25.0),
        rec("twisted.web http_stream", "http_stream", 1, 20, 20.0),
        rec("twisted.web http_stream", "http_stream", 2, 20, 10.0),
        # Protobuf is divided by the http_stream baseline; a WebSocket peer by the WebSocket one.
        rec("httpstream http_stream-protobuf", "http_stream-protobuf", 0, 20, 12.5),
        rec("websockets websocket", "websocket", 0, 20, 9.0),
        rec("twisted.web websocket", "websocket", 0, 20, 18.0),
    ]
    rows = {(r["target"], r["rate"]): r for r in summarize(records, {0: 5.0, 1: 6.0, 2: 5.0})}
    mine = rows[("httpstream http_stream", 20)]
    # Per round: 1.6, 3.0, 3.0 -> median 3.0 (the ratio of the medians, 40 / 20, would say 2.0).
    assert mine["vs_baseline"] == 3.0
    assert mine["cpu_us"] == 40.0
    assert mine["cpu_spread_pct"] == pytest.approx(100 * (60 - 30) / 40)
    # Against the floor of each round: 8, 10, 6 -> 8.
    assert mine["vs_floor"] == 8.0
    assert mine["p50_ms"] == 11.0 and mine["p99_ms"] == 31.0
    assert mine["other_cpus_max"] == pytest.approx(0.3)
    assert rows[("twisted.web http_stream", 20)]["vs_baseline"] == 1.0
    assert rows[("httpstream http_stream-protobuf", 20)]["vs_baseline"] == 0.5
    assert rows[("websockets websocket", 20)]["vs_baseline"] == 0.5
    assert baselineKey("sse") == "twisted.web sse"


def test_summary_leaves_failed_rounds_out_and_says_so() -> None:
    records = [
        rec("httpstream sse", "sse", 0, 50, 40.0),
        rec("httpstream sse", "sse", 1, 50, 0.0, error="server did not start"),
        rec("httpstream sse", "sse", 2, 50, 50.0, received=99),  # a delivery missing: not a measurement
        rec("twisted.web sse", "sse", 0, 50, 20.0),
        rec("twisted.web sse", "sse", 2, 50, 20.0),
        rec("aiohttp sse", "sse", 0, 50, 0.0, error="boom", received=0),
    ]
    rows = {r["target"]: r for r in summarize(records, {})}
    sse = rows["httpstream sse"]
    assert (sse["rounds"], sse["failed"], sse["cpu_us"], sse["vs_baseline"]) == (3, 2, 40.0, 2.0)
    assert sse["vs_floor"] is None and sse["cpu_spread_pct"] is None
    assert sse["errors"] == ["deliveries missing", "server did not start"]
    assert rows["aiohttp sse"]["cpu_us"] is None
    text = table(list(rows.values()))
    lines = text.splitlines()
    assert lines[0].startswith("| target | pub/s | µs CPU / delivery |")
    assert "| httpstream sse (2 of 3 failed) | 50 | 40.0 | – | 10.0 / 30.0 | 2.00 | – |" in text
    assert "| aiohttp sse | 50 | failed: boom |" in text


def test_send_floor_counts_every_send() -> None:
    payload = publicationChunk(100)
    size, _, rest = payload.partition(b"\r\n")
    assert int(size, 16) == len(rest) - 2 and rest.endswith(b"\n\r\n")
    assert 95 <= len(orjson.dumps(orjson.loads(rest)["push"]["pub"]["data"])) <= 105
    out = sendFloor(3, 2, payload)
    assert (out["connections"], out["sends"], out["bytes"]) == (3, 6, len(payload))
    assert out["us_per_send"] >= 0


def pushReply(i: int) -> bytes:
    reply = client_pb2.Reply()
    reply.push.channel = CHANNEL
    reply.push.pub.data = orjson.dumps({"t": 0, "i": i})
    return reply.SerializeToString()


def test_protobuf_and_sse_parsers_resume_on_cut_chunks() -> None:
    async def check() -> None:
        results = Results(6, 3)
        pb = ProtobufStream(1, results)
        connect = client_pb2.Reply(id=1)
        connect.connect.session, connect.connect.node = "s", "n"
        body = varint_delimit([connect.SerializeToString(), b"", pushReply(0), pushReply(1), pushReply(2)])
        for i in range(0, len(body), 5):  # cut anywhere, length prefixes included
            pb._chunk(body[i : i + 5], 1)
        assert (pb.session, pb.node, pb.received) == ("s", "n", 3)
        assert (await pb.connected).connect.session == "s"

        sse = SSEStream(1, results)
        events = b"\r\n" + b"".join(
            b"data: " + orjson.dumps(m) + b"\n\n"
            for m in [{"id": 1, "connect": {"session": "s", "node": "n"}}, {}]
            + [{"push": {"channel": CHANNEL, "pub": {"data": {"t": 0, "i": i}}}} for i in range(3)]
        )
        for i in range(0, len(events), 7):
            sse._chunk(events[i : i + 7], 1)
        assert (sse.session, sse.received, results.received) == ("s", 3, 6)
        assert results.done.done()

    asyncio.run(check())
    assert protobufCommands([{"id": 2, "subscribe": {"channel": "c"}}]) == varint_delimit(
        [client_pb2.Command(id=2, subscribe=client_pb2.SubscribeRequest(channel="c")).SerializeToString()]
    )


async def fanOut(port: int, transport: str, subscribers: int = 2, messages: int = 3) -> Results:
    """The load generator's own clients: subscribers, a publisher, publications; every delivery awaited."""
    mode = MODES[transport]
    results = Results(subscribers * messages, messages)
    pool = EmulationPool(port, 2)
    streams: list[Any] = []
    try:
        for _ in range(subscribers):
            await mode.open(port, results, 10, streams)
        for stream in streams:
            await mode.subscribe(pool, stream, 10)
        publisher = await mode.publisher(port, results, 10)
        try:
            futures = []
            for i in range(messages):
                reply, answer = publisher.publish({"id": 10 + i, "publish": {"channel": CHANNEL,
                                                                            "data": {"t": 0, "i": i}}})
                futures += [reply] + ([answer] if answer is not None else [])
            await asyncio.wait_for(asyncio.gather(*futures), 10)
            await asyncio.wait_for(results.done, 10)
        finally:
            publisher.close()
    finally:
        pool.close()
        for stream in streams:
            stream.close()
    return results


@pytest.mark.parametrize(
    "module, transports",
    [
        ("bench.baseline", ["http_stream", "sse", "websocket"]),
        ("bench.peers.websockets_broadcast", ["websocket"]),
        ("bench.peers.aiohttp_sse", ["sse"]),
    ],
)
def test_baseline_and_peers_speak_the_benchmarks_wire(module: str, transports: list[str]) -> None:
    if module.startswith("bench.peers."):
        pytest.importorskip(module.rsplit("_", 1)[0].rsplit(".", 1)[1])  # websockets / aiohttp (bench extra)
    with ListeningProcess([sys.executable, "-m", module], cwd=ROOT) as server:
        server.waitForPort()
        for transport in transports:
            results = asyncio.run(fanOut(server.port, transport))
            assert results.received == 6, (transport, server.output)
            assert all(results.lastPerMessage), results.lastPerMessage  # each publication reached someone
            assert not results.errors and not results.disconnects


def test_resp_readers_read_the_same_replies(capsys: pytest.CaptureFixture[str]) -> None:
    """bench.resp drives both readers over every case (it exits when their replies differ) and prints the table."""
    from bench import resp

    for name, chunks, count in resp.cases(300):
        replies = resp.drive(resp.HandWrittenReader(), chunks)
        assert len(replies) == count, name
        assert resp.normalized(replies) == resp.drive(resp.hiredisReader(), chunks), name
    assert resp.main(["--messages", "300", "--repeat", "1"]) == 0
    out = capsys.readouterr().out
    assert len(out.splitlines()) == 2 + 4 and "PUB/SUB messages, 1460-byte reads" in out


def test_ceiling_checkout_targets(tmp_path: Path) -> None:
    """--checkout DIR adds httpstream's targets run by DIR's own twistd; one without a venv is refused clearly."""
    from bench.ceiling import parseArgs, start
    from bench.fanout import BenchError

    other = tmp_path / "before"
    other.mkdir()
    args = parseArgs(["--checkout", str(other), "--targets", "httpstream@before websocket,websockets websocket"])
    [mine, peer] = args.targetList
    assert (mine.name, mine.checkout, mine.transport) == ("httpstream@before websocket", str(other), "websocket")
    assert peer.name == "websockets websocket" and not peer.checkout
    with pytest.raises(BenchError, match="no .*twistd"):
        start(mine, args, tmp_path)


def test_deliveries_counts_the_servers_writes(capsys: pytest.CaptureFixture[str]) -> None:
    """bench.deliveries in one process: every subscriber gets every publication (its byte count says so)."""
    out = subprocess.run([sys.executable, "-m", "bench.deliveries", "--transport", "websocket", "-n", "20", "-m", "3"],
                         capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parent.parent)
    assert out.returncode == 0, out.stderr[-1000:]
    said = out.stdout.strip().splitlines()[-1]
    assert said.startswith("websocket: ") and "µs CPU per delivery" in said
    # 20 subscribers x 3 publications of one frame each (2-byte header + the push of ~100 bytes of data).
    received = int(said.rsplit(", ", 1)[1].split()[0])
    assert 20 * 3 * 100 < received < 20 * 3 * 200


def test_native_reader_finds_every_publication_across_cut_reads(tmp_path: Path) -> None:
    """
    bench/reader.c (bench.fanout --reader native) on real sockets: http_stream chunks, SSE events and WebSocket
    frames, each stream's bytes cut at a different place on each write (inside the pattern, inside the digits),
    with a look-alike that is not a publication: every delivery counted once, on its stream, with its index.
    """
    import array
    import socket
    import time

    from bench.native import build

    binary = build()
    messages = 6
    sent = time.time_ns() - 5_000_000  # 5 ms ago: each latency is at least that

    def data(i: int) -> bytes:
        return b'{"t":%d,"i":%d,"p":{"t":"x","u":{"t":1}}}' % (sent, i)  # (two look-alikes, not counted)

    def frames(kind: str) -> bytes:
        out = b""
        for i in range(messages):
            push = b'{"push":{"channel":"bench","pub":{"data":' + data(i) + b',"offset":%d}}}' % (i + 1)
            if kind == "http_stream":
                out += b"%x\r\n" % (len(push) + 1) + push + b"\n\r\n"
            elif kind == "sse":
                out += b"%x\r\n" % (len(push) + 8) + b"data: " + push + b"\n\n\r\n"
            else:
                out += bytes([0x81, 126]) + len(push).to_bytes(2, "big") + push
        return out

    kinds = ["http_stream", "sse", "websocket"]
    pairs = [socket.socketpair() for _ in kinds]
    out = tmp_path / "results.bin"
    fds = [ours.fileno() for ours, _ in pairs]
    reader = subprocess.Popen(
        [str(binary), "--expected", str(messages * len(kinds)), "--messages", str(messages), "--timeout", "20",
         "--out", str(out), *map(str, fds)],
        pass_fds=fds, stdout=subprocess.PIPE,
    )
    try:
        assert reader.stdout is not None and reader.stdout.readline() == b"ready\n"
        for step, (kind, (_, theirs)) in enumerate(zip(kinds, pairs)):
            payload = frames(kind)
            cuts = list(range(3 + step, len(payload), 7 + step))  # 2-9 bytes into anything, all along
            for start, end in zip([0] + cuts, cuts + [len(payload)]):
                theirs.sendall(payload[start:end])
                time.sleep(0.001)  # one read each, as often as the reader keeps up
        assert reader.wait(30) == 0
    finally:
        reader.kill()
        for ours, theirs in pairs:
            ours.close()
            theirs.close()
    numbers = array.array("q")
    numbers.frombytes(out.read_bytes())
    received, first, last, ended = numbers[:4]
    total = messages * len(kinds)
    assert (received, ended) == (total, 0) and 0 < first <= last
    latencies = numbers[4 : 4 + total]
    assert all(5_000_000 <= latency < 30_000_000_000 for latency in latencies)
    assert all(latest >= 5_000_000 for latest in numbers[4 + total : 4 + total + messages])  # every index seen
    assert list(numbers[4 + total + messages :]) == [messages] * len(kinds)
