# -*- test-case-name: tests.node.test_sharedpoll -*-
"""
Shared poll channels on one node (centrifuge's ``shared_poll.go``): the keys the node's subscribers track, the
latest state of each, and the poller that asks the application backend about every tracked key once per refresh
interval, whatever the number of subscribers tracking it, in batches of C{refresh_batch_size} keys.

What the backend answers becomes pushes to the subscriptions tracking each changed key (each sends it only when it
is newer than what its client has: L{IKeyedSubscriber}). In versioned mode the backend's versions are used; in
versionless mode the node compares the data with what it had and numbers each change itself, under an epoch of
its own, so a client that reconnects to another node (another numbering) starts its versions over.

A backend that is slow or down changes nothing for subscribers: they keep the last state, one line is logged per
cycle of a channel (not per key or subscriber), and the next cycle tries again. A channel polls one round at a time:
a cycle due while the previous one is still waiting on the backend runs when it ends, never alongside it. Keys new
to the node are polled at once (in one round, after the current one), not at the next cycle.

Each node polls for its own subscribers: nodes share nothing here, so two nodes with subscribers tracking a key
both poll it.
"""

from __future__ import annotations

import random
import string
from typing import Any, Callable, Optional, Sequence

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure
from zope.interface import implementer

from httpstream.config.sharedpoll import SharedPollOptions
from httpstream.logs import Logger
from httpstream.node.frames import variantData
from httpstream.node.sharedpollseam import IKeyedSubscriber, ISharedPoll
from httpstream.policy.proxy.sharedpoll import PollItem, PollResult
from httpstream.protocol import EncodeError, codecFor

__all__ = ["KeyedUpdate", "Refresher", "SharedPolls"]

# Asks a backend: (proxy name, channel, items) -> the result, or a failure.
Refresher = Callable[[str, str, Sequence[PollItem]], "Deferred[PollResult]"]

_EPOCH_ALPHABET = string.ascii_letters + string.digits
_MISSING = b"missing"


class KeyedUpdate:
    """
    One key's new state in one channel, its pushes encoded on first use and shared by every subscriber.

    Variants, as for stream publications (L{httpstream.node.frames.PublicationFrames}): C{plain} (no delta
    negotiated), C{full} (delta negotiated: JSON data as a JSON string, the SDK's base for the key) and C{delta}
    (against C{prevData}, the key's data at C{prevVersion}, for a subscriber that holds that version). Removals are
    always plain: they carry no data and end the key's delta chain.
    """

    __slots__ = ("channel", "key", "version", "data", "removed", "prevVersion", "prevData", "_frames")

    def __init__(self, channel: str, key: str, version: int, data: bytes = b"", removed: bool = False,
                 prevVersion: int = 0, prevData: bytes = b"") -> None:
        self.channel, self.key, self.version, self.data, self.removed = channel, key, version, data, removed
        self.prevVersion, self.prevData = prevVersion, prevData
        self._frames: dict[tuple[str, bool, str], Optional[bytes]] = {}

    def publication(self, variant: str = "plain", json: bool = True) -> dict[str, Any]:
        """The Publication (key, data, version; or key and removed) as a codec encodes it, in C{variant}."""
        if self.removed:
            return {"key": self.key, "removed": True}
        data, isDelta = variantData(self.prevData or None, self.data, variant, json)
        pub: dict[str, Any] = {"key": self.key, "data": data, "version": self.version}
        if isDelta:
            pub["delta"] = True
        return pub

    def frame(self, protocol: str, unidirectional: bool = False, variant: str = "plain") -> Optional[bytes]:
        """The push for C{protocol}, or None when its data cannot be encoded for it (not JSON, for a JSON client)."""
        frame = self._frames.get((protocol, unidirectional, variant), _MISSING)
        if frame is _MISSING:
            try:
                pub = self.publication(variant, protocol == "json")
                frame = codecFor(protocol).encode_push({"channel": self.channel, "pub": pub}, unidirectional)
            except (EncodeError, UnicodeDecodeError):
                frame = None
            self._frames[(protocol, unidirectional, variant)] = frame
        return frame


class _Entry:
    """A tracked key: its latest state (version 0: none yet) and the subscriptions tracking it."""

    __slots__ = ("version", "data", "subscribers")

    def __init__(self) -> None:
        self.version = 0
        self.data = b""
        self.subscribers: set[IKeyedSubscriber] = set()


