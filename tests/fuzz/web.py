"""
An in-memory request for the HTTP entry points (twisted.web's DummyRequest, held to what a real Request allows),
and the reader of what a stream wrote.
"""

from __future__ import annotations

from io import BytesIO
from typing import Any, Optional

from twisted.internet.error import ConnectionLost
from twisted.python.failure import Failure
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from httpstream.protocol.framing import split_varint

from .harness import checkReply

# What the HTTP entry points may answer instead of a stream; never 500.
STATUSES = {200, 204, 400, 403, 404, 405, 413}


class FuzzRequest(DummyRequest):
    """
    One request: method, body, headers and query arguments; a push producer is kept (DummyRequest would pull it
    in a loop), and a write or finish after the end fails the example, as it would raise in twisted.web.
    """

    def __init__(
        self,
        method: bytes,
        body: bytes = b"",
        headers: Optional[dict[bytes, bytes]] = None,
        args: Optional[dict[bytes, list[bytes]]] = None,
    ) -> None:
        super().__init__([b""])
        self.method = method
        self.content = BytesIO(body)
        self.args = dict(args or {})
        for name, value in (headers or {}).items():
            self.requestHeaders.setRawHeaders(name, [value])
        self.producer: Any = None
        self._disconnected = False
        self.channel = _Channel()
        # As twisted.web's Request: no chunked framing here, so every write goes through write() below.
        self.startedWriting = False
        self.chunked = False

    @property
    def code(self) -> Optional[int]:
        return self.responseCode

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        assert self.producer is None, "a second producer"
        assert streaming, "a pull producer"
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None

    def write(self, data: bytes) -> None:
        assert not self.finished, "write after finish"
        assert not self._disconnected, "write after the connection was lost"
        self.startedWriting = True
        super().write(data)

    def finish(self) -> None:
        assert not self.finished, "finish called twice"
        assert not self._disconnected, "finish after the connection was lost"
        super().finish()

    def lose(self) -> None:
        """The peer goes away."""
        if not self.finished and not self._disconnected:
            self._disconnected = True
            self.channel = None
            self.processingFailed(Failure(ConnectionLost()))


class _Channel:
    class transport:
        @staticmethod
        def abortConnection() -> None:
            pass


def render(resource: Any, request: FuzzRequest) -> Any:
    """Render C{request}; a direct answer is written and finished, as twisted.web's Request.render does."""
    result = resource.render(request)
    if result is not NOT_DONE_YET:
        assert isinstance(result, bytes), result
        request.write(result)
        request.finish()
    assert request.code is None or request.code in STATUSES, request.code
    return result


def streamReplies(protocol: str, request: FuzzRequest, sse: bool = False) -> list[dict[str, Any]]:
    """Every message a streaming response wrote, each checked with L{checkReply}."""
    body = b"".join(request.written)
    if sse:
        assert body.startswith(b"\r\n"), body[:20]
        events = [e for e in body[2:].split(b"\n\n") if e]
        messages = []
        for event in events:
            assert event.startswith(b"data: ") and b"\n" not in event, event
            messages.append(event[6:])
    elif protocol == "json":
        assert not body or body.endswith(b"\n"), body[-20:]
        messages = body.split(b"\n")[:-1]
    else:
        messages = split_varint(body, 2**31)
    return [checkReply(protocol, message) for message in messages]
