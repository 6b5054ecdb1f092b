# -*- test-case-name: tests.test_registry -*-
"""The emulation session registry: session id -> the live client whose stream carries its replies."""

from __future__ import annotations

from typing import Iterable, Optional, Protocol

from zope.interface import implementer

from httpstream.interfaces import IClient, ISessionRegistry


class NodeList(Protocol):
    """What the registry asks about other nodes: the cluster's node list (L{httpstream.cluster.control.Control})."""

    def isKnownNode(self, node: str) -> bool: ...


@implementer(ISessionRegistry)
class SessionRegistry:
    """
    Sessions of this node, in memory.

    Other nodes are known through a node list (L{useNodeList}: the control plane's, whose entries expire when a
    node stops announcing itself) or, without one, through L{setNodes}; alone, a node knows itself.
    """

    def __init__(self, nodeID: str, nodeList: Optional[NodeList] = None) -> None:
        self.nodeID = nodeID
        self._sessions: dict[str, IClient] = {}
        self._nodes: frozenset[str] = frozenset()
        self._nodeList = nodeList

    def add(self, session: str, client: IClient) -> None:
        self._sessions[session] = client

    def remove(self, session: str) -> None:
        self._sessions.pop(session, None)

    def get(self, session: str) -> Optional[IClient]:
        return self._sessions.get(session)

    def isKnownNode(self, node: str) -> bool:
        if node == self.nodeID:
            return True
        if self._nodeList is not None:
            return bool(node) and self._nodeList.isKnownNode(node)
        return node in self._nodes

    def useNodeList(self, nodeList: Optional[NodeList]) -> None:
        """
        Ask C{nodeList} about other nodes from now on (None: back to L{setNodes}'s set). It is asked on every
        call, so its expiry applies at once.
        """
        self._nodeList = nodeList

    def setNodes(self, nodes: Iterable[str]) -> None:
        """Replace the set of other live nodes (used while no node list is set)."""
        self._nodes = frozenset(nodes)

    def __len__(self) -> int:
        return len(self._sessions)
