"""
The HTTP-level part of the security list of issue 14 (item 5) on the in-memory server: the real Site, Klein app
and resources, fed the bytes an attacker would send: bodies one byte over every size limit (413), JSON nested
100,000 deep on every entry point, path traversal on the demo page, no Python exception text in any reply.

test_security_tokens.py has the tokens and channel rights, tests/serverapi/test_apikey.py the server API's key,
tests/transports/test_origins.py ``allowed_origins``; tests/test_security.py keeps what needs a real process (peak
memory under huge uploads; no secret in the log of a node on a password-protected Redis).
"""

from __future__ import annotations

import json
from urllib.parse import quote

import orjson
import pytest

from httpstream.protocol.framing import varint_delimit
from httpstream.serverapi import http as httpapi
from httpstream.testing import MemoryServer
from tests.web.helpers import MemoryWebSocket, closeFrame, emulate, openStream
from tests.web.security import (
    API_KEY, BIG, EXCEPTION_TEXT, Session, api, disconnectCode, request, securityServer, status,
)

server = pytest.fixture(securityServer, name="server")


# Body size limits


LIMITED_ROUTES = [
    ("/connection/http_stream", {"Content-Type": "application/json"}),
    ("/connection/sse", {}),
    ("/emulation", {"Content-Type": "application/json"}),
    ("/api/publish", {"X-API-Key": API_KEY}),
]


@pytest.mark.parametrize("path, headers", LIMITED_ROUTES)
def test_justOverTheLimit413(server: MemoryServer, path: str, headers: dict[str, str]) -> None:
    limit = httpapi.MAX_BODY if path.startswith("/api") else BIG
    assert sendHuge(server, path, limit + 1, headers) == 413
    assert sendHuge(server, path, limit + 1, headers, chunked=True) == 413


def sendHuge(server: MemoryServer, path: str, size: int, headers: dict[str, str], chunked: bool = False) -> int:
    """POST C{size} bytes in 1 MB writes (declared, or chunked); the status answered."""
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1:8000"]
    lines.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}")
    lines += [f"{k}: {v}" for k, v in headers.items()]
    connection = server.connect()
    connection.send(("\r\n".join(lines) + "\r\n\r\n").encode())
    block = b"[" * (1 << 20)
    sent = 0
    while sent < size and not connection.closed:
        part = block[: min(len(block), size - sent)]
        connection.send(b"%x\r\n%s\r\n" % (len(part), part) if chunked else part)
        sent += len(part)
    if chunked and not connection.closed:
        connection.send(b"0\r\n\r\n")
    connection.close()
    return connection.status


