"""
Tests for L{httpstream.policy.proxy.routes} through L{ProxyClient}: each event reaches the proxy its namespace,
RPC namespace or event names, with that proxy's own timeout, headers, static headers and encoding (in memory).
"""

from __future__ import annotations

from typing import Any

from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from httpstream.config import Config
from httpstream.policy.proxy import ProxyClient, ProxyConnectRequest, ProxyError, ProxySubscribeRequest
from httpstream.policy.proxy.routes import rpcProxyName
from httpstream.protocol import codes
from tests.policy.test_proxy import Backend, context

PROXIES = [
    {"name": "chat", "endpoint": "http://chat.test/chat", "timeout": "5s", "http_headers": ["X-Chat"],
     "static_http_headers": {"X-Static": "chat", "X-Chat": "static"}, "binary_encoding": True},
    {"name": "billing", "endpoint": "http://billing.test/billing", "include_connection_meta": True},
]


def config(**changes: Any) -> Config:
    values: dict[str, Any] = {
        "proxies": PROXIES,
        "proxy_subscribe_endpoint": "http://own.test/subscribe",
        "proxy_rpc_endpoint": "http://own.test/rpc",
        "proxy_http_headers": ["X-Own"],
        "proxy_static_http_headers": {"X-Static": "own"},
    }
    values.update(changes)
    return Config(**values)


class RoutingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.backend = Backend({"result": {}})
        self.stub = StubTreq(self.backend)

    def proxy(self, **changes: Any) -> ProxyClient:
        return ProxyClient(config(**changes), self.clock, self.stub)

    def test_channelEventsByName(self) -> None:
        """A name picks its proxy; no name and "default" pick the event's own."""
        proxy = self.proxy()
        ctx = context(headers={"X-Chat": ["from-client"], "X-Own": ["own-header"]})
        for name, path in (("chat", "/chat"), ("", "/subscribe"), ("default", "/subscribe")):
            self.successResultOf(proxy.subscribe(ctx, "ch", ProxySubscribeRequest(), name))
            self.assertEqual(self.backend.last["path"], path)
        self.successResultOf(proxy.publish(ctx, "ch", b"{}", "billing"))
        self.assertEqual(self.backend.last["path"], "/billing")
        self.assertFalse(proxy.enabled("publish"))
        self.assertTrue(proxy.enabled("publish", "billing"))
        self.assertEqual(self.failureResultOf(proxy.publish(ctx, "ch", b"{}"), ProxyError).value.error,
                         codes.ERROR_NOT_AVAILABLE)

    def test_ownOptions(self) -> None:
        """
        Each proxy forwards its own header list, adds its own static headers (a forwarded header of the same name
        wins) and uses its own encoding.
        """
        proxy = self.proxy()
        ctx = context(headers={"X-Chat": ["from-client"], "X-Own": ["own-header"]})
        self.successResultOf(proxy.subscribe(ctx, "ch", ProxySubscribeRequest(data=b'{"a":1}'), "chat"))
        chat = self.backend.last
        self.assertEqual(chat["headers"].getRawHeaders(b"x-chat"), [b"from-client"])
        self.assertEqual(chat["headers"].getRawHeaders(b"x-static"), [b"chat"])
        self.assertIsNone(chat["headers"].getRawHeaders(b"x-own"))
        self.assertEqual((chat["body"]["encoding"], chat["body"]["b64data"]), ("binary", "eyJhIjoxfQ=="))
        self.successResultOf(proxy.subscribe(ctx, "ch", ProxySubscribeRequest(data=b'{"a":1}')))
        own = self.backend.last
        self.assertEqual(own["headers"].getRawHeaders(b"x-own"), [b"own-header"])
        self.assertEqual(own["headers"].getRawHeaders(b"x-static"), [b"own"])
        self.assertIsNone(own["headers"].getRawHeaders(b"x-chat"))
        self.assertEqual(own["body"]["data"], {"a": 1})

    def test_ownTimeout(self) -> None:
        self.backend.reply = None  # never answers
        proxy = self.proxy()
        d = proxy.subscribe(context(), "ch", ProxySubscribeRequest(), "chat")
        self.clock.advance(4.9)
        self.assertNoResult(d)
        self.clock.advance(0.2)
        self.assertEqual(self.failureResultOf(d, ProxyError).value.error, codes.ERROR_INTERNAL)

    def test_includeMeta(self) -> None:
        proxy = self.proxy()
        self.successResultOf(proxy.publish(context(meta=b'{"m":1}'), "ch", b"{}", "billing"))
        self.assertEqual(self.backend.last["body"]["meta"], {"m": 1})
        self.successResultOf(proxy.publish(context(meta=b'{"m":1}'), "ch", b"{}", "chat"))
        self.assertNotIn("meta", self.backend.last["body"])

    def test_connectAndRefreshNames(self) -> None:
        proxy = self.proxy(connect_proxy_name="chat", refresh_proxy_name="billing")
        self.assertTrue(proxy.enabled("connect"))
        self.successResultOf(proxy.connect(context(), ProxyConnectRequest()))
        self.assertEqual(self.backend.last["path"], "/chat")
        self.successResultOf(proxy.refresh(context()))
        self.assertEqual(self.backend.last["path"], "/billing")

    def test_headersForKeepsEveryProxysHeaders(self) -> None:
        headers = self.proxy().headersFor({"x-chat": "1", "x-own": "2", "x-none": "3"})
        self.assertEqual(headers, {"X-Chat": ["1"], "X-Own": ["2"]})


