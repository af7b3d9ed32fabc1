"""resil.RateLimiter through the public API: the exactness bound over random
arrival schedules, steady callers, waiting (threads and asyncio, virtual
time), timeouts, cancellation, the decorator, per-key buckets and their
memory bound, hostile keys, threads, and argument checks."""

from __future__ import annotations

import asyncio
import math
import sys
import threading
import time
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import resil

# ---- the exactness bound --------------------------------------------------

RATES = st.tuples(st.integers(1, 50), st.integers(1, 6))
PERS = st.sampled_from([10**3, 10**6, 10**9, 7 * 10**8])


def admitted_within_bound(events: list[tuple[int, int]], burst: int, rate: Fraction,
                          per_ns: int) -> bool:
    """Every window [t_i, t_j] holds at most burst + rate * (t_j - t_i) / per."""
    for i in range(len(events)):
        total = 0
        for j in range(i, len(events)):
            total += events[j][1]
            if total > burst + rate * (events[j][0] - events[i][0]) / per_ns:
                return False
    return True


@settings(max_examples=120, deadline=None)
@given(rate=RATES, per_ns=PERS, burst=st.integers(1, 8),
       schedule=st.lists(st.tuples(st.fractions(0, 2), st.integers(1, 8),
                                   st.sampled_from([None, 1, 2, "k"])), max_size=80))
def test_admitted_cost_never_exceeds_burst_plus_rate_times_window(rate, per_ns, burst,
                                                                   schedule) -> None:
    num, den = rate
    clock = resil.VirtualClock()
    limiter = resil.RateLimiter(num / den, per=per_ns / 1e9, burst=burst, clock=clock)
    now = 0
    admitted: dict[object, list[tuple[int, int]]] = {}
    for gap, cost, key in schedule:
        now += int(gap * per_ns / num * den)  # gaps around one token's interval
        clock.set(now / 1e9)
        cost = min(cost, burst)
        if limiter.try_acquire(cost, key=key):
            admitted.setdefault(key, []).append((now, cost))
    for events in admitted.values():
        assert admitted_within_bound(events, burst, Fraction(num, den), per_ns)


@settings(max_examples=80, deadline=None)
@given(rate=RATES, per_ns=PERS, burst=st.integers(1, 8),
       steady=st.lists(st.tuples(st.integers(1, 8), st.integers(0, 1000)), min_size=1,
                       max_size=60),
       noise=st.lists(st.integers(1, 8), max_size=60))
def test_a_steady_caller_at_or_below_the_rate_is_never_refused(rate, per_ns, burst, steady,
                                                               noise) -> None:
    """Each call of cost c comes at least c * per / rate after the previous
    one (rounded up to the ns); another key hammering the limiter meanwhile
    takes nothing from it."""
    num, den = rate
    interval = Fraction(per_ns * den, num)
    clock = resil.VirtualClock()
    limiter = resil.RateLimiter(num / den, per=per_ns / 1e9, burst=burst, clock=clock)
    due = Fraction(0)
    for i, (cost, slack) in enumerate(steady):
        cost = min(cost, burst)
        now = math.ceil(due) + slack
        clock.set(now / 1e9)
        for n in noise[i:i + 2]:
            limiter.try_acquire(min(n, burst), key="noisy")
        assert limiter.try_acquire(cost, key="steady")
        assert limiter.try_acquire(cost) or i > 0 or cost > burst  # keyless: its own bucket
        due = now + cost * interval


def test_retry_after_is_the_exact_wait() -> None:
    clock = resil.VirtualClock()
    limiter = resil.RateLimiter(3, burst=3, clock=clock)
    assert [limiter.try_acquire() for _ in range(4)] == [True, True, True, False]
    wait = limiter.retry_after()
    assert wait == pytest.approx(1 / 3, abs=1e-9)
    clock.advance(wait - 1e-9)
    assert not limiter.try_acquire()
    clock.advance(1e-9)
    assert limiter.try_acquire()
    assert limiter.retry_after(3) == pytest.approx(1.0, abs=1e-9)
    assert limiter.stats() == {"name": "default", "rate": 3.0, "per": 1.0, "burst": 3,
                               "admitted": 4, "rejected": 2, "keys": 0}


