# -*- test-case-name: tests.policy.test_sharedpoll_backend -*-
"""
The shared poll refresh proxy (Centrifugo's ``internal/proxy/shared_poll_refresh_*.go``): the node asks the
application backend, through the named proxy of a shared poll namespace, for the current state of tracked keys::

    -> {"channel": "poll:scores", "items": [{"key": "k1", "version": 3}, {"key": "k2"}]}
    <- {"result": {"items": [{"key": "k1", "data": {..}, "version": 4}, {"key": "k9", "removed": true}],
                   "epoch": ".."}}

A key the backend leaves out has not changed. C{data} is embedded JSON (C{b64data}: base64). The node calls on its
own behalf, for every subscriber at once: no connection, user or forwarded header rides along, only the proxy's
static headers. JSON only (httpstream's proxies are HTTP with JSON bodies).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

import orjson
from twisted.internet.defer import Deferred, fail

from httpstream.policy.proxy.caller import callHTTP
from httpstream.readers import UINT64, Base64Error, FieldError, Fields

if TYPE_CHECKING:
    from httpstream.policy.proxy.client import ProxyClient

__all__ = ["PollFailed", "PollItem", "PollResult", "PolledItem", "SharedPollBackend"]


class PollFailed(Exception):
    """The backend could not be asked, or did not answer with a result: subscribers keep what they have."""


@dataclass(frozen=True)
class PollItem:
    """A key the node asks about, with the version it holds (0: none, or a versionless channel)."""

    key: str
    version: int = 0


@dataclass(frozen=True)
class PolledItem:
    """One key's state as the backend answered it (C{version} 0 on a versionless channel)."""

    key: str
    data: bytes = b""
    version: int = 0
    removed: bool = False


@dataclass(frozen=True)
class PollResult:
    items: tuple[PolledItem, ...] = ()
    epoch: str = ""


def _body(channel: str, items: Sequence[PollItem]) -> bytes:
    return orjson.dumps({
        "channel": channel,
        "items": [{"key": i.key, "version": i.version} if i.version else {"key": i.key} for i in items],
    })


def _result(content: bytes) -> PollResult:
    try:
        response = Fields(orjson.loads(content))
        error = response.object("error")
        if error is not None and error.integer("code"):
            raise PollFailed(f"backend error {error.integer('code')}: {error.string('message')}")
        result = response.object("result")
        if result is None:
            return PollResult()
        items = []
        for index, raw in enumerate(result.list("items") or ()):
            item = Fields(raw, f"result.items[{index}]")
            items.append(PolledItem(item.string("key"), item.payload("data") or b"", item.integer("version", UINT64),
                                    item.boolean("removed")))
        return PollResult(tuple(items), result.string("epoch"))
    except orjson.JSONDecodeError as e:
        raise PollFailed(f"response is not JSON: {e}") from None
    except (FieldError, Base64Error) as e:
        raise PollFailed(f"bad response: {e}") from None


class SharedPollBackend:
    """Asks the backends of shared poll channels, with the proxy client's HTTP client and timeouts."""

    def __init__(self, proxy: "ProxyClient") -> None:
        self._proxy = proxy

    def refresh(self, proxyName: str, channel: str, items: Sequence[PollItem]) -> "Deferred[PollResult]":
        """
        Ask proxy C{proxyName} (one of C{proxies}) for C{items} of C{channel}.

        @return: fires with the result, or fails with L{PollFailed} (a transport error, a timeout, a status other
            than 200, a body over the proxy client's C{maxResponseSize} or that is not a result, an error reply).
        """
        from httpstream.policy.proxy.routes import endpointFor

        target = endpointFor(self._proxy.config, "sub_refresh", proxyName) if proxyName else None
        if target is None:
            return fail(PollFailed(f"no proxy named {proxyName!r}"))
        headers = {k.encode(): [v.encode()] for k, v in target.staticHeaders.items() if k.lower() != "content-type"}
        headers[b"Content-Type"] = [b"application/json"]
        proxy = self._proxy
        d = callHTTP(proxy.http, proxy.reactor, target.endpoint, headers, _body(channel, items), target.timeout,
                     proxy.maxResponseSize)

        def failed(failure: Any) -> Any:
            if failure.check(PollFailed):
                return failure
            raise PollFailed(failure.getErrorMessage() or type(failure.value).__name__)

        return d.addCallback(_result).addErrback(failed)
