"""resil.TimeoutManager on virtual event-loop time."""

from __future__ import annotations

import asyncio
import logging

import pytest

import resil
from resil import OperationTimeout, TimeoutManager


def now() -> float:
    return asyncio.get_running_loop().time()


def test_body_cancelled_and_operation_timeout_raised_at_the_deadline() -> None:
    tm = TimeoutManager()
    seen = []

    async def main() -> None:
        with pytest.raises(OperationTimeout) as info:
            async with tm.timeout("fetch", 10):
                try:
                    await asyncio.sleep(60)
                except asyncio.CancelledError:
                    seen.append(now())
                    raise
        assert isinstance(info.value, TimeoutError)
        assert seen == [10.0] and now() == 10.0
        assert asyncio.all_tasks() == {asyncio.current_task()}  # nothing left running

    resil.run_virtual(main())
    assert tm.stats()["timeouts"] == 1 and tm.stats()["per_name"]["fetch"]["timeouts"] == 1


def test_warning_at_the_threshold_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    tm = TimeoutManager(warning_threshold=0.8)

    async def main() -> None:
        async with tm.timeout("report", 10):
            await asyncio.sleep(7.9)
            assert not [r for r in caplog.records if r.name == "resil.timeout"]
            await asyncio.sleep(0.2)
            await asyncio.sleep(1.5)

    with caplog.at_level(logging.WARNING, logger="resil.timeout"):
        resil.run_virtual(main())
    warnings = [r for r in caplog.records if r.name == "resil.timeout"]
    assert len(warnings) == 1 and "80%" in warnings[0].getMessage()
    assert warnings[0].operation == "report"
    assert tm.stats()["warnings"] == 1 and tm.stats()["timeouts"] == 0


def test_no_warning_when_not_progressive(caplog: pytest.LogCaptureFixture) -> None:
    tm = TimeoutManager(progressive=False)

    async def main() -> None:
        async with tm.timeout("quiet", 10):
            await asyncio.sleep(9.5)

    with caplog.at_level(logging.WARNING, logger="resil.timeout"):
        resil.run_virtual(main())
    assert not [r for r in caplog.records if r.name == "resil.timeout"]


def test_progress_buys_one_grace_period_and_recovery_is_counted() -> None:
    tm = TimeoutManager(grace_period=5)

    async def main() -> None:
        async with tm.timeout("sync", 10) as op:
            await asyncio.sleep(8)
            op.progress()
            await asyncio.sleep(6)  # ends at 14 < 10 + 5
        # a second extension is never granted
        with pytest.raises(OperationTimeout):
            async with tm.timeout("stuck", 10) as op:
                await asyncio.sleep(9)
                op.progress()
                await asyncio.sleep(5)
                op.progress()
                await asyncio.sleep(100)
        assert now() == 14 + 15

    resil.run_virtual(main())
    st = tm.stats()
    assert st["grace_recoveries"] == 1 and st["grace_extensions"] == 2 and st["timeouts"] == 1


def test_no_grace_without_recent_progress() -> None:
    tm = TimeoutManager(grace_period=5)

    async def main() -> None:
        with pytest.raises(OperationTimeout):
            async with tm.timeout("idle", 10) as op:
                await asyncio.sleep(2)
                op.progress()  # 8 s before the deadline: too long ago
                await asyncio.sleep(20)
        assert now() == 10

    resil.run_virtual(main())


def test_tighter_nested_deadline_wins_both_ways() -> None:
    tm = TimeoutManager()

    async def main() -> None:
        with pytest.raises(OperationTimeout, match="outer"):
            async with tm.timeout("outer", 5):
                async with tm.timeout("inner", 100):
                    await asyncio.sleep(50)
        assert now() == 5
        start = now()
        with pytest.raises(OperationTimeout, match="inner"):
            async with tm.timeout("outer2", 100):
                async with tm.timeout("inner2", 3):
                    await asyncio.sleep(50)
        assert now() - start == 3

    resil.run_virtual(main())
    per = tm.stats()["per_name"]
    assert per["outer"]["timeouts"] == 1 and per["inner"]["timeouts"] == 0
    assert per["inner2"]["timeouts"] == 1 and per["outer2"]["timeouts"] == 0


def test_inner_timeout_can_be_handled_inside_the_outer() -> None:
    tm = TimeoutManager()

    async def main() -> str:
        async with tm.timeout("outer", 100):
            try:
                async with tm.timeout("inner", 1):
                    await asyncio.sleep(10)
            except OperationTimeout:
                pass
            await asyncio.sleep(2)  # the outer is still alive
            return "done"

    assert resil.run_virtual(main()) == "done"


def test_global_timeout_caps_everything_grace_included() -> None:
    tm = TimeoutManager(global_timeout=12, grace_period=30)

    async def main() -> None:
        with pytest.raises(OperationTimeout):
            async with tm.timeout("long", 100):
                await asyncio.sleep(50)
        assert now() == 12
        start = now()
        with pytest.raises(OperationTimeout):
            async with tm.timeout("graceful", 10) as op:
                await asyncio.sleep(9)
                op.progress()
                await asyncio.sleep(100)
        assert now() - start == 12  # grace would give 40; the cap is 12

    resil.run_virtual(main())


def test_run_active_operations_and_external_cancellation() -> None:
    tm = TimeoutManager()

    async def work(x: int) -> int:
        await asyncio.sleep(1)
        return x + 1

    async def main() -> None:
        assert await tm.run(work, "work", 5, 41) == 42
        task = asyncio.create_task(tm.run(asyncio.sleep, "nap", 30, 20))
        await asyncio.sleep(2)
        (active,) = tm.active_operations()
        assert active["name"] == "nap" and active["elapsed"] == 2.0 and active["deadline"] == 31.0
        task.cancel()  # a cancellation from outside stays a cancellation
        with pytest.raises(asyncio.CancelledError):
            await task
        assert tm.active_operations() == []

    resil.run_virtual(main())
    assert tm.stats()["timeouts"] == 0


def test_run_with_breaker_counts_a_timeout_as_a_failure() -> None:
    tm = TimeoutManager()
    breaker = resil.CircuitBreaker("slow-dep", failure_threshold=2)

    async def main() -> None:
        for _ in range(2):
            with pytest.raises(OperationTimeout):
                await tm.run_with_breaker(asyncio.sleep, "call", 1, breaker, 10)
        assert breaker.state == resil.State.OPEN
        with pytest.raises(resil.CircuitOpenError):
            await tm.run_with_breaker(asyncio.sleep, "call", 1, breaker, 10)

    resil.run_virtual(main())
    assert breaker.stats()["failures"] == 2


def test_validation() -> None:
    with pytest.raises(ValueError, match="operation_timeout"):
        TimeoutManager(operation_timeout=0)
    with pytest.raises(ValueError, match="warning_threshold"):
        TimeoutManager(warning_threshold=1.5)
    with pytest.raises(TypeError, match="global_timeout"):
        TimeoutManager(global_timeout="1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="grace_period"):
        TimeoutManager(grace_period=-1)
    tm = TimeoutManager()
    with pytest.raises(ValueError, match="seconds"):
        tm.timeout("x", -1)
    with pytest.raises(TypeError, match="name"):
        tm.timeout(3)  # type: ignore[arg-type]
