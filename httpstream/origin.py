# -*- test-case-name: tests.test_origin -*-
"""
Which browser origins may use the server, and the CORS headers that say so.

This follows Centrifugo's ``allowed_origins`` (``internal/app/origin.go``,
``internal/origin/origin.go``, ``internal/middleware/cors.go``):

  - an empty list lets through only requests without an ``Origin`` header;
  - exactly ``["*"]`` lets every request through;
  - otherwise each entry is a U{gobwas/glob<https://github.com/gobwas/glob>}
    pattern compiled with no separators, matched against the lowercased
    ``Origin``; a request without ``Origin`` passes.

Patterns are translated to Python regular expressions once, when the checker
is built. The translation follows gobwas's lexer and parser closely, quirks
included, so that a Centrifugo config means the same thing here: a class is
either one range (C{[a-z]}) or a list of characters (C{[abc]}), never both, and
an unclosed C{{...}} group is closed at the end of the pattern.
"""

from __future__ import annotations

import re
from typing import Iterable, Optional, Union

from zope.interface import implementer

from httpstream.interfaces import IOriginChecker

__all__ = ["OriginChecker", "OriginPatternError", "compile_origin_pattern", "cors_headers"]


class OriginPatternError(ValueError):
    """An ``allowed_origins`` entry is not a valid glob pattern."""


class _PatternLexer:
    """
    Translate one gobwas/glob pattern (no separators) into a regex source.

    Mirrors gobwas's ``syntax/lexer`` (what counts as a special character
    where) and ``syntax`` parser (what a character class may contain).
    """

    def __init__(self, pattern: str) -> None:
        self._pattern = pattern
        self._position = 0
        self._depth = 0  # nesting of {...} groups

    def _read(self) -> Optional[str]:
        if self._position >= len(self._pattern):
            self._position += 1  # so that _unread() after the end stays balanced
            return None
        char = self._pattern[self._position]
        self._position += 1
        return char

    def _unread(self) -> None:
        self._position -= 1

    def _peek(self) -> Optional[str]:
        if self._position >= len(self._pattern):
            return None
        return self._pattern[self._position]

    def translate(self) -> str:
        parts: list[str] = []
        while True:
            char = self._read()
            if char is None:
                break
            if char == "{":
                self._depth += 1
                parts.append("(?:")
            elif char == "," and self._depth:
                parts.append("|")
            elif char == "}" and self._depth:
                self._depth -= 1
                parts.append(")")
            elif char == "[":
                parts.append(self._character_class())
            elif char == "?":
                parts.append(".")
            elif char == "*":
                # "**" ("super") differs from "*" only when there are separators.
                if self._peek() == "*":
                    self._read()
                parts.append(".*")
            else:
                self._unread()
                breakers = "*?[{,}" if self._depth else "*?[{"
                parts.append(re.escape(self._text(breakers)))
        # gobwas's parser stops at the end of input without complaining about
        # open groups, so "{a,b" works like "{a,b}".
        parts.append(")" * self._depth)
        return "".join(parts)

    def _text(self, breakers: str) -> str:
        """Read literal characters up to a breaker; a backslash escapes the next one."""
        data: list[str] = []
        escaped = False
        while True:
            char = self._read()
            if char is None:
                break
            if not escaped:
                if char == "\\":
                    escaped = True
                    continue
                if char in breakers:
                    self._unread()
                    break
            escaped = False
            data.append(char)
        return "".join(data)

    def _character_class(self) -> str:
        """Read what follows ``[`` up to and including the closing ``]``."""
        negated = False
        low: Optional[str] = None
        high: Optional[str] = None
        chars = ""
        want_high = False
        want_close = False
        while True:
            char = self._read()
            if char is None:
                raise OriginPatternError("unexpected end of pattern inside [...]")
            if want_close:
                if char != "]":
                    raise OriginPatternError(
                        "a [...] class holds either one range such as [a-z] or a list of characters"
                    )
                break
            if want_high:
                high = char
                want_close = True
                continue
            if not negated and char == "!":
                negated = True
                continue
            if self._peek() == "-":
                self._read()
                low = char
                want_high = True
                continue
            self._unread()
            chars = self._text("]")
            want_close = True
        if low is not None and high is not None:
            if high < low:
                raise OriginPatternError(f"range [{low}-{high}] ends before it starts")
            body = f"{re.escape(low)}-{re.escape(high)}"
        elif chars:
            body = "".join(re.escape(c) for c in chars)
        else:
            raise OriginPatternError("empty [...] class")
        return f"[{'^' if negated else ''}{body}]"


