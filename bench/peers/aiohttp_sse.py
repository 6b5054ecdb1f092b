"""
A peer: aiohttp's ``StreamResponse`` as an SSE endpoint, with the emulation POST for the commands.

    .venv/bin/python -m bench.peers.aiohttp_sse [--port 0] [--uvloop]

``GET /connection/sse?cf_connect=...`` opens a text/event-stream (``\\r\\n``, then ``data: JSON\\n\\n`` events) and
answers the connect command with a session; ``POST /emulation`` runs subscribe and publish commands for a session
(replies on its stream; a publication written to each subscriber's response in turn) and answers 204.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from typing import Any, Optional

from aiohttp import web

from bench.peers import runPeer

sessions: dict[str, web.StreamResponse] = {}
channels: dict[str, set[web.StreamResponse]] = {}


async def event(response: web.StreamResponse, message: dict[str, Any]) -> None:
    await response.write(b"data: " + json.dumps(message).encode() + b"\n\n")


async def sse(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
    await response.prepare(request)
    await response.write(b"\r\n")
    session = uuid.uuid4().hex
    sessions[session] = response
    try:
        for line in request.query.get("cf_connect", "").split("\n"):
            command = json.loads(line)
            reply = {"client": session, "version": "0.0.0", "session": session, "node": "aiohttp"}
            await event(response, {"id": command.get("id"), "connect": reply})
        # Open until the client goes (the runner cancels this handler then).
        await asyncio.get_running_loop().create_future()
    finally:
        sessions.pop(session, None)
        for subscribers in channels.values():
            subscribers.discard(response)
    return response


async def emulation(request: web.Request) -> web.Response:
    body = await request.json()
    response = sessions.get(body["session"])
    if response is not None:
        for line in body["data"].split("\n"):
            command = json.loads(line)
            commandID = command.get("id")
            if "subscribe" in command:
                channels.setdefault(command["subscribe"]["channel"], set()).add(response)
                await event(response, {"id": commandID, "subscribe": {}})
            elif "publish" in command:
                channel = command["publish"]["channel"]
                await event(response, {"id": commandID, "publish": {}})
                push = {"push": {"channel": channel, "pub": {"data": command["publish"]["data"]}}}
                message = b"data: " + json.dumps(push).encode() + b"\n\n"
                for subscriber in list(channels.get(channel, ())):
                    try:
                        await subscriber.write(message)
                    except ConnectionError:
                        channels[channel].discard(subscriber)
    return web.Response(status=204)


async def serveForever(port: int) -> None:
    app = web.Application()
    app.router.add_get("/connection/sse", sse)
    app.router.add_post("/emulation", emulation)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print(f"aiohttp listening on http://127.0.0.1:{bound}", flush=True)
    await asyncio.get_running_loop().create_future()


def main(argv: Optional[list[str]] = None) -> int:
    return runPeer("python -m bench.peers.aiohttp_sse", serveForever, argv)


if __name__ == "__main__":
    sys.exit(main())
