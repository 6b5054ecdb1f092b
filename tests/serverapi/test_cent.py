"""
``cent`` (Centrifugo's Python API client, 5.x, both ``cent.Client`` and ``cent.AsyncClient``) against a real
``twistd httpstream`` process, with clients of the official JS SDK on http_stream watching what each call does
to them (tests/sdk/api_subscriber.mjs prints their events): publications and broadcasts arriving, presence of
the connected clients, history, forced disconnects and unsubscribes with their codes, server-side subscribes;
the errors cent raises; and the HTTP edges of the API (statuses, error modes) with plain requests.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from cent import (
    AsyncClient,
    BatchRequest,
    BroadcastRequest,
    ChannelsRequest,
    Client,
    Disconnect,
    DisconnectRequest,
    HistoryRemoveRequest,
    HistoryRequest,
    InfoRequest,
    PresenceRequest,
    PresenceStatsRequest,
    PublishRequest,
    SubscribeRequest,
    UnsubscribeRequest,
)
from cent.exceptions import CentApiResponseError, CentTransportError, CentUnauthorizedError

from tests.serverprocess import ServerProcess
from tests.test_sdk_http_stream import node, token  # noqa: F401  (node: a fixture)
from tests.test_sdk_websocket import ScenarioProcess

SCRIPT = Path(__file__).parent.parent / "sdk" / "api_subscriber.mjs"
KEY = "cent-test-api-key"

CONFIG: dict[str, Any] = {
    "api_key": KEY,
    "namespaces": [
        {
            "name": "chat",
            "presence": True,
            "history_size": 20,
            "history_ttl": "5m",
            "allow_subscribe_for_client": True,
        },
    ],
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the module: every test uses its own users and channels."""
    process = ServerProcess(tmp_path_factory.mktemp("cent"), CONFIG, "cent")
    yield process
    process.stop()
    # No call, disconnect or unsubscribe left an exception behind (a half-closed client, a failed callback).
    for sign in ("Traceback (most recent call last)", "Unhandled error", "#error]", "#critical]"):
        assert sign not in process.output, process.output


@pytest.fixture
def cent(server: ServerProcess) -> Iterator[Client]:
    client = Client(f"{server.url}/api", KEY, timeout=5)
    yield client
    client.close()


class SDKClient(ScenarioProcess):
    """One SDK client (tests/sdk/api_subscriber.mjs) running in the background."""

    clientID = ""

    def seen(self, kind: str) -> list[dict[str, Any]]:
        """The events of C{kind} read so far (by L{waitFor})."""
        return [e for e in map(json.loads, self._stdout) if e["event"] == kind]


@pytest.fixture
def sdk(node: str, server: ServerProcess) -> Iterator[Callable[..., SDKClient]]:  # noqa: F811
    """Start SDK clients (user, channels); each waits until it is connected and subscribed."""
    started: list[SDKClient] = []

    def start(user: str, *channels: str, who: str = "a", **options: Any) -> SDKClient:
        command = [node, str(SCRIPT), "--url", server.url, "--token", token({"sub": user}), "--who", who]
        for channel in channels:
            command += ["--channel", channel]
        for name, value in options.items():
            command += [f"--{name}", str(value)]
        process = SDKClient(command, server)
        started.append(process)
        process.clientID = process.waitFor(lambda e: e["event"] == "connected")["client"]
        process.waitFor(lambda e: e["event"] == "ready")
        return process

    yield start
    for process in started:
        process.kill()


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def event(kind: str, **fields: Any) -> Callable[[dict[str, Any]], bool]:
    """A waitFor predicate: an event of C{kind} whose fields include C{fields}."""
    return lambda e: e["event"] == kind and all(e.get(k) == v for k, v in fields.items())


def test_publishReachesSDKSubscriber(cent: Client, sdk: Callable[..., SDKClient]) -> None:
    """
    A publication through cent arrives at the SDK client on http_stream with its data and tags; the result is
    the stream position (the channel keeps history), the same the SDK sees as the publication's offset.
    """
    channel = unique("chat:")
    alice = sdk("alice", channel)
    result = cent.publish(PublishRequest(channel=channel, data={"text": "héllo", "n": [1, 2]}, tags={"k": "v"}))
    assert result.offset == 1 and result.epoch
    got = alice.waitFor(event("publication", channel=channel))
    assert got["data"] == {"text": "héllo", "n": [1, 2]}
    assert got["tags"] == {"k": "v"}
    assert got["offset"] == 1


