# -*- test-case-name: tests.client.test_client_sharedpoll -*-
"""
One client's subscription to a shared poll channel (centrifuge's ``client_shared_poll.go`` and ``client_keyed.go``):
the keys it tracks, with the version its client has of each and when the signature that let it track them
expires, and the C{sub_refresh} commands that change them:

- type 1, track: signed batches of keys (each with the version the client has). The policy checks every
  signature (L{httpstream.interfaces.IClientPolicy.tracking}); the reply carries C{expires} and C{ttl} (seconds
  until the earliest signature expiry, which the SDK refreshes then) and, as C{items}, what the node already has
  of the keys that is newer than the client's versions. Keys new to the node are polled at once; their state
  comes as pushes. Keys listed in C{untrack} (signed in a batch, since untracked by the client) go after.
- type 2, untrack: keys no longer tracked; an empty reply.

Pushes (L{deliverKeyed}) reach the client only when newer than the version it has; a removed key is sent once and
forgotten. A key whose signature expired more than C{track_expired_extra_delay} ago is dropped silently (the SDK
refreshes signatures before that; L{checkExpiry} runs on the client's presence timer).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Protocol, Union

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from zope.interface import implementer

from httpstream.client.host import ClientHost
from httpstream.config.sharedpoll import SharedPollOptions
from httpstream.decisions import Connection, Refused, TrackBatch
from httpstream.interfaces import IClientPolicy
from httpstream.node.frames import variantData
from httpstream.node.sharedpollseam import IKeyedSubscriber
from httpstream.protocol import codes
from httpstream.protocol.codes import UNSUBSCRIBE_INSUFFICIENT_STATE

if TYPE_CHECKING:
    from httpstream.client.subscription import Subscription

__all__ = ["SHARED_POLL", "SharedPollSubscription", "keyedRefresh"]

SHARED_POLL = 4  # SubscribeRequest.type and SubscribeResult.type of a shared poll subscription
_TRACK, _UNTRACK = 1, 2  # SubRefreshRequest.type

Result = Union[None, Deferred[Any]]


class Tracker(Protocol):
    """The client, as its shared poll subscriptions use it."""

    node: ClientHost
    policy: IClientPolicy
    protocol: str
    unidirectional: bool

    @property
    def closed(self) -> bool: ...

    @property
    def subs(self) -> Any: ...

    def connection(self) -> Connection: ...

    def seconds(self) -> float: ...

    def send(self, reply: dict[str, Any]) -> None: ...

    def queue(self, message: bytes) -> None: ...

    def replyError(self, commandID: int, error: codes.Error) -> None: ...

    def commandFailed(self, commandID: int, failure: Failure, method: str) -> None: ...

    def close(self, disconnect: codes.Disconnect, flush: bool = True) -> None: ...


@implementer(IKeyedSubscriber)
class SharedPollSubscription:
    """
    The keyed side of one L{Subscription} to a shared poll channel.

    @ivar keys: key -> [the version the client has, its signature's expiry (unix seconds, 0: none)].
    """

    __slots__ = ("_client", "_sub", "options", "keys")

    def __init__(self, client: Tracker, sub: "Subscription") -> None:
        self._client = client
        self._sub = sub
        self.options = SharedPollOptions.of(sub.options)
        self.keys: dict[str, list[int]] = {}

    @property
    def channel(self) -> str:
        return self._sub.channel

    def join(self) -> dict[str, Any]:
        """Join the node's shared poll channel: the SubscribeResult fields of the reply."""
        result: dict[str, Any] = {"type": SHARED_POLL}
        epoch = self._client.node.sharedPoll.join(self.channel, self.options, self)
        if epoch:
            result["epoch"] = epoch
        return result

    def close(self) -> None:
        """The subscription ended: the node forgets what it tracked."""
        keys, self.keys = list(self.keys), {}
        self._client.node.sharedPoll.leave(self.channel, self, keys)

    def _current(self) -> bool:
        return not self._client.closed and self._client.subs.get(self.channel) is self._sub

    # What the node delivers

    def deliverKeyed(self, update: Any) -> None:
        state = self.keys.get(update.key)
        if state is None or not self._current():
            return
        variant = "plain"
        if update.removed:
            del self.keys[update.key]
        elif update.version <= state[0]:
            return
        else:
            if self._sub.delta:
                # A delta applies to the data of the version the client holds, which must be the update's base.
                variant = "delta" if update.prevVersion and state[0] == update.prevVersion else "full"
            state[0] = update.version
        frame = update.frame(self._client.protocol, self._client.unidirectional, variant)
        if frame is None:
            self._client.close(codes.DISCONNECT_INAPPROPRIATE_PROTOCOL)
            return
        self._client.queue(frame)

    def stateLost(self) -> None:
        if self._current():
            self._client.subs.serverUnsubscribe(self.channel, *UNSUBSCRIBE_INSUFFICIENT_STATE)

    def checkExpiry(self, now: float) -> None:
        """Drop the keys whose signature expired more than C{track_expired_extra_delay} ago (nothing is sent)."""
        limit = now - self.options.expiredExtraDelay
        expired = [key for key, (_, expireAt) in self.keys.items() if expireAt and expireAt < limit]
        if expired:
            for key in expired:
                del self.keys[key]
            self._client.node.sharedPoll.untrack(self.channel, self, expired)

    # The commands

    def track(self, commandID: int, request: dict[str, Any]) -> Result:
        client = self._client
        batches = _batches(request.get("track"))
        flat: dict[str, tuple[int, int]] = {}  # key -> (version, batch index): the last batch naming a key wins
        for index, batch in enumerate(batches):
            for key, version in batch.items:
                flat.pop(key, None)
                flat[key] = (version, index)
        if not flat:
            client.replyError(commandID, codes.ERROR_BAD_REQUEST)
            return None
        inline = [key for key in request.get("untrack") or () if isinstance(key, str)]
        if not self._fits(flat, inline):
            client.replyError(commandID, codes.ERROR_LIMIT_EXCEEDED)
            return None
        d = client.policy.tracking(client.connection(), self.channel, self._sub.options, batches)

        def tracked(expiries: list[int]) -> None:
            if not self._current():
                raise Refused(codes.ERROR_PERMISSION_DENIED)  # unsubscribed meanwhile
            if not self._fits(flat, inline):
                raise Refused(codes.ERROR_LIMIT_EXCEEDED)
            self._tracked(commandID, flat, expiries, inline)

        return d.addCallback(tracked).addErrback(lambda f: client.commandFailed(commandID, f, "sub_refresh"))

    def _fits(self, flat: dict[str, tuple[int, int]], inline: list[str]) -> bool:
        untracking = set(inline)
        new = sum(1 for key in flat if key not in self.keys and key not in untracking)
        freed = sum(1 for key in untracking if key in self.keys)
        return len(self.keys) - freed + new <= self.options.maxKeys

    def _tracked(self, commandID: int, flat: dict[str, tuple[int, int]], expiries: list[int],
                 inline: list[str]) -> None:
        client, sharedPoll = self._client, self._client.node.sharedPoll
        new = [key for key in flat if key not in self.keys]
        earliest = 0
        for key, (version, index) in flat.items():
            expireAt = expiries[index] if index < len(expiries) else 0
            self.keys[key] = [version, expireAt]
            if expireAt and (not earliest or expireAt < earliest):
                earliest = expireAt
        sharedPoll.track(self.channel, self, new)
        # What the node has that is newer than the client's versions rides in the reply, before any push.
        items = []
        for key in flat:
            state = self.keys[key]
            latest = sharedPoll.latest(self.channel, key)
            if latest is not None and latest[0] > state[0]:
                state[0] = latest[0]
                data: Any = latest[1]
                if self._sub.delta and client.protocol == "json":
                    data = _asBase(data)
                items.append({"key": key, "data": data, "version": latest[0]})
        result: dict[str, Any] = {}
        if earliest:
            result["expires"] = True
            ttl = int(earliest - client.seconds())
            if ttl > 0:
                result["ttl"] = ttl
        if items:
            result["items"] = items
        client.send({"id": commandID, "sub_refresh": result})
        gone = [key for key in inline if self.keys.pop(key, None) is not None]
        if gone:
            sharedPoll.untrack(self.channel, self, gone)

    def untrack(self, commandID: int, request: dict[str, Any]) -> Result:
        keys = [key for key in request.get("untrack") or () if isinstance(key, str)]
        if not keys:
            self._client.replyError(commandID, codes.ERROR_BAD_REQUEST)
            return None
        gone = [key for key in keys if self.keys.pop(key, None) is not None]
        if gone:
            self._client.node.sharedPoll.untrack(self.channel, self, gone)
        self._client.send({"id": commandID, "sub_refresh": {}})
        return None


def _batches(raw: Any) -> list[TrackBatch]:
    batches = []
    for batch in raw or ():
        if not isinstance(batch, dict):
            continue
        items = tuple((str(item.get("key", "")), int(item.get("version", 0) or 0))
                      for item in batch.get("items") or () if isinstance(item, dict))
        batches.append(TrackBatch(str(batch.get("signature", "")), items))
    return batches


def keyedRefresh(client: Tracker, commandID: int, channel: str, kind: int, request: dict[str, Any]) -> Result:
    """A C{sub_refresh} of type 1 (track) or 2 (untrack); 103 unless subscribed to a shared poll channel."""
    sub: Optional["Subscription"] = client.subs.get(channel)
    keyed = sub.keyed if sub is not None and not sub.subscribing else None
    if keyed is None:
        client.replyError(commandID, codes.ERROR_PERMISSION_DENIED)
        return None
    if kind == _TRACK:
        return keyed.track(commandID, request)  # type: ignore[no-any-return]
    if kind == _UNTRACK:
        return keyed.untrack(commandID, request)  # type: ignore[no-any-return]
    client.replyError(commandID, codes.ERROR_BAD_REQUEST)
    return None


def _asBase(data: bytes) -> Any:
    """A delta-negotiated JSON client's item data: a JSON string of the raw JSON (the SDK's base for the key)."""
    try:
        return variantData(None, data, "full", True)[0]
    except UnicodeDecodeError:
        return data  # not JSON text at all: the codec refuses it as it would without delta
