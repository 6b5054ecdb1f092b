"""
The routes of the Klein app that are not a transport, on the in-memory server: /health, /metrics, and what is not
a route.
"""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from httpstream.metrics import CONTENT_TYPE
from tests.web.helpers import connectStream, serve


def test_metricsOff() -> None:
    """Without prometheus there is no /metrics (404)."""
    with serve() as server:
        assert server.request("GET", "/metrics").status == 404


def test_metricsExposition() -> None:
    with serve({"prometheus": True}) as server:
        stream, _ = connectStream(server)
        response = server.request("GET", "/metrics")
        assert response.status == 200
        assert response.headers["content-type"].encode() == CONTENT_TYPE
        samples = {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(response.body.decode())
            for sample in family.samples
        }
        assert samples[("httpstream_node_num_clients", frozenset({("transport", "http_stream")}))] == 1
        assert server.request("HEAD", "/metrics").body == b""
        stream.close()


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_health(method: str) -> None:
    with serve({"health": True}) as server:
        response = server.request(method, "/health")
        assert response.status == 200
        assert response.headers["content-type"] == "application/json"
        assert response.body == (b"{}" if method == "GET" else b"")
        assert server.request("POST", "/health").status == 405


def test_healthOff() -> None:
    with serve() as server:
        assert server.request("GET", "/health").status == 404


def test_noServerBanner() -> None:
    with serve({"health": True}) as server:
        for path in ("/health", "/nothing", "/connection/http_stream"):
            assert "server" not in server.request("GET", path).headers
