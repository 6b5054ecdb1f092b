"""
Tests for L{httpstream.channels}: channel names and the top-level subscribe and publish permissions.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from httpstream import codes
from httpstream.channels import ChannelRules
from httpstream.config import Config


def rules(**settings: Any) -> ChannelRules:
    return ChannelRules(Config(**settings))


class ValidateTests(SynchronousTestCase):
    def test_maxLength(self) -> None:
        r = rules()
        self.assertIsNone(r.validate("a" * 255))
        self.assertEqual(r.validate("a" * 256), codes.ERROR_BAD_REQUEST)

    def test_configuredMaxLength(self) -> None:
        r = rules(channel_max_length=5)
        self.assertIsNone(r.validate("abcde"))
        self.assertEqual(r.validate("abcdef"), codes.ERROR_BAD_REQUEST)

    def test_asciiOnly(self) -> None:
        r = rules()
        self.assertEqual(r.validate("caf\u00e9"), codes.ERROR_BAD_REQUEST)
        self.assertEqual(codes.ERROR_BAD_REQUEST.code, 107)
        self.assertIsNone(r.validate("news-1_a.b#alice"))


class SubscribeTests(SynchronousTestCase):
    def test_deniedByDefault(self) -> None:
        self.assertFalse(rules().canSubscribe("alice", "news"))
        self.assertFalse(rules().canSubscribe("", "news"))

    def test_forClient(self) -> None:
        """
        allow_subscribe_for_client admits users; anonymous connections also need allow_subscribe_for_anonymous.
        """
        r = rules(allow_subscribe_for_client=True)
        self.assertTrue(r.canSubscribe("alice", "news"))
        self.assertFalse(r.canSubscribe("", "news"))
        r = rules(allow_subscribe_for_client=True, allow_subscribe_for_anonymous=True)
        self.assertTrue(r.canSubscribe("", "news"))

    def test_anonymousAloneIsNotEnough(self) -> None:
        self.assertFalse(rules(allow_subscribe_for_anonymous=True).canSubscribe("", "news"))

    def test_insecure(self) -> None:
        self.assertTrue(rules(client_insecure=True).canSubscribe("", "news"))

    def test_privateChannel(self) -> None:
        """
        A "$" channel needs a subscription token: without one it is refused whatever the options.
        """
        for settings in ({"allow_subscribe_for_client": True}, {"client_insecure": True}):
            self.assertFalse(rules(**settings).canSubscribe("alice", "$secret"), settings)


class PublishTests(SynchronousTestCase):
    def test_deniedByDefault(self) -> None:
        self.assertFalse(rules().canPublish("alice", "news", True))

    def test_forClient(self) -> None:
        r = rules(allow_publish_for_client=True)
        self.assertTrue(r.canPublish("alice", "news", False))
        self.assertFalse(r.canPublish("", "news", True))
        r = rules(allow_publish_for_client=True, allow_publish_for_anonymous=True)
        self.assertTrue(r.canPublish("", "news", False))

    def test_forSubscriber(self) -> None:
        """
        allow_publish_for_subscriber admits only subscribers of the channel (and anonymous ones only with
        allow_publish_for_anonymous).
        """
        r = rules(allow_publish_for_subscriber=True)
        self.assertTrue(r.canPublish("alice", "news", True))
        self.assertFalse(r.canPublish("alice", "news", False))
        self.assertFalse(r.canPublish("", "news", True))
        r = rules(allow_publish_for_subscriber=True, allow_publish_for_anonymous=True)
        self.assertTrue(r.canPublish("", "news", True))
        self.assertFalse(r.canPublish("", "news", False))

    def test_insecure(self) -> None:
        self.assertTrue(rules(client_insecure=True).canPublish("", "news", False))
