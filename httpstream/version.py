# -*- test-case-name: tests.test_cli -*-
"""The version line that ``httpstream version`` and ``twistd httpstream --version`` print."""

from __future__ import annotations

import platform

from httpstream import __version__
__all__ = ["versionText"]


def versionText() -> str:
    """httpstream's version (C{httpstream.__version__}, the one source the wheel's metadata also reads) and its
    runtime's."""
    from twisted import __version__ as twistedVersion

    return f"httpstream v{__version__} (Python {platform.python_version()}, Twisted {twistedVersion})"
