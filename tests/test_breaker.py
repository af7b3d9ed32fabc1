"""Behaviour of resil.CircuitBreaker: its named scenarios."""

from __future__ import annotations

import asyncio
import inspect
import logging
import pickle
import threading

import pytest

import resil
from resil import CircuitBreaker, CircuitOpenError, State, VirtualClock

SEC = 1_000_000_000


def make(clock: VirtualClock | None = None, **kw: object) -> CircuitBreaker:
    kw.setdefault("clock", clock or VirtualClock())
    return CircuitBreaker("svc", **kw)  # type: ignore[arg-type]


def fail_times(b: CircuitBreaker, n: int) -> None:
    for _ in range(n):
        b.record_failure(b.acquire(), 1.0)


def trip(b: CircuitBreaker) -> None:
    b.open()
    assert b.state == State.OPEN


# ---- clocks -----------------------------------------------------------------

def test_virtual_clock_moves_only_forward() -> None:
    c = VirtualClock(5)
    assert c.now() == 5.0 and c.now_ns() == 5 * SEC
    c.advance(0.25)
    assert c.now_ns() == 5 * SEC + 250_000_000
    c.set(10)
    assert c.now() == 10.0
    with pytest.raises(ValueError, match="backwards"):
        c.advance(-1)
    with pytest.raises(ValueError, match="backwards"):
        c.set(9.5)
    with pytest.raises(ValueError):
        c.advance(float("nan"))
    with pytest.raises(TypeError):
        c.advance("1")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        VirtualClock(-1)
    assert c.now() == 10.0


def test_monotonic_clock_is_monotonic() -> None:
    c = resil.MonotonicClock()
    a, b = c.now_ns(), c.now_ns()
    assert 0 < a <= b


def test_python_clock_object_is_accepted_and_validated() -> None:
    class Clock:
        t = 100.0

        def now(self) -> float:
            return self.t

    clk = Clock()
    b = CircuitBreaker("p", clock=clk, cooldown=5, failure_threshold=1)
    b.record_failure(b.acquire(), 1.0)
    assert b.state == State.OPEN
    clk.t = 105.0
    assert b.state == State.HALF_OPEN
    with pytest.raises(TypeError, match="now"):
        CircuitBreaker("p", clock=object())


# ---- configuration ----------------------------------------------------------

@pytest.mark.parametrize("kw,name", [
    ({"failure_threshold": -1}, "failure_threshold"),
    ({"failure_rate_threshold": 0.0}, "failure_rate_threshold"),
    ({"failure_rate_threshold": 1.5}, "failure_rate_threshold"),
    ({"slow_call_duration": 0}, "slow_call_duration"),
    ({"slow_call_rate_threshold": 0}, "slow_call_rate_threshold"),
    ({"window_size": 0}, "window_size"),
    ({"window_size": 2_000_000}, "window_size"),
    ({"window_duration": 0}, "window_duration"),
    ({"minimum_calls": 200}, "minimum_calls"),
    ({"cooldown": -1}, "cooldown"),
    ({"cooldown": float("inf")}, "cooldown"),
    ({"cooldown_multiplier": 0.5}, "cooldown_multiplier"),
    ({"cooldown_max": 10}, "cooldown_max"),
    ({"half_open_probes": -1}, "half_open_probes"),
    ({"half_open_max_wait": 0}, "half_open_max_wait"),
    ({"ewma_alpha": 0.001}, "ewma_alpha"),
    ({"ewma_alpha": float("nan")}, "ewma_alpha"),
    ({"sensitivity": 6}, "sensitivity"),
    ({"min_health_score": 1.1}, "min_health_score"),
    ({"latency_window": 0}, "latency_window"),
])
def test_bad_values_raise_value_error_naming_parameter_and_range(kw: dict, name: str) -> None:
    with pytest.raises(ValueError, match=rf"^{name} must be .*got") as info:
        CircuitBreaker("x", **kw)
    assert any(ch in str(info.value) for ch in "[(>")  # the allowed range is named


@pytest.mark.parametrize("kw,name", [
    ({"failure_threshold": 2.5}, "failure_threshold"),
    ({"failure_threshold": True}, "failure_threshold"),
    ({"cooldown": "60"}, "cooldown"),
    ({"adaptive": 1}, "adaptive"),
    ({"failure_on": ValueError()}, "failure_on"),
    ({"ignore": (KeyError, 3)}, "ignore"),
    ({"failure_if": 3}, "failure_if"),
    ({"result_failure": "x"}, "result_failure"),
])
def test_bad_types_raise_type_error_naming_parameter(kw: dict, name: str) -> None:
    with pytest.raises(TypeError, match=name):
        CircuitBreaker("x", **kw)


