"""
A small real HTTP backend for Centrifugo's proxy, for tests that run a real server process.

    backend = ProxyBackend({"/rpc": echoRPC})       # path -> handler(body) -> response
    server = startServer({"proxy_rpc_endpoint": backend.endpoint("/rpc")})
    ...
    (request,) = backend.requestsTo("/rpc")
    assert request.body["transport"] == "http_stream"
    backend.close()

It listens on 127.0.0.1 on a port the OS picks (http.server in a daemon thread, HTTP/1.1 with keep-alive, as the
server's connection pool expects), decodes each POSTed JSON body, records it with its headers, and answers what
the handler for the path returns:

* a dict or list: HTTP 200 with that value as JSON (Centrifugo's ``{"result": {..}}``, ``{"error": {..}}`` or
  ``{"disconnect": {..}}``);
* a L{Reply}: exactly that status, body and content type (for backends that fail: 500, not JSON, ...);
* a handler may also sleep (it runs in its own thread) to test the server's proxy timeouts.

A path without a handler answers 404. Request and response shapes are Centrifugo v5's (``httpstream/policy/proxy.py``,
docs/configuration.md "Proxy to the application backend").
"""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Optional, Self, Union

__all__ = ["ProxyBackend", "ProxyRequest", "Reply", "echoRPC"]


@dataclass(frozen=True)
class Reply:
    """A literal HTTP answer (status, body, content type), for a handler that must not answer 200 JSON."""

    status: int
    body: bytes = b""
    contentType: str = "application/json"


@dataclass(frozen=True)
class ProxyRequest:
    """
    One request the server made.

    @ivar path: the request path (without the query string).
    @ivar headers: header name (lower case) -> value (the last one when repeated).
    @ivar body: the decoded JSON body, or None when it was not JSON (then see C{raw}).
    @ivar raw: the body bytes.
    """

    path: str
    headers: dict[str, str]
    body: Any
    raw: bytes = field(repr=False)

    def payload(self) -> Optional[bytes]:
        """The request's payload as bytes: C{data} (embedded JSON, re-serialised compactly) or C{b64data}."""
        if not isinstance(self.body, dict):
            return None
        if "b64data" in self.body:
            return base64.b64decode(self.body["b64data"])
        if "data" in self.body:
            return json.dumps(self.body["data"], separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        return None


Handler = Callable[[Any], Union[dict, list, Reply]]


def echoRPC(body: Any) -> dict:
    """An RPC handler answering the request's payload, in the form it came (C{data} or C{b64data})."""
    result: dict[str, Any] = {}
    if "b64data" in body:
        result["b64data"] = body["b64data"]
    elif "data" in body:
        result["data"] = body["data"]
    return {"result": result}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    backend: "ProxyBackend"


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        path = self.path.split("?", 1)[0]
        backend = self.server.backend
        request = ProxyRequest(path, {name.lower(): value for name, value in self.headers.items()}, body, raw)
        backend._record(request)
        handler = backend.handlers.get(path)
        if handler is None:
            answer: Union[dict, list, Reply] = Reply(404, b"not found", "text/plain")
        else:
            try:
                answer = handler(body)
            except Exception as e:  # noqa: BLE001
                # A broken test handler: the server sees a failed call, and the body says why.
                answer = Reply(500, repr(e).encode("utf-8"), "text/plain")
        if not isinstance(answer, Reply):
            answer = Reply(200, json.dumps(answer).encode("utf-8"))
        self.send_response(answer.status)
        self.send_header("Content-Type", answer.contentType)
        self.send_header("Content-Length", str(len(answer.body)))
        self.end_headers()
        self.wfile.write(answer.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the recorded requests say it all; stderr stays quiet


class ProxyBackend:
    """
    A running backend.

    @ivar handlers: path -> handler; may be changed while it runs.
    @ivar url: its base URL, C{http://127.0.0.1:PORT}.
    """

    def __init__(self, handlers: Optional[dict[str, Handler]] = None) -> None:
        self.handlers: dict[str, Handler] = dict(handlers or {})
        self._requests: list[ProxyRequest] = []
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _RequestHandler)
        self._server.backend = self
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def endpoint(self, path: str) -> str:
        """The URL of C{path} (e.g. C{"/rpc"}), for a C{proxy_*_endpoint} config key."""
        return self.url + path

    def _record(self, request: ProxyRequest) -> None:
        with self._lock:
            self._requests.append(request)

    @property
    def requests(self) -> list[ProxyRequest]:
        """Every request so far, in arrival order (a copy)."""
        with self._lock:
            return list(self._requests)

    def requestsTo(self, path: str) -> list[ProxyRequest]:
        return [request for request in self.requests if request.path == path]

    def close(self) -> None:
        """Stop listening (connections still open end with the server process that made them)."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