class _Channel:
    __slots__ = ("name", "options", "epoch", "entries", "joined", "counter", "timer", "polling", "due", "pending",
                 "soon")

    def __init__(self, name: str, options: SharedPollOptions, epoch: str) -> None:
        self.name, self.options, self.epoch = name, options, epoch
        self.entries: dict[str, _Entry] = {}
        self.joined: set[IKeyedSubscriber] = set()
        self.counter = 0  # the last version a versionless channel gave
        self.timer: Optional[IDelayedCall] = None  # the next cycle
        self.polling = False  # a round of requests is waiting on the backend
        self.due = False  # a cycle came due meanwhile
        self.pending: set[str] = set()  # keys new to the node, to poll before the next cycle
        self.soon: Optional[IDelayedCall] = None


@implementer(ISharedPoll)
class SharedPolls:
    """
    The shared poll channels of one node.

    @ivar cycles: the cycles run, by channel (for tests and the benchmark).
    """

    log = Logger()

    def __init__(self, reactor: IReactorTime, refresh: Refresher, rng: Optional[random.Random] = None) -> None:
        self._reactor = reactor
        self._refresh = refresh
        self._rng = rng or random.Random()
        self._channels: dict[str, _Channel] = {}
        # The epoch each versioned backend last named, kept when its channel has no subscriber left: a client
        # subscribing again must get it, or the next poll would take it for a change and unsubscribe it again.
        self._epochs: dict[str, str] = {}
        self.cycles: dict[str, int] = {}  # of the channels polled now (a channel's count goes with it)

    # Subscribers

    def join(self, channel: str, options: Any, subscriber: IKeyedSubscriber) -> str:
        ch = self._channels.get(channel)
        if ch is None:
            if options.versionless:
                epoch = "".join(self._rng.choice(_EPOCH_ALPHABET) for _ in range(8))
            else:
                epoch = self._epochs.get(channel, "")
            ch = self._channels[channel] = _Channel(channel, options, epoch)
        ch.joined.add(subscriber)
        return ch.epoch

    def leave(self, channel: str, subscriber: IKeyedSubscriber, keys: Sequence[str]) -> None:
        ch = self._channels.get(channel)
        if ch is None:
            return
        self.untrack(channel, subscriber, keys)
        ch.joined.discard(subscriber)
        if not ch.joined and not ch.entries:
            self._drop(ch)

    def track(self, channel: str, subscriber: IKeyedSubscriber, keys: Sequence[str]) -> None:
        ch = self._channels.get(channel)
        if ch is None:
            return
        for key in keys:
            entry = ch.entries.get(key)
            if entry is None:
                entry = ch.entries[key] = _Entry()
                ch.pending.add(key)
            entry.subscribers.add(subscriber)
        if ch.pending and ch.soon is None:
            ch.soon = self._reactor.callLater(0, self._pollPending, ch)
        if ch.entries and ch.timer is None and not ch.polling:
            ch.timer = self._reactor.callLater(ch.options.refreshInterval, self._cycle, ch)

    def untrack(self, channel: str, subscriber: IKeyedSubscriber, keys: Sequence[str]) -> None:
        ch = self._channels.get(channel)
        if ch is None:
            return
        for key in keys:
            entry = ch.entries.get(key)
            if entry is not None:
                entry.subscribers.discard(subscriber)
                if not entry.subscribers:
                    del ch.entries[key]
                    ch.pending.discard(key)
        if not ch.entries and ch.timer is not None:
            ch.timer.cancel()
            ch.timer = None

    def latest(self, channel: str, key: str) -> Optional[tuple[int, bytes]]:
        ch = self._channels.get(channel)
        entry = ch.entries.get(key) if ch is not None else None
        if entry is None or not entry.version:
            return None
        return entry.version, entry.data

    def tracked(self, channel: str) -> list[str]:
        """The keys this node polls for C{channel}."""
        ch = self._channels.get(channel)
        return sorted(ch.entries) if ch is not None else []

    def stop(self) -> None:
        """Stop every poller (the node stops); answers still on their way are dropped."""
        for ch in list(self._channels.values()):
            self._drop(ch)

    def _drop(self, ch: _Channel) -> None:
        for call in (ch.timer, ch.soon):
            if call is not None and call.active():
                call.cancel()
        ch.timer = ch.soon = None
        ch.entries.clear()
        if self._channels.get(ch.name) is ch:
            del self._channels[ch.name]
            self.cycles.pop(ch.name, None)

    # Polling

    def _cycle(self, ch: _Channel) -> None:
        ch.timer = None
        if ch.polling:
            ch.due = True
            return
        keys = sorted(ch.entries)
        if not keys:
            return
        self.cycles[ch.name] = self.cycles.get(ch.name, 0) + 1
        ch.pending.clear()  # polled now, with the others
        self._round(ch, keys, "refresh")

    def _pollPending(self, ch: _Channel) -> None:
        ch.soon = None
        if ch.polling:
            return  # polled when the round in flight ends
        keys = sorted(key for key in ch.pending if key in ch.entries)
        ch.pending.clear()
        if keys:
            self._round(ch, keys, "first poll")

    def _round(self, ch: _Channel, keys: list[str], what: str) -> None:
        """Ask the backend about C{keys}, C{refresh_batch_size} at a time, all at once; one log line if some fail."""
        ch.polling = True
        started = self._reactor.seconds()
        size = ch.options.batchSize
        requests: list[Deferred[Any]] = []
        for start in range(0, len(keys), size):
            items = [PollItem(key, 0 if ch.options.versionless else self._version(ch, key))
                     for key in keys[start:start + size]]
            d = self._refresh(ch.options.proxy, ch.name, items)
            requests.append(d.addCallback(self._apply, ch))

        def ended(results: list[tuple[bool, Any]]) -> None:
            failures = [value for ok, value in results if not ok]
            if failures and self._channels.get(ch.name) is ch:
                self.log.error(
                    "shared poll {what} of {channel}: {failed} of {total} backend requests failed ({reason}); "
                    "subscribers keep the last state",
                    what=what, channel=ch.name, failed=len(failures), total=len(results),
                    reason=_reason(failures[0]),
                )
            self._ended(ch, started)

        DeferredList(requests, consumeErrors=True).addCallback(ended)

    def _ended(self, ch: _Channel, started: float) -> None:
        ch.polling = False
        if self._channels.get(ch.name) is not ch or not ch.entries:
            return
        if ch.due:
            ch.due = False
            self._cycle(ch)
        elif ch.pending:
            self._pollPending(ch)
        if not ch.polling and ch.timer is None:
            # Every interval from the start of the round before: a slow backend makes the next one come sooner.
            delay = max(0.0, started + ch.options.refreshInterval - self._reactor.seconds())
            ch.timer = self._reactor.callLater(delay, self._cycle, ch)

    @staticmethod
    def _version(ch: _Channel, key: str) -> int:
        entry = ch.entries.get(key)
        return entry.version if entry is not None else 0

    def _apply(self, result: PollResult, ch: _Channel) -> None:
        if self._channels.get(ch.name) is not ch:
            return  # nobody subscribes any more
        if not ch.options.versionless and result.epoch != ch.epoch:
            self._epochChanged(ch, result.epoch)
        for item in result.items:
            entry = ch.entries.get(item.key)
            if entry is None:
                continue
            previous = (entry.version, entry.data)
            if item.removed:
                del ch.entries[item.key]
                update = KeyedUpdate(ch.name, item.key, entry.version, removed=True)
            elif ch.options.versionless and not item.version:
                if entry.version and entry.data == item.data:
                    continue
                ch.counter += 1
                entry.version, entry.data = ch.counter, item.data
                update = KeyedUpdate(ch.name, item.key, entry.version, item.data, False, *previous)
            elif item.version > entry.version:
                entry.version, entry.data = item.version, item.data
                update = KeyedUpdate(ch.name, item.key, entry.version, item.data, False, *previous)
            else:
                continue
            for subscriber in list(entry.subscribers):
                subscriber.deliverKeyed(update)

    def publish(self, channel: str, key: str, version: int, epoch: str, data: bytes) -> None:
        ch = self._channels.get(channel)
        if ch is None or ch.options.versionless:
            return  # nobody tracks the channel here (a versionless one has no versions to compare)
        # The epoch first, even when the key is not tracked here: a later poll must not take it for a change.
        if epoch and epoch != ch.epoch:
            self._epochChanged(ch, epoch)
        entry = ch.entries.get(key)
        if entry is None or version <= entry.version:
            return
        update = KeyedUpdate(ch.name, key, version, data, False, entry.version, entry.data)
        entry.version, entry.data = version, data
        for subscriber in list(entry.subscribers):
            subscriber.deliverKeyed(update)

    def _epochChanged(self, ch: _Channel, epoch: str) -> None:
        # The backend's versions started over: what every subscriber holds is meaningless. They subscribe again
        # (unsubscribe 2500, then the SDK resubscribes and, seeing the new epoch, tracks from version 0).
        ch.epoch = self._epochs[ch.name] = epoch
        for entry in ch.entries.values():
            entry.version, entry.data = 0, b""
        for subscriber in list(ch.joined):
            subscriber.stateLost()


def _reason(failure: Failure) -> str:
    return failure.getErrorMessage() or type(failure.value).__name__
