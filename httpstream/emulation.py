# -*- test-case-name: tests.node.test_emulation -*-
"""
What became of one emulation request: the answer of L{httpstream.node.node.Node.emulate}.

An emulated transport (http_stream, SSE) sends its commands in separate POSTs naming a session and the node that
holds it (Centrifugo's C{/emulation}). As in centrifugal/centrifuge C{emulation.go}, the node runs them on the
session's client, or asks the cluster to run them on the node that holds it; the web layer turns the outcome into
an HTTP status. Neither side needs to know how the other gets its answer: this enum is all that crosses.
"""

from __future__ import annotations

import enum


class EmulationResult(enum.Enum):
    """
    The outcome of one emulation request. Each value is the outcome label it is counted under in the
    C{httpstream_emulation_requests_total} metric.
    """

    #: The commands ran on the session's client on this node (their replies went down its stream).
    DELIVERED = "ok"
    #: The commands ran on the session's client on the node that holds it.
    FORWARDED = "forwarded"
    #: No such session (closed or never opened) where it should be: the commands are dropped, the SDK times out
    #: and reconnects.
    NO_SESSION = "no_session"
    #: The request names a node that is neither this one nor a live node of the cluster.
    UNKNOWN_NODE = "unknown_node"
    #: The node that holds the session refused the forwarded request (it did not understand it).
    REFUSED = "bad_request"
    #: The node that holds the session did not answer (it is unreachable, or the cluster link is down).
    UNREACHABLE = "forward_failed"

    @property
    def ran(self) -> bool:
        """Whether the commands reached the session's client."""
        return self in (EmulationResult.DELIVERED, EmulationResult.FORWARDED)
