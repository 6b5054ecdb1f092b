"""
The shared poll options (L{httpstream.config.sharedpoll}): v5 flat names, v6's nested C{shared_poll} objects, the
C{CENTRIFUGO_*} variables, Centrifugo's defaults, and the start-up checks (one line each).
"""

from __future__ import annotations

from typing import Any

from httpstream.config import ConfigError, config_from_dict
from httpstream.config.sharedpoll import SharedPollOptions, isSharedPoll

from tests.config.test_config_env import EnvironmentTests

_PROXIES = [{"name": "poll_backend", "endpoint": "http://127.0.0.1:1/refresh"}]

V5: dict[str, Any] = {
    "shared_poll_hmac_secret_key": "test-poll-secret",
    "proxies": _PROXIES,
    "namespaces": [{
        "name": "poll", "subscription_type": "shared_poll", "shared_poll_proxy_name": "poll_backend",
        "shared_poll_mode": "versioned", "shared_poll_refresh_interval": "200ms", "shared_poll_refresh_batch_size": 100,
        "shared_poll_max_keys_per_connection": 50, "shared_poll_track_expired_extra_delay": "3s",
        "shared_poll_publish_enabled": True,
    }],
}

V6: dict[str, Any] = {
    "shared_poll": {"hmac_secret_key": "test-poll-secret"},
    "proxies": _PROXIES,
    "channel": {"namespaces": [{
        "name": "poll", "subscription_type": "shared_poll",
        "shared_poll": {"proxy_name": "poll_backend", "mode": "versioned", "refresh_interval": "200ms",
                        "refresh_batch_size": 100, "max_keys_per_connection": 50, "track_expired_extra_delay": "3s",
                        "publish_enabled": True},
    }]},
}

EXPECTED = SharedPollOptions("poll_backend", False, 0.2, 100, 50, 3.0, publishEnabled=True)


class SharedPollConfigTests(EnvironmentTests):
    def test_v5(self) -> None:
        config, warnings = config_from_dict(V5)
        self.assertEqual(warnings, [])
        options = config.namespaces[0].options
        self.assertTrue(isSharedPoll(options))
        self.assertEqual(SharedPollOptions.of(options), EXPECTED)
        self.assertEqual(config.shared_poll_hmac_secret_key, "test-poll-secret")

    def test_v6SameAsV5(self) -> None:
        v6, warnings = config_from_dict(V6)
        self.assertEqual(warnings, [])
        self.assertEqual(v6, config_from_dict(V5)[0])

    def test_v6WithoutNamespace(self) -> None:
        config, warnings = config_from_dict({**V6, "channel": {"without_namespace": {
            "subscription_type": "shared_poll", "shared_poll": {"proxy_name": "poll_backend"}}}})
        self.assertEqual(warnings, [])
        self.assertEqual(SharedPollOptions.of(config), SharedPollOptions("poll_backend"))

    def test_defaults(self) -> None:
        """0 is Centrifugo's default: 10s, 1000 keys a request, 5000 keys a connection, 25s; versionless."""
        config, _ = config_from_dict({**V5, "namespaces": [{
            "name": "poll", "subscription_type": "shared_poll", "shared_poll_proxy_name": "poll_backend"}]})
        self.assertEqual(SharedPollOptions.of(config.namespaces[0].options),
                         SharedPollOptions("poll_backend", True, 10.0, 1000, 5000, 25.0))

    def test_environment(self) -> None:
        loaded = self.load(V5, {
            "CENTRIFUGO_SHARED_POLL_HMAC_SECRET_KEY": "from-env",
            "CENTRIFUGO_CHANNEL_NAMESPACES_POLL_SHARED_POLL_REFRESH_INTERVAL": "2s",
            "CENTRIFUGO_CHANNEL_NAMESPACES_POLL_SHARED_POLL_MODE": "versionless",
            "CENTRIFUGO_CHANNEL_NAMESPACES_POLL_SHARED_POLL_PUBLISH_ENABLED": "false",  # (needs versioned)
            "CENTRIFUGO_CHANNEL_WITHOUT_NAMESPACE_SHARED_POLL_REFRESH_BATCH_SIZE": "7",
            "CENTRIFUGO_SHARED_POLL_MAX_KEYS_PER_CONNECTION": "9",  # v5's name of the top-level option
        })
        config = loaded.config
        self.assertEqual(config.shared_poll_hmac_secret_key, "from-env")
        options = SharedPollOptions.of(config.namespaces[0].options)
        self.assertEqual((options.refreshInterval, options.versionless, options.publishEnabled), (2.0, True, False))
        self.assertEqual((config.shared_poll_refresh_batch_size, config.shared_poll_max_keys_per_connection), (7, 9))

    def test_secretRequired(self) -> None:
        with self.assertRaises(ConfigError) as raised:
            config_from_dict({**V5, "shared_poll_hmac_secret_key": ""})
        self.assertIn('"shared_poll_hmac_secret_key"', str(raised.exception))
        self.assertNotIn("\n", str(raised.exception))

    def test_proxyRequired(self) -> None:
        for name in ("", "nope"):
            namespace = {**V5["namespaces"][0], "shared_poll_proxy_name": name}
            with self.assertRaises(ConfigError) as raised:
                config_from_dict({**V5, "namespaces": [namespace]})
            self.assertIn('"namespaces[0].shared_poll_proxy_name"', str(raised.exception))
            self.assertIn("poll_backend", str(raised.exception))

    def test_badValues(self) -> None:
        for key, value in [("subscription_type", "poll"), ("shared_poll_mode", "fast"),
                           ("shared_poll_refresh_batch_size", -1), ("shared_poll_refresh_interval", "soon")]:
            with self.assertRaises(ConfigError) as raised:
                config_from_dict({**V5, "namespaces": [{**V5["namespaces"][0], key: value}]})
            self.assertIn(f'"namespaces[0].{key}"', str(raised.exception))

    def test_notSharedPollNeedsNothing(self) -> None:
        config, _ = config_from_dict({"namespaces": [{"name": "chat", "subscription_type": "stream"}]})
        self.assertFalse(isSharedPoll(config.namespaces[0].options))

    def test_publishEnabledNeedsVersioned(self) -> None:
        """As Centrifugo: publish_enabled with versionless mode is refused at start, in one line."""
        namespace = {**V5["namespaces"][0], "shared_poll_mode": ""}
        with self.assertRaises(ConfigError) as caught:
            config_from_dict({**V5, "namespaces": [namespace]})
        message = str(caught.exception)
        self.assertIn('"namespaces[0].shared_poll_publish_enabled"', message)
        self.assertIn('"versioned"', message)
        self.assertNotIn("\n", message)
