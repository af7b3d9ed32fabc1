"""resil.AdaptiveLimiter through its public API: arguments, admission and
refusal in every form of use, what counts as a drop, cancellation, threads
and tasks at the limit, the baseline probe, and the convergence of each
algorithm against a simulated server on virtual time."""

from __future__ import annotations

import asyncio
import json
import math
import random
import threading
from typing import Any

import pytest

import resil
from resil.policies.adaptive import DROPS
from tests_support import run_threads

try:  # pytest's default "prepend" import mode puts tests/ on sys.path
    from model.server import settled_after, simulate
except ImportError:  # pragma: no cover - run from the repository root
    from tests.model.server import settled_after, simulate  # type: ignore[no-redef]

ALGORITHMS = ("aimd", "vegas", "gradient")
PROBE = 10  # calls the first probe of the baseline takes


def limiter(algorithm: str = "gradient", **kw: Any) -> tuple[resil.AdaptiveLimiter,
                                                             resil.VirtualClock]:
    clock = resil.VirtualClock()
    return resil.AdaptiveLimiter(algorithm, clock=clock, **kw), clock


def past_probe(lim: resil.AdaptiveLimiter, clock: resil.VirtualClock,
               seconds: float = 0.01) -> None:
    """Runs the calls of the first probe, each taking ``seconds``."""
    for _ in range(PROBE):
        permit = lim.try_acquire()
        assert permit is not None
        clock.advance(seconds)
        lim.release(permit)


# ---- arguments ----------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, error, words", [
    ({"algorithm": "cubic"}, ValueError, "algorithm must be one of 'aimd', 'vegas', 'gradient'"),
    ({"algorithm": 1}, TypeError, "algorithm must be a str"),
    ({"algorithm": None}, TypeError, "algorithm"),
    ({"initial_limit": True}, TypeError, "initial_limit"),
    ({"initial_limit": 2.0}, TypeError, "initial_limit"),
    ({"initial_limit": 0}, ValueError, "initial_limit"),
    ({"initial_limit": -1}, ValueError, "initial_limit"),
    ({"initial_limit": 10**400}, ValueError, "initial_limit"),
    ({"initial_limit": 1001}, ValueError, "initial_limit must be .*between min_limit and "
                                          "max_limit"),
    ({"initial_limit": 4, "min_limit": 5}, ValueError, "initial_limit"),
    ({"min_limit": False}, TypeError, "min_limit"),
    ({"min_limit": 0}, ValueError, "min_limit"),
    ({"min_limit": math.nan}, TypeError, "min_limit"),
    ({"max_limit": math.inf}, TypeError, "max_limit"),
    ({"max_limit": 2**30 + 1}, ValueError, "max_limit"),
    ({"min_limit": 10, "max_limit": 5, "initial_limit": 7}, ValueError,
     "max_limit must be .*at least min_limit"),
    ({"clock": object()}, TypeError, "clock"),
    ({"name": 3}, TypeError, "name"),
    ({"name": ""}, ValueError, "name"),
])
def test_each_bad_argument_names_its_parameter(kwargs: dict[str, Any], error: type,
                                               words: str) -> None:
    with pytest.raises(error, match=words) as info:
        resil.AdaptiveLimiter(**kwargs)
    assert type(info.value) is error


def test_defaults_and_a_valid_configuration() -> None:
    lim = resil.AdaptiveLimiter()
    assert (lim.algorithm, lim.name, lim.min_limit, lim.max_limit) == \
        ("gradient", "default", 1, 1000)
    lim = resil.AdaptiveLimiter("aimd", initial_limit=2**30, min_limit=2**30,
                                max_limit=2**30, name="edge")
    assert lim.limit == 2**30
    with pytest.raises(TypeError):
        resil.AdaptiveLimiter("aimd", 20)  # type: ignore[misc]  # the rest are keyword-only


@pytest.mark.parametrize("latency, error", [
    (-1, ValueError), (-0.001, ValueError), (math.nan, ValueError), (math.inf, ValueError),
    (10**400, ValueError), (True, TypeError), ("1", TypeError)])
