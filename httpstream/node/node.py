# -*- test-case-name: tests.node.test_node -*-
"""
The node: this process's id, its clients, its hub, and the engine it publishes through.
"""

from __future__ import annotations

import random
import uuid
from typing import Any, Callable, Optional

from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from httpstream import __version__

from httpstream.protocol import codes
from httpstream.policy.channels import ChannelError, ChannelRules
from httpstream.config import ChannelOptions, Config
from httpstream.cluster.control import Control
from httpstream.cluster.replies import CODE_BAD_REQUEST, OpError
from httpstream.engines.memory import MemoryBroker, MemoryPresence
from httpstream.engines.maps import IMapBroker
from httpstream.engines.memorymap import MemoryMapBroker
from httpstream.emulation import EmulationResult
from httpstream.node.hub import Hub
from httpstream.interfaces import (
    IBroker,
    IClient,
    IClientPolicy,
    IClusterNodes,
    IEmulationForwarder,
    IPresenceManager,
    ISessionRegistry,
    ITransport,
)
from httpstream.logs import Logger
from httpstream.metrics import Metrics
from httpstream.origin import compile_origin_pattern
from httpstream.protocol import EncodeError, codecFor
from httpstream.protocol.tagsfilter import TagsFilter
from httpstream.node.connlimit import ConnLimit
from httpstream.node.frames import PublicationFrames
from httpstream.node.maps import NodeMaps
from httpstream.node.registry import LocalNodes, SessionRegistry
from httpstream.node.sharedpoll import SharedPolls
from httpstream.policy.application import ApplicationPolicy
from httpstream.policy.clientpolicy import ConfiguredPolicy
from httpstream.policy.proxy import ProxyClient
from httpstream.policy.proxy.sharedpoll import SharedPollBackend
from httpstream.policy.rpc import RPCRegistry
from httpstream.policy.tokens import TokenVerifier
from httpstream.values import ClientInfo, Publication, StreamPosition

# Makes the protocol side of a new connection (httpstream.client.ClientFactory): the node does not import the
# client, whose layer sits above it.
ClientFactory = Callable[["Node", ITransport], IClient]

# How long a stopping node waits for the engine calls its clients' leaving made (presence removals, leaves).
SHUTDOWN_TIMEOUT = 5.0

# The control op that carries the server API's shared_poll_publish to every node, and how long its call waits for
# their acknowledgements (it is sent to all at once, through Redis; a node that is gone is no reason to wait long).
SHARED_POLL_PUBLISH = "shared_poll_publish"
SHARED_POLL_PUBLISH_WAIT = 2.0


