# -*- test-case-name: tests.test_registry -*-
"""The emulation session registry: session id -> the live client whose stream carries its replies."""

from __future__ import annotations

from typing import Iterable, Optional

from zope.interface import implementer

from httpstream.interfaces import IClient, ISessionRegistry


@implementer(ISessionRegistry)
class SessionRegistry:
    """
    Sessions of this node, in memory.

    Other nodes are known through L{setNodes}, which the cluster's node list calls; alone, a node knows itself.
    """

    def __init__(self, nodeID: str) -> None:
        self.nodeID = nodeID
        self._sessions: dict[str, IClient] = {}
        self._nodes: frozenset[str] = frozenset()

    def add(self, session: str, client: IClient) -> None:
        self._sessions[session] = client

    def remove(self, session: str) -> None:
        self._sessions.pop(session, None)

    def get(self, session: str) -> Optional[IClient]:
        return self._sessions.get(session)

    def isKnownNode(self, node: str) -> bool:
        return node == self.nodeID or node in self._nodes

    def setNodes(self, nodes: Iterable[str]) -> None:
        """Replace the set of other live nodes."""
        self._nodes = frozenset(nodes)

    def __len__(self) -> int:
        return len(self._sessions)
