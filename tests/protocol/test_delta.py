"""
Tests for L{httpstream.protocol.delta}: fossil deltas that round-trip through our own decoder, through the official JS SDK's
decoder (tests/sdk/fossil_apply.mjs, Protobuf and JSON codecs) and through centrifuge-python's, that are compact
for similar payloads, and that stay valid UTF-8 for JSON when asked.
"""

from __future__ import annotations

import base64
import json
import random
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from centrifuge.codecs import _JsonCodec, _ProtobufCodec
from centrifuge.fossil import apply_delta as pythonSdkApply
from centrifuge.fossil import checksum as pythonSdkChecksum
from hypothesis import given, settings
from hypothesis import strategies as st

from httpstream.protocol.delta import FossilDeltaError, _putInt, applyFossilDelta, checksum, fossilDelta, publicationDelta
from tests import test_sdk_http_stream

# The SDK harness's fixture "node": the node executable, with tests/sdk's node_modules installed (npm ci) once.
node = test_sdk_http_stream.node

SCRIPT = Path(__file__).parent.parent / "sdk" / "fossil_apply.mjs"


def overheadBound(target: bytes) -> int:
    """
    The size of the delta that inserts all of C{target}: no delta is larger (a copy is taken only when it saves).
    """
    return 2 * len(_putInt(len(target))) + 2 + len(target) + len(_putInt(checksum(target))) + 1


# An edit of a payload: where (taken modulo the length), how many bytes go, what comes in.
edits = st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 40), st.binary(max_size=40)), max_size=8)


def applyEdits(data: bytes, changes: list[tuple[int, int, bytes]]) -> bytes:
    for position, deleted, inserted in changes:
        position %= len(data) + 1
        data = data[:position] + inserted + data[position + deleted :]
    return data


@st.composite
def similarPairs(draw: Callable[..., Any], maxSize: int = 4000) -> tuple[bytes, bytes, list[tuple[int, int, bytes]]]:
    """
    A payload, the same payload edited in a few places, and the edits.
    """
    source = draw(st.binary(max_size=maxSize))
    changes = draw(edits)
    return source, applyEdits(source, changes), changes


# Text with one-, two-, three- and four-byte UTF-8 characters, in runs long enough to share blocks.
alphabet = list('abc {}":,0123456789') + ["é", "ü", "ж", "☃", "€", "中", "文", "😀", "𝄞"]
# st.text, not a list of sampled characters joined: one draw per string instead of one per character, which made
# these tests the slowest of the suite.
texts = st.text(alphabet=alphabet, max_size=600)


@st.composite
def similarTexts(draw: Callable[..., Any]) -> tuple[str, str]:
    source = draw(texts)
    target = source
    for _ in range(draw(st.integers(0, 6))):
        position = draw(st.integers(0, len(target)))
        deleted = draw(st.integers(0, 8))
        target = target[:position] + draw(st.text(alphabet=alphabet, max_size=12)) + target[position + deleted :]
    return source, target


# Numbers JavaScript reads back exactly (the JS SDK's JSON.parse is compared with Python's json.loads).
numbers = st.integers(-(2**53), 2**53) | st.floats(min_value=-1e15, max_value=1e15, allow_nan=False)
jsonValues = st.recursive(
    st.none() | st.booleans() | numbers | texts,
    lambda children: st.lists(children, max_size=6) | st.dictionaries(texts, children, max_size=6),
    max_leaves=30,
)


@st.composite
def similarDocuments(draw: Callable[..., Any]) -> tuple[bytes, bytes]:
    """
    Two JSON documents (as UTF-8 JSON text, non-ASCII kept): a list of records, then one record's field changed.
    """
    records = draw(st.lists(st.dictionaries(texts, jsonValues, min_size=1, max_size=4), min_size=1, max_size=8))
    before = json.dumps(records, ensure_ascii=False).encode()
    record = draw(st.sampled_from(records))
    record[draw(st.sampled_from(sorted(record)))] = draw(jsonValues)
    return before, json.dumps(records, ensure_ascii=False).encode()


# -- The format ------------------------------------------------------------------------------------------------------