class Node:
    """
    One httpstream node.

    @ivar id: a random UUIDv4 chosen at start, sent to emulated clients as ConnectResult.node.
    @ivar clients: connected clients by client id.
    @ivar policy: what its clients ask for decisions: an L{ApplicationPolicy} (whose callables an embedding
        program may set) in front of the L{ConfiguredPolicy} (tokens, namespaces, proxies), unless one was given.
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
        presence: Optional[IPresenceManager] = None,
        proxy: Optional[ProxyClient] = None,
        clientFactory: Optional[ClientFactory] = None,
        policy: Optional[IClientPolicy] = None,
        mapBroker: Optional[IMapBroker] = None,
    ) -> None:
        self.config = config
        self.reactor = reactor
        self.id = nodeID or str(uuid.uuid4())
        self.version = __version__
        self.rng = rng or random.Random()
        self.started = reactor.seconds()
        self.hub = Hub()
        self._clientFactory = clientFactory
        self.broker: IBroker = broker if broker is not None else MemoryBroker(reactor)
        self.presence: IPresenceManager = presence if presence is not None else MemoryPresence()
        self.proxy = proxy if proxy is not None else ProxyClient(config, reactor)
        # Shared poll channels: the keys this node's subscribers track, polled from their backends.
        self.sharedPoll = SharedPolls(reactor, SharedPollBackend(self.proxy).refresh, self.rng)
        # RPC methods and send hooks of a program that embeds httpstream.
        self.rpc = RPCRegistry()
        self.metrics = Metrics(self)
        # The latest publication of each channel that allows deltas: the base of the next one's delta.
        self._latest: dict[str, Publication] = {}
        # Whether each channel with local subscribers allows deltas: its options, resolved once while it has them
        # (not once per publication on its way out); a reload forgets them.
        self._deltaAllowed: dict[str, bool] = {}
        self._users: dict[str, int] = {}
        self.broker.setHandler(self._onPublication)
        self.broker.setJoinLeaveHandler(self._onJoinLeave)
        # A broker whose PUB/SUB connection can drop (Redis) says which channels may have missed publications.
        self.broker.setReconnectHandler(self.checkPositions)
        # Map channels' state and change stream; their writes reach subscribers as publications do.
        self.mapBroker: IMapBroker = mapBroker if mapBroker is not None else MemoryMapBroker(reactor)
        self.mapBroker.setHandler(self._onPublication)
        # Map subscribers compare their position with the map's stream (httpstream.client.mapflow), the others with
        # the channel's history: both through the node's subscribers of those channels.
        self.mapBroker.setReconnectHandler(self.checkPositions)
        self.maps = NodeMaps(self)
        # Channels with local subscribers that are map channels: subscribed in the map broker, not the broker.
        self._mapChannels: set[str] = set()
        self.registry: ISessionRegistry = registry if registry is not None else SessionRegistry()
        # The live nodes of the cluster: this one alone, until useControl.
        self.nodes: IClusterNodes = LocalNodes(self.id)
        self.tokens = TokenVerifier.fromConfig(config, reactor)
        self.rules = ChannelRules(config)
        self.policy: IClientPolicy = policy if policy is not None else ApplicationPolicy(ConfiguredPolicy(self))
        self.clients: dict[str, IClient] = {}
        # Every client made here that has not closed yet, connected or still connecting: what the node's
        # connection limit counts.
        self._open: set[IClient] = set()
        self.connLimit = ConnLimit(reactor, lambda: self.config, lambda: len(self._open), self.metrics)
        # Channels whose broker subscribe is in flight -> the later subscribers waiting for its outcome.
        self._subscribing: dict[str, list[Deferred[None]]] = {}
        # Engine calls in flight that nobody waits for (see background).
        self._background: set[Deferred[Any]] = set()
        # The control plane of a cluster (httpstream.cluster.control.Control); None for a node alone.
        self.control: Optional[Control] = None
        # How emulation requests reach the sessions of other nodes (the control plane); None for a node alone.
        self.emulationForwarder: Optional[IEmulationForwarder] = None

    def reload(self, config: Config) -> None:
        """
        Take a reloaded configuration: channel and namespace options and token keys apply to every decision from
        now on; connections already open keep their own connection-level settings (ping, limits).
        """
        self.config = config
        self.rules = ChannelRules(config)
        self.tokens = TokenVerifier.fromConfig(config, self.reactor)
        self._deltaAllowed.clear()

    def useControl(self, control: Control) -> None:
        """
        Join a cluster through C{control}: its node list says which nodes exist (emulation requests naming one
        of them are forwarded), and the server API reaches users' connections on every node through it.
        """
        self.control = control
        self.nodes = control
        self.emulationForwarder = control
        control.register(SHARED_POLL_PUBLISH, self._sharedPollPublished)

    def sharedPollPublish(self, channel: str, key: str, version: int, epoch: str, data: bytes) -> Deferred[None]:
        """
        The application's update of a shared poll key (the server API's C{shared_poll_publish}): to the trackers
        of every node (each compares the version with its own, L{ISharedPoll.publish}).

        @return: a Deferred firing once every node has it, or after L{SHARED_POLL_PUBLISH_WAIT} seconds for the nodes
            that have not said so (one that left without a word must not hold the caller up); failing when it
            could not be sent.
        """
        if self.control is None:
            self.sharedPoll.publish(channel, key, version, epoch, data)
            return succeed(None)
        payload = {"channel": channel, "key": key, "version": version, "epoch": epoch, "data": data}
        d = self.control.survey(SHARED_POLL_PUBLISH, payload, timeout=SHARED_POLL_PUBLISH_WAIT)
        return d.addCallback(lambda _: None)

    def _sharedPollPublished(self, payload: Any, origin: str) -> None:
        """The control op of L{sharedPollPublish}, on each node (this one too)."""
        fields = payload if type(payload) is dict else {}
        channel, key, version = fields.get("channel"), fields.get("key"), fields.get("version")
        epoch, data = fields.get("epoch"), fields.get("data")
        if not (type(channel) is str and type(key) is str and type(version) is int and type(epoch) is str
                and type(data) is bytes):
            raise OpError(CODE_BAD_REQUEST)
        self.sharedPoll.publish(channel, key, version, epoch, data)

    def emulate(self, session: str, nodeID: str, data: bytes) -> Deferred[EmulationResult]:
        """
        Run one emulation request: encoded commands C{data} for C{session}, which the request says lives on node
        C{nodeID}. They run on that session's client as if they had come on its own connection; their replies go
        down its stream. A session of another node is reached through L{emulationForwarder} (no sticky sessions).

        @return: a Deferred firing with the L{EmulationResult} once the commands have run (or were dropped); it
            never fails.
        """
        if not self.nodes.isKnownNode(nodeID):
            return succeed(EmulationResult.UNKNOWN_NODE)
        if nodeID != self.id and self.emulationForwarder is not None:
            return self.emulationForwarder.forwardEmulation(nodeID, session, data)
        client = self.registry.get(session)
        if client is None:
            return succeed(EmulationResult.NO_SESSION)
        ran: Deferred[Any] = client.handleData(data)
        return ran.addCallback(lambda _: EmulationResult.DELIVERED)

    def newClient(self, transport: ITransport) -> IClient:
        """Create the protocol side of a new connection; it counts once it has connected."""
        if self._clientFactory is None:
            raise RuntimeError("this node makes no clients: pass clientFactory=httpstream.client.ClientFactory(...)")
        client = self._clientFactory(self, transport)
        self._open.add(client)
        return client

    def info(self) -> dict[str, Any]:
        """This node's entry in the C{info} API's list (and in its announcements to other nodes)."""
        return {
            "uid": self.id,
            "name": self.config.name or self.id,
            "version": self.version,
            "num_clients": len(self.clients),
            "num_users": len({client.user for client in self.clients.values()}),
            "num_channels": len(self.hub.channels()),
            "num_subs": self.hub.numSubscriptions(),
            "uptime": int(self.reactor.seconds() - self.started),
        }

    def channelCounts(self, pattern: str = "") -> dict[str, int]:
        """
        This node's channels with subscribers, matching C{pattern} (Centrifugo's glob; "" for all), with their
        number of subscribers. @raise OriginPatternError: a bad pattern.
        """
        match = compile_origin_pattern(pattern).fullmatch if pattern else None
        hub = self.hub
        return {channel: len(hub.subscribers(channel)) for channel in hub.channels() if match is None or match(channel)}

    def userConnections(self, user: str) -> int:
        """How many connections of C{user} this node has."""
        return self._users.get(user, 0)

    def clientConnected(self, client: IClient) -> None:
        self.clients[client.clientID] = client
        if client.user:
            self._users[client.user] = self._users.get(client.user, 0) + 1
        if client.sessionID:
            self.registry.add(client.sessionID, client)

    def clientClosed(self, client: IClient) -> None:
        self._open.discard(client)
        if self.clients.pop(client.clientID, None) is not None and client.user:
            left = self._users.get(client.user, 0) - 1
            if left > 0:
                self._users[client.user] = left
            else:
                self._users.pop(client.user, None)
        if client.sessionID:
            self.registry.remove(client.sessionID)

    def addSubscription(self, channel: str, client: IClient, mapChannel: bool = False,
                        tagsFilter: Optional[TagsFilter] = None) -> Deferred[None]:
        """
        Add a local subscriber (with the tags filter its subscription sent, if any); the first one subscribes the
        channel in the broker (the map broker for a C{mapChannel}). Until the broker has, later subscribers wait for
        the same outcome: told "subscribed" earlier, they could miss publications, or stay subscribed to a channel
        the broker failed to join.
        """
        if self.hub.add(channel, client, tagsFilter):
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

            if mapChannel:
                self._mapChannels.add(channel)
                return self.mapBroker.subscribe(channel).addBoth(settled)
            return self.broker.subscribe(channel).addBoth(settled)
        pending = self._subscribing.get(channel)
        if pending is None:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        pending.append(waiter)
        return waiter

    def removeSubscription(self, channel: str, client: IClient) -> None:
        if self.hub.remove(channel, client):
            # The node stops hearing the channel: its latest publication would be a stale delta base.
            self._latest.pop(channel, None)
            self._deltaAllowed.pop(channel, None)
            if channel in self._mapChannels:
                self._mapChannels.discard(channel)
                d = self.mapBroker.unsubscribe(channel)
            else:
                d = self.broker.unsubscribe(channel)
            d.addErrback(lambda f: self.log.failure("unsubscribe {channel} in broker", f, channel=channel))

    def publish(
        self,
        channel: str,
        data: bytes,
        info: Optional[ClientInfo] = None,
        skipHistory: bool = False,
        tags: Optional[dict[str, str]] = None,
        options: Optional[ChannelOptions] = None,
        idempotencyKey: str = "",
    ) -> Deferred[Optional[StreamPosition]]:
        """
        Publish C{data} to every subscriber of C{channel} on every node, into its history when it keeps one.
        With C{idempotencyKey}, once per key and channel within 5 minutes (L{IBroker.publish}).

        @param info: the publishing client's, or None.
        @param options: C{channel}'s options when the caller has already resolved them (a client's publish
            command); None to resolve them here.
        @return: a Deferred firing with the publication's L{StreamPosition} (None without history).
        @raise ChannelError: an unknown namespace or a bad channel name.
        """
        if options is None:
            options = self.rules.options(channel)
        publication = Publication(data, info=info, tags=tags)
        if options.history and not skipHistory:
            return self.broker.publish(
                channel, publication, options.history_size, options.history_ttl,
                options.history_meta_ttl or self.config.global_history_meta_ttl, idempotencyKey=idempotencyKey,
            )
        if idempotencyKey:
            return self.broker.publish(channel, publication, idempotencyKey=idempotencyKey)
        return self.broker.publish(channel, publication)

    def _onPublication(self, channel: str, publication: Publication, epoch: str = "") -> None:
        """
        The broker's handler: fan a publication out to this node's subscribers of C{channel}.

        @param epoch: the epoch of the stream it was stored in ("" when it was not): positioned subscribers in
            another epoch (the stream was lost and made again) are then unsubscribed (2500).
        """
        deltaAllowed = self._deltaAllowed.get(channel)
        if deltaAllowed is None:
            try:
                deltaAllowed = self.rules.options(channel).delta_publish
            except ChannelError:
                deltaAllowed = False
            if self.hub.subscribers(channel):
                self._deltaAllowed[channel] = deltaAllowed
        previous = self._latest.get(channel) if deltaAllowed else None
        frames = PublicationFrames(channel, publication, previous, epoch)
        dropped = self.hub.deliverPublication(channel, frames)
        if dropped:
            self.metrics.tagsFilterDropped(self.rules.namespaceName(channel), dropped)
        if deltaAllowed:
            self._latest[channel] = publication
        else:
            self._latest.pop(channel, None)

    def checkPositions(self, channels: list[str]) -> None:
        """
        Publications of C{channels} may not have reached this node (the broker's PUB/SUB connection was down):
        compare the positioned subscribers' positions with the streams now (2500 / 3010 for those lost).
        """
        wanted = set(channels)
        clients = {client.clientID: client for channel in wanted for client in self.hub.subscribers(channel)}
        for client in clients.values():
            client.checkPositions(sorted(wanted))

    def joinLeave(self, channel: str, info: ClientInfo, join: bool) -> None:
        """Send a join (C{join} True) or leave of C{info} to the subscribers of C{channel} on every node (through
        the broker)."""
        d = self.background(self.broker.publishJoinLeave(channel, info, join))
        d.addErrback(lambda f: self.log.warn("{channel}: join/leave not sent: {error}", channel=channel,
                                             error=f.getErrorMessage()))

    def _onJoinLeave(self, channel: str, info: ClientInfo, join: bool) -> None:
        """The broker's join/leave handler: this node's subscribers of C{channel} that asked for them get it."""
        frames: dict[tuple[str, bool], Optional[bytes]] = {}
        push = {"channel": channel, "join" if join else "leave": {"info": info.asDict()}}
        for client in self.hub.subscribers(channel):
            # Encoded once per protocol and framing (a bare push for unidirectional clients).
            key = (client.protocol, client.unidirectional)
            if key not in frames:
                try:
                    frames[key] = codecFor(client.protocol).encode_push(push, client.unidirectional)
                except EncodeError:
                    frames[key] = None
            frame = frames[key]
            if frame is not None:
                client.deliverJoinLeave(channel, frame)

    def background(self, d: Deferred[Any]) -> Deferred[Any]:
        """
        Track an engine call nobody waits for (a leave, a presence removal): L{shutdown} waits for those still
        in flight, so the engine's connections are not closed under them.
        """
        if not d.called:
            self._background.add(d)

            def settled(result: Any) -> Any:
                self._background.discard(d)
                return result

            d.addBoth(settled)
        return d

    def shutdown(self, timeout: float = SHUTDOWN_TIMEOUT) -> Deferred[None]:
        """
        Disconnect every client with 3001 "shutdown" (they reconnect, maybe to another node).

        @return: a Deferred firing once the engine calls their leaving made have settled (at most C{timeout}
            seconds): then the engine may be stopped.
        """
        for client in list(self.clients.values()):
            client.disconnect(codes.DISCONNECT_SHUTDOWN.code, codes.DISCONNECT_SHUTDOWN.reason)
        self.sharedPoll.stop()
        pending = DeferredList(list(self._background), consumeErrors=True)
        return pending.addTimeout(timeout, self.reactor).addBoth(lambda _: None)
