"""
Makes the clients of one node (the node's C{clientFactory}): they share one L{Flusher}, so every writer with
something queued writes once per reactor turn, and one L{Sweep}, the one timer of their pings, pongs, expiry,
staleness and presence refresh.
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime

from httpstream.client.client import Client
from httpstream.client.host import ClientHost
from httpstream.client.sweep import Sweep
from httpstream.client.writer import Flusher
from httpstream.interfaces import ITransport


class ClientFactory:
    """C{factory(node, transport)}: a new L{Client} of C{node} on C{transport}, timed by C{reactor}."""

    def __init__(self, reactor: IReactorTime) -> None:
        self.reactor = reactor
        self.flusher = Flusher(reactor)
        self.sweep = Sweep(reactor)

    def __call__(self, node: ClientHost, transport: ITransport) -> Client:
        # The node's random source: seeded in tests, so ping times repeat.
        return Client(node, transport, self.reactor, node.rng, self.flusher, self.sweep)