def test_integerDigits() -> None:
    """
    Integers are base 64, most significant digit first, with the digits 0-9 A-Z _ a-z ~.
    """
    assert [_putInt(value) for value in (0, 9, 10, 35, 36, 37, 62, 63, 64, 4095, 4096)] == [
        b"0",
        b"9",
        b"A",
        b"Z",
        b"_",
        b"a",
        b"z",
        b"~",
        b"10",
        b"~~",
        b"100",
    ]


def test_checksumKnown() -> None:
    """
    The checksum sums big-endian 32-bit words, the last padded with zero bytes.
    """
    assert checksum(b"") == 0
    assert checksum(b"hell") == 0x68656C6C
    assert checksum(b"hello") == 0x68656C6C + 0x6F000000
    assert checksum(b"\xff" * 8) == (2 * 0xFFFFFFFF) & 0xFFFFFFFF


@given(st.binary(max_size=200))
def test_checksumAsSdk(data: bytes) -> None:
    assert checksum(data) == pythonSdkChecksum(data)


def test_knownDeltas() -> None:
    """
    The deltas of the simple cases, byte for byte: nothing to make, a source too short to copy from, identical
    payloads (one copy), a changed tail (a copy then an insert).
    """
    assert fossilDelta(b"", b"") == b"0\n0;"
    assert fossilDelta(b"something", b"") == b"0\n0;"
    assert fossilDelta(b"", b"abc") == b"3\n3:abc" + _putInt(checksum(b"abc")) + b";"
    assert fossilDelta(b"short", b"shorter") == b"7\n7:shorter" + _putInt(checksum(b"shorter")) + b";"
    payload = bytes(range(64))
    assert fossilDelta(payload, payload) == b"10\n10@0," + _putInt(checksum(payload)) + b";"
    source = b"abcdefghijklmnopqrstuvwxyz1234567890"
    target = b"abcdefghijklmnopqrstuvwxyz0987654321"
    assert fossilDelta(source, target) == b"_\nQ@0,A:0987654321" + _putInt(checksum(target)) + b";"


# -- Round trips with our decoder ------------------------------------------------------------------------------------


@given(st.binary(max_size=3000), st.binary(max_size=3000))
def test_roundTripUnrelated(source: bytes, target: bytes) -> None:
    delta = fossilDelta(source, target)
    assert applyFossilDelta(source, delta) == target
    assert len(delta) <= overheadBound(target)


@given(similarPairs())
def test_roundTripSimilar(pair: tuple[bytes, bytes, list[tuple[int, int, bytes]]]) -> None:
    """
    Similar payloads make small deltas: about what the edits inserted, plus a few dozen bytes per edit (the bytes
    between an edit and the next source block are inserted, and the commands' digits).
    """
    source, target, changes = pair
    delta = fossilDelta(source, target)
    assert applyFossilDelta(source, delta) == target
    assert len(delta) <= overheadBound(target)
    if len(source) >= 16:
        assert len(delta) <= 32 + sum(len(inserted) + 48 for _, _, inserted in changes)


@given(st.binary(max_size=3000))
def test_identical(payload: bytes) -> None:
    """
    A payload against itself is one copy (when it is at least a block long), whatever it holds.
    """
    delta = fossilDelta(payload, payload)
    assert applyFossilDelta(payload, delta) == payload
    if len(payload) >= 16:
        assert delta.count(b"@") == 1 and b":" not in delta


@given(st.binary(max_size=500))
def test_emptySourceOrTarget(payload: bytes) -> None:
    assert applyFossilDelta(b"", fossilDelta(b"", payload)) == payload
    assert applyFossilDelta(payload, fossilDelta(payload, b"")) == b""


@given(st.binary(min_size=16, max_size=300), st.integers(1, 20))
def test_repetitive(unit: bytes, times: int) -> None:
    """
    Repeated content (many source blocks with the same bytes) copies from the source, and overlapping.
    """
    source = unit * times
    target = unit * (times * 2) + unit[:7]
    delta = fossilDelta(source, target)
    assert applyFossilDelta(source, delta) == target
    assert len(delta) < 64


