"""
``allowed_origins`` on every transport, on the in-memory server (issue 14 P1): an Origin the list refuses gets 403
on http_stream, ``/emulation`` and SSE (GET and POST), on their CORS preflights, and on the WebSocket upgrade, with
no CORS headers and nothing served; a request without Origin (curl, centrifuge-python) always passes.

Which origins pass is Centrifugo's rule (``internal/app/origin.go``): ``[]`` admits only requests without Origin,
``["*"]`` admits every request (``Origin: null`` too), and otherwise the lowercased Origin must match a glob
(``null`` only when a pattern matches it); and as a page of the server's own host works with Centrifugo (which
serves it, CORS headers or not), an Origin whose host is the request's Host passes too.
"""

from __future__ import annotations

import json
from typing import Iterator, Optional
from urllib.parse import quote

import orjson
import pytest

from httpstream.memoryserver import Response
from httpstream.testing import MemoryServer
from tests.web.helpers import MemoryWebSocket, connectStream, emulate, openStream, serve

ALLOWED = "https://app.example.com"
FOREIGN = "https://example.com.evil.org"
CORS = ("access-control-allow-origin", "access-control-allow-credentials", "access-control-allow-headers")
CONNECT = b'{"id":1,"connect":{}}'
API_KEY = "origins-test-api-key"
SSE_GET = "/connection/sse?cf_connect=" + quote(CONNECT.decode())


def serverWith(origins: list[str]) -> MemoryServer:
    return serve({"sse": True, "allowed_origins": origins, "api_key": API_KEY, "prometheus": True})


@pytest.fixture
def server() -> Iterator[MemoryServer]:
    with serverWith(["https://*.example.com"]) as memory:
        yield memory
        # Each refusal is one info line, never a traceback.
        assert "Traceback" not in memory.logged


@pytest.fixture
def anyOrigin() -> Iterator[MemoryServer]:
    with serverWith(["*"]) as memory:
        yield memory


@pytest.fixture
def noOrigins() -> Iterator[MemoryServer]:
    with serverWith([]) as memory:
        yield memory


def send(server: MemoryServer, transport: str, origin: Optional[str]) -> Response:
    """One request opening (or, for the preflights and /emulation, touching) a transport, with this Origin."""
    headers = {} if origin is None else {"Origin": origin}
    if transport == "http_stream":
        headers["Content-Type"] = "application/json"
        return server.open("POST", "/connection/http_stream", headers, CONNECT).response
    if transport == "sse GET":
        return server.open("GET", SSE_GET, headers).response
    if transport == "sse POST":
        return server.open("POST", "/connection/sse", headers, CONNECT).response
    if transport == "emulation":
        body = json.dumps({"session": "none", "node": "none", "data": "{}"}).encode()
        headers["Content-Type"] = "application/json"
        return server.request("POST", "/emulation", headers, body)
    method, _, path = transport.partition(" ")
    assert method == "OPTIONS", transport
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    return server.request("OPTIONS", path, dict(preflight, **headers))


TRANSPORTS = ["http_stream", "sse GET", "sse POST", "emulation"]
PREFLIGHTS = ["OPTIONS /connection/http_stream", "OPTIONS /emulation", "OPTIONS /connection/sse"]


def assertRefused(response: Response) -> None:
    assert response.status == 403, response.status
    for name in CORS:
        assert name not in response.headers, (name, response.headers)
    # Nothing streamed, no error text: an empty body.
    assert response.complete and response.body == b""


def assertServed(response: Response, transport: str, origin: Optional[str]) -> None:
    if transport.startswith("OPTIONS"):
        # EventSource never preflights: SSE answers OPTIONS as a wrong method, after the origin check.
        assert response.status == (405 if transport.endswith("sse") else 204), response.status
    elif transport == "emulation":
        assert response.status == 404  # unknown node: the request reached the endpoint
    else:
        assert response.status == 200, response.status
        first = response.chunks[0]
        if transport.startswith("sse"):
            assert first == b"\r\n"
            first = response.chunks[1]
            assert first.startswith(b"data: ")
            first = first[len(b"data: "):]
        assert "connect" in orjson.loads(first)
    if origin:
        assert response.headers["access-control-allow-origin"] == origin
        assert response.headers["access-control-allow-credentials"] == "true"
    else:
        for name in CORS:
            assert name not in response.headers


@pytest.mark.parametrize("transport", TRANSPORTS + PREFLIGHTS)
def test_foreignOriginRefused403(server: MemoryServer, transport: str) -> None:
    assertRefused(send(server, transport, FOREIGN))
    assert "request refused: origin 'https://example.com.evil.org' not in allowed_origins" in server.logged


@pytest.mark.parametrize("transport", TRANSPORTS + PREFLIGHTS)
def test_nullOriginRefused403(server: MemoryServer, transport: str) -> None:
    # A sandboxed iframe or a file: page sends "Origin: null"; no pattern here matches it.
    assertRefused(send(server, transport, "null"))


