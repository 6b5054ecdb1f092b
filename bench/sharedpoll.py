"""
Shared poll: what one refresh cycle costs the server with many tracked keys (not a test).

    .venv/bin/python -m bench.sharedpoll                      # 10,000 keys, 1,000 connections x 50 keys, 10% change
    .venv/bin/python -m bench.sharedpoll --keys 10000 --connections 2000 --per-connection 25 --changed 0.01

In one process: a real L{Node} with real L{Client}s (JSON, over L{httpstream.testing.FakeTransport}, so the path
from the backend's answer to each client's queued frame is the server's own), each subscribed to one shared poll
channel and tracking keys with signatures the configured policy checks. The backend is in memory
(L{httpstream.testing.sharedpoll.FakePollBackend}): before each cycle, C{--changed} of the keys get a new version.
The clock is a fake one, advanced one refresh interval per cycle, so the CPU measured is the cycle's alone: asking
the backend (batches of C{refresh_batch_size}), applying its answers, encoding each change once and queueing it to
every connection tracking the key. What is not measured: the backend's HTTP exchange and the sockets' writes.

Prints, per cycle: backend requests, keys asked, changed keys, pushes queued, process CPU milliseconds.
"""

from __future__ import annotations

import argparse
import random
import time
from typing import Any

from httpstream.node.sharedpoll import SharedPolls
from httpstream.policy.tracksignature import makeSignature
from httpstream.testing import FakeTransport, connectClient, encodeCommands, makeNode
from httpstream.testing.sharedpoll import FakePollBackend

CHANNEL = "poll:bench"
SECRET = "bench-secret"


def main(argv: Any = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=1_000)
    parser.add_argument("--per-connection", type=int, default=50)
    parser.add_argument("--changed", type=float, default=0.1, help="fraction of keys changed before each cycle")
    parser.add_argument("--batch", type=int, default=1000, help="refresh_batch_size")
    parser.add_argument("--cycles", type=int, default=5)
    args = parser.parse_args(argv)

    node = makeNode({
        "client_insecure": True, "shared_poll_hmac_secret_key": SECRET,
        "client_queue_max_size": 1 << 40, "client_channel_limit": 10,
        "proxies": [{"name": "backend", "endpoint": "http://backend.test/refresh"}],
        "namespaces": [{"name": "poll", "subscription_type": "shared_poll", "shared_poll_proxy_name": "backend",
                        "shared_poll_mode": "versioned", "shared_poll_refresh_interval": "1s",
                        "shared_poll_refresh_batch_size": args.batch,
                        "shared_poll_max_keys_per_connection": args.per_connection}],
    })
    clock = node.reactor
    clock.advance(1_700_000_000)
    backend = FakePollBackend()
    node.sharedPoll = polls = SharedPolls(clock, backend.refresh)
    keys = [f"item-{i}" for i in range(args.keys)]
    backend.state = {key: (b'{"price":100}', 1) for key in keys}
    rng = random.Random(1)

    transports = []
    for n in range(args.connections):
        client, transport = connectClient(node, FakeTransport("json"))
        chosen = rng.sample(keys, args.per_connection) if n >= args.keys // args.per_connection else \
            keys[n * args.per_connection:(n + 1) * args.per_connection]  # every key tracked at least once
        signature = makeSignature(SECRET, CHANNEL, "", chosen, int(clock.seconds()), 0)
        client.handleData(encodeCommands("json", [
            {"id": 2, "subscribe": {"channel": CHANNEL, "type": 4}},
            {"id": 3, "sub_refresh": {"channel": CHANNEL, "type": 1,
                                      "track": [{"signature": signature, "items": [{"key": k} for k in chosen]}]}},
        ]))
        transports.append(transport)
    clock.advance(0)  # connects, subscribes, tracks, and the first poll of every key
    tracked = len(polls.tracked(CHANNEL))
    print(f"{args.connections} connections x {args.per_connection} keys = "
          f"{args.connections * args.per_connection} trackings of {tracked} distinct keys; "
          f"refresh_batch_size {args.batch}; {args.changed:.0%} of keys changed before each cycle")
    print(f"{'cycle':>5} {'requests':>9} {'keys asked':>11} {'changed':>8} {'pushes':>8} {'CPU ms':>8}")
    version = 1
    for cycle in range(1, args.cycles + 1):
        version += 1
        changed = rng.sample(keys, int(len(keys) * args.changed))
        for key in changed:
            backend.state[key] = (b'{"price":%d}' % version, version)
        calls = len(backend.calls)
        asked = len(backend.keysAsked())
        queued = sum(len(b) for t in transports for b in t.batches)
        cpu = time.process_time()
        clock.advance(1.0)
        cpu = time.process_time() - cpu
        pushes = sum(len(b) for t in transports for b in t.batches) - queued
        print(f"{cycle:>5} {len(backend.calls) - calls:>9} {len(backend.keysAsked()) - asked:>11} "
              f"{len(changed):>8} {pushes:>8} {cpu * 1000:>8.1f}")


if __name__ == "__main__":
    main()
