# -*- test-case-name: tests.transports.test_uni_http_stream -*-
"""
``POST /connection/uni_http_stream``: the unidirectional HTTP stream (Centrifugo's ``internal/unihttpstream``).

The body is a bare JSON ConnectRequest, not a command: the client never sends another. The response streams bare
JSON pushes, each ending with a newline: the connect result first (a ``connect`` push), then publications of its
server-side subscriptions (token or connect proxy ``channels``, the personal channel), empty pings, and a
``disconnect`` push at the end. JSON only, as Centrifugo's.
"""

from __future__ import annotations

from twisted.web import server

from httpstream.transports._http import EmulationEndpoint
from httpstream.transports._uni import readConnectRequest
from httpstream.transports.http_stream import HTTPStreamTransport, openStream

# Centrifugo sets none: Go's net/http sniffs it from the first push, which is JSON text.
CONTENT_TYPE = b"text/plain; charset=utf-8"


class UniHTTPStreamTransport(HTTPStreamTransport):
    """A stream of newline-terminated JSON pushes, a batch written as one chunk."""

    __slots__ = ()

    name = "uni_http_stream"
    emulated = False
    unidirectional = True

    def __init__(self, request: server.Request) -> None:
        super().__init__(request, protobuf=False)


class UniHTTPStreamResource(EmulationEndpoint):
    """
    Opens a stream per POST whose body is a ConnectRequest (400 when it is not one); OPTIONS answers a CORS
    preflight, other methods 405, a body over the limit 413 (L{EmulationEndpoint}).
    """

    def renderPost(self, request: server.Request, body: bytes) -> bytes | int:
        connect = readConnectRequest(body, UniHTTPStreamTransport.name)
        if connect is None:
            request.setResponseCode(400)
            return b""
        transport = UniHTTPStreamTransport(request)
        return openStream(self._node, request, transport, CONTENT_TYPE, b"", connect=connect)
