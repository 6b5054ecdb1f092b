# -*- test-case-name: tests.transports.test_framecache -*-
"""
The wire bytes of recent messages in one framing, made once for every connection that writes the same message.

The node encodes a publication once per protocol and variant for all its subscribers (L{httpstream.node.frames});
each subscriber's transport then wraps that message in its framing: an HTTP chunk, an SSE event, a WebSocket frame
(a server's frames are unmasked, so the bytes are the same on every connection). A L{FrameCache} keeps the framing
of the messages written lately, so the second to the last subscriber of a publication write the very bytes the
first one made (gorilla/websocket's C{PreparedMessage}, which Centrifugo uses, plays this part for its WebSocket
connections). It is keyed by the message's bytes, so whatever repeats is framed once (a publication's push, a join,
a ping), and a message only one connection gets costs a look-up and a short stay.

The messages are the node's own objects, so a look-up hashes one at most once (a bytes object keeps its hash) and
finds it by identity. A publication reaches all its local subscribers within a reactor turn, so a few hundred
entries cover many channels publishing at once; a message larger than L{LARGEST} is framed per connection, never
kept (hashing a large reply nobody else gets would cost more than framing it).
"""

from __future__ import annotations

from typing import Callable

__all__ = ["FrameCache", "LARGEST"]

ENTRIES = 256
BYTES = 4 << 20
LARGEST = 64 << 10


class FrameCache(dict[bytes, bytes]):
    """
    The wire bytes of each message written alone, kept for the messages written lately (bounded in entries and in
    bytes).

    C{cache[message]} is the look-up of the hot path, a message of at most L{LARGEST} bytes: a plain dict
    subscript, so a hit (every subscriber of a publication after the first) runs no Python code; a miss frames it
    and keeps it. L{framed} takes a message of any size.
    """

    __slots__ = ("_frame", "_entries", "_size", "_bytes")

    def __init__(self, frame: Callable[[bytes], bytes], entries: int = ENTRIES, size: int = BYTES) -> None:
        super().__init__()
        self._frame = frame
        self._entries = entries
        self._size = size
        self._bytes = 0

    def framed(self, message: bytes) -> bytes:
        """The wire bytes of C{message} written alone."""
        if len(message) > LARGEST:
            return self._frame(message)
        return self[message]

    def __missing__(self, message: bytes) -> bytes:
        wire = self._frame(message)
        if len(message) > LARGEST:
            return wire  # subscripted past the hot path's check: framed, never kept
        self[message] = wire
        self._bytes += len(message) + len(wire)
        # Oldest first (a dict keeps insertion order): those messages have reached their connections.
        while len(self) > self._entries or self._bytes > self._size:
            oldest = next(iter(self))
            self._bytes -= len(oldest) + len(self.pop(oldest))
        return wire
