"""
Tests for L{httpstream.policy.proxy}: Centrifugo v5's HTTP proxy request and response shapes, headers, errors and
timeouts, in memory through C{treq.testing.StubTreq}, plus one exchange over a real socket with treq.
"""

from __future__ import annotations

import base64
import dataclasses
from typing import Any, Callable, Union

import orjson
from treq.testing import StubTreq
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from httpstream.protocol import codes
from httpstream.config import Config
from httpstream.policy.proxy import (
    PROXY_NAMES,
    REFRESH_RETRY_DELAY,
    ProxyClient,
    ProxyConnectRequest,
    ProxyContext,
    ProxyDisconnect,
    ProxyError,
    ProxySubscribeRequest,
    forwardedHeaders,
)
from httpstream.readers import SubOptions

ENDPOINTS = {f"proxy_{name}_endpoint": f"http://backend.test/centrifugo/{name}" for name in PROXY_NAMES}

Reply = Union[dict, bytes, tuple[int, bytes], None]


class Backend(Resource):
    """
    The application backend: records each request (path, headers, JSON body) and answers with C{reply}, which
    is a dict (sent as JSON), raw bytes, a (status, body) pair, or None (never answers).
    """

    isLeaf = True

    def __init__(self, reply: Union[Reply, Callable[[dict], Reply]] = None) -> None:
        super().__init__()
        self.reply = reply
        self.requests: list[dict[str, Any]] = []
        self.pending: list[Request] = []

    def render_POST(self, request: Request) -> Union[bytes, int]:
        body = request.content.read()
        self.requests.append(
            {"path": request.path.decode(), "headers": request.requestHeaders, "body": orjson.loads(body), "raw": body}
        )
        reply = self.reply(orjson.loads(body)) if callable(self.reply) else self.reply
        if reply is None:
            self.pending.append(request)
            return NOT_DONE_YET
        request.setHeader(b"content-type", b"application/json")
        if isinstance(reply, tuple):
            request.setResponseCode(reply[0])
            return reply[1]
        return reply if isinstance(reply, bytes) else orjson.dumps(reply)

    @property
    def last(self) -> dict[str, Any]:
        return self.requests[-1]


def context(**changes: Any) -> ProxyContext:
    ctx = ProxyContext(clientID="c1", transport="websocket", protocol="json", user="u1")
    return dataclasses.replace(ctx, **changes)


class ProxyTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.backend = Backend()
        self.stub = StubTreq(self.backend)
        self.proxy = self.makeProxy()

    def makeProxy(self, **kwargs: Any) -> ProxyClient:
        config = Config(**{**ENDPOINTS, **kwargs.pop("config", {})})
        return ProxyClient(config, self.clock, self.stub, **kwargs)

    def succeed(self, d: "defer.Deferred[Any]") -> Any:
        return self.successResultOf(d)

    def failWith(self, d: "defer.Deferred[Any]", kind: type) -> Any:
        return self.failureResultOf(d, kind).value

    def assertInternal(self, reply: Reply) -> None:
        """With C{reply}, connect, rpc, publish and subscribe fail with error 100, temporary."""
        self.backend.reply = reply
        calls = [
            self.proxy.connect(context(), ProxyConnectRequest()),
            self.proxy.rpc(context(), "m", None),
            self.proxy.publish(context(), "ch", b"{}"),
            self.proxy.subscribe(context(), "ch", ProxySubscribeRequest()),
        ]
        for d in calls:
            error = self.failWith(d, ProxyError)
            self.assertEqual(error.error, codes.ERROR_INTERNAL)
            self.assertTrue(error.error.temporary)


class EnabledTests(ProxyTestCase):
    def test_endpointTurnsProxyOn(self) -> None:
        """A proxy is enabled exactly when its endpoint is set."""
        proxy = ProxyClient(Config(proxy_rpc_endpoint="http://x/rpc"), self.clock, self.stub)
        self.assertEqual([name for name in PROXY_NAMES if proxy.enabled(name)], ["rpc"])
        self.assertTrue(all(self.proxy.enabled(name) for name in PROXY_NAMES))

    def test_unknownName(self) -> None:
        self.assertRaises(ValueError, self.proxy.enabled, "unsubscribe")

    def test_disabledCallIsNotAvailable(self) -> None:
        """Calling a proxy without endpoint sends nothing and fails with 108."""
        proxy = ProxyClient(Config(), self.clock, self.stub)
        error = self.failWith(proxy.rpc(context(), "m", b"{}"), ProxyError)
        self.assertEqual(error.error, codes.ERROR_NOT_AVAILABLE)
        self.assertEqual(self.backend.requests, [])


