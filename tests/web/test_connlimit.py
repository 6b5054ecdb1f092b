"""
The node's connection limits at the connection endpoints (C{client_connection_limit},
C{client_connection_rate_limit}), over HTTP in memory: an empty 503 for every transport, before anything else looks
at the request, as Centrifugo's ConnLimit middleware answers; /emulation is not limited.
"""

from __future__ import annotations

import pytest

from httpstream.memoryserver import Response
from httpstream.testing import MemoryServer
from tests.web.helpers import MemoryWebSocket, connectStream, emulate, openStream, serve

CONNECT = b'{"id":1,"connect":{}}'
ALL_TRANSPORTS = {"sse": True, "http_stream": True, "prometheus": True}


def attempt(server: MemoryServer, transport: str) -> Response:
    """A request to C{transport}'s endpoint as an SDK makes it (its connection then closed): its response."""
    if transport == "websocket":
        ws = MemoryWebSocket(server)
        ws.close()
        return ws.connection.response
    if transport == "sse":
        connection = server.open("GET", "/connection/sse?cf_connect=" + CONNECT.decode())
    else:
        connection = server.open("POST", "/connection/http_stream", {"Content-Type": "application/json"}, CONNECT)
    connection.close()
    return connection.response


def refused(server: MemoryServer, transport: str) -> int:
    """The status of L{attempt}: 503 when refused; 101 or 200 when a connection opened."""
    return attempt(server, transport).status


@pytest.mark.parametrize("transport", ["websocket", "http_stream", "sse"])
def test_connectionLimitAnswers503(transport: str) -> None:
    """
    Past client_connection_limit a new connection gets an empty 503 on every transport, counted in
    httpstream_node_client_connection_limit; one closing frees a place.
    """
    with serve({**ALL_TRANSPORTS, "client_connection_limit": 2}) as server:
        first, _ = connectStream(server)
        second = MemoryWebSocket(server)
        assert second.status == 101
        response = attempt(server, transport)
        assert (response.status, response.body) == (503, b"")
        assert "access-control-allow-origin" not in response.headers
        assert "httpstream_node_client_connection_limit_total 1.0" in server.request("GET", "/metrics").body.decode()
        assert "node connection limit reached (2)" in server.logged
        second.close()
        assert refused(server, transport) in (101, 200)
        first.close()


def test_limitBeforeOriginAndMethod() -> None:
    """
    The limit is checked first, as Centrifugo's middleware runs before its handlers: a foreign origin, a preflight
    or a non-handshake request gets 503 too; a disabled endpoint stays a plain 404.
    """
    with serve({"http_stream": True, "client_connection_limit": 1}) as server:
        stream, _ = connectStream(server)
        assert server.request("POST", "/connection/http_stream", {"Origin": "https://evil.example"}).status == 503
        assert server.request("OPTIONS", "/connection/http_stream").status == 503
        assert server.request("GET", "/connection/websocket").status == 503
        assert server.request("GET", "/connection/sse").status == 404
        stream.close()
        assert server.request("GET", "/connection/websocket").status == 400


def test_emulationNotLimited() -> None:
    """
    /emulation opens no connection: an emulated client's commands still reach it while the node is full.
    """
    with serve({"http_stream": True, "client_connection_limit": 1}) as server:
        stream, result = connectStream(server)
        assert refused(server, "http_stream") == 503
        response = emulate(server, result["node"], result["session"], [{"id": 2, "rpc": {"method": "m"}}])
        assert response.status == 204
        stream.close()


def test_connectingCount() -> None:
    """
    A burst of handshakes that all arrive before any client has sent its connect gets exactly the limit's worth
    of connections; once they close, the same number is admitted again.
    """
    with serve({"client_connection_limit": 5}) as server:
        sockets = [MemoryWebSocket(server) for _ in range(8)]
        assert [ws.status for ws in sockets] == [101] * 5 + [503] * 3
        for ws in sockets:
            ws.close()
        assert server.node.clients == {}
        again = [MemoryWebSocket(server) for _ in range(6)]
        assert [ws.status for ws in again] == [101] * 5 + [503]
        for ws in again:
            ws.close()


@pytest.mark.parametrize("transport", ["websocket", "http_stream", "sse"])
def test_rateLimitAnswers503(transport: str) -> None:
    """
    client_connection_rate_limit: that many new connections a second; beyond it 503, counted; a second later
    the next ones are admitted.
    """
    with serve({**ALL_TRANSPORTS, "client_connection_rate_limit": 2}) as server:
        assert [refused(server, transport) for _ in range(3)][2] == 503
        metrics = server.request("GET", "/metrics").body.decode()
        assert "httpstream_node_client_connection_rate_limit_total 1.0" in metrics
        server.advance(1)
        assert refused(server, transport) != 503


def test_rateLimitAppliesAcrossTransports() -> None:
    """
    One bucket per node: requests to any connection endpoint draw from it; /emulation and the API do not.
    """
    with serve({**ALL_TRANSPORTS, "client_connection_rate_limit": 3}) as server:
        stream, result = connectStream(server)
        for _ in range(5):
            emulate(server, result["node"], result["session"], [{"id": 2, "rpc": {"method": "m"}}])
        assert refused(server, "websocket") == 101
        assert refused(server, "sse") == 200
        assert refused(server, "http_stream") == 503
        assert openStream(server, CONNECT).status == 503
        stream.close()


def test_unidirectionalEndpointsLimited() -> None:
    """
    The unidirectional endpoints open connections too: past the limit each gets the same empty 503; a disabled one
    stays a plain 404.
    """
    with serve({"http_stream": True, "uni_http_stream": True, "uni_sse": True, "uni_websocket": True,
                "client_connection_limit": 1}) as server:
        stream, _ = connectStream(server)
        for path in ("/connection/uni_http_stream", "/connection/uni_sse", "/connection/uni_websocket"):
            response = server.request("POST" if "http_stream" in path else "GET", path, body=b"{}")
            assert (response.status, response.body) == (503, b""), path
        stream.close()
        response = server.open("POST", "/connection/uni_http_stream", {}, b"{}")
        assert response.response.status == 200
        response.close()
    with serve({"http_stream": True, "client_connection_limit": 1}) as server:
        stream, _ = connectStream(server)
        assert server.request("GET", "/connection/uni_sse").status == 404
        stream.close()
