"""
The in-place parsing channel against Twisted's own: the same bytes, cut into reads every which way, answered
at once or later, must get the same responses byte for byte, and the channel must hold back the socket the same way.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web import server
from twisted.web.http import HTTPChannel
from twisted.web.resource import Resource

from httpstream.web.lineparsing import InPlaceLineChannel


class Echo(Resource):
    """Answers with the method, path, a header and the body; C{/later} only when the test says so."""

    isLeaf = True

    def __init__(self) -> None:
        Resource.__init__(self)
        self.waiting: list[server.Request] = []

    def render(self, request: server.Request) -> bytes | int:
        assert request.content is not None
        body = request.content.read()
        request.setHeader(b"content-type", b"text/plain")
        text = b"%s %s %s [%s]" % (request.method, request.path, request.getHeader(b"x-n") or b"-", body)
        if request.path == b"/later":
            request.setHeader(b"x-text", text)
            self.waiting.append(request)
            return server.NOT_DONE_YET
        return text

    def release(self) -> int:
        """Finish every request left waiting; how many there were."""
        waiting, self.waiting = self.waiting, []
        for request in waiting:
            request.write(request.responseHeaders.getRawHeaders(b"x-text", [b""])[0])
            request.finish()
        return len(waiting)


def request(n: int, path: bytes = b"/echo", body: bytes = b"", chunked: bool = False, close: bool = False) -> bytes:
    head = b"POST %s HTTP/1.1\r\nHost: example\r\nX-N: %d\r\n" % (path, n)
    if close:
        head += b"Connection: close\r\n"
    if chunked:
        half = len(body) // 2
        parts = [body[:half], body[half:]]
        return head + b"Transfer-Encoding: chunked\r\n\r\n" + b"".join(
            b"%x\r\n%s\r\n" % (len(p), p) for p in parts if p
        ) + b"0\r\n\r\n"
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


PIPELINE = b"".join(
    [
        request(1, body=b'{"a":1}'),
        request(2, b"/later", b"x" * 300),
        request(3, body=b"line\r\nbreaks\r\n\r\ninside"),
        request(4, chunked=True, body=b"0123456789abcdef"),
        request(5, b"/later", b""),
        request(6, body=b"y" * 5000),
        request(7, b"/later", b"z", close=True),
        request(8, body=b"after close: ignored"),
    ]
)


class Run:
    """One channel of C{kind} serving L{Echo} over a StringTransport."""

    def __init__(self, kind: type[HTTPChannel]) -> None:
        self.echo = Echo()
        site = server.Site(self.echo, reactor=Clock())
        site.protocol = kind  # type: ignore[assignment]
        self.channel: Any = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        self.transport = StringTransport()
        self.channel.makeConnection(self.transport)

    def feed(self, data: bytes, cuts: Callable[[bytes], list[bytes]]) -> bytes:
        """Send C{data} in the reads C{cuts} makes of it, releasing the waiting requests between reads and after."""
        for read in cuts(data):
            if self.transport.disconnecting:
                break
            self.channel.dataReceived(read)
            self.echo.release()
        while self.echo.release():
            pass
        return self.transport.value()


def whole(data: bytes) -> list[bytes]:
    return [data]


def byteByByte(data: bytes) -> list[bytes]:
    return [data[i:i + 1] for i in range(len(data))]


def every(size: int) -> Callable[[bytes], list[bytes]]:
    return lambda data: [data[i:i + size] for i in range(0, len(data), size)]


def normalized(output: bytes) -> bytes:
    # Each response carries the time it was made: the only difference allowed.
    return b"\r\n".join(line for line in output.split(b"\r\n") if not line.startswith(b"Date: "))


class SameAsTwistedTests(SynchronousTestCase):
    def assertSame(self, data: bytes, cuts: Callable[[bytes], list[bytes]]) -> bytes:
        theirs = Run(HTTPChannel).feed(data, cuts)
        ours = Run(InPlaceLineChannel).feed(data, cuts)
        self.assertEqual(normalized(ours), normalized(theirs))
        return ours

    def test_pipelinedWhole(self) -> None:
        output = self.assertSame(PIPELINE, whole)
        # Every request up to the one that closes the connection was answered, in order.
        self.assertEqual(output.count(b"HTTP/1.1 200 OK"), 7)
        self.assertIn(b"POST /later 7 [z]", output)
        self.assertNotIn(b"after close", output)
        self.assertLess(output.index(b"POST /echo 1"), output.index(b"POST /later 2"))
        self.assertLess(output.index(b"POST /later 2"), output.index(b"POST /echo 3"))

    def test_pipelinedByteByByte(self) -> None:
        self.assertSame(PIPELINE, byteByByte)

    def test_pipelinedOddReads(self) -> None:
        for size in (2, 3, 7, 64, 299, 1000, 4096):
            self.assertSame(PIPELINE, every(size))

    def test_bodiesAnsweredLaterWhileMoreArrives(self) -> None:
        # The requests are answered only after the next read: the pipelined bytes wait in the channel meanwhile.
        data = b"".join(request(n, b"/later", b"%d" % n) for n in range(40))
        for cuts in (whole, every(50), every(333)):
            run = Run(InPlaceLineChannel)
            for read in cuts(data):
                run.channel.dataReceived(read)
                self.assertLessEqual(len(run.echo.waiting), 1)  # one at a time, as HTTP/1.1 wants
                run.echo.release()
            while run.echo.release():
                pass
            output = run.transport.value()
            self.assertEqual(output.count(b"200 OK"), 40)
            self.assertEqual(normalized(output), normalized(Run(HTTPChannel).feed(data, cuts)))

    def test_badRequests(self) -> None:
        for bad in (
            b"NONSENSE\r\n\r\n",
            b"POST /echo HTTP/1.1\r\nContent-Length: x\r\n\r\n",
            b"POST /echo HTTP/1.1\r\nno colon\r\n\r\n",
            b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"POST /echo HTTP/1.1\r\nX-Long: " + b"a" * 20000 + b"\r\n\r\n",
            b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n",
        ):
            for cuts in (whole, every(100)):
                output = self.assertSame(request(1) + bad + request(2), cuts)
                self.assertNotIn(b"POST /echo 2", output)

    def test_holdsBackTheSocketWhileAnswering(self) -> None:
        # Past 16 KiB of pipelined bytes behind a request being answered, the channel stops reading its socket,
        # as Twisted's does, and reads again once the response is done.
        run = Run(InPlaceLineChannel)
        run.channel.dataReceived(request(1, b"/later") + request(2, body=b"q" * 10000))
        self.assertEqual(run.transport.producerState, "producing")
        run.channel.dataReceived(request(3, body=b"q" * 10000))
        self.assertEqual(run.transport.producerState, "paused")
        run.echo.release()
        self.assertEqual(run.transport.producerState, "producing")
        self.assertEqual(run.transport.value().count(b"200 OK"), 3)

    def test_clearLineBuffer(self) -> None:
        run = Run(InPlaceLineChannel)
        run.channel.dataReceived(request(1, b"/later") + b"GET /next")
        self.assertEqual(run.channel.clearLineBuffer(), b"GET /next")
        self.assertEqual(run.channel.clearLineBuffer(), b"")


def test_everyTwoWayCut() -> None:
    """Every place a two-read split can fall in a short pipeline gives Twisted's answer."""
    data = request(1, body=b"ab") + request(2, b"/later", b"cd") + request(3, chunked=True, body=b"efgh")
    tests = SameAsTwistedTests()
    for cut in range(1, len(data)):
        tests.assertSame(data, lambda d, cut=cut: [d[:cut], d[cut:]])  # type: ignore[misc]


