"""Each concept once: the Python layer uses what the C engine has instead of
keeping a copy (time-scale presets, windowed counts, TTL maps, the breaker
families of the exposition)."""

from __future__ import annotations

import inspect
import math

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from tests_support import run_threads

import resil
from resil import _resil

try:  # pytest's default "prepend" import mode puts tests/ on sys.path
    from model.counter import WindowedCounterModel
except ModuleNotFoundError:  # pragma: no cover - tests/ made a package
    from tests.model.counter import WindowedCounterModel  # type: ignore[no-redef]


# ---- TimeScale presets -----------------------------------------------------------

def test_timescale_presets_come_from_the_engine_table() -> None:
    assert {s.name for s in resil.TimeScale} == set(_resil.TIMESCALES)
    for scale in resil.TimeScale:
        assert scale.value == _resil.TIMESCALES[scale.name]
        assert (scale.base, scale.min, scale.max, scale.threshold) == scale.value
    iv = resil.TimeScale.MESO.interval()
    assert (iv.base, iv.min, iv.max, iv.threshold) == (10.0, 5.0, 30.0, 0.3)


# ---- WindowedCounter ---------------------------------------------------------------

SEC = 1_000_000_000


class StepClock:
    """A Python clock that may step back: now() is ns / 1e9."""

    def __init__(self, ns: int = 0) -> None:
        self.ns = ns

    def now(self) -> float:
        return self.ns / 1e9


def test_windowed_counter_slot_rule() -> None:
    clock = resil.VirtualClock()
    c = resil.WindowedCounter(10.0, 5, clock=clock)  # 2 s slots
    c.add()
    c.add(3)
    c.add(n=0)
    assert c.total() == 4
    clock.advance(7.999)  # slot 3: slot 0 still counts
    c.add(2)
    assert c.total() == 6
    clock.advance(2.001)  # t = 10 s, slot 5: slot 0 ages out
    assert c.total() == 2
    clock.advance(8.0)  # slot 9: slot 3 ages out
    assert c.total() == 0
    assert c.stats() == {"total": 0, "window": 10.0, "slots": 5}
    assert (c.window, c.slots, c.clock) == (10.0, 5, clock)


def test_windowed_counter_matches_the_histogram_window() -> None:
    """The same retention, slots and clock: the counter and WindowedHistogram
    count the same events at every instant (the monitor relies on it)."""
    clock = resil.VirtualClock()
    clock.advance_ns(123_456_789)
    c = resil.WindowedCounter(7.0, 12, clock=clock)
    h = resil.WindowedHistogram(7.0, 12, clock=clock)
    step = 0
    for i in range(400):
        c.add()
        h.record(1.0)
        step = (step * 31 + 17) % 997
        clock.advance_ns(step * 1_000_003)
        assert c.total() == h.count(), i


def test_windowed_counter_clock_stepping_back_stands_still() -> None:
    clock = StepClock(10 * SEC)
    c = resil.WindowedCounter(1.0, 2, clock=clock)
    c.add()
    clock.ns = 0  # back before creation: read as 10 s
    c.add()
    assert c.total() == 2
    clock.ns = 11 * SEC - 1
    assert c.total() == 2
    clock.ns = 11 * SEC
    assert c.total() == 0
    c.add()
    clock.ns = 5 * SEC
    c.clear()  # keeps the newest time: slot 22
    c.add()
    clock.ns = 12 * SEC - 1  # slot 23: slot 22 still counts
    assert c.total() == 1
    clock.ns = 12 * SEC
    assert c.total() == 0


