"""
Fakes for shared poll channels: a backend whose state a test sets (L{FakePollBackend}) and a subscription that
records what reaches it (L{FakeKeyedSubscriber}).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer

from httpstream.node.sharedpollseam import IKeyedSubscriber
from httpstream.policy.proxy.sharedpoll import PollFailed, PolledItem, PollItem, PollResult

__all__ = ["FakeKeyedSubscriber", "FakePollBackend"]


class FakePollBackend:
    """
    A refresh backend for L{httpstream.node.sharedpoll.SharedPolls} (pass its L{refresh}): answers from L{state},
    leaving out keys it does not know and keys whose version is not newer than the one asked about (versioned).

    @ivar state: key -> (data, version); version 0 answers as a versionless backend does.
    @ivar removed: keys it answers as removed (once).
    @ivar calls: C{(proxy, channel, [PollItem])} of every request, in order.
    @ivar failing: fail every request with this reason (None: answer).
    @ivar hold: keep answers back until L{release} (a slow backend).
    @ivar epoch: the epoch it names in every result.
    """

    def __init__(self) -> None:
        self.state: dict[str, tuple[bytes, int]] = {}
        self.removed: set[str] = set()
        self.calls: list[tuple[str, str, list[PollItem]]] = []
        self.failing: Optional[str] = None
        self.hold = False
        self.held: list[tuple[Deferred[PollResult], PollResult]] = []
        self.epoch = ""

    def refresh(self, proxy: str, channel: str, items: Sequence[PollItem]) -> Deferred[PollResult]:
        self.calls.append((proxy, channel, list(items)))
        if self.failing is not None:
            return fail(PollFailed(self.failing))
        answer = []
        for item in items:
            if item.key in self.removed:
                self.removed.discard(item.key)
                answer.append(PolledItem(item.key, removed=True))
            elif item.key in self.state:
                data, version = self.state[item.key]
                if not version or version > item.version:
                    answer.append(PolledItem(item.key, data, version))
        result = PollResult(tuple(answer), self.epoch)
        if self.hold:
            d: Deferred[PollResult] = Deferred()
            self.held.append((d, result))
            return d
        return succeed(result)

    def release(self) -> None:
        held, self.held = self.held, []
        for d, result in held:
            d.callback(result)

    def keysAsked(self) -> list[str]:
        """Every key asked about, in order, once per request it was in."""
        return [item.key for _, _, items in self.calls for item in items]


@implementer(IKeyedSubscriber)
class FakeKeyedSubscriber:
    """
    A shared poll subscription that takes every update it is given (no version check: that is the client's).

    @ivar updates: the L{httpstream.node.sharedpoll.KeyedUpdate}s delivered.
    @ivar lost: how many times it was told the channel's state was lost.
    """

    def __init__(self) -> None:
        self.updates: list[Any] = []
        self.lost = 0

    def deliverKeyed(self, update: Any) -> None:
        self.updates.append(update)

    def stateLost(self) -> None:
        self.lost += 1

    def received(self) -> list[tuple[str, int, bytes, bool]]:
        return [(u.key, u.version, u.data, u.removed) for u in self.updates]
