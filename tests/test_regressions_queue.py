"""Regressions: queues, the adaptive scheduler and the monitor (thread safety
with a Python clock, and bad input naming the parameter)."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import Counter
from typing import Any

import pytest

import resil
from tests_support import run_threads

NAN = float("nan")
INF = float("inf")
HUGE = 10**400


def _id(value: Any) -> str:
    if isinstance(value, type):
        return value.__name__
    text = repr(value)
    return text if len(text) <= 16 else text[:6] + "..."


class SlowPyClock:
    """A clock written in Python that gives other threads a turn on every
    read, as any Python clock may (its now() runs bytecode)."""

    def now(self) -> float:
        time.sleep(0)
        return time.monotonic()


# ---- BoundedQueue with a Python clock, under threads ---------------------------------

def test_bounded_queue_python_clock_threads_lose_nothing() -> None:
    q: resil.BoundedQueue[int] = resil.BoundedQueue(4, warn_at=1.0, reject_at=1.0, clock=SlowPyClock())
    threads_n, rounds = 6, 1500
    accepted: list[list[int]] = [[] for _ in range(threads_n)]
    taken: list[list[int]] = [[] for _ in range(threads_n)]
    counts = [[0, 0] for _ in range(threads_n)]   # QueueFull, QueueEmpty
    errors: list[BaseException] = []
    start = threading.Barrier(threads_n)

    def work(t: int) -> None:
        try:
            start.wait()
            # Even threads put twice per get on every other round, odd ones
            # get twice per put: the queue swings between full and empty, so
            # puts race for room and gets for the last item on any
            # interpreter's scheduling.
            extra_put, extra_get = (1, 0) if t % 2 == 0 else (0, 1)
            for i in range(rounds):
                for k in range(1 + extra_put * (i % 2)):
                    item = (t * rounds + i) * 2 + k
                    try:
                        q.put_nowait(item)
                    except resil.QueueFull:
                        counts[t][0] += 1
                    else:
                        accepted[t].append(item)
                for _ in range(1 + extra_get * (i % 2)):
                    try:
                        taken[t].append(q.get_nowait())
                    except asyncio.QueueEmpty:
                        counts[t][1] += 1
                    else:
                        q.task_done()
        except BaseException as exc:  # reported below, not by the thread hook
            errors.append(exc)

    run_threads(work, threads_n)
    assert errors == []
    rest = []
    while not q.empty():
        rest.append(q.get_nowait())
        q.task_done()
    put_ok = [x for part in accepted for x in part]
    got = [x for part in taken for x in part] + rest
    assert Counter(got) == Counter(put_ok)          # every accepted item, exactly once
    assert len(set(got)) == len(got)
    s = q.stats()
    assert s["put"] == len(put_ok)
    assert s["got"] == len(got)
    assert s["rejected"] == sum(c[0] for c in counts)
    assert s["depth"] == 0 and s["unfinished"] == 0
    puts_tried = sum(rounds + rounds // 2 if t % 2 == 0 else rounds for t in range(threads_n))
    assert s["put"] + s["rejected"] == puts_tried
    # The run did race: some puts were refused and some gets found nothing.
    assert s["rejected"] > 0 and sum(c[1] for c in counts) > 0


class SlowKey:
    """A key whose __hash__ and __eq__ are Python code that gives other
    threads a turn."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __hash__(self) -> int:
        time.sleep(0)
        return self.n

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SlowKey) and other.n == self.n


def test_partitioned_queue_threads_lose_nothing() -> None:
    q: resil.PartitionedQueue[SlowKey, int] = resil.PartitionedQueue(4)
    keys = [SlowKey(n) for n in range(3)]
    threads_n, rounds = 4, 300
    accepted: list[list[int]] = [[] for _ in range(threads_n)]
    taken: list[list[int]] = [[] for _ in range(threads_n)]
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(rounds):
                item = t * rounds + i
                try:
                    q.put_nowait(item, keys[item % 3])
                except resil.QueueFull:
                    pass
                else:
                    accepted[t].append(item)
                try:
                    key, got = q.get_nowait()
                except asyncio.QueueEmpty:
                    pass
                else:
                    taken[t].append(got)
                    q.task_done(key)
        except BaseException as exc:
            errors.append(exc)

    run_threads(work, threads_n)
    assert errors == []
    s = q.stats()
    assert s["depth"] <= 4 and s["held"] == 0
    rest = []
    while True:
        try:
            key, got = q.get_nowait()
        except asyncio.QueueEmpty:
            break
        rest.append(got)
        q.task_done(key)
    put_ok = sorted(x for part in accepted for x in part)
    assert sorted([x for part in taken for x in part] + rest) == put_ok
    assert q.stats() == {"depth": 0, "keys": 0, "held": 0, "ready": 0, "unfinished": 0}


