# -*- test-case-name: tests.client.test_client_channels -*-
"""
One client's subscription to one channel.

A subscription remembers what Centrifugo's client keeps per channel: whether it is positioned (the client follows
the stream's offsets, so a gap ends it with unsubscribe 2500), whether it negotiated Fossil deltas (and which
publication its deltas are based on), whether it wants join/leave pushes, when its subscription token expires, and the tags filter it sent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from httpstream.config import ChannelOptions
from httpstream.protocol.tagsfilter import TagsFilter


@dataclass(slots=True)
class Subscription:
    channel: str
    options: ChannelOptions
    serverSide: bool = False
    positioned: bool = False
    recoverable: bool = False
    offset: int = 0
    epoch: str = ""
    delta: bool = False
    # The offset of the last publication sent whole or as a delta: the base a next delta may be made against.
    deltaBase: int = -1
    presence: bool = False
    joinLeave: bool = False
    pushJoinLeave: bool = False
    chanInfo: Optional[bytes] = None
    expireAt: float = 0.0
    # Until its subscribe reply is sent, publications wait here (the reply must reach the client first; once it
    # is out, those the recovery or position already covered are skipped by offset).
    subscribing: bool = True
    # When the position was last compared with the stream's top, and how many comparisons in a row failed.
    positionCheckAt: float = 0.0
    positionCheckFailures: int = 0
    # The node's PublicationFrames (httpstream.node.frames) that arrived while subscribing (None: none did).
    buffered: Optional[list[Any]] = None
    # A sub refresh proxy refreshes it when it expires; a refresh is in flight.
    serverRefresh: bool = False
    refreshing: bool = False
    # A shared poll subscription's keys (httpstream.client.sharedpoll.SharedPollSubscription); None otherwise.
    keyed: Optional[Any] = None
    # A map channel's subscription (httpstream.client.mapflow): positioned in the map's change stream, not in
    # the channel's history.
    isMap: bool = False
    # The map keys it keeps while subscribed: (map channel, key, removed when it leaves, refreshed by the
    # presence timer). Map presence entries (clients: removed and refreshed; users: refreshed, gone by their TTL)
    # and map.remove_client_on_unsubscribe's own key (removed only).
    mapKeys: tuple[tuple[str, str, bool, bool], ...] = ()
    # The publication tags filter the client sent (None: every publication reaches it).
    tagsFilter: Optional[TagsFilter] = None
