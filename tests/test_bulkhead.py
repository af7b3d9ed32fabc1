"""resil.Bulkhead through its public API: the concurrency cap under threads
and tasks, FIFO waiting across both, queue timeouts on the given clock,
exact cancellation, permits, and argument checks."""

from __future__ import annotations

import asyncio
import inspect
import math
import random
import threading
import time
from typing import Any

import pytest

import resil

try:
    from tests_support import run_threads, switch_interval
except ImportError:  # pragma: no cover
    from tests.tests_support import run_threads, switch_interval  # type: ignore[no-redef]

STATS_KEYS = ["name", "max_concurrent", "active", "queued", "admitted", "rejected", "timed_out",
              "peak_active"]


class Gauge:
    """Counts the calls running inside the bulkhead and keeps the most seen."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = self.peak = self.ran = 0

    def enter(self) -> None:
        with self.lock:
            self.now += 1
            self.ran += 1
            self.peak = max(self.peak, self.now)

    def leave(self) -> None:
        with self.lock:
            self.now -= 1


def settled(b: resil.Bulkhead) -> None:
    s = b.stats()
    assert s["active"] == 0 and s["queued"] == 0, s


def wait_for(cond: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.001)


# ---- the cap and the accounts -------------------------------------------------------

@pytest.mark.parametrize("max_queue, queue_timeout", [(1000, None), (4, None), (8, 0.0005)])
def test_32_threads_never_exceed_max_concurrent_and_every_call_is_accounted(
        max_queue: int, queue_timeout: float | None) -> None:
    b = resil.Bulkhead("threads", 3, max_queue=max_queue, queue_timeout=queue_timeout)
    gauge = Gauge()
    refused = [0] * 32
    per_thread = 40

    @b
    def work() -> None:
        gauge.enter()
        time.sleep(0)          # let the others in, if they could come
        gauge.leave()

    def target(i: int) -> None:
        for n in range(per_thread):
            try:
                if n % 4 == 3:
                    with b:
                        work.__wrapped__()
                else:
                    work()
            except resil.BulkheadFull:
                refused[i] += 1

    run_threads(target, 32)
    s = b.stats()
    assert gauge.peak <= 3 and s["peak_active"] <= 3
    assert s["admitted"] == gauge.ran
    assert s["rejected"] + s["timed_out"] == sum(refused)
    assert s["admitted"] + s["rejected"] + s["timed_out"] == 32 * per_thread
    if max_queue == 1000:
        assert s["admitted"] == 32 * per_thread
    settled(b)


@pytest.mark.parametrize("max_queue, queue_timeout", [(1000, None), (50, None), (200, 0.0002)])
def test_1000_tasks_never_exceed_max_concurrent_and_every_call_is_accounted(
        max_queue: int, queue_timeout: float | None) -> None:
    b = resil.Bulkhead("tasks", 7, max_queue=max_queue, queue_timeout=queue_timeout)
    gauge = Gauge()

    async def work(i: int) -> None:
        gauge.enter()
        await asyncio.sleep(0 if i % 3 else 0.0001)
        gauge.leave()

    async def one(i: int) -> str:
        try:
            if i % 2:
                await b.call_async(work, i)
            else:
                async with b:
                    await work(i)
        except resil.BulkheadFull:
            return "refused"
        return "ran"

    async def main() -> list[str]:
        return await asyncio.gather(*(one(i) for i in range(1000)))

    results = asyncio.run(main())
    s = b.stats()
    assert gauge.peak <= 7 and s["peak_active"] <= 7
    assert s["admitted"] == results.count("ran") == gauge.ran
    assert s["rejected"] + s["timed_out"] == results.count("refused")
    assert s["admitted"] + s["rejected"] + s["timed_out"] == 1000
    if max_queue == 1000:
        assert s["admitted"] == 1000
    settled(b)


def test_threads_and_tasks_together_share_one_cap() -> None:
    b = resil.Bulkhead("mixed", 4, max_queue=10_000)
    gauge = Gauge()

    def sync_work() -> None:
        gauge.enter()
        time.sleep(0)
        gauge.leave()

    async def async_work() -> None:
        gauge.enter()
        await asyncio.sleep(0)
        gauge.leave()

    def threads() -> None:
        run_threads(lambda i: [b.call(sync_work) for _ in range(50)], 16)

    async def main() -> None:
        worker = threading.Thread(target=threads)
        worker.start()
        await asyncio.gather(*(b.call_async(async_work) for _ in range(500)))
        await asyncio.get_running_loop().run_in_executor(None, worker.join)

    with switch_interval(1e-5):
        asyncio.run(main())
    assert gauge.peak <= 4
    assert b.stats()["admitted"] == 16 * 50 + 500 == gauge.ran
    settled(b)


# ---- FIFO -------------------------------------------------------------------------------

def test_waiters_get_slots_in_arrival_order_across_threads_and_tasks() -> None:
    b = resil.Bulkhead("fifo", 1, max_queue=10)
    order: list[str] = []

    def thread_caller(tag: str) -> None:
        with b:
            order.append(tag)

    async def task_caller(tag: str) -> None:
        async with b:
            order.append(tag)

    async def main() -> None:
        permit = b.try_acquire()
        assert permit is not None
        pending: list[Any] = []
        for n, kind in enumerate(["t", "a", "t", "a", "a", "t"]):
            tag = f"{kind}{n}"
            if kind == "t":
                th = threading.Thread(target=thread_caller, args=(tag,))
                th.start()
                pending.append(th)
            else:
                pending.append(asyncio.ensure_future(task_caller(tag)))
            while b.stats()["queued"] < n + 1:   # in line before the next one comes
                await asyncio.sleep(0.001)
        b.release(permit)
        for p in pending:
            if isinstance(p, threading.Thread):
                await asyncio.get_running_loop().run_in_executor(None, p.join)
            else:
                await p

    asyncio.run(main())
    assert order == ["t0", "a1", "t2", "a3", "a4", "t5"]
    settled(b)


def test_a_newcomer_never_takes_a_slot_ahead_of_the_line() -> None:
    async def main() -> None:
        b = resil.Bulkhead("fair", 1, max_queue=1)
        async with b:
            waiting = asyncio.ensure_future(b.call_async(asyncio.sleep, 0, "waited"))
            await asyncio.sleep(0)
        # The slot is handed to the waiter: a newcomer finds none.
        assert b.try_acquire() is None
        assert await waiting == "waited"
        assert b.stats()["rejected"] == 1
        settled(b)

    resil.run_virtual(main())


# ---- refusals and timeouts ----------------------------------------------------------------

def test_full_bulkhead_refuses_at_once_with_bulkhead_full() -> None:
    b = resil.Bulkhead("db", 1)
    assert issubclass(resil.BulkheadFull, resil.ResilError)
    with b:
        with pytest.raises(resil.BulkheadFull, match="'db'"):
            b.call(lambda: None)
        with pytest.raises(resil.BulkheadFull):
            resil.run_virtual(b.call_async(asyncio.sleep, 0))
    s = b.stats()
    assert list(s) == STATS_KEYS
    assert s == {"name": "db", "max_concurrent": 1, "active": 0, "queued": 0, "admitted": 1,
                 "rejected": 2, "timed_out": 0, "peak_active": 1}


def test_async_queue_timeout_follows_the_virtual_clock() -> None:
    async def main() -> None:
        clock = asyncio.get_running_loop().clock  # type: ignore[attr-defined]
        b = resil.Bulkhead("slow", 1, max_queue=2, queue_timeout=2.5, clock=clock)
        started = clock.now()
        async with b:
            late = asyncio.ensure_future(b.call_async(asyncio.sleep, 0))
            await asyncio.sleep(10)
            with pytest.raises(resil.BulkheadFull, match="queue_timeout"):
                await late
        assert clock.now() - started == pytest.approx(10.0)
        s = b.stats()
        assert (s["timed_out"], s["admitted"], s["queued"], s["active"]) == (1, 1, 0, 0)

    resil.run_virtual(main())


def test_async_waiter_served_before_its_timeout_runs() -> None:
    async def main() -> None:
        b = resil.Bulkhead("ok", 1, max_queue=1, queue_timeout=5.0)
        async with b:
            waiting = asyncio.ensure_future(b.call_async(asyncio.sleep, 0, "done"))
            await asyncio.sleep(4.9)
        assert await waiting == "done"
        await asyncio.sleep(10)                   # the cancelled timer does nothing later
        assert b.stats()["timed_out"] == 0 and b.stats()["admitted"] == 2

    resil.run_virtual(main())


def test_blocked_thread_times_out_on_the_given_clock() -> None:
    clock = resil.VirtualClock()
    b = resil.Bulkhead("sync", 1, max_queue=1, queue_timeout=3.0, clock=clock)
    outcome: list[Any] = []

    def caller() -> None:
        try:
            b.call(lambda: None)
            outcome.append("ran")
        except resil.BulkheadFull as e:
            outcome.append(e)

    permit = b.try_acquire()
    th = threading.Thread(target=caller)
    th.start()
    wait_for(lambda: b.stats()["queued"] == 1)
    time.sleep(0.05)
    assert not outcome                    # real time passes; the given clock does not
    clock.advance(3.0)
    th.join(5)
    assert isinstance(outcome[0], resil.BulkheadFull)
    b.release(permit)
    assert b.stats()["timed_out"] == 1
    settled(b)


def test_blocked_thread_with_default_clock_times_out_in_real_time() -> None:
    b = resil.Bulkhead("real", 1, max_queue=1, queue_timeout=0.05)
    with b:
        t0 = time.monotonic()
        with pytest.raises(resil.BulkheadFull):
            threading_result: list[BaseException] = []

            def caller() -> None:
                try:
                    b.call(lambda: None)
                except BaseException as e:  # noqa: BLE001 - handed to the main thread
                    threading_result.append(e)

            th = threading.Thread(target=caller)
            th.start()
            th.join(5)
            raise threading_result[0]
        assert 0.04 <= time.monotonic() - t0 < 2.0
    assert b.stats()["timed_out"] == 1


def test_blocked_thread_is_served_when_a_slot_frees() -> None:
    b = resil.Bulkhead("served", 1, max_queue=1)
    ran = threading.Event()
    with b:
        th = threading.Thread(target=lambda: b.call(ran.set))
        th.start()
        wait_for(lambda: b.stats()["queued"] == 1)
    th.join(5)
    assert ran.is_set()
    settled(b)


# ---- cancellation ---------------------------------------------------------------------------

@pytest.mark.parametrize("when", ["waiting", "handed"])
def test_a_cancelled_waiter_never_takes_a_slot(when: str) -> None:
    """Two waiters behind a running call; the first is cancelled while it
    waits, or once the freed slot was handed to it but before it ran: the
    slot goes to the second either way."""
    async def main() -> None:
        b = resil.Bulkhead("c", 1, max_queue=2)
        ran: list[int] = []

        async def work(i: int) -> None:
            ran.append(i)

        async with b:
            first = asyncio.ensure_future(b.call_async(work, 1))
            second = asyncio.ensure_future(b.call_async(work, 2))
            await asyncio.sleep(0)
            if when == "waiting":
                first.cancel()
                await asyncio.sleep(0)
                assert b.stats()["queued"] == 1
        if when == "handed":
            assert b.stats()["active"] == 1 and b.stats()["queued"] == 1
            first.cancel()
        await second
        with pytest.raises(asyncio.CancelledError):
            await first
        assert ran == [2]
        s = b.stats()
        assert (s["admitted"], s["rejected"], s["timed_out"]) == (2, 0, 0)
        settled(b)

    resil.run_virtual(main())


def test_a_call_cancelled_or_failing_inside_frees_its_slot_once() -> None:
    async def main() -> None:
        b = resil.Bulkhead("f", 2)

        async def hang() -> None:
            await asyncio.sleep(100)

        async def boom() -> None:
            raise KeyError("x")

        task = asyncio.ensure_future(b.call_async(hang))
        await asyncio.sleep(1)
        assert b.stats()["active"] == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(KeyError):
            await b.call_async(boom)
        with pytest.raises(ZeroDivisionError):
            b.call(lambda: 1 / 0)
        settled(b)
        assert b.stats()["admitted"] == 3

    resil.run_virtual(main())


@pytest.mark.parametrize("seed", range(6))
def test_cancellation_at_random_points_loses_and_leaks_nothing(seed: int) -> None:
    rng = random.Random(seed)
    calls = 300

    async def main() -> None:
        clock = asyncio.get_running_loop().clock  # type: ignore[attr-defined]
        b = resil.Bulkhead("r", 3, max_queue=rng.randint(0, 40),
                           queue_timeout=rng.choice([None, 0.0, 0.5, 2.0]), clock=clock)
        gauge = Gauge()

        async def work() -> None:
            gauge.enter()
            try:
                await asyncio.sleep(rng.random())
            finally:
                gauge.leave()

        async def caller(i: int) -> str:
            await asyncio.sleep(rng.random() * 3)
            try:
                if i % 2:
                    await b.call_async(work)
                else:
                    async with b:
                        await work()
            except resil.BulkheadFull:
                return "refused"
            return "ran"

        tasks = [asyncio.ensure_future(caller(i)) for i in range(calls)]
        for _ in range(calls // 3):
            await asyncio.sleep(rng.random() * 0.05)
            rng.choice(tasks).cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        s = b.stats()
        assert gauge.peak <= 3 and gauge.now == 0
        cancelled = sum(isinstance(r, asyncio.CancelledError) for r in results)
        assert s["rejected"] + s["timed_out"] == results.count("refused")
        # A cancelled call either never got a slot or was admitted and then cancelled.
        assert results.count("ran") <= s["admitted"] <= results.count("ran") + cancelled
        assert s["admitted"] == gauge.ran
        settled(b)

    resil.run_virtual(main())


# ---- permits --------------------------------------------------------------------------------

def test_try_acquire_and_release() -> None:
    b = resil.Bulkhead("p", 2)
    p1, p2 = b.try_acquire(), b.try_acquire()
    assert isinstance(p1, resil.BulkheadPermit) and isinstance(p2, resil.BulkheadPermit)
    assert b.try_acquire() is None
    assert b.stats()["rejected"] == 1
    b.release(p1)
    assert p1.released is True and p2.released is False
    with pytest.raises(ValueError, match="already released"):
        b.release(p1)
    assert b.stats()["active"] == 1               # the second release freed nothing
    with pytest.raises(ValueError, match="another bulkhead"):
        resil.Bulkhead("other").release(p2)
    with pytest.raises(TypeError, match="permit"):
        b.release(object())  # type: ignore[arg-type]
    b.release(p2)
    settled(b)
    with pytest.raises(TypeError):
        resil.BulkheadPermit()  # type: ignore[call-arg]


def test_release_hands_the_slot_to_a_waiting_thread() -> None:
    b = resil.Bulkhead("p", 1, max_queue=1)
    permit = b.try_acquire()
    assert permit is not None
    ran = threading.Event()
    th = threading.Thread(target=lambda: b.call(ran.set))
    th.start()
    wait_for(lambda: b.stats()["queued"] == 1)
    b.release(permit)
    th.join(5)
    assert ran.is_set()
    settled(b)


def test_exit_without_enter_is_an_error_not_a_free() -> None:
    b = resil.Bulkhead("e", 1)
    with pytest.raises(ValueError, match="slot"):
        b.__exit__(None, None, None)
    assert b.stats()["active"] == 0
    with b:
        pass
    settled(b)


# ---- use ------------------------------------------------------------------------------------

def test_decorator_keeps_signature_and_works_for_plain_and_coroutine_functions() -> None:
    b = resil.Bulkhead("d", 1)

    @b
    def add(x: int, y: int = 2) -> int:
        return x + y

    @b
    async def add_async(x: int, *, y: int = 2) -> int:
        return x + y

    assert add(1) == 3 and add.__name__ == "add"
    assert inspect.signature(add) == inspect.signature(add.__wrapped__)
    assert list(inspect.signature(add).parameters) == ["x", "y"]
    assert inspect.iscoroutinefunction(add_async)
    assert resil.run_virtual(add_async(1, y=5)) == 6
    assert b.call(add.__wrapped__, 2, y=3) == 5      # type: ignore[attr-defined]
    assert resil.run_virtual(b.call_async(add_async.__wrapped__, 2)) == 4  # type: ignore[attr-defined]
    assert b.stats()["admitted"] == 4
    with pytest.raises(TypeError, match="decorates a function"):
        b(42)  # type: ignore[call-overload]


def test_signature_and_attributes() -> None:
    params = inspect.signature(resil.Bulkhead).parameters
    assert list(params) == ["name", "max_concurrent", "max_queue", "queue_timeout", "clock",
                            "shared"]
    b = resil.Bulkhead()
    assert (b.name, b.max_concurrent, b.max_queue, b.queue_timeout) == ("default", 10, 0, None)
    assert resil.Bulkhead(queue_timeout=math.inf).queue_timeout is None
    assert resil.Bulkhead(queue_timeout=2).queue_timeout == 2.0
    assert "default" in repr(b)


def test_monitor_counts_refusals_of_a_watched_bulkhead() -> None:
    monitor = resil.Monitor()
    b = resil.Bulkhead("api", 1)
    monitor.watch(b)
    monitor.watch(b)                              # not wired twice
    with b:
        assert b.try_acquire() is None
        with pytest.raises(resil.BulkheadFull):
            b.call(lambda: None)
    other = monitor.dashboard()["resilience_metrics"]["other"]
    assert other == {"bulkhead_rejection": 2}


# ---- hostile arguments --------------------------------------------------------------------

@pytest.mark.parametrize("param, value, error", [
    ("name", 1, TypeError), ("name", "", ValueError), ("name", None, TypeError),
    ("max_concurrent", 0, ValueError), ("max_concurrent", -1, ValueError),
    ("max_concurrent", 10**400, ValueError), ("max_concurrent", -10**400, ValueError),
    ("max_concurrent", (1 << 30) + 1, ValueError), ("max_concurrent", True, TypeError),
    ("max_concurrent", 2.0, TypeError), ("max_concurrent", math.nan, TypeError),
    ("max_concurrent", math.inf, TypeError), ("max_concurrent", "3", TypeError),
    ("max_concurrent", None, TypeError),
    ("max_queue", -1, ValueError), ("max_queue", 10**400, ValueError),
    ("max_queue", (1 << 30) + 1, ValueError), ("max_queue", False, TypeError),
    ("max_queue", math.nan, TypeError), ("max_queue", math.inf, TypeError),
    ("max_queue", 1.5, TypeError), ("max_queue", None, TypeError),
    ("queue_timeout", -1, ValueError), ("queue_timeout", -0.5, ValueError),
    ("queue_timeout", math.nan, ValueError), ("queue_timeout", -math.inf, ValueError),
    ("queue_timeout", -10**400, ValueError), ("queue_timeout", True, TypeError),
    ("queue_timeout", "1", TypeError),
    ("clock", object(), TypeError), ("clock", 1.0, TypeError),
    ("shared", object(), TypeError), ("shared", "region", TypeError),
    ("shared", False, TypeError),
])
def test_hostile_arguments_raise_naming_the_parameter(param: str, value: Any,
                                                      error: type[Exception]) -> None:
    with pytest.raises(error) as info:
        resil.Bulkhead(**{param: value})
    assert type(info.value) is error
    assert param in str(info.value), str(info.value)


@pytest.mark.parametrize("value", [0, 0.0, 1e-9, 10**400, math.inf, None])
def test_queue_timeout_edges_are_accepted(value: Any) -> None:
    b = resil.Bulkhead(queue_timeout=value)
    expected = None if value is None or value in (math.inf, 10**400) else float(value)
    assert b.queue_timeout == expected


def test_zero_queue_timeout_refuses_a_waiter_that_finds_no_slot() -> None:
    async def main() -> None:
        b = resil.Bulkhead("z", 1, max_queue=5, queue_timeout=0)
        async with b:
            with pytest.raises(resil.BulkheadFull):
                await b.call_async(asyncio.sleep, 0)
        assert b.stats()["timed_out"] == 1
        settled(b)

    resil.run_virtual(main())


def test_limits_at_the_edges() -> None:
    big = resil.Bulkhead(max_concurrent=1 << 30, max_queue=1 << 30)
    assert big.stats()["max_concurrent"] == 1 << 30
    assert resil.Bulkhead(max_concurrent=1, max_queue=0).max_queue == 0


def test_keyboard_interrupt_in_a_blocked_thread_leaves_the_line() -> None:
    import signal

    # A test run started as a background job inherits SIGINT ignored: use
    # Python's own handler, the one that raises KeyboardInterrupt.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        b = resil.Bulkhead("k", 1, max_queue=1)
        permit = b.try_acquire()
        main = threading.get_ident()

        def interrupt() -> None:
            wait_for(lambda: b.stats()["queued"] == 1)
            signal.pthread_kill(main, signal.SIGINT)

        th = threading.Thread(target=interrupt)
        th.start()
        with pytest.raises(KeyboardInterrupt):
            with b:
                pytest.fail("an interrupted waiter ran")
        th.join()
    finally:
        signal.signal(signal.SIGINT, previous)
    s = b.stats()
    assert (s["queued"], s["active"], s["timed_out"], s["admitted"]) == (0, 1, 0, 1)
    b.release(permit)
    settled(b)



def test_a_main_thread_blocked_in_the_line_wakes_to_run_signal_handlers(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A signal that lands after the last check and before the lock wait
    # starts does not interrupt that wait; the main thread (the one Python
    # runs handlers in: Ctrl-C) therefore never waits unboundedly in one go.
    from resil.policies import bulkhead as module

    waits: list[float] = []

    class CountingLock:
        def __init__(self) -> None:
            self._lock = threading.Lock()

        def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
            waits.append(timeout)
            return self._lock.acquire(blocking, timeout)

        def release(self) -> None:
            self._lock.release()

    class Waiter(module._Waiter):
        __slots__ = ()

        def __init__(self, fut: Any) -> None:
            super().__init__(fut)
            if fut is None:
                self.lock = CountingLock()  # type: ignore[assignment]
                self.lock.acquire()
                waits.clear()

    monkeypatch.setattr(module, "_Waiter", Waiter)
    b = resil.Bulkhead("k", 1, max_queue=1)
    permit = b.try_acquire()
    assert permit is not None
    threading.Timer(0.3, b.release, args=(permit,)).start()
    with b:  # waits in the main thread until the timer frees the slot
        pass
    assert len(waits) >= 3 and all(0 < t <= 0.05 for t in waits), waits