def test_extreme_settings_do_not_overflow() -> None:
    clock = resil.VirtualClock(start=1e9)
    fast = resil.RateLimiter(1e9, per=1e-9, clock=clock)  # 1e9 tokens a ns
    assert fast.burst == 10**9
    assert fast.try_acquire(10**9)
    assert not fast.try_acquire(1)
    assert fast.retry_after(10**9) == 1e-9
    slow = resil.RateLimiter(1e-6, per=4e3, burst=1, clock=clock)
    assert slow.try_acquire() and not slow.try_acquire()
    assert slow.retry_after() == pytest.approx(4e9, rel=1e-12)
    with pytest.raises(ValueError, match="burst"):  # one token would take 9.2e15 s
        resil.RateLimiter(1e-6, per=9.2e9, burst=1)
    huge = resil.RateLimiter(1e12, burst=10**15, clock=clock)
    assert huge.try_acquire(10**15) and not huge.try_acquire(10**6)


# ---- waiting --------------------------------------------------------------


def test_acquire_blocks_for_the_wait_and_fails_at_once_past_the_timeout(monkeypatch) -> None:
    clock = resil.VirtualClock()
    slept: list[float] = []

    def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(seconds)

    monkeypatch.setattr(time, "sleep", fake_sleep)
    limiter = resil.RateLimiter(2, burst=1, clock=clock)
    limiter.acquire()
    limiter.acquire()
    assert slept == [0.5] and clock.now() == 0.5
    with pytest.raises(resil.RateLimited) as info:
        limiter.acquire(timeout=0.4)
    assert info.value.retry_after == 0.5
    assert isinstance(info.value, resil.ResilError)
    assert slept == [0.5] and clock.now() == 0.5  # never slept first
    limiter.acquire(timeout=0.5)
    assert clock.now() == 1.0


def test_acquire_async_waits_in_virtual_time_and_times_out_at_once() -> None:
    clock = resil.VirtualClock()
    limiter = resil.RateLimiter(10, burst=2, clock=clock)

    async def main() -> list[float]:
        times = []
        for _ in range(5):
            await limiter.acquire_async()
            times.append(round(clock.now(), 9))
        with pytest.raises(resil.RateLimited) as info:
            await limiter.acquire_async(2, timeout=0.1)
        assert info.value.retry_after == pytest.approx(0.2)
        times.append(round(clock.now(), 9))
        return times

    assert resil.run_virtual(main(), clock=clock) == [0.0, 0.0, 0.1, 0.2, 0.3, 0.3]


def test_a_cancelled_waiter_takes_nothing_and_loses_nothing() -> None:
    clock = resil.VirtualClock()
    limiter = resil.RateLimiter(1, burst=1, clock=clock)

    async def main() -> None:
        assert limiter.try_acquire()
        waiter = asyncio.ensure_future(limiter.acquire_async())
        await asyncio.sleep(0.5)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert limiter.stats()["admitted"] == 1
        await asyncio.sleep(0.5)
        assert limiter.try_acquire()  # the token the waiter did not take
        assert clock.now() == 1.0

    resil.run_virtual(main(), clock=clock)


def test_decorator_on_functions_and_coroutine_functions() -> None:
    clock = resil.VirtualClock()
    limiter = resil.RateLimiter(1, burst=2, clock=clock)

    @limiter
    def f(x: int) -> int:
        """doc"""
        return x + 1

    @limiter
    async def g(x: int) -> int:
        return x * 2

    assert f.__name__ == "f" and f.__doc__ == "doc"
    assert f(1) == 2
    assert resil.run_virtual(g(3), clock=clock) == 6
    with pytest.raises(resil.RateLimited) as info:
        f(1)
    assert info.value.retry_after == 1.0
    with pytest.raises(resil.RateLimited):
        resil.run_virtual(g(3), clock=clock)
    clock.advance(1.0)
    assert f(1) == 2
    with pytest.raises(TypeError, match="callable"):
        limiter(3)  # type: ignore[arg-type]