def test_largePayloads() -> None:
    """
    A 1 MB payload with a few edits gives a delta of a few dozen bytes; an unrelated one still round-trips.
    """
    rng = random.Random(7)
    source = rng.randbytes(1 << 20)
    target = applyEdits(source, [(1000, 5, b"hello"), (500_000, 0, b"inserted"), (900_000, 300, b"")])
    delta = fossilDelta(source, target)
    assert applyFossilDelta(source, delta) == target
    assert len(delta) < 120
    unrelated = rng.randbytes(1 << 20)
    assert applyFossilDelta(source, fossilDelta(source, unrelated)) == unrelated
    doubled = source + source
    delta = fossilDelta(source, doubled)
    assert applyFossilDelta(source, delta) == doubled
    assert len(delta) < 40


def twoKilobyteDocuments() -> tuple[bytes, bytes]:
    """
    A 2 KB JSON document and the same document with one field changed.
    """
    document = {
        "id": "order-1234",
        "status": "open",
        "items": [
            {"sku": f"SKU-{n:04d}", "name": f"Product number {n}", "qty": n % 5 + 1, "price": n * 1.25}
            for n in range(27)
        ],
    }
    before = json.dumps(document).encode()
    document["items"][11]["qty"] = 42
    after = json.dumps(document).encode()
    assert 2000 <= len(before) <= 2200
    return before, after


def test_sizeOneChangedField() -> None:
    """
    For a 2 KB JSON document with one changed field the delta is a few dozen bytes, a fraction of the payload.
    """
    before, after = twoKilobyteDocuments()
    for utf8 in (False, True):
        delta = fossilDelta(before, after, utf8=utf8)
        assert applyFossilDelta(before, delta) == after
        assert len(delta) < 64 and len(delta) * 20 < len(after), (len(delta), delta)


# -- UTF-8 -----------------------------------------------------------------------------------------------------------


def test_utf8Needed() -> None:
    """
    A byte delta can cut a multi-byte character (ä and ö share their first byte, which the copy takes), leaving a
    delta that is not UTF-8 and cannot go in a JSON string; with utf8=True the insert takes the whole character.
    """
    prefix = b'{"name":"' + b"x" * 40
    suffix = b'","more":"' + b"y" * 40 + b'"}'
    source = prefix + "ä".encode() + suffix
    target = prefix + "ö".encode() + suffix
    raw = fossilDelta(source, target)
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    aligned = fossilDelta(source, target, utf8=True)
    assert "ö" in aligned.decode("utf-8")
    assert applyFossilDelta(source, aligned) == target


@given(similarTexts())
def test_utf8Deltas(pair: tuple[str, str]) -> None:
    """
    With utf8=True, the delta of a UTF-8 target is UTF-8, whatever the source, and still round-trips.
    """
    source, target = (text.encode() for text in pair)
    delta = fossilDelta(source, target, utf8=True)
    delta.decode("utf-8")
    assert applyFossilDelta(source, delta) == target
    assert len(delta) <= overheadBound(target)


@given(st.binary(max_size=300), texts)
def test_utf8AnySource(source: bytes, target: str) -> None:
    delta = fossilDelta(source, target.encode(), utf8=True)
    delta.decode("utf-8")
    assert applyFossilDelta(source, delta) == target.encode()


# -- Our decoder refuses what does not apply -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "delta",
    [
        b"",  # Nothing.
        b"3\n3:abc",  # No checksum.
        b"3\n3:abc0;",  # Wrong checksum.
        b"3\n3:ab",  # Insert past the end of the delta.
        b"3:abc",  # No newline after the size.
        b"\n0;",  # No size.
        b"2\n3:abc" + _putInt(checksum(b"abc")) + b";",  # Longer than announced.
        b"4\n3:abc" + _putInt(checksum(b"abc")) + b";",  # Shorter than announced.
        b"3\n3@0," + _putInt(checksum(b"abc")) + b";",  # Copy past the end of the source (b"ab").
        b"2\n2@0" + _putInt(checksum(b"ab")) + b";",  # Copy without its comma.
        b"2\n2!ab" + _putInt(checksum(b"ab")) + b";",  # Unknown operator.
        b"2\n2:ab" + _putInt(checksum(b"ab")) + b";trailing",  # Data after the checksum.
    ],
)
def test_applyRejects(delta: bytes) -> None:
    with pytest.raises(FossilDeltaError):
        applyFossilDelta(b"ab", delta)


