"""
Tests for L{httpstream.node.registry}: the emulation sessions of a node and the nodes it knows.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from httpstream.interfaces import IClusterNodes, ISessionRegistry
from httpstream.node.registry import LocalNodes, SessionRegistry
from httpstream.testing import FakeClient, makeNode


class SessionRegistryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.registry = SessionRegistry()

    def test_interface(self) -> None:
        self.assertTrue(verifyObject(ISessionRegistry, self.registry))

    def test_addGetRemove(self) -> None:
        a, b = FakeClient(), FakeClient()
        self.registry.add("s1", a)
        self.registry.add("s2", b)
        self.assertIs(self.registry.get("s1"), a)
        self.assertIs(self.registry.get("s2"), b)
        self.assertEqual(len(self.registry), 2)
        self.registry.remove("s1")
        self.assertIsNone(self.registry.get("s1"))
        self.assertIs(self.registry.get("s2"), b)
        self.assertEqual(len(self.registry), 1)

    def test_unknownSession(self) -> None:
        self.assertIsNone(self.registry.get("nope"))
        self.assertIsNone(self.registry.get(""))

    def test_removeUnknownIgnored(self) -> None:
        self.registry.remove("nope")
        self.registry.add("s1", FakeClient())
        self.registry.remove("s1")
        self.registry.remove("s1")
        self.assertEqual(len(self.registry), 0)

    def test_addReplaces(self) -> None:
        a, b = FakeClient(), FakeClient()
        self.registry.add("s1", a)
        self.registry.add("s1", b)
        self.assertIs(self.registry.get("s1"), b)
        self.assertEqual(len(self.registry), 1)


class LocalNodesTests(SynchronousTestCase):
    def test_interface(self) -> None:
        self.assertTrue(verifyObject(IClusterNodes, LocalNodes("node-a")))

    def test_knowsItself(self) -> None:
        """
        Alone, a node knows only itself: an emulation request naming another node gets 404.
        """
        nodes = LocalNodes("node-a")
        self.assertTrue(nodes.isKnownNode("node-a"))
        self.assertFalse(nodes.isKnownNode("node-b"))
        self.assertFalse(nodes.isKnownNode(""))

    def test_nodeAloneKnowsItself(self) -> None:
        """A node without a cluster knows itself and no other node."""
        a, b = makeNode(), makeNode()
        self.assertTrue(verifyObject(IClusterNodes, a.nodes))
        self.assertTrue(a.nodes.isKnownNode(a.id))
        self.assertFalse(a.nodes.isKnownNode(b.id))