def test_name_must_be_str() -> None:
    with pytest.raises(TypeError, match="name"):
        CircuitBreaker(42)  # type: ignore[arg-type]


def test_defaults_match_spec() -> None:
    cfg = CircuitBreaker().config
    assert cfg == {
        "name": "default", "failure_threshold": 5, "failure_rate_threshold": None,
        "slow_call_duration": None, "slow_call_rate_threshold": 1.0, "window_size": 100,
        "window_duration": None, "minimum_calls": 10, "cooldown": 60.0,
        "cooldown_multiplier": 2.0, "cooldown_max": 600.0, "half_open_probes": 3,
        "half_open_max_wait": None, "adaptive": True, "ewma_alpha": 0.3, "sensitivity": 2.0,
        "min_health_score": 0.3, "latency_window": 50, "failure_on": (Exception,),
        "ignore": (), "failure_if": None, "result_failure": None,
    }


# ---- trips, cooldown, half-open ---------------------------------------------

def test_consecutive_failures_trip_and_success_resets_count() -> None:
    b = make(failure_threshold=3, adaptive=False)
    fail_times(b, 2)
    b.record_success(b.acquire(), 1.0)
    fail_times(b, 2)
    assert b.state == State.CLOSED
    fail_times(b, 1)
    assert b.state == State.OPEN
    with pytest.raises(CircuitOpenError) as info:
        b.acquire()
    err = info.value
    assert err.name == "svc" and err.state == State.OPEN and err.remaining == 60.0
    assert isinstance(err, resil.ResilError)


def test_cooldown_minus_one_ns_stays_open_full_cooldown_half_opens() -> None:
    clock = VirtualClock()
    b = make(clock, cooldown=30)
    trip(b)
    clock.advance_ns(30 * SEC - 1)
    assert b.state == State.OPEN
    with pytest.raises(CircuitOpenError) as info:
        b.acquire()
    assert info.value.remaining == pytest.approx(1e-9)
    clock.advance_ns(1)
    assert b.state == State.HALF_OPEN


@pytest.mark.parametrize("probes", [1, 3, 10])
def test_half_open_admits_exactly_the_probes_and_rejects_the_next(probes: int) -> None:
    clock = VirtualClock()
    b = make(clock, half_open_probes=probes, cooldown=1)
    trip(b)
    clock.advance(1)
    permits = [b.acquire() for _ in range(probes)]
    assert all(p.probe for p in permits)
    with pytest.raises(CircuitOpenError) as info:
        b.acquire()
    assert info.value.state == State.HALF_OPEN and info.value.remaining == 0.0
    # a released probe goes back to the pool, and only that one
    b.release(permits.pop())
    extra = b.acquire()
    with pytest.raises(CircuitOpenError):
        b.acquire()
    for p in [*permits, extra][:-1]:
        b.record_success(p, 1.0)
        assert b.state == State.HALF_OPEN
    b.record_success(extra, 1.0)
    assert b.state == State.CLOSED


def test_probe_failure_reopens_and_growth_stops_at_cooldown_max() -> None:
    clock = VirtualClock()
    b = make(clock, cooldown=10, cooldown_multiplier=3, cooldown_max=100, half_open_probes=1)
    trip(b)
    seen = []
    for _ in range(5):
        seen.append(b.stats()["cooldown"])
        clock.advance(b.remaining or 0)
        b.record_failure(b.acquire(), 1.0)
        assert b.state == State.OPEN
    assert seen == [10.0, 30.0, 90.0, 100.0, 100.0]
    clock.advance(100)
    b.record_success(b.acquire(), 1.0)
    assert b.state == State.CLOSED and b.stats()["cooldown"] == 10.0


def test_zero_probes_close_straight_after_cooldown() -> None:
    clock = VirtualClock()
    b = make(clock, half_open_probes=0, cooldown=2)
    trip(b)
    clock.advance(2)
    assert b.state == State.CLOSED


