"""
The Redis map broker's scripts against a Redis (default 127.0.0.1:6379, database 9, a prefix of its own, deleted
after): map writes per second (``--concurrency`` in flight, one channel), beside the history publish of the same
payload through RedisBroker (one script each as well: the yardstick); then a full state read in pages of
``--page`` keys, and the whole stream read in pages as long.

    .venv/bin/python -m bench.mapsredis [--writes 20000] [--keys 10000] [--page 100] [--concurrency 100]
"""

from __future__ import annotations

import argparse
import time
import uuid
from typing import Any, Callable, Generator

import attrs
from twisted.internet import defer, task

from httpstream.engines.maps import MapSettings
from httpstream.engines.redis import RedisBroker, RedisMapBroker, RedisShard
from httpstream.values import Publication

PAYLOAD = b'{"x":' + b'"' + b"a" * 80 + b'"}'


@defer.inlineCallbacks
def rate(count: int, concurrency: int, call: Callable[[int], Any]) -> Generator[Any, Any, float]:
    started, n = time.perf_counter(), 0
    while n < count:
        batch = range(n, min(n + concurrency, count))
        yield defer.gatherResults([call(i) for i in batch])
        n += len(batch)
    return count / (time.perf_counter() - started)


@defer.inlineCallbacks
def main(reactor: Any, options: argparse.Namespace) -> Generator[Any, Any, None]:
    shard = RedisShard(reactor, options.redis, prefix=f"bench-maps-{uuid.uuid4().hex[:8]}", db=9)
    shard.startService()
    yield shard.whenReady()
    maps, broker = RedisMapBroker(shard, reactor), RedisBroker(shard)
    settings = MapSettings(positioned=True, streamSize=options.writes, streamTTL=600)
    try:
        written = yield rate(options.writes, options.concurrency, lambda i: maps.publish(
            "w", f"k{i % options.keys:06d}", Publication(PAYLOAD), settings))
        published = yield rate(options.writes, options.concurrency, lambda i: broker.publish(
            "h", Publication(PAYLOAD), options.writes, 600, 3600))
        print(f"map writes: {written:,.0f}/s; history publishes (yardstick): {published:,.0f}/s "
              f"({options.writes} each, {options.concurrency} in flight)")
        started, cursor, pages, keys = time.perf_counter(), "", 0, 0
        while True:
            page = yield maps.readState("w", settings, cursor, options.page)
            pages, keys, cursor = pages + 1, keys + len(page.publications), page.cursor
            if not cursor:
                break
        elapsed = time.perf_counter() - started
        print(f"state read: {keys} keys in {pages} pages of {options.page}: {elapsed * 1000:.0f} ms "
              f"({elapsed / pages * 1000:.2f} ms a page)")
        started, since, read = time.perf_counter(), None, 0
        while True:
            stream = yield maps.readStream("w", settings, since, options.page)
            if not stream.publications:
                break
            read, since = read + len(stream.publications), attrs.evolve(stream.position, offset=stream.publications[-1].offset)
        elapsed = time.perf_counter() - started
        print(f"stream read: {read} writes in pages of {options.page}: {elapsed * 1000:.0f} ms")
    finally:
        for channel in ("w", "h"):
            yield maps.clear(channel)
            yield broker.removeHistory(channel)
        yield shard.execute("DEL", f"{shard.prefix}.history.meta.h")
        yield shard.stopService()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis", default="127.0.0.1:6379")
    parser.add_argument("--writes", type=int, default=20000)
    parser.add_argument("--keys", type=int, default=10000)
    parser.add_argument("--page", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=100)
    task.react(main, [parser.parse_args()])
