"""
permessage-deflate's parts, in memory: the shared L{Deflater} (each message on its own, at the configured level,
the same bytes a fresh compressor gives, recent results kept), the decision per message size, the acceptance of a
client's offer as Centrifugo answers it, and the configuration keys' bounds.
"""

from __future__ import annotations

import zlib

import orjson
import pytest
from autobahn.websocket.compress import PerMessageDeflate, PerMessageDeflateOffer
from autobahn.websocket.compress_base import PerMessageCompressOffer

from httpstream.config import ConfigError, config_from_dict
from httpstream.transports.deflate import Compression, Deflater, Deflaters, SharedDeflate, acceptOffer
from httpstream.web.app import websocketCompression

TAIL = b"\x00\x00\xff\xff"

# A publication as the node encodes it: repetitive enough to compress, different at every level.
MESSAGE = orjson.dumps(
    {"push": {"channel": "news", "pub": {"data": [
        {"id": i, "text": f"item {i} of the news feed", "score": i * i % 97} for i in range(200)
    ]}}}
)


def inflate(payload: bytes, windowBits: int = 15) -> bytes:
    """What a client with no context takeover does with one message (RFC 7692 7.2.2)."""
    return zlib.decompressobj(-windowBits).decompress(payload + TAIL)


def freshDeflate(message: bytes, level: int, windowBits: int = 15) -> bytes:
    """A new zlib compressor for the one message, flushed and trimmed as RFC 7692 7.2.1 says."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, -windowBits)
    out = compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(TAIL)
    return out[:-4]


@pytest.mark.parametrize("level", [-2, -1, 0, 1, 5, 9])
def test_eachMessageInflatesOnItsOwn(level: int) -> None:
    """
    Every message, at every level Centrifugo accepts, inflates with a new inflater (nothing refers back to an
    earlier message), the empty stored block that ends it taken off.
    """
    deflater = Deflater(level)
    messages = [MESSAGE, b"", b"x", MESSAGE[::-1], MESSAGE]
    for message in messages:
        payload = deflater.deflate(message)
        assert not payload.endswith(TAIL) or payload == b""
        assert inflate(payload) == message


@pytest.mark.parametrize("level", [0, 1, 6, 9])
def test_sameBytesAsAFreshCompressor(level: int) -> None:
    """
    The one compressor reused with a full flush between messages gives what a compressor made for each message
    would, so any connection may be sent any connection's compression of the same bytes.
    """
    deflater = Deflater(level)
    deflater.deflate(b"an earlier message " * 50)
    assert deflater.deflate(MESSAGE) == freshDeflate(MESSAGE, level)


def test_levelHonoured() -> None:
    """Level 0 stores, 9 compresses harder than 1, -2 codes without matches, -1 is zlib's default (6)."""
    sizes = {level: len(Deflater(level).deflate(MESSAGE)) for level in (-2, -1, 0, 1, 9)}
    assert sizes[0] > len(MESSAGE) > sizes[-2] > sizes[1] > sizes[9]
    assert Deflater(-1).deflate(MESSAGE) == freshDeflate(MESSAGE, 6)


def test_windowBits() -> None:
    """A client that limits the server's window gets messages its smaller inflater can read."""
    deflater = Deflaters(1).forWindow(9)
    assert Deflaters(1).forWindow(9) is not deflater
    payload = deflater.deflate(MESSAGE * 4)
    assert inflate(payload, 9) == MESSAGE * 4


def test_recentKept() -> None:
    """
    The bytes of a publication met again (the next subscriber's copy, equal but not the same object) are not
    compressed again; after many others they are, with the same result.
    """
    deflater = Deflater(1)
    first = deflater.deflate(MESSAGE)
    assert deflater.deflate(bytes(bytearray(MESSAGE))) is first
    for i in range(300):
        deflater.deflate(MESSAGE + str(i).encode())
    again = deflater.deflate(MESSAGE)
    assert again == first and again is not first


def test_largeMessagesNotKept() -> None:
    """A message over 64 KiB is compressed each time, never kept."""
    deflater = Deflater(1)
    large = MESSAGE * 7
    assert len(large) > 64 << 10
    first = deflater.deflate(large)
    second = deflater.deflate(large)
    assert first == second and first is not second
    assert inflate(first) == large


@pytest.mark.parametrize(
    "minSize,size,compressed",
    [(0, 0, True), (0, 1, True), (100, 100, False), (100, 101, True), (100, 5, False)],
)
def test_compressesAboveMinSize(minSize: int, size: int, compressed: bool) -> None:
    """Centrifugo compresses a message only when it is longer than compression_min_size (0: every one)."""
    assert Compression(minSize=minSize).compresses(size) is compressed


def test_acceptAnswersAsCentrifugo() -> None:
    """
    A deflate offer is accepted with no context takeover either way, the header Centrifugo sends; a limit on the
    server's window is honoured and said; offers of other extensions are declined.
    """
    plain = PerMessageDeflateOffer.parse({"client_max_window_bits": [True]})
    accept = acceptOffer([plain], 4096)
    assert accept is not None
    assert accept.get_extension_string() == (
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    )
    negotiated = PerMessageDeflate.create_from_offer_accept(True, accept)
    assert (negotiated.server_no_context_takeover, negotiated.client_no_context_takeover) == (True, True)
    assert negotiated.max_message_size == 4096
    assert PerMessageDeflate.create_from_offer_accept(True, acceptOffer([plain], 0)).max_message_size is None

    limited = PerMessageDeflateOffer.parse({"server_max_window_bits": ["10"]})
    accept = acceptOffer([limited], 0)
    assert accept is not None
    assert accept.get_extension_string() == (
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=10; client_no_context_takeover"
    )
    assert acceptOffer([PerMessageCompressOffer()], 0) is None
    assert acceptOffer([], 0) is None


def test_sharedDeflateSendsTheDeflatersBytes() -> None:
    """The connection's compressor hands autobahn the shared deflater's result for the whole message."""
    accept = acceptOffer([PerMessageDeflateOffer.parse({"server_max_window_bits": ["12"]})], 0)
    deflaters = Deflaters(1)
    shared = SharedDeflate.taking(PerMessageDeflate.create_from_offer_accept(True, accept), deflaters)
    shared.start_compress_message()
    out = shared.compress_message_data(MESSAGE) + shared.end_compress_message()
    assert out is deflaters.forWindow(12).deflate(MESSAGE)
    assert inflate(out, 12) == MESSAGE


def test_configuration() -> None:
    """
    The keys under their v6 names; a level outside Go's -2..9 is refused; the default inflated limit is 10 times
    the wire limit, and compression off gives no settings.
    """
    config, warnings = config_from_dict(
        {"websocket": {"compression": True, "compression_level": -2, "compression_min_size": 512,
                       "message_size_limit": 1000}}
    )
    assert warnings == []
    assert websocketCompression(config) == Compression(level=-2, minSize=512, decompressedLimit=10000)
    config, _ = config_from_dict({"websocket_compression": True, "websocket_decompressed_message_size_limit": 77})
    assert websocketCompression(config) == Compression(level=1, minSize=0, decompressedLimit=77)
    assert websocketCompression(config_from_dict({})[0]) is None
    for level in (-3, 10):
        with pytest.raises(ConfigError, match="compression_level"):
            config_from_dict({"websocket_compression_level": level})
