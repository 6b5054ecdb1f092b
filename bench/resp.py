"""
Reading Redis replies: httpstream's hand-written RESP2 reader (L{httpstream.engines.redis.resp.ReplyReader}, as it
was before issue 18) against C{hiredis.Reader} (the C parser redis-py and txredisapi use), on the replies the Redis
engine reads under the benchmark's load, in the same run:

  - PUB/SUB messages: C{[b"message", <prefix>.client.<channel>, <offset>:<epoch>:<publication JSON>]} with ~100
    bytes of data, cut into the chunks a socket read returns (one TCP segment, 1460 bytes, when the engine keeps
    up; Twisted's 64 KiB read size when it falls behind);
  - the history script's replies (C{[top, epoch, [[b"<offset>-0", [b"d", publication]], ...]]}, 100 entries);
  - the publish script's short replies (C{[top, epoch]}), one per read: the cost per reply.

Both readers are driven as the connection drives them (feed a chunk, then gets until a reply is incomplete), and
both must return the same replies. Each case is timed C{--repeat} times, alternating the readers; the table shows
the best time of each (the least disturbed by other processes) and their ratio.

    .venv/bin/python -m bench.resp [--messages 20000] [--repeat 7] [--json out.json]
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Callable, Optional

import orjson
import txredisapi

from httpstream.engines.redis.codec import encodePublication
from httpstream.values import ClientInfo, Publication

# What the hand-written reader's gets() returned until a whole reply had been fed.
INCOMPLETE = object()


class _Incomplete(Exception):
    pass


class HandWrittenReader:
    """The hand-written reader measured here (httpstream/engines/redis/resp.py up to issue 18), kept for the record."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._pos = 0

    def feed(self, data: bytes) -> None:
        if self._pos:
            del self._buffer[: self._pos]
            self._pos = 0
        self._buffer += data

    def gets(self) -> Any:
        if self._pos >= len(self._buffer):
            return INCOMPLETE
        try:
            reply, self._pos = self._parse(self._pos)
        except _Incomplete:
            return INCOMPLETE
        return reply

    def _parse(self, pos: int) -> tuple[Any, int]:
        buffer = self._buffer
        end = buffer.find(b"\r\n", pos)
        if end < 0:
            raise _Incomplete()
        kind = buffer[pos]
        line = bytes(buffer[pos + 1 : end])
        pos = end + 2
        try:
            if kind == 0x24:  # $ bulk string
                length = int(line)
                if length < 0:
                    return None, pos
                if len(buffer) < pos + length + 2:
                    raise _Incomplete()
                return bytes(buffer[pos : pos + length]), pos + length + 2
            if kind == 0x2A:  # * array
                count = int(line)
                if count < 0:
                    return None, pos
                items = []
                for _ in range(count):
                    item, pos = self._parse(pos)
                    items.append(item)
                return items, pos
            if kind == 0x3A:  # : integer
                return int(line), pos
        except ValueError:
            raise txredisapi.InvalidResponse(f"invalid reply header {line!r}") from None
        if kind == 0x2B:  # + status
            return line.decode("utf-8", "replace"), pos
        if kind == 0x2D:  # - error
            return txredisapi.ResponseError(line.decode("utf-8", "replace")), pos
        raise txredisapi.InvalidResponse(f"unknown reply type {bytes([kind])!r}")


def hiredisReader() -> Any:
    import hiredis

    return hiredis.Reader(
        protocolError=txredisapi.InvalidResponse, replyError=txredisapi.ResponseError, notEnoughData=INCOMPLETE
    )


READERS: dict[str, Callable[[], Any]] = {"hand-written": HandWrittenReader, "hiredis": hiredisReader}


# The wire


def bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


def array(*items: bytes) -> bytes:
    return b"*%d\r\n" % len(items) + b"".join(items)


def publication(index: int, size: int = 100) -> bytes:
    """One publication as the engine stores and publishes it: ~C{size} bytes of JSON data, with client info."""
    data = orjson.dumps({"t": 1700000000000 + index, "i": index, "p": "x" * max(0, size - 40)})
    info = ClientInfo(user=f"user{index % 97}", client=f"{index:08x}-7f3c-4b1e-9a52-0c4d1e2f3a4b")
    return encodePublication(Publication(data=data, info=info))


