# -*- test-case-name: tests.policy.test_proxy -*-
"""The HTTP headers of a connection that its proxy requests carry (Centrifugo's ``proxy_http_headers``)."""

from __future__ import annotations

import re
from typing import Any, Iterable, Iterator, Mapping, Optional, Union

__all__ = ["forwardedHeaders"]

# Header names a proxy request never carries from the client: the HTTP client sets them itself (Go's transport
# drops Host, Content-Length, Transfer-Encoding and Trailer from request headers; Content-Type is forced to JSON)
# or they are hop-by-hop and would confuse the connection to the backend (a WebSocket's Connection: Upgrade).
_NEVER_FORWARDED = frozenset(
    {"host", "content-length", "content-type", "transfer-encoding", "trailer", "connection", "upgrade",
     "keep-alive", "te", "proxy-connection"}
)
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # RFC 9110 field-name
_BAD_VALUE = re.compile(r"[\r\n\x00]")


def _canonical(name: str) -> str:
    # Go's textproto.CanonicalMIMEHeaderKey, which is how Centrifugo's http.Header names its keys.
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def _text(value: Union[str, bytes]) -> str:
    # Header bytes round-trip through surrogateescape: whatever the client sent is what the backend gets.
    return value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value


def _headerItems(headers: Any) -> Iterator[tuple[str, list[str]]]:
    if hasattr(headers, "getAllRawHeaders"):  # twisted.web.http_headers.Headers
        for name, values in headers.getAllRawHeaders():
            yield _text(name), [_text(v) for v in values]
        return
    for name, values in headers.items():
        if isinstance(values, (str, bytes)):
            values = [values]
        yield _text(name), [_text(v) for v in values]


def forwardedHeaders(
    allowed: Iterable[str],
    requestHeaders: Any = None,
    emulatedHeaders: Optional[Mapping[str, str]] = None,
) -> dict[str, list[str]]:
    """
    The headers of a connection that its proxy requests carry (Centrifugo's ``proxy_http_headers``).

    Names are matched case-insensitively against C{allowed}. Emulated headers (ConnectRequest.headers, field 6,
    which the JS SDK sends when its C{headers} option is set) are filtered by the same list, and a real header of
    the same name wins over an emulated one (Centrifugo v6.0-6.8 ``internal/proxy/http.go`` ``requestHeaders``;
    v5 has no emulation; v6.9 splits the list into ``http_headers`` and ``emulated_headers``). Emulated entries
    that are not valid header fields are dropped, so a client cannot inject header lines.

    @param allowed: header names to forward.
    @param requestHeaders: the connection's HTTP request headers: a C{twisted.web.http_headers.Headers} or a
        mapping of name to value(s), str or bytes.
    @param emulatedHeaders: the ConnectRequest C{headers} map, or None.
    @return: canonical header name -> values.
    """
    allow = {name.lower() for name in allowed} - _NEVER_FORWARDED
    result: dict[str, list[str]] = {}
    if not allow:
        return result
    for name, value in (emulatedHeaders or {}).items():
        if not isinstance(name, str) or not isinstance(value, str):
            continue
        if name.lower() in allow and _TOKEN.match(name) and not _BAD_VALUE.search(value):
            result[_canonical(name)] = [value]
    if requestHeaders is not None:
        for name, values in _headerItems(requestHeaders):
            if name.lower() in allow:
                result[_canonical(name)] = [v for v in values if not _BAD_VALUE.search(v)]
    return result
