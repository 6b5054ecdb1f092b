# -*- test-case-name: tests.engines.test_engine_redis -*-
"""Where a Redis is and how to reach it: C{redis_address} read into a L{RedisAddress}."""

from __future__ import annotations

import urllib.parse

import attrs

__all__ = ["DEFAULT_PORT", "RedisAddress", "parseAddress"]

DEFAULT_PORT = 6379


@attrs.frozen
class RedisAddress:
    """Where and how to connect: the parts of C{redis_address} and the keys that complete it."""

    host: str
    port: int = DEFAULT_PORT
    db: int = 0
    user: str = ""
    password: str = attrs.field(default="", repr=False)
    tls: bool = False

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'rediss' if self.tls else 'redis'}://{host}:{self.port}/{self.db}"


def parseAddress(address: str, db: int = 0, user: str = "", password: str = "", tls: bool = False) -> RedisAddress:
    """
    Read C{redis_address}: C{host:port} (C{[v6]:port}; the port may be left out), or a URL
    C{redis://[[user]:password@]host[:port][/db]} (C{rediss://} for TLS) whose parts win over the other arguments.

    @raise ValueError: an address that is neither.
    """
    if "://" in address:
        parts = urllib.parse.urlsplit(address)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError(f"unknown scheme {parts.scheme!r} (redis:// or rediss://)")
        try:
            port = parts.port or DEFAULT_PORT
        except ValueError:
            raise ValueError("invalid port") from None
        if not parts.hostname:
            raise ValueError("no host")
        path = parts.path.strip("/")
        if path:
            if not path.isdigit():
                raise ValueError(f"invalid database number {path!r}")
            db = int(path)
        if parts.username:
            user = urllib.parse.unquote(parts.username)
        if parts.password:
            password = urllib.parse.unquote(parts.password)
        return RedisAddress(parts.hostname, port, db, user, password, tls or parts.scheme == "rediss")
    host, port = address, DEFAULT_PORT
    if address.startswith("["):
        host, bracket, rest = address[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            raise ValueError("expected [address]:port")
        if rest:
            port = _port(rest[1:])
    elif address.count(":") == 1:
        host, _, portText = address.partition(":")
        port = _port(portText)
    elif ":" in address:
        raise ValueError("an IPv6 address needs brackets: [address]:port")
    if not host:
        raise ValueError("no host")
    return RedisAddress(host, port, db, user, password, tls)


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"invalid port {text!r}")
    return int(text)

