"""
Fuzz the HTTP entry points of the emulated transports in process (twisted.web resources and an in-memory
request): the http_stream connect body, the SSE connect (C{cf_connect} query and POST body), and C{/emulation}
bodies in JSON and Protobuf for a live session.

Every example: no exception, no log event at error level, a documented status (never 500), every message on the
stream a documented reply, nothing left on the node once the peer is gone, and the node still serves a client.
"""

from __future__ import annotations

import json
from typing import Any, Optional

from hypothesis import example, given
from hypothesis import strategies as st

from httpstream.node.node import Node
from httpstream.origin import OriginChecker
from httpstream.protocol import client_pb2
from httpstream.transports.emulation import EmulationResource
from httpstream.transports.http_stream import HTTPStreamResource
from httpstream.transports.sse import CONNECT_PARAM, SSEResource

from .harness import LogWatch, checkServes, makeFuzzNode
from .strategies import connect_frame, encode_json, frames, json_bytes, json_values, mostly
from .web import FuzzRequest, render, streamReplies

# Small, so that bodies over the limit (413) are cheap to make.
MAX_BODY = 2048

_CONTENT_TYPES = st.sampled_from(
    [None, b"application/json", b"application/octet-stream", b"application/octet-stream; charset=x", b"text/plain"]
)
_METHODS = mostly(st.just(b"POST"), st.sampled_from([b"GET", b"OPTIONS", b"PUT", b"HEAD", b"DELETE"]), 10)


def _bodies(protocol: str) -> st.SearchStrategy[bytes]:
    return mostly(
        mostly(connect_frame(protocol), frames(protocol)),
        st.binary(max_size=32) | st.just(b"x" * (MAX_BODY + 1)),
    )


def _finish(node: Node, requests: list[FuzzRequest]) -> None:
    """The peers go away: nothing of their connections may stay on the node."""
    clock = node.reactor
    clock.advance(0)
    for request in requests:
        request.lose()
    clock.advance(0)
    assert not node.clients, node.clients
    assert not node.hub.channels(), node.hub.channels()
    assert len(node.registry) == 0


def _protocolOf(request: FuzzRequest) -> str:
    return "protobuf" if request.getHeader(b"content-type") == b"application/octet-stream" else "json"


@given(
    method=_METHODS,
    contentType=_CONTENT_TYPES,
    body=st.sampled_from(["json", "protobuf"]).flatmap(_bodies),
)
def test_http_stream(method: bytes, contentType: Optional[bytes], body: bytes) -> None:
    with LogWatch() as watch:
        node = makeFuzzNode()
        resource = HTTPStreamResource(node, OriginChecker(()), MAX_BODY)
        headers = {b"content-type": contentType} if contentType else {}
        request = FuzzRequest(method, body, headers)
        render(resource, request)
        node.reactor.advance(0)
        if request.code == 200:
            streamReplies(_protocolOf(request), request)
        _finish(node, [request])
        checkServes(node, "json")
    watch.check()


def _queryValues() -> st.SearchStrategy[list[bytes]]:
    return st.lists(mostly(connect_frame("json"), frames("json") | st.binary(max_size=32)), max_size=2)


@given(
    method=mostly(st.sampled_from([b"GET", b"POST"]), st.sampled_from([b"OPTIONS", b"PUT", b"HEAD"]), 10),
    values=_queryValues(),
    body=_bodies("json"),
    contentType=_CONTENT_TYPES,
)
@example(method=b"GET", values=[], body=b"", contentType=None)
def test_sse(method: bytes, values: list[bytes], body: bytes, contentType: Optional[bytes]) -> None:
    with LogWatch() as watch:
        node = makeFuzzNode()
        resource = SSEResource(node, OriginChecker(()), MAX_BODY)
        headers = {b"content-type": contentType} if contentType else {}
        args = {CONNECT_PARAM: values} if values else {}
        request = FuzzRequest(method, body if method == b"POST" else b"", headers, args)
        render(resource, request)
        node.reactor.advance(0)
        if request.code == 200:
            streamReplies("json", request, sse=True)
        _finish(node, [request])
        checkServes(node, "json")
    watch.check()


