"""
L{httpstream.testing.MemoryServer}: the node makeService builds, served over in-memory connections on a
MemoryReactorClock.
"""

from __future__ import annotations

import orjson
from twisted.internet.testing import MemoryReactorClock

from httpstream import testing
from httpstream.config import config_from_dict
from httpstream.logs import threshold
from httpstream.memoryserver import encodeRequest
from httpstream.protocol import client_pb2
from httpstream.tap import HTTPStreamService
from httpstream.testing import MemoryServer
from tests.web.helpers import BASE_CONFIG, connectStream, emulate, serve

CONNECT = b'{"id":1,"connect":{}}'


def test_exported() -> None:
    assert "MemoryServer" in testing.__all__ and testing.MemoryServer is MemoryServer


def test_builtByMakeServiceAndStarted() -> None:
    reactor = MemoryReactorClock()
    with MemoryServer(dict(BASE_CONFIG, port=8123), reactor) as server:
        assert isinstance(server.service, HTTPStreamService) and server.service.running
        assert server.reactor is reactor and server.node.reactor is reactor
        # It listens on the memory reactor, as twistd would on a real one: the port of the config.
        ((port, factory, _, _),) = reactor.tcpServers
        assert port == 8123 and factory is server.site
        assert "listening on http://" in server.logged and ":8123" in server.logged
    assert not server.service.running


def test_takesAConfig() -> None:
    config, _ = config_from_dict(dict(BASE_CONFIG, health=True))
    with MemoryServer(config) as server:
        assert server.request(b"GET", b"/health").body == b"{}"


def test_requestWholeResponse() -> None:
    with serve({"health": True}) as server:
        response = server.request(b"GET", b"/health")
        assert response.complete
        assert (response.status, response.headers["content-type"], response.body) == (200, "application/json", b"{}")
        # Chunked on the wire (no length given), read back whole.
        assert response.headers["transfer-encoding"] == "chunked" and response.chunks == [b"{}"]
        assert (b"Content-Type", b"application/json") in response.rawHeaders
        # The connection was closed once read.
        assert server.connections == []


def test_headHasNoBody() -> None:
    with serve({"health": True}) as server:
        response = server.request("HEAD", "/health")
        assert response.complete and response.status == 200 and response.body == b""


def test_contentLengthBody() -> None:
    with serve() as server:
        response = server.request("POST", "/connection/http_stream", body=b"x" * 70_000)
        assert response.status == 413 and response.headers["content-length"] == "0" and response.complete


def test_streamReadIncrementallyAndTimeMoves() -> None:
    with serve({"ping_interval": "10s", "pong_timeout": "5s"}) as server:
        stream = server.open(b"POST", b"/connection/http_stream", {"Content-Type": "application/json"}, CONNECT)
        assert stream.status == 200 and not stream.response.complete
        (reply,) = stream.received()
        assert reply["connect"]["ping"] == 10
        # The first ping comes between half the interval and the interval (jittered), not before.
        server.advance(4.9)
        assert len(stream.received()) == 1
        server.advance(5.1)
        assert stream.received()[1:] == [{}]
        server.advance(5)
        assert stream.received()[-1] == {"push": {"disconnect": {"code": 3012, "reason": "no pong"}}}
        assert stream.response.complete


def test_bytesMoveBetweenConnections() -> None:
    """A command on one connection (an /emulation POST) reaches another (a stream) before the call returns."""
    with serve() as server:
        subscriber, result = connectStream(server)
        emulate(server, result["node"], result["session"], [{"id": 2, "subscribe": {"channel": "c"}}])
        publisher, other = connectStream(server)
        emulate(server, other["node"], other["session"], [{"id": 2, "publish": {"channel": "c", "data": {"n": 1}}}])
        assert subscriber.received()[-1]["push"]["pub"]["data"] == {"n": 1}


def test_protobufFramesDecoded() -> None:
    with serve() as server:
        stream, result = connectStream(server, protobuf=True)
        assert isinstance(stream.received()[0], client_pb2.Reply) and result.client


def test_clientCloseIsSeenByTheServer() -> None:
    with serve() as server:
        stream, result = connectStream(server)
        assert len(server.node.clients) == 1
        stream.close()
        assert stream.closed and len(server.node.clients) == 0
        assert f"client {result['client']} went away" in server.logged


def test_rawBytesInParts() -> None:
    """A request written in pieces (here a chunked upload) through connect() and send()."""
    with serve() as server:
        connection = server.connect()
        connection.send(b"POST /connection/http_stream HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        assert connection.status == 0
        connection.send(b"%x\r\n%s\r\n" % (len(CONNECT), CONNECT))
        connection.send(b"0\r\n\r\n")
        assert connection.status == 200 and "connect" in connection.received()[0]
        connection.close()


def test_encodeRequest() -> None:
    assert encodeRequest("POST", "/x", {"A": "b"}, b"hi", host=b"h:1") == (
        b"POST /x HTTP/1.1\r\nHost: h:1\r\nContent-Length: 2\r\nA: b\r\n\r\nhi"
    )
    # A length or a Host given is not written twice.
    assert encodeRequest(b"GET", b"/", {"host": "a", "Content-Length": "0"}) == (
        b"GET / HTTP/1.1\r\nhost: a\r\nContent-Length: 0\r\n\r\n"
    )


def test_closeDisconnectsClientsAndRestoresTheLogLevel() -> None:
    before = threshold.level
    server = serve({"log_level": "error"})
    assert threshold.level != before
    stream, _ = connectStream(server)
    server.close()
    # Shut down as twistd stops: 3001 "shutdown" to every client, and the stream ends.
    assert stream.received()[-1] == {"push": {"disconnect": {"code": 3001, "reason": "shutdown"}}}
    assert stream.response.complete and stream.closed
    assert threshold.level == before
    server.close()  # twice is harmless


def test_sseEventsDecoded() -> None:
    with serve({"sse": True}) as server:
        stream = server.open("GET", "/connection/sse?cf_connect=" + CONNECT.decode().replace('"', "%22"))
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert "connect" in stream.received()[0]
        assert orjson.loads(stream.response.chunks[1][len(b"data: "):]) == stream.received()[0]
