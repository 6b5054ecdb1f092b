# -*- test-case-name: tests.client.test_client_tagsfilter -*-
"""
The publication tags filter a client's subscribe asks for (C{SubscribeRequest.tf}), read as centrifuge's
C{subscribeCmd} reads it once the subscription is allowed: only where the channel's options allow it
(C{allow_tags_filter}), and well-formed (L{httpstream.protocol.tagsfilter}). Otherwise the subscribe gets error
107 bad request, and the connection stays.

Unlike upstream, a filter together with delta compression (C{SubscribeRequest.delta}) is refused too (107): the SDK
refuses the pair itself, and upstream sends a delta subscriber the publications its filter excludes (the deltas
need every one), so the filter would not do what it says.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from httpstream.config import ChannelOptions
from httpstream.decisions import Refused
from httpstream.logs import Logger
from httpstream.protocol import codes
from httpstream.protocol.tagsfilter import FilterError, TagsFilter, parseFilter

__all__ = ["requestedFilter"]

log = Logger()


def requestedFilter(request: Mapping[str, Any], options: ChannelOptions, clientID: str,
                    channel: str) -> Optional[TagsFilter]:
    """
    The tags filter of a client's SubscribeRequest (in the codecs' dict form), or None when it sent none.

    @raise Refused: 107 bad request, for a filter the channel does not allow, one with delta, or a malformed one.
    """
    tree = request.get("tf")
    if tree is None:
        return None
    if not options.allow_tags_filter:
        reason = "tags filter not allowed in the channel's namespace (allow_tags_filter)"
    elif request.get("delta"):
        reason = "tags filter and delta cannot be used together"
    else:
        try:
            return parseFilter(tree)
        except FilterError as e:
            reason = f"invalid tags filter: {e}"
    log.info("client {client}: subscribe to {channel} refused: {reason}", client=clientID, channel=channel,
             reason=reason)
    raise Refused(codes.ERROR_BAD_REQUEST)
