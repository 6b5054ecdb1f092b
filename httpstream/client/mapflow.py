# -*- test-case-name: tests.client.test_client_maps -*-
"""
A client's map subscribes (SubscribeRequest C{type} 1, 2, 3: Centrifugo's keyed state channels), each a flow of
several subscribe commands on one channel (centrifuge ``client_map.go``):

  - STATE (C{phase} 2): pages of the map's keys, C{cursor} to C{cursor}; the stream position read with the first
    page is frozen and repeated on every page, and later pages leave out keys written after it (the stream brings
    those), so no key is lost or sent twice however the map changes meanwhile;
  - STREAM (C{phase} 1): pages of the change stream from a position (positioned channels only), or a recovery
    (C{recover}) from the position the client kept;
  - LIVE: the reply that subscribes. The subscription joins the hub first, holding the live publications that
    arrive; the stream is read from the client's position to the top; the reply carries what remains of the
    state and that catch-up; then the held publications go out, those the catch-up covered skipped by offset.

Only the LIVE reply makes a subscription (L{Subscriptions.install}); until then the flow lives here, refused to a
second page at once (113), dropped when abandoned (C{map.subscribe_catch_up_timeout}: its next page disconnects
with 3008, other channels' pages sweep it). A position the stream no longer serves answers 112: the SDK starts
again from the state (C{from_scratch}) or gives up (C{fatal}).

Tags filters (C{tf}, where the namespace has C{allow_tags_filter}; else, or with C{delta}, 107): read once, from
the flow's first request, and kept for the whole flow (the pages after it inherit it, whatever C{tf} they carry);
L{_filtered} applies it to state pages, stream pages and the catch-up, the hub's filter groups to live updates
(removals carry the removed key's tags). Positions are the unfiltered stream's: a stream page's C{offset} is the
last write it read, shown or not, and a live update the filter drops still moves the subscription's offset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generator, Optional, Protocol

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.python.failure import Failure

from httpstream.client.expiry import ttlUntil
from httpstream.client.host import ClientHost
from httpstream.client.subfilter import requestedFilter
from httpstream.client.subscription import Subscription
from httpstream.client.subscriptions import Subscriptions
from httpstream.config import ChannelOptions
from httpstream.config.mapoptions import subscriptionTypeAllowed
from httpstream.decisions import Connection, Refused, SubscribeDecision, SubscribeRequest
from httpstream.engines import HistoryError
from httpstream.engines.maps import MapSettings
from httpstream.interfaces import IClient, IClientPolicy
from httpstream.node.maps import mapSettings
from httpstream.policy.channels import ChannelError
from httpstream.policy.recovery import checkPosition
from httpstream.protocol import codes
from httpstream.protocol.tagsfilter import TagsFilter
from httpstream.values import ClientInfo, Publication, StreamPosition

__all__ = ["MapFlows", "PHASE_LIVE", "PHASE_STATE", "PHASE_STREAM"]

PHASE_LIVE, PHASE_STREAM, PHASE_STATE = 0, 1, 2
RESULT_TYPE_MAP = 1
ERROR_CONCURRENT_PAGINATION = codes.Error(113, "concurrent pagination", temporary=True)
# Centrifuge's defaults: page sizes, and how long an unfinished flow may wait between its pages.
DEFAULT_PAGE_SIZE, DEFAULT_MIN_PAGE_SIZE, DEFAULT_MAX_PAGE_SIZE = 100, 100, 1000
DEFAULT_CATCH_UP_TIMEOUT = 5.0


class MapClient(Protocol):
    """The client, as its map subscribes use it."""

    clientID: str
    user: str
    node: ClientHost
    policy: IClientPolicy
    subs: Subscriptions

    @property
    def closed(self) -> bool: ...

    def connection(self) -> Connection: ...

    def clientInfo(self, sub: Optional[Subscription] = None) -> ClientInfo: ...

    def send(self, reply: dict[str, Any]) -> None: ...

    def replyError(self, commandID: int, error: codes.Error) -> None: ...

    def refused(self, commandID: int, refusal: Refused) -> None: ...

    def commandFailed(self, commandID: int, failure: Failure, method: str) -> None: ...

    def close(self, disconnect: codes.Disconnect, flush: bool = True) -> None: ...

    def seconds(self) -> float: ...

    def logFailure(self, what: str, failure: Failure) -> None: ...


class _Unrecoverable(Exception):
    """The flow's position cannot be served (112)."""


