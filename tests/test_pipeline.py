"""resil.hedge, resil.fallback, resil.timeout and resil.Pipeline, on virtual time."""

from __future__ import annotations

import asyncio
import json
import math
import random
import sys
import threading
from collections.abc import Callable
from typing import Any

import pytest

import resil


def tasks_besides_me() -> set[asyncio.Task[Any]]:
    return asyncio.all_tasks() - {asyncio.current_task()}  # type: ignore[operator]


# ---- hedge ---------------------------------------------------------------------------

def test_hedge_starts_an_attempt_at_exactly_the_delay_and_returns_the_first_success() -> None:
    started: list[float] = []
    finished: list[int] = []
    cancelled: list[int] = []
    durations = [10.0, 1.0]

    @resil.hedge(2.0)
    async def fetch(x: int) -> tuple[int, int]:
        n = len(started)
        started.append(asyncio.get_running_loop().time())
        try:
            await asyncio.sleep(durations[n])
        except asyncio.CancelledError:
            cancelled.append(n)
            raise
        finished.append(n)
        return x, n

    async def main() -> tuple[Any, float]:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        result = await fetch(7)
        assert not tasks_besides_me()          # the loser was cancelled and awaited
        return result, loop.time() - t0

    result, took = resil.run_virtual(main())
    assert result == (7, 1)
    assert started == [0.0, 2.0]
    assert took == 3.0
    assert finished == [1] and cancelled == [0]


def test_hedge_up_to_max_hedges_each_a_delay_later_and_no_more() -> None:
    started: list[float] = []

    @resil.hedge(1.5, max_hedges=3)
    async def slow() -> int:
        started.append(asyncio.get_running_loop().time())
        await asyncio.sleep(100.0)
        return len(started)

    policy = resil.hedge(1.5, max_hedges=3)
    assert policy.stats()["calls"] == 0
    assert resil.run_virtual(slow()) == 4
    assert started == [0.0, 1.5, 3.0, 4.5]


def test_a_fast_first_attempt_starts_no_hedge() -> None:
    calls = 0
    policy = resil.hedge(5.0)

    @policy
    async def quick() -> str:
        nonlocal calls
        calls += 1
        await asyncio.sleep(4.9)
        return "ok"

    assert resil.run_virtual(quick()) == "ok"
    assert calls == 1
    assert policy.stats() == {"name": "hedge", "delay": 5.0, "max_hedges": 1, "calls": 1,
                              "hedges": 0, "hedge_wins": 0, "successes": 1, "failures": 0}


def test_when_every_attempt_fails_the_first_attempts_error_is_raised() -> None:
    policy = resil.hedge(1.0, max_hedges=2)

    @policy
    async def broken(n: list[int]) -> None:
        me = len(n)
        n.append(me)
        # The first attempt fails last, the others before it.
        await asyncio.sleep(10.0 if me == 0 else 0.5)
        raise KeyError(me)

    async def main() -> float:
        loop = asyncio.get_running_loop()
        with pytest.raises(KeyError) as info:
            await broken([])
        assert info.value.args == (0,)
        assert not tasks_besides_me()
        return loop.time()

    assert resil.run_virtual(main()) == 10.0
    stats = policy.stats()
    assert (stats["calls"], stats["hedges"], stats["failures"], stats["successes"]) == (1, 2, 1, 0)


def test_a_failed_hedge_does_not_end_the_call_while_another_attempt_runs() -> None:
    policy = resil.hedge(1.0)

    @policy
    async def call(n: list[int]) -> str:
        me = len(n)
        n.append(me)
        if me == 1:
            raise ConnectionError
        await asyncio.sleep(3.0)
        return "first"

    assert resil.run_virtual(call([])) == "first"
    assert policy.stats()["hedge_wins"] == 0 and policy.stats()["hedges"] == 1


def test_a_failure_before_the_delay_ends_the_call_without_a_hedge() -> None:
    calls = 0

    @resil.hedge(1.0)
    async def fails() -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.5)
        raise ValueError("first")

    with pytest.raises(ValueError, match="first"):
        resil.run_virtual(fails())
    assert calls == 1


