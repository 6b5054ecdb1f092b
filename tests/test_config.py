"""
Tests for L{httpstream.config} and L{httpstream.durations}.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import tempfile
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from httpstream.config import Config, ConfigError, load_config
from httpstream.durations import parse_duration

_EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "config.example.json")


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
            "http_stream": False,
            "http_stream_max_request_body_size": 65536,
            "emulation_max_request_body_size": 65536,
            "sse": False,
            "sse_max_request_body_size": 65536,
            "websocket_disable": False,
            "websocket_message_size_limit": 65536,
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
            "client_expired_sub_close_delay": 25.0,
            "client_presence_update_interval": 27.0,
            "client_channel_position_check_delay": 40.0,
            "client_user_connection_limit": 0,
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
            "log_level": "info",
            "engine": "memory",
        }
        self.assertEqual(dataclasses.asdict(Config()), expected)

    def test_emptyDict(self) -> None:
        """
        An empty document gives the defaults, with the hostname as node name.
        """
        config, warnings = Config.from_dict({})
        self.assertEqual(warnings, [])
        self.assertEqual(config, dataclasses.replace(Config(), name=socket.gethostname()))

    def test_nameKept(self) -> None:
        config, _ = Config.from_dict({"name": "node-1"})
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
            Config.from_dict({key: value})
        message = str(raised.exception)
        self.assertIn(f'config key "{key}"', message)
        self.assertNotIn("\n", message)
        for fragment in fragments:
            self.assertIn(fragment, message)
        return message

    def assertAccepted(self, key: str, value: Any, stored: Any) -> None:
        config, warnings = Config.from_dict({key: value})
        self.assertEqual(warnings, [])
        self.assertEqual(getattr(config, key), stored, f"{key}={value!r}")

    def test_bool(self) -> None:
        for key in ["http_stream", "client_insecure", "allow_publish_for_client"]:
            self.assertAccepted(key, True, True)
            self.assertAccepted(key, False, False)
            for bad in [1, 0, "true", None, [], {}]:
                self.assertRejected(key, bad, "expected true or false")

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
        self.assertRejected("port", "8000", "expected an integer", 'got "8000"')

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
        self.assertRejected("engine", "redis", 'expected one of "memory"', 'got "redis"')

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
        config, _ = Config.from_dict({"ping_interval": "10s", "pong_timeout": "9s"})
        self.assertEqual((config.ping_interval, config.pong_timeout), (10.0, 9.0))

    def test_intervalNotAboveTimeout(self) -> None:
        for interval, timeout in [("10s", "10s"), ("5s", "8s"), (8, 8)]:
            with self.assertRaises(ConfigError) as raised:
                Config.from_dict({"ping_interval": interval, "pong_timeout": timeout})
            message = str(raised.exception)
            self.assertIn('"ping_interval"', message)
            self.assertIn('"pong_timeout"', message)

    def test_defaultTimeoutAgainstShortInterval(self) -> None:
        """
        The relation is checked against the default of the key left out.
        """
        with self.assertRaises(ConfigError):
            Config.from_dict({"ping_interval": "5s"})

    def test_disabled(self) -> None:
        for values in [
            {"ping_interval": -1, "pong_timeout": "30s"},
            {"ping_interval": "1s", "pong_timeout": -1},
            {"ping_interval": -1, "pong_timeout": -1},
        ]:
            Config.from_dict(values)

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
        config, warnings = Config.from_dict({"foo": 1, "port": 9000, "client": {"ping_interval": "1s"}})
        self.assertEqual(config.port, 9000)
        self.assertEqual(
            warnings,
            ['config key "foo" is unknown and was ignored', 'config key "client" is unknown and was ignored'],
        )

    def test_notAnObject(self) -> None:
        with self.assertRaises(ConfigError):
            Config.from_dict([])  # type: ignore[arg-type]


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