def test_release_refuses_a_bad_latency_and_keeps_the_permit(latency: Any, error: type) -> None:
    lim, _ = limiter()
    permit = lim.try_acquire()
    assert permit is not None
    with pytest.raises(error, match="latency"):
        lim.release(permit, latency)
    assert permit.released is False and lim.in_flight == 1
    with pytest.raises(TypeError, match="dropped must be a bool"):
        lim.release(permit, dropped=1)  # type: ignore[arg-type]
    lim.release(permit, 0.0)
    assert lim.in_flight == 0


def test_release_twice_or_of_a_foreign_permit_is_refused() -> None:
    lim, _ = limiter()
    other, _ = limiter()
    mine, theirs = lim.try_acquire(), other.try_acquire()
    assert mine is not None and theirs is not None
    with pytest.raises(ValueError, match="another limiter"):
        lim.release(theirs)
    with pytest.raises(TypeError, match="permit"):
        lim.release(resil.Bulkhead().try_acquire())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="permit"):
        lim.release(None)  # type: ignore[arg-type]
    lim.release(mine)
    with pytest.raises(ValueError, match="already released"):
        lim.release(mine)
    assert lim.stats()["admitted"] == 1 and lim.in_flight == 0 and other.in_flight == 1


def test_release_without_a_latency_measures_on_the_clock() -> None:
    lim, clock = limiter("vegas", initial_limit=5)
    past_probe(lim, clock, 0.025)
    assert lim.stats()["min_latency_ms"] == pytest.approx(25.0)
    assert lim.limit == 5


# ---- admission and refusal -----------------------------------------------------------

def test_the_first_calls_probe_at_min_limit_then_the_initial_limit_holds() -> None:
    lim, clock = limiter("aimd", initial_limit=3, min_limit=1, max_limit=10)
    assert lim.limit == 1 and lim.stats()["min_latency_ms"] is None
    first = lim.try_acquire()
    assert first is not None and lim.try_acquire() is None
    lim.release(first, 0.01)
    for _ in range(PROBE - 1):
        lim.call(clock.advance, 0.01)
    assert lim.limit == 3
    assert lim.stats()["min_latency_ms"] == pytest.approx(10.0)
    permits = [lim.try_acquire() for _ in range(4)]
    assert permits[3] is None and lim.in_flight == 3
    stats = lim.stats()
    assert stats["rejected"] == 2 and stats["admitted"] == PROBE + 3


def test_every_form_refuses_with_limit_exceeded_past_the_limit() -> None:
    lim, _ = limiter(initial_limit=1)
    assert issubclass(resil.LimitExceeded, resil.ResilError)
    calls = []

    @lim
    def work() -> int:
        calls.append(1)
        return 7

    @lim
    async def awork() -> int:
        calls.append(1)
        return 8

    held = lim.try_acquire()
    assert held is not None
    with pytest.raises(resil.LimitExceeded, match="at its limit of 1"):
        work()
    with pytest.raises(resil.LimitExceeded):
        with lim:
            calls.append(1)
    with pytest.raises(resil.LimitExceeded):
        lim.call(work)

    async def refused_async() -> None:
        with pytest.raises(resil.LimitExceeded):
            await awork()
        with pytest.raises(resil.LimitExceeded):
            async with lim:
                calls.append(1)
        with pytest.raises(resil.LimitExceeded):
            await lim.call_async(awork)

    resil.run_virtual(refused_async())
    assert calls == [] and lim.stats()["rejected"] == 6
    lim.release(held)
    assert work() == 7 and resil.run_virtual(awork()) == 8
    assert lim.in_flight == 0 and lim.stats()["admitted"] == 3
    assert work.__name__ == "work" and awork.__name__ == "awork"


def test_nested_and_concurrent_blocks_release_their_own_permits() -> None:
    a, _ = limiter(initial_limit=3, min_limit=3)
    b, _ = limiter(initial_limit=3, min_limit=3)
    with a:
        with b:
            with a:
                assert (a.in_flight, b.in_flight) == (2, 1)
            assert (a.in_flight, b.in_flight) == (1, 1)
        assert (a.in_flight, b.in_flight) == (1, 0)
    assert a.in_flight == 0

    async def task(i: int) -> None:
        async with a:
            await asyncio.sleep(i * 0.01)

    async def main() -> None:
        await asyncio.gather(*(task(i) for i in range(3)))

    resil.run_virtual(main())
    assert a.in_flight == 0 and a.stats()["admitted"] == 5
    with pytest.raises(RuntimeError, match="without a matching __enter__"):
        a.__exit__(None, None, None)


