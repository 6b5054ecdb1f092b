# -*- test-case-name: tests.test_node -*-
"""
The node: this process's id, its clients, its hub, and the engine it publishes through.
"""

from __future__ import annotations

import random
import uuid
from typing import Any, Optional

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from httpstream import __version__, codes
from httpstream.channels import ChannelRules
from httpstream.client import Client
from httpstream.config import Config
from httpstream.engines.memory import MemoryBroker
from httpstream.hub import Hub
from httpstream.interfaces import IBroker, ISessionRegistry, ITransport
from httpstream.logs import Logger
from httpstream.registry import SessionRegistry
from httpstream.tokens import TokenVerifier
from httpstream.writer import Flusher


class Node:
    """
    One httpstream node.

    @ivar id: a random UUIDv4 chosen at start, sent to emulated clients as ConnectResult.node.
    @ivar clients: connected clients by client id.
    """

    log = Logger()

    def __init__(
        self,
        config: Config,
        reactor: IReactorTime,
        broker: Optional[IBroker] = None,
        registry: Optional[ISessionRegistry] = None,
        rng: Optional[random.Random] = None,
        nodeID: Optional[str] = None,
    ) -> None:
        self.config = config
        self.reactor = reactor
        self.id = nodeID or str(uuid.uuid4())
        self.version = __version__
        self.rng = rng or random.Random()
        self.hub = Hub()
        self.flusher = Flusher(reactor)
        self.broker: IBroker = broker if broker is not None else MemoryBroker()
        self.broker.setHandler(self._onPublication)
        self.registry: ISessionRegistry = registry if registry is not None else SessionRegistry(self.id)
        self.tokens = TokenVerifier(config.token_hmac_secret_key)
        self.rules = ChannelRules(config)
        self.clients: dict[str, Client] = {}
        # Channels whose broker subscribe is in flight -> the later subscribers waiting for its outcome.
        self._subscribing: dict[str, list[Deferred[None]]] = {}

    def newClient(self, transport: ITransport) -> Client:
        """Create the protocol side of a new connection; it counts once it has connected."""
        return Client(self, transport, self.reactor, self.rng)

    def clientConnected(self, client: Client) -> None:
        self.clients[client.clientID] = client
        if client.sessionID:
            self.registry.add(client.sessionID, client)

    def clientClosed(self, client: Client) -> None:
        self.clients.pop(client.clientID, None)
        if client.sessionID:
            self.registry.remove(client.sessionID)

    def addSubscription(self, channel: str, client: Client) -> Deferred[None]:
        """
        Add a local subscriber; the first one subscribes the channel in the broker. Until the broker has, later
        subscribers wait for the same outcome: told "subscribed" earlier, they could miss publications, or stay
        subscribed to a channel the broker failed to join.
        """
        if self.hub.add(channel, client):
            waiters: list[Deferred[None]] = []
            self._subscribing[channel] = waiters

            def settled(result: Any) -> Any:
                if self._subscribing.get(channel) is waiters:
                    del self._subscribing[channel]
                for waiter in waiters:
                    if isinstance(result, Failure):
                        waiter.errback(result)
                    else:
                        waiter.callback(None)
                return result

            return self.broker.subscribe(channel).addBoth(settled)
        waiters = self._subscribing.get(channel)
        if waiters is None:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        waiters.append(waiter)
        return waiter

    def removeSubscription(self, channel: str, client: Client) -> None:
        if self.hub.remove(channel, client):
            d = self.broker.unsubscribe(channel)
            d.addErrback(lambda f: self.log.failure("unsubscribe {channel} in broker", f, channel=channel))

    def publish(self, channel: str, publication: dict[str, Any]) -> Deferred[dict]:
        """Publish to every subscriber of C{channel} on every node."""
        return self.broker.publish(channel, publication)

    def _onPublication(self, channel: str, publication: dict[str, Any]) -> None:
        self.hub.broadcast(channel, {"push": {"channel": channel, "pub": publication}})

    def shutdown(self) -> None:
        """Disconnect every client with 3001 "shutdown" (they reconnect, maybe to another node)."""
        for client in list(self.clients.values()):
            client.disconnect(codes.DISCONNECT_SHUTDOWN.code, codes.DISCONNECT_SHUTDOWN.reason)
