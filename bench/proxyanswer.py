"""
Peak memory of one RPC proxy call whose backend answers 200 and then sends 1 MiB chunks without end, until the
call's 3 s timeout: bounded by the proxy's answer limit (httpstream.policy.proxy.caller.MAX_RESPONSE_SIZE)::

    .venv/bin/python -m bench.proxyanswer

The backend runs in a child process (``--serve``), so only the proxy's side is measured.
"""

from __future__ import annotations

import resource
import subprocess
import sys
from typing import Any

CHUNK = b" " * (1 << 20)


def serve() -> None:
    from twisted.internet import reactor
    from twisted.internet.interfaces import IPushProducer
    from twisted.web.resource import Resource
    from twisted.web.server import NOT_DONE_YET, Request, Site
    from zope.interface import implementer

    @implementer(IPushProducer)
    class Endless:
        def __init__(self, request: Request) -> None:
            self.request, self.paused, self.stopped = request, False, False
            request.registerProducer(self, True)
            request.notifyFinish().addErrback(lambda _: self.stopProducing())
            self.resumeProducing()

        def resumeProducing(self) -> None:
            self.paused = False
            self.pump()

        def pump(self) -> None:
            if not self.paused and not self.stopped:
                self.request.write(CHUNK)
                reactor.callLater(0, self.pump)  # type: ignore[attr-defined]

        def pauseProducing(self) -> None:
            self.paused = True

        def stopProducing(self) -> None:
            self.stopped = True

    class Backend(Resource):
        isLeaf = True

        def render_POST(self, request: Request) -> int:
            Endless(request)
            return NOT_DONE_YET

    port = reactor.listenTCP(0, Site(Backend()), interface="127.0.0.1")  # type: ignore[attr-defined]
    print(port.getHost().port, flush=True)
    reactor.run()  # type: ignore[attr-defined]


def measure(port: int) -> None:
    from twisted.internet import defer, reactor

    from httpstream.config import Config
    from httpstream.policy.proxy import ProxyClient, ProxyContext

    config = Config(proxy_rpc_endpoint=f"http://127.0.0.1:{port}/rpc", proxy_rpc_timeout="3s")
    proxy = ProxyClient(config, reactor)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    @defer.inlineCallbacks
    def call() -> Any:
        try:
            yield proxy.rpc(ProxyContext(clientID="c", transport="websocket", protocol="json"), "m", None)
        except Exception as e:
            print(f"call failed: {e!r}")
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(f"peak RSS: {before // 1024} MiB before the call, {after // 1024} MiB after")
        reactor.stop()  # type: ignore[attr-defined]

    reactor.callWhenRunning(call)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]


def main() -> None:
    if sys.argv[1:] == ["--serve"]:
        serve()
        return
    backend = subprocess.Popen([sys.executable, "-m", "bench.proxyanswer", "--serve"], stdout=subprocess.PIPE,
                               text=True)
    try:
        assert backend.stdout is not None
        measure(int(backend.stdout.readline()))
    finally:
        backend.terminate()
        backend.wait()


if __name__ == "__main__":
    main()
