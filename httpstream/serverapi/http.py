# -*- test-case-name: tests.serverapi.test_api,tests.serverapi.test_cent -*-
"""
``POST /api/<method>``: Centrifugo's server HTTP API over L{httpstream.serverapi.api.ServerAPI} (https://centrifugal.dev/docs/server/server_api),
as ``cent`` and application backends call it.
"""

from __future__ import annotations

import hmac
import secrets
import time
from typing import Any, Optional

import orjson
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.web import server

from httpstream.serverapi.api import APIError, ServerAPI
from httpstream.serverapi.errors import errorOf
from httpstream.config import Config
from httpstream.logs import Logger
from httpstream.transports._http import readBody

log = Logger()

# Bodies of API calls (publications of any size the operator allows) are capped here.
MAX_BODY = 4 * 1024 * 1024

# api_error_mode "transport": the HTTP status an API error maps to (Centrifugo's apiproto).
TRANSPORT_STATUS = {100: 500, 102: 404, 104: 404, 107: 400, 108: 400, 112: 416, 113: 409}

# Centrifugo's JSON fields holding raw JSON, embedded as such (not as strings) in requests and results.
RAW_FIELDS = frozenset({"data", "info", "params", "conn_info", "chan_info"})


def _rawJSON(request: Any) -> Any:
    """
    A request's raw-JSON fields become their compact bytes, as the client protocol carries them. They are
    top-level fields of every request (apiproto's C{Raw}), so nothing deeper is walked.
    """
    if type(request) is not dict:
        return request
    return {k: (orjson.dumps(v) if k in RAW_FIELDS else v) for k, v in request.items()}


class NotJSON(ValueError):
    """A raw payload of a result that is not JSON (binary data published with b64data, or by a Protobuf client)."""


