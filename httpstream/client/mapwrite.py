# -*- test-case-name: tests.client.test_client_maps -*-
"""
A client's map publish (PublishRequest C{type} 1): set a map key to C{data}, or remove it (C{removed}), as the
namespace's C{map} permissions and C{client_key} allow (L{httpstream.policy.maps}). The reply is an empty
C{publish} result; the write reaches the map's subscribers (the writer too, when subscribed) as an update.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.defer import Deferred

from httpstream.decisions import Refused
from httpstream.policy.channels import ChannelError
from httpstream.policy.maps import mapWriteKey
from httpstream.protocol import codes

__all__ = ["mapPublish"]


def mapPublish(client: Any, commandID: int, request: dict[str, Any]) -> Optional[Deferred[Any]]:
    """
    Run a map publish command of C{client} (a L{httpstream.client.commands.Commander}).
    """
    channel = request.get("channel", "")
    removed = bool(request.get("removed"))
    data = request.get("data", b"")
    if not channel or (not removed and not data):
        client.close(codes.DISCONNECT_BAD_REQUEST)
        return None
    node = client.node
    try:
        options = node.maps.options(channel, client.policy.channelOptions(channel, False))
        sub = client.subs.get(channel)
        key = mapWriteKey(node.config, options, client.clientID, client.user, sub is not None and not sub.subscribing,
                          request.get("key", "") or "", removed)
    except Refused as e:
        client.refused(commandID, e)
        return None
    except ChannelError as e:
        client.replyError(commandID, e.error)
        return None
    if removed:
        d = node.maps.remove(channel, key, options)
    else:
        d = node.maps.publish(channel, key, data, client.clientInfo(sub), options=options)
    done: Deferred[Any] = d.addCallbacks(lambda _: client.send({"id": commandID, "publish": {}}),
                                         lambda f: client.commandFailed(commandID, f, "publish"))
    return done
