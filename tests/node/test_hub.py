"""
Tests for L{httpstream.node.hub}: who is subscribed where (the fan-out is tests/client/test_client_channels.py's).
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from httpstream.node.hub import Hub
from httpstream.testing import FakeClient

class MembershipTests(SynchronousTestCase):
    def test_firstAndLast(self) -> None:
        """
        add says when a channel gets its first local subscriber and remove when it loses its last: the node
        (un)subscribes the broker then.
        """
        hub = Hub()
        a, b = FakeClient(), FakeClient()
        self.assertTrue(hub.add("news", a))
        self.assertFalse(hub.add("news", b))
        self.assertFalse(hub.remove("news", a))
        self.assertTrue(hub.remove("news", b))
        self.assertEqual(hub.channels(), [])

    def test_removeUnknown(self) -> None:
        hub = Hub()
        a, b = FakeClient(), FakeClient()
        self.assertFalse(hub.remove("news", a))
        hub.add("news", a)
        self.assertFalse(hub.remove("news", b))
        self.assertFalse(hub.remove("other", a))
        self.assertEqual(hub.subscribers("news"), [a])

    def test_addTwice(self) -> None:
        """
        A client counts once per channel, however often it is added.
        """
        hub = Hub()
        a = FakeClient()
        hub.add("news", a)
        self.assertFalse(hub.add("news", a))
        self.assertEqual(hub.numSubscriptions(), 1)
        self.assertTrue(hub.remove("news", a))

    def test_counts(self) -> None:
        hub = Hub()
        a, b = FakeClient(), FakeClient()
        hub.add("news", a)
        hub.add("news", b)
        hub.add("chat", a)
        self.assertEqual(sorted(hub.channels()), ["chat", "news"])
        self.assertEqual(hub.numSubscriptions(), 3)
        self.assertEqual(set(hub.subscribers("news")), {a, b})
        self.assertEqual(hub.subscribers("nothing"), [])
