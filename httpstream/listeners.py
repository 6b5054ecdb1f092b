# -*- test-case-name: tests.test_tap -*-
"""
Where a node listens: L{Listener}s made from endpoint descriptions (C{--listen}) or from the config's C{address},
C{port} and C{tls}, and the two ways one becomes a listening port: listening itself, or adopting a socket that a
supervising process opened and handed down (L{adopt}, for C{--workers}: L{httpstream.workers}).

May import: L{httpstream.config}; never the service or the node.
"""

from __future__ import annotations

import dataclasses
import socket
from typing import Any, Optional, Sequence

from twisted.internet.endpoints import SSL4ServerEndpoint, quoteStringArgument, serverFromString
from twisted.internet.interfaces import IListeningPort, IProtocolFactory, IStreamServerEndpoint
from twisted.protocols.tls import TLSMemoryBIOFactory

from httpstream.config import Config

__all__ = [
    "LISTEN_BACKLOG", "ListenError", "Listener", "adopt", "configListenDescription", "endpointFor", "kindOf",
    "makeListeners", "withBacklog",
]

# A reconnect storm after a restart opens thousands of connections at once; Twisted's default backlog of 50 made
# the kernel drop SYNs (bench/README.md).
LISTEN_BACKLOG = 1024

# The endpoint types that take a backlog: a description without one gets LISTEN_BACKLOG.
_BACKLOG_TYPES = frozenset({"tcp", "tcp6", "ssl", "unix"})


class ListenError(ValueError):
    """An endpoint description that cannot be used: it does not parse, or names files that cannot be read."""


def kindOf(description: str) -> str:
    """The endpoint type of a description: C{tcp}, C{ssl}, C{unix}, ... (lower case)."""
    return description.split(":", 1)[0].strip().lower()


def configListenDescription(config: Config) -> str:
    """
    The endpoint description of the config's C{address} and C{port}: C{tcp6} for an IPv6 address, else C{tcp}
    (every IPv4 address when C{address} is empty). The config's C{tls} wraps the site rather than being part of the
    description: its certificate and key may be PEM text, which an C{ssl:} description cannot carry.
    """
    kind = "tcp6" if ":" in config.address else "tcp"
    description = f"{kind}:port={config.port}:backlog={LISTEN_BACKLOG}"
    if config.address:
        description += f":interface={quoteStringArgument(config.address)}"
    return description


def withBacklog(description: str) -> str:
    """C{description} with C{backlog=LISTEN_BACKLOG} added when its type takes one and it names none."""
    if kindOf(description) in _BACKLOG_TYPES and "backlog=" not in description:
        return f"{description}:backlog={LISTEN_BACKLOG}"
    return description


def endpointFor(reactor: Any, description: str, complete: Optional[str] = None) -> IStreamServerEndpoint:
    """The endpoint of C{complete} (C{description} with what httpstream adds); errors show C{description}."""
    try:
        endpoint: IStreamServerEndpoint = serverFromString(reactor, complete or description)
    except (ValueError, TypeError, OSError) as e:
        # Twisted's parsers say what is wrong in any of these (an unknown type, a bad or missing argument, a
        # key file that cannot be read).
        raise ListenError(f"{description!r}: {e}") from None
    return endpoint


@dataclasses.dataclass(frozen=True)
class Listener:
    """One place the service listens: its description, endpoint, the factory served there and its URL scheme."""

    description: str
    endpoint: IStreamServerEndpoint
    factory: IProtocolFactory
    scheme: str


def makeListeners(
    reactor: Any, config: Config, listen: Sequence[str], site: IProtocolFactory, tls: Any
) -> list[Listener]:
    """
    The listeners of C{listen} (endpoint descriptions), or else of the config's C{address} and C{port}, serving
    C{site}; C{tls} (the config's server TLS options, or None) wraps the site in the latter case.

    @raise ListenError: a description that does not parse.
    """
    if listen:
        return [
            Listener(
                description,
                endpointFor(reactor, description, withBacklog(description)),
                site,
                "https" if kindOf(description) == "ssl" else "http",
            )
            for description in listen
        ]
    description = configListenDescription(config)
    if tls is None:
        return [Listener(description, endpointFor(reactor, description), site, "http")]
    # TLS wraps the site itself, so https, wss and the emulation POSTs share the one port.
    factory = TLSMemoryBIOFactory(tls, False, site)
    return [Listener(description, endpointFor(reactor, description), factory, "https")]


def adopt(reactor: Any, listener: Listener, fd: int) -> IListeningPort:
    """
    Serve C{listener}'s factory on the listening socket C{fd}, opened by another process for this one (the
    supervisor of C{--workers}), instead of listening on the endpoint: every worker accepts from the one socket.
    An C{ssl:} endpoint's TLS wraps the factory here, as its C{listen} would have.
    """
    probe = socket.socket(fileno=fd)
    family = probe.family
    probe.detach()  # the descriptor stays open: the port below takes a duplicate of it
    factory = listener.factory
    if isinstance(listener.endpoint, SSL4ServerEndpoint):
        # The endpoint keeps the context factory its description made (certificate, key, options) only here.
        factory = TLSMemoryBIOFactory(listener.endpoint._sslContextFactory, False, factory)
    port: IListeningPort = reactor.adoptStreamPort(fd, family, factory)
    return port
