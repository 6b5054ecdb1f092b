"""
The security list of issue 14 (item 5): what needs a real ``twistd httpstream`` process (its memory under huge
and unfinished uploads; no secret in its log at any level, with a password-protected Redis of its own), and the
pure logic in memory (the API key compared in constant time, what api_insecure allows, the Site's guards, what a
request keeps of a body, secrets of the wrong type in the config).

The HTTP-level items run on the in-memory server: tokens, channel rights, body limits (413), deep JSON, path
traversal and no exception text in tests/web/test_security.py; the API key in tests/serverapi/test_apikey.py;
``allowed_origins`` in tests/transports/test_origins.py.
"""

from __future__ import annotations

import hmac
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator, Optional
from urllib.parse import quote

import jwt
import orjson
import pytest
from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.web.test.requesthelper import DummyChannel

from httpstream.serverapi import http as httpapi
from httpstream.config import Config, config_from_dict, ConfigError
from httpstream.origin import OriginChecker
from httpstream.testing import makeNode
from httpstream.transports._http import LimitedRequest, readBody
from httpstream.web.app import makeApp, makeSite
from tests.serverprocess import BASE_CONFIG, ListeningProcess, ServerProcess, twistdCommand
from tests.policy.test_tokens import EC_KEYS, RSA_KEY, pem
from tests.wire import Response, Stream, emulate, request
from tests.wsclient import WebSocket

SECRET = "security-hmac-secret-0123456789abcdef-0123456789"
OTHER_SECRET = "another-hmac-secret-0123456789abcdef-0123456789"
API_KEY = "security-api-key-9f8e7d6c5b4a39281706"
WRONG_KEY = "wrong-api-key-guess-0123456789abcdef"
AUD, ISS = "security-app", "security-issuer"
BIG = 1024 * 1024  # the transports' body and message limits here: room for 100,000-deep JSON (200 KB)
SDK_DIST = Path(__file__).parent / "sdk" / "node_modules" / "centrifuge" / "dist"

# Text a reply must never hold: Python's exceptions, tracebacks and source paths.
EXCEPTION_TEXT = re.compile(
    rb"Traceback|Error\(|Exception|RecursionError|TypeError|KeyError|ValueError|AttributeError|File \"|\.py\b"
)


def claims(**extra: Any) -> dict[str, Any]:
    """Valid connection claims for alice (aud and iss as configured, an hour to live), with C{extra} on top."""
    return {"sub": "alice", "aud": AUD, "iss": ISS, "exp": int(time.time()) + 3600, **extra}


def token(key: Any = SECRET, algorithm: str = "HS256", **extra: Any) -> str:
    return jwt.encode(claims(**extra), key, algorithm=algorithm)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    overrides = {
        "sse": True,
        "token_hmac_secret_key": SECRET,
        "token_rsa_public_key": pem(RSA_KEY),
        "token_ecdsa_public_key": pem(EC_KEYS["ES256"]),
        "token_audience": AUD,
        "token_issuer": ISS,
        "api_key": API_KEY,
        "allow_publish_for_client": False,
        "allow_publish_for_anonymous": False,
        "allow_user_limited_channels": True,
        "namespaces": [{"name": "pub", "allow_subscribe_for_client": True, "allow_publish_for_client": True}],
        "http_stream_max_request_body_size": BIG,
        "sse_max_request_body_size": BIG,
        "emulation_max_request_body_size": BIG,
        "websocket_message_size_limit": BIG,
        "demo": True,
        "demo_sdk_dir": str(SDK_DIST),
    }
    with ServerProcess(tmp_path_factory.mktemp("security"), overrides) as process:
        yield process
        assert process.alive()
        # Whatever the tests sent, nothing reached the log as a traceback.
        assert "Traceback" not in process.output, tracebacks(process.output)


def tracebacks(output: str) -> str:
    """Each traceback of a log with the line before it, for a failure message."""
    lines = output.splitlines()
    found = [i for i, line in enumerate(lines) if "Traceback" in line]
    return "\n---\n".join("\n".join(line[:300] for line in lines[max(i - 1, 0): i + 25]) for i in found)


# Helpers


def firstMessage(port: int, connect: dict[str, Any]) -> dict[str, Any]:
    """The first message an http_stream connect gets (the reply, or the disconnect push)."""
    stream = Stream(port, orjson.dumps({"id": 1, "connect": connect}))
    assert stream.response.status == 200
    try:
        return stream.next()
    finally:
        stream.close()