class ConnectTests(ProxyTestCase):
    def test_requestShape(self) -> None:
        """
        POST JSON to the connect endpoint: client, transport, protocol, encoding, name, version, data embedded
        as JSON, channels; no user (Centrifugo's ConnectRequest has none).
        """
        self.backend.reply = {"result": {"user": "56"}}
        request = ProxyConnectRequest(data=b'{"token": "x", "n": [1, 2]}', name="js", version="5.0.0",
                                      channels=["news"])
        self.succeed(self.proxy.connect(context(user=""), request))
        sent = self.backend.last
        self.assertEqual(sent["path"], "/centrifugo/connect")
        self.assertEqual(sent["headers"].getRawHeaders(b"content-type"), [b"application/json"])
        self.assertEqual(
            sent["body"],
            {"client": "c1", "transport": "websocket", "protocol": "json", "encoding": "json", "name": "js",
             "version": "5.0.0", "data": {"token": "x", "n": [1, 2]}, "channels": ["news"]},
        )
        # The client's bytes are embedded as they came.
        self.assertIn(b'"data":{"token": "x", "n": [1, 2]}', sent["raw"])

    def test_emptyFieldsOmitted(self) -> None:
        """Go's omitempty: no name, version, data or channels when the client sent none."""
        self.backend.reply = {"result": {"user": ""}}
        self.succeed(self.proxy.connect(context(), ProxyConnectRequest()))
        self.assertEqual(
            self.backend.last["body"],
            {"client": "c1", "transport": "websocket", "protocol": "json", "encoding": "json"},
        )

    def test_fullResult(self) -> None:
        """Every ConnectResult field is read; JSON payloads come back as JSON bytes."""
        self.backend.reply = {
            "result": {
                "user": "56",
                "expire_at": 1_700_000_600,
                "info": {"name": "Alex"},
                "data": {"hello": True},
                "channels": ["a", "b"],
                "subs": {
                    "c": {"info": {"x": 1}, "b64data": base64.b64encode(b"\x00\x01").decode(),
                          "override": {"presence": {"value": True}, "join_leave": {"value": False}},
                          "expire_at": 5},
                    "d": {},
                },
                "meta": {"role": "admin"},
            }
        }
        result = self.succeed(self.proxy.connect(context(), ProxyConnectRequest()))
        self.assertEqual(
            result,
            {
                "user": "56",
                "expire_at": 1_700_000_600,
                "info": b'{"name":"Alex"}',
                "data": b'{"hello":true}',
                "channels": ["a", "b"],
                "subs": {
                    "c": SubOptions(info=b'{"x":1}', data=b"\x00\x01",
                                    override={"presence": True, "join_leave": False}, expireAt=5),
                    "d": SubOptions(),
                },
                "meta": b'{"role":"admin"}',
            },
        )

    def test_minimalResult(self) -> None:
        """A result without user accepts the connection as anonymous ("")."""
        self.backend.reply = {"result": {}}
        result = self.succeed(self.proxy.connect(context(), ProxyConnectRequest()))
        self.assertEqual(
            result,
            {"user": "", "expire_at": 0, "info": None, "data": None, "channels": [], "subs": {}, "meta": None},
        )

    def test_base64Wins(self) -> None:
        """b64info / b64data are decoded and preferred over info / data."""
        self.backend.reply = {"result": {"user": "1", "info": {"a": 1}, "b64info": base64.b64encode(b"\xff").decode(),
                                         "b64data": base64.b64encode(b"bin").decode()}}
        result = self.succeed(self.proxy.connect(context(), ProxyConnectRequest()))
        self.assertEqual((result["info"], result["data"]), (b"\xff", b"bin"))

    def test_nullPayloadIsAbsent(self) -> None:
        self.backend.reply = {"result": {"user": "1", "info": None, "data": None, "meta": None}}
        result = self.succeed(self.proxy.connect(context(), ProxyConnectRequest()))
        self.assertEqual((result["info"], result["data"], result["meta"]), (None, None, None))

    def test_noResult(self) -> None:
        """An empty response (or null result) gives no credentials: None."""
        for reply in ({}, {"result": None}):
            self.backend.reply = reply
            self.assertIsNone(self.succeed(self.proxy.connect(context(), ProxyConnectRequest())))

    def test_error(self) -> None:
        """A backend error is the reply error, with its code, message and temporary flag."""
        self.backend.reply = {"error": {"code": 1000, "message": "custom", "temporary": True}}
        error = self.failWith(self.proxy.connect(context(), ProxyConnectRequest()), ProxyError)
        self.assertEqual(error.error, codes.Error(1000, "custom", True))

    def test_errorWithoutMessage(self) -> None:
        self.backend.reply = {"error": {"code": 403}}
        error = self.failWith(self.proxy.connect(context(), ProxyConnectRequest()), ProxyError)
        self.assertEqual(error.error, codes.Error(403, ""))

    def test_disconnect(self) -> None:
        """A backend disconnect wins over an error and a result."""
        self.backend.reply = {"disconnect": {"code": 4501, "reason": "unauthorized"},
                              "error": {"code": 1000, "message": "no"}, "result": {"user": "1"}}
        disconnect = self.failWith(self.proxy.connect(context(), ProxyConnectRequest()), ProxyDisconnect)
        self.assertEqual(disconnect.disconnect, codes.Disconnect(4501, "unauthorized"))

    def test_errorWinsOverResult(self) -> None:
        self.backend.reply = {"error": {"code": 1001, "message": "no"}, "result": {"user": "1"}}
        error = self.failWith(self.proxy.connect(context(), ProxyConnectRequest()), ProxyError)
        self.assertEqual(error.error.code, 1001)


