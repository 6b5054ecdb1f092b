# -*- test-case-name: tests.protocol.test_protocol_framing -*-
"""
Varint length-delimited framing for the protobuf protocol.

Every protobuf message on the wire (command, reply, push, ping) is prefixed with
its length as an unsigned LEB128 varint, even when it is alone in a frame; an
empty message (ping/pong) is the single byte C{0x00}.

The protobuf runtime has no public decoder that resumes on a partial frame, and
an HTTP stream body arrives in arbitrary chunks, hence L{VarintReader}.
"""

from __future__ import annotations

from typing import Iterable

from .errors import DecodeError, FrameTooLarge

__all__ = ["encode_varint", "varint_delimit", "split_varint", "VarintReader"]

# A uint64 needs at most 10 varint bytes; anything longer is garbage.
_MAX_VARINT_BYTES = 10

# Nearly every length prefix is below 128 (one byte) or below 16384 (two bytes);
# precomputing the one-byte ones skips the loop for pings and small replies.
_SMALL = [bytes((i,)) for i in range(0x80)]


def encode_varint(n: int) -> bytes:
    """
    Encode a non-negative integer as an unsigned LEB128 varint.
    """
    if n < 0x80:
        if n < 0:
            raise ValueError("varint must be non-negative")
        return _SMALL[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def varint_delimit(messages: Iterable[bytes]) -> bytes:
    """
    Join messages into one frame, each prefixed with its varint length.
    """
    parts: list[bytes] = []
    for message in messages:
        parts.append(encode_varint(len(message)))
        parts.append(message)
    return b"".join(parts)


def _read_length(buf: bytes | bytearray, pos: int, end: int) -> tuple[int, int]:
    """
    Read a varint at C{buf[pos:end]}.

    @return: C{(value, position after the varint)}, or C{(-1, pos)} when the
        varint is cut short by C{end}.
    @raise DecodeError: the varint runs past 10 bytes.
    """
    value = 0
    shift = 0
    i = pos
    while i < end:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7
        if i - pos >= _MAX_VARINT_BYTES:
            raise DecodeError("malformed varint length prefix")
    return -1, pos


def _too_large(length: int, max_size: int) -> FrameTooLarge:
    return FrameTooLarge(
        f"message size {length} exceeds the limit of {max_size} bytes"
    )


def split_varint(data: bytes, max_size: int) -> list[bytes]:
    """
    Split a complete buffer (a request body, a WebSocket frame) into messages.

    @raise FrameTooLarge: a length prefix is above C{max_size}.
    @raise DecodeError: a malformed prefix, or the buffer ends inside a message; its C{messages} are the
        whole ones before.
    """
    messages: list[bytes] = []
    pos = 0
    end = len(data)
    try:
        while pos < end:
            b = data[pos]
            if b < 0x80:
                length = b
                start = pos + 1
            else:
                length, start = _read_length(data, pos, end)
                if length < 0:
                    raise DecodeError("truncated varint length prefix")
            if length > max_size:
                raise _too_large(length, max_size)
            pos = start + length
            if pos > end:
                raise DecodeError("truncated message")
            messages.append(data[start:pos])
    except DecodeError as e:
        e.messages = messages
        raise
    return messages


class VarintReader:
    """
    Incremental splitter for a varint-delimited byte stream.

    Feed it chunks as they arrive; it returns the messages completed so far and
    keeps the rest (a partial message or a partial length prefix) for the next
    call.  After it has raised, the stream is unusable: drop the connection.
    """

    __slots__ = ("max_size", "_buf", "_need")

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._buf = bytearray()
        # Total buffered bytes the next message needs (prefix included), once the
        # prefix is known: lets a big message arriving in small chunks skip
        # re-parsing until it is complete.
        self._need = 0

    def feed(self, data: bytes) -> list[bytes]:
        """
        Add a chunk and return the messages it completes, in order.

        @raise FrameTooLarge: a length prefix is above C{max_size}.
        @raise DecodeError: a malformed length prefix.
        """
        buf: bytes | bytearray
        if self._buf:
            self._buf += data
            if len(self._buf) < self._need:
                return []
            buf = self._buf
        else:
            # Common case, nothing pending: slice the chunk directly.
            buf = data
        messages: list[bytes] = []
        max_size = self.max_size
        pos = 0
        end = len(buf)
        need = 0
        while pos < end:
            b = buf[pos]
            if b < 0x80:
                length = b
                start = pos + 1
            else:
                length, start = _read_length(buf, pos, end)
                if length < 0:
                    break
            if length > max_size:
                raise _too_large(length, max_size)
            stop = start + length
            if stop > end:
                need = stop - pos
                break
            messages.append(bytes(buf[start:stop]))
            pos = stop
        if buf is data:
            if pos < end:
                self._buf = bytearray(data[pos:])
        else:
            del self._buf[:pos]
        self._need = need
        return messages

    def pending(self) -> int:
        """
        Number of buffered bytes that do not form a complete message yet.
        """
        return len(self._buf)