def test_half_open_max_wait_reopens_undecided_half_open() -> None:
    clock = VirtualClock()
    b = make(clock, cooldown=1, half_open_max_wait=5, half_open_probes=2)
    trip(b)
    clock.advance(1)
    p = b.acquire()
    clock.advance(5)
    assert b.state == State.OPEN
    assert b.stats()["cooldown"] == 2.0
    b.record_success(p, 1.0)  # decided too late: stale
    assert b.state == State.OPEN and b.stats()["stale_outcomes"] == 1


def test_late_outcome_from_earlier_epoch_never_drives_a_transition() -> None:
    clock = VirtualClock()
    b = make(clock, cooldown=1, half_open_probes=1, failure_threshold=1)
    slow = b.acquire()  # admitted while CLOSED
    trip(b)
    clock.advance(1)
    probe = b.acquire()
    assert b.state == State.HALF_OPEN
    b.record_success(slow, 1.0)  # must not close the half-open breaker
    assert b.state == State.HALF_OPEN
    b.record_success(probe, 1.0)
    assert b.state == State.CLOSED
    # and a stale failure cannot reopen it
    stale = b.acquire()
    b.force_open()
    b.close()
    b.record_failure(stale, 1.0)
    assert b.state == State.CLOSED
    assert b.stats()["stale_outcomes"] == 2


def test_permit_reports_once() -> None:
    b = make()
    p = b.acquire()
    b.record_success(p, 1.0)
    assert p.done
    with pytest.raises(ValueError, match="already"):
        b.record_failure(p, 1.0)
    with pytest.raises(ValueError, match="already"):
        b.release(p)
    assert b.stats()["successes"] == 1 and b.stats()["failures"] == 0
    other = make()
    with pytest.raises(ValueError, match="another breaker"):
        other.record_success(b.acquire())
    with pytest.raises(TypeError):
        b.record_success("permit")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="latency_ms"):
        b.record_success(b.acquire(), -1.0)


def test_record_without_latency_measures_it_from_acquire() -> None:
    clock = VirtualClock()
    b = make(clock)
    p = b.acquire()
    clock.advance(0.25)
    b.record_success(p)
    assert b.stats()["avg_latency_ms"] == 250.0


def test_failure_rate_and_slow_rate_rules_wait_for_minimum_calls() -> None:
    b = make(failure_threshold=0, failure_rate_threshold=0.5, minimum_calls=4, window_size=10)
    b.record_failure(b.acquire(), 1.0)
    b.record_failure(b.acquire(), 1.0)
    b.record_success(b.acquire(), 1.0)
    assert b.state == State.CLOSED  # 3 calls < minimum_calls
    b.record_success(b.acquire(), 1.0)
    assert b.state == State.OPEN and b.stats()["failure_rate"] == 0.5

    s = make(failure_threshold=0, slow_call_duration=0.5, slow_call_rate_threshold=0.5,
             minimum_calls=2, window_size=10)
    s.record_success(s.acquire(), 499.0)
    s.record_success(s.acquire(), 500.0)
    assert s.state == State.OPEN and s.stats()["slow_calls"] == 1


def test_time_window_forgets_old_outcomes() -> None:
    clock = VirtualClock()
    b = make(clock, failure_threshold=0, failure_rate_threshold=0.5, minimum_calls=2,
             window_duration=10)
    b.record_failure(b.acquire(), 1.0)
    clock.advance(10)
    b.record_failure(b.acquire(), 1.0)
    assert b.stats()["window_calls"] == 1 and b.state == State.CLOSED
    b.record_success(b.acquire(), 1.0)
    assert b.state == State.OPEN


# ---- health score -----------------------------------------------------------

@pytest.mark.parametrize("latency,score", [
    (0, 1.0), (100, 0.95), (550, 0.725), (1000, 0.5), (3000, 0.25), (5000, 0.0), (9000, 0.0),
])
def test_latency_band_edges(latency: float, score: float) -> None:
    b = make(min_health_score=0.0)
    b.record_success(b.acquire(), latency)  # one sample: jitter 0 -> 1.0
    assert b.health_score == pytest.approx(0.5 + 0.3 * score + 0.2 * 1.0)


@pytest.mark.parametrize("spread,score", [
    (0, 1.0), (50, 0.8), (125, 0.55), (200, 0.3), (350, 0.15), (500, 0.0), (800, 0.0),
])
def test_jitter_band_edges(spread: float, score: float) -> None:
    # two samples m - s and m + s have a population stddev of exactly s
    b = make(min_health_score=0.0)
    mean = 1000.0
    b.record_success(b.acquire(), mean - spread)
    b.record_success(b.acquire(), mean + spread)
    assert b.stats()["jitter_ms"] == pytest.approx(spread)
    assert b.health_score == pytest.approx(0.5 + 0.3 * 0.5 + 0.2 * score)


