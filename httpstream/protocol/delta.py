# -*- test-case-name: tests.protocol.test_delta -*-
"""
Fossil deltas: the delta compression of Centrifugo channels (subscribe option C{delta: "fossil"}).

L{fossilDelta} makes a delta turning one payload into the next, L{applyFossilDelta} applies one (the server never
needs to: it is the reference the tests check deltas with, next to the JS SDK's and centrifuge-python's own
decoders), L{publicationDelta} makes what a delta publication carries, with the upstream rule of when a full
payload goes instead.

The format (fossil-scm.org/home/doc/tip/www/delta_format.wiki)
==============================================================

A delta is text where the payloads are::

    <target length> "\\n"  { <count> "@" <source offset> ","  |  <count> ":" <count bytes of the target> }
    <checksum of the target> ";"

Integers are base 64, most significant digit first, with the digits C{0-9 A-Z _ a-z ~} ("0" is zero). A copy
command takes bytes of the source, an insert command carries them; the commands produce the target in order. The
checksum is the sum, modulo 2**32, of the target read as big-endian 32-bit words, the last one padded with zero
bytes. Decoders (the JS SDK's C{applyDelta}, centrifuge-python's C{centrifuge.fossil.apply_delta}, Go's C{fdelta})
check the length and the checksum, so a delta made against the wrong source fails instead of producing garbage.

The encoder follows fossil's (delta_encoder_algorithm.wiki): the source is cut into 16-byte blocks, indexed by
content; every 16-byte window of the target is looked up, a hit is extended forwards and backwards byte by byte,
and the longest extension becomes a copy when it is worth more than the command's own digits. Fossil rolls a hash
over the window and chains blocks in a table; here the index is a dict keyed by the block's bytes (Python hashes a
16-byte slice faster than it can roll a hash byte by byte in bytecode, and an exact key has no false candidates).
The deltas differ byte for byte from Go's C{fdelta.Create} (no two encoders agree), but any decoder accepts both.

How Centrifugo (centrifugal/centrifuge) sends delta publications
=================================================================

Facts from upstream's C{client.go} (C{subscribeCmd}, C{makeRecoveredPubsDeltaFossil},
C{writePublicationUpdatePosition}), C{hub.go} (C{getDeltaPub}, C{broadcastPublication}), C{internal/fossilutf8}
and the JS SDK 5.8 (C{JsonCodec}/C{ProtobufCodec.applyDeltaIfNeeded}, C{Subscription._handlePublication}):

  - Negotiation: C{SubscribeRequest.delta} (field 12) = C{"fossil"}; when the channel's options allow it
    (Centrifugo namespace option C{allowed_delta_types: ["fossil"]}) the server sets C{SubscribeResult.delta}
    (field 13) = true and remembers the subscriber's delta type. Not allowed: C{delta} stays false and everything
    is sent as without delta (the SDKs fall back: JS C{_delta_negotiated}). A value that is no delta type at
    all is a protocol error, disconnect 3501 (centrifugal/centrifuge ``client.go``).
  - A delta publication is an ordinary C{Publication} with C{delta} (field 8) = true and C{data} = the delta,
    made against the full data of the I{previous publication of the channel}; C{offset}, C{info}, C{tags} are
    unchanged. C{delta} false (omitted) means C{data} is the full payload, and becomes the base of the next delta.
    The SDK keeps one base per subscription (the last full value it decoded) and applies each delta to it.
  - Protobuf: C{data} is the raw delta bytes (or the raw full payload).
  - JSON: once delta is negotiated, B{every} publication of that subscription carries C{data} as a JSON
    I{string}, full payloads included: a full payload C{{"a":1}} goes as C{"data":"{\\"a\\":1}"} (the SDK does
    C{JSON.parse(pub.data)} and keeps the UTF-8 bytes of the string as the base), a delta goes as the delta text
    in a JSON string (the SDK applies C{TextEncoder().encode(pub.data)}). Subscribers without delta on the same
    channel still get the plain JSON value. Hence a delta sent over JSON must be valid UTF-8: make it with
    C{fossilDelta(..., utf8=True)}, which keeps every insert to whole characters of the (UTF-8 JSON) target;
    counts stay byte counts. Upstream HEAD does the same after the fact (C{fossilutf8.Align}); older releases
    escaped the raw bytes and so broke deltas that cut a multi-byte character.
  - When the full payload is sent (C{delta} false) instead of a delta:
      - the first publication a subscription receives after subscribing (upstream's per-channel
        C{flagDeltaAllowed} is unset until one full publication went out; it is then set and the following ones
        are deltas);
      - when the publication has no previous one to diff against: the first publication of a stream, or a
        publication not published with delta (the publish API's C{delta: true} or the namespace's
        C{delta_publish: true} ask the broker to hand the previous publication along; without it there is no
        base). In Centrifugo OSS the base is the stream's previous publication, so deltas need history
        (positioning/recovery); PRO's C{keep_latest_publication} keeps one in memory for channels without;
      - when the delta is not smaller than the payload (C{len(delta) >= len(data)}): full, C{delta} false;
      - on a successful recovery (C{SubscribeResult.recovered} true), the recovered publications in the
        subscribe result are: the first one full (a JSON string in JSON), each following one a delta against the
        recovered one before it (or full when that is not smaller); deltas are then allowed right away, so the
        next live publication is a delta against the last recovered one. (The SDK keeps its base across
        resubscribes; the first recovered publication being full, the two cannot disagree);
      - after a failed recovery (C{recovered} false, no publications in the result) or a plain resubscribe: full
        again, as after any subscribe;
      - a gap (an offset beyond the next expected one, a wrong epoch, or too much lag) is never papered over with
        a delta: the subscription gets insufficient state (unsubscribe 2500 and the SDK resubscribes, recovering),
        which starts over as above.
  - The server makes each publication's delta once per channel and (protocol, delta type) and shares the
    encoded push among the subscribers, like the full one.
  - The JS SDK refuses C{delta} together with a client tags filter (the filtered subscriber would miss bases).
"""