# ---- keys -----------------------------------------------------------------


def test_keys_have_their_own_buckets_compared_as_dict_keys() -> None:
    clock = resil.VirtualClock()
    limiter = resil.RateLimiter(1, burst=1, clock=clock)
    assert limiter.try_acquire(key=1)
    assert not limiter.try_acquire(key=1.0)  # equal to 1
    assert limiter.try_acquire(key="1")
    assert limiter.try_acquire()
    assert limiter.stats()["keys"] == 2
    clock.advance(1.0)  # every bucket is full again: the keys cost nothing
    assert limiter.stats()["keys"] == 0


def test_memory_is_bounded_by_max_keys_and_idle_keys_go_first() -> None:
    clock = resil.VirtualClock()
    limiter = resil.RateLimiter(1, per=10.0, burst=1, max_keys=3, clock=clock)
    for k in range(3):
        assert limiter.try_acquire(key=k)
        clock.advance(2.0)
    for k in range(100, 1100):
        limiter.try_acquire(key=k)
    assert limiter.stats()["keys"] == 3
    # keys 0..2 were forgotten (least recently admitted), so they start full
    assert limiter.try_acquire(key=0)
    limiter2 = resil.RateLimiter(1, per=10.0, burst=1, max_keys=2, clock=clock)
    assert limiter2.try_acquire(key="idle")
    clock.advance(10.0)  # "idle" is full again
    assert limiter2.try_acquire(key="busy")
    assert limiter2.try_acquire(key="new")
    assert not limiter2.try_acquire(key="busy")  # kept: "idle" went first


class Crasher:
    def __init__(self, hash_fails: bool = False, eq_fails: bool = False) -> None:
        self.hash_fails, self.eq_fails = hash_fails, eq_fails

    def __hash__(self) -> int:
        if self.hash_fails:
            raise ZeroDivisionError("hash")
        return 7

    def __eq__(self, other: object) -> bool:
        if self.eq_fails:
            raise ZeroDivisionError("eq")
        return self is other


def test_keys_whose_hash_or_eq_raise_take_nothing_and_corrupt_nothing() -> None:
    clock = resil.VirtualClock()
    limiter = resil.RateLimiter(1, burst=1, clock=clock)
    with pytest.raises(ZeroDivisionError):
        limiter.try_acquire(key=Crasher(hash_fails=True))
    first = Crasher()
    assert limiter.try_acquire(key=first)
    first.eq_fails = True
    with pytest.raises(ZeroDivisionError):
        limiter.try_acquire(key=Crasher())  # same hash: compared with first
    with pytest.raises(ZeroDivisionError):
        limiter.retry_after(key=Crasher())
    first.eq_fails = False
    assert not limiter.try_acquire(key=first)
    assert limiter.stats() == {"name": "default", "rate": 1.0, "per": 1.0, "burst": 1,
                               "admitted": 1, "rejected": 1, "keys": 1}


def test_a_key_eq_that_reenters_the_limiter_is_refused() -> None:
    limiter = resil.RateLimiter(1, clock=resil.VirtualClock())

    class Reenter:
        def __hash__(self) -> int:
            return 1

        def __eq__(self, other: object) -> bool:
            limiter.try_acquire(key="other")
            return False

    limiter.try_acquire(key=Reenter())
    with pytest.raises(RuntimeError, match="RateLimiter used from inside a key's __eq__"):
        limiter.try_acquire(key=Reenter())
    assert limiter.stats()["admitted"] == 1


# ---- threads ----------------------------------------------------------------


