"""RateLimiter.acquire_async and acquire decide when called: an admitted call
takes its tokens there and returns an awaitable that is already done (one,
reused by every admitted call), a refused one the coroutine that waits."""

from __future__ import annotations

import asyncio
import gc
import inspect
import math
import random
import sys
import time
from typing import Any

import pytest

import resil
from tests_support import run_threads


def test_an_admitted_call_takes_its_tokens_when_called_not_when_awaited() -> None:
    limiter = resil.RateLimiter(10, burst=3, clock=resil.VirtualClock())
    done = limiter.acquire_async(2)
    assert limiter.stats()["admitted"] == 1
    assert limiter.retry_after(2) > 0  # two of three tokens are gone already
    assert resil.run_virtual(_await(done)) is None
    assert limiter.stats()["admitted"] == 1  # awaiting takes nothing more


async def _await(aw: Any) -> Any:
    return await aw


def test_every_admitted_call_returns_the_same_finished_awaitable() -> None:
    one = resil.RateLimiter(10**6, clock=resil.VirtualClock())
    other = resil.RateLimiter(5, clock=resil.VirtualClock())
    first = one.acquire_async()
    assert one.acquire_async(3, "k") is first
    assert other.acquire_async() is first
    assert inspect.isawaitable(first)
    assert not inspect.iscoroutine(first)


def test_awaiting_an_admitted_call_never_suspends() -> None:
    limiter = resil.RateLimiter(1000, burst=1000, clock=resil.VirtualClock())

    async def main() -> None:
        loop = asyncio.get_running_loop()
        ran: list[int] = []
        loop.call_soon(ran.append, 1)
        task = asyncio.current_task()
        for i in range(500):
            assert await limiter.acquire_async(key=i % 7) is None
            assert asyncio.current_task() is task
        assert ran == []  # the loop never ran a callback: no await yielded
        await asyncio.sleep(0)
        assert ran == [1]

    resil.run_virtual(main())
    assert limiter.stats()["admitted"] == 500


def test_the_finished_awaitable_runs_by_hand_without_a_loop() -> None:
    limiter = resil.RateLimiter(5, clock=resil.VirtualClock())
    it = limiter.acquire_async().__await__()
    with pytest.raises(StopIteration) as stop:
        it.send(None)
    assert stop.value.value is None
    with pytest.raises(StopIteration):
        next(it)  # still done: it holds no state
    with pytest.raises(KeyError):
        it.throw(KeyError("k"))
    it.close()


def test_the_finished_awaitable_goes_through_every_asyncio_entry_point() -> None:
    limiter = resil.RateLimiter(10**6, clock=resil.VirtualClock())

    async def main() -> list[Any]:
        got: list[Any] = [await asyncio.ensure_future(limiter.acquire_async())]
        got.append(await asyncio.create_task(limiter.acquire_async()))  # type: ignore[arg-type]
        got.append(await asyncio.wait_for(limiter.acquire_async(), 1.0))
        got.extend(await asyncio.gather(limiter.acquire_async(), limiter.acquire_async(key=1)))
        done, _ = await asyncio.wait([asyncio.ensure_future(limiter.acquire_async())])
        got.append(done.pop().result())
        return got

    assert resil.run_virtual(main()) == [None] * 6
    assert asyncio.run(limiter.acquire_async()) is None  # type: ignore[arg-type]
    assert limiter.stats()["admitted"] == 7


def test_one_finished_awaitable_serves_many_threads_and_event_loops() -> None:
    limiter = resil.RateLimiter(1e12, burst=10**15)
    shared = limiter.acquire_async()
    errors: list[BaseException] = []

    async def main() -> None:
        for i in range(300):
            aw = limiter.acquire_async(key=i % 3)
            assert aw is shared
            assert await aw is None
            assert await shared is None  # awaited again and again: nothing to use up

    def worker(_: int) -> None:
        try:
            for _ in range(3):
                asyncio.run(main())
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    run_threads(worker, 8)
    assert errors == []
    assert limiter.stats()["admitted"] == 1 + 8 * 3 * 300