def compile_origin_pattern(pattern: str) -> "re.Pattern[str]":
    """
    Compile one ``allowed_origins`` entry.

    @param pattern: A gobwas/glob pattern: ``*`` matches any run of characters
        (dots and slashes too), ``?`` one character, ``[abc]`` / ``[a-z]`` one
        of a set (``[!...]`` negates), ``{a,b}`` one of the alternatives, and
        ``\\`` makes the next character literal.
    @return: A regex to use with C{fullmatch}.
    @raise OriginPatternError: When the pattern is malformed.
    """
    return re.compile(_PatternLexer(pattern).translate(), re.DOTALL)


@implementer(IOriginChecker)
class OriginChecker:
    """
    Centrifugo's ``allowed_origins`` check.

    @ivar allowedOrigins: The configured entries, as given.
    """

    def __init__(self, allowedOrigins: Iterable[str]) -> None:
        """
        @param allowedOrigins: The ``allowed_origins`` list.
        @raise OriginPatternError: When an entry is not a valid pattern.
        """
        self.allowedOrigins: tuple[str, ...] = tuple(allowedOrigins)
        self._allowAll = self.allowedOrigins == ("*",)
        patterns = []
        for entry in self.allowedOrigins:
            try:
                patterns.append(compile_origin_pattern(entry))
            except OriginPatternError as e:
                raise OriginPatternError(f"invalid origin pattern {entry!r}: {e}") from None
        self._patterns: tuple["re.Pattern[str]", ...] = tuple(patterns)

    def __repr__(self) -> str:
        return f"OriginChecker({list(self.allowedOrigins)!r})"

    def check(self, origin: Optional[str]) -> bool:
        # Go's Header.Get cannot tell an empty header from a missing one;
        # both count as "no Origin".
        if not origin:
            return True
        if self._allowAll:
            return True
        lowered = origin.lower()
        return any(pattern.fullmatch(lowered) for pattern in self._patterns)


def cors_headers(
    checker: IOriginChecker,
    origin: Union[str, bytes, None],
    request_headers: Union[str, bytes, None],
) -> Optional[dict[bytes, bytes]]:
    """
    The CORS response headers Centrifugo's middleware adds.

    Centrifugo's middleware leaves them out on a failed check and serves the
    request anyway; httpstream's HTTP transports refuse it with 403 instead
    (L{httpstream.transports._http.admitOrigin}).

    @param checker: The origin checker.
    @param origin: The request's ``Origin`` header value, or None when absent
        (bytes, as Twisted's C{getHeader} gives them, are accepted too).
    @param request_headers: The request's ``Access-Control-Request-Headers``
        value, or None when absent.
    @return: When there is an Origin and it passes the check: a dict with
        ``Access-Control-Allow-Origin`` (the Origin echoed, never ``*``),
        ``Access-Control-Allow-Headers`` (the request headers echoed, only when
        present and not ``null``) and ``Access-Control-Allow-Credentials:
        true``. Otherwise None.
    """
    if not origin:
        return None
    originText = origin.decode("latin-1") if isinstance(origin, bytes) else origin
    if not checker.check(originText):
        return None
    headers = {b"Access-Control-Allow-Origin": _headerValue(origin)}
    if request_headers and request_headers not in ("null", b"null"):
        headers[b"Access-Control-Allow-Headers"] = _headerValue(request_headers)
    headers[b"Access-Control-Allow-Credentials"] = b"true"
    return headers


def _headerValue(value: Union[str, bytes]) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8")
