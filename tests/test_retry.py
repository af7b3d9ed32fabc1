"""resil.retry: attempts, delays, deadlines, breakers, budgets, cancellation."""

from __future__ import annotations

import asyncio
import inspect
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

import resil
from resil import Backoff, CircuitOpenError, RetryError, VirtualClock


class Flaky:
    """Fails `failures` times with `exc`, then returns "ok"; records call times."""

    def __init__(self, clock: VirtualClock, failures: int, exc: BaseException | None = None,
                 cost: float = 0.0) -> None:
        self.clock, self.failures, self.cost = clock, failures, cost
        self.exc = exc if exc is not None else ConnectionError("down")
        self.calls: list[float] = []

    def __call__(self, x: int = 0) -> str:
        self.calls.append(self.clock.now())
        self.clock.advance(self.cost)
        if len(self.calls) <= self.failures:
            raise self.exc
        return "ok"


def test_retries_then_succeeds_with_backoff_delays() -> None:
    clock = VirtualClock()
    f = Flaky(clock, failures=3)
    seen = []
    g = resil.retry(retries=3, backoff=Backoff(1, 2, max_delay=30), clock=clock,
                    on_retry=lambda a, d, e: seen.append((a, d, type(e))))(f)
    assert g() == "ok"
    assert f.calls == [0.0, 1.0, 3.0, 7.0]
    assert seen == [(1, 1.0, ConnectionError), (2, 2.0, ConnectionError),
                    (3, 4.0, ConnectionError)]


def test_gives_up_after_retries_plus_one_calls_with_the_last_error() -> None:
    clock = VirtualClock()
    f = Flaky(clock, failures=10)
    g = resil.retry(retries=2, clock=clock)(f)
    with pytest.raises(ConnectionError):
        g()
    assert len(f.calls) == 3


def test_exception_outside_retry_on_is_not_retried() -> None:
    clock = VirtualClock()
    f = Flaky(clock, failures=5, exc=KeyError("k"))
    with pytest.raises(KeyError):
        resil.retry(retry_on=(ConnectionError,), clock=clock)(f)()
    assert len(f.calls) == 1 and clock.now() == 0.0


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), SystemExit(), asyncio.CancelledError()])
def test_cancellation_is_never_retried_even_if_listed(exc: BaseException) -> None:
    clock = VirtualClock()
    f = Flaky(clock, failures=5, exc=exc)
    with pytest.raises(type(exc)):
        resil.retry(retry_on=(BaseException,), clock=clock)(f)()
    assert len(f.calls) == 1 and clock.now() == 0.0


def test_retry_if_result_and_retry_error() -> None:
    clock = VirtualClock()
    results = iter([None, None, 5])
    g = resil.retry(retries=3, retry_if_result=lambda r: r is None, clock=clock)(
        lambda: next(results))
    assert g() == 5
    g2 = resil.retry(retries=1, retry_if_result=lambda r: r < 0, clock=clock)(lambda: -1)
    with pytest.raises(RetryError) as info:
        g2()
    assert info.value.result == -1 and info.value.attempts == 2
    assert isinstance(info.value, resil.ResilError)


def test_retry_after_is_honoured_and_capped() -> None:
    clock = VirtualClock()

    class Throttled(Exception):
        def __init__(self, after: float) -> None:
            super().__init__("throttled")
            self.retry_after = after

    hints = iter([7.0, 500.0])
    calls = []

    def f() -> str:
        calls.append(clock.now())
        if len(calls) <= 2:
            raise Throttled(next(hints))
        return "ok"

    assert resil.retry(backoff=Backoff(1, 2, max_delay=60), clock=clock)(f)() == "ok"
    assert calls == [0.0, 7.0, 67.0]  # 7 s as asked, then 500 capped at max_delay 60
    custom = resil.retry(retry_after=lambda e: 0.25, clock=clock, retries=1)
    f2 = Flaky(clock, failures=1)
    t = clock.now()
    assert custom(f2)() == "ok" and f2.calls[1] - t == 0.25


def test_open_breaker_fails_fast_with_zero_sleeps() -> None:
    clock = VirtualClock()
    breaker = resil.CircuitBreaker("dep", failure_threshold=2, clock=clock)
    f = Flaky(clock, failures=10)
    slept = []
    g = resil.retry(retries=5, breaker=breaker, clock=clock,
                    on_retry=lambda a, d, e: slept.append(d))(f)
    with pytest.raises(CircuitOpenError) as info:
        g()
    # attempt 1 fails (sleep 1 s), attempt 2 trips the breaker: no further sleep
    assert len(f.calls) == 2 and slept == [1.0] and clock.now() == 1.0
    assert isinstance(info.value.__cause__, ConnectionError)
    t = clock.now()
    with pytest.raises(CircuitOpenError):
        g()
    assert len(f.calls) == 2 and clock.now() == t  # already open: not even one call


