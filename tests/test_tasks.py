"""AdaptiveInterval / TimeScale and tasks and shutdown ."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

import resil
from resil import AdaptiveInterval, Outcome, TimeScale


def model_update(interval: float, activity: float, iv: AdaptiveInterval) -> float:
    """The rule, written out: speed up above the threshold, else slow down, clamp."""
    nxt = interval * (iv.speedup if activity > iv.threshold else iv.slowdown)
    return min(max(nxt, iv.min), iv.max)


@given(preset=st.sampled_from(list(TimeScale)),
       activities=st.lists(st.floats(-1, 2), max_size=60))  # NaN and inf raise ValueError
def test_interval_matches_the_rule(preset: TimeScale, activities: list[float]) -> None:
    iv = preset.interval()
    expected = preset.base
    for a in activities:
        expected = model_update(expected, a, iv)
        assert iv.update(a) == expected == iv.interval
        assert preset.min <= iv.interval <= preset.max
    assert iv.updates == len(activities)


def test_micro_follows_the_seed_both_ways() -> None:
    iv = TimeScale.MICRO.interval()
    assert iv.interval == 0.1
    low = [iv.update(0.1) for _ in range(14)]
    assert low[:3] == pytest.approx([0.12, 0.144, 0.1728])
    assert low[-1] == 1.0 and low.index(1.0) == 12  # 0.1 * 1.2**13 > 1.0: capped
    high = [iv.update(0.9) for _ in range(15)]
    assert high[:3] == pytest.approx([0.8, 0.64, 0.512])
    assert high[-1] == 0.05
    assert iv.update(0.5) == pytest.approx(0.06)  # at the threshold is not above it


def test_presets_and_validation() -> None:
    assert (TimeScale.MESO.base, TimeScale.MESO.min, TimeScale.MESO.max,
            TimeScale.MESO.threshold) == (10.0, 5.0, 30.0, 0.3)
    assert TimeScale.MACRO.interval().interval == 300.0
    with pytest.raises(ValueError, match="base"):
        AdaptiveInterval(0.01, 0.05, 1.0, 0.5)
    with pytest.raises(ValueError, match="speedup"):
        AdaptiveInterval(0.1, 0.05, 1.0, 0.5, speedup=1.5)
    with pytest.raises(ValueError, match="slowdown"):
        AdaptiveInterval(0.1, 0.05, 1.0, 0.5, slowdown=0.5)
    with pytest.raises(TypeError, match="activity"):
        AdaptiveInterval(0.1, 0.05, 1.0, 0.5).update("high")  # type: ignore[arg-type]


def test_token_wakes_a_thousand_waiters_at_once_and_none_before() -> None:
    token = resil.CancellationToken()
    woke: list[float] = []

    async def waiter() -> None:
        await token.wait()
        woke.append(asyncio.get_running_loop().time())

    async def main() -> None:
        tasks = [asyncio.create_task(waiter()) for _ in range(1000)]
        await asyncio.sleep(10)  # no polling: nothing wakes, nothing spins
        assert woke == [] and not token.cancelled
        token.cancel()
        await asyncio.gather(*tasks)
        assert len(woke) == 1000 and set(woke) == {10.0}
        await token.wait()  # already cancelled: returns at once
        token.cancel()      # idempotent

    resil.run_virtual(main())


def test_token_cancel_from_another_thread_and_cancelled_waiter_leaves() -> None:
    token = resil.CancellationToken()

    async def main() -> None:
        gone = asyncio.create_task(token.wait())
        await asyncio.sleep(0)
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        assert "waiters=0" in repr(token)
        t = threading.Timer(0.05, token.cancel)
        t.start()
        await asyncio.wait_for(token.wait(), 5)
        t.join()

    asyncio.run(main())
    assert token.cancelled


def test_shutdown_task_outcomes(caplog: pytest.LogCaptureFixture) -> None:
    async def finishes(after: float, fail: bool = False) -> str:
        await asyncio.sleep(after)
        if fail:
            raise RuntimeError("boom")
        return "done"

    async def stubborn() -> None:
        while True:
            try:
                await asyncio.sleep(100)
            except asyncio.CancelledError:
                await asyncio.sleep(10)  # ignores the first cancellation for a while

    async def cooperative() -> None:
        await asyncio.sleep(100)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        assert await resil.shutdown_task(asyncio.create_task(finishes(1)), graceful=5, forced=2) is Outcome.OK
        assert await resil.shutdown_task(asyncio.create_task(finishes(1, True)), graceful=5, forced=2) \
            is Outcome.ERROR
        assert loop.time() - t0 == 2.0  # each ended by itself after 1 s
        t0 = loop.time()
        assert await resil.shutdown_task(asyncio.create_task(cooperative()), graceful=5, forced=2) \
            is Outcome.ABORTED
        assert loop.time() - t0 == 5.0
        t0 = loop.time()
        task = asyncio.create_task(stubborn())
        assert await resil.shutdown_task(task, graceful=5, forced=2) is Outcome.TIMEOUT
        assert loop.time() - t0 == 7.0  # graceful + forced, not a moment more
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert asyncio.all_tasks() == {asyncio.current_task()}

    with caplog.at_level(logging.INFO, logger="resil.tasks"):
        resil.run_virtual(main())
    logged = [r.outcome for r in caplog.records if r.name == "resil.tasks"]
    assert logged == ["OK", "ERROR", "ABORTED", "TIMEOUT"]


def test_supervisor_counts_and_shuts_everything_down() -> None:
    async def main() -> None:
        sup = resil.Supervisor()

        async def quick() -> None:
            await asyncio.sleep(1)

        async def forever() -> None:
            await asyncio.Event().wait()

        sup.spawn(quick(), name="quick")
        sup.spawn(forever(), name="forever-1")
        sup.spawn(forever(), name="forever-2")
        assert sup.stats() == {"created": 3, "active": 3}
        await asyncio.sleep(2)
        assert sup.stats() == {"created": 3, "active": 2}
        outcomes = await sup.shutdown(graceful=1, forced=1)
        assert outcomes == {"forever-1": Outcome.ABORTED, "forever-2": Outcome.ABORTED}
        assert sup.active == 0 and asyncio.all_tasks() == {asyncio.current_task()}

    resil.run_virtual(main())


def test_shutdown_task_validation() -> None:
    async def main() -> None:
        with pytest.raises(TypeError):
            await resil.shutdown_task("task", graceful=1, forced=1)  # type: ignore[arg-type]
        t = asyncio.create_task(asyncio.sleep(0))
        with pytest.raises(ValueError, match="graceful"):
            await resil.shutdown_task(t, graceful=-1, forced=1)
        await t

    resil.run_virtual(main())
