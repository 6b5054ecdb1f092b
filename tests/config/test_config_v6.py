"""
Tests for Centrifugo v6 configuration names (L{httpstream.config.v6}) and YAML/TOML files
(L{httpstream.config.file}).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from httpstream.config import Config, config_from_dict, ConfigError, Duration, load_config, Namespace, read_config
from httpstream.config.v6 import leaves, v6Document
from httpstream.config.v6names import V6_PATHS
from tests.config.test_config import rejected

TWINS = Path(__file__).with_name("configv6")


def nested(path: str, value: Any) -> dict[str, Any]:
    """C{{"a": {"b": value}}} for C{"a.b"}."""
    result: Any = value
    for part in reversed(path.split(".")):
        result = {part: result}
    return result  # type: ignore[no-any-return]


class TwinFileTests(SynchronousTestCase):
    """
    Each v6 file in tests/configv6 (written after the Centrifugo v6 documentation's examples) gives the same
    configuration as its v5 twin, and that configuration is not the default one.
    """

    def load(self, name: str) -> Config:
        config, warnings = load_config(TWINS / name, environ={})
        self.assertEqual(warnings, [], name)
        return config

    def assertTwins(self, stem: str) -> Config:
        v5 = self.load(f"{stem}.v5.json")
        self.assertNotEqual(v5, Config().withHostName())
        others = sorted(p.name for p in TWINS.glob(f"{stem}.v6.*"))
        self.assertTrue(others)
        for name in others:
            self.assertEqual(self.load(name), v5, name)
        return v5

    def test_everyFileHasATwin(self) -> None:
        stems = {p.name.split(".")[0] for p in TWINS.iterdir()}
        for stem in stems:
            self.assertTrue((TWINS / f"{stem}.v5.json").exists(), stem)
            self.assertTrue(list(TWINS.glob(f"{stem}.v6.*")), stem)

    def test_origins(self) -> None:
        config = self.assertTwins("origins")
        self.assertEqual(config.allowed_origins, ("https://example.com", "https://*.example.com"))

    def test_token(self) -> None:
        config = self.assertTwins("token")
        self.assertEqual(config.token_hmac_secret_key, "bbe7d157-a253-4094-9759-06a8236543f9-0123")
        self.assertEqual((config.token_audience, config.token_user_id_claim), ("centrifugo", "user_id"))
        self.assertTrue(config.allow_anonymous_connect_without_token)

    def test_apiKey(self) -> None:
        config = self.assertTwins("api")
        self.assertEqual((config.api_key, config.api_error_mode), ("d7627bb6-2292-4911-82e1-615c0ed3eebb", "transport"))

    def test_namespaces(self) -> None:
        config = self.assertTwins("namespaces")
        self.assertTrue(config.presence and config.allow_subscribe_for_client)
        self.assertEqual([n.name for n in config.namespaces], ["chat", "dialog"])
        chat = config.namespaces[0].options
        self.assertEqual((chat.history_size, chat.history_ttl, chat.force_recovery), (100, 600.0, True))
        self.assertEqual(config.namespaces[1].options.allowed_delta_types, ("fossil",))

    def test_redis(self) -> None:
        config = self.assertTwins("redis")
        self.assertEqual(config.engine, "redis")
        self.assertEqual(config.redis_address, "redis://127.0.0.1:6379/2")
        self.assertEqual((config.redis_prefix, config.redis_tls, config.global_presence_ttl), ("myapp", True, 30.0))

    def test_sentinel(self) -> None:
        config = self.assertTwins("sentinel")
        self.assertEqual(config.redis_sentinel_address, ("127.0.0.1:26379,127.0.0.1:26380,[::1]:26381",))
        self.assertEqual(
            (config.redis_sentinel_master_name, config.redis_sentinel_user, config.redis_sentinel_password),
            ("mymaster", "watcher", "sentinel-pass"),
        )
        self.assertTrue(config.redis_sentinel_tls)
        self.assertEqual(config.redis_password, "master-pass")

    def test_proxy(self) -> None:
        config = self.assertTwins("proxy")
        self.assertEqual(config.proxy_connect_endpoint, "http://backend:3000/centrifugo/connect")
        self.assertEqual(config.proxy_connect_timeout, 2.0)
        self.assertEqual(config.proxy_rpc_endpoint, "http://backend:3000/centrifugo/rpc")
        self.assertEqual(config.proxy_http_headers, ("Cookie", "Authorization"))
        self.assertTrue(config.proxy_include_connection_meta)
        self.assertTrue(config.namespaces[0].options.proxy_subscribe)

    def test_server(self) -> None:
        config = self.assertTwins("server")
        self.assertEqual((config.port, config.address, config.name), (8001, "127.0.0.1", "node-1"))
        self.assertTrue(config.http_stream and config.sse and config.health and config.prometheus)
        self.assertEqual(config.log_level, "debug")
        self.assertTrue(config.user_personal_single_connection)


# A value other than the default for each field the generic test sets, where "default + 1" or "not default" does
# not do; and the other keys (in v5 names) the value needs to be valid.
_VALUES: dict[str, Any] = {
    "log_level": "debug", "engine": "redis", "api_error_mode": "transport", "force_recovery_mode": "cache",
    "allowed_origins": ["https://*.example.com"], "allowed_delta_types": ["fossil"],
    "token_jwks_public_endpoint": "https://auth.example.com/jwks",
    "subscription_token_jwks_public_endpoint": "https://auth.example.com/jwks",
    "proxies": [{"name": "backend", "endpoint": "http://backend.test/"}], "rpc_namespaces": [{"name": "chat"}],
    "redis_cluster_address": ["10.0.0.1:7000,10.0.0.2:7000"],
    "subscription_type": "stream", "shared_poll_mode": "versioned",
}
_COMPANIONS: dict[str, dict[str, Any]] = {
    "history_size": {"history_ttl": "1m"},
    "history_ttl": {"history_size": 10},
    "force_recovery": {"history_size": 10, "history_ttl": "1m"},
    "user_personal_single_connection": {"presence": True},
    "rpc_namespaces": {"granular_proxy_mode": True},  # what v6's rpc.namespaces means
    "redis_sentinel_address": {"redis_sentinel_master_name": "mymaster"},
}
# The map options (tests.config.test_config_maps): valid in a recoverable map namespace.
_MAP = {"subscription_type": "map", "map_mode": "recoverable", "map_key_ttl": "1m"}
_VALUES.update({"subscription_type": "map_clients", "map_mode": "ephemeral", "map_client_key": "user_id",
                "map_key_ttl": "2m", "map_meta_ttl": "1h"})
_COMPANIONS.update({name: {k: v for k, v in _MAP.items() if k != name} for name in (
    "subscription_type", "map_mode", "map_key_ttl", "map_stream_size", "map_stream_ttl", "map_meta_ttl",
    "map_remove_client_on_unsubscribe")})
_COMPANIONS["map_mode"] = {"subscription_type": "map", "map_key_ttl": "1m"}
for _event in ("publish", "remove"):  # a map proxy names one of proxies
    _COMPANIONS[f"map_{_event}_proxy_enabled"] = {
        f"map_{_event}_proxy_name": "mp", "proxies": [{"name": "mp", "endpoint": "http://127.0.0.1:1/map"}]}


class EveryNameTests(SynchronousTestCase):
    """
    Every setting can be given under its v6 path, with the same effect as its v5 key.
    """

    def value(self, name: str) -> Any:
        if name in _VALUES:
            return _VALUES[name]
        default = Config.__dataclass_fields__[name].default
        if isinstance(default, bool):
            return not default
        if isinstance(default, int):
            return default + 1
        if isinstance(default, float):
            return f"{int(default) + 1}s"
        return "x"

    def test_everyField(self) -> None:
        checked = []
        for leaf in leaves().values():
            if leaf.field is None or not leaf.v6:
                continue
            value = self.value(leaf.field)
            companions = _COMPANIONS.get(leaf.field, {})
            v5, w5 = config_from_dict({leaf.field: value, **companions})
            v6, w6 = config_from_dict({**nested(leaf.path, value), **companions})
            self.assertEqual((w5, w6), ([], []), leaf.path)
            self.assertEqual(v6, v5, leaf.path)
            self.assertNotEqual(getattr(v6, leaf.field), Config.__dataclass_fields__[leaf.field].default, leaf.path)
            checked.append(leaf.field)
        self.assertIn("port", checked)
        self.assertIn("presence", checked)

    def test_everyFieldHasAnEntry(self) -> None:
        """
        A new field of Config needs its v6 path in httpstream.config.v6names.V6_PATHS (None when v6 has no such key).
        """
        options = {f.name for f in dataclasses.fields(ChannelOptionsType())}
        missing = sorted(f.name for f in dataclasses.fields(Config) if f.name not in V6_PATHS and f.name not in options)
        self.assertEqual(missing, [], "add these keys to httpstream/config/v6names.py V6_PATHS")

    def test_withoutV6Name(self) -> None:
        """
        Settings v6 has no name for keep their v5 key in a v6 file.
        """
        config, warnings = config_from_dict({"http_stream": {"enabled": True}, "demo": True, "redis_url": "h:1"})
        self.assertEqual(warnings, [])
        self.assertTrue(config.demo and config.http_stream)
        self.assertEqual(config.redis_url, "h:1")

    def test_sameNameBothShapes(self) -> None:
        """
        v5 "http_stream": true and v6 "http_stream": {"enabled": true} share a name; the value's shape decides.
        """
        self.assertTrue(config_from_dict({"http_stream": True})[0].http_stream)
        self.assertTrue(config_from_dict({"http_stream": {"enabled": True}})[0].http_stream)
        self.assertEqual(config_from_dict({"engine": {"type": "redis"}})[0].engine, "redis")
        self.assertEqual(config_from_dict({"engine": "redis"})[0].engine, "redis")
        self.assertTrue(config_from_dict({"health": {"enabled": True}, "prometheus": True})[0].health)


def ChannelOptionsType() -> Any:
    from httpstream.config import ChannelOptions

    return ChannelOptions


class MixingTests(SynchronousTestCase):
    """
    v5 and v6 names may be mixed in one file, but one setting given under both is an error naming both.
    """

    def test_differentSettings(self) -> None:
        config, warnings = config_from_dict({"port": 8001, "client": {"insecure": True}, "presence": True})
        self.assertEqual((config.port, config.client_insecure, config.presence, warnings), (8001, True, True, []))

    def test_sameSetting(self) -> None:
        rejected(self, {"port": 8001, "http_server": {"port": 8002}}, '"port" and "http_server.port"')
        rejected(
            self, {"token_hmac_secret_key": "a" * 32, "client": {"token": {"hmac_secret_key": "b" * 32}}},
            '"token_hmac_secret_key" and "client.token.hmac_secret_key"',
        )
        rejected(
            self, {"namespaces": [], "channel": {"namespaces": []}}, '"namespaces" and "channel.namespaces"'
        )
        rejected(
            self, {"presence": True, "channel": {"without_namespace": {"presence": False}}},
            '"presence" and "channel.without_namespace.presence"',
        )
        rejected(
            self, {"proxy_http_headers": ["Cookie"], "rpc": {"proxy": {"http_headers": ["Cookie"]}}},
            '"proxy_http_headers" and "rpc.proxy.http_headers"',
        )
        message = rejected(self, {"http_stream": True, "http_stream_max_request_body_size": 1,
                                  "sse": {"enabled": True}, "log_level": "debug", "log": {"level": "info"}})
        self.assertIn('"log_level" and "log.level"', message)


class UnknownKeyTests(SynchronousTestCase):
    """
    Unknown keys anywhere in a v6 document are warned about with their path (as Centrifugo's findUnknownKeys),
    including Centrifugo keys httpstream does not have.
    """

    def test_paths(self) -> None:
        _, warnings = config_from_dict(
            {
                "client": {"allowed_origin": ["x"], "token": {"jwks_public_endpoint2": "x"}},
                "channel": {"namespaces": [{"name": "chat", "presense": True}]},
                "engine": {"redis": {"sentinel_client_name": "x"}},
                "uni_grpc": {"enabled": True},
            }
        )
        self.assertEqual(
            sorted(warnings),
            sorted(
                [
                    'config key "client.allowed_origin" is unknown and was ignored',
                    'config key "client.token.jwks_public_endpoint2" is unknown and was ignored',
                    'config key "channel.namespaces[0].presense" is unknown and was ignored',
                    'config key "engine.redis.sentinel_client_name" is unknown and was ignored',
                    'config key "uni_grpc" is unknown and was ignored',
                ]
            ),
        )

    def test_v5NamesInsideV6Namespaces(self) -> None:
        """
        A namespace under channel.namespaces uses v6 option names: v5's proxy_subscribe is unknown there.
        """
        config, warnings = config_from_dict({"channel": {"namespaces": [{"name": "chat", "proxy_subscribe": True}]}})
        self.assertFalse(config.namespaces[0].options.proxy_subscribe)
        self.assertEqual(warnings, ['config key "channel.namespaces[0].proxy_subscribe" is unknown and was ignored'])

    def test_sectionNotAnObject(self) -> None:
        rejected(self, {"client": ["x"]}, 'config key "client": expected an object')
        rejected(self, {"client": {"token": "x"}}, 'config key "client.token": expected an object')


class V6ValueTests(SynchronousTestCase):
    """
    Errors about values given under v6 names name the v6 path.
    """

    def test_typeErrors(self) -> None:
        rejected(self, {"http_server": {"port": "8000"}}, 'config key "http_server.port": expected an integer')
        self.assertEqual(config_from_dict({"port": "8000"})[0].port, 8000)  # v5's string
        rejected(self, {"http_server": {"port": 70000}}, 'config key "http_server.port"', "from 0 to 65535")
        rejected(self, {"client": {"ping_interval": "5"}}, 'config key "client.ping_interval"', "missing unit")
        rejected(self, {"log": {"level": "loud"}}, 'config key "log.level"')
        rejected(self, {"client": {"allowed_origins": "x"}}, 'config key "client.allowed_origins"')

    def test_namespaceErrors(self) -> None:
        rejected(
            self, {"channel": {"namespaces": [{"name": "chat", "history_ttl": True}]}},
            'config key "channel.namespaces[0].history_ttl"',
        )
        rejected(
            self, {"channel": {"namespaces": [{"name": "chat", "history_size": 10}]}},
            '"channel.namespaces[0].history_size" and "channel.namespaces[0].history_ttl"',
        )
        rejected(self, {"channel": {"namespaces": [{"name": "x"}]}}, 'config key "channel.namespaces[0].name"')
        rejected(self, {"channel": {"namespaces": {"chat": {}}}}, 'config key "channel.namespaces"')

    def test_namespaceProxySwitches(self) -> None:
        config, _ = config_from_dict(
            {
                "channel": {
                    "without_namespace": {"publish_proxy_enabled": True, "publish_proxy_name": "default"},
                    "namespaces": [{"name": "chat", "sub_refresh_proxy_enabled": True, "subscribe_proxy_name": "default",
                                    "publish_proxy_name": ""}],
                }
            }
        )
        self.assertTrue(config.proxy_publish)
        self.assertEqual(config.namespaces, (Namespace("chat", dataclasses.replace(
            config.namespaces[0].options, proxy_sub_refresh=True)),))
        self.assertTrue(config.namespaces[0].options.proxy_sub_refresh)

    def test_unknownNamedProxyRefused(self) -> None:
        """
        A namespace that names a proxy missing from C{proxies} would reach no backend: the server does not start.
        """
        rejected(
            self,
            {"channel": {"namespaces": [{"name": "chat", "subscribe_proxy_enabled": True,
                                         "subscribe_proxy_name": "mine"}]}},
            'config key "namespaces[0].subscribe_proxy_name" (namespace "chat")', 'proxy "mine" is not in "proxies"',
        )


class ProxyTests(SynchronousTestCase):
    """
    v6 proxies: connect, refresh and RPC need their switch; the per-proxy options must agree where httpstream
    has one global value.
    """

    def test_switchOff(self) -> None:
        config, _ = config_from_dict({"client": {"proxy": {"connect": {"endpoint": "http://b/connect"}}}})
        self.assertEqual(config.proxy_connect_endpoint, "")
        config, _ = config_from_dict({"rpc": {"proxy": {"endpoint": "http://b/rpc"}}})
        self.assertEqual(config.proxy_rpc_endpoint, "")

    def test_switchOn(self) -> None:
        config, _ = config_from_dict(
            {
                "client": {"proxy": {"refresh": {"enabled": True, "endpoint": "http://b/refresh", "timeout": "3s"}}},
                "rpc": {"proxy": {"endpoint": "http://b/rpc"}, "without_namespace": {"proxy_enabled": True}},
            }
        )
        self.assertEqual((config.proxy_refresh_endpoint, config.proxy_refresh_timeout), ("http://b/refresh", 3.0))
        self.assertEqual(config.proxy_rpc_endpoint, "http://b/rpc")

    def test_enabledWithoutEndpoint(self) -> None:
        rejected(
            self, {"client": {"proxy": {"connect": {"enabled": True}}}},
            'config key "client.proxy.connect.enabled"', '"client.proxy.connect.endpoint" is empty',
        )

    def test_optionsDiffer(self) -> None:
        rejected(
            self,
            {
                "client": {"proxy": {"connect": {"enabled": True, "endpoint": "http://b/c", "binary_encoding": True}}},
                "channel": {"proxy": {"publish": {"endpoint": "http://b/p"}}},
            },
            '"client.proxy.connect.binary_encoding" and "channel.proxy.publish.binary_encoding" differ',
        )

    def test_optionsOfUnusedProxiesIgnored(self) -> None:
        config, _ = config_from_dict(
            {
                "client": {"proxy": {"connect": {"enabled": True, "endpoint": "http://b/c", "http_headers": ["Cookie"]}}},
                "channel": {"proxy": {"publish": {"http_headers": ["X-Other"]}}},
            }
        )
        self.assertEqual(config.proxy_http_headers, ("Cookie",))


class RedisAddressTests(SynchronousTestCase):
    def test_listOfOne(self) -> None:
        config, _ = config_from_dict({"engine": {"redis": {"address": ["10.0.0.1:6380"]}}})
        self.assertEqual(config.redis_address, "10.0.0.1:6380")

    def test_v5List(self) -> None:
        config, _ = config_from_dict({"redis_address": ["10.0.0.1:6380"]})
        self.assertEqual(config.redis_address, "10.0.0.1:6380")

    def test_shards(self) -> None:
        """Several addresses are shards: a v6 list, a v5 list, or a v5 string separated by spaces (Go's string slice)."""
        for document in (
            {"engine": {"redis": {"address": ["a:1", "redis://b:2/0"]}}},
            {"redis_address": ["a:1", "redis://b:2/0"]},
            {"redis_address": "a:1  redis://b:2/0"},
        ):
            config, warnings = config_from_dict(document)
            self.assertEqual((config.redis_address, warnings), ("a:1 redis://b:2/0", []), document)
        self.assertEqual(v6Document({"redis_address": "a:1 b:2"})["engine"]["redis"]["address"], ["a:1", "b:2"])

    def test_badShardNamed(self) -> None:
        message = rejected(self, {"redis_address": "a:1 redis://:secret@b:0"}, '"redis_address"')
        self.assertNotIn("secret", message)
        rejected(self, {"redis_address": "  "}, '"redis_address"')

    def test_cluster(self) -> None:
        """engine.redis.cluster_address (v6) and redis_cluster_address (v5): one entry per cluster, seeds by commas."""
        for document in (
            {"engine": {"redis": {"cluster_address": ["h1:7000,h2:7000", "h3:7000"]}}},
            {"redis_cluster_address": ["h1:7000,h2:7000", "h3:7000"]},
        ):
            config, warnings = config_from_dict(document)
            self.assertEqual((config.redis_cluster_address, warnings), (("h1:7000,h2:7000", "h3:7000"), []))

    def test_clusterRefused(self) -> None:
        rejected(self, {"redis_cluster_address": ["h1:7000,"]}, '"redis_cluster_address"', "comma-separated")
        rejected(self, {"redis_cluster_address": ["h1:0"]}, '"redis_cluster_address"')
        rejected(self, {"redis_cluster_address": "h1:7000"}, '"redis_cluster_address"', "wrong type")
        rejected(self, {"redis_cluster_address": ["h1:7000"], "redis_db": 1}, '"redis_db"', "only database 0")

    def test_clusterRefusedWithoutItsPassword(self) -> None:
        """A refused cluster entry or seed is shown without the password a URL (or a bare user:password@) holds."""
        for entry in ("redis://:s3cret@h1:7000,", "redis://u:s3/cret@h1:7000,,h2:7000", "u:s3cret@h1:7000",
                      "h1:7000,redis://:s3cret@h2:0"):
            for document in ({"redis_cluster_address": [entry]}, {"engine": {"redis": {"cluster_address": [entry]}}}):
                message = rejected(self, document, "cluster_address")
                self.assertNotIn("s3", message)
                self.assertIn("...@h", message)
        message = rejected(self, {"redis_sentinel_address": ["redis://:s3cret@s1:26379"]}, "redis_sentinel_address")
        self.assertNotIn("s3cret", message)

    def test_invalid(self) -> None:
        message = rejected(self, {"engine": {"redis": {"address": ["redis://:secret@h:0"]}}}, '"engine.redis.address"')
        self.assertNotIn("secret", message)


class FileFormatTests(SynchronousTestCase):
    """
    YAML and TOML files by extension; errors are one line, as for JSON.
    """

    def setUp(self) -> None:
        self.directory = tempfile.mkdtemp(prefix="httpstream-test-configv6-")
        self.addCleanup(shutil.rmtree, self.directory)

    def write(self, name: str, content: str) -> str:
        path = os.path.join(self.directory, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(content)
        return path

    def assertParseError(self, path: str, *fragments: str) -> None:
        with self.assertRaises(ConfigError) as raised:
            load_config(path, environ={})
        message = str(raised.exception)
        self.assertNotIn("\n", message)
        for fragment in ("cannot parse config file", *fragments):
            self.assertIn(fragment, message)

    def test_yaml(self) -> None:
        for name in ("c.yaml", "c.yml", "C.YAML"):
            config, warnings = load_config(self.write(name, "http_server:\n  port: 8123\nsse:\n  enabled: yes\n"), {})
            self.assertEqual((config.port, config.sse, warnings), (8123, True, []))

    def test_toml(self) -> None:
        config, warnings = load_config(self.write("c.toml", 'port = 8124\n[client]\nallowed_origins = ["*"]\n'), {})
        self.assertEqual((config.port, config.allowed_origins, warnings), (8124, ("*",), []))

    def test_yamlErrors(self) -> None:
        self.assertParseError(self.write("bad.yaml", "a: [1,\nb: 2\n"), "line")
        self.assertParseError(self.write("tab.yml", "a:\n\tb: 1\n"), "line 2")

    def test_tomlErrors(self) -> None:
        self.assertParseError(self.write("bad.toml", "port = \n"), "line 1")
        with open(os.path.join(self.directory, "latin.toml"), "wb") as f:
            f.write(b'name = "\xe9"\n')
        self.assertParseError(os.path.join(self.directory, "latin.toml"), "not UTF-8")

    def test_notAMapping(self) -> None:
        for name, content in [("empty.yaml", ""), ("list.yaml", "- 1\n"), ("str.yml", "port\n")]:
            with self.assertRaises(ConfigError) as raised:
                load_config(self.write(name, content), {})
            self.assertIn("must hold a YAML mapping", str(raised.exception))

    def test_yamlValueTypes(self) -> None:
        """
        A YAML value of the wrong type (here a date) is refused naming the key, like a JSON one.
        """
        with self.assertRaises(ConfigError) as raised:
            load_config(self.write("c.yaml", "node:\n  name: 2024-01-01\n"), {})
        self.assertIn('config key "node.name": expected a string', str(raised.exception))

    def test_yamlEmptySection(self) -> None:
        config, warnings = load_config(self.write("c.yaml", "client:\nhttp_server:\n  port: 8127\n"), {})
        self.assertEqual((config.port, warnings), (8127, []))

    def test_yamlNonStringKey(self) -> None:
        _, warnings = load_config(self.write("c.yaml", "1: x\nclient:\n  2: y\n"), {})
        self.assertEqual(
            warnings,
            ['config key "1" is unknown and was ignored', 'config key "client.2" is unknown and was ignored'],
        )

    def test_unknownExtensionIsJSON(self) -> None:
        config, _ = load_config(self.write("config.conf", '{"port": 8125}'), {})
        self.assertEqual(config.port, 8125)
        self.assertParseError(self.write("c.cfg", "port: 1"), "line 1")

    def test_readConfigSeparatesWarnings(self) -> None:
        loaded = read_config(self.write("c.json", '{"x": 1}'), {"CENTRIFUGO_Y": "1", "CENTRIFUGO_PORT": "8126"})
        self.assertEqual(loaded.unknown_keys, ('config key "x" is unknown and was ignored',))
        self.assertEqual(loaded.unknown_env, ("environment variable CENTRIFUGO_Y is unknown and was ignored",))
        self.assertEqual(loaded.env_applied, ("CENTRIFUGO_PORT",))
        self.assertEqual(loaded.warnings, [*loaded.unknown_keys, *loaded.unknown_env])
        self.assertEqual(loaded.config.port, 8126)


class DurationKindTests(SynchronousTestCase):
    def test_durationsAreLeavesOfKindDuration(self) -> None:
        self.assertIs(leaves()["client.ping_interval"].kind, Duration)
        self.assertIs(leaves()["http_server.port"].kind, int)
        self.assertIs(leaves()["client.allowed_origins"].kind, tuple)


def documentationRows() -> list[str]:
    """
    The rows docs/configuration.md's v6 table must have, one per field of L{Config}: v5 key, v6 path(s),
    environment variables (v6 first, then v5's when it differs).
    """
    from httpstream.config.env import envName, v5EnvName
    from httpstream.config.v6 import v5Paths
    from httpstream.config.v6names import PROXY_SHARED, RPC_PROXY_NAME

    # v5 keys whose v6 twin is read differently (a v6 proxy name counts only with its switch): two leaves.
    V6_TWINS = {
        "subscribe_proxy_name": "channel.without_namespace.subscribe_proxy_name",
        "publish_proxy_name": "channel.without_namespace.publish_proxy_name",
        "sub_refresh_proxy_name": "channel.without_namespace.sub_refresh_proxy_name",
        "rpc_proxy_name": RPC_PROXY_NAME,
    }

    rows = []
    for f in dataclasses.fields(Config):
        if f.name in PROXY_SHARED:
            option = PROXY_SHARED[f.name]
            paths, names = [f"<proxy>.{option}"], [f"CENTRIFUGO_<PROXY>_{option.upper().replace('.', '_')}"]
        elif f.name in V6_TWINS:
            paths = [V6_TWINS[f.name]]
            names = [envName(p) for p in paths]
        else:
            paths = [p for p in v5Paths(f.name) if leaves()[p].v6]
            names = [envName(p) for p in paths]
        if v5EnvName(f.name) not in names:
            names.append(v5EnvName(f.name))
        v6 = " + ".join(f"`{p}`" for p in paths) or "none"
        rows.append(f"| `{f.name}` | {v6} | " + ", ".join(f"`{n}`" for n in names) + " |")
    return rows


class DocumentationTests(SynchronousTestCase):
    """
    docs/configuration.md lists every key's v6 name and environment variables, as the code reads them.
    """

    def test_v6Table(self) -> None:
        text = (Path(__file__).parent.parent.parent / "docs" / "configuration.md").read_text(encoding="utf-8")
        section = text.split("## Centrifugo v6 names and environment variables", 1)[1].split("\n## ", 1)[0]
        documented = {line for line in section.splitlines() if line.startswith("| `")}
        expected = documentationRows()
        missing = [row for row in expected if row not in documented]
        self.assertEqual(missing, [], "add (or correct) these rows in docs/configuration.md:\n" + "\n".join(missing))
        self.assertEqual(sorted(documented - set(expected)), [], "docs/configuration.md has rows for no key")

    def test_v6Example(self) -> None:
        import re

        import yaml

        text = (Path(__file__).parent.parent.parent / "docs" / "configuration.md").read_text(encoding="utf-8")
        match = re.search(r"```yaml\n(.*?)```", text, re.DOTALL)
        assert match is not None
        config, warnings = config_from_dict(yaml.safe_load(match.group(1)))
        self.assertEqual(warnings, [])
        self.assertEqual((config.engine, config.api_key, config.http_stream), ("redis", "change-me-too", True))
        self.assertEqual([n.name for n in config.namespaces], ["chat"])


class EmbeddedTests(SynchronousTestCase):
    def test_namespaceValuesInDict(self) -> None:
        """
        config_from_dict (makeService's dict) still takes Namespace values, under either name.
        """
        for document in ({"namespaces": [Namespace("chat")]}, {"channel": {"namespaces": [Namespace("chat")]}}):
            config, warnings = config_from_dict(document)
            self.assertEqual((config.namespaces, warnings), ((Namespace("chat"),), []))


class V6DocumentTests(SynchronousTestCase):
    """
    L{v6Document} writes a v5 document with v6 names, and the result reads back to the same configuration.
    """

    def test_twins(self) -> None:
        import json

        from httpstream.config.v6 import v6Document

        for path in sorted(TWINS.glob("*.v5.json")):
            document = json.loads(path.read_text())
            converted = v6Document(document)
            self.assertEqual(config_from_dict(converted), config_from_dict(document), path.name)
            self.assertTrue(set(converted) & {"client", "channel", "http_api", "engine", "http_server"}, path.name)

    def test_shapes(self) -> None:
        from httpstream.config.v6 import v6Document

        converted = v6Document(
            {"port": 8000, "proxy_connect_endpoint": "http://b/c", "proxy_http_headers": ["Cookie"], "demo": True,
             "redis_address": "h:1", "presence": True, "namespaces": [{"name": "chat", "proxy_publish": True}],
             "unknown": 1}
        )
        self.assertEqual(converted["http_server"], {"port": 8000})
        self.assertEqual(converted["client"]["proxy"]["connect"], {"endpoint": "http://b/c", "enabled": True,
                                                                    "http_headers": ["Cookie"]})
        self.assertEqual(converted["rpc"]["proxy"], {"http_headers": ["Cookie"]})
        self.assertEqual(converted["engine"]["redis"]["address"], ["h:1"])
        self.assertEqual(converted["channel"]["without_namespace"], {"presence": True})
        self.assertEqual(converted["channel"]["namespaces"], [{"name": "chat", "publish_proxy_enabled": True}])
        self.assertTrue(converted["demo"])
        self.assertNotIn("unknown", converted)