# -- /emulation


def _openSession(node: Node, protocol: str) -> tuple[FuzzRequest, str]:
    """An http_stream connection past its connect: its request and session id."""
    resource = HTTPStreamResource(node, OriginChecker(()), MAX_BODY)
    headers = {b"content-type": b"application/octet-stream"} if protocol == "protobuf" else {}
    connect = encode_json({"id": 1, "connect": {}}) if protocol == "json" else b"\x04\x08\x01\x22\x00"
    request = FuzzRequest(b"POST", connect, headers)
    render(resource, request)
    node.reactor.advance(0)
    (reply,) = streamReplies(protocol, request)
    return request, reply["connect"]["session"]


@st.composite
def _jsonEnvelopes(draw: st.DrawFn, protocol: str, session: str, node: str) -> bytes:
    """A JSON /emulation body: right or wrong session and node, data of the right type or not; or random."""
    kind = draw(st.integers(0, 9))
    if kind == 9:
        return draw(st.binary(max_size=32) | json_values.map(json_bytes))
    envelope: dict[str, Any] = {
        "session": draw(mostly(st.just(session), st.text(max_size=8) | json_values)),
        "node": draw(mostly(st.just(node), st.text(max_size=8) | json_values)),
    }
    data = draw(frames(protocol))
    envelope["data"] = draw(mostly(st.just(data.decode("utf-8", "replace")), json_values))
    for key in draw(st.lists(st.sampled_from(["session", "node", "data"]), max_size=1)):
        del envelope[key]
    if draw(st.integers(0, 9)) == 0:
        envelope[draw(st.text(max_size=6))] = draw(json_values)
    return json.dumps(envelope).encode()


@st.composite
def _protobufEnvelopes(draw: st.DrawFn, protocol: str, session: str, node: str) -> bytes:
    """A Protobuf /emulation body (a bare EmulationRequest), maybe with bytes flipped or cut; or random."""
    if draw(st.integers(0, 9)) == 9:
        return draw(st.binary(max_size=32))
    request = client_pb2.EmulationRequest(
        session=draw(mostly(st.just(session), st.text(max_size=8))),
        node=draw(mostly(st.just(node), st.text(max_size=8))),
        data=draw(frames(protocol)),
    )
    body = bytearray(request.SerializeToString())
    if body and draw(st.integers(0, 9)) == 0:
        at = draw(st.integers(0, len(body) - 1))
        if draw(st.booleans()):
            body[at] ^= draw(st.integers(1, 255))
        else:
            del body[at:]
    return bytes(body)


@given(protocol=st.sampled_from(["json", "protobuf"]), data=st.data())
def test_emulation(protocol: str, data: st.DataObject) -> None:
    with LogWatch() as watch:
        node = makeFuzzNode()
        stream, session = _openSession(node, protocol)
        resource = EmulationResource(node, OriginChecker(()), MAX_BODY)
        requests = data.draw(st.lists(st.tuples(
            mostly(st.just(b"POST"), st.sampled_from([b"GET", b"OPTIONS", b"PUT"]), 10),
            mostly(st.just(protocol == "protobuf"), st.booleans()),
        ), min_size=1, max_size=3))
        for method, protobuf in requests:
            envelopes = _protobufEnvelopes if protobuf else _jsonEnvelopes
            body = data.draw(mostly(envelopes(protocol, session, node.id), st.just(b"x" * (MAX_BODY + 1)), 20))
            headers = {b"content-type": b"application/octet-stream"} if protobuf else {}
            request = FuzzRequest(method, body, headers)
            render(resource, request)
            node.reactor.advance(0)
            # Answered, whatever the commands did (they may have ended the stream).
            assert request.finished, request.code
            assert request.code in (204, 400, 404, 405, 413) or method == b"OPTIONS", request.code
        streamReplies(protocol, stream)
        _finish(node, [stream])
        checkServes(node, protocol)
    watch.check()
