"""RateLimiter(cluster=backend) against a real redis-server: the exactness
bound across 4 processes on Redis TIME, refusals remembered without a round
trip, SIGKILL and a slow Redis bounded by the backend's timeout with the
local fallback and back, "open" and "closed", an asyncio client, bad
arguments and hostile keys, and the Lua GCRA in lockstep with the C
limiter on explicit times."""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import subprocess
import sys
import threading
import time
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import resil
from redis_support import FaultProxy, RedisServer, redis_clean, redis_server  # noqa: F401
from resil.redis import RedisBackend
from resil.redis.ratelimit import _GCRA, _GCRA_AT, interval_us, key_tail
from tests_support import run_threads

WORKERS = os.path.join(os.path.dirname(__file__), "redis_ratelimit_workers.py")


BACKENDS: list[RedisBackend] = []


@pytest.fixture(autouse=True)
def _close_backends() -> Any:
    yield
    while BACKENDS:
        BACKENDS.pop().close()


def limiter_of(server: RedisServer, rate: float = 10, burst: int = 3, name: str = "api",
               **kw: Any) -> Any:
    backend_kw = {k: kw.pop(k) for k in ("on_unavailable", "timeout", "cooldown") if k in kw}
    backend = RedisBackend(server.client(), prefix="t:", **backend_kw)
    BACKENDS.append(backend)
    return resil.RateLimiter(rate, burst=burst, name=name, cluster=backend, **kw)


def command(server: RedisServer, *args: Any) -> Any:
    """One command on a client of its own, closed after."""
    client = server.client()
    try:
        return client.execute_command(*args)
    finally:
        client.close()


def ops(limiter: Any) -> int:
    return int(limiter.cluster.stats()["operations"])


# ---- the bound across processes -------------------------------------------------

def check_windows(admissions: list[tuple[int, int]], a: int, b: int, tau: int) -> None:
    """For admissions (Redis microsecond, cost) of one key: in every window
    [t_i, t_j] between two admissions, the cost admitted is at most
    burst + rate * (t_j - t_i) / per, compared exactly: cost * a <= tau +
    (t_j - t_i) * b (a / b microseconds a token)."""
    admissions.sort()
    times = [t for t, _ in admissions]
    for i, (ti, _) in enumerate(admissions):
        total = 0
        for j in range(i, len(admissions)):
            total += admissions[j][1]
            if j + 1 < len(admissions) and times[j + 1] == times[j]:
                continue  # the window ends after every admission at t_j
            assert total * a <= tau + (times[j] - ti) * b, (
                f"{total} admitted in [{ti}, {times[j]}] us")