from __future__ import annotations

import struct

__all__ = ["FossilDeltaError", "applyFossilDelta", "checksum", "fossilDelta", "publicationDelta"]

Bytes = bytes | bytearray | memoryview

# The block size of the source index, and the window the target is scanned with (fossil's NHASH).
_BLOCK = 16

# How many source blocks with the window's content are tried at one target position (fossil tries 250).
_MAX_CANDIDATES = 250

_DIGITS = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz~"
_DIGIT_VALUES = {digit: value for value, digit in enumerate(_DIGITS)}


class FossilDeltaError(ValueError):
    """
    A delta that is malformed or does not apply to the source it was given.
    """


def _putInt(value: int) -> bytes:
    """
    Encode an unsigned integer in the base-64 digits of the format, most significant first.
    """
    if value == 0:
        return b"0"
    digits = bytearray()
    while value:
        digits.append(_DIGITS[value & 0x3F])
        value >>= 6
    digits.reverse()
    return bytes(digits)


def _intLength(value: int) -> int:
    length = 1
    while value >= 64:
        value >>= 6
        length += 1
    return length


def checksum(data: Bytes) -> int:
    """
    The checksum a delta ends with: the sum of C{data} as big-endian 32-bit words (the last padded with zero
    bytes), modulo 2**32.
    """
    data = bytes(data)
    remainder = len(data) % 4
    if remainder:
        data += b"\0" * (4 - remainder)
    words: tuple[int, ...] = struct.unpack(f">{len(data) // 4}I", data)
    return sum(words) & 0xFFFFFFFF


def _commonLength(a: bytes, aStart: int, b: bytes, bStart: int) -> int:
    """
    The length of the common prefix of C{a[aStart:]} and C{b[bStart:]}, compared a chunk at a time (growing while
    they match, halving on a mismatch) rather than byte by byte.
    """
    limit = min(len(a) - aStart, len(b) - bStart)
    length = 0
    step = 32
    while length < limit:
        size = min(step, limit - length)
        if a[aStart + length : aStart + length + size] == b[bStart + length : bStart + length + size]:
            length += size
            step = min(step * 2, 1 << 16)
        elif size <= 8:
            while a[aStart + length] == b[bStart + length]:
                length += 1
            return length
        else:
            step = size // 2
    return length


def _isCharStart(data: bytes, position: int) -> bool:
    # A UTF-8 continuation byte is 10xxxxxx; the ends of the data are boundaries too.
    return position <= 0 or position >= len(data) or data[position] & 0xC0 != 0x80