class CallFailureTests(ProxyTestCase):
    """Centrifugo's ``err != nil`` branch: error 100, temporary, for connect, rpc, publish and subscribe."""

    def test_non200(self) -> None:
        """Any status but 200 is a failed call, whatever the body says."""
        for status in (201, 204, 301, 400, 403, 500, 503):
            self.assertInternal((status, b'{"result": {"user": "1"}}'))

    def test_notJSON(self) -> None:
        self.assertInternal(b"<html>oops</html>")

    def test_notAnObject(self) -> None:
        self.assertInternal(b"[1, 2]")
        self.assertInternal(b'"result"')

    def test_wrongTypes(self) -> None:
        """What Go's json.Unmarshal refuses: a field of the wrong type."""
        self.assertInternal({"result": []})
        self.assertInternal({"error": "denied"})
        self.assertInternal({"error": {"code": "403"}})
        self.assertInternal({"error": {"code": -1}})
        self.assertInternal({"disconnect": {"code": 4500, "reason": 7}})

    def test_badBase64(self) -> None:
        self.assertInternal({"result": {"b64data": "%%%", "b64info": "%%%"}})

    def test_connectWrongTypes(self) -> None:
        for result in ({"user": 56}, {"user": "1", "expire_at": "soon"}, {"user": "1", "expire_at": 1.5},
                       {"user": "1", "channels": "a"}, {"user": "1", "subs": []}, {"user": "1", "subs": {"c": 1}},
                       {"user": "1", "subs": {"c": {"override": {"presence": {"value": "yes"}}}}}):
            self.backend.reply = {"result": result}
            error = self.failWith(self.proxy.connect(context(), ProxyConnectRequest()), ProxyError)
            self.assertEqual(error.error, codes.ERROR_INTERNAL)

    def test_failureNamesTheField(self) -> None:
        """The one error line of a failed call says which field of the response was wrong (readers' path)."""
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.backend.reply = {"result": {"user": "1", "subs": {"c": {"expire_at": "soon"}}}}
        self.failWith(self.proxy.connect(context(), ProxyConnectRequest()), ProxyError)
        self.backend.reply = {"result": {"b64info": "%%%"}}
        self.failWith(self.proxy.subscribe(context(), "ch", ProxySubscribeRequest()), ProxyError)
        lines = [formatEvent(e) for e in events if e.get("log_level") == LogLevel.error]
        self.assertEqual(len(lines), 2, lines)
        self.assertIn("result.subs.c.expire_at: expected an integer", lines[0])
        self.assertIn("result.b64info: expected base64", lines[1])
        self.assertFalse([e for e in events if e.get("log_failure") is not None])

    def test_transportError(self) -> None:
        """The HTTP client failing (connection refused, DNS...) is a failed call too."""

        class Broken:
            def post(self, url: str, **kwargs: Any) -> "defer.Deferred[Any]":
                return defer.fail(ConnectionRefusedError("refused"))

        proxy = ProxyClient(Config(**ENDPOINTS), self.clock, Broken())
        error = self.failWith(proxy.rpc(context(), "m", None), ProxyError)
        self.assertEqual(error.error, codes.ERROR_INTERNAL)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_synchronousException(self) -> None:
        class Raising:
            def post(self, url: str, **kwargs: Any) -> "defer.Deferred[Any]":
                raise RuntimeError("boom")

        proxy = ProxyClient(Config(**ENDPOINTS), self.clock, Raising())
        error = self.failWith(proxy.publish(context(), "ch", b"1"), ProxyError)
        self.assertEqual(error.error, codes.ERROR_INTERNAL)

    def test_invalidJSONPayloadNotSent(self) -> None:
        """
        In JSON mode a payload must be JSON (Centrifugo embeds it and Go's encoder refuses anything else): the call
        fails with 100 and nothing is sent.
        """
        for d in (
            self.proxy.rpc(context(protocol="protobuf"), "m", b"\x00\x01"),
            self.proxy.connect(context(), ProxyConnectRequest(data=b"not json")),
            self.proxy.publish(context(), "ch", b"{"),
        ):
            self.assertEqual(self.failWith(d, ProxyError).error, codes.ERROR_INTERNAL)
        self.assertEqual(self.backend.requests, [])


