"""
Tests for Centrifugo's environment variables over the configuration file (L{httpstream.config.env}).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from httpstream.config import ConfigError, LoadedConfig, Namespace, load_config, read_config
from httpstream.config.env import envName, table
from httpstream.config.v6 import leaves


class EnvironmentTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="httpstream-test-configenv-")
        self.addCleanup(shutil.rmtree, self.directory)

    def load(self, document: dict[str, Any], environ: dict[str, str], name: str = "c.json") -> LoadedConfig:
        path = os.path.join(self.directory, name)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(document, f)
        return read_config(path, environ)

    def rejected(self, document: dict[str, Any], environ: dict[str, str], *fragments: str) -> str:
        with self.assertRaises(ConfigError) as raised:
            self.load(document, environ)
        message = str(raised.exception)
        self.assertNotIn("\n", message)
        for fragment in fragments:
            self.assertIn(fragment, message)
        return message


class OverrideTests(EnvironmentTests):
    """
    Both v6 (CENTRIFUGO_<PATH>) and v5 (CENTRIFUGO_<KEY>) names override the file, whichever names it uses.
    """

    def test_v6OverV5File(self) -> None:
        loaded = self.load({"port": 8001}, {"CENTRIFUGO_HTTP_SERVER_PORT": "8002"})
        self.assertEqual(loaded.config.port, 8002)
        self.assertEqual(loaded.env_applied, ("CENTRIFUGO_HTTP_SERVER_PORT",))

    def test_v5OverV6File(self) -> None:
        loaded = self.load({"http_server": {"port": 8001}}, {"CENTRIFUGO_PORT": "8003"})
        self.assertEqual(loaded.config.port, 8003)

    def test_withoutFileValue(self) -> None:
        loaded = self.load(
            {},
            {
                "CENTRIFUGO_CLIENT_TOKEN_HMAC_SECRET_KEY": "k" * 32,
                "CENTRIFUGO_HTTP_API_KEY": "api-key",
                "CENTRIFUGO_HTTP_STREAM_ENABLED": "true",
                "CENTRIFUGO_SSE": "1",
                "CENTRIFUGO_LOG_LEVEL": "debug",
                "CENTRIFUGO_CLIENT_PING_INTERVAL": "30s",
                "CENTRIFUGO_ENGINE_TYPE": "redis",
                "CENTRIFUGO_ENGINE_REDIS_ADDRESS": "redis://10.0.0.5:6379/1",
                "CENTRIFUGO_CHANNEL_WITHOUT_NAMESPACE_PRESENCE": "t",
                "CENTRIFUGO_ALLOW_SUBSCRIBE_FOR_CLIENT": "TRUE",
            },
        )
        config = loaded.config
        self.assertEqual(config.token_hmac_secret_key, "k" * 32)
        self.assertEqual(config.api_key, "api-key")
        self.assertTrue(config.http_stream and config.sse and config.presence and config.allow_subscribe_for_client)
        self.assertEqual((config.log_level, config.ping_interval), ("debug", 30.0))
        self.assertEqual((config.engine, config.redis_address), ("redis", "redis://10.0.0.5:6379/1"))
        self.assertEqual(len(loaded.env_applied), 10)
        self.assertEqual(loaded.unknown_env, ())

    def test_redisShardsAndCluster(self) -> None:
        """Addresses separated by spaces: shards (v6 and v5 names); Cluster seeds comma-separated within an entry."""
        for name in ("CENTRIFUGO_ENGINE_REDIS_ADDRESS", "CENTRIFUGO_REDIS_ADDRESS"):
            config = self.load({}, {name: "10.0.0.5:6379 redis://10.0.0.6:6379/1"}).config
            self.assertEqual(config.redis_address, "10.0.0.5:6379 redis://10.0.0.6:6379/1")
        for name in ("CENTRIFUGO_ENGINE_REDIS_CLUSTER_ADDRESS", "CENTRIFUGO_REDIS_CLUSTER_ADDRESS"):
            config = self.load({}, {name: "h1:7000,h2:7000 h3:7000"}).config
            self.assertEqual(config.redis_cluster_address, ("h1:7000,h2:7000", "h3:7000"))
        self.rejected({}, {"CENTRIFUGO_ENGINE_REDIS_CLUSTER_ADDRESS": "h1:x"}, "CENTRIFUGO_ENGINE_REDIS_CLUSTER_ADDRESS")

    def test_namesOnlyNeverValues(self) -> None:
        loaded = self.load({}, {"CENTRIFUGO_HTTP_API_KEY": "very-secret-api-key"})
        self.assertEqual(loaded.env_applied, ("CENTRIFUGO_HTTP_API_KEY",))
        self.assertNotIn("very-secret", repr(loaded))

    def test_emptyIsUnset(self) -> None:
        loaded = self.load({"port": 8001}, {"CENTRIFUGO_HTTP_SERVER_PORT": "", "CENTRIFUGO_PORT": ""})
        self.assertEqual(loaded.config.port, 8001)
        self.assertEqual((loaded.env_applied, loaded.unknown_env), ((), ()))

    def test_defaultIsProcessEnvironment(self) -> None:
        self.patch(os, "environ", {"CENTRIFUGO_HTTP_SERVER_PORT": "8004"})
        path = os.path.join(self.directory, "c.json")
        with open(path, "w") as f:
            f.write("{}")
        self.assertEqual(load_config(path)[0].port, 8004)

    def test_bothNamesForOneSetting(self) -> None:
        self.rejected(
            {}, {"CENTRIFUGO_PORT": "8001", "CENTRIFUGO_HTTP_SERVER_PORT": "8002"},
            '"CENTRIFUGO_HTTP_SERVER_PORT" and "CENTRIFUGO_PORT"', "environment variables",
        )

    def test_sameNameInV5AndV6(self) -> None:
        """
        Where v5's and v6's names coincide they are one variable (here websocket_message_size_limit).
        """
        self.assertEqual(table()["CENTRIFUGO_WEBSOCKET_MESSAGE_SIZE_LIMIT"], ("v6", "websocket.message_size_limit"))
        loaded = self.load({}, {"CENTRIFUGO_WEBSOCKET_MESSAGE_SIZE_LIMIT": "1024"})
        self.assertEqual(loaded.config.websocket_message_size_limit, 1024)

    def test_everyV6Leaf(self) -> None:
        """
        Every v6 path has its variable, named by Centrifugo's rule.
        """
        names = table()
        for leaf in leaves().values():
            if leaf.v6:
                name = "CENTRIFUGO_" + leaf.path.upper().replace(".", "_")
                self.assertEqual(envName(leaf.path), name)
                self.assertEqual(names[name], ("v6", leaf.path))


class TypeTests(EnvironmentTests):
    """
    Values are read as Centrifugo's envconfig reads them; an invalid one stops start-up naming the variable.
    """

    def test_bools(self) -> None:
        for text, value in [("1", True), ("t", True), ("True", True), ("0", False), ("F", False), ("false", False)]:
            self.assertEqual(self.load({"sse": not value}, {"CENTRIFUGO_SSE_ENABLED": text}).config.sse, value, text)
        self.rejected({}, {"CENTRIFUGO_SSE_ENABLED": "yes"}, "environment variable CENTRIFUGO_SSE_ENABLED", '"yes"')

    def test_ints(self) -> None:
        for text, value in [("8080", 8080), ("0x1f90", 8080), ("0o17620", 8080), ("017620", 8080), ("8_080", 8080)]:
            self.assertEqual(self.load({}, {"CENTRIFUGO_HTTP_SERVER_PORT": text}).config.port, value, text)
        self.rejected({}, {"CENTRIFUGO_HTTP_SERVER_PORT": "80a"}, "environment variable CENTRIFUGO_HTTP_SERVER_PORT")
        message = self.rejected({}, {"CENTRIFUGO_PORT": "70000"}, "environment variable CENTRIFUGO_PORT", "65535")
        self.assertNotIn("config key", message)

    def test_durations(self) -> None:
        self.assertEqual(self.load({}, {"CENTRIFUGO_CLIENT_PONG_TIMEOUT": "300ms"}).config.pong_timeout, 0.3)
        # Go's ParseDuration wants a unit: a bare number is refused, as by Centrifugo.
        self.rejected(
            {}, {"CENTRIFUGO_CLIENT_PONG_TIMEOUT": "5"}, "environment variable CENTRIFUGO_CLIENT_PONG_TIMEOUT",
            "missing unit",
        )

    def test_lists(self) -> None:
        loaded = self.load(
            {"allowed_origins": ["https://old.example"]},
            {"CENTRIFUGO_CLIENT_ALLOWED_ORIGINS": "https://a.example https://*.b.example"},
        )
        self.assertEqual(loaded.config.allowed_origins, ("https://a.example", "https://*.b.example"))
        loaded = self.load({}, {"CENTRIFUGO_ALLOWED_ORIGINS": "https://c.example"})
        self.assertEqual(loaded.config.allowed_origins, ("https://c.example",))
        self.rejected(
            {}, {"CENTRIFUGO_CLIENT_ALLOWED_ORIGINS": "https://[x"}, "environment variable CENTRIFUGO_CLIENT_ALLOWED_ORIGINS"
        )

    def test_choices(self) -> None:
        self.rejected({}, {"CENTRIFUGO_LOG_LEVEL": "loud"}, "environment variable CENTRIFUGO_LOG_LEVEL", '"loud"')

    def test_crossCheckStillApplies(self) -> None:
        self.rejected({}, {"CENTRIFUGO_CLIENT_PING_INTERVAL": "5s"}, "ping_interval", "pong_timeout")


class NamespaceEnvironmentTests(EnvironmentTests):
    """
    Namespaces as a JSON array (v6 and v5 names), as names, and one option by namespace name.
    """

    def test_jsonArrayReplaces(self) -> None:
        loaded = self.load(
            {"namespaces": [{"name": "old"}]},
            {"CENTRIFUGO_CHANNEL_NAMESPACES": '[{"name": "chat", "presence": true, "subscribe_proxy_enabled": true}]'},
        )
        self.assertEqual([n.name for n in loaded.config.namespaces], ["chat"])
        self.assertTrue(loaded.config.namespaces[0].options.presence)
        self.assertTrue(loaded.config.namespaces[0].options.proxy_subscribe)

    def test_v5JSON(self) -> None:
        loaded = self.load({}, {"CENTRIFUGO_NAMESPACES": '[{"name": "chat", "proxy_publish": true}]'})
        self.assertTrue(loaded.config.namespaces[0].options.proxy_publish)

    def test_namesAdd(self) -> None:
        loaded = self.load({"channel": {"namespaces": [{"name": "old"}]}}, {"CENTRIFUGO_CHANNEL_NAMESPACES": "a1 b2"})
        self.assertEqual([n.name for n in loaded.config.namespaces], ["old", "a1", "b2"])

    def test_badJSON(self) -> None:
        self.rejected({}, {"CENTRIFUGO_CHANNEL_NAMESPACES": "[{"}, "environment variable CENTRIFUGO_CHANNEL_NAMESPACES")
        self.rejected({}, {"CENTRIFUGO_NAMESPACES": "chat"}, "environment variable CENTRIFUGO_NAMESPACES")
        self.rejected(
            {}, {"CENTRIFUGO_CHANNEL_NAMESPACES": '[{"name": "chat", "presence": 1}]'},
            "environment variable CENTRIFUGO_CHANNEL_NAMESPACES", "[0].presence", "true or false",
        )

    def test_unknownKeyInJSON(self) -> None:
        loaded = self.load({}, {"CENTRIFUGO_CHANNEL_NAMESPACES": '[{"name": "chat", "presense": true}]'})
        self.assertEqual(
            loaded.unknown_env, ('config key "CENTRIFUGO_CHANNEL_NAMESPACES[0].presense" is unknown and was ignored',)
        )

    def test_optionByName(self) -> None:
        loaded = self.load(
            {"channel": {"namespaces": [{"name": "chat"}, {"name": "my-news.v2", "history_size": 5,
                                                          "history_ttl": "1m"}]}},
            {
                "CENTRIFUGO_CHANNEL_NAMESPACES_CHAT_PRESENCE": "true",
                "CENTRIFUGO_CHANNEL_NAMESPACES_CHAT_SUBSCRIBE_PROXY_ENABLED": "1",
                "CENTRIFUGO_CHANNEL_NAMESPACES_MY_NEWS_V2_HISTORY_TTL": "10m",
                "CENTRIFUGO_CHANNEL_NAMESPACES_MY_NEWS_V2_ALLOWED_DELTA_TYPES": "fossil",
            },
        )
        chat, news = loaded.config.namespaces
        self.assertTrue(chat.options.presence and chat.options.proxy_subscribe)
        self.assertEqual((news.options.history_ttl, news.options.allowed_delta_types), (600.0, ("fossil",)))
        self.assertEqual(len(loaded.env_applied), 4)
        self.assertEqual(loaded.unknown_env, ())

    def test_optionOfNamespaceFromEnvironment(self) -> None:
        """
        Per-namespace variables apply after the list is known, also when the list itself came from a variable.
        """
        loaded = self.load(
            {},
            {"CENTRIFUGO_CHANNEL_NAMESPACES": "chat", "CENTRIFUGO_CHANNEL_NAMESPACES_CHAT_JOIN_LEAVE": "true"},
        )
        self.assertEqual(loaded.config.namespaces[0].name, "chat")
        self.assertTrue(loaded.config.namespaces[0].options.join_leave)

    def test_optionByNameErrors(self) -> None:
        self.rejected(
            {"channel": {"namespaces": [{"name": "chat"}]}},
            {"CENTRIFUGO_CHANNEL_NAMESPACES_CHAT_HISTORY_SIZE": "ten"},
            "environment variable CENTRIFUGO_CHANNEL_NAMESPACES_CHAT_HISTORY_SIZE",
        )
        self.rejected(
            {"channel": {"namespaces": [{"name": "chat"}]}},
            {"CENTRIFUGO_CHANNEL_NAMESPACES_CHAT_SUBSCRIBE_PROXY_NAME": "other",
             "CENTRIFUGO_CHANNEL_NAMESPACES_CHAT_SUBSCRIBE_PROXY_ENABLED": "true"},
            '(namespace "chat")', 'proxy "other" is not in "proxies"',
        )

    def test_optionOfMissingNamespace(self) -> None:
        loaded = self.load({}, {"CENTRIFUGO_CHANNEL_NAMESPACES_CHAT_PRESENCE": "true"})
        self.assertEqual(loaded.config.namespaces, ())
        self.assertEqual(
            loaded.unknown_env,
            ("environment variable CENTRIFUGO_CHANNEL_NAMESPACES_CHAT_PRESENCE is unknown and was ignored",),
        )

    def test_fileNotChanged(self) -> None:
        """
        The per-namespace values do not leak into the document's leaves (a reload reads the file afresh).
        """
        loaded = self.load({"channel": {"namespaces": [{"name": "chat"}]}}, {})
        self.assertEqual(loaded.config.namespaces, (Namespace("chat"),))


class ProxyEnvironmentTests(EnvironmentTests):
    def test_v6Switch(self) -> None:
        loaded = self.load(
            {"client": {"proxy": {"connect": {"endpoint": "http://b/connect"}}}},
            {"CENTRIFUGO_CLIENT_PROXY_CONNECT_ENABLED": "true", "CENTRIFUGO_CLIENT_PROXY_CONNECT_HTTP_HEADERS": "Cookie"},
        )
        self.assertEqual(loaded.config.proxy_connect_endpoint, "http://b/connect")
        self.assertEqual(loaded.config.proxy_http_headers, ("Cookie",))

    def test_v5Endpoint(self) -> None:
        loaded = self.load({}, {"CENTRIFUGO_PROXY_RPC_ENDPOINT": "http://b/rpc"})
        self.assertEqual(loaded.config.proxy_rpc_endpoint, "http://b/rpc")


class UnknownVariableTests(EnvironmentTests):
    def test_warned(self) -> None:
        loaded = self.load(
            {},
            {
                "CENTRIFUGO_HTTP_SERVER_PROT": "1",
                "CENTRIFUGO_ADMIN_PASSWORD": "x",
                "HOME": "/root",
                "CENTRIFUGO": "x",
            },
        )
        self.assertEqual(
            loaded.unknown_env,
            (
                "environment variable CENTRIFUGO_ADMIN_PASSWORD is unknown and was ignored",
                "environment variable CENTRIFUGO_HTTP_SERVER_PROT is unknown and was ignored",
            ),
        )

    def test_notWarned(self) -> None:
        """
        As Centrifugo: Kubernetes' service variables and CENTRIFUGO_VAR_* get no warning.
        """
        loaded = self.load(
            {},
            {
                "CENTRIFUGO_SERVICE_HOST": "10.0.0.1",
                "CENTRIFUGO_PORT_8000_TCP_ADDR": "10.0.0.1",
                "CENTRIFUGO_INTERNAL_PORT": "tcp://10.0.0.1:9000",
                "CENTRIFUGO_VAR_TOKEN": "x",
            },
        )
        self.assertEqual((loaded.unknown_env, loaded.env_applied), ((), ()))

    def test_kubernetesLookalikeThatIsKnownIsApplied(self) -> None:
        loaded = self.load({}, {"CENTRIFUGO_HTTP_SERVER_PORT": "8005"})
        self.assertEqual(loaded.config.port, 8005)


class LoadConfigWarningTests(EnvironmentTests):
    def test_onlyKeyWarnings(self) -> None:
        """
        load_config's warnings are the file's unknown keys only (checkconfig --strict refuses those, as
        Centrifugo's, not unknown variables); read_config has the rest.
        """
        path = os.path.join(self.directory, "c.json")
        with open(path, "w") as f:
            f.write('{"x": 1}')
        config, warnings = load_config(path, {"CENTRIFUGO_Y": "1"})
        self.assertEqual(warnings, ['config key "x" is unknown and was ignored'])
        self.assertEqual(
            read_config(path, {"CENTRIFUGO_Y": "1"}).unknown_env,
            ("environment variable CENTRIFUGO_Y is unknown and was ignored",),
        )
