"""
What a Python user would pick instead of httpstream, as small servers speaking the fan-out benchmark's wire subset
(see bench/baseline.py for the subset). Installed by the ``bench`` extra, never by the runtime dependencies:
``pip install -e '.[bench]'``. Each prints ``listening on http://127.0.0.1:PORT`` once it serves.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any, Callable, Coroutine, Optional


def runPeer(prog: str, serveForever: Callable[[int], Coroutine[Any, Any, None]],
            argv: Optional[list[str]] = None) -> int:
    """A peer's command line (C{--port}, C{--uvloop}): serve until killed, on asyncio's loop or uvloop."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop instead of asyncio's own loop")
    args = parser.parse_args(argv)
    if args.uvloop:
        import uvloop

        uvloop.run(serveForever(args.port))
    else:
        asyncio.run(serveForever(args.port))
    return 0