def test_empty_breaker_is_fully_healthy_and_success_rate_weighs_half() -> None:
    b = make(min_health_score=0.0, failure_threshold=0)
    assert b.health_score == 1.0
    b.record_failure(b.acquire(), None)
    b.record_success(b.acquire(), None)
    assert b.health_score == pytest.approx(0.5 * 0.5 + 0.3 + 0.2)


def test_degraded_below_min_health_and_back_above_0_7_without_new_epoch() -> None:
    b = make(min_health_score=0.5, minimum_calls=1, failure_threshold=0)
    p_before = b.acquire()
    b.record_success(b.acquire(), 6000.0)  # latency and jitter parts 0 -> 0.5 + 0.2
    assert b.state == State.CLOSED
    b.record_failure(b.acquire(), 6000.0)
    assert b.state == State.DEGRADED  # 0.25 + 0 + 0.2*? < 0.5
    assert p_before.epoch == b.stats()["epoch"]
    for _ in range(60):
        b.record_success(b.acquire(), 10.0)
    assert b.state == State.CLOSED
    b.record_success(p_before, 10.0)
    assert b.stats()["stale_outcomes"] == 0


def test_health_below_half_the_minimum_trips() -> None:
    b = make(min_health_score=0.6, minimum_calls=2, failure_threshold=0)
    b.record_failure(b.acquire(), 6000.0)
    b.record_failure(b.acquire(), 6000.0)
    assert b.state == State.OPEN
    assert b.stats()["transitions"]["OPEN"] == 1


# ---- adaptive threshold -----------------------------------------------------

def test_chronic_failure_lowers_threshold_a_spike_does_not() -> None:
    chronic = make(failure_threshold=9, window_size=10, minimum_calls=0)  # period: 1 outcome
    spike = make(failure_threshold=9, window_size=10, minimum_calls=0)
    for i in range(40):
        # 4 failures in 5, never 9 in a row: steady degradation
        (chronic.record_success if i % 5 == 0 else chronic.record_failure)(chronic.acquire(), 1.0)
    assert chronic.effective_threshold < 9
    for _ in range(40):
        spike.record_success(spike.acquire(), 1.0)
    for _ in range(3):
        spike.record_failure(spike.acquire(), 1.0)
    assert spike.effective_threshold == 9
    assert make(adaptive=False).effective_threshold == 5


# ---- outcome classification -------------------------------------------------

def test_ignore_wins_over_failure_on() -> None:
    b = make(failure_on=(LookupError,), ignore=(KeyError,))

    @b
    def f(exc: BaseException) -> None:
        raise exc

    for exc, key in [(KeyError(), "released"), (IndexError(), "failures"),
                     (ValueError(), "successes")]:
        with pytest.raises(type(exc)):
            f(exc)
        assert b.stats()[key] == 1


def test_failure_if_refines_and_result_failure_counts_values() -> None:
    b = make(failure_if=lambda e: "fatal" in str(e),
             result_failure=lambda r: r is None)

    def boom(msg: str) -> None:
        raise RuntimeError(msg)

    with pytest.raises(RuntimeError):
        b.call(boom, "fatal error")
    with pytest.raises(RuntimeError):
        b.call(boom, "benign")
    assert b.call(lambda: None) is None
    assert b.call(lambda: 3) == 3
    st = b.stats()
    assert st["failures"] == 2 and st["successes"] == 2


def test_predicate_error_is_raised_chained_to_the_original() -> None:
    def bad_predicate(exc: BaseException) -> bool:
        raise ZeroDivisionError("predicate bug")

    b = make(failure_if=bad_predicate)
    with pytest.raises(ZeroDivisionError) as info:
        b.call(lambda: {}["k"])
    assert isinstance(info.value.__context__, KeyError)
    assert b.stats()["failures"] == 1


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit, GeneratorExit,
                                      asyncio.CancelledError])
