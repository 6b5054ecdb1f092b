# -*- test-case-name: tests.node.test_registry -*-
"""
What a node knows of sessions and nodes, kept apart: L{SessionRegistry}, the emulation sessions of this node
(session id -> the live client whose stream carries its replies); L{LocalNodes}, the cluster of a node alone.

In a cluster, the control plane (L{httpstream.cluster.control.Control}) is the node's L{IClusterNodes} instead.
"""

from __future__ import annotations

from typing import Optional

from zope.interface import implementer

from httpstream.interfaces import IClient, IClusterNodes, ISessionRegistry

__all__ = ["LocalNodes", "SessionRegistry"]


@implementer(ISessionRegistry)
class SessionRegistry:
    """Sessions of this node, in memory."""

    def __init__(self) -> None:
        self._sessions: dict[str, IClient] = {}

    def add(self, session: str, client: IClient) -> None:
        self._sessions[session] = client

    def remove(self, session: str) -> None:
        self._sessions.pop(session, None)

    def get(self, session: str) -> Optional[IClient]:
        return self._sessions.get(session)

    def __len__(self) -> int:
        return len(self._sessions)


@implementer(IClusterNodes)
class LocalNodes:
    """The nodes a node alone knows: itself."""

    def __init__(self, nodeID: str) -> None:
        self.nodeID = nodeID

    def isKnownNode(self, node: str) -> bool:
        return node == self.nodeID and bool(node)