def test_a_refused_call_returns_the_coroutine_that_waits() -> None:
    clock = resil.VirtualClock()
    limiter = resil.RateLimiter(10, burst=1, clock=clock)

    async def main() -> None:
        await limiter.acquire_async()
        waiting = limiter.acquire_async()
        assert inspect.iscoroutine(waiting)
        assert limiter.stats()["rejected"] == 1  # the call asked, and was refused
        assert await waiting is None
        assert clock.now() == pytest.approx(0.1)
        assert limiter.stats()["admitted"] == 2

    resil.run_virtual(main(), clock=clock)


def test_a_wait_beyond_the_timeout_fails_before_any_sleep() -> None:
    clock = resil.VirtualClock()
    limiter = resil.RateLimiter(1, burst=2, clock=clock)

    async def main() -> None:
        await limiter.acquire_async(2)
        with pytest.raises(resil.RateLimited) as info:
            await limiter.acquire_async(timeout=0.5)
        assert info.value.retry_after == pytest.approx(1.0)
        assert clock.now() == 0.0
        await limiter.acquire_async(timeout=1.0)  # exactly enough
        assert clock.now() == pytest.approx(1.0)
        await limiter.acquire_async(key="other", timeout=0)  # its own full bucket

    resil.run_virtual(main(), clock=clock)


def test_cancelled_waiters_take_nothing_wherever_they_are_cancelled() -> None:
    rng = random.Random(14)
    for _ in range(30):
        clock = resil.VirtualClock()
        limiter = resil.RateLimiter(10, burst=2, clock=clock)
        n = rng.randint(3, 12)
        cancel_at = {i: rng.uniform(0, 1.5) for i in range(n) if rng.random() < 0.5}

        async def main() -> tuple[int, int]:
            tasks = [asyncio.ensure_future(limiter.acquire_async(key=None, cost=1))
                     for _ in range(n)]
            for i, at in sorted(cancel_at.items(), key=lambda kv: kv[1]):
                await asyncio.sleep(max(0.0, at - clock.now()))
                tasks[i].cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            finished = sum(r is None for r in results)
            cancelled = sum(isinstance(r, asyncio.CancelledError) for r in results)
            assert finished + cancelled == n
            return finished, cancelled

        finished, _ = resil.run_virtual(main(), clock=clock)
        assert limiter.stats()["admitted"] == finished
        # Every token not taken by a finished waiter is still there: after
        # a full refill, exactly burst more are admitted.
        clock.advance(10.0)
        assert limiter.try_acquire() and limiter.try_acquire() and not limiter.try_acquire()


def test_keys_and_costs_on_the_admitted_path() -> None:
    clock = resil.VirtualClock()
    limiter = resil.RateLimiter(1, burst=3, clock=clock)
    done = limiter.acquire_async(3, "a")
    assert inspect.isawaitable(done)
    assert limiter.acquire_async(cost=3, key="b") is done  # another key, its own bucket
    refused = limiter.acquire_async(1, key="a")
    assert inspect.iscoroutine(refused)
    refused.close()  # never awaited: it took nothing
    assert limiter.stats()["admitted"] == 2
    assert limiter.retry_after(1, "a") == pytest.approx(1.0)
    assert limiter.acquire(2, key="c") is None
    assert limiter.stats()["admitted"] == 3


