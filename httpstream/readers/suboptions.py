# -*- test-case-name: tests.test_readers -*-
"""
The options of one server-granted subscription, read from the one JSON shape three sources share: an entry of a
connection token's C{subs} claim, an entry of a connect proxy result's C{subs}, and a server API C{subscribe}
request (Centrifugo's C{SubscribeOptions}: C{info}/C{b64info}, C{data}/C{b64data}, C{override}, C{expire_at}).
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from httpstream.readers.fields import INT64, Fields

__all__ = ["OVERRIDES", "SubOptions"]

#: The channel options a grant may override, each given as a C{BoolValue}: C{{"value": bool}}.
OVERRIDES = ("presence", "join_leave", "force_push_join_leave", "force_positioning", "force_recovery")


@attrs.frozen
class SubOptions:
    """One server-side subscription's options, as granted (by a token, the connect proxy or the server API)."""

    #: C{info} as raw JSON bytes or C{b64info} decoded (becomes the subscriber's ClientInfo.chan_info), or None.
    info: bytes | None = None
    #: C{data} as raw JSON bytes or C{b64data} decoded (sent with the subscribe push or result), or None.
    data: bytes | None = None
    #: The channel options overridden (names from L{OVERRIDES}); an option absent here keeps the channel's.
    override: Mapping[str, bool] = attrs.field(factory=dict)
    #: Unix seconds at which the subscription expires, 0 for never (always 0 where the source has no such field).
    expireAt: int = 0

    @classmethod
    def read(cls, f: Fields, *, expiring: bool = True) -> SubOptions:
        """
        Read the options from C{f}.

        @param expiring: whether C{expire_at} is a field of this source (not of a token's C{subs} entry, which
            Centrifugo's claims do not have: there it is not even type-checked).
        @raise FieldError: a field of the wrong type, C{b64info}/C{b64data} not base64 (L{Base64Error}).
        """
        return cls(
            info=f.payload("info"),
            data=f.payload("data"),
            override=readOverride(f),
            expireAt=f.integer("expire_at", INT64) if expiring else 0,
        )


def readOverride(f: Fields) -> dict[str, bool]:
    """
    The C{override} object of C{f}: each known option that is present, as its C{value} (null and a missing
    C{value} are false, as Go's zero C{BoolValue}); unknown options are ignored.
    """
    override = f.object("override")
    result: dict[str, bool] = {}
    if override is not None:
        for name in OVERRIDES:
            option = override.object(name)
            if option is not None:
                result[name] = option.boolean("value")
    return result
