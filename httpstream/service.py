# -*- test-case-name: tests.test_tap -*-
"""
The service a node runs as: L{HTTPStreamService}, an C{IService} that listens, runs the node on its engine, reloads
its config and stops it cleanly. C{twistd httpstream} builds one (L{httpstream.tap}); a Twisted program embeds one
in its own service tree and calls the server API through it.

Where it listens is a list of endpoint descriptions (L{twisted.internet.endpoints.serverFromString}): given with
C{--listen}, or built from the config's C{address}, C{port} and C{tls} (L{httpstream.listeners}); as a worker of
C{--workers}, it serves the sockets its supervisor opened instead (L{httpstream.workers}).
"""

from __future__ import annotations

import dataclasses
import gc
import signal
from typing import Any, Callable, Optional, Sequence

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, gatherResults, maybeDeferred, succeed
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger as _TwistedLogger
from twisted.python.failure import Failure

from httpstream.cluster.bus import ShardPubSub
from httpstream.cluster.control import Control
from httpstream.config import Config, ConfigError, load_config
from httpstream.listeners import Listener, ListenError, adopt, makeListeners
from httpstream.logs import Logger, setLogLevel
from httpstream.client.factory import ClientFactory
from httpstream.node.node import Node
from httpstream.serverapi.api import ServerAPI
from httpstream.web.app import makeSite
from httpstream.web.tls import serverTLSOptions

# What a running node cannot take from a reloaded file: they shaped its port, engine, endpoints and their
# resources at start. Everything else (channel and namespace options, token keys, client settings for new
# connections, log level) is applied on SIGHUP, as Centrifugo reloads its channel options and token verifiers.
RESTART_KEYS = frozenset(
    {
        "port", "address", "name", "tls", "tls_cert", "tls_key", "tls_cert_pem", "tls_key_pem",
        "http_stream", "http_stream_max_request_body_size", "emulation_max_request_body_size", "sse",
        "sse_max_request_body_size", "websocket_disable", "websocket_message_size_limit", "allowed_origins",
        "websocket_write_batch_size", "websocket_compression", "websocket_compression_level",
        "websocket_compression_min_size", "websocket_decompressed_message_size_limit",
        "api_key", "api_insecure", "api_disable", "api_error_mode", "health", "prometheus", "demo", "demo_sdk_dir",
        "engine", "global_presence_ttl", "workers",
        # The proxy client is made at start (as the proxy_* keys): its named proxies and RPC routing stay.
        "proxies", "granular_proxy_mode", "connect_proxy_name", "refresh_proxy_name", "rpc_proxy_name",
        "rpc_namespaces", "rpc_namespace_boundary",
    }
)

def _needsRestart(key: str) -> bool:
    return key in RESTART_KEYS or key.startswith(("redis_", "proxy_", "http_server_"))


def changedKeys(old: Config, new: Config) -> list[str]:
    """The names of the keys whose values differ (names only: values may be secrets)."""
    return [f.name for f in dataclasses.fields(Config) if getattr(old, f.name) != getattr(new, f.name)]