def test_cancellation_releases_the_permit_and_is_reraised_sync(exc_type: type) -> None:
    clock = VirtualClock()
    b = make(clock, half_open_probes=1, cooldown=1, failure_on=(BaseException,))

    @b
    def f() -> None:
        raise exc_type()

    trip(b)
    clock.advance(1)
    with pytest.raises(exc_type):
        f()  # the one probe
    assert b.state == State.HALF_OPEN
    st = b.stats()
    assert st["released"] == 1 and st["failures"] == 0 and st["half_open_probes_granted"] == 0
    with pytest.raises(exc_type):
        with b:
            raise exc_type()
    with pytest.raises(exc_type):
        b.call(f.__wrapped__)
    assert b.stats()["released"] == 3


def test_cancelled_coroutine_releases_probe_permit() -> None:
    clock = VirtualClock()
    b = make(clock, half_open_probes=1, cooldown=1)

    @b
    async def hang() -> None:
        await asyncio.Event().wait()

    async def main() -> None:
        trip(b)
        clock.advance(1)
        task = asyncio.create_task(hang())
        await asyncio.sleep(0)
        assert b.stats()["half_open_probes_granted"] == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert b.stats()["half_open_probes_granted"] == 0
        assert b.stats()["released"] == 1

    asyncio.run(main())


def test_keyboard_interrupt_in_coroutine_releases_and_reraises() -> None:
    b = make()

    @b
    async def f() -> None:
        raise KeyboardInterrupt

    coro = f()
    with pytest.raises(KeyboardInterrupt):
        coro.send(None)
    assert b.stats()["released"] == 1 and b.stats()["failures"] == 0


# ---- listeners and logging --------------------------------------------------

def test_listener_that_raises_is_logged_and_breaker_keeps_working(
        caplog: pytest.LogCaptureFixture) -> None:
    b = make(failure_threshold=1)
    calls = []

    def bad(*args: object) -> None:
        raise RuntimeError("listener bug")

    b.on_state_change(bad)
    b.on_state_change(lambda br, old, new, reason: calls.append((old, new, reason)))
    with caplog.at_level(logging.INFO, logger="resil.breaker"):
        b.record_failure(b.acquire(), 12.5)
    assert b.state == State.OPEN
    assert calls == [(State.CLOSED, State.OPEN, "consecutive_failures")]
    assert any("listener" in r.getMessage() and r.exc_info for r in caplog.records)
    rec = next(r for r in caplog.records if getattr(r, "state_transition", None))
    assert rec.endpoint == "svc"
    assert rec.state_transition == "CLOSED -> OPEN"
    assert rec.reason == "consecutive_failures"
    assert rec.fail_count == 1
    assert rec.success_rate == "0.00%"
    assert rec.latency_ms == 12.5
    assert rec.levelno == logging.WARNING
    b.remove_listener(bad)
    with pytest.raises(ValueError):
        b.remove_listener(bad)


def test_time_driven_transition_logs_no_latency(caplog: pytest.LogCaptureFixture) -> None:
    clock = VirtualClock()
    b = make(clock, failure_threshold=1, cooldown=1)
    with caplog.at_level(logging.INFO, logger="resil.breaker"):
        b.record_failure(b.acquire(), 42.0)
        clock.advance(1)
        assert b.state == State.HALF_OPEN
        b.force_open()
    got = [(r.state_transition, r.latency_ms) for r in caplog.records]
    assert got == [("CLOSED -> OPEN", 42.0), ("OPEN -> HALF_OPEN", None),
                   ("HALF_OPEN -> FORCED_OPEN", None)]


def test_manual_control() -> None:
    clock = VirtualClock()
    b = make(clock, failure_threshold=1)
    b.force_open()
    assert b.state == State.FORCED_OPEN
    clock.advance(10_000)
    with pytest.raises(CircuitOpenError) as info:
        b.acquire()
    assert info.value.remaining is None and b.remaining is None
    b.disable()
    for _ in range(10):
        b.record_failure(b.acquire(), 1.0)
    assert b.state == State.DISABLED and b.stats()["failures"] == 10
    b.reset()
    st = b.stats()
    assert st["state"] == State.CLOSED and st["failures"] == 0 and st["window_calls"] == 0
    b.open()
    assert b.state == State.OPEN and b.remaining == 60.0
    b.close()
    assert b.state == State.CLOSED
    assert isinstance(b.last_opened, float)