@pytest.mark.parametrize("transport", TRANSPORTS + PREFLIGHTS)
def test_allowedOriginServedWithCORS(server: MemoryServer, transport: str) -> None:
    # Matched lowercased, echoed as sent.
    assertServed(send(server, transport, "https://App.Example.com"), transport, "https://App.Example.com")


@pytest.mark.parametrize("transport", TRANSPORTS + PREFLIGHTS)
def test_noOriginServed(server: MemoryServer, transport: str) -> None:
    # curl, centrifuge-python, cent: no Origin header, nothing to check, no CORS headers.
    assertServed(send(server, transport, None), transport, None)


def test_preflightEchoesRequestedHeaders(server: MemoryServer) -> None:
    response = send(server, "OPTIONS /connection/http_stream", ALLOWED)
    assert response.status == 204
    assert response.headers["access-control-allow-headers"] == "content-type"
    assert response.headers["access-control-allow-methods"] == "POST, OPTIONS"


def test_webSocketForeignOriginRefused403(server: MemoryServer) -> None:
    ws = MemoryWebSocket(server, headers={"Origin": FOREIGN})
    assert ws.status == 403
    ws.close()
    ws = MemoryWebSocket(server, headers={"Origin": ALLOWED})
    assert ws.status == 101
    ws.close()


def test_refusedEmulationRunsNothing(server: MemoryServer) -> None:
    """
    Commands posted from a foreign page for a live session are not run: only the allowed request's reply arrives.
    """
    stream, result = connectStream(server)
    node, session = result["node"], result["session"]
    refused = emulate(server, node, session, [{"id": 5, "subscribe": {"channel": "evil"}}], {"Origin": FOREIGN})
    assert refused.status == 403
    allowed = emulate(server, node, session, [{"id": 6, "subscribe": {"channel": "good"}}], {"Origin": ALLOWED})
    assert allowed.status == 204
    assert [reply["id"] for reply in stream.received()[1:]] == [6]
    stream.close()
    # Counted apart from the other outcomes of /emulation.
    metrics = server.request("GET", "/metrics").body.decode()
    assert 'httpstream_emulation_requests_total{outcome="forbidden"}' in metrics


def test_refusedStreamOpensNoConnection(server: MemoryServer) -> None:
    # The connect of a refused stream never ran: the server's client count stays what it was.
    before = clients(server)
    for transport in TRANSPORTS[:3]:
        assertRefused(send(server, transport, FOREIGN))
    assert clients(server) == before


def clients(server: MemoryServer) -> int:
    response = server.request("POST", "/api/info", {"X-API-Key": API_KEY}, b"{}")
    assert response.status == 200, response.status
    body = orjson.loads(response.body)
    return sum(node["num_clients"] for node in body["result"]["nodes"])


@pytest.mark.parametrize("transport", TRANSPORTS + PREFLIGHTS)
@pytest.mark.parametrize("origin", [FOREIGN, "null"])
def test_starAdmitsEveryOrigin(anyOrigin: MemoryServer, transport: str, origin: str) -> None:
    assertServed(send(anyOrigin, transport, origin), transport, origin)


@pytest.mark.parametrize("transport", TRANSPORTS + PREFLIGHTS)
def test_emptyListAdmitsNoOriginAndThisHost(noOrigins: MemoryServer, transport: str) -> None:
    """
    C{[]}: requests without Origin, and pages of this very host (a browser sends Origin on a same-origin POST;
    Centrifugo serves it too, without CORS headers, which a same-origin page does not need).
    """
    port = noOrigins.address.port
    assertServed(send(noOrigins, transport, None), transport, None)
    assertServed(send(noOrigins, transport, f"http://127.0.0.1:{port}"), transport, None)
    # Another port is another origin; so is a look-alike host.
    assertRefused(send(noOrigins, transport, f"http://127.0.0.1:{port + 1}"))
    assertRefused(send(noOrigins, transport, f"http://127.0.0.1:{port}.evil.org"))
    assertRefused(send(noOrigins, transport, f"http://user@127.0.0.1:{port}"))
    assertRefused(send(noOrigins, transport, "null"))
    assertRefused(send(noOrigins, transport, FOREIGN))


def test_emptyOriginHeaderCountsAsNone(noOrigins: MemoryServer) -> None:
    # Go's Header.Get cannot tell "Origin:" from no header; neither can we.
    assertServed(send(noOrigins, "http_stream", ""), "http_stream", None)


def test_streamStillWorksAfterRefusals(server: MemoryServer) -> None:
    for transport in TRANSPORTS + PREFLIGHTS:
        assertRefused(send(server, transport, FOREIGN))
    stream = openStream(server, CONNECT, headers={"Origin": ALLOWED})
    assert "connect" in stream.received()[0]
    stream.close()
