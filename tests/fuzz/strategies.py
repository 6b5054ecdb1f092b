"""
Hypothesis strategies for client input, built from the protocol schema (httpstream/protocol/client.proto through
the generated descriptors of C{client_pb2}).

Three grades of input, so that the deep paths are reached as well as the decoder's edges:

  - valid commands: every field of every request of C{Command}, of the right type and range, with channel names
    and tokens drawn from what the fuzz node (L{tests.fuzz.harness}) knows, so commands get past the checks;
  - almost valid: a valid command with one thing wrong (a field of another JSON type, an unknown field, no id, a
    huge id; for Protobuf a field with the wrong wire type, a cut, a flipped byte);
  - random: JSON values and bytes.

Frames join one to four commands the way each codec does, with the framing edges (empty frame, blank lines,
invalid UTF-8, truncated and overlong varints).
"""

from __future__ import annotations

from typing import Any

import json

import jwt
import orjson
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from hypothesis import strategies as st

from httpstream.protocol import client_pb2, encode_varint, varint_delimit

SECRET = "fuzz-secret-that-is-long-enough-for-hs256-and-hs512-keys-0123456789"
USER = "u1"

# The channels the fuzz node's config makes interesting (see harness.SETTINGS), and some that are not.
CHANNELS = [
    "chat",
    "hist:room",
    "pres:room",
    "$hist:private",
    "hist:limited#u1",
    "hist:limited#u2,u1",
    "unknown:ns",
    "bad channel\x00",
    "x" * 300,
    "#u1",
]


def _token(**claims: Any) -> str:
    return jwt.encode(claims, SECRET, algorithm="HS256")


def tokens(now: float) -> list[str]:
    """Connection and subscription tokens of every kind the client code distinguishes, for a node at C{now}."""
    later, earlier = int(now) + 3600, int(now) - 3600
    return [
        "",
        _token(sub=USER, exp=later),
        _token(sub=USER, exp=later, info={"a": 1}, meta={"m": True}, channels=["chat"],
               subs={"hist:room": {"data": {"d": 1}, "override": {"presence": {"value": True}}}}),
        _token(sub=USER, exp=earlier),
        _token(sub=USER, exp=later, expire_at=earlier),
        _token(sub="", exp=later),
        _token(sub="u2", exp=later),
        _token(sub=USER, channel="$hist:private", exp=later, info={"x": 1}),
        _token(sub=USER, channel="$hist:private", exp=later, expire_at=int(now) + 60),
        _token(sub=USER, channel="chat", exp=later),
        _token(sub=USER, channel="$hist:private", exp=earlier),
        _token(sub=USER, channel="$hist:private", exp=later, override={"join_leave": {"value": True}}),
        "not.a.token",
        jwt.encode({"sub": USER}, "another-secret-of-sufficient-length-0123456789", algorithm="HS256"),
    ]


NOW = 1_700_000_000.0
TOKENS = tokens(NOW)

# -- JSON values

_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    _json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=5,
)


def json_bytes(value: Any) -> bytes:
    # The stdlib's encoder: orjson refuses integers past 64 bits, which a client may well send.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


# -- Valid commands from the schema

_INT_RANGES = {
    FieldDescriptor.CPPTYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.CPPTYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.CPPTYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.CPPTYPE_UINT64: (0, 2**64 - 1),
}


def _int_values(lo: int, hi: int) -> st.SearchStrategy[int]:
    # Mostly small numbers (where the logic is), with the edges of the range.
    edges = [v for v in (lo, hi, 0, 1, -1, 2, 10, 300, 301, 2**31 - 1, 2**31, 2**53 + 1, 2**63) if lo <= v <= hi]
    return st.integers(min_value=max(lo, -3), max_value=min(hi, 12)) | st.sampled_from(edges) | st.integers(lo, hi)


def mostly(usual: st.SearchStrategy[Any], rare: st.SearchStrategy[Any], odds: int = 5) -> st.SearchStrategy[Any]:
    """C{usual}, and C{rare} once in C{odds} draws."""
    return st.integers(0, odds - 1).flatmap(lambda n: rare if n == 0 else usual)


def _string_for(name: str) -> st.SearchStrategy[str]:
    if name in ("channel", "key"):
        return mostly(st.sampled_from(CHANNELS), st.text(max_size=12))
    if name == "token":
        return mostly(st.sampled_from(TOKENS), st.text(max_size=12))
    if name == "delta":
        return st.sampled_from(["", "", "", "fossil", "fossil", "gzip"]) | st.text(max_size=6)
    if name == "epoch":
        return st.sampled_from(["", "epoch"]) | st.text(max_size=8)
    return st.text(max_size=12)


def _data_values(protocol: str) -> st.SearchStrategy[bytes]:
    valid = json_values.map(json_bytes)
    if protocol == "json":
        return valid
    return valid | st.binary(max_size=16)


