# -*- test-case-name: tests.client.test_client_maps -*-
"""
A client's map publish (PublishRequest C{type} 1): set a map key to C{data}, or remove it (C{removed}), as the
namespace's C{map} permissions and C{client_key} allow, or its map publish (remove) proxy, as the connection's policy
decides (C{mapWriting}: the key, and what a proxy changed). The reply is an empty
C{publish} result; the write reaches the map's subscribers (the writer too, when subscribed) as an update.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.internet.defer import Deferred

from httpstream.decisions import MapWriteDecision, Refused
from httpstream.policy.channels import ChannelError
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
    except Refused as e:
        client.refused(commandID, e)
        return None
    except ChannelError as e:
        client.replyError(commandID, e.error)
        return None
    sub = client.subs.get(channel)
    subscribed = sub is not None and not sub.subscribing

    def write(decision: MapWriteDecision) -> Deferred[Any]:
        written: Deferred[Any]
        if removed:
            written = node.maps.remove(channel, decision.key, options, idempotencyKey=decision.idempotencyKey,
                                       tags=decision.tags)
        else:
            written = node.maps.publish(
                channel, decision.key, decision.data if decision.data is not None else data, client.clientInfo(sub),
                tags=dict(decision.tags) if decision.tags else None, options=options, keyMode=decision.keyMode,
                idempotencyKey=decision.idempotencyKey)
        return written

    d = client.policy.mapWriting(client.connection(), channel, options, request.get("key", "") or "", data,
                                 removed, subscribed)
    done: Deferred[Any] = d.addCallback(write).addCallbacks(lambda _: client.send({"id": commandID, "publish": {}}),
                                                           lambda f: client.commandFailed(commandID, f, "publish"))
    return done
