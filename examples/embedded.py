"""
httpstream embedded in a Twisted program.

The program has its own service tree (a L{MultiService}) and its own work: a L{TimerService} that publishes a
tick to the channel ``ticks`` every 100 ms. httpstream is one more child of the tree, built by
L{httpstream.tap.makeService} from a config dict (the keys of config.json), and the program publishes through the
service's embedding API, which returns Deferreds as every Twisted API does.

    python examples/embedded.py [--port 8000] [--address 127.0.0.1]

Then subscribe to ``ticks`` with any Centrifugo SDK, e.g. the JS SDK::

    new Centrifuge([{transport: 'http_stream', endpoint: 'http://127.0.0.1:8000/connection/http_stream'},
                    {transport: 'websocket', endpoint: 'ws://127.0.0.1:8000/connection/websocket'}],
                   {emulationEndpoint: 'http://127.0.0.1:8000/emulation'})

It prints "listening on http://HOST:PORT" when it is ready (with ``--port 0`` the OS picks the port). Stop it with
Ctrl-C: the services stop in reverse order, and httpstream disconnects its clients with 3001 "shutdown".
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from typing import Any

from twisted.application.internet import TimerService
from twisted.application.service import MultiService
from twisted.logger import Logger, globalLogBeginner, textFileLogObserver

from httpstream.tap import makeService

log = Logger()

CHANNEL = "ticks"


def config(address: str, port: int) -> dict[str, Any]:
    """httpstream's settings, with the same keys as its config file (docs/configuration.md)."""
    return {
        "address": address,
        "port": port,
        "http_stream": True,
        # Anyone may connect and subscribe; nobody but this program publishes (the API stays closed: no api_key).
        "allow_anonymous_connect_without_token": True,
        "allow_subscribe_for_client": True,
        "allow_subscribe_for_anonymous": True,
        # Pages of any origin may connect (public ticks); non-browser clients send no Origin and need no entry.
        "allowed_origins": ["*"],
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--address", default="127.0.0.1")
    arguments = parser.parse_args(argv)

    from twisted.internet import reactor

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)])

    program = MultiService()
    # The node: its listening port, clients, channels. Reach its parts as httpstream.node, its API as methods.
    httpstream = makeService({"config": config(arguments.address, arguments.port)}, reactor=reactor)
    httpstream.setServiceParent(program)

    counter = itertools.count(1)

    def tick() -> None:
        n = next(counter)
        # Publication data is raw JSON bytes (as "data" in Centrifugo's API).
        data = json.dumps({"n": n, "time": reactor.seconds()}).encode()
        d = httpstream.publish(CHANNEL, data)
        d.addErrback(lambda failure: log.failure("publishing tick {n} failed", failure, n=n))

    ticker = TimerService(0.1, tick)
    ticker.clock = reactor
    # Added after httpstream: started after it (the port is open before the first tick), stopped before it.
    ticker.setServiceParent(program)

    reactor.callWhenRunning(program.startService)
    reactor.addSystemEventTrigger("before", "shutdown", program.stopService)
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1:])
