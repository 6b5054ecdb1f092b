"""
SIGTERM to a real ``twistd httpstream`` process holding many connections: every connection is told 3001
"shutdown" (a WebSocket close frame; a disconnect push at the end of an http_stream), and the process exits within
``shutdown_timeout``, even when what it waits for (its Redis) does not answer.

The connections are bare ones from one asyncio loop (tests/rawclients.py).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections import Counter
from typing import Callable

from tests.rawclients import Ending, openMany
from tests.serverprocess import ServerProcess
from tests.test_redis_restart import OwnRedis, redis  # noqa: F401  (redis: a fixture)

SHUTDOWN = (3001, "shutdown")


def sigtermWithConnections(server: ServerProcess, websockets: int, streams: int) -> tuple[list[Ending], float, float]:
    """
    Open the connections, SIGTERM the server: how each ended, seconds until the last one had, and seconds until
    the process exited.
    """

    async def scenario() -> tuple[list[Ending], float]:
        connections = await openMany(server.port, websockets, streams)
        endings = [asyncio.ensure_future(connection.ending()) for connection in connections]
        started = time.monotonic()
        os.kill(server.pid, signal.SIGTERM)
        try:
            done = await asyncio.wait_for(asyncio.gather(*endings), 60)
        finally:
            for connection in connections:
                connection.close()
        return list(done), started

    endings, started = asyncio.run(scenario())
    ended = time.monotonic() - started
    code = server.waitExit(60)
    exited = time.monotonic() - started
    assert code is not None, f"the server did not exit within 60 s of SIGTERM:\n{server.output[-5000:]}"
    return endings, ended, exited


def test_sigtermDisconnectsThousandConnectionsWith3001(startServer: Callable[..., ServerProcess]) -> None:
    """
    1,000 connections (500 WebSocket, 500 http_stream) to one node; SIGTERM: each one is ended with 3001
    "shutdown", the node exits with code 0 within shutdown_timeout, and logs no traceback.
    """
    server = startServer({"shutdown_timeout": "20s", "log_level": "info"})
    endings, ended, exited = sigtermWithConnections(server, 500, 500)
    print(f"\nSIGTERM with 1000 connections: all ended in {ended:.2f} s, process exited in {exited:.2f} s")

    outcomes = Counter((e.transport, e.code, e.reason, e.problem) for e in endings)
    assert outcomes == {("websocket", *SHUTDOWN, ""): 500, ("http_stream", *SHUTDOWN, ""): 500}, outcomes
    # twistd ends by the signal it was sent (-15), as Twisted programs do; 0 would do as well.
    assert server.waitExit(0) in (0, -signal.SIGTERM), server.output[-5000:]
    assert exited < 20, exited  # shutdown_timeout
    output = server.output
    assert "Traceback" not in output and "Unhandled error" not in output, output[-5000:]
    assert "shutdown timeout reached" not in output


def test_shutdownTimeoutBoundsAStuckShutdown(
    startServer: Callable[..., ServerProcess], redis: OwnRedis  # noqa: F811
) -> None:
    """
    A node on Redis whose Redis stops answering (SIGSTOP: the TCP connections stay open, nothing replies) is sent
    SIGTERM with subscribed clients: their presence removals cannot finish, so the node gives up after
    shutdown_timeout (2 s here), logs "shutdown timeout reached", and exits; its clients still got 3001 first.
    """
    namespace = {"name": "room", "presence": True, "allow_subscribe_for_anonymous": True,
                 "allow_subscribe_for_client": True}
    server = startServer({
        "engine": "redis",
        "redis_address": f"127.0.0.1:{redis.port}",
        "redis_prefix": f"httpstream-shutdown-{uuid.uuid4().hex[:12]}",
        "namespaces": [namespace],
        "shutdown_timeout": "2s",
    })

    async def scenario() -> tuple[list[Ending], float]:
        # Subscribed to a channel with presence: leaving makes engine calls (presence removals) to wait for.
        connections = await openMany(server.port, 0, 5, channel="room:stuck")
        endings = [asyncio.ensure_future(connection.ending()) for connection in connections]
        assert redis.process is not None
        os.kill(redis.process.pid, signal.SIGSTOP)
        started = time.monotonic()
        os.kill(server.pid, signal.SIGTERM)
        try:
            done = await asyncio.wait_for(asyncio.gather(*endings), 30)
        finally:
            for connection in connections:
                connection.close()
        return list(done), started

    try:
        endings, started = asyncio.run(scenario())
        code = server.waitExit(30)
        exited = time.monotonic() - started
    finally:
        assert redis.process is not None
        os.kill(redis.process.pid, signal.SIGCONT)
    print(f"\nSIGTERM with Redis stopped: exited in {exited:.2f} s (shutdown_timeout 2 s)")
    assert code is not None, server.output[-5000:]
    assert all((e.code, e.reason) == SHUTDOWN for e in endings), endings
    # Redis' reply timeout is 5 s: exiting sooner shows the shutdown gave up at shutdown_timeout.
    assert exited < 2 + 2.9, exited
    assert "shutdown timeout reached" in server.output, server.output[-5000:]
    assert "Traceback" not in server.output, server.output[-5000:]

