"""resil._resil.RateCounter: behaviour, validation, and parity with tests/model/rate.py."""

from __future__ import annotations

import gc
import math
import re
import sys
import weakref
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from tests_support import FailingClock, leak_growth

from resil._resil import MonotonicClock, RateCounter, VirtualClock

try:  # pytest's default "prepend" import mode puts tests/ on sys.path
    from model.rate import RateModel
except ModuleNotFoundError:  # pragma: no cover - tests/ made a package
    from tests.model.rate import RateModel  # type: ignore[no-redef]

SEC = 1_000_000_000
MAX_THRESHOLD = 2**24


class StepClock:
    """A Python clock that may step back: now() is ns / 1e9 (exact below 2**53 / 1e9 s)."""

    def __init__(self, ns: int = 0) -> None:
        self.ns = ns

    def now(self) -> float:
        return self.ns / 1e9


# ---- behaviour ---------------------------------------------------------------

def test_threshold_then_refused_and_counters() -> None:
    clock = VirtualClock()
    r = RateCounter(3, 1.0, clock=clock)
    assert [r.hit() for _ in range(5)] == [True, True, True, False, False]
    assert (r.count(), r.accepted, r.refused) == (3, 3, 2)
    assert (r.threshold, r.window, r.clock) == (3, 1.0, clock)


def test_window_boundary_is_strict() -> None:
    clock = VirtualClock(5.0)
    r = RateCounter(2, 1.0, clock=clock)
    assert r.hit()
    clock.advance_ns(10)
    assert r.hit()
    assert not r.hit()
    clock.advance_ns(SEC - 11)  # the first is window - 1 ns old: still counts
    assert r.count() == 2
    assert not r.hit()
    clock.advance_ns(1)  # exactly window old: no longer counts
    assert r.count() == 1
    assert r.hit()
    assert not r.hit()
    clock.advance_ns(10)
    assert r.count() == 1
    clock.advance(1.0)
    assert r.count() == 0
    assert (r.accepted, r.refused) == (3, 3)


def test_refused_events_do_not_count() -> None:
    """A steady storm still lets threshold events through per window."""
    clock = VirtualClock()
    r = RateCounter(2, 0.1, clock=clock)
    passed = 0
    for _ in range(1000):  # one event per ms for 1 s
        passed += r.hit()
        clock.advance_ns(1_000_000)
    assert passed == 20
    assert (r.accepted, r.refused) == (20, 980)


def test_threshold_one_and_tiny_window() -> None:
    clock = VirtualClock()
    r = RateCounter(1, 1e-9, clock=clock)  # 1 ns
    assert r.hit() and not r.hit()
    clock.advance_ns(1)
    assert r.count() == 0
    assert r.hit() and not r.hit()


def test_largest_threshold_counts() -> None:
    clock = VirtualClock()
    r = RateCounter(MAX_THRESHOLD, 9.2e9, clock=clock)
    assert r.threshold == MAX_THRESHOLD
    assert all(r.hit() for _ in range(1000))
    assert r.count() == 1000


def test_reset_forgets_events_and_counters() -> None:
    clock = VirtualClock()
    r = RateCounter(2, 10.0, clock=clock)
    r.hit(), r.hit(), r.hit()
    r.reset()
    assert (r.count(), r.accepted, r.refused) == (0, 0, 0)
    assert r.hit() and r.hit() and not r.hit()
    assert (r.threshold, r.window) == (2, 10.0)


def test_clock_stepping_back_is_read_as_standing_still() -> None:
    clock = StepClock(10 * SEC)
    r = RateCounter(2, 1.0, clock=clock)
    assert r.hit()
    clock.ns = 0  # back: the event is recorded at 10 s
    assert r.hit()
    assert not r.hit()
    clock.ns = 10 * SEC + SEC - 1
    assert r.count() == 2
    clock.ns = 5 * SEC  # back again: still 11 s - 1 ns
    assert r.count() == 2 and not r.hit()
    clock.ns = 11 * SEC
    assert r.count() == 0
    clock.ns = 0
    assert r.hit() and r.count() == 1  # recorded at 11 s
    clock.ns = 12 * SEC - 1
    assert r.count() == 1
    clock.ns = 12 * SEC
    assert r.count() == 0


def test_default_clock_is_monotonic() -> None:
    r = RateCounter(5, 60.0)
    assert isinstance(r.clock, MonotonicClock)
    assert r.hit() and r.count() == 1
    r2 = RateCounter(5, 60.0, clock=None)
    assert r2.clock is r.clock