@pytest.mark.parametrize("exc, dropped", [
    (TimeoutError(), True), (resil.OperationTimeout("t"), True),
    (asyncio.TimeoutError(), True), (resil.BulkheadFull("b"), True),
    (resil.RateLimited("r"), True), (resil.LimitExceeded("l"), True),
    (resil.CircuitOpenError("c", resil.State.OPEN, 1.0), True),
    (ValueError(), False), (ConnectionError(), False)])
def test_timeouts_and_overload_refusals_count_as_drops(exc: BaseException,
                                                       dropped: bool) -> None:
    assert isinstance(exc, DROPS) is dropped
    for use in ("decorator", "with", "call"):
        lim, clock = limiter("aimd", initial_limit=2)
        past_probe(lim, clock)

        def fail() -> None:
            clock.advance(0.01)
            raise exc

        with pytest.raises(type(exc)):
            if use == "decorator":
                lim(fail)()
            elif use == "with":
                with lim:
                    fail()
            else:
                lim.call(fail)
        stats = lim.stats()
        assert stats["dropped"] == int(dropped), use
        assert stats["in_flight"] == 0 and stats["admitted"] == PROBE + 1
        # AIMD: a drop cuts the limit, a sample at the baseline raises it.
        assert lim._estimate == (1.8 if dropped else 3.0), use


def test_a_cancelled_call_gives_its_slot_back_and_is_no_sample() -> None:
    # At a limit of 2 any sample moves an AIMD limit: up, or down for a drop.
    lim, clock = limiter("aimd", initial_limit=2)
    past_probe(lim, clock)
    before = lim._estimate

    async def slow() -> None:
        await asyncio.sleep(10)

    async def main() -> None:
        task = asyncio.ensure_future(lim.call_async(slow))
        await asyncio.sleep(1)
        assert lim.in_flight == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    resil.run_virtual(main())
    with pytest.raises(KeyboardInterrupt):
        with lim:
            raise KeyboardInterrupt
    stats = lim.stats()
    assert stats["in_flight"] == 0 and stats["dropped"] == 0
    assert lim._estimate == before == 2.0


def test_cancellation_at_random_points_of_call_async_releases_exactly_once() -> None:
    lim, _ = limiter("vegas", initial_limit=8, min_limit=4, max_limit=8)
    rng = random.Random(7)
    entered = 0
    finished = 0

    async def work() -> None:
        nonlocal entered, finished
        entered += 1
        for _ in range(rng.randrange(1, 4)):
            await asyncio.sleep(rng.random() * 0.01)
        finished += 1

    async def main() -> list[BaseException | None]:
        tasks = [asyncio.ensure_future(lim.call_async(work)) for _ in range(400)]
        for task in tasks:
            if rng.random() < 0.5:
                asyncio.get_running_loop().call_later(rng.random() * 0.02, task.cancel)
        return list(await asyncio.gather(*tasks, return_exceptions=True))

    outcomes = resil.run_virtual(main())
    cancelled = sum(isinstance(o, asyncio.CancelledError) for o in outcomes)
    refused = sum(isinstance(o, resil.LimitExceeded) for o in outcomes)
    ok = sum(o is None for o in outcomes)
    assert cancelled + refused + ok == 400 and cancelled > 0 and refused > 0 and ok > 0
    stats = lim.stats()
    assert stats["in_flight"] == 0  # every admitted call gave its slot back once
    assert stats["admitted"] == entered and stats["rejected"] == refused
    assert finished == ok and stats["dropped"] == 0


# ---- threads and tasks at the limit ------------------------------------------------------

