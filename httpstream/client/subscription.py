# -*- test-case-name: tests.test_client_channels -*-
"""
One client's subscription to one channel, and the encodings a publication needs for its subscribers.

A subscription remembers what Centrifugo's client keeps per channel: whether it is positioned (the client follows
the stream's offsets, so a gap ends it with unsubscribe 2500), whether it negotiated Fossil deltas (and which
publication its deltas are based on), whether it wants join/leave pushes, and when its subscription token expires.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import orjson

from httpstream.config import ChannelOptions
from httpstream.protocol.delta import publicationDelta
from httpstream.protocol import EncodeError, codecFor


@dataclass
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
    buffered: list["PublicationFrames"] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def asJSONString(data: bytes) -> bytes:
    """Raw JSON bytes as a JSON string holding them: a delta-negotiated JSON subscription gets data this way."""
    return orjson.dumps(data.decode("utf-8"))


class PublicationFrames:
    """
    The encoded pushes of one publication in one channel, made on first use and shared by every subscriber:
    C{plain} (as published), C{full} (delta negotiated, whole payload) and C{delta} (against C{previous}).

    @ivar previous: the channel's previous publication (for deltas), or None.
    @ivar epoch: the epoch of the stream the publication was stored in, when the broker tells ("" otherwise): a
        positioned subscription following another epoch has lost its place.
    """

    def __init__(self, channel: str, publication: dict[str, Any], previous: Optional[dict[str, Any]],
                 epoch: str = "") -> None:
        self.channel = channel
        self.publication = publication
        self.previous = previous
        self.epoch = epoch
        self._frames: dict[tuple[str, str], Optional[bytes]] = {}

    def deltaBaseOffset(self) -> int:
        """The offset a subscriber must have been sent last for the C{delta} variant to apply, or -1."""
        if self.previous is None or not self.publication.get("offset"):
            return -1
        return int(self.previous.get("offset", 0))

    def frame(self, protocol: str, variant: str) -> Optional[bytes]:
        """The push for C{protocol} in C{variant}, or None when it cannot be encoded for that protocol."""
        key = (protocol, variant)
        if key not in self._frames:
            self._frames[key] = self._encode(protocol, variant)
        return self._frames[key]

    def _encode(self, protocol: str, variant: str) -> Optional[bytes]:
        pub = dict(self.publication)
        json = protocol == "json"
        try:
            if variant == "delta" and self.previous is not None:
                payload, isDelta = publicationDelta(self.previous["data"], pub["data"], utf8=json)
                pub["data"] = asJSONString(payload) if json else payload
                if isDelta:
                    pub["delta"] = True
            elif variant in ("full", "delta") and json:
                pub["data"] = asJSONString(pub["data"])
            return codecFor(protocol).encode_reply({"push": {"channel": self.channel, "pub": pub}})
        except (EncodeError, UnicodeDecodeError):
            return None