class Session:
    """An http_stream connection (alice's, by default) whose commands go through /emulation."""

    def __init__(self, port: int, connectToken: Optional[str] = None) -> None:
        self.port = port
        self.stream = Stream(port, orjson.dumps({"id": 1, "connect": {"token": connectToken or token()}}))
        result = self.next()["connect"]
        self.node, self.session, self.client = result["node"], result["session"], result["client"]
        self._id = 1

    def next(self) -> dict[str, Any]:
        message = self.stream.next()
        while message == {}:  # a server ping
            message = self.stream.next()
        return message

    def command(self, **command: Any) -> dict[str, Any]:
        """Run one command; its reply (or the disconnect push it caused)."""
        self._id += 1
        assert emulate(self.port, self.node, self.session, [{"id": self._id, **command}]).status == 204
        reply = self.next()
        if "push" not in reply:
            assert reply["id"] == self._id, reply
        return reply

    def close(self) -> None:
        self.stream.close()


def api(port: int, method: str, body: Any, headers: Optional[dict[str, str]] = None, query: str = "") -> Response:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    allHeaders = {"X-API-Key": API_KEY} if headers is None else headers
    return request(port, "POST", f"/api/{method}{query}", data, allHeaders)


def status(response: Response) -> tuple[int, bytes]:
    try:
        return response.status, response.body()
    finally:
        response.close()


def subToken(channel: str, key: str = SECRET, **extra: Any) -> str:
    return token(key, channel=channel, **extra)


class TestAPIKeyInMemory:
    """The key check as pure logic: constant-time comparison, and what api_insecure allows."""

    def stub(self, **settings: Any) -> StubTreq:
        node = makeNode({"api_key": API_KEY, **settings}, Clock())
        return StubTreq(makeApp(node, OriginChecker(())).resource())

    def call(self, treq: StubTreq, headers: dict[str, str], query: str = "") -> int:
        d = treq.post(f"http://127.0.0.1/api/info{query}", data=b"{}", headers=headers)
        treq.flush()
        results: list[Any] = []
        d.addBoth(results.append)
        return int(results[0].code)

    def test_constantTimeComparison(self, monkeypatch: pytest.MonkeyPatch) -> None:
        compared: list[tuple[bytes, bytes]] = []

        class Recording:
            @staticmethod
            def compare_digest(a: bytes, b: bytes) -> bool:
                compared.append((a, b))
                return hmac.compare_digest(a, b)

        monkeypatch.setattr(httpapi, "hmac", Recording)
        treq = self.stub()
        for headers, query in [({"X-API-Key": WRONG_KEY}, ""), ({"Authorization": f"apikey {API_KEY}"}, ""),
                               ({}, f"?api_key={WRONG_KEY}")]:
            compared.clear()
            self.call(treq, headers, query)
            # Every way of giving the key goes through hmac.compare_digest, never ==.
            assert len(compared) == 1 and API_KEY.encode() in compared[0], (headers, query)

    def test_insecureNeedsNoKey(self) -> None:
        treq = self.stub(api_key="", api_insecure=True)
        assert self.call(treq, {}) == 200
        assert self.call(treq, {"X-API-Key": WRONG_KEY}) == 200

    def test_noConfiguredKeyRefusesAll(self) -> None:
        treq = self.stub(api_key="")
        for headers in ({}, {"X-API-Key": ""}, {"X-API-Key": WRONG_KEY}):
            assert self.call(treq, headers) == 401


# Body size limits


def peakRSS(pid: int) -> int:
    """The process's peak resident set (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def sendHuge(port: int, path: str, size: int, headers: dict[str, str], chunked: bool = False) -> int:
    """POST C{size} bytes in 1 MB writes (declared, or chunked); the status answered."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}")
    lines += [f"{k}: {v}" for k, v in headers.items()]
    block = b"[" * (1 << 20)
    try:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        sent = 0
        while sent < size:
            part = block[: min(len(block), size - sent)]
            sock.sendall(b"%x\r\n%s\r\n" % (len(part), part) if chunked else part)
            sent += len(part)
        if chunked:
            sock.sendall(b"0\r\n\r\n")
    except OSError:
        pass  # the server may answer and close before the end: the status says what it did
    response = Response(sock)
    code = response.status
    response.close()
    return code


LIMITED_ROUTES = [
    ("/connection/http_stream", {"Content-Type": "application/json"}),
    ("/connection/sse", {}),
    ("/emulation", {"Content-Type": "application/json"}),
    ("/api/publish", {"X-API-Key": API_KEY}),
]



