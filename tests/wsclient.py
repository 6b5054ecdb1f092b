"""
A minimal WebSocket client on a raw socket for the wire tests: the handshake's exact status and headers, and
frames (opcode, payload, close code and reason) as they are on the wire.
"""

from __future__ import annotations

import base64
import os
import socket
import struct
from typing import Optional

TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA


class Frame:
    def __init__(self, opcode: int, payload: bytes, rsv1: bool = False) -> None:
        self.opcode = opcode
        self.payload = payload
        self.rsv1 = rsv1  # set: a permessage-deflate compressed message (RFC 7692)

    @property
    def closeCode(self) -> int:
        return struct.unpack("!H", self.payload[:2])[0]

    @property
    def closeReason(self) -> str:
        return self.payload[2:].decode("utf-8")

    def __repr__(self) -> str:
        return f"Frame({self.opcode}, {self.payload!r})"


class WebSocket:
    def __init__(self, port: int, path: str = "/connection/websocket", headers: Optional[dict[str, str]] = None,
                 timeout: float = 10.0, receiveBuffer: int = 0) -> None:
        """
        @param receiveBuffer: a small C{SO_RCVBUF} (set before connecting, so the TCP window stays small) makes a
            reader that stops reading push back on the server soon, as a slow peer across a network does.
        """
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receiveBuffer:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receiveBuffer)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: 127.0.0.1:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
        ]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self._buffer = b""
        head = self._readUntil(b"\r\n\r\n").decode("latin-1").split("\r\n")
        self.status = int(head[0].split()[1])
        self.headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("connection closed")
        self._buffer += data

    def _readUntil(self, marker: bytes) -> bytes:
        while marker not in self._buffer:
            self._fill()
        head, _, self._buffer = self._buffer.partition(marker)
        return head

    def _read(self, n: int) -> bytes:
        while len(self._buffer) < n:
            self._fill()
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def send(self, payload: bytes, opcode: int = TEXT, fin: bool = True, rsv1: bool = False) -> None:
        """
        One masked frame; C{fin=False} starts (or continues, with opcode 0) a fragmented message; C{rsv1} marks
        its payload as compressed (permessage-deflate).
        """
        mask = os.urandom(4)
        header = bytes([(0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode])
        n = len(payload)
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", n)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def sendClose(self, code: int = 1000) -> None:
        self.send(struct.pack("!H", code), CLOSE)

    def recv(self) -> Frame:
        """The next frame (control frames included; fragments are not used by the server)."""
        first, second = self._read(2)
        n = second & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read(8))[0]
        return Frame(first & 0x0F, self._read(n), bool(first & 0x40))

    def close(self) -> None:
        self.sock.close()