def tuneGarbageCollector() -> None:
    """
    Fewer, cheaper collections for a long-running server process (twistd only; an embedding program owns its GC).

    Start-up objects (modules, config) are frozen out of every later collection. Full collections are rare: with
    thousands of connections one took ~135 ms and made the delivery latency's tail (bench/README.md). Young
    collections are frequent and so short: every HTTP request leaves a reference cycle (werkzeug's route matcher is
    a recursive closure; Klein's render closures), some 40 objects only the collector frees; a young generation of
    50,000 made each collection 50-75 ms, the p99 of /emulation at 1,000 req/s (60 ms), where 5,000 gives 2.3 ms.
    Gen 1 is collected every 200 young collections, gen 2 every 100 of those.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(5_000, 200, 100)


def _apiMethod(method: str, *fields: str, **defaults: Any) -> Callable[..., Deferred[dict[str, Any]]]:
    """
    The server API's C{method} as a method of the service: the request's C{fields} may be given in that order,
    any field by keyword with Centrifugo's name (C{skip_history}, C{b64data}, ...); C{defaults} fill the fields
    not given. It runs through L{ServerAPI.call}, as the HTTP API's requests do: one place for every way in.
    """

    def call(self: "HTTPStreamService", *args: Any, **options: Any) -> Deferred[dict[str, Any]]:
        if len(args) > len(fields):
            raise TypeError(f"{name}() takes {len(fields)} positional arguments but {len(args)} were given")
        request = dict(defaults)
        request.update(zip(fields, args))
        twice = set(fields[: len(args)]) & set(options)
        if twice:
            raise TypeError(f"{name}() got multiple values for argument {sorted(twice)[0]!r}")
        request.update(options)
        missing = [field for field in fields if field not in request]
        if missing:
            raise TypeError(f"{name}() missing required argument {missing[0]!r}")
        result: Deferred[dict[str, Any]] = self.api.call(method, request)
        return result

    name = "".join(part if i == 0 else part.capitalize() for i, part in enumerate(method.split("_")))
    call.__name__ = call.__qualname__ = name
    call.__doc__ = f"The server API's C{{{method}}} (fields {', '.join(fields) or 'none'} in order, or by name)."
    return call


class HTTPStreamService(MultiService):
    """
    One node, listening on C{listen} (endpoint descriptions) or else on the config's C{address}, C{port} and C{tls}.

    @ivar node: the L{Node}: its clients, hub and broker.
    @ivar api: the node's L{ServerAPI}.
    @ivar port: the first listening port once started (its C{getHost().port} is the real port when C{port} is 0).
    @ivar ports: every listening port once started.
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
        listen: Sequence[str] = (),
        inherited: Sequence[int] = (),
    ) -> None:
        """
        @param tuneGC: the process is ours (twistd): tune the collector, reload C{configPath} on SIGHUP, and
            exit with one line when the port cannot be had.
        @param listen: endpoint descriptions (C{tcp:8000:interface=127.0.0.1}, C{ssl:8443:privateKey=...}); they
            replace the config's C{address}, C{port} and C{tls}.
        @param inherited: listening sockets (descriptors) opened by a supervising process, one per listener in
            order, served instead of listening (a worker of C{--workers}: L{httpstream.workers}).
        @raise ConfigError: TLS is on and its certificate or key cannot be used.
        @raise ListenError: a description that does not parse (or names files that cannot be read).
        """
        super().__init__()  # type: ignore[no-untyped-call]
        self._tuneGC = tuneGC
        self._configPath = configPath
        self.config = config
        self.reactor = reactor
        # Read even when --listen replaces it: a config whose TLS cannot be used is refused either way.
        self._tls = serverTLSOptions(config)
        self._shard: Any = None  # the Redis router (one Redis, shards, a Cluster), with the redis engine
        self.node = self._makeNode()
        self.api = ServerAPI(self.node)
        self.site = makeSite(self.node, api=self.api)
        self._listen = tuple(listen)
        self.listeners = makeListeners(reactor, config, self._listen, self.site, self._tls)
        if inherited and len(inherited) != len(self.listeners):
            raise ListenError(f"{len(inherited)} inherited sockets for {len(self.listeners)} listeners")
        self._inherited = tuple(inherited)
        self._accepting: list[Deferred[None]] = []
        self.port: Optional[IListeningPort] = None
        self.ports: list[IListeningPort] = []
        self._warnings = list(warnings or ())
        if self._listen and config.tls:
            self._warnings.append('--listen replaces the config\'s "tls": use an ssl: description for TLS')
        self._envApplied = envApplied

    def _makeNode(self) -> Node:
        """The node on its engine: in memory, or Redis with the control plane (both started with the service)."""
        config, reactor = self.config, self.reactor
        if config.engine != "redis":
            return Node(config, reactor, clientFactory=ClientFactory(reactor))
        # Imported only here: txredisapi installs the global reactor when imported.
        from httpstream.engines.redis import RedisBroker, RedisMapBroker, RedisPresence, routerFromConfig
        shard = routerFromConfig(reactor, config)
        shard.setServiceParent(self)  # type: ignore[no-untyped-call]
        self._shard = shard
        mapBroker = RedisMapBroker(shard, reactor, metaTTL=config.global_history_meta_ttl)
        mapBroker.setServiceParent(self)  # type: ignore[no-untyped-call]  # after the shard: its sweep stops first
        node = Node(
            config, reactor, broker=RedisBroker(shard, historyMetaTTL=config.global_history_meta_ttl),
            presence=RedisPresence(shard, ttl=config.global_presence_ttl), mapBroker=mapBroker,
            clientFactory=ClientFactory(reactor),
        )
        # Added after the shard: started after it, stopped before it (its "leave" still goes out).
        control = Control(reactor, node, ShardPubSub(shard), prefix=config.redis_prefix)
        control.setServiceParent(self)  # type: ignore[no-untyped-call]
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
        if self._inherited:
            ports = [adopt(self.reactor, listener, fd) for listener, fd in zip(self.listeners, self._inherited)]
        else:
            ports = [self._listenOn(listener) for listener in self.listeners]
        self.ports = ports
        self.port = ports[0]
        if self._tuneGC:
            tuneGarbageCollector()
        super().startService()  # type: ignore[no-untyped-call]
        # As Centrifugo, which starts its HTTP servers only once its node (and its broker's PUB/SUB) runs: the
        # port is bound (a taken port still fails start-up) but no connection is accepted before the engine is
        # up, or early clients would get error 100 for every subscribe. Connections waiting meanwhile stay in the
        # kernel's backlog and are served once it is.
        ready = self._engineReady()
        paused = not ready.called
        if paused:
            for port in ports:
                _pause(port, True)
        ready.addCallback(lambda _: self._accept(paused))

    def _listenOn(self, listener: Listener) -> IListeningPort:
        outcome: list[Any] = []
        listener.endpoint.listen(listener.factory).addBoth(outcome.append)
        # The reactor's own endpoints (tcp, tcp6, ssl, unix) listen synchronously: a server that cannot listen
        # must not run on serving nothing, so one that would answer later is refused rather than waited for.
        if not outcome:
            raise ValueError(f"endpoint {listener.description!r} does not listen at once")
        if isinstance(outcome[0], Failure):
            self._cannotListen(outcome[0])
        port: IListeningPort = outcome[0]
        return port

    def _engineReady(self) -> Deferred[None]:
        """Fires once the engine can serve: at once in memory, once both Redis connections are up."""
        if self._shard is None:
            return succeed(None)
        self.log.info(
            "waiting for Redis at {address} before accepting connections", address=self._shard.describe()
        )
        ready: Deferred[None] = self._shard.whenReady()
        return ready

    def _accept(self, paused: bool) -> None:
        if not self.ports or not self.running:
            return  # stopped while waiting
        for port, listener in zip(self.ports, self.listeners):
            if paused:
                _pause(port, False)
            host = port.getHost()
            if isinstance(host, (IPv4Address, IPv6Address)):
                where = f"{listener.scheme}://{host.host}:{host.port}"
            else:  # a UNIX socket: its description says it best
                where = f"{listener.scheme} on {listener.description}"
            self.announce.info(
                "httpstream {version} node {node} listening on {where}",
                version=self.node.version, node=self.node.id, where=where,
            )
        accepting, self._accepting = self._accepting, []
        for waiting in accepting:
            waiting.callback(None)

    def whenAccepting(self) -> Deferred[None]:
        """Fires once the service accepts connections (its engine is up); never if it stops first."""
        waiting: Deferred[None] = Deferred()
        self._accepting.append(waiting)
        return waiting

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
        error = failure.value
        if not (self._tuneGC and isinstance(error, CannotListenError)):
            failure.raiseException()
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
        try:
            applied = self.reload(config)
        except ConfigError as e:
            # A namespace naming a proxy that only a restart would bring (proxies keep their running value).
            self.log.error("config reload failed, keeping the running config: {error}", error=str(e))
            return
        self.log.info(
            "config reloaded from {path}: {changes}",
            path=self._configPath,
            changes=("changed " + ", ".join(applied)) if applied else "nothing to apply",
        )

    # The embedding API: Centrifugo's server API methods, each returning a Deferred that fires with the result
    # dict or fails with httpstream.serverapi.api.APIError. Data is raw-JSON bytes.
    publish = _apiMethod("publish", "channel", "data")
    broadcast = _apiMethod("broadcast", "channels", "data")
    presence = _apiMethod("presence", "channel")
    presenceStats = _apiMethod("presence_stats", "channel")
    history = _apiMethod("history", "channel")
    historyRemove = _apiMethod("history_remove", "channel")
    subscribe = _apiMethod("subscribe", "user", "channel")
    unsubscribe = _apiMethod("unsubscribe", "user", "channel", channel="")
    disconnect = _apiMethod("disconnect", "user")
    refresh = _apiMethod("refresh", "user")
    channels = _apiMethod("channels", "pattern", pattern="")
    info = _apiMethod("info")

    def stopService(self) -> Deferred[None]:
        """
        Stop accepting connections, disconnect every client (3001 "shutdown"), wait for the engine calls their
        leaving made, then stop the engine: all within C{shutdown_timeout}, after which the stop is given up on
        (logged) so that the process still exits.
        """
        self.log.info("shutting down: disconnecting {count} clients", count=len(self.node.clients))
        timeout = self.config.shutdown_timeout
        ports, self.ports, self.port = self.ports, [], None
        stopped: Deferred[Any] = gatherResults(
            [maybeDeferred(port.stopListening) for port in ports], consumeErrors=True
        )
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


def _pause(port: IListeningPort, paused: bool) -> None:
    """Stop (or resume) accepting connections on a port of the reactor's own (a C{tcp.Port} or C{unix.Port})."""
    method = getattr(port, "stopReading" if paused else "startReading", None)
    if method is not None:
        method()
