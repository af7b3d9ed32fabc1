"""Regressions: breaker.call of coroutine functions, retry over an already
guarded function, run-time configuration, listener order under threads, and
bad input to the breaker, retry and clock types."""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import random
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import resil
from resil import CircuitBreaker, CircuitOpenError, State, VirtualClock


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture
def fast_switching() -> Iterator[None]:
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


class Down(Exception):
    """The failure of a dependency, in these tests."""


# ---- 2. retry(breaker=b) over a function already guarded by b ------------------

def test_retry_with_breaker_refuses_a_function_guarded_by_the_same_breaker() -> None:
    b = CircuitBreaker("payments")

    def fn() -> int:
        return 1

    async def afn() -> int:
        return 1

    guarded = b(fn)
    assert guarded.breaker is b  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="'payments'"):
        resil.retry(breaker=b)(guarded)
    with pytest.raises(ValueError, match="'payments'"):
        resil.retry(breaker=b)(b(afn))

    @functools.wraps(guarded)
    def outer(*a: Any, **kw: Any) -> Any:
        return guarded(*a, **kw)

    with pytest.raises(ValueError, match="'payments'"):
        resil.retry(breaker=b)(outer)

    class Client:
        @b
        def get(self) -> int:
            return 1

    with pytest.raises(ValueError, match="'payments'"):
        resil.retry(breaker=b)(Client().get)
    with pytest.raises(ValueError, match="'payments'"):
        resil.retry(breaker=b)(functools.partial(guarded))
    # another breaker, or no breaker on retry, is fine
    other = CircuitBreaker("other")
    assert resil.retry(breaker=other)(guarded)() == 1
    assert resil.retry()(guarded)() == 1
    assert resil.retry(breaker=b)(fn)() == 1
    with pytest.raises(AttributeError):
        guarded.breaker = other  # type: ignore[attr-defined]


def test_retry_with_breaker_counts_each_attempt_once() -> None:
    clock = VirtualClock()
    b = CircuitBreaker("dep", failure_threshold=4, clock=clock)
    calls = 0

    def flaky() -> None:
        nonlocal calls
        calls += 1
        raise Down()

    policy = resil.retry(retries=1, backoff=resil.Backoff(base=0.0), breaker=b, clock=clock)
    with pytest.raises(Down):
        policy(flaky)()
    assert calls == 2 and b.stats()["failures"] == 2
    assert b.state is State.CLOSED


# ---- 5. bad input -----------------------------------------------------------

@pytest.mark.parametrize("seed", [2**64, 10**400, -1, -(2**63)], ids=["2**64", "10**400", "-1", "-2**63"])
def test_backoff_seed_out_of_range(seed: int) -> None:
    with pytest.raises(ValueError, match=r"seed must be .*2\*\*64"):
        resil.Backoff(seed=seed)


def test_backoff_seed_range_is_accepted() -> None:
    assert resil.Backoff(seed=0).seed == 0
    assert resil.Backoff(seed=2**64 - 1).seed == 2**64 - 1
    with pytest.raises(TypeError, match="seed"):
        resil.Backoff(seed=True)


@pytest.mark.parametrize("ratio", [1e308, 10.5, math.inf, math.nan, -0.1, 10**400],
                         ids=["1e308", "10.5", "inf", "nan", "-0.1", "10**400"])
def test_budget_ratio_is_bounded(ratio: float) -> None:
    with pytest.raises(ValueError, match="ratio"):
        resil.RetryBudget(ratio=ratio)


def test_budget_ratio_bound_allows_ten_retries_per_request() -> None:
    clock = VirtualClock()
    b = resil.RetryBudget(ratio=10.0, min_per_second=0.0, clock=clock)
    b.record_request()
    assert sum(b.try_retry() for _ in range(100)) == 10


@pytest.mark.parametrize("arg,exc", [(True, TypeError), (1.5, TypeError), ("1", TypeError),
                                     (-1, ValueError), (10**400, ValueError),
                                     (2**64, ValueError)],
                         ids=["True", "1.5", "str", "-1", "10**400", "2**64"])
def test_advance_ns_rejects_what_is_not_nanoseconds(arg: Any, exc: type[Exception]) -> None:
    c = VirtualClock()
    with pytest.raises(exc, match="ns"):
        c.advance_ns(arg)
    assert c.now_ns() == 0
    c.advance_ns(5)
    assert c.now_ns() == 5


@pytest.mark.parametrize("activity", [math.nan, math.inf, -math.inf, 10**400],
                         ids=["nan", "inf", "-inf", "10**400"])
def test_adaptive_interval_update_rejects_non_finite(activity: float) -> None:
    iv = resil.AdaptiveInterval(1.0, 0.5, 2.0, 0.5)
    with pytest.raises(ValueError, match="activity"):
        iv.update(activity)
    assert iv.interval == 1.0 and iv.updates == 0


HUGE = 10**400
HUGER = 10**5000  # more digits than int's repr allows

HUGE_CASES: list[tuple[Callable[[int], object], str]] = [
    (lambda v: resil.Backoff(base=v), "base"),
    (lambda v: resil.Backoff(max_delay=v), "max_delay"),
    (lambda v: resil.Backoff(seed=v), "seed"),
    (lambda v: resil.Backoff().delay(1, v), "prev"),
    (lambda v: resil.RetryBudget(ratio=v), "ratio"),
    (lambda v: resil.RetryBudget(window=v), "window"),
    (lambda v: resil.RetryBudget(min_per_second=v), "min_per_second"),
    (lambda v: VirtualClock(v), "start"),
    (lambda v: VirtualClock().advance(v), "seconds"),
    (lambda v: VirtualClock().advance_ns(v), "ns"),
    (lambda v: VirtualClock().set(v), "seconds"),
    (lambda v: resil.AdaptiveInterval(v, 1, 2, 0.5), "base"),
    (lambda v: resil.AdaptiveInterval(1, 1, 2, 0.5, speedup=v), "speedup"),
    (lambda v: resil.AdaptiveInterval(1, 1, 2, 0.5).update(v), "activity"),
    (lambda v: resil.Deduplicator(ttl=v), "ttl"),
]


@pytest.mark.parametrize("make,name", HUGE_CASES + [
    (lambda v: resil.Deduplicator(capacity=v), "capacity"),
])
def test_huge_int_names_the_parameter(make: Callable[[int], object], name: str) -> None:
    with pytest.raises(ValueError, match=f"^{name}"):
        make(HUGE)


@pytest.mark.parametrize("make,name", HUGE_CASES)
@pytest.mark.parametrize("value", [HUGE, HUGER], ids=["10**400", "10**5000"])
def test_huge_int_is_summarised_in_the_message(make: Callable[[int], object], name: str,
                                              value: int) -> None:
    with pytest.raises(ValueError, match=f"^{name}") as info:
        make(value)
    assert len(str(info.value)) < 200


def test_huge_attempt_behaves_as_attempt_63() -> None:
    b = resil.Backoff()
    assert b.delay(HUGE) == b.delay(HUGER) == b.delay(63)
