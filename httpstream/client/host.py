"""
The node, as the client sees it: where it asks for decisions (its policy), where it joins channels (the hub, the
broker, presence), where it publishes, and what it reports to (metrics, the list of connected clients). A structural
type, so that the client imports nothing of the node.
"""

from __future__ import annotations

import random
from typing import Any, Optional, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from httpstream.config import ChannelOptions, Config
from httpstream.interfaces import IClient, IClientPolicy, IPresenceManager
from httpstream.node.sharedpollseam import ISharedPoll
from httpstream.protocol.tagsfilter import TagsFilter
from httpstream.values import ClientInfo, StreamPosition


class ClientHost(Protocol):
    """What L{httpstream.client.client.Client} uses of its node (L{httpstream.node.node.Node})."""

    @property
    def config(self) -> Config: ...

    @property
    def reactor(self) -> IReactorTime: ...

    @property
    def id(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def rng(self) -> random.Random: ...

    @property
    def metrics(self) -> Any: ...

    @property
    def policy(self) -> IClientPolicy: ...

    @property
    def presence(self) -> IPresenceManager: ...

    @property
    def sharedPoll(self) -> ISharedPoll: ...

    def clientConnected(self, client: IClient) -> None: ...

    def clientClosed(self, client: IClient) -> None: ...

    @property
    def maps(self) -> Any: ...

    def addSubscription(self, channel: str, client: IClient, mapChannel: bool = False,
                        tagsFilter: Optional[TagsFilter] = None) -> Deferred[None]: ...

    def removeSubscription(self, channel: str, client: IClient) -> None: ...

    def publish(self, channel: str, data: bytes, info: Optional[ClientInfo] = None,
                skipHistory: bool = False, tags: Optional[dict[str, str]] = None,
                options: Optional[ChannelOptions] = None) -> Deferred[Optional[StreamPosition]]: ...

    def joinLeave(self, channel: str, info: ClientInfo, join: bool) -> None: ...

    def background(self, d: Deferred[Any]) -> Deferred[Any]: ...
