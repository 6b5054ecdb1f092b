"""
The proxy's bounded answers (L{httpstream.policy.proxy.caller}): an answer over the limit fails the call exactly as
a malformed one does, the connection is closed and nothing more of it is read; in memory (C{StubTreq}, a fake
response delivering chunks), plus one exchange over a real socket.
"""

from __future__ import annotations

from typing import Any, Union

import orjson
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from httpstream.config import Config
from httpstream.policy.proxy import ProxyClient, ProxyError
from httpstream.policy.proxy.caller import MAX_RESPONSE_SIZE
from httpstream.protocol import codes
from tests.policy.bodyfakes import ChunkedResponse, OneAnswer
from tests.policy.test_proxy import ENDPOINTS, REFRESH_RETRY_DELAY, ProxyTestCase, _TrackingSite, context

LIMIT = 100
TOO_LARGE = {"result": {"user": "1", "data": "x" * LIMIT}}


class LogLines:
    def __init__(self, case: SynchronousTestCase) -> None:
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        case.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def errors(self) -> list[str]:
        assert not [e for e in self.events if e.get("log_failure") is not None], "a traceback was logged"
        return [formatEvent(e) for e in self.events if e.get("log_level") == LogLevel.error]


class OversizedTests(ProxyTestCase):
    """Through StubTreq, with a limit of 100 bytes."""

    def setUp(self) -> None:
        super().setUp()
        self.proxy = self.makeProxy(maxResponseSize=LIMIT)
        self.log = LogLines(self)

    def test_failsAsMalformed(self) -> None:
        """connect, rpc, publish and subscribe: error 100 (temporary), one error line each naming the limit."""
        self.assertInternal(TOO_LARGE)
        lines = self.log.errors()
        self.assertEqual(len(lines), 4, lines)
        for line in lines:
            self.assertIn(f"response larger than {LIMIT} bytes", line)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_refreshGetsAnotherMinute(self) -> None:
        """refresh and sub_refresh: as for any failed call, the connection or subscription lives a minute more."""
        self.backend.reply = TOO_LARGE
        retryAt = int(self.clock.seconds()) + REFRESH_RETRY_DELAY
        self.assertEqual(self.succeed(self.proxy.refresh(context())),
                         {"expired": False, "expire_at": retryAt, "info": None, "meta": None})
        self.assertEqual(self.succeed(self.proxy.subRefresh(context(), "ch")),
                         {"expired": False, "expire_at": retryAt, "info": None})
        self.assertEqual(len(self.log.errors()), 2)

    def test_atTheLimit(self) -> None:
        """An answer of exactly the limit is read."""
        pad = LIMIT - len(b'{"result":{"data":""}}')
        body = orjson.dumps({"result": {"data": "x" * pad}})
        self.assertEqual(len(body), LIMIT)
        self.backend.reply = body
        self.assertEqual(self.succeed(self.proxy.rpc(context(), "m", None)), {"data": b'"' + b"x" * pad + b'"'})
        self.backend.reply = body + b" "
        self.failWith(self.proxy.rpc(context(), "m", None), ProxyError)

    def test_non200(self) -> None:
        """Another status is still reported as such, whatever the size of its body."""
        self.backend.reply = (503, orjson.dumps(TOO_LARGE))
        self.failWith(self.proxy.rpc(context(), "m", None), ProxyError)
        self.assertIn("unexpected HTTP status code: 503", self.log.errors()[0])


class ChunkedTests(SynchronousTestCase):
    """With the default limit, against a backend that would answer 1 GiB in 1 MiB chunks."""

    CHUNK = b" " * (1 << 20)  # JSON whitespace: a valid answer but for its size

    def setUp(self) -> None:
        self.clock = Clock()
        self.log = LogLines(self)

    def call(self, response: ChunkedResponse, **config: Any) -> "defer.Deferred[Any]":
        proxy = ProxyClient(Config(**{**ENDPOINTS, **config}), self.clock, OneAnswer(response))
        return proxy.rpc(context(), "m", None)

    def test_readsNoMoreThanTheLimit(self) -> None:
        self.assertEqual(MAX_RESPONSE_SIZE, 16 << 20)
        response = ChunkedResponse(200, (self.CHUNK for _ in range(1024)))
        self.assertEqual(self.failureResultOf(self.call(response), ProxyError).value.error, codes.ERROR_INTERNAL)
        self.assertTrue(response.lost)
        self.assertEqual(response.delivered, 17)  # 16 MiB read, the 17th chunk refused, the rest never sent
        self.assertEqual(len(self.log.errors()), 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_normalAnswerInChunks(self) -> None:
        response = ChunkedResponse(200, [b'{"result": {"da', b'ta": [1, 2]}}', self.CHUNK])
        self.assertEqual(self.successResultOf(self.call(response)), {"data": b"[1,2]"})
        self.assertFalse(response.lost)

    def test_non200Drained(self) -> None:
        """A small body of another status is read to its end (the connection can go back to the pool)."""
        response = ChunkedResponse(500, [b"oops", b"!"])
        self.failureResultOf(self.call(response), ProxyError)
        self.assertEqual((response.delivered, response.lost), (2, False))
        self.assertIn("unexpected HTTP status code: 500", self.log.errors()[0])

    def test_timeoutWhileReading(self) -> None:
        """A backend that stops halfway: the timeout fails the call and closes the connection."""
        response = ChunkedResponse(200, [b'{"result": '], end=None)
        d = self.call(response, proxy_rpc_timeout="2s")
        self.clock.advance(1.9)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        self.failureResultOf(d, ProxyError)
        self.assertTrue(response.lost)
        self.assertIn(": timeout", self.log.errors()[0])

    def test_callerCancelsWhileReading(self) -> None:
        response = ChunkedResponse(200, [b'{"result": '], end=None)
        d = self.call(response)
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
        self.assertTrue(response.lost)
        self.assertEqual(self.log.errors(), [])
        self.assertEqual(self.clock.getDelayedCalls(), [])


class _Answers(Resource):
    isLeaf = True

    def render_POST(self, request: Request) -> Union[bytes, int]:
        request.setHeader(b"content-type", b"application/json")
        if request.path == b"/big":
            # 2 MiB and never an end: only the client closing the connection ends this request.
            request.write(b'{"result": {"data": "' + b"x" * (2 << 20))
            return NOT_DONE_YET
        return b'{"result": {"data": "ok"}}'


class RealSocketTests(TestCase):
    timeout = 30
    @defer.inlineCallbacks
    def test_oversizedThenNormal(self) -> Any:
        """
        Over treq's real client: an endless answer fails at the 1 MiB limit and its connection is closed (else
        this test hangs until its timeout); the next call is answered.
        """
        from twisted.internet import reactor

        site = _TrackingSite(_Answers())
        port = reactor.listenTCP(0, site, interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(port.stopListening)
        base = f"http://127.0.0.1:{port.getHost().port}"
        proxy = ProxyClient(Config(proxy_rpc_endpoint=f"{base}/big", proxy_publish_endpoint=f"{base}/small"),
                            reactor, maxResponseSize=1 << 20)

        @defer.inlineCallbacks
        def closeAll() -> Any:
            yield proxy.close()
            yield defer.gatherResults(site.lost)

        self.addCleanup(closeAll)
        failure = yield self.assertFailure(proxy.rpc(context(), "m", None), ProxyError)
        self.assertEqual(failure.error, codes.ERROR_INTERNAL)
        answered = yield proxy.publish(context(), "ch", b"1")
        self.assertEqual(answered["data"], b'"ok"')
        yield site.lost[0]
