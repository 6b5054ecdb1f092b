"""
What the protocol layer gives the unidirectional transports: the bare ConnectRequest reader, pushes encoded bare
or in a Reply, the Disconnect push, and the disconnect a connect error becomes.
"""

from __future__ import annotations

import orjson
import pytest

from httpstream.protocol import JSON, PROTOBUF, DecodeError, client_pb2, codes
from httpstream.protocol.schema import json_connect_request


def test_connectRequest() -> None:
    assert json_connect_request(b"null") == {}
    assert json_connect_request(b"{}") == {}
    assert json_connect_request(b'{"token":"t","data":{"a":[1]},"subs":{"c":{"recover":true,"offset":3}},"x":1}') == {
        "token": "t", "data": b'{"a":[1]}', "subs": {"c": {"recover": True, "offset": 3}},
    }


@pytest.mark.parametrize("data", [b"", b"{", b"[]", b'"s"', b'{"token":1}', b'{"subs":{"c":5}}'])
def test_connectRequestRefused(data: bytes) -> None:
    with pytest.raises(DecodeError):
        json_connect_request(data)


def test_pushBareOrInAReply() -> None:
    push = {"channel": "c", "pub": {"data": b'{"x":1}'}}
    assert orjson.loads(JSON.encode_push(push, unidirectional=True)) == {"channel": "c", "pub": {"data": {"x": 1}}}
    assert orjson.loads(JSON.encode_push(push)) == {"push": {"channel": "c", "pub": {"data": {"x": 1}}}}
    bare = client_pb2.Push.FromString(PROTOBUF.encode_push(push, unidirectional=True))
    assert (bare.channel, bare.pub.data) == ("c", b'{"x":1}')
    assert client_pb2.Reply.FromString(PROTOBUF.encode_push(push)).push.channel == "c"


def test_disconnectPush() -> None:
    assert JSON.encode_disconnect(codes.DISCONNECT_SLOW, True) == b'{"disconnect":{"code":3008,"reason":"slow"}}'
    # A code past the protocol's uint32 is told as 3011, as a WebSocket close frame would have it.
    fallback = orjson.loads(JSON.encode_disconnect(codes.Disconnect(1 << 33, "x")))
    assert fallback == {"push": {"disconnect": {"code": 3011, "reason": "force reconnect"}}}


def test_connectErrorAsDisconnect() -> None:
    assert codes.unidirectionalDisconnect(codes.ERROR_TOKEN_EXPIRED) == codes.DISCONNECT_EXPIRED
    assert codes.unidirectionalDisconnect(codes.ERROR_PERMISSION_DENIED) == codes.DISCONNECT_PERMISSION_DENIED
    assert codes.unidirectionalDisconnect(codes.ERROR_INTERNAL) == codes.DISCONNECT_SERVER_ERROR
