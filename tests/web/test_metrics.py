"""
Prometheus metrics (``prometheus: true``): ``GET /metrics`` on a real server after traffic of every kind (JS SDK
clients on http_stream with their emulation POSTs, server API calls, emulation requests that are refused) shows
that traffic: connections by transport, API calls by method and result, emulation requests by outcome, client
commands and transport messages; and the node collector in memory (tests/web/test_routes.py has the
endpoint on and off on the in-memory server).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.task import Clock

from httpstream.metrics import CONTENT_TYPE
from httpstream.testing import FakeTransport, connectClient, encodeCommands, makeNode
from tests.serverprocess import ServerProcess
from tests.test_sdk_http_stream import SCRIPT as HTTP_STREAM_SCRIPT
from tests.test_sdk_http_stream import node, token  # noqa: F401  (node: a fixture)
from tests.test_sdk_websocket import ScenarioProcess

SUBSCRIBER = Path(__file__).parent.parent / "sdk" / "api_subscriber.mjs"
KEY = "metrics-test-key"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(server: ServerProcess) -> Samples:
    response = requests.get(f"{server.url}/metrics", timeout=5)
    assert response.status_code == 200
    assert response.headers["content-type"].encode() == CONTENT_TYPE
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value (0 when it is not there: a labelled counter appears once it is incremented)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def api(server: ServerProcess, method: str, body: dict[str, Any]) -> dict[str, Any]:
    response = requests.post(f"{server.url}/api/{method}", json=body, headers={"X-API-Key": KEY}, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def traffic(
    node: str, tmp_path_factory: pytest.TempPathFactory  # noqa: F811
) -> Iterator[tuple[ServerProcess, Samples]]:
    """
    One server and the traffic every test here looks at, scraped once at the end:

    * an SDK client of user "watcher" that stays connected over http_stream, subscribed to "metrics-live";
    * the SDK pubsub scenario (clients "a" and "b" connect, subscribe, "a" publishes; then both disconnect);
    * API calls: 3 publishes (one reaches the watcher), 1 publish to an unknown namespace, 2 info, 1 batch, and a
      disconnect of a user with no connections;
    * emulation POSTs refused: bad JSON, an unknown node, a known node with an unknown session, a body too large.
    """
    server = ServerProcess(
        tmp_path_factory.mktemp("metrics"), {"prometheus": True, "api_key": KEY, "health": True}, "metrics"
    )
    watcher = ScenarioProcess(
        [node, str(SUBSCRIBER), "--url", server.url, "--token", token({"sub": "watcher"}),
         "--channel", "metrics-live", "--who", "watcher"],
        server,
    )
    try:
        watcher.waitFor(lambda e: e["event"] == "ready")
        result = subprocess.run(
            [node, str(HTTP_STREAM_SCRIPT), "--url", server.url, "--protocol", "json", "--scenario", "pubsub",
             "--channel", "metrics-pubsub"],
            capture_output=True, text=True, timeout=30, check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr

        for n in range(3):
            assert "result" in api(server, "publish", {"channel": "metrics-live", "data": {"n": n}})
        watcher.waitFor(lambda e: e["event"] == "publication" and e["data"] == {"n": 2})
        assert api(server, "publish", {"channel": "nope:x", "data": 1})["error"]["code"] == 102
        nodeID = api(server, "info", {})["result"]["nodes"][0]["uid"]
        api(server, "info", {})
        api(server, "batch", {"commands": [{"info": {}}]})
        api(server, "disconnect", {"user": "nobody"})

        emulation = f"{server.url}/emulation"
        statuses = [
            requests.post(emulation, data=b"{not json", timeout=5).status_code,
            requests.post(emulation, json={"node": "no-such-node", "session": "s", "data": "{}"}, timeout=5)
            .status_code,
            requests.post(emulation, json={"node": nodeID, "session": "no-such-session", "data": "{}"}, timeout=5)
            .status_code,
            requests.post(emulation, data=b"x" * 70_000, timeout=5).status_code,
        ]
        assert statuses == [400, 404, 204, 413]
        # The pubsub clients' streams closed when their process ended; the server may take a moment to see it.
        deadline = time.monotonic() + 5
        samples = scrape(server)
        while value(samples, "httpstream_node_num_clients", transport="http_stream") > 1 and time.monotonic() < deadline:
            time.sleep(0.05)
            samples = scrape(server)
        yield server, samples
    finally:
        watcher.kill()
        server.stop()


def test_nodeGauges(traffic: tuple[ServerProcess, Samples]) -> None:
    """The connected watcher shows as one http_stream client, one user, its channel and subscription."""
    _, samples = traffic
    assert value(samples, "httpstream_node_num_clients", transport="http_stream") == 1
    assert value(samples, "httpstream_node_num_clients", transport="websocket") == 0
    assert value(samples, "httpstream_node_num_clients", transport="sse") == 0
    assert value(samples, "httpstream_node_num_users") == 1
    assert value(samples, "httpstream_node_num_channels") == 1
    assert value(samples, "httpstream_node_num_subscriptions") == 1


def test_apiCounters(traffic: tuple[ServerProcess, Samples]) -> None:
    """API calls by method and result ("ok" or the error code), with their durations."""
    _, samples = traffic
    calls = "httpstream_api_num_requests_total"
    assert value(samples, calls, method="publish", result="ok") == 3
    assert value(samples, calls, method="publish", result="102") == 1
    assert value(samples, calls, method="info", result="ok") == 2
    assert value(samples, calls, method="batch", result="ok") == 1
    assert value(samples, calls, method="disconnect", result="ok") == 1
    duration = "httpstream_api_command_duration_seconds"
    assert value(samples, f"{duration}_count", method="publish") == 4
    assert value(samples, f"{duration}_count", method="info") == 2
    assert value(samples, f"{duration}_sum", method="publish") > 0


def test_emulationCounters(traffic: tuple[ServerProcess, Samples]) -> None:
    """
    Each refused emulation POST under its outcome; the SDK clients' own POSTs (subscribe and publish commands
    going up) as "ok".
    """
    _, samples = traffic
    requests_ = "httpstream_emulation_requests_total"
    assert value(samples, requests_, outcome="bad_request") == 1
    assert value(samples, requests_, outcome="unknown_node") == 1
    assert value(samples, requests_, outcome="no_session") == 1
    assert value(samples, requests_, outcome="too_large") == 1
    # The watcher's subscribe, and a's and b's subscribes and a's publish at least (some may share a POST).
    assert value(samples, requests_, outcome="ok") >= 2


def test_clientCommandsAndMessages(traffic: tuple[ServerProcess, Samples]) -> None:
    """Client commands by method, and the messages each transport carried both ways."""
    _, samples = traffic
    commands = "httpstream_client_num_commands_total"
    assert value(samples, commands, method="subscribe", result="ok") == 3
    assert value(samples, commands, method="publish", result="ok") == 1
    assert value(samples, "httpstream_client_command_duration_seconds_count", method="subscribe") == 3
    sent = value(samples, "httpstream_transport_messages_sent_total", transport="http_stream")
    # At least: 3 connect replies, 3 subscribe replies, a publish reply, 2 + 3 publications delivered.
    assert sent >= 12
    assert value(samples, "httpstream_transport_bytes_sent_total", transport="http_stream") > sent
    # 3 connects, 3 subscribes, 1 publish (pongs too, if a ping came).
    assert value(samples, "httpstream_transport_messages_received_total", transport="http_stream") >= 7


def test_connectCommandsCounted(traffic: tuple[ServerProcess, Samples]) -> None:
    """Connect is a command like the others: three SDK clients connected."""
    _, samples = traffic
    assert value(samples, "httpstream_client_num_commands_total", method="connect", result="ok") == 3


# In memory


def test_commandErrorsCountedAsErrors() -> None:
    """A command answered with an error reply (publish to an unknown namespace: 102) does not count as "ok"."""
    clock = Clock()
    local = makeNode({"allow_anonymous_connect_without_token": True, "allow_publish_for_client": True}, clock)
    client, transport = connectClient(local)
    client.handleData(encodeCommands("json", [{"id": 2, "publish": {"channel": "nope:x", "data": b"1"}}]))
    clock.advance(0)
    assert transport.replies()[-1] == {"id": 2, "error": {"code": 102, "message": "unknown channel"}}
    samples = {
        sample.labels["result"]: sample.value
        for family in local.metrics.registry.collect() if family.name == "httpstream_client_num_commands"
        for sample in family.samples
        if sample.name.endswith("_total") and sample.labels["method"] == "publish"
    }
    assert samples.get("ok", 0) == 0 and sum(samples.values()) == 1, samples


def test_nodeCollectorInMemory() -> None:
    """The gauges read the node at scrape time: clients by transport, users, channels, subscriptions."""
    clock = Clock()
    local = makeNode(
        {"allow_anonymous_connect_without_token": True, "allow_subscribe_for_client": True,
         "allow_subscribe_for_anonymous": True},
        clock,
    )
    registry = local.metrics.registry
    assert registry.get_sample_value("httpstream_node_num_clients", {"transport": "http_stream"}) == 0
    clients = []
    for name in ("http_stream", "websocket", "websocket"):
        client, _ = connectClient(local, FakeTransport(name=name, emulated=name != "websocket"))
        client.handleData(encodeCommands("json", [{"id": 2, "subscribe": {"channel": "room"}}]))
        clients.append(client)
    clock.advance(0)
    assert registry.get_sample_value("httpstream_node_num_clients", {"transport": "http_stream"}) == 1
    assert registry.get_sample_value("httpstream_node_num_clients", {"transport": "websocket"}) == 2
    assert registry.get_sample_value("httpstream_node_num_users") == 1  # all anonymous: the user ""
    assert registry.get_sample_value("httpstream_node_num_channels") == 1
    assert registry.get_sample_value("httpstream_node_num_subscriptions") == 3
    clients[0].disconnect(3503, "force disconnect")
    assert registry.get_sample_value("httpstream_node_num_clients", {"transport": "http_stream"}) == 0
    assert registry.get_sample_value("httpstream_node_num_subscriptions") == 2
    assert registry.get_sample_value("httpstream_client_num_disconnects_total", {"code": "3503"}) == 1
    exposition = local.metrics.exposition().decode()
    assert 'httpstream_node_num_clients{transport="websocket"} 2.0' in exposition
