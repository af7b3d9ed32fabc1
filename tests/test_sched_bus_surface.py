"""The scheduler's tunable jobs (a caller's breaker, a caller's interval, an
async function as the emitter) and the bus's wildcard subscriptions, typed
contracts and run-time storm settings, on virtual time."""

from __future__ import annotations

import asyncio
import functools
import math
from typing import Any

import pytest

import resil
from resil import AdaptiveInterval, AdaptiveScheduler, CircuitBreaker, EventBus, TimeScale


# ---- scheduler: a caller's breaker --------------------------------------------------------------
def test_a_callers_breaker_trips_after_its_own_threshold_and_the_job_is_skipped() -> None:
    clock = resil.VirtualClock()
    calls: list[float] = []
    other_calls: list[float] = []

    async def job() -> float:
        calls.append(clock.now())
        if clock.now() < 100:
            raise ConnectionError("source down")
        return 0.1

    async def other() -> float:
        other_calls.append(clock.now())
        return 0.1

    async def main() -> None:
        breaker = CircuitBreaker("source", failure_threshold=2, cooldown=30.0, clock=clock)
        sched = AdaptiveScheduler(clock=clock)
        sched.add("ingest", job, scale=TimeScale.MESO, breaker=breaker)
        sched.add("quiet", other, scale=TimeScale.MESO)  # the default breaker
        async with sched:
            await asyncio.sleep(15)          # failures at 0 and 10: tripped at 10
            assert breaker.state is resil.State.OPEN
            st = sched.status()
            assert st["circuit_breaker"]["tripped"] is True
            assert st["circuit_breaker"]["max_consecutive_errors"] == 2
            assert st["circuit_breaker"]["consecutive_errors"] == 2
            assert st["jobs"]["ingest"]["max_consecutive_errors"] == 2
            assert st["jobs"]["quiet"]["max_consecutive_errors"] == 5
            await asyncio.sleep(24)          # 20 and 30 fall inside the 30 s cooldown
            st = sched.status()
            assert st["jobs"]["ingest"]["errors"] == 2
            assert st["jobs"]["ingest"]["skipped"] == 2
            assert calls == [0.0, 10.0]
            assert breaker.stats()["rejected"] == 2
        # the quiet job, on its own breaker, never stopped
        assert len(other_calls) >= 3 and sched.status()["jobs"]["quiet"]["skipped"] == 0

    resil.run_virtual(main(), clock)


def test_jobs_sharing_a_breaker_are_counted_once_and_bad_breakers_are_refused() -> None:
    clock = resil.VirtualClock()

    async def failing() -> None:
        raise OSError("down")

    async def main() -> None:
        shared = CircuitBreaker("svc", failure_threshold=3, cooldown=500.0, clock=clock)
        sched = AdaptiveScheduler(clock=clock)
        sched.add("a", failing, scale=TimeScale.MICRO, breaker=shared)
        sched.add("b", failing, scale=TimeScale.MICRO, breaker=shared)
        async with sched:
            await asyncio.sleep(1)
        st = sched.status()
        # two jobs' failures moved one breaker: three in a row tripped it
        assert st["jobs"]["a"]["errors"] + st["jobs"]["b"]["errors"] == 3
        assert st["circuit_breaker"]["tripped"] is True
        assert st["circuit_breaker"]["consecutive_errors"] == 3
        assert st["jobs"]["a"]["skipped"] > 0 and st["jobs"]["b"]["skipped"] > 0

    resil.run_virtual(main(), clock)

    async def job() -> None:
        pass

    sched = AdaptiveScheduler()
    for bad in ("svc", object(), 5, 1.5, AdaptiveInterval(1.0, 0.5, 2.0, 0.5)):
        with pytest.raises(TypeError, match="breaker"):
            sched.add("x", job, breaker=bad)  # type: ignore[arg-type]
    assert "x" not in sched.status()["jobs"]


# ---- scheduler: a caller's interval ----------------------------------------------------------------
def test_a_custom_adaptive_interval_rules_the_jobs_waits() -> None:
    clock = resil.VirtualClock()
    runs: list[float] = []
    level = [0.1]

    async def job() -> float:
        runs.append(clock.now())
        return level[0]

    interval = AdaptiveInterval(2.0, 1.5, 3.0, 0.6, speedup=0.5, slowdown=1.1)

    async def main() -> None:
        sched = AdaptiveScheduler(clock=clock)
        sched.add("custom", job, scale=interval)
        async with sched:
            await asyncio.sleep(20)
            gaps = [round(b - a, 6) for a, b in zip(runs, runs[1:])]
            # slowdown 1.1 from base 2.0, clamped at the interval's own max 3.0
            assert gaps[:6] == [2.2, 2.42, 2.662, 2.9282, 3.0, 3.0]
            assert interval.interval == 3.0 == sched.interval("custom")
            level[0] = 0.7                   # above its threshold 0.6 (MESO's is 0.3)
            await asyncio.sleep(10)
            assert interval.interval == 1.5  # speedup 0.5, clamped at its min 1.5
            st = sched.status()
            assert st["adaptive_intervals"] == {"custom": 1.5}
            assert st["jobs"]["custom"]["scale"] == "CUSTOM"
        # an activity between MESO's threshold and this one's slows it down
        level[0] = 0.5
        before = interval.interval
        assert interval.update(0.5) == pytest.approx(before * 1.1)

    resil.run_virtual(main(), clock)


