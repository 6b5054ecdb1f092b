"""
Tests for L{httpstream.transports.wslean}: an open WebSocket connection keeps only what differs from its class in
its dict, reads its options from the factory, and behaves as before (the real Site and autobahn, in memory).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import pytest
from autobahn.websocket.protocol import WebSocketServerProtocol

from httpstream.testing import MemoryServer
from httpstream.transports import websocket, wslean
from httpstream.transports.websocket import CentrifugeWebSocketProtocol
from tests.web.helpers import TEXT, MemoryWebSocket, serverFixture

PING, PONG = 0x9, 0xA

server = serverFixture({"ping_interval": "2s", "pong_timeout": "1s"})


def openConnection(server: MemoryServer) -> tuple[MemoryWebSocket, CentrifugeWebSocketProtocol]:
    ws = MemoryWebSocket(server, headers={"X-Custom": "kept"})
    assert ws.status == 101
    ws.send(b'{"id":1,"connect":{}}')
    ((opcode, _),) = ws.frames()
    assert opcode == TEXT
    (client,) = server.node.clients.values()
    protocol = client.transport._connection  # type: ignore[attr-defined]
    assert isinstance(protocol, CentrifugeWebSocketProtocol)
    return ws, protocol


def test_openConnectionKeepsLittle(server: MemoryServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Once open: no copied options, no handshake leftovers, no empty queue, no value at its class's default. The
    frames that come later set some of autobahn's per-frame state again; the dict stays small.
    """
    compacted: list[dict[str, Any]] = []
    real = wslean.compact

    def recording(connection: Any) -> None:
        real(connection)
        compacted.append(dict(vars(connection)))

    monkeypatch.setattr(websocket, "compact", recording)
    ws, protocol = openConnection(server)
    (state,) = compacted
    assert not set(state) & set(WebSocketServerProtocol.CONFIG_ATTRS)
    assert not set(state) & set(wslean.HANDSHAKE_ONLY)
    assert wslean.QUEUE not in state
    assert not [name for name, value in wslean.AT_REST.items() if state.get(name, object()) is value]
    # A dict of up to 42 entries has the 64-slot table; autobahn's was past 100 entries.
    server.advance(2)
    ws.send(b"{}")  # a pong
    assert len(vars(protocol)) <= 42, sorted(vars(protocol))
    ws.close()


def test_optionsComeFromTheFactory(server: MemoryServer) -> None:
    ws, protocol = openConnection(server)
    for name in WebSocketServerProtocol.CONFIG_ATTRS:
        assert getattr(protocol, name) is getattr(protocol.factory, name), name
    # Our settings (websocket.py), as autobahn would have copied them.
    assert protocol.closeHandshakeTimeout == 5 and protocol.failByDrop is False
    assert protocol.maxMessagePayloadSize == 0
    ws.close()


def test_headersStayWithTheTransport(server: MemoryServer) -> None:
    ws, protocol = openConnection(server)
    assert protocol.http_headers is None
    headers = protocol._transport.requestHeaders  # type: ignore[union-attr]
    assert headers["x-custom"] == "kept" and headers["upgrade"] == "websocket"
    ws.close()


def test_atRestIsWhereAutobahnStarts(server: MemoryServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Every starting value L{AT_REST} names is the one autobahn gives (seen just before the compaction), and most of
    them are there: an autobahn that starts elsewhere fails here, not in production.
    """
    seen: list[dict[str, Any]] = []
    real = wslean.compact

    def recording(connection: Any) -> None:
        seen.append(dict(vars(connection)))
        real(connection)

    monkeypatch.setattr(websocket, "compact", recording)
    ws, _ = openConnection(server)
    (before,) = seen
    present = [name for name in wslean.AT_REST if name in before]
    assert len(present) >= 25, present
    for name in present:
        assert before[name] == wslean.AT_REST[name], name
    for name in wslean.HANDSHAKE_ONLY:
        assert name in before, name
    assert isinstance(before[wslean.QUEUE], deque)
    ws.close()


def test_namesShadowNoMethod() -> None:
    """A class attribute put in for a state value must not hide one of autobahn's methods or properties."""
    for name in (*wslean.AT_REST, *wslean.HANDSHAKE_ONLY, wslean.QUEUE, *WebSocketServerProtocol.CONFIG_ATTRS):
        original = getattr(WebSocketServerProtocol, name, None)
        assert not callable(original) and not isinstance(original, property), name


def test_trafficGoesOnAfterCompaction(server: MemoryServer) -> None:
    """Pings, the connection's state changes, and the close handshake work on the compacted connection."""
    ws, protocol = openConnection(server)
    server.advance(2)
    ((opcode, payload),) = ws.frames()
    assert (opcode, payload) == (TEXT, b"{}")
    ws.send(b"{}")  # the pong
    server.advance(1.5)
    assert not ws.frames()
    ws.send(b"", opcode=PING)
    assert ws.frames()[-1][0] == PONG  # autobahn's answer
    ws.close()
    server.settle()
    assert protocol.state == WebSocketServerProtocol.STATE_CLOSED
    assert not server.node.clients


def test_synchronousWriteMakesItsQueue(server: MemoryServer) -> None:
    """Autobahn's queued (synchronous) write path still has a queue: made on the spot, the write goes out."""
    ws, protocol = openConnection(server)
    protocol.sendData(b"\x89\x00", sync=True)  # a ping frame, through autobahn's queue
    assert isinstance(vars(protocol)[wslean.QUEUE], deque)
    server.settle()
    assert ws.frames()[-1][0] == PING
    ws.close()
