"""
Nothing sent to a WebSocket client is lost on the way out (issue 14, P0 and P1), on real sockets against a real
server process with Centrifugo's default limits: large publications, large batches and recovery replies arrive;
a peer that stalls and resumes gets everything; a batch is split into WebSocket messages no larger than
C{websocket_write_batch_size}, each holding whole protocol messages; odd disconnect codes still close the socket
with a valid close code.
"""

from __future__ import annotations

import struct
import time
from typing import Any, Iterator

import jwt
import orjson
import pytest
import requests

from httpstream.protocol import client_pb2
from httpstream.protocol.framing import split_varint, varint_delimit
from tests.serverprocess import ServerProcess
from tests.wire import connectStream
from tests.wsclient import BINARY, CLOSE, PING, TEXT, WebSocket

KEY = "delivery-api-key"
SECRET = "test-secret-0123456789abcdef0123456789"  # serverprocess.BASE_CONFIG's
BATCH_SIZE = 65536  # websocket_write_batch_size's default
KIB = b"x" * 1000  # with its quotes and the envelope, a publication of a little over 1 KiB on the wire
WAIT = 40.0  # seconds, for a reply or the next publications
# About 3 MB for a reader that stops reading: more than the kernel's socket buffers take, so the server's writer
# is paused and batches up what comes meanwhile (the messages over 60 KB it prints).
STALLED_TOTAL = 3000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    overrides = {
        "api_key": KEY,
        # Room for what a stalled reader misses while the kernel's buffers are full (see the stalled test).
        "client_queue_max_size": 16 << 20,
        "allowed_origins": ["https://*.example.com"],
        "namespaces": [
            {"name": "rec", "history_size": 1000, "history_ttl": "300s", "force_recovery": True,
             "allow_subscribe_for_client": True, "allow_subscribe_for_anonymous": True},
        ],
    }
    with ServerProcess(tmp_path_factory.mktemp("wsdelivery"), overrides) as process:
        yield process


