"""
A real httpstream server process for the wire and SDK tests: ``twistd -n httpstream -c FILE`` on 127.0.0.1, on a
port the OS picks, read back from the log line the service prints.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

LISTENING = re.compile(r"listening on (?P<scheme>https?)://[^:]+:(?P<port>\d+)")

# What every test server shares: loopback, an OS-chosen port, the example's permissions.
BASE_CONFIG: dict[str, Any] = {
    "address": "127.0.0.1",
    "port": 0,
    "http_stream": True,
    "allow_anonymous_connect_without_token": True,
    "allow_subscribe_for_anonymous": True,
    "allow_subscribe_for_client": True,
    "allow_publish_for_anonymous": True,
    "allow_publish_for_client": True,
    "token_hmac_secret_key": "test-secret-0123456789abcdef0123456789",
    "log_level": "debug",
}


EMBEDDED = [sys.executable, str(Path(__file__).with_name("embedded_server.py"))]


def twistdCommand() -> list[str]:
    """twistd from this interpreter's environment (the venv the tests run in)."""
    script = Path(sys.executable).with_name("twistd")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


class ListeningProcess:
    """
    A program that logs "listening on http://HOST:PORT" once it serves: a server, or an example embedding one.

    @ivar port: the port it listens on (after L{waitForPort}).
    @ivar output: everything it has logged so far (read by a thread, so the pipe never fills).
    """

    def __init__(
        self, command: list[str], cwd: Optional[Path] = None, env: Optional[dict[str, str]] = None
    ) -> None:
        """@param env: the environment (default: this process's)."""
        self.port = 0
        self.scheme = "http"
        self._lines: list[str] = []
        self._process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self._lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self._lines)

    def logged(self, text: str, timeout: float = 10.0, regex: bool = False) -> bool:
        """
        Whether C{text} (a substring, or a regular expression with C{regex}) is in the output within C{timeout}
        seconds: a line is read from the pipe by a thread, so it may arrive a moment after what the test saw.
        """
        deadline = time.monotonic() + timeout
        while True:
            found = re.search(text, self.output) is not None if regex else text in self.output
            if found or time.monotonic() >= deadline:
                return found
            time.sleep(0.05)

    def waitForPort(self, timeout: float = 20.0) -> int:
        """Wait for the listening line and return the port; stop the process and fail if it never comes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = LISTENING.search(self.output)
            if match:
                self.port = int(match.group("port"))
                self.scheme = match.group("scheme")
                return self.port
            if self._process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server did not start:\n{self.output}")

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """The server's process id (for /proc readings and profilers)."""
        return self._process.pid

    def alive(self) -> bool:
        return self._process.poll() is None

    def waitExit(self, timeout: float) -> Optional[int]:
        """Wait up to C{timeout} seconds for the process to end by itself: its exit code, None if still running."""
        try:
            return self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> int:
        """Stop it (SIGTERM, as an operator would) and return its exit code."""
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._reader.join(5)
        return self._process.returncode

    def __enter__(self) -> "ListeningProcess":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ServerProcess(ListeningProcess):
    """
    One running server, from a config of L{BASE_CONFIG} plus overrides.

    @ivar port: the port it listens on.
    @ivar output: everything it has logged so far.
    """

    def __init__(
        self,
        directory: Path,
        overrides: Optional[dict[str, Any]] = None,
        name: str = "server",
        command: Optional[list[str]] = None,
    ) -> None:
        """
        @param command: the program to run with the config file's path appended (default: twistd httpstream -c);
            L{EMBEDDED} runs httpstream embedded in a Twisted program with in-process RPC handlers.
        """
        config = dict(BASE_CONFIG)
        config.update(overrides or {})
        self.configPath = directory / f"{name}.json"
        self.configPath.write_text(json.dumps(config))
        self.config = config
        super().__init__(
            (command or twistdCommand() + ["-n", "--pidfile=", "httpstream", "-c"]) + [str(self.configPath)],
            cwd=directory,
        )
        self.waitForPort()

    def __enter__(self) -> "ServerProcess":
        return self
