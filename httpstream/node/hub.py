# -*- test-case-name: tests.node.test_hub -*-
"""
The hub: which local clients are subscribed to which channel. The node fans a publication out to them with
L{httpstream.node.frames.PublicationFrames}, encoded once per protocol and shared by every subscriber.
"""

from __future__ import annotations

from httpstream.interfaces import IClient


class Hub:
    """Channel -> subscribers of this node."""

    def __init__(self) -> None:
        self._subscribers: dict[str, dict[str, IClient]] = {}

    def add(self, channel: str, client: IClient) -> bool:
        """Subscribe a client. @return: True when it is the channel's first local subscriber."""
        subscribers = self._subscribers.get(channel)
        if subscribers is None:
            self._subscribers[channel] = {client.clientID: client}
            return True
        subscribers[client.clientID] = client
        return False

    def remove(self, channel: str, client: IClient) -> bool:
        """Unsubscribe a client. @return: True when the channel has no local subscriber left."""
        subscribers = self._subscribers.get(channel)
        if subscribers is None or subscribers.pop(client.clientID, None) is None:
            return False
        if not subscribers:
            del self._subscribers[channel]
            return True
        return False

    def subscribers(self, channel: str) -> list[IClient]:
        return list(self._subscribers.get(channel, {}).values())

    def channels(self) -> list[str]:
        return list(self._subscribers)

    def numSubscriptions(self) -> int:
        return sum(len(s) for s in self._subscribers.values())
