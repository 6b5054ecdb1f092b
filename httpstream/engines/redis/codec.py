# -*- test-case-name: tests.engines.test_engine_redis,tests.fuzz.test_fuzz_redis -*-
"""
What this engine stores in Redis and reads back: publications and client infos as JSON, and the replies of its
scripts, checked.

L{Publication}s and L{ClientInfo}s are stored as JSON (orjson) in the protocol's field names: a C{bytes} field
becomes a string when it is UTF-8 (JSON payloads, the usual case, cost nothing extra) or a one-item list holding
its base64 form, so values come back exactly as they went in. This is the one place they are turned into what
Redis keeps, and back. A PUB/SUB message is C{<offset>:<epoch>:<json>} (C{0::<json>} without history), or a
join or leave: C{j<json>} or C{l<json>}, the client's info.

Anything else under this engine's keys or on its channels is refused with L{RedisReplyError}, never passed on.
"""

from __future__ import annotations

import base64
import math
from typing import Any

import orjson

from httpstream.engines import HistoryResult
from httpstream.engines.redis.errors import RedisReplyError
from httpstream.values import ClientInfo, Publication, StreamPosition

__all__ = [
    "decodeInfo",
    "decodePublication",
    "encodeInfo",
    "encodePublication",
    "milliseconds",
    "readHistoryReply",
    "readInteger",
    "readPresenceReply",
    "readPubSubMessage",
    "readPublishReply",
    "readStreamEntry",
    "readText",
]


_INFO_BYTES = ("conn_info", "chan_info")
_INFO_STRINGS = ("user", "client")
# The other Publication fields a stored one may carry, with their JSON types: checked; delta, key and removed (a map
# channel's writes) are kept, the others left out (a L{Publication} has no place for them; this engine never writes
# them).
_PUBLICATION_SCALARS: dict[str, type] = {
    "time": int, "version": int, "score": int, "delta": bool, "removed": bool, "channel": str, "key": str, "epoch": str,
}


def _packBytes(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value)
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return [base64.b64encode(value).decode("ascii")]
    return value


def _readBytes(value: Any, what: str) -> bytes:
    if type(value) is str:
        return value.encode("utf-8")
    if type(value) is list and len(value) == 1 and type(value[0]) is str:
        try:
            return base64.b64decode(value[0], validate=True)
        except ValueError:
            pass
    raise RedisReplyError(f"{what}: not bytes as this engine stores them")


def _packInfo(info: ClientInfo) -> dict[str, Any]:
    packed = info.asDict()
    for key in _INFO_BYTES:
        if key in packed:
            packed[key] = _packBytes(packed[key])
    return packed


def _readInfo(value: Any) -> ClientInfo:
    """A stored ClientInfo; fields this version does not know are left out."""
    if type(value) is not dict:
        raise RedisReplyError("client info: not an object")
    info: dict[str, Any] = {}
    for key, item in value.items():
        if key in _INFO_STRINGS:
            if type(item) is not str:
                raise RedisReplyError(f"client info: {key} is not a string")
            info[key] = item
        elif key in _INFO_BYTES:
            info[key] = _readBytes(item, f"client info: {key}")
    return ClientInfo(info.get("user", ""), info.get("client", ""), info.get("conn_info"), info.get("chan_info"))


def _readTags(value: Any) -> dict[str, str]:
    if type(value) is not dict or not all(type(k) is str and type(v) is str for k, v in value.items()):
        raise RedisReplyError("publication: tags are not strings")
    return value


def _json(data: Any, what: str) -> Any:
    if type(data) is not bytes:
        raise RedisReplyError(f"{what}: not a bulk string")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        raise RedisReplyError(f"{what}: not JSON") from None


def encodePublication(publication: Publication) -> bytes:
    """A publication (its C{offset} left out) as stored and published. @raise TypeError: not encodable."""
    packed: dict[str, Any] = {"data": _packBytes(publication.data)}
    if publication.info is not None:
        packed["info"] = _packInfo(publication.info)
    if publication.tags:
        packed["tags"] = dict(publication.tags)
    if publication.delta:
        packed["delta"] = True
    if publication.key:
        packed["key"] = publication.key
    if publication.removed:
        packed["removed"] = True
    return orjson.dumps(packed)