def test_hugeBodiesNeverKeptWhole(server: ServerProcess) -> None:
    """
    40 MB to every route, declared and chunked: 413 each time, and the server's peak memory does not grow by the
    size of a body (the request keeps at most the largest limit, 4 MiB, and counts the rest).
    """
    size = 40 * 1024 * 1024
    before = peakRSS(server.pid)
    for path, headers in LIMITED_ROUTES:
        for chunked in (False, True):
            assert sendHuge(server.port, path, size, headers, chunked) == 413, (path, chunked)
    grown = peakRSS(server.pid) - before
    print(f"peak RSS grew by {grown / 1e6:.1f} MB over {2 * len(LIMITED_ROUTES)} bodies of {size / 1e6:.0f} MB")
    assert grown < 24 * 1024 * 1024


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_unfinishedUploadsHoldOnlyTheirRoutesLimit(server: ServerProcess) -> None:
    """
    30 uploads of 3 MB to the stream endpoint (limit 1 MB here), each one byte short of its Content-Length so the
    server holds them open: together they keep about 30 MB, not the 90 MB they sent (nor 30 x the API's 4 MiB).
    """
    size = 3 * 1024 * 1024
    before = rss(server.pid)
    sockets = []
    try:
        for _ in range(30):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=60)
            sock.sendall(
                b"POST /connection/http_stream HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: %d\r\n\r\n" % (size + 1)
            )
            sock.sendall(b"[" * size)
            sockets.append(sock)
        # Let the server read what was sent: until its memory holds still for a second (20 s at most).
        deadline = time.monotonic() + 20
        grown, last, still = 0, -1, 0
        while time.monotonic() < deadline and still < 5:
            time.sleep(0.2)
            grown = rss(server.pid) - before
            still = still + 1 if grown == last else 0
            last = grown
        print(f"30 unfinished 3 MB uploads to a 1 MB endpoint: RSS grew by {grown / 1e6:.1f} MB")
        assert grown < 60 * 1024 * 1024
    finally:
        for sock in sockets:
            sock.close()
    assert status(api(server.port, "info", {}))[0] == 200



def test_siteGuards() -> None:
    site = makeSite(makeNode({}, Clock()))
    # twisted.web's own error page for an exception a resource lets out would carry the traceback with this set.
    assert site.displayTracebacks is False
    # Every route's request keeps at most the largest body limit (the API's), counting the rest.
    assert issubclass(site.requestFactory, LimitedRequest)
    assert site.requestFactory.maxBody == httpapi.MAX_BODY


@pytest.mark.parametrize(
    "target, kept",
    [
        (b"/connection/http_stream", 1000),
        (b"/connection/sse?cf_connect=x", 2000),
        (b"/emulation", 3000),
        (b"/api/publish?api_key=k", httpapi.MAX_BODY),
        (b"/demo/", 0),
        (b"/connection/websocket", 0),
        (b"http://127.0.0.1/emulation", 3000),  # the absolute form: its path decides
        (b"*", 0),
    ],
)
def test_requestKeepsAtMostItsRoutesLimit(target: bytes, kept: int) -> None:
    """
    What a request keeps of a 5 MiB body is its own endpoint's limit, not the largest of them; the rest is
    counted, and an endpoint never takes a truncated body for the whole (413).
    """
    settings = {"http_stream_max_request_body_size": 1000, "sse_max_request_body_size": 2000,
                "emulation_max_request_body_size": 3000}
    site = makeSite(makeNode(settings, Clock()))
    channel = DummyChannel()
    channel._path = target  # where twisted.web's HTTPChannel holds the target until the body has arrived
    request = site.requestFactory(channel)
    request.gotLength(None)
    chunk = b"x" * 65536
    for _ in range(80):
        request.handleContentChunk(chunk)
    assert request.bodyLength == 80 * len(chunk)
    assert len(request.content.getvalue()) == kept
    assert readBody(request, 10 * httpapi.MAX_BODY) is None


def test_readBodyRefusesATruncatedBody() -> None:
    request = LimitedRequest(DummyChannel())
    request.limits = ((b"/", 10),)
    request.channel._path = b"/x"
    request.gotLength(None)
    request.handleContentChunk(b"0123456789abcdef")
    assert readBody(request, 100) is None  # 16 bytes arrived, 10 kept: not the body
    request = LimitedRequest(DummyChannel())
    request.gotLength(None)
    request.handleContentChunk(b"0123456789abcdef")
    assert readBody(request, 100) == b"0123456789abcdef"
    assert readBody(request, 15) is None

