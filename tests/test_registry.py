"""
Tests for L{httpstream.node.registry}: the emulation sessions of a node and the nodes it knows.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from httpstream.interfaces import ISessionRegistry
from httpstream.node.registry import SessionRegistry
from httpstream.testing import FakeClient


class SessionRegistryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.registry = SessionRegistry("node-a")

    def test_interface(self) -> None:
        self.assertTrue(verifyObject(ISessionRegistry, self.registry))
        self.assertEqual(self.registry.nodeID, "node-a")

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

    def test_knowsItself(self) -> None:
        """
        Alone, a node knows only itself: an emulation request naming another node gets 404.
        """
        self.assertTrue(self.registry.isKnownNode("node-a"))
        self.assertFalse(self.registry.isKnownNode("node-b"))
        self.assertFalse(self.registry.isKnownNode(""))

    def test_setNodes(self) -> None:
        """
        The cluster's node list replaces the known other nodes; the node itself stays known.
        """
        self.registry.setNodes(["node-b", "node-c"])
        self.assertTrue(self.registry.isKnownNode("node-b"))
        self.assertTrue(self.registry.isKnownNode("node-c"))
        self.registry.setNodes(["node-c"])
        self.assertFalse(self.registry.isKnownNode("node-b"))
        self.assertTrue(self.registry.isKnownNode("node-c"))
        self.assertTrue(self.registry.isKnownNode("node-a"))
        self.registry.setNodes([])
        self.assertTrue(self.registry.isKnownNode("node-a"))
