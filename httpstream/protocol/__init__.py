# -*- test-case-name: tests.protocol.test_protocol_codec -*-
"""
Client protocol v2 on the wire: the schema, the JSON and Protobuf codecs,
varint framing, and publication tags filters (L{httpstream.protocol.tagsfilter}).

Everything above this package handles commands and replies as plain dicts (see
L{httpstream.protocol.codec}); pick a codec with C{JSON} or C{PROTOBUF}. The Command schema the JSON reader
checks against is L{httpstream.protocol.schema}'s.

May import: nothing of httpstream (only protobuf and orjson): the bottom layer.
"""

from .codec import (
    DEFAULT_MAX_SIZE,
    JSON,
    PROTOBUF,
    Codec,
    JSONCodec,
    ProtobufCodec,
    decode_emulation,
)
from .errors import DecodeError, EncodeError, FrameTooLarge
from .framing import VarintReader, encode_varint, split_varint, varint_delimit


def codecFor(protocol: str) -> Codec:
    """The codec for a transport's protocol name, "json" or "protobuf"."""
    return PROTOBUF if protocol == "protobuf" else JSON


__all__ = [
    "codecFor",
    "JSON",
    "PROTOBUF",
    "Codec",
    "JSONCodec",
    "ProtobufCodec",
    "DEFAULT_MAX_SIZE",
    "decode_emulation",
    "DecodeError",
    "EncodeError",
    "FrameTooLarge",
    "VarintReader",
    "encode_varint",
    "split_varint",
    "varint_delimit",
]
