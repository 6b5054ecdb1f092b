# -*- test-case-name: tests.serverapi.test_api_sharedpoll -*-
"""
The server API's C{shared_poll_publish} (Centrifugo 6.8): the application pushes a shared poll key's new state
itself, instead of waiting for the next poll of its backend. Every node's trackers of the key get it when its
C{version} is newer than what the node has (so a later poll answering an older version changes nothing); a
non-empty C{epoch} other than the channel's starts the versions over, as a poll's would.

As Centrifugo answers: 107 without channel or key, with version 0, or for a channel that is not a shared poll one;
102 for an unknown namespace; 108 unless the namespace has C{shared_poll.publish_enabled} (which needs versioned
mode: the config check).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from httpstream.config.sharedpoll import isSharedPoll
from httpstream.logs import Logger
from httpstream.readers import Fields
from httpstream.readers.fields import UINT64
from httpstream.serverapi.channels import channelOptions
from httpstream.serverapi.errors import ERROR_BAD_REQUEST, ERROR_NOT_AVAILABLE, APIError

__all__ = ["SharedPollMethods"]


class SharedPollMethods:
    """The shared poll methods of one node's server API."""

    log = Logger()

    def __init__(self, node: Any) -> None:
        self.node = node

    def publish(self, f: Fields) -> Deferred[dict[str, Any]]:
        channel, key, version = f.string("channel"), f.string("key"), f.integer("version", UINT64)
        epoch, data = f.string("epoch"), f.payload("data")
        if not channel or not key or not version:
            raise APIError(ERROR_BAD_REQUEST)
        options = channelOptions(self.node, channel)
        if not isSharedPoll(options):
            raise APIError(ERROR_BAD_REQUEST)
        if not options.shared_poll_publish_enabled:
            self.log.warn("shared_poll_publish to {channel}: its namespace has no shared_poll.publish_enabled",
                          channel=channel)
            raise APIError(ERROR_NOT_AVAILABLE)
        d: Deferred[None] = self.node.sharedPollPublish(channel, key, version, epoch, data or b"")
        return d.addCallback(lambda _: {})
