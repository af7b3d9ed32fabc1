"""Each concept once: the Python layer uses what the C engine has instead of
keeping a copy (time-scale presets, windowed counts, TTL maps, the breaker
families of the exposition)."""

from __future__ import annotations

import asyncio
import gc
import inspect
import itertools
import math
import sys
import weakref

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from tests_support import run_threads

import resil
from resil import _resil

try:  # pytest's default "prepend" import mode puts tests/ on sys.path
    from model.counter import WindowedCounterModel
    from test_dedup import KEYS as DEDUP_KEYS
    from test_dedup import DedupMachine
except ModuleNotFoundError:  # pragma: no cover - tests/ made a package
    from tests.model.counter import WindowedCounterModel  # type: ignore[no-redef]
    from tests.test_dedup import KEYS as DEDUP_KEYS  # type: ignore[no-redef]
    from tests.test_dedup import DedupMachine  # type: ignore[no-redef]


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
    db = 'component="db",operation="query",status="success"'
    assert s['resil_request_duration_seconds_sum{' + db + '}'] == "1.0"
    assert s['resil_request_duration_seconds_bucket{' + db + ',le="1.0"}'] == "1"
    assert s['resil_circuit_breaker_state{endpoint="db"}'] == "0"
    assert s['resil_request_duration_seconds_count{' + db + '}'] == "1"
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


def test_a_breaker_is_endpoint_in_every_breaker_family() -> None:
    import resil.prometheus as rp
    from prometheus_client import CollectorRegistry, generate_latest

    clock = resil.VirtualClock()
    m = resil.Monitor(clock=clock)
    b = resil.CircuitBreaker("payments", failure_threshold=1, clock=clock)
    m.watch(b)
    b.record_failure()  # a trip, recorded by the monitor
    m.record("payments", "charge", 1.0, False)
    registry = CollectorRegistry()
    registry.register(rp.Collector(b, m))
    breaker_families = {f[0] for f in _resil.breaker_families([b])}
    assert len(breaker_families) == 6
    # the C renderer (exposition) and the Python one (Collector) alike
    for text in (rp.exposition(b, m), generate_latest(registry).decode()):
        s = _samples(text)
        lines = [k for k in s if k.split("{", 1)[0] in breaker_families]
        assert len(lines) == 6
        assert all(k.split("{", 1)[1] == 'endpoint="payments"}' for k in lines)
        # the monitor's trips are counted per component, as its other
        # families are: the watched breaker's name is the component
        trips = [k for k in s if k.startswith("resil_circuit_breaker_trips_total")]
        assert trips == ['resil_circuit_breaker_trips_total{component="payments"}']
        assert float(s[trips[0]]) == 1


# ---- Deduplicator values: the TTL map of idempotent and the bus -----------------------

class DedupValuesMachine(DedupMachine):
    """DedupMachine's rules (seen, contains, discard, advance, clear) and put
    and get, on the Deduplicator and DedupModel in lockstep."""

    serial = itertools.count()

    @rule(key=DEDUP_KEYS, none=st.booleans())
    def put(self, key: object, none: bool) -> None:
        value = None if none else ("v", next(self.serial))
        self.c.put(key, value)
        self.m.put(key, value, self.now)

    @rule(key=DEDUP_KEYS)
    def get(self, key: object) -> None:
        missing = object()
        assert self.c.get(key, missing) is self.m.get(key, self.now, missing)
        assert self.c.get(key) is self.m.get(key, self.now)

    @rule()
    def clear(self) -> None:
        super().clear()
        self.m.values.clear()


TestDedupValuesModel = DedupValuesMachine.TestCase


def test_dedup_put_get_and_ttl() -> None:
    clock = resil.VirtualClock()
    d = resil.Deduplicator(ttl=10.0, clock=clock)
    d.put("k", "first")
    assert d.get("k") == "first" and "k" in d
    assert d.seen("k") and d.duplicate_count == 1
    clock.advance(9.0)
    d.put("k", "second")  # the ttl starts again
    clock.advance(9.0)
    assert d.get("k") == "second"
    clock.advance(1.0)
    assert d.get("k") is None and d.get("k", 0) == 0 and "k" not in d
    d.seen("plain")
    assert d.get("plain", "missing") is None  # recorded without a value
    assert str(inspect.signature(d.put)) == "(key, value, /)"
    assert str(inspect.signature(d.get)) == "(key, default=None, /)"
    with pytest.raises(TypeError):
        d.put("k")  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        d.get()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unhashable"):
        d.put([], 1)
    with pytest.raises(TypeError, match="unhashable"):
        d.get([])


