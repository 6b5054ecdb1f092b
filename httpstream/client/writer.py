# -*- test-case-name: tests.client.test_writer -*-
"""
One connection's outbound queue.

Messages are queued already encoded and written as one batch per reactor turn, so a burst of publications costs
one chunk (one syscall) instead of one per message. The queue is bounded in bytes: a client that cannot keep up is
disconnected with 3008 "slow" rather than growing the server's memory. The writer is the push producer the
transport pauses while the peer does not read.

If the transport raises on a write, the writer stops and reports the error once; its owner ends the connection
with a code, so the client reconnects (and recovers) rather than staying connected past a gap it cannot see.
"""

from __future__ import annotations

import sys
from typing import Any, Callable, Optional, Protocol

from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.python.failure import Failure
from zope.interface import implementer

from httpstream.interfaces import ITransport
from httpstream.logs import Logger


class Counts(Protocol):
    """Where a writer adds what it accepted to send (L{httpstream.metrics.SentCounts})."""

    messages: int
    bytes: int


class _Uncounted:
    __slots__ = ("messages", "bytes")

    def __init__(self) -> None:
        self.messages = 0
        self.bytes = 0


class _Batching:
    """writeMessage for a transport that has only writeMessages."""

    __slots__ = ("_transport",)

    def __init__(self, transport: ITransport) -> None:
        self._transport = transport

    def writeMessage(self, message: bytes) -> None:
        self._transport.writeMessages((message,))


class Flusher:
    """
    Flushes every writer with something queued, once per reactor turn, from a single timer.

    A timer per writer would cost a heap insertion per subscriber per publication (the heap also holds every
    connection's ping timer): with 1000 subscribers that was a quarter of the server's CPU and drove the garbage
    collector (bench/README.md).

    A publication reaches each of its subscribers' writers as a batch of one: the flusher writes those itself,
    straight to the transport's L{ITransport.writeMessage}, so what a delivery costs on this side is one call
    into the transport (bench.deliveries counts it).
    """

    __slots__ = ("_reactor", "_due", "_call")

    log = Logger()

    def __init__(self, reactor: IReactorTime) -> None:
        self._reactor = reactor
        # A dict as an insertion-ordered set: writers flush in the order they became due.
        self._due: dict["Writer", None] = {}
        self._call: Optional[IDelayedCall] = None

    def schedule(self, writer: "Writer") -> None:
        self._due[writer] = None
        if self._call is None:
            self._call = self._reactor.callLater(0, self._run)

    def cancel(self, writer: "Writer") -> None:
        self._due.pop(writer, None)
        if not self._due and self._call is not None:
            # Leave no timer behind for nothing (a closed connection must not keep the reactor busy).
            self._call.cancel()
            self._call = None

    def _run(self) -> None:
        self._call = None
        due, self._due = self._due, {}
        for writer in due:
            try:
                # Writer._write, inlined for a batch of one (the flusher has dropped the writer from its due list:
                # nothing to unschedule). A stopped writer holds nothing.
                writer._scheduled = False
                message = writer._head
                if writer._rest is None and message is not None and not writer.paused:
                    # Taken off before writing, as in Writer._write.
                    writer._head = None
                    writer.size = 0
                    try:
                        writer._one.writeMessage(message)
                    except Exception:
                        writer._writeFailed()
                else:
                    writer._write(False)
            except Exception:
                # One broken connection must not hold back everyone else's writes.
                self.log.failure("flushing a client's queue")


