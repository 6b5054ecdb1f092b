"""
``allowed_origins`` on every transport over real sockets (issue 14 P1): an Origin the list refuses gets 403 on
http_stream, ``/emulation`` and SSE (GET and POST), on their CORS preflights, and on the WebSocket upgrade, with no
CORS headers and nothing served; a request without Origin (curl, centrifuge-python) always passes.

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

from tests.serverprocess import ServerProcess
from tests.wire import Response, Stream, connectStream, emulate, request
from tests.wsclient import WebSocket

ALLOWED = "https://app.example.com"
FOREIGN = "https://example.com.evil.org"
CORS = ("access-control-allow-origin", "access-control-allow-credentials", "access-control-allow-headers")
CONNECT = b'{"id":1,"connect":{}}'
API_KEY = "origins-test-api-key"
SSE_GET = "/connection/sse?cf_connect=" + quote(CONNECT.decode())


def serverWith(tmp: pytest.TempPathFactory, origins: list[str]) -> ServerProcess:
    overrides = {"sse": True, "allowed_origins": origins, "api_key": API_KEY, "prometheus": True}
    return ServerProcess(tmp.mktemp("origins"), overrides)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with serverWith(tmp_path_factory, ["https://*.example.com"]) as process:
        yield process
        # Each refusal is one info line, never a traceback.
        assert "Traceback" not in process.output
        assert "request refused: origin 'https://example.com.evil.org' not in allowed_origins" in process.output


@pytest.fixture(scope="module")
def anyOrigin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with serverWith(tmp_path_factory, ["*"]) as process:
        yield process


@pytest.fixture(scope="module")
def noOrigins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with serverWith(tmp_path_factory, []) as process:
        yield process


def send(port: int, transport: str, origin: Optional[str], extra: Optional[dict[str, str]] = None) -> Response:
    """One request opening (or, for the preflights and /emulation, touching) a transport, with this Origin."""
    headers = {} if origin is None else {"Origin": origin}
    headers.update(extra or {})
    if transport == "http_stream":
        headers["Content-Type"] = "application/json"
        return request(port, "POST", "/connection/http_stream", CONNECT, headers)
    if transport == "sse GET":
        return request(port, "GET", SSE_GET, headers=headers)
    if transport == "sse POST":
        return request(port, "POST", "/connection/sse", CONNECT, headers)
    if transport == "emulation":
        body = json.dumps({"session": "none", "node": "none", "data": "{}"}).encode()
        headers["Content-Type"] = "application/json"
        return request(port, "POST", "/emulation", body, headers)
    method, _, path = transport.partition(" ")
    assert method == "OPTIONS", transport
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    return request(port, "OPTIONS", path, headers=dict(preflight, **headers))


TRANSPORTS = ["http_stream", "sse GET", "sse POST", "emulation"]
PREFLIGHTS = ["OPTIONS /connection/http_stream", "OPTIONS /emulation", "OPTIONS /connection/sse"]


def assertRefused(response: Response) -> None:
    try:
        assert response.status == 403, response.status
        for name in CORS:
            assert name not in response.headers, (name, response.headers)
        # Nothing streamed, no error text: an empty body.
        assert response.body() == b""
    finally:
        response.close()


def assertServed(response: Response, transport: str, origin: Optional[str]) -> None:
    try:
        if transport.startswith("OPTIONS"):
            # EventSource never preflights: SSE answers OPTIONS as a wrong method, after the origin check.
            assert response.status == (405 if transport.endswith("sse") else 204), response.status
        elif transport == "emulation":
            assert response.status == 404  # unknown node: the request reached the endpoint
        else:
            assert response.status == 200, response.status
            first = response.chunk()
            if transport.startswith("sse"):
                assert first == b"\r\n"
                first = response.chunk()
                assert first is not None and first.startswith(b"data: ")
                first = first[len(b"data: "):]
            assert first is not None and "connect" in orjson.loads(first)
        if origin:
            assert response.headers["access-control-allow-origin"] == origin
            assert response.headers["access-control-allow-credentials"] == "true"
        else:
            for name in CORS:
                assert name not in response.headers
    finally:
        response.close()


@pytest.mark.parametrize("transport", TRANSPORTS + PREFLIGHTS)
def test_foreignOriginRefused403(server: ServerProcess, transport: str) -> None:
    assertRefused(send(server.port, transport, FOREIGN))


@pytest.mark.parametrize("transport", TRANSPORTS + PREFLIGHTS)
def test_nullOriginRefused403(server: ServerProcess, transport: str) -> None:
    # A sandboxed iframe or a file: page sends "Origin: null"; no pattern here matches it.
    assertRefused(send(server.port, transport, "null"))


@pytest.mark.parametrize("transport", TRANSPORTS + PREFLIGHTS)
def test_allowedOriginServedWithCORS(server: ServerProcess, transport: str) -> None:
    # Matched lowercased, echoed as sent.
    assertServed(send(server.port, transport, "https://App.Example.com"), transport, "https://App.Example.com")


@pytest.mark.parametrize("transport", TRANSPORTS + PREFLIGHTS)
def test_noOriginServed(server: ServerProcess, transport: str) -> None:
    # curl, centrifuge-python, cent: no Origin header, nothing to check, no CORS headers.
    assertServed(send(server.port, transport, None), transport, None)


def test_preflightEchoesRequestedHeaders(server: ServerProcess) -> None:
    response = send(server.port, "OPTIONS /connection/http_stream", ALLOWED)
    assert response.status == 204
    assert response.headers["access-control-allow-headers"] == "content-type"
    assert response.headers["access-control-allow-methods"] == "POST, OPTIONS"
    response.close()


def test_webSocketForeignOriginRefused403(server: ServerProcess) -> None:
    ws = WebSocket(server.port, headers={"Origin": FOREIGN})
    assert ws.status == 403
    ws.close()
    ws = WebSocket(server.port, headers={"Origin": ALLOWED})
    assert ws.status == 101
    ws.close()


def test_refusedEmulationRunsNothing(server: ServerProcess) -> None:
    """
    Commands posted from a foreign page for a live session are not run: only the allowed request's reply arrives.
    """
    stream, result = connectStream(server.port)
    node, session = result["node"], result["session"]
    refused = emulate(server.port, node, session, [{"id": 5, "subscribe": {"channel": "evil"}}], {"Origin": FOREIGN})
    assert refused.status == 403
    allowed = emulate(server.port, node, session, [{"id": 6, "subscribe": {"channel": "good"}}], {"Origin": ALLOWED})
    assert allowed.status == 204
    reply = stream.next()
    while reply == {}:  # a ping may come first
        reply = stream.next()
    assert reply["id"] == 6, reply
    stream.close()
    # Counted apart from the other outcomes of /emulation.
    response = request(server.port, "GET", "/metrics")
    metrics = response.body().decode()
    response.close()
    assert 'httpstream_emulation_requests_total{outcome="forbidden"}' in metrics


def test_refusedStreamOpensNoConnection(server: ServerProcess) -> None:
    # The connect of a refused stream never ran: the server's client count stays what it was.
    before = clients(server)
    for transport in TRANSPORTS[:3]:
        assertRefused(send(server.port, transport, FOREIGN))
    assert clients(server) == before


def clients(server: ServerProcess) -> int:
    response = request(server.port, "POST", "/api/info", b"{}", {"X-API-Key": API_KEY})
    assert response.status == 200, response.status
    body = orjson.loads(response.body())
    response.close()
    return sum(node["num_clients"] for node in body["result"]["nodes"])


@pytest.mark.parametrize("transport", TRANSPORTS + PREFLIGHTS)
@pytest.mark.parametrize("origin", [FOREIGN, "null"])
def test_starAdmitsEveryOrigin(anyOrigin: ServerProcess, transport: str, origin: str) -> None:
    assertServed(send(anyOrigin.port, transport, origin), transport, origin)


@pytest.mark.parametrize("transport", TRANSPORTS + PREFLIGHTS)
def test_emptyListAdmitsNoOriginAndThisHost(noOrigins: ServerProcess, transport: str) -> None:
    """
    C{[]}: requests without Origin, and pages of this very host (a browser sends Origin on a same-origin POST;
    Centrifugo serves it too, without CORS headers, which a same-origin page does not need).
    """
    assertServed(send(noOrigins.port, transport, None), transport, None)
    response = send(noOrigins.port, transport, f"http://127.0.0.1:{noOrigins.port}")
    assertServed(response, transport, None)
    # Another port is another origin; so is a look-alike host.
    assertRefused(send(noOrigins.port, transport, f"http://127.0.0.1:{noOrigins.port + 1}"))
    assertRefused(send(noOrigins.port, transport, f"http://127.0.0.1:{noOrigins.port}.evil.org"))
    assertRefused(send(noOrigins.port, transport, f"http://user@127.0.0.1:{noOrigins.port}"))
    assertRefused(send(noOrigins.port, transport, "null"))
    assertRefused(send(noOrigins.port, transport, FOREIGN))


def test_emptyOriginHeaderCountsAsNone(noOrigins: ServerProcess) -> None:
    # Go's Header.Get cannot tell "Origin:" from no header; neither can we.
    response = send(noOrigins.port, "http_stream", "")
    assertServed(response, "http_stream", None)


def test_streamStillWorksAfterRefusals(server: ServerProcess) -> None:
    stream = Stream(server.port, CONNECT, headers={"Origin": ALLOWED})
    assert "connect" in stream.next()
    stream.close()