def test_dedup_values_are_released_and_collected() -> None:
    class Value:
        pass

    clock = resil.VirtualClock()
    d = resil.Deduplicator(ttl=1.0, capacity=2, clock=clock)
    v1, v2, v3 = Value(), Value(), Value()
    r1, r2, r3 = weakref.ref(v1), weakref.ref(v2), weakref.ref(v3)
    d.put("a", v1)
    d.put("a", v2)  # replaced: v1 released
    d.put("b", v3)
    del v1, v2, v3
    assert r1() is None and r2() is not None and r3() is not None
    d.put("c", None)  # capacity 2: "a" and its value evicted
    assert r2() is None
    clock.advance(1.0)
    assert len(d) == 0 and r3() is None  # expired
    # a cycle through a value (the value holds the Deduplicator) is collected
    cyc = Value()
    cyc.d = d  # type: ignore[attr-defined]
    d.put("cycle", cyc)
    rd, rc = weakref.ref(d), weakref.ref(cyc)
    del d, cyc
    gc.collect()
    assert rd() is None and rc() is None


def test_dedup_put_with_a_failing_eq_keeps_nothing() -> None:
    class Bad:
        def __hash__(self) -> int:
            return 1

        def __eq__(self, other: object) -> bool:
            raise ZeroDivisionError("eq")

    d = resil.Deduplicator(clock=resil.VirtualClock())
    d.put(Bad(), "x")
    value = object()
    before = sys.getrefcount(value)
    with pytest.raises(ZeroDivisionError):
        d.put(Bad(), value)
    assert sys.getrefcount(value) == before and len(d) == 1
    with pytest.raises(ZeroDivisionError):
        d.get(Bad())


def test_dedup_put_get_across_threads() -> None:
    d = resil.Deduplicator(capacity=1 << 16)
    errors: list[str] = []

    def work(i: int) -> None:
        for n in range(1500):
            key = (i, n % 50)
            d.put(key, n)
            got = d.get(key)
            if got is None or got % 50 != n % 50:
                errors.append(f"{key}: {got}")

    run_threads(work, 8)
    assert not errors and len(d) == 8 * 50


def test_idempotent_keeps_results_in_a_deduplicator() -> None:
    """A finished result (None included) is returned again until ttl on the
    loop's clock; cache_clear forgets it; an exception is not kept."""
    calls: list[int] = []

    @resil.idempotent(key=lambda x: x, ttl=5.0)
    async def work(x: int) -> int | None:
        calls.append(x)
        await asyncio.sleep(1.0)
        if x < 0:
            raise ValueError(x)
        return None if x == 0 else x * 10

    async def main() -> None:
        assert await asyncio.gather(work(1), work(1), work(0)) == [10, 10, None]
        assert calls == [1, 0]
        await asyncio.sleep(4.999)  # finished at t=1: kept until t=6
        assert await work(1) == 10 and await work(0) is None and calls == [1, 0]
        await asyncio.sleep(0.001)
        assert await work(1) == 10 and calls == [1, 0, 1]
        work.cache_clear()  # type: ignore[attr-defined]
        assert await work(1) == 10 and calls == [1, 0, 1, 1]
        for _ in range(2):
            with pytest.raises(ValueError):
                await work(-1)
        assert calls.count(-1) == 2

    resil.run_virtual(main())


def test_bus_idempotency_originals_live_in_its_deduplicator() -> None:
    clock = resil.VirtualClock()
    bus = resil.EventBus(clock=clock, idempotency_ttl=10.0)
    got: list[object] = []
    bus.subscribe("t", got.append)

    async def main() -> None:
        first = await bus.publish("t", {"n": 1}, idempotency_key="k")
        assert await bus.publish("t", {"n": 2}, idempotency_key="k") is first
        assert bus._dedup.get("k") is first
        clock.advance(10.0)
        again = await bus.publish("t", {"n": 3}, idempotency_key="k")
        assert again is not first and again.seq == first.seq + 1

    resil.run_virtual(main(), clock)
    assert len(got) == 2 and bus.stats()["duplicates"] == 1
    assert not hasattr(bus, "_originals")
