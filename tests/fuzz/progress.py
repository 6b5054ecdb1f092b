"""
Progress of a long fuzz run: with C{FUZZ_PROGRESS=<file>} in the environment, each test's count of inputs run is
appended to that file every 1,000 inputs (hypothesis prints its statistics only once a test has finished).
"""

from __future__ import annotations

import os
import time
from collections import Counter

_path = os.environ.get("FUZZ_PROGRESS")
_counts: Counter[str] = Counter()


def tick(test: str) -> None:
    """One more input run by C{test}."""
    _counts[test] += 1
    if _path and _counts[test] % 1000 == 0:
        with open(_path, "a") as f:
            f.write(f"{time.strftime('%H:%M:%S')} {test} {_counts[test]}\n")