def _scalar(fd: FieldDescriptor, protocol: str) -> st.SearchStrategy[Any]:
    cpp = fd.cpp_type
    if cpp == FieldDescriptor.CPPTYPE_STRING:
        if fd.type == FieldDescriptor.TYPE_BYTES:
            return _data_values(protocol)
        return _string_for(fd.name)
    if cpp == FieldDescriptor.CPPTYPE_BOOL:
        return st.booleans()
    if cpp == FieldDescriptor.CPPTYPE_MESSAGE:
        return message(fd.message_type, protocol)
    return _int_values(*_INT_RANGES[cpp])


def _field(fd: FieldDescriptor, protocol: str) -> st.SearchStrategy[Any]:
    if fd.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE and fd.message_type.GetOptions().map_entry:
        entry = fd.message_type
        return st.dictionaries(
            _scalar(entry.fields_by_name["key"], protocol), _scalar(entry.fields_by_name["value"], protocol),
            max_size=2,
        )
    if fd.is_repeated:
        return st.lists(_scalar(fd, protocol), max_size=2)
    return _scalar(fd, protocol)


_REQUIRED = {
    "SubscribeRequest": ("channel",),
    "UnsubscribeRequest": ("channel",),
    "PublishRequest": ("channel", "data"),
    "PresenceRequest": ("channel",),
    "PresenceStatsRequest": ("channel",),
    "HistoryRequest": ("channel",),
    "SubRefreshRequest": ("channel", "token"),
    "RefreshRequest": ("token",),
}
_messages: dict[tuple[str, str], st.SearchStrategy[dict[str, Any]]] = {}
_building: set[tuple[str, str]] = set()


def message(descriptor: Descriptor, protocol: str) -> st.SearchStrategy[dict[str, Any]]:
    """A valid message of C{descriptor} as the codec's dict: any subset of its fields, each well typed."""
    key = (descriptor.full_name, protocol)
    if key in _building:
        # A message that holds itself (FilterNode.nodes): drawn lazily, so the strategy is finite.
        return st.deferred(lambda: _messages[key])
    if key not in _messages:
        _building.add(key)
        fields = {fd.name: _field(fd, protocol) for fd in descriptor.fields}
        _building.discard(key)
        # What a command cannot do without is always there (an almost valid command may lack it).
        required = {name: fields.pop(name) for name in _REQUIRED.get(descriptor.name, ())}
        _messages[key] = st.fixed_dictionaries(required, optional=fields)
    return _messages[key]


# Connect and ping last: hypothesis favours the first choices, and after the connect they only end the connection.
_REQUESTS = sorted(
    (fd for fd in client_pb2.Command.DESCRIPTOR.fields if fd.name != "id"),
    key=lambda fd: fd.name in ("connect", "ping"),
)
METHODS = [fd.name for fd in _REQUESTS]


@st.composite
def commands(draw: st.DrawFn, protocol: str) -> dict[str, Any]:
    """A valid command: an id (0 now and then: a pong, or a send) and one request (rarely none, or two)."""
    command: dict[str, Any] = {}
    commandID = draw(st.sampled_from([0, 2**32 - 1]) if draw(st.integers(0, 19)) == 0 else st.integers(1, 6))
    if commandID:
        command["id"] = commandID
    count = draw(st.sampled_from([1] * 18 + [0, 2]))
    for fd in draw(st.lists(st.sampled_from(_REQUESTS), min_size=count, max_size=count, unique=True)):
        command[fd.name] = draw(message(fd.message_type, protocol))
    return command


def connect_command(protocol: str) -> st.SearchStrategy[dict[str, Any]]:
    """A connect as an SDK sends it first (id 1), any token."""
    return st.builds(
        lambda request: {"id": 1, "connect": request}, message(client_pb2.ConnectRequest.DESCRIPTOR, protocol)
    )


# -- Encoding


