"""
The raw send floor: a plain CPython loop calling C{socket.send()} once per connection per message, on N connected
loopback TCP sockets, with the bytes of one http_stream publication chunk. It is what one write per delivery costs
in this interpreter on this machine, kernel included (on loopback the send also runs the receiving side's TCP
path), with no event loop, no buffering and no protocol: the floor no server written in Python goes below while it
makes one send per delivery.

    .venv/bin/python -m bench.floor [--connections 1000] [--messages 100]

bench.ceiling measures it once per round, in the same run as the servers, and divides by it.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from typing import Any, Optional

import orjson


def publicationChunk(size: int) -> bytes:
    """One http_stream chunk of a publication whose data is about C{size} bytes of JSON, as servers send it."""
    data = {"t": time.time_ns(), "i": 0, "p": "x" * max(0, size - 40)}
    line = orjson.dumps({"push": {"channel": "bench", "pub": {"data": data}}}) + b"\n"
    return b"%x\r\n" % len(line) + line + b"\r\n"


def sendFloor(connections: int, messages: int, payload: bytes) -> dict[str, Any]:
    """
    Send C{payload} C{messages} times to each of C{connections} sockets; only the send loops are timed (the
    receiving ends are drained between messages, untimed, so no buffer ever fills).
    @return: C{us_per_send} (process CPU, user + system), C{wall_us_per_send}, and the counts.
    """
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(min(connections, 4096))
    senders: list[socket.socket] = []
    receivers: list[socket.socket] = []
    try:
        for _ in range(connections):
            receiver = socket.create_connection(listener.getsockname())
            sender, _ = listener.accept()
            receiver.setblocking(False)
            receivers.append(receiver)
            senders.append(sender)
        cpu = wall = 0.0
        for _ in range(messages):
            cpu0, wall0 = time.process_time(), time.perf_counter()
            for sender in senders:
                sender.send(payload)
            cpu += time.process_time() - cpu0
            wall += time.perf_counter() - wall0
            for receiver in receivers:
                try:
                    while receiver.recv(65536):
                        pass
                except BlockingIOError:
                    pass
    finally:
        for s in senders + receivers:
            s.close()
        listener.close()
    sends = connections * messages
    return {
        "connections": connections,
        "sends": sends,
        "bytes": len(payload),
        "us_per_send": 1e6 * cpu / sends,
        "wall_us_per_send": 1e6 * wall / sends,
    }


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", "-n", type=int, default=1000)
    parser.add_argument("--messages", "-m", type=int, default=100)
    parser.add_argument("--size", type=int, default=100, help="publication data size, bytes (default 100)")
    args = parser.parse_args(argv)
    from bench.fanout import raiseFileLimit

    raiseFileLimit(2 * args.connections + 64)
    out = sendFloor(args.connections, args.messages, publicationChunk(args.size))
    print(
        f"raw send floor: {out['us_per_send']:.2f} µs CPU per send ({out['wall_us_per_send']:.2f} µs wall), "
        f"{out['sends']} sends of {out['bytes']} bytes on {out['connections']} loopback TCP sockets"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