def _encodeDefault(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        # Raw JSON bytes are embedded as they are, once known to be JSON: a binary payload would make the whole
        # reply unreadable. (Centrifugo's json.Marshal refuses such a Raw too, and answers 500.)
        try:
            orjson.loads(value)
        except orjson.JSONDecodeError:
            raise NotJSON() from None
        return orjson.Fragment(bytes(value))
    raise TypeError(f"cannot encode {type(value).__name__}")


def encode(document: Any) -> bytes:
    """
    The JSON of an API reply, raw payloads embedded.

    @raise NotJSON: a payload is not JSON.
    """
    try:
        return orjson.dumps(document, default=_encodeDefault)
    except orjson.JSONEncodeError as e:
        if isinstance(e.__cause__, NotJSON):
            raise NotJSON() from None
        raise


class APIHandler:
    """Authenticates, decodes and answers API requests for one node."""

    def __init__(self, api: ServerAPI, config: Config, metrics: Any = None) -> None:
        """@param metrics: the node's L{httpstream.metrics.Metrics} (default: C{api.node.metrics}, when it has one)."""
        self._api = api
        self._config = config
        self._metrics = metrics if metrics is not None else getattr(api.node, "metrics", None)

    def authorized(self, request: server.Request) -> bool:
        config = self._config
        if config.api_insecure:
            return True
        if not config.api_key:
            return False
        # Centrifugo's APIKeyAuth: X-API-Key, else "Authorization: apikey <key>"; when neither holds the key, the
        # api_key query parameter. Bytes throughout: a header that is not UTF-8 is a wrong key, not an exception.
        # Constant time: a comparison must not tell an attacker how much of a guess was right.
        key = config.api_key.encode("utf-8")
        header = request.getHeader(b"x-api-key")
        if header:
            if hmac.compare_digest(header, key):
                return True
        else:
            parts = (request.getHeader(b"authorization") or b"").split()
            if len(parts) == 2 and parts[0].lower() == b"apikey" and hmac.compare_digest(parts[1], key):
                return True
        query = request.args.get(b"api_key")
        return query is not None and hmac.compare_digest(query[0], key)

    def handle(self, request: server.Request, method: str) -> bytes | Deferred[bytes]:
        if request.method != b"POST":
            request.setResponseCode(405)
            return b""
        if not self.authorized(request):
            request.setResponseCode(401)
            return b""
        body = readBody(request, MAX_BODY)
        if body is None or len(body) < getattr(request, "bodyLength", len(body)):
            # Over our limit, or over what the site's request kept (its cap is the largest transport limit): a
            # truncated body must not be parsed (it would answer a misleading 400, or worse, parse).
            request.setResponseCode(413)
            return b""
        try:
            document = orjson.loads(body) if body.strip() else {}
        except orjson.JSONDecodeError:
            request.setResponseCode(400)
            return b""
        if not isinstance(document, dict):
            request.setResponseCode(400)
            return b""
        transportErrors = (
            self._config.api_error_mode == "transport"
            or (request.getHeader(b"x-centrifugo-error-mode") or b"").lower() == b"transport"
        )
        request.setHeader(b"Content-Type", b"application/json")
        try:
            if method == "batch" and type(document.get("commands")) is list:
                # A command is {method: request}: the method name ("info") is not a raw-JSON field.
                document = dict(document, commands=[
                    {k: _rawJSON(v) for k, v in c.items()} if type(c) is dict else c for c in document["commands"]
                ])
            else:
                document = _rawJSON(document)
        except orjson.JSONEncodeError:
            # orjson reads 1024 levels of nesting but writes only 254: raw JSON nested deeper than that is the
            # caller's mistake, not a server fault.
            request.setResponseCode(400)
            return b""
        started = time.perf_counter()
        d = self._api.call(method, document)
        d.addBoth(self._observed, method, started)
        return d.addCallbacks(
            lambda result: self._answer(request, method, result),
            lambda failure: self._failed(request, method, failure, transportErrors),
        )

    def _observed(self, result: Any, method: str, started: float) -> Any:
        """Count the call by method and result ("ok" or the error code), and its duration."""
        metrics = self._metrics
        if metrics is not None:
            # Only known method names become label values: a caller cannot grow the label set at will.
            label = method if method in ServerAPI.METHODS else "unknown"
            outcome = str(errorOf(result).code) if isinstance(result, Failure) else "ok"
            metrics.apiCalls.labels(label, outcome).inc()
            metrics.apiDuration.labels(label).observe(time.perf_counter() - started)
        return result

    def _answer(self, request: server.Request, method: str, result: dict[str, Any]) -> bytes:
        try:
            return encode(result if method == "batch" else {"result": result})
        except NotJSON:
            # The data, not the server, is at fault: one line without a traceback, and Centrifugo's 500.
            log.warn("api {method} (request {requestID}): a payload of the result is not JSON (binary data?) and "
                     "cannot be embedded in a JSON reply", method=method, requestID=secrets.token_hex(4))
            return self._internalServerError(request)
        except TypeError:
            return self._fault(request, method, Failure())

    def _failed(self, request: server.Request, method: str, failure: Failure, transport: bool) -> bytes:
        if not isinstance(failure.value, APIError):
            return self._fault(request, method, failure)
        error = failure.value.error
        # Client mistakes and refusals are the caller's to see in the reply; a line each would flood the log.
        log.debug("api {method}: error {code}", method=method, code=error.code)
        body = {"code": error.code, "message": error.message}
        if transport:
            request.setResponseCode(TRANSPORT_STATUS.get(error.code, 500))
            return encode(body)
        return encode({"error": body})

    def _fault(self, request: server.Request, method: str, failure: Failure) -> bytes:
        """A fault of this layer: logged once with a request id, answered 500 without a word of its insides."""
        log.failure("api {method} failed (request {requestID})", failure, method=method,
                    requestID=secrets.token_hex(4))
        return self._internalServerError(request)

    def _internalServerError(self, request: server.Request) -> bytes:
        request.setResponseCode(500)
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        return b"Internal Server Error"


def methodOf(path: Optional[str]) -> str:
    return (path or "").strip("/")
