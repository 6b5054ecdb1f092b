# -*- test-case-name: tests.client.test_client_channels -*-
"""
L{Holder}: the client as its subscriptions (L{httpstream.client.subscriptions}) use it, a structural type so the
subscriptions never import the client's module (which holds them).
"""

from __future__ import annotations

from typing import Any, Optional, Protocol

from httpstream.client.host import ClientHost
from httpstream.client.subscription import Subscription
from httpstream.client.writer import Writer
from httpstream.decisions import Connection
from httpstream.interfaces import IClientPolicy
from httpstream.protocol import codes
from httpstream.values import ClientInfo

__all__ = ["Holder"]


class Holder(Protocol):
    """The client, as its subscriptions use it."""

    clientID: str
    protocol: str
    unidirectional: bool
    node: ClientHost
    policy: IClientPolicy
    maps: Any  # its map subscribes, httpstream.client.mapflow.MapFlows

    @property
    def closed(self) -> bool: ...

    def connection(self) -> Connection: ...

    def clientInfo(self, sub: Optional[Subscription] = None) -> ClientInfo: ...

    def send(self, reply: dict[str, Any]) -> None: ...

    def push(self, push: dict[str, Any]) -> None: ...

    def queue(self, message: bytes) -> None: ...

    @property
    def writer(self) -> Writer: ...

    def close(self, disconnect: codes.Disconnect, flush: bool = True) -> None: ...
