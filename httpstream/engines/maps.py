# -*- test-case-name: tests.engines.test_engine_maps -*-
"""
The values every map broker (L{IMapBroker}) shares: how one map channel is kept
(L{MapSettings}), and what its calls answer (L{MapUpdateResult}, L{MapStateResult}, L{MapStreamResult}).

A map channel is Centrifugo's keyed state channel (``subscription_type: "map"``): a set of keys, each with its latest
publication, and a change stream of every write (a set or a removal) with offsets under an epoch, as a channel's
history stream. A subscriber pages through the state, catches up through the stream, then follows live updates.
"""

from __future__ import annotations

from typing import Optional

import attrs
from twisted.internet.defer import Deferred
from zope.interface import Interface

from httpstream.interfaces import PublicationHandler, ReconnectHandler
from httpstream.values import Publication, StreamPosition

__all__ = [
    "IMapBroker",
    "KEY_MODES",
    "MapSettings",
    "MapStateResult",
    "MapStreamResult",
    "MapUpdateResult",
    "SUPPRESS_IDEMPOTENCY",
    "SUPPRESS_KEY_EXISTS",
    "SUPPRESS_KEY_NOT_FOUND",
]

# Centrifuge's KeyMode: always write; write only a new key; write only an existing key.
KEY_MODES = ("", "if_new", "if_exists")

# Why a write changed nothing (MapUpdateResult.suppressReason, the server API's suppress_reason).
SUPPRESS_KEY_EXISTS = "key_exists"
SUPPRESS_KEY_NOT_FOUND = "key_not_found"
SUPPRESS_IDEMPOTENCY = "idempotency"  # a repeated idempotency key: the first write's position, nothing written


@attrs.frozen
class MapSettings:
    """
    How one map channel is kept: its namespace's C{map} options, resolved (Centrifugo's MapChannelOptions).

    Every map channel has a change stream in httpstream, the ephemeral ones too (where Centrifugo keeps none): it is
    what keeps a paged snapshot consistent with the writes made while it was read. Only positioned channels
    (L{positioned}: modes C{recoverable} and C{persistent}) show it to their subscribers (recovery, STREAM phase).

    @ivar positioned: subscribers may recover from the stream (mode recoverable or persistent).
    @ivar keyTTL: seconds a key lives after its last write (0: forever); an expired key is removed, and its
        subscribers told so.
    @ivar streamSize: how many writes the stream keeps.
    @ivar streamTTL: seconds the stream's writes live after the last write.
    @ivar metaTTL: seconds an unused channel lives after its last write or read (Centrifugo's C{map.meta_ttl}):
        then its state, stream and epoch are freed, and the next call starts a new epoch (positions in the old
        one fail with 112). 0: for ever.
    """

    positioned: bool = True
    keyTTL: float = 0.0
    streamSize: int = 100
    streamTTL: float = 60.0
    metaTTL: float = 0.0


@attrs.frozen
class MapUpdateResult:
    """
    What a write did: the stream's position after it, or why it changed nothing.

    @ivar position: the stream's top (the write's own offset when it was not suppressed) and epoch.
    @ivar suppressed: the write changed nothing (no stream entry, nobody told).
    @ivar suppressReason: L{SUPPRESS_KEY_EXISTS} or L{SUPPRESS_KEY_NOT_FOUND} when suppressed, else "".
    """

    position: StreamPosition
    suppressed: bool = False
    suppressReason: str = ""


@attrs.frozen
class MapStateResult:
    """
    One page of a map's state.

    @ivar publications: the keys' latest publications (each with C{key} and C{offset}: the write that set it), in
        key order.
    @ivar position: the stream's top and epoch when the page was read.
    @ivar cursor: where the next page starts ("" when this was the last one).
    """

    publications: list[Publication]
    position: StreamPosition
    cursor: str = ""


@attrs.frozen
class MapStreamResult:
    """
    A read of a map's change stream: the writes asked for (oldest first, removals with C{removed}), and the top.
    """

    publications: list[Publication]
    position: StreamPosition


