# -*- test-case-name: tests.transports.test_uni_sse -*-
"""
``/connection/uni_sse``: unidirectional Server-Sent Events (Centrifugo's ``internal/unisse``), for a plain
browser C{EventSource}.

The bare JSON ConnectRequest comes in the ``cf_connect`` query parameter of a GET (none at all is an empty
request: an anonymous connection, where the configuration allows one) or in a POST body. Each push is one
``data:`` event: the ``connect`` result first, then publications of the server-side subscriptions, empty pings
and a closing ``disconnect``. The stream opens with ``\\r\\n`` so that ``onopen`` fires at once. JSON only.
"""

from __future__ import annotations

from typing import Any, Optional

from twisted.web import server

from httpstream.transports._http import EndpointResource, admitOrigin, readBody
from httpstream.transports._uni import CONNECT_PARAM, readConnectRequest
from httpstream.transports.http_stream import openStream
from httpstream.transports.sse import CONTENT_TYPE, SSETransport


class UniSSETransport(SSETransport):
    """An event stream of bare pushes, one C{data:} event each."""

    __slots__ = ()

    name = "uni_sse"
    emulated = False
    unidirectional = True


class UniSSEResource(EndpointResource):
    """Opens an event stream per GET or POST whose connect request reads (400 otherwise)."""

    def render(self, request: server.Request) -> bytes | int:
        if not admitOrigin(self._origins, request):
            return b""
        connect: Optional[dict[str, Any]]
        if request.method == b"GET":
            raw = (request.args.get(CONNECT_PARAM.encode()) or [b""])[0]
            connect = readConnectRequest(raw, UniSSETransport.name) if raw else {}
        elif request.method == b"POST":
            body = readBody(request, self._maxBodySize)
            if body is None:
                request.setResponseCode(413)
                return b""
            connect = readConnectRequest(body, UniSSETransport.name)
        else:
            # EventSource never sends a preflight; Centrifugo answers every other method 405.
            request.setResponseCode(405)
            return b""
        if connect is None:
            request.setResponseCode(400)
            return b""
        return openStream(self._node, request, UniSSETransport(request), CONTENT_TYPE, b"", b"\r\n", connect)
