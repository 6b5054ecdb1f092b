"""
``bench.fanout --reader native``: a publish phase's deliveries read by bench/reader.c instead of Python.

The Python load generator still opens, connects and subscribes every stream, and publishes; for the phase it stops
reading the subscribers' sockets (``pause_reading``) and hands them to the reader, a C program it builds with the
machine's C compiler into bench/_output/ on first use. The reader finds each publication's ``{"t":..,"i":..}`` by a
byte search and returns the same numbers the Python streams would have put into L{Results}: latencies, the latest
delivery of each publication, each stream's count. What it does not do: parse anything else (a disconnect push
during the phase is not seen; a stream that ends is counted as ended), Protobuf (no JSON to search).

Its CPU counts as the load generator's (RUSAGE_CHILDREN once it has been waited for).
"""

from __future__ import annotations

import array
import asyncio
import os
import resource
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    from bench.fanout import Results, StreamConnection

SOURCE = Path(__file__).with_name("reader.c")
BINARY = Path(__file__).parent / "_output" / "reader"


class NativeError(Exception):
    """The native reader could not be built or run; the message says why."""


def build() -> Path:
    """The reader's binary, compiled when missing or older than its source."""
    if BINARY.exists() and BINARY.stat().st_mtime >= SOURCE.stat().st_mtime:
        return BINARY
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise NativeError("--reader native needs a C compiler (cc or gcc) to build bench/reader.c")
    BINARY.parent.mkdir(parents=True, exist_ok=True)
    built = subprocess.run([compiler, "-O2", "-o", str(BINARY), str(SOURCE)], capture_output=True, text=True)
    if built.returncode != 0:
        raise NativeError(f"building bench/reader.c failed:\n{built.stderr}")
    return BINARY


def childrenCpuSeconds() -> float:
    """User + system CPU of this process's children that have ended and been waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class NativeReader:
    """One publish phase's reading of C{streams}, from L{start} to L{finish}."""

    def __init__(
        self, streams: list[StreamConnection], expected: int, messages: int, timeout: float, gatherMs: float = 0.0,
    ) -> None:
        self.streams = streams
        self.gatherMs = gatherMs  # a pause after each poll: fewer reads, each later (latency resolution)
        self.expected = expected
        self.messages = messages
        self.timeout = timeout
        self._process: Optional[asyncio.subprocess.Process] = None
        self._out = Path(tempfile.mkstemp(prefix="httpstream-reader-", suffix=".bin")[1])
        self.cpuSeconds = 0.0  # the reader's user + system CPU, once it has ended

    async def start(self) -> None:
        """Stop reading the streams here and start the reader on them; returns once it watches them all."""
        binary = build()
        fds = []
        for stream in self.streams:
            transport = stream.transport
            if transport is None or stream.closed:
                raise NativeError("a stream ended before the publish phase")
            transport.pause_reading()
            fds.append(transport.get_extra_info("socket").fileno())
        self._process = await asyncio.create_subprocess_exec(
            str(binary), "--expected", str(self.expected), "--messages", str(self.messages),
            "--timeout", str(self.timeout), "--out", str(self._out), "--gather-ms", str(self.gatherMs),
            *map(str, fds),
            pass_fds=fds, stdout=asyncio.subprocess.PIPE,
        )
        assert self._process.stdout is not None
        line = await asyncio.wait_for(self._process.stdout.readline(), 30)
        if line.strip() != b"ready":
            raise NativeError(f"the reader did not start (it said {line!r})")

    async def finish(self, results: Results) -> None:
        """Wait for the reader's end (every delivery, or its timeout); its numbers into C{results}."""
        assert self._process is not None
        before = childrenCpuSeconds()
        try:
            code = await asyncio.wait_for(self._process.wait(), self.timeout + 10)
        except asyncio.TimeoutError:
            self._process.kill()
            await self._process.wait()
            raise NativeError("the reader outlived its own timeout") from None
        self.cpuSeconds = childrenCpuSeconds() - before
        if code != 0:
            raise NativeError(f"the reader failed (exit code {code})")
        numbers = array.array("q")
        with open(self._out, "rb") as f:
            numbers.frombytes(f.read())
        os.unlink(self._out)
        received, first, last, ended = numbers[:4]
        stored = min(received, self.expected)
        results.received = received
        results.firstDelivery, results.lastDelivery = first, last
        results.latencies = numbers[4 : 4 + stored].tolist()
        results.lastPerMessage = numbers[4 + stored : 4 + stored + self.messages].tolist()
        for stream, count in zip(self.streams, numbers[4 + stored + self.messages :]):
            stream.received = count
        if ended:
            results.ended["ended during the phase (native reader)"] = ended
        for stream in self.streams:
            if stream.transport is not None and not stream.closed:
                stream.transport.resume_reading()
