# -*- test-case-name: tests.client.test_client_channels -*-
"""
Where a new positioned subscription starts in its channel's stream, and what a recovering one missed (the
recovery part of Centrifugo's ``subscribeCmd``: ``isStreamRecovered``, ``isCacheRecovered``; centrifugal/centrifuge
``client.go`` and ``internal/recovery``, https://centrifugal.dev/docs/server/history_and_recovery).

A positioned subscription learns the stream's top C{offset} and C{epoch}. A recovering one (C{recover: true} with
the client's last C{offset}/C{epoch}) also gets the publications it missed, ascending, when they run without a gap
from its offset to the top in the same epoch (C{recovered: true}, and the result's C{offset} is the client's own: the
SDK advances it while applying them); otherwise none, with the top's position (the application reloads its state).
A client that asks to be refused rather than told C{recovered: false} (the reject unrecovered subscribe flag, set by
the SDK's C{getState} option) gets error 112 instead, in stream recovery mode (upstream's cache mode ignores the flag).
A subscription with a publication tags filter recovers only the publications its filter lets through (the others
still count for telling a complete recovery from a gap), and in cache mode the latest one that passes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol

import attrs
import orjson
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from httpstream.decisions import Refused
from httpstream.engines import HistoryError
from httpstream.protocol.codes import ERROR_UNRECOVERABLE_POSITION
from httpstream.protocol.delta import publicationDelta
from httpstream.protocol.tagsfilter import TagsFilter
from httpstream.values import HistoryResult, Publication, StreamPosition

if TYPE_CHECKING:
    from httpstream.config import ChannelOptions, Config
    from httpstream.interfaces import IBroker

__all__ = ["IN_FLIGHT_GRACE", "MAX_POSITION_CHECK_FAILURES", "checkPosition", "historyTop", "position",
           "recoveredPublications"]

# Comparisons with the top that may fail in a row (a publication on its way explains one) before the position
# counts as lost (centrifuge's maxCheckPositionFailures).
MAX_POSITION_CHECK_FAILURES = 2

# After the broker's PUB/SUB link came back, how long publications already in the stream when the check read its
# top may still take to arrive through the link (they were published before the check, after the resubscribe).
IN_FLIGHT_GRACE = 1.0


class Subscription(Protocol):
    """What recovery reads and moves of a client's subscription (L{httpstream.client.subscription.Subscription})."""

    channel: str
    options: ChannelOptions
    positioned: bool
    recoverable: bool
    subscribing: bool
    delta: bool
    offset: int
    epoch: str
    deltaBase: int
    positionCheckAt: float
    positionCheckFailures: int
    tagsFilter: Optional[TagsFilter]


def _asJSONString(data: bytes) -> bytes:
    # A delta-negotiated JSON subscription gets its data as a JSON string holding the raw JSON.
    return orjson.dumps(data.decode("utf-8"))


def position(broker: IBroker, config: Config, sub: Subscription, recover: Optional[StreamPosition], protocol: str,
             now: float, rejectUnrecovered: bool = False) -> Deferred[dict[str, Any]]:
    """
    Read the stream of a positioned subscription: set C{sub.offset}/C{sub.epoch} to the top and fire with the
    SubscribeResult fields that say where the subscription starts (C{offset}, C{epoch}, and for a recovering one
    C{was_recovering}, C{recovered}, C{publications}: in the protocol's dict form, sent as they are).

    @param recover: the position the client asks to recover from, or None when it does not.

    @param now: the reactor's time (the position is compared with the top from then on: L{checkPosition}).

    @param rejectUnrecovered: fail with L{Refused} (112 unrecoverable position) when a stream recovery fails,
        leaving C{sub} as it was, instead of firing with C{recovered: false}.
    """
    metaTTL = sub.options.history_meta_ttl or config.global_history_meta_ttl
    result: dict[str, Any] = {}

    def atTop(history: HistoryResult) -> dict[str, Any]:
        sub.offset, sub.epoch = history.offset, history.epoch
        sub.positionCheckAt = now
        result.update(offset=history.offset, epoch=history.epoch)
        return result

    if not sub.recoverable or recover is None:
        return broker.history(sub.channel, None, 0, False, metaTTL).addCallback(atTop)

    clientOffset, clientEpoch = recover.offset, recover.epoch
    limit = config.client_recovery_max_publication_limit
    cache = sub.options.force_recovery_mode == "cache"
    result["was_recovering"] = True
    tagsFilter = sub.tagsFilter
    if cache:
        # Only the latest publication counts (the latest its tags filter lets through): read newest first.
        d = broker.history(sub.channel, None, 1 if tagsFilter is None else (limit or -1), True, metaTTL)
    else:
        # One more than the limit: more missed publications than that cannot be recovered.
        d = broker.history(sub.channel, StreamPosition(clientOffset, ""), limit + 1 if limit else -1, False, metaTTL)

    def recovered(history: HistoryResult) -> dict[str, Any]:
        publications = history.publications
        sameEpoch = not clientEpoch or clientEpoch == history.epoch
        if cache:
            ok = sameEpoch and (history.offset == clientOffset
                                or bool(publications and publications[0].offset == history.offset))
            if tagsFilter is not None:
                publications = [p for p in publications if tagsFilter.matches(p.tags)][:1]
            publications = [p for p in publications if p.offset > clientOffset]
        else:
            contiguous = all(p.offset == clientOffset + i + 1 for i, p in enumerate(publications))
            lastOffset = publications[-1].offset if publications else clientOffset
            ok = sameEpoch and contiguous and lastOffset == history.offset and (not limit or len(publications) <= limit)
            if not ok and rejectUnrecovered:
                raise Refused(ERROR_UNRECOVERABLE_POSITION)
        atTop(history)
        if not ok:
            return result
        result["recovered"] = True
        result["offset"] = clientOffset
        if tagsFilter is not None and not cache:
            # Told apart from lost ones above, the publications the filter excludes are now left out.
            publications = [p for p in publications if tagsFilter.matches(p.tags)]
        if publications:
            result["publications"] = [p.asDict() for p in recoveredPublications(publications, sub.delta, protocol)]
            # The client's delta base is now the last recovered publication: deltas may follow at once.
            sub.deltaBase = publications[-1].offset or -1
        return result

    def unrecoverable(failure: Failure) -> Deferred[dict[str, Any]]:
        # Another epoch (the stream was lost) is not an error on recovery, just "not recovered" (or 112 when the
        # client asked for it).
        if not isinstance(failure.value, HistoryError):
            return failure  # type: ignore[return-value]  # an engine error goes on as the subscribe's failure
        if rejectUnrecovered and not cache:
            raise Refused(ERROR_UNRECOVERABLE_POSITION)
        return broker.history(sub.channel, None, 0, False, metaTTL).addCallback(atTop)

    return d.addCallbacks(recovered, unrecoverable)


