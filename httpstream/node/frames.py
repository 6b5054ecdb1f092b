# -*- test-case-name: tests.node.test_frames,tests.client.test_client_channels,tests.node.test_node -*-
"""
The encodings of one publication its node fans out: made on first use, shared by every subscriber on the node.
"""

from __future__ import annotations

from typing import Any, Optional

import attrs
import orjson

from httpstream.protocol import EncodeError, codecFor
from httpstream.protocol.delta import publicationDelta
from httpstream.values import Publication


def asJSONString(data: bytes) -> bytes:
    """Raw JSON bytes as a JSON string holding them: a delta-negotiated JSON subscription gets data this way."""
    return orjson.dumps(data.decode("utf-8"))


def variantData(previous: Optional[bytes], data: bytes, variant: str, json: bool) -> tuple[Any, bool]:
    """
    The C{data} field of a publication in C{variant} (C{plain}, C{full}, C{delta}: L{PublicationFrames}), and
    whether it is a delta: against C{previous} when the variant asks for one and it is smaller; a JSON string for
    a delta-negotiated JSON subscriber (C{full} and C{delta}), the raw payload otherwise.

    @raise UnicodeDecodeError: a JSON subscriber's payload that is no UTF-8 text.
    """
    isDelta = False
    if variant == "delta" and previous is not None:
        data, isDelta = publicationDelta(previous, data, utf8=json)
    if json and variant != "plain":
        # A JSON string orjson wrote: embedded as it is (the codec checks only plain data for being JSON).
        return orjson.Fragment(asJSONString(data)), isDelta
    return data, isDelta


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
            if variant == "plain":
                body = pub.asDict()
            else:
                # The codec parses only the plain variant's data (to check it is JSON), so a publication's payload
                # is parsed once on its way out, whatever variants its subscribers take.
                previous = self.previous.data if self.previous is not None else None
                data, isDelta = variantData(previous, pub.data, variant, json)
                body = attrs.evolve(pub, delta=pub.delta or isDelta).asDict()
                body["data"] = data
            return codecFor(protocol).encode_push({"channel": self.channel, "pub": body}, unidirectional)
        except (EncodeError, UnicodeDecodeError):
            return None