def test_bounded_queue_failing_python_clock_changes_nothing() -> None:
    class Flaky:
        fail = False

        def now(self) -> float:
            if self.fail:
                raise ZeroDivisionError("clock")
            return 1.0

    clock = Flaky()
    q: resil.BoundedQueue[str] = resil.BoundedQueue(2, warn_at=1.0, reject_at=1.0, clock=clock)
    q.put_nowait("a")
    clock.fail = True
    with pytest.raises(ZeroDivisionError):
        q.put_nowait("b")
    with pytest.raises(ZeroDivisionError):
        q.get_nowait()
    clock.fail = False
    s = q.stats()
    assert (s["depth"], s["put"], s["got"], s["rejected"], s["unfinished"]) == (1, 1, 0, 0, 1)
    assert q.get_nowait() == "a"


# ---- drain / join timeouts -----------------------------------------------------------

def _queues() -> list[Any]:
    bq: resil.BoundedQueue[int] = resil.BoundedQueue(10, clock=resil.VirtualClock())
    pq: resil.PartitionedQueue[str, int] = resil.PartitionedQueue(10)
    return [bq, pq]


@pytest.mark.parametrize("kind", ["bounded", "partitioned"])
@pytest.mark.parametrize("timeout", [NAN, -1, -0.5, -INF])
def test_drain_rejects_bad_timeout_values(kind: str, timeout: float) -> None:
    async def main() -> None:
        q = _queues()[kind == "partitioned"]
        # Both with nothing to process and with work pending.
        with pytest.raises(ValueError, match="timeout"):
            await q.drain(timeout)
        if kind == "partitioned":
            await q.put(1, "k")
        else:
            await q.put(1)
        with pytest.raises(ValueError, match="timeout"):
            await q.drain(timeout)

    asyncio.run(main())


@pytest.mark.parametrize("kind", ["bounded", "partitioned"])
@pytest.mark.parametrize("timeout", ["1", b"1", [1], True, 1j])
def test_drain_rejects_bad_timeout_types(kind: str, timeout: Any) -> None:
    async def main() -> None:
        q = _queues()[kind == "partitioned"]
        with pytest.raises(TypeError, match="timeout"):
            await q.drain(timeout)

    asyncio.run(main())


@pytest.mark.parametrize("kind", ["bounded", "partitioned"])
def test_drain_infinite_timeout_waits_like_none(kind: str) -> None:
    async def main() -> None:
        q = _queues()[kind == "partitioned"]
        assert await q.drain(INF) is True
        if kind == "partitioned":
            await q.put(1, "k")
        else:
            await q.put(1)

        async def worker() -> None:
            await asyncio.sleep(0.01)
            if kind == "partitioned":
                key, _ = await q.get()
                q.task_done(key)
            else:
                await q.get()
                q.task_done()

        task = asyncio.ensure_future(worker())
        assert await q.drain(INF) is True
        assert await q.drain(HUGE) is True   # any huge bound is "no timeout" too
        await task

    asyncio.run(main())


# ---- queue constructors --------------------------------------------------------------

@pytest.mark.parametrize("maxsize,exc", [
    (NAN, TypeError), (1.0, TypeError), ("10", TypeError), (True, TypeError), (None, TypeError),
    (HUGE, ValueError), (-HUGE, ValueError), (0, ValueError), (-1, ValueError),
], ids=_id)
def test_bounded_queue_maxsize(maxsize: Any, exc: type[Exception]) -> None:
    with pytest.raises(exc, match="maxsize"):
        resil.BoundedQueue(maxsize)


@pytest.mark.parametrize("name", ["warn_at", "reject_at"])
@pytest.mark.parametrize("value,exc", [
    (NAN, ValueError), (INF, ValueError), (-INF, ValueError), (0, ValueError), (1.5, ValueError),
    (HUGE, ValueError), ("0.5", TypeError), (True, TypeError), (None, TypeError),
], ids=_id)
def test_bounded_queue_watermarks(name: str, value: Any, exc: type[Exception]) -> None:
    with pytest.raises(exc, match=name):
        resil.BoundedQueue(10, **{name: value})


@pytest.mark.parametrize("maxsize,exc", [
    (NAN, TypeError), (1.0, TypeError), ("10", TypeError), (True, TypeError), (None, TypeError),
    (HUGE, ValueError), (0, ValueError), (-1, ValueError),
], ids=_id)
def test_partitioned_queue_maxsize(maxsize: Any, exc: type[Exception]) -> None:
    with pytest.raises(exc, match="maxsize"):
        resil.PartitionedQueue(maxsize)


