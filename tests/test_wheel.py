"""
The wheel as a new user gets it: built from a copy of the checkout, installed with no extras into a fresh venv
outside the checkout, ``pip check`` clean, and ``twistd -n httpstream`` from the example config it ships (memory
engine) and from a Redis engine config serving a raw http_stream connect. A runtime import missing from
``dependencies`` fails here (the test venv has the test extra, so the rest of the suite cannot see it).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

import httpstream
from tests.serverprocess import ListeningProcess
from tests.engines.test_engine_redis import REDIS_HOST, REDIS_PORT, requireRedis
from tests.wire import connectStream

REPO = Path(__file__).resolve().parent.parent
# What a copy of the checkout leaves out: local environments, build output, caches.
NOT_SOURCES = shutil.ignore_patterns(
    ".git", ".venv", "node_modules", "build", "dist", "*.egg-info", "__pycache__", ".hypothesis", ".pytest_cache",
    "_output", "_trial_temp", "dropin.cache",
)


class CleanInstall:
    """A fresh venv holding only the wheel and its runtime dependencies."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / "venv" / "bin"
        # Nothing of the test run's environment leaks in: no PYTHONPATH, no active venv, no CENTRIFUGO_* settings.
        self.env = {
            k: v for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME") and not k.startswith("CENTRIFUGO_")
        }
        self.timings: dict[str, float] = {}
        self.wheel: Path = Path()

    def run(self, step: str, command: list[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
        start = time.monotonic()
        result = subprocess.run(
            command, cwd=self.root, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        self.timings[step] = time.monotonic() - start
        assert result.returncode == 0, f"{step} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        return result

    def build(self) -> Path:
        # A copy, so the build neither reads stale build/ output nor writes into the checkout other tests use.
        source = self.root / "source"
        shutil.copytree(REPO, source, ignore=NOT_SOURCES, symlinks=True)
        dist = self.root / "dist"
        self.run("build wheel", [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(source)])
        (wheel,) = (self.root / "dist").glob("httpstream-*.whl")
        return wheel

    def pip(self, *args: str) -> list[str]:
        """This interpreter's pip acting on the clean venv (which has no pip of its own)."""
        return [sys.executable, "-m", "pip", "--python", str(self.bin / "python"), *args]

    def install(self, wheel: Path) -> None:
        # Without pip, so without the setuptools it brings: a runtime need for pkg_resources would show too.
        self.run("create venv", [sys.executable, "-m", "venv", "--without-pip", str(self.root / "venv")])
        self.run("install wheel", self.pip("install", "-q", str(wheel)))


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CleanInstall]:
    root = tmp_path_factory.mktemp("wheel")
    assert not root.resolve().is_relative_to(REPO)
    install = CleanInstall(root)
    install.wheel = install.build()
    install.install(install.wheel)
    yield install
    print("clean-venv wheel timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in install.timings.items()))
    shutil.rmtree(root, ignore_errors=True)


def test_pipCheckIsClean(clean: CleanInstall) -> None:
    result = clean.run("pip check", clean.pip("check"))
    assert "No broken requirements found" in result.stdout


def test_noExtraWasInstalled(clean: CleanInstall) -> None:
    # The premise of the test: the test extra (pytest, hypothesis, SDKs) is absent.
    result = clean.run("pip list", clean.pip("list", "--format=json"))
    names = {entry["name"].lower() for entry in json.loads(result.stdout)}
    assert "httpstream" in names
    assert not names & {"pytest", "hypothesis", "centrifuge-python", "cent"}


def test_installedPackageIsTheWheelsNotTheCheckouts(clean: CleanInstall) -> None:
    where = "import httpstream; print(httpstream.__file__)"
    result = clean.run("where", [str(clean.bin / "python"), "-I", "-c", where])
    assert Path(result.stdout.strip()).is_relative_to(clean.root / "venv")


def test_everyImportOfThePackageResolves(clean: CleanInstall) -> None:
    """Every module httpstream imports on any code path (lazy imports included) imports from the clean venv."""
    check = clean.root / "importcheck.py"
    shutil.copy(Path(__file__).with_name("importcheck.py"), check)
    result = subprocess.run(
        [str(clean.bin / "python"), "-I", str(check)], cwd=clean.root, env=clean.env, capture_output=True, text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"modules missing from a plain install:\n{result.stdout}{result.stderr}"


def test_wheelShipsTheExampleConfigAndCommands(clean: CleanInstall) -> None:
    names = zipfile.ZipFile(clean.wheel).namelist()
    assert "httpstream/config.example.json" in names
    assert "twisted/plugins/httpstream_plugin.py" in names
    version = clean.run("version", [str(clean.bin / "httpstream"), "version"])
    assert version.stdout.startswith(f"httpstream v{httpstream.__version__} ")
    twistdVersion = clean.run("twistd version", [str(clean.bin / "twistd"), "httpstream", "--version"])
    assert twistdVersion.stdout == version.stdout
    # --help's pointer to the example is true of an installed wheel.
    helpText = " ".join(clean.run("twistd help", [str(clean.bin / "twistd"), "httpstream", "--help"]).stdout.split())
    shipped = Path(helpText.split("Example config: ")[1].split()[0])
    assert shipped.is_relative_to(clean.root / "venv") and json.loads(shipped.read_text())["http_stream"] is True
    clean.run("genconfig", [str(clean.bin / "httpstream"), "genconfig", "-c", "generated.json"])
    clean.run("checkconfig", [str(clean.bin / "httpstream"), "checkconfig", "--strict", "-c", "generated.json"])


def shippedExample(clean: CleanInstall) -> dict[str, object]:
    result = clean.run(
        "example path",
        [str(clean.bin / "python"), "-I", "-c",
         "import importlib.resources as r; print(r.files('httpstream') / 'config.example.json')"],
    )
    path = Path(result.stdout.strip())
    assert path.is_relative_to(clean.root / "venv"), path
    return json.loads(path.read_text())


def serveAndConnect(
    clean: CleanInstall, name: str, config: dict[str, object], whileServing: Callable[[], None] = lambda: None
) -> str:
    """
    Start the clean venv's twistd httpstream on C{config} (port from the OS), connect over http_stream, call
    C{whileServing}, stop; return the server's log.
    """
    config = {**config, "address": "127.0.0.1", "port": 0}
    path = clean.root / f"{name}.json"
    path.write_text(json.dumps(config))
    start = time.monotonic()
    command = [str(clean.bin / "twistd"), "-n", "--pidfile=", "httpstream", "-c", str(path)]
    with ListeningProcess(command, cwd=clean.root, env=clean.env) as server:
        server.waitForPort(timeout=60)
        clean.timings[f"start {name}"] = time.monotonic() - start
        stream, result = connectStream(server.port)
        stream.close()
        assert result["client"] and result["version"] == httpstream.__version__, result
        whileServing()
        server.stop()
        output = server.output
    assert "Traceback" not in output, output
    return output


def test_wheelServesTheShippedExample(clean: CleanInstall) -> None:
    example = shippedExample(clean)
    assert example.get("engine", "memory") == "memory"
    serveAndConnect(clean, "example", example)


def test_wheelServesOnTheRedisEngine(clean: CleanInstall) -> None:
    requireRedis()
    prefix = f"httpstream-wheel-{uuid.uuid4().hex[:12]}"

    def usesRedis() -> None:
        # The node is on Redis under this prefix: its PUB/SUB subscriptions (control plane, channels) are there.
        deadline = time.monotonic() + 30
        while not redis("PUBSUB", "CHANNELS", prefix + "*"):
            assert time.monotonic() < deadline, "the node never subscribed in Redis"
            time.sleep(0.1)

    try:
        serveAndConnect(
            clean, "redis",
            {**shippedExample(clean), "engine": "redis", "redis_address": f"{REDIS_HOST}:{REDIS_PORT}",
             "redis_prefix": prefix},
            usesRedis,
        )
    finally:
        deleteKeys(prefix)


def redis(*args: str) -> Any:
    """One Redis command over a socket (RESP): the clean venv's packages are not this process's."""
    with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=10) as sock:
        stream = sock.makefile("rwb")
        stream.write(f"*{len(args)}\r\n".encode() + b"".join(
            f"${len(a.encode())}\r\n".encode() + a.encode() + b"\r\n" for a in args))
        stream.flush()
        return _reply(stream)


def _reply(stream: Any) -> Any:
    line = stream.readline().rstrip(b"\r\n")
    kind, rest = line[:1], line[1:]
    if kind == b"*":
        return [_reply(stream) for _ in range(int(rest))]
    if kind == b"$":
        return None if int(rest) < 0 else stream.read(int(rest) + 2)[:-2]
    if kind == b"-":
        raise RuntimeError(rest.decode())
    return rest


def deleteKeys(prefix: str) -> None:
    """DEL every key under C{prefix}."""
    cursor = b"0"
    while True:
        cursor, keys = redis("SCAN", cursor.decode(), "MATCH", prefix + "*", "COUNT", "1000")
        for key in keys:
            redis("DEL", key.decode())
        if cursor == b"0":
            break
