# -*- test-case-name: tests.protocol.test_protocol_codec -*-
"""
The JSON and Protobuf codecs of client protocol v2.

The rest of the server never touches protobuf messages or JSON text: commands
and replies are plain dicts keyed by the proto field names (snake_case).  Nested
messages are dicts, maps are dicts, repeated fields are lists, integers are
ints, and every proto C{bytes} field is Python C{bytes}.  For JSON those bytes
are the raw embedded JSON value (Centrifugo never base64-encodes payloads); for
protobuf they are whatever the client sent.

Decoders leave out fields that are absent, null or zero ("", 0, False, empty
list or map), so both give the same dict for the same command.  An empty nested
message is kept as C{{}}: its presence is what matters (C{"ping":{}},
C{"unsubscribe":{}}).

Encoders take the same shape.  Callers put C{id} first (dict order is the JSON
key order) and must not put C{None} in a reply.
"""

from __future__ import annotations

from typing import Any

import orjson
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError as _ProtobufDecodeError
from google.protobuf.message import Message as _Message

from . import client_pb2
from .codes import DISCONNECT_FORCE_RECONNECT, Disconnect
from .errors import DecodeError, EncodeError, FrameTooLarge
from .framing import split_varint
from .schema import is_map, json_command, message_type

__all__ = [
    "JSON",
    "PROTOBUF",
    "JSONCodec",
    "ProtobufCodec",
    "Codec",
    "DEFAULT_MAX_SIZE",
    "decode_emulation",
]

DEFAULT_MAX_SIZE = 65536

# ---------------------------------------------------------------------------
# protobuf message -> dict

_MSG, _MAP, _LIST = range(3)

# FieldDescriptor -> (name, kind, value kind); kind is _MSG, _MAP, _LIST or
# None for a scalar (returned as-is).
_pb_fields: dict[FieldDescriptor, tuple[str, int | None, int | None]] = {}


def _pb_field(fd: FieldDescriptor) -> tuple[str, int | None, int | None]:
    info = _pb_fields.get(fd)
    if info is None:
        if is_map(fd):
            value_fd = message_type(fd).fields_by_name["value"]
            sub = _MSG if value_fd.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE else None
            info = (fd.name, _MAP, sub)
        elif fd.is_repeated:
            sub = _MSG if fd.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE else None
            info = (fd.name, _LIST, sub)
        elif fd.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
            info = (fd.name, _MSG, None)
        else:
            info = (fd.name, None, None)
        _pb_fields[fd] = info
    return info


def _pb_message(msg: _Message) -> dict[str, Any]:
    out: dict[str, Any] = {}
    # ListFields gives only present fields, so zero values never show up; an
    # empty submessage that was sent is present and becomes {}.
    for fd, value in msg.ListFields():
        info = _pb_fields.get(fd) or _pb_field(fd)
        kind = info[1]
        if kind is None:
            out[info[0]] = value
        elif kind == _MSG:
            out[info[0]] = _pb_message(value)
        elif kind == _MAP:
            if info[2] == _MSG:
                out[info[0]] = {k: _pb_message(v) for k, v in value.items()}
            else:
                out[info[0]] = dict(value)
        elif info[2] == _MSG:
            out[info[0]] = [_pb_message(v) for v in value]
        else:
            out[info[0]] = list(value)
    return out


# ---------------------------------------------------------------------------
# dict -> JSON


def _raw_json(value: Any) -> orjson.Fragment:
    """
    orjson C{default}: embed a C{bytes} field as the raw JSON it holds.
    """
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value)
        try:
            orjson.loads(value)
        except orjson.JSONDecodeError:
            raise EncodeError("payload is not valid JSON") from None
        # "\n" delimits messages; valid JSON only has it as whitespace.
        return orjson.Fragment(value.replace(b"\n", b""))
    raise TypeError(f"cannot encode {type(value).__name__}")


# ---------------------------------------------------------------------------
# The codecs


class Codec:
    """
    What both codecs offer; see the module docstring for the dict shape.
    """

    name: str

    def decode_commands(
        self, data: bytes, max_size: int = DEFAULT_MAX_SIZE
    ) -> list[dict[str, Any]]:
        """
        Decode a whole frame or request body of commands.

        @param max_size: the largest single command, in bytes.
        @return: the commands in order; C{[]} for an empty body.
        @raise FrameTooLarge: a command is longer than C{max_size}.
        @raise DecodeError: anything else that is not a valid frame of commands
            (with the good commands before the bad one as its C{commands}).
        """
        raise NotImplementedError()

    def encode_reply(self, reply: dict[str, Any]) -> bytes:
        """
        Encode one Reply (or a bare Push), without framing.

        @raise EncodeError: the reply cannot be represented in this protocol.
        """
        raise NotImplementedError()

    def encode_push(self, push: dict[str, Any], unidirectional: bool = False) -> bytes:
        """
        Encode one Push as its transport carries it: in a Reply's C{push} field, or bare on a unidirectional
        transport (centrifuge's C{encodeReply}: its clients get nothing but pushes, so nothing wraps them).

        @raise EncodeError: the push cannot be represented in this protocol.
        """
        return self.encode_reply(push if unidirectional else {"push": push})

    def encode_disconnect(self, disconnect: Disconnect, unidirectional: bool = False) -> bytes:
        """
        The Disconnect push of C{disconnect}. A code outside the protocol's uint32, or a reason this codec cannot
        encode, is pushed as what a WebSocket close frame gets for a code it cannot carry (3011 "force
        reconnect"), so every SDK reconnects as it would there.
        """
        if 0 <= disconnect.code <= 0xFFFFFFFF:
            try:
                return self.encode_push(
                    {"disconnect": {"code": disconnect.code, "reason": disconnect.reason}}, unidirectional
                )
            except EncodeError:
                pass
        fallback = DISCONNECT_FORCE_RECONNECT
        return self.encode_push({"disconnect": {"code": fallback.code, "reason": fallback.reason}}, unidirectional)


