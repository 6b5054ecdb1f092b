# -*- test-case-name: tests.web.test_metrics -*-
"""
Prometheus metrics of one node, named in the style of Centrifugo's (``centrifugo_node_num_clients``,
``centrifugo_client_command_duration_seconds``) with the prefix ``httpstream_``.

Each node has its own registry, so several nodes in one process (tests, embedding programs) do not collide.
Gauges are read from the node when scraped rather than kept up to date on every change, and so are the counters of
what the clients send (L{SentCounts}): those move once per message per connection, where a Prometheus counter's
C{labels(...).inc()} (a look-up and a lock) cost more than the rest of queueing the message.
"""

from __future__ import annotations

from typing import Any, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

PREFIX = "httpstream"
CONTENT_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


class _NodeCollector(Collector):
    """Connections by transport, users, channels and subscriptions, read from the node at scrape time."""

    def __init__(self, node: Any) -> None:
        self._node = node

    def collect(self) -> Iterator[GaugeMetricFamily]:
        node = self._node
        clients = GaugeMetricFamily(
            f"{PREFIX}_node_num_clients", "Connected clients by transport.", labels=["transport"]
        )
        byTransport: dict[str, int] = {}
        for client in list(node.clients.values()):
            name = client.transport.name
            byTransport[name] = byTransport.get(name, 0) + 1
        for name in ("websocket", "http_stream", "sse"):
            clients.add_metric([name], byTransport.get(name, 0))
        yield clients
        info = node.info()
        yield GaugeMetricFamily(f"{PREFIX}_node_num_users", "Distinct users connected.", value=info["num_users"])
        yield GaugeMetricFamily(f"{PREFIX}_node_num_channels", "Channels with subscribers.",
                                value=info["num_channels"])
        yield GaugeMetricFamily(f"{PREFIX}_node_num_subscriptions", "Subscriptions on this node.",
                                value=info["num_subs"])
        control = node.control
        yield GaugeMetricFamily(f"{PREFIX}_node_num_nodes", "Live nodes of the cluster, this one included.",
                                value=len(control.nodes()) if control is not None else 1)


class SentCounts:
    """What the clients of one transport have queued to send: plain integers, added to on the hot path."""

    __slots__ = ("messages", "bytes")

    def __init__(self) -> None:
        self.messages = 0
        self.bytes = 0


class _SentCollector(Collector):
    """C{httpstream_transport_messages_sent} and C{_bytes_sent} by transport, read from L{SentCounts} at scrape time."""

    def __init__(self, sent: dict[str, SentCounts]) -> None:
        self._sent = sent

    def collect(self) -> Iterator[CounterMetricFamily]:
        messages = CounterMetricFamily(
            f"{PREFIX}_transport_messages_sent", "Messages (replies and pushes) sent, by transport.",
            labels=["transport"],
        )
        sizes = CounterMetricFamily(
            f"{PREFIX}_transport_bytes_sent", "Message bytes written, by transport.", labels=["transport"]
        )
        for transport, counts in sorted(self._sent.items()):
            messages.add_metric([transport], counts.messages)
            sizes.add_metric([transport], counts.bytes)
        yield messages
        yield sizes


class _Labelled(Collector):
    """Every metric of C{registry}, each of its samples with C{labels} added (a worker's C{worker} and C{pid})."""

    def __init__(self, registry: CollectorRegistry, labels: dict[str, str]) -> None:
        self._registry = registry
        self._labels = labels

    def collect(self) -> Iterator[Metric]:
        for metric in self._registry.collect():
            labelled = Metric(metric.name, metric.documentation, metric.type, metric.unit)
            labelled.samples = [
                sample._replace(labels={**sample.labels, **self._labels}) for sample in metric.samples
            ]
            yield labelled


