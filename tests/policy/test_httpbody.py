"""
L{httpstream.policy.httpbody.readBody}: a backend's answer read whole up to a limit, in memory (a fake response
delivering chunks).
"""

from __future__ import annotations

from twisted.internet.defer import CancelledError
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import ResponseFailed
from twisted.web.http import PotentialDataLoss

from httpstream.policy.httpbody import BodyTooLarge, readBody
from tests.policy.bodyfakes import ChunkedResponse


class ReadBodyTests(SynchronousTestCase):
    def test_chunks(self) -> None:
        response = ChunkedResponse(200, [b"ab", b"", b"cd", b"e"])
        self.assertEqual(self.successResultOf(readBody(response, 5)), b"abcde")
        self.assertFalse(response.lost)

    def test_empty(self) -> None:
        self.assertEqual(self.successResultOf(readBody(ChunkedResponse(200, []), 0)), b"")

    def test_tooLarge(self) -> None:
        """
        One byte over the limit fails the read at that chunk: the connection is closed and nothing more is read,
        however much the backend would send (here 1 GiB, in chunks of 1 MiB).
        """
        chunk = b"x" * (1 << 20)
        response = ChunkedResponse(200, (chunk for _ in range(1024)))
        failure = self.failureResultOf(readBody(response, 3 * len(chunk) - 1), BodyTooLarge)
        self.assertEqual(str(failure.value), f"response larger than {3 * len(chunk) - 1} bytes")
        self.assertTrue(response.lost)
        self.assertEqual(response.delivered, 3)

    def test_dataAfterRefusal(self) -> None:
        """What a transport still delivers after the refusal is dropped, and its end changes nothing."""
        response = ChunkedResponse(200, [b"abc"])
        d = readBody(response, 2)
        self.failureResultOf(d, BodyTooLarge)
        assert response.protocol is not None
        response.protocol.dataReceived(b"more")
        response.protocol.connectionLost(ResponseFailed([]))  # type: ignore[arg-type]

    def test_cutShort(self) -> None:
        """A connection lost mid-body fails the read with its reason; one without a length that just ends is whole."""
        self.failureResultOf(readBody(ChunkedResponse(200, [b"a"], ResponseFailed([])), 10), ResponseFailed)
        self.assertEqual(self.successResultOf(readBody(ChunkedResponse(200, [b"a"], PotentialDataLoss()), 10)), b"a")

    def test_cancel(self) -> None:
        """Cancelling (a timeout) closes the connection."""
        response = ChunkedResponse(200, [b"a"], end=None)
        d = readBody(response, 10)
        self.assertNoResult(d)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertTrue(response.lost)
