# -*- test-case-name: tests.protocol.test_protocol_codec -*-
"""
The Command and Reply schemas, compiled from the generated descriptors, and the JSON reader that checks a JSON
command (or, for tests and clients, a reply) against them and turns it into the dict shape of
L{httpstream.protocol.codec}.

Looking fields up in upb descriptors on every command is slow, so each message type is compiled once into
C{{field name: spec}}, a spec being a small frozen value per kind of field.

Imports only the generated C{client_pb2} and the protocol's errors.
"""

from __future__ import annotations

import enum
import re
from typing import Any, Final

import attrs
import orjson
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from . import client_pb2
from .errors import DecodeError

__all__ = ["json_command", "json_connect_request", "json_reply", "is_map", "message_type"]


class _Scalar(enum.Enum):
    """The kinds of field that need no parameters."""

    STRING = enum.auto()
    BYTES = enum.auto()
    BOOL = enum.auto()
    FLOAT = enum.auto()


# Module constants: the readers below compare against them on every field.
_STRING: Final = _Scalar.STRING
_BYTES: Final = _Scalar.BYTES
_BOOL: Final = _Scalar.BOOL
_FLOAT: Final = _Scalar.FLOAT


@attrs.frozen
class _Int:
    """An integer field: its range, and whether a decimal string is accepted (64-bit values in proto3 JSON)."""

    lo: int
    hi: int
    decimalStrings: bool


@attrs.frozen
class _Message:
    schema: _Schema


@attrs.frozen
class _Map:
    value: _Spec


@attrs.frozen
class _List:
    element: _Spec


_Spec = _Scalar | _Int | _Message | _Map | _List
_Schema = dict[str, _Spec]

_RANGES = {
    FieldDescriptor.CPPTYPE_INT32: _Int(-(2**31), 2**31 - 1, False),
    FieldDescriptor.CPPTYPE_UINT32: _Int(0, 2**32 - 1, False),
    # 64-bit values may arrive as decimal strings (proto3 JSON), though the SDKs send numbers.
    FieldDescriptor.CPPTYPE_INT64: _Int(-(2**63), 2**63 - 1, True),
    FieldDescriptor.CPPTYPE_UINT64: _Int(0, 2**64 - 1, True),
    # No enums in the schema; accept their numbers so a future one cannot crash.
    FieldDescriptor.CPPTYPE_ENUM: _Int(-(2**31), 2**31 - 1, False),
}

_DECIMAL = re.compile(r"-?[0-9]+")

_schemas: dict[str, _Schema] = {}


def message_type(fd: FieldDescriptor) -> Descriptor:
    """The descriptor of a message (or map entry) field's type."""
    descriptor = fd.message_type
    # protobuf sets it on every CPPTYPE_MESSAGE field, the only ones asked about.
    assert descriptor is not None, fd.full_name
    return descriptor


def is_map(fd: FieldDescriptor) -> bool:
    """Whether a field is a proto map (a repeated map-entry message on the wire)."""
    return fd.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE and message_type(fd).GetOptions().map_entry


def _schema(descriptor: Descriptor) -> _Schema:
    schema = _schemas.get(descriptor.full_name)
    if schema is None:
        # Registered before it is filled, so recursive messages terminate.
        schema = _schemas[descriptor.full_name] = {}
        for fd in descriptor.fields:
            schema[fd.name] = _field_spec(fd)
    return schema


def _single_spec(fd: FieldDescriptor) -> _Spec:
    cpp = fd.cpp_type
    if cpp == FieldDescriptor.CPPTYPE_STRING:
        if fd.type == FieldDescriptor.TYPE_BYTES:
            return _BYTES
        return _STRING
    if cpp == FieldDescriptor.CPPTYPE_BOOL:
        return _BOOL
    if cpp == FieldDescriptor.CPPTYPE_MESSAGE:
        return _Message(_schema(message_type(fd)))
    if cpp in (FieldDescriptor.CPPTYPE_FLOAT, FieldDescriptor.CPPTYPE_DOUBLE):
        return _FLOAT
    return _RANGES[cpp]


def _field_spec(fd: FieldDescriptor) -> _Spec:
    if is_map(fd):
        # Every map in the schema has string keys, which is all JSON can express without conversions; other key
        # types would need them.
        return _Map(_single_spec(message_type(fd).fields_by_name["value"]))
    if fd.is_repeated:
        return _List(_single_spec(fd))
    return _single_spec(fd)


class _BadField(Exception):
    """
    A type mismatch; C{path} grows as the error unwinds.
    """

    def __init__(self, path: list[str], message: str) -> None:
        self.path = path
        self.message = message