def test_windowed_counter_arguments() -> None:
    with pytest.raises(TypeError, match="window must be"):
        resil.WindowedCounter("1")  # type: ignore[arg-type]
    for bad in (0, -1.0, math.nan, math.inf, 10**400, 1e10):
        with pytest.raises(ValueError, match="window must be"):
            resil.WindowedCounter(bad)
    with pytest.raises(TypeError, match="slots must be an int"):
        resil.WindowedCounter(1.0, 2.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="slots must be an int"):
        resil.WindowedCounter(1.0, True)
    for slots in (0, 65, -1, 10**30):
        with pytest.raises(ValueError, match=r"slots must be an int in \[1, 64\]"):
            resil.WindowedCounter(1.0, slots)
    with pytest.raises(ValueError, match="window / slots must be at least 1 ns"):
        resil.WindowedCounter(1e-9 * 63, 64)
    resil.WindowedCounter(1e-9 * 64, 64)
    with pytest.raises(TypeError, match="clock"):
        resil.WindowedCounter(1.0, clock=object())
    with pytest.raises(TypeError, match="positional"):
        resil.WindowedCounter(1.0, 2, resil.VirtualClock())  # type: ignore[misc]
    c = resil.WindowedCounter(1.0, clock=resil.VirtualClock())
    for bad_n in (1.0, True, "1", None):
        with pytest.raises(TypeError, match="n must be an int"):
            c.add(bad_n)  # type: ignore[arg-type]
    for bad_n in (-1, 2**32, 10**400):
        with pytest.raises(ValueError, match="n must be an int in"):
            c.add(bad_n)
    with pytest.raises(TypeError):
        c.add(1, 2)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword"):
        c.add(m=1)  # type: ignore[call-arg]
    c.add(2**32 - 1)
    with pytest.raises(ValueError, match="current slot"):
        c.add(1)  # the slot would pass 2**32 - 1: nothing counted
    assert c.total() == 2**32 - 1
    assert str(inspect.signature(resil.WindowedCounter)) == "(window, slots=10, *, clock=None)"
    assert str(inspect.signature(c.add)) == "(n=1)"
    assert repr(c) == "<WindowedCounter window=1.0 slots=10>"


def test_windowed_counter_failing_clock_changes_nothing() -> None:
    clock = StepClock()
    c = resil.WindowedCounter(1.0, clock=clock)
    c.add()

    def boom() -> float:
        raise OSError("clock down")

    clock.now = boom  # type: ignore[method-assign]
    with pytest.raises(OSError):
        c.add(5)
    with pytest.raises(OSError):
        c.total()
    del clock.now
    assert c.total() == 1


def test_windowed_counter_threads() -> None:
    c = resil.WindowedCounter(3600.0, 4)
    def work(i: int) -> None:
        for _ in range(2000):
            c.add()

    run_threads(work, 8)
    assert c.total() == 16_000


