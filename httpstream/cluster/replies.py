# -*- test-case-name: tests.cluster.test_control -*-
"""
What the control plane's requests come back with, and what it needs of its node: reply codes, the L{Reply}
value, the errors a request ends with, the requests and surveys waiting for replies, and the L{ControlledNode} structural type (so this layer never imports the
node's module).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from twisted.internet.defer import Deferred

from httpstream.interfaces import ISessionRegistry

if TYPE_CHECKING:
    from httpstream.emulation import EmulationResult

__all__ = [
    "CODE_BAD_REQUEST", "CODE_ERROR", "CODE_NO_SESSION", "CODE_OK", "CODE_UNKNOWN_OP", "ControlStopped",
    "ControlTimeout", "ControlledNode", "OpError", "PendingRequest", "PendingSurvey", "Reply",
]

# Reply codes. 0-2 are Centrifugo's emulation codes (emulation.go); the others are httpstream's.
CODE_OK = 0
CODE_BAD_REQUEST = 1
CODE_NO_SESSION = 2
CODE_UNKNOWN_OP = 3
CODE_ERROR = 4  # the handler failed (logged on the node that ran it)

class ControlledNode(Protocol):
    """
    What the control plane reads of its node: a structural type, so that this layer never imports the node's
    module (L{httpstream.node.node.Node} is one; tests may pass lighter ones).
    """

    @property
    def id(self) -> str: ...

    @property
    def registry(self) -> ISessionRegistry: ...

    def info(self) -> dict[str, Any]: ...

    def channelCounts(self, pattern: str = "") -> dict[str, int]: ...

    def emulate(self, session: str, nodeID: str, data: bytes) -> "Deferred[EmulationResult]": ...


class OpError(Exception):
    """Raised by an op handler: reply with this code (and result) instead of C{CODE_OK}."""

    def __init__(self, code: int, result: Any = None) -> None:
        super().__init__(code, result)
        self.code = code
        self.result = result


class ControlTimeout(Exception):
    """The target node did not reply in time (the emulation endpoint answers 500)."""


class ControlStopped(Exception):
    """The control plane stopped while a request was waiting for its reply."""


@dataclass(frozen=True)
class Reply:
    """One node's answer to a request: the node, a code (C{CODE_OK} when the op ran) and the op's result."""

    node: str
    code: int
    result: Any = None

    @property
    def ok(self) -> bool:
        """Whether the op ran (callers outside the cluster layer ask this, never the codes)."""
        return self.code == CODE_OK


@dataclass
class PendingRequest:
    """A request waiting for its reply (or its timeout: the control plane's L{Deadlines})."""

    deferred: Deferred[Reply]
    target: str


@dataclass
class PendingSurvey:
    """A survey gathering the replies of the nodes known when it was sent."""

    deferred: Deferred[dict[str, Reply]]
    expected: set[str]
    replies: dict[str, Reply] = field(default_factory=dict)
    localDone: bool = False
