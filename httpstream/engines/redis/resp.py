# -*- test-case-name: tests.engines.test_engine_redis,tests.fuzz.test_fuzz_redis -*-
"""
RESP2, the Redis reply format, read incrementally.

txredisapi's own parser takes a reactor turn for every bulk string after the first in a TCP chunk (three per
PUB/SUB message); L{ReplyReader} reads a whole chunk in one go, and the connection's protocols use it.
"""

from __future__ import annotations

from typing import Any

import txredisapi

__all__ = ["INCOMPLETE", "ReplyReader"]

# What ReplyReader.gets returns until a whole reply has been fed (None is a reply: a nil bulk string).
INCOMPLETE = object()


class _Incomplete(Exception):
    pass


class ReplyReader:
    """An incremental RESP2 parser: L{feed} bytes, then L{gets} replies until it returns L{INCOMPLETE}."""

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
        except RecursionError:
            # No reply of this engine nests more than three deep.
            raise txredisapi.InvalidResponse("reply nested too deep") from None
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

