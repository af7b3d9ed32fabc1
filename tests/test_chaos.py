"""resil.chaos: fault, latency and result injection, seeded and clock-aware."""

from __future__ import annotations

import asyncio
import inspect
import math
import random
import subprocess
import sys
from typing import Any

import pytest

import resil
from resil import chaos
from tests_support import run_threads


def _draws(seed: int, rate: float, n: int) -> list[bool]:
    """Which of n calls a policy seeded with ``seed`` injects: one draw of
    random.Random(seed).random() per call, injected when below the rate."""
    rng = random.Random(seed)
    return [rng.random() < rate for _ in range(n)]


def _outcomes(policy: chaos.ChaosPolicy, n: int) -> list[bool]:
    @policy
    def call() -> str:
        return "ok"

    seen = []
    for _ in range(n):
        try:
            call()
        except ConnectionError:
            seen.append(True)
        else:
            seen.append(False)
    return seen


def test_a_seeded_fault_rate_is_reproducible_and_injects_what_the_seed_draws() -> None:
    first = _outcomes(chaos.fault(0.3, ConnectionError, seed=42), 1000)
    second = _outcomes(chaos.fault(0.3, ConnectionError, seed=42), 1000)
    assert first == second == _draws(42, 0.3, 1000)
    policy = chaos.fault(0.3, ConnectionError, seed=42)
    _outcomes(policy, 1000)
    assert policy.stats() == {"name": "fault", "calls": 1000, "injected": sum(first),
                              "rate": 0.3, "enabled": True}
    assert 250 < sum(first) < 350
    assert _outcomes(chaos.fault(0.3, ConnectionError, seed=43), 1000) != first


def test_rates_zero_and_one_never_and_always_inject() -> None:
    assert not any(_outcomes(chaos.fault(0, ConnectionError), 200))
    assert all(_outcomes(chaos.fault(1, ConnectionError), 200))


def test_retry_survives_a_30_percent_fault_rate_on_virtual_time() -> None:
    clock = resil.VirtualClock()
    faults = chaos.fault(0.3, ConnectionError("flaky"), seed=7)
    calls = 0

    @resil.retry(retries=8, backoff=resil.Backoff(base=0.1, jitter="none"), clock=clock)
    @faults
    def fetch(i: int) -> int:
        nonlocal calls
        calls += 1
        return i

    assert [fetch(i) for i in range(500)] == list(range(500))
    stats = faults.stats()
    assert calls == 500 and stats["calls"] == 500 + stats["injected"]
    assert stats["injected"] == sum(_draws(7, 0.3, stats["calls"]))
    assert fetch.retry_policy.stats()["retries"] == stats["injected"]
    assert clock.now() > 0  # the backoff advanced the virtual clock, no real sleep


def test_async_retry_survives_faults_and_latency_under_run_virtual() -> None:
    faults = chaos.fault(0.3, ConnectionError, seed=3)
    slow = chaos.latency(0.5, 2.0, seed=4)
    delays: list[float] = []

    @resil.retry(retries=8, backoff=resil.Backoff(base=0.1, jitter="none"),
                 on_retry=lambda attempt, delay, error: delays.append(delay))
    @faults
    @slow
    async def fetch(i: int) -> int:
        await asyncio.sleep(0)
        return i

    async def main() -> tuple[list[int], float]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        results = [await fetch(i) for i in range(200)]
        return results, loop.time() - start

    clock = resil.VirtualClock()
    results, elapsed = resil.run_virtual(main(), clock)
    assert results == list(range(200))
    assert slow.stats()["calls"] == 200 and slow.stats()["injected"] > 50
    retries = fetch.retry_policy.stats()["retries"]
    assert retries == faults.stats()["injected"] > 30
    assert len(delays) == retries
    assert elapsed == pytest.approx(2.0 * slow.stats()["injected"] + sum(delays))


def test_sync_latency_advances_a_virtual_clock_instead_of_sleeping() -> None:
    clock = resil.VirtualClock()
    slow = chaos.latency(0.3, 1.5, seed=11, clock=clock)
    seen = []

    @slow
    def work(x: int) -> int:
        seen.append(clock.now())
        return x * 2

    assert [work(i) for i in range(100)] == [i * 2 for i in range(100)]
    injected = sum(_draws(11, 0.3, 100))
    assert slow.stats()["injected"] == injected
    assert clock.now() == pytest.approx(1.5 * injected)
    assert len(seen) == 100  # latency delays the call, it still runs


def test_async_latency_with_a_clock_waits_on_that_clock() -> None:
    clock = resil.VirtualClock()
    slow = chaos.latency(1.0, 3.0, clock=clock)

    @slow
    async def work() -> float:
        return clock.now()

    assert inspect.iscoroutinefunction(work)
    assert resil.run_virtual(work(), clock) == pytest.approx(3.0)


def test_result_replaces_the_call_with_the_value() -> None:
    sentinel = object()
    policy = chaos.result(0.3, sentinel, seed=5)
    ran = 0

    @policy
    def real() -> object:
        nonlocal ran
        ran += 1
        return "real"

    out = [real() for _ in range(300)]
    injected = sum(_draws(5, 0.3, 300))
    assert sum(1 for o in out if o is sentinel) == injected == policy.stats()["injected"]
    assert ran == 300 - injected

    @chaos.result(1.0, 7)
    async def coro() -> int:
        raise AssertionError("not called")

    assert asyncio.run(coro()) == 7


