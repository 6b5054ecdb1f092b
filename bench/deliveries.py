"""
The server's own work per delivery, in one process: the node, its listening port and N subscriber sockets in this
interpreter, publications made by calling the node, and the reactor turned by hand until every subscriber's write
is out. Nothing reads the subscribers' sockets while publications go out (the kernel keeps a run's few KiB per
socket), so what is measured is the server's side alone: the fan-out, the writers, the framing and the C{send()}s.

    .venv/bin/python -m bench.deliveries [--transport websocket] [-n 1000] [-m 20] [--profile out.txt]
    valgrind --tool=callgrind --callgrind-out-file=/dev/null .venv/bin/python -m bench.deliveries -m 0
    valgrind --tool=callgrind --callgrind-out-file=/dev/null .venv/bin/python -m bench.deliveries -m 20

CPU time on a shared machine moves with everyone else's load; callgrind's instruction count does not: the
difference between a run with C{-m M} publications and one with C{-m 0}, over M x N, is the instructions per
delivery (C{--callgrind} runs both and prints it). C{--profile FILE} writes cProfile's top functions of the
publish phase instead (cProfile's own cost inflates every call, so read its shares, not its times).
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import io
import os
import pstats
import re
import socket
import subprocess
import sys
import time
from typing import Any, Optional

from twisted.internet import epollreactor

epollreactor.install()

from twisted.internet import reactor as _reactor  # noqa: E402

from bench.fanout import raiseFileLimit  # noqa: E402
from bench.loadmodes import maskedFrame, protobufCommands  # noqa: E402
from httpstream.config import Config  # noqa: E402
from httpstream.service import HTTPStreamService, tuneGarbageCollector  # noqa: E402

reactor: Any = _reactor
CHANNEL = "bench"
TRANSPORTS = ("http_stream", "http_stream-protobuf", "sse", "websocket", "websocket-protobuf")


def turn(times: int = 1) -> None:
    for _ in range(times):
        reactor.iterate(0)


def openSubscriber(port: int, transport: str, pending: dict[socket.socket, bytes]) -> socket.socket:
    """A connected, subscribed-to-be socket: its request sent, nothing read yet."""
    s = socket.create_connection(("127.0.0.1", port))
    protobuf = transport.endswith("protobuf")
    connect = protobufCommands([{"id": 1, "connect": {}}]) if protobuf else b'{"id":1,"connect":{}}'
    if transport.startswith("websocket"):
        key = base64.b64encode(os.urandom(16)).decode()
        sub = "Sec-WebSocket-Protocol: centrifuge-protobuf\r\n" if protobuf else ""
        s.sendall((
            f"GET /connection/websocket HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{sub}\r\n"
        ).encode())
        # The connect frame goes once the upgrade is answered (bytes behind the request would be the HTTP
        # parser's, lost in the hand-over): see setUp.
        pending[s] = maskedFrame(connect, 0x2 if protobuf else 0x1)
    elif transport == "sse":
        from urllib.parse import quote
        s.sendall(f"GET /connection/sse?cf_connect={quote(connect)} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    else:
        kind = "application/octet-stream" if protobuf else "application/json"
        s.sendall(
            f"POST /connection/http_stream HTTP/1.1\r\nHost: x\r\nContent-Type: {kind}\r\n"
            f"Content-Length: {len(connect)}\r\n\r\n".encode() + connect
        )
    s.setblocking(False)
    return s


def drain(sockets: list[socket.socket], pending: Optional[dict[socket.socket, bytes]] = None) -> int:
    got = 0
    for s in sockets:
        try:
            while True:
                data = s.recv(1 << 16)
                if not data:
                    break
                got += len(data)
                if pending and s in pending and b" 101 " in data:
                    s.sendall(pending.pop(s))
        except BlockingIOError:
            pass
    return got


def setUp(args: argparse.Namespace) -> tuple[HTTPStreamService, list[socket.socket]]:
    raiseFileLimit(2 * args.connections + 100)
    config = Config(
        port=0, address="127.0.0.1", http_stream=True, sse=True, log_level="error", ping_interval=3600.0,
        allow_anonymous_connect_without_token=True, allow_subscribe_for_anonymous=True,
        allow_subscribe_for_client=True, client_queue_max_size=64 * 1024 * 1024,
    )
    service = HTTPStreamService(config, reactor)
    service.startService()
    port = service.port.getHost().port  # type: ignore[union-attr]
    sockets = []
    pending: dict[socket.socket, bytes] = {}
    node = service.node
    deadline = time.monotonic() + 600  # under callgrind too
    # A few at a time, each batch served before the next (under callgrind the server is ~50 times slower).
    while len(sockets) < args.connections:
        batch = [openSubscriber(port, args.transport, pending) for _ in range(min(20, args.connections - len(sockets)))]
        sockets += batch
        while len(node.clients) < len(sockets) and time.monotonic() < deadline:
            turn()
            drain(batch, pending)
    while sum(1 for c in node.clients.values()) < args.connections:
        turn()
        drain(sockets, pending)
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(node.clients)} of {args.connections} connected")
    protobuf = args.transport.endswith("protobuf")
    subscribe = [{"id": 2, "subscribe": {"channel": CHANNEL}}]
    command = protobufCommands(subscribe) if protobuf else b'{"id":2,"subscribe":{"channel":"bench"}}'
    for client in list(node.clients.values()):
        client.handleData(command)
    while len(node.hub.subscribers(CHANNEL)) < args.connections:
        turn()
        if time.monotonic() > deadline:
            raise SystemExit("not every client subscribed")
    turn(5)
    drain(sockets)
    tuneGarbageCollector()
    return service, sockets


def publishPhase(service: HTTPStreamService, sockets: list[socket.socket], m: int, size: int) -> None:
    node = service.node
    data = b'{"text":"%s"}' % (b"x" * max(0, size - 11))
    for _ in range(m):
        node.publish(CHANNEL, data)
        turn(2)  # the fan-out's writes go out on the next turn (the writers' flush)


def callgrind(argv: list[str], args: argparse.Namespace) -> int:
    counts = []
    for m in (0, args.messages):
        base = [a for a in argv if a != "--callgrind"]
        out = subprocess.run(
            # This file by its path, so that another checkout's httpstream (PYTHONPATH) can be measured with it.
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
             os.path.abspath(__file__), *base, "-m", str(m)],
            capture_output=True, text=True,
            # The same hashes in both runs: the set-up's work differs less between them.
            env={**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": os.environ.get("PYTHONPATH") or os.getcwd()},
        )
        found = re.findall(r"Collected : (\d+)", out.stderr)
        if out.returncode or not found:
            sys.stderr.write(out.stderr[-2000:])
            return 1
        counts.append(int(found[-1]))
    per = (counts[1] - counts[0]) / (args.messages * args.connections)
    print(f"{args.transport}: {per:,.0f} instructions per delivery ({args.connections} subscribers, "
          f"{args.messages} publications; {counts[0]:,} without publications, {counts[1]:,} with)")
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="bench.deliveries", description=__doc__.split("\n\n")[1])
    parser.add_argument("--transport", choices=TRANSPORTS, default="http_stream")
    parser.add_argument("-n", "--connections", type=int, default=1000)
    parser.add_argument("-m", "--messages", type=int, default=20)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--profile", metavar="FILE")
    parser.add_argument("--callgrind", action="store_true",
                        help="run under callgrind with -m 0 and -m M and print the instructions per delivery")
    args = parser.parse_args(argv)
    if args.callgrind:
        return callgrind(argv, args)
    service, sockets = setUp(args)
    # Warm up: the first publication makes the shared frames and caches.
    publishPhase(service, sockets, 1 if args.messages else 0, args.size)
    drain(sockets)
    profiler = cProfile.Profile() if args.profile else None
    started = time.process_time()
    if profiler is not None:
        profiler.enable()
    publishPhase(service, sockets, args.messages, args.size)
    if profiler is not None:
        profiler.disable()
    spent = time.process_time() - started
    received = drain(sockets)
    deliveries = args.messages * args.connections
    if deliveries:
        print(f"{args.transport}: {spent / deliveries * 1e6:.2f} µs CPU per delivery, {received} bytes received")
    if profiler is not None:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(25)
        with open(args.profile, "w") as f:
            f.write(text.getvalue())
    for s in sockets:
        s.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