def test_watermark_bounds_accepted() -> None:
    q: resil.BoundedQueue[int] = resil.BoundedQueue(10, warn_at=1, reject_at=1)
    assert (q.warn_at, q.reject_at) == (1.0, 1.0)
    assert math.isclose(resil.BoundedQueue(10, warn_at=0.25, reject_at=0.5).warn_at, 0.25)


# ---- AdaptiveScheduler ---------------------------------------------------------------

@pytest.mark.parametrize("value", [NAN, INF, -INF, HUGE, -HUGE], ids=_id)
def test_scheduler_novelty_threshold_value(value: Any) -> None:
    with pytest.raises(ValueError, match="novelty_threshold"):
        resil.AdaptiveScheduler(novelty_threshold=value)


@pytest.mark.parametrize("value", ["0.5", None, True, [0.5], 1j])
def test_scheduler_novelty_threshold_type(value: Any) -> None:
    with pytest.raises(TypeError, match="novelty_threshold"):
        resil.AdaptiveScheduler(novelty_threshold=value)


def test_scheduler_novelty_threshold_any_finite_number() -> None:
    # Activities are any finite numbers (as AdaptiveInterval's threshold).
    for value in (0, 0.75, 1, -3.5, 1e6):
        resil.AdaptiveScheduler(novelty_threshold=value)


@pytest.mark.parametrize("clock", [42, "clock", object()])
def test_scheduler_clock_must_have_now(clock: Any) -> None:
    with pytest.raises(TypeError, match="clock"):
        resil.AdaptiveScheduler(clock=clock)


def test_scheduler_add_validates() -> None:
    async def job() -> float:
        return 0.5

    s = resil.AdaptiveScheduler()
    with pytest.raises(TypeError, match="name"):
        s.add(b"x", job)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="job"):
        s.add("a", 1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="scale"):
        s.add("a", job, scale="MESO")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="activity"):
        s.add("a", job, activity=0.5)  # type: ignore[arg-type]
    assert s.status()["jobs"] == {}   # nothing half-added


@pytest.mark.parametrize("graceful,forced,exc,name", [
    (NAN, 1.0, ValueError, "graceful"), (-1, 1.0, ValueError, "graceful"),
    (1.0, NAN, ValueError, "forced"), ("5", 1.0, TypeError, "graceful"),
    (1.0, None, TypeError, "forced"),
])
def test_scheduler_stop_validates_before_stopping(graceful: Any, forced: Any,
                                                  exc: type[Exception], name: str) -> None:
    clock = resil.VirtualClock()
    runs: list[float] = []

    async def job() -> float:
        runs.append(clock.now())
        return 0.0

    async def main() -> None:
        s = resil.AdaptiveScheduler(clock=clock)
        s.add("j", job, scale=resil.TimeScale.MICRO)
        s.start()
        await asyncio.sleep(0.5)
        with pytest.raises(exc, match=name):
            await s.stop(graceful, forced)
        n = len(runs)
        await asyncio.sleep(5)
        assert len(runs) > n            # still running: the bad stop changed nothing
        await s.stop()
        assert s.status()["tasks"]["active"] == 0

    resil.run_virtual(main(), clock)


def test_scheduler_non_finite_activity_counts_as_job_error() -> None:
    # A job reporting NaN, inf or a number too large for a float neither
    # poisons its interval nor kills its loop nor emits: it is a job error.
    clock = resil.VirtualClock()
    events: list[Any] = []
    levels = iter([NAN, INF, -INF, HUGE] + [0.9] * 1000)

    async def sink(event: Any) -> None:
        events.append(event)

    async def job() -> float:
        return next(levels)

    async def main() -> None:
        emitter = resil.EventEmitter(sink)
        s = resil.AdaptiveScheduler(emitter=emitter, clock=clock)
        s.add("j", job, scale=resil.TimeScale.MESO)
        async with emitter, s:
            await asyncio.sleep(35)          # runs at 0, 10, 20, 30: the four bad ones
            st = s.status()["jobs"]["j"]
            assert (st["errors"], st["runs"], st["breaker"]) == (4, 0, "CLOSED")
            assert s.interval("j") == 10.0   # a failed run leaves the interval
            assert events == []
            await asyncio.sleep(30)
            st = s.status()["jobs"]["j"]
            assert st["runs"] >= 1 and s.interval("j") < 10.0
            assert s.status()["tasks"]["active"] == 1
        assert events and all(e["activity"] == 0.9 for e in events)

    resil.run_virtual(main(), clock)