def test_b64dataAndIdempotency(cent: Client, sdk: Callable[..., SDKClient]) -> None:
    """b64data is published decoded; a repeated idempotency_key publishes once (same result), within 5 minutes."""
    channel = unique("chat:")
    alice = sdk("alice", channel)
    encoded = base64.b64encode(json.dumps({"from": "b64"}).encode()).decode()
    cent.publish(PublishRequest(channel=channel, data=None, b64data=encoded))
    assert alice.waitFor(event("publication", channel=channel))["data"] == {"from": "b64"}

    first = cent.publish(PublishRequest(channel=channel, data={"n": 1}, idempotency_key="once"))
    second = cent.publish(PublishRequest(channel=channel, data={"n": 2}, idempotency_key="once"))
    third = cent.publish(PublishRequest(channel=channel, data={"n": 3}))
    assert second == first
    assert third.offset == first.offset + 1
    assert alice.waitFor(event("publication", channel=channel))["data"] == {"n": 1}
    # The next one the SDK sees is the third: the second was never published.
    assert alice.waitFor(event("publication", channel=channel))["data"] == {"n": 3}
    history = cent.history(HistoryRequest(channel=channel, limit=10))
    assert [p.data for p in history.publications] == [{"from": "b64"}, {"n": 1}, {"n": 3}]


def test_broadcast(cent: Client, sdk: Callable[..., SDKClient]) -> None:
    """One call publishes to several channels; a channel of an unknown namespace gets its own error."""
    first, second = unique("chat:"), unique("news")
    alice = sdk("alice", first, second)
    result = cent.broadcast(BroadcastRequest(channels=[first, "nope:x", second], data={"all": True}))
    assert len(result.responses) == 3
    assert result.responses[0].result is not None and result.responses[0].result.offset == 1
    assert result.responses[1].error is not None and result.responses[1].error.code == 102
    assert result.responses[2].error is None
    seen = {alice.waitFor(event("publication", data={"all": True}))["channel"] for _ in range(2)}
    assert seen == {first, second}


def test_presenceHistoryChannelsInfo(cent: Client, sdk: Callable[..., SDKClient]) -> None:
    """Presence shows the connected SDK clients; history and history_remove; channels by pattern; info."""
    room = unique("chat:")
    tag = room.split(":")[1]
    alice = sdk("alice", room, who="alice")
    bob = sdk("bob", room, f"chat:other{tag}", who="bob")
    bob2 = sdk("bob", room, who="bob2")
    clients = {process: process.clientID for process in (alice, bob, bob2)}

    presence = cent.presence(PresenceRequest(channel=room)).presence
    assert set(presence) == set(clients.values())
    assert {info.user for info in presence.values()} == {"alice", "bob"}
    assert presence[clients[alice]].user == "alice" and presence[clients[alice]].client == clients[alice]
    stats = cent.presence_stats(PresenceStatsRequest(channel=room))
    assert (stats.num_clients, stats.num_users) == (3, 2)

    for n in range(3):
        cent.publish(PublishRequest(channel=room, data={"n": n}))
    history = cent.history(HistoryRequest(channel=room, limit=10))
    assert [p.data for p in history.publications] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert [p.offset for p in history.publications] == [1, 2, 3]
    assert history.offset == 3 and history.epoch
    assert [p.offset for p in cent.history(HistoryRequest(channel=room, limit=2, reverse=True)).publications] == [3, 2]
    cent.history_remove(HistoryRemoveRequest(channel=room))
    after = cent.history(HistoryRequest(channel=room, limit=10))
    assert after.publications == [] and after.offset == 3

    channels = cent.channels(ChannelsRequest(pattern=f"chat:*{tag}")).channels
    assert {name: info.num_clients for name, info in channels.items()} == {room: 3, f"chat:other{tag}": 1}

    (info,) = cent.info(InfoRequest()).nodes
    assert info.uid and info.name
    assert info.num_clients >= 3 and info.num_users >= 2 and info.num_channels >= 2