# JSON nested 100,000 deep (and just deeper than the JSON library writes back)


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def nestedObject(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


@pytest.mark.parametrize("depth", [100_000, 1000, 300])
def test_deepJSONOnTheAPI(server: MemoryServer, depth: int) -> None:
    for body in (b'{"channel":"pub:x","data":' + nested(depth) + b"}",
                 b'{"channel":"pub:x","data":1,"x":' + nestedObject(depth) + b"}",
                 nested(depth)):
        code, reply = status(api(server, "publish", body))
        assert code in (200, 400), (depth, code)
        assert not EXCEPTION_TEXT.search(reply)


@pytest.mark.parametrize("depth", [100_000, 1000, 300])
def test_deepJSONOnTheStream(server: MemoryServer, depth: int) -> None:
    for body in (b'{"id":1,"connect":{"data":' + nested(depth) + b"}}", nested(depth)):
        stream = openStream(server, body)
        assert stream.status == 200
        # The connect command does not decode: disconnect 3501 "bad request", and the stream ends.
        assert stream.received() == [{"push": {"disconnect": {"code": 3501, "reason": "bad request"}}}]
        assert stream.response.complete
        stream.close()


@pytest.mark.parametrize("depth", [100_000, 1000, 300])
def test_deepJSONThroughEmulation(server: MemoryServer, depth: int) -> None:
    session = Session(server)
    body = b'{"session":"' + session.session.encode() + b'","node":"' + session.node.encode() + b'","data":' + (
        nested(depth) + b"}"
    )
    code, reply = status(request(server, "POST", "/emulation", body, {"Content-Type": "application/json"}))
    assert (code, reply) == (400, b"")
    # A command nested deep inside a well-formed emulation request: the session is cut with 3501.
    command = json.dumps({"id": 2, "publish": {"channel": "pub:x", "data": "PLACEHOLDER"}})
    data = command.replace('"PLACEHOLDER"', nested(depth).decode())
    response = emulate(server, session.node, session.session, [])  # a valid empty request first
    assert response.status == 204
    body = orjson.dumps({"session": session.session, "node": session.node, "data": data})
    code, reply = status(request(server, "POST", "/emulation", body, {"Content-Type": "application/json"}))
    assert (code, reply) == (204, b"")
    assert disconnectCode(session.next()) == 3501
    session.close()


@pytest.mark.parametrize("depth", [100_000, 1000, 300])
def test_deepJSONOnSSE(server: MemoryServer, depth: int) -> None:
    body = b'{"id":1,"connect":{"data":' + nested(depth) + b"}}"
    response = request(server, "POST", "/connection/sse", body)
    assert response.status == 200
    assert response.chunks[0] == b"\r\n"
    event = response.chunks[1]
    assert orjson.loads(event[len(b"data: "):]) == {"push": {"disconnect": {"code": 3501, "reason": "bad request"}}}


def test_deepJSONInTheSSEConnectURL(server: MemoryServer) -> None:
    # A URL holds no 100,000 levels (16 KB request line): 1000, deeper than the JSON library writes back.
    connect = quote((b'{"id":1,"connect":{"data":' + nested(1000) + b"}}").decode())
    response = request(server, "GET", "/connection/sse?cf_connect=" + connect)
    assert response.status == 200
    assert response.chunks[0] == b"\r\n"
    assert b'"code":3501' in response.chunks[1]


@pytest.mark.parametrize("depth", [100_000, 1000, 300])
def test_deepJSONOnWebSocket(server: MemoryServer, depth: int) -> None:
    ws = MemoryWebSocket(server)
    assert ws.status == 101
    ws.send(b'{"id":1,"connect":{"data":' + nested(depth) + b"}}")
    opcode, payload = ws.frames()[0]
    assert opcode == 0x8 and closeFrame(payload)[0] == 3501, (opcode, payload)
    ws.close()


# Path traversal


@pytest.mark.parametrize(
    "path",
    [
        "/demo/../pyproject.toml",
        "/demo/../../etc/passwd",
        "/demo/%2e%2e/pyproject.toml",
        "/demo/%2E%2E%2Fpyproject.toml",
        "/demo/..%2f..%2f..%2fetc%2fpasswd",
        "/demo/%252e%252e%252fpyproject.toml",
        "/demo/..\\..\\pyproject.toml",
        "/demo/..%5c..%5cpyproject.toml",
        "/demo/%5c..%5c..%5cetc%5cpasswd",
        "/demo//etc/passwd",
        "/demo/%2fetc%2fpasswd",
        "/demo/index.html/../../demo.py",
        "/demo/./../demo.py",
        "/demo/../demo.py",
        "/demo/..",
        "/demo/centrifuge.js/../../package.json",
        "/demo/%00index.html",
        "/demo/index.html%00.py",
        "/demo/..;/pyproject.toml",
        "/demo/package.json",
        "/demo/centrifuge.js.map",
        "/demo/../demo/../../README.md",
    ],
)
def test_demoPathTraversal404(server: MemoryServer, path: str) -> None:
    code, body = status(request(server, "GET", path))
    assert code == 404, (path, code)
    assert body in (b"", b"not found\n")


def test_demoServesItsOwnFiles(server: MemoryServer) -> None:
    # The control: the same resource serves its fixed names.
    for path in ("/demo/", "/demo/index.html", "/demo/demo.js", "/demo/centrifuge.js"):
        code, body = status(request(server, "GET", path))
        assert code == 200 and body, path


@pytest.mark.parametrize("path", ["/demo", "//demo", "/demo?x=1"])
def test_demoRedirectStaysOnThisHost(server: MemoryServer, path: str) -> None:
    # Werkzeug's "/demo" -> "/demo/" redirect: a path, never the Host header's (or any other) host.
    response = request(server, "GET", path)
    if response.status == 308:
        assert response.headers["location"].startswith("/demo/"), response.headers
        assert not response.headers["location"].startswith("//")
    else:
        assert response.status == 404


def test_absoluteFormRequestTarget(server: MemoryServer) -> None:
    code, _ = status(request(server, "GET", "http://127.0.0.1:8000/demo/../pyproject.toml"))
    assert code in (400, 404)


# No exception text in any reply


BAD_INPUTS: list[tuple[str, str, bytes, dict[str, str]]] = [
    ("POST", "/connection/http_stream", b"\xff\xfe\x00", {"Content-Type": "application/json"}),
    ("POST", "/connection/http_stream", b'{"id":"x","connect":[]}', {}),
    ("POST", "/connection/http_stream", b"\x05\x01\x02", {"Content-Type": "application/octet-stream"}),
    ("POST", "/connection/http_stream", b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
     {"Content-Type": "application/octet-stream"}),
    ("POST", "/emulation", b'{"session":1,"node":[],"data":{}}', {"Content-Type": "application/json"}),
    ("POST", "/emulation", b"\x0a\xff\xff", {"Content-Type": "application/octet-stream"}),
    ("POST", "/emulation", b"", {}),
    # Protobuf nested 100,000 deep (start-group tags): the parser's own depth limit, a clean decode error.
    ("POST", "/connection/http_stream", varint_delimit([b"\x0b" * 100_000 + b"\x0c" * 100_000]),
     {"Content-Type": "application/octet-stream"}),
    ("POST", "/emulation", b"\x0b" * 100_000 + b"\x0c" * 100_000, {"Content-Type": "application/octet-stream"}),
    ("GET", "/connection/sse?cf_connect=%ff%fe", b"", {}),
    ("GET", "/connection/sse?cf_connect=" + quote('{"id":1,"connect":{"token":5}}'), b"", {}),
    ("POST", "/api/publish", b'{"channel":["x"],"data":1}', {"X-API-Key": API_KEY}),
    ("POST", "/api/history", b'{"channel":"pub:x","limit":"ten","since":"x"}', {"X-API-Key": API_KEY}),
    ("POST", "/api/batch", b'{"commands":[1,"x",{"publish":5}]}', {"X-API-Key": API_KEY}),
    ("POST", "/api/%ff", b"{}", {"X-API-Key": API_KEY}),
    ("POST", "/api/" + "x" * 2000, b"{}", {"X-API-Key": API_KEY}),
    ("GET", "/connection/websocket", b"", {"Upgrade": "websocket", "Connection": "Upgrade"}),
    ("BREW", "/connection/http_stream", b"", {}),
    # Header values that are not UTF-8 (Twisted's str getHeader would raise on them).
    ("POST", "/connection/http_stream", b'{"id":1,"connect":{}}', {"Origin": "http://\xff\xfe"}),
    ("OPTIONS", "/emulation", b"", {"Origin": "http://\xff", "Access-Control-Request-Headers": "\xff"}),
    ("GET", "/connection/sse?cf_connect=%7B%7D", b"", {"Origin": "\xff"}),
    ("POST", "/connection/http_stream", b'{"id":1,"connect":{}}', {"Content-Type": "\xff"}),
    ("POST", "/api/info", b"{}", {"X-API-Key": "\xff\xfe"}),
    ("POST", "/api/info", b"{}", {"Authorization": "apikey \xff"}),
    ("POST", "/api/info", b"{}", {"X-API-Key": API_KEY, "X-Centrifugo-Error-Mode": "\xff"}),
    ("GET", "/connection/websocket", b"", {"Upgrade": "websocket", "Connection": "Upgrade", "Origin": "\xff",
                                          "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
                                          "Sec-WebSocket-Version": "13"}),
    ("GET", "/%ff%fe/..", b"", {}),
    ("GET", "/demo/%c0%ae%c0%ae/pyproject.toml", b"", {}),
    ("GET", "/demo/", b"", {f"X-Header-{i}": "x" for i in range(600)}),  # more headers than Twisted takes
    ("POST", "/api/info", b"{}", {"X-API-Key": API_KEY, "Content-Length": "-1"}),
    ("POST", "/api/info", b"{}", {"X-API-Key": API_KEY, "Transfer-Encoding": "gzip, chunked"}),
]


@pytest.mark.parametrize("method, path, body, headers", BAD_INPUTS)
def test_noExceptionTextInReplies(
    server: MemoryServer, method: str, path: str, body: bytes, headers: dict[str, str]
) -> None:
    response = request(server, method, path, body, headers)
    reply = response.body
    assert response.status < 500, (method, path, response.status)
    assert not EXCEPTION_TEXT.search(reply), reply[:500]
    for name, value in response.headers.items():
        assert not EXCEPTION_TEXT.search(value.encode("latin-1")), (name, value)



def test_requestLineOverTwistedLimit(server: MemoryServer) -> None:
    """
    A request line over twisted.web's 16 KB: the connection is closed without a reply (Go would answer 431 past
    1 MB), so nothing is told and the server goes on.
    """
    response = request(server, "GET", "/connection/sse?cf_connect=" + "%7B" * 20000)
    if response.status:
        assert response.status in (400, 414, 431)
        assert not EXCEPTION_TEXT.search(response.body)
    assert status(api(server, "info", {}))[0] == 200


def test_nonUTF8HostOrPath400(server: MemoryServer) -> None:
    # Klein would log a traceback for each of these (a log flood for anyone): they are answered 400 before it.
    for head in (b"GET /demo/ HTTP/1.1\r\nHost: \xff\xfe\r\n", b"GET /demo/%ff HTTP/1.1\r\nHost: a\r\n",
                 b"POST /api/\xff HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n"):
        connection = server.connect()
        connection.send(head + b"\r\n")
        assert connection.status == 400, head
        assert not EXCEPTION_TEXT.search(connection.response.body)
        connection.close()
