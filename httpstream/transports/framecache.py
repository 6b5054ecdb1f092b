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


class FrameCache:
    """
    C{frame(message)} for each message, kept for the messages written lately (bounded in entries and in bytes).
    """

    def __init__(self, frame: Callable[[bytes], bytes], entries: int = ENTRIES, size: int = BYTES) -> None:
        self._frame = frame
        self._entries = entries
        self._size = size
        self._recent: dict[bytes, bytes] = {}
        self._bytes = 0

    def framed(self, message: bytes) -> bytes:
        """The wire bytes of C{message} written alone."""
        if len(message) > LARGEST:
            return self._frame(message)
        recent = self._recent
        wire = recent.get(message)
        if wire is None:
            wire = recent[message] = self._frame(message)
            self._bytes += len(message) + len(wire)
            # Oldest first (a dict keeps insertion order): those messages have reached their connections.
            while len(recent) > self._entries or self._bytes > self._size:
                oldest = next(iter(recent))
                self._bytes -= len(oldest) + len(recent.pop(oldest))
        return wire

    def __len__(self) -> int:
        return len(self._recent)