def _json_message(obj: Any, schema: _Schema) -> dict[str, Any]:
    if type(obj) is not dict:
        raise _BadField([], "expected an object")
    out: dict[str, Any] = {}
    for key, value in obj.items():
        spec = schema.get(key)
        if spec is None or value is None:
            continue  # unknown keys and nulls are ignored, as upstream does
        try:
            if type(spec) is _Map:
                if type(value) is not dict:
                    raise _BadField([], "expected an object")
                if value:
                    vspec = spec.value
                    out[key] = {k: _json_value(v, vspec, k) for k, v in value.items()}
            elif type(spec) is _List:
                if type(value) is not list:
                    raise _BadField([], "expected an array")
                if value:
                    espec = spec.element
                    out[key] = [_json_value(v, espec, str(i)) for i, v in enumerate(value)]
            else:
                value = _json_single(value, spec)
                if value or type(spec) is _Message:
                    out[key] = value
        except _BadField as e:
            e.path.append(key)
            raise
    return out


def _json_value(value: Any, spec: _Spec, key: str) -> Any:
    # A map value or list element: protobuf has no null there.
    try:
        if value is None:
            raise _BadField([], "null is not allowed here")
        return _json_single(value, spec)
    except _BadField as e:
        e.path.append(key)
        raise


def _json_single(value: Any, spec: _Spec) -> Any:
    if spec is _STRING:
        if type(value) is not str:
            raise _BadField([], "expected a string")
        return value
    if spec is _BYTES:
        # Raw embedded JSON: any value; keep it as JSON text.
        try:
            return orjson.dumps(value)
        except orjson.JSONEncodeError:
            # orjson reads 1024 levels of nesting but writes only 254: deeper raw JSON is refused as bad input.
            raise _BadField([], "nested too deep") from None
    if type(spec) is _Int:
        t = type(value)
        if t is not int:
            if t is str and spec.decimalStrings and _DECIMAL.fullmatch(value):
                value = int(value)
            else:
                raise _BadField([], "expected an integer")
        if not spec.lo <= value <= spec.hi:
            raise _BadField([], "integer out of range")
        return value
    if spec is _BOOL:
        if type(value) is not bool:
            raise _BadField([], "expected a boolean")
        return value
    if type(spec) is _Message:
        return _json_message(value, spec.schema)
    if spec is _FLOAT:
        if type(value) is float or type(value) is int:
            return float(value)
        raise _BadField([], "expected a number")
    raise AssertionError(f"unexpected spec {spec!r}")  # pragma: no cover


# Through the file descriptor: its message_types_by_name are typed as the descriptor module's Descriptor, which
# the upb class attribute Command.DESCRIPTOR is not (they are the same object).
_COMMAND_SCHEMA = _schema(client_pb2.DESCRIPTOR.message_types_by_name["Command"])
_REPLY_SCHEMA = _schema(client_pb2.DESCRIPTOR.message_types_by_name["Reply"])
_CONNECT_SCHEMA = _schema(client_pb2.DESCRIPTOR.message_types_by_name["ConnectRequest"])


def json_command(line: bytes) -> dict[str, Any]:
    """
    Decode one JSON command.

    @raise DecodeError: not JSON, not an object, or a field of the wrong type (the message names its path).
    """
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as e:
        raise DecodeError(f"invalid JSON: {e}") from None
    if type(obj) is not dict:
        raise DecodeError("command must be a JSON object")
    try:
        return _json_message(obj, _COMMAND_SCHEMA)
    except _BadField as e:
        raise DecodeError(f"{'.'.join(reversed(e.path))}: {e.message}") from None
    except RecursionError:
        # FilterNode nests: orjson reads 512 levels, deeper than this recursive reader can go.
        raise DecodeError("command nested too deep") from None


def json_connect_request(data: bytes) -> dict[str, Any]:
    """
    Decode the bare ConnectRequest a unidirectional client opens with (a request body, C{cf_connect}, a first
    WebSocket message). C{null} is an empty request, as Centrifugo reads it.

    @raise DecodeError: not JSON, neither an object nor C{null}, or a field of the wrong type.
    """
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise DecodeError(f"invalid JSON: {e}") from None
    if obj is None:
        return {}
    try:
        return _json_message(obj, _CONNECT_SCHEMA)
    except _BadField as e:
        raise DecodeError(f"{'.'.join(reversed(e.path)) or 'connect request'}: {e.message}") from None
    except RecursionError:
        raise DecodeError("connect request nested too deep") from None


def json_reply(message: bytes) -> dict[str, Any]:
    """
    Decode one JSON Reply (or bare Push) into the dict shape: the reader a test or a client of this server uses.

    @raise ValueError: not JSON, or not a Reply (the message names the bad field's path).
    """
    try:
        return _json_message(orjson.loads(message), _REPLY_SCHEMA)
    except _BadField as e:
        raise ValueError(f"not a Reply: {'.'.join(reversed(e.path))}: {e.message}") from None
