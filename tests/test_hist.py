"""resil._resil.Histogram and WindowedHistogram: accuracy against exact
sample quantiles, parity with tests/model/hist.py, validation, and lifetime."""

from __future__ import annotations

import gc
import math
import sys
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from tests_support import FailingClock, leak_growth

from resil._resil import Histogram, MonotonicClock, VirtualClock, WindowedHistogram

try:  # pytest's default "prepend" import mode puts tests/ on sys.path
    from model.hist import HistModel, WindowModel, bucket_bounds, bucket_count, bucket_index, rank
except ModuleNotFoundError:  # pragma: no cover - tests/ made a package
    from tests.model.hist import (  # type: ignore[no-redef]
        HistModel, WindowModel, bucket_bounds, bucket_count, bucket_index, rank)

SEC = 1_000_000_000
HOUR = 3600 * SEC
FIXED_Q = [0.0, 1.0, 0.5, 0.9, 0.95, 0.99, 0.999]


class StepClock:
    """A Python clock that may step back: now() is ns / 1e9, read back exactly
    by the engine while ns < 2**50."""

    def __init__(self, ns: int = 0) -> None:
        self.ns = ns

    def now(self) -> float:
        return self.ns / 1e9


def to_ns(ms: float) -> int:
    """What record(ms) stores: ms * 1e6 rounded to nearest, ties to even."""
    return round(ms * 1e6)


def exact_quantile(samples_ns: list[int], q: float) -> int:
    """The nearest-rank sample, rank max(1, ceil(q * n)) with rs_hist.h's rule for decimal q."""
    return sorted(samples_ns)[rank(q, len(samples_ns)) - 1]


def assert_close(reported_ms: float, exact_ns: int, sub_bits: int) -> None:
    """Within the documented 2**-(sub_bits + 1) of the exact sample (so within
    1 % for sub_bits >= 6), and exact for values below 2**(sub_bits + 1) ns."""
    if exact_ns < 1 << (sub_bits + 1):
        assert reported_ms == exact_ns / 1e6
        return
    err = abs(reported_ms * 1e6 - exact_ns) / exact_ns
    if sub_bits >= 6:
        assert err < 0.01, (reported_ms, exact_ns, err)
    assert err < 2.0 ** -(sub_bits + 1) + 1e-12, (reported_ms, exact_ns, err)


# Durations in ms below the default exact ranges (2**44 ns = 17592 s for
# Histogram, 2**42 ns = 4398 s for WindowedHistogram), spread over 13 decades.
def durations(max_ms: float) -> st.SearchStrategy[float]:
    return st.one_of(
        st.floats(0.0, max_ms, allow_nan=False, allow_infinity=False),
        st.floats(-6.5, math.log10(max_ms)).map(lambda e: 10.0 ** e),
        st.integers(0, int(max_ms * 1e6)).map(lambda ns: ns / 1e6),
        st.sampled_from([0.0, 5e-7, 1e-6, 1.5e-6, 2.5e-6, 0.000255, 0.001, 0.5, 1.0, 99.9, 250.0,
                         1000.0, 60_000.0]),
    )


def sample_lists(max_ms: float) -> st.SearchStrategy[list[float]]:
    d = durations(max_ms)
    return st.one_of(
        st.lists(d, min_size=1, max_size=2),                                  # tiny sets
        st.lists(d, min_size=1, max_size=400),
        st.lists(d, min_size=1, max_size=4).flatmap(                          # heavy repeats
            lambda pool: st.lists(st.sampled_from(pool), min_size=1, max_size=300)),
    )


QS = st.lists(st.floats(0.0, 1.0) | st.integers(0, 1000).map(lambda k: k / 1000), max_size=6)


# ---- accuracy against the exact sample quantile ---------------------------------

@given(samples=sample_lists(17_500_000.0), extra_q=QS)
def test_histogram_quantiles_within_one_percent(samples: list[float], extra_q: list[float]) -> None:
    h = Histogram()
    for ms in samples:
        h.record(ms)
    ns = [to_ns(ms) for ms in samples]
    qs = FIXED_Q + extra_q
    got = h.quantiles(qs)
    for q, r in zip(qs, got):
        assert r == h.quantile(q)
        assert_close(r, exact_quantile(ns, q), h.sub_bits)
    assert h.quantile(0) == min(ns) / 1e6 == h.min_ms
    assert h.quantile(1) == max(ns) / 1e6 == h.max_ms
    assert (h.count, h.clamped) == (len(samples), 0)
    assert h.mean_ms == pytest.approx(sum(ns) / len(ns) / 1e6, rel=1e-9, abs=1e-15)


