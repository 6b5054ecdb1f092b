"""
Fuzz what the Redis engine reads back from Redis, in process: stored publications and client infos, the Lua
scripts' replies (publish, history, presence), PUB/SUB messages, and the RESP parser itself.

A reply of another shape (another program's keys under our prefix, a corrupted value) must become
L{RedisReplyError} (an engine outage for the caller: error 100 and one log line without a traceback), never
another exception; a client whose commands meet such replies gets documented answers and the log no error.
"""

from __future__ import annotations

from typing import Any, Callable

import attrs
import orjson
import txredisapi
from hypothesis import example, given
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock

from httpstream.engines import HistoryResult
from httpstream.engines.redis import (
    RedisBroker,
    RedisPresence,
    RedisReplyError,
    decodeInfo,
    decodePublication,
    encodeInfo,
    encodePublication,
    readHistoryReply,
    readPresenceReply,
    readPublishReply,
    readPubSubMessage,
)
from httpstream.engines.redis.history import HISTORY_SCRIPT as _HISTORY
from httpstream.engines.redis.history import PUBLISH_SCRIPT as _PUBLISH
from httpstream.engines.redis.presence import PRESENCE_GET_SCRIPT as _PRESENCE_GET
from httpstream.engines.redis.resp import INCOMPLETE as _INCOMPLETE
from httpstream.engines.redis.resp import ReplyReader as _ReplyReader
from httpstream.node.frames import PublicationFrames
from httpstream.testing import FakeTransport, encodeCommands
from httpstream.values import ClientInfo, Publication, StreamPosition

from .harness import LogWatch, checkServes, checkTransport, makeFuzzNode, progress
from .strategies import NOW, json_bytes, json_values

_bytes = st.binary(max_size=12) | json_values.map(json_bytes)
_infos = st.builds(
    ClientInfo, user=st.text(max_size=6), client=st.text(max_size=6), connInfo=st.none() | _bytes,
    chanInfo=st.none() | _bytes,
)
_publications = st.builds(
    Publication, data=_bytes, info=st.none() | _infos,
    tags=st.dictionaries(st.text(max_size=4), st.text(max_size=4), max_size=2),
)

# What the RESP parser gives: integers, bulk strings (status replies too), nil, arrays; and text, which no
# parser gives.
_resp = st.recursive(
    st.none() | st.integers(-(2**64), 2**64) | st.binary(max_size=12) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=4),
    max_leaves=10,
)


def _mutate(draw: st.DrawFn, value: Any, values: st.SearchStrategy[Any] = json_values) -> Any:
    """C{value} (a JSON object, or a RESP reply with C{_resp}) with one slot given a random value, or itself."""
    slots: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, item in list(items):
            slots.append((node, key))
            walk(item)

    walk(value)
    if not slots or draw(st.integers(0, 3)) == 0:
        return value
    container, key = draw(st.sampled_from(slots))
    container[key] = draw(values)
    return value


@st.composite
def storedPublications(draw: st.DrawFn) -> bytes:
    """A publication as stored, maybe with one field wrong, or random bytes."""
    if draw(st.integers(0, 9)) == 0:
        return draw(st.binary(max_size=30) | json_values.map(json_bytes))
    stored = orjson.loads(encodePublication(draw(_publications)))
    return json_bytes(_mutate(draw, stored))


