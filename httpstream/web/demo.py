# -*- test-case-name: tests.web.test_demo -*-
"""
The demo page at ``/demo/`` (config key ``demo``): a small chat that uses the official JS SDK in a browser.

The page ships inside the package (``httpstream/web/demo_page/``); the SDK does not: ``/demo/centrifuge.js`` and
``/demo/centrifuge.protobuf.js`` are read from ``demo_sdk_dir``, the ``dist/`` folder of the npm package
``centrifuge`` that the project's set-up installs in ``web/`` (``npm ci``). The resource answers a fixed list of
names and nothing else: no directory listing, and no path reaches any other file.
"""

from __future__ import annotations

import os
from pathlib import Path

from twisted.web import server
from twisted.web.resource import IResource, Resource

from httpstream.config import Config
from httpstream.logs import Logger

__all__ = ["INSTALL_COMMAND", "PAGE_DIR", "SDK_FILES", "DemoResource", "demoResource"]

log = Logger()

PAGE_DIR = Path(__file__).parent / "demo_page"

HTML = b"text/html; charset=utf-8"
JS = b"text/javascript; charset=utf-8"
CSS = b"text/css; charset=utf-8"

# The page's own files: the name after /demo/ -> (file in PAGE_DIR, content type).
PAGE_FILES: dict[str, tuple[str, bytes]] = {
    "": ("index.html", HTML),
    "index.html": ("index.html", HTML),
    "demo.js": ("demo.js", JS),
    "demo.css": ("demo.css", CSS),
}

# The SDK's browser builds (each defines the global C{Centrifuge}); read from demo_sdk_dir.
SDK_FILES: tuple[str, ...] = ("centrifuge.js", "centrifuge.protobuf.js")

INSTALL_COMMAND = "npm ci --prefix web"


class DemoResource(Resource):
    """
    Serves the demo page and the SDK files; everything else under ``/demo/`` is 404.

    @ivar sdkDir: the absolute directory the SDK files are read from.
    """

    isLeaf = True

    def __init__(self, pageDir: Path, sdkDir: Path) -> None:
        Resource.__init__(self)
        self.pageDir = pageDir
        self.sdkDir = sdkDir

    def _lookup(self, postpath: list[bytes]) -> tuple[Path, bytes] | None:
        # One segment only, matched against fixed names: "..", "%2F" (unquoted into the segment) or a deeper
        # path can never name another file.
        if len(postpath) != 1:
            return None
        try:
            name = postpath[0].decode("ascii")
        except UnicodeDecodeError:
            return None
        if name in PAGE_FILES:
            filename, contentType = PAGE_FILES[name]
            return self.pageDir / filename, contentType
        if name in SDK_FILES:
            return self.sdkDir / name, JS
        return None

    def render_GET(self, request: server.Request) -> bytes:
        found = self._lookup(request.postpath or [b""])
        body: bytes | None = None
        if found is not None:
            path, contentType = found
            try:
                body = path.read_bytes()  # a few hundred KB at most, read per request: a demo, not a CDN
            except OSError:
                body = None
        if body is None:
            request.setResponseCode(404)
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"not found\n"
        request.setHeader(b"content-type", contentType)
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"cache-control", b"no-cache")
        return body

    def render_HEAD(self, request: server.Request) -> bytes:
        # The GET's headers without its body (twisted.web would log a warning for a HEAD body).
        body = self.render_GET(request)
        request.setHeader(b"content-length", b"%d" % len(body))
        return b""


def sdkDirectory(config: Config) -> Path:
    """C{demo_sdk_dir} as an absolute path: relative ones are taken from the working directory at start-up."""
    return Path(os.path.abspath(os.path.expanduser(config.demo_sdk_dir)))


def demoResource(config: Config) -> IResource:
    """
    The resource mounted at ``/demo/`` (with its remaining path in C{request.postpath}).

    Logs one warning when the SDK files are missing: the page then loads, but cannot connect.
    """
    sdkDir = sdkDirectory(config)
    if not (sdkDir / SDK_FILES[0]).is_file():
        log.warn(
            "demo: the JS SDK is missing: no {file} in demo_sdk_dir {sdkDir} (config key demo_sdk_dir); "
            "/demo/{file} answers 404 until it is installed: run `{command}` in the project directory",
            file=SDK_FILES[0],
            sdkDir=str(sdkDir),
            command=INSTALL_COMMAND,
        )
    return DemoResource(PAGE_DIR, sdkDir)