class RPCRouteTests(SynchronousTestCase):
    """Which proxy an RPC method reaches (Centrifugo's RPC handler)."""

    def test_withoutGranularMode(self) -> None:
        """v5 without granular mode: every method, namespaced or not, goes to rpc_proxy_name's proxy."""
        cfg = config(rpc_namespaces=[{"name": "billing", "rpc_proxy_name": "billing"}])
        self.assertEqual((rpcProxyName(cfg, "x"), rpcProxyName(cfg, "billing:x")), ("", ""))

    def test_granularMode(self) -> None:
        cfg = config(granular_proxy_mode=True, rpc_proxy_name="chat",
                     rpc_namespaces=[{"name": "billing", "rpc_proxy_name": "billing"}, {"name": "off"},
                                     {"name": "own", "rpc_proxy_name": "default"}])
        self.assertEqual(rpcProxyName(cfg, "send"), "chat")
        self.assertEqual(rpcProxyName(cfg, "billing:pay:now"), "billing")
        self.assertEqual(rpcProxyName(cfg, "own:x"), "default")
        self.assertEqual(rpcProxyName(cfg, "off:x"), codes.ERROR_NOT_AVAILABLE)
        self.assertEqual(rpcProxyName(cfg, "nope:x"), codes.ERROR_METHOD_NOT_FOUND)
        self.assertEqual(rpcProxyName(config(granular_proxy_mode=True), "send"), codes.ERROR_NOT_AVAILABLE)

    def test_proxyClient(self) -> None:
        backend = Backend({"result": {}})
        cfg = config(granular_proxy_mode=True, rpc_namespaces=[{"name": "billing", "rpc_proxy_name": "billing"}])
        proxy = ProxyClient(cfg, Clock(), StubTreq(backend))
        self.assertTrue(proxy.enabled("rpc"))
        self.successResultOf(proxy.rpc(context(), "billing:pay", b"{}"))
        self.assertEqual((backend.last["path"], backend.last["body"]["method"]), ("/billing", "billing:pay"))
        self.assertEqual(self.failureResultOf(proxy.rpc(context(), "pay", None), ProxyError).value.error,
                         codes.ERROR_NOT_AVAILABLE)
        self.assertEqual(self.failureResultOf(proxy.rpc(context(), "x:pay", None), ProxyError).value.error,
                         codes.ERROR_METHOD_NOT_FOUND)
        self.assertEqual(len(backend.requests), 1)
