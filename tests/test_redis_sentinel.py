"""
A real ``twistd httpstream`` process on the Redis engine through Redis Sentinel, across a failover: a master, its
replica and three Sentinels started by the test (tests/sentinelgroup.py) on free ports; the master is killed with
SIGKILL and the Sentinels promote the replica.

What must hold: the node follows the new master (both connections come up on it), a subscriber of the official JS
SDK (tests/sdk/redis_restart.mjs, http_stream, recovery on) sees at most a resubscribe that recovers, never a lost
position; the publication acknowledged before the kill, which had reached the replica, is still in history (same
epoch and offset); publications made through the server API after the failover reach the subscriber in order. The
server log holds no traceback.

Replication is asynchronous: a write the master acknowledged but never sent to the replica is lost in a failover
(as with Centrifugo). The test waits until the replica has the stream before killing, and checks what is
guaranteed.
"""

from __future__ import annotations

import uuid
from typing import Callable, Iterator

import pytest

from tests.sentinelgroup import MASTER_NAME, SentinelGroup, command
from tests.serverprocess import ServerProcess
from tests.test_redis_restart import (  # noqa: F401 (node, sdkClients: fixtures)
    API_KEY,
    NAMESPACE,
    SDKClient,
    api,
    assertCleanLog,
    by,
    kind,
    node,
    sdkClients,
    waitForLog,
)


@pytest.fixture
def group() -> Iterator[SentinelGroup]:
    sentinels = SentinelGroup(sentinels=3, downAfter=500, failoverTimeout=2000)
    try:
        sentinels.start()
        yield sentinels
    finally:
        sentinels.stop()


def upOn(port: int) -> Callable[[str], bool]:
    """Both connections (commands, pubsub) are up on the Redis at C{port}."""
    return lambda output: all(
        any(f"Redis {link} connection to redis://127.0.0.1:{port}/0 is up" in line for line in output.splitlines())
        for link in ("commands", "pubsub")
    )


def test_sdkSubscriberFollowsFailover(
    startServer: Callable[..., ServerProcess],
    group: SentinelGroup,
    sdkClients: Callable[[ServerProcess, str], SDKClient],
) -> None:
    prefix = f"httpstream-sentinel-{uuid.uuid4().hex[:12]}"
    permissions = {
        f"allow_{action}_for_{who}": True
        for action in ("subscribe", "publish", "history", "presence")
        for who in ("client", "anonymous")
    }
    server = startServer({
        "engine": "redis",
        "redis_sentinel_address": [group.sentinelAddress],
        "redis_sentinel_master_name": MASTER_NAME,
        "redis_prefix": prefix,
        "api_key": API_KEY,
        "namespaces": [{"name": NAMESPACE, **permissions, "history_size": 10, "history_ttl": "300s",
                        "force_recovery": True}],
    })
    waitForLog(server, upOn(group.master), "both connections up on the master")
    channel = f"{NAMESPACE}:failover"
    client = sdkClients(server, channel)
    subscribed = client.expect(kind("subscribed"), "subscribed")
    assert subscribed["recoverable"] is True and subscribed["offset"] == 0

    published = api(server, "publish", {"channel": channel, "data": {"n": 1}})
    epoch = published["result"]["epoch"]
    assert published["result"]["offset"] == 1, published
    client.expect(kind("publication", data={"n": 1}), "the first publication")
    # The replica has the stream (asynchronous replication: only what reached it survives the master).
    stream = f"{prefix}.history.stream.{channel}"
    waitForLog(server, lambda _: command(group.replica, "XLEN", stream) == "1", "the stream on the replica")

    group.kill(group.master)
    assert group.waitForFailover() == group.replica
    waitForLog(server, upOn(group.replica), "both connections up on the new master", timeout=30)
    waitForLog(server, lambda output: "channels again" in output, "the resubscription")

    history = api(server, "history", {"channel": channel, "limit": 10}, timeout=15)["result"]
    assert (history["offset"], history["epoch"]) == (1, epoch), history
    assert [p["data"] for p in history["publications"]] == [{"n": 1}]
    published = api(server, "publish", {"channel": channel, "data": {"n": 2}})
    assert published["result"] == {"offset": 2, "epoch": epoch}, published
    second = client.expect(kind("publication", data={"n": 2}), "the publication after the failover")
    assert second["offset"] == 2

    events = client.finish()
    assert [(e["data"], e["offset"]) for e in by(events, "publication")] == [({"n": 1}, 1), ({"n": 2}, 2)]
    # At most a resubscribe that recovered; never an unsubscribe or a lost position.
    for again in by(events, "subscribed")[1:]:
        assert again["wasRecovering"] is True and again["recovered"] is True, again
    assert not by(events, "unsubscribed") and not by(events, "sub_error") and not by(events, "error")
    assert all(event["code"] != 2500 for event in by(events, "subscribing"))
    assert server.logged("Sentinel")
    assertCleanLog(server)