def test_enabled_is_read_at_each_call_and_a_disabled_call_draws_nothing() -> None:
    on = False
    policy = chaos.fault(0.5, ConnectionError, seed=9, enabled=lambda: on)
    assert _outcomes(policy, 50) == [False] * 50
    assert policy.stats()["enabled"] is False
    on = True
    # The enabled calls see the seed's sequence from its start.
    assert _outcomes(policy, 100) == _draws(9, 0.5, 100)
    assert policy.stats()["calls"] == 150 and policy.stats()["enabled"] is True
    assert _outcomes(chaos.fault(1.0, ConnectionError, enabled=False), 10) == [False] * 10


def test_an_error_instance_is_raised_as_a_fresh_copy_and_a_class_is_instantiated() -> None:
    template = ConnectionError("down", 3)
    template.extra = "kept"  # type: ignore[attr-defined]

    @chaos.fault(1.0, template)
    def call() -> None:
        pass

    raised = []
    for _ in range(3):
        with pytest.raises(ConnectionError) as info:
            call()
        raised.append(info.value)
    assert len({id(e) for e in raised}) == 3 and template not in raised
    assert all(e.args == ("down", 3) and e.extra == "kept" for e in raised)  # type: ignore[attr-defined]
    # No traceback piles up from one raise to the next.
    depths = []
    for e in raised:
        tb, n = e.__traceback__, 0
        while tb is not None:
            tb, n = tb.tb_next, n + 1
        depths.append(n)
    assert depths[0] == depths[1] == depths[2]
    assert template.__traceback__ is None

    @chaos.fault(1.0, TimeoutError)
    def other() -> None:
        pass

    with pytest.raises(TimeoutError) as info:
        other()
    assert type(info.value) is TimeoutError


class _NeedsArgs(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(f"code {code}")


@pytest.mark.parametrize("make, param, error", [
    (lambda: chaos.fault("0.3", ValueError), "rate", TypeError),
    (lambda: chaos.fault(True, ValueError), "rate", TypeError),
    (lambda: chaos.fault(math.nan, ValueError), "rate", ValueError),
    (lambda: chaos.fault(math.inf, ValueError), "rate", ValueError),
    (lambda: chaos.fault(-0.1, ValueError), "rate", ValueError),
    (lambda: chaos.fault(1.5, ValueError), "rate", ValueError),
    (lambda: chaos.fault(10**400, ValueError), "rate", ValueError),
    (lambda: chaos.fault(0.3, "boom"), "error", TypeError),
    (lambda: chaos.fault(0.3, int), "error", TypeError),
    (lambda: chaos.fault(0.3, _NeedsArgs), "error", TypeError),
    (lambda: chaos.latency(0.3, -1), "seconds", ValueError),
    (lambda: chaos.latency(0.3, math.nan), "seconds", ValueError),
    (lambda: chaos.latency(0.3, math.inf), "seconds", ValueError),
    (lambda: chaos.latency(0.3, "1"), "seconds", TypeError),
    (lambda: chaos.latency(-1, 1.0), "rate", ValueError),
    (lambda: chaos.result(2, None), "rate", ValueError),
    (lambda: chaos.result(0.3, None, enabled=1), "enabled", TypeError),
    (lambda: chaos.result(0.3, None, seed=1.5), "seed", TypeError),
    (lambda: chaos.result(0.3, None, clock=object()), "clock", TypeError),
    (lambda: chaos.result(0.3, None, name=""), "name", ValueError),
])
def test_bad_arguments_raise_naming_the_parameter(make: Any, param: str, error: type) -> None:
    with pytest.raises(error) as info:
        make()
    assert type(info.value) is error and param in str(info.value)


def test_generator_functions_and_non_callables_are_refused() -> None:
    policy = chaos.latency(0.5, 0.0)

    def gen() -> Any:
        yield 1

    with pytest.raises(TypeError, match="generator"):
        policy(gen)
    with pytest.raises(TypeError):
        policy(3)  # type: ignore[arg-type]


def test_the_wrapper_keeps_the_function_name_and_signature() -> None:
    def fetch(url: str, *, timeout: float = 1.0) -> str:
        """Fetches."""
        return url

    wrapped = chaos.latency(0.1, 0.0)(fetch)
    assert wrapped.__name__ == "fetch" and wrapped.__doc__ == "Fetches."
    assert wrapped.__wrapped__ is fetch  # type: ignore[attr-defined]
    assert str(inspect.signature(wrapped)) == str(inspect.signature(fetch))


def test_counts_are_exact_across_threads() -> None:
    policy = chaos.fault(0.3, ConnectionError, seed=1)
    raised = [0] * 8

    @policy
    def call() -> None:
        pass

    def worker(k: int) -> None:
        for _ in range(1000):
            try:
                call()
            except ConnectionError:
                raised[k] += 1

    run_threads(worker, 8)
    stats = policy.stats()
    assert stats["calls"] == 8000
    # Whatever the interleaving, the 8,000 draws are the seed's 8,000 draws.
    assert stats["injected"] == sum(raised) == sum(_draws(1, 0.3, 8000))


def test_resil_chaos_is_a_lazy_attribute_and_a_module_path() -> None:
    code = ("import sys, resil\n"
            "assert 'resil.chaos' not in sys.modules\n"
            "policy = resil.chaos.fault(0.5, ValueError)\n"
            "import resil.chaos\n"
            "from resil.chaos import fault, latency, result\n"
            "assert resil.chaos.fault is fault and 'chaos' in dir(resil)\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