def pubsubWire(messages: int) -> bytes:
    channel = b"httpstream.client.news:sports"
    return b"".join(
        array(bulk(b"message"), bulk(channel), bulk(b"%d:zKoTLxMq:%s" % (i + 1, publication(i))))
        for i in range(messages)
    )


def historyReply(entries: int, top: int) -> bytes:
    items = [
        array(bulk(b"%d-0" % offset), array(bulk(b"d"), bulk(publication(offset))))
        for offset in range(top - entries + 1, top + 1)
    ]
    return array(b":%d\r\n" % top, bulk(b"zKoTLxMq"), array(*items))


def publishReply(top: int) -> bytes:
    return array(b":%d\r\n" % top, bulk(b"zKoTLxMq"))


def chunked(wire: bytes, size: int) -> list[bytes]:
    return [wire[i : i + size] for i in range(0, len(wire), size)]


def cases(messages: int) -> list[tuple[str, list[bytes], int]]:
    """(name, the chunks one read each, the replies in them)."""
    pubsub = pubsubWire(messages)
    histories = max(1, messages // 100)
    return [
        ("PUB/SUB messages, 1460-byte reads", chunked(pubsub, 1460), messages),
        ("PUB/SUB messages, 64 KiB reads", chunked(pubsub, 65536), messages),
        ("history replies (100 entries), 64 KiB reads",
         [chunk for i in range(histories) for chunk in chunked(historyReply(100, 1000 + i), 65536)], histories),
        ("publish replies, one per read", [publishReply(i + 1) for i in range(messages)], messages),
    ]


# Measuring


def drive(reader: Any, chunks: list[bytes]) -> list[Any]:
    """Feed each chunk and take every whole reply, as the connection does."""
    replies = []
    append = replies.append
    for chunk in chunks:
        reader.feed(chunk)
        while (reply := reader.gets()) is not INCOMPLETE:
            append(reply)
    return replies


def normalized(replies: list[Any]) -> list[Any]:
    """The replies with status strings as bytes (hiredis does not tell a status from a bulk string)."""

    def one(value: Any) -> Any:
        if isinstance(value, list):
            return [one(item) for item in value]
        return value.encode() if isinstance(value, str) else value

    return [one(reply) for reply in replies]


def measure(chunks: list[bytes], repeat: int) -> dict[str, float]:
    """Best seconds per reader, the readers alternating; checks they return the same replies."""
    results = {name: normalized(drive(make(), chunks)) for name, make in READERS.items()}
    first = next(iter(results.values()))
    for name, replies in results.items():
        if replies != first:
            raise SystemExit(f"bench.resp: {name} read other replies than {next(iter(results))}")
    best = {name: float("inf") for name in READERS}
    for _ in range(repeat):
        for name, make in READERS.items():
            reader = make()
            started = time.perf_counter()
            drive(reader, chunks)
            best[name] = min(best[name], time.perf_counter() - started)
    return best


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| replies | bytes / reply | hand-written µs / reply | hiredis µs / reply | hand-written ÷ hiredis |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['case']} | {row['bytes_per_reply']:.0f} | {row['hand-written']:.2f} | {row['hiredis']:.2f} "
            f"| {row['ratio']:.1f}× |"
        )
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.resp", description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20000, help="PUB/SUB messages and publish replies")
    parser.add_argument("--repeat", type=int, default=7, help="timings of each reader per case (the best is kept)")
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args(argv)
    rows = []
    for name, chunks, replies in cases(args.messages):
        best = measure(chunks, args.repeat)
        rows.append({
            "case": name,
            "replies": replies,
            "bytes_per_reply": sum(map(len, chunks)) / replies,
            **{reader: seconds * 1e6 / replies for reader, seconds in best.items()},
            "ratio": best["hand-written"] / best["hiredis"],
        })
    print(table(rows))
    if args.json:
        with open(args.json, "wb") as out:
            out.write(orjson.dumps({"args": vars(args), "rows": rows}, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