@pytest.mark.parametrize("keyed", [False, True])
def test_threads_hammering_try_acquire_never_over_admit(keyed: bool) -> None:
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        clock = resil.VirtualClock()
        limiter = resil.RateLimiter(1, per=3600.0, burst=500, clock=clock)
        got = [0] * 16
        start = threading.Barrier(16)

        def work(i: int) -> None:
            start.wait()
            for n in range(400):
                if limiter.try_acquire(1 + n % 2, key=("k", n % 3) if keyed else None):
                    got[i] += 1 + n % 2

        threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stats = limiter.stats()
        assert stats["admitted"] + stats["rejected"] == 16 * 400
        if keyed:
            assert sum(got) <= 3 * 500 and sum(got) >= 3 * 499
        else:
            assert 499 <= sum(got) <= 500
    finally:
        sys.setswitchinterval(old)


# ---- arguments ----------------------------------------------------------------


@pytest.mark.parametrize("name,bad,exc", [
    ("rate", 0, ValueError), ("rate", -1, ValueError), ("rate", math.nan, ValueError),
    ("rate", math.inf, ValueError), ("rate", True, TypeError), ("rate", 10**400, ValueError),
    ("rate", "1", TypeError),
    ("per", 0, ValueError), ("per", -1.0, ValueError), ("per", math.nan, ValueError),
    ("per", math.inf, ValueError), ("per", True, TypeError), ("per", 10**400, ValueError),
    ("burst", 0, ValueError), ("burst", -1, ValueError), ("burst", math.nan, TypeError),
    ("burst", math.inf, TypeError), ("burst", True, TypeError), ("burst", 10**400, ValueError),
    ("max_keys", 0, ValueError), ("max_keys", True, TypeError), ("name", 3, TypeError),
    ("shared", object(), TypeError), ("cluster", object(), TypeError),
])
def test_bad_arguments_name_the_parameter(name: str, bad: object, exc: type) -> None:
    kwargs = {"rate": 10, name: bad}
    with pytest.raises(exc, match=name):
        resil.RateLimiter(**kwargs)  # type: ignore[arg-type]


def test_cost_is_checked_against_burst() -> None:
    limiter = resil.RateLimiter(5, burst=3, clock=resil.VirtualClock())
    for method in (limiter.try_acquire, limiter.retry_after, limiter.acquire):
        with pytest.raises(ValueError, match=r"cost must be an int in \[1, 3\]"):
            method(4)
        with pytest.raises(ValueError, match="cost"):
            method(0)
        with pytest.raises(TypeError, match="cost"):
            method(True)
        with pytest.raises(TypeError, match="cost"):
            method(1.0)
    with pytest.raises(ValueError, match="timeout"):
        limiter.acquire(timeout=-1)
    with pytest.raises(ValueError, match="burst"):
        resil.RateLimiter(1, burst=10**10)  # 1e10 s to refill: past the clock's range
    assert limiter.stats()["admitted"] == 0


def test_rate_limited_pickles_with_retry_after() -> None:
    import pickle

    err = pickle.loads(pickle.dumps(resil.RateLimited("no", retry_after=1.5)))
    assert str(err) == "no" and err.retry_after == 1.5


def test_monitor_watch_counts_each_rate_limited_raised() -> None:
    clock = resil.VirtualClock()
    monitor = resil.Monitor(clock=clock)
    limiter = resil.RateLimiter(1, burst=1, name="api", clock=clock)
    monitor.watch(limiter)
    monitor.watch(limiter)  # wired once

    @limiter
    def call() -> None:
        pass

    call()
    for _ in range(2):
        with pytest.raises(resil.RateLimited):
            call()
    with pytest.raises(resil.RateLimited):
        limiter.acquire(timeout=0.1)
    assert not limiter.try_acquire()  # not an event: the caller decides
    metrics = monitor.dashboard()["resilience_metrics"]
    assert metrics["other"] == {"rate_limited": 3}
