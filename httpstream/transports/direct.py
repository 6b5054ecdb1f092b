# -*- test-case-name: tests.transports.test_direct -*-
"""
The direct write, as the transports use it: L{httpstream.directwrite}, which lives below every layer so that the
Redis engine's connections use it too.
"""

from __future__ import annotations

from httpstream.directwrite import direct, unsent, writeNow

__all__ = ["writeNow", "direct", "unsent"]
