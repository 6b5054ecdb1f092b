"""
A real JWKS endpoint for tests that run a real server process: http.server on 127.0.0.1, a port the OS picks.

    endpoint = JWKSServer([setWithKeyA, setWithKeyB])   # the first GET gets A's set, later ones B's (a rotation)
    server = startServer({"token_jwks_public_endpoint": endpoint.url})
    ...
    endpoint.down = True                                 # answer 503 from now on
    assert endpoint.requests == 3
    endpoint.close()
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["JWKSServer"]


class JWKSServer:
    """
    Serves key sets in turn: the n-th GET gets C{sets[n]}, and every GET after the last gets the last one.

    @ivar requests: how many GETs arrived (failed ones too).
    @ivar down: when true, every GET is answered 503.
    """

    def __init__(self, sets: list[bytes], path: str = "/.well-known/jwks.json") -> None:
        self.sets = list(sets)
        self.path = path
        self.requests = 0
        self.down = False
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                with lock:
                    index = owner.requests
                    owner.requests += 1
                if owner.down or self.path != owner.path:
                    self._answer(503 if owner.down else 404, b"")
                    return
                self._answer(200, owner.sets[min(index, len(owner.sets) - 1)])

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}{self.path}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