@st.composite
def historyReplies(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(_resp)
    payloads = draw(st.lists(storedPublications(), max_size=3))
    top = draw(st.integers(0, 10))
    entries = [[b"%d-0" % (top - len(payloads) + i + 1), [b"d", p]] for i, p in enumerate(payloads)]
    return _mutate(draw, [top, draw(st.sampled_from([b"epoch", b"\xff"])), entries], _resp)


@st.composite
def presenceReplies(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(_resp)
    flat: list[Any] = []
    for info in draw(st.lists(_infos, max_size=3)):
        flat += [draw(st.text(min_size=1, max_size=4)).encode(), encodeInfo(info)]
    return _mutate(draw, flat, _resp)


@st.composite
def publishReplies(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(_resp)
    return _mutate(draw, [draw(st.integers(1, 10)), b"epoch"], _resp)


@st.composite
def pubsubMessages(draw: st.DrawFn) -> bytes:
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.binary(max_size=30))
    if kind < 3:
        return draw(st.sampled_from([b"j", b"l"])) + json_bytes(_mutate(draw, _packedInfo(draw(_infos))))
    prefix = draw(st.sampled_from([b"0::", b"1:epoch:", b"x:epoch:", b"2:\xff:", b"-1::", b""]))
    return prefix + draw(storedPublications())


def _packedInfo(info: ClientInfo) -> Any:
    return orjson.loads(encodeInfo(info))


def _checkPublication(publication: Publication) -> None:
    """A decoded publication can be framed for clients of both codecs (what the node does with it next)."""
    assert isinstance(publication.data, bytes)
    frames = PublicationFrames("hist:room", attrs.evolve(publication, offset=1), None, "epoch")
    frames.frame("protobuf", "plain")
    frames.frame("json", "plain")  # None when data is not JSON: the client is then disconnected with 3506


def _only(call: Callable[[], Any]) -> Any:
    """C{call()}, or None when it raised L{RedisReplyError}; any other exception fails the example."""
    try:
        return call()
    except RedisReplyError:
        return None


@given(data=storedPublications(), info=st.binary(max_size=30) | json_values.map(json_bytes))
@example(data=b'{"data":"1","info":"x"}', info=b"[]")
@example(data=b'{"data":["#"]}', info=b'{"conn_info":5}')
def test_stored_values(data: bytes, info: bytes) -> None:
    progress()
    publication = _only(lambda: decodePublication(data))
    if publication is not None:
        _checkPublication(publication)
    decoded = _only(lambda: decodeInfo(info))
    if decoded is not None:
        assert isinstance(decoded.user, str) and isinstance(decoded.client, str)
        assert all(isinstance(b, (bytes, type(None))) for b in (decoded.connInfo, decoded.chanInfo))


@given(publication=_publications)
def test_round_trip(publication: Publication) -> None:
    progress()
    assert decodePublication(encodePublication(publication)) == publication


@given(history=historyReplies(), presence=presenceReplies(), published=publishReplies(), message=pubsubMessages())
@example(history=[1, b"e", [[b"1-0", [b"d"]]]], presence=[b"c"], published=[b"1", b"e"], message=b"1:e:[]")
@example(history=[1, b"e", [[b"1-0", [[], b"x"]]]], presence=[], published=[], message=b"")
def test_script_replies(history: Any, presence: Any, published: Any, message: bytes) -> None:
    progress()
    result = _only(lambda: readHistoryReply(history))
    if result is not None:
        assert isinstance(result, HistoryResult)
        for publication in result.publications:
            _checkPublication(publication)
    clients = _only(lambda: readPresenceReply(presence))
    if clients is not None:
        assert all(isinstance(k, str) and isinstance(v, ClientInfo) for k, v in clients.items())
    reply = _only(lambda: readPublishReply(published))
    if reply is not None:
        assert isinstance(reply, StreamPosition) and isinstance(reply.offset, int) and isinstance(reply.epoch, str)
    read = _only(lambda: readPubSubMessage(message))
    if read is not None:
        _checkPublication(read[1])


@given(chunks=st.lists(st.binary(max_size=20) | st.sampled_from([b"*1\r\n" * 1100, b"$5\r\nab", b"*-1\r\n"]),
                       max_size=4))
@example(chunks=[b"*1\r\n" * 1100])
def test_reply_reader(chunks: list[bytes]) -> None:
    progress()
    reader = _ReplyReader()
    try:
        for chunk in chunks:
            reader.feed(chunk)
            while reader.gets() is not _INCOMPLETE:
                pass
    except txredisapi.InvalidResponse:
        pass


# What a script answers when the example has no reply left for it.
_VALID = {_HISTORY: [0, b"epoch", []], _PRESENCE_GET: []}


class FakeShard:
    """A shard whose scripts answer with what the example drew, and whose PUB/SUB the example feeds."""

    prefix = "fuzz"
    hashTags = False
    publishCommand = b"PUBLISH"

    def __init__(self, replies: list[Any]) -> None:
        self.replies = replies
        self.handlers: dict[bytes, Callable[[bytes, bytes], None]] = {}
        self.top = 0

    # One Redis serves every channel (IRedisRouter and IRedisRoute at once, as RedisShard is).

    def route(self, channel: str) -> "FakeShard":
        return self

    def everyRoute(self, name: str) -> list["FakeShard"]:
        return [self]

    def whenReady(self) -> Deferred[None]:
        return succeed(None)

    def describe(self) -> str:
        return "fuzz"

    def addReconnectHandler(self, handler: Any) -> None:
        pass

    def execute(self, *args: Any) -> Deferred[Any]:
        return succeed(1)

    def eval(self, script: bytes, keys: Any, args: Any) -> Deferred[Any]:
        if self.replies:
            reply = self.replies.pop(0)
            if isinstance(reply, Exception):
                return fail(reply)
            return succeed(reply)
        if script == _PUBLISH:
            # What Redis does: store (not here) and publish, then answer the stream's top.
            self.top += 1
            handler = self.handlers.get(args[5])
            if handler is not None:
                handler(args[5], b"%d:epoch:%s" % (self.top, args[0]))
            return succeed([self.top, b"epoch"])
        return succeed(_VALID.get(script))

    def subscribe(self, channel: bytes, handler: Callable[[bytes, bytes], None]) -> Deferred[None]:
        self.handlers[channel] = handler
        return succeed(None)

    def unsubscribe(self, channel: bytes) -> Deferred[None]:
        self.handlers.pop(channel, None)
        return succeed(None)


_COMMANDS = [
    {"id": 2, "subscribe": {"channel": "hist:room", "recover": True, "offset": 1, "epoch": "epoch"}},
    {"id": 3, "subscribe": {"channel": "pres:room"}},
    {"id": 4, "publish": {"channel": "hist:room", "data": b"{}"}},
    {"id": 5, "history": {"channel": "hist:room", "limit": 3}},
    {"id": 6, "presence": {"channel": "pres:room"}},
    {"id": 7, "presence_stats": {"channel": "pres:room"}},
]


@given(
    protocol=st.sampled_from(["json", "protobuf"]),
    replies=st.lists(historyReplies() | presenceReplies() | publishReplies()
                     | st.just(RedisReplyError("WRONGTYPE")), max_size=8),
    messages=st.lists(pubsubMessages(), max_size=4),
    commands=st.lists(st.sampled_from(_COMMANDS), min_size=1, max_size=6),
)
def test_client_over_redis(protocol: str, replies: list[Any], messages: list[bytes], commands: list[dict]) -> None:
    shard = FakeShard(replies)
    with LogWatch() as watch:
        clock = Clock()
        clock.advance(NOW)
        node = makeFuzzNode(
            clock=clock,
            broker=RedisBroker(shard),  # type: ignore[arg-type]
            presence=RedisPresence(shard, clock=clock),  # type: ignore[arg-type]
        )
        transport = FakeTransport(protocol)
        client = node.newClient(transport)
        client.handleData(encodeCommands(protocol, [{"id": 1, "connect": {}}]))
        for command in commands:
            client.handleData(encodeCommands(protocol, [command]))
        for message in messages:
            for channel, handler in list(shard.handlers.items()):
                handler(channel, message)
        node.reactor.advance(0)
        checkTransport(transport, serverFault=True)
        client.transportClosed()
        assert not node.hub.channels()
        shard.replies[:] = []
        checkServes(node, protocol)
    watch.check()