def test_stats_has_documented_keys() -> None:
    st = make().stats()
    for key in ("state", "successes", "failures", "rejected", "failure_rate",
                "ewma_failure_rate", "ewma_stddev", "effective_threshold", "health_score",
                "avg_latency_ms", "jitter_ms", "cooldown", "remaining", "last_opened",
                "transitions"):
        assert key in st
    assert set(st["transitions"]) == {s.name for s in State}


# ---- use forms --------------------------------------------------------------

def test_decorator_keeps_metadata_and_binds_as_method() -> None:
    b = make()

    @b
    def add(x: int, y: int = 1) -> int:
        """Adds."""
        return x + y

    @b
    async def aadd(x: int) -> int:
        return x + 1

    assert add.__name__ == "add" and add.__doc__ == "Adds."
    assert inspect.signature(add) == inspect.signature(add.__wrapped__)
    assert add(1, y=2) == 3
    assert inspect.iscoroutinefunction(aadd) and asyncio.iscoroutinefunction(aadd)
    assert not inspect.iscoroutinefunction(add)

    class C:
        @b
        def m(self, v: int) -> tuple:
            return (self, v)

    c = C()
    assert c.m(4) == (c, 4)
    assert C.m(c, 5) == (c, 5)


def test_generator_functions_are_refused() -> None:
    b = make()
    with pytest.raises(TypeError, match="generator"):
        b(lambda: (yield))
    with pytest.raises(TypeError, match="generator"):
        async def agen():  # type: ignore[no-untyped-def]
            yield 1
        b(agen)


def test_with_and_async_with() -> None:
    b = make(failure_threshold=2)
    with b:
        pass
    with pytest.raises(ValueError):
        with b:
            raise ValueError
    nested = make()
    with b:
        with nested:
            pass
    assert nested.stats()["successes"] == 1

    async def main() -> None:
        async with b:
            await asyncio.sleep(0)
        with pytest.raises(ValueError):
            async with b:
                raise ValueError

    asyncio.run(main())
    st = b.stats()
    assert st["successes"] == 3 and st["failures"] == 2
    assert b.state == State.CLOSED and st["consecutive_failures"] == 1  # not consecutive
    b.open()
    with pytest.raises(CircuitOpenError):
        with b:
            pytest.fail("body ran while open")
    with pytest.raises(RuntimeError, match="matching __enter__"):
        b.__exit__(None, None, None)


def test_concurrent_async_with_keeps_permits_per_task() -> None:
    clock = VirtualClock()
    b = make(clock, cooldown=1, half_open_probes=2)
    trip(b)
    clock.advance(1)
    gate = asyncio.Event()

    async def probe(ok: bool) -> None:
        async with b:
            await gate.wait()
            if not ok:
                raise ValueError

    async def main() -> None:
        t1 = asyncio.create_task(probe(True))
        t2 = asyncio.create_task(probe(True))
        await asyncio.sleep(0)
        with pytest.raises(CircuitOpenError):
            async with b:
                pass
        gate.set()
        await asyncio.gather(t1, t2)

    asyncio.run(main())
    assert b.state == State.CLOSED


def test_call_async_calls_lazily_and_accepts_awaitables() -> None:
    b = make()
    called = []

    def make_future() -> asyncio.Future:
        called.append(1)
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(7)
        return fut

    async def main() -> None:
        aw = b.call_async(make_future)
        assert called == []
        assert await aw == 7
        with pytest.raises(TypeError, match="awaitable"):
            await b.call_async(lambda: 3)

    asyncio.run(main())
    st = b.stats()
    assert st["successes"] == 1 and st["released"] == 1


def test_rejected_coroutine_is_closed_without_warning() -> None:
    b = make()
    ran = []

    @b
    async def f() -> None:
        ran.append(1)

    b.force_open()

    async def main() -> None:
        with pytest.raises(CircuitOpenError):
            await f()

    asyncio.run(main())  # filterwarnings=error turns "never awaited" into a failure
    assert ran == []


def test_awaitable_reused_after_completion_raises() -> None:
    b = make()

    @b
    async def f() -> int:
        return 1

    async def main() -> None:
        aw = f()
        assert await aw == 1
        with pytest.raises(RuntimeError, match="reuse"):
            await aw

    asyncio.run(main())


def test_awaitable_dropped_mid_flight_returns_its_probe() -> None:
    clock = VirtualClock()
    b = make(clock, cooldown=1, half_open_probes=1)

    @b
    async def f() -> None:
        await asyncio.sleep(0)

    trip(b)
    clock.advance(1)
    aw = f()
    aw.send(None)  # started: holds the only probe
    assert b.stats()["half_open_probes_granted"] == 1
    aw.close()
    assert b.stats()["half_open_probes_granted"] == 0
    b.acquire()


