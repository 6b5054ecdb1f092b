"""
Map updates per second into a map channel with N subscribers, against plain stream publications to the same number
of subscribers, in one process and one run.

    .venv/bin/python -m bench.maps                       # 1000 subscribers, 300 updates, JSON, 3 rounds
    .venv/bin/python -m bench.maps --subscribers 1000 --updates 300 --protocol protobuf --rounds 5

Not a test (no assertion). The server side only: one node (the memory engine) on a fake clock, its clients on
transports that drop what they are given, so the figure is the CPU of the protocol work of an update (the map
broker's write: state, stream, delivery; one encoding per protocol; each subscriber's position check and queue;
the writers' flush) without sockets. Each round subscribes N map subscribers (type 1, a persistent map with a
100-write stream) and N stream subscribers (history 100), then times --updates map publishes to different keys and
as many publications to the stream channel, with the process's CPU time (user + system) and wall time.

Prints, per round and as medians: µs CPU per update, updates per CPU second, µs CPU per delivery, and the ratio map
/ stream (how much dearer an update of a map is than a publication of a stream with the same subscribers).
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any, Optional, Sequence

from twisted.internet.task import Clock

from httpstream.testing import FakeTransport, connectClient, encodeCommands, makeNode


class NullTransport(FakeTransport):
    """A transport that counts the messages it is given and keeps none of them."""

    delivered = 0

    def writeMessages(self, messages: Sequence[bytes]) -> None:
        NullTransport.delivered += len(messages)


def subscribe(node: Any, clock: Clock, protocol: str, count: int, request: dict[str, Any]) -> None:
    for _ in range(count):
        client, _ = connectClient(node, NullTransport(protocol))
        client.handleData(encodeCommands(protocol, [{"id": 2, "subscribe": request}]))
    clock.advance(0)
    subscribed = sum(request["channel"] in client.channels for client in node.clients.values())
    if subscribed != count:
        raise SystemExit(f"{subscribed} of {count} subscribed to {request['channel']}")


def timed(clock: Clock, updates: int, one: Any) -> tuple[float, float, int]:
    """CPU and wall seconds of C{updates} calls of C{one(i)}, each followed by the writers' flush."""
    NullTransport.delivered = 0
    cpu, wall = time.process_time(), time.perf_counter()
    for i in range(updates):
        one(i)
        clock.advance(0)
    return time.process_time() - cpu, time.perf_counter() - wall, NullTransport.delivered


def oneRound(args: argparse.Namespace) -> dict[str, float]:
    clock = Clock()
    node = makeNode({
        "client_insecure": True, "allow_anonymous_connect_without_token": True, "ping_interval": -1,
        "client_queue_max_size": 1 << 30,
        "namespaces": [
            {"name": "board", "subscription_type": "map", "map": {"mode": "persistent", "stream_size": 100}},
            {"name": "news", "history_size": 100, "history_ttl": "300s"},
        ],
    }, clock)
    subscribe(node, clock, args.protocol, args.subscribers,
              {"channel": "board:1", "type": 1, "phase": 2, "flag": 1})
    subscribe(node, clock, args.protocol, args.subscribers, {"channel": "news:1"})
    data = b'{"x":12,"y":34,"name":"cursor","color":"#ff8800","pad":"' + b"." * 40 + b'"}'
    mapCPU, mapWall, mapDelivered = timed(clock, args.updates,
                                          lambda i: node.maps.publish("board:1", f"key{i % 100}", data))
    streamCPU, streamWall, streamDelivered = timed(clock, args.updates, lambda i: node.publish("news:1", data))
    if mapDelivered != args.updates * args.subscribers or streamDelivered != args.updates * args.subscribers:
        raise SystemExit(f"deliveries missing: map {mapDelivered}, stream {streamDelivered}")
    return {
        "map_us_per_update": mapCPU / args.updates * 1e6,
        "stream_us_per_update": streamCPU / args.updates * 1e6,
        "map_updates_per_cpu_s": args.updates / mapCPU,
        "map_us_per_delivery": mapCPU / mapDelivered * 1e6,
        "stream_us_per_delivery": streamCPU / streamDelivered * 1e6,
        "ratio": mapCPU / streamCPU,
        "map_wall_updates_per_s": args.updates / mapWall,
    }


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.maps", description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--updates", type=int, default=300)
    parser.add_argument("--protocol", choices=["json", "protobuf"], default="json")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    rounds = []
    for number in range(args.rounds):
        result = oneRound(args)
        rounds.append(result)
        print(f"round {number + 1}: map {result['map_us_per_update']:.0f} µs CPU/update "
              f"({result['map_us_per_delivery']:.2f} µs/delivery), stream {result['stream_us_per_update']:.0f} µs "
              f"CPU/publication ({result['stream_us_per_delivery']:.2f} µs/delivery), map/stream "
              f"{result['ratio']:.2f}")
    median = {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}
    print(f"median over {args.rounds} rounds, {args.subscribers} subscribers, {args.protocol}: "
          f"{median['map_updates_per_cpu_s']:.0f} map updates per CPU second "
          f"({median['map_us_per_update']:.0f} µs/update, {median['map_us_per_delivery']:.2f} µs/delivery); "
          f"stream {median['stream_us_per_update']:.0f} µs/publication; map/stream {median['ratio']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
