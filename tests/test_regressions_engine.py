"""Regressions: queues fed from other threads, the breaker's deferred
awaitables (a forgotten await warns), and the ranges that error messages
state."""

from __future__ import annotations

import asyncio
import gc
import re
import subprocess
import sys
import textwrap
import threading
import warnings
import time
from collections.abc import Callable
from typing import Any

import pytest

import resil

# ---- queues: a put from another thread wakes a waiting get ------------------


async def _get_woken_by_thread(q: Any, get: Callable[[], Any], put: Callable[[], None]) -> float:
    """Awaits get() while another thread calls put(); returns the seconds
    between the put and the get's return (or fails after 2 s)."""
    loop = asyncio.get_running_loop()
    waiting = threading.Event()
    put_at: list[float] = []

    def producer() -> None:
        waiting.wait(5)
        time.sleep(0.02)  # the loop is idle in its selector now
        put_at.append(time.monotonic())
        put()

    thread = threading.Thread(target=producer)
    thread.start()
    loop.call_soon(waiting.set)
    try:
        await asyncio.wait_for(get(), 2)
        return time.monotonic() - put_at[0]
    finally:
        thread.join()


def test_bounded_queue_put_from_thread_wakes_a_waiting_get() -> None:
    q: resil.BoundedQueue[int] = resil.BoundedQueue(10)
    assert asyncio.run(_get_woken_by_thread(q, q.get, lambda: q.put_nowait(1))) < 1.0
    assert q.qsize() == 0


def test_partitioned_queue_put_from_thread_wakes_a_waiting_get() -> None:
    q: resil.PartitionedQueue[str, int] = resil.PartitionedQueue(10)
    assert asyncio.run(_get_woken_by_thread(q, q.get, lambda: q.put_nowait(1, "k"))) < 1.0
    assert q.qsize() == 0


def test_put_from_thread_under_debug_loop_does_not_hang() -> None:
    """A future completed from a foreign thread under a debug loop is done
    but never wakes its task: wait_for's own timeout then hangs forever.
    Run apart, so that a hang is a failure."""
    script = textwrap.dedent("""
        import asyncio, threading, time, resil
        async def main():
            for q, put in ((b := resil.BoundedQueue(10), lambda: b.put_nowait(1)),
                           (p := resil.PartitionedQueue(10), lambda: p.put_nowait(1, "k"))):
                loop = asyncio.get_running_loop()
                ev = threading.Event()
                t = threading.Thread(target=lambda: (ev.wait(5), time.sleep(0.02), put()))
                t.start()
                loop.call_soon(ev.set)
                await asyncio.wait_for(q.get(), 2)
                t.join()
        asyncio.run(main(), debug=True)
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=30)
    assert out.stdout.strip() == "ok", out.stderr


def test_queue_get_from_thread_wakes_a_waiting_put() -> None:
    q: resil.BoundedQueue[int] = resil.BoundedQueue(1, warn_at=1.0, reject_at=1.0)
    q.put_nowait(0)

    async def main() -> float:
        return await _get_woken_by_thread(q, lambda: q.put(1), q.get_nowait)

    assert asyncio.run(main()) < 1.0
    assert q.get_nowait() == 1


def test_task_done_from_thread_wakes_join() -> None:
    for q, done in ((resil.BoundedQueue(10), lambda q: q.task_done()),
                    (resil.PartitionedQueue(10), lambda q: q.task_done("k"))):
        if isinstance(q, resil.PartitionedQueue):
            q.put_nowait(1, "k")
        else:
            q.put_nowait(1)
        q.get_nowait()

        async def main(q: Any = q, done: Any = done) -> float:
            return await _get_woken_by_thread(q, q.join, lambda: done(q))

        assert asyncio.run(main()) < 1.0


# ---- breaker: a guarded call that is never awaited says so -------------------


class _Down(Exception):
    pass


async def _failing() -> None:
    raise _Down()


def test_call_of_coroutine_function_never_awaited_warns() -> None:
    """Forgetting ``await`` on breaker.call(async_fn) runs nothing and records
    nothing: Python warns for a coroutine never awaited, and so must this."""
    b = resil.CircuitBreaker("w", failure_threshold=1)
    with pytest.warns(RuntimeWarning, match=r"_failing.*'w'.*never awaited"):
        b.call(_failing)
        gc.collect()
    with pytest.warns(RuntimeWarning, match="never awaited"):
        b.call_async(_failing)
        gc.collect()
    guarded = b(_failing)
    b.force_open()  # a rejecting breaker defers the call too
    with pytest.warns(RuntimeWarning, match="never awaited"):
        guarded()
        gc.collect()
    assert b.stats()["permitted"] == 0


def test_guarded_awaitable_closed_or_awaited_does_not_warn() -> None:
    b = resil.CircuitBreaker("w", failure_threshold=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        b.call(_failing).close()
        aw = b.call_async(_failing)
        with pytest.raises(KeyError):
            aw.throw(KeyError("k"))
        del aw

        async def main() -> None:
            with pytest.raises(_Down):
                await b.call(_failing)
            task = asyncio.ensure_future(b.call(_failing))
            task.cancel()  # cancelled before its first step
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(main())
        gc.collect()
    assert b.stats()["failures"] == 1


# ---- breaker: an error names what the parameter accepts, and the parameter passed


@pytest.mark.parametrize("name, value, accepts", [
    ("failure_threshold", 2**32, "[0, 4294967295]"),
    ("cooldown", 1e308, "seconds in [0, 9.2e9]"),
    ("cooldown", 10**400, "seconds in [0, 9.2e9]"),
    ("cooldown_max", 1e10, "seconds in [0, 9.2e9] and >= cooldown"),
    ("window_duration", 1e10, "seconds in [1e-8, 9.2e9]"),
    ("half_open_max_wait", 1e308, "seconds in [1e-9, 9.2e9]"),
    ("slow_call_duration", 1e306, "finite"),
], ids=lambda v: type(v).__name__ if isinstance(v, (int, float)) else str(v))
def test_out_of_range_message_states_the_bound_passed(name: str, value: object,
                                                      accepts: str) -> None:
    """"cooldown must be >= 0, got 1e+308" contradicted itself: the upper
    bound the value broke was never named."""
    for make in (lambda kw: resil.CircuitBreaker(**kw),
                 lambda kw: resil.CircuitBreaker().configure(**kw)):
        with pytest.raises(ValueError, match=rf"^{name} must be .*{re.escape(accepts)}") as e:
            make({name: value})
        assert "got" in str(e.value)


@pytest.mark.parametrize("kw, message", [
    ({"cooldown": 1000.0}, r"^cooldown must be <= cooldown_max \(600\.0\), got 1000\.0$"),
    ({"cooldown_max": 1.0}, r"^cooldown_max must be .* and >= cooldown, got 1\.0$"),
    ({"window_size": 3}, r"^window_size must be >= minimum_calls \(10\) for a count window, got 3$"),
    ({"minimum_calls": 200}, r"^minimum_calls must be .* and <= window_size for a count window, got 200$"),
])
def test_rule_between_two_parameters_names_the_one_passed(kw: dict[str, Any],
                                                          message: str) -> None:
    """CircuitBreaker(cooldown=1000) said "cooldown_max must be >= cooldown,
    got 600.0", about a parameter the caller never passed."""
    with pytest.raises(ValueError, match=message):
        resil.CircuitBreaker(**kw)
    b = resil.CircuitBreaker()
    with pytest.raises(ValueError, match=message):
        b.configure(**kw)