@given(samples=sample_lists(4_390_000.0), extra_q=QS,
       gaps=st.lists(st.sampled_from([0, 0, 0, 1, 10**6, SEC, HOUR, 2 * HOUR, 5 * HOUR]),
                     max_size=400))
def test_windowed_quantiles_within_one_percent(samples: list[float], extra_q: list[float],
                                               gaps: list[int]) -> None:
    """Defaults (one day in 12 slots, sub_bits=6); time passes between records
    (gaps, in ns), so old samples may age out: compared with the live ones."""
    clock = VirtualClock(1000.0)
    w = WindowedHistogram(clock=clock)
    model = WindowModel(12, 7200 * SEC, 6, 42)
    for i, ms in enumerate(samples):
        clock.advance_ns(gaps[i] if i < len(gaps) else 0)
        w.record(ms)
        model.record(clock.now_ns(), to_ns(ms))
    live = model.live(clock.now_ns()).samples
    assert w.count() == len(live) >= 1
    qs = FIXED_Q + extra_q
    for q, r in zip(qs, w.quantiles(qs)):
        assert r == w.quantile(q)
        assert_close(r, exact_quantile(live, q), 6)
    assert (w.min_ms(), w.max_ms()) == (min(live) / 1e6, max(live) / 1e6)


def test_rank_of_decimal_q_is_the_decimal_rank() -> None:
    """k/10 of 10 samples is the k-th (0.9 is stored just above 0.9; the rank rule
    of rs_hist.h still gives 9, not 10). Values below 2**(sub_bits + 1) are exact."""
    h = Histogram()
    for v in range(1, 11):
        h.record_ns(v)
    assert [h.quantile(k / 10) for k in range(11)] == [max(k, 1) / 1e6 for k in range(11)]
    assert h.quantile(0.95) == 10 / 1e6 and h.quantile(0.91) == 10 / 1e6