def test_one_interval_object_steps_one_job() -> None:
    async def job() -> None:
        pass

    interval = AdaptiveInterval(1.0, 0.5, 2.0, 0.5)
    sched = AdaptiveScheduler()
    sched.add("first", job, scale=interval)
    with pytest.raises(ValueError, match="scale.*'first'"):
        sched.add("second", job, scale=interval)
    sched.add("third", job, scale=AdaptiveInterval(1.0, 0.5, 2.0, 0.5))
    sched.add("preset", job, scale=TimeScale.MACRO)
    assert sched.status()["adaptive_intervals"] == {"first": 1.0, "third": 1.0, "preset": 300.0}
    for bad in ("MESO", 10.0, None, TimeScale.MESO.value):
        with pytest.raises(TypeError, match="scale"):
            sched.add("bad", job, scale=bad)  # type: ignore[arg-type]
    assert "second" not in sched.status()["jobs"] and "bad" not in sched.status()["jobs"]


# ---- scheduler: an async function as the emitter ------------------------------------------------
def test_novelty_events_reach_a_plain_async_function() -> None:
    clock = resil.VirtualClock()
    events: list[dict[str, Any]] = []
    levels = iter([0.2, 0.9, 0.1, 0.8] + [0.0] * 1000)

    async def sink(event: dict[str, Any]) -> None:
        await asyncio.sleep(0.01)   # a transport that takes time
        events.append(event)

    async def job() -> float:
        return next(levels)

    async def main() -> None:
        sched = AdaptiveScheduler(emitter=sink, clock=clock)
        assert isinstance(sched.emitter, resil.EventEmitter)
        sched.add("braid", job, scale=TimeScale.MICRO)
        async with sched:
            await asyncio.sleep(0.5)
            assert sched.status()["last_emission"] is not None
        assert [e["activity"] for e in events] == [0.9, 0.8]
        assert events[0]["type"] == "novelty" and events[0]["scale"] == "MICRO"
        assert sched.emitter is not None and sched.emitter.stats()["running"] is False
        # a second run wraps the function anew
        sched.add("late", job, scale=TimeScale.MICRO)
        levels_left = len(events)
        async with sched:
            await asyncio.sleep(0.3)
        assert len(events) == levels_left  # zeros only: no novelty, and no error either
        assert asyncio.all_tasks() == {asyncio.current_task()}

    resil.run_virtual(main(), clock)


def test_async_callables_of_every_shape_are_accepted_and_plain_ones_refused() -> None:
    got: list[Any] = []

    async def sink(event: Any, tag: str = "") -> None:
        got.append((tag, event["activity"]))

    class Transport:
        async def __call__(self, event: Any) -> None:
            got.append(("obj", event["activity"]))

        async def send(self, event: Any) -> None:
            got.append(("method", event["activity"]))

    async def job() -> float:
        return 1.0

    async def main(emitter: Any) -> None:
        sched = AdaptiveScheduler(emitter=emitter)
        sched.add("j", job, scale=TimeScale.MICRO)
        sched.start()
        await asyncio.sleep(0)
        await sched.stop()

    for emitter in (functools.partial(sink, tag="partial"), Transport(), Transport().send):
        asyncio.run(main(emitter))
    assert got == [("partial", 1.0), ("obj", 1.0), ("method", 1.0)]

    def plain(event: Any) -> None:
        pass

    for bad in (plain, lambda e: asyncio.sleep(0), print, object(), "ws://x", 3):
        with pytest.raises(TypeError, match="emitter"):
            AdaptiveScheduler(emitter=bad)  # type: ignore[arg-type]


def test_stopping_gives_an_owned_emitter_only_what_is_left_of_the_limits() -> None:
    clock = resil.VirtualClock()
    hang = asyncio.Event

    async def stuck(event: Any) -> None:
        await hang().wait()         # a transport that never answers

    async def job() -> float:
        return 1.0

    async def main() -> None:
        sched = AdaptiveScheduler(emitter=stuck, clock=clock)
        sched.add("j", job, scale=TimeScale.MICRO)
        sched.start()
        await asyncio.sleep(0.3)
        started = clock.now()
        await sched.stop(graceful=1.0, forced=0.5)
        assert clock.now() - started <= 1.5 + 1e-9
        assert sched.emitter is not None
        assert sched.emitter.stats()["dropped"] >= 1   # what was queued is counted, not lost
        assert asyncio.all_tasks() == {asyncio.current_task()}

    resil.run_virtual(main(), clock)
    assert math.isfinite(clock.now())
