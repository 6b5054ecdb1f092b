"""
The yardstick: a bare twisted.web server that speaks only what the fan-out benchmark sends and expects, written
the plain way (twisted.web Resources, C{request.write}, autobahn's C{sendMessage}), with no protocol, options,
metrics or tricks. bench.ceiling runs the same load against it and against httpstream, and divides.

    .venv/bin/python -m bench.baseline [--port 0]

What it speaks (JSON only, one channel for everyone):
- C{POST /connection/http_stream}: the body's connect command gets a connect reply with a session and node;
  then the response stays open, chunked, one newline-terminated JSON message per write;
- C{GET /connection/sse?cf_connect=...}: the same as a text/event-stream (C{\\r\\n}, then C{data: JSON\\n\\n});
- C{POST /emulation}: C{{"session","node","data"}}, data a string of newline-delimited commands: subscribe
  (reply on the session's stream) and publish (reply on the publisher's stream, then the publication to every
  subscriber); answered 204;
- C{GET /connection/websocket} (autobahn): the same commands and replies in text frames.

It prints C{listening on http://127.0.0.1:PORT} once it serves (what tests/serverprocess.py waits for).
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from typing import Any, Optional, Protocol

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet.interfaces import IReactorTCP
from twisted.web import resource, server

NODE = "baseline"


class Subscriber(Protocol):
    def send(self, message: bytes) -> None: ...


class Hub:
    """Sessions by id (for emulation) and the subscribers of each channel."""

    def __init__(self) -> None:
        self.sessions: dict[str, Subscriber] = {}
        self.channels: dict[str, set[Subscriber]] = {}

    def command(self, who: Subscriber, command: dict[str, Any], session: str = "") -> None:
        """Run one command for C{who}; its reply goes to C{who}."""
        commandID = command.get("id")
        if "connect" in command:
            reply = {"client": session or uuid.uuid4().hex, "version": "0.0.0", "session": session, "node": NODE}
            who.send(json.dumps({"id": commandID, "connect": reply}).encode())
        elif "subscribe" in command:
            self.channels.setdefault(command["subscribe"]["channel"], set()).add(who)
            who.send(json.dumps({"id": commandID, "subscribe": {}}).encode())
        elif "publish" in command:
            channel = command["publish"]["channel"]
            who.send(json.dumps({"id": commandID, "publish": {}}).encode())
            push = json.dumps({"push": {"channel": channel, "pub": {"data": command["publish"]["data"]}}})
            message = push.encode()
            for subscriber in list(self.channels.get(channel, ())):
                subscriber.send(message)

    def remove(self, who: Subscriber, session: str = "") -> None:
        self.sessions.pop(session, None)
        for subscribers in self.channels.values():
            subscribers.discard(who)


class StreamSubscriber:
    """An open http_stream or SSE response."""

    def __init__(self, request: server.Request, sse: bool) -> None:
        self.request = request
        self.sse = sse

    def send(self, message: bytes) -> None:
        if self.sse:
            self.request.write(b"data: " + message + b"\n\n")
        else:
            self.request.write(message + b"\n")


class StreamResource(resource.Resource):
    """POST /connection/http_stream (C{sse=False}) or GET /connection/sse (C{sse=True})."""

    isLeaf = True

    def __init__(self, hub: Hub, sse: bool) -> None:
        super().__init__()
        self.hub = hub
        self.sse = sse

    def render_POST(self, request: server.Request) -> Any:
        if self.sse:
            return resource.NoResource().render(request)
        assert request.content is not None
        return self.stream(request, request.content.read())

    def render_GET(self, request: server.Request) -> Any:
        if not self.sse:
            return resource.NoResource().render(request)
        return self.stream(request, request.args.get(b"cf_connect", [b""])[0])

    def stream(self, request: server.Request, commands: bytes) -> Any:
        session = uuid.uuid4().hex
        subscriber = StreamSubscriber(request, self.sse)
        self.hub.sessions[session] = subscriber
        request.notifyFinish().addBoth(lambda _: self.hub.remove(subscriber, session))
        if self.sse:
            request.setHeader(b"Content-Type", b"text/event-stream; charset=utf-8")
            request.write(b"\r\n")
        else:
            request.setHeader(b"Content-Type", b"application/json")
        for line in commands.split(b"\n"):
            if line.strip():
                self.hub.command(subscriber, json.loads(line), session)
        return server.NOT_DONE_YET


class EmulationResource(resource.Resource):
    isLeaf = True

    def __init__(self, hub: Hub) -> None:
        super().__init__()
        self.hub = hub

    def render_POST(self, request: server.Request) -> bytes:
        assert request.content is not None
        body = json.loads(request.content.read())
        subscriber = self.hub.sessions.get(body["session"])
        if subscriber is not None:
            for line in body["data"].split("\n"):
                self.hub.command(subscriber, json.loads(line))
        request.setResponseCode(204)
        return b""


class WebSocketSubscriber(WebSocketServerProtocol):
    hub: Hub

    def send(self, message: bytes) -> None:
        self.sendMessage(message, isBinary=False)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        for line in payload.split(b"\n"):
            self.hub.command(self, json.loads(line))

    def onClose(self, wasClean: bool, code: Optional[int], reason: Optional[str]) -> None:
        self.hub.remove(self)


def makeSite(hub: Hub) -> server.Site:
    factory = WebSocketServerFactory()
    factory.protocol = type("Subscriber", (WebSocketSubscriber,), {"hub": hub})
    connection = resource.Resource()
    connection.putChild(b"http_stream", StreamResource(hub, sse=False))
    connection.putChild(b"sse", StreamResource(hub, sse=True))
    connection.putChild(b"websocket", WebSocketResource(factory))
    root = resource.Resource()
    root.putChild(b"connection", connection)
    root.putChild(b"emulation", EmulationResource(hub))
    return server.Site(root)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default 0: any free port)")
    args = parser.parse_args(argv)
    from twisted.internet import reactor

    tcp: IReactorTCP = reactor  # type: ignore[assignment]
    port = tcp.listenTCP(args.port, makeSite(Hub()), backlog=1024, interface="127.0.0.1")
    bound = port.getHost().port  # type: ignore[attr-defined]
    print(f"bench.baseline listening on http://127.0.0.1:{bound}", flush=True)
    reactor.run()  # type: ignore[attr-defined]
    return 0


if __name__ == "__main__":
    sys.exit(main())
