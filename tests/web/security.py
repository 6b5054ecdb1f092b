"""
What the in-memory security tests share (tests/web/test_security.py, test_security_tokens.py,
tests/serverapi/test_apikey.py): one server configured with every kind of token key, an API key, tight rights and
large body limits, and the requests an attacker's client makes to it.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Iterator, Optional

import jwt
import orjson
from twisted.internet.testing import MemoryReactorClock

from httpstream.memoryserver import Response
from httpstream.testing import MemoryServer
from tests.policy.test_tokens import EC_KEYS, RSA_KEY, pem
from tests.web.helpers import BASE_CONFIG, emulate, openStream

SECRET = "security-hmac-secret-0123456789abcdef-0123456789"
OTHER_SECRET = "another-hmac-secret-0123456789abcdef-0123456789"
API_KEY = "security-api-key-9f8e7d6c5b4a39281706"
WRONG_KEY = "wrong-api-key-guess-0123456789abcdef"
AUD, ISS = "security-app", "security-issuer"
BIG = 1024 * 1024  # the transports' body and message limits here: room for 100,000-deep JSON (200 KB)
SDK_DIST = Path(__file__).parent.parent / "sdk" / "node_modules" / "centrifuge" / "dist"

# Text a reply must never hold: Python's exceptions, tracebacks and source paths.
EXCEPTION_TEXT = re.compile(
    rb"Traceback|Error\(|Exception|RecursionError|TypeError|KeyError|ValueError|AttributeError|File \"|\.py\b"
)

SECURITY_CONFIG: dict[str, Any] = dict(
    BASE_CONFIG,
    sse=True,
    token_hmac_secret_key=SECRET,
    token_rsa_public_key=pem(RSA_KEY),
    token_ecdsa_public_key=pem(EC_KEYS["ES256"]),
    token_audience=AUD,
    token_issuer=ISS,
    api_key=API_KEY,
    allow_publish_for_client=False,
    allow_publish_for_anonymous=False,
    allow_user_limited_channels=True,
    namespaces=[{"name": "pub", "allow_subscribe_for_client": True, "allow_publish_for_client": True}],
    http_stream_max_request_body_size=BIG,
    sse_max_request_body_size=BIG,
    emulation_max_request_body_size=BIG,
    websocket_message_size_limit=BIG,
    demo=True,
    demo_sdk_dir=str(SDK_DIST),
)


def claims(**extra: Any) -> dict[str, Any]:
    """Valid connection claims for alice (aud and iss as configured, an hour to live), with C{extra} on top."""
    return {"sub": "alice", "aud": AUD, "iss": ISS, "exp": int(time.time()) + 3600, **extra}


def token(key: Any = SECRET, algorithm: str = "HS256", **extra: Any) -> str:
    return jwt.encode(claims(**extra), key, algorithm=algorithm)


def securityServer() -> Iterator[MemoryServer]:
    # The clock at the real time: the tokens' exp are Unix times.
    reactor = MemoryReactorClock()
    reactor.advance(time.time())
    with MemoryServer(SECURITY_CONFIG, reactor) as memory:
        yield memory
        # Whatever the test sent, nothing reached the log as a traceback.
        assert "Traceback" not in memory.logged, memory.logged




# Helpers


def request(
    server: MemoryServer, method: str, path: str, body: bytes = b"", headers: Optional[dict[str, str]] = None
) -> Response:
    """
    One request on a new connection, written as tests/wire.py writes it (Host and Content-Length first, then the
    headers as given, even a second length), and its response as far as it came (a stream's too); then closed.
    """
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1:8000", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    connection = server.connect(method)
    connection.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    connection.close()
    return connection.response


def status(response: Response) -> tuple[int, bytes]:
    return response.status, response.body


def firstMessage(server: MemoryServer, connect: dict[str, Any]) -> dict[str, Any]:
    """The first message an http_stream connect gets (the reply, or the disconnect push)."""
    stream = openStream(server, orjson.dumps({"id": 1, "connect": connect}))
    assert stream.status == 200
    message: dict[str, Any] = stream.received()[0]
    stream.close()
    return message


class Session:
    """An http_stream connection (alice's, by default) whose commands go through /emulation."""

    def __init__(self, server: MemoryServer, connectToken: Optional[str] = None) -> None:
        self.server = server
        self.stream = openStream(server, orjson.dumps({"id": 1, "connect": {"token": connectToken or token()}}))
        result = self.stream.received()[0]["connect"]
        self.node, self.session, self.client = result["node"], result["session"], result["client"]
        self._id = 1
        self._read = 1

    def next(self) -> dict[str, Any]:
        messages = self.stream.received()
        assert len(messages) > self._read, "nothing more received"
        message: dict[str, Any] = messages[self._read]
        self._read += 1
        return message

    def command(self, **command: Any) -> dict[str, Any]:
        """Run one command; its reply (or the disconnect push it caused)."""
        self._id += 1
        assert emulate(self.server, self.node, self.session, [{"id": self._id, **command}]).status == 204
        reply = self.next()
        if "push" not in reply:
            assert reply["id"] == self._id, reply
        return reply

    def close(self) -> None:
        self.stream.close()


def errorCode(reply: dict[str, Any]) -> int:
    code: int = reply.get("error", {}).get("code", 0)
    return code


def disconnectCode(reply: dict[str, Any]) -> int:
    code: int = reply.get("push", {}).get("disconnect", {}).get("code", 0)
    return code


def api(server: MemoryServer, method: str, body: Any, headers: Optional[dict[str, str]] = None, query: str = "") -> Response:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    allHeaders = {"X-API-Key": API_KEY} if headers is None else headers
    return request(server, "POST", f"/api/{method}{query}", data, allHeaders)


def subToken(channel: str, key: str = SECRET, **extra: Any) -> str:
    return token(key, channel=channel, **extra)