@pytest.mark.parametrize("bounds", [(4, 4), (2, 8)])
def test_32_threads_never_exceed_the_limit_and_every_call_is_counted(
        bounds: tuple[int, int]) -> None:
    low, high = bounds
    lim = resil.AdaptiveLimiter("gradient", initial_limit=low, min_limit=low, max_limit=high)
    lock = threading.Lock()
    active = peak = done = refused = 0
    over: list[tuple[int, int]] = []

    @lim
    def work() -> None:
        nonlocal active, peak, done
        with lock:
            active += 1
            peak = max(peak, active)
            if active > lim.max_limit:
                over.append((active, lim.limit))
        for _ in range(50):
            pass
        with lock:
            active -= 1
            done += 1

    def worker(_: int) -> None:
        nonlocal refused
        for _ in range(300):
            try:
                work()
            except resil.LimitExceeded:
                with lock:
                    refused += 1

    run_threads(worker, 32)
    stats = lim.stats()
    assert over == [] and peak <= high
    assert stats["admitted"] + stats["rejected"] == 32 * 300
    assert stats["admitted"] == done and stats["rejected"] == refused
    assert stats["in_flight"] == 0


def test_1000_tasks_never_exceed_the_limit() -> None:
    lim, _ = limiter("vegas", initial_limit=6, min_limit=6, max_limit=6)
    active = peak = 0

    @lim
    async def work(delay: float) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        assert active <= lim.limit
        await asyncio.sleep(delay)
        active -= 1

    async def caller(rng: random.Random) -> int:
        await asyncio.sleep(rng.random())
        try:
            await work(rng.random() * 0.05)
        except resil.LimitExceeded:
            return 0
        return 1

    async def main() -> int:
        rng = random.Random(3)
        return sum(await asyncio.gather(*(caller(rng) for _ in range(1000))))

    ok = resil.run_virtual(main())
    stats = lim.stats()
    assert peak == 6 and stats["admitted"] == ok and stats["rejected"] == 1000 - ok
    assert stats["in_flight"] == 0


# ---- the baseline follows the server --------------------------------------------------------

def test_a_probe_every_30_seconds_follows_a_slower_server() -> None:
    lim, clock = limiter("gradient", initial_limit=20, max_limit=100)
    past_probe(lim, clock, 0.010)
    assert lim.stats()["min_latency_ms"] == pytest.approx(10.0)
    # The server becomes three times slower: every call looks queued and the
    # limit falls, until the next probe measures the new baseline.
    latency = 0.030
    while lim.stats()["min_latency_ms"] != pytest.approx(30.0):
        permit = lim.try_acquire()
        assert permit is not None
        clock.advance(latency)
        lim.release(permit)
    assert clock.now() >= 30.0
    low = lim.limit
    for _ in range(200):  # steady at the new baseline: it grows again
        permits = [lim.try_acquire() for _ in range(lim.limit)]
        clock.advance(latency)
        for p in permits:
            assert p is not None
            lim.release(p)
    assert lim.limit > low + 10


# ---- convergence (each algorithm) ----------------------------------------------------------