class TimeoutTests(ProxyTestCase):
    def test_timeout(self) -> None:
        """No answer within proxy_<name>_timeout: the request is cancelled and the call fails with 100."""
        proxy = self.makeProxy(config={"proxy_rpc_timeout": "2s"})
        d = proxy.rpc(context(), "m", None)
        self.assertNoResult(d)
        self.clock.advance(1.9)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        self.assertEqual(self.failWith(d, ProxyError).error, codes.ERROR_INTERNAL)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_eachProxyItsTimeout(self) -> None:
        proxy = self.makeProxy(config={"proxy_connect_timeout": "1s", "proxy_subscribe_timeout": "3s"})
        connect = proxy.connect(context(), ProxyConnectRequest())
        subscribe = proxy.subscribe(context(), "ch", ProxySubscribeRequest())
        self.clock.advance(1)
        self.failWith(connect, ProxyError)
        self.assertNoResult(subscribe)
        self.clock.advance(2)
        self.failWith(subscribe, ProxyError)

    def test_answerCancelsTimer(self) -> None:
        self.backend.reply = {"result": {}}
        self.succeed(self.proxy.rpc(context(), "m", None))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_lateAnswer(self) -> None:
        """An answer that arrives after the deadline changes nothing."""
        d = self.proxy.rpc(context(), "m", None)
        self.clock.advance(1)
        self.failWith(d, ProxyError)
        request = self.backend.pending[0]
        if not request.finished and not request._disconnected:
            request.write(b'{"result": {}}')
            request.finish()
        self.stub.flush()

    def test_callerCancels(self) -> None:
        """Cancelling the call (the client went away) fails it with CancelledError, not an error reply."""
        d = self.proxy.subscribe(context(), "ch", ProxySubscribeRequest())
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class EncodingTests(ProxyTestCase):
    def test_binaryEncoding(self) -> None:
        """proxy_binary_encoding: payloads go as b64data with encoding "binary", whatever the bytes."""
        proxy = self.makeProxy(binaryEncoding=True)
        self.backend.reply = {"result": {"b64data": base64.b64encode(b"\x01reply").decode()}}
        result = self.succeed(proxy.rpc(context(protocol="protobuf"), "m", b"\x00\xff"))
        self.assertEqual(result, {"data": b"\x01reply"})
        body = self.backend.last["body"]
        self.assertEqual(body["encoding"], "binary")
        self.assertEqual(body["b64data"], base64.b64encode(b"\x00\xff").decode())
        self.assertNotIn("data", body)

    def test_configKey(self) -> None:
        """The proxy follows a proxy_binary_encoding config key when the config has one."""

        @dataclasses.dataclass
        class WithKey:
            proxy_binary_encoding: bool = True
            proxy_include_connection_meta: bool = True

        proxy = ProxyClient(WithKey(), self.clock, self.stub)  # type: ignore[arg-type]
        self.assertTrue(proxy.binaryEncoding)
        self.assertTrue(proxy.includeMeta)
        self.assertFalse(self.proxy.binaryEncoding)
        self.assertFalse(self.proxy.includeMeta)

    def test_binaryContext(self) -> None:
        """A context marked "binary" uses base64 even when the proxy does not."""
        self.backend.reply = {"result": {"data": {"ok": 1}}}
        result = self.succeed(self.proxy.publish(context(encoding="binary"), "ch", b"\x00"))
        body = self.backend.last["body"]
        self.assertEqual((body["encoding"], body["b64data"]), ("binary", "AA=="))
        self.assertEqual(result["data"], b'{"ok":1}')

    def test_jsonResultForBinaryClient(self) -> None:
        """A JSON result is the JSON's bytes, whatever the client's protocol."""
        self.backend.reply = {"result": {"data": [1, "two"]}}
        result = self.succeed(self.proxy.rpc(context(protocol="protobuf"), "m", b'"x"'))
        self.assertEqual(result["data"], b'[1,"two"]')


