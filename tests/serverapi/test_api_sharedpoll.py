"""
The server API's shared_poll_publish (L{httpstream.serverapi.sharedpoll}) on one node: Centrifugo's answers for bad
requests, namespaces that do not enable it (108) and channels that are not shared poll ones (107), and a publication
reaching a tracker of the key when newer than the node's version. Across nodes: tests/test_sdk_sharedpoll.py.
"""

from __future__ import annotations

import base64
from typing import Any

from httpstream.config.sharedpoll import SharedPollOptions
from httpstream.testing.sharedpoll import FakeKeyedSubscriber
from tests.serverapi.test_api import APITestCase

POLL = {"subscription_type": "shared_poll", "shared_poll_proxy_name": "backend", "shared_poll_mode": "versioned"}
SETTINGS = {
    "shared_poll_hmac_secret_key": "secret",
    "proxies": [{"name": "backend", "endpoint": "http://127.0.0.1:9/refresh"}],
    "namespaces": [
        {"name": "poll", **POLL, "shared_poll_publish_enabled": True},
        {"name": "closed", **POLL},
        {"name": "chat"},
    ],
}


class SharedPollPublishTests(APITestCase):
    settings: dict[str, Any] = SETTINGS

    def call(self, **request: Any) -> Any:
        return self.api.call("shared_poll_publish", request)

    def test_reachesTrackers(self) -> None:
        tracker = FakeKeyedSubscriber()
        options = SharedPollOptions.of(self.node.rules.options("poll:prices"))
        self.node.sharedPoll.join("poll:prices", options, tracker)
        self.node.sharedPoll.track("poll:prices", tracker, ["AAPL"])
        self.assertEqual(self.ok(self.call(channel="poll:prices", key="AAPL", data={"p": 1}, version=3)), {})
        b64 = base64.b64encode(b'{"p":2}').decode()
        self.assertEqual(self.ok(self.call(channel="poll:prices", key="AAPL", b64data=b64, version=4)), {})
        self.assertEqual(self.ok(self.call(channel="poll:prices", key="AAPL", data={"p": 0}, version=2)), {})
        self.assertEqual(tracker.received(), [("AAPL", 3, b'{"p":1}', False), ("AAPL", 4, b'{"p":2}', False)])

    def test_refusals(self) -> None:
        self.assertEqual(self.error(self.call(key="k", data={}, version=1)), 107)
        self.assertEqual(self.error(self.call(channel="poll:a", data={}, version=1)), 107)
        self.assertEqual(self.error(self.call(channel="poll:a", key="k", data={})), 107)  # version 0
        self.assertEqual(self.error(self.call(channel="poll:a", key="k", data={}, version=-1)), 107)
        self.assertEqual(self.error(self.call(channel="chat:a", key="k", data={}, version=1)), 107)
        self.assertEqual(self.error(self.call(channel="nope:a", key="k", data={}, version=1)), 102)
        self.assertEqual(self.error(self.call(channel="closed:a", key="k", data={}, version=1)), 108)
