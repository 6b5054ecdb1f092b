# -*- test-case-name: tests.transports.test_direct -*-
"""
The direct write (at the bottom of the layers: the transports write streams with it, the Redis engine its urgent
commands): bytes go straight to the socket when nothing is waiting before them, and what comes behind a busy
socket waits in the connection's own queue, to go out as one write when the socket drains.

Twisted's C{transport.write} never sends at once: it appends to the transport's buffer, registers the socket for
writability (an C{epoll_ctl}), sends on the next poll and unregisters (another C{epoll_ctl}). asyncio's transports
send at once when their buffer is empty, and so does L{writeNow}: when the TCP transport holds nothing unsent, one
C{send()} takes the whole write (the kernel's buffer has room while the peer keeps up). So a delivery to a peer that
keeps up costs one syscall and no change to the poller's interest set.

What the kernel does not take goes to Twisted's buffer, in order, and the transport's streaming producer (the
client's writer, directly or through twisted.web's channel) is paused at once rather than past Twisted's 64 KiB:
the messages that follow wait in the writer's queue, counted against C{client_queue_max_size}, and Twisted resumes
the writer when its buffer has drained, which then writes them all as one chunk or frame, in one C{send()}, as
Centrifugo's writer does with what queued while its connection was busy.

A transport that is not a plain TCP connection (TLS, whose bytes are encrypted on the way; a test's fake) gets the
ordinary C{write}, and its producer Twisted's ordinary pauses.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.tcp import Connection

__all__ = ["writeNow", "direct", "unsent"]


def direct(transport: Any) -> bool:
    """Whether L{writeNow} may send on C{transport}'s socket itself: an open TCP connection, without TLS."""
    return bool(
        isinstance(transport, Connection)
        # startTLS on a plain connection: its writes go through the TLS layer.
        and not transport.TLS
        and transport.connected
        and not transport.disconnecting
        and not transport._writeDisconnected
    )


def unsent(transport: Connection) -> int:
    """The bytes a TCP transport holds that the kernel has not taken yet."""
    # FileDescriptor's buffer (dataBuffer from offset on, then _tempDataBuffer): Twisted has no public measure of it.
    return len(transport.dataBuffer) - transport.offset + transport._tempDataLen


def writeNow(transport: Any, data: bytes) -> None:
    """
    Write C{data} to C{transport} (an L{ITransport}): sent on the spot when it holds nothing unsent; otherwise, or
    for what the kernel did not take, buffered by the transport, whose streaming producer is then paused until it
    has sent it all.

    Failures are the transport's to find: on a socket error the bytes go to its buffer, and its next write attempt
    reports the lost connection as it always does.
    """
    # direct(), inlined: this runs once per delivery.
    if not isinstance(transport, Connection) or transport.TLS or not transport.connected or transport.disconnecting:
        transport.write(data)
        return
    try:
        # FileDescriptor's private state: a Twisted that keeps it otherwise gets its own write path, never an error
        # on every delivery (tests/transports/test_direct.py fails then, saying so). Its buffer once empty is
        # b"" with nothing behind it (doWrite resets it so); a buffer being emptied counts as busy (the buffered
        # write is always right, only slower).
        waiting = transport._tempDataLen or transport.dataBuffer or transport._writeDisconnected
    except AttributeError:
        transport.write(data)
        return
    if waiting:
        transport.write(data)  # behind bytes still waiting: the order is the buffer's
        if not transport._writeDisconnected:
            _hold(transport)
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
        _hold(transport)


def _hold(transport: Connection) -> None:
    """Pause the transport's streaming producer while its buffer holds anything (Twisted resumes it once empty)."""
    producer = transport.producer
    if producer is not None and transport.streamingProducer and not transport.producerPaused:
        transport.producerPaused = True
        producer.pauseProducing()  # type: ignore[attr-defined]  # a streaming producer is an IPushProducer
