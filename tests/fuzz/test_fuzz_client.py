"""
Fuzz the client's command boundary (L{httpstream.client.client.Client.handleData}) in both codecs: frames of valid,
almost valid and random commands, before and after a connect, with time passing between them (pings, pongs,
expiry, presence updates).

Every example: no exception out of handleData, no log event at error level, every reply and disconnect a
documented one, the client leaves nothing behind once closed, and the node still serves a new client.
"""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from httpstream.testing import FakeTransport

from .harness import LogWatch, checkGone, checkServes, checkTransport, makeFuzzNode
from .strategies import connect_frame, frames, mostly

_STEPS = st.sampled_from([0.0, 0.0, 0.0, 1.0, 30.0, 100.0])


def _run(protocol: str, websocket: bool, first: bytes, rest: list[tuple[bytes, float]]) -> None:
    with LogWatch() as watch:
        node = makeFuzzNode()
        clock = node.reactor
        if websocket:
            transport = FakeTransport(protocol, emulated=False, pushDisconnect=False, name="websocket")
        else:
            transport = FakeTransport(protocol)
        client = node.newClient(transport)
        client.handleData(first)
        clock.advance(0)
        for frame, wait in rest:
            client.handleData(frame)
            clock.advance(wait)
        checkTransport(transport)
        client.transportClosed()
        checkGone(node, client)
        checkServes(node, protocol)
    watch.check()


@given(
    first=mostly(connect_frame("json"), frames("json")),
    rest=st.lists(st.tuples(frames("json"), _STEPS), max_size=3),
    websocket=st.booleans(),
)
@example(first=b'{"id":1,"connect":{}}', rest=[(b'{"id":2,"history":{"channel":"hist:room","since":{}}}', 0.0)],
         websocket=False)
def test_commands_json(first: bytes, rest: list[tuple[bytes, float]], websocket: bool) -> None:
    _run("json", websocket, first, rest)


@given(
    first=mostly(connect_frame("protobuf"), frames("protobuf")),
    rest=st.lists(st.tuples(frames("protobuf"), _STEPS), max_size=3),
    websocket=st.booleans(),
)
def test_commands_protobuf(first: bytes, rest: list[tuple[bytes, float]], websocket: bool) -> None:
    _run("protobuf", websocket, first, rest)