class WindowedCounterMachine(RuleBasedStateMachine):
    """WindowedCounter and WindowedCounterModel in lockstep on one clock."""

    @initialize(slots=st.integers(1, 64), width=st.integers(1, 5000), extra=st.integers(0, 63),
                start=st.integers(0, 10**7), python_clock=st.booleans())
    def setup(self, slots: int, width: int, extra: int, start: int, python_clock: bool) -> None:
        window_ns = width * slots + extra % slots
        self.clock: resil.VirtualClock | StepClock
        if python_clock:
            self.clock = StepClock(start)
        else:
            self.clock = resil.VirtualClock()
            self.clock.advance_ns(start)
        # whole ns as a float: exact below 2**53
        self.c = resil.WindowedCounter(window_ns / 1e9, slots, clock=self.clock)
        self.m = WindowedCounterModel(window_ns, slots, start)
        self.window_ns = window_ns

    @property
    def now(self) -> int:
        return self.clock.ns if isinstance(self.clock, StepClock) else self.clock.now_ns()

    @rule(n=st.integers(0, 3) | st.sampled_from([1000, 2**20]))
    def add(self, n: int) -> None:
        self.c.add(n)
        self.m.add(self.now, n)

    @rule()
    def total(self) -> None:
        assert self.c.total() == self.m.total(self.now)

    @rule(kind=st.sampled_from(["zero", "slot", "window-1", "window", "random"]),
          frac=st.integers(0, 3000))
    def advance(self, kind: str, frac: int) -> None:
        w = self.window_ns
        step = {"zero": 0, "slot": self.m.width, "window-1": w - 1, "window": w,
                "random": w * frac // 1000}[kind]
        if isinstance(self.clock, StepClock):
            self.clock.ns += step
        else:
            self.clock.advance_ns(step)

    @precondition(lambda self: isinstance(self.clock, StepClock))
    @rule(back=st.integers(1, 10**6))
    def step_back(self, back: int) -> None:
        assert isinstance(self.clock, StepClock)
        self.clock.ns = max(0, self.clock.ns - back)

    @rule()
    def clear(self) -> None:
        self.c.clear()
        self.m.clear(self.now)

    @invariant()
    def stats(self) -> None:
        assert self.c.stats()["total"] == self.m.total(self.now)


TestWindowedCounterModel = WindowedCounterMachine.TestCase


# ---- the exposition: breaker families once, one number format, one label -----------

def _samples(text: str) -> dict[str, str]:
    """{'name{labels}': value text} of every sample line."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = value
    return out


def test_collector_breaker_families_are_the_c_table() -> None:
    from prometheus_client import CollectorRegistry
    from prometheus_client.parser import text_string_to_metric_families

    import resil.prometheus as rp

    clock = resil.VirtualClock()
    a = resil.CircuitBreaker("a", failure_threshold=1, clock=clock)
    a.record_failure(latency_ms=2.5)  # opens: has a last-opened time
    b = resil.CircuitBreaker("b", clock=clock)
    b.record_success(latency_ms=1.0)
    text = _resil.breaker_exposition([a, b])
    expected = {(f.name, f.type, f.documentation): sorted((s.name, tuple(s.labels.items()), s.value)
                                                          for s in f.samples)
                for f in text_string_to_metric_families(text)}
    registry = CollectorRegistry()
    registry.register(rp.Collector(a, b))
    got = {}
    for f in registry.collect():
        if not f.name.startswith("resil_circuit_breaker"):
            continue
        got[(f.name, f.type, f.documentation)] = sorted(
            (s.name, tuple(s.labels.items()), s.value) for s in f.samples
            if not s.name.endswith("_created"))
    assert got == expected
    fams = _resil.breaker_families([a, b])
    assert [f[0] for f in fams] == [line.split()[2] for line in text.splitlines()
                                    if line.startswith("# HELP")]
    assert dict(fams[0][3]) == {"a": int(resil.State.OPEN), "b": int(resil.State.CLOSED)}
    assert type(fams[1][3][0][1]) is int and type(fams[2][3][0][1]) is float


def test_one_number_format_in_every_family() -> None:
    import resil.prometheus as rp

    clock = resil.VirtualClock()
    m = resil.Monitor(clock=clock)
    m.record("db", "query", 1000.0, True)
    b = resil.CircuitBreaker("db", clock=clock)
    b.record_success(latency_ms=2.0)
    s = _samples(rp.exposition(b, m))
    # floats as their repr, integral ones included; ints in decimal
    assert s['resil_circuit_breaker_success_ratio{endpoint="db"}'] == "1.0"
    assert s['resil_circuit_breaker_latency_ms{endpoint="db"}'] == "2.0"
    assert s['resil_request_duration_seconds_sum{component="db"}'] == "1.0"
    assert s['resil_circuit_breaker_state{endpoint="db"}'] == "0"
    assert s['resil_request_duration_seconds_count{component="db"}'] == "1"
    assert s['resil_requests_total{component="db",operation="query",status="success"}'] == "1"
    assert s["resil_system_health_status"] == "0"


def test_an_overflowing_latency_mean_is_plus_inf() -> None:
    import resil.prometheus as rp

    b = resil.CircuitBreaker("huge", clock=resil.VirtualClock())
    b.record_success(latency_ms=1.7e308)
    b.record_success(latency_ms=1.7e308)  # the sum overflows
    assert b.stats()["avg_latency_ms"] == math.inf
    s = _samples(rp.exposition(b))
    assert s['resil_circuit_breaker_latency_ms{endpoint="huge"}'] == "+Inf"
    assert dict(_resil.breaker_families([b])[2][3]) == {"huge": math.inf}


def test_a_breaker_is_endpoint_in_every_family() -> None:
    import resil.prometheus as rp

    clock = resil.VirtualClock()
    m = resil.Monitor(clock=clock)
    b = resil.CircuitBreaker("payments", failure_threshold=1, clock=clock)
    m.watch(b)
    b.record_failure()  # a trip, recorded by the monitor
    m.record("payments", "charge", 1.0, False)
    text = rp.exposition(b, m)
    s = _samples(text)
    assert s['resil_circuit_breaker_trips_total{endpoint="payments"}'] == "1"
    breaker_lines = [k for k in s if k.startswith("resil_circuit_breaker")]
    assert len(breaker_lines) == 7
    assert all(k.split("{", 1)[1].startswith('endpoint="payments"}') for k in breaker_lines)