def fossilDelta(source: Bytes, target: Bytes, *, utf8: bool = False) -> bytes:
    """
    Make a delta that turns C{source} into C{target}.

    @param utf8: keep every insert command to whole UTF-8 characters of C{target} (copies start and end on
        character boundaries), so that for a C{target} that is valid UTF-8 the delta is valid UTF-8 too and can
        travel as a JSON string. Costs at most a few bytes per copy.
    @return: the delta, always valid; it can be larger than C{target} when the two have little in common (see
        L{publicationDelta}).
    """
    source = bytes(source)
    target = bytes(target)
    sourceLength = len(source)
    targetLength = len(target)
    out = [_putInt(targetLength), b"\n"]

    def insert(start: int, end: int) -> None:
        if end > start:
            out.extend((_putInt(end - start), b":", target[start:end]))

    if sourceLength >= _BLOCK:
        # Source blocks at multiples of the block size, by content: the offsets in increasing order.
        index: dict[bytes, list[int]] = {}
        for offset in range(0, sourceLength - _BLOCK + 1, _BLOCK):
            index.setdefault(source[offset : offset + _BLOCK], []).append(offset)

        base = 0  # The first target byte no command produces yet.
        position = 0  # The start of the window looked up.
        while position + _BLOCK <= targetLength:
            candidates = index.get(target[position : position + _BLOCK])
            if candidates is None:
                position += 1
                continue
            bestCount = 0
            bestTargetStart = bestSourceStart = 0
            for blockStart in candidates[:_MAX_CANDIDATES]:
                # No match from this block (nor from later ones, which have less source after them) can be
                # longer than the source left after it plus the literal bytes before the window.
                if sourceLength - blockStart + min(position - base, blockStart) <= bestCount:
                    break
                forward = _BLOCK + _commonLength(source, blockStart + _BLOCK, target, position + _BLOCK)
                backward = 0
                backLimit = min(position - base, blockStart)
                while backward < backLimit and source[blockStart - backward - 1] == target[position - backward - 1]:
                    backward += 1
                targetStart = position - backward
                sourceStart = blockStart - backward
                targetEnd = position + forward
                if utf8:
                    while targetStart < targetEnd and not _isCharStart(target, targetStart):
                        targetStart += 1
                        sourceStart += 1
                    while targetEnd > targetStart and not _isCharStart(target, targetEnd):
                        targetEnd -= 1
                count = targetEnd - targetStart
                if count <= bestCount:
                    continue
                # What the copy costs: its command, and splitting the insert around it into two.
                literal = targetStart - base
                cost = _intLength(count) + _intLength(sourceStart) + 2 + (_intLength(literal) + 1 if literal else 0)
                if count > cost:
                    bestCount, bestTargetStart, bestSourceStart = count, targetStart, sourceStart
                    if targetEnd == targetLength:
                        break  # Nothing can do better than reaching the end of the target.
            if bestCount:
                insert(base, bestTargetStart)
                out.extend((_putInt(bestCount), b"@", _putInt(bestSourceStart), b","))
                base = position = bestTargetStart + bestCount
            else:
                position += 1
        insert(base, targetLength)
    else:
        # A source shorter than a block has nothing to index: the whole target is inserted.
        insert(0, targetLength)
    out.extend((_putInt(checksum(target)), b";"))
    return b"".join(out)


class _Reader:
    def __init__(self, delta: bytes) -> None:
        self.delta = delta
        self.position = 0

    def integer(self) -> int:
        delta = self.delta
        start = position = self.position
        value = 0
        while position < len(delta) and delta[position] in _DIGIT_VALUES:
            value = (value << 6) | _DIGIT_VALUES[delta[position]]
            position += 1
        if position == start:
            raise FossilDeltaError(f"expected an integer at byte {start}")
        self.position = position
        return value

    def operator(self) -> int:
        if self.position >= len(self.delta):
            raise FossilDeltaError("unterminated delta")
        byte = self.delta[self.position]
        self.position += 1
        return byte


def applyFossilDelta(source: Bytes, delta: Bytes) -> bytes:
    """
    Apply a delta to the source it was made against.

    Stricter than the SDKs' decoders (every integer has a digit, a copy ends with C{","}, nothing follows the
    checksum), so that a delta this accepts, they accept.

    @raise FossilDeltaError: the delta is malformed, does not fit C{source}, or the result fails its length or its
        checksum.
    """
    source = bytes(source)
    reader = _Reader(bytes(delta))
    size = reader.integer()
    if reader.operator() != ord("\n"):
        raise FossilDeltaError("size integer not terminated by a newline")
    out = bytearray()
    while True:
        count = reader.integer()
        operator = reader.operator()
        if operator == ord("@"):
            offset = reader.integer()
            if reader.operator() != ord(","):
                raise FossilDeltaError("copy command not terminated by ','")
            if len(out) + count > size:
                raise FossilDeltaError("copy exceeds the output size")
            if offset + count > len(source):
                raise FossilDeltaError("copy extends past the end of the source")
            out += source[offset : offset + count]
        elif operator == ord(":"):
            if len(out) + count > size:
                raise FossilDeltaError("insert exceeds the output size")
            start = reader.position
            if start + count > len(reader.delta):
                raise FossilDeltaError("insert extends past the end of the delta")
            out += reader.delta[start : start + count]
            reader.position = start + count
        elif operator == ord(";"):
            if reader.position != len(reader.delta):
                raise FossilDeltaError("data after the checksum")
            if len(out) != size:
                raise FossilDeltaError(f"output is {len(out)} bytes, the delta announced {size}")
            if count != checksum(out):
                raise FossilDeltaError("bad checksum")
            return bytes(out)
        else:
            raise FossilDeltaError(f"unknown delta operator {bytes([operator])!r}")


def publicationDelta(previous: Bytes | None, data: Bytes, *, utf8: bool = False) -> tuple[bytes, bool]:
    """
    What a publication's C{data} and C{delta} are for a subscriber with delta negotiated, the way upstream
    decides: the delta against C{previous} when there is one and it is smaller than C{data}, else C{data} itself.

    @param previous: the full data of the channel's previous publication, or L{None} when there is no base (the
        caller also passes L{None} for the first publication after subscribing: see the module docstring).
    @param utf8: for JSON subscribers (see L{fossilDelta}). The caller then sends the result as a JSON string
        (C{payload.decode("utf-8")}), full payload or delta alike.
    @return: C{(payload, isDelta)}.
    """
    data = bytes(data)
    if previous is None:
        return data, False
    patch = fossilDelta(previous, data, utf8=utf8)
    if len(patch) >= len(data):
        return data, False
    return patch, True
