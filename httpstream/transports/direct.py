# -*- test-case-name: tests.transports.test_direct -*-
"""
The direct write: bytes go straight to the socket when nothing is waiting before them.

Twisted's C{transport.write} never sends at once: it appends to the transport's buffer, registers the socket for
writability (an C{epoll_ctl}), sends on the next poll and unregisters (another C{epoll_ctl}). asyncio's transports
send at once when their buffer is empty, and so does L{writeNow}: when the TCP transport holds nothing unsent, one
C{send()} takes the whole write (the kernel's buffer has room while the peer keeps up), and only what it leaves, or
a write behind bytes still waiting, goes through C{transport.write}, whose buffer then keeps the order and sends
what has queued up there in one C{send()} when the socket drains. So a delivery to a peer that keeps up costs one
syscall and no change to the poller's interest set.

A transport that is not a plain TCP connection (TLS, whose bytes are encrypted on the way; a test's fake) gets the
ordinary C{write}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.tcp import Connection

__all__ = ["writeNow"]


def writeNow(transport: Any, data: bytes) -> None:
    """
    Write C{data} to C{transport} (an L{ITransport}), sending it on the spot when the transport has nothing unsent.

    Failures are the transport's to find: on a socket error the bytes go to its buffer, and its next write attempt
    reports the lost connection as it always does.
    """
    # The buffer's state is Twisted's FileDescriptor's (dataBuffer from offset on, then _tempDataBuffer): there is no
    # public "nothing unsent" test. Anything but an idle, open TCP connection takes the ordinary way.
    if (
        not isinstance(transport, Connection)
        or transport.TLS  # startTLS on a plain connection: its writes go through the TLS layer
        or transport._tempDataBuffer
        or transport.offset != len(transport.dataBuffer)
        or not transport.connected
        or transport.disconnecting
        or transport._writeDisconnected
    ):
        transport.write(data)
        return
    try:
        sent = transport.socket.send(data)
    except BlockingIOError:
        sent = 0
    except OSError:
        # Reset, broken pipe: the transport's own attempt will find it and lose the connection.
        transport.write(data)
        return
    if sent < len(data):
        transport.write(data[sent:])

