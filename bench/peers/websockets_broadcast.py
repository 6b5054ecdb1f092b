"""
A peer: the ``websockets`` library's asyncio server with its ``broadcast()`` (WebSocket, JSON text frames).

    .venv/bin/python -m bench.peers.websockets_broadcast [--port 0] [--uvloop]

Connect, subscribe and publish commands arrive in frames (newline-delimited); a publish is answered, then its
publication goes to every subscriber of the channel with one ``broadcast()`` call. No compression, no pings.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from typing import Any, Optional

from websockets.asyncio.server import ServerConnection, broadcast, serve

from bench.peers import runPeer

channels: dict[str, set[ServerConnection]] = {}


async def handler(websocket: ServerConnection) -> None:
    try:
        async for message in websocket:
            text = message if isinstance(message, str) else message.decode()
            for line in text.split("\n"):
                await command(websocket, json.loads(line))
    finally:
        for subscribers in channels.values():
            subscribers.discard(websocket)


async def command(websocket: ServerConnection, command: dict[str, Any]) -> None:
    commandID = command.get("id")
    if "connect" in command:
        reply = {"client": uuid.uuid4().hex, "version": "0.0.0"}
        await websocket.send(json.dumps({"id": commandID, "connect": reply}))
    elif "subscribe" in command:
        channels.setdefault(command["subscribe"]["channel"], set()).add(websocket)
        await websocket.send(json.dumps({"id": commandID, "subscribe": {}}))
    elif "publish" in command:
        channel = command["publish"]["channel"]
        await websocket.send(json.dumps({"id": commandID, "publish": {}}))
        push = {"push": {"channel": channel, "pub": {"data": command["publish"]["data"]}}}
        broadcast(channels.get(channel, ()), json.dumps(push))


async def serveForever(port: int) -> None:
    async with serve(handler, "127.0.0.1", port, compression=None, ping_interval=None, backlog=1024) as server:
        bound = next(iter(server.sockets)).getsockname()[1]
        print(f"websockets {bound} listening on http://127.0.0.1:{bound}", flush=True)
        await asyncio.get_running_loop().create_future()


def main(argv: Optional[list[str]] = None) -> int:
    return runPeer("python -m bench.peers.websockets_broadcast", serveForever, argv)


if __name__ == "__main__":
    sys.exit(main())
