# -*- test-case-name: tests.web.test_fastpath -*-
"""
C{POST /emulation} straight to its resource, past Klein's routing: the one request an emulated transport (http_stream,
SSE) sends for every command, so the one a burst of commands is made of.

Klein stays the router of record: the route is declared there and serves every other method and every spelling of
the path that werkzeug maps to it (C{/%65mulation}). What Klein does for such a route is bind a werkzeug C{MapAdapter},
match the path (a recursive matcher closure), wrap the call in Deferreds and closures that hold the request, then
render the resource the route returns. About a fifth of a node's CPU per emulation request, and a reference cycle
per request that only the garbage collector frees (bench/README.md). The response is the resource's either way:
same status, same headers, same body; an exception gets the app's own error answer, as from Klein. tests/web/
test_fastpath.py sends the same requests, good and bad, both ways and compares the bytes.
"""

from __future__ import annotations

from typing import Callable

from twisted.python.failure import Failure
from twisted.web import server
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource

__all__ = ["DirectRoutes"]


class DirectRoutes(Resource):
    """
    The Site's resource under the UTF-8 guard: a POST to one of C{routes}' paths (exactly, query string aside) is
    rendered by its resource; anything else by C{app}, the Klein resource.

    @param onError: the answer to an exception from a direct route's resource: the app's error handler, whose body
        is written as Klein writes it.
    """

    isLeaf = True

    def __init__(
        self, app: IResource, routes: dict[bytes, IResource], onError: Callable[[IRequest, Failure], bytes]
    ) -> None:
        Resource.__init__(self)
        self._app = app
        self._routes = routes
        self._onError = onError

    def render(self, request: server.Request) -> bytes | int:
        resource = self._routes.get(request.path) if request.method == b"POST" else None
        if resource is None:
            rendered: bytes | int = self._app.render(request)
            return rendered
        try:
            body: bytes | int = resource.render(request)
            return body
        except Exception:
            # As Klein's route would: its error handler's body written, without a length, and the request finished.
            request.write(self._onError(request, Failure()))
            if not request.finished:
                request.finish()
            return server.NOT_DONE_YET