@pytest.mark.parametrize(
    "key", ["api_key", "token_hmac_secret_key", "redis_password", "redis_address", "redis_url", "tls_key"]
)
def test_secretOfTheWrongTypeNotInTheError(key: str) -> None:
    """
    A secret given as a number or a list (a YAML/TOML slip) is refused without its value: the message goes to the
    console at start and to the log on a SIGHUP reload.
    """
    for value in (123456789012345, ["s3cr3t-in-a-list"], {"v": "s3cr3t-in-an-object"}):
        with pytest.raises(ConfigError) as caught:
            Config(**{key: value})
        message = str(caught.value)
        assert key in message
        assert "123456789012345" not in message and "s3cr3t" not in message, message


@pytest.mark.parametrize(
    "document",
    [
        {"http_api": {"key": 123456789012345}},
        {"client": {"token": {"hmac_secret_key": ["s3cr3t-in-a-list"]}}},
        {"engine": {"redis": {"password": 123456789012345}}},
        {"api_key": {"v": "s3cr3t-in-an-object"}},
    ],
)
def test_secretOfTheWrongTypeNotInTheErrorV6(document: dict[str, Any]) -> None:
    # The same through the document reader (v5 and v6 names), which the file and SIGHUP use.
    with pytest.raises(ConfigError) as caught:
        config_from_dict(document)
    message = str(caught.value)
    assert "123456789012345" not in message and "s3cr3t" not in message, message


# No secret in logs (at debug) or replies, with a password-protected Redis


NEW_SECRET = "reloaded-hmac-secret-0123456789abcdef-01234567"
NUMERIC_KEY = 918273645546372819
COOKIE = "cookie-session-value-7f6e5d4c3b2a1908"
BEARER = "bearer-token-value-0a1b2c3d4e5f6789"