class JSONCodec(Codec):
    """
    JSON: one command per line, exactly one C{\\n} between them and at most one
    trailing C{\\n}; C{bytes} fields are embedded raw JSON.
    """

    name = "json"

    def decode_commands(
        self, data: bytes, max_size: int = DEFAULT_MAX_SIZE
    ) -> list[dict[str, Any]]:
        if not data:
            return []
        if data[-1:] == b"\n":
            data = data[:-1]
        if b"\n" not in data:
            # The usual case: one command per frame / request.
            if not data:
                raise DecodeError("blank line in JSON frame")
            if len(data) > max_size:
                raise FrameTooLarge(
                    f"message size {len(data)} exceeds the limit of {max_size} bytes"
                )
            return [json_command(data)]
        commands: list[dict[str, Any]] = []
        try:
            for line in data.split(b"\n"):
                if not line:
                    raise DecodeError("blank line in JSON frame")
                if len(line) > max_size:
                    raise FrameTooLarge(
                        f"message size {len(line)} exceeds the limit of {max_size} bytes"
                    )
                commands.append(json_command(line))
        except DecodeError as e:
            e.commands = commands
            raise
        return commands

    def encode_reply(self, reply: dict[str, Any]) -> bytes:
        try:
            return orjson.dumps(reply, default=_raw_json)
        except orjson.JSONEncodeError as e:
            if isinstance(e.__cause__, EncodeError):
                raise e.__cause__ from None
            raise EncodeError(str(e)) from None

    def __repr__(self) -> str:
        return "<JSONCodec>"


class ProtobufCodec(Codec):
    """
    Protobuf: varint length-delimited messages; C{bytes} fields are opaque.
    """

    name = "protobuf"

    def decode_commands(
        self, data: bytes, max_size: int = DEFAULT_MAX_SIZE
    ) -> list[dict[str, Any]]:
        parse = client_pb2.Command.FromString
        framing: DecodeError | None = None
        try:
            messages = split_varint(data, max_size)
        except DecodeError as e:
            framing, messages = e, e.messages
        commands: list[dict[str, Any]] = []
        for message in messages:
            try:
                command = parse(message)
            except _ProtobufDecodeError as e:
                error = DecodeError(f"invalid protobuf Command: {e}")
                error.commands = commands
                raise error from None
            commands.append(_pb_message(command))
        if framing is not None:
            framing.commands = commands
            raise framing
        return commands

    def encode_push(self, push: dict[str, Any], unidirectional: bool = False) -> bytes:
        if not unidirectional:
            return self.encode_reply({"push": push})
        try:
            return client_pb2.Push(**push).SerializeToString()
        except (TypeError, ValueError) as e:
            raise EncodeError(f"cannot encode protobuf Push: {e}") from None

    def encode_reply(self, reply: dict[str, Any]) -> bytes:
        # The upb constructor takes nested dicts, lists and maps natively and
        # marks an empty dict's submessage as present ({"publish": {}} ->
        # 42 00), which is exactly what a result with no fields needs.
        try:
            return client_pb2.Reply(**reply).SerializeToString()
        except (TypeError, ValueError) as e:
            raise EncodeError(f"cannot encode protobuf Reply: {e}") from None

    def __repr__(self) -> str:
        return "<ProtobufCodec>"


JSON = JSONCodec()
PROTOBUF = ProtobufCodec()


# ---------------------------------------------------------------------------
# Emulation envelope


def _emulation_field(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if value is None:
        return ""
    if type(value) is not str:
        raise DecodeError(f"{key}: expected a string")
    return value


def decode_emulation(body: bytes, protobuf: bool) -> tuple[str, str, bytes]:
    """
    Decode a POST /emulation body into C{(node, session, data)}.

    C{protobuf} follows the request's Content-Type (exactly
    C{application/octet-stream}).  A protobuf body is a bare EmulationRequest (no
    varint prefix).  A JSON body is C{{"session":..,"node":..,"data":".."}}
    where C{data} is a JSON string holding the newline-joined JSON commands; its
    UTF-8 bytes are returned.  Missing node or session give C{""}.

    @raise DecodeError: the envelope cannot be parsed.
    """
    if protobuf:
        try:
            request = client_pb2.EmulationRequest.FromString(body)
        except _ProtobufDecodeError as e:
            raise DecodeError(f"invalid protobuf EmulationRequest: {e}") from None
        return request.node, request.session, request.data
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise DecodeError(f"invalid JSON: {e}") from None
    if type(obj) is not dict:
        raise DecodeError("emulation request must be a JSON object")
    node = _emulation_field(obj, "node")
    session = _emulation_field(obj, "session")
    data = obj.get("data")
    if type(data) is not str:
        raise DecodeError("data: expected a JSON string of commands")
    # orjson has already rejected lone surrogates, so this cannot fail.
    return node, session, data.encode("utf-8")
