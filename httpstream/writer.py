# -*- test-case-name: tests.test_writer -*-
"""
One connection's outbound queue.

Messages are queued already encoded and written as one batch per reactor turn, so a burst of publications costs
one chunk (one syscall) instead of one per message. The queue is bounded in bytes: a client that cannot keep up is
disconnected with 3008 "slow" rather than growing the server's memory. The writer is the push producer the
transport pauses while the peer does not read.
"""

from __future__ import annotations

from collections import deque
from typing import Callable, Optional

from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from zope.interface import implementer

from httpstream.interfaces import ITransport


@implementer(IPushProducer)
class Writer:
    """
    A bounded, batching queue in front of an L{ITransport}.

    @ivar size: bytes queued and not yet written.
    @ivar paused: True while the transport asked us to stop producing.
    @ivar overflowed: True once a message did not fit; the overflow callback has run (once) and only forced
        messages are queued from then on.
    """

    def __init__(
        self,
        reactor: IReactorTime,
        transport: ITransport,
        maxSize: int,
        onOverflow: Callable[[], None],
    ) -> None:
        self._reactor = reactor
        self._transport = transport
        self._maxSize = maxSize
        self._onOverflow = onOverflow
        self._queue: deque[bytes] = deque()
        self._call: Optional[IDelayedCall] = None
        self.size = 0
        self.paused = False
        self.stopped = False
        self.overflowed = False

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
        size = len(message)
        if not force and self._maxSize and self.size + size > self._maxSize:
            self.overflowed = True
            self._onOverflow()
            return False
        self._queue.append(message)
        self.size += size
        self._schedule()
        return True

    def _schedule(self) -> None:
        if self._call is None and not self.paused:
            self._call = self._reactor.callLater(0, self._flushLater)

    def _flushLater(self) -> None:
        self._call = None
        self.flush()

    def flush(self) -> None:
        """Write everything queued now, as one unit, unless the transport is paused."""
        if self._call is not None:
            self._call.cancel()
            self._call = None
        if self.paused or not self._queue or self.stopped:
            return
        messages = list(self._queue)
        self._queue.clear()
        self.size = 0
        self._transport.writeMessages(messages)

    def stop(self) -> None:
        """Drop whatever is queued and write nothing more (the connection is over)."""
        if self._call is not None:
            self._call.cancel()
            self._call = None
        self._queue.clear()
        self.size = 0
        self.stopped = True

    # IPushProducer

    def pauseProducing(self) -> None:
        self.paused = True
        if self._call is not None:
            self._call.cancel()
            self._call = None

    def resumeProducing(self) -> None:
        self.paused = False
        if self._queue:
            self._schedule()

    def stopProducing(self) -> None:
        self.stop()