def waitFor(process: ServerProcess, text: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in process.output:
        assert time.monotonic() < deadline, f"no {text!r} in the log"
        time.sleep(0.05)


class PasswordRedis:
    """A redis-server of this test's own, on a free port, that wants a password."""

    def __init__(self, directory: Path, password: str) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server must be installed")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--requirepass", password, "--dir", str(directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(100).startswith((b"+PONG", b"-NOAUTH")):
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        pytest.fail("redis-server did not start")

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


def test_noSecretInLogsOrReplies(tmp_path: Path) -> None:
    """
    A server at log_level debug with every secret configured (HMAC key, API key, a Redis password in its URL) goes
    through connects with tokens (good, bad, expired; http_stream, SSE with the token in the URL, WebSocket),
    subscription tokens, refreshes, API calls (key in a header and in the query string, a wrong key), and a
    failed Redis login; then neither its whole log nor any reply holds any of them.
    """
    password = "redis-password-5a4b3c2d1e0f"
    redis = PasswordRedis(tmp_path, password)
    replies: list[bytes] = []
    tokens = [token(), token(sub="bob", info={"n": 1}), token(OTHER_SECRET), token(exp=int(time.time()) - 60),
              subToken("$secret"), subToken("$other"), subToken("$secret", OTHER_SECRET), token(NEW_SECRET)]
    overrides = {
        "sse": True,
        "engine": "redis",
        "redis_address": f"redis://:{password}@127.0.0.1:{redis.port}/0",
        "token_hmac_secret_key": SECRET,
        "token_audience": AUD,
        "token_issuer": ISS,
        "api_key": API_KEY,
        "log_level": "debug",
        # A connect without a token goes to this proxy (nothing listens there): its error is logged, the
        # credentials it forwards are not.
        "proxy_connect_endpoint": "http://127.0.0.1:9/connect",
        "proxy_http_headers": ["Authorization", "Cookie"],
    }
    try:
        with ServerProcess(tmp_path, overrides) as process:
            port = process.port
            deadline = time.monotonic() + 20
            while "is up" not in process.output and time.monotonic() < deadline:
                time.sleep(0.05)
            # Connect with tokens, subscribe with subscription tokens, refresh.
            session = Session(port, tokens[0])
            replies += session.stream.chunks
            replies.append(orjson.dumps(session.command(subscribe={"channel": "$secret", "token": tokens[4]})))
            replies.append(orjson.dumps(session.command(refresh={"token": tokens[0]})))
            replies.append(orjson.dumps(session.command(subscribe={"channel": "$secret", "token": tokens[6]})))
            replies.append(orjson.dumps(session.command(subscribe={"channel": "$x", "token": tokens[5]})))
            session.close()
            for bad in tokens[1:4]:
                replies.append(orjson.dumps(firstMessage(port, {"token": bad})))
            # The page's cookie and bearer token travel to the connect proxy.
            proxied = Stream(port, b'{"id":1,"connect":{}}',
                             headers={"Cookie": f"session={COOKIE}", "Authorization": f"Bearer {BEARER}"})
            replies.append(orjson.dumps(proxied.next()))
            proxied.close()
            waitFor(process, "error proxying connect")
            # SSE puts the token in the URL; WebSocket carries it in a frame.
            sse = request(port, "GET", "/connection/sse?cf_connect=" + quote(json.dumps(
                {"id": 1, "connect": {"token": tokens[2]}})))
            replies.append(sse.body())
            sse.close()
            ws = WebSocket(port)
            ws.send(orjson.dumps({"id": 1, "connect": {"token": tokens[0]}}))
            replies.append(ws.recv().payload)
            ws.close()
            # The API: key in a header, in the query string, a wrong one; errors of every kind.
            for headers, query, body in [
                ({"X-API-Key": API_KEY}, "", {"channel": "$secret", "data": {"t": 1}}),
                ({}, f"?api_key={API_KEY}", {"channel": "$secret", "data": {"t": 2}}),
                ({"X-API-Key": WRONG_KEY}, "", {"channel": "$secret", "data": {"t": 3}}),
                ({}, f"?api_key={WRONG_KEY}", {}),
                ({"X-API-Key": API_KEY}, "", {"channel": ["bad"]}),
            ]:
                replies.append(status(api(port, "publish", body, headers, query))[1])
            replies.append(status(api(port, "info", {}))[1])
            replies.append(status(api(port, "history", {"channel": "$secret", "limit": 10}))[1])
            # SIGHUP: a new HMAC key is applied (and a token signed with it connects); then a file whose API key
            # is a number is refused, the running config kept, and the number is not logged either.
            process.configPath.write_text(json.dumps(dict(process.config, token_hmac_secret_key=NEW_SECRET)))
            os.kill(process.pid, signal.SIGHUP)
            waitFor(process, "config reloaded")
            replies.append(orjson.dumps(firstMessage(port, {"token": tokens[-1]})))
            assert "connect" in orjson.loads(replies[-1])
            process.configPath.write_text(json.dumps(dict(process.config, api_key=NUMERIC_KEY)))
            os.kill(process.pid, signal.SIGHUP)
            waitFor(process, "config reload failed")
        # A second start with a wrong password: the refusal is logged, the password (right or wrong) is not.
        wrong = "wrong-redis-password-9z8y7x"
        overrides["redis_address"] = f"redis://:{wrong}@127.0.0.1:{redis.port}/0"
        # A Redis node accepts connections only once Redis is up (docs/operations.md): this one never announces
        # its port, so the test reads its log without waiting for one.
        secondConfig = tmp_path / "wrongpassword.json"
        secondConfig.write_text(json.dumps(dict(BASE_CONFIG, **overrides)))
        with ListeningProcess(twistdCommand() + ["-n", "--pidfile=", "httpstream", "-c", str(secondConfig)],
                              cwd=tmp_path) as second:
            deadline = time.monotonic() + 20
            while "WRONGPASS" not in second.output and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        redis.stop()
    logs = process.output + second.output
    assert "debug" in logs and "is up" in logs and "WRONGPASS" in second.output  # the scenario did run
    secrets = {"HMAC key": SECRET, "other HMAC key": OTHER_SECRET, "API key": API_KEY, "wrong API key": WRONG_KEY,
               "Redis password": password, "wrong Redis password": wrong, "reloaded HMAC key": NEW_SECRET,
               "numeric API key": str(NUMERIC_KEY), "cookie": COOKIE, "bearer token": BEARER}
    for i, each in enumerate(tokens):
        secrets[f"token {i}"] = each
        secrets[f"token {i} signature"] = each.rsplit(".", 1)[1]
    everything = "\n".join(r.decode("utf-8", "replace") for r in replies)
    for name, value in secrets.items():
        assert value not in logs, f"{name} in the log"
        assert value not in everything, f"{name} in a reply"
    assert "Traceback" not in logs
    assert not EXCEPTION_TEXT.search(everything.encode())