class HeaderTests(ProxyTestCase):
    def test_filterCaseInsensitive(self) -> None:
        """Only listed headers pass, matched without regard to case, under Go's canonical names."""
        headers = Headers({b"cookie": [b"sid=1"], b"X-REAL-IP": [b"1.2.3.4"], b"user-agent": [b"ua"],
                           b"x-forwarded-for": [b"a", b"b"]})
        result = forwardedHeaders(["Cookie", "x-real-ip", "X-Forwarded-For"], headers)
        self.assertEqual(result, {"Cookie": ["sid=1"], "X-Real-Ip": ["1.2.3.4"], "X-Forwarded-For": ["a", "b"]})

    def test_mappingInput(self) -> None:
        result = forwardedHeaders(["authorization"], {"Authorization": "Bearer t", b"x-other": [b"no"]})
        self.assertEqual(result, {"Authorization": ["Bearer t"]})

    def test_nothingAllowed(self) -> None:
        self.assertEqual(forwardedHeaders([], {"Cookie": "a"}, {"Authorization": "b"}), {})

    def test_emulatedHeaders(self) -> None:
        """
        Emulated headers (ConnectRequest.headers) pass through the same list; a real header of the same name
        wins; invalid ones are dropped rather than injected.
        """
        result = forwardedHeaders(
            ["authorization", "x-app", "cookie", "x-evil", "bad name"],
            {"Cookie": "real"},
            {"authorization": "Bearer e", "X-App": "v", "Cookie": "emulated", "X-Other": "no",
             "X-Evil": "a\r\nHost: evil", "bad name": "x"},
        )
        self.assertEqual(result, {"Authorization": ["Bearer e"], "X-App": ["v"], "Cookie": ["real"]})

    def test_neverForwarded(self) -> None:
        """Headers the HTTP client owns, and hop-by-hop ones, are not copied even when listed."""
        listed = ["Host", "Content-Length", "Content-Type", "Connection", "Upgrade", "Transfer-Encoding", "Origin"]
        source = {name: "x" for name in listed}
        self.assertEqual(forwardedHeaders(listed, source, dict(source)), {"Origin": ["x"]})

    def test_headersFor(self) -> None:
        proxy = self.makeProxy(config={"proxy_http_headers": ["Cookie", "Authorization"]})
        self.assertEqual(
            proxy.headersFor(Headers({b"cookie": [b"a=1"], b"origin": [b"o"]}), {"Authorization": "t"}),
            {"Cookie": ["a=1"], "Authorization": ["t"]},
        )

    def test_sentWithEveryRequest(self) -> None:
        """
        The context's headers that the proxy forwards go out with every proxy request; Content-Type is always
        application/json.
        """
        proxy = self.makeProxy(config={"proxy_http_headers": ["cookie", "X-Multi", "Content-Type"]})
        ctx = context(headers={"Cookie": ["sid=42"], "X-Multi": ["1", "2"], "Content-Type": ["text/plain"],
                               "X-Other": ["not forwarded"]})
        self.backend.reply = {"result": {}}
        for d in (proxy.rpc(ctx, "m", None), proxy.refresh(ctx),
                  proxy.subRefresh(ctx, "ch"), proxy.connect(ctx, ProxyConnectRequest())):
            self.succeed(d)
            headers = self.backend.last["headers"]
            self.assertEqual(headers.getRawHeaders(b"cookie"), [b"sid=42"])
            self.assertEqual(headers.getRawHeaders(b"x-multi"), [b"1", b"2"])
            self.assertEqual(headers.getRawHeaders(b"content-type"), [b"application/json"])
            self.assertIsNone(headers.getRawHeaders(b"x-other"))

    def test_bytesRoundTrip(self) -> None:
        """Header bytes that are not UTF-8 reach the backend unchanged."""
        proxy = self.makeProxy(config={"proxy_http_headers": ["Cookie"]})
        ctx = context(headers=forwardedHeaders(["cookie"], Headers({b"cookie": [b"v=\xe9\xff"]})))
        self.backend.reply = {"result": {}}
        self.succeed(proxy.rpc(ctx, "m", None))
        self.assertEqual(self.backend.last["headers"].getRawHeaders(b"cookie"), [b"v=\xe9\xff"])