def test_disconnect(cent: Client, sdk: Callable[..., SDKClient]) -> None:
    """
    disconnect: by default 3503 "force disconnect" (the SDK does not reconnect); a custom code below 3500
    or in 4000-4499 makes it reconnect, one in 4500-4999 not; other users stay connected.
    """
    user, other = unique("user-"), unique("other-")
    first = sdk(user, who="first")
    second = sdk(user, who="second")
    watching = unique("news")
    bystander = sdk(other, watching, who="bystander")

    cent.disconnect(DisconnectRequest(user=user, disconnect=Disconnect(code=4001, reason="come back")))
    for process in (first, second):
        assert process.waitFor(event("connecting", code=4001))["reason"] == "come back"
        assert process.waitFor(event("connected"))["client"] != process.clientID

    cent.disconnect(DisconnectRequest(user=user))
    for process in (first, second):
        got = process.waitFor(event("disconnected"))
        assert (got["code"], got["reason"]) == (3503, "force disconnect")
        process.finish()

    third = sdk(user, who="third")
    cent.disconnect(DisconnectRequest(user=user, disconnect=Disconnect(code=4500, reason="banned")))
    got = third.waitFor(event("disconnected"))
    assert (got["code"], got["reason"]) == (4500, "banned")

    # Another user's client was left alone all along: still on its first connection, it gets a publication.
    cent.publish(PublishRequest(channel=watching, data={"still": "here"}))
    assert bystander.waitFor(event("publication", channel=watching))["data"] == {"still": "here"}
    assert [e["code"] for e in bystander.seen("connecting")] == [0]  # "connect called", at the start
    assert not bystander.seen("disconnected")
    assert [e["client"] for e in bystander.seen("connected")] == [bystander.clientID]


def test_unsubscribeAndSubscribe(cent: Client, sdk: Callable[..., SDKClient]) -> None:
    """
    unsubscribe ends the user's subscription (the SDK's unsubscribed with 2000 "server unsubscribe", and no
    resubscribe); subscribe adds a server-side subscription the SDK announces and delivers publications of.
    """
    user = unique("user-")
    channel, serverSide = unique("chat:"), unique("chat:server")
    alice = sdk(user, channel)

    cent.unsubscribe(UnsubscribeRequest(user=user, channel=channel))
    got = alice.waitFor(event("unsubscribed", channel=channel))
    assert (got["code"], got["reason"]) == (2000, "server unsubscribe")
    assert cent.presence_stats(PresenceStatsRequest(channel=channel)).num_clients == 0

    cent.subscribe(SubscribeRequest(user=user, channel=serverSide))
    alice.waitFor(event("server_subscribed", channel=serverSide))
    cent.publish(PublishRequest(channel=serverSide, data={"to": "server-side"}))
    assert alice.waitFor(event("server_publication", channel=serverSide))["data"] == {"to": "server-side"}
    assert cent.presence_stats(PresenceStatsRequest(channel=serverSide)).num_clients == 1


def test_batch(cent: Client, sdk: Callable[..., SDKClient]) -> None:
    """A batch runs its commands in order; cent reads each reply under its method's name."""
    channel = unique("chat:")
    alice = sdk("alice", channel)
    for parallel in (False, True):
        result = cent.batch(BatchRequest(parallel=parallel, requests=[
            PublishRequest(channel=channel, data={"batch": parallel}),
            PresenceStatsRequest(channel=channel),
            InfoRequest(),
        ]))
        published, stats, info = result.replies
        assert published.offset >= 1
        assert stats.num_clients == 1
        assert info.nodes[0].uid
        assert alice.waitFor(event("publication", channel=channel))["data"] == {"batch": parallel}


def test_errors(server: ServerProcess, cent: Client) -> None:
    """An unknown namespace is error 102, presence where it is off 108; a wrong key is CentUnauthorizedError."""
    with pytest.raises(CentApiResponseError) as raised:
        cent.publish(PublishRequest(channel="nope:x", data={}))
    assert (raised.value.code, raised.value.message) == (102, "unknown channel")
    with pytest.raises(CentApiResponseError) as raised:
        cent.presence(PresenceRequest(channel="news"))
    assert raised.value.code == 108
    with pytest.raises(CentApiResponseError) as raised:
        cent.history(HistoryRequest(channel="news", limit=1))
    assert raised.value.code == 108
    with Client(f"{server.url}/api", "wrong-key", timeout=5) as wrong, pytest.raises(CentUnauthorizedError):
        wrong.info(InfoRequest())