@dataclass(slots=True)
class MapFlow:
    """One map subscribe under way: what its first request was granted, and the positions its pages share."""

    channel: str
    kind: int
    options: ChannelOptions
    settings: MapSettings
    decision: SubscribeDecision
    startedAt: float
    epoch: str = ""
    offset: int = 0
    busy: bool = False
    tagsFilter: Optional[TagsFilter] = None


def pageSize(request: dict[str, Any], options: ChannelOptions) -> int:
    """The client's C{limit}, or the default, clamped to the namespace's page sizes."""
    limit = int(request.get("limit", 0) or 0)
    if limit <= 0:
        limit = options.map_default_page_size or DEFAULT_PAGE_SIZE
    low = options.map_min_page_size or DEFAULT_MIN_PAGE_SIZE
    high = options.map_max_page_size or DEFAULT_MAX_PAGE_SIZE
    return min(max(limit, low), high)


def _position(request: dict[str, Any]) -> StreamPosition:
    return StreamPosition(int(request.get("offset", 0) or 0), request.get("epoch", "") or "")


def _filtered(flow: MapFlow, publications: list[Publication]) -> list[Publication]:
    """What of C{publications} the flow's tags filter lets through (live updates: the hub's filter groups)."""
    tagsFilter = flow.tagsFilter
    if tagsFilter is None:
        return publications
    return [p for p in publications if tagsFilter.matches(p.tags)]