SETTLE = 2000  # calls within which the limit must settle (SPEC)
WINDOW = 3000  # calls per phase: settled by call 2000 means in the band for 1000 more


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("capacity", [10, 50, 200])
@pytest.mark.parametrize("start", ["below", "above"])
def test_the_limit_settles_near_the_capacity_and_follows_it_when_it_halves(
        algorithm: str, capacity: int, start: str) -> None:
    """Settles: in [0.5 C, 2 C] after every call from call 2000 of a phase
    of 3000 calls to its end, first from initial_limit (C / 5 or 3 C), then
    again in [0.25 C, C] within 2000 calls after C halves."""
    initial = max(1, capacity // 5) if start == "below" else 3 * capacity
    lim, clock = limiter(algorithm, initial_limit=initial, max_limit=1000)
    limits = list(simulate(lim, clock, [capacity, capacity // 2], WINDOW))
    first, second = limits[:WINDOW], limits[WINDOW:]
    assert settled_after(first, 0.5 * capacity, 2 * capacity) <= SETTLE, first[-50:]
    assert settled_after(second, 0.25 * capacity, capacity) <= SETTLE, second[-50:]
    stats = lim.stats()
    assert stats["admitted"] == 2 * WINDOW + stats["in_flight"]
    json.dumps(stats, allow_nan=False)


def test_the_simulated_server_queues_beyond_its_capacity() -> None:
    """The simulation itself: at a fixed limit of 2 C every call past C waits."""
    lim, clock = limiter("aimd", initial_limit=20, min_limit=20, max_limit=20)
    start = clock.now()
    list(simulate(lim, clock, [10], 1000))
    # 20 in flight against 10 workers: 1000 calls take 1000 / 10 * 10 ms.
    assert clock.now() - start == pytest.approx(1.0, rel=0.05)


# ---- observation -----------------------------------------------------------------------------

def test_monitor_watch_counts_each_limit_exceeded_raised() -> None:
    lim, _ = limiter(initial_limit=1, name="api")
    monitor = resil.Monitor()
    monitor.watch(lim)
    monitor.watch(lim)  # once only
    held = lim.try_acquire()
    assert lim.try_acquire() is None  # the caller's to count
    for _ in range(3):
        with pytest.raises(resil.LimitExceeded):
            lim.call(print)
    lim.release(held)  # type: ignore[arg-type]
    other = monitor.dashboard()["resilience_metrics"]["other"]
    assert other == {"limit_exceeded": 3}


def test_stats_and_repr() -> None:
    lim, clock = limiter("vegas", initial_limit=4, name="db")
    stats = lim.stats()
    assert stats == {"name": "db", "algorithm": "vegas", "limit": 1, "in_flight": 0,
                     "admitted": 0, "rejected": 0, "dropped": 0, "min_latency_ms": None}
    past_probe(lim, clock)
    assert json.loads(json.dumps(lim.stats()))["min_latency_ms"] == 10.0
    assert "db" in repr(lim) and "limit=4" in repr(lim)


def test_otel_reports_calls_by_outcome_the_limit_and_the_calls_in_flight() -> None:
    pytest.importorskip("opentelemetry.sdk.metrics", reason="needs opentelemetry-sdk")
    from test_otel import _metrics, _points, _provider

    provider, reader = _provider()
    lim, clock = limiter("aimd", initial_limit=2, name="api")
    resil.otel.instrument(lim, meter_provider=provider)
    past_probe(lim, clock)
    held = lim.try_acquire()
    assert lim.try_acquire() is not None and lim.try_acquire() is None
    with pytest.raises(TimeoutError):
        with resil.AdaptiveLimiter(clock=clock):  # another limiter: not reported
            raise TimeoutError
    lim.release(held, 0.01, dropped=True)  # type: ignore[arg-type]
    metrics = _metrics(reader)
    calls = {dict(k)["resil.outcome"]: v
             for k, v in _points(metrics["resil.adaptive_limiter.calls"]).items()}
    assert calls == {"admitted": PROBE + 2, "rejected": 1, "dropped": 1}
    assert metrics["resil.adaptive_limiter.calls"].data.is_monotonic
    name = (("resil.name", "api"),)
    assert _points(metrics["resil.adaptive_limiter.limit"]) == {name: lim.limit}
    assert _points(metrics["resil.adaptive_limiter.in_flight"]) == {name: 1}
    assert metrics["resil.adaptive_limiter.limit"].unit == "{call}"


def test_prometheus_exposition_has_the_calls_the_limit_and_the_calls_in_flight() -> None:
    lim, clock = limiter("vegas", initial_limit=2, name="api")
    past_probe(lim, clock)
    held = lim.try_acquire()
    assert lim.try_acquire() is not None and lim.try_acquire() is None
    lim.release(held, dropped=True)  # type: ignore[arg-type]
    text = resil.prometheus.exposition(lim, ("renamed", lim))
    for label in ("api", "renamed"):
        assert f'resil_adaptive_limiter_calls_total{{limiter="{label}",outcome="admitted"}} 12' \
            in text
        assert f'resil_adaptive_limiter_calls_total{{limiter="{label}",outcome="rejected"}} 1' \
            in text
        assert f'resil_adaptive_limiter_calls_total{{limiter="{label}",outcome="dropped"}} 1' \
            in text
        assert f'resil_adaptive_limiter_limit{{limiter="{label}"}} {lim.limit}' in text
        assert f'resil_adaptive_limiter_in_flight{{limiter="{label}"}} 1' in text
    assert "# TYPE resil_adaptive_limiter_calls_total counter" in text
    assert "# TYPE resil_adaptive_limiter_limit gauge" in text


def test_a_python_clock_that_raises_or_releases_the_permit_meanwhile() -> None:
    class Clock:
        def __init__(self) -> None:
            self.t = 0.0
            self.hook: Any = None

        def now(self) -> float:
            hook, self.hook = self.hook, None
            if hook is not None:
                hook()
            return self.t

    clock = Clock()
    lim = resil.AdaptiveLimiter("aimd", initial_limit=3, min_limit=3, max_limit=3, clock=clock)
    permit = lim.try_acquire()
    assert permit is not None

    def fail() -> None:
        raise ZeroDivisionError("clock")

    clock.hook = fail
    with pytest.raises(ZeroDivisionError):
        lim.release(permit)
    assert permit.released is False and lim.in_flight == 1
    other = lim.try_acquire()
    assert other is not None
    # The clock's own code releases the permit before the release it serves.
    clock.hook = lambda: lim.release(permit, 0.001)
    with pytest.raises(ValueError, match="already released"):
        lim.release(permit)
    assert permit.released is True and lim.in_flight == 1  # other's slot is still taken
    lim.release(other)
    assert lim.in_flight == 0 and lim.stats()["admitted"] == 2


@pytest.mark.parametrize("form", ["decorator", "with", "call", "async with", "call_async"])
def test_a_clock_that_raises_when_a_guarded_call_ends_gives_the_slot_back(form: str) -> None:
    class Clock:
        t = 0.0
        fail = False

        def now(self) -> float:
            if self.fail:
                raise ZeroDivisionError("clock")
            return self.t

    clock = Clock()
    lim = resil.AdaptiveLimiter("aimd", initial_limit=1, min_limit=1, max_limit=1, clock=clock)

    def work() -> int:
        clock.fail = True  # read next when the call ends
        return 1

    async def awork() -> int:
        return work()

    async def run_async() -> None:
        if form == "async with":
            async with lim:
                await awork()
        else:
            await lim.call_async(awork)

    with pytest.raises(ZeroDivisionError):
        if form == "decorator":
            lim(work)()
        elif form == "with":
            with lim:
                work()
        elif form == "call":
            lim.call(work)
        else:
            asyncio.run(run_async())
    clock.fail = False
    assert lim.in_flight == 0
    assert lim.try_acquire() is not None  # the one slot is free again


def test_a_block_ended_in_another_context_gives_its_slot_back() -> None:
    lim = resil.AdaptiveLimiter("aimd", initial_limit=2, min_limit=2, max_limit=2)

    async def agen() -> Any:
        async with lim:
            yield 1
            yield 2

    async def started() -> Any:
        g = agen()
        async for _ in g:
            break
        return g

    async def main() -> None:
        g = await asyncio.create_task(started())
        assert lim.in_flight == 1
        await g.aclose()  # its __aexit__ runs in this task's context

    asyncio.run(main())
    assert lim.in_flight == 0

    def gen() -> Any:
        with lim:
            yield 1

    g = gen()
    next(g)
    with lim:  # a block of this context stays counted meanwhile
        closer = threading.Thread(target=g.close)
        closer.start()
        closer.join()
        assert lim.in_flight == 1
    assert lim.in_flight == 0
    assert lim.stats()["admitted"] == 3
    errors: list[BaseException] = []

    def exit_with_no_block_open() -> None:
        try:
            lim.__exit__(None, None, None)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    other = threading.Thread(target=exit_with_no_block_open)
    other.start()
    other.join()
    assert [type(e) for e in errors] == [RuntimeError] and lim.in_flight == 0


def test_call_of_a_coroutine_function_holds_the_slot_until_the_coroutine_ends() -> None:
    lim = resil.AdaptiveLimiter("aimd", initial_limit=3, min_limit=3, max_limit=3)
    bulkhead = resil.Bulkhead("b", max_concurrent=3)

    async def svc() -> tuple[int, int]:
        await asyncio.sleep(0)
        return lim.in_flight, bulkhead.stats()["active"]

    async def main() -> None:
        assert await lim.call(svc) == (1, 0)
        assert await bulkhead.call(svc) == (0, 1)
        unawaited = lim.call(svc)  # admitted when awaited, so nothing taken yet
        assert lim.in_flight == 0
        unawaited.close()

    asyncio.run(main())
    assert lim.in_flight == 0 and bulkhead.stats()["active"] == 0
