# -*- test-case-name: tests.engines.test_engine_contract,tests.engines.test_engine_memory -*-
"""
Engines: how publications, history and presence travel between nodes, behind L{httpstream.interfaces.IBroker},
L{httpstream.interfaces.IHistory} and L{httpstream.interfaces.IPresenceManager}.

Owns L{memory} (one process: the embedded default and a fake for tests), L{maps} (the map channels' seam,
L{maps.IMapBroker}, and its values) with L{memorymap} (its memory implementation), and L{redis} (nodes sharing a Redis:
a package, imported only where it is chosen since txredisapi installs the global reactor). The values and errors
every engine shares live here, so an engine only holds its own mechanics: L{HistoryResult} (from
L{httpstream.values}), the
L{HistoryError}s a history query may end with and the checks that raise them, and L{EngineUnavailable}, which
it registers with L{httpstream.logs} as an outage.

May import: protocol (codes), the interfaces, logs, Twisted; never the node, the client, policy, transports or
anything above them.
"""

from __future__ import annotations

from typing import Optional

from httpstream import logs
from httpstream.protocol import codes
from httpstream.values import HistoryResult, StreamPosition

__all__ = [
    "DEFAULT_HISTORY_META_TTL",
    "BadHistoryRequest",
    "EngineUnavailable",
    "HistoryError",
    "HistoryResult",
    "UnrecoverablePosition",
    "checkHistoryRequest",
    "checkSinceEpoch",
    "hasHistory",
]

# Centrifugo v5 history_meta_ttl (v6 channel.history_meta_ttl 720h): how long an unused stream's top and epoch live.
DEFAULT_HISTORY_META_TTL = 30 * 24 * 3600.0


class EngineUnavailable(Exception):
    """
    The engine's store cannot be reached (Redis down or restarting): the call had no effect and can be retried.
    An expected state during an outage, logged without a traceback (L{httpstream.logs}).
    """


logs.registerOutage(EngineUnavailable)


class HistoryError(Exception):
    """
    A history query the protocol refuses. The client replies with L{error}.

    @ivar error: the reply error (a L{codes.Error}).
    """

    error: codes.Error

    def __init__(self, error: codes.Error) -> None:
        super().__init__(error.code, error.message)
        self.error = error


class BadHistoryRequest(HistoryError):
    """107 bad request: a reverse query with C{since.offset} 0 (there is nothing before the first publication)."""

    def __init__(self) -> None:
        super().__init__(codes.ERROR_BAD_REQUEST)


class UnrecoverablePosition(HistoryError):
    """
    112 unrecoverable position: C{since.epoch} names another incarnation of the stream.

    @ivar offset: the stream's current top.
    @ivar epoch: the stream's current epoch.
    """

    def __init__(self, offset: int, epoch: str) -> None:
        super().__init__(codes.ERROR_UNRECOVERABLE_POSITION)
        self.offset = offset
        self.epoch = epoch


def hasHistory(historySize: int, historyTTL: float) -> bool:
    """A channel keeps a stream only when both its size and its TTL are set (Centrifugo refuses one alone)."""
    return historySize > 0 and historyTTL > 0


def checkHistoryRequest(since: Optional[StreamPosition], reverse: bool) -> None:
    """
    Refuse what no stream can answer, before an engine touches it: reverse with C{since.offset} 0.

    @raise BadHistoryRequest: then.
    """
    if reverse and since is not None and not since.offset:
        raise BadHistoryRequest()


def checkSinceEpoch(since: Optional[StreamPosition], offset: int, epoch: str) -> None:
    """
    Refuse a C{since} from another incarnation of the stream (an empty epoch matches any).

    @param offset: the stream's top.
    @param epoch: the stream's epoch.
    @raise UnrecoverablePosition: then.
    """
    if since is not None and since.epoch and since.epoch != epoch:
        raise UnrecoverablePosition(offset, epoch)