def api(server: ServerProcess, method: str, body: dict[str, Any]) -> dict[str, Any]:
    response = requests.post(f"{server.url}/api/{method}", json=body, headers={"X-API-Key": KEY}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


class Subscriber:
    """A raw WebSocket client (JSON or Protobuf) that reads replies and pushes, answering pings."""

    def __init__(self, server: ServerProcess, protobuf: bool = False, user: str = "", **options: Any) -> None:
        path = "/connection/websocket" + ("?cf_protocol=protobuf" if protobuf else "")
        self.ws = WebSocket(server.port, path, timeout=30, **options)
        assert self.ws.status == 101
        self.protobuf = protobuf
        self.frames: list[bytes] = []  # every data message's payload, as received
        self.pending: list[Any] = []
        self.nextID = 1
        connect: dict[str, Any] = {"token": jwt.encode({"sub": user}, SECRET, algorithm="HS256")} if user else {}
        self.connectResult = self.command("connect", connect)

    def send(self, method: str, body: dict[str, Any]) -> int:
        commandID, self.nextID = self.nextID, self.nextID + 1
        if self.protobuf:
            command = client_pb2.Command(id=commandID, **{method: body})
            self.ws.send(varint_delimit([command.SerializeToString()]), BINARY)
        else:
            self.ws.send(orjson.dumps({"id": commandID, method: body}))
        return commandID

    def command(self, method: str, body: dict[str, Any]) -> Any:
        """Send a command and return its reply's result (pushes that come before it stay pending)."""
        message = self.reply(self.send(method, body))
        assert not self._has(message, "error"), message
        return message[method] if not self.protobuf else getattr(message, method)

    def reply(self, commandID: int) -> Any:
        """The reply to command C{commandID}, once it comes (pushes that come before it stay pending)."""
        deadline = time.monotonic() + WAIT
        while True:
            for index, message in enumerate(self.pending):
                if self._id(message) == commandID:
                    del self.pending[index]
                    return message
            self._read(deadline)

    def _id(self, message: Any) -> int:
        return message.id if self.protobuf else message.get("id", 0)

    def _has(self, message: Any, field: str) -> bool:
        return message.HasField(field) if self.protobuf else field in message

    def _read(self, deadline: float) -> None:
        # Server pings keep a connection busy forever: a wait is bounded by a deadline, not by the socket timeout.
        assert time.monotonic() < deadline, f"nothing more after {WAIT} s; pending {self.pending!r:.300}"
        frame = self.ws.recv()
        if frame.opcode == PING:
            return
        assert frame.opcode in (TEXT, BINARY), frame
        self.frames.append(frame.payload)
        if self.protobuf:
            for raw in split_varint(frame.payload, 1 << 24):  # raises unless the frame holds whole messages
                reply = client_pb2.Reply()
                reply.ParseFromString(raw)
                self._keep(reply)
        else:
            for line in frame.payload.split(b"\n"):
                self._keep(orjson.loads(line))

    def _keep(self, message: Any) -> None:
        if self.protobuf:
            if message.ByteSize() == 0:  # a ping
                self.ws.send(varint_delimit([b""]), BINARY)
                return
        elif message == {}:
            self.ws.send(b"{}")
            return
        self.pending.append(message)

    def publications(self, count: int) -> list[bytes]:
        """The data of the next C{count} publication pushes, in arrival order."""
        out: list[bytes] = []
        deadline = time.monotonic() + WAIT
        while len(out) < count:
            while not self.pending:
                self._read(deadline)
            message = self.pending.pop(0)
            if self.protobuf:
                assert message.push.HasField("pub"), message
                out.append(message.push.pub.data)
            else:
                out.append(orjson.dumps(message["push"]["pub"]["data"]))
        return out

    def close(self) -> None:
        self.ws.close()


def assertFramesWithinBatchSize(subscriber: Subscriber) -> None:
    """Each WebSocket message is at most the batch size, unless it holds a single larger protocol message."""
    for payload in subscriber.frames:
        if len(payload) <= BATCH_SIZE:
            continue
        count = len(split_varint(payload, 1 << 24)) if subscriber.protobuf else payload.count(b"\n") + 1
        assert count == 1, (len(payload), count)


@pytest.mark.parametrize("protobuf", [False, True], ids=["json", "protobuf"])
def test_largePublicationArrives(server: ServerProcess, protobuf: bool) -> None:
    """A 70 KB publication (past the 64 KiB inbound limit) reaches a subscriber, alone in its message."""
    subscriber = Subscriber(server, protobuf)
    subscriber.command("subscribe", {"channel": "big"})
    data = orjson.dumps({"blob": "y" * 70_000})
    assert api(server, "publish", {"channel": "big", "data": orjson.loads(data)}) == {"result": {}}
    assert subscriber.publications(1) == [data]
    assert len(subscriber.frames[-1]) > 70_000
    assertFramesWithinBatchSize(subscriber)
    subscriber.close()


@pytest.mark.parametrize("protobuf", [False, True], ids=["json", "protobuf"])
def test_batchOfPublicationsArrivesInOrder(server: ServerProcess, protobuf: bool) -> None:
    """/api/batch of 100 x 1 KiB publications: all 100 arrive, in order, in messages within the batch size."""
    subscriber = Subscriber(server, protobuf)
    channel = f"batch-{int(protobuf)}"
    subscriber.command("subscribe", {"channel": channel})
    commands = [{"publish": {"channel": channel, "data": {"n": n, "pad": KIB.decode()}}} for n in range(100)]
    reply = api(server, "batch", {"commands": commands})
    assert reply["replies"] == [{"publish": {}}] * 100
    got = [orjson.loads(data)["n"] for data in subscriber.publications(100)]
    assert got == list(range(100))
    print(f"\n100 x 1 KiB in {len(subscriber.frames)} WebSocket messages, "
          f"largest {max(map(len, subscriber.frames))} bytes")
    assertFramesWithinBatchSize(subscriber)
    subscriber.close()


def test_stalledReaderResumesAndGetsEverything(server: ServerProcess) -> None:
    """
    A reader that stops reading for ~10 s (the server's writer is paused, its queue grows within
    client_queue_max_size) and then reads again receives every publication, in order.
    """
    subscriber = Subscriber(server, receiveBuffer=4096)
    subscriber.command("subscribe", {"channel": "stall"})
    step = 20  # one API batch: one flush of ~21 KB, one WebSocket message, while the peer reads
    total, sent, started = STALLED_TOTAL, 0, time.monotonic()
    while sent < total:
        commands = [{"publish": {"channel": "stall", "data": {"n": n, "pad": KIB.decode()}}}
                    for n in range(sent, sent + step)]
        api(server, "batch", {"commands": commands})
        sent += step
        time.sleep(10 / (total / step))
    print(f"\npublished {total} x 1 KiB over {time.monotonic() - started:.1f} s without reading")
    got = [orjson.loads(data)["n"] for data in subscriber.publications(total)]
    assert got == list(range(total))
    sizes = sorted(map(len, subscriber.frames))
    print(f"read them back in {len(sizes)} WebSocket messages, largest {sizes[-1]} bytes, "
          f"{sum(1 for size in sizes if size > 60_000)} over 60 KB")
    assertFramesWithinBatchSize(subscriber)
    subscriber.close()


@pytest.mark.parametrize("protobuf", [False, True], ids=["json", "protobuf"])
def test_recoveryReplyOver64KiBArrives(server: ServerProcess, protobuf: bool) -> None:
    """A subscribe reply recovering 150 missed 1 KiB publications (one message over 150 KB) arrives whole."""
    channel = f"rec:recover-{int(protobuf)}"
    first = Subscriber(server, protobuf)
    result = first.command("subscribe", {"channel": channel})
    epoch = result.epoch if protobuf else result["epoch"]
    offset = (result.offset if protobuf else result.get("offset", 0))
    first.close()
    commands = [{"publish": {"channel": channel, "data": {"n": n, "pad": KIB.decode()}}} for n in range(150)]
    api(server, "batch", {"commands": commands})
    second = Subscriber(server, protobuf)
    recovered = second.command("subscribe", {"channel": channel, "recover": True, "epoch": epoch, "offset": offset})
    if protobuf:
        assert recovered.recovered
        numbers = [orjson.loads(pub.data)["n"] for pub in recovered.publications]
    else:
        assert recovered["recovered"] is True
        numbers = [pub["data"]["n"] for pub in recovered["publications"]]
    assert numbers == list(range(150))
    assert max(map(len, second.frames)) > 150_000
    assertFramesWithinBatchSize(second)
    second.close()


def publishOfSize(size: int) -> bytes:
    head, tail = b'{"id":1000,"publish":{"channel":"limit","data":"', b'"}}'
    return head + b"y" * (size - len(head) - len(tail)) + tail


def test_clientMessageLimit(server: ServerProcess) -> None:
    """The inbound limit (65536 by default) still holds for what a client sends: one byte over closes with 1009."""
    subscriber = Subscriber(server)
    subscriber.ws.send(publishOfSize(65536))
    assert subscriber.reply(1000) == {"id": 1000, "publish": {}}
    subscriber.close()
    over = Subscriber(server)
    over.ws.send(publishOfSize(65537))
    frame = over.ws.recv()
    while frame.opcode != CLOSE:
        frame = over.ws.recv()
    assert frame.closeCode == 1009
    over.close()


def test_fragmentedMessageOverLimitCloses1009(server: ServerProcess) -> None:
    """The limit is on the whole message: fragments each under it but together over it also close with 1009."""
    subscriber = Subscriber(server)
    payload = publishOfSize(80_000)
    subscriber.ws.send(payload[:40_000], TEXT, fin=False)
    subscriber.ws.send(payload[40_000:], 0x0, fin=True)
    frame = subscriber.ws.recv()
    while frame.opcode != CLOSE:
        frame = subscriber.ws.recv()
    assert frame.closeCode == 1009
    subscriber.close()


def validCloseCode(code: int) -> bool:
    return code == 1000 or 3000 <= code <= 4999


@pytest.mark.parametrize("code", [70000, 999, 1005, -5, 5000])
def test_oddDisconnectCodeClosesWithValidCode(server: ServerProcess, code: int) -> None:
    """
    /api/disconnect with a code a close frame cannot carry: if the API takes it, the connection still ends
    with a close frame carrying a valid code and the socket closes (no zombie left open); if the API refuses
    it, the connection stays served.
    """
    user = f"odd-{code}"
    subscriber = Subscriber(server, user=user)
    reply = api(server, "disconnect", {"user": user, "disconnect": {"code": code, "reason": "odd"}})
    if "error" in reply:
        assert subscriber.command("subscribe", {"channel": f"alive{code}"}) is not None
        subscriber.close()
        return
    frame = subscriber.ws.recv()
    while frame.opcode != CLOSE:
        frame = subscriber.ws.recv()
    assert validCloseCode(frame.closeCode), frame.closeCode
    subscriber.ws.sendClose(frame.closeCode)
    # The server ends the TCP connection after the closing handshake.
    subscriber.ws.sock.settimeout(10)
    with pytest.raises((EOFError, ConnectionResetError)):
        while True:
            subscriber.ws.recv()
    subscriber.close()


def test_originNullRefused403(server: ServerProcess) -> None:
    """Origin: null (a sandboxed frame or a file: page) when null is not allowed: 403, like any other origin."""
    ws = WebSocket(server.port, headers={"Origin": "null"})
    assert ws.status == 403
    ws.close()


def test_writeAfterPeerClosedIsNoTraceback(server: ServerProcess) -> None:
    """
    A client that sends a command and its close frame together: the reply is flushed after autobahn has begun
    the closing handshake. That write is a no-op, not an exception logged with a traceback (seen in fuzzing).
    """
    before = len(server.output)
    for n in range(20):
        subscriber = Subscriber(server)
        subscriber.ws.sock.sendall(
            frameBytes(orjson.dumps({"id": 50, "subscribe": {"channel": f"gone{n}"}}), TEXT)
            + frameBytes(struct.pack("!H", 1000), CLOSE)
        )
        frame = subscriber.ws.recv()
        while frame.opcode != CLOSE:
            frame = subscriber.ws.recv()
        subscriber.close()
    time.sleep(1)
    output = server.output[before:]
    for sign in ("Traceback (most recent call last)", "Unhandled error", "#error]", "#critical]"):
        assert sign not in output, output


def frameBytes(payload: bytes, opcode: int) -> bytes:
    """One masked client frame (mask of zeros: the payload as it is), to send several in one write."""
    assert len(payload) < 126
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + b"\0\0\0\0" + payload


@pytest.mark.parametrize("code", [70000, -5, 2**32])
def test_oddDisconnectCodeEndsHttpStream(server: ServerProcess, code: int) -> None:
    """
    The same on http_stream (Protobuf, whose code is a uint32): the stream gets a Disconnect push with a code it
    can carry (the code itself, or 3011 when out of range) and ends, unless the API refused the code.
    """
    user = f"odd-stream-{code}"
    stream, _ = connectStream(server.port, protobuf=True, token=jwt.encode({"sub": user}, SECRET, algorithm="HS256"))
    reply = api(server, "disconnect", {"user": user, "disconnect": {"code": code, "reason": "odd"}})
    if "error" in reply:
        # Refused: the connection is still served (not left half-closed), so a server-side subscribe reaches it.
        assert api(server, "subscribe", {"user": user, "channel": "alive"}) == {"result": {}}
        message = stream.next()
        while not message.push.HasField("subscribe"):
            message = stream.next()
        assert message.push.channel == "alive"
        stream.close()
        return
    messages = []
    while (batch := stream.messages()) is not None:
        messages += batch
    disconnects = [m.push.disconnect for m in messages if m.push.HasField("disconnect")]
    expected = code if 0 <= code < 2**32 else 3011
    assert [d.code for d in disconnects] == [expected]
    stream.close()
