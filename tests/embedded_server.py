"""
httpstream embedded in a Twisted program, as the tests' server with in-process RPC handlers.

    python tests/embedded_server.py CONFIG.json

It prints the same "listening on http://HOST:PORT" line as ``twistd httpstream``, so L{ServerProcess} can run it
(``ServerProcess(..., command=EMBEDDED)``). Handlers: ``echo`` answers the request data, ``fail`` answers error
4000 "custom failure", ``whoami`` answers ``{"user": ..., "client": ...}``.
"""

from __future__ import annotations

import sys

import orjson
from twisted.application.service import MultiService
from twisted.internet import reactor
from twisted.internet.defer import succeed
from twisted.logger import globalLogBeginner, textFileLogObserver

from httpstream.policy.rpc import RPCError
from httpstream.tap import makeService


def main(path: str) -> None:
    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])
    program = MultiService()
    service = makeService({"config": path}, reactor=reactor)
    service.setServiceParent(program)
    rpc = service.node.rpc
    rpc.register("echo", lambda ctx, data: data)
    rpc.register("whoami", lambda ctx, data: succeed(orjson.dumps({"user": ctx.user, "client": ctx.clientID})))

    def fail(ctx, data):  # type: ignore[no-untyped-def]
        raise RPCError(4000, "custom failure")

    rpc.register("fail", fail)
    reactor.callWhenRunning(program.startService)
    reactor.addSystemEventTrigger("before", "shutdown", program.stopService)
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1])
