"""
The map subscription options (L{httpstream.config.mapoptions}): v6 nested C{map} objects, the flat v5 style, the
environment variables, and Centrifugo's checks between them, each refusal one line naming the key.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from httpstream.config import ConfigError, config_from_dict, read_config
from httpstream.config.v6 import v6Document

EPHEMERAL = {"subscription_type": "map", "map": {"mode": "ephemeral", "key_ttl": "60s"}}


class MapOptionsTests(SynchronousTestCase):
    def refused(self, document: dict[str, Any]) -> str:
        with self.assertRaises(ConfigError) as caught:
            config_from_dict(document)
        message = str(caught.exception)
        self.assertNotIn("\n", message)
        return message

    def test_v6Namespace(self) -> None:
        config, warnings = config_from_dict({"channel": {"namespaces": [{
            "name": "board", "subscription_type": "map", "map_clients_presence_channel_prefix": "who:",
            "client_publish_debounce_interval": "50ms",
            "map": {"mode": "persistent", "stream_size": 10, "stream_ttl": "30s", "client_key": "client_id",
                    "allow_publish_for_client": True, "allow_remove_for_subscriber": True,
                    "min_page_size": 2, "max_page_size": 5, "default_page_size": 3,
                    "subscribe_catch_up_timeout": "2s", "live_transition_max_publication_limit": 7},
        }]}})
        self.assertEqual(warnings, [])
        options = config.namespaces[0].options
        self.assertTrue(options.isMap)
        self.assertEqual(
            (options.map_mode, options.map_stream_size, options.map_stream_ttl, options.map_client_key,
             options.map_min_page_size, options.map_max_page_size, options.map_default_page_size,
             options.map_subscribe_catch_up_timeout, options.map_live_transition_max_publication_limit,
             options.client_publish_debounce_interval, options.map_clients_presence_channel_prefix),
            ("persistent", 10, 30.0, "client_id", 2, 5, 3, 2.0, 7, 0.05, "who:"))
        self.assertTrue(options.map_allow_publish_for_client and options.map_allow_remove_for_subscriber)

    def test_mapProxies(self) -> None:
        """v6 map.publish_proxy_* / map.remove_proxy_*: a proxy of proxies by name, required when enabled."""
        proxies = [{"name": "mp", "endpoint": "http://127.0.0.1:1/map"}]
        namespace = {"name": "board", "subscription_type": "map", "map": {
            "mode": "persistent", "publish_proxy_enabled": True, "publish_proxy_name": "mp",
            "remove_proxy_enabled": True, "remove_proxy_name": "mp"}}
        config, warnings = config_from_dict({"proxies": proxies, "channel": {"namespaces": [namespace]}})
        self.assertEqual(warnings, [])
        options = config.namespaces[0].options
        self.assertEqual((options.map_publish_proxy_enabled, options.map_publish_proxy_name,
                          options.map_remove_proxy_enabled, options.map_remove_proxy_name), (True, "mp", True, "mp"))
        namespace["map"]["remove_proxy_name"] = "nope"
        message = self.refused({"proxies": proxies, "channel": {"namespaces": [namespace]}})
        self.assertIn('"namespaces[0].map.remove_proxy_name"', message)
        self.assertIn("defined: mp", message)

    def test_v6WithoutNamespace(self) -> None:
        config, _ = config_from_dict({"channel": {"without_namespace": EPHEMERAL}})
        self.assertEqual((config.subscription_type, config.map_mode, config.map_key_ttl), ("map", "ephemeral", 60.0))

    def test_v5Flat(self) -> None:
        config, warnings = config_from_dict({
            "subscription_type": "map", "map_mode": "recoverable", "map_key_ttl": "10s",
            "namespaces": [{"name": "ns", "subscription_type": "map_clients", "map_mode": "ephemeral",
                            "map_key_ttl": "5s"}],
        })
        self.assertEqual(warnings, [])
        self.assertEqual((config.map_mode, config.namespaces[0].options.subscription_type),
                         ("recoverable", "map_clients"))

    def test_unknownMapKeyWarns(self) -> None:
        _, warnings = config_from_dict({"channel": {"namespaces": [
            {"name": "ns", **EPHEMERAL, "map": {"mode": "ephemeral", "key_ttl": "1s", "nope": 1}}]}})
        self.assertEqual(warnings, ['config key "channel.namespaces[0].map.nope" is unknown and was ignored'])

    def test_v6DocumentNests(self) -> None:
        document = v6Document({"map_mode": "persistent", "namespaces": [{"name": "x", "map_mode": "ephemeral"}]})
        self.assertEqual(document["channel"]["without_namespace"], {"map": {"mode": "persistent"}})
        self.assertEqual(document["channel"]["namespaces"][0]["map"], {"mode": "ephemeral"})

    def test_environment(self) -> None:
        path = self.mktemp()
        with open(path, "w") as f:
            json.dump({"channel": {"namespaces": [{"name": "board", **EPHEMERAL}]}}, f)
        loaded = read_config(path, {
            "CENTRIFUGO_CHANNEL_WITHOUT_NAMESPACE_SUBSCRIPTION_TYPE": "map",
            "CENTRIFUGO_CHANNEL_WITHOUT_NAMESPACE_MAP_MODE": "persistent",
            "CENTRIFUGO_CHANNEL_NAMESPACES_BOARD_MAP_KEY_TTL": "90s",
            "CENTRIFUGO_CHANNEL_NAMESPACES_BOARD_MAP_MAX_PAGE_SIZE": "4",
        })
        config = loaded.config
        self.assertEqual((config.subscription_type, config.map_mode), ("map", "persistent"))
        self.assertEqual((config.namespaces[0].options.map_key_ttl, config.namespaces[0].options.map_max_page_size),
                         (90.0, 4))

    def test_v5Environment(self) -> None:
        path = self.mktemp()
        with open(path, "w") as f:
            json.dump({}, f)
        config = read_config(path, {"CENTRIFUGO_SUBSCRIPTION_TYPE": "map", "CENTRIFUGO_MAP_MODE": "ephemeral",
                                    "CENTRIFUGO_MAP_KEY_TTL": "3s"}).config
        self.assertEqual((config.map_mode, config.map_key_ttl), ("ephemeral", 3.0))

    def test_modeRequired(self) -> None:
        self.assertIn('"channel.namespaces[0].map.mode" is required',
                      self.refused({"channel": {"namespaces": [{"name": "ns", "subscription_type": "map"}]}}))

    def test_unknownValues(self) -> None:
        self.assertIn("subscription_type", self.refused({"subscription_type": "maps"}))
        self.assertIn("map_mode", self.refused({"map_mode": "forever"}))
        self.assertIn("map_client_key", self.refused({"map_client_key": "ip"}))

    def test_keyTTLRules(self) -> None:
        self.assertIn("key_ttl", self.refused({"subscription_type": "map", "map_mode": "ephemeral"}))
        self.assertIn("never expire", self.refused({"subscription_type": "map", "map_mode": "persistent",
                                                     "map_key_ttl": "1s"}))
        self.assertIn('not allowed with subscription_type "map_clients"',
                      self.refused({"subscription_type": "map_clients", "map_mode": "persistent"}))

    def test_ephemeralHasNoStream(self) -> None:
        self.assertIn('"map.stream_size" must be 0', self.refused(
            {"channel": {"without_namespace": {**EPHEMERAL, "map": {"mode": "ephemeral", "key_ttl": "1s",
                                                                      "stream_size": 5}}}}))

    def test_metaTTLRules(self) -> None:
        recoverable = {"subscription_type": "map", "map_mode": "recoverable", "map_key_ttl": "30s"}
        self.assertIn('"map.meta_ttl" must be 0 when map.mode is "persistent"', self.refused(
            {"subscription_type": "map", "map_mode": "persistent", "map_meta_ttl": "1h"}))
        self.assertIn('"map.meta_ttl" (50s) must be at least "map.stream_ttl" (60s)', self.refused(
            {"channel": {"without_namespace": {"subscription_type": "map", "map": {
                "mode": "recoverable", "key_ttl": "30s", "meta_ttl": "50s"}}}}))
        self.assertIn("must be at least \"map.stream_ttl\" (100s)", self.refused(
            {**recoverable, "map_stream_ttl": "100s", "map_meta_ttl": "90s"}))
        self.assertIn("must be at least \"map.key_ttl\" (300s)", self.refused(
            {**recoverable, "map_key_ttl": "300s", "map_meta_ttl": "200s"}))
        config, _ = config_from_dict({**recoverable, "map_meta_ttl": "2m"})
        self.assertEqual(config.map_meta_ttl, 120.0)

    def test_pageSizes(self) -> None:
        self.assertIn("the minimum (5) is above the maximum (2)", self.refused(
            {"subscription_type": "map", "map_mode": "persistent", "map_min_page_size": 5, "map_max_page_size": 2}))


class DocumentationTests(SynchronousTestCase):
    def test_example(self) -> None:
        """docs/map-subscriptions.md's config loads without a warning."""
        import re
        from pathlib import Path

        text = (Path(__file__).parent.parent.parent / "docs" / "map-subscriptions.md").read_text(encoding="utf-8")
        match = re.search(r"```json\n(.*?)```", text, re.DOTALL)
        assert match is not None
        config, warnings = config_from_dict(json.loads(match.group(1)))
        self.assertEqual(warnings, [])
        self.assertEqual([(n.name, n.options.subscription_type) for n in config.namespaces],
                         [("board", "map"), ("room", "map"), ("online", "map_clients")])
