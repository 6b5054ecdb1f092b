"""
Tests for L{httpstream.origin}.
"""

from __future__ import annotations

from typing import Optional

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest
from zope.interface.verify import verifyObject

from httpstream.interfaces import IOriginChecker
from httpstream.origin import (
    OriginChecker,
    OriginPatternError,
    compile_origin_pattern,
    cors_headers,
)
from httpstream.transports._http import admitOrigin


class OriginCheckerTests(SynchronousTestCase):
    """
    L{OriginChecker} applies Centrifugo's C{allowed_origins} rules.
    """

    def assertCases(self, allowed: list[str], cases: list[tuple[Optional[str], bool]]) -> None:
        checker = OriginChecker(allowed)
        for origin, expected in cases:
            self.assertEqual(checker.check(origin), expected, f"{allowed!r} with Origin {origin!r}")

    def test_interface(self) -> None:
        for allowed in [[], ["*"], ["https://*.example.com"]]:
            self.assertTrue(verifyObject(IOriginChecker, OriginChecker(allowed)))

    def test_emptyList(self) -> None:
        """
        With no entries only requests without an Origin pass.
        """
        self.assertCases(
            [],
            [(None, True), ("", True), ("http://localhost:8000", False), ("null", False)],
        )

    def test_star(self) -> None:
        self.assertCases(
            ["*"],
            [(None, True), ("https://anything.example", True), ("null", True), ("HTTP://X", True)],
        )

    def test_patternTable(self) -> None:
        table: list[tuple[str, str, bool]] = [
            # The reference example: "*" crosses dots, but the dot before "example" must be there.
            ("https://*.example.com", "https://a.example.com", True),
            ("https://*.example.com", "https://a.b.example.com", True),
            ("https://*.example.com", "https://example.com", False),
            ("https://*.example.com", "http://a.example.com", False),
            ("https://*.example.com", "https://a.example.com:8443", False),
            ("https://*.example.com", "https://a.example.com.evil.org", False),
            # "*" crosses slashes and colons too (no separators).
            ("http://*", "http://localhost:3000", True),
            ("*example.com", "https://evil/x.example.com", True),
            ("https://example.com*", "https://example.com:8443", True),
            # Exact entries: the whole origin must match.
            ("http://localhost:3000", "http://localhost:3000", True),
            ("http://localhost:3000", "http://localhost:30000", False),
            ("http://localhost:3000", "http://localhost", False),
            # "?" is exactly one character.
            ("http://localhost:300?", "http://localhost:3001", True),
            ("http://localhost:300?", "http://localhost:300", False),
            ("http://localhost:300?", "http://localhost:30011", False),
            # "." in a pattern is a literal dot, not "any character".
            ("https://a.example.com", "https://aXexample.com", False),
            # "**" behaves like "*".
            ("https://**.example.com", "https://a.b.example.com", True),
        ]
        for pattern, origin, expected in table:
            self.assertEqual(OriginChecker([pattern]).check(origin), expected, f"{pattern!r} vs {origin!r}")

    def test_missingOriginPasses(self) -> None:
        self.assertCases(["https://example.com"], [(None, True), ("", True)])

    def test_anyEntry(self) -> None:
        self.assertCases(
            ["https://a.example", "https://b.example"],
            [("https://a.example", True), ("https://b.example", True), ("https://c.example", False)],
        )

    def test_starAmongOthers(self) -> None:
        """
        "*" as one of several entries is an ordinary pattern that matches everything.
        """
        self.assertCases(["https://a.example", "*"], [("https://z.example", True)])

    def test_originLowercased(self) -> None:
        """
        The Origin is lowercased before matching; patterns are not, so an
        entry with capitals never matches.
        """
        self.assertCases(
            ["https://*.example.com"],
            [("HTTPS://App.Example.COM", True)],
        )
        self.assertCases(
            ["https://App.example.com"],
            [("https://App.example.com", False), ("https://app.example.com", False)],
        )

    def test_alternatives(self) -> None:
        self.assertCases(
            ["https://{app,admin}.example.com"],
            [
                ("https://app.example.com", True),
                ("https://admin.example.com", True),
                ("https://api.example.com", False),
                ("https://{app,admin}.example.com", False),
            ],
        )
        self.assertCases(
            ["http{,s}://example.com"],
            [("http://example.com", True), ("https://example.com", True), ("httpx://example.com", False)],
        )
        self.assertCases(
            ["https://{a,b{1,2}}.example"],
            [("https://a.example", True), ("https://b2.example", True), ("https://b.example", False)],
        )
        self.assertCases(
            ["https://{*.a,b}.example"],
            [("https://x.y.a.example", True), ("https://b.example", True)],
        )

    def test_commaAndBraceOutsideGroup(self) -> None:
        """
        Outside a group "," and "}" are plain characters.
        """
        self.assertCases(["a,b}"], [("a,b}", True), ("a", False)])

    def test_unclosedGroup(self) -> None:
        """
        gobwas accepts an unclosed group as if it ended with the pattern.
        """
        self.assertCases(["https://{a,b"], [("https://a", True), ("https://b", True)])

    def test_classes(self) -> None:
        self.assertCases(
            ["http://localhost:300[0-2]"],
            [("http://localhost:3000", True), ("http://localhost:3002", True), ("http://localhost:3003", False)],
        )
        self.assertCases(
            ["http://[abc].example"],
            [("http://a.example", True), ("http://c.example", True), ("http://d.example", False)],
        )
        self.assertCases(
            ["http://[!a].example"],
            [("http://a.example", False), ("http://b.example", True), ("http://bb.example", False)],
        )
        self.assertCases(
            ["http://[!a-c].example"],
            [("http://b.example", False), ("http://z.example", True)],
        )

    def test_classSpecialCharacters(self) -> None:
        """
        Characters that are special in regexes are literal inside a class.
        """
        self.assertCases(["x[.^\\]]y"], [("x.y", True), ("x^y", True), ("x]y", True), ("xay", False)])

    def test_escapes(self) -> None:
        self.assertCases(
            ["https://a\\*b", "https://x\\?", "https://\\{p,q\\}"],
            [
                ("https://a*b", True),
                ("https://axb", False),
                ("https://x?", True),
                ("https://xy", False),
                ("https://{p,q}", True),
                ("https://p", False),
            ],
        )

    def test_invalidPatterns(self) -> None:
        for pattern in ["https://[a", "[]", "[!]", "[a-z0-9]", "[z-a]", "[a-"]:
            with self.assertRaises(OriginPatternError, msg=pattern):
                OriginChecker([pattern])

    def test_compileOnce(self) -> None:
        """
        Patterns are regexes anchored by fullmatch.
        """
        regex = compile_origin_pattern("https://*.example.com")
        self.assertIsNotNone(regex.fullmatch("https://a.example.com"))
        self.assertIsNone(regex.fullmatch("https://a.example.com/x/"))

    def test_repr(self) -> None:
        self.assertEqual(repr(OriginChecker(("*",))), "OriginChecker(['*'])")


