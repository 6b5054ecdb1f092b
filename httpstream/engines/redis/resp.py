# -*- test-case-name: tests.engines.test_engine_redis,tests.fuzz.test_fuzz_redis -*-
"""
RESP2, the Redis wire format: replies read incrementally by hiredis's C parser, and commands written.

txredisapi's own parser takes a reactor turn for every bulk string after the first in a TCP chunk (three per
PUB/SUB message); the connection's protocols read a whole chunk in one go with L{ReplyReader}. It was a hand-written
parser until issue 18: hiredis reads the benchmark's PUB/SUB messages 6-9 times faster and history replies ~11 times
faster (C{python -m bench.resp}, bench/README.md).

What it gives: bulk strings as bytes (status replies too: C{b"OK"}), integers as ints, nil as None, arrays as
lists; an error reply as a C{txredisapi.ResponseError} value (txredisapi raises it to the caller, and the link turns
it into L{httpstream.engines.redis.errors.RedisReplyError}; txredisapi's EVALSHA retry needs its own type); bytes
that are not RESP raise C{txredisapi.InvalidResponse} (the connection is then closed: the reader cannot resync).
"""

from __future__ import annotations

from typing import Union

import hiredis
import txredisapi

__all__ = ["INCOMPLETE", "ReplyReader", "encodeCommand"]

# What gets() returns until a whole reply has been fed (None is a reply: a nil bulk string).
INCOMPLETE = object()


def ReplyReader() -> hiredis.Reader:
    """A new incremental reader: C{feed(bytes)}, then C{gets()} replies until it returns L{INCOMPLETE}."""
    return hiredis.Reader(
        protocolError=txredisapi.InvalidResponse,
        replyError=txredisapi.ResponseError,
        notEnoughData=INCOMPLETE,
    )


def encodeCommand(*args: Union[bytes, str, int]) -> bytes:
    """One command as Redis reads it: an array of bulk strings (text as UTF-8, integers in decimal)."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        value = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(value), value))
    return b"".join(parts)
