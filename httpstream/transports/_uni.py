# -*- test-case-name: tests.transports.test_uni_http_stream,tests.transports.test_uni_sse -*-
"""
What the unidirectional transports share: reading the bare ConnectRequest a client opens with.
"""

from __future__ import annotations

from typing import Any, Optional

from httpstream.logs import Logger
from httpstream.protocol import DecodeError
from httpstream.protocol.schema import json_connect_request

# Where a GET (uni_sse's EventSource, uni_websocket) carries the connect request: a JSON object, URL-encoded.
CONNECT_PARAM = "cf_connect"

log = Logger()


def readConnectRequest(data: bytes, transport: str) -> Optional[dict[str, Any]]:
    """
    The ConnectRequest in C{data} (JSON; C{null} is an empty one), or None when it is not one: Centrifugo
    answers such a request 400 (uni_websocket's first message: close 3501) and never makes a client.
    """
    try:
        return json_connect_request(data)
    except DecodeError as e:
        log.debug("{transport}: malformed connect request: {error}", transport=transport, error=str(e))
        return None