# ---- Monitor.record / record_event / watch -------------------------------------------

@pytest.mark.parametrize("success", ["false", "", 0, 1, None, 0.0, b"", [False]])
def test_monitor_record_success_must_be_bool(success: Any) -> None:
    m = resil.Monitor(clock=resil.VirtualClock())
    with pytest.raises(TypeError, match="success"):
        m.record("c", "op", 1.0, success)
    assert m.dashboard()["system_health"]["total_requests"] == 0


def test_monitor_record_false_counts_failure() -> None:
    m = resil.Monitor(clock=resil.VirtualClock())
    m.record("c", "op", 1.0, False)
    m.record("c", "op", 1.0, True)
    comp = m.dashboard()["component_performance"]["c"]
    assert comp["error_count"] == 1 and comp["total_requests"] == 2


@pytest.mark.parametrize("duration", [NAN, INF, -INF, -1, -1e-9, HUGE], ids=_id)
def test_monitor_record_duration_value(duration: Any) -> None:
    m = resil.Monitor(clock=resil.VirtualClock())
    with pytest.raises(ValueError, match="duration_ms"):
        m.record("c", "op", duration, True)


@pytest.mark.parametrize("duration", ["1", True, None, 1j])
def test_monitor_record_duration_type(duration: Any) -> None:
    m = resil.Monitor(clock=resil.VirtualClock())
    with pytest.raises(TypeError, match="duration_ms"):
        m.record("c", "op", duration, True)


def test_monitor_constructor() -> None:
    for name in ("retention", "alert_error_rate", "alert_response_ms"):
        for bad in (NAN, INF, -1, HUGE):
            with pytest.raises(ValueError, match=name):
                resil.Monitor(**{name: bad})
        for wrong in ("1", True, None):
            with pytest.raises(TypeError, match=name):
                resil.Monitor(**{name: wrong})
    for bad in (0, 65, HUGE):
        with pytest.raises(ValueError, match="slots"):
            resil.Monitor(slots=bad)
    for wrong in (1.0, "3", True, None):
        with pytest.raises(TypeError, match="slots"):
            resil.Monitor(slots=wrong)
    with pytest.raises(TypeError, match="clock"):
        resil.Monitor(clock=42)


def test_monitor_record_names() -> None:
    m = resil.Monitor(clock=resil.VirtualClock())
    with pytest.raises(TypeError, match="component"):
        m.record(b"c", "op", 1.0, True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="component"):
        m.record("", "op", 1.0, True)
    with pytest.raises(TypeError, match="operation"):
        m.record("c", 1, 1.0, True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="operation"):
        m.record("c", "", 1.0, True)
    with pytest.raises(TypeError, match="error_type"):
        m.record("c", "op", 1.0, False, error_type=ValueError)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="error_type"):
        m.record("c", "op", 1.0, False, error_type="")
    with pytest.raises(TypeError, match="kind"):
        m.record_event(None, "c")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="kind"):
        m.record_event("", "c")
    with pytest.raises(TypeError, match="component"):
        m.record_event("timeout", 3)  # type: ignore[arg-type]
    assert m.dashboard()["system_health"]["total_requests"] == 0


@pytest.mark.parametrize("source", ["x", b"x", [], (), {}, {"a": 1}, object(), None, 3])
def test_monitor_watch_rejects_other_kinds(source: Any) -> None:
    m = resil.Monitor(clock=resil.VirtualClock())
    with pytest.raises(TypeError, match="CircuitBreaker.*BreakerGroup"):
        m.watch(source)


def test_monitor_watch_rejects_mapping_of_breakers() -> None:
    # A plain dict of breakers is not a BreakerGroup: refused, and no
    # listener is attached to any of its breakers.
    m = resil.Monitor(clock=resil.VirtualClock())
    b = resil.CircuitBreaker("a", failure_threshold=1, clock=resil.VirtualClock())
    with pytest.raises(TypeError, match="BreakerGroup"):
        m.watch({"a": b})
    b.record_failure()
    assert m.dashboard()["resilience_metrics"]["circuit_breaker_trips"] == 0


def test_monitor_watch_group() -> None:
    clock = resil.VirtualClock()
    m = resil.Monitor(clock=clock)
    g = resil.BreakerGroup(failure_threshold=1, clock=clock)
    g["a"]
    m.watch(g)
    g["a"].record_failure()
    assert m.dashboard()["resilience_metrics"]["circuit_breaker_trips"] == 1