def test_hedge_wins_are_counted_and_failed_attempts_are_retrieved(
        caplog: pytest.LogCaptureFixture) -> None:
    policy = resil.hedge(1.0, max_hedges=2)

    @policy
    async def call(n: list[int]) -> int:
        me = len(n)
        n.append(me)
        if me == 1:
            await asyncio.sleep(0.1)
            raise ConnectionError("hedge 1 failed")
        await asyncio.sleep(10.0 if me == 0 else 0.5)
        return me

    async def main() -> int:
        result = await call([])
        await asyncio.sleep(0)
        return result

    assert resil.run_virtual(main()) == 2
    import gc
    gc.collect()
    assert "never retrieved" not in caplog.text
    assert policy.stats()["hedge_wins"] == 1


def test_hedge_of_a_plain_function_is_a_type_error_at_decoration() -> None:
    with pytest.raises(TypeError, match="hedge needs a coroutine function"):
        resil.hedge(1.0)(lambda: 1)

    async def agen() -> Any:
        yield 1

    with pytest.raises(TypeError, match="generator"):
        resil.hedge(1.0)(agen)
    with pytest.raises(TypeError, match="hedge needs a function"):
        resil.hedge(1.0)(42)  # type: ignore[type-var]


BAD_SECONDS = [(0, ValueError), (-1.0, ValueError), (math.nan, ValueError),
               (math.inf, ValueError), (-math.inf, ValueError), (10**400, ValueError),
               (True, TypeError), ("1", TypeError), (None, TypeError)]


@pytest.mark.parametrize("value, error", BAD_SECONDS)
def test_delays_and_seconds_are_finite_and_positive(value: Any, error: type) -> None:
    with pytest.raises(error, match="^delay must be"):
        resil.hedge(value)
    with pytest.raises(error, match="^seconds must be"):
        resil.timeout(value)


@pytest.mark.parametrize("value, error", [(0, ValueError), (-1, ValueError),
                                          (10**400, ValueError), (True, TypeError),
                                          (1.0, TypeError), ("2", TypeError)])
def test_max_hedges_is_an_int_of_at_least_one(value: Any, error: type) -> None:
    with pytest.raises(error, match="^max_hedges must be"):
        resil.hedge(1.0, max_hedges=value)


# ---- fallback ------------------------------------------------------------------------

def test_fallback_returns_the_value_for_the_listed_errors_only() -> None:
    policy = resil.fallback([], on=(ConnectionError, KeyError))

    @policy
    def read(error: BaseException | None) -> Any:
        if error is not None:
            raise error
        return "fresh"

    assert read(None) == "fresh"
    assert read(ConnectionError()) == []
    assert read(KeyError()) == []
    with pytest.raises(ValueError):
        read(ValueError())
    assert policy.stats() == {"name": "fallback", "calls": 4, "fallbacks": 2}


def test_fallback_factory_gets_the_error_and_is_awaited_when_a_coroutine_function() -> None:
    seen: list[BaseException] = []

    async def later(exc: BaseException) -> str:
        seen.append(exc)
        await asyncio.sleep(1.0)
        return f"cached after {type(exc).__name__}"

    @resil.fallback(factory=later)
    async def fetch() -> str:
        raise TimeoutError

    assert resil.run_virtual(fetch()) == "cached after TimeoutError"
    assert isinstance(seen[0], TimeoutError)

    @resil.fallback(factory=lambda exc: str(exc))
    def plain() -> str:
        raise RuntimeError("boom")

    assert plain() == "boom"

    with pytest.raises(TypeError, match="cannot await"):
        resil.fallback(factory=later)(lambda: 1)


def test_a_factory_that_raises_propagates_with_the_original_as_context() -> None:
    def factory(exc: BaseException) -> Any:
        raise LookupError("no cache")

    @resil.fallback(factory=factory)
    def f() -> None:
        raise ConnectionError("down")

    with pytest.raises(LookupError) as info:
        f()
    assert isinstance(info.value.__context__, ConnectionError)


def test_fallback_with_neither_value_nor_factory_returns_none() -> None:
    @resil.fallback()
    def f() -> int:
        raise ValueError

    assert f() is None


@pytest.mark.parametrize("error", [KeyboardInterrupt, SystemExit, GeneratorExit])
def test_interrupts_never_fall_back_even_when_on_says_so(error: type[BaseException]) -> None:
    @resil.fallback("x", on=BaseException)
    def f() -> None:
        raise error

    with pytest.raises(error):
        f()