@pytest.mark.parametrize("case", ["one key", "many keys"])
def test_four_processes_stay_within_the_bound_in_every_window_on_redis_time(
        redis_clean: RedisServer, case: str) -> None:
    if case == "one key":
        rate, burst, keys, gap = 100.0, 10, ["k"], 0.025
    else:
        rate, burst, keys, gap = 20.0, 5, [f"user{i}" for i in range(8)], 0.012
    spec = {"port": redis_clean.port, "prefix": "t:", "name": "bound", "rate": rate,
            "per": 1.0, "burst": burst, "keys": keys, "max_cost": 3, "gap": gap,
            "seconds": 1.5, "start": time.time() + 1.5}
    procs = [subprocess.Popen([sys.executable, WORKERS,
                               json.dumps({**spec, "seed": i, "host": f"h{i}"})],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(4)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=30)
        assert p.returncode == 0, err
        outs.append(json.loads(out))
    a, b, tau, exact = interval_us(*resil.RateLimiter(rate, burst=burst)._interval, burst)
    assert exact
    per_key: dict[str, list[tuple[int, int]]] = {k: [] for k in keys}
    for out in outs:
        assert out["unknown"] == 0
        assert out["stats"]["backend"] == "redis"
        assert out["stats"]["fallback_decisions"] == 0
        assert out["stats"]["rejected"] > 0  # the offered load is over the rate
        for key, cost, at_us in out["admissions"]:
            per_key[key].append((at_us, cost))
    for key, admissions in per_key.items():
        check_windows(admissions, a, b, tau)
        # and it is not vacuous: the limit was used, most of it
        span = (max(t for t, _ in admissions) - min(t for t, _ in admissions)) / 1e6
        assert sum(c for _, c in admissions) >= 0.6 * rate * span, key
    assert sum(out["stats"]["cached_refusals"] for out in outs) > 0  # refusals remembered


def test_a_caller_at_the_rate_is_never_refused(redis_clean: RedisServer) -> None:
    # Spaced at 1.2 intervals on its own clock, with a burst of 5 to absorb
    # up to 0.2 s of scheduling jitter on a loaded machine. (The exact case,
    # calls exactly one interval apart, is in the lockstep test below.)
    limiter = limiter_of(redis_clean, rate=20, burst=5)
    t0 = time.monotonic()
    results = []
    for i in range(20):
        time.sleep(max(0.0, t0 + i * 0.06 - time.monotonic()))
        results.append(limiter.try_acquire())
    assert all(results)


# ---- Lua GCRA in lockstep with the C limiter ------------------------------------

RATES = st.one_of(st.sampled_from([1, 3, 7.5, 10, 100, 1000, 0.1, 1 / 3, 123456.789, 1e6]),
                  st.floats(min_value=0.05, max_value=1e5).map(lambda r: float(f"{r:.4g}")))
STEPS = st.lists(st.tuples(st.floats(min_value=0.0, max_value=2.5), st.integers(1, 8),
                           st.sampled_from([None, "a", b"a", 7])), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rate=RATES, per=st.sampled_from([1.0, 0.25, 60.0, 1e-3]), burst=st.integers(1, 8),
       steps=STEPS)
def test_the_lua_gcra_agrees_with_the_c_limiter_decision_for_decision(
        redis_clean: RedisServer, rate: float, per: float, burst: int,
        steps: list[tuple[float, int, Any]]) -> None:
    clock = resil.VirtualClock()
    local = resil.RateLimiter(rate, per=per, burst=burst, clock=clock)
    a, b, tau, exact = interval_us(*local._interval, burst)
    if not exact:
        return  # compared with the exact model below
    backend = RedisBackend(redis_clean.client(), prefix=f"h{os.getpid()}:")
    base = backend.key("ratelimit", "lockstep").encode() + b":"
    command(redis_clean, "FLUSHALL")
    now_us = 1_700_000_000_000_000  # Redis-sized times
    clock.advance_ns(now_us * 1000)
    interval = a / b  # microseconds
    for dt, cost, key in steps:
        cost = min(cost, burst)
        step = int(dt * interval)
        now_us += step
        clock.advance_ns(step * 1000)
        keys = [base + key_tail(key)]
        _, _, debt = backend.run(_GCRA_AT, keys, [a, b, tau, cost, 0, now_us])
        wait_us = max(0, -(-(debt + cost * a - tau) // b))
        assert wait_us == math.ceil(round(local.retry_after(cost, key) * 1e9) / 1000)
        admitted, at, _ = backend.run(_GCRA_AT, keys, [a, b, tau, cost, 1, now_us])
        assert at == now_us
        assert bool(admitted) == local.try_acquire(cost, key), (now_us, cost, key)
    backend.close()


@settings(max_examples=60, deadline=None)
@given(a_ns=st.integers(1, 10**16), b_ns=st.integers(1, 10**18), burst=st.integers(1, 10**9))
def test_the_interval_is_exact_when_it_fits_else_rounded_up_by_less_than_burst_in_2_52(
        a_ns: int, b_ns: int, burst: int) -> None:
    true = Fraction(a_ns, b_ns * 1000)
    try:
        a, b, tau, exact = interval_us(a_ns, b_ns, burst)
    except ValueError as exc:
        assert "2**52" in str(exc)
        assert burst * true > 2**52 / 2  # only a bucket of ~71 years or more
        return
    assert tau == burst * a and tau <= 2**52 and b <= 2**52
    got = Fraction(a, b)
    assert got >= true
    assert exact == (got == true)
    if not exact:
        assert got - true <= true * burst / Fraction(2**52 - burst) + Fraction(1, 2**52)


def test_a_rounded_interval_admits_as_the_exact_model_of_the_rounded_fraction(
        redis_clean: RedisServer) -> None:
    # A third of a token per 1.000000001 s with a burst of 10**7: the exact
    # fraction needs more than 2**52; the script must still be exact on the
    # rounded one.
    burst = 10**7
    local = resil.RateLimiter(1 / 3, per=1.000000001, burst=burst)
    a, b, tau, exact = interval_us(*local._interval, burst)
    assert not exact and tau > 2**51
    backend = RedisBackend(redis_clean.client(), prefix="r:")
    key = [backend.key("ratelimit", "rounded").encode() + b":n"]
    rng = random.Random(5)
    tat = Fraction(0)
    now = 10**15
    interval = Fraction(a, b)
    seen = set()
    for i in range(1500):
        now += rng.choice([0, 1, rng.randrange(int(interval * burst // 2))])
        cost = rng.randint(1, burst)
        expect = max(tat, now) + cost * interval - now <= burst * interval
        admitted, _, _ = backend.run(_GCRA_AT, key, [a, b, tau, cost, 1, now])
        assert bool(admitted) == expect, i
        seen.add(expect)
        if expect:
            tat = max(tat, now) + cost * interval
    assert seen == {True, False}
    backend.close()


# ---- refusals remembered ------------------------------------------------------

def test_a_key_refused_is_refused_again_without_a_round_trip_until_its_retry_after(
        redis_clean: RedisServer) -> None:
    limiter = limiter_of(redis_clean, rate=10, burst=4)
    assert [limiter.try_acquire(4, key="u")] == [True]
    assert limiter.try_acquire(4, key="u") is False  # Redis refuses: remembered
    before = ops(limiter)
    wait = limiter.retry_after(4, key="u")
    assert 0.3 < wait <= 0.4
    for _ in range(50):
        assert limiter.try_acquire(4, key="u") is False
        assert limiter.try_acquire(2, key="u") is False
    with pytest.raises(resil.RateLimited) as info:
        limiter.acquire(4, key="u", timeout=0.1)  # the wait is longer: at once
    assert 0.2 < info.value.retry_after <= 0.4
    assert ops(limiter) == before  # not one round trip
    s = limiter.stats()
    assert s["cached_refusals"] == 101 and s["redis_decisions"] == 2 and s["keys"] == 1
    # another key, and a smaller cost once it fits, go to Redis
    assert limiter.try_acquire(4, key="v") is True
    time.sleep(0.12)
    assert limiter.try_acquire(1, key="u") is True
    assert ops(limiter) == before + 2
    # after retry_after, the remembered refusal is gone
    time.sleep(limiter.retry_after(4, key="u") + 0.01)
    assert limiter.try_acquire(4, key="u") is True


def test_at_most_max_keys_refusals_are_remembered(redis_clean: RedisServer) -> None:
    limiter = limiter_of(redis_clean, rate=1, burst=1, max_keys=3)
    for i in range(10):
        assert limiter.try_acquire(key=i) is True
        assert limiter.try_acquire(key=i) is False
    assert limiter.stats()["keys"] == 3
    before = ops(limiter)
    assert limiter.try_acquire(key=9) is False  # remembered
    assert ops(limiter) == before
    assert limiter.try_acquire(key=0) is False  # forgotten: Redis says no again
    assert ops(limiter) == before + 1


# ---- Redis away ---------------------------------------------------------------

def test_redis_killed_under_load_no_call_waits_past_timeout_local_fallback_then_redis(
        redis_clean: RedisServer) -> None:
    timeout = 0.05
    limiter = limiter_of(redis_clean, rate=50, burst=5, timeout=timeout, cooldown=0.2)
    took: list[float] = []
    modes: list[str] = []
    local_admitted: list[float] = []
    stop = threading.Event()

    def load() -> None:
        while not stop.is_set():
            t0 = time.monotonic()
            admitted, _, redis_time = limiter._take(1, key_tail("k"))  # as try_acquire
            took.append(time.monotonic() - t0)
            modes.append(limiter.stats()["backend"])
            if admitted and redis_time is None:  # admitted without Redis
                local_admitted.append(t0)
            time.sleep(0.002)

    threads = [threading.Thread(target=load) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.3)
        redis_clean.kill()
        time.sleep(0.8)
        assert limiter.stats()["backend"] == "local-fallback"
        fallback = limiter.stats()["fallback_decisions"]
        assert fallback > 20
        redis_clean.start()
        deadline = time.monotonic() + 5
        while limiter.stats()["backend"] != "redis":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.2)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert max(took) < timeout + 0.1
    assert "local-fallback" in modes and modes[-1] == "redis"
    s = limiter.stats()
    assert s["redis_decisions"] > 0 and s["fallback_decisions"] >= fallback
    assert limiter.cluster.stats()["restorations"] >= 1
    # the fallback kept the same limit, on this process's own bucket
    span = max(local_admitted) - min(local_admitted)
    assert 5 <= len(local_admitted) <= 5 + 50 * span + 2


def test_a_sleeping_redis_costs_at_most_timeout_per_call(redis_clean: RedisServer) -> None:
    timeout = 0.05
    limiter = limiter_of(redis_clean, rate=1000, burst=1000, timeout=timeout, cooldown=0.3)
    limiter.try_acquire()
    sleeper = threading.Thread(
        target=lambda: command(redis_clean, "DEBUG", "SLEEP", "0.6"))
    sleeper.start()
    time.sleep(0.05)
    took = []
    for _ in range(30):
        t0 = time.monotonic()
        assert limiter.try_acquire() is True  # local fallback, within its burst
        took.append(time.monotonic() - t0)
    sleeper.join()
    assert max(took) < timeout + 0.1
    assert limiter.stats()["fallback_decisions"] >= 30 - 1


def test_open_admits_and_closed_refuses_while_redis_is_away(redis_clean: RedisServer) -> None:
    opened = limiter_of(redis_clean, rate=1, burst=1, name="o", on_unavailable="open", cooldown=5)
    closed = limiter_of(redis_clean, rate=1000, burst=10, name="c", on_unavailable="closed",
                        cooldown=5)
    assert opened.try_acquire() and closed.try_acquire()
    redis_clean.kill()
    try:
        assert all(opened.try_acquire() for _ in range(20))
        assert opened.retry_after() == 0.0
        assert opened.stats()["backend"] == "open-fallback"
        assert not any(closed.try_acquire() for _ in range(20))
        assert closed.stats()["backend"] == "closed-fallback"
        assert closed.retry_after() == 5
        with pytest.raises(resil.RateLimited) as info:
            closed.acquire(timeout=1.0)
        assert info.value.retry_after == 5

        @closed
        def f() -> int:
            return 1

        with pytest.raises(resil.RateLimited):
            f()
        assert closed.stats()["fallback_decisions"] == 22
        assert closed.stats()["rejected"] == 22
        assert opened.stats()["admitted"] == 21
    finally:
        redis_clean.start()


def test_with_shared_the_fallback_is_one_limit_for_the_host(
        redis_clean: RedisServer, tmp_path: Any) -> None:
    region = resil.SharedRegion(str(tmp_path / "r"))
    one = limiter_of(redis_clean, rate=1, burst=3, shared=region, name="s")
    two = limiter_of(redis_clean, rate=1, burst=3, shared=region, name="s", cooldown=5)
    assert one.try_acquire(3, key="k")  # in Redis
    assert one.stats()["redis_decisions"] == 1
    redis_clean.kill()
    try:
        # the region's bucket is full: 3 tokens for both limiters together
        got = [one.try_acquire(key="k"), two.try_acquire(key="k"), one.try_acquire(key="k"),
               two.try_acquire(key="k")]
        assert got == [True, True, True, False]
        assert two.stats()["backend"] == "local-fallback"
    finally:
        redis_clean.start()


# ---- asyncio ------------------------------------------------------------------

def test_coroutines_await_an_asyncio_client(redis_clean: RedisServer) -> None:
    proxy = FaultProxy(redis_clean.port)

    async def main() -> None:
        import redis.asyncio
        backend = RedisBackend(redis.asyncio.Redis(host="127.0.0.1", port=proxy.port),
                               prefix="t:", timeout=2.0)
        limiter = resil.RateLimiter(100, burst=20, name="aio", cluster=backend)
        await asyncio.gather(*(limiter.acquire_async() for _ in range(5)))  # connections
        proxy.delay = 0.1
        t0 = time.monotonic()
        await asyncio.gather(*(limiter.acquire_async(key="k") for _ in range(5)))
        # all five round trips at once: one at a time, blocking the loop,
        # would take 5 x 0.2 s
        assert time.monotonic() - t0 < 0.7
        proxy.delay = 0.0

        @limiter
        async def call() -> int:
            return 7

        assert await call() == 7
        # a wait on the event loop, then admitted by Redis
        assert limiter.try_acquire(19, key="w")
        t0 = time.monotonic()
        await limiter.acquire_async(2, key="w")
        assert 0.005 < time.monotonic() - t0 < 1.0
        with pytest.raises(resil.RateLimited):
            await limiter.acquire_async(20, key="w", timeout=0.01)
        s = limiter.stats()
        assert s["backend"] == "redis" and s["fallback_decisions"] == 0
        await backend.aclose()

    try:
        asyncio.run(main())
    finally:
        proxy.close()


def test_blocking_calls_work_with_an_asyncio_client(redis_clean: RedisServer) -> None:
    backend = RedisBackend(redis_clean.async_client(), prefix="t:")
    limiter = resil.RateLimiter(20, burst=2, name="mixed", cluster=backend)
    assert limiter.try_acquire() and limiter.try_acquire() and not limiter.try_acquire()
    t0 = time.monotonic()
    limiter.acquire()
    assert 0.02 < time.monotonic() - t0 < 1.0
    assert limiter.stats()["redis_decisions"] == 4


# ---- arguments and keys ---------------------------------------------------------

def test_bad_arguments_raise_type_or_value_errors_naming_them(redis_clean: RedisServer) -> None:
    limiter = limiter_of(redis_clean, rate=10, burst=3)
    for bad, error in [(0, ValueError), (4, ValueError), (True, TypeError), (1.0, TypeError),
                       ("1", TypeError), (10**400, ValueError)]:
        for call in (limiter.try_acquire, limiter.retry_after, limiter.acquire,
                     limiter.acquire_async):
            with pytest.raises(error, match="cost"):
                call(bad)
    for bad_key in (1.5, True, (1, 2), object(), bytearray(b"x"), math.nan):
        for call in (limiter.try_acquire, limiter.retry_after, limiter.acquire,
                     limiter.acquire_async):
            with pytest.raises(TypeError, match="key"):
                call(1, bad_key)
    for bad, error in [(-1, ValueError), (math.nan, ValueError), ("1", TypeError),
                       (True, TypeError)]:
        with pytest.raises(error, match="timeout"):
            limiter.acquire(timeout=bad)
        with pytest.raises(error, match="timeout"):
            limiter.acquire_async(timeout=bad)
    with pytest.raises(TypeError, match="decorates"):
        limiter(3)
    with pytest.raises(TypeError, match="cluster"):
        resil.RateLimiter(1, cluster=redis_clean.client())
    with pytest.raises(TypeError, match="needs name="):  # two unnamed ones would be one limit
        resil.RateLimiter(1, cluster=limiter.cluster)
    with pytest.raises(ValueError, match="2\\*\\*52"):
        limiter_of(redis_clean, rate=1, per=4.55e9, burst=1)  # over 2**52 us

    class Mine(resil.RateLimiter):
        pass

    with pytest.raises(TypeError, match="cluster"):
        Mine(1, cluster=limiter.cluster)
    assert limiter.stats()["redis_decisions"] == 0  # nothing was decided


def test_hostile_keys_each_get_their_own_bucket_inside_the_namespace(
        redis_clean: RedisServer) -> None:
    limiter = limiter_of(redis_clean, rate=1, burst=1, name="n}:x{")
    other = limiter_of(redis_clean, rate=1, burst=1, name="n")
    keys: list[Any] = ["", "}", "{", ":", "a}:sb", "n", "\x00", "\ud800", "é", "x" * 10_000,
                       "x" * 10_001, b"", b"}", b"\xff\x00", b"sa", "sa", "1", b"1", 1, -1, 0,
                       10**400, -(10**400), 2**64, None]
    for k in keys:
        assert limiter.try_acquire(key=k) is True, k
    for k in keys:
        assert limiter.try_acquire(key=k) is False, k
        assert other.try_acquire(key=k) is True, k
    stored = command(redis_clean, "KEYS", "*")
    assert len(stored) == 2 * len(keys)
    mine = [k for k in stored if k.startswith(b"t:{ratelimit:n%7D:x{}:")]
    theirs = [k for k in stored if k.startswith(b"t:{ratelimit:n}:")]
    assert len(mine) == len(theirs) == len(keys)
    assert max(len(k) for k in stored) < 300
    # each bucket expires once full again (PX)
    assert all(0 < command(redis_clean, "PTTL", k) <= 1002 for k in stored)


def test_the_script_keeps_a_bucket_per_key_with_an_expiry(redis_clean: RedisServer) -> None:
    limiter = limiter_of(redis_clean, rate=100, burst=2, name="ttl")
    assert limiter.try_acquire(2, key="k")
    key = b"t:{ratelimit:ttl}:sk"
    assert 0 < command(redis_clean, "PTTL", key) <= 22
    time.sleep(0.05)
    assert command(redis_clean, "EXISTS", key) == 0  # idle: gone, with a full bucket
    assert limiter.try_acquire(2, key="k")
    assert _GCRA.sha != _GCRA_AT.sha


# ---- threads and cancellation -------------------------------------------------

def test_threads_switching_often_count_every_decision_and_keep_the_bound(
        redis_clean: RedisServer) -> None:
    limiter = limiter_of(redis_clean, rate=50, burst=10, name="threads")
    results: list[tuple[bool, int | None]] = []

    def work(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(150):
            key = rng.choice(["a", "b"])
            admitted, _, at = limiter._take(1, key_tail(key))
            results.append((admitted, at))

    run_threads(work, 4, switch=1e-5)
    s = limiter.stats()
    assert s["admitted"] + s["rejected"] == 600 == s["redis_decisions"] + s["cached_refusals"]
    assert s["admitted"] == sum(1 for ok, _ in results if ok)
    assert s["cached_refusals"] > 0 and s["keys"] <= 2
    times = [at for ok, at in results if ok and at is not None]
    span = (max(times) - min(times)) / 1e6
    assert s["admitted"] <= 2 * (10 + 50 * span) + 2


def test_coroutines_cancelled_at_random_points_leave_the_limiter_working(
        redis_clean: RedisServer) -> None:
    async def main() -> None:
        backend = RedisBackend(redis_clean.async_client(), prefix="t:", timeout=1.0)
        limiter = resil.RateLimiter(200, burst=5, name="cancel", cluster=backend)
        rng = random.Random(3)
        for _ in range(30):
            task = asyncio.ensure_future(limiter.acquire_async(rng.randint(1, 5), key="k"))
            await asyncio.sleep(rng.choice([0, 0, 0.0005, 0.002, 0.01]))
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        assert backend.stats()["backend"] == "redis"
        await asyncio.sleep(0.05)
        await asyncio.wait_for(limiter.acquire_async(5, key="k"), 1.0)
        s = limiter.stats()
        assert s["fallback_decisions"] == 0
        assert s["admitted"] + s["rejected"] == s["redis_decisions"] + s["cached_refusals"]
        await backend.aclose()

    asyncio.run(main())
