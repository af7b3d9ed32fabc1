"""resil.AdaptiveScheduler on virtual time."""

from __future__ import annotations

import asyncio

import pytest

import resil
from resil import AdaptiveScheduler, TimeScale


def test_low_activity_slows_down_and_high_activity_speeds_up() -> None:
    clock = resil.VirtualClock()
    runs: list[float] = []
    level = [0.1]

    async def job() -> float:
        runs.append(round(clock.now(), 9))
        return level[0]

    async def main() -> None:
        sched = AdaptiveScheduler(clock=clock)
        sched.add("sampler", job, scale=TimeScale.MICRO)
        async with sched:
            await asyncio.sleep(0.5)
            gaps = [round(b - a, 6) for a, b in zip(runs, runs[1:])]
            assert gaps[:3] == [0.12, 0.144, 0.1728]
            await asyncio.sleep(20)
            assert sched.interval("sampler") == 1.0
            level[0] = 0.9
            await asyncio.sleep(10)
            assert sched.interval("sampler") == 0.05
        assert asyncio.all_tasks() == {asyncio.current_task()}

    resil.run_virtual(main(), clock)


def test_five_consecutive_errors_skip_the_job_for_sixty_seconds() -> None:
    clock = resil.VirtualClock()
    calls: list[float] = []

    async def job() -> float:
        calls.append(clock.now())
        if clock.now() < 100:
            raise ConnectionError("source down")
        return 0.5

    async def main() -> None:
        sched = AdaptiveScheduler(clock=clock)
        sched.add("ingest", job, scale=TimeScale.MESO)   # every 10 s: errors at 0..40
        async with sched:
            await asyncio.sleep(59)
            st = sched.status()
            assert st["circuit_breaker"]["tripped"] is True
            assert st["circuit_breaker"]["max_consecutive_errors"] == 5
            assert st["jobs"]["ingest"]["errors"] == 5
            tripped_at = calls[4]
            await asyncio.sleep(200)
        # nothing ran during the 60 s after the fifth error; it ran again after
        assert not [t for t in calls if tripped_at < t < tripped_at + 60]
        assert any(t >= tripped_at + 60 for t in calls)
        assert sched.status()["jobs"]["ingest"]["runs"] > 0
        assert sched.status()["circuit_breaker"]["tripped"] is False

    resil.run_virtual(main(), clock)


def test_novelty_events_go_through_the_emitter_and_status_matches_the_seed() -> None:
    clock = resil.VirtualClock()
    events: list[dict] = []
    levels = iter([0.2, 0.8, 0.3, 0.75, 0.1] + [0.0] * 100)

    async def sink(event: dict) -> None:
        events.append(event)

    async def job() -> None:
        return None

    async def main() -> None:
        emitter = resil.EventEmitter(sink)
        sched = AdaptiveScheduler(emitter=emitter, novelty_threshold=0.75, clock=clock)
        sched.add("braid", job, scale=TimeScale.MICRO, activity=lambda: next(levels))
        async with emitter, sched:
            await asyncio.sleep(1)
        assert [e["activity"] for e in events] == [0.8, 0.75]
        assert {e["type"] for e in events} == {"novelty"} and events[0]["job"] == "braid"
        st = sched.status()
        assert set(st) >= {"circuit_breaker", "adaptive_intervals", "event_queue_size",
                           "last_emission"}
        assert set(st["circuit_breaker"]) == {"enabled", "tripped", "consecutive_errors",
                                              "max_consecutive_errors", "trip_time"}
        assert list(st["adaptive_intervals"]) == ["braid"]
        assert st["last_emission"].endswith("Z") and st["jobs"]["braid"]["novelty_events"] == 2

    resil.run_virtual(main(), clock)


def test_validation() -> None:
    async def job() -> None:
        pass

    sched = AdaptiveScheduler()
    sched.add("a", job)
    with pytest.raises(ValueError, match="already"):
        sched.add("a", job)
    with pytest.raises(TypeError, match="scale"):
        sched.add("b", job, scale="fast")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="emitter"):
        AdaptiveScheduler(emitter=object())  # type: ignore[arg-type]
