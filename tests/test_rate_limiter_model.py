"""Hypothesis lockstep: resil.RateLimiter (C, rs_gcra) against the exact
fraction model in tests/model/gcra.py, on one VirtualClock.

Rates are fractions with small denominators, so the C side takes them
exactly; time steps are whole nanoseconds, which the VirtualClock keeps
exactly. Every decision, every retry_after and the counts must agree.
"""

from __future__ import annotations

from fractions import Fraction

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import resil

try:  # pytest's default "prepend" import mode puts tests/ on sys.path
    from model.gcra import GcraModel
except ModuleNotFoundError:  # pragma: no cover - tests/ made a package
    from tests.model.gcra import GcraModel  # type: ignore[no-redef]

KEYS = st.sampled_from([None, None, 0, 1, 2, 3, "a", (1, 2)])


class LimiterMachine(RuleBasedStateMachine):
    @initialize(num=st.integers(1, 40), den=st.integers(1, 7),
                per_ns=st.sampled_from([1, 7, 1000, 10**6, 10**9, 3 * 10**9]),
                burst=st.integers(1, 12), max_keys=st.integers(1, 4))
    def setup(self, num: int, den: int, per_ns: int, burst: int, max_keys: int) -> None:
        rate = Fraction(num, den)
        self.clock = resil.VirtualClock()
        self.now = 0
        self.limiter = resil.RateLimiter(num / den, per=per_ns / 1e9, burst=burst,
                                         max_keys=max_keys, clock=self.clock)
        self.model = GcraModel(rate, per_ns, burst, max_keys)
        self.burst = burst
        self.per_ns = per_ns

    @rule(frac=st.fractions(0, 3), tiny=st.integers(0, 3))
    def advance(self, frac: Fraction, tiny: int) -> None:
        step = int(frac * self.per_ns) + tiny
        self.clock.set((self.now + step) / 1e9)
        self.now += step

    @rule(data=st.data(), key=KEYS)
    def try_acquire(self, data: st.DataObject, key: object) -> None:
        cost = data.draw(st.integers(1, self.burst))
        assert self.limiter.try_acquire(cost, key) == self.model.take(self.now, cost, key)

    @rule(data=st.data(), key=KEYS)
    def retry_after(self, data: st.DataObject, key: object) -> None:
        cost = data.draw(st.integers(1, self.burst))
        assert self.limiter.retry_after(cost, key=key) == self.model.wait_ns(self.now, cost, key) / 1e9

    @invariant()
    def counts_agree(self) -> None:
        if not hasattr(self, "model"):
            return
        stats = self.limiter.stats()
        assert (stats["admitted"], stats["rejected"]) == (self.model.admitted, self.model.rejected)
        assert stats["keys"] == self.model.live_keys(self.now)


LimiterMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=60, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
TestLimiterLockstep = LimiterMachine.TestCase
