# -*- test-case-name: tests.policy.test_tokens -*-
"""
What a verified connection or subscription token grants, read from its claims with L{httpstream.readers}.

A claim whose value is null counts as absent (Go decodes null as the zero value). A claim of the wrong type raises
L{FieldError}; L{httpstream.policy.tokens} makes that an invalid token. Raw JSON values (C{info}, C{data}) are
handed on as compact JSON bytes, the C{b64} variants as their decoded bytes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import attrs
import orjson

from httpstream.readers import INT64, FieldError, Fields, SubOptions

__all__ = [
    "ConnectClaims",
    "SubscribeClaims",
    "audiences",
    "expireAt",
    "readConnect",
    "readSubscribe",
    "userID",
]


@attrs.frozen
class ConnectClaims:
    """What a connection token grants."""

    #: The user id (the claim named by C{token_user_id_claim}); "" is anonymous.
    user: str
    #: Unix time (whole seconds) at which the connection expires, or 0 when it does not. C{expire_at} when the
    #: token has it (> 0: then; 0 or less: never), else C{exp}. It may already be past: the caller answers 110.
    expireAt: int = 0
    #: C{info} as raw JSON bytes or C{b64info} decoded (becomes ClientInfo.conn_info), or None.
    info: bytes | None = None
    #: The channels to subscribe server-side at connect, in the token's order, without duplicates: the keys of
    #: C{subs} when that claim is not empty (it wins), else the C{channels} claim. Names are not validated here.
    channels: tuple[str, ...] = ()
    #: Options of each channel of L{channels} (a plain C{SubOptions()} for one from the C{channels} claim).
    subs: Mapping[str, SubOptions] = attrs.field(factory=dict)
    #: The C{meta} claim as parsed JSON (normally an object), or None: for the server only, never sent to clients.
    meta: Any = None


@attrs.frozen
class SubscribeClaims:
    """What a subscription token grants."""

    #: The user the token is for ("" anonymous); the caller checks it is the connection's user.
    user: str
    #: The channel the token is for; the caller checks it is the requested channel.
    channel: str
    #: When not "", the only client id that may use the token; the caller checks it.
    client: str = ""
    #: Unix time (whole seconds) at which the subscription expires, or 0 when it does not (as in L{ConnectClaims}).
    expireAt: int = 0
    #: C{info} / C{b64info} (becomes ClientInfo.chan_info), or None.
    info: bytes | None = None
    #: C{data} / C{b64data} (becomes SubscribeResult.data), or None.
    data: bytes | None = None
    #: The channel options the token overrides (names from L{httpstream.readers.OVERRIDES}).
    override: Mapping[str, bool] = attrs.field(factory=dict)


def readConnect(claims: Fields, user: str) -> ConnectClaims:
    """The grant of a connection token whose format, signature and times were checked."""
    subs: dict[str, SubOptions] = {}
    subsClaim = claims.object("subs")
    if subsClaim:
        for name in subsClaim.keys():
            entry = subsClaim.object(name)
            # A token's subs entry has no expire_at in Centrifugo's claims: it is not read.
            subs[name] = SubOptions() if entry is None else SubOptions.read(entry, expiring=False)
    else:
        for name in claims.strings("channels"):
            subs[name] = SubOptions()
    return ConnectClaims(
        user=user,
        expireAt=expireAt(claims),
        info=claims.payload("info"),
        channels=tuple(subs),
        subs=subs,
        meta=claims.get("meta"),
    )


def readSubscribe(claims: Fields, user: str) -> SubscribeClaims:
    """The grant of a subscription token whose format, signature and times were checked."""
    # Its expire_at falls back on exp (expireAt): not the plain field SubOptions reads.
    options = SubOptions.read(claims, expiring=False)
    return SubscribeClaims(
        user=user,
        channel=claims.string("channel"),
        client=claims.string("client"),
        expireAt=expireAt(claims),
        info=options.info,
        data=options.data,
        override=options.override,
    )


def expireAt(claims: Fields) -> int:
    """C{expire_at} (a Go C{*int64}: a float, even 1.0, does not decode; 0 or less: never), else C{exp} floored."""
    if claims.get("expire_at") is not None:
        return max(claims.integer("expire_at", INT64), 0)
    exp = claims.number("exp")
    return math.floor(exp) if exp is not None else 0


def audiences(claims: Fields) -> list[str]:
    """C{aud}: one string or a list of them (cristalhq/jwt's Audience)."""
    value = claims.get("aud")
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    raise FieldError(claims.name("aud"), "a string or a list of strings")


def userID(payload: Mapping[str, Any], path: tuple[str, ...]) -> str:
    """The claim at C{path} (C{token_user_id_claim}, dotted), as gjson's C{String()} gives it; missing: ""."""
    value: Any = payload
    for step in path:
        if isinstance(value, dict):
            value = value.get(step)
        elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
            value = value[int(step)]
        else:
            return ""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return orjson.dumps(value).decode("utf-8")
