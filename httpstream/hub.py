# -*- test-case-name: tests.test_hub -*-
"""
The hub: which local clients are subscribed to which channel, and the fan-out of a publication to them.

A publication is encoded once per protocol on first use, and the same bytes are queued on every subscriber of
that protocol: the cost of a publication grows with its subscribers only by a queue append each.
"""

from __future__ import annotations

from typing import Any, Optional

from httpstream import codes
from httpstream.interfaces import IClient
from httpstream.protocol import EncodeError, codecFor


class Hub:
    """Channel -> subscribers of this node."""

    def __init__(self) -> None:
        self._subscribers: dict[str, dict[str, IClient]] = {}

    def add(self, channel: str, client: IClient) -> bool:
        """Subscribe a client. @return: True when it is the channel's first local subscriber."""
        subscribers = self._subscribers.get(channel)
        first = subscribers is None
        if first:
            subscribers = self._subscribers[channel] = {}
        subscribers[client.clientID] = client
        return first

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

    def broadcast(self, channel: str, push: dict[str, Any]) -> int:
        """
        Queue a push on every local subscriber of C{channel}, encoding it once per protocol.

        @return: how many clients it was queued for.
        """
        subscribers = self._subscribers.get(channel)
        if not subscribers:
            return 0
        frames: dict[str, Optional[bytes]] = {}
        delivered = 0
        for client in list(subscribers.values()):
            protocol = client.protocol
            if protocol not in frames:
                frames[protocol] = _encode(protocol, push)
            frame = frames[protocol]
            if frame is None:
                # Binary data cannot reach a JSON client.
                client.disconnect(codes.DISCONNECT_INAPPROPRIATE_PROTOCOL.code,
                                  codes.DISCONNECT_INAPPROPRIATE_PROTOCOL.reason)
                continue
            client.deliver(frame, len(frame))
            delivered += 1
        return delivered


def _encode(protocol: str, reply: dict[str, Any]) -> Optional[bytes]:
    try:
        return codecFor(protocol).encode_reply(reply)
    except EncodeError:
        return None
