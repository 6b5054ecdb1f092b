# -*- test-case-name: tests.engines.test_redis_maps -*-
"""
What the map scripts (L{httpstream.engines.redis.mapscripts}) answer, and the map channels' PUB/SUB messages,
read back and checked; publications themselves are L{httpstream.engines.redis.codec}'s. Anything of another shape
is refused with L{RedisReplyError}.
"""

from __future__ import annotations

from typing import Any

import attrs

from httpstream.engines.redis.codec import decodePublication, readInteger, readStreamEntry, readText
from httpstream.engines.redis.errors import RedisReplyError
from httpstream.values import Publication, StreamPosition

__all__ = [
    "MapReply",
    "readMapMessage",
    "readStateReply",
    "readStreamReply",
    "readTouchReply",
    "readWriteReply",
]


@attrs.frozen
class MapReply:
    """
    What every map script answers first.

    @ivar position: the stream's top and epoch after the script.
    @ivar deadline: the earliest deadline of a key left (seconds since the epoch), 0 when none has one.
    """

    position: StreamPosition
    deadline: float


def _deadline(value: Any) -> float:
    """A sorted set score in milliseconds (a bulk string, as Redis formats a double), in seconds."""
    try:
        milliseconds = float(value)
    except (TypeError, ValueError):
        raise RedisReplyError("map: the deadline is not a number") from None
    if not 0 <= milliseconds < float("inf"):
        raise RedisReplyError("map: the deadline is not a time")
    return milliseconds / 1000


def _head(reply: Any, length: int, what: str) -> MapReply:
    if type(reply) is not list or len(reply) != length:
        raise RedisReplyError(f"map {what}: not a reply of {length} items")
    position = StreamPosition(readInteger(reply[0], f"map {what} top"), readText(reply[1], f"map {what} epoch"))
    return MapReply(position, _deadline(reply[2]))


def _stored(value: Any, key: str, what: str) -> Publication:
    """A state value C{<offset>:<publication>}, the publication at its offset (and with its key)."""
    if type(value) is not bytes:
        raise RedisReplyError(f"map {what}: a key without its value")
    offset, _, payload = value.partition(b":")
    publication = decodePublication(payload, readInteger(offset, f"map {what} offset"))
    if publication.key != key or publication.removed:
        raise RedisReplyError(f"map {what}: a value stored under another key")
    return publication


def readWriteReply(reply: Any) -> tuple[MapReply, str]:
    """The write script's C{{top, epoch, deadline, suppress reason}}."""
    head = _head(reply, 4, "write")
    return head, readText(reply[3], "map write reason")


def readStateReply(reply: Any) -> tuple[MapReply, list[Publication]]:
    """The state script's C{{top, epoch, deadline, keys, values}}: the page's publications, in key order."""
    head = _head(reply, 5, "state")
    keys, values = reply[3], reply[4]
    if type(keys) is not list or type(values) is not list or len(keys) != len(values):
        raise RedisReplyError("map state: keys and values do not pair")
    return head, [_stored(value, readText(key, "map state key"), "state") for key, value in zip(keys, values)]


def readStreamReply(reply: Any) -> tuple[MapReply, int, list[Publication]]:
    """
    The stream script's C{{top, epoch, deadline, oldest, entries}}: the oldest offset kept (0: none), and the
    writes read.
    """
    head = _head(reply, 5, "stream")
    if type(reply[3]) is not list or len(reply[3]) > 1 or type(reply[4]) is not list:
        raise RedisReplyError("map stream: not lists of entries")
    oldest = readStreamEntry(reply[3][0], "map stream").offset if reply[3] else 0
    return head, oldest, [readStreamEntry(entry, "map stream") for entry in reply[4]]


def readTouchReply(reply: Any) -> tuple[MapReply, int]:
    """The touch script's C{{top, epoch, deadline, number of keys}}."""
    head = _head(reply, 4, "touch")
    return head, readInteger(reply[3], "map touch count")


def readMapMessage(message: bytes) -> tuple[str, float, Publication]:
    """
    A map channel's PUB/SUB message C{<offset>:<epoch>:<deadline>:<publication>}: C{(epoch, deadline in seconds,
    the publication at its offset)}.
    """
    offset, _, rest = message.partition(b":")
    epoch, _, rest = rest.partition(b":")
    deadline, _, payload = rest.partition(b":")
    publication = decodePublication(payload, readInteger(offset, "map message offset"))
    return readText(epoch, "map message epoch"), _deadline(deadline), publication
