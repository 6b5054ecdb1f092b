"""
Fuzzing the server HTTP API in process: ``POST /api/<method>`` and ``/api/batch`` through the Klein app (StubTreq,
no sockets) on a memory node with connected users, with requests built from each method's schema (Centrifugo's
apiproto field types): valid, almost valid (one field of the wrong type), and random JSON or bytes.

For every input: no unhandled exception, no log event at error level or above, a reply that is 200 with a result
or a documented error code (the status of that code in transport error mode), or 400; and a valid publish works
afterwards.
"""

from __future__ import annotations

import io
import json
from typing import Any, Optional

import jwt
import orjson
from hypothesis import example, given
from hypothesis import strategies as st
from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.web.test.requesthelper import DummyRequest

from httpstream.serverapi.api import ServerAPI
from httpstream.serverapi.http import TRANSPORT_STATUS, APIHandler
from httpstream.origin import OriginChecker
from httpstream.testing import FakeTransport, connectClient, encodeCommands, makeNode
from httpstream.web.app import makeApp
from tests.fuzz import progress
from tests.fuzz.fieldtypes import INT32, INT64, UINT32, UINT64, almostValid, json_values, valid

SECRET = "fuzz-api-secret-0123456789abcdef0123456789"
KEY = "fuzz-api-key"
SETTINGS: dict[str, Any] = {
    "token_hmac_secret_key": SECRET,
    "api_key": KEY,
    "allow_subscribe_for_client": True,
    "namespaces": [
        {"name": "chat", "presence": True, "join_leave": True, "allow_subscribe_for_client": True,
         "history_size": 10, "history_ttl": "1h"},
        {"name": "plain"},
    ],
}
DOCUMENTED = {102, 104, 107, 108, 112}  # the API's error codes for what a caller sends; 100 would be a fault
USERS = ["alice", "bob"]

# Field types of apiproto/api.proto (see tests/fuzz/fieldtypes.py for the notation).
BOOL_VALUE = {"value": "bool"}
POSITION = {"offset": ("int", UINT64), "epoch": "str"}
TARGET = {"user": "user", "client": "str", "session": "str"}
PUBLISH = {"data": "json", "b64data": "b64", "skip_history": "bool", "tags": ("map", "str"),
           "idempotency_key": "str"}
SCHEMA: dict[str, dict[str, Any]] = {
    "publish": {"channel": "channel", **PUBLISH},
    "broadcast": {"channels": ("list", "channel"), **PUBLISH},
    "subscribe": {**TARGET, "channel": "channel", "info": "json", "b64info": "b64", "data": "json", "b64data": "b64",
                  "expire_at": ("int", INT64), "recover_since": POSITION,
                  "override": {k: BOOL_VALUE for k in ("presence", "join_leave", "force_recovery",
                                                       "force_positioning", "force_push_join_leave")}},
    "unsubscribe": {**TARGET, "channel": "channel"},
    "disconnect": {**TARGET, "whitelist": ("list", "str"), "disconnect": {"code": ("int", UINT32), "reason": "str"}},
    "refresh": {**TARGET, "expired": "bool", "expire_at": ("int", INT64), "info": "json", "b64info": "b64"},
    "presence": {"channel": "channel"},
    "presence_stats": {"channel": "channel"},
    "history": {"channel": "channel", "limit": ("int", INT32), "since": POSITION, "reverse": "bool"},
    "history_remove": {"channel": "channel"},
    "channels": {"pattern": "str"},
    "info": {},
    "rpc": {"method": "str", "params": "json"},
}

def requests(method: str) -> st.SearchStrategy[Any]:
    schema = SCHEMA[method]
    return valid(schema) | almostValid(schema) | json_values


methods = st.sampled_from(sorted(SCHEMA))
calls = methods.flatmap(lambda m: st.tuples(st.just(m), requests(m)))
commands = calls.map(lambda c: {c[0]: c[1]}) | st.builds(lambda m, r: {m: r}, st.text(max_size=8), json_values) \
    | json_values
