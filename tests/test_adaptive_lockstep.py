"""The C adaptive limiter (resil._resil.AdaptiveCore) and the reference model
in tests/model/adaptive.py, driven in lockstep by Hypothesis: admissions,
releases with measured or given latencies, drops, clock moves (probes of
the baseline included) and misuse give the same answers on both, and the
limit, the calls in flight and the counters agree after every step."""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import resil
from resil._resil import AdaptiveCore

try:  # pytest's default "prepend" import mode puts tests/ on sys.path
    from model import adaptive as mdl
except ImportError:  # pragma: no cover - run from the repository root
    from tests.model import adaptive as mdl  # type: ignore[no-redef]

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")


class AdaptiveMachine(RuleBasedStateMachine):
    core: AdaptiveCore
    model: mdl.AdaptiveModel

    @initialize(algorithm=st.sampled_from(mdl.ALGORITHMS), min_limit=st.integers(1, 4),
                spread=st.integers(0, 30), start=st.integers(0, 30))
    def make(self, algorithm: str, min_limit: int, spread: int, start: int) -> None:
        max_limit = min_limit + spread
        initial = min(max_limit, min_limit + start)
        self.clock = resil.VirtualClock()
        self.now = 0
        self.core = AdaptiveCore(algorithm, initial_limit=initial, min_limit=min_limit,
                                 max_limit=max_limit, clock=self.clock)
        self.model = mdl.AdaptiveModel(algorithm, initial, min_limit, max_limit)
        # (permit, model permit, start ns, released)
        self.held: list[list[Any]] = []

    @rule(n=st.integers(1, 6))
    def acquire(self, n: int) -> None:
        for _ in range(n):
            permit = self.core.try_acquire()
            expected = self.model.try_acquire()
            assert (permit is None) == (expected is None)
            if permit is not None:
                assert permit.released is False
                self.held.append([permit, expected, self.now, False])

    @rule(ns=st.one_of(st.integers(0, 50_000_000), st.integers(1, 40).map(lambda s: s * 10**9)))
    def advance(self, ns: int) -> None:
        self.clock.advance_ns(ns)
        self.now += ns

    @rule(data=st.data(), given=st.booleans(), dropped=st.booleans())
    def release(self, data: st.DataObject, given: bool, dropped: bool) -> None:
        if not self.held:
            return
        entry = self.held[data.draw(st.integers(0, len(self.held) - 1))]
        permit, expected, started, released = entry
        if released:  # a second release is refused and changes nothing
            with pytest.raises(ValueError, match="already released"):
                self.core.release(permit, dropped=dropped)
            return
        if given:
            micros = data.draw(st.integers(0, 200_000))
            self.core.release(permit, micros / 1e6, dropped=dropped)
            latency_ns = round(micros / 1e6 * 1e9)
        else:
            self.core.release(permit, dropped=dropped)
            latency_ns = self.now - started
        self.model.release(expected, self.now, latency_ns, dropped)
        entry[3] = True
        assert permit.released is True

    @rule(latencies=st.lists(st.one_of(st.just(10), st.integers(10, 13), st.integers(1, 60)),
                             min_size=1, max_size=25),
          together=st.booleans(), dropped=st.integers(0, 30))
    def calls(self, latencies: list[int], together: bool, dropped: int) -> None:
        """A batch of calls, each taking its latency in ms on the clock (the
        one at index ``dropped`` dropped), while the held ones stay in
        flight: one after another, or all admitted first and then finished
        in order of latency."""
        batch = []
        for ms in latencies:
            permit = self.core.try_acquire()
            expected = self.model.try_acquire()
            assert (permit is None) == (expected is None)
            if permit is None:
                break
            batch.append((ms, permit, expected))
            if not together:
                self._finish(batch, dropped, 0)
                batch.clear()
        batch.sort(key=lambda b: b[0])
        elapsed = 0
        for i, call in enumerate(batch):
            self._finish([call], dropped - i, elapsed)
            elapsed = call[0]

    def _finish(self, batch: list[Any], dropped: int, elapsed: int) -> None:
        ms, permit, expected = batch[0]
        self.advance((ms - elapsed) * 1_000_000)
        self.core.release(permit, dropped=dropped == 0)
        self.model.release(expected, self.now, ms * 1_000_000, dropped == 0)

    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        """A held call is cancelled: its slot comes back, nothing is sampled."""
        if not self.held:
            return
        entry = self.held[data.draw(st.integers(0, len(self.held) - 1))]
        if entry[3]:
            with pytest.raises(ValueError, match="already released"):
                self.core._discard(entry[0])
            return
        self.core._discard(entry[0])
        self.model.discard()
        entry[3] = True

    @rule()
    def foreign_permit(self) -> None:
        other = AdaptiveCore(initial_limit=1, clock=self.clock)
        permit = other.try_acquire()
        assert permit is not None
        with pytest.raises(ValueError, match="another limiter"):
            self.core.release(permit)
        with pytest.raises(TypeError, match="permit"):
            self.core.release(object())

    @invariant()
    def same_numbers(self) -> None:
        if hasattr(self, "core"):
            assert self.core.stats() == {"name": "default", **self.model.stats()}
            assert self.core.limit == self.model.limit
            assert self.core._estimate == self.model.estimate
            assert self.core.in_flight == self.model.in_flight
            assert self.model.min_limit <= self.model.estimate <= self.model.max_limit


TestAdaptiveLockstep = AdaptiveMachine.TestCase
TestAdaptiveLockstep.settings = settings(
    settings.get_profile(PROFILE), stateful_step_count=80,
    suppress_health_check=[HealthCheck.too_slow])
