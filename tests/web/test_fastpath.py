"""
C{POST /emulation} past Klein (httpstream/web/fastpath.py) answers exactly as Klein's route does: the same requests,
good and bad, sent to one node's site with the direct route and to a site of the same node without it, give the
same status, headers (in order), body and metrics. Then the direct route on a real socket, pipelined.
"""

from __future__ import annotations

import json
import socket
from typing import Any, Callable, Iterator

import pytest

from httpstream.memoryserver import Response
from httpstream.protocol import client_pb2
from httpstream.protocol.framing import varint_delimit
from httpstream.testing import MemoryServer
from httpstream.web.app import makeSite
from httpstream.web.fastpath import DirectRoutes
from tests.serverprocess import ServerProcess
from tests.transports.test_http_stream import LIMIT, OVERRIDES
from tests.web.helpers import connectStream, serve
from tests.wire import connectStream as connectWireStream

JSON = {"Content-Type": "application/json"}


@pytest.fixture
def server() -> Iterator[MemoryServer]:
    with serve(OVERRIDES) as memory:
        yield memory


def envelope(node: str, session: str, commands: list[Any]) -> bytes:
    return json.dumps({"session": session, "node": node, "data": "\n".join(json.dumps(c) for c in commands)}).encode()


def kleinOnly(server: MemoryServer) -> Any:
    """The resource of a site of the same node whose /emulation goes through Klein like every other route."""
    return makeSite(server.node, api=server.service.api, directRoutes=False).resource


def seen(response: Response) -> tuple[Any, ...]:
    # The Date header carries the second the response was made: the one thing allowed to differ.
    headers = [(name, value) for name, value in response.rawHeaders if name.lower() != b"date"]
    return response.status, headers, response.chunks, response.body, response.complete


def counts(server: MemoryServer) -> dict[str, float]:
    return {
        sample.labels["outcome"]: sample.value
        for metric in server.node.metrics.registry.collect()
        if metric.name == "httpstream_emulation_requests"
        for sample in metric.samples
        if sample.name.endswith("_total")
    }


def bothWays(server: MemoryServer, send: Callable[[], Response]) -> Response:
    """Send the request through the direct route, then through Klein's; assert the answers and counts are one."""
    direct = server.site.resource
    assert isinstance(direct._app, DirectRoutes)  # type: ignore[attr-defined]
    before = counts(server)
    fast = send()
    afterFast = counts(server)
    server.site.resource = kleinOnly(server)
    try:
        routed = send()
    finally:
        server.site.resource = direct
    afterRouted = counts(server)
    assert seen(fast) == seen(routed)
    assert {k: v - before.get(k, 0) for k, v in afterFast.items()} == {
        k: v - afterFast.get(k, 0) for k, v in afterRouted.items()
    }
    return fast


def post(server: MemoryServer, body: bytes, headers: dict[str, str] = JSON, path: str = "/emulation",
         method: str = "POST") -> Callable[[], Response]:
    return lambda: server.request(method, path, headers, body)


def test_deliveredToLiveSessionSameReply(server: MemoryServer) -> None:
    stream, result = connectStream(server)
    n = iter(range(2, 100))

    def send() -> Response:
        return server.request("POST", "/emulation", JSON, envelope(result["node"], result["session"],
                                                                  [{"id": next(n), "subscribe": {"channel": "c"}}]))

    response = bothWays(server, send)
    assert response.status == 204 and response.body == b""
    # Both ran the command on the session: the first subscribe succeeded, the second found it already subscribed.
    assert stream.received()[1:] == [
        {"id": 2, "subscribe": {}},
        {"id": 3, "error": {"code": 105, "message": "already subscribed"}},
    ]


def test_protobufSameReply(server: MemoryServer) -> None:
    stream, result = connectStream(server, protobuf=True)
    command = client_pb2.Command(id=2)
    command.rpc.method = "nothing"
    body = client_pb2.EmulationRequest(node=result.node, session=result.session,
                                       data=varint_delimit([command.SerializeToString()])).SerializeToString()
    assert bothWays(server, post(server, body, {"Content-Type": "application/octet-stream"})).status == 204
    assert len(stream.received()) == 3  # the connect reply, then one reply per way


@pytest.mark.parametrize(
    "name,body,headers,expected",
    [
        ("unknown session", envelope("{node}", "nobody", [{"id": 1, "rpc": {}}]), JSON, 204),
        ("unknown node", envelope("elsewhere", "nobody", [{"id": 1, "rpc": {}}]), JSON, 404),
        ("not json", b"not json", JSON, 400),
        ("json array", b"[1,2]", JSON, 400),
        ("data not a string", b'{"session":"s","node":"n","data":{"id":1}}', JSON, 400),
        ("empty", b"", JSON, 400),
        ("bad protobuf", b"\xff\xff\xff", {"Content-Type": "application/octet-stream"}, 400),
        ("one byte over", b"x" * (LIMIT + 1), JSON, 413),
        ("far over", b"x" * (LIMIT * 20), JSON, 413),
        ("foreign origin", b"{}", {**JSON, "Origin": "https://evil.test"}, 403),
        ("allowed origin", envelope("{node}", "nobody", []), {**JSON, "Origin": "https://a.example.com"}, 204),
        ("same host origin", b"{}", {**JSON, "Origin": "http://127.0.0.1:8000"}, 400),
    ],
)
def test_sameAnswer(server: MemoryServer, name: str, body: bytes, headers: dict[str, str], expected: int) -> None:
    body = body.replace(b"{node}", server.node.id.encode())
    response = bothWays(server, post(server, body, headers))
    assert response.status == expected, name
    if name == "allowed origin":
        assert response.headers["access-control-allow-origin"] == "https://a.example.com"


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "OPTIONS", "HEAD", "PATCH"])
def test_otherMethodsStillKlein(server: MemoryServer, method: str) -> None:
    response = bothWays(server, post(server, b"", {"Origin": "https://a.example.com"}, method=method))
    assert response.status == (204 if method == "OPTIONS" else 405)