def _to_json_object(value: Any) -> Any:
    """A codec dict as the JSON object an SDK sends: bytes fields are embedded JSON."""
    if isinstance(value, dict):
        return {k: _to_json_object(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_json_object(v) for v in value]
    if isinstance(value, bytes):
        return orjson.loads(value)
    return value


def encode_json(command: dict[str, Any]) -> bytes:
    return json_bytes(_to_json_object(command))


def encode_protobuf(command: dict[str, Any]) -> bytes:
    return client_pb2.Command(**command).SerializeToString()


# -- Almost valid


def _slots(obj: Any, path: tuple = ()) -> list[tuple]:
    """Every place in a JSON object a value sits at (key paths), the top object excluded."""
    found = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            found.append(path + (key,))
            found.extend(_slots(value, path + (key,)))
    elif isinstance(obj, list):
        for index, value in enumerate(obj):
            found.append(path + (index,))
            found.extend(_slots(value, path + (index,)))
    return found


@st.composite
def almost_valid_json(draw: st.DrawFn) -> bytes:
    """A valid JSON command with one thing wrong."""
    obj = _to_json_object(draw(commands("json")))
    slots = _slots(obj)
    how = draw(st.sampled_from(["retype", "retype", "unknown", "drop", "id"]))
    if how == "retype" and slots:
        *parents, last = draw(st.sampled_from(slots))
        container = obj
        for key in parents:
            container = container[key]
        container[last] = draw(json_values)
    elif how == "unknown":
        target = obj
        if slots:
            path = draw(st.sampled_from(slots))
            candidate = obj
            for key in path:
                candidate = candidate[key]
            if isinstance(candidate, dict):
                target = candidate
        target[draw(st.text(max_size=8))] = draw(json_values)
    elif how == "drop" and slots:
        *parents, last = draw(st.sampled_from(slots))
        container = obj
        for key in parents:
            container = container[key]
        del container[last]
    else:
        obj["id"] = draw(st.sampled_from([-1, 2**32, 2**64, 10**30, "1", 1.5, None, True]))
    return json_bytes(obj)


@st.composite
def almost_valid_protobuf(draw: st.DrawFn) -> bytes:
    """A valid Protobuf command, serialised, with one thing wrong."""
    data = bytearray(encode_protobuf(draw(commands("protobuf"))))
    how = draw(st.sampled_from(["field", "field", "cut", "flip", "insert"]))
    if how == "field":
        # A field of any number with any wire type (3, 4: groups; 6, 7: invalid) and a few bytes of payload.
        number = draw(st.integers(1, 20) | st.integers(1, 2**29 - 1))
        wire = draw(st.integers(0, 7))
        payload = draw(st.binary(max_size=10))
        at = draw(st.sampled_from([0, len(data)]))
        data[at:at] = encode_varint((number << 3) | wire) + payload
    elif how == "cut" and data:
        del data[draw(st.integers(0, len(data) - 1)):]
    elif how == "flip" and data:
        at = draw(st.integers(0, len(data) - 1))
        data[at] ^= draw(st.integers(1, 255))
    else:
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.binary(min_size=1, max_size=4))
    return bytes(data)


# -- Frames


def _weighted(valid: st.SearchStrategy[bytes], almost: st.SearchStrategy[bytes],
              random: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    # Mostly valid commands, so that a connection lives long enough to reach the deep paths; a bad one ends it.
    return st.integers(0, 19).flatmap(lambda n: valid if n < 17 else almost if n < 19 else random)


def _json_message() -> st.SearchStrategy[bytes]:
    return _weighted(
        commands("json").map(encode_json),
        almost_valid_json(),
        json_values.map(json_bytes) | st.binary(max_size=24),
    )


def _protobuf_message() -> st.SearchStrategy[bytes]:
    return _weighted(commands("protobuf").map(encode_protobuf), almost_valid_protobuf(), st.binary(max_size=24))


_NO_EDGE = [None] * 14

@st.composite
def json_frames(draw: st.DrawFn) -> bytes:
    """One frame of JSON commands: newline-joined, with the framing edges now and then."""
    messages = draw(st.lists(_json_message(), min_size=1, max_size=3))
    frame = b"\n".join(messages)
    edge = draw(st.sampled_from(_NO_EDGE + ["empty", "newline", "blank", "utf8", "trailing"]))
    if edge == "empty":
        return b""
    if edge == "newline":
        return frame + b"\n"
    if edge == "trailing":
        return frame + b"\n\n"
    if edge == "blank":
        return frame + b"\n\n" + messages[0]
    if edge == "utf8":
        at = draw(st.integers(0, len(frame)))
        return frame[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80\x80"])) + frame[at:]
    return frame


@st.composite
def protobuf_frames(draw: st.DrawFn) -> bytes:
    """One frame of varint-delimited Protobuf commands, with the framing edges now and then."""
    messages = draw(st.lists(_protobuf_message(), min_size=1, max_size=3))
    frame = varint_delimit(messages)
    edge = draw(st.sampled_from(_NO_EDGE + ["empty", "truncated", "overlong", "huge", "cut", "zero"]))
    if edge == "empty":
        return b""
    if edge == "truncated":
        return frame + b"\x80"
    if edge == "overlong":
        return frame + b"\xff" * 11
    if edge == "huge":
        return frame + encode_varint(draw(st.integers(65537, 2**64 - 1)))
    if edge == "cut" and frame:
        return frame[: draw(st.integers(0, len(frame) - 1))]
    if edge == "zero":
        return frame + b"\x00"
    return frame


def frames(protocol: str) -> st.SearchStrategy[bytes]:
    return json_frames() if protocol == "json" else protobuf_frames()


def connect_frame(protocol: str) -> st.SearchStrategy[bytes]:
    """A frame whose first command is a connect (a valid one, mostly), then maybe more commands."""
    encode = encode_json if protocol == "json" else encode_protobuf
    first = connect_command(protocol).map(encode)
    if protocol == "json":
        return st.builds(lambda c, rest: b"\n".join([c, *rest]), first, st.lists(_json_message(), max_size=2))
    return st.builds(lambda c, rest: varint_delimit([c, *rest]), first, st.lists(_protobuf_message(), max_size=2))