class RefreshTests(ProxyTestCase):
    def test_requestShape(self) -> None:
        """client, transport, protocol, encoding, and user (always present, even empty); no meta by default."""
        self.backend.reply = {"result": {"expire_at": 1}}
        self.succeed(self.proxy.refresh(context(user="", meta=b'{"m":1}')))
        self.assertEqual(
            self.backend.last["body"],
            {"client": "c1", "transport": "websocket", "protocol": "json", "encoding": "json", "user": ""},
        )
        self.assertEqual(self.backend.last["path"], "/centrifugo/refresh")

    def test_meta(self) -> None:
        """proxy_include_connection_meta: the connection meta rides along, as JSON."""
        proxy = self.makeProxy(includeMeta=True)
        self.backend.reply = {"result": {"expire_at": 1}}
        self.succeed(proxy.refresh(context(meta=b'{"m": [1]}')))
        self.assertEqual(self.backend.last["body"]["meta"], {"m": [1]})
        self.succeed(proxy.refresh(context(meta=None)))
        self.assertNotIn("meta", self.backend.last["body"])

    def test_result(self) -> None:
        self.backend.reply = {"result": {"expire_at": 1_700_003_600, "info": {"v": 2}, "meta": {"k": "v"}}}
        self.assertEqual(
            self.succeed(self.proxy.refresh(context())),
            {"expired": False, "expire_at": 1_700_003_600, "info": b'{"v":2}', "meta": b'{"k":"v"}'},
        )
        self.backend.reply = {"result": {"b64info": "AQI="}}
        self.assertEqual(self.succeed(self.proxy.refresh(context()))["info"], b"\x01\x02")

    def test_expired(self) -> None:
        self.backend.reply = {"result": {"expired": True, "expire_at": 5, "info": {"ignored": 1}}}
        self.assertEqual(
            self.succeed(self.proxy.refresh(context())),
            {"expired": True, "expire_at": 0, "info": None, "meta": None},
        )

    def test_noResultIsExpired(self) -> None:
        """No result means expired; an error or disconnect in the response is not acted upon."""
        for reply in ({}, {"error": {"code": 1000, "message": "x"}}, {"disconnect": {"code": 4500, "reason": "r"}}):
            self.backend.reply = reply
            self.assertTrue(self.succeed(self.proxy.refresh(context()))["expired"])

    def test_failedCallRetriesInAMinute(self) -> None:
        """A failed call keeps the connection for another minute rather than disconnecting it."""
        for reply in ((500, b""), b"nope", {"result": {"expire_at": "x"}}):
            self.backend.reply = reply
            self.assertEqual(
                self.succeed(self.proxy.refresh(context())),
                {"expired": False, "expire_at": 1_700_000_000 + REFRESH_RETRY_DELAY, "info": None, "meta": None},
            )

    def test_timeoutRetries(self) -> None:
        d = self.proxy.refresh(context())
        self.clock.advance(1)
        self.assertEqual(self.succeed(d)["expire_at"], 1_700_000_001 + REFRESH_RETRY_DELAY)

    def test_badBase64IsInternal(self) -> None:
        self.backend.reply = {"result": {"expire_at": 5, "b64info": "!!"}}
        self.assertEqual(self.failWith(self.proxy.refresh(context()), ProxyError).error, codes.ERROR_INTERNAL)


class RPCTests(ProxyTestCase):
    def test_requestShape(self) -> None:
        self.backend.reply = {"result": {"data": {"answer": "2019"}}}
        result = self.succeed(self.proxy.rpc(context(), "getCurrentPrice", b'{"params": {"object_id": 12}}'))
        self.assertEqual(result, {"data": b'{"answer":"2019"}'})
        self.assertEqual(self.backend.last["path"], "/centrifugo/rpc")
        self.assertEqual(
            self.backend.last["body"],
            {"client": "c1", "transport": "websocket", "protocol": "json", "encoding": "json", "user": "u1",
             "method": "getCurrentPrice", "data": {"params": {"object_id": 12}}},
        )

    def test_noMethodNoData(self) -> None:
        """An unnamed RPC without data: method and data are omitted."""
        self.backend.reply = {"result": {}}
        self.assertEqual(self.succeed(self.proxy.rpc(context(), "", None)), {"data": None})
        self.assertNotIn("method", self.backend.last["body"])
        self.assertNotIn("data", self.backend.last["body"])

    def test_noResult(self) -> None:
        self.backend.reply = {}
        self.assertEqual(self.succeed(self.proxy.rpc(context(), "m", b"1")), {"data": None})

    def test_base64Result(self) -> None:
        self.backend.reply = {"result": {"data": {"a": 1}, "b64data": "AP8="}}
        self.assertEqual(self.succeed(self.proxy.rpc(context(), "m", b"1")), {"data": b"\x00\xff"})

    def test_errorAndDisconnect(self) -> None:
        self.backend.reply = {"error": {"code": 404, "message": "no such thing"}}
        self.assertEqual(self.failWith(self.proxy.rpc(context(), "m", b"1"), ProxyError).error,
                         codes.Error(404, "no such thing"))
        self.backend.reply = {"disconnect": {"code": 4000, "reason": "go away"}}
        self.assertEqual(self.failWith(self.proxy.rpc(context(), "m", b"1"), ProxyDisconnect).disconnect,
                         codes.Disconnect(4000, "go away"))

    def test_meta(self) -> None:
        proxy = self.makeProxy(includeMeta=True)
        self.backend.reply = {"result": {}}
        self.succeed(proxy.rpc(context(meta=b'{"a":1}'), "m", None))
        self.assertEqual(self.backend.last["body"]["meta"], {"a": 1})


