# -*- test-case-name: tests.test_tap -*-
"""
``twistd httpstream``: command-line options and the service a node runs as.

L{makeService} is also the embedding entry point: a Twisted program adds the service it returns to its own
L{MultiService} and reaches the node through C{service.node}.
"""

from __future__ import annotations

import dataclasses
import gc
import signal
import sys
from pathlib import Path
from typing import Any, Mapping, Optional, Union

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred, succeed
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.logger import Logger as _TwistedLogger
from twisted.python import usage
from twisted.python.failure import Failure

from httpstream.serverapi.api import ServerAPI
from httpstream.config import Config, ConfigError, load_config, read_config
from httpstream.cluster.control import Control
from httpstream.cluster.bus import ShardPubSub
from httpstream.logs import Logger, setLogLevel
from httpstream.client.factory import ClientFactory
from httpstream.node.node import Node
from httpstream.web.tls import serverTLSOptions
from httpstream.web.app import makeSite

# What a running node cannot take from a reloaded file: they shaped its port, engine, endpoints and their
# resources at start. Everything else (channel and namespace options, token keys, client settings for new
# connections, log level) is applied on SIGHUP, as Centrifugo reloads its channel options and token verifiers.
RESTART_KEYS = frozenset(
    {
        "port", "address", "name", "tls", "tls_cert", "tls_key", "tls_cert_pem", "tls_key_pem",
        "http_stream", "http_stream_max_request_body_size", "emulation_max_request_body_size", "sse",
        "sse_max_request_body_size", "websocket_disable", "websocket_message_size_limit", "allowed_origins",
        "websocket_write_batch_size",
        "api_key", "api_insecure", "api_disable", "api_error_mode", "health", "prometheus", "demo", "demo_sdk_dir",
        "engine", "global_presence_ttl",
    }
)


def _needsRestart(key: str) -> bool:
    return key in RESTART_KEYS or key.startswith(("redis_", "proxy_", "http_server_"))


def changedKeys(old: Config, new: Config) -> list[str]:
    """The names of the keys whose values differ (names only: values may be secrets)."""
    return [f.name for f in dataclasses.fields(Config) if getattr(old, f.name) != getattr(new, f.name)]