class CORSHeadersTests(SynchronousTestCase):
    """
    L{cors_headers} gives the headers Centrifugo's CORS middleware adds.
    """

    def test_allowed(self) -> None:
        checker = OriginChecker(["https://*.example.com"])
        self.assertEqual(
            cors_headers(checker, "https://App.example.com", None),
            {
                b"Access-Control-Allow-Origin": b"https://App.example.com",
                b"Access-Control-Allow-Credentials": b"true",
            },
        )

    def test_requestHeadersEchoed(self) -> None:
        headers = cors_headers(OriginChecker(["*"]), "https://x.example", "content-type, x-custom")
        self.assertEqual(
            headers,
            {
                b"Access-Control-Allow-Origin": b"https://x.example",
                b"Access-Control-Allow-Headers": b"content-type, x-custom",
                b"Access-Control-Allow-Credentials": b"true",
            },
        )

    def test_requestHeadersNullOrEmpty(self) -> None:
        for value in ["null", "", None]:
            headers = cors_headers(OriginChecker(["*"]), "https://x.example", value)
            assert headers is not None
            self.assertNotIn(b"Access-Control-Allow-Headers", headers, repr(value))

    def test_neverStar(self) -> None:
        headers = cors_headers(OriginChecker(["*"]), "https://x.example", None)
        assert headers is not None
        self.assertEqual(headers[b"Access-Control-Allow-Origin"], b"https://x.example")

    def test_refused(self) -> None:
        self.assertIsNone(cors_headers(OriginChecker([]), "https://x.example", "content-type"))
        self.assertIsNone(cors_headers(OriginChecker(["https://a.example"]), "https://b.example", None))

    def test_noOrigin(self) -> None:
        for origin in [None, "", b""]:
            self.assertIsNone(cors_headers(OriginChecker(["*"]), origin, "content-type"))

    def test_bytes(self) -> None:
        """
        Header values straight from Twisted's C{getHeader} (bytes) work too.
        """
        self.assertEqual(
            cors_headers(OriginChecker(["https://*"]), b"https://x.example", b"content-type"),
            {
                b"Access-Control-Allow-Origin": b"https://x.example",
                b"Access-Control-Allow-Headers": b"content-type",
                b"Access-Control-Allow-Credentials": b"true",
            },
        )
        self.assertIsNone(cors_headers(OriginChecker(["https://a"]), b"https://b", None))