def test_cancellation_never_falls_back() -> None:
    entered = asyncio.Event

    @resil.fallback("fallback", on=(BaseException,))
    async def slow(started: asyncio.Event) -> str:
        started.set()
        await asyncio.sleep(100.0)
        return "done"

    @resil.fallback("fallback", on=(BaseException,))
    async def cancels_itself() -> str:
        raise asyncio.CancelledError

    async def main() -> None:
        started = entered()
        task = asyncio.ensure_future(slow(started))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert task.cancelled()
        with pytest.raises(asyncio.CancelledError):
            await cancels_itself()

    resil.run_virtual(main())


def test_fallback_arguments_are_checked() -> None:
    with pytest.raises(TypeError, match="^factory must be None or callable"):
        resil.fallback(factory=42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="value or factory, not both"):
        resil.fallback(1, factory=lambda e: 2)
    for bad in (42, (ValueError, 3), [ValueError], "ValueError", int):
        with pytest.raises(TypeError, match="^on must be"):
            resil.fallback(on=bad)
    with pytest.raises(ValueError, match="^on must name"):
        resil.fallback(on=())
    with pytest.raises(TypeError, match="generator"):
        resil.fallback()(lambda: (yield))


def test_fallback_counts_every_call_when_threads_share_it() -> None:
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    policy = resil.fallback(0)

    @policy
    def f(i: int) -> int:
        if i % 2:
            raise ValueError
        return i

    def work() -> None:
        for i in range(2000):
            f(i)

    try:
        threads = [threading.Thread(target=work) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(switch)
    assert policy.stats() == {"name": "fallback", "calls": 16000, "fallbacks": 8000}


# ---- timeout -------------------------------------------------------------------------

def test_timeout_cancels_the_call_at_its_deadline_and_raises_operation_timeout() -> None:
    policy = resil.timeout(5.0)
    cancelled_at: list[float] = []

    @policy
    async def slow(seconds: float) -> str:
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            cancelled_at.append(asyncio.get_running_loop().time())
            raise
        return "done"

    async def main() -> None:
        assert await slow(4.0) == "done"
        t0 = asyncio.get_running_loop().time()
        with pytest.raises(resil.OperationTimeout, match="within 5s") as info:
            await slow(6.0)
        assert isinstance(info.value, TimeoutError)
        assert cancelled_at == [t0 + 5.0]
        assert not tasks_besides_me()

    resil.run_virtual(main())
    assert policy.stats() == {"name": "timeout", "seconds": 5.0, "calls": 2, "timeouts": 1}


def test_timeout_passes_errors_through_and_the_deadline_wins_over_a_late_outcome() -> None:
    @resil.timeout(1.0)
    async def fails() -> None:
        raise KeyError("x")

    @resil.timeout(1.0)
    async def stubborn() -> str:
        try:
            await asyncio.sleep(10.0)
        except asyncio.CancelledError:
            await asyncio.sleep(0.5)   # cleans up, then returns anyway
            return "late"
        return "never"

    with pytest.raises(KeyError):
        resil.run_virtual(fails())
    with pytest.raises(resil.OperationTimeout):
        resil.run_virtual(stubborn())


def test_a_sync_function_under_a_timeout_is_a_type_error_at_decoration() -> None:
    def plain() -> int:
        return 1

    with pytest.raises(TypeError, match="timeout needs a coroutine function"):
        resil.timeout(1.0)(plain)


# ---- Pipeline ------------------------------------------------------------------------

class Recording:
    """A decorator-like policy that records when calls pass through it."""

    def __init__(self, name: str, log: list[str], *, with_stats: bool = True) -> None:
        self.name = name
        self.log = log
        self.calls = 0
        if not with_stats:
            self.stats = None  # type: ignore[assignment]

    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        if asyncio.iscoroutinefunction(fn):
            async def wrapped_async(*args: Any, **kwargs: Any) -> Any:
                self.calls += 1
                self.log.append(f"{self.name}>")
                try:
                    return await fn(*args, **kwargs)
                finally:
                    self.log.append(f"<{self.name}")
            return wrapped_async

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            self.log.append(f"{self.name}>")
            try:
                return fn(*args, **kwargs)
            finally:
                self.log.append(f"<{self.name}")
        return wrapped

    def stats(self) -> dict[str, Any]:
        return {"calls": self.calls}


def test_pipeline_applies_policies_outermost_first_to_functions_and_coroutines() -> None:
    log: list[str] = []
    pipe = resil.Pipeline(Recording("a", log), Recording("b", log), Recording("c", log))

    @pipe
    def f(x: int) -> int:
        log.append("f")
        return x + 1

    @pipe
    async def g(x: int) -> int:
        log.append("g")
        return x * 2

    assert f(1) == 2
    assert log == ["a>", "b>", "c>", "f", "<c", "<b", "<a"]
    log.clear()
    assert resil.run_virtual(g(3)) == 6
    assert log == ["a>", "b>", "c>", "g", "<c", "<b", "<a"]
    log.clear()
    assert pipe.call(lambda x, *, y: x + y, 1, y=2) == 3
    assert log == ["a>", "b>", "c>", "<c", "<b", "<a"]

    async def h(x: int, *, y: int) -> int:
        return x - y

    assert resil.run_virtual(pipe.call_async(h, 5, y=2)) == 3
    with pytest.raises(TypeError, match="call_async"):
        pipe.call(h, 1, y=1)
    with pytest.raises(TypeError, match="pipeline.call"):
        resil.run_virtual(pipe.call_async(lambda: 1))


def test_pipeline_of_the_recommended_policies_recovers_a_failing_dependency() -> None:
    breaker = resil.CircuitBreaker("inventory", failure_threshold=2, cooldown=30.0)
    retrying = resil.retry(2, backoff=resil.Backoff(0.1, multiplier=1.0),
                           retry_on=ConnectionError)
    pipe = resil.Pipeline(resil.fallback(-1), resil.timeout(2.0), retrying, breaker,
                          name="inventory")
    attempts = 0

    @pipe
    async def stock(item: int) -> int:
        nonlocal attempts
        attempts += 1
        raise ConnectionError

    async def main() -> list[int]:
        return [await stock(1), await stock(2)]

    assert resil.run_virtual(main()) == [-1, -1]
    # Two failed attempts opened the breaker; the retry of the first call
    # met it open, so the second call never reached the dependency.
    assert attempts == 2
    stats = pipe.stats()
    assert list(stats) == ["name", "policies"] and stats["name"] == "inventory"
    assert list(stats["policies"]) == ["fallback", "timeout", "retry", "inventory"]
    assert stats["policies"]["fallback"]["fallbacks"] == 2
    assert stats["policies"]["inventory"]["name"] == "inventory"
    assert stats["policies"]["inventory"]["state"] == breaker.stats()["state"]
    assert breaker.state is resil.State.OPEN
    json.dumps(stats, allow_nan=False)


def test_pipeline_stats_keys_are_names_then_kinds_and_repeats_are_numbered() -> None:
    log: list[str] = []

    def tagging(fn: Callable[..., Any]) -> Callable[..., Any]:
        return fn

    pipe = resil.Pipeline(resil.timeout(1.0), resil.timeout(2.0), resil.retry(1),
                          resil.retry(1, name="db"), Recording("db", log), Recording("x", log,
                          with_stats=False), tagging, resil.Pipeline(resil.fallback(), name="in"),
                          resil.CircuitBreaker("db"), resil.hedge(1.0))
    stats = pipe.stats()["policies"]
    assert list(stats) == ["timeout", "timeout#2", "retry", "db", "db#2", "in", "db#3", "hedge"]
    assert stats["timeout#2"]["seconds"] == 2.0
    assert stats["db"]["name"] == "db" and stats["db#2"] == {"calls": 0}
    assert stats["in"] == {"name": "in", "policies": {"fallback": {"name": "fallback",
                                                                   "calls": 0, "fallbacks": 0}}}
    assert "x" not in stats and "tagging" not in stats
    assert repr(pipe).startswith("<Pipeline 'default' timeout -> timeout#2 -> retry -> db")


def test_a_plain_function_under_an_async_only_policy_is_refused_at_decoration() -> None:
    log: list[str] = []
    outer = Recording("outer", log)
    for policy in (resil.timeout(1.0), resil.hedge(1.0),
                   resil.Pipeline(resil.timeout(1.0), name="inner")):
        pipe = resil.Pipeline(outer, policy)
        with pytest.raises(TypeError, match="wraps only coroutine functions"):
            pipe(lambda: 1)
        with pytest.raises(TypeError, match="wraps only coroutine functions"):
            pipe.call(lambda: 1)
        assert outer.calls == 0
    with pytest.raises(TypeError, match="generator"):
        resil.Pipeline()(lambda: (yield))
    with pytest.raises(TypeError, match="needs a function"):
        resil.Pipeline()(3)  # type: ignore[type-var]


def test_pipeline_refuses_what_is_not_a_policy() -> None:
    for factory in (resil.timeout, resil.hedge, resil.fallback, resil.retry):
        with pytest.raises(TypeError, match=r"^policies\[1\] is the factory itself"):
            resil.Pipeline(resil.fallback(), factory)
    with pytest.raises(TypeError, match=r"^policies\[0\] is the class CircuitBreaker"):
        resil.Pipeline(resil.CircuitBreaker)
    with pytest.raises(TypeError, match=r"^policies\[0\] must be a policy"):
        resil.Pipeline(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="^name must be"):
        resil.Pipeline(name=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="^name must be"):
        resil.Pipeline(name="")


def test_hedge_inside_a_pipeline_sends_each_attempt_through_the_inner_policies() -> None:
    log: list[str] = []
    inner = Recording("inner", log)
    pipe = resil.Pipeline(resil.timeout(10.0), resil.hedge(1.0), inner)
    durations = iter([5.0, 0.5])

    @pipe
    async def call() -> float:
        await asyncio.sleep(next(durations))
        return asyncio.get_running_loop().time()

    assert resil.run_virtual(call()) == 1.5
    assert inner.calls == 2


# ---- cancellation of the outer call leaves nothing running -----------------------

def _policies_under_test() -> list[Any]:
    return [
        resil.hedge(0.3, max_hedges=3),
        resil.timeout(0.5),
        resil.fallback("f"),
        resil.Pipeline(resil.fallback("f"), resil.timeout(2.0), resil.hedge(0.2, max_hedges=2),
                       resil.retry(3, backoff=resil.Backoff(0.05, multiplier=1.0))),
    ]


async def ended(task: asyncio.Future[Any]) -> None:
    """Awaits ``task``, which may end in any way the policies allow."""
    try:
        await task
    except (asyncio.CancelledError, ConnectionError, resil.OperationTimeout):
        pass


@pytest.mark.parametrize("which", range(4))
def test_cancelling_the_outer_call_at_random_points_leaves_no_task_running(which: int) -> None:
    rng = random.Random(1000 + which)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for _ in range(60):
            policy = _policies_under_test()[which]
            started = 0

            @policy
            async def work() -> str:
                nonlocal started
                started += 1
                for _ in range(rng.randint(0, 4)):
                    await asyncio.sleep(rng.choice([0.0, 0.05, 0.25, 0.6]))
                    if rng.random() < 0.2:
                        raise ConnectionError
                return "ok"

            task = asyncio.ensure_future(work())
            at = rng.choice([0.0, 0.01, 0.1, 0.21, 0.31, 0.5, 0.9])
            if at:
                await asyncio.sleep(at)
            else:
                for _ in range(rng.randint(0, 3)):
                    await asyncio.sleep(0)
            task.cancel()
            await ended(task)
            assert not tasks_besides_me(), (which, at, loop.time())
            # A second cancellation while the attempts are being reaped.
            task = asyncio.ensure_future(work())
            await asyncio.sleep(at)
            task.cancel()
            await asyncio.sleep(0)
            task.cancel()
            await ended(task)
            assert not tasks_besides_me(), (which, at, loop.time())

    resil.run_virtual(main())


def test_hedging_is_instant_in_real_time_on_virtual_time() -> None:
    import time

    @resil.hedge(3600.0)
    async def hour() -> str:
        await asyncio.sleep(7200.0)
        return "done"

    t0 = time.perf_counter()
    assert resil.run_virtual(hour()) == "done"
    assert time.perf_counter() - t0 < 5.0
