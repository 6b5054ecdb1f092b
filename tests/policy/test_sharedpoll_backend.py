"""
The shared poll refresh proxy (L{httpstream.policy.proxy.sharedpoll}) and track signatures
(L{httpstream.policy.tracksignature}), in memory (C{StubTreq}, a fake clock).
"""

from __future__ import annotations

import hashlib
import hmac
import random
from typing import Any

from twisted.internet.task import Clock
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from treq.testing import StubTreq

from httpstream.config import Config
from httpstream.config.sharedpoll import SharedPollOptions
from httpstream.decisions import Refused, TrackBatch
from httpstream.node.sharedpoll import SharedPolls
from httpstream.policy.proxy import ProxyClient
from httpstream.policy.proxy.sharedpoll import PollFailed, PolledItem, PollItem, PollResult, SharedPollBackend
from httpstream.policy.tracksignature import TrackSignatures, makeSignature
from httpstream.testing.sharedpoll import FakeKeyedSubscriber
from tests.policy.bodyfakes import ChunkedResponse, OneAnswer

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
        for reply, reason in [((500, b"oops"), "HTTP status code: 500"), (b"not json", "not JSON"),
                              ({"error": {"code": 1000, "message": "down"}}, "backend error 1000"),
                              ({"result": {"items": [{"key": 5}]}}, "bad response")]:
            self.backend.reply = reply
            failure = self.failureResultOf(self.refresh(PollItem("a")), PollFailed)
            self.assertIn(reason, str(failure.value))

    def test_tooLarge(self) -> None:
        """An answer over the proxy client's limit is a failed poll (the connection is closed, see test_httpbody)."""
        proxy = ProxyClient(Config(proxies=PROXIES), self.clock, StubTreq(self.backend), maxResponseSize=100)
        self.backend.reply = {"result": {"items": [{"key": "a", "data": "x" * 100}]}}
        failure = self.failureResultOf(SharedPollBackend(proxy).refresh("poll", "poll:c", [PollItem("a")]), PollFailed)
        self.assertEqual(str(failure.value), "response larger than 100 bytes")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_chunkedAnswerOverLimit(self) -> None:
        """With the default limit: 16 MiB read of an answer of 1 GiB, the rest never."""
        response = ChunkedResponse(200, (b" " * (1 << 20) for _ in range(1024)))
        poll = SharedPollBackend(ProxyClient(Config(proxies=PROXIES), self.clock, OneAnswer(response)))
        self.failureResultOf(poll.refresh("poll", "poll:c", [PollItem("a")]), PollFailed)
        self.assertEqual((response.delivered, response.lost), (17, True))

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


class CycleTests(SynchronousTestCase):
    """The node's shared poll cycles (L{SharedPolls}) over this backend, when its answers grow too large."""

    def test_oneErrorLinePerCycle(self) -> None:
        clock = Clock()
        backend = Backend(lambda body: {"result": {"items": [{"key": i["key"], "data": 1, "version": 1}
                                                             for i in body["items"]]}})
        proxy = ProxyClient(Config(proxies=PROXIES), clock, StubTreq(backend), maxResponseSize=1000)
        polls = SharedPolls(clock, SharedPollBackend(proxy).refresh, random.Random(7))
        sub = FakeKeyedSubscriber()
        keys = [f"k{i}" for i in range(7)]
        polls.join("poll:c", SharedPollOptions("poll", versionless=False, refreshInterval=1.0, batchSize=3), sub)
        polls.track("poll:c", sub, keys)
        clock.advance(0)
        self.assertEqual(len(sub.updates), 7)
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        backend.reply = {"result": {"items": [{"key": "k0", "data": "x" * 1000, "version": 2}]}}
        clock.advance(1.0)
        clock.advance(1.0)
        self.assertFalse([e for e in events if e.get("log_failure") is not None])
        lines = [formatEvent(e) for e in events if e.get("log_level") == LogLevel.error]
        self.assertEqual(len(lines), 2, lines)
        self.assertIn("3 of 3 backend requests failed (response larger than 1000 bytes)", lines[0])
        self.assertEqual(len(sub.updates), 7)  # subscribers keep the last state
        self.assertEqual(len(backend.requests), 9)


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