class _TagsFilterCollector(Collector):
    """C{httpstream_node_tags_filter_dropped_publications} by namespace, read from plain integers at scrape time."""

    def __init__(self, dropped: dict[str, int]) -> None:
        self._dropped = dropped

    def collect(self) -> Iterator[CounterMetricFamily]:
        dropped = CounterMetricFamily(
            f"{PREFIX}_node_tags_filter_dropped_publications",
            "Publications a subscriber's tags filter kept from it, by channel namespace.", labels=["channel_namespace"],
        )
        for namespace, count in sorted(self._dropped.items()):
            dropped.add_metric([namespace], count)
        yield dropped


class Metrics:
    """The counters and histograms the node's parts update."""

    def __init__(self, node: Any) -> None:
        self.registry = CollectorRegistry()
        self._children: dict[tuple[Any, tuple[str, ...]], Any] = {}
        self._exposed = self.registry
        r = self.registry
        self.commands = Counter(
            f"{PREFIX}_client_num_commands", "Client commands by method and result.", ["method", "result"],
            registry=r,
        )
        self.commandDuration = Histogram(
            f"{PREFIX}_client_command_duration_seconds", "Client command latency by method.", ["method"],
            registry=r, buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self._sent: dict[str, SentCounts] = {}
        r.register(_SentCollector(self._sent))
        self.messagesReceived = Counter(
            f"{PREFIX}_transport_messages_received", "Commands received, by transport.", ["transport"],
            registry=r,
        )
        self.emulation = Counter(
            f"{PREFIX}_emulation_requests",
            "POST /emulation requests by outcome (ok, no_session, unknown_node, bad_request, too_large, forbidden; "
            "in a cluster forwarded and forward_failed for sessions of other nodes).",
            ["outcome"], registry=r,
        )
        self.disconnects = Counter(
            f"{PREFIX}_client_num_disconnects", "Server-side disconnects by code.", ["code"], registry=r
        )
        self.overflows = Counter(
            f"{PREFIX}_client_queue_overflows", "Clients cut off with 3008 slow (queue over its limit).",
            registry=r,
        )
        # Centrifugo's centrifugo_node_client_connection_limit; the rate limit's is ours.
        self.connLimitReached = Counter(
            f"{PREFIX}_node_client_connection_limit",
            "Requests to connection endpoints refused (503) by client_connection_limit.", registry=r,
        )
        self.connRateLimited = Counter(
            f"{PREFIX}_node_client_connection_rate_limit",
            "Requests to connection endpoints refused (503) by client_connection_rate_limit.", registry=r,
        )
        self.apiCalls = Counter(
            f"{PREFIX}_api_num_requests", "Server API calls by method and result.", ["method", "result"],
            registry=r,
        )
        self.apiDuration = Histogram(
            f"{PREFIX}_api_command_duration_seconds", "Server API call latency by method.", ["method"], registry=r
        )
        r.register(_NodeCollector(node))
        self._tagsFilterDropped: dict[str, int] = {}
        r.register(_TagsFilterCollector(self._tagsFilterDropped))

    def child(self, metric: Any, *values: str) -> Any:
        """
        C{metric.labels(*values)}, looked up once: prometheus_client checks and joins the values on every call, a
        few microseconds each, and a command counts three of them.
        """
        key = (metric, values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def sent(self, transport: str) -> SentCounts:
        """The counts of what the clients of C{transport} send: a client takes them once and adds to them."""
        counts = self._sent.get(transport)
        if counts is None:
            counts = self._sent[transport] = SentCounts()
        return counts

    def labelAll(self, labels: dict[str, str]) -> None:
        """
        Add C{labels} to every sample exposed: each worker of C{--workers} serves its own metrics on the shared
        port, and its C{worker} label tells a scrape's answer from another worker's.
        """
        self._exposed = CollectorRegistry()
        self._exposed.register(_Labelled(self.registry, labels))

    def tagsFilterDropped(self, namespace: str, count: int) -> None:
        """C{count} subscribers of a channel in C{namespace} did not get a publication: their filters excluded it."""
        self._tagsFilterDropped[namespace] = self._tagsFilterDropped.get(namespace, 0) + count

    def exposition(self) -> bytes:
        """The text format a Prometheus scrape reads."""
        return generate_latest(self._exposed)
