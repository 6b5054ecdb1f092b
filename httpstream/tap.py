# -*- test-case-name: tests.test_tap -*-
"""
``twistd httpstream``: command-line options, and L{makeService}, which builds the node's service from them.

L{makeService} is also the embedding entry point: a Twisted program adds the service it returns to its own
L{MultiService} and reaches the node through C{service.node}. The service itself is L{httpstream.service}'s.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

from twisted.python import usage

from httpstream.config import Config, ConfigError, config_from_dict, load_config, read_config
from httpstream.service import (
    LISTEN_BACKLOG,
    RESTART_KEYS,
    HTTPStreamService,
    ListenError,
    changedKeys,
    configListenDescription,
    tuneGarbageCollector,
)

__all__ = [
    "LISTEN_BACKLOG",
    "RESTART_KEYS",
    "HTTPStreamService",
    "ListenError",
    "Options",
    "changedKeys",
    "configListenDescription",
    "makeService",
    "tuneGarbageCollector",
]


class Options(usage.Options):
    """twistd httpstream [-c FILE] [--listen DESCRIPTION ...]"""

    synopsis = "[-c FILE] [--listen DESCRIPTION ...]"
    longdesc = (
        "Run an httpstream node: a Centrifugo-compatible real-time server (client protocol v2) whose "
        "HTTP streaming transport works where WebSocket does not. The config file is JSON, YAML or TOML with "
        "Centrifugo's key names (v5 or v6), under CENTRIFUGO_* environment variables: `httpstream genconfig` "
        "writes one with fresh secrets, and an example ships with the package (below)."
    )
    optParameters = [
        ["config", "c", "config.json", "Path to the config file (.json, .yaml/.yml or .toml)."],
    ]

    config: Config
    warnings: list[str]
    envApplied: tuple[str, ...] = ()

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self["listen"] = []

    def opt_listen(self, description: str) -> None:
        """
        Listen on a Twisted endpoint description, e.g. tcp:8000:interface=127.0.0.1 or
        ssl:8443:privateKey=key.pem:certKey=cert.pem (repeat for several); replaces the config's address, port
        and tls.
        """
        self["listen"].append(description)

    def getUsage(self, width: Optional[int] = None) -> str:
        # On a line of its own: the wrapped description would break the path at its hyphens.
        return f"{super().getUsage(width)}\nExample config: {Path(__file__).with_name('config.example.json')}\n"

    def opt_version(self) -> None:
        """Display httpstream's version and exit."""
        from httpstream.version import versionText

        print(versionText())
        raise SystemExit(0)

    def postOptions(self) -> None:
        try:
            loaded = read_config(self["config"])
            self.config, self.warnings, self.envApplied = loaded.config, loaded.warnings, loaded.env_applied
        except ConfigError as e:
            # One line an operator can act on, not twistd's usage text and not a traceback.
            sys.stderr.write(f"httpstream: {e}\n")
            raise SystemExit(1)


def makeService(
    options: Union[Options, Mapping[str, Any]], reactor: Any = None
) -> HTTPStreamService:
    """
    Build a node's service from parsed L{Options} or a mapping whose C{"config"} is a L{Config}, a dict of
    Centrifugo keys, or a file path, and whose optional C{"listen"} lists endpoint descriptions.
    """
    if reactor is None:
        from twisted.internet import reactor as defaultReactor

        reactor = defaultReactor
    config = getattr(options, "config", None)
    warnings: list[str] = list(getattr(options, "warnings", ()))
    ownProcess = isinstance(options, Options)
    if not isinstance(config, Config):
        source = options["config"]
        if isinstance(source, Config):
            config = source
        elif isinstance(source, Mapping):
            config, warnings = config_from_dict(source)
        else:
            config, warnings = load_config(source)
    listen: Sequence[str] = options.get("listen") or ()
    if isinstance(listen, str):
        listen = [listen]
    # Only under twistd (parsed Options) is the process ours to tune, to reload on SIGHUP and to exit.
    try:
        return HTTPStreamService(
            config, reactor, warnings, tuneGC=ownProcess, configPath=options["config"] if ownProcess else None,
            envApplied=tuple(getattr(options, "envApplied", ())), listen=listen,
        )
    except (ConfigError, ListenError) as e:
        if not ownProcess:
            raise
        problem = f"--listen {e}" if isinstance(e, ListenError) else str(e)
        sys.stderr.write(f"httpstream: {problem}\n")
        raise SystemExit(1)