class MapFlows:
    """The map subscribes of one client under way, by channel."""

    __slots__ = ("_client", "_flows", "_member")

    def __init__(self, client: MapClient) -> None:
        self._client = client
        self._flows: dict[str, MapFlow] = {}
        self._member: IClient = IClient(client)

    def __contains__(self, channel: str) -> bool:
        return channel in self._flows

    def __len__(self) -> int:
        return len(self._flows)

    def _expired(self, flow: MapFlow) -> bool:
        timeout = flow.options.map_subscribe_catch_up_timeout or DEFAULT_CATCH_UP_TIMEOUT
        return self._client.seconds() - flow.startedAt > timeout

    def sweep(self, skip: str = "") -> None:
        """Forget the flows abandoned past their timeout (the client's presence timer, and every map page)."""
        for channel, flow in list(self._flows.items()):
            if channel != skip and not flow.busy and self._expired(flow):
                del self._flows[channel]

    def cancel(self, channel: str) -> None:
        """An unsubscribe: forget C{channel}'s map subscribe under way (its next page is refused with 103)."""
        flow = self._flows.get(channel)
        if flow is not None and not flow.busy:
            del self._flows[channel]

    def tick(self) -> None:
        """The client's presence timer: keep its map presence entries alive, forget abandoned flows."""
        for sub in list(self._client.subs.values()):
            if sub.mapKeys:
                self.refresh(sub)
        self.sweep()

    def subscribe(self, commandID: int, request: dict[str, Any]) -> Optional[Deferred[Any]]:
        """A map subscribe command (C{type} 1, 2 or 3): the first of a flow, or one of its continuations."""
        client = self._client
        channel = request["channel"]
        self.sweep(skip=channel)
        flow = self._flows.get(channel)
        phase = int(request.get("phase", 0) or 0)
        if request.get("cursor") or (flow is not None and phase != PHASE_STATE):
            if flow is None:
                client.replyError(commandID, codes.ERROR_PERMISSION_DENIED)  # a cursor of no flow
                return None
            if self._expired(flow) and not flow.busy:
                del self._flows[channel]
                client.close(codes.DISCONNECT_SLOW)
                return None
            return self._phase(commandID, request, flow)
        if flow is not None or client.subs.reserved(channel):
            client.replyError(commandID, codes.ERROR_ALREADY_SUBSCRIBED)
            return None
        try:
            options = client.policy.channelOptions(channel, False)
        except Refused as e:
            client.refused(commandID, e)
            return None
        kind = int(request.get("type", 0))
        if not subscriptionTypeAllowed(kind, options):
            client.replyError(commandID, codes.ERROR_PERMISSION_DENIED)  # Centrifugo's isSubscriptionTypeAllowed
            return None
        if len(client.subs) + len(self._flows) >= client.node.config.client_channel_limit:
            client.replyError(commandID, codes.ERROR_LIMIT_EXCEEDED)
            return None
        ask = SubscribeRequest(channel, options, token=request.get("token", ""), data=request.get("data"))

        def granted(decision: SubscribeDecision) -> Optional[Deferred[Any]]:
            if client.closed:
                return None
            if channel in self._flows or client.subs.reserved(channel):
                client.replyError(commandID, codes.ERROR_ALREADY_SUBSCRIBED)
                return None
            try:
                # Checked once the subscribe is allowed, as for stream channels (a refused one gets 103, not 107).
                tagsFilter = requestedFilter(request, options, client.clientID, channel)
            except Refused as e:
                client.refused(commandID, e)
                return None
            flow = MapFlow(channel, kind, options, mapSettings(options), decision, client.seconds(),
                           tagsFilter=tagsFilter)
            return self._phase(commandID, request, flow, new=True)

        return client.policy.subscribing(client.connection(), ask).addCallbacks(
            granted, lambda f: client.commandFailed(commandID, f, "subscribe"))

    def _phase(self, commandID: int, request: dict[str, Any], flow: MapFlow, new: bool = False) -> Optional[Deferred[Any]]:
        client = self._client
        phase = int(request.get("phase", 0) or 0)
        if flow.busy:
            client.replyError(commandID, ERROR_CONCURRENT_PAGINATION)
            return None
        refusal: Optional[codes.Error] = None
        if phase not in (PHASE_LIVE, PHASE_STREAM, PHASE_STATE):
            refusal = codes.ERROR_BAD_REQUEST
        elif phase == PHASE_STREAM and not flow.settings.positioned:
            refusal = codes.ERROR_BAD_REQUEST  # an ephemeral map shows no stream
        elif phase == PHASE_STREAM and new and not request.get("recover"):
            refusal = codes.ERROR_PERMISSION_DENIED  # a stream page of no flow
        if refusal is not None:
            self._flows.pop(flow.channel, None)
            client.replyError(commandID, refusal)
            return None
        self._flows[flow.channel] = flow
        if new and phase != PHASE_STATE:
            flow.epoch = request.get("epoch", "") or ""
        flow.busy = True
        step = {PHASE_STATE: self._state, PHASE_STREAM: self._stream, PHASE_LIVE: self._live}[phase]
        d: Deferred[Any] = step(commandID, request, flow)

        def done(result: Any) -> Any:
            flow.busy = False
            return result

        return d.addBoth(done).addErrback(self._failed, commandID, flow)

    def _failed(self, failure: Failure, commandID: int, flow: MapFlow) -> None:
        client = self._client
        if self._flows.get(flow.channel) is flow:
            del self._flows[flow.channel]
        if failure.check(_Unrecoverable, HistoryError):
            client.replyError(commandID, codes.ERROR_UNRECOVERABLE_POSITION)
        elif isinstance(failure.value, ChannelError):
            client.replyError(commandID, failure.value.error)
        elif not client.closed:
            client.commandFailed(commandID, failure, "subscribe")

    def _reply(self, commandID: int, result: dict[str, Any]) -> None:
        self._client.send({"id": commandID, "subscribe": {"type": RESULT_TYPE_MAP, **result}})

    @inlineCallbacks
    def _state(self, commandID: int, request: dict[str, Any], flow: MapFlow) -> Generator[Deferred[Any], Any, None]:
        maps = self._client.node.maps
        cursor = request.get("cursor", "") or ""
        limit = pageSize(request, flow.options)
        revision = _position(request) if (request.get("offset") or request.get("epoch")) else None
        page = yield maps.readState(flow.channel, cursor, limit, revision, flow.options)
        if not cursor:
            flow.epoch, flow.offset = page.position.epoch, page.position.offset
        elif page.position.epoch != flow.epoch:
            raise _Unrecoverable()
        publications = page.publications
        if cursor:
            # Written after the first page: the stream from the frozen position brings them.
            publications = [p for p in publications if p.offset <= flow.offset]
        publications = _filtered(flow, publications)
        frozen = StreamPosition(flow.offset, flow.epoch)
        if not page.cursor and (not flow.settings.positioned or frozen.offset + limit >= page.position.offset):
            yield self._goLive(commandID, request, flow, frozen, publications, recovery=False)
            return
        self._reply(commandID, {"phase": PHASE_STATE, "state": [p.asDict() for p in publications],
                                "cursor": page.cursor, "epoch": flow.epoch, "offset": flow.offset})

    @inlineCallbacks
    def _stream(self, commandID: int, request: dict[str, Any], flow: MapFlow) -> Generator[Deferred[Any], Any, None]:
        maps = self._client.node.maps
        since = _position(request)
        if since.epoch and flow.epoch and since.epoch != flow.epoch:
            raise _Unrecoverable()
        # The top now, not when the first stream page was asked for (as Centrifuge): under steady writes the
        # client keeps paging until it is within a page of the top, rather than going live with a catch-up over
        # the limit (112, and a sync from scratch that may never end).
        top = yield maps.readStream(flow.channel, None, 0, flow.options)
        limit = pageSize(request, flow.options)
        if since.offset + limit >= top.position.offset:
            yield self._goLive(commandID, request, flow, since, [], recovery=True)
            return
        page = yield maps.readStream(flow.channel, since, limit, flow.options)
        offset = page.publications[-1].offset if page.publications else since.offset
        publications = _filtered(flow, page.publications)
        self._reply(commandID, {"phase": PHASE_STREAM, "publications": [p.asDict() for p in publications],
                                "epoch": page.position.epoch, "offset": offset})

    def _live(self, commandID: int, request: dict[str, Any], flow: MapFlow) -> Deferred[None]:
        since = _position(request)
        if since.epoch and flow.epoch and since.epoch != flow.epoch:
            raise _Unrecoverable()
        return self._goLive(commandID, request, flow, since, [], recovery=True)

    @inlineCallbacks
    def _goLive(self, commandID: int, request: dict[str, Any], flow: MapFlow, since: StreamPosition,
                state: list[Publication], recovery: bool) -> Generator[Deferred[Any], Any, None]:
        client, node, channel = self._client, self._client.node, flow.channel
        decision = flow.decision
        sub = Subscription(channel, flow.options, positioned=True, recoverable=flow.settings.positioned,
                           isMap=True, chanInfo=decision.info, expireAt=decision.expireAt, tagsFilter=flow.tagsFilter)
        client.subs.install(sub)
        try:
            yield node.addSubscription(channel, self._member, mapChannel=True, tagsFilter=flow.tagsFilter)
            if client.subs.get(channel) is not sub:
                raise Refused(codes.ERROR_INTERNAL)  # unsubscribed or gone meanwhile
            # The catch-up in one reply: a positioned flow comes here within a page of the top (else it pages
            # the stream first); an ephemeral one has no stream pages, so its whole internal stream may come.
            live = flow.options.map_live_transition_max_publication_limit or (
                (flow.options.map_max_page_size or DEFAULT_MAX_PAGE_SIZE) if flow.settings.positioned
                else flow.settings.streamSize)
            catchUp = yield node.maps.readStream(channel, since, live + 1, flow.options)
            if client.subs.get(channel) is not sub:
                raise Refused(codes.ERROR_INTERNAL)
            if ((recovery or since.epoch) and since.epoch != catchUp.position.epoch) or len(
                    catchUp.publications) > live:
                raise _Unrecoverable()
        except BaseException:
            if client.subs.get(channel) is sub:
                client.subs.drop(channel)
            client.subs.joined(channel)  # settles the reservation (nothing is delivered: it is gone)
            raise
        publications = catchUp.publications
        sub.epoch = catchUp.position.epoch
        sub.offset = max(catchUp.position.offset, publications[-1].offset if publications else 0)
        result: dict[str, Any] = {"epoch": sub.epoch, "offset": sub.offset}
        if state:
            result["state"] = [p.asDict() for p in state]
        publications = _filtered(flow, publications)
        if publications:
            result["publications"] = [p.asDict() for p in publications]
        if flow.settings.positioned:
            result["recoverable"] = True
        if recovery and request.get("recover"):
            result["was_recovering"] = result["recovered"] = True
        if sub.expireAt:
            result["expires"], result["ttl"] = True, ttlUntil(sub.expireAt, client.seconds())
        if flow.options.client_publish_debounce_interval:
            result["publish_debounce"] = int(flow.options.client_publish_debounce_interval * 1000)
        if self._flows.get(channel) is flow:
            del self._flows[channel]
        self._reply(commandID, result)
        client.subs.joined(channel)
        self._keepKeys(sub)

    def checkPosition(self, sub: Subscription, force: bool) -> Optional[Deferred[bool]]:
        """
        The position check of a map subscription (L{Subscriptions.checkPositions}): the stream channels' one
        (L{httpstream.policy.recovery.checkPosition}: due checks on the presence timer, forced ones after the map
        broker's PUB/SUB connection came back), against the top of the map's change stream. A lost position ends the
        subscription with 2500: the SDK subscribes again, recovering where it can (a new sync where it cannot).
        """
        node = self._client.node

        def top() -> Deferred[StreamPosition]:
            d: Deferred[Any] = node.maps.readStream(sub.channel, None, 0, sub.options)
            return d.addCallback(lambda page: page.position)

        return checkPosition(top, node.config, sub, node.reactor, force)

    def _keepKeys(self, sub: Subscription) -> None:
        """Map presence entries (and the own key removed on leaving) for a new subscription."""
        client, options = self._client, sub.options
        keys: list[tuple[str, str, bool, bool]] = []
        if options.map_clients_presence_channel_prefix:
            keys.append((options.map_clients_presence_channel_prefix + sub.channel, client.clientID, True, True))
        if options.map_users_presence_channel_prefix and client.user:
            keys.append((options.map_users_presence_channel_prefix + sub.channel, client.user, False, True))
        if options.map_remove_client_on_unsubscribe:
            keys.append((sub.channel, client.clientID, True, False))
        sub.mapKeys = tuple(keys)
        self.refresh(sub)

    def refresh(self, sub: Subscription) -> None:
        """Write (or keep alive: C{if_new} refreshes the TTL) C{sub}'s map presence entries."""
        client, node = self._client, self._client.node
        for channel, key, _, refreshed in sub.mapKeys:
            if refreshed:
                info = client.clientInfo(sub) if key == client.clientID else None
                d = node.background(node.maps.publish(channel, key, b"", info, keyMode="if_new"))
                d.addErrback(self._presenceFailed, channel)

    def _presenceFailed(self, failure: Failure, channel: str) -> None:
        self._client.logFailure("map presence " + channel, failure)