def test_open_error_pickles_and_formats() -> None:
    err = CircuitOpenError("db", State.OPEN, 1.5)
    again = pickle.loads(pickle.dumps(err))
    assert (again.name, again.state, again.remaining) == ("db", State.OPEN, 1.5)
    assert "db" in str(err) and "OPEN" in str(err) and "1.500" in str(err)
    assert repr(err) == "CircuitOpenError('db', <State.OPEN: 2>, 1.5)"


def test_rejected_coroutine_call_creates_no_coroutine_and_admits_later() -> None:
    clock = VirtualClock()
    b = make(clock, cooldown=1, half_open_probes=1)
    made = []

    @b
    async def f(x: int, *, y: int = 0) -> int:
        made.append(x)
        return x + y

    async def main() -> None:
        b.open()
        with pytest.raises(CircuitOpenError):
            await f(1, y=1)
        aw = f(2, y=3)  # made while OPEN: arguments kept, no coroutine yet
        clock.advance(1)  # ... and admitted when awaited after the cooldown
        assert await aw == 5
        assert b.state == State.CLOSED

    asyncio.run(main())
    assert made == [2]


# ---- group ------------------------------------------------------------------

def test_group_creates_per_endpoint_and_caps_ejection() -> None:
    g = resil.BreakerGroup(max_ejection_percent=50, failure_threshold=1, clock=VirtualClock())
    for name in "abcd":
        g[name]
    assert len(g) == 4 and "a" in g and "z" not in g
    g.record_failure("a")
    g.record_failure("b")
    g.record_failure("c")
    states = [g[n].state for n in "abcd"]
    assert states == [State.OPEN, State.OPEN, State.DEGRADED, State.CLOSED]
    st = g.stats()
    assert st["ejected"] == 2 and st["vetoed_trips"] == 1
    assert st["endpoints"]["c"]["vetoed_trips"] == 1


def test_group_always_allows_one_ejection() -> None:
    g = resil.BreakerGroup(max_ejection_percent=0, failure_threshold=1)
    g.record_failure("only")
    assert g["only"].state == State.OPEN
    g.record_failure("second")
    assert g["second"].state == State.DEGRADED


def test_group_validates_defaults_early() -> None:
    with pytest.raises(ValueError, match="cooldown"):
        resil.BreakerGroup(cooldown=-1)
    with pytest.raises(ValueError, match="max_ejection_percent"):
        resil.BreakerGroup(max_ejection_percent=101)
    with pytest.raises(TypeError):
        resil.BreakerGroup()[3]  # type: ignore[index]


# ---- threads ----------------------------------------------------------------

def test_threads_give_exact_totals_and_never_exceed_the_probes() -> None:
    clock = VirtualClock()
    probes = 3
    b = make(clock, failure_threshold=4, cooldown=0.001, half_open_probes=probes,
             adaptive=False)
    threads, per_thread = 8, 100_000
    lock = threading.Lock()
    probe_epochs: dict[int, int] = {}
    totals = {"ok": 0, "failed": 0, "rejected": 0}

    def worker(seed: int) -> None:
        ok = failed = rejected = 0
        x = seed
        for _ in range(per_thread):
            x = (x * 1103515245 + 12345) & 0x7FFFFFFF
            try:
                permit = b.acquire()
            except CircuitOpenError:
                rejected += 1
                clock.advance_ns(100_000)
                continue
            if permit.probe:
                with lock:
                    probe_epochs[permit.epoch] = probe_epochs.get(permit.epoch, 0) + 1
            if x % 7 == 0:
                b.record_failure(permit, 1.0)
                failed += 1
            else:
                b.record_success(permit, 1.0)
                ok += 1
        with lock:
            totals["ok"] += ok
            totals["failed"] += failed
            totals["rejected"] += rejected

    pool = [threading.Thread(target=worker, args=(i + 1,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    st = b.stats()
    assert st["permitted"] + st["rejected"] == threads * per_thread
    assert st["successes"] == totals["ok"] and st["failures"] == totals["failed"]
    assert st["rejected"] == totals["rejected"]
    assert st["transitions"]["HALF_OPEN"] > 0 and probe_epochs
    assert max(probe_epochs.values()) <= probes