class PublishTests(ProxyTestCase):
    def test_requestShape(self) -> None:
        self.backend.reply = {"result": {}}
        result = self.succeed(self.proxy.publish(context(), "chat:index", b'{"input":"hello"}'))
        self.assertEqual(result, {"data": None, "skip_history": False})
        self.assertEqual(self.backend.last["path"], "/centrifugo/publish")
        self.assertEqual(
            self.backend.last["body"],
            {"client": "c1", "transport": "websocket", "protocol": "json", "encoding": "json", "user": "u1",
             "channel": "chat:index", "data": {"input": "hello"}},
        )

    def test_override(self) -> None:
        """Result data replaces the client's; here data wins over b64data (Centrifugo's publish handler)."""
        self.backend.reply = {"result": {"data": {"input": "HELLO"}, "b64data": "AA==", "skip_history": True}}
        self.assertEqual(self.succeed(self.proxy.publish(context(), "c", b"1")),
                         {"data": b'{"input":"HELLO"}', "skip_history": True})
        self.backend.reply = {"result": {"b64data": "AA=="}}
        self.assertEqual(self.succeed(self.proxy.publish(context(), "c", b"1"))["data"], b"\x00")

    def test_denied(self) -> None:
        self.backend.reply = {"error": {"code": 103, "message": "permission denied"}}
        self.assertEqual(self.failWith(self.proxy.publish(context(), "c", b"1"), ProxyError).error,
                         codes.ERROR_PERMISSION_DENIED)


class SubscribeTests(ProxyTestCase):
    def test_requestShape(self) -> None:
        self.backend.reply = {"result": {}}
        request = ProxySubscribeRequest(token="sub-token", data=b'{"x":1}')
        result = self.succeed(self.proxy.subscribe(context(), "chat:index", request))
        self.assertEqual(result, {"info": None, "data": None, "override": {}, "expire_at": 0})
        self.assertEqual(self.backend.last["path"], "/centrifugo/subscribe")
        self.assertEqual(
            self.backend.last["body"],
            {"client": "c1", "transport": "websocket", "protocol": "json", "encoding": "json", "user": "u1",
             "channel": "chat:index", "token": "sub-token", "data": {"x": 1}},
        )

    def test_result(self) -> None:
        self.backend.reply = {"result": {
            "info": {"role": "mod"}, "b64data": "AQ==", "expire_at": 1_700_000_100,
            "override": {"presence": {"value": True}, "join_leave": {"value": True},
                         "force_push_join_leave": {}, "force_recovery": {"value": False},
                         "force_positioning": None, "unknown": {"value": True}},
        }}
        self.assertEqual(
            self.succeed(self.proxy.subscribe(context(), "c", ProxySubscribeRequest())),
            {"info": b'{"role":"mod"}', "data": b"\x01", "expire_at": 1_700_000_100,
             "override": {"presence": True, "join_leave": True, "force_push_join_leave": False,
                          "force_recovery": False}},
        )

    def test_denied(self) -> None:
        self.backend.reply = {"error": {"code": 403, "message": "permission denied"}}
        error = self.failWith(self.proxy.subscribe(context(), "c", ProxySubscribeRequest()), ProxyError)
        self.assertEqual(error.error, codes.Error(403, "permission denied"))


class SubRefreshTests(ProxyTestCase):
    def test_requestShape(self) -> None:
        self.backend.reply = {"result": {"expire_at": 1_700_000_900, "info": {"c": 1}}}
        self.assertEqual(
            self.succeed(self.proxy.subRefresh(context(), "chat:index")),
            {"expired": False, "expire_at": 1_700_000_900, "info": b'{"c":1}'},
        )
        self.assertEqual(self.backend.last["path"], "/centrifugo/sub_refresh")
        self.assertEqual(
            self.backend.last["body"],
            {"client": "c1", "transport": "websocket", "protocol": "json", "encoding": "json", "user": "u1",
             "channel": "chat:index"},
        )

    def test_expiredAndMissing(self) -> None:
        for reply in ({"result": {"expired": True}}, {}, {"error": {"code": 1}}):
            self.backend.reply = reply
            self.assertEqual(self.succeed(self.proxy.subRefresh(context(), "c")),
                             {"expired": True, "expire_at": 0, "info": None})

    def test_failedCallRetries(self) -> None:
        self.backend.reply = (502, b"bad gateway")
        self.assertEqual(self.succeed(self.proxy.subRefresh(context(), "c")),
                         {"expired": False, "expire_at": 1_700_000_000 + REFRESH_RETRY_DELAY, "info": None})


