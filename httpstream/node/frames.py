# -*- test-case-name: tests.client.test_client_channels,tests.node.test_node -*-
"""
The encodings of one publication its node fans out: made on first use, shared by every subscriber on the node.
"""

from __future__ import annotations

from typing import Any, Optional

import orjson

from httpstream.protocol import EncodeError, codecFor
from httpstream.protocol.delta import publicationDelta


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
