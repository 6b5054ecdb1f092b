# -*- test-case-name: tests.config.test_config -*-
"""
Go-style duration strings, as Centrifugo's configuration accepts them.

Centrifugo is written in Go and its duration options (``ping_interval``,
``client_stale_close_delay``, ...) take the syntax of Go's
``time.ParseDuration``: an optional sign, then one or more decimal numbers each
followed by a unit, e.g. ``"25s"``, ``"1h30m"``, ``"1.5s"``, ``"500ms"``,
``"-1s"``. ``"0"`` is the only value allowed without a unit.
"""

from __future__ import annotations

import re
from fractions import Fraction

__all__ = ["parse_duration", "format_duration"]

_NANOSECONDS_PER_UNIT = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # micro sign, as Go accepts it
    "\u03bcs": 1_000,  # Greek small letter mu, as Go accepts it
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}

# One "number + unit" element. As in Go, a unit is the run of characters up to
# the next digit or dot, so "25 s" fails on the unknown unit " s".
_ELEMENT = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]*)")

# Go's time.Duration is an int64 count of nanoseconds; larger values are errors.
_MAX_NANOSECONDS = 2**63 - 1


def parse_duration(text: str) -> float:
    """
    Parse a Go duration string into seconds.

    @param text: For example ``"25s"``, ``"1m"``, ``"1h30m"``, ``"500ms"``,
        ``"1.5s"``, ``"100us"``, ``"0"`` or ``"-1s"``.
    @return: The duration in seconds (negative for a leading ``-``).
    @raise ValueError: When C{text} is not a valid Go duration; the message
        says why, without repeating C{text}.
    """
    rest = text
    negative = False
    if rest[:1] in ("-", "+"):
        negative = rest[0] == "-"
        rest = rest[1:]
    if rest == "0":
        return 0.0
    if not rest:
        raise ValueError("empty duration")
    total = Fraction(0)
    position = 0
    while position < len(rest):
        match = _ELEMENT.match(rest, position)
        assert match is not None  # every group may be empty, so it always matches
        whole, fraction, unit = match.groups()
        if not whole and not fraction:
            raise ValueError("expected a number before the unit")
        if not unit:
            raise ValueError("missing unit (ns, us, ms, s, m or h)")
        if unit not in _NANOSECONDS_PER_UNIT:
            raise ValueError(f"unknown unit {unit!r}")
        number = Fraction(int(whole or "0"))
        if fraction:
            number += Fraction(int(fraction), 10 ** len(fraction))
        total += number * _NANOSECONDS_PER_UNIT[unit]
        position = match.end()
    if total > _MAX_NANOSECONDS:
        raise ValueError("duration out of range")
    # Go truncates to whole nanoseconds.
    nanoseconds = int(total)
    return (-nanoseconds if negative else nanoseconds) / 1e9


def format_duration(seconds: float) -> str:
    """
    Format seconds compactly for messages, e.g. C{25.0} -> ``"25s"``,
    C{0.5} -> ``"0.5s"``.
    """
    return f"{seconds:g}s"