def decodePublication(data: bytes, offset: int = 0) -> Publication:
    """
    The publication L{encodePublication} was given, at C{offset}, its fields checked against the protocol's
    Publication; fields this version does not know are left out.

    @raise RedisReplyError: C{data} is not a publication as this engine stores them.
    """
    stored = _json(data, "publication")
    if type(stored) is not dict or "data" not in stored:
        raise RedisReplyError("publication: not an object with data")
    info, tags, delta, mapKey, removed = None, None, False, "", False
    for key, value in stored.items():
        if key == "prev_data":
            _readBytes(value, f"publication: {key}")
        elif key == "info":
            info = _readInfo(value)
        elif key == "tags":
            tags = _readTags(value)
        elif key in _PUBLICATION_SCALARS:
            if type(value) is not _PUBLICATION_SCALARS[key]:
                raise RedisReplyError(f"publication: {key} of the wrong type")
            if key == "delta":
                delta = bool(value)
            elif key == "key":
                mapKey = str(value)
            elif key == "removed":
                removed = bool(value)
    return Publication(_readBytes(stored["data"], "publication: data"), offset, info, tags, delta, mapKey, removed)


def encodeInfo(info: ClientInfo) -> bytes:
    """A ClientInfo as stored in presence."""
    return orjson.dumps(_packInfo(info))


def decodeInfo(data: bytes) -> ClientInfo:
    """A ClientInfo as stored in presence. @raise RedisReplyError: not one."""
    return _readInfo(_json(data, "client info"))


def readInteger(value: Any, what: str) -> int:
    """
    A non-negative integer reply, or a bulk string of one (what Lua's numbers and strings become).

    @raise RedisReplyError: not one (C{what} names it).
    """
    if type(value) is int and value >= 0:
        return value
    if type(value) is bytes and 0 < len(value) <= 20 and value.isdigit():
        return int(value)
    raise RedisReplyError(f"{what}: not an integer")


def readText(value: Any, what: str) -> str:
    """A bulk string of UTF-8 text. @raise RedisReplyError: not one (C{what} names it)."""
    if type(value) is bytes:
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            pass
    raise RedisReplyError(f"{what}: not UTF-8 text")


def readStreamEntry(entry: Any, what: str) -> Publication:
    """
    One entry of a stream this engine writes, C{[b"<offset>-0", [b"d", publication]]}: the publication at its
    offset.

    @raise RedisReplyError: another shape (C{what} names the stream).
    """
    if type(entry) is not list or len(entry) != 2 or type(entry[0]) is not bytes or type(entry[1]) is not list:
        raise RedisReplyError(f"{what}: not a stream entry")
    entryID, fields = entry
    offset = readInteger(entryID.partition(b"-")[0], f"{what}: entry id")
    payloads = [fields[i + 1] for i in range(0, len(fields) - 1, 2) if fields[i] == b"d"]
    if not payloads:
        raise RedisReplyError(f"{what}: an entry without its publication")
    return decodePublication(payloads[0], offset)


def readPublishReply(reply: Any) -> StreamPosition:
    """The publish script's C{{top, epoch}}. @raise RedisReplyError: another shape."""
    if type(reply) is not list or len(reply) != 2:
        raise RedisReplyError("publish: not a [top, epoch] reply")
    return StreamPosition(readInteger(reply[0], "publish: top"), readText(reply[1], "publish: epoch"))


def readHistoryReply(reply: Any) -> HistoryResult:
    """
    The history script's C{{top, epoch, entries}}, each entry C{[b"<offset>-0", [b"d", publication]]}.

    @raise RedisReplyError: another shape.
    """
    if type(reply) is not list or len(reply) != 3 or type(reply[2]) is not list:
        raise RedisReplyError("history: not a [top, epoch, entries] reply")
    top, epoch = readInteger(reply[0], "history: top"), readText(reply[1], "history: epoch")
    return HistoryResult([readStreamEntry(entry, "history") for entry in reply[2]], top, epoch)


def readPresenceReply(reply: Any) -> dict[str, ClientInfo]:
    """HGETALL of a presence hash: client id -> ClientInfo. @raise RedisReplyError: another shape."""
    if type(reply) is not list or len(reply) % 2:
        raise RedisReplyError("presence: not a list of pairs")
    return {readText(reply[i], "presence: client id"): decodeInfo(reply[i + 1]) for i in range(0, len(reply), 2)}


def readPubSubMessage(message: bytes) -> tuple[str, Publication]:
    """
    A PUB/SUB publication C{<offset>:<epoch>:<json>}: C{(epoch, publication)}, the publication at its offset (0:
    not stored).

    @raise RedisReplyError: not one.
    """
    offset, _, rest = message.partition(b":")
    epoch, _, payload = rest.partition(b":")
    return readText(epoch, "message: epoch"), decodePublication(payload, readInteger(offset, "message: offset"))


def milliseconds(seconds: float) -> int:
    """A TTL for PEXPIRE: whole milliseconds, at least one (0 would delete the key)."""
    return max(1, math.ceil(seconds * 1000))
