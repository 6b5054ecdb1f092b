# -*- test-case-name: tests.engines.test_redis_cluster -*-
"""
Redis Cluster's key space: the hash slot of a key (CRC16 of its hash tag, as the cluster specification defines
it), the redirections a master answers (MOVED, ASK), and the slot map read from CLUSTER SLOTS.
"""

from __future__ import annotations

import re
from typing import Any, Optional

import attrs

__all__ = ["SLOTS", "Redirection", "SlotRange", "keySlot", "readClusterSlots", "readRedirection"]

SLOTS = 16384


def _table() -> list[int]:
    # CRC-16/XMODEM (polynomial 0x1021, no reflection, initial 0), one entry per byte value.
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return table


_CRC16 = _table()


def crc16(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC16[(crc >> 8) ^ byte]
    return crc


def keySlot(key: bytes) -> int:
    """
    The slot of C{key}: the CRC16 of its hash tag (what is between the first C{{} and the next C{}}, when not
    empty) or of the whole key, modulo 16384.
    """
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    return crc16(key) & (SLOTS - 1)


@attrs.frozen
class Redirection:
    """A master's answer that another serves the slot: for good (MOVED), or for one command (ASK, migrating)."""

    kind: str  # "MOVED" or "ASK"
    slot: int
    host: str
    port: int


_REDIRECTION = re.compile(r"(MOVED|ASK) (\d+) (\S*):(\d+)")


def readRedirection(message: str) -> Optional[Redirection]:
    """The redirection in an error reply's text (C{MOVED 3999 127.0.0.1:6381}), or None."""
    match = _REDIRECTION.search(message)
    if match is None:
        return None
    host = match.group(3).strip("[]")
    return Redirection(match.group(1), int(match.group(2)), host, int(match.group(4)))


@attrs.frozen
class SlotRange:
    """Slots C{start} to C{end} (inclusive) served by the master at C{host}:C{port}."""

    start: int
    end: int
    host: str
    port: int


def readClusterSlots(reply: Any, defaultHost: str) -> list[SlotRange]:
    """
    Read a CLUSTER SLOTS reply: C{[[start, end, [host, port, id, ...], replicas...], ...]}. A master announced
    without a host (an empty or C{?} endpoint) is on the host asked, C{defaultHost}.

    @raise ValueError: a reply of another shape.
    """
    if not isinstance(reply, list):
        raise ValueError("CLUSTER SLOTS: not a list")
    ranges = []
    for entry in reply:
        if not isinstance(entry, list) or len(entry) < 3 or not isinstance(entry[2], list) or len(entry[2]) < 2:
            raise ValueError(f"CLUSTER SLOTS: unexpected entry {entry!r}")
        start, end = int(entry[0]), int(entry[1])
        rawHost, port = entry[2][0], int(entry[2][1])
        host = rawHost.decode() if isinstance(rawHost, bytes) else str(rawHost)
        if host in ("", "?"):
            host = defaultHost
        if not 0 <= start <= end < SLOTS:
            raise ValueError(f"CLUSTER SLOTS: bad range {start}-{end}")
        ranges.append(SlotRange(start, end, host, port))
    return ranges
