"""
Drives the official Python SDK (PyPI ``centrifuge-python``) against a running httpstream server over WebSocket,
through the protocol features beyond publish/subscribe: connection tokens and their refresh, expired tokens,
subscription tokens on ``$`` channels, presence, join/leave, history, recovery after a network cut, RPC and
fossil deltas.

    python protocol_client.py --url http://127.0.0.1:PORT --protocol json|protobuf --scenario NAME
                              --secret HMAC_KEY [options]

Run as its own process (tests/test_python_sdk_protocol.py does, one process per scenario): the SDK imports its own
generated ``client_pb2`` for Centrifuge's ``client.proto``, which would clash with httpstream's in one process.
The script mints HS256 tokens with --secret, as an application backend would.

It prints one JSON object per line on stdout: the SDK's events (``connected``, ``publication``, ``join``, ...),
``result`` for what a call returned (``name`` says which call), ``get_token`` / ``sub_token`` for every token the
SDK asked for, and the wire as the SDK saw it: ``ws_open`` per handshake, ``out`` per command sent (``kind``: the
command's name, "pong" for an empty one) and ``in`` per reply or push read (``kind``: "reply:<result>",
"error" with ``code``, "push:<type>", or "ping"). Every event has ``t``: milliseconds since the script started.

Data: JSON clients publish JSON values; Protobuf clients publish bytes that are not UTF-8 (printed as
{"hex": "..."}), so a test compares what was published with what was received as printed.

Exit code: 0 when the scenario ran to its end, 1 when it failed ({"event":"fail",...}), 2 on timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

import jwt
from centrifuge import (
    Client,
    ClientEventHandler,
    ConnectedContext,
    ConnectingContext,
    DeltaType,
    DisconnectedContext,
    ErrorContext,
    JoinContext,
    LeaveContext,
    PublicationContext,
    ReplyError,
    StreamPosition,
    SubscribedContext,
    SubscribingContext,
    Subscription,
    SubscriptionErrorContext,
    SubscriptionEventHandler,
    UnsubscribedContext,
)
from centrifuge.codecs import _ProtobufCodec, _varint_decode
from centrifuge.protocol import client_pb2
from google.protobuf.json_format import MessageToDict

STARTED = time.monotonic()

# What every publication carries besides its sequence number: nesting, non-ASCII text, an escaped newline (JSON);
# bytes that are not UTF-8 and hold the framing's own special bytes (Protobuf).
JSON_EXTRA = {"text": "héllo ☃ \"quoted\"\nline", "n": [1, 2.5, None, -7], "nested": {"ok": True, "empty": {}}}
BINARY_PREFIX = bytes([0x00, 0x0A, 0x0D, 0xFF, 0x80, 0x81])

# The shared body of delta publications: long and alike, so each Fossil delta is much smaller than the data.
DELTA_BODY = " ".join(f"word{i % 37}" for i in range(300))


def emit(event: str, **fields: Any) -> None:
    record = {"event": event, "t": int((time.monotonic() - STARTED) * 1000), **fields}
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def printable(data: Any) -> Any:
    return {"hex": bytes(data).hex()} if isinstance(data, (bytes, bytearray)) else data


class Failed(Exception):
    pass


async def until(predicate: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Wait (polling) until C{predicate()} holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise Failed(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


# The wire, as the SDK sees it


def describeReply(reply: dict) -> dict:
    if "push" in reply:
        push = reply["push"]
        kinds = [key for key in push if key not in ("channel", "id")]
        kind = kinds[0] if kinds else "?"
        described: dict[str, Any] = {"kind": f"push:{kind}", "channel": push.get("channel", "")}
        body = push.get(kind) or {}
        if kind == "pub":
            described.update(offset=int(body.get("offset", 0)), delta=bool(body.get("delta", False)))
        elif kind in ("unsubscribe", "disconnect"):
            described.update(code=body.get("code", 0), reason=body.get("reason", ""))
        elif kind in ("join", "leave"):
            described.update(client=body.get("info", {}).get("client", ""))
        return described
    if "error" in reply:
        error = reply["error"]
        return {"kind": "error", "id": reply.get("id", 0), "code": error.get("code", 0),
                "message": error.get("message", ""), "temporary": error.get("temporary", False)}
    results = [key for key in reply if key != "id"]
    if not results:
        return {"kind": "ping"}
    kind = results[0]
    described = {"kind": f"reply:{kind}", "id": reply.get("id", 0)}
    body = reply[kind] or {}
    for name in ("expires", "ttl", "recoverable", "positioned", "was_recovering", "recovered", "delta", "epoch"):
        if name in body:
            described[name] = body[name]
    if "offset" in body:
        described["offset"] = int(body["offset"])
    if "publications" in body:
        pubs = body["publications"]
        described["publications"] = [
            {"offset": int(p.get("offset", 0)), "delta": bool(p.get("delta", False))} for p in pubs
        ]
    return described


def describeCommand(command: dict) -> dict:
    kinds = [key for key in command if key != "id"]
    if not kinds:
        return {"kind": "pong"}
    kind = kinds[0]
    body = command[kind] or {}
    described: dict[str, Any] = {"kind": kind, "id": command.get("id", 0)}
    for name in ("channel", "method", "recover", "epoch", "delta", "join_leave", "recoverable", "limit", "reverse"):
        if name in body:
            described[name] = body[name]
    if "offset" in body:
        described["offset"] = int(body["offset"])
    if "token" in body:
        described["token"] = bool(body["token"])
    return described


def decodeCommands(frame: Any) -> list[dict]:
    if isinstance(frame, str):
        return [json.loads(line) for line in frame.strip().split("\n") if line.strip()]
    commands, position = [], 0
    while position < len(frame):
        length, position = _varint_decode(frame, position)
        command = client_pb2.Command()
        command.ParseFromString(frame[position:position + length])
        position += length
        commands.append(MessageToDict(command, preserving_proto_field_name=True))
    return commands


def decodeReplies(frame: Any) -> list[dict]:
    if isinstance(frame, str):
        return [json.loads(line) for line in frame.strip().split("\n") if line.strip()]
    return _ProtobufCodec.decode_replies(frame)


class SpyingClient(Client):
    """
    The SDK's client, reporting its WebSocket handshakes and every command and reply. A test can cut its
    connection as a network failure would (L{cut}: no close frame, the SDK keeps its state and reconnects) and
    hold its reconnection back (L{gate}) while the others act.
    """

    who = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = asyncio.Event()
        self.gate.set()

    async def _open_transport(self):  # type: ignore[no-untyped-def]
        await self.gate.wait()
        conn = await super()._open_transport()
        who = self.who
        emit("ws_open", who=who, subprotocol=conn.subprotocol)
        send, recv = conn.send, conn.recv

        async def spySend(message: Any, *args: Any, **kwargs: Any) -> Any:
            for command in decodeCommands(message):
                emit("out", who=who, **describeCommand(command))
            return await send(message, *args, **kwargs)

        async def spyRecv(*args: Any, **kwargs: Any) -> Any:
            message = await recv(*args, **kwargs)
            for reply in decodeReplies(message):
                emit("in", who=who, **describeReply(reply))
            return message

        conn.send = spySend  # type: ignore[method-assign]
        conn.recv = spyRecv  # type: ignore[method-assign]
        return conn

    def cut(self) -> None:
        """Drop the TCP connection under the WebSocket, without a close frame, as a network failure does."""
        conn = self._conn
        if conn is None:
            raise Failed(f"{self.who} has no connection to cut")
        emit("cut", who=self.who)
        conn.transport.abort()


def clientInfo(info: Any) -> dict | None:
    if info is None:
        return None
    return {"client": info.client, "user": info.user, "conn_info": printable(info.conn_info),
            "chan_info": printable(info.chan_info)}


class ClientEvents(ClientEventHandler):
    def __init__(self, who: str) -> None:
        self.who = who
        self.states: list[str] = []
        self.errors: list[ErrorContext] = []

    async def on_connecting(self, ctx: ConnectingContext) -> None:
        self.states.append("connecting")
        emit("connecting", who=self.who, code=ctx.code, reason=ctx.reason)

    async def on_connected(self, ctx: ConnectedContext) -> None:
        self.states.append("connected")
        emit("connected", who=self.who, client=ctx.client, data=printable(ctx.data))

    async def on_disconnected(self, ctx: DisconnectedContext) -> None:
        self.states.append("disconnected")
        emit("disconnected", who=self.who, code=ctx.code, reason=ctx.reason)

    async def on_error(self, ctx: ErrorContext) -> None:
        self.errors.append(ctx)
        emit("error", who=self.who, code=ctx.code, **errorFields(ctx.error))


def errorFields(error: BaseException) -> dict:
    if isinstance(error, ReplyError):
        return {"reply_code": error.code, "message": error.message}
    return {"message": repr(error)}


class SubscriptionEvents(SubscriptionEventHandler):
    def __init__(self, who: str, channel: str) -> None:
        self.who = who
        self.channel = channel
        self.states: list[str] = []
        self.subscribed: list[SubscribedContext] = []
        self.unsubscribed: list[UnsubscribedContext] = []
        self.publications: list[PublicationContext] = []
        self.joins: list[JoinContext] = []
        self.leaves: list[LeaveContext] = []

    def _fields(self) -> dict:
        return {"who": self.who, "channel": self.channel}

    async def on_subscribing(self, ctx: SubscribingContext) -> None:
        self.states.append("subscribing")
        emit("subscribing", **self._fields(), code=ctx.code, reason=ctx.reason)

    async def on_subscribed(self, ctx: SubscribedContext) -> None:
        self.states.append("subscribed")
        self.subscribed.append(ctx)
        position = ctx.stream_position
        emit(
            "subscribed", **self._fields(),
            recoverable=ctx.recoverable, positioned=ctx.positioned,
            was_recovering=ctx.was_recovering, recovered=ctx.recovered,
            offset=position.offset if position else None, epoch=position.epoch if position else None,
            data=printable(ctx.data),
        )

    async def on_unsubscribed(self, ctx: UnsubscribedContext) -> None:
        self.states.append("unsubscribed")
        self.unsubscribed.append(ctx)
        emit("unsubscribed", **self._fields(), code=ctx.code, reason=ctx.reason)

    async def on_publication(self, ctx: PublicationContext) -> None:
        self.publications.append(ctx)
        emit(
            "publication", **self._fields(), offset=ctx.pub.offset, data=printable(ctx.pub.data),
            delta=ctx.pub.delta, info=clientInfo(ctx.pub.info),
        )

    async def on_join(self, ctx: JoinContext) -> None:
        self.joins.append(ctx)
        emit("join", **self._fields(), info=clientInfo(ctx.info))

    async def on_leave(self, ctx: LeaveContext) -> None:
        self.leaves.append(ctx)
        emit("leave", **self._fields(), info=clientInfo(ctx.info))

    async def on_error(self, ctx: SubscriptionErrorContext) -> None:
        emit("sub_error", **self._fields(), code=ctx.code, **errorFields(ctx.error))


class Scenario:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.protobuf = args.protocol == "protobuf"
        self.address = args.url.replace("http", "ws", 1) + "/connection/websocket"
        self.clients: list[SpyingClient] = []
        self.events: dict[str, ClientEvents] = {}
        self.subEvents: dict[tuple[str, str], SubscriptionEvents] = {}

    # Helpers

    def token(self, user: str, ttl: float = 3600, **claims: Any) -> str:
        """A connection (or, with a C{channel} claim, subscription) token; a negative C{ttl} is expired already."""
        payload = {"sub": user, "exp": int(time.time() + ttl), **claims}
        return jwt.encode(payload, self.args.secret, algorithm="HS256")

    def payload(self, seq: int, delta: bool = False) -> Any:
        """The C{seq}th publication's data: a JSON value, or (Protobuf) bytes that are not UTF-8."""
        if delta:
            value: Any = {"seq": seq, "body": DELTA_BODY, "tail": "v" * seq}
        else:
            value = {"seq": seq, **JSON_EXTRA}
        if self.protobuf:
            return BINARY_PREFIX + json.dumps(value, separators=(",", ":")).encode("utf-8")
        return value

    def newClient(
        self, who: str, token: str = "", getToken: Callable[[], Awaitable[str]] | None = None,
    ) -> SpyingClient:
        events = ClientEvents(who)
        client = SpyingClient(
            self.address,
            events=events,
            token=token,
            get_token=getToken,
            use_protobuf=self.protobuf,
            timeout=5.0,
            min_reconnect_delay=0.2,
            max_reconnect_delay=1.0,
            # Straight to the server: never through an HTTP proxy the environment may name.
            proxy=None,
        )
        client.who = who
        self.clients.append(client)
        self.events[who] = events
        return client

    async def connected(self, who: str, token: str = "", **kwargs: Any) -> SpyingClient:
        client = self.newClient(who, token, **kwargs)
        await client.connect()
        await client.ready(timeout=5)
        return client

    def newSubscription(self, client: SpyingClient, channel: str, **options: Any) -> tuple[Subscription,
                                                                                          SubscriptionEvents]:
        events = SubscriptionEvents(client.who, channel)
        self.subEvents[(client.who, channel)] = events
        sub = client.new_subscription(channel, events=events, min_resubscribe_delay=0.2, max_resubscribe_delay=1.0,
                                      **options)
        return sub, events

    async def subscribed(self, client: SpyingClient, channel: str, **options: Any) -> tuple[Subscription,
                                                                                           SubscriptionEvents]:
        sub, events = self.newSubscription(client, channel, **options)
        await sub.subscribe()
        await sub.ready(timeout=5)
        return sub, events

    async def publish(self, client: SpyingClient, channel: str, data: Any) -> None:
        await client.publish(channel, data)
        emit("published", who=client.who, channel=channel, data=printable(data))

    async def call(self, who: str, name: str, call: Awaitable[Any]) -> Any:
        """Await an SDK call; emit its result, or the error reply it raised (returned then)."""
        try:
            value = await call
        except ReplyError as e:
            emit("result", who=who, name=name, error={"code": e.code, "message": e.message})
            return e
        emit("result", who=who, name=name, value=resultValue(value))
        return value

    # Scenarios

    async def refresh(self) -> None:
        """
        "r": a getToken minting tokens that expire --ttl s later; stays connected --duration s (past the first
        token's expiry and the server's grace), then publishes and receives on the same connection.
        """
        channel = self.args.channel

        async def getToken() -> str:
            emit("get_token", who="r")
            return self.token("py-refresh", ttl=float(self.args.ttl))

        r = await self.connected("r", getToken=getToken)
        _, events = await self.subscribed(r, channel)
        await asyncio.sleep(float(self.args.duration))
        if self.events["r"].states != ["connecting", "connected"]:
            raise Failed(f"r left the connected state: {self.events['r'].states}")
        await self.publish(r, channel, self.payload(1))
        await until(lambda: len(events.publications) == 1, "r's publication")
        await r.disconnect()

    async def subrefresh(self) -> None:
        """
        "r" subscribes to two "$" channels: --channel with a get_token minting subscription tokens that expire --ttl
        s later, --channel2 with one such token given up front and no get_token. It stays --duration s, then
        publishes in --channel and receives it; --channel2 must have ended (the server unsubscribes it when its
        token expired, the SDK resubscribes with the same, now expired, token and gives up on 109).
        """
        refreshed, expiring = self.args.channel, self.args.channel2
        user, ttl = "py-subrefresh", float(self.args.ttl)
        r = await self.connected("r", self.token(user))

        async def subToken(name: str) -> str:
            emit("sub_token", who="r", channel=name)
            return self.token(user, ttl=ttl, channel=name)

        _, events = await self.subscribed(r, refreshed, get_token=subToken)
        _, expiringEvents = await self.subscribed(r, expiring, token=self.token(user, ttl=ttl, channel=expiring))
        await asyncio.sleep(float(self.args.duration))
        if events.states != ["subscribing", "subscribed"]:
            raise Failed(f"r's subscription to {refreshed} did not stay: {events.states}")
        await self.publish(r, refreshed, self.payload(1))
        await until(lambda: len(events.publications) == 1, "r's publication")
        await until(lambda: bool(expiringEvents.unsubscribed), f"the end of {expiring}")
        await r.disconnect()

    async def expired(self) -> None:
        """
        Three clients at once:
          e1: starts with an expired token, has a getToken: 109, getToken, connected.
          e2: a token that expires 2 s after connect and no getToken: the server closes the connection (3005),
              the reconnect gets 109, and with nothing to get a new token the SDK ends disconnected.
          e3: getToken answers a short token, then (on refresh) an expired one, then a good one: the refresh with
              the expired token is closed with 3005; the reconnect with it gets 109; the next token connects.
        """

        async def getTokenE1() -> str:
            emit("get_token", who="e1")
            return self.token("py-e1")

        tokensE3 = iter([
            lambda: self.token("py-e3", ttl=2),
            lambda: self.token("py-e3", ttl=-30),
            lambda: self.token("py-e3"),
        ])

        async def getTokenE3() -> str:
            emit("get_token", who="e3")
            return next(tokensE3)()

        e1 = self.newClient("e1", token=self.token("py-e1", ttl=-30), getToken=getTokenE1)
        e2 = self.newClient("e2", token=self.token("py-e2", ttl=2))
        e3 = self.newClient("e3", getToken=getTokenE3)
        await asyncio.gather(e1.connect(), e2.connect(), e3.connect())
        await until(lambda: "connected" in self.events["e1"].states, "e1 connected")
        await until(lambda: "disconnected" in self.events["e2"].states, "e2 disconnected", timeout=10)
        await until(lambda: self.events["e3"].states.count("connected") == 2, "e3 connected again", timeout=10)
        await asyncio.gather(e1.disconnect(), e3.disconnect())

    async def private(self) -> None:
        """
        "p" (user py-private) subscribes to the "$" channel --channel without a token: 103, unsubscribed. Then,
        with a getToken minting a subscription token (with info): subscribed; publishes there and receives its
        publication with that info as chan_info.
        """
        channel = self.args.channel
        p = await self.connected("p", self.token("py-private"))
        bare, bareEvents = self.newSubscription(p, channel)
        await bare.subscribe()
        await until(lambda: bool(bareEvents.unsubscribed), "the unsubscribe of the subscription without a token")
        p.remove_subscription(bare)

        async def subToken(name: str) -> str:
            emit("sub_token", who="p", channel=name)
            return self.token("py-private", channel=name, info={"role": "tester"})

        _, events = await self.subscribed(p, channel, get_token=subToken)
        await self.publish(p, channel, self.payload(1))
        await until(lambda: len(events.publications) == 1, "p's publication")
        await p.disconnect()

    async def presence(self) -> None:
        """
        alice (two connections) and bob subscribe to --channel; alice asks presence and presence_stats; bob
        unsubscribes (and may no longer ask: subscribers only); the second alice disconnects.
        """
        channel = self.args.channel
        alice = await self.connected("alice", self.token("alice", info={"name": "Alice"}))
        alice2 = await self.connected("alice2", self.token("alice"))
        bob = await self.connected("bob", self.token("bob"))
        subs = {}
        for client in (alice, alice2, bob):
            subs[client.who], _ = await self.subscribed(client, channel)
        await self.call("alice", "presence", alice.presence(channel))
        await self.call("alice", "presence_stats", alice.presence_stats(channel))
        await self.call("bob", "sub.presence_stats", subs["bob"].presence_stats())

        await subs["bob"].unsubscribe()
        await self.waitForStats(alice, channel, 2)
        await self.call("alice", "presence after bob left", alice.presence(channel))
        await self.call("alice", "presence_stats after bob left", alice.presence_stats(channel))
        await self.call("bob", "presence unsubscribed", bob.presence(channel))

        await alice2.disconnect()
        await self.waitForStats(alice, channel, 1)
        await self.call("alice", "presence_stats after alice2 left", alice.presence_stats(channel))
        await asyncio.gather(alice.disconnect(), bob.disconnect())

    async def waitForStats(self, client: SpyingClient, channel: str, clients: int) -> None:
        deadline = time.monotonic() + 5
        while (await client.presence_stats(channel)).num_clients != clients:
            if time.monotonic() > deadline:
                raise Failed(f"presence of {channel} never came to {clients} clients")
            await asyncio.sleep(0.05)

    async def joinleave(self) -> None:
        """
        In --channel (force_push_join_leave): "a" subscribes; "b" subscribes, then unsubscribes; "c" subscribes,
        then disconnects. In --channel2 (join_leave, pushed only to who asks): "a" subscribes with join_leave,
        "quiet" without; "b" subscribes, then unsubscribes.
        """
        forced, flagged = self.args.channel, self.args.channel2
        a = await self.connected("a", self.token("user-a", info={"name": "A"}))
        b = await self.connected("b", self.token("user-b", info={"name": "B"}))
        c = await self.connected("c", self.token("user-c"))
        quiet = await self.connected("quiet", self.token("user-quiet"))

        _, seen = await self.subscribed(a, forced)
        subB, _ = await self.subscribed(b, forced)
        await until(lambda: any(j.info.client == b.client_id for j in seen.joins), "a sees b join")
        await subB.unsubscribe()
        await until(lambda: any(x.info.client == b.client_id for x in seen.leaves), "a sees b leave")
        await self.subscribed(c, forced)
        await until(lambda: any(j.info.client == c.client_id for j in seen.joins), "a sees c join")
        cID = c.client_id
        await c.disconnect()
        await until(lambda: any(x.info.client == cID for x in seen.leaves), "a sees c leave (disconnect)")

        _, seenFlag = await self.subscribed(a, flagged, join_leave=True)
        await self.subscribed(quiet, flagged)
        subB2, _ = await self.subscribed(b, flagged)
        await until(lambda: any(j.info.client == b.client_id for j in seenFlag.joins), "a sees b join (flag)")
        await subB2.unsubscribe()
        await until(lambda: any(x.info.client == b.client_id for x in seenFlag.leaves), "a sees b leave (flag)")
        await asyncio.sleep(0.3)  # what "quiet" would have received has arrived by now
        await asyncio.gather(a.disconnect(), b.disconnect(), quiet.disconnect())

    async def history(self) -> None:
        """
        "h" subscribes to --channel (history for subscribers) and publishes --count publications; then reads the
        history in several ways. "outsider" (not subscribed) may not read it.
        """
        channel, count = self.args.channel, int(self.args.count)
        h = await self.connected("h", self.token("py-history"))
        outsider = await self.connected("outsider", self.token("py-outsider"))
        _, events = await self.subscribed(h, channel)
        for seq in range(1, count + 1):
            await self.publish(h, channel, self.payload(seq))
        await until(lambda: len(events.publications) == count, "h's publications")
        top = await self.call("h", "limit 0", h.history(channel, limit=0))
        await self.call("h", "limit 2", h.history(channel, limit=2))
        await self.call("h", "limit 2 reverse", h.history(channel, limit=2, reverse=True))
        await self.call("h", "limit -1", h.history(channel, limit=-1))
        await self.call("h", "since 2 limit 2", h.history(channel, limit=2, since=StreamPosition(2, top.epoch)))
        await self.call("h", "since 4 reverse", h.history(channel, limit=10, since=StreamPosition(4, top.epoch),
                                                           reverse=True))
        await self.call("h", "since other epoch", h.history(channel, limit=10, since=StreamPosition(1, "xyzw")))
        await self.call("outsider", "not subscribed", outsider.history(channel, limit=10))
        await self.call("h", "no history", h.history(self.args.channel2, limit=10))
        await asyncio.gather(h.disconnect(), outsider.disconnect())

    async def recovery(self) -> None:
        """
        "s" subscribes to --channel (with --recoverable, --delta as asked) and receives --before publications of
        "p"; then its connection is cut and held down while "p" publishes --missed more; it reconnects and
        resubscribes with recover; then "p" publishes --after more.
        """
        channel = self.args.channel
        before, missed, after = int(self.args.before), int(self.args.missed), int(self.args.after)
        delta = bool(self.args.delta)
        options: dict[str, Any] = {}
        if self.args.recoverable:
            options["recoverable"] = True
        if delta:
            options["delta"] = DeltaType.FOSSIL
        s = await self.connected("s")
        p = await self.connected("p")
        _, events = await self.subscribed(s, channel, **options)
        seq = 0
        for _ in range(before):
            seq += 1
            await self.publish(p, channel, self.payload(seq, delta))
        await until(lambda: len(events.publications) == before, "s's publications before the cut")

        s.gate.clear()
        s.cut()
        await until(lambda: events.states[-1:] == ["subscribing"], "s's subscription waiting for the connection")
        for _ in range(missed):
            seq += 1
            await self.publish(p, channel, self.payload(seq, delta))
        emit("reconnect", who="s")
        s.gate.set()
        await until(lambda: len(events.subscribed) == 2, "s subscribed again", timeout=10)
        # The recovered publications were applied with the subscribe reply, before any live one.
        expected = (before + missed if events.subscribed[1].recovered else before) + after
        for _ in range(after):
            seq += 1
            await self.publish(p, channel, self.payload(seq, delta))
        await until(lambda: len(events.publications) >= expected, "s's publications after the reconnect")
        await asyncio.sleep(0.2)  # anything delivered twice would have arrived by now
        await asyncio.gather(s.disconnect(), p.disconnect())

    async def rpc(self) -> None:
        """
        "r" calls in-process methods (echo, fail) and methods the server forwards to the RPC proxy's backend
        (backend.echo, backend.fail).
        """
        r = await self.connected("r", self.token("py-rpc"))
        data = self.payload(1)
        emit("rpc_data", who="r", data=printable(data))
        for method in ("echo", "fail", "backend.echo", "backend.fail"):
            await self.call("r", method, r.rpc(method, data))
        await r.disconnect()

    async def delta(self) -> None:
        """
        "d" subscribes to --channel with delta "fossil", "plain" without; "p" publishes --count similar
        publications: both must receive each one intact.
        """
        channel, count = self.args.channel, int(self.args.count)
        d = await self.connected("d")
        plain = await self.connected("plain")
        p = await self.connected("p")
        _, deltaEvents = await self.subscribed(d, channel, delta=DeltaType.FOSSIL)
        _, plainEvents = await self.subscribed(plain, channel)
        for seq in range(1, count + 1):
            await self.publish(p, channel, self.payload(seq, delta=True))
        await until(lambda: len(deltaEvents.publications) >= count and len(plainEvents.publications) >= count,
                    "the publications")
        await asyncio.sleep(0.2)
        await asyncio.gather(d.disconnect(), plain.disconnect(), p.disconnect())

    async def run(self) -> None:
        await getattr(self, self.args.scenario)()