@implementer(IPushProducer)
class Writer:
    """
    A bounded, batching queue in front of an L{ITransport}.

    @ivar size: bytes queued and not yet written.
    @ivar paused: True while the transport asked us to stop producing.
    @ivar overflowed: True once a message did not fit; the overflow callback has run (once) and only forced
        messages are queued from then on.
    @ivar failed: True once the transport raised on a write; the writer has stopped and the write error callback
        has run (once).
    """

    # One per connection: no per-instance dict. The queue is its first message (_head) and a list of those behind
    # it only while there are any (_rest): a publication alone, nearly every batch, is queued and taken off without
    # a list, an allocation or another object to reach (one connection's list is far from the next one's in
    # memory, and the flusher goes through thousands of them per publication).
    __slots__ = ("_transport", "_one", "_maxSize", "_onOverflow", "_onWriteError", "_flusher", "_head",
                 "_rest", "_scheduled", "_sent", "size", "paused", "stopped", "overflowed", "failed")

    def __init__(
        self,
        reactor: IReactorTime,
        transport: ITransport,
        maxSize: int,
        onOverflow: Callable[[], None],
        flusher: Optional[Flusher] = None,
        onWriteError: Optional[Callable[[Failure], None]] = None,
        sent: Optional[Counts] = None,
    ) -> None:
        """
        @param maxSize: the queue's limit in bytes (0: none).
        @param onWriteError: called (once) with the failure when the transport raises on a write, after the
            writer has stopped; without it the exception propagates to the caller of L{flush}.
        @param sent: counts of the messages and bytes accepted (the connection's transport's metrics).
        """
        self._transport = transport
        # What writes a batch of one: the transport, or for one from before ITransport.writeMessage, a batch.
        self._one: Any = transport if hasattr(transport, "writeMessage") else _Batching(transport)
        self._maxSize = maxSize or sys.maxsize
        self._onOverflow = onOverflow
        self._onWriteError = onWriteError
        self._flusher = flusher if flusher is not None else Flusher(reactor)
        self._head: Optional[bytes] = None
        self._rest: Optional[list[bytes]] = None  # None while _head is alone (or nothing is queued)
        self._scheduled = False
        self._sent: Counts = sent if sent is not None else _Uncounted()
        self.size = 0
        self.paused = False
        self.stopped = False
        self.overflowed = False
        self.failed = False

    def enqueue(self, message: bytes, force: bool = False) -> bool:
        """
        Queue one encoded message for the next flush.

        @param force: queue it even past the limit (the last words of a connection being closed).

        @return: False when the message would take the queue over its limit; the overflow callback has then been
            called and nothing was queued.
        """
        if self.stopped or (self.overflowed and not force):
            # After an overflow nothing more is written: a later message past a dropped one would hide the gap.
            return False
        length = len(message)
        size = self.size + length
        if size > self._maxSize and not force:
            self.overflowed = True
            self._onOverflow()
            return False
        if self._head is None:
            self._head = message
        elif self._rest is None:
            self._rest = [message]
        else:
            self._rest.append(message)
        self.size = size
        sent = self._sent
        sent.messages += 1
        sent.bytes += length
        # _schedule and Flusher.schedule, inlined: this runs once per message per connection.
        if not self._scheduled and not self.paused:
            self._scheduled = True
            flusher = self._flusher
            flusher._due[self] = None
            if flusher._call is None:
                flusher._call = flusher._reactor.callLater(0, flusher._run)
        return True

    def _schedule(self) -> None:
        if not self._scheduled and not self.paused:
            self._scheduled = True
            self._flusher.schedule(self)

    def _unschedule(self) -> None:
        if self._scheduled:
            self._scheduled = False
            self._flusher.cancel(self)

    def flush(self, final: bool = False) -> None:
        """
        Write everything queued now, as one unit, unless the transport is paused.

        @param final: write it even so: the connection's last words (its disconnect), after which it is closed.
            A transport pauses its writer as soon as its socket is busy (L{httpstream.directwrite}), not only
            when its peer has stopped reading.
        """
        self._unschedule()
        self._write(final)

    def _write(self, final: bool) -> None:
        head = self._head
        if (self.paused and not final) or head is None or self.stopped:
            return
        # Taken off before writing, so that whatever the write leads to (a pause, a stop) sees an empty queue.
        rest = self._rest
        self._head = self._rest = None
        self.size = 0
        try:
            if rest is None:
                self._one.writeMessage(head)
            else:
                rest.insert(0, head)
                self._transport.writeMessages(rest)
        except Exception:
            self._writeFailed()

    def _writeFailed(self) -> None:
        """
        The transport raised on a write (the exception being handled): stop and tell the owner, or re-raise when
        there is none.
        """
        if self._onWriteError is None:
            raise
        # The batch may be partly on the wire: the connection cannot go on past that gap, so it is never dropped
        # in silence but ends (the owner's callback disconnects, and the client recovers).
        failure = Failure()
        self.failed = True
        self.stop()
        self._onWriteError(failure)

    def stop(self) -> None:
        """Drop whatever is queued and write nothing more (the connection is over)."""
        self._unschedule()
        self._head = self._rest = None
        self.size = 0
        self.stopped = True

    # IPushProducer

    def pauseProducing(self) -> None:
        self.paused = True
        self._unschedule()

    def resumeProducing(self) -> None:
        self.paused = False
        if self._head is not None:
            self._schedule()

    def stopProducing(self) -> None:
        self.stop()