HOSTILE: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"cost": 0}, ValueError, r"^cost must be an int in \[1, 3\]"),
    ({"cost": 4}, ValueError, r"^cost must be an int in \[1, 3\]"),
    ({"cost": -1}, ValueError, r"^cost must be an int in \[1, 3\]"),
    ({"cost": 10**400}, ValueError, r"^cost must be an int in \[1, 3\]"),
    ({"cost": True}, TypeError, r"^cost must be an int, not bool"),
    ({"cost": 1.0}, TypeError, r"^cost must be an int, not float"),
    ({"cost": math.nan}, TypeError, r"^cost must be an int, not float"),
    ({"key": []}, TypeError, r"unhashable"),
    ({"timeout": -1}, ValueError, r"^timeout must be None or a number of seconds >= 0 "
                                  r"\(inf: no limit\), got -1$"),
    ({"timeout": -0.5}, ValueError, r"^timeout must be .*, got -0\.5$"),
    ({"timeout": math.nan}, ValueError, r"^timeout must be .*, got nan$"),
    ({"timeout": -math.inf}, ValueError, r"^timeout must be .*, got -inf$"),
    ({"timeout": -10**400}, ValueError, r"^timeout must be .*, got a negative int of 1329 bits$"),
    ({"timeout": True}, TypeError, r"^timeout must be None or a number of seconds >= 0 "
                                   r"\(inf: no limit\), not bool$"),
    ({"timeout": "1"}, TypeError, r"^timeout must be .*, not str$"),
    ({"nope": 1}, TypeError, r"unexpected or repeated argument 'nope'"),
]


@pytest.mark.parametrize("kwargs, error, message", HOSTILE)
@pytest.mark.parametrize("method", ["acquire", "acquire_async"])
def test_a_bad_argument_raises_at_the_call_and_takes_nothing(
        method: str, kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    limiter = resil.RateLimiter(1, burst=3, clock=resil.VirtualClock())
    with pytest.raises(error, match=message):
        getattr(limiter, method)(**kwargs)
    assert limiter.stats()["admitted"] == limiter.stats()["rejected"] == 0
    assert limiter.try_acquire(3)


def test_positional_arguments_and_their_limits() -> None:
    limiter = resil.RateLimiter(1, burst=3, clock=resil.VirtualClock())
    with pytest.raises(TypeError, match=r"acquire_async\(\) takes at most 2 arguments"):
        limiter.acquire_async(1, None, 5)
    with pytest.raises(TypeError, match=r"unexpected or repeated argument 'cost'"):
        limiter.acquire_async(1, cost=1)
    assert limiter.acquire(1, None, timeout=10**400) is None  # an int beyond floats: no limit
    assert limiter.acquire_async(1, None, timeout=math.inf) is limiter.acquire_async(1)


def test_a_key_whose_eq_raises_or_a_clock_that_raises_fails_at_the_call() -> None:
    class Crash:
        def __hash__(self) -> int:
            return 1

        def __eq__(self, other: object) -> bool:
            raise RuntimeError("eq")

    limiter = resil.RateLimiter(5, clock=resil.VirtualClock())
    limiter.try_acquire(key=Crash())
    with pytest.raises(RuntimeError, match="eq"):
        limiter.acquire_async(key=Crash())

    class BadClock:
        def now(self) -> float:
            raise OSError("clock")

    broken = resil.RateLimiter(5, clock=BadClock())
    for call in (broken.acquire_async, broken.acquire):
        with pytest.raises(OSError, match="clock"):
            call()


def test_the_sync_acquire_sleeps_only_after_a_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = resil.VirtualClock()
    limiter = resil.RateLimiter(4, burst=1, clock=clock)
    slept: list[float] = []

    def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(seconds)

    monkeypatch.setattr(time, "sleep", fake_sleep)
    assert limiter.acquire() is None
    assert slept == []
    assert limiter.acquire() is None
    assert slept == [pytest.approx(0.25)]
    with pytest.raises(resil.RateLimited):
        limiter.acquire(timeout=0.1)
    assert slept == [pytest.approx(0.25)]


def test_threads_acquiring_account_for_every_token() -> None:
    limiter = resil.RateLimiter(1e12, burst=10**15)

    def worker(_: int) -> None:
        for i in range(2000):
            limiter.acquire(key=i % 5 if i % 2 else None)

    run_threads(worker, 8)
    assert limiter.stats()["admitted"] == 16000


def test_the_finished_awaitable_does_not_leak() -> None:
    limiter = resil.RateLimiter(1e12, burst=10**15)
    done = limiter.acquire_async()
    gc.collect()
    before = sys.getrefcount(done)

    async def main() -> None:
        for _ in range(1000):
            await limiter.acquire_async()

    asyncio.run(main())
    gc.collect()
    assert sys.getrefcount(done) == before