def test_applyWrongSource() -> None:
    """
    A delta applied to another source than its own fails the checksum rather than producing wrong data.
    """
    source = b"0123456789abcdef" * 4
    delta = fossilDelta(source, source[::-1] + source)
    with pytest.raises(FossilDeltaError, match="checksum"):
        applyFossilDelta(source.upper(), delta)


# -- What a publication carries --------------------------------------------------------------------------------------


def test_publicationDelta() -> None:
    """
    No base: the full payload. A delta not smaller than the payload: the full payload. Else the delta.
    """
    before, after = twoKilobyteDocuments()
    assert publicationDelta(None, after) == (after, False)
    assert publicationDelta(b"", after) == (after, False)
    assert publicationDelta(b"unrelated payload, nothing in common", b"x") == (b"x", False)
    payload, isDelta = publicationDelta(before, after)
    assert isDelta and len(payload) < 64
    assert applyFossilDelta(before, payload) == after
    payload, isDelta = publicationDelta(before, after, utf8=True)
    assert isDelta and applyFossilDelta(before, payload.decode("utf-8").encode()) == after


# -- centrifuge-python's decoder -------------------------------------------------------------------------------------


@given(similarPairs())
def test_pythonSdkSimilar(pair: tuple[bytes, bytes, list[tuple[int, int, bytes]]]) -> None:
    source, target, _ = pair
    assert pythonSdkApply(source, fossilDelta(source, target)) == target


@given(st.binary(max_size=2000), st.binary(max_size=2000))
def test_pythonSdkUnrelated(source: bytes, target: bytes) -> None:
    assert pythonSdkApply(source, fossilDelta(source, target)) == target


@given(similarPairs())
def test_pythonSdkProtobufCodec(pair: tuple[bytes, bytes, list[tuple[int, int, bytes]]]) -> None:
    """
    Through the SDK's Protobuf codec, as its subscription applies a publication with delta true.
    """
    source, target, _ = pair
    publication = SimpleNamespace(delta=True, data=fossilDelta(source, target))
    data, base = _ProtobufCodec.apply_delta_if_needed(source, publication)
    assert data == target and base == target


@given(similarDocuments())
def test_pythonSdkJsonCodec(pair: tuple[bytes, bytes]) -> None:
    """
    Through the SDK's JSON codec: the delta travels as a JSON string (utf8=True), the base is the full JSON text.
    """
    before, after = pair
    wire = json.dumps({"data": fossilDelta(before, after, utf8=True).decode("utf-8")}, ensure_ascii=False)
    publication = SimpleNamespace(delta=True, data=json.loads(wire)["data"])
    data, base = _JsonCodec.apply_delta_if_needed(before, publication)
    assert base == after
    assert data == json.loads(after)


def test_pythonSdkLarge() -> None:
    before, after = twoKilobyteDocuments()
    assert pythonSdkApply(before, fossilDelta(before, after)) == after
    rng = random.Random(3)
    source = rng.randbytes(200_000)
    target = applyEdits(source, [(10, 3, b"abc"), (150_000, 0, b"\x00\xff")])
    assert pythonSdkApply(source, fossilDelta(source, target)) == target


# -- The JS SDK's decoder --------------------------------------------------------------------------------------------