def test_chunkedBodyThenMoreWhileAnswering() -> None:
    """
    What followed a chunked body in its read is parsed before what arrives while that request is answered (the
    decoder hands it back; it once went behind the later bytes, which garbled the next request into a 400).
    """
    first = request(1, b"/later", b"abcdefgh", chunked=True)
    data = first + request(2, body=b"second") + request(3, body=b"third")
    for cut in range(len(first) + 1, len(data)):
        outputs = []
        for kind in (HTTPChannel, InPlaceLineChannel):
            run = Run(kind)
            run.channel.dataReceived(data[:cut])
            run.channel.dataReceived(data[cut:])  # request 1 is still being answered
            while run.echo.release():
                pass
            outputs.append(normalized(run.transport.value()))
        theirs, ours = outputs
        assert ours == theirs, cut
        assert b"POST /echo 3 [third]" in ours


def test_holdsBackTheSocketWhileTheResponseWaitsToo() -> None:
    """
    Pipelined bytes behind a request whose response cannot be sent (the peer does not read: the transport paused
    the channel) are bounded too: past 16 KiB the socket is no longer read (Twisted's own channel then read on,
    without bound), and it is read again once the response is done and sent.
    """
    run = Run(InPlaceLineChannel)
    run.channel.dataReceived(request(1, b"/later"))
    run.channel.pauseProducing()  # what the transport does when its buffer is full
    sent = 1
    while run.transport.producerState == "producing" and sent < 200:
        sent += 1
        run.channel.dataReceived(request(sent, body=b"q" * 1000))
    assert run.transport.producerState == "paused"
    assert len(run.channel._received) - run.channel._at < 16 * 1024 + 2000
    run.echo.release()
    run.channel.resumeProducing()  # the peer read: the buffer drained
    assert run.transport.producerState == "producing"
    while run.echo.release():
        pass
    assert run.transport.value().count(b"200 OK") == sent
