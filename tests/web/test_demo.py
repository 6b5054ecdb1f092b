"""
The demo page's resource (httpstream/web/demo.py): the files it serves, their content types, what it refuses, and the
warning when the SDK is missing. The page itself runs in a browser in tests/test_browser.py.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

from httpstream.config import Config
from httpstream.web.demo import PAGE_DIR, DemoResource, demoResource, sdkDirectory
from httpstream.origin import OriginChecker
from httpstream.testing import makeNode
from httpstream.web.app import makeApp

SDK_BYTES = b'"use strict";globalThis.Centrifuge=function(){};'


def temporaryDirectory(case: SynchronousTestCase) -> Path:
    """A new directory, removed after the test (not C{mktemp()}: under pytest it writes below the working dir)."""
    path = tempfile.mkdtemp(prefix="httpstream-test-demo-")
    case.addCleanup(shutil.rmtree, path, True)
    return Path(path)


def code(request: DummyRequest) -> int:
    """The status: DummyRequest leaves C{None} where a real request keeps its default 200."""
    return request.responseCode or 200


def render(resource: DemoResource, path: bytes, method: bytes = b"GET") -> DummyRequest:
    request = DummyRequest(path.split(b"/"))
    request.method = method
    body = resource.render(request)
    assert isinstance(body, bytes)
    request.write(body)
    request.finish()
    return request


class DemoResourceTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.sdkDir = temporaryDirectory(self)
        (self.sdkDir / "centrifuge.js").write_bytes(SDK_BYTES)
        (self.sdkDir / "centrifuge.js.map").write_bytes(b"{}")
        self.resource = DemoResource(PAGE_DIR, self.sdkDir)

    def contentType(self, request: DummyRequest) -> bytes:
        return request.responseHeaders.getRawHeaders(b"content-type")[0]

    def test_page(self) -> None:
        """/demo/ and /demo/index.html are the page, as HTML; its script and style have their own types."""
        for path in [b"", b"index.html"]:
            request = render(self.resource, path)
            self.assertEqual(code(request), 200)
            self.assertEqual(self.contentType(request), b"text/html; charset=utf-8")
            self.assertIn(b'<script src="demo.js">', b"".join(request.written))
        self.assertEqual(self.contentType(render(self.resource, b"demo.js")), b"text/javascript; charset=utf-8")
        self.assertEqual(self.contentType(render(self.resource, b"demo.css")), b"text/css; charset=utf-8")

    def test_sdk(self) -> None:
        """The SDK's browser build comes from the SDK directory, as JavaScript the browser may not sniff."""
        request = render(self.resource, b"centrifuge.js")
        self.assertEqual(code(request), 200)
        self.assertEqual(b"".join(request.written), SDK_BYTES)
        self.assertEqual(self.contentType(request), b"text/javascript; charset=utf-8")
        self.assertEqual(request.responseHeaders.getRawHeaders(b"x-content-type-options"), [b"nosniff"])

    def test_missingSDKFile(self) -> None:
        """A build that is not installed is 404."""
        self.assertEqual(render(self.resource, b"centrifuge.protobuf.js").responseCode, 404)

    def test_nothingElse(self) -> None:
        """
        Only the fixed names: no other file of the SDK directory, no directory listing, no path out of it (Twisted
        has already unquoted each segment, so C{%2F} arrives as a slash inside one segment).
        """
        for postpath in [
            [b"centrifuge.js.map"],
            [b"demo"],
            [b".."],
            [b"..", b"web/demo.py"],
            [b"../demo.py"],
            [b"a", b"centrifuge.js"],
            [b"centrifuge.js", b""],
            [b"", b"etc", b"passwd"],
            [b"\xff"],
        ]:
            request = DummyRequest(postpath)
            body = self.resource.render(request)
            self.assertEqual(request.responseCode, 404, postpath)
            self.assertNotIn(b"<", body)

    def test_head(self) -> None:
        """HEAD has the GET's headers and length, without the body."""
        request = render(self.resource, b"centrifuge.js", b"HEAD")
        self.assertEqual(code(request), 200)
        self.assertEqual(b"".join(request.written), b"")
        self.assertEqual(request.responseHeaders.getRawHeaders(b"content-length"), [str(len(SDK_BYTES)).encode()])


class DemoResourceFactoryTests(SynchronousTestCase):
    def capture(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        return events

    def test_relativeDirectory(self) -> None:
        """A relative demo_sdk_dir is taken from the working directory at start-up."""
        config = Config(demo=True, demo_sdk_dir="web/node_modules/centrifuge/dist")
        self.assertEqual(sdkDirectory(config), Path(os.getcwd()) / "web/node_modules/centrifuge/dist")

    def test_missingSDKWarns(self) -> None:
        """Without the SDK, one warning names the directory and the command that installs it."""
        events = self.capture()
        missing = str(temporaryDirectory(self) / "missing")
        resource = demoResource(Config(demo=True, demo_sdk_dir=missing))
        warnings = [e for e in events if e.get("log_namespace") == "httpstream.web.demo"]
        self.assertEqual(len(warnings), 1)
        self.assertEqual(warnings[0]["log_level"].name, "warn")
        self.assertEqual(warnings[0]["sdkDir"], missing)
        self.assertIn("npm ci", warnings[0]["log_format"].format(**warnings[0]))
        self.assertIsInstance(resource, DemoResource)

    def test_installedSDKIsQuiet(self) -> None:
        sdkDir = temporaryDirectory(self)
        (sdkDir / "centrifuge.js").write_bytes(SDK_BYTES)
        events = self.capture()
        demoResource(Config(demo=True, demo_sdk_dir=str(sdkDir)))
        self.assertEqual([e for e in events if e.get("log_namespace") == "httpstream.web.demo"], [])


class DemoRouteTests(SynchronousTestCase):
    """The page mounted in the app at /demo/ when the config says so."""

    def get(self, settings: dict[str, Any], path: str) -> Any:
        node = makeNode(settings, Clock())
        treq = StubTreq(makeApp(node, OriginChecker(())).resource())
        return self.successResultOf(treq.get(f"http://127.0.0.1/{path}", allow_redirects=False))

    def test_mounted(self) -> None:
        sdkDir = temporaryDirectory(self)
        (sdkDir / "centrifuge.js").write_bytes(SDK_BYTES)
        settings = {"demo": True, "demo_sdk_dir": str(sdkDir)}
        self.assertEqual(self.get(settings, "demo/").code, 200)
        response = self.get(settings, "demo/centrifuge.js")
        self.assertEqual(response.code, 200)
        self.assertEqual(self.successResultOf(response.content()), SDK_BYTES)
        self.assertEqual(self.get(settings, "demo/nope").code, 404)

    def test_off(self) -> None:
        """Without C{demo} there is no page."""
        self.assertEqual(self.get({}, "demo/").code, 404)
        self.assertEqual(self.get({}, "demo/centrifuge.js").code, 404)
