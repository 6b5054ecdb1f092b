"""
One of two real nodes on Redis killed with -9 while publications flow: the other node's SDK subscribers (tests/sdk/
faults.mjs, WebSocket and http_stream) are unaffected (no disconnect, every publication once, in order), and the
dead node's clients leave the cluster's presence within global_presence_ttl, as no node refreshes them any more.

Needs Redis on 127.0.0.1:6379 (database 9, a key prefix of its own, deleted afterwards), as tests/cluster/test_cluster.py.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from typing import Any, Callable

from tests.cluster.test_cluster import KEY, Cluster, api, startCluster  # noqa: F401  (startCluster: a fixture)
from tests.test_faults import Publisher, Swarm, clientSpecs, swarms  # noqa: F401  (swarms: a fixture)
from tests.test_faults_redis import Fault
from tests.test_sdk_http_stream import by, node  # noqa: F401  (node: a fixture)

PRESENCE_TTL = 4.0
PUBLICATIONS = 1000
SUBSCRIBERS = 10

LIVE: dict[str, Any] = {
    "name": "live",
    "presence": True,
    "history_size": 2000,
    "history_ttl": "300s",
    "force_recovery": True,
    "allow_subscribe_for_client": True,
}


def test_killedNodeLeavesOtherNodesClientsAlone(
    startCluster: Callable[..., Cluster], swarms: Callable[..., Swarm]  # noqa: F811
) -> None:
    """
    Subscribers alternate between nodes A and B; publications go through A; B is killed (SIGKILL) after a third
    of them. A's subscribers: never disconnected, every publication once, in order. The presence A answers lists
    every subscriber before, and only A's within global_presence_ttl (4 s) of the kill (and stays so).
    """
    cluster = startCluster({
        "namespaces": [LIVE],
        "global_presence_ttl": f"{PRESENCE_TTL}s",
        "client_presence_update_interval": "1s",
        "log_level": "info",
    })
    channel = f"live:{uuid.uuid4().hex[:8]}"
    specs = clientSpecs([cluster.a, cluster.b], SUBSCRIBERS)
    onA = {spec["who"] for spec in specs if spec["url"] == cluster.a.url}
    swarm = swarms(specs, channel, cluster, settle=3)
    swarm.ready()
    clients = {e["who"]: e["client"] for e in swarm.seen("connected")}
    assert len(clients) == SUBSCRIBERS
    assert sorted(api(cluster.a, "presence", {"channel": channel})["presence"]) == sorted(clients.values())

    gone: list[float] = []

    def kill() -> None:
        os.kill(cluster.b.pid, signal.SIGKILL)
        killed = time.monotonic()
        deadline = killed + PRESENCE_TTL + 10
        while time.monotonic() < deadline:
            present = set(api(cluster.a, "presence", {"channel": channel})["presence"])
            if present == {clients[who] for who in onA}:
                gone.append(time.monotonic() - killed)
                return
            time.sleep(0.1)

    publisher = Publisher([cluster.a], channel, key=KEY)
    fault = Fault(PUBLICATIONS // 3, kill)
    fault.start()
    took = publisher.publishAll(PUBLICATIONS, 8.0, batch=5, during=fault.progress)
    fault.join(30)
    assert fault.error is None, fault.error
    # Still only A's, seconds after B's entries went: A keeps refreshing its own.
    assert sorted(api(cluster.a, "presence", {"channel": channel})["presence"]) == sorted(
        clients[who] for who in onA
    )
    swarm.send({"expect": PUBLICATIONS})
    events = swarm.finish(60)
    summaries = {e["who"]: e for e in by(events, "summary")}
    print(
        f"\nnode B killed after {PUBLICATIONS // 3} of {PUBLICATIONS} publications ({took:.1f} s): A's "
        f"{len(onA)} subscribers lost {sum(summaries[w]['lost'] for w in onA)}, duplicated "
        f"{sum(summaries[w]['duplicated'] for w in onA)}, out of order {sum(summaries[w]['outOfOrder'] for w in onA)}"
        f", reconnects {sum(summaries[w]['reconnects'] for w in onA)}; B's clients left presence "
        f"{f'{gone[0]:.1f}' if gone else 'never'} s after the kill (global_presence_ttl {PRESENCE_TTL} s)"
    )
    assert gone and gone[0] <= PRESENCE_TTL + 3, gone
    assert publisher.refused == 0, publisher.errors[:5]
    for who in onA:
        summary = summaries[who]
        assert (summary["received"], summary["lost"], summary["duplicated"], summary["outOfOrder"]) == (
            PUBLICATIONS, 0, 0, 0), summary
        assert summary["reconnects"] == 0, summary
        # Connected once, never told to reconnect: its only disconnect is the script's own at the end.
        assert [e["code"] for e in by(events, "connecting") if e["who"] == who] == [0]
        assert [e["code"] for e in by(events, "disconnected") if e["who"] == who] == [0]
    cluster.assertCleanLogs()
