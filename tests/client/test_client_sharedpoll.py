"""
A client's shared poll subscription (L{httpstream.client.sharedpoll}) in memory, with the configured policy's
signature checks (L{httpstream.policy.tracksignature}) and the node's poller on a fake clock and a fake backend.
"""

from __future__ import annotations

import json
from typing import Any, Optional

import orjson

from twisted.trial.unittest import SynchronousTestCase

from httpstream.node.sharedpoll import SharedPolls
from httpstream.policy.tracksignature import makeSignature
from httpstream.protocol.delta import applyFossilDelta
from httpstream.testing import FakeTransport, connectClient, encodeCommands, makeNode
from httpstream.testing.sharedpoll import FakePollBackend

SECRET = "poll-secret"
CHANNEL = "poll:c"

SETTINGS = {
    "client_insecure": True,
    "shared_poll_hmac_secret_key": SECRET,
    "proxies": [{"name": "backend", "endpoint": "http://backend.test/refresh"}],
    "namespaces": [
        {"name": "poll", "subscription_type": "shared_poll", "shared_poll_proxy_name": "backend",
         "shared_poll_mode": "versioned", "shared_poll_refresh_interval": "1s",
         "shared_poll_max_keys_per_connection": 3, "shared_poll_track_expired_extra_delay": "10s"},
        {"name": "polld", "subscription_type": "shared_poll", "shared_poll_proxy_name": "backend",
         "shared_poll_mode": "versioned", "shared_poll_refresh_interval": "1s", "allowed_delta_types": ["fossil"]},
        {"name": "chat"},
    ],
}


class SharedPollClientTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.node = makeNode(SETTINGS)
        self.clock = self.node.reactor
        self.clock.advance(1_000_000)  # signatures in unix seconds
        self.backend = FakePollBackend()
        self.node.sharedPoll = SharedPolls(self.clock, self.backend.refresh)
        self.client, self.transport = connectClient(self.node)
        self.nextID = 2
        self.channel = CHANNEL

    def send(self, command: dict[str, Any]) -> dict[str, Any]:
        commandID, self.nextID = self.nextID, self.nextID + 1
        self.client.handleData(encodeCommands("json", [{"id": commandID, **command}]))
        self.clock.advance(0)
        return next(r for r in self.transport.replies() if r.get("id") == commandID)

    def subscribe(self, channel: str = CHANNEL, kind: int = 4) -> dict[str, Any]:
        return self.send({"subscribe": {"channel": channel, "type": kind}})

    def sign(self, keys: list[str], expiry: int, secret: str = SECRET, user: str = "") -> str:
        now = int(self.clock.seconds())
        return makeSignature(secret, self.channel, user, keys, now, expiry)

    def track(self, items: list[tuple[str, int]], expiry: int = 0, signature: Optional[str] = None,
              untrack: tuple[str, ...] = ()) -> dict[str, Any]:
        keys = [key for key, _ in items]
        batch = {"signature": self.sign(keys, expiry) if signature is None else signature,
                 "items": [{"key": k, "version": v} if v else {"key": k} for k, v in items]}
        request: dict[str, Any] = {"channel": self.channel, "type": 1, "track": [batch]}
        if untrack:
            request["untrack"] = list(untrack)
        return self.send({"sub_refresh": request})

    def pubs(self) -> list[dict[str, Any]]:
        return [r["push"]["pub"] for r in self.transport.replies() if "push" in r and "pub" in r["push"]]

    def test_subscribe(self) -> None:
        """Type 4 gets type 4 and no publications; versioned: no epoch."""
        self.assertEqual(self.subscribe(), {"id": 2, "subscribe": {"type": 4}})

    def test_typeMismatch(self) -> None:
        """A stream subscribe to a shared poll channel, or a shared poll one to a stream channel: 103."""
        self.assertEqual(self.subscribe(kind=0)["error"]["code"], 103)
        self.assertEqual(self.subscribe("chat:x", kind=4)["error"]["code"], 103)

    def test_trackAndPushes(self) -> None:
        self.subscribe()
        self.backend.state = {"k": (b'{"v":1}', 1)}
        expiry = int(self.clock.seconds()) + 60
        self.assertEqual(self.track([("k", 0)], expiry)["sub_refresh"], {"expires": True, "ttl": 60})
        self.clock.advance(0)  # the first poll of the new key
        self.assertEqual(self.pubs(), [{"key": "k", "data": b'{"v":1}', "version": 1}])
        self.backend.state = {"k": (b'{"v":2}', 2)}
        self.clock.advance(1)
        self.assertEqual(self.pubs()[-1], {"key": "k", "data": b'{"v":2}', "version": 2})

    def test_deltas(self) -> None:
        """
        With delta negotiated (a namespace allowing fossil): items and full pushes carry the data as a JSON string
        (the SDK's base for the key); a change of a key the client holds at the update's previous version comes as a
        delta against it; a removal carries no data. Without the namespace's permission nothing is negotiated.
        """
        self.assertNotIn("delta", self.send({"subscribe": {"channel": CHANNEL, "type": 4, "delta": "fossil"}})["subscribe"])
        self.channel = "polld:c"
        self.assertEqual(self.send({"subscribe": {"channel": self.channel, "type": 4, "delta": "fossil"}})["subscribe"],
                         {"type": 4, "delta": True})
        big = {"text": "x" * 200, "n": 1}
        self.backend.state = {"k": (orjson.dumps(big), 1)}
        self.track([("k", 0)])
        self.clock.advance(0)
        first = self.pubs()[-1]
        self.assertNotIn("delta", first)
        base = json.loads(first["data"])  # a JSON string: the raw JSON text of the key's data
        self.assertEqual(json.loads(base), big)
        big["n"] = 2
        self.backend.state = {"k": (orjson.dumps(big), 2)}
        self.clock.advance(1)
        second = self.pubs()[-1]
        self.assertTrue(second["delta"])
        patch = json.loads(second["data"])
        self.assertLess(len(patch), len(base))
        self.assertEqual(json.loads(applyFossilDelta(base.encode(), patch.encode())), big)
        # Another client tracking the key gets it in the reply, as a JSON string too.
        other, transport = connectClient(self.node, FakeTransport())
        self.client, self.transport = other, transport
        self.clock.advance(0)
        self.send({"subscribe": {"channel": self.channel, "type": 4, "delta": "fossil"}})
        item = self.track([("k", 0)])["sub_refresh"]["items"][0]
        self.assertEqual((json.loads(json.loads(item["data"])), item["version"]), (big, 2))
        self.backend.removed = {"k"}
        self.clock.advance(1)
        self.assertEqual(self.pubs()[-1], {"key": "k", "removed": True})

    def test_cachedItemsInReply(self) -> None:
        """A second client tracking a key the node has: the data newer than its version comes in the reply."""
        self.subscribe()
        self.backend.state = {"k": (b'{"v":1}', 4)}
        self.track([("k", 0)])
        self.clock.advance(0)
        other, transport = connectClient(self.node, FakeTransport())
        self.client, self.transport = other, transport
        self.clock.advance(0)
        self.subscribe()
        reply = self.track([("k", 0)])["sub_refresh"]
        self.assertEqual(reply, {"items": [{"key": "k", "data": b'{"v":1}', "version": 4}]})
        # Not pushed again, and a client already at that version gets nothing in the reply.
        self.clock.advance(1)
        self.assertEqual(self.pubs(), [])
        self.assertEqual(self.track([("k", 4)])["sub_refresh"], {})
        self.assertEqual(self.backend.keysAsked().count("k"), 2)  # first poll, one cycle: not one per client

    def test_badSignature(self) -> None:
        self.subscribe()
        for signature in ["", "x", "1:2", "a:b:c", self.sign(["k"], 0, secret="other"), self.sign(["other"], 0)]:
            self.assertEqual(self.track([("k", 0)], signature=signature)["error"]["code"], 103, signature)

    def test_userInSignature(self) -> None:
        self.subscribe()
        self.assertEqual(self.track([("k", 0)], signature=self.sign(["k"], 0, user="u1"))["error"]["code"], 103)

    def test_expiredSignature(self) -> None:
        """Expired more than 5 s ago: 109 (the SDK refreshes); within the grace period: accepted, without a ttl."""
        self.subscribe()
        now = int(self.clock.seconds())
        self.assertEqual(self.track([("k", 0)], now - 6)["error"], {"code": 109, "message": "token expired"})
        self.assertEqual(self.track([("k", 0)], now - 4)["sub_refresh"], {"expires": True})

    def test_previousSecret(self) -> None:
        node = makeNode({**SETTINGS, "shared_poll_hmac_previous_secret_key": "old",
                         "shared_poll_hmac_previous_secret_key_valid_until": 2_000_000})
        node.sharedPoll = SharedPolls(node.reactor, self.backend.refresh)
        node.reactor.advance(1_000_000)
        self.node, self.clock = node, node.reactor
        self.client, self.transport = connectClient(node)
        self.clock.advance(0)
        self.subscribe()
        self.assertEqual(self.track([("k", 0)], signature=self.sign(["k"], 0, secret="old"))["sub_refresh"], {})
        self.clock.advance(1_500_000)  # signatures issued after valid_until must use the current secret
        self.assertEqual(self.track([("j", 0)], signature=self.sign(["j"], 0, secret="old"))["error"]["code"], 103)

    def test_limit(self) -> None:
        """Over shared_poll_max_keys_per_connection (3): 106; keys untracked inline do not count."""
        self.subscribe()
        self.assertEqual(self.track([("a", 0), ("b", 0), ("c", 0), ("d", 0)])["error"]["code"], 106)
        self.assertEqual(self.track([("a", 0), ("b", 0), ("c", 0)])["sub_refresh"], {})
        self.assertEqual(self.track([("d", 0)])["error"]["code"], 106)
        self.assertEqual(self.track([("d", 0), ("e", 0)], untrack=("a", "b", "e"))["sub_refresh"], {})
        self.assertEqual(sorted(self.client.subs[CHANNEL].keyed.keys), ["c", "d"])

    def test_untrack(self) -> None:
        self.subscribe()
        self.backend.state = {"k": (b"1", 1)}
        self.track([("k", 0), ("j", 0)])
        self.clock.advance(0)
        self.assertEqual(self.send({"sub_refresh": {"channel": CHANNEL, "type": 2, "untrack": ["k", "x"]}}),
                         {"id": 4, "sub_refresh": {}})
        self.assertEqual(self.node.sharedPoll.tracked(CHANNEL), ["j"])
        self.assertEqual(self.send({"sub_refresh": {"channel": CHANNEL, "type": 2}})["error"]["code"], 107)

    def test_badRequests(self) -> None:
        self.assertEqual(self.send({"sub_refresh": {"channel": CHANNEL, "type": 1, "track": []}})["error"]["code"],
                         103)  # not subscribed
        self.subscribe()
        self.assertEqual(self.send({"sub_refresh": {"channel": CHANNEL, "type": 1, "track": []}})["error"]["code"],
                         107)
        self.assertEqual(self.send({"sub_refresh": {"channel": CHANNEL, "type": 3}})["error"]["code"], 107)

    def test_signatureExpiryDropsKeys(self) -> None:
        """Past expiry + track_expired_extra_delay the node stops polling the key; nothing is sent."""
        self.subscribe()
        now = int(self.clock.seconds())
        self.track([("k", 0)], now + 5)
        self.track([("j", 0)], 0)
        self.clock.advance(27 + 0.5)  # the presence timer, 27 s: 5 + 10 s have passed
        self.assertEqual(sorted(self.client.subs[CHANNEL].keyed.keys), ["j"])
        self.assertEqual(self.node.sharedPoll.tracked(CHANNEL), ["j"])

    def test_unsubscribeAndDisconnect(self) -> None:
        """Unsubscribing (or going away) stops the node from polling what the client tracked."""
        self.subscribe()
        self.track([("k", 0)])
        self.send({"unsubscribe": {"channel": CHANNEL}})
        self.assertEqual(self.node.sharedPoll.tracked(CHANNEL), [])
        self.subscribe()
        self.track([("k", 0)])
        self.client.transportClosed()
        self.assertEqual(self.node.sharedPoll.tracked(CHANNEL), [])

    def test_epochChangeUnsubscribes(self) -> None:
        self.subscribe()
        self.backend.state = {"k": (b"1", 1)}
        self.track([("k", 0)])
        self.backend.epoch = "e2"
        self.clock.advance(1)
        pushes = [r["push"] for r in self.transport.replies() if "push" in r and "unsubscribe" in r["push"]]
        self.assertEqual(pushes, [{"channel": CHANNEL, "unsubscribe": {"code": 2500, "reason": "insufficient state"}}])
        self.assertEqual(self.subscribe()["subscribe"], {"type": 4, "epoch": "e2"})
