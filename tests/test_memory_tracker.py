"""resil.MemoryTracker: the process's resident memory, sampled, with its
peak, mean and recent snapshots; around a phase of work and as a job."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest

import resil
from resil.observe import memory
from tests_support import run_threads

MB = 1 << 20


@pytest.fixture
def rss(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The resident sizes the tracker reads, in bytes, in turn."""
    sizes: list[int] = []
    monkeypatch.setattr(memory, "resident_bytes", lambda: sizes.pop(0))
    return sizes


def test_stats_hold_peak_mean_count_and_the_last_snapshots(rss: list[int]) -> None:
    clock = resil.VirtualClock()
    tracker = resil.MemoryTracker(max_snapshots=2, clock=clock)
    assert tracker.stats() == {"peak_mb": 0.0, "avg_mb": 0.0, "samples": 0, "snapshots": []}
    rss += [100 * MB, 300 * MB, 200 * MB]
    assert tracker.sample() == 100.0
    clock.advance(1.0)
    assert tracker.sample() == 300.0
    clock.advance(1.0)
    assert tracker.sample() == 200.0
    stats = tracker.stats()
    # peak, mean and count cover every sample; the snapshots only the last two
    assert (stats["peak_mb"], stats["avg_mb"], stats["samples"]) == (300.0, 200.0, 3)
    assert [s["rss_mb"] for s in stats["snapshots"]] == [300.0, 200.0]
    first, second = (s["time"] for s in stats["snapshots"])
    assert second - first == pytest.approx(1.0, abs=1e-6)
    json.dumps(stats, allow_nan=False)
    stats["snapshots"][0]["rss_mb"] = -1.0          # a copy: the tracker's are its own
    assert tracker.stats()["snapshots"][0]["rss_mb"] == 300.0


def test_snapshot_times_are_unix_time_without_a_clock(rss: list[int]) -> None:
    import time

    rss.append(MB)
    tracker = resil.MemoryTracker()
    before = time.time()
    tracker.sample()
    (snapshot,) = tracker.stats()["snapshots"]
    assert before <= snapshot["time"] <= time.time()


def test_a_phase_of_work_is_sampled_on_entering_and_leaving(rss: list[int]) -> None:
    rss += [50 * MB, 80 * MB, 60 * MB, 90 * MB]
    tracker = resil.MemoryTracker()
    with tracker as t:
        assert t is tracker and tracker.stats()["samples"] == 1
    with pytest.raises(KeyError):
        with tracker:
            raise KeyError("the phase failed")        # still sampled on leaving; not swallowed
    assert [s["rss_mb"] for s in tracker.stats()["snapshots"]] == [50.0, 80.0, 60.0, 90.0]

    async def phase() -> None:
        async with tracker:
            await asyncio.sleep(0)

    rss += [10 * MB, 20 * MB]
    resil.run_virtual(phase())
    assert tracker.stats()["samples"] == 6


def test_as_a_job_it_reports_the_relative_change_as_its_activity(rss: list[int]) -> None:
    rss += [100 * MB, 150 * MB, 150 * MB, 75 * MB]
    tracker = resil.MemoryTracker()

    async def run() -> list[float]:
        return [await tracker() for _ in range(4)]

    assert resil.run_virtual(run()) == [0.0, 0.5, 0.0, 0.5]


def test_an_adaptive_scheduler_runs_it_and_speeds_up_while_memory_moves(rss: list[int]) -> None:
    rss += [100 * MB] * 4 + [200 * MB, 400 * MB, 800 * MB] + [800 * MB] * 50
    tracker = resil.MemoryTracker()
    clock = resil.VirtualClock()
    seen: list[float] = []

    async def main() -> None:
        async with resil.AdaptiveScheduler(clock=clock) as scheduler:
            scheduler.add("memory", tracker, scale=resil.TimeScale.MICRO)
            for _ in range(200):
                await asyncio.sleep(0.01)
                interval = scheduler.interval("memory")
                if not seen or seen[-1] != interval:
                    seen.append(interval)
            assert scheduler.stats()["jobs"]["memory"]["failures"] == 0

    resil.run_virtual(main(), clock)
    stats = tracker.stats()
    assert stats["samples"] >= 8 and stats["peak_mb"] == 800.0
    # Quiet for four samples (slower each time), faster for the three that
    # doubled, slower again once it settles.
    rising = [b > a for a, b in zip(seen, seen[1:])]
    assert rising[:3] == [True] * 3 and rising[3:6] == [False] * 3 and rising[6] is True


def test_the_real_resident_set_is_read() -> None:
    tracker = resil.MemoryTracker()
    mb = tracker.sample()
    assert mb == tracker.stats()["peak_mb"] > 1.0     # this process holds more than 1 MB
    assert mb == pytest.approx(memory.resident_bytes() / MB, rel=0.5)


@pytest.mark.parametrize("value, error", [
    (0, ValueError), (-1, ValueError), (2**20 + 1, ValueError), (10**400, ValueError),
    (True, TypeError), (1.5, TypeError), ("3", TypeError), (None, TypeError)],
    ids=["0", "-1", "2**20+1", "10**400", "True", "1.5", "str", "None"])
def test_max_snapshots_is_checked(value: Any, error: type) -> None:
    with pytest.raises(error, match="max_snapshots"):
        resil.MemoryTracker(max_snapshots=value)


def test_a_bad_clock_is_refused_naming_it() -> None:
    with pytest.raises(TypeError, match="clock"):
        resil.MemoryTracker(clock=object())


def test_threads_sampling_at_once_lose_no_sample() -> None:
    tracker = resil.MemoryTracker(max_snapshots=50)
    start = threading.Barrier(4)

    def work(_: int) -> None:
        start.wait()
        for _ in range(250):
            tracker.sample()
            tracker.stats()

    run_threads(work, 4)
    stats = tracker.stats()
    assert stats["samples"] == 1000 and len(stats["snapshots"]) == 50
    assert stats["peak_mb"] >= stats["avg_mb"] > 0
