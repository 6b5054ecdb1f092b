from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pytest

from tests.serverprocess import ServerProcess


@pytest.fixture
def startServer(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start real server processes (config overrides as keyword dict); all are stopped after the test."""
    started: list[ServerProcess] = []

    def start(
        overrides: Optional[dict[str, Any]] = None, name: str = "server", command: Optional[list[str]] = None
    ) -> ServerProcess:
        server = ServerProcess(tmp_path, overrides, name, command)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
