"""Shared test settings: Hypothesis profiles.

HYPOTHESIS_PROFILE picks one: "ci" (the default, fast enough for every run)
or "nightly" (10,000 examples per property, for a long run).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=150, stateful_step_count=60, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("nightly", max_examples=10_000, stateful_step_count=100,
                          deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