class Options(usage.Options):
    """twistd httpstream [-c FILE]"""

    synopsis = "[-c FILE]"
    longdesc = (
        "Run an httpstream node: a Centrifugo-compatible real-time server (client protocol v2) whose "
        "HTTP streaming transport works where WebSocket does not. The config file is JSON, YAML or TOML with "
        "Centrifugo's key names (v5 or v6), under CENTRIFUGO_* environment variables: `httpstream genconfig` "
        "writes one with fresh secrets, and an example ships with the package (below)."
    )
    optParameters = [
        ["config", "c", "config.json", "Path to the config file (.json, .yaml/.yml or .toml)."],
    ]

    config: Config
    warnings: list[str]
    envApplied: tuple[str, ...] = ()

    def getUsage(self, width: Optional[int] = None) -> str:
        # On a line of its own: the wrapped description would break the path at its hyphens.
        return f"{super().getUsage(width)}\nExample config: {Path(__file__).with_name('config.example.json')}\n"

    def opt_version(self) -> None:
        """Display httpstream's version and exit."""
        from httpstream.version import versionText

        print(versionText())
        raise SystemExit(0)

    def postOptions(self) -> None:
        try:
            loaded = read_config(self["config"])
            self.config, self.warnings, self.envApplied = loaded.config, loaded.warnings, loaded.env_applied
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
        self,
        config: Config,
        reactor: Any,
        warnings: Optional[list[str]] = None,
        tuneGC: bool = False,
        configPath: Optional[str] = None,
        envApplied: tuple[str, ...] = (),
    ) -> None:
        """
        @param tuneGC: the process is ours (twistd): tune the collector, reload C{configPath} on SIGHUP, and
            exit with one line when the port cannot be had.
        @raise ConfigError: TLS is on and its certificate or key cannot be used.
        """
        super().__init__()
        self._tuneGC = tuneGC
        self._configPath = configPath
        self._tls = serverTLSOptions(config)
        self.config = config
        self.reactor = reactor
        self._shard: Any = None  # the Redis shard, with the redis engine
        self.node = self._makeNode()
        self.api = ServerAPI(self.node)
        self.site = makeSite(self.node, api=self.api)
        self.port: Optional[IListeningPort] = None
        self._warnings = list(warnings or ())
        self._envApplied = envApplied

    def _makeNode(self) -> Node:
        """The node on its engine: in memory, or Redis with the control plane (both started with the service)."""
        config, reactor = self.config, self.reactor
        if config.engine != "redis":
            return Node(config, reactor, clientFactory=ClientFactory(reactor))
        # Imported only here: txredisapi installs the global reactor when imported.
        from httpstream.engines.redis import RedisBroker, RedisPresence, RedisShard

        shard = RedisShard.fromConfig(reactor, config)
        shard.setServiceParent(self)
        self._shard = shard
        node = Node(
            config, reactor,
            broker=RedisBroker(shard, historyMetaTTL=config.global_history_meta_ttl, passEpoch=True),
            presence=RedisPresence(shard, ttl=config.global_presence_ttl),
            clientFactory=ClientFactory(reactor),
        )
        # Added after the shard: started after it, stopped before it (its "leave" still goes out).
        control = Control(reactor, node, ShardPubSub(shard), prefix=config.redis_prefix)
        control.setServiceParent(self)
        node.useControl(control)
        return node

    def startService(self) -> None:
        setLogLevel(self.config.log_level)
        if self._tuneGC and self._configPath is not None:
            # Before the listening line: whoever waits for it may send SIGHUP at once. The handler only
            # schedules; the reload runs in the reactor, between two events.
            signal.signal(signal.SIGHUP, lambda signum, frame: self.reactor.callFromThread(self.reloadFile))
        for warning in self._warnings:
            self.log.warn("{warning}", warning=warning)
        if self._envApplied:
            # Names only: values may be secrets.
            self.log.info("environment variables applied: {names}", names=" ".join(self._envApplied))
        endpointType = TCP6ServerEndpoint if ":" in self.config.address else TCP4ServerEndpoint
        endpoint = endpointType(
            self.reactor, self.config.port, backlog=LISTEN_BACKLOG, interface=self.config.address
        )
        # TLS wraps the site itself, so https, wss and the emulation POSTs share the one port.
        factory = self.site if self._tls is None else TLSMemoryBIOFactory(self._tls, False, self.site)
        outcome: list[Any] = []
        endpoint.listen(factory).addBoth(outcome.append)
        # TCP endpoints listen synchronously: a server that cannot listen must not run on serving nothing.
        if isinstance(outcome[0], Failure):
            self._cannotListen(outcome[0])
        self.port = outcome[0]
        if self._tuneGC:
            tuneGarbageCollector()
        super().startService()
        # As Centrifugo, which starts its HTTP servers only once its node (and its broker's PUB/SUB) runs: the
        # port is bound (a taken port still fails start-up) but no connection is accepted before the engine is
        # up, or early clients would get error 100 for every subscribe. Connections waiting meanwhile stay in the
        # kernel's backlog and are served once it is.
        ready = self._engineReady()
        paused = not ready.called
        if paused:
            self.port.stopReading()  # type: ignore[attr-defined]  # a tcp.Port
        ready.addCallback(lambda _: self._accept(paused))

    def _engineReady(self) -> Deferred[None]:
        """Fires once the engine can serve: at once in memory, once both Redis connections are up."""
        if self._shard is None:
            return succeed(None)
        self.log.info(
            "waiting for Redis at {address} before accepting connections", address=str(self._shard.address)
        )
        return self._shard.whenReady()

    def _accept(self, paused: bool) -> None:
        port = self.port
        if port is None or not self.running:
            return  # stopped while waiting
        if paused:
            port.startReading()  # type: ignore[attr-defined]  # a tcp.Port
        host = port.getHost()
        self.announce.info(
            "httpstream {version} node {node} listening on {scheme}://{host}:{port}",
            version=self.node.version,
            node=self.node.id,
            scheme="http" if self._tls is None else "https",
            host=host.host,
            port=host.port,
        )

    def _drained(self, interval: float = 0.01) -> Deferred[None]:
        """
        Fires once no connection has output waiting for its socket (the reactor has no writers left), polling:
        Twisted hands a write to the socket when it can, and otherwise keeps the connection a writer until it has.
        """
        getWriters = getattr(self.reactor, "getWriters", None)
        if getWriters is None:
            return succeed(None)
        done: Deferred[None] = Deferred()

        def check() -> None:
            if getWriters():
                self.reactor.callLater(interval, check)
            else:
                done.callback(None)

        check()
        return done

    def _cannotListen(self, failure: Failure) -> None:
        """A taken port or an address not on this host: under twistd one line and exit 1, else raise."""
        if not (self._tuneGC and failure.check(CannotListenError)):
            failure.raiseException()
        error = failure.value
        reason = getattr(error.socketError, "strerror", None) or str(error.socketError)
        self.log.error(
            "cannot listen on {address}:{port}: {reason}",
            address=error.interface or "*", port=error.port, reason=reason.lower(),
        )
        raise SystemExit(1)

    def reload(self, config: Config) -> list[str]:
        """
        Apply C{config} to the running node as SIGHUP does: channel and namespace options, token keys, client
        settings of new connections, log level. Keys that need a restart keep their running values (logged).

        @return: the names of the keys applied.
        """
        changed = changedKeys(self.config, config)
        later = [key for key in changed if _needsRestart(key)]
        if later:
            config = dataclasses.replace(config, **{key: getattr(self.config, key) for key in later})
            self.log.warn("config reload: changed keys that need a restart, not applied: {keys}", keys=", ".join(later))
        applied = [key for key in changed if not _needsRestart(key)]
        self.config = config
        self.node.reload(config)
        setLogLevel(config.log_level)
        return applied

    def reloadFile(self) -> None:
        """Read the config file again (SIGHUP); an invalid file is logged and the running config kept."""
        assert self._configPath is not None
        try:
            config, warnings = load_config(self._configPath)
        except ConfigError as e:
            self.log.error("config reload failed, keeping the running config: {error}", error=str(e))
            return
        for warning in warnings:
            self.log.warn("{warning}", warning=warning)
        applied = self.reload(config)
        self.log.info(
            "config reloaded from {path}: {changes}",
            path=self._configPath,
            changes=("changed " + ", ".join(applied)) if applied else "nothing to apply",
        )

    # The embedding API: Centrifugo's server API methods (keyword arguments with its field names, raw-JSON bytes
    # for data), each returning a Deferred that fires with the result dict or fails with httpstream.serverapi.api.APIError.

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

    def stopService(self) -> Deferred[None]:
        """
        Stop accepting connections, disconnect every client (3001 "shutdown"), wait for the engine calls their
        leaving made, then stop the engine: all within C{shutdown_timeout}, after which the stop is given up on
        (logged) so that the process still exits.
        """
        self.log.info("shutting down: disconnecting {count} clients", count=len(self.node.clients))
        timeout = self.config.shutdown_timeout
        port, self.port = self.port, None
        stopped = maybeDeferred(port.stopListening) if port is not None else succeed(None)
        # The engine (a Redis shard, a child service) stops only once the clients' leaving has reached it.
        stopped.addBoth(lambda _: self.node.shutdown(timeout))
        # The engine stops while the clients' last bytes (3001) are still draining: the reactor stops once this
        # fires, and anything it had not sent by then would be lost.
        stopped.addCallback(
            lambda _: gatherResults([maybeDeferred(MultiService.stopService, self), self._drained()])
        )
        done: Deferred[None] = Deferred()

        def finished(result: Any) -> None:
            if timer.active():
                timer.cancel()
            if isinstance(result, Failure):
                self.log.failure("shutdown", result)
            if not done.called:
                done.callback(None)

        def expired() -> None:
            self.log.warn("shutdown timeout reached ({timeout}s): exiting anyway", timeout=timeout)
            done.callback(None)

        timer = self.reactor.callLater(timeout, expired)
        stopped.addBoth(finished)
        return done


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
    ownProcess = isinstance(options, Options)
    if not isinstance(config, Config):
        source = options["config"]
        if isinstance(source, Config):
            config = source
        elif isinstance(source, Mapping):
            config, warnings = Config.from_dict(source)
        else:
            config, warnings = load_config(source)
    # Only under twistd (parsed Options) is the process ours to tune, to reload on SIGHUP and to exit.
    try:
        return HTTPStreamService(
            config, reactor, warnings, tuneGC=ownProcess, configPath=options["config"] if ownProcess else None,
            envApplied=tuple(getattr(options, "envApplied", ())),
        )
    except ConfigError as e:
        if not ownProcess:
            raise
        sys.stderr.write(f"httpstream: {e}\n")
        raise SystemExit(1)
