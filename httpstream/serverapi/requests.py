# -*- test-case-name: tests.serverapi.test_api -*-
"""
The server API's requests, decoded: one frozen value per method, read from the request object with
L{httpstream.readers.Fields} and the field types of Centrifugo's C{apiproto/api.proto}.

A request that does not decode (a field of the wrong type or out of its range) raises L{FieldError}, which
L{httpstream.serverapi.api} answers as L{httpstream.serverapi.errors.BadRequest}. A request that decodes but makes
no sense (no channel, no user) is the method's own 107 there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from httpstream.readers import INT32, INT64, UINT32, UINT64, FieldError, Fields, SubOptions
from httpstream.values import StreamPosition

__all__ = [
    "BatchRequest",
    "DisconnectRequest",
    "HistoryRequest",
    "PublishRequest",
    "RefreshRequest",
    "StreamPosition",
    "SubscribeRequest",
    "UnsubscribeRequest",
    "UserRequest",
    "readPosition",
]


@dataclass(frozen=True)
class PublishRequest:
    """C{publish}, and C{broadcast} per channel."""

    channel: str
    data: Optional[bytes]
    skipHistory: bool = False
    tags: dict[str, str] = field(default_factory=dict)
    idempotencyKey: str = ""

    @classmethod
    def read(cls, f: Fields, channel: Optional[str] = None) -> "PublishRequest":
        return cls(
            channel=f.string("channel") if channel is None else channel,
            data=f.payload("data"),
            skipHistory=f.boolean("skip_history"),
            tags=f.stringMap("tags"),
            idempotencyKey=f.string("idempotency_key"),
        )


def readPosition(f: Optional[Fields]) -> Optional[StreamPosition]:
    """A StreamPosition object of a request (C{since}, C{recover_since}), or None when absent."""
    if f is None:
        return None
    return StreamPosition(f.integer("offset", UINT64), f.string("epoch"))


def _target(f: Fields) -> dict[str, str]:
    """The connections a user method acts on: user, and optionally one client or session."""
    return {"user": f.string("user"), "client": f.string("client"), "session": f.string("session")}


@dataclass(frozen=True)
class UserRequest:
    """What every method acting on a user's connections has: who, and optionally which client or session."""

    user: str
    client: str
    session: str

    def targets(self, client: Any) -> bool:
        """Whether a connection is one this request acts on."""
        return (
            client.user == self.user
            and (not self.client or client.clientID == self.client)
            and (not self.session or client.sessionID == self.session)
        )

    def asDict(self) -> dict[str, Any]:
        """The request as it travels to the other nodes (only decoded fields: nothing unchecked rides along)."""
        return {"user": self.user, "client": self.client, "session": self.session}


@dataclass(frozen=True)
class DisconnectRequest(UserRequest):
    """
    @ivar code: the disconnect code, any uint32 as Centrifugo takes (0: the default, 3501 force disconnect);
        what a transport cannot carry is its own business to map.
    """

    code: int = 0
    reason: str = ""
    whitelist: tuple[str, ...] = ()

    @classmethod
    def read(cls, f: Fields) -> "DisconnectRequest":
        disconnect = f.object("disconnect")
        code, reason = 0, ""
        if disconnect is not None:
            code, reason = disconnect.integer("code", UINT32), disconnect.string("reason")
        return cls(**_target(f), code=code, reason=reason, whitelist=tuple(f.strings("whitelist")))

    def asDict(self) -> dict[str, Any]:
        return {**super().asDict(), "disconnect": {"code": self.code, "reason": self.reason},
                "whitelist": list(self.whitelist)}


@dataclass(frozen=True)
class SubscribeRequest(UserRequest):
    """
    @ivar options: the subscription's C{info}, C{data}, C{override} and C{expire_at}, fields of the request itself
        (read as a connection token's or the connect proxy's C{subs} entries are).
    """

    channel: str = ""
    options: SubOptions = SubOptions()
    recoverSince: Optional[StreamPosition] = None

    @classmethod
    def read(cls, f: Fields) -> "SubscribeRequest":
        return cls(**_target(f), channel=f.string("channel"), options=SubOptions.read(f),
                   recoverSince=readPosition(f.object("recover_since")))

    def asDict(self) -> dict[str, Any]:
        """
        In the shape L{read} and L{httpstream.client.subscriptions.Subscriptions.serverSubscribe} read (payloads as bytes, which
        L{Fields.raw} takes as they are; overrides as BoolValues).
        """
        options = self.options
        request = {**super().asDict(), "channel": self.channel, "info": options.info, "data": options.data,
                   "expire_at": options.expireAt,
                   "override": {k: {"value": v} for k, v in options.override.items()}}
        if self.recoverSince is not None:
            request["recover_since"] = self.recoverSince.asDict()
        return request


@dataclass(frozen=True)
class UnsubscribeRequest(UserRequest):
    channel: str = ""  # "": every subscription

    @classmethod
    def read(cls, f: Fields) -> "UnsubscribeRequest":
        return cls(**_target(f), channel=f.string("channel"))

    def asDict(self) -> dict[str, Any]:
        return {**super().asDict(), "channel": self.channel}


@dataclass(frozen=True)
class RefreshRequest(UserRequest):
    expired: bool = False
    expireAt: int = 0
    info: Optional[bytes] = None

    @classmethod
    def read(cls, f: Fields) -> "RefreshRequest":
        return cls(**_target(f), expired=f.boolean("expired"), expireAt=f.integer("expire_at", INT64),
                   info=f.payload("info"))

    def asDict(self) -> dict[str, Any]:
        return {**super().asDict(), "expired": self.expired, "expire_at": self.expireAt, "info": self.info}


@dataclass(frozen=True)
class HistoryRequest:
    """@ivar limit: as Centrifugo's int32 C{limit}: 0 none (the position only), -1 (any negative) all."""

    channel: str
    limit: int
    since: Optional[StreamPosition]
    reverse: bool

    @classmethod
    def read(cls, f: Fields) -> "HistoryRequest":
        return cls(f.string("channel"), f.integer("limit", INT32), readPosition(f.object("since")),
                   f.boolean("reverse"))


@dataclass(frozen=True)
class BatchRequest:
    """@ivar commands: each command as sent (an object of one method name and its request), decoded one by one."""

    commands: list[Any]
    parallel: bool

    @classmethod
    def read(cls, f: Fields) -> "BatchRequest":
        commands = f.list("commands")
        if commands is None:
            raise FieldError(f.name("commands"), "a list of commands")
        return cls(commands, f.boolean("parallel"))
