# -*- test-case-name: tests.transports.test_deflate,tests.transports.test_websocket_compression -*-
"""
WebSocket permessage-deflate (RFC 7692) as Centrifugo negotiates it (C{websocket_compression}): always with no
context takeover either way, at C{websocket_compression_level}, messages of C{websocket_compression_min_size}
bytes or fewer sent as they are.

Why no context takeover, as Centrifugo (its gorilla/websocket fork supports nothing else): with it every message
is compressed on its own, so the server keeps no deflate state per connection (a zlib compressor holds some 256 KiB)
and, more to the point here, a message compresses to the same bytes on every connection. The node encodes a
publication once for all its subscribers; L{Deflater} then compresses those bytes once for all of them too (a
small cache of recent messages, the role of Centrifugo's prepared-message cache), instead of once per connection.

Autobahn negotiates the extension and inflates what clients send, but compresses with a fresh zlib compressor per
message at zlib's default level: L{SharedDeflate} takes over its outgoing half (see
C{CentrifugeWebSocketProtocol.onOpen}).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from autobahn.websocket.compress import PerMessageDeflate, PerMessageDeflateOffer, PerMessageDeflateOfferAccept

from httpstream.transports.framecache import FrameCache

# What Z_SYNC_FLUSH and Z_FULL_FLUSH end with (an empty stored block); RFC 7692 7.2.1 takes it off the wire.
_TAIL = b"\x00\x00\xff\xff"

# Go's compress/flate levels, which Centrifugo's key takes: -2 Huffman only, -1 the default, 0 none (stored).
HUFFMAN_ONLY = -2
MIN_LEVEL, MAX_LEVEL = HUFFMAN_ONLY, 9



@dataclass(frozen=True)
class Compression:
    """
    The compression settings of a WebSocket endpoint.

    @ivar level: Go's compress/flate level, C{-2} to C{9}.
    @ivar minSize: messages of this many bytes or fewer go uncompressed (Centrifugo compresses a message only when
        it is longer than C{compression_min_size}); C{0} compresses every one.
    @ivar decompressedLimit: the largest message a client may send, inflated (bytes; C{0}: no limit).
    """

    level: int = 1
    minSize: int = 0
    decompressedLimit: int = 0

    def compresses(self, size: int) -> bool:
        """Whether a message of C{size} bytes goes compressed on a connection that negotiated the extension."""
        return self.minSize <= 0 or size > self.minSize


class Deflater:
    """
    Raw deflate of whole messages at one level and window size, each on its own (no back-references to earlier
    ones), with the results of recent messages kept: what every connection of a process shares.
    """

    def __init__(self, level: int, windowBits: int = zlib.MAX_WBITS) -> None:
        strategy = zlib.Z_HUFFMAN_ONLY if level == HUFFMAN_ONLY else zlib.Z_DEFAULT_STRATEGY
        zlibLevel = zlib.Z_DEFAULT_COMPRESSION if level in (-1, HUFFMAN_ONLY) else level
        # One compressor for every message: a full flush after each empties its history (it is what makes a point
        # where decompression can start afresh), so the output is what a new compressor would give, without the
        # cost of making one (a fresh compressor per message costs about three times as much for small ones).
        self._compressor = zlib.compressobj(zlibLevel, zlib.DEFLATED, -windowBits, 8, strategy)
        # Recently compressed messages kept for the other subscribers of the same publication, as the framings of
        # the uncompressed connections are (the same bounds; a large message is compressed per connection).
        self._recent = FrameCache(self._compress)

    def deflate(self, message: bytes) -> bytes:
        """The message as a permessage-deflate payload (RFC 7692 7.2.1: its final empty stored block removed)."""
        return self._recent.framed(message)

    def _compress(self, message: bytes) -> bytes:
        out = self._compressor.compress(message) + self._compressor.flush(zlib.Z_FULL_FLUSH)
        return out[:-4] if out.endswith(_TAIL) else out


class Deflaters:
    """The L{Deflater}s of one endpoint, one per window size a client asked for (nearly always just 15)."""

    def __init__(self, level: int) -> None:
        self._level = level
        self._byWindow: dict[int, Deflater] = {}

    def forWindow(self, windowBits: int) -> Deflater:
        deflater = self._byWindow.get(windowBits)
        if deflater is None:
            deflater = self._byWindow[windowBits] = Deflater(self._level, windowBits)
        return deflater


class NoContextTakeoverAccept(PerMessageDeflateOfferAccept):
    """
    Autobahn's acceptance of a client's permessage-deflate offer, answered as Centrifugo answers it:
    C{permessage-deflate; server_no_context_takeover; client_no_context_takeover}, whatever the offer asked for
    (plus C{server_max_window_bits=N} when the offer limits the server's window, which is then honoured).
    """

    def get_extension_string(self) -> str:
        extension = "permessage-deflate; server_no_context_takeover"
        if self.offer.request_max_window_bits:
            extension += f"; server_max_window_bits={self.offer.request_max_window_bits}"
        return extension + "; client_no_context_takeover"


def acceptOffer(offers: Sequence[Any], decompressedLimit: int) -> Optional[NoContextTakeoverAccept]:
    """
    Accept the client's first permessage-deflate offer (autobahn also parses offers of extensions Centrifugo does
    not have: those are declined). C{decompressedLimit} bounds what a client's message may inflate to (0: none).
    """
    for offer in offers:
        if isinstance(offer, PerMessageDeflateOffer):
            return NoContextTakeoverAccept(  # type: ignore[no-untyped-call]
                offer,
                request_no_context_takeover=True,
                no_context_takeover=True,
                max_message_size=decompressedLimit or None,
            )
    return None


class SharedDeflate(PerMessageDeflate):
    """
    One connection's permessage-deflate: autobahn's, inflating what the client sends (a fresh inflater per message,
    bounded by the negotiated limit), with outgoing messages deflated by the endpoint's shared L{Deflater}.
    """

    @classmethod
    def taking(cls, negotiated: PerMessageDeflate, deflaters: Deflaters) -> "SharedDeflate":
        """The same negotiated parameters as autobahn's C{negotiated}, compressing through C{deflaters}."""
        shared = cls(
            True,  # the server's side
            True,  # server_no_context_takeover: always negotiated (NoContextTakeoverAccept)
            negotiated.client_no_context_takeover,
            negotiated.server_max_window_bits,
            negotiated.client_max_window_bits,
            negotiated.mem_level,
            negotiated.max_message_size,
        )
        shared._deflater = deflaters.forWindow(negotiated.server_max_window_bits)
        shared._parts = []
        return shared

    _deflater: Deflater
    _parts: list[bytes]

    # Autobahn calls these three for each outgoing message (sendMessage: start, data once, end).
    def start_compress_message(self) -> None:
        self._parts = []

    def compress_message_data(self, data: bytes) -> bytes:
        self._parts.append(data)
        return b""

    def end_compress_message(self) -> bytes:
        message = self._parts[0] if len(self._parts) == 1 else b"".join(self._parts)
        self._parts = []
        return self._deflater.deflate(message)