batches = st.fixed_dictionaries(
    {"commands": st.lists(commands, max_size=5)}, optional={"parallel": st.booleans() | st.integers()}
) | json_values


class Harness:
    """A node with users connected, its API behind the Klein app, and a log observer."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.node = makeNode(SETTINGS, self.clock)
        self.node.rpc.register("echo", lambda ctx, data: data)
        self.api = ServerAPI(self.node)
        self.handler = APIHandler(self.api, self.node.config)
        self.treq = StubTreq(makeApp(self.node, OriginChecker(()), self.api).resource())
        self.runs = 0
        self.events: list[dict[str, Any]] = []

    def __enter__(self) -> "Harness":
        globalLogPublisher.addObserver(self.events.append)
        return self

    def __exit__(self, *exc: Any) -> None:
        globalLogPublisher.removeObserver(self.events.append)

    def ensureUsers(self) -> None:
        """Each user has two connections (the API's user methods act on them; disconnect takes them away)."""
        for user in USERS:
            while sum(1 for c in self.node.clients.values() if c.user == user) < 2:
                token = jwt.encode({"sub": user}, SECRET, algorithm="HS256")
                client, _ = connectClient(self.node, FakeTransport(), token=token)
                client.handleData(encodeCommands("json", [{"id": 2, "subscribe": {"channel": "chat:a"}}]))
                self.clock.advance(0)

    def post(self, method: str, body: bytes, transportMode: bool = False) -> tuple[int, bytes]:
        """
        The API's HTTP handler on an in-memory request (cheap enough for 100,000 inputs); every 50th input also
        goes through the whole Klein app (StubTreq), which must answer the same status.
        """
        headers = {"X-API-Key": KEY}
        if transportMode:
            headers["X-Centrifugo-Error-Mode"] = "transport"
        request = DummyRequest([method.encode()])
        request.method = b"POST"
        request.content = io.BytesIO(body)
        for name, value in headers.items():
            request.requestHeaders.setRawHeaders(name, [value])
        rendered = self.handler.handle(request, method)
        self.clock.advance(0)
        content = self.result(rendered) if isinstance(rendered, Deferred) else rendered
        status = request.responseCode or 200
        self.runs += 1
        if self.runs % 50 == 0:
            whole = self.postThroughApp(method, body, headers)
            assert whole[0] == status or (method == "" and whole[0] == 404), (whole, status)
        return status, content

    def postThroughApp(self, method: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
        d = self.treq.request("POST", f"http://127.0.0.1/api/{method}", data=body, headers=headers)
        self.treq.flush()
        self.clock.advance(0)
        response = self.result(d)
        return response.code, self.result(response.content())

    @staticmethod
    def result(d: Any) -> Any:
        results: list[Any] = []
        d.addBoth(results.append)
        assert results, "no answer"
        if hasattr(results[0], "raiseException"):
            results[0].raiseException()
        return results[0]

    def check(self, method: str, status: int, content: bytes, transportMode: bool) -> None:
        bad = [formatEvent(e) for e in self.events
               if e.get("log_level", LogLevel.info) >= LogLevel.error or e.get("log_failure") is not None]
        assert not bad, bad
        if status == 400 and content == b"":
            return
        if method == "" and status == 404:
            return  # /api/ is no route
        if status == 500:
            # Only for binary data in a result (a JSON reply cannot embed it), told in one warning.
            warnings = [formatEvent(e) for e in self.events if e.get("log_level") == LogLevel.warn]
            assert any("cannot be embedded" in w for w in warnings), (content, warnings)
            return
        if transportMode and status != 200:
            error = orjson.loads(content)
            assert error["code"] in DOCUMENTED, error
            assert status == TRANSPORT_STATUS[error["code"]], (status, error)
            return
        assert status == 200, (status, content)
        document = orjson.loads(content)
        if method == "batch" and "error" not in document:
            for reply in document["replies"]:
                assert len(reply) == 1, reply
                if "error" in reply:
                    assert reply["error"]["code"] in DOCUMENTED, reply
            return
        if "error" in document:
            assert document["error"]["code"] in DOCUMENTED, document
        else:
            assert set(document) == {"result"}, document
            for response in document["result"].get("responses", []) if method == "broadcast" else []:
                if "error" in response:
                    assert response["error"]["code"] in DOCUMENTED, response

    def stillServes(self) -> None:
        """A valid publish works."""
        status, content = self.post("publish", b'{"channel":"chat:a","data":{"still":"works"}}')
        assert status == 200 and "offset" in orjson.loads(content)["result"], (status, content)


_harness: Optional[Harness] = None


def harness() -> Harness:
    """One node for the whole run: state piles up as it would on a server (history, idempotency keys)."""
    global _harness
    if _harness is None:
        _harness = Harness()
    _harness.events.clear()
    _harness.ensureUsers()
    return _harness


def run(method: str, body: bytes, transportMode: bool, test: str = "api") -> None:
    progress.tick(test)
    h = harness()
    with h:
        status, content = h.post(method, body, transportMode)
        h.check(method, status, content, transportMode)
        h.stillServes()


@given(call=calls, transportMode=st.booleans())
@example(call=("publish", {"channel": "chat:a", "data": 1, "idempotency_key": ["a"]}), transportMode=False)
@example(call=("disconnect", {"user": "alice", "disconnect": {"code": 70000}}), transportMode=False)
@example(call=("disconnect", {"user": "alice", "disconnect": "x", "whitelist": 5}), transportMode=True)
@example(call=("history", {"channel": "chat:a", "limit": "5", "since": {"offset": "1"}}), transportMode=False)
@example(call=("refresh", {"user": "alice", "expire_at": 2**63 - 1}), transportMode=False)
@example(call=("rpc", {"method": "echo", "params": [[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]}),
         transportMode=False)
@example(call=("subscribe", {"user": "alice", "channel": "chat:b", "expire_at": -(2**63),
                             "recover_since": {"offset": 2**64 - 1}}), transportMode=False)
def test_method(call: tuple[str, Any], transportMode: bool) -> None:
    """Every method with valid, almost valid and random requests."""
    method, request = call
    run(method, json.dumps(request).encode(), transportMode, "test_method")


@given(request=batches, transportMode=st.booleans())
@example(request={"commands": [{"batch": {"commands": []}}, None, {"publish": {"channel": 5}}]}, transportMode=False)
@example(request={"commands": [{"publish": {"channel": "chat:b", "b64data": "huBX"}},
                               {"history": {"channel": "chat:b", "limit": 1}}]}, transportMode=False)
def test_batch(request: Any, transportMode: bool) -> None:
    """/api/batch with commands of any method (or none), sequential and parallel."""
    run("batch", json.dumps(request).encode(), transportMode, "test_batch")


@given(method=methods | st.text(max_size=10).filter(lambda m: "/" not in m and "?" not in m and "#" not in m),
       body=st.binary(max_size=64) | json_values.map(lambda v: json.dumps(v).encode()))
@example(method="publish", body=b"[" * 2000)
def test_anyBody(method: str, body: bytes) -> None:
    """Any bytes to any method name."""
    run(method, body, False, "test_anyBody")


@given(depth=st.integers(1, 1000), field=st.sampled_from(["data", "info", "extra"]))
@example(depth=300, field="data")
def test_deepRawJSON(depth: int, field: str) -> None:
    """Raw JSON (or an unknown field) nested up to what the parser takes: published, ignored or 400."""
    nested = b"[" * depth + b"]" * depth
    body = b'{"channel":"chat:a","user":"alice","data":1,"' + field.encode() + b'":' + nested + b"}"
    for method in ("publish", "refresh"):
        run(method, body, False, "test_deepRawJSON")
