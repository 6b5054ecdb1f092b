# -*- test-case-name: tests.protocol.test_protocol_codec -*-
"""
Errors raised while turning bytes into commands and replies into bytes.

They subclass ValueError so that generic input-validation handlers still catch
them; transports map them to disconnect codes (DecodeError -> 3501 "bad request",
EncodeError -> 3506 "inappropriate protocol").
"""

from __future__ import annotations

from typing import Any

__all__ = ["DecodeError", "FrameTooLarge", "EncodeError"]


class DecodeError(ValueError):
    """
    Client input that cannot be decoded: bad framing, bad JSON or protobuf, or a
    field of the wrong type.

    @ivar commands: when a frame goes bad after some good commands, those commands,
        decoded (Centrifugo runs them, then disconnects); else C{[]}.
    @ivar messages: from varint framing, the whole messages before the bad one, undecoded; else C{[]}.
    """

    # Class-level empty defaults: the raisers that have them assign new lists, nobody appends.
    commands: list[dict[str, Any]] = []
    messages: list[bytes] = []


class FrameTooLarge(DecodeError):
    """
    A single message is longer than the configured limit.

    Separate from L{DecodeError} because HTTP transports answer it with 413
    before any stream exists.
    """


class EncodeError(ValueError):
    """
    A reply that cannot be written in the connection's protocol, typically binary
    payload bytes that are not valid JSON, headed for a JSON client.
    """