def recoveredPublications(publications: list[Publication], delta: bool, protocol: str) -> list[Publication]:
    """
    The recovered publications as a subscription receives them: as stored, or with delta negotiated the first
    one full and each next one a Fossil delta against the one before it when that is smaller (upstream's
    C{makeRecoveredPubsDeltaFossil}); JSON then carries every C{data} as a JSON string.
    """
    if not delta:
        return publications
    json = protocol == "json"
    out: list[Publication] = []
    previous: bytes | None = None
    for publication in publications:
        data = publication.data
        try:
            payload, isDelta = publicationDelta(previous, data, utf8=json)
            sent = attrs.evolve(publication, data=_asJSONString(payload) if json else payload)
        except UnicodeDecodeError:
            # Not text: it cannot reach a JSON client at all (the codec refuses it: disconnect 3506).
            payload, isDelta = data, False
            sent = publication
        if isDelta:
            sent = attrs.evolve(sent, delta=True)
        out.append(sent)
        previous = data
    return out


def historyTop(broker: IBroker, config: Config, sub: Subscription) -> Callable[[], Deferred[Any]]:
    """How L{checkPosition} reads the top of a stream channel's history."""
    metaTTL = sub.options.history_meta_ttl or config.global_history_meta_ttl
    return lambda: broker.history(sub.channel, None, 0, False, metaTTL)


def checkPosition(readTop: Callable[[], Deferred[Any]], config: Config, sub: Subscription, clock: IReactorTime,
                  force: bool = False) -> Deferred[bool] | None:
    """
    Compare a positioned subscription's position with its stream's top, once per
    C{client_channel_position_check_delay} (centrifuge's C{checkPosition}, run on the presence timer): a node
    that missed the last publications of a quiet channel learns it here.

    @param readTop: reads the stream's top: a Deferred firing with its C{offset} and C{epoch} (a L{HistoryResult}
        of the channel's history: L{historyTop}; a map channel's change stream's L{StreamPosition}).

    @param force: check now, and count one wrong position as lost (the node knows it may have missed
        publications: its broker connection was down). A position behind the top of the same epoch is lost only
        if the subscription has not reached that top C{IN_FLIGHT_GRACE} seconds later on C{clock}: those
        publications may be on their way through the link that just came back (a busy channel always has some).
    @return: None when no check is due; else a Deferred firing with False once the position has been found
        wrong L{MAX_POSITION_CHECK_FAILURES} times in a row (the subscription has lost its place: 2500/3010),
        True otherwise (an engine failure counts as no news).
    """
    if not sub.positioned or sub.subscribing:
        return None
    now = clock.seconds()
    if not force and now - sub.positionCheckAt <= config.client_channel_position_check_delay:
        return None
    sub.positionCheckAt = now

    def compare(top: HistoryResult | StreamPosition) -> bool | Deferred[bool]:
        if top.offset == sub.offset and top.epoch == sub.epoch:
            sub.positionCheckFailures = 0
            return True
        if force and top.epoch == sub.epoch and top.offset > sub.offset:
            return deferLater(clock, IN_FLIGHT_GRACE, lambda: sub.offset >= top.offset)
        sub.positionCheckFailures += 1
        return not force and sub.positionCheckFailures < MAX_POSITION_CHECK_FAILURES

    return readTop().addCallbacks(compare, lambda _: True)
