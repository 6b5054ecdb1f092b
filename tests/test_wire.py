"""
The http_stream endpoint on a real socket against a real ``twistd httpstream`` process: what needs TCP itself.
Every route, status code, header, CORS and limit test of the endpoint runs on the in-memory server instead
(tests/transports/test_http_stream.py, test_emulation.py).
"""

from __future__ import annotations

import socket
import time

from tests.serverprocess import ServerProcess
from tests.wire import connectStream, emulate


def assertStillServing(server: ServerProcess) -> None:
    assert server.alive()
    stream, result = connectStream(server.port)
    assert result["client"]
    stream.close()


def test_slowReaderIsCutOff(startServer) -> None:
    """A reader that stops reading pauses the writes, its queue fills, and it is cut off with 3008."""
    server = startServer({"client_queue_max_size": 200_000, "ping_interval": -1, "pong_timeout": -1})
    slow, resultSlow = connectStream(server.port)
    emulate(server.port, resultSlow["node"], resultSlow["session"], [{"id": 2, "subscribe": {"channel": "big"}}])
    assert slow.next() == {"id": 2, "subscribe": {}}
    slow.response.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    publisher, result = connectStream(server.port)
    payload = "x" * 60000
    deadline = time.monotonic() + 30
    sent = 0
    while "3008" not in server.output and time.monotonic() < deadline:
        emulate(server.port, result["node"], result["session"],
                [{"id": 10 + sent, "publish": {"channel": "big", "data": {"p": payload}}}])
        sent += 1
        publisher.chunk()
    assert server.logged("disconnected: 3008 slow"), server.output[-2000:]
    # Far less than the 60 kB x publications it was sent: the kernel's buffers plus the bounded queue.
    assert sent > 10
    publisher.close()
    slow.close()
    assertStillServing(server)