def test_failing_clock_changes_nothing() -> None:
    clock = FailingClock()
    r = RateCounter(1, 1.0, clock=clock)
    assert r.hit()
    clock.fail = True
    with pytest.raises(ZeroDivisionError):
        r.hit()
    with pytest.raises(ZeroDivisionError):
        r.count()
    assert (r.accepted, r.refused) == (1, 0)
    clock.fail = False
    assert not r.hit() and r.count() == 1


def test_bad_clock_reading_raises() -> None:
    class Negative:
        def now(self) -> float:
            return -1.0

    r = RateCounter(1, 1.0, clock=Negative())
    with pytest.raises(ValueError, match="clock.now"):
        r.hit()
    assert (r.accepted, r.refused) == (0, 0)


def test_clock_reentering_the_counter() -> None:
    """The clock is read before any state change, so a clock that hits the
    same counter from now() sees and leaves a consistent state."""

    class Reentrant:
        def __init__(self) -> None:
            self.counter: RateCounter | None = None
            self.inner: list[bool] = []

        def now(self) -> float:
            c, self.counter = self.counter, None
            if c is not None:
                self.inner.append(c.hit())
            return 1.0

    clock = Reentrant()
    r = RateCounter(2, 1.0, clock=clock)
    clock.counter = r
    assert r.hit()  # the inner hit happened first
    assert clock.inner == [True]
    assert not r.hit() and r.count() == 2
    assert (r.accepted, r.refused) == (2, 1)


def test_repr_and_readonly_properties() -> None:
    r = RateCounter(4, 0.5, clock=VirtualClock())
    r.hit()
    assert repr(r) == "<RateCounter threshold=4 window=0.5 accepted=1 refused=0>"
    for name in ("threshold", "window", "accepted", "refused", "clock"):
        with pytest.raises(AttributeError):
            setattr(r, name, 1)
    with pytest.raises(TypeError):
        r.hit(1)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        r.count(1)  # type: ignore[call-arg]


def test_int_window_and_rounding_to_ns() -> None:
    r = RateCounter(1, 2, clock=VirtualClock())
    assert r.window == 2.0 and type(r.window) is float
    assert RateCounter(1, 1.5e-9, clock=VirtualClock()).window == 2e-9  # llround


def test_cycle_through_a_python_clock_is_collected() -> None:
    class Owner:
        def now(self) -> float:
            return 0.0

    owner = Owner()
    owner.r = RateCounter(1, 1.0, clock=owner)  # type: ignore[attr-defined]
    ref = weakref.ref(owner)
    del owner
    gc.collect()
    assert ref() is None


# ---- argument validation -------------------------------------------------------

@pytest.mark.parametrize("threshold", [0, -1, MAX_THRESHOLD + 1, 2**64, -(2**100), 2**100])
def test_threshold_out_of_range(threshold: int) -> None:
    with pytest.raises(ValueError, match=r"threshold must be an int in \[1, 16777216\]"):
        RateCounter(threshold, 1.0)


@pytest.mark.parametrize("threshold", [True, False, 1.0, "3", None, 3 + 0j])
def test_threshold_type(threshold: Any) -> None:
    with pytest.raises(TypeError, match="threshold must be an int"):
        RateCounter(threshold, 1.0)


@pytest.mark.parametrize("window", [0, 0.0, -0.0, -1, -1e-9, math.nan, math.inf, -math.inf,
                                    9.3e9, 10**400])
def test_window_out_of_range(window: Any) -> None:
    accepts = RateCounter._ranges["window"]["accepts"]  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match=rf"window must be {re.escape(accepts)}, got "):
        RateCounter(1, window)


def test_window_below_one_ns() -> None:
    with pytest.raises(ValueError, match=r"window must be .* in \[1e-9, 9.2e9\], got 1e-10$"):
        RateCounter(1, 1e-10)


@pytest.mark.parametrize("window", [True, False, "1", None, [1]])
def test_window_type(window: Any) -> None:
    with pytest.raises(TypeError, match="window must be a number"):
        RateCounter(1, window)


def test_signature() -> None:
    with pytest.raises(TypeError):
        RateCounter()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        RateCounter(1)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        RateCounter(1, 1.0, VirtualClock())  # type: ignore[misc]  # clock is keyword-only
    with pytest.raises(TypeError, match="clock must be"):
        RateCounter(1, 1.0, clock=object())
    with pytest.raises(TypeError, match="clock.now must be callable"):
        RateCounter(1, 1.0, clock=type("C", (), {"now": 3})())
    r = RateCounter(threshold=2, window=0.25, clock=VirtualClock())
    assert (r.threshold, r.window) == (2, 0.25)


