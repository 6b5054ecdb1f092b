# -*- test-case-name: tests.client.test_client_maps,tests.serverapi.test_api_maps -*-
"""
The node's map channels: writes and reads of keyed state through its L{IMapBroker}, each channel's namespace
options turned into the broker's L{MapSettings}. Used by clients (map subscribe, map publish) and the server API.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Protocol

from twisted.internet.defer import Deferred

from httpstream.config import ChannelOptions
from httpstream.engines.maps import IMapBroker, MapSettings, MapStateResult, MapStreamResult, MapUpdateResult
from httpstream.policy.channels import ChannelError, ChannelRules
from httpstream.protocol import codes
from httpstream.values import ClientInfo, Publication, StreamPosition

__all__ = ["DEFAULT_STREAM_SIZE", "DEFAULT_STREAM_TTL", "MapHost", "NodeMaps", "mapSettings", "metaTTL"]

# Centrifuge's defaults for a positioned map channel's stream.
DEFAULT_STREAM_SIZE = 100
DEFAULT_STREAM_TTL = 60.0
# The stream an ephemeral channel keeps for itself (never shown to subscribers): it keeps a paged snapshot
# consistent with the writes made while it is read; a paging longer than this many writes starts again (112).
EPHEMERAL_STREAM_SIZE = 1000


def mapSettings(options: ChannelOptions) -> MapSettings:
    """How a map channel with these namespace options is kept."""
    positioned = options.map_mode in ("recoverable", "persistent")
    size = options.map_stream_size or DEFAULT_STREAM_SIZE
    if not positioned:
        size = EPHEMERAL_STREAM_SIZE
    streamTTL = options.map_stream_ttl or DEFAULT_STREAM_TTL
    return MapSettings(positioned=positioned, keyTTL=options.map_key_ttl, streamSize=size, streamTTL=streamTTL,
                       metaTTL=metaTTL(options, streamTTL))


def metaTTL(options: ChannelOptions, streamTTL: float) -> float:
    """
    How long an unused map channel lives (centrifuge's derivation): C{map.meta_ttl} when set; for ever when its
    keys never expire (mode persistent); else ten stream TTLs, and at least the key TTL. An ephemeral channel,
    whose stream is ours alone, is freed as a recoverable one.
    """
    if options.map_meta_ttl:
        return options.map_meta_ttl
    if not options.map_key_ttl:
        return 0.0
    return max(streamTTL * 10, options.map_key_ttl)


def _checkKey(key: str) -> None:
    # Centrifugo refuses an empty key (bad request); here it would also be taken for the first page's cursor.
    if not key:
        raise ChannelError(codes.ERROR_BAD_REQUEST)


class MapHost(Protocol):
    """What L{NodeMaps} uses of its node."""

    @property
    def rules(self) -> ChannelRules: ...

    @property
    def mapBroker(self) -> IMapBroker: ...


class NodeMaps:
    """The map channel operations of one node."""

    def __init__(self, node: MapHost) -> None:
        self._node = node

    def options(self, channel: str, options: Optional[ChannelOptions] = None) -> ChannelOptions:
        """
        C{channel}'s options, checked to be a map channel's.

        @raise ChannelError: 102/107 as for any channel; 107 when its namespace is not a map one.
        """
        if options is None:
            options = self._node.rules.options(channel)
        if not options.isMap:
            raise ChannelError(codes.ERROR_BAD_REQUEST)
        return options

    def publish(self, channel: str, key: str, data: bytes, info: Optional[ClientInfo] = None,
                tags: Optional[dict[str, str]] = None, options: Optional[ChannelOptions] = None,
                keyMode: str = "", idempotencyKey: str = "") -> Deferred[MapUpdateResult]:
        """
        Set C{key} of map channel C{channel} (once per C{idempotencyKey}: L{IMapBroker.publish}).
        @raise ChannelError: not a (known) map channel, or no key.
        """
        options = self.options(channel, options)
        _checkKey(key)
        publication = Publication(data, info=info, tags=tags)
        return self._node.mapBroker.publish(channel, key, publication, mapSettings(options), keyMode, idempotencyKey)

    def remove(self, channel: str, key: str, options: Optional[ChannelOptions] = None,
               idempotencyKey: str = "", tags: Optional[Mapping[str, str]] = None) -> Deferred[MapUpdateResult]:
        """
        Remove C{key} of map channel C{channel} (its removal with C{tags}, else the key's own).
        @raise ChannelError: not a (known) map channel, or no key.
        """
        options = self.options(channel, options)
        _checkKey(key)
        return self._node.mapBroker.remove(channel, key, mapSettings(options), dict(tags) if tags else None,
                                           idempotencyKey=idempotencyKey)

    def readState(self, channel: str, cursor: str = "", limit: int = -1, revision: Optional[StreamPosition] = None,
                  options: Optional[ChannelOptions] = None, key: str = "") -> Deferred[MapStateResult]:
        options = self.options(channel, options)
        return self._node.mapBroker.readState(channel, mapSettings(options), cursor, limit, revision, key)

    def readStream(self, channel: str, since: Optional[StreamPosition] = None, limit: int = -1,
                   options: Optional[ChannelOptions] = None, reverse: bool = False) -> Deferred[MapStreamResult]:
        options = self.options(channel, options)
        return self._node.mapBroker.readStream(channel, mapSettings(options), since, limit, reverse)

    def clear(self, channel: str) -> Deferred[Any]:
        self.options(channel)
        return self._node.mapBroker.clear(channel)
