"""
Tests for L{httpstream.client.writer}: one batch per reactor turn, a queue bounded in bytes, and push-producer pauses.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IPushProducer
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from httpstream.testing import FakeTransport
from httpstream.client.writer import Flusher, Writer


class WriterTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.transport = FakeTransport()
        self.overflows = 0

    def writer(self, maxSize: int = 1000) -> Writer:
        return Writer(self.clock, self.transport, maxSize, self.overflowed)

    def overflowed(self) -> None:
        self.overflows += 1

    def test_interface(self) -> None:
        self.assertTrue(verifyObject(IPushProducer, self.writer()))

    def test_oneBatchPerTurn(self) -> None:
        """
        Messages queued in the same reactor turn are written together, in order, by one writeMessages call on
        the next turn; nothing is written synchronously.
        """
        writer = self.writer()
        for message in (b"a", b"b", b"c"):
            self.assertTrue(writer.enqueue(message))
        self.assertEqual(self.transport.batches, [])
        self.clock.advance(0)
        self.assertEqual(self.transport.batches, [[b"a", b"b", b"c"]])
        self.clock.advance(0)
        self.assertEqual(len(self.transport.batches), 1)

    def test_batchPerTurn(self) -> None:
        writer = self.writer()
        writer.enqueue(b"1")
        self.clock.advance(0)
        writer.enqueue(b"2")
        writer.enqueue(b"3")
        self.clock.advance(0)
        self.assertEqual(self.transport.batches, [[b"1"], [b"2", b"3"]])

    def test_flushWritesNow(self) -> None:
        """
        flush() writes what is queued at once and cancels the pending turn (no empty or duplicate write).
        """
        writer = self.writer()
        writer.enqueue(b"x")
        writer.flush()
        self.assertEqual(self.transport.batches, [[b"x"]])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(0)
        self.assertEqual(self.transport.batches, [[b"x"]])

    def test_sizeCountsQueuedBytes(self) -> None:
        writer = self.writer()
        writer.enqueue(b"abc")
        writer.enqueue(b"de")
        self.assertEqual(writer.size, 5)
        self.clock.advance(0)
        self.assertEqual(writer.size, 0)

    def test_boundedByBytes(self) -> None:
        """
        The queue takes messages up to its limit in bytes, inclusive; one more byte calls the overflow callback
        and queues nothing.
        """
        writer = self.writer(maxSize=10)
        self.assertTrue(writer.enqueue(b"123456"))
        self.assertTrue(writer.enqueue(b"7890"))
        self.assertEqual(self.overflows, 0)
        self.assertFalse(writer.enqueue(b"!"))
        self.assertEqual(self.overflows, 1)
        self.clock.advance(0)
        self.assertEqual(self.transport.messages, [b"123456", b"7890"])

    def test_limitIsPerQueueNotPerConnection(self) -> None:
        """
        Written bytes leave the queue: a client that keeps reading never overflows.
        """
        writer = self.writer(maxSize=10)
        for _ in range(5):
            self.assertTrue(writer.enqueue(b"12345678"))
            self.clock.advance(0)
        self.assertEqual(self.overflows, 0)

    def test_overflowOnce(self) -> None:
        """
        The overflow callback runs once, and nothing after the overflow is queued, even a message that would fit:
        writing it would hide the lost one.
        """
        writer = self.writer(maxSize=10)
        writer.enqueue(b"12345678")
        self.assertFalse(writer.enqueue(b"12345678"))
        self.assertFalse(writer.enqueue(b"12345678"))
        self.assertFalse(writer.enqueue(b"1"))
        self.assertEqual(self.overflows, 1)
        self.assertTrue(writer.overflowed)
        self.clock.advance(0)
        self.assertEqual(self.transport.messages, [b"12345678"])

    def test_forcePastLimit(self) -> None:
        """
        A forced message (a Disconnect push) is queued past the limit, even after an overflow.
        """
        writer = self.writer(maxSize=4)
        writer.enqueue(b"1234")
        self.assertFalse(writer.enqueue(b"5"))
        self.assertTrue(writer.enqueue(b"last words", force=True))
        self.clock.advance(0)
        self.assertEqual(self.transport.messages, [b"1234", b"last words"])
        self.assertEqual(self.overflows, 1)

    def test_zeroMeansUnbounded(self) -> None:
        writer = self.writer(maxSize=0)
        self.assertTrue(writer.enqueue(b"x" * 100000))
        self.assertEqual(self.overflows, 0)

    def test_pauseHoldsWrites(self) -> None:
        """
        While paused nothing is written, whether queued before or after the pause; resuming writes it all as one
        batch on the next turn.
        """
        writer = self.writer()
        writer.enqueue(b"before")
        writer.pauseProducing()
        writer.enqueue(b"during")
        self.clock.advance(0)
        self.clock.advance(10)
        writer.flush()
        self.assertEqual(self.transport.batches, [])
        writer.resumeProducing()
        self.assertEqual(self.transport.batches, [])
        self.clock.advance(0)
        self.assertEqual(self.transport.batches, [[b"before", b"during"]])

    def test_finalFlushWritesEvenWhilePaused(self) -> None:
        """
        A closing connection's last words go out although its transport is paused (a direct write pauses the
        writer whenever the socket is busy for a moment, not only when the peer has stopped reading).
        """
        writer = self.writer()
        writer.enqueue(b"queued")
        writer.pauseProducing()
        writer.enqueue(b"disconnect")
        writer.flush(final=True)
        self.assertEqual(self.transport.batches, [[b"queued", b"disconnect"]])
        self.assertEqual(writer.size, 0)
        writer.stop()
        writer.flush(final=True)
        self.assertEqual(len(self.transport.batches), 1)

    def test_pausedQueueStillBounded(self) -> None:
        """
        A peer that stops reading fills the queue: the overflow callback runs (the client disconnects it as slow).
        """
        writer = self.writer(maxSize=100)
        writer.pauseProducing()
        for _ in range(10):
            writer.enqueue(b"x" * 10)
        self.assertEqual(self.overflows, 0)
        writer.enqueue(b"x")
        self.assertEqual(self.overflows, 1)

    def test_resumeWithEmptyQueue(self) -> None:
        writer = self.writer()
        writer.pauseProducing()
        writer.resumeProducing()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        writer.enqueue(b"x")
        self.clock.advance(0)
        self.assertEqual(self.transport.batches, [[b"x"]])

    def test_stopDropsQueue(self) -> None:
        """
        After stop (or stopProducing) the queue is dropped and later messages are refused without an overflow.
        """
        for stop in ("stop", "stopProducing"):
            transport = self.transport = FakeTransport()
            writer = self.writer()
            writer.enqueue(b"dropped")
            getattr(writer, stop)()
            self.assertFalse(writer.enqueue(b"late"))
            writer.flush()
            writer.resumeProducing()
            self.clock.advance(0)
            self.assertEqual(transport.batches, [], stop)
            self.assertEqual(writer.size, 0)
        self.assertEqual(self.overflows, 0)


class FlusherTests(SynchronousTestCase):
    """Many writers due in the same turn share one timer (not one heap entry per subscriber per message)."""

    def test_oneTimerForManyWriters(self) -> None:
        clock = Clock()
        flusher = Flusher(clock)
        transports = [FakeTransport() for _ in range(50)]
        writers = [Writer(clock, t, 1000, lambda: None, flusher) for t in transports]
        for writer in writers:
            writer.enqueue(b"m1")
            writer.enqueue(b"m2")
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        clock.advance(0)
        self.assertEqual([t.batches for t in transports], [[[b"m1", b"m2"]]] * 50)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_pausedAndStoppedWritersLeaveTheTurn(self) -> None:
        clock = Clock()
        flusher = Flusher(clock)
        a, b, c = FakeTransport(), FakeTransport(), FakeTransport()
        wa, wb, wc = (Writer(clock, t, 1000, lambda: None, flusher) for t in (a, b, c))
        for writer in (wa, wb, wc):
            writer.enqueue(b"x")
        wa.pauseProducing()
        wb.stop()
        clock.advance(0)
        self.assertEqual((a.batches, b.batches, c.batches), ([], [], [[b"x"]]))
        wa.resumeProducing()
        clock.advance(0)
        self.assertEqual(a.batches, [[b"x"]])

    def test_lastCancelRemovesTimer(self) -> None:
        clock = Clock()
        flusher = Flusher(clock)
        writer = Writer(clock, FakeTransport(), 1000, lambda: None, flusher)
        writer.enqueue(b"x")
        writer.stop()
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_oneFailingTransportDoesNotStopOthers(self) -> None:
        clock = Clock()
        flusher = Flusher(clock)

        class Broken(FakeTransport):
            def writeMessages(self, messages):  # type: ignore[no-untyped-def]
                raise OSError("gone")

        good = FakeTransport()
        Writer(clock, Broken(), 1000, lambda: None, flusher).enqueue(b"x")
        Writer(clock, good, 1000, lambda: None, flusher).enqueue(b"y")
        clock.advance(0)
        self.assertEqual(good.batches, [[b"y"]])
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)


class Broken(FakeTransport):
    """A transport whose writes raise (autobahn's PayloadExceededError was one such)."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts: list[list[bytes]] = []

    def writeMessages(self, messages):  # type: ignore[no-untyped-def]
        self.attempts.append(list(messages))
        raise ValueError("cannot write")


class WriteErrorTests(SynchronousTestCase):
    """A write that raises is never a silent loss: the writer stops and tells its owner, once."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.transport = Broken()
        self.errors: list[Failure] = []
        self.writer = Writer(self.clock, self.transport, 1000, lambda: None, onWriteError=self.errors.append)

    def test_reportedOnceAndStopped(self) -> None:
        self.writer.enqueue(b"a")
        self.writer.enqueue(b"b")
        self.clock.advance(0)
        self.assertEqual(self.transport.attempts, [[b"a", b"b"]])
        [failure] = self.errors
        self.assertTrue(failure.check(ValueError))
        self.assertTrue(self.writer.failed and self.writer.stopped)
        # Nothing more is accepted or tried: the owner ends the connection.
        self.assertFalse(self.writer.enqueue(b"c"))
        self.writer.flush()
        self.clock.advance(0)
        self.assertEqual(len(self.transport.attempts), 1)
        self.assertEqual(len(self.errors), 1)

    def test_directFlushReportsToo(self) -> None:
        self.writer.enqueue(b"a")
        self.writer.flush()
        self.assertEqual(len(self.errors), 1)

    def test_withoutCallbackRaises(self) -> None:
        """With no owner to tell, the error reaches the caller (the flusher logs it)."""
        writer = Writer(self.clock, self.transport, 1000, lambda: None)
        writer.enqueue(b"a")
        self.assertRaises(ValueError, writer.flush)


class OneOrMany(FakeTransport):
    """Records which of the two write methods each write came by."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, list[bytes]]] = []

    def writeMessage(self, message: bytes) -> None:
        self.calls.append(("one", [message]))

    def writeMessages(self, messages):  # type: ignore[no-untyped-def]
        self.calls.append(("many", list(messages)))


class BatchOfOneTests(SynchronousTestCase):
    """A batch of one goes to ITransport.writeMessage (from the flusher itself), a larger one to writeMessages."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.flusher = Flusher(self.clock)

    def test_flusherWritesOneMessageAlone(self) -> None:
        transports = [OneOrMany() for _ in range(3)]
        writers = [Writer(self.clock, t, 1000, lambda: None, self.flusher) for t in transports]
        writers[0].enqueue(b"a")
        writers[1].enqueue(b"b")
        writers[1].enqueue(b"c")
        writers[2].enqueue(b"d")
        self.clock.advance(0)
        self.assertEqual([t.calls for t in transports],
                         [[("one", [b"a"])], [("many", [b"b", b"c"])], [("one", [b"d"])]])
        # The writer's state is as after any flush: empty, nothing due; the next message is a new batch.
        self.assertEqual((writers[0].size, self.clock.getDelayedCalls()), (0, []))
        writers[0].enqueue(b"e")
        self.clock.advance(0)
        self.assertEqual(transports[0].calls[1:], [("one", [b"e"])])

    def test_directFlushToo(self) -> None:
        transport = OneOrMany()
        writer = Writer(self.clock, transport, 1000, lambda: None, self.flusher)
        writer.enqueue(b"a")
        writer.flush()
        writer.enqueue(b"b")
        writer.enqueue(b"c")
        writer.flush()
        self.assertEqual(transport.calls, [("one", [b"a"]), ("many", [b"b", b"c"])])

    def test_pausedWriterWritesNothingAlone(self) -> None:
        transport = OneOrMany()
        writer = Writer(self.clock, transport, 1000, lambda: None, self.flusher)
        writer.enqueue(b"a")
        # Paused between its enqueue and the turn (by another writer's write, say): still due, but held.
        writer.paused = True
        self.clock.advance(0)
        self.assertEqual(transport.calls, [])
        writer.resumeProducing()
        self.clock.advance(0)
        self.assertEqual(transport.calls, [("one", [b"a"])])

    def test_transportWithoutWriteMessage(self) -> None:
        """An ITransport written before writeMessage existed gets its batch of one through writeMessages."""

        class Older:
            protocol = "json"

            def __init__(self) -> None:
                self.batches: list[list[bytes]] = []

            def writeMessages(self, messages: Any) -> None:
                self.batches.append(list(messages))

        older = Older()
        writer = Writer(self.clock, older, 1000, lambda: None, self.flusher)  # type: ignore[arg-type]
        writer.enqueue(b"a")
        self.clock.advance(0)
        self.assertEqual(older.batches, [[b"a"]])

    def test_oneMessageWriteErrorReported(self) -> None:
        class BrokenOne(FakeTransport):
            def writeMessage(self, message: bytes) -> None:
                raise ValueError("cannot write")

        errors: list[Failure] = []
        writer = Writer(self.clock, BrokenOne(), 1000, lambda: None, self.flusher, onWriteError=errors.append)
        writer.enqueue(b"a")
        self.clock.advance(0)
        [failure] = errors
        self.assertTrue(failure.check(ValueError))
        self.assertTrue(writer.failed and writer.stopped)
        self.assertFalse(writer.enqueue(b"b"))

    def test_oneMessageWriteErrorWithoutCallbackLogged(self) -> None:
        """With no owner to tell, the flusher logs it and writes the other writers' messages."""

        class BrokenOne(FakeTransport):
            def writeMessage(self, message: bytes) -> None:
                raise OSError("gone")

        good = FakeTransport()
        Writer(self.clock, BrokenOne(), 1000, lambda: None, self.flusher).enqueue(b"x")
        Writer(self.clock, good, 1000, lambda: None, self.flusher).enqueue(b"y")
        self.clock.advance(0)
        self.assertEqual(good.batches, [[b"y"]])
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)


