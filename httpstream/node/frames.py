# -*- test-case-name: tests.node.test_frames,tests.client.test_client_channels,tests.node.test_node -*-
"""
The encodings of one publication its node fans out: made on first use, shared by every subscriber on the node.
"""

from __future__ import annotations

from typing import Optional

import attrs
import orjson

from httpstream.protocol import EncodeError, codecFor
from httpstream.protocol.delta import publicationDelta
from httpstream.values import Publication


def asJSONString(data: bytes) -> bytes:
    """Raw JSON bytes as a JSON string holding them: a delta-negotiated JSON subscription gets data this way."""
    return orjson.dumps(data.decode("utf-8"))


class PublicationFrames(dict[tuple[str, str, bool], Optional[bytes]]):
    """
    The encoded pushes of one publication in one channel, made on first use and shared by every subscriber:
    C{plain} (as published), C{full} (delta negotiated, whole payload) and C{delta} (against C{previous}).

    It is the dict of those encodings, by C{(protocol, variant, unidirectional)}, as L{frame} takes them: a
    subscriber that keeps its key finds its push with a plain subscript, which runs no Python code once the first
    subscriber on that key has made it (None: it cannot be encoded for that protocol).

    @ivar previous: the channel's previous publication (for deltas), or None.
    @ivar epoch: the epoch of the stream the publication was stored in, when the broker tells ("" otherwise): a
        positioned subscription following another epoch has lost its place.
    """

    __slots__ = ("channel", "publication", "previous", "epoch")

    def __init__(self, channel: str, publication: Publication, previous: Optional[Publication],
                 epoch: str = "") -> None:
        super().__init__()
        self.channel = channel
        self.publication = publication
        self.previous = previous
        self.epoch = epoch

    def deltaBaseOffset(self) -> int:
        """The offset a subscriber must have been sent last for the C{delta} variant to apply, or -1."""
        if self.previous is None or not self.publication.offset:
            return -1
        return self.previous.offset

    def frame(self, protocol: str, variant: str, unidirectional: bool = False) -> Optional[bytes]:
        """
        The push for C{protocol} in C{variant} (bare for a C{unidirectional} transport, else in a Reply), or None
        when it cannot be encoded for that protocol.
        """
        return self[(protocol, variant, unidirectional)]

    def __missing__(self, key: tuple[str, str, bool]) -> Optional[bytes]:
        frame = self[key] = self._encode(*key)
        return frame

    def _encode(self, protocol: str, variant: str, unidirectional: bool) -> Optional[bytes]:
        pub = self.publication
        json = protocol == "json"
        try:
            if variant == "delta" and self.previous is not None:
                payload, isDelta = publicationDelta(self.previous.data, pub.data, utf8=json)
                pub = attrs.evolve(pub, data=payload, delta=pub.delta or isDelta)
            body = pub.asDict()
            if json and variant != "plain":
                # A JSON string orjson wrote: embedded as it is. The codec parses only the plain variant's data (to
                # check it is JSON), so a publication's payload is parsed once on its way out, whatever variants
                # its subscribers take.
                body["data"] = orjson.Fragment(asJSONString(pub.data))
            return codecFor(protocol).encode_push({"channel": self.channel, "pub": body}, unidirectional)
        except (EncodeError, UnicodeDecodeError):
            return None
