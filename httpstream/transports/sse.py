# -*- test-case-name: tests.transports.test_sse -*-
"""
``/connection/sse``: Server-Sent Events, JSON only (centrifugal/centrifuge ``handler_sse.go``).

The connect command comes in the ``cf_connect`` query parameter of a GET (what EventSource can send) or in a POST
body; everything after it arrives through ``/emulation``, as for http_stream. Each message is one event,
``data: <json>\\n\\n``; the stream starts with ``\\r\\n`` so that the browser's ``onopen`` fires at once.
"""

from __future__ import annotations

from typing import Sequence

from twisted.web import server

from httpstream.transports._http import EndpointResource, admitOrigin, readBody
from httpstream.transports.framecache import FrameCache
from httpstream.transports.http_stream import HTTPStreamTransport, chunked, openStream

CONNECT_PARAM = b"cf_connect"
# One message alone: its event, in its chunk.
_EVENTS = FrameCache(lambda message: chunked(b"data: %b\n\n" % message))
CONTENT_TYPE = b"text/event-stream; charset=utf-8"


class SSETransport(HTTPStreamTransport):
    """An event stream: one C{data:} event per message, a batch written as one chunk."""

    __slots__ = ()

    name = "sse"

    def __init__(self, request: server.Request) -> None:
        super().__init__(request, protobuf=False)

    def frame(self, messages: Sequence[bytes]) -> bytes:
        # A JSON message never holds a raw newline (the codec writes one line), so one data: line is enough.
        return b"".join(b"data: " + message + b"\n\n" for message in messages)

    def framings(self) -> FrameCache:
        return _EVENTS


class SSEResource(EndpointResource):
    """Opens an event stream per GET (or POST) and hands its connect command to a new client."""

    def render(self, request: server.Request) -> bytes | int:
        if not admitOrigin(self._origins, request):
            return b""
        if request.method == b"GET":
            values = request.args.get(CONNECT_PARAM) or [b""]
            body = values[0]
            if not body:
                request.setResponseCode(400)
                return b""
        elif request.method == b"POST":
            maybeBody = readBody(request, self._maxBodySize)
            if maybeBody is None:
                request.setResponseCode(413)
                return b""
            body = maybeBody
        else:
            # EventSource never sends a preflight: OPTIONS is just another wrong method here.
            request.setResponseCode(405)
            return b""
        # The opening bytes go out before the commands run, so the browser's onopen fires at once.
        return openStream(self._node, request, SSETransport(request), CONTENT_TYPE, body, preamble=b"\r\n")
