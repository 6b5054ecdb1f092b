# -*- test-case-name: tests.test_tap -*-
"""
``twistd httpstream``: command-line options and the service a node runs as.

L{makeService} is also the embedding entry point: a Twisted program adds the service it returns to its own
L{MultiService} and reaches the node through C{service.node}.
"""

from __future__ import annotations

import gc
import sys
from typing import Any, Mapping, Optional, Union

from twisted.application.service import MultiService
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger as _TwistedLogger
from twisted.python import usage
from twisted.python.failure import Failure

from httpstream.api import ServerAPI
from httpstream.config import Config, ConfigError, load_config
from httpstream.control import Control
from httpstream.controlbus import ShardPubSub
from httpstream.logs import Logger, setLogLevel
from httpstream.node import Node
from httpstream.web import makeSite


class Options(usage.Options):
    """twistd httpstream [-c FILE]"""

    synopsis = "[-c FILE]"
    longdesc = (
        "Run an httpstream node: a Centrifugo-compatible real-time server (client protocol v2) whose "
        "HTTP streaming transport works where WebSocket does not. The config file is JSON with "
        "Centrifugo's key names; see config.example.json."
    )
    optParameters = [
        ["config", "c", "config.json", "Path to the JSON config file."],
    ]

    config: Config
    warnings: list[str]

    def postOptions(self) -> None:
        try:
            self.config, self.warnings = load_config(self["config"])
        except ConfigError as e:
            # One line an operator can act on, not twistd's usage text and not a traceback.
            sys.stderr.write(f"httpstream: {e}\n")
            raise SystemExit(1)


# A reconnect storm after a restart opens thousands of connections at once; Twisted's default backlog of 50 made
# the kernel drop SYNs (bench/README.md).
LISTEN_BACKLOG = 1024


def tuneGarbageCollector() -> None:
    """
    Fewer, cheaper collections for a long-running server process (twistd only; an embedding program owns its GC).

    Start-up objects (modules, config) are frozen out of every later collection, and the young generation is
    larger: with thousands of connections, full collections every second took ~135 ms each and made the delivery
    latency's tail (bench/README.md).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


class HTTPStreamService(MultiService):
    """
    One node listening on C{config.port}.

    @ivar node: the L{Node}: its clients, hub and broker.
    @ivar port: the listening port once started (its C{getHost().port} is the real port when C{port} is 0).
    """

    log = Logger()
    # The listening line is what an operator (and the test harness) waits for, whatever log_level says.
    announce = _TwistedLogger()

    def __init__(
        self, config: Config, reactor: Any, warnings: Optional[list[str]] = None, tuneGC: bool = False
    ) -> None:
        super().__init__()
        self._tuneGC = tuneGC
        self.config = config
        self.reactor = reactor
        self.node = self._makeNode()
        self.api = ServerAPI(self.node)
        self.site = makeSite(self.node, api=self.api)
        self.port: Optional[IListeningPort] = None
        self._warnings = list(warnings or ())

    def _makeNode(self) -> Node:
        """The node on its engine: in memory, or Redis with the control plane (both started with the service)."""
        config, reactor = self.config, self.reactor
        if config.engine != "redis":
            return Node(config, reactor)
        # Imported only here: txredisapi installs the global reactor when imported.
        from httpstream.engines.redis import RedisBroker, RedisPresence, RedisShard

        shard = RedisShard.fromConfig(reactor, config)
        shard.setServiceParent(self)
        node = Node(
            config, reactor,
            broker=RedisBroker(shard, historyMetaTTL=config.global_history_meta_ttl, passEpoch=True),
            presence=RedisPresence(shard, ttl=config.global_presence_ttl),
        )
        # Added after the shard: started after it, stopped before it (its "leave" still goes out).
        control = Control(reactor, node, ShardPubSub(shard), prefix=config.redis_prefix)
        control.setServiceParent(self)
        node.useControl(control)
        return node

    def startService(self) -> None:
        setLogLevel(self.config.log_level)
        for warning in self._warnings:
            self.log.warn("{warning}", warning=warning)
        endpointType = TCP6ServerEndpoint if ":" in self.config.address else TCP4ServerEndpoint
        endpoint = endpointType(
            self.reactor, self.config.port, backlog=LISTEN_BACKLOG, interface=self.config.address
        )
        outcome: list[Any] = []
        endpoint.listen(self.site).addBoth(outcome.append)
        # TCP endpoints listen synchronously; raising here makes twistd report the failure and exit non-zero
        # (a taken port), instead of running a server that serves nothing.
        if isinstance(outcome[0], Failure):
            outcome[0].raiseException()
        self.port = outcome[0]
        host = self.port.getHost()
        self.announce.info(
            "httpstream {version} node {node} listening on http://{host}:{port}",
            version=self.node.version,
            node=self.node.id,
            host=host.host,
            port=host.port,
        )
        if self._tuneGC:
            tuneGarbageCollector()
        super().startService()

    # The embedding API: Centrifugo's server API methods (keyword arguments with its field names, raw-JSON bytes
    # for data), each returning a Deferred that fires with the result dict or fails with httpstream.api.APIError.

    def publish(self, channel: str, data: bytes, **options: Any) -> Any:
        return self.api.publish(channel=channel, data=data, **options)

    def broadcast(self, channels: list[str], data: bytes, **options: Any) -> Any:
        return self.api.broadcast(channels=channels, data=data, **options)

    def presence(self, channel: str) -> Any:
        return self.api.presence(channel=channel)

    def presenceStats(self, channel: str) -> Any:
        return self.api.presence_stats(channel=channel)

    def history(self, channel: str, **options: Any) -> Any:
        return self.api.history(channel=channel, **options)

    def historyRemove(self, channel: str) -> Any:
        return self.api.history_remove(channel=channel)

    def subscribe(self, user: str, channel: str, **options: Any) -> Any:
        return self.api.subscribe(user=user, channel=channel, **options)

    def unsubscribe(self, user: str, channel: str = "", **options: Any) -> Any:
        return self.api.unsubscribe(user=user, channel=channel, **options)

    def disconnect(self, user: str, **options: Any) -> Any:
        return self.api.disconnect(user=user, **options)

    def refresh(self, user: str, **options: Any) -> Any:
        return self.api.refresh(user=user, **options)

    def channels(self, pattern: str = "") -> Any:
        return self.api.channels(pattern=pattern)

    def info(self) -> Any:
        return self.api.info()

    def stopService(self) -> Any:
        port, self.port = self.port, None
        # The engine (a Redis shard, a child service) stops only once the clients' leaving has reached it.
        d = self.node.shutdown()
        d.addCallback(lambda _: MultiService.stopService(self))
        if port is not None:
            d.addCallback(lambda _: port.stopListening())
        return d


def makeService(
    options: Union[Options, Mapping[str, Any]], reactor: Any = None
) -> HTTPStreamService:
    """
    Build a node's service from parsed L{Options} or a mapping whose C{"config"} is a L{Config}, a dict of
    Centrifugo keys, or a file path.
    """
    if reactor is None:
        from twisted.internet import reactor as defaultReactor

        reactor = defaultReactor
    config = getattr(options, "config", None)
    warnings: list[str] = list(getattr(options, "warnings", ()))
    if not isinstance(config, Config):
        source = options["config"]
        if isinstance(source, Config):
            config = source
        elif isinstance(source, Mapping):
            config, warnings = Config.from_dict(source)
        else:
            config, warnings = load_config(source)
    # Only under twistd (parsed Options) is the process ours to tune.
    return HTTPStreamService(config, reactor, warnings, tuneGC=isinstance(options, Options))