class IMapBroker(Interface):
    """
    Map channels (Centrifuge's MapBroker): per channel, a state of keys (each with its latest publication) and a
    change stream of every write, both changed in one atomic step with the write's delivery, so a snapshot read
    with a stream position and the stream after it always add up to the state (this module's values).

    Offsets run without gaps over every write of a channel (sets and removals); an epoch names the incarnation of
    the channel's stream, as in L{IHistory}. Every write of a subscribed channel, from any node, comes back through
    the handler, as with L{IBroker}.

    A tags filter (Centrifugo's C{allow_tags_filter}) is applied by the caller, not here: publications keep their
    C{tags}, removals the tags of the key they remove.
    """

    def setHandler(handler: PublicationHandler) -> None:
        """
        Set the callable that receives C{(channel, publication, epoch)} for every write (C{publication.key} set,
        C{removed} for a removal, C{offset} its place in the stream) of a subscribed channel.
        """

    def setReconnectHandler(handler: ReconnectHandler) -> None:
        """
        Set the callable that receives C{(channels)} when writes of those subscribed map channels may not have
        reached this node (as L{httpstream.interfaces.IBroker.setReconnectHandler}): their subscribers should
        compare their position with the map's stream. A broker that never loses writes (the memory one) never calls
        it.
        """

    def subscribe(channel: str) -> Deferred[None]:
        """Start receiving the writes of map channel C{channel} on this node."""

    def unsubscribe(channel: str) -> Deferred[None]:
        """Stop receiving the writes of map channel C{channel} on this node."""

    def publish(channel: str, key: str, publication: Publication, settings: MapSettings,
                keyMode: str = "", idempotencyKey: str = "") -> Deferred[MapUpdateResult]:
        """
        Set C{key} to C{publication} (data, info, tags; its offset, key and removed are ignored), append the write
        to the stream and deliver it, in one step.

        With C{idempotencyKey} (as L{httpstream.interfaces.IBroker.publish}): a write (publish or remove) with a key
        the channel saw within 5 minutes changes nothing and fires suppressed (C{idempotency}) with the first one's
        position, remembered where the map is stored (centrifuge's map brokers answer so).

        @param keyMode: C{""} always writes; C{"if_new"} writes only a key that is not there (else suppressed
            C{key_exists}, but the key's TTL is refreshed: presence keep-alive); C{"if_exists"} only a key that is.
        @return: a Deferred firing with the L{MapUpdateResult}.
        """

    def remove(channel: str, key: str, settings: MapSettings,
               tags: Optional[dict[str, str]] = None, idempotencyKey: str = "") -> Deferred[MapUpdateResult]:
        """
        Remove C{key} (once per C{idempotencyKey}, as L{publish}): a removal publication (C{removed}, no data; C{tags} or else the removed key's tags) goes to
        the stream and to subscribers. A key that is not there is suppressed C{key_not_found}.
        """

    def readState(channel: str, settings: MapSettings, cursor: str = "", limit: int = -1,
                  revision: Optional[StreamPosition] = None, key: str = "") -> Deferred[MapStateResult]:
        """
        Read one page of the state, in key order, from after C{cursor} ("" : the first page); C{limit} keys at most
        (negative: all; 0: none, only the position). With C{key}: that key's entry alone (none when it is not
        there), C{cursor} and C{limit} aside.

        @param revision: a position from an earlier page: fails with
            L{httpstream.engines.UnrecoverablePosition} when its epoch is set and is not the stream's.
        """

    def readStream(channel: str, settings: MapSettings, since: Optional[StreamPosition] = None,
                   limit: int = -1, reverse: bool = False) -> Deferred[MapStreamResult]:
        """
        Read the stream's writes after C{since.offset} (all retained ones without C{since}), oldest first, at most
        C{limit} (negative: all; 0: none, only the position). C{reverse}: newest first, those before
        C{since.offset} (as a history read's C{reverse}).

        Fails with L{httpstream.engines.UnrecoverablePosition} when C{since.epoch} is set and is not the stream's,
        or (forward only) when writes after C{since} are no longer retained (the stream was trimmed past it).
        """

    def stats(channel: str) -> Deferred[int]:
        """@return: a Deferred firing with the number of keys in C{channel}."""

    def clear(channel: str) -> Deferred[None]:
        """Drop C{channel}'s state and stream: a later read starts a new epoch (positions in the old one fail)."""
