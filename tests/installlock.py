"""
One installer at a time: the suite runs in several pytest-xdist workers, and two workers must not run ``npm ci``
in the same directory, or apt-get, at once (npm would remove what the other is writing; dpkg takes a lock and the
second would fail). A test that installs something takes this lock and checks again, under it, whether the work
is still to do.
"""

from __future__ import annotations

import fcntl
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def installing(what: str) -> Iterator[None]:
    """Hold the machine-wide lock named C{what} (a file in the temporary directory) for the block."""
    path = Path(tempfile.gettempdir()) / f"httpstream-tests-{what}.lock"
    with path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