class JsDecoder:
    """
    tests/sdk/fossil_apply.mjs, kept running: one request line, one reply line.
    """

    def __init__(self, executable: str) -> None:
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close())
        self._process = subprocess.Popen(
            [executable, str(SCRIPT)],
            cwd=SCRIPT.parent,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )

    def call(self, source: bytes, delta: bytes, mode: str = "protobuf", **extra: Any) -> dict[str, Any]:
        assert self._process.stdin is not None and self._process.stdout is not None
        request = {
            "source_b64": base64.b64encode(source).decode(),
            "delta_b64": base64.b64encode(delta).decode(),
            "mode": mode,
            **extra,
        }
        self._process.stdin.write(json.dumps(request) + "\n")
        self._process.stdin.flush()
        line = self._process.stdout.readline()
        if not line:
            self._stderr.seek(0)
            pytest.fail(f"fossil_apply.mjs ended:\n{self._stderr.read().decode(errors='replace')}")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def apply(self, source: bytes, delta: bytes) -> bytes:
        reply = self.call(source, delta)
        assert reply["ok"], reply
        return base64.b64decode(reply["result_b64"])

    def close(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._stderr.close()


@pytest.fixture(scope="module")
def js(node: str) -> Iterator[JsDecoder]:
    decoder = JsDecoder(node)
    yield decoder
    decoder.close()


@settings(max_examples=150, deadline=None)
@given(pair=similarPairs())
def test_jsSimilar(js: JsDecoder, pair: tuple[bytes, bytes, list[tuple[int, int, bytes]]]) -> None:
    source, target, _ = pair
    assert js.apply(source, fossilDelta(source, target)) == target


@settings(max_examples=100, deadline=None)
@given(source=st.binary(max_size=2000), target=st.binary(max_size=2000))
def test_jsUnrelated(js: JsDecoder, source: bytes, target: bytes) -> None:
    assert js.apply(source, fossilDelta(source, target)) == target


def test_jsEdgeCases(js: JsDecoder) -> None:
    """
    Empty source, empty target, both, identical, too short to copy from, every byte value, large payloads.
    """
    rng = random.Random(11)
    large = rng.randbytes(1 << 20)
    allBytes = bytes(range(256)) * 8
    cases = [
        (b"", b""),
        (b"", b"abc"),
        (b"abc", b""),
        (allBytes, allBytes),
        (b"short", b"shorter"),
        (allBytes, allBytes[::-1]),
        (allBytes, allBytes[100:] + b"\n;:@," + allBytes[:100]),
        (large, applyEdits(large, [(5, 5, b""), (700_000, 0, bytes(range(256)))])),
        (large, large + large),
        (large[:1000], rng.randbytes(300_000)),
        twoKilobyteDocuments(),
    ]
    for source, target in cases:
        assert js.apply(source, fossilDelta(source, target)) == target


def test_jsRejects(js: JsDecoder) -> None:
    """
    The SDK checks the checksum too: a delta against another source is refused (the script reports the error).
    """
    source = b"0123456789abcdef" * 4
    delta = fossilDelta(source, source[::-1] + source)
    reply = js.call(source.upper(), delta)
    assert not reply["ok"] and "checksum" in reply["error"]


@settings(max_examples=100, deadline=None)
@given(pair=similarDocuments(), asciiOnly=st.booleans())
def test_jsJsonCodec(js: JsDecoder, pair: tuple[bytes, bytes], asciiOnly: bool) -> None:
    """
    Through the SDK's JSON codec, with the delta as the JSON string a JSON connection carries (escaped to ASCII or
    not: the string is the same); the app gets the changed document, the SDK keeps its JSON text as the base.
    """
    before, after = pair
    delta = fossilDelta(before, after, utf8=True)
    reply = js.call(before, delta, mode="json", delta_json=json.dumps(delta.decode("utf-8"), ensure_ascii=asciiOnly))
    assert reply["ok"], reply
    assert base64.b64decode(reply["result_b64"]) == after
    assert reply["data"] == json.loads(after)


def test_jsJsonNeedsUtf8(js: JsDecoder) -> None:
    """
    A delta that cuts a character cannot be a JSON string: the SDK could not get it (the script refuses to decode
    it); the aligned one goes through.
    """
    source = ('{"name":"' + "x" * 40 + 'ä","more":"' + "y" * 40 + '"}').encode()
    target = source.replace("ä".encode(), "ö".encode())
    raw = js.call(source, fossilDelta(source, target), mode="json")
    assert not raw["ok"]
    reply = js.call(source, fossilDelta(source, target, utf8=True), mode="json")
    assert reply["ok"] and reply["data"] == json.loads(target)
