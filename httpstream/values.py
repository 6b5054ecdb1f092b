# -*- test-case-name: tests.test_values -*-
"""
The values that cross the seams between the engines, the node, recovery, the client and the server API: a
L{Publication}, the L{ClientInfo} of whoever published or is present, a L{StreamPosition} in a channel's history
stream, and the L{HistoryResult} of reading one. Frozen, so a value handed to many subscribers (or kept in a
history) cannot be changed by one of them.

Payloads are raw bytes as they travel (raw JSON for JSON clients, whatever a Protobuf client sent otherwise): the
codec embeds them as they are. Each value turns into the protocol's dict form (what the codecs encode) in one place,
its C{asDict}; the Redis engine keeps its own storage form (L{httpstream.engines.redis.codec}).

May import: nothing of httpstream but the bottom layers (attrs only): it sits with L{httpstream.decisions}.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import attrs

__all__ = ["ClientInfo", "HistoryResult", "Publication", "StreamPosition"]


@attrs.frozen
class ClientInfo:
    """Who a connection is, as subscribers see it (the protocol's ClientInfo): in presence, joins, leaves and
    the publications it makes."""

    #: The user id ("" when anonymous).
    user: str = ""
    #: The connection id.
    client: str = ""
    #: The connection's info (raw JSON), or None.
    connInfo: Optional[bytes] = None
    #: The subscription's info (raw JSON), or None.
    chanInfo: Optional[bytes] = None

    def asDict(self) -> dict[str, Any]:
        """The protocol's dict form: C{user} and C{client} always (as Centrifugo sends them), the infos when set."""
        info: dict[str, Any] = {"user": self.user, "client": self.client}
        if self.connInfo is not None:
            info["conn_info"] = self.connInfo
        if self.chanInfo is not None:
            info["chan_info"] = self.chanInfo
        return info


@attrs.frozen
class StreamPosition:
    """A place in a channel's history stream: the offset of a publication (0: before the first) in an epoch (the
    stream's incarnation; "" matches any where a position is asked for)."""

    offset: int = 0
    epoch: str = ""

    def asDict(self) -> dict[str, Any]:
        """The protocol's (and the server API's) C{{"offset", "epoch"}}."""
        return {"offset": self.offset, "epoch": self.epoch}


def _tags(value: Optional[Mapping[str, str]]) -> Mapping[str, str]:
    # A copy the publisher cannot change afterwards; None (no tags) is the empty mapping.
    return dict(value) if value else {}


@attrs.frozen
class Publication:
    """One publication in a channel: what was published, by whom, and its place in the stream."""

    #: The payload (raw JSON for JSON clients; a Fossil delta when L{delta} is set).
    data: bytes
    #: Its offset in the channel's history stream; 0 when it was not stored.
    offset: int = 0
    #: Who published it (a client), or None (the server API).
    info: Optional[ClientInfo] = None
    #: The publisher's tags.
    tags: Mapping[str, str] = attrs.field(factory=dict, converter=_tags, hash=False)
    #: L{data} is a Fossil delta against the previous publication the subscriber received.
    delta: bool = False
    #: The key it sets (or removes) in a map channel ("" in a stream channel).
    key: str = ""
    #: It removes L{key} from the map.
    removed: bool = False

    def asDict(self) -> dict[str, Any]:
        """
        The protocol's dict form, in the key order the JSON codec writes (zero values left out, as the codecs
        leave them out).
        """
        # A map removal (or a map presence entry) has no payload: none is sent, as Centrifugo sends none.
        publication: dict[str, Any] = {"data": self.data} if self.data else {}
        if self.info is not None:
            publication["info"] = self.info.asDict()
        if self.tags:
            publication["tags"] = dict(self.tags)
        if self.offset:
            publication["offset"] = self.offset
        if self.delta:
            publication["delta"] = True
        if self.key:
            publication["key"] = self.key
        if self.removed:
            publication["removed"] = True
        return publication


@attrs.frozen
class HistoryResult:
    """
    The answer to a history query (L{httpstream.interfaces.IHistory.history}): the publications the filter
    selects and the stream's position.

    @ivar publications: the L{Publication}s (each with its C{offset}), in the order asked for.
    @ivar offset: the stream's top (the offset of the newest publication ever stored; 0 for a new stream).
    @ivar epoch: the stream's epoch (never empty).
    """

    publications: list[Publication]
    offset: int
    epoch: str

    @property
    def position(self) -> StreamPosition:
        """The stream's top as a L{StreamPosition}."""
        return StreamPosition(self.offset, self.epoch)

    def asDict(self) -> dict[str, Any]:
        """The protocol's HistoryResult (and the server API's history result): publications, offset, epoch."""
        return {"publications": [publication.asDict() for publication in self.publications],
                "offset": self.offset, "epoch": self.epoch}