# ---- leaks ---------------------------------------------------------------------

LEAK_CHURN = r"""
    from resil._resil import RateCounter, VirtualClock

    clock = VirtualClock()

    def churn(n):
        for i in range(n):
            r = RateCounter(64, 0.001, clock=clock)
            for _ in range(100):
                r.hit()
                clock.advance_ns(7_000)
            r.count()
            r.reset()

"""


def test_no_leak_in_a_subprocess() -> None:
    grew, blocks = leak_growth(LEAK_CHURN, warm=200, rounds=5000)
    assert grew < 10_000, grew
    assert blocks < 50, blocks


# ---- parity with the model -------------------------------------------------------

class RateMachine(RuleBasedStateMachine):
    """RateCounter and RateModel in lockstep on one clock. The window is a whole
    number of microseconds, so seconds -> ns is exact; with a StepClock the
    clock may also step back."""

    @initialize(threshold=st.integers(1, 6) | st.sampled_from([1, 2, 50, 10**6]),
                window_us=st.integers(1, 2000) | st.sampled_from([1, 1000]),
                start=st.integers(0, 10**6), python_clock=st.booleans())
    def setup(self, threshold: int, window_us: int, start: int, python_clock: bool) -> None:
        self.window_ns = window_us * 1000
        self.clock: VirtualClock | StepClock
        if python_clock:
            self.clock = StepClock(start)
        else:
            self.clock = VirtualClock()
            self.clock.advance_ns(start)
        self.c = RateCounter(threshold, window_us / 1e6, clock=self.clock)
        self.m = RateModel(threshold, self.window_ns)
        assert self.c.window * 1e9 == pytest.approx(self.window_ns, abs=0.5)

    @property
    def now(self) -> int:
        return self.clock.ns if isinstance(self.clock, StepClock) else self.clock.now_ns()

    def _advance(self, ns: int) -> None:
        if isinstance(self.clock, StepClock):
            self.clock.ns += ns
        else:
            self.clock.advance_ns(ns)

    @rule(k=st.integers(0, 2))
    def hit(self, k: int) -> None:
        for _ in range(k + 1):
            assert self.c.hit() == self.m.hit(self.now)

    @rule()
    def count(self) -> None:
        got = self.c.count()
        assert got == self.m.count(self.now)
        assert self.m.capacity_ok(self.c.capacity, after_count=got)

    @rule(burst=st.integers(1, 120))
    def burst(self, burst: int) -> None:
        """Many events at one instant: the ring grows (up to threshold)."""
        for _ in range(burst):
            assert self.c.hit() == self.m.hit(self.now)

    @rule(then_count=st.booleans())
    def reserve(self, then_count: bool) -> None:
        """reserve() changes no count; the hit after it needs no memory."""
        self.c.reserve()
        assert self.m.capacity_ok(self.c.capacity)
        if then_count:
            assert self.c.count() == self.m.count(self.now)
        assert self.c.hit() == self.m.hit(self.now)

    @rule(kind=st.sampled_from(["zero", "window-1", "window", "window+1", "random", "tiny"]),
          frac=st.integers(0, 2000))
    def advance(self, kind: str, frac: int) -> None:
        w = self.window_ns
        step = {"zero": 0, "window-1": w - 1, "window": w, "window+1": w + 1,
                "random": w * frac // 1000, "tiny": frac % 7}[kind]
        self._advance(step)

    @precondition(lambda self: isinstance(self.clock, StepClock))
    @rule(back=st.integers(1, 3 * 10**6))
    def step_back(self, back: int) -> None:
        assert isinstance(self.clock, StepClock)
        self.clock.ns = max(0, self.clock.ns - back)

    @rule()
    def reset(self) -> None:
        self.c.reset()
        self.m.reset()
        assert self.c.capacity == 0

    @invariant()
    def counters(self) -> None:
        assert (self.c.accepted, self.c.refused) == (self.m.accepted, self.m.refused)
        assert self.c.threshold == self.m.threshold

    @invariant()
    def ring_size(self) -> None:
        assert self.m.capacity_ok(self.c.capacity)
        assert sys.getsizeof(self.c) - self.c.capacity * 8 == sys.getsizeof(RateCounter(1, 1.0))


TestRateModel = RateMachine.TestCase
