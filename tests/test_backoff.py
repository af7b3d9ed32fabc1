"""resil.Backoff and resil.RetryBudget against their reference models."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import resil
from model.backoff import MODES, BackoffModel
from model.budget import BudgetModel

SEC = 1_000_000_000
ATTEMPTS = [*range(71), 1024, 2**31 - 1, 2**63 - 1, 2**64 - 1, 2**100]


# ---- backoff ----------------------------------------------------------------

@pytest.mark.parametrize("jitter", MODES)
def test_every_attempt_stays_within_zero_and_max_delay(jitter: str) -> None:
    b = resil.Backoff(base=0.5, multiplier=3.0, max_delay=20.0, jitter=jitter, seed=7)
    for attempt in ATTEMPTS:
        for _ in range(20):
            d = b.delay(attempt)
            assert math.isfinite(d) and 0.0 < d <= 20.0, (attempt, d)


def test_huge_multiplier_and_attempts_never_overflow() -> None:
    b = resil.Backoff(base=1e-3, multiplier=1e300, max_delay=1e308)
    assert [b.delay(a) for a in (0, 1, 2, 63, 2**63 - 1)] == [1e-3, 1e297, 1e308, 1e308, 1e308]
    z = resil.Backoff(base=0.0, multiplier=1e300, max_delay=5.0, jitter="full")
    assert all(z.delay(a) == 0.0 for a in ATTEMPTS)


def test_no_jitter_doubles_then_caps() -> None:
    b = resil.Backoff()
    assert [b.delay(a) for a in range(7)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert b.raw(3) == 8.0


@pytest.mark.parametrize("jitter,lo_frac", [("full", 0.0), ("equal", 0.5)])
def test_jitter_bounds_per_mode(jitter: str, lo_frac: float) -> None:
    b = resil.Backoff(base=1.0, multiplier=2.0, max_delay=100.0, jitter=jitter, seed=3)
    for attempt in range(8):
        raw = b.raw(attempt)
        draws = [b.delay(attempt) for _ in range(2000)]
        assert all(lo_frac * raw < d <= raw for d in draws)
        # the draws spread over the band, not a corner of it
        assert min(draws) < lo_frac * raw + 0.05 * raw and max(draws) > 0.95 * raw


def test_decorrelated_bounds() -> None:
    b = resil.Backoff(base=1.0, multiplier=2.0, max_delay=10.0, jitter="decorrelated", seed=5)
    prev = None
    for attempt in range(50):
        d = b.delay(attempt, prev)
        hi = min(10.0, max(1.0, 3.0 * (prev if prev is not None else b.raw(attempt - 1)
                                        if attempt else 1.0)))
        assert 1.0 <= d <= hi
        prev = d


def test_same_seed_same_sequence_other_seed_differs() -> None:
    def seq(seed: int, jitter: str) -> list[float]:
        b = resil.Backoff(jitter=jitter, seed=seed)
        return [b.delay(a) for a in range(30)]

    for mode in ("full", "equal", "decorrelated"):
        assert seq(11, mode) == seq(11, mode)
        assert seq(11, mode) != seq(12, mode)
    assert resil.Backoff(seed=11).seed == 11
    assert resil.Backoff().seed != resil.Backoff().seed  # drawn from os.urandom


@given(base=st.floats(0, 100), mult=st.floats(1, 1e6), extra=st.floats(0, 1e6),
       jitter=st.sampled_from(MODES), seed=st.integers(0, 2**64 - 1),
       calls=st.lists(st.tuples(st.integers(0, 2**64 - 1) | st.integers(0, 80),
                                st.none() | st.floats(0, 1e6)), max_size=30))
def test_backoff_matches_model_bit_for_bit(base: float, mult: float, extra: float, jitter: str,
                                           seed: int, calls: list) -> None:
    c = resil.Backoff(base, mult, max_delay=base + extra, jitter=jitter, seed=seed)
    m = BackoffModel(base, mult, base + extra, jitter, seed)
    for attempt, prev in calls:
        got, want = c.delay(attempt, prev), m.delay(attempt, prev)
        assert got == want or (math.isnan(got) and math.isnan(want))
        assert 0.0 <= got <= base + extra


@pytest.mark.parametrize("kw,match", [
    ({"base": -1}, "base"), ({"base": float("nan")}, "base"), ({"multiplier": 0.5}, "multiplier"),
    ({"max_delay": 0.5}, "max_delay"), ({"max_delay": float("inf")}, "max_delay"),
    ({"jitter": "wild"}, "jitter"),
])
def test_backoff_rejects_bad_values(kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        resil.Backoff(**kw)


def test_backoff_rejects_bad_types_and_attempts() -> None:
    with pytest.raises(TypeError, match="base"):
        resil.Backoff(base="1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="seed"):
        resil.Backoff(seed=1.5)  # type: ignore[arg-type]
    b = resil.Backoff()
    with pytest.raises(ValueError, match="attempt"):
        b.delay(-1)
    with pytest.raises(TypeError, match="attempt"):
        b.delay(1.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="prev"):
        b.delay(1, -2.0)


# ---- budget -----------------------------------------------------------------

def test_budget_allows_ratio_of_requests_and_a_floor_per_second() -> None:
    clock = resil.VirtualClock()
    b = resil.RetryBudget(ratio=0.2, min_per_second=3.0, window=10.0, clock=clock)
    assert [b.try_retry() for _ in range(4)] == [True, True, True, False]  # the floor
    clock.advance(1)
    for _ in range(20):
        b.record_request()
    # 3 retries in the window already; 0.2 * 20 = 4 allows one more
    assert b.try_retry() is True
    assert b.try_retry() is True   # floor: 1 retry in the last second < 3
    assert b.try_retry() is True
    assert b.try_retry() is False
    st_ = b.stats()
    assert (st_["requests"], st_["retries"], st_["rejected"]) == (20, 6, 2)
    clock.advance(10)
    assert b.stats()["requests"] == 0 and b.stats()["retries"] == 0


def test_budget_rejects_bad_values() -> None:
    for kw, match in [({"ratio": -0.1}, "ratio"), ({"min_per_second": float("nan")},
                                                     "min_per_second"), ({"window": 0}, "window")]:
        with pytest.raises(ValueError, match=match):
            resil.RetryBudget(**kw)


class BudgetMachine(RuleBasedStateMachine):
    @initialize(ratio=st.sampled_from([0.0, 0.1, 0.2, 0.5, 1.0, 2.0]),
                floor=st.sampled_from([0.0, 1.0, 3.0, 2.5]),
                window=st.sampled_from([1, 2, 10, 30]))
    def setup(self, ratio: float, floor: float, window: int) -> None:
        self.clock = resil.VirtualClock(start=123.25)
        self.c = resil.RetryBudget(ratio=ratio, min_per_second=floor, window=window,
                                   clock=self.clock)
        self.m = BudgetModel(ratio, floor, window * SEC, self.clock.now_ns())

    @rule(n=st.integers(1, 5))
    def requests(self, n: int) -> None:
        for _ in range(n):
            self.c.record_request()
            self.m.request(self.clock.now_ns())

    @rule()
    def retry(self) -> None:
        assert self.c.try_retry() == self.m.try_retry(self.clock.now_ns())

    @rule(ms=st.integers(1, 3000) | st.sampled_from([100, 1000, 10_000]))
    def advance(self, ms: int) -> None:
        self.clock.advance_ns(ms * 1_000_000)

    @invariant()
    def same_counts(self) -> None:
        if not hasattr(self, "c"):
            return
        s = self.c.stats()
        assert (s["requests"], s["retries"], s["retries_last_second"]) == \
            self.m.counts(self.clock.now_ns())
        assert s["rejected"] == self.m.rejected


TestBudgetModel = BudgetMachine.TestCase