class AdmitOriginTests(SynchronousTestCase):
    """
    L{admitOrigin} runs first on every HTTP transport request: 403 for a refused Origin, CORS headers otherwise.
    """

    def request(self, origin: Optional[bytes]) -> DummyRequest:
        request = DummyRequest([b""])
        if origin is not None:
            request.requestHeaders.setRawHeaders(b"origin", [origin])
        request.requestHeaders.setRawHeaders(b"access-control-request-headers", [b"content-type"])
        return request

    def test_refused(self) -> None:
        for origin in (b"https://evil.example", b"null", b"HTTPS://EVIL.EXAMPLE", b"http://\xff\xfe"):
            request = self.request(origin)
            self.assertFalse(admitOrigin(OriginChecker(["https://app.example"]), request), origin)
            self.assertEqual(request.responseCode, 403)
            self.assertFalse(request.responseHeaders.hasHeader(b"access-control-allow-origin"))

    def test_admitted(self) -> None:
        request = self.request(b"https://App.example")
        self.assertTrue(admitOrigin(OriginChecker(["https://app.example"]), request))
        self.assertIsNone(request.responseCode)  # left for the endpoint to set
        allowed = request.responseHeaders.getRawHeaders(b"access-control-allow-origin")
        self.assertEqual(allowed, [b"https://App.example"])
        self.assertEqual(request.responseHeaders.getRawHeaders(b"access-control-allow-headers"), [b"content-type"])

    def test_noOrigin(self) -> None:
        for origin in (None, b""):
            request = self.request(origin)
            self.assertTrue(admitOrigin(OriginChecker([]), request))
            self.assertFalse(request.responseHeaders.hasHeader(b"access-control-allow-origin"))

    def test_star(self) -> None:
        for origin in (b"https://anything.example", b"null"):
            request = self.request(origin)
            self.assertTrue(admitOrigin(OriginChecker(["*"]), request))
            self.assertEqual(request.responseHeaders.getRawHeaders(b"access-control-allow-origin"), [origin])

    def test_sameHost(self) -> None:
        """
        A page of the request's own Host passes (without CORS headers, which it does not need); the port, the
        host's case-insensitive spelling, and nothing else decide.
        """
        for origin, host, admitted in [
            (b"http://chat.example:8000", b"chat.example:8000", True),
            (b"https://Chat.Example", b"chat.example", True),
            (b"http://chat.example:8001", b"chat.example:8000", False),
            (b"http://chat.example", b"chat.example:8000", False),
            (b"http://chat.example.evil.org", b"chat.example", False),
            (b"http://user@chat.example", b"chat.example", False),
            (b"null", b"null", False),
            (b"chat.example", b"chat.example", False),
            (b"http://[::1", b"[::1", False),
        ]:
            request = self.request(origin)
            request.requestHeaders.setRawHeaders(b"host", [host])
            self.assertEqual(admitOrigin(OriginChecker([]), request), admitted, (origin, host))
            self.assertFalse(request.responseHeaders.hasHeader(b"access-control-allow-origin"))
