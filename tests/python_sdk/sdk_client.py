"""
Drives the official Python SDK (PyPI ``centrifuge-python``) against a running httpstream server over WebSocket.

    python sdk_client.py --url http://127.0.0.1:PORT --protocol json|protobuf --scenario NAME [options]

Run as its own process (tests/test_python_sdk.py does): the SDK imports its own generated ``client_pb2`` for
Centrifuge's ``client.proto``, which would clash in the default descriptor pool with httpstream's.

Scenarios (each prints one JSON object per line on stdout):
  pubsub   clients "a" and "b" connect and subscribe to --channel; "a" publishes --data; both must receive it.
  ping     client "a" connects and subscribes, stays connected for --duration seconds while the server pings,
           then publishes --data and must receive it on the same connection.
  token    one client per --token (repeatable), one after the other: reports "connected" or the "disconnected"
           code the server gave; a connected one then publishes --data to --channel.

Data: --data is JSON text for --protocol json; hex bytes for --protocol protobuf (received bytes are printed as
{"hex": "..."}).

Besides the SDK's events: ``ws_open`` {subprotocol} when a handshake succeeded, and ``ws_send`` / ``ws_recv``
{binary, size} for every frame.

Exit code: 0 when the scenario's own checks passed, 1 when they failed ({"event":"fail",...}), 2 on timeout
({"event":"timeout"}).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import traceback
from typing import Any, Optional

from centrifuge import (
    Client,
    ClientEventHandler,
    ConnectedContext,
    ConnectingContext,
    DisconnectedContext,
    ErrorContext,
    PublicationContext,
    SubscribedContext,
    SubscribingContext,
    SubscriptionEventHandler,
    UnsubscribedContext,
)


def emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def printable(data: Any) -> Any:
    return {"hex": data.hex()} if isinstance(data, (bytes, bytearray)) else data


def frameSize(data: Any) -> int:
    return len(data.encode("utf-8")) if isinstance(data, str) else len(data)


class SpyingClient(Client):
    """The SDK's client, reporting its WebSocket's handshake and frames."""

    who = ""

    async def _open_transport(self):  # type: ignore[no-untyped-def]
        conn = await super()._open_transport()
        who = self.who
        emit("ws_open", who=who, subprotocol=conn.subprotocol)
        send, recv = conn.send, conn.recv

        async def spySend(message: Any, *args: Any, **kwargs: Any) -> Any:
            emit("ws_send", who=who, binary=not isinstance(message, str), size=frameSize(message))
            return await send(message, *args, **kwargs)

        async def spyRecv(*args: Any, **kwargs: Any) -> Any:
            message = await recv(*args, **kwargs)
            emit("ws_recv", who=who, binary=not isinstance(message, str), size=frameSize(message))
            return message

        conn.send = spySend  # type: ignore[method-assign]
        conn.recv = spyRecv  # type: ignore[method-assign]
        return conn


class ClientEvents(ClientEventHandler):
    def __init__(self, who: str) -> None:
        self.who = who
        self.outcome: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def _settle(self, outcome: str) -> None:
        if not self.outcome.done():
            self.outcome.set_result(outcome)

    async def on_connecting(self, ctx: ConnectingContext) -> None:
        emit("connecting", who=self.who, code=ctx.code, reason=ctx.reason)

    async def on_connected(self, ctx: ConnectedContext) -> None:
        emit("connected", who=self.who, client=ctx.client)
        self._settle("connected")

    async def on_disconnected(self, ctx: DisconnectedContext) -> None:
        emit("disconnected", who=self.who, code=ctx.code, reason=ctx.reason)
        self._settle("disconnected")

    async def on_error(self, ctx: ErrorContext) -> None:
        emit("error", who=self.who, code=ctx.code, error=repr(ctx.error))


class SubscriptionEvents(SubscriptionEventHandler):
    def __init__(self, who: str, channel: str) -> None:
        self.who = who
        self.channel = channel
        self.publications: asyncio.Queue[PublicationContext] = asyncio.Queue()

    async def on_subscribing(self, ctx: SubscribingContext) -> None:
        emit("subscribing", who=self.who, channel=self.channel, code=ctx.code, reason=ctx.reason)

    async def on_subscribed(self, ctx: SubscribedContext) -> None:
        emit("subscribed", who=self.who, channel=self.channel)

    async def on_unsubscribed(self, ctx: UnsubscribedContext) -> None:
        emit("unsubscribed", who=self.who, channel=self.channel, code=ctx.code, reason=ctx.reason)

    async def on_publication(self, ctx: PublicationContext) -> None:
        info = ctx.pub.info
        emit(
            "publication",
            who=self.who,
            channel=self.channel,
            data=printable(ctx.pub.data),
            info={"client": info.client, "user": info.user} if info else None,
        )
        self.publications.put_nowait(ctx)


class Failed(Exception):
    pass


class Scenario:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.protobuf = args.protocol == "protobuf"
        self.payload: Any = bytes.fromhex(args.data) if self.protobuf else json.loads(args.data)
        self.address = args.url.replace("http", "ws", 1) + "/connection/websocket"
        self.clients: list[Client] = []

    def newClient(self, who: str, token: str = "") -> tuple[Client, ClientEvents]:
        events = ClientEvents(who)
        client = SpyingClient(
            self.address,
            events=events,
            token=token,
            use_protobuf=self.protobuf,
            timeout=5.0,
            min_reconnect_delay=0.2,
            max_reconnect_delay=1.0,
            # Straight to the server: never through an HTTP proxy the environment may name.
            proxy=None,
        )
        client.who = who
        self.clients.append(client)
        return client, events

    async def subscribe(self, client: Client, who: str) -> tuple[Any, SubscriptionEvents]:
        events = SubscriptionEvents(who, self.args.channel)
        sub = client.new_subscription(self.args.channel, events=events)
        await sub.subscribe()
        await sub.ready(timeout=5)
        return sub, events

    def check(self, who: str, ctx: PublicationContext) -> None:
        if printable(ctx.pub.data) != printable(self.payload):
            raise Failed(f"{who} received {printable(ctx.pub.data)!r}, published {printable(self.payload)!r}")

    async def publishAndReceive(self, client: Client, events: SubscriptionEvents, who: str) -> PublicationContext:
        await client.publish(self.args.channel, self.payload)
        emit("published", who=who, channel=self.args.channel)
        ctx = await asyncio.wait_for(events.publications.get(), 5)
        self.check(who, ctx)
        return ctx

    async def pubsub(self) -> None:
        a, _ = self.newClient("a")
        b, _ = self.newClient("b")
        await asyncio.gather(a.connect(), b.connect())
        await asyncio.gather(a.ready(timeout=5), b.ready(timeout=5))
        (_, subA), (_, subB) = await asyncio.gather(self.subscribe(a, "a"), self.subscribe(b, "b"))
        own = await self.publishAndReceive(a, subA, "a")
        other = await asyncio.wait_for(subB.publications.get(), 5)
        self.check("b", other)
        if own.pub.info is None or other.pub.info is None or own.pub.info.client != other.pub.info.client:
            raise Failed("a and b saw different publishers")
        await asyncio.gather(a.disconnect(), b.disconnect())

    async def ping(self) -> None:
        a, aEvents = self.newClient("a")
        left: list[str] = []
        original = aEvents.on_connecting

        async def onConnecting(ctx: ConnectingContext) -> None:
            left.append(f"{ctx.code} {ctx.reason}")
            await original(ctx)

        await a.connect()
        await a.ready(timeout=5)
        aEvents.on_connecting = onConnecting  # type: ignore[method-assign]
        _, subA = await self.subscribe(a, "a")
        await asyncio.sleep(float(self.args.duration))
        if left:
            raise Failed(f"the client left the connected state while it waited: {left}")
        await self.publishAndReceive(a, subA, "a")
        await a.disconnect()

    async def token(self) -> None:
        for index, token in enumerate(self.args.token):
            who = f"t{index}"
            client, events = self.newClient(who, token)
            await client.connect()
            outcome = await asyncio.wait_for(events.outcome, 5)
            if outcome == "connected":
                _, sub = await self.subscribe(client, who)
                await self.publishAndReceive(client, sub, who)
                await client.disconnect()

    async def run(self) -> None:
        await getattr(self, self.args.scenario)()


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


def parseArguments(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--protocol", choices=["json", "protobuf"], default="json")
    parser.add_argument("--scenario", choices=["pubsub", "ping", "token"], required=True)
    parser.add_argument("--channel", default="chat")
    parser.add_argument("--data", default='{"text":"hello"}')
    parser.add_argument("--token", action="append", default=[])
    parser.add_argument("--duration", default="7")
    parser.add_argument("--deadline", default="20")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parseArguments())))
