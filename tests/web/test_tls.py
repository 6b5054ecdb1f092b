"""
TLS on the client-facing port (``tls``, ``tls_cert``, ``tls_key``): the official JS SDK connects over https:// and
wss:// to a certificate the test makes; PEM values in every form Centrifugo takes; one-line start-up errors.
"""

from __future__ import annotations

import base64
import os
import shutil
import ssl
import subprocess
import tempfile
import urllib.request
from pathlib import Path
from typing import Callable

import pytest
from twisted.trial.unittest import SynchronousTestCase

from httpstream.config import Config, ConfigError
from httpstream.web.tls import readPEM, serverTLSOptions
from tests.serverprocess import BASE_CONFIG, ServerProcess, twistdCommand
from tests.test_sdk_http_stream import SDK, node  # noqa: F401 (node: fixture)
from tests.tlscerts import selfSigned

TRANSPORTS = SDK / "transports.mjs"


def sdk(node: str, server: ServerProcess, cert: Path, protocol: str, transports: str) -> str:
    data = "00ff0a" if protocol == "protobuf" else '{"text":"over tls"}'
    result = subprocess.run(
        [node, str(TRANSPORTS), "--url", server.url, "--protocol", protocol, "--transports", transports,
         "--scenario", "pubsub", "--data", data],
        capture_output=True, text=True, timeout=60,
        env=dict(os.environ, NODE_EXTRA_CA_CERTS=str(cert)),
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{server.output}"
    return result.stdout


@pytest.mark.parametrize("protocol", ["json", "protobuf"])
def test_sdkOverHttpsAndWss(
    node: str, startServer: Callable[..., ServerProcess], tmp_path: Path, protocol: str  # noqa: F811
) -> None:
    cert, key = selfSigned(tmp_path)
    server = startServer({"tls": True, "tls_cert": str(cert), "tls_key": str(key), "sse": True})
    assert server.url.startswith("https://")
    out = sdk(node, server, cert, protocol, "websocket")
    assert '"event":"ws_open"' in out  # wss:// (the harness turns https:// into wss://)
    out = sdk(node, server, cert, protocol, "http_stream")
    assert '"event":"stream","who":"a","status":200' in out.replace(" ", "")
    if protocol == "json":
        sdk(node, server, cert, protocol, "sse")


def test_plainHttpIsNotServedOnATLSPort(startServer: Callable[..., ServerProcess], tmp_path: Path) -> None:
    cert, key = selfSigned(tmp_path)
    server = startServer({"tls": True, "tls_cert": str(cert), "tls_key": str(key), "health": True})
    context = ssl.create_default_context(cafile=str(cert))
    with urllib.request.urlopen(f"{server.url}/health", context=context, timeout=10) as response:
        assert response.status == 200 and response.read() == b"{}"
    with pytest.raises(Exception):
        urllib.request.urlopen(f"http://127.0.0.1:{server.port}/health", timeout=5).read()


@pytest.mark.parametrize("form", ["pem", "base64"])
def test_pemValuesInTheConfig(startServer: Callable[..., ServerProcess], tmp_path: Path, form: str) -> None:
    cert, key = selfSigned(tmp_path)
    encode = (lambda p: p.read_text()) if form == "pem" else (lambda p: base64.b64encode(p.read_bytes()).decode())
    server = startServer({"tls": True, "tls_cert_pem": encode(cert), "tls_key_pem": encode(key), "health": True})
    context = ssl.create_default_context(cafile=str(cert))
    with urllib.request.urlopen(f"{server.url}/health", context=context, timeout=10) as response:
        assert response.status == 200


def startFails(tmp_path: Path, **overrides: object) -> str:
    import json

    config = dict(BASE_CONFIG, **overrides)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(config))
    result = subprocess.run(
        twistdCommand() + ["-n", "--pidfile=", "httpstream", "-c", str(path)],
        capture_output=True, text=True, timeout=30, cwd=tmp_path,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_missingCertificateIsOneLine(tmp_path: Path) -> None:
    output = startFails(tmp_path, tls=True, tls_cert=str(tmp_path / "nope.crt"), tls_key=str(tmp_path / "nope.key"))
    assert output.strip().count("\n") == 0, output
    assert 'config key "tls_cert": cannot read' in output and "Traceback" not in output


def test_keyOfAnotherCertificateIsOneLine(tmp_path: Path) -> None:
    cert, _ = selfSigned(tmp_path, "one")
    _, otherKey = selfSigned(tmp_path, "two")
    output = startFails(tmp_path, tls=True, tls_cert=str(cert), tls_key=str(otherKey))
    assert output.strip().count("\n") == 0, output
    assert "does not match" in output
    assert otherKey.read_text().splitlines()[1] not in output  # no key material in the message


class ReadPEMTests(SynchronousTestCase):
    def setUp(self) -> None:
        # Not self.mktemp(): under pytest it writes below the working directory (the checkout).
        self.directory = Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.directory)

    def test_forms(self) -> None:
        directory = self.directory
        cert, _ = selfSigned(directory)
        pem = cert.read_bytes()
        self.assertEqual(readPEM("k", pem.decode()), pem.strip())
        self.assertEqual(readPEM("k", base64.b64encode(pem).decode()), pem)
        self.assertEqual(readPEM("k", str(cert)), pem)

    def test_notPEM(self) -> None:
        path = self.directory / "hello.txt"
        path.write_text("hello")
        error = self.assertRaises(ConfigError, readPEM, "tls_cert", str(path))
        self.assertIn("holds no PEM data", str(error))

    def test_onNeedsBoth(self) -> None:
        error = self.assertRaises(ConfigError, serverTLSOptions, Config(tls=True, tls_cert="x"))
        self.assertIn('"tls_cert" and "tls_key"', str(error))

    def test_offIsNone(self) -> None:
        self.assertIsNone(serverTLSOptions(Config()))