class Counts:
    def __init__(self) -> None:
        self.messages = 0
        self.bytes = 0


class SentCountsTests(SynchronousTestCase):
    """The writer counts what it accepted to send (the transport metrics): not what it refused."""

    def test_acceptedCounted(self) -> None:
        counts = Counts()
        overflows: list[None] = []
        writer = Writer(Clock(), FakeTransport(), 10, lambda: overflows.append(None), sent=counts)
        self.assertTrue(writer.enqueue(b"12345"))
        self.assertTrue(writer.enqueue(b"1234"))
        self.assertEqual((counts.messages, counts.bytes), (2, 9))
        self.assertFalse(writer.enqueue(b"xx"))  # past the limit: refused, not counted
        self.assertFalse(writer.enqueue(b"y"))  # after an overflow
        self.assertEqual((counts.messages, counts.bytes, len(overflows)), (2, 9, 1))
        self.assertTrue(writer.enqueue(b"last words", force=True))
        self.assertEqual((counts.messages, counts.bytes), (3, 19))
        writer.stop()
        self.assertFalse(writer.enqueue(b"z", force=True))
        self.assertEqual(counts.messages, 3)

    def test_noLimit(self) -> None:
        """maxSize 0: no limit at all."""
        counts = Counts()
        writer = Writer(Clock(), FakeTransport(), 0, lambda: None, sent=counts)
        for _ in range(100):
            self.assertTrue(writer.enqueue(b"x" * 100_000))
        self.assertEqual((counts.messages, writer.size), (100, 10_000_000))