def test_budget_denial_ends_with_the_last_error() -> None:
    clock = VirtualClock()
    budget = resil.RetryBudget(ratio=0.0, min_per_second=1.0, clock=clock)
    f = Flaky(clock, failures=10)
    with pytest.raises(ConnectionError):
        resil.retry(retries=5, budget=budget, backoff=Backoff(0.1, 1.0), clock=clock)(f)()
    assert len(f.calls) == 2  # the floor allows one retry per second; the next is rejected
    assert budget.stats()["rejected"] == 1 and budget.stats()["requests"] == 1


@given(cost=st.floats(0, 3), base=st.floats(0.01, 5), deadline=st.floats(0.5, 20),
       failures=st.integers(0, 10))
def test_total_time_never_exceeds_the_deadline_virtual(cost: float, base: float,
                                                        deadline: float, failures: int) -> None:
    clock = VirtualClock()
    f = Flaky(clock, failures=failures, cost=cost)
    g = resil.retry(retries=10, backoff=Backoff(base, 2.0, max_delay=30.0), deadline=deadline,
                    clock=clock)(f)
    try:
        g()
    except ConnectionError:
        pass
    # no sleep crosses the deadline; only an attempt already running may end past it
    last_start = f.calls[-1]
    assert last_start < deadline or len(f.calls) == 1
    assert clock.now() <= max(deadline, last_start) + cost + 1e-9


def test_total_time_never_exceeds_the_deadline_real_time() -> None:
    calls = []

    @resil.retry(retries=50, backoff=Backoff(0.02, 2.0, max_delay=1.0), deadline=0.25)
    def f() -> None:
        calls.append(time.monotonic())
        raise ConnectionError

    start = time.monotonic()
    with pytest.raises(ConnectionError):
        f()
    elapsed = time.monotonic() - start
    # sleeps of 20, 40, 80 ms fit (0.14 s); the next 160 ms would cross 0.25 s
    assert len(calls) == 4
    assert elapsed < 0.25, elapsed  # measured slack: the call ends before the deadline


def test_async_retry_on_virtual_loop() -> None:
    clock = VirtualClock()
    calls = []

    @resil.retry(retries=3, backoff=Backoff(2, 2, max_delay=30))
    async def f(x: int) -> int:
        calls.append(asyncio.get_running_loop().time())
        if len(calls) < 3:
            raise ConnectionError
        return x * 2

    assert inspect.iscoroutinefunction(f)
    assert resil.run_virtual(f(21), clock) == 42
    assert calls == [0.0, 2.0, 6.0]


def test_async_attempt_running_at_the_deadline_is_cancelled_and_times_out() -> None:
    cancelled = []

    @resil.retry(retries=5, deadline=10.0)
    async def f() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(asyncio.get_running_loop().time())
            raise

    async def main() -> None:
        with pytest.raises(resil.OperationTimeout):
            await f()
        assert cancelled == [10.0]
        assert asyncio.all_tasks() == {asyncio.current_task()}

    resil.run_virtual(main())


def test_async_cancellation_is_reraised_at_once() -> None:
    calls = []

    @resil.retry(retries=5, retry_on=(BaseException,))
    async def f() -> None:
        calls.append(1)
        await asyncio.sleep(100)

    async def main() -> None:
        task = asyncio.create_task(f())
        await asyncio.sleep(1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    resil.run_virtual(main())
    assert calls == [1]


def test_async_open_breaker_fails_fast() -> None:
    breaker = resil.CircuitBreaker("dep", failure_threshold=1)
    breaker.force_open()

    @resil.retry(retries=5, breaker=breaker)
    async def f() -> None:
        raise AssertionError("must not run")

    async def main() -> float:
        loop = asyncio.get_running_loop()
        t = loop.time()
        with pytest.raises(CircuitOpenError):
            await f()
        return loop.time() - t

    assert resil.run_virtual(main()) == 0.0


def test_decorator_validation() -> None:
    with pytest.raises(ValueError, match="retries"):
        resil.retry(retries=-1)
    with pytest.raises(TypeError, match="retries"):
        resil.retry(retries=2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="deadline"):
        resil.retry(deadline=0)
    with pytest.raises(TypeError, match="backoff"):
        resil.retry(backoff=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="retry_on"):
        resil.retry(retry_on=(ValueError, "x"))
    with pytest.raises(TypeError, match="on_retry"):
        resil.retry(on_retry=3)  # type: ignore[arg-type]

    async def coro() -> None:
        pass

    with pytest.raises(ValueError, match="clock"):
        resil.retry(clock=VirtualClock())(coro)
    with pytest.raises(TypeError, match="generator"):
        resil.retry()(lambda: (yield))


def test_wrapper_keeps_metadata() -> None:
    @resil.retry()
    def named(x: int) -> int:
        """Doc."""
        return x

    assert named.__name__ == "named" and named.__doc__ == "Doc." and named(3) == 3
    assert inspect.signature(named) == inspect.signature(named.__wrapped__)
