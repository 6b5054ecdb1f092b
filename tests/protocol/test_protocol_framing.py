# -*- test-case-name: tests.protocol.test_protocol_framing -*-
"""
Tests for L{httpstream.protocol.framing}.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from httpstream.protocol import (
    DecodeError,
    FrameTooLarge,
    VarintReader,
    encode_varint,
    split_varint,
    varint_delimit,
)
from httpstream.protocol.framing import _read_length

# The protobuf connect body the JS SDK sends (reference/clients.md).
CONNECT_BODY = bytes.fromhex("08 08 01 22 04 22 02 6a 73")
CONNECT_COMMAND = bytes.fromhex("08 01 22 04 22 02 6a 73")


class EncodeVarintTests(SynchronousTestCase):
    def test_known_values(self) -> None:
        self.assertEqual(encode_varint(0), b"\x00")
        self.assertEqual(encode_varint(1), b"\x01")
        self.assertEqual(encode_varint(127), b"\x7f")
        self.assertEqual(encode_varint(128), b"\x80\x01")
        self.assertEqual(encode_varint(300), b"\xac\x02")
        self.assertEqual(encode_varint(16383), b"\xff\x7f")
        self.assertEqual(encode_varint(16384), b"\x80\x80\x01")
        self.assertEqual(encode_varint(2**64 - 1), b"\xff" * 9 + b"\x01")

    def test_negative(self) -> None:
        self.assertRaises(ValueError, encode_varint, -1)


class VarintDelimitTests(SynchronousTestCase):
    def test_connect_body(self) -> None:
        self.assertEqual(varint_delimit([CONNECT_COMMAND]), CONNECT_BODY)

    def test_ping_is_single_zero_byte(self) -> None:
        self.assertEqual(varint_delimit([b""]), b"\x00")

    def test_several(self) -> None:
        self.assertEqual(
            varint_delimit([b"a", b"", b"x" * 200]),
            b"\x01a\x00\xc8\x01" + b"x" * 200,
        )

    def test_generator_and_empty(self) -> None:
        self.assertEqual(varint_delimit(m for m in [b"ab"]), b"\x02ab")
        self.assertEqual(varint_delimit([]), b"")


class SplitVarintTests(SynchronousTestCase):
    def test_connect_body(self) -> None:
        self.assertEqual(split_varint(CONNECT_BODY, 65536), [CONNECT_COMMAND])

    def test_empty(self) -> None:
        self.assertEqual(split_varint(b"", 10), [])

    def test_pings(self) -> None:
        self.assertEqual(split_varint(b"\x00\x00", 10), [b"", b""])

    def test_truncated_message(self) -> None:
        self.assertRaises(DecodeError, split_varint, CONNECT_BODY[:-1], 65536)

    def test_truncated_prefix(self) -> None:
        self.assertRaises(DecodeError, split_varint, b"\x01a\x80", 65536)

    def test_too_large(self) -> None:
        data = varint_delimit([b"x" * 11])
        self.assertEqual(split_varint(data, 11), [b"x" * 11])
        e = self.assertRaises(FrameTooLarge, split_varint, data, 10)
        self.assertIsInstance(e, DecodeError)

    def test_too_large_checked_before_data(self) -> None:
        # The prefix alone is enough to refuse: no need to wait for the body.
        self.assertRaises(FrameTooLarge, split_varint, encode_varint(70000), 65536)

    def test_malformed_varint(self) -> None:
        e = self.assertRaises(DecodeError, split_varint, b"\xff" * 11, 2**70)
        self.assertNotIsInstance(e, FrameTooLarge)


class VarintReaderTests(SynchronousTestCase):
    def test_whole(self) -> None:
        reader = VarintReader(65536)
        self.assertEqual(reader.feed(CONNECT_BODY), [CONNECT_COMMAND])
        self.assertEqual(reader.pending(), 0)

    def test_byte_by_byte(self) -> None:
        messages = [b"", b"a", b"x" * 300, CONNECT_COMMAND, b"y" * 20000]
        data = varint_delimit(messages)
        reader = VarintReader(65536)
        got: list[bytes] = []
        for i in range(len(data)):
            got.extend(reader.feed(data[i : i + 1]))
        self.assertEqual(got, messages)
        self.assertEqual(reader.pending(), 0)
        for message in got:
            self.assertIsInstance(message, bytes)

    def test_partial_prefix_kept(self) -> None:
        reader = VarintReader(65536)
        data = varint_delimit([b"z" * 300])  # two-byte prefix
        self.assertEqual(reader.feed(data[:1]), [])
        self.assertEqual(reader.pending(), 1)
        self.assertEqual(reader.feed(data[1:2]), [])
        self.assertEqual(reader.feed(data[2:]), [b"z" * 300])

    def test_several_per_chunk_with_leftover(self) -> None:
        reader = VarintReader(65536)
        data = varint_delimit([b"one", b"two", b"three"])
        self.assertEqual(reader.feed(data[:-2]), [b"one", b"two"])
        self.assertEqual(reader.pending(), 6 - 2)
        self.assertEqual(reader.feed(data[-2:] + b"\x00"), [b"three", b""])

    def test_empty_feed(self) -> None:
        reader = VarintReader(10)
        self.assertEqual(reader.feed(b""), [])
        reader.feed(b"\x03a")
        self.assertEqual(reader.feed(b""), [])
        self.assertEqual(reader.feed(b"bc"), [b"abc"])

    def test_too_large(self) -> None:
        reader = VarintReader(10)
        self.assertEqual(reader.feed(b"\x0a"), [])
        reader = VarintReader(10)
        self.assertRaises(FrameTooLarge, reader.feed, b"\x0b")

    def test_too_large_after_good_message(self) -> None:
        reader = VarintReader(10)
        self.assertRaises(FrameTooLarge, reader.feed, b"\x01a\x0b")

    def test_too_large_split_prefix(self) -> None:
        reader = VarintReader(65536)
        prefix = encode_varint(65537)
        self.assertEqual(reader.feed(prefix[:2]), [])
        self.assertRaises(FrameTooLarge, reader.feed, prefix[2:])

    def test_malformed_varint(self) -> None:
        reader = VarintReader(2**70)
        self.assertEqual(reader.feed(b"\xff" * 9), [])
        e = self.assertRaises(DecodeError, reader.feed, b"\xff")
        self.assertNotIsInstance(e, FrameTooLarge)


@settings(database=None)
@given(
    messages=st.lists(st.binary(max_size=400), max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=4000), max_size=10),
)
def test_reader_any_chunking(messages: list[bytes], cuts: list[int]) -> None:
    """
    However the stream is cut into chunks, the reader yields the same messages
    as L{split_varint} on the whole buffer.
    """
    data = varint_delimit(messages)
    assert split_varint(data, 400) == messages
    bounds = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    reader = VarintReader(400)
    got: list[bytes] = []
    for start, stop in zip(bounds, bounds[1:]):
        got.extend(reader.feed(data[start:stop]))
    assert got == messages
    assert reader.pending() == 0


@settings(database=None)
@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_varint_round_trip(n: int) -> None:
    encoded = encode_varint(n)
    assert len(encoded) <= 10
    assert _read_length(encoded + b"tail", 0, len(encoded) + 4) == (n, len(encoded))
    # Cut short: reported as incomplete, not as an error.
    assert _read_length(encoded, 0, len(encoded) - 1) == (-1, 0)
