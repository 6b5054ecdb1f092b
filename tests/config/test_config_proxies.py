"""
Tests for L{httpstream.config.proxies}: named proxies and RPC namespaces read from Centrifugo v5's keys
(C{granular_proxy_mode}, C{proxies}, C{*_proxy_name}, C{rpc_namespaces}) and v6's (C{proxies},
C{channel.namespaces[].*_proxy_name} with their switches, C{rpc.namespaces}, C{rpc.without_namespace}), the
environment, and the start-up errors.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from httpstream.config import ConfigError, config_from_dict
from httpstream.config.file import read_config
from httpstream.config.proxies import NamedProxy, RPCNamespace


def rejected(case: SynchronousTestCase, document: dict[str, Any], *fragments: str) -> None:
    with case.assertRaises(ConfigError) as raised:
        config_from_dict(document)
    message = str(raised.exception)
    case.assertNotIn("\n", message)
    for fragment in fragments:
        case.assertIn(fragment, message)


V5 = {
    "granular_proxy_mode": True,
    "proxies": [
        {"name": "chat-backend", "endpoint": "http://chat.test/subscribe", "timeout": "3s",
         "http_headers": ["Cookie"], "static_http_headers": {"X-Api-Key": "k1"}, "include_connection_meta": True},
        {"name": "rpc.backend", "endpoint": "https://rpc.test/rpc", "binary_encoding": True},
    ],
    "namespaces": [{"name": "chat", "subscribe_proxy_name": "chat-backend", "publish_proxy_name": "chat-backend"}],
    "rpc_proxy_name": "rpc.backend",
    "rpc_namespaces": [{"name": "billing", "rpc_proxy_name": "chat-backend"}, {"name": "off"}],
    "rpc_namespace_boundary": ".",
    "connect_proxy_name": "chat-backend",
    "proxy_static_http_headers": {"X-Global": "g"},
}


class V5Tests(SynchronousTestCase):
    def test_granularKeys(self) -> None:
        config, warnings = config_from_dict(V5)
        self.assertEqual(warnings, [])
        self.assertTrue(config.granular_proxy_mode)
        self.assertEqual(config.proxies[0], NamedProxy(
            "chat-backend", "http://chat.test/subscribe", 3.0, ("Cookie",), {"X-Api-Key": "k1"}, False, True,
        ))
        self.assertEqual((config.proxies[1].timeout, config.proxies[1].binary_encoding), (1.0, True))
        options = config.namespaces[0].options
        self.assertEqual((options.subscribe_proxy_name, options.publish_proxy_name, options.proxy_subscribe),
                         ("chat-backend", "chat-backend", False))
        self.assertEqual(config.rpc_namespaces, (RPCNamespace("billing", "chat-backend"), RPCNamespace("off", "")))
        self.assertEqual((config.rpc_proxy_name, config.rpc_namespace_boundary, config.connect_proxy_name),
                         ("rpc.backend", ".", "chat-backend"))
        self.assertEqual(dict(config.proxy_static_http_headers), {"X-Global": "g"})

    def test_ignoredKeysWarn(self) -> None:
        """gRPC and status transform keys are Centrifugo's but not httpstream's: a warning each, never silence."""
        _, warnings = config_from_dict({"proxies": [
            {"name": "pp", "endpoint": "http://x.test/", "grpc_metadata": ["a"], "typo": 1},
        ]})
        self.assertEqual(len(warnings), 2)
        self.assertIn('"proxies[0].grpc_metadata" is not supported', warnings[0])
        self.assertIn('"proxies[0].typo" is unknown', warnings[1])


class V6Tests(SynchronousTestCase):
    def test_namedProxies(self) -> None:
        config, warnings = config_from_dict({
            "proxies": [{"name": "chat-backend", "endpoint": "http://chat.test/",
                         "http": {"static_headers": {"X-Api-Key": "k"}}}],
            "channel": {
                "proxy": {"subscribe": {"endpoint": "http://default.test/subscribe"}},
                "without_namespace": {"subscribe_proxy_enabled": True, "subscribe_proxy_name": "chat-backend"},
                "namespaces": [
                    {"name": "chat", "subscribe_proxy_enabled": True, "subscribe_proxy_name": "chat-backend"},
                    {"name": "plain", "subscribe_proxy_enabled": True},
                    # v6: a name without its switch does nothing.
                    {"name": "off", "publish_proxy_name": "chat-backend"},
                ],
            },
        })
        self.assertEqual(warnings, [])
        self.assertEqual(dict(config.proxies[0].static_http_headers), {"X-Api-Key": "k"})
        self.assertEqual((config.proxy_subscribe, config.subscribe_proxy_name), (True, "chat-backend"))
        chat, plain, off = (n.options for n in config.namespaces)
        self.assertEqual((chat.proxy_subscribe, chat.subscribe_proxy_name), (True, "chat-backend"))
        self.assertEqual((plain.proxy_subscribe, plain.subscribe_proxy_name), (True, ""))
        self.assertEqual((off.proxy_publish, off.publish_proxy_name), (False, ""))
        self.assertFalse(config.granular_proxy_mode)

    def test_rpcNamespaces(self) -> None:
        """
        v6's RPC namespaces route methods by namespace (v5's granular mode); the rpc.proxy object serves the
        ones that keep the default name even while rpc.without_namespace is off.
        """
        config, _ = config_from_dict({
            "proxies": [{"name": "billing", "endpoint": "http://billing.test/rpc"}],
            "rpc": {
                "proxy": {"endpoint": "http://default.test/rpc"},
                "without_namespace": {"proxy_enabled": False},
                "namespaces": [
                    {"name": "billing", "proxy_enabled": True, "proxy_name": "billing"},
                    {"name": "chat", "proxy_enabled": True},
                    {"name": "off"},
                ],
                "namespace_boundary": "/",
            },
        })
        self.assertTrue(config.granular_proxy_mode)
        self.assertEqual(config.proxy_rpc_endpoint, "http://default.test/rpc")
        self.assertEqual(config.rpc_proxy_name, "")
        self.assertEqual(config.rpc_namespaces, (
            RPCNamespace("billing", "billing"), RPCNamespace("chat", "default"), RPCNamespace("off", ""),
        ))
        self.assertEqual(config.rpc_namespace_boundary, "/")

    def test_withoutNamespaceNamed(self) -> None:
        config, _ = config_from_dict({
            "proxies": [{"name": "rpc1", "endpoint": "http://rpc1.test/"}],
            "rpc": {"without_namespace": {"proxy_enabled": True, "proxy_name": "rpc1"}},
        })
        self.assertEqual((config.rpc_proxy_name, config.granular_proxy_mode), ("rpc1", False))

    def test_environment(self) -> None:
        directory = tempfile.TemporaryDirectory()
        self.addCleanup(directory.cleanup)
        path = os.path.join(directory.name, "config.json")
        with open(path, "w") as f:
            f.write("{}")
        loaded = read_config(path, environ={
            "CENTRIFUGO_PROXIES": '[{"name": "env-proxy", "endpoint": "http://env.test/"}]',
            "CENTRIFUGO_CHANNEL_NAMESPACES": '[{"name": "chat"}]',
            "CENTRIFUGO_CHANNEL_NAMESPACES_CHAT_PUBLISH_PROXY_ENABLED": "true",
            "CENTRIFUGO_CHANNEL_NAMESPACES_CHAT_PUBLISH_PROXY_NAME": "env-proxy",
            "CENTRIFUGO_RPC_NAMESPACES": '[{"name": "ns", "proxy_enabled": true, "proxy_name": "env-proxy"}]',
            "CENTRIFUGO_CHANNEL_PROXY_PUBLISH_HTTP_STATIC_HEADERS": '{"x-a": "1"}',
            "CENTRIFUGO_CHANNEL_PROXY_PUBLISH_ENDPOINT": "http://publish.test/",
        })
        config = loaded.config
        self.assertEqual(config.proxies[0].name, "env-proxy")
        self.assertEqual(config.namespaces[0].options.publish_proxy_name, "env-proxy")
        self.assertEqual(config.rpc_namespaces, (RPCNamespace("ns", "env-proxy"),))
        self.assertTrue(config.granular_proxy_mode)
        self.assertEqual(dict(config.proxy_static_http_headers), {"x-a": "1"})


class ErrorTests(SynchronousTestCase):
    """Each mistake stops start-up with one line that names the key."""

    def test_unknownName(self) -> None:
        rejected(self, {"namespaces": [{"name": "chat", "subscribe_proxy_name": "nope"}]},
                 'config key "namespaces[0].subscribe_proxy_name" (namespace "chat")',
                 'proxy "nope" is not in "proxies" (defined: none)')
        rejected(self, {"proxies": [{"name": "aa", "endpoint": "http://a.test/"}], "rpc_proxy_name": "bb"},
                 'config key "rpc_proxy_name"', '(defined: aa)')
        rejected(self, {"rpc_namespaces": [{"name": "ns", "rpc_proxy_name": "bb"}]},
                 '(RPC namespace "ns")')
        rejected(self, {"connect_proxy_name": "bb"}, 'config key "connect_proxy_name"')
        rejected(self, {"rpc": {"namespaces": [{"name": "ns", "proxy_enabled": True, "proxy_name": "zz"}]}},
                 'proxy "zz" is not in "proxies"')

    def test_badProxies(self) -> None:
        rejected(self, {"proxies": [{"endpoint": "http://a.test/"}]}, '"proxies[0].name" is missing')
        rejected(self, {"proxies": [{"name": "a", "endpoint": "http://a.test/"}]}, '"proxies[0].name"', "2 or more")
        rejected(self, {"proxies": [{"name": "default", "endpoint": "http://a.test/"}]}, "reserved")
        rejected(self, {"proxies": [{"name": "aa"}]}, '"proxies[0].endpoint"', "needs an endpoint")
        rejected(self, {"proxies": [{"name": "aa", "endpoint": "grpc://a.test:9000"}]}, "no gRPC proxies")
        rejected(self, {"proxies": [{"name": "aa", "endpoint": "http://a/"}, {"name": "aa", "endpoint": "http://b/"}]},
                 '"proxies[1].name"', "defined twice")
        rejected(self, {"proxies": [{"name": "aa", "endpoint": "http://a/", "static_http_headers": {"X": "a\r\nb"}}]},
                 '"proxies[0].static_http_headers.X"')
        rejected(self, {"proxies": "aa"}, 'config key "proxies"', "a list of proxy objects")

    def test_badRPCNamespaces(self) -> None:
        rejected(self, {"rpc_namespaces": [{"name": "x"}]}, '"rpc_namespaces[0].name"')
        rejected(self, {"rpc_namespaces": [{"name": "ns"}, {"name": "ns"}]}, "defined twice")
        rejected(self, {"rpc_namespaces": [{"name": "ns", "rpc_proxy_name": "", "proxy_enabled": True}]},
                 "not both")