def test_asyncClient(server: ServerProcess, sdk: Callable[..., SDKClient]) -> None:
    """cent's asyncio client (aiohttp) does the same: publish reaches the SDK, presence, errors."""
    channel = unique("chat:")
    alice = sdk("alice", channel)

    async def calls() -> tuple[Any, ...]:
        client = AsyncClient(f"{server.url}/api", KEY, timeout=5)
        try:
            published = await client.publish(PublishRequest(channel=channel, data={"async": True}))
            stats = await client.presence_stats(PresenceStatsRequest(channel=channel))
            info = await client.info(InfoRequest())
            try:
                await client.publish(PublishRequest(channel="nope:x", data={}))
                unknown = None
            except CentApiResponseError as e:
                unknown = e.code
        finally:
            await client.close()
        wrong = AsyncClient(f"{server.url}/api", "wrong", timeout=5)
        try:
            await wrong.info(InfoRequest())
            unauthorized = False
        except CentUnauthorizedError:
            unauthorized = True
        finally:
            await wrong.close()
        return published, stats, info, unknown, unauthorized

    published, stats, info, unknown, unauthorized = asyncio.run(calls())
    assert published.offset == 1
    assert stats.num_clients == 1
    assert info.nodes[0].uid
    assert unknown == 102
    assert unauthorized
    assert alice.waitFor(event("publication", channel=channel))["data"] == {"async": True}


def test_httpEdges(server: ServerProcess) -> None:
    """405 for GET, 400 for bad JSON, 401 with an empty body without a key, the error-mode header."""
    url = f"{server.url}/api/info"
    response = requests.get(url, headers={"X-API-Key": KEY}, timeout=5)
    assert (response.status_code, response.content) == (405, b"")
    response = requests.post(url, data=b"{oops", headers={"X-API-Key": KEY}, timeout=5)
    assert (response.status_code, response.content) == (400, b"")
    for headers in ({}, {"X-API-Key": "wrong"}):
        response = requests.post(url, data=b"{}", headers=headers, timeout=5)
        assert (response.status_code, response.content) == (401, b"")
    response = requests.post(url, data=b"{}", headers={"Authorization": f"apikey {KEY}"}, timeout=5)
    assert response.status_code == 200 and response.json()["result"]["nodes"]
    response = requests.post(f"{url}?api_key={KEY}", data=b"", timeout=5)
    assert response.status_code == 200
    response = requests.post(
        f"{server.url}/api/publish", json={"channel": "nope:x", "data": 1},
        headers={"X-API-Key": KEY, "X-Centrifugo-Error-Mode": "transport"}, timeout=5,
    )
    assert (response.status_code, response.json()) == (404, {"code": 102, "message": "unknown channel"})


def test_transportErrorMode(startServer: Callable[..., ServerProcess]) -> None:
    """api_error_mode "transport": errors are HTTP statuses, which cent raises as CentTransportError."""
    server = startServer({**CONFIG, "api_error_mode": "transport"}, name="transport")
    with Client(f"{server.url}/api", KEY, timeout=5) as client:
        for call, status in [
            (lambda: client.publish(PublishRequest(channel="nope:x", data={})), 404),
            (lambda: client.presence(PresenceRequest(channel="news")), 400),
            (lambda: client.history(HistoryRequest(channel="chat:a", limit=1, since={"offset": 9, "epoch": "x"})), 416),
        ]:
            with pytest.raises(CentTransportError) as raised:
                call()
            assert raised.value.status_code == status
        assert client.publish(PublishRequest(channel="chat:a", data={})).offset == 1
    response = requests.post(f"{server.url}/api/presence", json={"channel": "news"}, headers={"X-API-Key": KEY},
                             timeout=5)
    assert (response.status_code, response.json()) == (400, {"code": 108, "message": "not available"})


def test_largePublication(server: ServerProcess, cent: Client, sdk: Callable[..., SDKClient]) -> None:
    """A publication of 200 KB goes through the API (its own limit is 4 MiB) and reaches the subscriber."""
    channel = unique("chat:")
    alice = sdk("alice", channel)
    text = "x" * 200_000
    cent.publish(PublishRequest(channel=channel, data={"text": text}))
    assert alice.waitFor(event("publication", channel=channel))["data"] == {"text": text}
