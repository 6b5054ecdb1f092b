"""
Redis lost while a real ``twistd httpstream`` node publishes to recovering SDK subscribers (tests/sdk/faults.mjs,
half WebSocket, half http_stream), on a redis-server of the test's own (tests/test_redis_restart.py's OwnRedis):

- restarted (SIGTERM, with an append-only file so its data survives): the stream keeps its epoch, every
  subscriber receives every publication the API accepted once, in order (recovering what its node's PUB/SUB missed);
- killed with -9 and started again empty: the stream's epoch changes; every subscriber receives every publication
  accepted before, is told ``recovered: false`` once it resubscribes in the new epoch, and receives every one
  accepted after that point, once, in order; nothing else;
- stopped (SIGSTOP: connections open, no replies) and resumed: calls fail after the reply timeout instead of
  hanging, and nothing accepted is lost;
- cut off by a network blackhole (a proxy that silences the node's connections, while new ones work): the silent
  PUB/SUB connection is found by its PING and remade, and the subscriber recovers what it missed within seconds.

In each case publishes during the outage answer error 100 (the publisher retries the same number until accepted),
no call hangs past Redis' reply timeout, the node stays up, and its subscribers stay connected.

Also: a node does not accept connections before its Redis connections are up (as Centrifugo, which starts serving
only once its broker runs), so its first subscribers never get error 100.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
import requests

from tests.rawclients import HTTPStreamConnection
from tests.serverprocess import BASE_CONFIG, ListeningProcess, ServerProcess, twistdCommand
from tests.test_faults import RECOVERY, Publisher, Swarm, clientSpecs, swarms  # noqa: F401  (swarms: a fixture)
from tests.test_redis_restart import OwnRedis, SDKClient, redis, sdkClients  # noqa: F401  (fixtures)
from tests.test_sdk_http_stream import by, node  # noqa: F401  (node: a fixture)

API_KEY = "faults-redis-api-key"
REPLY_TIMEOUT = 5.0  # seconds: RedisShard's replyTimeout
PUBLICATIONS = 2000
SUBSCRIBERS = 10

REC: dict[str, Any] = {
    "name": "rec",
    "history_size": 10000,
    "history_ttl": "300s",
    "force_recovery": True,
    "allow_subscribe_for_client": True,
    "allow_subscribe_for_anonymous": True,
}


def numbers(summary: dict[str, Any]) -> list[int]:
    """Every number a subscriber received, in order (faults.mjs --numbers sends them as runs)."""
    return [n for first, last in summary["runs"] for n in range(first, last + 1)]


@pytest.fixture
def redisNode(startServer: Callable[..., ServerProcess], redis: OwnRedis) -> Callable[[], ServerProcess]:  # noqa: F811
    def start() -> ServerProcess:
        return startServer({
            "engine": "redis",
            "redis_address": f"127.0.0.1:{redis.port}",
            "redis_prefix": f"httpstream-faults-{uuid.uuid4().hex[:12]}",
            "api_key": API_KEY,
            "namespaces": [REC],
            "log_level": "info",
            **RECOVERY,
        })

    return start


class Fault(threading.Thread):
    """Runs C{action} once the publisher has published C{at} numbers; records when it started and ended."""

    def __init__(self, at: int, action: Callable[[], None]) -> None:
        super().__init__(daemon=True)
        self.at = at
        self.action = action
        self.published = 0
        self.took = 0.0
        self.error: Optional[BaseException] = None
        self._moved = threading.Condition()

    def progress(self, published: int) -> None:
        with self._moved:
            self.published = published
            self._moved.notify()

    def run(self) -> None:
        with self._moved:
            self._moved.wait_for(lambda: self.published >= self.at, timeout=120)
        started = time.monotonic()
        try:
            self.action()
        except BaseException as e:  # reported by the test
            self.error = e
        self.took = time.monotonic() - started


def publishThroughFault(
    server: ServerProcess, swarms: Callable[..., Swarm], action: Callable[[], None], what: str  # noqa: F811
) -> tuple[Publisher, dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Subscribe, publish PUBLICATIONS numbers while C{action} runs at a third of them; the summaries and events."""
    channel = f"rec:{uuid.uuid4().hex[:8]}"
    swarm = swarms(clientSpecs([server], SUBSCRIBERS), channel, server, numbers=True, settle=5)
    swarm.ready()
    publisher = Publisher([server], channel, key=API_KEY)
    fault = Fault(PUBLICATIONS // 3, action)
    fault.start()
    took = publisher.publishAll(PUBLICATIONS, 10.0, batch=1, during=fault.progress)
    fault.join(60)
    assert fault.error is None, fault.error
    swarm.send({"expect": PUBLICATIONS})
    events = swarm.finish(90)
    summaries = {e["who"]: e for e in by(events, "summary")}
    epochs = sorted({epoch for _, _, epoch in publisher.accepted})
    print(
        f"\n{what}: {PUBLICATIONS} publications in {took:.1f} s, the fault took {fault.took:.1f} s; "
        f"{publisher.refused} publish calls refused ({sorted({str(e) for e in publisher.errors})}), slowest call "
        f"{publisher.slowest:.2f} s; {len(epochs)} epoch(s); {len(summaries)} subscribers: lost "
        f"{sum(s['lost'] for s in summaries.values())}, duplicated {sum(s['duplicated'] for s in summaries.values())}"
        f", out of order {sum(s['outOfOrder'] for s in summaries.values())}, recoveries "
        f"{sum(s['recoveries'] for s in summaries.values())} (not recovered "
        f"{sum(s['notRecovered'] for s in summaries.values())})"
    )
    assert [n for n, _, _ in publisher.accepted] == list(range(1, PUBLICATIONS + 1))
    assert all(error == {"code": 100, "message": "internal server error"} for error in publisher.errors), (
        publisher.errors[:5]
    )
    # No call hangs: a lost connection fails calls at once, a silent one after the reply timeout.
    assert publisher.slowest < REPLY_TIMEOUT + 5, publisher.slowest
    assert len(summaries) == SUBSCRIBERS
    return publisher, summaries, events


def assertOnlyRetriesDuplicated(publisher: Publisher, summaries: dict[str, dict[str, Any]]) -> None:
    """
    Every subscriber received 1..PUBLICATIONS, in order, with no loss; a number is received twice only if a
    publish of it was answered an error and retried.

    A publish answered an error because its connection was lost or its reply timed out may still have been
    stored (Redis ran the command; its reply never came back). With an idempotency key, as here, the retry
    answers the stored one's result (test_idempotentRetryAfterTimeoutPublishesOnce); a publish whose script
    never reached Redis is published by its retry; either way a number is received twice only if it was retried.
    """
    retried = {n for n, _ in publisher.refusals}
    twice: set[int] = set()
    for who, summary in summaries.items():
        received = numbers(summary)
        assert sorted(set(received)) == list(range(1, PUBLICATIONS + 1)), (who, summary["lost"])
        assert received == sorted(received), (who, summary["outOfOrder"])
        repeated = {n for n in set(received) if received.count(n) > 1}
        assert repeated <= retried, (who, repeated, retried)
        twice |= repeated
    print(f"numbers received twice (a publish answered an error, yet stored, then retried): {sorted(twice)}")


def assertStayedConnected(events: list[dict[str, Any]]) -> None:
    """No client lost its connection (one connect each; the only disconnects are the script's own at the end)."""
    assert all(e["code"] == 0 for e in by(events, "connecting")), by(events, "connecting")
    assert len(by(events, "connected")) == SUBSCRIBERS, by(events, "connected")


def assertCleanLog(server: ServerProcess) -> None:
    assert server.alive(), server.output[-5000:]
    server.stop()
    assert "Traceback" not in server.output and "Unhandled error" not in server.output, server.output[-5000:]


def test_redisRestartLosesNothing(
    redisNode: Callable[[], ServerProcess], redis: OwnRedis, swarms: Callable[..., Swarm]  # noqa: F811
) -> None:
    """
    A persistent Redis restarted mid-publishing: one epoch throughout, and every subscriber has 1..2000 once each,
    in order (publications its node's PUB/SUB missed come back through recovery: recovered true).
    """
    redis.stop()
    redis.arguments = ["--appendonly", "yes", "--appendfsync", "always"]
    redis.start()
    server = redisNode()

    def restart() -> None:
        redis.stop()
        time.sleep(1.0)
        redis.start()

    publisher, summaries, events = publishThroughFault(server, swarms, restart, "Redis restart")
    assert len({epoch for _, _, epoch in publisher.accepted}) == 1
    assert all(s["notRecovered"] == 0 for s in summaries.values())
    assertOnlyRetriesDuplicated(publisher, summaries)
    assertStayedConnected(events)
    assertCleanLog(server)


def test_redisKillLosesOnlyWhatSubscribersAreToldOf(
    redisNode: Callable[[], ServerProcess], redis: OwnRedis, swarms: Callable[..., Swarm]  # noqa: F811
) -> None:
    """
    Redis killed with -9 mid-publishing and started again empty: a new epoch. Each subscriber receives exactly
    the publications accepted in the old epoch and those of the new epoch after the position it was given when
    it resubscribed (subscribed with wasRecovering true, recovered false): once each, in order.
    """
    server = redisNode()

    def kill() -> None:
        redis.kill()
        time.sleep(1.0)
        redis.start()

    publisher, summaries, events = publishThroughFault(server, swarms, kill, "Redis kill -9")
    old, new = publisher.accepted[0][2], publisher.accepted[-1][2]
    assert old != new
    assert {epoch for _, _, epoch in publisher.accepted} == {old, new}
    told = 0
    for who, summary in summaries.items():
        resubscribed = [e for e in by(events, "subscribed") if e["who"] == who and e["epoch"] == new]
        assert resubscribed, (who, [e for e in events if e.get("who") == who])
        first = resubscribed[0]
        assert (first["wasRecovering"], first["recovered"]) == (True, False), first
        told += 1
        expected = [n for n, _, epoch in publisher.accepted if epoch == old]
        expected += [n for n, offset, epoch in publisher.accepted if epoch == new and offset > first["offset"]]
        received = numbers(summary)
        assert received == expected, (who, first, len(received), len(expected))
    print(f"{told} subscribers told recovered: false, each receiving exactly what it was not told it missed")
    assertStayedConnected(events)
    assertCleanLog(server)


def test_redisBlackholeFailsCallsWithinReplyTimeout(
    redisNode: Callable[[], ServerProcess], redis: OwnRedis, swarms: Callable[..., Swarm]  # noqa: F811
) -> None:
    """
    Redis stops answering for 7 s (SIGSTOP: its connections stay open, as behind a network blackhole), then
    resumes: publishes meanwhile fail with error 100 after the reply timeout (never hang), and once it answers
    again every subscriber has 1..2000 once each, in order (its data is intact).
    """
    server = redisNode()

    def blackhole() -> None:
        assert redis.process is not None
        os.kill(redis.process.pid, signal.SIGSTOP)
        try:
            time.sleep(7.0)
        finally:
            os.kill(redis.process.pid, signal.SIGCONT)

    publisher, summaries, events = publishThroughFault(server, swarms, blackhole, "Redis stopped (SIGSTOP)")
    assert publisher.refused >= 1
    assert len({epoch for _, _, epoch in publisher.accepted}) == 1
    assert any(took >= REPLY_TIMEOUT - 1 for _, took in publisher.refusals), publisher.refusals  # timed out
    assert all(s["notRecovered"] == 0 for s in summaries.values())
    assertOnlyRetriesDuplicated(publisher, summaries)
    assertStayedConnected(events)
    assertCleanLog(server)


def test_idempotentRetryAfterTimeoutPublishesOnce(redisNode: Callable[[], ServerProcess], redis: OwnRedis) -> None:
    """
    A publish with an idempotency key whose reply times out (Redis stopped, SIGSTOP) but which Redis carries out
    when it resumes, retried with the same key: the channel's history has it once, and the retry answers the
    first one's offset: the publish script itself stored the key's result in Redis, where the retry finds it.
    """
    server = redisNode()
    channel = f"rec:{uuid.uuid4().hex[:8]}"
    publisher = Publisher([server], channel, key=API_KEY)
    assert publisher.publishBatch(0, [1]) == []
    assert redis.process is not None
    os.kill(redis.process.pid, signal.SIGSTOP)
    try:
        assert publisher.publishBatch(0, [2]) == [2]  # error 100 once the reply timeout passes
    finally:
        os.kill(redis.process.pid, signal.SIGCONT)
    deadline = time.monotonic() + 30
    while publisher.publishBatch(0, [2]):
        assert time.monotonic() < deadline, publisher.errors
        time.sleep(0.2)
    history = api(server, "history", {"channel": channel, "limit": 10})["result"]
    published = [p["data"]["n"] for p in history["publications"]]
    server.stop()
    assert published == [1, 2], published


def api(server: ServerProcess, method: str, body: dict[str, Any]) -> dict[str, Any]:
    response = requests.post(f"{server.url}/api/{method}", json=body, headers={"X-API-Key": API_KEY}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


# Start-up


def test_nodeAcceptsConnectionsOnlyOnceRedisIsUp(tmp_path: Path, redis: OwnRedis) -> None:  # noqa: F811
    """
    A node started while its Redis is down binds its port but accepts no connection and does not say
    "listening"; it says it is waiting for Redis. A client that connects meanwhile (and subscribes in its first
    request) waits in the backlog; once Redis is up the node says "listening" and that client's connect and
    subscribe both succeed (no error 100).
    """
    redis.kill()
    config = dict(BASE_CONFIG)
    config.update({
        "engine": "redis",
        "redis_address": f"127.0.0.1:{redis.port}",
        "redis_prefix": f"httpstream-startup-{uuid.uuid4().hex[:12]}",
        "namespaces": [REC],
    })
    path = tmp_path / "startup.json"
    path.write_text(json.dumps(config))
    server = ListeningProcess(twistdCommand() + ["-n", "--pidfile=", "httpstream", "-c", str(path)], cwd=tmp_path)
    try:
        port = waitForBoundPort(server)
        deadline = time.monotonic() + 15
        while "waiting for Redis" not in server.output:
            assert time.monotonic() < deadline and server.alive(), server.output
            time.sleep(0.05)

        async def early() -> None:
            connection = HTTPStreamConnection(port, channel="rec:early")
            opening = asyncio.ensure_future(connection.open())
            await asyncio.sleep(1.5)
            assert not opening.done(), "the node answered before its Redis was up"
            assert "listening on" not in server.output, server.output
            redis.start()
            await asyncio.wait_for(opening, 30)  # raises if the connect or the subscribe was refused
            connection.close()

        asyncio.run(early())
        assert server.waitForPort(15) == port
        assert server.alive()
    finally:
        server.stop()
    assert "Traceback" not in server.output, server.output


def test_sigtermWhileWaitingForRedisExits(tmp_path: Path, redis: OwnRedis) -> None:  # noqa: F811
    """A node still waiting for its Redis stops at once on SIGTERM (nothing to drain), without a traceback."""
    redis.kill()
    config = dict(BASE_CONFIG)
    config.update({"engine": "redis", "redis_address": f"127.0.0.1:{redis.port}", "shutdown_timeout": "20s"})
    path = tmp_path / "waiting.json"
    path.write_text(json.dumps(config))
    server = ListeningProcess(twistdCommand() + ["-n", "--pidfile=", "httpstream", "-c", str(path)], cwd=tmp_path)
    try:
        waitForBoundPort(server)
        deadline = time.monotonic() + 15
        while "waiting for Redis" not in server.output:
            assert time.monotonic() < deadline and server.alive(), server.output
            time.sleep(0.05)
        started = time.monotonic()
        os.kill(server.pid, signal.SIGTERM)
        code = server.waitExit(20)
        took = time.monotonic() - started
    finally:
        server.stop()
    print(f"\nSIGTERM while waiting for Redis: exited in {took:.2f} s")
    assert code is not None and took < 10, server.output
    assert "Traceback" not in server.output and "shutdown timeout reached" not in server.output, server.output
    assert "listening on" not in server.output


def waitForBoundPort(server: ListeningProcess, timeout: float = 20) -> int:
    """The port from Twisted's "<Site> starting on PORT" line, logged once the port is bound."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = re.search(r"Site starting on (\d+)", server.output)
        if match:
            return int(match.group(1))
        assert server.alive(), server.output
        time.sleep(0.05)
    raise AssertionError(f"the port was never bound:\n{server.output}")



# A network blackhole


class Blackhole(threading.Thread):
    """
    A TCP proxy to a Redis that can turn every connection it carries into a silent one, as a network that drops
    their packets (a NAT or firewall that lost its state, a Redis moved behind a load balancer): after L{cut} the
    connections it had stay open and carry nothing more, either way; connections made after it work.
    """

    def __init__(self, upstream: int) -> None:
        super().__init__(daemon=True)
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.generation = 0  # connections of an older generation are cut
        self.sockets: list[socket.socket] = []

    def run(self) -> None:
        while True:
            try:
                accepted, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream))
            except OSError:
                accepted.close()
                continue
            self.sockets += [accepted, upstream]
            generation = self.generation
            for source, target in ((accepted, upstream), (upstream, accepted)):
                threading.Thread(target=self._pump, args=(source, target, generation), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, generation: int) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                return
            if not data:
                if generation == self.generation:
                    target.close()
                return
            if generation == self.generation:
                try:
                    target.sendall(data)
                except OSError:
                    return
            # else: dropped, and the connection stays open

    def cut(self) -> None:
        self.generation += 1

    def close(self) -> None:
        self.listener.close()
        for s in self.sockets:
            s.close()


def test_silentPubSubConnectionIsNoticed(
    startServer: Callable[..., ServerProcess], redis: OwnRedis, sdkClients: Callable[..., SDKClient]  # noqa: F811
) -> None:
    """
    The node's connections to Redis go silent without closing (L{Blackhole}); connections made afterwards work.
    A publish through the API answers error 100 after the reply timeout and the commands connection is made
    again; the PUB/SUB connection is pinged, so it is found dead and made again too, its channels subscribed
    again and the subscriber's position checked: the publication made meanwhile reaches the SDK subscriber
    (by recovery) within seconds, not at the next position check (27 s to a minute later).
    """
    proxy = Blackhole(redis.port)
    proxy.start()
    try:
        server = startServer({
            "engine": "redis",
            "redis_address": f"127.0.0.1:{proxy.port}",
            "redis_prefix": f"httpstream-blackhole-{uuid.uuid4().hex[:12]}",
            "api_key": API_KEY,
            "namespaces": [REC],
        })
        channel = f"rec:{uuid.uuid4().hex[:8]}"
        client = sdkClients(server, channel)
        client.expect(lambda e: e["event"] == "subscribed", "subscribed")
        publisher = Publisher([server], channel, key=API_KEY)
        assert publisher.publishBatch(0, [1]) == []
        client.expect(lambda e: e["event"] == "publication" and e["data"] == {"n": 1}, "the first publication")

        proxy.cut()
        cut = time.monotonic()
        while publisher.publishBatch(0, [2]):  # error 100 after the reply timeout, then accepted
            assert time.monotonic() - cut < 30, publisher.errors
        accepted = time.monotonic() - cut
        client.expect(lambda e: e["event"] == "publication" and e["data"] == {"n": 2}, "the second publication",
                      timeout=20)  # without the PING: the next position check, 27 s to a minute away
        arrived = time.monotonic() - cut
        print(f"\nblackhole: publish accepted again {accepted:.1f} s after the cut, delivered after {arrived:.1f} s")
        assert publisher.errors and all(e == {"code": 100, "message": "internal server error"}
                                        for e in publisher.errors), publisher.errors
        client.finish()
        assertCleanLog(server)
    finally:
        proxy.close()