class _RecordingBackend(Resource):
    """A backend on a real socket: answers each proxy path, keeps the raw requests."""

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[tuple[bytes, Headers, bytes]] = []

    def render_POST(self, request: Request) -> bytes:
        body = request.content.read()
        self.requests.append((request.path, request.requestHeaders, body))
        request.setHeader(b"content-type", b"application/json")
        if request.path == b"/connect":
            return orjson.dumps({"result": {"user": "42", "expire_at": 1900000000, "info": {"name": "Ann"},
                                            "b64data": base64.b64encode(b"hi").decode(), "channels": ["news"]}})
        if request.path == b"/rpc":
            data = orjson.loads(body)["data"]
            return orjson.dumps({"result": {"data": {"echo": data}}})
        if request.path == b"/publish":
            return orjson.dumps({"error": {"code": 1003, "message": "read only", "temporary": True}})
        request.setResponseCode(500)
        return b"no"


class _TrackingSite(Site):
    """A Site that tells when each of its connections is gone, so a test can end with a clean reactor."""

    def __init__(self, resource: Resource) -> None:
        super().__init__(resource)
        self.lost: list[defer.Deferred[None]] = []

    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)
        lost: defer.Deferred[None] = defer.Deferred()
        self.lost.append(lost)
        connectionLost = protocol.connectionLost

        def connectionLostAndTell(reason: Any) -> None:
            connectionLost(reason)
            lost.callback(None)

        protocol.connectionLost = connectionLostAndTell
        return protocol


class RealSocketTests(TestCase):
    """One exchange of each kind with a backend on 127.0.0.1, through treq's real HTTP client."""

    @defer.inlineCallbacks
    def test_wire(self) -> Any:
        from twisted.internet import reactor

        backend = _RecordingBackend()
        site = _TrackingSite(backend)
        port = reactor.listenTCP(0, site, interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(port.stopListening)
        base = f"http://127.0.0.1:{port.getHost().port}"
        config = Config(proxy_connect_endpoint=f"{base}/connect", proxy_rpc_endpoint=f"{base}/rpc",
                        proxy_publish_endpoint=f"{base}/publish", proxy_refresh_endpoint=f"{base}/refresh",
                        proxy_http_headers=("Cookie", "Authorization"))
        proxy = ProxyClient(config, reactor)

        @defer.inlineCallbacks
        def closeAll() -> Any:
            yield proxy.close()
            yield defer.gatherResults(site.lost)

        self.addCleanup(closeAll)
        headers = proxy.headersFor(Headers({b"cookie": [b"session=abc"], b"user-agent": [b"sdk"]}),
                                   {"Authorization": "Bearer emulated"})
        ctx = ProxyContext(clientID="c-1", transport="websocket", protocol="json", headers=headers)

        connected = yield proxy.connect(ctx, ProxyConnectRequest(data=b'{"k": "v"}', name="js", version="5"))
        self.assertEqual(connected["user"], "42")
        self.assertEqual(connected["expire_at"], 1900000000)
        self.assertEqual(connected["info"], b'{"name":"Ann"}')
        self.assertEqual(connected["data"], b"hi")
        self.assertEqual(connected["channels"], ["news"])

        ctx = dataclasses.replace(ctx, user="42")
        answered = yield proxy.rpc(ctx, "echo", b'[1, {"two": 2}]')
        self.assertEqual(orjson.loads(answered["data"]), {"echo": [1, {"two": 2}]})

        failure = yield self.assertFailure(proxy.publish(ctx, "news", b'"x"'), ProxyError)
        self.assertEqual(failure.error, codes.Error(1003, "read only", True))

        refreshed = yield proxy.refresh(ctx)  # the backend answers 500: one more minute
        self.assertFalse(refreshed["expired"])
        self.assertEqual(refreshed["expire_at"], int(reactor.seconds()) + REFRESH_RETRY_DELAY)

        paths = [path for path, _, _ in backend.requests]
        self.assertEqual(paths, [b"/connect", b"/rpc", b"/publish", b"/refresh"])
        for _, sent, _ in backend.requests:
            self.assertEqual(sent.getRawHeaders(b"content-type"), [b"application/json"])
            self.assertEqual(sent.getRawHeaders(b"cookie"), [b"session=abc"])
            self.assertEqual(sent.getRawHeaders(b"authorization"), [b"Bearer emulated"])
            self.assertNotEqual(sent.getRawHeaders(b"user-agent"), [b"sdk"])  # not listed: not forwarded
        self.assertEqual(
            orjson.loads(backend.requests[0][2]),
            {"client": "c-1", "transport": "websocket", "protocol": "json", "encoding": "json",
             "name": "js", "version": "5", "data": {"k": "v"}},
        )
        self.assertEqual(
            orjson.loads(backend.requests[1][2]),
            {"client": "c-1", "transport": "websocket", "protocol": "json", "encoding": "json", "user": "42",
             "method": "echo", "data": [1, {"two": 2}]},
        )
