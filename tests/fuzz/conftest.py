"""
Hypothesis profiles of the fuzz suite (tests/fuzz): every test here drives one external entry point in process.

``ci`` (the default, part of ``make test``) keeps the suite to seconds; ``make fuzz`` runs ``long``: at least
100,000 inputs per entry point. Fuzz tests leave ``max_examples`` to the profile (no ``@settings(max_examples=)``),
and a failing input the long run finds is added to its test as an explicit ``@example``.

A long run can be watched: with ``HTTPSTREAM_FUZZ_PROGRESS=<directory>`` each test of the client entry points
writes its example count there every 1,000 examples (tests/fuzz/harness.py ``progress``).
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

_common = dict(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    print_blob=True,
)
# The ci budget is hypothesis's default: the profile is global, and the property tests outside tests/fuzz take it too.
settings.register_profile("ci", max_examples=100, derandomize=True, **_common)
settings.register_profile("long", max_examples=100_000, **_common)
settings.load_profile("ci")
