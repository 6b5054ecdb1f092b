# -*- test-case-name: tests.cluster.test_cluster_memory -*-
"""A cluster in one process: control planes over one in-memory bus, for tests and embedding programs' tests."""

from __future__ import annotations

from typing import Any, Iterable

from twisted.internet.interfaces import IReactorTime

from httpstream.cluster.bus import MemoryBus
from httpstream.cluster.control import Control

__all__ = ["memoryCluster"]


def memoryCluster(clock: IReactorTime, nodes: Iterable[Any], **options: Any) -> list[Control]:
    """Controls for C{nodes} sharing one L{MemoryBus} (not started): a cluster in one process."""
    bus = MemoryBus()
    return [Control(clock, node, bus.pubsub(), **options) for node in nodes]
