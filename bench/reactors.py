"""
httpstream under another Twisted reactor, for bench.ceiling's ``--reactor``: installs the reactor, then runs
twistd with the rest of the command line (twistd keeps a reactor that is already installed).

    .venv/bin/python bench/reactors.py asyncio-uvloop -n --pidfile= httpstream -c config.json

Reactors: ``epoll`` (Twisted's default on Linux), ``asyncio`` (AsyncioSelectorReactor on asyncio's own loop),
``asyncio-uvloop`` (AsyncioSelectorReactor on a uvloop loop; uvloop comes with the ``bench`` extra).
"""

from __future__ import annotations

import os
import sys

REACTORS = ("epoll", "asyncio", "asyncio-uvloop")


def install(name: str) -> None:
    if name == "epoll":
        from twisted.internet import epollreactor

        epollreactor.install()
    elif name in ("asyncio", "asyncio-uvloop"):
        import asyncio

        from twisted.internet import asyncioreactor

        if name == "asyncio-uvloop":
            import uvloop

            loop = uvloop.new_event_loop()
        else:
            loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        asyncioreactor.install(loop)
    else:
        raise SystemExit(f"unknown reactor {name!r}: one of {', '.join(REACTORS)}")


def command(name: str) -> list[str]:
    """The argv prefix that runs twistd under reactor C{name} (twistd's own arguments follow)."""
    # Run as a script (servers run in a temporary directory, where the bench package is not importable).
    return [sys.executable, __file__, name]


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    # As a script, this file's directory heads sys.path: bench's modules must not shadow the server's imports.
    if sys.path and sys.path[0] == os.path.dirname(os.path.abspath(__file__)):
        del sys.path[0]
    install(sys.argv[1])
    from twisted.scripts.twistd import run

    sys.argv = ["twistd"] + sys.argv[2:]
    run()


if __name__ == "__main__":
    main()
