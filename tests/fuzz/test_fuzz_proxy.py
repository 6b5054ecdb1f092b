"""
Fuzzing proxy responses in process: what the application backend answers to each of the six proxies
(connect, refresh, rpc, publish, subscribe, sub_refresh), built from Centrifugo's proxyproto response schemas
(valid, almost valid, random JSON or bytes, and statuses other than 200), through a fake HTTP client.

Two ways in: L{ProxyClient} alone (each outcome is the documented one: a result of the documented shape, the
backend's error or disconnect, or error 100 for a failed call; refresh and sub_refresh fall back to "one more
minute"), and a L{Client} on a node whose proxies answer so (connect, subscribe, publish, rpc, then time passing
for refresh and sub_refresh). For every input: no exception, no traceback in the log, error lines only the proxy's
one line per failed call; and a client whose backend answers well connects afterwards.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import event, example, given
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

from httpstream.client.factory import ClientFactory
from httpstream.config import Config, config_from_dict
from httpstream.node.node import Node
from httpstream.policy.proxy import (
    PROXY_NAMES,
    ProxyClient,
    ProxyConnectRequest,
    ProxyContext,
    ProxyDisconnect,
    ProxyError,
    ProxySubscribeRequest,
)
from httpstream.testing import FakeTransport, encodeCommands
from tests.fuzz import progress
from tests.fuzz.fieldtypes import INT64, UINT32, almostValid, json_values, valid
from tests.policy.bodyfakes import ChunkedResponse

OVERRIDE = {k: {"value": "bool"} for k in ("presence", "join_leave", "force_recovery", "force_positioning",
                                           "force_push_join_leave")}
SUB_OPTIONS = {"info": "json", "b64info": "b64", "data": "json", "b64data": "b64", "override": OVERRIDE,
               "expire_at": ("int", INT64)}
# proxyproto's *Result messages.
RESULTS: dict[str, dict[str, Any]] = {
    "connect": {"user": "user", "expire_at": ("int", INT64), "info": "json", "b64info": "b64", "data": "json",
                "b64data": "b64", "channels": ("list", "channel"), "subs": ("map", SUB_OPTIONS), "meta": "json"},
    "refresh": {"expired": "bool", "expire_at": ("int", INT64), "info": "json", "b64info": "b64", "meta": "json"},
    "rpc": {"data": "json", "b64data": "b64"},
    "publish": {"data": "json", "b64data": "b64", "skip_history": "bool"},
    "subscribe": SUB_OPTIONS,
    "sub_refresh": {"expired": "bool", "expire_at": ("int", INT64), "info": "json", "b64info": "b64"},
}
ERROR = {"code": ("int", UINT32), "message": "str", "temporary": "bool"}
DISCONNECT = {"code": ("int", UINT32), "reason": "str"}


def responses(name: str) -> st.SearchStrategy[tuple[int, bytes]]:
    """A backend's answer to proxy C{name}: (HTTP status, body)."""
    envelope = {"result": RESULTS[name], "error": ERROR, "disconnect": DISCONNECT}
    good = st.fixed_dictionaries({"result": valid(RESULTS[name])})
    # Mostly good answers, so that a client gets far enough for the next proxies to be asked.
    documents = st.one_of(
        good, good, good, st.fixed_dictionaries({"result": almostValid(RESULTS[name])}), valid(envelope),
        almostValid(envelope), json_values,
    )
    bodies = st.one_of(*[documents.map(lambda d: json.dumps(d).encode())] * 4, st.binary(max_size=32))
    statuses = st.sampled_from([200] * 7 + [204, 400, 500, 503])
    return st.tuples(statuses, bodies)


everyResponse = st.fixed_dictionaries({name: responses(name) for name in PROXY_NAMES})


class Backend:
    """A fake HTTP client: answers each proxy endpoint with the (status, body) set for it."""

    def __init__(self) -> None:
        self.answers: dict[str, tuple[int, bytes]] = {}

    def post(self, url: str, data: bytes | None = None, **kwargs: Any) -> Deferred[ChunkedResponse]:
        name = url.rsplit("/", 1)[-1]
        code, body = self.answers.get(name, (200, b"{}"))
        return succeed(ChunkedResponse(code, [body]))


class Observed:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __enter__(self) -> "Observed":
        globalLogPublisher.addObserver(self.events.append)
        return self

    def __exit__(self, *exc: Any) -> None:
        globalLogPublisher.removeObserver(self.events.append)

    def check(self, calls: int) -> None:
        """No traceback; error lines only the proxy's own (one per failed call at most)."""
        failures = [formatEvent(e) for e in self.events if e.get("log_failure") is not None]
        assert not failures, failures
        errors = [e for e in self.events if e.get("log_level", LogLevel.info) >= LogLevel.error]
        foreign = [formatEvent(e) for e in errors if not e.get("log_namespace", "").startswith("httpstream.policy.proxy")]
        assert not foreign, foreign
        assert len(errors) <= calls, [formatEvent(e) for e in errors]


ENDPOINTS = {f"proxy_{name}_endpoint": f"http://backend.test/{name}" for name in PROXY_NAMES}
CTX = ProxyContext(clientID="c1", transport="websocket", user="u1")


def _outcome(d: Deferred[Any]) -> Any:
    results: list[Any] = []
    d.addBoth(results.append)
    assert results, "no outcome"
    return results[0]


@given(answers=everyResponse)
@example(answers={**{n: (200, b"{}") for n in PROXY_NAMES},
                  "connect": (200, b'{"result":{"user":"u","subs":{"c":{"expire_at":"x"}}}}'),
                  "refresh": (200, b'{"result":{"b64info":"%%%"}}'),
                  "publish": (200, b'{"result":{"data":null,"b64data":5}}')})
