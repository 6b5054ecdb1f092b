# -*- test-case-name: tests.policy.test_proxy -*-
"""How a proxy call ends when it does not give a result: an error reply, a disconnect, or a failed exchange."""

from __future__ import annotations

from httpstream.protocol import codes

__all__ = ["CallFailed", "ProxyDisconnect", "ProxyError"]


class ProxyError(Exception):
    """
    The backend (or the proxy call itself) produced an error reply for the client's command.

    @ivar error: the reply error to send, e.g. C{codes.ERROR_INTERNAL} for a failed call.
    """

    def __init__(self, error: codes.Error) -> None:
        super().__init__(error.code, error.message)
        self.error = error


class ProxyDisconnect(Exception):
    """
    The backend asked to disconnect the client.

    @ivar disconnect: the code and reason to disconnect with.
    """

    def __init__(self, disconnect: codes.Disconnect) -> None:
        super().__init__(disconnect.code, disconnect.reason)
        self.disconnect = disconnect


class CallFailed(Exception):
    """The HTTP exchange failed or its body is not a valid response; Centrifugo's ``err != nil`` branch."""
