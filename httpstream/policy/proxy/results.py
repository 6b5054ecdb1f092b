# -*- test-case-name: tests.policy.test_proxy -*-
"""
The backend's answers, read with L{httpstream.readers}: C{{"result": ..} | {"error": ..} | {"disconnect": ..}}.

A disconnect wins over an error, which wins over a result. A field of the wrong type (what Go's C{json.Unmarshal}
rejects) raises L{FieldError}: the caller makes the whole call a failed one. Bad base64 (L{Base64Error}) is found
later in Centrifugo, by the handlers, and is an internal error even for refresh: the caller tells them apart.
Payloads come back as C{bytes}: raw JSON from C{data}/C{info}, or the decoded C{b64data}/C{b64info}.
"""

from __future__ import annotations

from typing import Any, Optional

from httpstream.protocol import codes
from httpstream.policy.proxy.errors import ProxyDisconnect, ProxyError
from httpstream.decisions import MapWriteDecision
from httpstream.engines.maps import KEY_MODES
from httpstream.readers import UINT32, FieldError, Fields, SubOptions

__all__ = [
    "checkReply",
    "connectResult",
    "publishResult",
    "refreshResult",
    "rpcResult",
    "subRefreshResult",
    "subscribeResult",
]

_EMPTY = Fields({})

# What refresh and sub_refresh answer for an expired connection (subscription).
_EXPIRED: dict[str, Any] = {"expired": True, "expire_at": 0, "info": None}


def checkReply(response: Fields) -> None:
    """Raise the backend's disconnect or error, the disconnect first (as every Centrifugo handler does)."""
    disconnect = response.object("disconnect")
    error = response.object("error")
    if disconnect is not None:
        raise ProxyDisconnect(codes.Disconnect(disconnect.integer("code", UINT32), disconnect.string("reason")))
    if error is not None:
        code, message = error.integer("code", UINT32), error.string("message")
        raise ProxyError(codes.Error(code, message, error.boolean("temporary")))


def connectResult(response: Fields) -> Optional[dict[str, Any]]:
    """The connect proxy's answer, in the shape L{ProxyClient.connect} documents (None: no result)."""
    checkReply(response)
    result = response.object("result")
    if result is None:
        return None
    entries = result.object("subs") or _EMPTY
    subs: dict[str, SubOptions] = {}
    for channel in entries.keys():
        entry = entries.object(channel)
        subs[channel] = SubOptions() if entry is None else SubOptions.read(entry)
    return {
        "user": result.string("user"),
        "expire_at": result.integer("expire_at"),
        "info": result.payload("info"),
        "data": result.payload("data"),
        "channels": result.strings("channels"),
        "subs": subs,
        "meta": result.raw("meta"),
    }


def _ignoredReply(response: Fields) -> None:
    # Refresh and sub_refresh do not act on an error or a disconnect, but Go still unmarshals (type-checks) them.
    response.object("error")
    response.object("disconnect")


def refreshResult(response: Fields) -> Optional[dict[str, Any]]:
    """The refresh proxy's answer (None: no result, which the caller logs and takes as expired)."""
    _ignoredReply(response)
    result = response.object("result")
    if result is None:
        return None
    if result.boolean("expired"):
        return {**_EXPIRED, "meta": None}
    return {
        "expired": False,
        "expire_at": result.integer("expire_at"),
        "info": result.payload("info"),
        "meta": result.raw("meta"),
    }


def subRefreshResult(response: Fields) -> Optional[dict[str, Any]]:
    """The sub_refresh proxy's answer (None: no result, as for L{refreshResult})."""
    _ignoredReply(response)
    result = response.object("result")
    if result is None:
        return None
    if result.boolean("expired"):
        return dict(_EXPIRED)
    return {"expired": False, "expire_at": result.integer("expire_at"), "info": result.payload("info")}


def rpcResult(response: Fields) -> dict[str, Any]:
    checkReply(response)
    result = response.object("result")
    return {"data": None if result is None else result.payload("data")}


def publishResult(response: Fields) -> dict[str, Any]:
    checkReply(response)
    result = response.object("result") or _EMPTY
    # Centrifugo's publish handler prefers data over b64data (the other handlers do the opposite).
    replacement = result.raw("data")
    if replacement is None:
        replacement = result.payload("data")
    return {"data": replacement, "skip_history": result.boolean("skip_history")}


def mapPublishResult(response: Fields) -> MapWriteDecision:
    """
    A map publish proxy's result (Centrifugo's MapPublishResult): C{key}, C{data} / C{b64data} (data first, as
    Centrifugo's handler), C{tags}, C{key_mode}, C{idempotency_key}; an empty key means the client's (the caller
    fills it in). C{score}, C{stream_data}, C{delta} and versions are not served and are ignored.
    """
    checkReply(response)
    result = response.object("result") or _EMPTY
    data = result.raw("data")
    if data is None:
        data = result.payload("data")
    keyMode = result.string("key_mode")
    if keyMode not in KEY_MODES:
        raise FieldError("result.key_mode", "one of " + ", ".join(repr(m) for m in KEY_MODES))
    return MapWriteDecision(result.string("key"), data, result.stringMap("tags") or None, keyMode,
                            result.string("idempotency_key"))


def mapRemoveResult(response: Fields) -> MapWriteDecision:
    """A map remove proxy's result (MapRemoveResult): C{key}, C{tags}, C{idempotency_key}."""
    checkReply(response)
    result = response.object("result") or _EMPTY
    return MapWriteDecision(result.string("key"), None, result.stringMap("tags") or None, "",
                            result.string("idempotency_key"))


def subscribeResult(response: Fields) -> dict[str, Any]:
    """A subscribe result is the options of the subscription it grants (a missing one grants it with none)."""
    checkReply(response)
    options = SubOptions.read(response.object("result") or _EMPTY)
    return {"info": options.info, "data": options.data, "override": dict(options.override),
            "expire_at": options.expireAt}