@example(answers={n: (200, b'{"result":{"user":"u","data":' + b"[" * 300 + b"]" * 300 + b"}}") for n in PROXY_NAMES})
def test_proxyClient(answers: dict[str, tuple[int, bytes]]) -> None:
    """Each proxy's outcome for any answer is one the caller knows how to act on."""
    progress.tick("test_proxyClient")
    backend = Backend()
    backend.answers = answers
    clock = Clock()
    proxy = ProxyClient(Config(**ENDPOINTS), clock, backend)
    with Observed() as observed:
        outcomes = {
            "connect": _outcome(proxy.connect(CTX, ProxyConnectRequest(data=b"{}", channels=("a",)))),
            "refresh": _outcome(proxy.refresh(CTX)),
            "rpc": _outcome(proxy.rpc(CTX, "m", b"1")),
            "publish": _outcome(proxy.publish(CTX, "ch", b"1")),
            "subscribe": _outcome(proxy.subscribe(CTX, "ch", ProxySubscribeRequest(token="t"))),
            "sub_refresh": _outcome(proxy.subRefresh(CTX, "ch")),
        }
        observed.check(len(outcomes))
    assert clock.getDelayedCalls() == []  # every timeout cancelled
    for name, outcome in outcomes.items():
        if hasattr(outcome, "check"):
            allowed = (ProxyError,) if name in ("refresh", "sub_refresh") else (ProxyError, ProxyDisconnect)
            assert outcome.check(*allowed), (name, outcome)
            if name in ("refresh", "sub_refresh"):
                assert outcome.value.error.code == 100, outcome  # only a bad b64info
            continue
        if name == "connect":
            assert outcome is None or (type(outcome["user"]) is str and type(outcome["subs"]) is dict), outcome
        elif name in ("refresh", "sub_refresh"):
            assert type(outcome["expired"]) is bool and type(outcome["expire_at"]) is int, outcome
        else:
            assert all(v is None or type(v) in (bytes, bool, int, dict) for v in outcome.values()), outcome


SETTINGS: dict[str, Any] = {
    "name": "fuzz",
    "token_hmac_secret_key": "fuzz-proxy-secret-0123456789abcdef0123456789",
    "ping_interval": -1,
    "client_expired_close_delay": "1s",
    **ENDPOINTS,
    "namespaces": [{"name": "px", "proxy_subscribe": True, "proxy_publish": True, "proxy_sub_refresh": True,
                    "history_size": 5, "history_ttl": "1h"}],
}


def _node(backend: Backend, clock: Clock) -> Node:
    config, warnings = config_from_dict(SETTINGS)
    assert not warnings, warnings
    return Node(config, clock, proxy=ProxyClient(config, clock, backend), clientFactory=ClientFactory(clock))


@given(answers=everyResponse, protocol=st.sampled_from(["json", "protobuf"]),
       later=st.sampled_from([0, 30, 61, 3600, 10**9]))
@example(answers={**{n: (200, b'{"result":{}}') for n in PROXY_NAMES},
                  "connect": (200, b'{"result":{"user":"u","expire_at":9223372036854775807,"channels":["px:a"],'
                                   b'"subs":{"px:b":{"expire_at":-9223372036854775808}}}}'),
                  "subscribe": (200, b'{"result":{"expire_at":1}}')},
         protocol="json", later=10**9)
@example(answers={**{n: (200, b'{"result":{}}') for n in PROXY_NAMES},
                  "connect": (200, b'{"disconnect":{"code":4294967295,"reason":""}}')},
         protocol="protobuf", later=0)
# Found by the long run: a subscription expiring past the uint32 of the reply's ttl (year 2160).
@example(answers={**{n: (200, b'{"result":{}}') for n in PROXY_NAMES},
                  "subscribe": (200, b'{"result": {"info": null, "expire_at": 5994967296}}')},
         protocol="json", later=0)
def test_clientThroughProxies(answers: dict[str, tuple[int, bytes]], protocol: str, later: int) -> None:
    """A client connecting, subscribing, publishing and calling RPC while the backend answers anything."""
    progress.tick("test_clientThroughProxies")
    backend = Backend()
    backend.answers = answers
    clock = Clock()
    clock.advance(1_700_000_000)
    node = _node(backend, clock)
    with Observed() as observed:
        transport = FakeTransport(protocol)
        client = node.newClient(transport)
        client.handleData(encodeCommands(protocol, [{"id": 1, "connect": {"data": b'{"hi":1}', "name": "fuzz"}}]))
        clock.advance(0)
        event(f"connected: {client.connected}")
        if client.connected:
            client.handleData(encodeCommands(protocol, [
                {"id": 2, "subscribe": {"channel": "px:a"}},
                {"id": 3, "publish": {"channel": "px:a", "data": b'{"n":1}'}},
                {"id": 4, "rpc": {"method": "m", "data": b"{}"}},
            ]))
            clock.advance(0)
            clock.advance(later)
            clock.advance(later)
            event(f"still connected after {later}s: {client.connected}")
        transport.replies()  # every frame decodes
        observed.check(calls=8)

        # A well-behaved backend: the node still connects and serves a client.
        backend.answers = {n: (200, b'{"result":{"user":"ok"}}') for n in PROXY_NAMES}
        good = FakeTransport("json")
        goodClient = node.newClient(good)
        goodClient.handleData(encodeCommands("json", [{"id": 1, "connect": {}},
                                                      {"id": 2, "subscribe": {"channel": "px:ok"}}]))
        clock.advance(0)
        replies = good.replies()
        assert "connect" in replies[0] and "subscribe" in replies[1], replies
