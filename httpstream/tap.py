# -*- test-case-name: tests.test_tap -*-
"""
``twistd httpstream``: command-line options, and L{makeService}, which builds the node's service from them.

L{makeService} is also the embedding entry point: a Twisted program adds the service it returns to its own
L{MultiService} and reaches the node through C{service.node}. The service itself is L{httpstream.service}'s.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union, overload

from twisted.application.service import IService
from twisted.python import usage

from httpstream.config import Config, ConfigError, config_from_dict, load_config, read_config
from httpstream.listeners import LISTEN_BACKLOG, ListenError, configListenDescription
from httpstream.service import RESTART_KEYS, HTTPStreamService, changedKeys, tuneGarbageCollector
from httpstream.web.tls import serverTLSOptions
from httpstream.workers.supervisor import Supervisor, checkSockets
from httpstream.workers.worker import serveAsWorker, twistdCommand

__all__ = [
    "LISTEN_BACKLOG",
    "RESTART_KEYS",
    "HTTPStreamService",
    "Supervisor",
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
        ["workers", None, None,
         'Worker processes behind the one port: a number, or "auto" for one per core (the config key "workers"; '
         'more than 1 needs the Redis engine).'],
        # Given by the supervisor to each worker it starts (httpstream.workers), not by operators.
        ["worker", None, None, "(internal) This process is worker number N of a supervisor."],
        ["inherit", None, "", "(internal) The worker's inherited listening sockets: descriptors, comma-separated."],
        ["status-fd", None, None, "(internal) The worker's status pipe to its supervisor."],
        ["supervisor", None, None, "(internal) The supervisor's pid."],
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
        if self["worker"] is not None:
            self.config = dataclasses.replace(self.config, workers=1)  # a worker serves; it supervises nobody
        elif self["workers"] is not None:
            self._applyWorkers(self["workers"])

    def _applyWorkers(self, text: str) -> None:
        value: Union[int, str] = int(text) if text.strip().isdigit() else text.strip()
        try:
            self.config = dataclasses.replace(self.config, workers=value)  # type: ignore[arg-type]
        except ConfigError as e:
            problem = str(e).replace('config key "workers"', "--workers", 1)
            sys.stderr.write(f"httpstream: {problem}\n")
            raise SystemExit(1)


@overload
def makeService(options: Options, reactor: Any = None) -> IService: ...  # type: ignore[overload-overlap]


@overload
def makeService(options: Mapping[str, Any], reactor: Any = None) -> HTTPStreamService: ...


def makeService(options: Union[Options, Mapping[str, Any]], reactor: Any = None) -> IService:
    """
    Build a node's service from parsed L{Options} or a mapping whose C{"config"} is a L{Config}, a dict of
    Centrifugo keys, or a file path, and whose optional C{"listen"} lists endpoint descriptions.

    Under twistd with more than one worker (C{--workers}, the config's C{workers}) the service is the workers'
    L{Supervisor}; embedded, it is always one node in the program's own process.
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
    worker = ownProcess and options["worker"] is not None
    try:
        if ownProcess and not worker and config.workerCount() > 1:
            return _supervisor(options, config, listen, reactor)
        if not ownProcess and config.workers != 1:
            warnings.append('"workers" is for twistd httpstream: an embedded node runs in its program\'s process')
        # Only under twistd (parsed Options) is the process ours to tune, to reload on SIGHUP and to exit.
        service = HTTPStreamService(
            config, reactor, warnings, tuneGC=ownProcess, configPath=options["config"] if ownProcess else None,
            envApplied=tuple(getattr(options, "envApplied", ())), listen=listen,
            inherited=[int(fd) for fd in options["inherit"].split(",") if fd] if worker else (),
        )
    except (ConfigError, ListenError) as e:
        if not ownProcess:
            raise
        problem = f"--listen {e}" if isinstance(e, ListenError) else str(e)
        sys.stderr.write(f"httpstream: {problem}\n")
        raise SystemExit(1)
    if worker:
        # Each worker serves its own /metrics on the shared port: the label says whose a scrape got.
        service.node.metrics.labelAll({"worker": str(options["worker"]), "pid": str(os.getpid())})
        serveAsWorker(reactor, service.whenAccepting(), int(options["status-fd"]), int(options["supervisor"]))
    return service


def _supervisor(options: Mapping[str, Any], config: Config, listen: Sequence[str], reactor: Any) -> Supervisor:
    """The workers' supervisor, once what the workers would refuse has been refused here, in one line."""
    checkSockets(reactor, config, listen)
    if not listen:
        serverTLSOptions(config)  # a certificate that cannot be used: ConfigError
    command = twistdCommand() + [
        "-n", "--pidfile=", "--logger=httpstream.workers.childlog.observer", "httpstream", "-c", options["config"],
    ]
    for description in listen:
        command += ["--listen", description]
    return Supervisor(reactor, config, config.workerCount(), command, listen)