def test_documented_bound_at_bucket_edges() -> None:
    """Worst cases: the first and last value of wide buckets, for several sub_bits."""
    for sub_bits in (1, 3, 6, 7, 10):
        for e in (sub_bits + 1, 20, 40):
            for v in (1 << e, (1 << e) + 1, (2 << e) - 1, 3 << (e - 1)):
                h = Histogram(sub_bits, 44)
                for x in (0, v, 2**43):
                    h.record_ns(x)
                assert_close(h.quantile(0.5), v, sub_bits)
                lo, hi = bucket_bounds(bucket_index(v, sub_bits, 44), sub_bits)
                assert h.quantile(0.5) == (lo + (hi - lo) // 2) / 1e6


# ---- Histogram behaviour --------------------------------------------------------------

def test_empty_is_zero() -> None:
    h = Histogram()
    assert (h.count, h.clamped, h.min_ms, h.max_ms, h.mean_ms) == (0, 0, 0.0, 0.0, 0.0)
    assert h.quantile(0.5) == 0.0 and h.quantiles([0, 0.5, 1]) == [0.0, 0.0, 0.0]
    w = WindowedHistogram(clock=VirtualClock())
    assert (w.count(), w.clamped(), w.min_ms(), w.max_ms(), w.mean_ms()) == (0, 0, 0.0, 0.0, 0.0)
    assert w.quantile(0.99) == 0.0 and w.quantiles([0.5]) == [0.0]
    assert w.snapshot().count == 0


def test_record_rounds_ms_to_nearest_ns_ties_to_even() -> None:
    h = Histogram()
    for ms, ns in [(5e-7, 0), (1.5e-6, 2), (2.5e-6, 2), (3.5e-6, 4), (1e-7, 0), (7e-7, 1),
                   (0.0, 0), (-0.0, 0), (1, 1_000_000), (2.0, 2_000_000)]:
        h.reset()
        h.record(ms)
        assert h.max_ms == ns / 1e6, ms


def test_int_and_float_ms_and_record_ns_agree() -> None:
    a, b, c = Histogram(), Histogram(), Histogram()
    for v in (0, 1, 7, 250, 10_000):
        a.record(v)
        b.record(float(v))
        c.record_ns(v * 1_000_000)
    assert a.quantiles(FIXED_Q) == b.quantiles(FIXED_Q) == c.quantiles(FIXED_Q)
    assert a.count == b.count == c.count == 5


def test_clamped_samples_are_counted_and_min_max_stay_exact() -> None:
    h = Histogram(3, 10)
    h.record_ns(5)
    h.record_ns(1 << 10)
    h.record_ns(2**64 - 1)
    h.record(1.8e13)  # below 2**64 ns
    assert (h.count, h.clamped) == (4, 3)
    assert h.max_ms == (2**64 - 1) / 1e6 and h.min_ms == 5 / 1e6
    assert h.quantile(0) == 5 / 1e6 and h.quantile(1) == (2**64 - 1) / 1e6
    lo, hi = bucket_bounds(bucket_count(3, 10) - 1, 3)
    assert h.quantile(0.5) == (lo + (hi - lo) // 2) / 1e6  # the top bucket


def test_merge_equals_recording_both_streams() -> None:
    a, b, both = Histogram(), Histogram(), Histogram()
    for i in range(500):
        a.record(i * 0.37)
        both.record(i * 0.37)
    for i in range(300):
        b.record_ns(i * i * 1000)
        both.record_ns(i * i * 1000)
    a.merge(b)
    qs = [i / 200 for i in range(201)]
    assert a.quantiles(qs) == both.quantiles(qs)
    assert (a.count, a.clamped, a.min_ms, a.max_ms) == (both.count, both.clamped, both.min_ms,
                                                        both.max_ms)
    assert a.mean_ms == pytest.approx(both.mean_ms, rel=1e-12)
    assert b.count == 300  # other unchanged


@given(x=st.lists(durations(17_500_000.0), max_size=100),
       y=st.lists(durations(17_500_000.0), max_size=100), qs=QS)
def test_merge_property(x: list[float], y: list[float], qs: list[float]) -> None:
    a, b, both = Histogram(), Histogram(), Histogram()
    for ms in x:
        a.record(ms)
        both.record(ms)
    for ms in y:
        b.record(ms)
        both.record(ms)
    a.merge(b)
    assert a.count == both.count and a.quantiles(FIXED_Q + qs) == both.quantiles(FIXED_Q + qs)
    assert (a.min_ms, a.max_ms) == (both.min_ms, both.max_ms)


def test_merge_self_doubles_and_errors() -> None:
    h = Histogram()
    for v in (1.0, 2.0, 3.0):
        h.record(v)
    h.merge(h)
    assert h.count == 6 and h.quantile(0.5) == h.quantile(0.34)
    with pytest.raises(ValueError, match=r"cannot merge a Histogram\(sub_bits=6, max_bits=44\) "
                                         r"into a Histogram\(sub_bits=7, max_bits=44\)"):
        h.merge(Histogram(6))
    with pytest.raises(ValueError, match="max_bits=40"):
        h.merge(Histogram(7, 40))
    for other in (None, 1, WindowedHistogram(clock=VirtualClock()), "h"):
        with pytest.raises(TypeError, match="merge.. needs a Histogram"):
            h.merge(other)  # type: ignore[arg-type]
    assert h.count == 6


def test_copy_is_independent_and_reset_forgets() -> None:
    h = Histogram(5, 30)
    for v in range(100):
        h.record(v / 3)
    c = h.copy()
    assert type(c) is Histogram and (c.sub_bits, c.max_bits) == (5, 30)
    assert c.quantiles(FIXED_Q) == h.quantiles(FIXED_Q) and c.count == 100
    c.record(1e6)
    assert h.count == 100 and c.count == 101
    h.reset()
    assert (h.count, h.min_ms, h.max_ms, h.quantile(0.5)) == (0, 0.0, 0.0, 0.0)
    assert c.count == 101 and (h.sub_bits, h.max_bits) == (5, 30)


def test_properties_memory_and_repr() -> None:
    h = Histogram()
    assert (h.sub_bits, h.max_bits) == (7, 44)
    assert 4864 * 8 <= h.memory_bytes < 4864 * 8 + 256
    assert 442_368 <= Histogram(10, 63).memory_bytes < 442_368 + 256
    h.record(1.0)
    assert repr(h) == "<Histogram sub_bits=7 max_bits=44 count=1 clamped=0>"
    for name in ("count", "clamped", "min_ms", "max_ms", "mean_ms", "memory_bytes", "sub_bits",
                 "max_bits"):
        with pytest.raises(AttributeError):
            setattr(h, name, 1)
    w = WindowedHistogram(clock=VirtualClock())
    assert (w.retention, w.slots, w.sub_bits, w.max_bits) == (86400.0, 12, 6, 42)
    assert 12 * 2368 * 8 <= w.memory_bytes < 12 * 2368 * 8 + 12 * 128 + 256
    assert repr(w) == "<WindowedHistogram retention=86400.0 slots=12 sub_bits=6 max_bits=42>"
    for name in ("retention", "slots", "sub_bits", "max_bits", "memory_bytes", "clock"):
        with pytest.raises(AttributeError):
            setattr(w, name, 1)


def test_docstrings() -> None:
    assert Histogram.__doc__ and "sub_bits" in Histogram.__doc__ and "0.0 when empty" in Histogram.__doc__
    assert WindowedHistogram.__doc__ and "227,328 bytes" in WindowedHistogram.__doc__
    for tp in (Histogram, WindowedHistogram):
        for name in ("record", "record_ns", "quantile", "quantiles", "reset"):
            assert getattr(tp, name).__doc__, (tp, name)


def test_quantiles_takes_any_iterable() -> None:
    h = Histogram()
    h.record(4.0)

    def gen() -> Iterator[float]:
        yield 0.5
        yield 1

    assert h.quantiles(gen()) == [4.0, 4.0] and h.quantiles(()) == [] and h.quantiles([]) == []
    assert h.quantiles((0.5,)) == [4.0]


# ---- WindowedHistogram behaviour ---------------------------------------------------------

def test_window_ages_out_a_sample_exactly_after_retention() -> None:
    clock = VirtualClock()
    w = WindowedHistogram(12.0, 12, clock=clock)  # 1 s slots
    w.record(5.0)  # at t = 0: the start of its slot, so seen for exactly 12 s
    clock.advance_ns(12 * SEC - 1)
    assert w.count() == 1 and w.quantile(0.5) == 5.0
    clock.advance_ns(1)
    assert w.count() == 0 and w.quantile(0.5) == 0.0
    clock.set(20.5)  # mid-slot: seen until the end of slot 31
    w.record(7.0)
    clock.set(31.999999999)
    assert w.count() == 1
    clock.set(32.0)
    assert w.count() == 0


def test_window_keeps_recent_slots_and_snapshot() -> None:
    clock = VirtualClock()
    w = WindowedHistogram(4.0, 4, clock=clock)
    for t in range(8):
        w.record(float(t + 1))
        clock.advance(1.0)
    # now = 8 s: slots 5, 6, 7 live (4 - 1 full slots plus the current, empty one)
    assert w.count() == 3 and (w.min_ms(), w.max_ms()) == (6.0, 8.0)
    assert w.mean_ms() == pytest.approx(7.0)
    s = w.snapshot()
    assert (s.count, s.sub_bits, s.max_bits) == (3, 6, 42)
    assert s.quantiles(FIXED_Q) == w.quantiles(FIXED_Q)
    w.record(100.0)
    assert s.count == 3 and w.count() == 4  # the snapshot is a copy
    w.reset()
    assert w.count() == 0 and s.count == 3
    w.record(2.0)
    assert w.count() == 1 and w.quantile(0.5) == 2.0


def test_retention_is_divided_into_whole_ns_slots() -> None:
    w = WindowedHistogram(1.0, 3, clock=VirtualClock())
    assert w.retention == 0.999999999  # 333,333,333 ns slots
    w = WindowedHistogram(1e-9, 1, clock=VirtualClock())
    assert w.retention == 1e-9
    assert WindowedHistogram(retention=60, slots=64, clock=VirtualClock()).retention == 60.0


def test_default_clock_is_monotonic() -> None:
    w = WindowedHistogram(60.0, 6)
    assert isinstance(w.clock, MonotonicClock)
    w.record(1.5)
    w.record_ns(2)
    assert w.count() == 2
    assert WindowedHistogram(clock=None).clock is w.clock


def test_clock_stepping_back_reads_as_standing_still() -> None:
    clock = StepClock(10 * SEC)
    w = WindowedHistogram(4.0, 4, clock=clock)
    w.record(1.0)
    clock.ns = 0
    w.record(2.0)  # joins the newest slot (epoch 10)
    assert w.count() == 2
    clock.ns = 13 * SEC + SEC - 1
    assert w.count() == 2
    clock.ns = 14 * SEC
    assert w.count() == 0


def test_failing_clock_changes_nothing() -> None:
    clock = FailingClock()
    w = WindowedHistogram(10.0, 2, clock=clock)
    w.record(1.0)
    clock.fail = True
    for call in (lambda: w.record(2.0), lambda: w.record_ns(5), w.count, w.min_ms, w.max_ms,
                 w.mean_ms, w.clamped, lambda: w.quantile(0.5), lambda: w.quantiles([0.5]),
                 w.snapshot):
        with pytest.raises(ZeroDivisionError):
            call()
    clock.fail = False
    assert w.count() == 1 and w.max_ms() == 1.0


def test_bad_argument_is_reported_before_the_clock_is_read() -> None:
    class Counting:
        reads = 0

        def now(self) -> float:
            self.reads += 1
            return 0.0

    clock = Counting()
    w = WindowedHistogram(10.0, 2, clock=clock)
    with pytest.raises(ValueError):
        w.record(-1.0)
    with pytest.raises(ValueError):
        w.quantiles([0.5, 2.0])
    assert clock.reads == 0


def test_clock_reentering_the_window() -> None:
    """The clock is read before the state is touched, so a clock that records
    into the same window from now() leaves it consistent."""

    class Reentrant:
        def __init__(self) -> None:
            self.w: WindowedHistogram | None = None

        def now(self) -> float:
            w, self.w = self.w, None
            if w is not None:
                w.record(9.0)
            return 1.0

    clock = Reentrant()
    w = WindowedHistogram(10.0, 2, clock=clock)
    clock.w = w
    w.record(1.0)
    assert w.count() == 2 and (w.min_ms(), w.max_ms()) == (1.0, 9.0)


def test_cycle_through_a_python_clock_is_collected() -> None:
    class Owner:
        def now(self) -> float:
            return 0.0

    owner = Owner()
    owner.w = WindowedHistogram(1.0, 2, clock=owner)  # type: ignore[attr-defined]
    ref = weakref.ref(owner)
    del owner
    gc.collect()
    assert ref() is None


def test_clock_refcount_is_released() -> None:
    clock = StepClock()
    before = sys.getrefcount(clock)
    ws = [WindowedHistogram(1.0, 2, clock=clock) for _ in range(10)]
    assert sys.getrefcount(clock) == before + 10
    for w in ws:
        w.record(1.0)
        w.snapshot()
        w.quantiles([0.5])
    del ws, w
    assert sys.getrefcount(clock) == before
    with pytest.raises(ValueError):
        WindowedHistogram(1.0, 0, clock=clock)
    with pytest.raises(ValueError):
        WindowedHistogram(1.0, 2, sub_bits=0, clock=clock)  # fails after the clock is taken
    assert sys.getrefcount(clock) == before


# ---- argument validation -------------------------------------------------------------

@pytest.mark.parametrize("sub_bits", [0, -1, 11, 2**70, -(2**70)])
def test_sub_bits_out_of_range(sub_bits: int) -> None:
    with pytest.raises(ValueError, match=r"sub_bits must be an int in \[1, 10\], got "):
        Histogram(sub_bits)
    with pytest.raises(ValueError, match=r"sub_bits must be an int in \[1, 10\], got "):
        WindowedHistogram(sub_bits=sub_bits)


@pytest.mark.parametrize("sub_bits,max_bits", [(7, 7), (7, 3), (1, 1), (6, 64), (6, 2**70),
                                               (6, -1)])
def test_max_bits_out_of_range(sub_bits: int, max_bits: int) -> None:
    match = r"max_bits must be an int in \[2, 63\] and > sub_bits \(%d\), got " % sub_bits
    with pytest.raises(ValueError, match=match):
        Histogram(sub_bits, max_bits)
    with pytest.raises(ValueError, match=match):
        WindowedHistogram(sub_bits=sub_bits, max_bits=max_bits)


@pytest.mark.parametrize("bad", [True, 7.0, "7", None, [7]])
def test_bits_type(bad: Any) -> None:
    with pytest.raises(TypeError, match="sub_bits must be an int"):
        Histogram(bad)
    with pytest.raises(TypeError, match="max_bits must be an int"):
        Histogram(7, bad)
    with pytest.raises(TypeError, match="sub_bits must be an int"):
        WindowedHistogram(sub_bits=bad)


def test_extreme_valid_configs() -> None:
    for sub_bits, max_bits in [(1, 2), (10, 11), (10, 63), (1, 63)]:
        h = Histogram(max_bits=max_bits, sub_bits=sub_bits)
        h.record_ns(2**64 - 1)
        h.record_ns(0)
        assert h.quantiles([0, 1]) == [0.0, (2**64 - 1) / 1e6]


@pytest.mark.parametrize("retention", [0, 0.0, -0.0, -1, math.nan, math.inf, -math.inf, 9.3e9,
                                       10**400])
def test_retention_out_of_range(retention: Any) -> None:
    with pytest.raises(ValueError, match=r"retention must be a finite number of seconds in \(0, 9.2e9\]"):
        WindowedHistogram(retention)


@pytest.mark.parametrize("retention,slots", [(1e-10, 1), (1e-9, 2), (3e-9, 4), (6.3e-8, 64)])
def test_slot_below_one_ns(retention: float, slots: int) -> None:
    with pytest.raises(ValueError, match=r"retention / slots must be at least 1 ns"):
        WindowedHistogram(retention, slots)


@pytest.mark.parametrize("slots", [0, -1, 65, 2**70, -(2**70)])
def test_slots_out_of_range(slots: int) -> None:
    with pytest.raises(ValueError, match=r"slots must be an int in \[1, 64\], got"):
        WindowedHistogram(60.0, slots)


@pytest.mark.parametrize("kw,match", [({"retention": "1"}, "retention must be a number"),
                                      ({"retention": None}, "retention must be a number"),
                                      ({"retention": True}, "retention must be a number"),
                                      ({"slots": 2.0}, "slots must be an int"),
                                      ({"slots": True}, "slots must be an int"),
                                      ({"clock": object()}, "clock must be"),
                                      ({"clock": type("C", (), {"now": 3})()},
                                       "clock.now must be callable")])
def test_window_argument_types(kw: dict[str, Any], match: str) -> None:
    with pytest.raises(TypeError, match=match):
        WindowedHistogram(**kw)


def test_signatures() -> None:
    with pytest.raises(TypeError):
        WindowedHistogram(60.0, 2, 6)  # type: ignore[misc]  # sub_bits is keyword-only
    with pytest.raises(TypeError):
        Histogram(7, 44, 1)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Histogram(bogus=1)  # type: ignore[call-arg]
    h = Histogram(max_bits=40, sub_bits=5)
    assert (h.sub_bits, h.max_bits) == (5, 40)
    w = WindowedHistogram(slots=3, retention=3.0, max_bits=30, sub_bits=4, clock=VirtualClock())
    assert (w.retention, w.slots, w.sub_bits, w.max_bits) == (3.0, 3, 4, 30)
    with pytest.raises(TypeError):
        w.count(1)  # type: ignore[call-arg]


@pytest.mark.parametrize("ms", [math.nan, math.inf, -math.inf, -1, -1.0, -1e-300, 1.9e13, 10**400])
def test_record_rejects_bad_durations(ms: Any) -> None:
    h = Histogram()
    w = WindowedHistogram(clock=VirtualClock())
    for target in (h, w):
        with pytest.raises(ValueError, match="ms must be a finite duration in milliseconds >= 0"):
            target.record(ms)
    assert h.count == 0 and w.count() == 0


@pytest.mark.parametrize("ms", [True, "1", None, [1.0], 1j])
def test_record_type(ms: Any) -> None:
    for target in (Histogram(), WindowedHistogram(clock=VirtualClock())):
        with pytest.raises(TypeError, match="ms must be a number"):
            target.record(ms)


@pytest.mark.parametrize("ns,exc", [(-1, ValueError), (2**64, ValueError), (-(2**70), ValueError),
                                    (1.0, TypeError), (True, TypeError), ("1", TypeError)])
def test_record_ns_rejects(ns: Any, exc: type[Exception]) -> None:
    for target in (Histogram(), WindowedHistogram(clock=VirtualClock())):
        with pytest.raises(exc, match=r"ns must be an int"):
            target.record_ns(ns)


@pytest.mark.parametrize("q", [-0.1, 1.1, math.nan, math.inf, -math.inf, 2, -1, 10**400])
def test_quantile_out_of_range(q: Any) -> None:
    for target in (Histogram(), WindowedHistogram(clock=VirtualClock())):
        with pytest.raises(ValueError, match=r"q must be a quantile in \[0, 1\], got"):
            target.quantile(q)
        with pytest.raises(ValueError, match=r"qs\[1\] must be a quantile in \[0, 1\], got"):
            target.quantiles([0.5, q])


@pytest.mark.parametrize("q", ["0.5", None, True, [0.5]])
def test_quantile_type(q: Any) -> None:
    for target in (Histogram(), WindowedHistogram(clock=VirtualClock())):
        with pytest.raises(TypeError, match=r"q must be a number"):
            target.quantile(q)
        with pytest.raises(TypeError, match=r"qs\[0\] must be a number"):
            target.quantiles([q])
    with pytest.raises(TypeError, match="qs must be an iterable"):
        Histogram().quantiles(0.5)  # type: ignore[arg-type]


# ---- leaks -------------------------------------------------------------------

LEAK_CHURN = r"""
    from resil._resil import Histogram, VirtualClock, WindowedHistogram

    clock = VirtualClock()

    def churn(n):
        for i in range(n):
            h = Histogram(3, 20)
            w = WindowedHistogram(0.001, 4, sub_bits=3, max_bits=20, clock=clock)
            for v in range(20):
                h.record(v * 0.5)
                w.record_ns(v * 1000)
                clock.advance_ns(70_000)
            h.quantiles([0.5, 0.9])
            w.quantiles([0.5, 0.9])
            h.merge(w.snapshot())
            h.copy().reset()
            for bad in (-1.0, "x"):
                try:
                    h.record(bad)
                except (TypeError, ValueError):
                    pass
            try:
                w.quantiles([0.5, 3.0])
            except ValueError:
                pass

"""


def test_no_leak_in_a_subprocess() -> None:
    grew, blocks = leak_growth(LEAK_CHURN, warm=200, rounds=3000)
    assert grew < 10_000, grew
    assert blocks < 50, blocks


# ---- parity with the model ---------------------------------------------------------

VALUES_NS = st.one_of(
    st.integers(0, 300),
    st.integers(0, 2**24),
    st.integers(0, 2**64 - 1),
    st.integers(1, 63).flatmap(lambda e: st.sampled_from([(1 << e) - 1, 1 << e, (1 << e) + 1])),
)
VALUES_MS = st.one_of(st.floats(0.0, 1e7, allow_nan=False), st.sampled_from([0.0, 2.5e-6, 1.0]))


class WindowMachine(RuleBasedStateMachine):
    """WindowedHistogram and WindowModel in lockstep on one clock. Slots are a
    whole number of microseconds, so the retention in seconds converts to ns
    exactly; with a StepClock the clock may also step back."""

    @initialize(sub_bits=st.integers(1, 8), extra_bits=st.integers(1, 56),
                slots=st.sampled_from([1, 2, 3, 5, 12, 64]),
                slot_us=st.integers(1, 10**6) | st.sampled_from([1, 1000, 10**6]),
                start=st.integers(0, 10**12), python_clock=st.booleans())
    def setup(self, sub_bits: int, extra_bits: int, slots: int, slot_us: int, start: int,
              python_clock: bool) -> None:
        max_bits = min(63, sub_bits + extra_bits)
        self.slot_ns = slot_us * 1000
        self.retention_ns = self.slot_ns * slots
        self.clock: VirtualClock | StepClock
        if python_clock:
            self.clock = StepClock(start)
        else:
            self.clock = VirtualClock()
            self.clock.advance_ns(start)
        self.w = WindowedHistogram(slot_us * slots / 1e6, slots, sub_bits=sub_bits,
                                   max_bits=max_bits, clock=self.clock)
        self.m = WindowModel(slots, self.slot_ns, sub_bits, max_bits)
        assert round(self.w.retention * 1e9) == self.retention_ns
        assert (self.w.slots, self.w.sub_bits, self.w.max_bits) == (slots, sub_bits, max_bits)

    @property
    def now(self) -> int:
        return self.clock.ns if isinstance(self.clock, StepClock) else self.clock.now_ns()

    def live(self) -> HistModel:
        return self.m.live(self.now)

    @rule(v=VALUES_NS, k=st.integers(1, 3))
    def record_ns(self, v: int, k: int) -> None:
        for _ in range(k):
            self.w.record_ns(v)
            self.m.record(self.now, v)

    @rule(ms=VALUES_MS)
    def record_ms(self, ms: float) -> None:
        self.w.record(ms)
        self.m.record(self.now, to_ns(ms))

    @rule(kind=st.sampled_from(["zero", "tiny", "small", "slot-1", "slot", "slot+1", "retention",
                                "retention-1", "retention+1", "large", "huge"]),
          n=st.integers(0, 1000))
    def advance(self, kind: str, n: int) -> None:
        s, r = self.slot_ns, self.retention_ns
        step = {"zero": 0, "tiny": n % 7, "small": s * n // 1000, "slot-1": s - 1, "slot": s,
                "slot+1": s + 1, "retention": r, "retention-1": r - 1, "retention+1": r + 1,
                "large": r * n + n, "huge": 10**15 + n}[kind]
        if isinstance(self.clock, StepClock):
            self.clock.ns = min(self.clock.ns + step, 2**50)
        else:
            self.clock.advance_ns(step)

    @precondition(lambda self: isinstance(self.clock, StepClock))
    @rule(back=st.integers(1, 3 * 10**9))
    def step_back(self, back: int) -> None:
        assert isinstance(self.clock, StepClock)
        self.clock.ns = max(0, self.clock.ns - back)

    @rule()
    def stats(self) -> None:
        live = self.live()
        assert self.w.count() == live.count
        assert self.w.clamped() == live.clamped
        assert self.w.min_ms() == live.min() / 1e6
        assert self.w.max_ms() == live.max() / 1e6
        assert self.w.mean_ms() == pytest.approx(live.mean() / 1e6, rel=1e-9)

    @rule(q=st.floats(0.0, 1.0) | st.sampled_from(FIXED_Q))
    def quantile(self, q: float) -> None:
        live = self.live()
        got = self.w.quantile(q)
        assert got == live.reported(q) / 1e6
        if live.count:
            x = live.quantile(q)
            sb, mb = self.m.sub_bits, self.m.max_bits
            got_ns = live.reported(q)
            assert bucket_index(got_ns, sb, mb) == bucket_index(x, sb, mb)
            if x < 1 << mb:
                lo, hi = bucket_bounds(bucket_index(x, sb, mb), sb)
                assert abs(got_ns - x) <= (hi - lo + 1) // 2

    @rule(qs=st.lists(st.floats(0.0, 1.0), max_size=5))
    def quantiles(self, qs: list[float]) -> None:
        live = self.live()
        qs = FIXED_Q + qs
        assert self.w.quantiles(qs) == [live.reported(q) / 1e6 for q in qs]

    @rule()
    def snapshot(self) -> None:
        live = self.live()
        s = self.w.snapshot()
        assert (s.sub_bits, s.max_bits) == (self.m.sub_bits, self.m.max_bits)
        assert (s.count, s.clamped) == (live.count, live.clamped)
        assert (s.min_ms, s.max_ms) == (live.min() / 1e6, live.max() / 1e6)
        assert s.quantiles(FIXED_Q) == [live.reported(q) / 1e6 for q in FIXED_Q]

    @rule()
    def reset(self) -> None:
        self.w.reset()
        self.m = WindowModel(self.m.nslots, self.slot_ns, self.m.sub_bits, self.m.max_bits)

    @invariant()
    def count_matches(self) -> None:
        assert self.w.count() == self.live().count


TestWindowModel = WindowMachine.TestCase


class HistMachine(RuleBasedStateMachine):
    """Two Histograms of one config and HistModels in lockstep: record, merge, copy, reset."""

    @initialize(sub_bits=st.integers(1, 10), extra_bits=st.integers(1, 56))
    def setup(self, sub_bits: int, extra_bits: int) -> None:
        max_bits = min(63, sub_bits + extra_bits)
        self.h = [Histogram(sub_bits, max_bits), Histogram(sub_bits, max_bits)]
        self.m = [HistModel(sub_bits, max_bits), HistModel(sub_bits, max_bits)]

    @rule(i=st.integers(0, 1), v=VALUES_NS)
    def record_ns(self, i: int, v: int) -> None:
        self.h[i].record_ns(v)
        self.m[i].record(v)

    @rule(i=st.integers(0, 1), ms=VALUES_MS)
    def record_ms(self, i: int, ms: float) -> None:
        self.h[i].record(ms)
        self.m[i].record(to_ns(ms))

    @rule(i=st.integers(0, 1), j=st.integers(0, 1))
    def merge(self, i: int, j: int) -> None:
        self.h[i].merge(self.h[j])  # i == j doubles it
        self.m[i].samples.extend(list(self.m[j].samples))

    @rule(i=st.integers(0, 1))
    def copy(self, i: int) -> None:
        self.h[1 - i] = self.h[i].copy()
        self.m[1 - i] = HistModel(self.m[i].sub_bits, self.m[i].max_bits)
        self.m[1 - i].samples = list(self.m[i].samples)

    @rule(i=st.integers(0, 1))
    def reset(self, i: int) -> None:
        self.h[i].reset()
        self.m[i].samples.clear()

    @rule(i=st.integers(0, 1), qs=st.lists(st.floats(0.0, 1.0), max_size=4))
    def quantiles(self, i: int, qs: list[float]) -> None:
        qs = FIXED_Q + qs
        assert self.h[i].quantiles(qs) == [self.m[i].reported(q) / 1e6 for q in qs]

    @invariant()
    def stats(self) -> None:
        for h, m in zip(self.h, self.m):
            assert (h.count, h.clamped) == (m.count, m.clamped)
            assert (h.min_ms, h.max_ms) == (m.min() / 1e6, m.max() / 1e6)
            assert h.mean_ms == pytest.approx(m.mean() / 1e6, rel=1e-9)


TestHistModel = HistMachine.TestCase
