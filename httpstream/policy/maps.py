# -*- test-case-name: tests.client.test_client_maps -*-
"""
Who may write a map channel's keys from a client, and which key the write gets (Centrifugo's C{OnMapPublish} and
C{OnMapRemove}): the namespace's C{map.allow_publish_*} / C{map.allow_remove_*} permissions, else
C{client_insecure}; C{map.client_key} puts the writer's client or user id in place of the key it sent.

The map publish and remove proxies of Centrifugo are not served (108 when configured is left for later).
"""

from __future__ import annotations

from httpstream.config import ChannelOptions, Config
from httpstream.decisions import Refused
from httpstream.protocol import codes

__all__ = ["mapWriteKey"]


def mapWriteKey(config: Config, options: ChannelOptions, clientID: str, user: str, subscribed: bool,
                key: str, remove: bool) -> str:
    """
    The key a client's map publish (or C{remove}) writes.

    @raise Refused: 103 when the client may not; 107 for an empty key the namespace does not choose.
    """
    if remove:
        forClient, forSubscriber = options.map_allow_remove_for_client, options.map_allow_remove_for_subscriber
        anonymous = options.map_allow_remove_for_anonymous
    else:
        forClient, forSubscriber = options.map_allow_publish_for_client, options.map_allow_publish_for_subscriber
        anonymous = options.map_allow_publish_for_anonymous
    userOK = bool(user) or anonymous
    allowed = (forClient and userOK) or (forSubscriber and subscribed and userOK) or config.client_insecure
    if not allowed:
        raise Refused(codes.ERROR_PERMISSION_DENIED)
    if options.map_client_key == "client_id":
        return clientID
    if options.map_client_key == "user_id":
        if not user:
            raise Refused(codes.ERROR_PERMISSION_DENIED)
        return user
    if not key:
        raise Refused(codes.ERROR_BAD_REQUEST)
    return key
