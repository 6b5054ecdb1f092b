"""
The programs in examples/ run as their README says, and do what it promises: examples/embedded.py (httpstream
inside a Twisted program that publishes a tick every 100 ms through the embedding API) is run as a process, and
a client of the official JS SDK receives its ticks, consecutive, over http_stream and over WebSocket.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serverprocess import ListeningProcess
from tests.test_sdk_http_stream import node  # noqa: F401  (a fixture)
from tests.test_sdk_websocket import ScenarioProcess

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SUBSCRIBER = Path(__file__).parent / "sdk" / "api_subscriber.mjs"


@pytest.fixture
def embedded() -> Iterator[ListeningProcess]:
    process = ListeningProcess([sys.executable, str(EXAMPLES / "embedded.py"), "--port", "0"])
    yield process
    process.stop()


@pytest.mark.parametrize("transport", ["http_stream", "websocket"])
def test_embeddedTicksReachSDK(node: str, embedded: ListeningProcess, transport: str) -> None:  # noqa: F811
    """The SDK subscribes to "ticks" and receives ten publications in a row, numbered consecutively."""
    port = embedded.waitForPort()
    subscriber = ScenarioProcess(
        [node, str(SUBSCRIBER), "--url", f"http://127.0.0.1:{port}", "--channel", "ticks",
         "--transports", transport, "--publications", "10", "--deadline", "15"],
        embedded,  # type: ignore[arg-type]  (what ScenarioProcess reads of a server: its output)
    )
    events = subscriber.finish(timeout=20)
    (connected,) = [e for e in events if e["event"] == "connected"]
    assert connected["transport"] == transport
    ticks = [e["data"]["n"] for e in events if e["event"] == "publication"]
    assert len(ticks) == 10
    assert ticks == list(range(ticks[0], ticks[0] + 10)), ticks
    # 100 ms apart on average (the timer's period), by the program's own clock; a late tick is followed by an
    # early one (LoopingCall keeps to its grid), so single gaps say little on a busy machine.
    times = [e["data"]["time"] for e in events if e["event"] == "publication"]
    assert 0.08 <= (times[-1] - times[0]) / 9 < 0.5, times

    assert embedded.stop() == 0
    output = embedded.output
    assert "Traceback" not in output and "Unhandled error" not in output, output


def test_embeddedStopsCleanly(embedded: ListeningProcess) -> None:
    """Stopped like twistd (SIGTERM): the services stop, the port closes, exit code 0, nothing logged as failed."""
    embedded.waitForPort()
    time.sleep(0.3)  # a few ticks, with nobody subscribed
    assert embedded.stop() == 0
    output = embedded.output
    assert "Main loop terminated" in output
    assert "Traceback" not in output and "Unhandled error" not in output, output