def resultValue(value: Any) -> Any:
    """An SDK result as JSON."""
    if hasattr(value, "clients"):  # PresenceResult
        return {"clients": {key: clientInfo(info) for key, info in value.clients.items()}}
    if hasattr(value, "num_clients"):  # PresenceStatsResult
        return {"num_clients": value.num_clients, "num_users": value.num_users}
    if hasattr(value, "publications"):  # HistoryResult
        return {
            "offset": value.offset,
            "epoch": value.epoch,
            "publications": [{"offset": p.offset, "data": printable(p.data), "info": clientInfo(p.info)}
                             for p in value.publications],
        }
    if hasattr(value, "data"):  # RpcResult
        return {"data": printable(value.data)}
    return repr(value)


async def main(args: argparse.Namespace) -> int:
    scenario = Scenario(args)
    try:
        await asyncio.wait_for(scenario.run(), float(args.deadline))
    except TimeoutError:
        emit("timeout")
        return 2
    except Failed as e:
        emit("fail", message=str(e))
        return 1
    except Exception:  # noqa: BLE001  (whatever went wrong is reported as the scenario's failure)
        emit("fail", message=traceback.format_exc())
        return 1
    finally:
        for client in scenario.clients:
            with contextlib.suppress(Exception):
                await client.disconnect()
    emit("done")
    return 0


def parseArguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--protocol", choices=["json", "protobuf"], default="json")
    parser.add_argument(
        "--scenario", required=True,
        choices=["refresh", "subrefresh", "expired", "private", "presence", "joinleave", "history", "recovery", "rpc", "delta"],
    )
    parser.add_argument("--secret", required=True, help="the server's token_hmac_secret_key")
    parser.add_argument("--channel", default="chat")
    parser.add_argument("--channel2", default="chat2")
    parser.add_argument("--ttl", default="3", help="refresh, subrefresh: seconds each token lives")
    parser.add_argument("--duration", default="5", help="refresh, subrefresh: seconds to stay")
    parser.add_argument("--count", default="5", help="history, delta: publications")
    parser.add_argument("--before", default="2", help="recovery: publications before the cut")
    parser.add_argument("--missed", default="3", help="recovery: publications while cut off")
    parser.add_argument("--after", default="1", help="recovery: publications after the reconnect")
    parser.add_argument("--recoverable", action="store_true", help="recovery: subscribe with recoverable")
    parser.add_argument("--delta", action="store_true", help="recovery: subscribe with delta fossil")
    parser.add_argument("--deadline", default="30")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parseArguments())))
