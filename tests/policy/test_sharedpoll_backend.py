"""
The shared poll refresh proxy (L{httpstream.policy.proxy.sharedpoll}) and track signatures
(L{httpstream.policy.tracksignature}), in memory (C{StubTreq}, a fake clock).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from treq.testing import StubTreq

from httpstream.config import Config
from httpstream.decisions import Refused, TrackBatch
from httpstream.policy.proxy import ProxyClient
from httpstream.policy.proxy.sharedpoll import PollFailed, PolledItem, PollItem, PollResult, SharedPollBackend
from httpstream.policy.tracksignature import TrackSignatures, makeSignature

from tests.policy.test_proxy import Backend

PROXIES = [{"name": "poll", "endpoint": "http://backend.test/refresh", "timeout": "2s",
            "static_http_headers": {"X-Secret": "s1"}}]


class BackendTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.backend = Backend({"result": {"items": [
            {"key": "a", "data": {"x": 1}, "version": 3},
            {"key": "b", "b64data": "AAE=", "version": 4},
            {"key": "c", "removed": True},
        ], "epoch": "e1"}})
        config = Config(proxies=PROXIES)
        self.poll = SharedPollBackend(ProxyClient(config, self.clock, StubTreq(self.backend)))

    def refresh(self, *items: PollItem) -> Any:
        return self.poll.refresh("poll", "poll:c", list(items))

    def test_exchange(self) -> None:
        result = self.successResultOf(self.refresh(PollItem("a", 2), PollItem("b")))
        self.assertEqual(self.backend.last["body"],
                         {"channel": "poll:c", "items": [{"key": "a", "version": 2}, {"key": "b"}]})
        self.assertEqual(self.backend.last["headers"].getRawHeaders("x-secret"), ["s1"])
        self.assertEqual(result, PollResult((PolledItem("a", b'{"x":1}', 3), PolledItem("b", b"\x00\x01", 4),
                                             PolledItem("c", removed=True)), "e1"))

    def test_failures(self) -> None:
        for reply, reason in [((500, b"oops"), "status code 500"), (b"not json", "not JSON"),
                              ({"error": {"code": 1000, "message": "down"}}, "backend error 1000"),
                              ({"result": {"items": [{"key": 5}]}}, "bad response")]:
            self.backend.reply = reply
            failure = self.failureResultOf(self.refresh(PollItem("a")), PollFailed)
            self.assertIn(reason, str(failure.value))

    def test_timeout(self) -> None:
        self.backend.reply = None
        d = self.refresh(PollItem("a"))
        self.clock.advance(2)
        self.assertEqual(str(self.failureResultOf(d, PollFailed).value), "timeout")

    def test_unknownProxy(self) -> None:
        self.failureResultOf(self.poll.refresh("nope", "poll:c", [PollItem("a")]), PollFailed)

    def test_noResult(self) -> None:
        self.backend.reply = {}
        self.assertEqual(self.successResultOf(self.refresh(PollItem("a"))), PollResult())


class SignatureTests(SynchronousTestCase):
    def test_format(self) -> None:
        """iat:expiry:hex(HMAC-SHA256(secret, iat NUL expiry NUL user NUL channel NUL hex(sha256(keys NUL-joined))))."""
        keysHash = hashlib.sha256(b"k1\x00k2").hexdigest()
        mac = hmac.new(b"s", b"10\x0020\x00u\x00ch:1\x00" + keysHash.encode(), hashlib.sha256).hexdigest()
        self.assertEqual(makeSignature("s", "ch:1", "u", ["k1", "k2"], 10, 20), f"10:20:{mac}")

    def test_check(self) -> None:
        signatures = TrackSignatures("s")
        good = TrackBatch(makeSignature("s", "c", "u", ["a", "b"], 100, 200), (("a", 0), ("b", 3)))
        self.assertEqual(signatures.check("c", "u", [good], 150), [200])
        self.assertEqual(signatures.check("c", "u", [good], 205), [200])  # within the 5 s grace
        for channel, user, batch, code in [
            ("c", "u", TrackBatch(good.signature, (("b", 0), ("a", 0))), 103),  # another order
            ("c", "v", good, 103), ("d", "u", good, 103),
            ("c", "u", good, 109),
        ]:
            with self.assertRaises(Refused) as raised:
                signatures.check(channel, user, [batch], 206 if code == 109 else 150)
            assert raised.exception.error is not None
            self.assertEqual(raised.exception.error.code, code)
        noExpiry = TrackBatch(makeSignature("s", "c", "u", ["a"], 1, 0), (("a", 0),))
        self.assertEqual(signatures.check("c", "u", [noExpiry, good], 150), [0, 200])

    def test_noSecret(self) -> None:
        with self.assertRaises(Refused) as raised:
            TrackSignatures("").check("c", "", [TrackBatch("1:0:x", (("a", 0),))], 0)
        assert raised.exception.error is not None
        self.assertEqual(raised.exception.error.code, 100)
