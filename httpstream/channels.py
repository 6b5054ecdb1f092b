# -*- test-case-name: tests.test_channels -*-
"""
Channel rules: which channel names are valid and who may subscribe or publish.

Only the top-level channel options exist so far; namespaces extend this module (Centrifugo's ``rule.go`` and the
``OnSubscribe``/``OnPublish`` handlers).
"""

from __future__ import annotations

from typing import Optional

from httpstream import codes
from httpstream.config import Config


class ChannelRules:
    """Decides on channel names and permissions from the config."""

    def __init__(self, config: Config) -> None:
        self._config = config

    def validate(self, channel: str) -> Optional[codes.Error]:
        """Return the error for an invalid channel name, or None."""
        if len(channel) > self._config.channel_max_length or not channel.isascii():
            return codes.ERROR_BAD_REQUEST
        return None

    def canSubscribe(self, user: str, channel: str) -> bool:
        c = self._config
        if channel.startswith("$"):
            # A private channel needs a subscription token, which no one can present yet (even when insecure).
            return False
        if c.client_insecure:
            return True
        return c.allow_subscribe_for_client and (bool(user) or c.allow_subscribe_for_anonymous)

    def canPublish(self, user: str, channel: str, subscribed: bool) -> bool:
        c = self._config
        if c.client_insecure:
            return True
        anonymousOK = bool(user) or c.allow_publish_for_anonymous
        if c.allow_publish_for_client and anonymousOK:
            return True
        return c.allow_publish_for_subscriber and subscribed and anonymousOK
