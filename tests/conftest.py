"""Shared test settings: Hypothesis profiles.

HYPOTHESIS_PROFILE picks one: "ci" (the default, fast enough for every run),
"nightly" (10,000 examples per property, for a long run) or "asan" (few
examples, for the sanitizer build).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=150, stateful_step_count=60, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("nightly", max_examples=10_000, stateful_step_count=100,
                          deadline=None, suppress_health_check=[HealthCheck.too_slow])
# For the run against the sanitizer build (tests/test_sanitized.py), which is
# several times slower: the same properties, fewer examples.
settings.register_profile("asan", max_examples=20, stateful_step_count=30, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
