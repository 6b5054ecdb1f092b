# -*- test-case-name: tests.test_interfaces,tests.node.test_sharedpoll -*-
"""
The shared poll seam: L{ISharedPoll}, a node's shared poll channels (L{httpstream.node.sharedpoll.SharedPolls}), and
L{IKeyedSubscriber}, one client subscription it delivers tracked keys to (L{httpstream.client.sharedpoll}).

Apart from L{httpstream.interfaces} (kept to one screenful per seam, under the module length limit) but held to the
same rule: C{tests/test_interfaces.py} checks every implementation and fake with C{verifyObject}.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from zope.interface import Interface

__all__ = ["IKeyedSubscriber", "ISharedPoll"]


class IKeyedSubscriber(Interface):
    """One subscription to a shared poll channel, as its node's L{ISharedPoll} delivers to it."""

    def deliverKeyed(update: Any) -> None:
        """A tracked key changed or went (a L{httpstream.node.sharedpoll.KeyedUpdate}): sent if newer than held."""

    def stateLost() -> None:
        """The channel's versions started over (the backend's epoch changed): the subscriber must subscribe again."""


class ISharedPoll(Interface):
    """A node's shared poll channels: who tracks which keys; one backend poll per key and interval for them all."""

    def join(channel: str, options: Any, subscriber: IKeyedSubscriber) -> str:
        """C{subscriber} subscribed (L{httpstream.config.sharedpoll.SharedPollOptions}): the epoch for its reply."""

    def leave(channel: str, subscriber: IKeyedSubscriber, keys: Sequence[str]) -> None:
        """C{subscriber} is gone, with the C{keys} it tracked."""

    def track(channel: str, subscriber: IKeyedSubscriber, keys: Sequence[str]) -> None:
        """C{subscriber} tracks C{keys} too; keys new to the node are polled soon, not at the next refresh."""

    def untrack(channel: str, subscriber: IKeyedSubscriber, keys: Sequence[str]) -> None:
        """C{subscriber} no longer tracks C{keys}; a key nobody tracks is no longer polled."""

    def latest(channel: str, key: str) -> Optional[tuple[int, bytes]]:
        """The version and data this node has of C{key} (None: none yet)."""

    def publish(channel: str, key: str, version: int, epoch: str, data: bytes) -> None:
        """
        The application's own update of C{key} (the server API's C{shared_poll_publish}, on this node): pushed to
        its trackers here when C{version} is newer than the node's, as a polled change would be. A non-empty
        C{epoch} other than the channel's is an epoch change, as a poll's (every subscriber subscribes again).
        """