@pytest.mark.parametrize("path,expected", [("/emulation?x=1", 400), ("/emulation/", 404), ("/emulationx", 404)])
def test_paths(server: MemoryServer, path: str, expected: int) -> None:
    assert bothWays(server, post(server, b"nope", path=path)).status == expected


def test_hostNotUTF8(server: MemoryServer) -> None:
    connection = server.connect()
    connection.send(b"POST /emulation HTTP/1.1\r\nHost: \xff\xfe\r\nContent-Length: 2\r\n\r\n{}")
    assert connection.response.status == 400


def test_exceptionGetsTheAppsAnswer(server: MemoryServer, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("emulate broke")

    monkeypatch.setattr(server.node, "emulate", broken)
    body = envelope(server.node.id, "s", [{"id": 1, "rpc": {}}])
    response = bothWays(server, post(server, body))
    assert response.status == 500 and response.body == b""
    assert server.logged.count("emulate broke") >= 2
    assert server.request("GET", "/health").status in (200, 404)  # still serving


def test_disabledEmulationStaysKleins404() -> None:
    with serve({"http_stream": False, "sse": False}) as memory:
        response = memory.request("POST", "/emulation", JSON, b"{}")
        assert response.status == 404
        assert memory.site.resource._app._routes == {}  # type: ignore[attr-defined]


# Real sockets


def rawExchange(port: int, requests: list[bytes]) -> list[tuple[int, dict[str, str], bytes]]:
    """Send C{requests} pipelined in one write on one connection; read back one response each."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        sock.sendall(b"".join(requests))
        buffer = b""
        answers = []
        while len(answers) < len(requests):
            while b"\r\n\r\n" not in buffer:
                data = sock.recv(65536)
                if not data:
                    return answers
                buffer += data
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
            if headers.get("transfer-encoding") == "chunked":
                # An empty chunked body (the 404 of an unknown node, as before the direct route) and nothing else.
                while b"0\r\n\r\n" not in buffer:
                    buffer += sock.recv(65536)
                assert buffer.startswith(b"0\r\n\r\n")
                body, buffer = b"", buffer[5:]
            else:
                length = int(headers.get("content-length", "0"))
                while len(buffer) < length:
                    buffer += sock.recv(65536)
                body, buffer = buffer[:length], buffer[length:]
            answers.append((int(lines[0].split()[1]), headers, body))
        return answers
    finally:
        sock.close()


def request(
    port: int, body: bytes, method: bytes = b"POST", extra: bytes = b"", contentType: bytes = b"application/json"
) -> bytes:
    return (
        method + b" /emulation HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: %s\r\n%sContent-Length: %d\r\n\r\n"
        % (port, contentType, extra, len(body)) + body
    )


def test_pipelinedOnARealSocket(startServer: Callable[..., ServerProcess]) -> None:
    server = startServer({"emulation_max_request_body_size": 1000, "allowed_origins": ["https://ok.test"]})
    stream, result = connectWireStream(server.port)
    node, session = result["node"], result["session"]
    good = [request(server.port, envelope(node, session, [{"id": 10 + i, "rpc": {"method": "m"}}])) for i in range(50)]
    bad = [
        request(server.port, b"not json"),
        request(server.port, b"\xff\xff", contentType=b"application/octet-stream"),
        request(server.port, b"x" * 1001),
        request(server.port, b"", method=b"GET"),
        request(server.port, envelope(node, "nobody", [{"id": 1, "rpc": {}}])),
        request(server.port, envelope("elsewhere", session, [{"id": 1, "rpc": {}}])),
        request(server.port, b"{}", extra=b"Origin: https://evil.test\r\n"),
    ]
    answers = rawExchange(server.port, good[:25] + bad + good[25:])
    assert [status for status, _, _ in answers] == [204] * 25 + [400, 400, 413, 405, 204, 404, 403] + [204] * 25
    for status, headers, body in answers:
        assert "server" not in headers and "date" in headers and body == b""
    # Every good command ran, in order, on the session (its replies are errors: no RPC handler here).
    ids = []
    while len(ids) < 50:
        reply = stream.next()
        ids.append(reply["id"])
    assert ids == list(range(10, 60))
    stream.close()
    assert server.alive()
