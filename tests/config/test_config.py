"""
Tests for L{httpstream.config} and L{httpstream.config.durations}.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import socket
import tempfile
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from httpstream.config.mapoptions import MapChannelOptions
from httpstream.config import ChannelOptions, Config, config_from_dict, ConfigError, load_config, Namespace
from httpstream.config.durations import parse_duration

_EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "config.example.json")
_DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "docs", "configuration.md")


class DurationTests(SynchronousTestCase):
    """
    L{parse_duration} reads Go's C{time.ParseDuration} syntax into seconds.
    """

    def test_valid(self) -> None:
        table = [
            ("25s", 25.0),
            ("1m", 60.0),
            ("1h30m", 5400.0),
            ("1h", 3600.0),
            ("500ms", 0.5),
            ("1.5s", 1.5),
            (".5s", 0.5),
            ("5.s", 5.0),
            ("100us", 0.0001),
            ("100\u00b5s", 0.0001),
            ("100\u03bcs", 0.0001),
            ("1500ns", 0.0000015),
            ("0", 0.0),
            ("-0", 0.0),
            ("0s", 0.0),
            ("-1s", -1.0),
            ("+2s", 2.0),
            ("1m0.5s", 60.5),
            ("2h45m30s", 9930.0),
        ]
        for text, seconds in table:
            self.assertAlmostEqual(parse_duration(text), seconds, places=12, msg=text)

    def test_invalid(self) -> None:
        for text in ["", "-", "25", "1", "s", ".s", "25x", "25 s", " 25s", "1.5.5s", "1e3s", "1S", "٣s", "1h-30m"]:
            with self.assertRaises(ValueError, msg=repr(text)):
                parse_duration(text)

    def test_outOfRange(self) -> None:
        """
        Like Go's int64 nanoseconds, durations stop at about 292 years.
        """
        self.assertAlmostEqual(parse_duration("2562047h"), 2562047 * 3600.0)
        with self.assertRaises(ValueError):
            parse_duration("2562048h")


class DefaultsTests(SynchronousTestCase):
    """
    C{Config()} holds Centrifugo's defaults.
    """

    def test_defaults(self) -> None:
        expected: dict[str, Any] = {
            "port": 8000,
            "address": "",
            "name": "",
            "tls": False,
            "tls_cert": "",
            "tls_key": "",
            "tls_cert_pem": "",
            "tls_key_pem": "",
            "http_server_read_header_timeout": 10.0,
            "http_server_read_timeout": 30.0,
            "http_server_idle_timeout": 30.0,
            "http_stream": False,
            "http_stream_max_request_body_size": 65536,
            "emulation_max_request_body_size": 65536,
            "sse": False,
            "sse_max_request_body_size": 65536,
            "websocket_disable": False,
            "websocket_message_size_limit": 65536,
            "websocket_write_batch_size": 65536,
            "uni_http_stream": False,
            "uni_http_stream_max_request_body_size": 65536,
            "uni_sse": False,
            "uni_sse_max_request_body_size": 65536,
            "uni_websocket": False,
            "uni_websocket_message_size_limit": 65536,
            "websocket_compression": False,
            "websocket_compression_level": 1,
            "websocket_compression_min_size": 0,
            "websocket_decompressed_message_size_limit": 0,
            "demo": False,
            "demo_sdk_dir": "web/node_modules/centrifuge/dist",
            "allowed_origins": (),
            "ping_interval": 25.0,
            "pong_timeout": 8.0,
            "client_stale_close_delay": 10.0,
            "client_expired_close_delay": 25.0,
            "client_queue_max_size": 1048576,
            "client_channel_limit": 128,
            "channel_max_length": 255,
            "client_insecure": False,
            "allow_anonymous_connect_without_token": False,
            "token_hmac_secret_key": "",
            "allow_subscribe_for_client": False,
            "allow_subscribe_for_anonymous": False,
            "allow_publish_for_client": False,
            "allow_publish_for_subscriber": False,
            "allow_publish_for_anonymous": False,
            "presence": False,
            "join_leave": False,
            "force_push_join_leave": False,
            "history_size": 0,
            "history_ttl": 0.0,
            "history_meta_ttl": 0.0,
            "force_positioning": False,
            "allow_positioning": False,
            "force_recovery": False,
            "allow_recovery": False,
            "force_recovery_mode": "stream",
            "allowed_delta_types": (),
            "delta_publish": False,
            "allow_tags_filter": False,
            "allow_presence_for_client": False,
            "allow_presence_for_subscriber": False,
            "allow_presence_for_anonymous": False,
            "allow_history_for_client": False,
            "allow_history_for_subscriber": False,
            "allow_history_for_anonymous": False,
            "allow_user_limited_channels": False,
            "channel_regex": "",
            "proxy_subscribe": False,
            "proxy_publish": False,
            "proxy_sub_refresh": False,
            "subscribe_proxy_name": "",
            "publish_proxy_name": "",
            "sub_refresh_proxy_name": "",
            "subscription_type": "",
            "shared_poll_proxy_name": "",
            "shared_poll_mode": "",
            "shared_poll_refresh_interval": 0.0,
            "shared_poll_refresh_batch_size": 0,
            "shared_poll_max_keys_per_connection": 0,
            "shared_poll_track_expired_extra_delay": 0.0,
            "shared_poll_publish_enabled": False,
            "shared_poll_hmac_secret_key": "",
            "shared_poll_hmac_previous_secret_key": "",
            "shared_poll_hmac_previous_secret_key_valid_until": 0,
            "namespaces": (),
            "client_expired_sub_close_delay": 25.0,
            "client_presence_update_interval": 27.0,
            "client_channel_position_check_delay": 40.0,
            "client_user_connection_limit": 0,
            "client_connection_limit": 0,
            "client_connection_rate_limit": 0,
            "client_concurrency": 0,
            "client_history_max_publication_limit": 300,
            "client_recovery_max_publication_limit": 300,
            "channel_private_prefix": "$",
            "channel_namespace_boundary": ":",
            "channel_user_boundary": "#",
            "channel_user_separator": ",",
            "global_history_meta_ttl": 2592000.0,
            "user_subscribe_to_personal": False,
            "user_personal_channel_namespace": "",
            "user_personal_single_connection": False,
            "disallow_anonymous_connection_tokens": False,
            "token_rsa_public_key": "",
            "token_ecdsa_public_key": "",
            "token_audience": "",
            "token_audience_regex": "",
            "token_issuer": "",
            "token_issuer_regex": "",
            "token_user_id_claim": "sub",
            "token_jwks_public_endpoint": "",
            "token_insecure_skip_jwks_endpoint_safety_check": False,
            "separate_subscription_token_config": False,
            "subscription_token_hmac_secret_key": "",
            "subscription_token_rsa_public_key": "",
            "subscription_token_ecdsa_public_key": "",
            "subscription_token_jwks_public_endpoint": "",
            "subscription_token_insecure_skip_jwks_endpoint_safety_check": False,
            "subscription_token_audience": "",
            "subscription_token_audience_regex": "",
            "subscription_token_issuer": "",
            "subscription_token_issuer_regex": "",
            "subscription_token_user_id_claim": "sub",
            "proxy_connect_endpoint": "",
            "proxy_connect_timeout": 1.0,
            "proxy_refresh_endpoint": "",
            "proxy_refresh_timeout": 1.0,
            "proxy_rpc_endpoint": "",
            "proxy_rpc_timeout": 1.0,
            "proxy_publish_endpoint": "",
            "proxy_publish_timeout": 1.0,
            "proxy_subscribe_endpoint": "",
            "proxy_subscribe_timeout": 1.0,
            "proxy_sub_refresh_endpoint": "",
            "proxy_sub_refresh_timeout": 1.0,
            "proxy_http_headers": (),
            "proxy_static_http_headers": {},
            "granular_proxy_mode": False,
            "proxies": (),
            "connect_proxy_name": "",
            "refresh_proxy_name": "",
            "rpc_proxy_name": "",
            "rpc_namespaces": (),
            "rpc_namespace_boundary": ":",
            "api_key": "",
            "api_insecure": False,
            "api_disable": False,
            "api_error_mode": "",
            "health": False,
            "prometheus": False,
            "proxy_binary_encoding": False,
            "proxy_include_connection_meta": False,
            "log_level": "info",
            "shutdown_timeout": 30.0,
            "engine": "memory",
            "workers": 1,
            "redis_address": "127.0.0.1:6379",
            "redis_cluster_address": (),
            "redis_url": "",
            "redis_prefix": "httpstream",
            "redis_db": 0,
            "redis_user": "",
            "redis_password": "",
            "redis_tls": False,
            "redis_sentinel_address": (),
            "redis_sentinel_master_name": "",
            "redis_sentinel_user": "",
            "redis_sentinel_password": "",
            "redis_sentinel_tls": False,
            "global_presence_ttl": 60.0,
        }
        # The map subscription options (tests.config.test_config_maps): off.
        expected.update({f.name: f.default for f in dataclasses.fields(MapChannelOptions)})
        self.assertEqual(dataclasses.asdict(Config()), expected)

    def test_emptyDict(self) -> None:
        """
        An empty document gives the defaults, with the hostname as node name.
        """
        config, warnings = config_from_dict({})
        self.assertEqual(warnings, [])
        self.assertEqual(config, dataclasses.replace(Config(), name=socket.gethostname()))

    def test_nameKept(self) -> None:
        config, _ = config_from_dict({"name": "node-1"})
        self.assertEqual(config.name, "node-1")

    def test_frozen(self) -> None:
        with self.assertRaises(dataclasses.FrozenInstanceError):
            Config().port = 1  # type: ignore[misc]

    def test_secretNotInRepr(self) -> None:
        config = Config(token_hmac_secret_key="very-secret-value-0123456789abcdef")
        self.assertNotIn("very-secret", repr(config))


class ValueTests(SynchronousTestCase):
    """
    Each kind of key accepts only values of its type and range, and an error
    names the key.
    """

    def assertRejected(self, key: str, value: Any, *fragments: str) -> str:
        with self.assertRaises(ConfigError, msg=f"{key}={value!r}") as raised:
            config_from_dict({key: value})
        message = str(raised.exception)
        self.assertIn(f'config key "{key}"', message)
        self.assertNotIn("\n", message)
        for fragment in fragments:
            self.assertIn(fragment, message)
        return message

    def assertAccepted(self, key: str, value: Any, stored: Any) -> None:
        config, warnings = config_from_dict({key: value})
        self.assertEqual(warnings, [])
        self.assertEqual(getattr(config, key), stored, f"{key}={value!r}")

    def test_bool(self) -> None:
        for key in ["http_stream", "client_insecure", "allow_publish_for_client"]:
            self.assertAccepted(key, True, True)
            self.assertAccepted(key, False, False)
            for bad in [1, 0, "true", None, []]:
                self.assertRejected(key, bad, "expected true or false")
        # An object is v6's section of the same name (http_stream.enabled), not a bad bool.
        self.assertRejected("client_insecure", {}, "expected true or false")

    def test_int(self) -> None:
        self.assertAccepted("client_channel_limit", 0, 0)
        self.assertAccepted("client_queue_max_size", 10, 10)
        for bad in [True, 1.0, 1.5, "10", None, [10]]:
            self.assertRejected("client_channel_limit", bad, "expected an integer")

    def test_sizesNotNegative(self) -> None:
        for key in [
            "http_stream_max_request_body_size",
            "emulation_max_request_body_size",
            "client_queue_max_size",
            "client_channel_limit",
            "channel_max_length",
        ]:
            self.assertAccepted(key, 0, 0)
            self.assertRejected(key, -1, "expected an integer >= 0, got -1")

    def test_port(self) -> None:
        self.assertAccepted("port", 0, 0)
        self.assertAccepted("port", 65535, 65535)
        self.assertRejected("port", 65536, "from 0 to 65535", "got 65536")
        self.assertRejected("port", -1, "from 0 to 65535")
        # Centrifugo v5's port was a string; v6's http_server.port is an integer.
        self.assertAccepted("port", "8000", 8000)
        self.assertRejected("port", "80a", "expected an integer", 'got "80a"')
        self.assertRejected("port", "70000", "from 0 to 65535")

    def test_str(self) -> None:
        self.assertAccepted("address", "127.0.0.1", "127.0.0.1")
        self.assertAccepted("token_hmac_secret_key", "s" * 32, "s" * 32)
        for bad in [1, None, True, ["a"]]:
            self.assertRejected("address", bad, "expected a string")

    def test_allowedOrigins(self) -> None:
        self.assertAccepted("allowed_origins", [], ())
        self.assertAccepted("allowed_origins", ["*"], ("*",))
        self.assertAccepted("allowed_origins", ["https://A.example.com", "http://*"], ("https://A.example.com", "http://*"))
        for bad in ["*", [1], ["a", None], {"a": 1}, None]:
            self.assertRejected("allowed_origins", bad, "expected a list of strings")

    def test_allowedOriginsBadPattern(self) -> None:
        self.assertRejected("allowed_origins", ["https://ok", "https://[a"], "invalid pattern", '"https://[a"')

    def test_logLevel(self) -> None:
        for level in ["debug", "info", "warn", "warning", "error", "none"]:
            self.assertAccepted("log_level", level, level)
        self.assertRejected("log_level", "verbose", 'expected one of "debug"', 'got "verbose"')
        self.assertRejected("log_level", 3, "expected a string")

    def test_engine(self) -> None:
        self.assertAccepted("engine", "memory", "memory")
        self.assertAccepted("engine", "redis", "redis")
        self.assertRejected("engine", "nats", 'expected one of "memory", "redis"', 'got "nats"')

    def test_redisAddress(self) -> None:
        """
        host:port or a redis:// / rediss:// URL (redis_url, the older name, too); a bad one is refused without
        showing the password it holds.
        """
        for key in ("redis_address", "redis_url"):
            for good in ("127.0.0.1:6379", "redis.internal", "[::1]:6380", "redis://:pw@host:6379/2",
                         "rediss://user:pw@host"):
                self.assertAccepted(key, good, good)
            for bad in ("host:0", "host:99999", "http://host", "redis://:s3cret@host:6379/x"):
                message = self.assertRejected(key, bad, "host:port or a URL")
                self.assertNotIn("s3cret", message)
        self.assertAccepted("redis_url", "", "")

    def test_sentinelAddress(self) -> None:
        """
        A list of entries, each one master's Sentinels comma-separated (a string is one entry); the port may be
        left out. Only one entry (one master), and with a master name.
        """
        for good in ("s1:26379", "s1:26379,s2:26380", "s1, [::1]:26379"):
            self.assertEqual(
                Config(redis_sentinel_address=[good], redis_sentinel_master_name="m").redis_sentinel_address, (good,)
            )
            self.assertEqual(
                Config(redis_sentinel_address=good, redis_sentinel_master_name="m").redis_sentinel_address, (good,)
            )
        for bad in ("s1:0", "s1:26379,,s2:1", "redis://s1:26379", "s1:x"):
            self.assertRejected("redis_sentinel_address", [bad], "Sentinel addresses host:port")
        self.assertRejected("redis_sentinel_address", 26379, "a list of strings")
        with self.assertRaises(ConfigError) as raised:
            Config(redis_sentinel_address=["s1:1"])
        self.assertEqual(
            str(raised.exception),
            'config key "redis_sentinel_master_name": required with "redis_sentinel_address" (the name the '
            "Sentinels monitor the master under)",
        )
        with self.assertRaises(ConfigError) as raised:
            Config(redis_sentinel_address=["s1:1", "s2:1"], redis_sentinel_master_name="m")
        self.assertIn("one Redis master (no sharding), got 2 entries", str(raised.exception))
        for topology in ({"redis_cluster_address": ["c1:7000"]}, {"redis_address": "r1:6379 r2:6379"}):
            with self.assertRaises(ConfigError) as raised:
                Config(redis_sentinel_address=["s1:1"], redis_sentinel_master_name="m", **topology)
            self.assertIn("Sentinel finds one master; it does not combine with", str(raised.exception))

    def test_redisURLWins(self) -> None:
        from twisted.internet.testing import MemoryReactor

        from httpstream.engines.redis import RedisShard

        config, _ = config_from_dict({"redis_address": "a:1", "redis_url": "redis://b:2/3"})
        address = RedisShard.fromConfig(MemoryReactor(), config).address
        self.assertEqual((address.host, address.port, address.db), ("b", 2, 3))
        config, _ = config_from_dict({"redis_address": "a:1"})
        self.assertEqual(RedisShard.fromConfig(MemoryReactor(), config).address.host, "a")

    def test_durations(self) -> None:
        for key in [
            "ping_interval",
            "client_stale_close_delay",
            "client_expired_close_delay",
        ]:
            self.assertAccepted(key, "30s", 30.0)
            self.assertAccepted(key, "1m", 60.0)
            self.assertAccepted(key, 30, 30.0)
            self.assertAccepted(key, 30.5, 30.5)
            self.assertAccepted(key, "1h30m", 5400.0)
            for bad in [True, None, [1], {}]:
                self.assertRejected(key, bad, 'expected a duration such as "25s" or a number of seconds')

    def test_durationExampleMessage(self) -> None:
        message = self.assertRejected("ping_interval", [1])
        self.assertEqual(
            message,
            'config key "ping_interval": expected a duration such as "25s" or a number of seconds, got [1]',
        )

    def test_durationBadString(self) -> None:
        self.assertRejected("pong_timeout", "8", 'got "8"', "missing unit")
        self.assertRejected("pong_timeout", "8x", 'got "8x"', "unknown unit")

    def test_durationOutOfRange(self) -> None:
        self.assertRejected("client_stale_close_delay", 1e30, "out of range")

    def test_delaysNotNegative(self) -> None:
        self.assertAccepted("client_stale_close_delay", 0, 0.0)
        self.assertAccepted("client_expired_close_delay", "0", 0.0)
        self.assertRejected("client_stale_close_delay", "-1s", "expected a duration >= 0", 'got "-1s"')
        self.assertRejected("ping_interval", 0, "greater than 0")

    def test_pingPongDisable(self) -> None:
        """
        -1 (a number or a duration string) turns pings or pong checks off.
        """
        for key in ["ping_interval", "pong_timeout"]:
            for value in [-1, -1.0, "-1s", "-1000ms"]:
                self.assertAccepted(key, value, -1.0)
            for bad in [0, "0s", -2, "-0.5s"]:
                self.assertRejected(key, bad, "greater than 0 (or -1 to disable)")

    def test_nullIsNotDefault(self) -> None:
        self.assertRejected("port", None, "got null")


class PingPongRelationTests(SynchronousTestCase):
    """
    Unless one is disabled, ping_interval must exceed pong_timeout.
    """

    def test_intervalAboveTimeout(self) -> None:
        config, _ = config_from_dict({"ping_interval": "10s", "pong_timeout": "9s"})
        self.assertEqual((config.ping_interval, config.pong_timeout), (10.0, 9.0))

    def test_intervalNotAboveTimeout(self) -> None:
        for interval, timeout in [("10s", "10s"), ("5s", "8s"), (8, 8)]:
            with self.assertRaises(ConfigError) as raised:
                config_from_dict({"ping_interval": interval, "pong_timeout": timeout})
            message = str(raised.exception)
            self.assertIn('"ping_interval"', message)
            self.assertIn('"pong_timeout"', message)

    def test_defaultTimeoutAgainstShortInterval(self) -> None:
        """
        The relation is checked against the default of the key left out.
        """
        with self.assertRaises(ConfigError):
            config_from_dict({"ping_interval": "5s"})

    def test_disabled(self) -> None:
        for values in [
            {"ping_interval": -1, "pong_timeout": "30s"},
            {"ping_interval": "1s", "pong_timeout": -1},
            {"ping_interval": -1, "pong_timeout": -1},
        ]:
            config_from_dict(values)

    def test_directConstruction(self) -> None:
        """
        Building a L{Config} in Python runs the same checks and normalization.
        """
        with self.assertRaises(ConfigError):
            Config(ping_interval=5.0)
        with self.assertRaises(ConfigError):
            dataclasses.replace(Config(), port=-1)
        config = Config(ping_interval="1m", allowed_origins=["*"])  # type: ignore[arg-type]
        self.assertEqual((config.ping_interval, config.allowed_origins), (60.0, ("*",)))


class UnknownKeyTests(SynchronousTestCase):
    def test_warning(self) -> None:
        config, warnings = config_from_dict({"foo": 1, "port": 9000, "client": {"ping_intervall": "30s"}})
        self.assertEqual(config.port, 9000)
        self.assertEqual(
            warnings,
            ['config key "foo" is unknown and was ignored', 'config key "client.ping_intervall" is unknown and was ignored'],
        )

    def test_notAnObject(self) -> None:
        with self.assertRaises(ConfigError):
            config_from_dict([])  # type: ignore[arg-type]


class LoadConfigTests(SynchronousTestCase):
    """
    L{load_config} reads a JSON file.
    """

    def setUp(self) -> None:
        # Not self.mktemp(): under pytest it would write below the current directory.
        self.directory = tempfile.mkdtemp(prefix="httpstream-test-config-")
        self.addCleanup(shutil.rmtree, self.directory)

    def write(self, content: bytes) -> str:
        path = os.path.join(self.directory, "config.json")
        with open(path, "wb") as f:
            f.write(content)
        return path

    def test_load(self) -> None:
        path = self.write(b'{"port": 9001, "ping_interval": "30s", "allowed_origins": ["https://*.example.com"], "x": 1}')
        config, warnings = load_config(path)
        self.assertEqual(config.port, 9001)
        self.assertEqual(config.ping_interval, 30.0)
        self.assertEqual(config.allowed_origins, ("https://*.example.com",))
        self.assertEqual(config.name, socket.gethostname())
        self.assertEqual(warnings, ['config key "x" is unknown and was ignored'])

    def test_missingFile(self) -> None:
        with self.assertRaises(ConfigError) as raised:
            load_config("x")
        self.assertEqual(str(raised.exception), "cannot read config file 'x': No such file or directory")

    def test_directory(self) -> None:
        with self.assertRaises(ConfigError) as raised:
            load_config(self.directory)
        self.assertIn("cannot read config file", str(raised.exception))

    def test_badJSON(self) -> None:
        path = self.write(b'{\n  "port": 8000,\n}\n')
        with self.assertRaises(ConfigError) as raised:
            load_config(path)
        message = str(raised.exception)
        self.assertIn("cannot parse config file", message)
        self.assertIn("trailing comma is not allowed at line 2 column 15", message)
        self.assertNotIn("\n", message)

    def test_empty(self) -> None:
        with self.assertRaises(ConfigError) as raised:
            load_config(self.write(b""))
        self.assertIn("line 1 column 1", str(raised.exception))

    def test_notAnObject(self) -> None:
        for content in [b"[]", b"1", b'"port"', b"null"]:
            with self.assertRaises(ConfigError) as raised:
                load_config(self.write(content))
            self.assertIn("must hold a JSON object", str(raised.exception))

    def test_byteOrderMark(self) -> None:
        config, _ = load_config(self.write(b'\xef\xbb\xbf{"port": 1234}'))
        self.assertEqual(config.port, 1234)

    def test_invalidValue(self) -> None:
        with self.assertRaises(ConfigError) as raised:
            load_config(self.write(b'{"http_stream": 1}'))
        self.assertEqual(str(raised.exception), 'config key "http_stream": expected true or false, got 1')

    def test_example(self) -> None:
        """
        The shipped example loads without warnings.
        """
        config, warnings = load_config(_EXAMPLE)
        self.assertEqual(warnings, [])
        self.assertEqual(config.port, 8000)
        self.assertTrue(config.http_stream)
        self.assertEqual(config.allowed_origins, ("http://localhost:8000", "http://127.0.0.1:8000"))
        self.assertTrue(config.sse and config.demo)
        self.assertFalse(config.client_insecure)
        self.assertTrue(config.allow_anonymous_connect_without_token)
        self.assertTrue(config.allow_subscribe_for_client)
        self.assertTrue(config.allow_subscribe_for_anonymous)
        self.assertTrue(config.allow_publish_for_subscriber)
        self.assertTrue(config.allow_publish_for_anonymous)
        self.assertGreaterEqual(len(config.token_hmac_secret_key), 32)
        self.assertEqual((config.ping_interval, config.pong_timeout), (25.0, 8.0))


def rejected(test: SynchronousTestCase, data: dict[str, Any], *fragments: str) -> str:
    """
    Assert that loading C{data} fails with a one-line message containing C{fragments}; return the message.
    """
    with test.assertRaises(ConfigError, msg=repr(data)) as raised:
        config_from_dict(data)
    message = str(raised.exception)
    test.assertNotIn("\n", message)
    for fragment in fragments:
        test.assertIn(fragment, message)
    return message


class ChannelOptionTests(SynchronousTestCase):
    """
    Channel options at the top level apply to channels without a namespace; L{Config} inherits them from
    L{ChannelOptions}.
    """

    def test_inherited(self) -> None:
        self.assertIsInstance(Config(), ChannelOptions)
        names = {f.name for f in dataclasses.fields(ChannelOptions)}
        self.assertLessEqual(names, {f.name for f in dataclasses.fields(Config)})
        self.assertEqual(
            names,
            {
                "presence", "join_leave", "force_push_join_leave", "history_size", "history_ttl", "history_meta_ttl",
                "force_positioning", "allow_positioning", "force_recovery", "allow_recovery", "force_recovery_mode",
                "allowed_delta_types", "delta_publish", "allow_tags_filter", "allow_subscribe_for_client", "allow_subscribe_for_anonymous",
                "allow_publish_for_client", "allow_publish_for_subscriber", "allow_publish_for_anonymous",
                "allow_presence_for_client", "allow_presence_for_subscriber", "allow_presence_for_anonymous",
                "allow_history_for_client", "allow_history_for_subscriber", "allow_history_for_anonymous",
                "allow_user_limited_channels", "channel_regex", "proxy_subscribe", "proxy_publish", "proxy_sub_refresh",
                "subscribe_proxy_name", "publish_proxy_name", "sub_refresh_proxy_name",
                "shared_poll_proxy_name", "shared_poll_mode", "shared_poll_refresh_interval",
                "shared_poll_refresh_batch_size", "shared_poll_max_keys_per_connection",
                "shared_poll_track_expired_extra_delay", "shared_poll_publish_enabled",
            } | {f.name for f in dataclasses.fields(MapChannelOptions)},
        )

    def test_read(self) -> None:
        config, warnings = config_from_dict(
            {
                "presence": True,
                "join_leave": True,
                "history_size": 10,
                "history_ttl": "5m",
                "history_meta_ttl": "1h",
                "force_recovery": True,
                "force_recovery_mode": "cache",
                "allowed_delta_types": ["fossil"],
                "channel_regex": "^[a-z]+$",
                "allow_history_for_subscriber": True,
                "proxy_subscribe": True,
            }
        )
        self.assertEqual(warnings, [])
        self.assertEqual((config.history_size, config.history_ttl, config.history_meta_ttl), (10, 300.0, 3600.0))
        self.assertEqual(config.force_recovery_mode, "cache")
        self.assertEqual(config.allowed_delta_types, ("fossil",))
        self.assertTrue(config.presence and config.join_leave and config.force_recovery)
        self.assertTrue(config.allow_history_for_subscriber and config.proxy_subscribe)
        self.assertTrue(config.history)

    def test_types(self) -> None:
        table = [
            ("presence", 1, "expected true or false"),
            ("allow_presence_for_client", "yes", "expected true or false"),
            ("history_size", "10", "expected an integer"),
            ("history_size", 1.5, "expected an integer"),
            ("history_size", -1, "expected an integer >= 0"),
            ("history_ttl", "10", "missing unit"),
            ("history_ttl", "-1s", "expected a duration >= 0"),
            ("history_meta_ttl", [], "expected a duration"),
            ("force_recovery_mode", "memory", 'expected one of "stream", "cache"'),
            ("force_recovery_mode", 1, "expected a string"),
            ("allowed_delta_types", "fossil", "expected a list of strings"),
            ("allowed_delta_types", ["fossil", "xdelta"], 'expected a list of delta types from "fossil"'),
            ("channel_regex", 5, "expected a string"),
            ("channel_regex", "([a-z]", "invalid regular expression"),
            ("proxy_publish", None, "expected true or false"),
        ]
        for key, value, fragment in table:
            rejected(self, {key: value}, f'config key "{key}"', fragment)

    def test_recoveryModeEmptyIsStream(self) -> None:
        config, _ = config_from_dict({"force_recovery_mode": ""})
        self.assertEqual(config.force_recovery_mode, "stream")

    def test_historyNeedsSizeAndTTL(self) -> None:
        """
        history_size and history_ttl are both set or both 0 (Centrifugo's ValidateChannelOptions).
        """
        for data in [{"history_size": 10}, {"history_ttl": "1m"}, {"history_size": 1, "history_ttl": 0}]:
            rejected(self, data, 'config keys "history_size" and "history_ttl"', "set both above 0")
        for data in [{}, {"history_size": 0, "history_ttl": "0s"}, {"history_size": 1, "history_ttl": "1s"}]:
            config_from_dict(data)

    def test_forceRecoveryNeedsHistory(self) -> None:
        rejected(self, {"force_recovery": True}, 'config key "force_recovery"', "recovery needs history")
        config_from_dict({"force_recovery": True, "history_size": 10, "history_ttl": "1m"})

    def test_optionalFeaturesWithoutHistory(self) -> None:
        """
        As in Centrifugo, only force_recovery requires history: the others just have nothing to work with.
        """
        config, _ = config_from_dict(
            {"allow_recovery": True, "force_positioning": True, "allow_positioning": True, "allow_history_for_client": True}
        )
        self.assertFalse(config.history)

    def test_metaTTLNotBelowTTL(self) -> None:
        history = {"history_size": 10, "history_ttl": "2h"}
        rejected(
            self,
            {**history, "history_meta_ttl": "1h"},
            'config keys "history_ttl" and "history_meta_ttl"',
            "history_ttl (7200s) can not be greater than the history meta TTL (3600s)",
        )
        config_from_dict({**history, "history_meta_ttl": "2h"})

    def test_metaTTLGlobal(self) -> None:
        """
        A history_meta_ttl of 0 means global_history_meta_ttl, which must then cover history_ttl; a global 0 is not
        checked.
        """
        history = {"history_size": 10, "history_ttl": "2h"}
        rejected(self, {**history, "global_history_meta_ttl": "1h"}, '"history_ttl" and "global_history_meta_ttl"')
        config_from_dict({**history, "global_history_meta_ttl": "1h", "history_meta_ttl": "3h"})
        config_from_dict({**history, "global_history_meta_ttl": 0})

    def test_direct(self) -> None:
        """
        L{ChannelOptions} validates and normalizes like L{Config}.
        """
        options = ChannelOptions(history_size=5, history_ttl="1m", force_recovery_mode="")  # type: ignore[arg-type]
        self.assertEqual((options.history_ttl, options.force_recovery_mode), (60.0, "stream"))
        self.assertTrue(options.history)
        self.assertFalse(ChannelOptions().history)
        for bad in [{"history_size": -1}, {"history_size": 5}, {"force_recovery": True}, {"channel_regex": "("}]:
            with self.assertRaises(ConfigError, msg=repr(bad)):
                ChannelOptions(**bad)

    def test_frozenAndHashable(self) -> None:
        options = ChannelOptions(presence=True)
        with self.assertRaises(dataclasses.FrozenInstanceError):
            options.presence = False  # type: ignore[misc]
        self.assertEqual(hash(options), hash(ChannelOptions(presence=True)))


class NamespaceTests(SynchronousTestCase):
    """
    C{namespaces} is a list of objects with a C{name} and channel options; errors name the key by its index.
    """

    def test_read(self) -> None:
        config, warnings = config_from_dict(
            {
                "presence": True,
                "namespaces": [
                    {"name": "chat", "history_size": 10, "history_ttl": "300s", "allow_subscribe_for_client": True},
                    {"name": "a-b_c.d"},
                ],
            }
        )
        self.assertEqual(warnings, [])
        self.assertEqual(
            config.namespaces,
            (
                Namespace("chat", ChannelOptions(history_size=10, history_ttl=300.0, allow_subscribe_for_client=True)),
                Namespace("a-b_c.d", ChannelOptions()),
            ),
        )
        # Top-level options do not leak into namespaces.
        self.assertFalse(config.namespaces[1].options.presence)

    def test_empty(self) -> None:
        config, _ = config_from_dict({"namespaces": []})
        self.assertEqual(config.namespaces, ())

    def test_notAList(self) -> None:
        for bad in [{}, "chat", None, 1]:
            rejected(self, {"namespaces": bad}, 'config key "namespaces": expected a list of namespace objects')

    def test_itemNotAnObject(self) -> None:
        for bad in ["chat", ["chat"], None, 1]:
            rejected(self, {"namespaces": [{"name": "ok"}, bad]}, 'config key "namespaces[1]": expected an object')

    def test_nameMissing(self) -> None:
        rejected(self, {"namespaces": [{"presence": True}]}, 'config key "namespaces[0].name" is missing')

    def test_nameType(self) -> None:
        for bad in [1, None, True, ["chat"]]:
            rejected(self, {"namespaces": [{"name": bad}]}, 'config key "namespaces[0].name": expected a string')

    def test_nameSyntax(self) -> None:
        """
        Names match ^[-a-zA-Z0-9_.]{2,}$.
        """
        for bad in ["", "a", "chat:room", "chat room", "ch$t", "ch#t", "\u0447\u0430\u0442", "chat\n"]:
            rejected(self, {"namespaces": [{"name": bad}]}, 'config key "namespaces[0].name"', "2 or more characters")
        for good in ["ab", "00", "a-b", "a_b", "a.b", "Chat", "--"]:
            config, _ = config_from_dict({"namespaces": [{"name": good}]})
            self.assertEqual(config.namespaces[0].name, good)

    def test_unique(self) -> None:
        message = rejected(
            self,
            {"namespaces": [{"name": "chat"}, {"name": "news"}, {"name": "chat", "presence": True}]},
            'config key "namespaces[2].name"',
        )
        self.assertIn('namespace "chat" is defined twice', message)

    def test_optionTypes(self) -> None:
        table = [
            ("presence", "true", "expected true or false"),
            ("history_size", "10", "expected an integer"),
            ("history_ttl", "ten", "expected a duration"),
            ("history_meta_ttl", "-5s", "expected a duration >= 0"),
            ("force_recovery_mode", "fast", 'expected one of "stream", "cache"'),
            ("allowed_delta_types", ["gzip"], "delta types"),
            ("channel_regex", "[", "invalid regular expression"),
        ]
        for key, value, fragment in table:
            rejected(
                self,
                {"namespaces": [{"name": "ok"}, {"name": "chat", key: value}]},
                f'config key "namespaces[1].{key}"',
                fragment,
            )

    def test_optionRelations(self) -> None:
        rejected(
            self,
            {"namespaces": [{"name": "chat", "history_size": 10}]},
            'config keys "namespaces[0].history_size" and "namespaces[0].history_ttl"',
        )
        rejected(self, {"namespaces": [{"name": "chat", "force_recovery": True}]}, '"namespaces[0].force_recovery"')
        rejected(
            self,
            {"namespaces": [{"name": "chat", "history_size": 1, "history_ttl": "1h", "history_meta_ttl": "1m"}]},
            'config keys "namespaces[0].history_ttl" and "namespaces[0].history_meta_ttl"',
        )
        rejected(
            self,
            {"global_history_meta_ttl": "1m", "namespaces": [{"name": "chat", "history_size": 1, "history_ttl": "1h"}]},
            'config keys "namespaces[0].history_ttl" and "global_history_meta_ttl"',
        )

    def test_unknownKeyWarning(self) -> None:
        """
        An unknown key in a namespace is ignored with a warning, like an unknown top-level key.
        """
        config, warnings = config_from_dict(
            {"namespaces": [{"name": "chat", "presense": True}, {"name": "news", "history_lifetime": 5}], "x": 1}
        )
        self.assertEqual(config.namespaces, (Namespace("chat"), Namespace("news")))
        self.assertEqual(
            warnings,
            [
                'config key "namespaces[0].presense" is unknown and was ignored',
                'config key "namespaces[1].history_lifetime" is unknown and was ignored',
                'config key "x" is unknown and was ignored',
            ],
        )

    def test_direct(self) -> None:
        """
        In Python, namespaces can be L{Namespace} values or objects as in the file; both are checked.
        """
        chat = Namespace("chat", ChannelOptions(presence=True))
        config = Config(namespaces=[chat, {"name": "news", "history_size": 5, "history_ttl": 60}])  # type: ignore[arg-type]
        self.assertEqual(config.namespaces, (chat, Namespace("news", ChannelOptions(history_size=5, history_ttl=60.0))))
        self.assertEqual(dataclasses.replace(config, port=1).namespaces, config.namespaces)
        with self.assertRaises(ConfigError):
            Config(namespaces=(chat, chat))
        with self.assertRaises(ConfigError):
            Config(namespaces=(Namespace("x"),))

    def test_loadFile(self) -> None:
        directory = tempfile.mkdtemp(prefix="httpstream-test-config-")
        self.addCleanup(shutil.rmtree, directory)
        path = os.path.join(directory, "config.json")
        with open(path, "wb") as f:
            f.write(b'{"namespaces": [{"name": "chat", "presence": true, "join_leave": true}]}')
        config, warnings = load_config(path)
        self.assertEqual(warnings, [])
        self.assertEqual(config.namespaces, (Namespace("chat", ChannelOptions(presence=True, join_leave=True)),))


class PersonalChannelConfigTests(SynchronousTestCase):
    """
    As Centrifugo v5: user_personal_channel_namespace must be a configured namespace, and
    user_personal_single_connection needs presence in personal channels.
    """

    def test_namespaceMustExist(self) -> None:
        rejected(
            self,
            {"user_subscribe_to_personal": True, "user_personal_channel_namespace": "personal"},
            'config key "user_personal_channel_namespace"',
            'namespace "personal" is not in "namespaces"',
        )
        config_from_dict(
            {
                "user_subscribe_to_personal": True,
                "user_personal_channel_namespace": "personal",
                "namespaces": [{"name": "personal"}],
            }
        )

    def test_namespaceUnusedWithoutPersonalSubscription(self) -> None:
        config_from_dict({"user_personal_channel_namespace": "personal"})

    def test_singleConnectionNeedsPresence(self) -> None:
        rejected(
            self,
            {"user_personal_single_connection": True},
            'config key "user_personal_single_connection": needs "presence": true at the top level',
        )
        config_from_dict({"user_personal_single_connection": True, "presence": True})
        personal = {"user_subscribe_to_personal": True, "user_personal_channel_namespace": "personal"}
        rejected(
            self,
            {**personal, "user_personal_single_connection": True, "presence": True, "namespaces": [{"name": "personal"}]},
            'needs "presence": true in namespace "personal"',
        )
        config_from_dict(
            {**personal, "user_personal_single_connection": True, "namespaces": [{"name": "personal", "presence": True}]}
        )


class DocumentationTests(SynchronousTestCase):
    """
    docs/configuration.md has a table row for every key, and its example loads.
    """

    def setUp(self) -> None:
        with open(_DOCS, encoding="utf-8") as f:
            self.text = f.read()

    def test_everyKeyDocumented(self) -> None:
        documented = set(re.findall(r"^\| `([a-z_0-9]+)` \|", self.text, re.MULTILINE))
        keys = {f.name for f in dataclasses.fields(Config)}
        self.assertEqual(keys - documented, set(), "add a row for these keys to docs/configuration.md")
        self.assertEqual(documented - keys, set(), "docs/configuration.md documents keys that do not exist")

    def test_example(self) -> None:
        match = re.search(r"```json\n(.*?)```", self.text, re.DOTALL)
        assert match is not None
        config, warnings = config_from_dict(json.loads(match.group(1)))
        self.assertEqual(warnings, [])
        self.assertEqual([n.name for n in config.namespaces], ["chat", "admin", "dialog"])
