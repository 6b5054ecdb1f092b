# -*- test-case-name: tests.serverapi.test_api_maps -*-
"""
The server API's map methods (Centrifugo 6's C{map_publish}, C{map_remove}, C{map_read_state}, C{map_read_stream},
C{map_stats}, C{map_clear}), on map channels only (107 otherwise; 102 for an unknown namespace).

C{tags} of C{map_publish} are stored with the key and go with its updates (and its removal), for tags filters to
select. C{idempotency_key} of C{map_publish} and C{map_remove} makes a retry change nothing: it answers
C{suppressed}, C{suppress_reason} C{"idempotency"}, at the first write's position (kept 5 minutes by the engine). Not served yet: C{stream_data},
C{delta}, C{version}/C{version_epoch} and C{score} (ordered maps, which C{map_read_state}'s C{asc} orders: accepted
and unused).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from httpstream.engines.maps import KEY_MODES, MapUpdateResult
from httpstream.readers import Fields
from httpstream.readers.fields import INT32, UINT64
from httpstream.serverapi.channels import channelOptions
from httpstream.serverapi.errors import ERROR_BAD_REQUEST, APIError
from httpstream.values import Publication, StreamPosition

__all__ = ["MapMethods"]


def _entry(publication: Publication) -> dict[str, Any]:
    """A MapEntry: key, data, tags, offset, removed."""
    entry: dict[str, Any] = {"key": publication.key, "offset": publication.offset}
    if publication.data:
        entry["data"] = publication.data
    if publication.tags:
        entry["tags"] = dict(publication.tags)
    if publication.removed:
        entry["removed"] = True
    return entry


def _updated(result: MapUpdateResult) -> dict[str, Any]:
    answer: dict[str, Any] = result.position.asDict()
    if result.suppressed:
        answer["suppressed"] = True
        answer["suppress_reason"] = result.suppressReason
    return answer


class MapMethods:
    """The map methods of one node's server API."""

    def __init__(self, node: Any) -> None:
        self.node = node

    def _options(self, channel: str) -> Any:
        options = channelOptions(self.node, channel)
        if not options.isMap:
            raise APIError(ERROR_BAD_REQUEST)
        return options

    def publish(self, f: Fields) -> Deferred[dict[str, Any]]:
        channel, key, data = f.string("channel"), f.string("key"), f.payload("data")
        keyMode = f.string("key_mode")
        options = self._options(channel)
        if not key or not data or keyMode not in KEY_MODES:
            raise APIError(ERROR_BAD_REQUEST)
        d: Deferred[MapUpdateResult] = self.node.maps.publish(
            channel, key, data, tags=f.stringMap("tags") or None, options=options, keyMode=keyMode,
            idempotencyKey=f.string("idempotency_key"))
        return d.addCallback(_updated)

    def remove(self, f: Fields) -> Deferred[dict[str, Any]]:
        channel, key = f.string("channel"), f.string("key")
        options = self._options(channel)
        if not key:
            raise APIError(ERROR_BAD_REQUEST)
        d: Deferred[MapUpdateResult] = self.node.maps.remove(
            channel, key, options, idempotencyKey=f.string("idempotency_key"))
        return d.addCallback(_updated)

    def readState(self, f: Fields) -> Deferred[dict[str, Any]]:
        channel = f.string("channel")
        options = self._options(channel)
        limit = f.integer("limit", INT32)
        revisionOffset, revisionEpoch = f.integer("revision_offset", UINT64), f.string("revision_epoch")
        revision = StreamPosition(revisionOffset, revisionEpoch) if (revisionOffset or revisionEpoch) else None
        f.boolean("asc")  # read (a bad value is a bad request) and unused: it orders ordered maps, which are not served
        d: Deferred[Any] = self.node.maps.readState(
            channel, f.string("cursor"), limit if limit > 0 else -1, revision, options, key=f.string("key"))
        return d.addCallback(lambda page: {"entries": [_entry(p) for p in page.publications],
                                           **page.position.asDict(), "cursor": page.cursor})

    def readStream(self, f: Fields) -> Deferred[dict[str, Any]]:
        channel = f.string("channel")
        options = self._options(channel)
        sinceOffset, sinceEpoch = f.integer("since_offset", UINT64), f.string("since_epoch")
        since = StreamPosition(sinceOffset, sinceEpoch) if (sinceOffset or sinceEpoch) else None
        limit = f.integer("limit", INT32)
        d: Deferred[Any] = self.node.maps.readStream(
            channel, since, limit if limit > 0 else -1, options, reverse=f.boolean("reverse"))
        return d.addCallback(lambda page: {"entries": [_entry(p) for p in page.publications],
                                           **page.position.asDict()})

    def stats(self, f: Fields) -> Deferred[dict[str, Any]]:
        channel = f.string("channel")
        self._options(channel)
        d: Deferred[int] = self.node.mapBroker.stats(channel)
        return d.addCallback(lambda keys: {"num_keys": keys})

    def clear(self, f: Fields) -> Deferred[dict[str, Any]]:
        channel = f.string("channel")
        self._options(channel)
        d: Deferred[Any] = self.node.maps.clear(channel)
        return d.addCallback(lambda _: {})
