"""Bulkhead(shared=region): bulkheads of one name in one region are one
bulkhead, across handles and processes. Two handles driven with random
operations answer and count exactly as one local bulkhead; parameters
that differ are a ValueError naming the first; four processes never run
more than max_concurrent calls at once and their totals are exact; a
waiter in one process wakes when a slot is freed in another; a process
killed holding a slot gives it back once the lease passed (and not while
it lives); processes killed at random moments leave a sound region.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import resil
from resil._resil import BulkheadCore

try:  # pytest's default "prepend" import mode puts tests/ on sys.path
    import region_bulkhead_workers as workers
    from tests_support import kill_at_random_moments, run_threads
except ModuleNotFoundError:  # pragma: no cover - tests/ made a package
    from tests import region_bulkhead_workers as workers  # type: ignore[no-redef]
    from tests.tests_support import kill_at_random_moments, run_threads

ADMITTED, QUEUED, FULL = 0, 1, 2


def test_two_handles_are_one_bulkhead(tmp_path: Path) -> None:
    region = resil.SharedRegion(tmp_path / "r")
    a = resil.Bulkhead("api", 2, shared=region)
    b = resil.Bulkhead("api", 2, shared=resil.SharedRegion(tmp_path / "r"))
    other = resil.Bulkhead("other", 2, shared=region)
    permit = a.try_acquire()
    assert permit is not None
    with b:
        assert a.try_acquire() is None and b.try_acquire() is None
        with pytest.raises(resil.BulkheadFull):
            with a:
                pass
        assert other.try_acquire() is not None  # another name, another bulkhead
    assert b.call(lambda x: x + 1, 1) == 2
    a.release(permit)
    with pytest.raises(ValueError, match="already released"):
        a.release(permit)
    with pytest.raises(ValueError, match="another bulkhead"):
        b.release(permit)
    expected = {"name": "api", "max_concurrent": 2, "active": 0, "queued": 0, "admitted": 3,
                "rejected": 3, "timed_out": 0, "peak_active": 2}
    assert a.stats() == expected and b.stats() == expected
    assert [o["type"] for o in region.objects()] == ["Bulkhead", "Bulkhead"]
    assert region.objects()[0]["parameters"] == {"max_concurrent": 2, "max_queue": 0,
                                                 "queue_timeout": float("inf")}
    assert repr(a) == "<Bulkhead 'api' active=0/2 queued=0>"
    assert a.shared is region and resil.Bulkhead("api").shared is None
    assert region.check() == []


@pytest.mark.parametrize("changed, name", [
    ({"max_concurrent": 3}, "max_concurrent"), ({"max_queue": 1}, "max_queue"),
    ({"queue_timeout": 1.0}, "queue_timeout"),
    ({"max_concurrent": 3, "queue_timeout": 1.0}, "max_concurrent"),
    ({"max_queue": 5, "queue_timeout": 1.0}, "max_queue"),
])
def test_other_parameters_name_the_first_difference(tmp_path: Path, changed: dict[str, Any],
                                                    name: str) -> None:
    region = resil.SharedRegion(tmp_path / "r")
    resil.Bulkhead("api", 2, max_queue=4, shared=region)
    kwargs: dict[str, Any] = {"max_concurrent": 2, "max_queue": 4, **changed}
    with pytest.raises(ValueError, match=f"^{name}: the bulkhead 'api' in region .* has "
                                         f"{name}="):
        resil.Bulkhead("api", shared=region, **kwargs)
    # the same values attach (None and inf are one queue_timeout)
    resil.Bulkhead("api", 2, max_queue=4, queue_timeout=float("inf"), shared=region)
    assert len(region.objects()) == 1


def test_bad_arguments_and_a_closed_region(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="shared must be None or a resil.SharedRegion"):
        resil.Bulkhead("x", shared=str(tmp_path / "r"))  # type: ignore[arg-type]
    region = resil.SharedRegion(tmp_path / "r")
    for kwargs, error in [({"max_concurrent": 0}, ValueError),
                          ({"max_concurrent": True}, TypeError),
                          ({"max_queue": -1}, ValueError), ({"max_queue": 10**400}, ValueError),
                          ({"queue_timeout": float("nan")}, ValueError),
                          ({"queue_timeout": "1"}, TypeError)]:
        with pytest.raises(error):
            resil.Bulkhead("x", shared=region, **kwargs)
    with pytest.raises(ValueError, match="at most 63 bytes"):
        resil.Bulkhead("x" * 64, shared=region)
    with pytest.raises(ValueError, match="UTF-8"):
        resil.Bulkhead("\ud800", shared=region)
    assert region.objects() == []
    b = resil.Bulkhead("x", 1, max_queue=1, shared=region)
    permit = b.try_acquire()
    assert permit is not None
    region.close()
    for call in (b.try_acquire, b.stats, lambda: b.release(permit), b.__enter__,
                 lambda: b.__exit__(None, None, None), lambda: b.call(len, "")):
        with pytest.raises(resil.RegionError, match="closed"):
            call()
    with pytest.raises(resil.RegionError, match="closed"):
        resil.Bulkhead("y", shared=region)


def test_a_thread_waiting_wakes_when_another_handle_frees_a_slot(tmp_path: Path) -> None:
    region = resil.SharedRegion(tmp_path / "r")
    a = resil.Bulkhead("w", 1, max_queue=2, shared=region)
    b = resil.Bulkhead("w", 1, max_queue=2, shared=region)
    permit = a.try_acquire()
    assert permit is not None
    got: list[float] = []

    def wait() -> None:
        with b:
            got.append(time.monotonic())

    t = threading.Thread(target=wait)
    t.start()
    deadline = time.monotonic() + 10
    while a.stats()["queued"] != 1:
        assert time.monotonic() < deadline
        time.sleep(0.001)
    assert a.try_acquire() is None  # no barging past the waiter of the other handle
    freed = time.monotonic()
    a.release(permit)
    t.join(10)
    assert got and got[0] - freed < 1.0
    assert a.stats()["admitted"] == 2 and a.stats()["rejected"] == 1
    assert a.stats()["active"] == 0 and region.check() == []


def test_waits_on_the_event_loop_timeouts_and_cancellation(tmp_path: Path) -> None:
    clock = resil.VirtualClock()
    region = resil.SharedRegion(tmp_path / "r")
    a = resil.Bulkhead("v", 1, max_queue=2, queue_timeout=5, clock=clock, shared=region)
    b = resil.Bulkhead("v", 1, max_queue=2, queue_timeout=5, clock=clock, shared=region)

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        times: list[float] = []
        permit = a.try_acquire()
        assert permit is not None

        async def waiter() -> None:
            async with b:
                times.append(loop.time())

        task = asyncio.ensure_future(waiter())
        await asyncio.sleep(1)
        assert a.stats()["queued"] == 1
        a.release(permit)  # another handle: b's line finds the slot when it looks
        await task
        assert times[0] - 1 < 0.05
        # a waiter whose time runs out is counted timed_out
        permit = a.try_acquire()
        with pytest.raises(resil.BulkheadFull, match="queue_timeout"):
            async with b:
                pass
        # a cancelled waiter takes nothing
        cancelled = asyncio.ensure_future(waiter())
        await asyncio.sleep(0.5)
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        assert permit is not None
        a.release(permit)
        return times

    resil.run_virtual(main(), clock=clock)
    stats = a.stats()
    assert (stats["admitted"], stats["timed_out"], stats["active"], stats["queued"]) == \
        (3, 1, 0, 0)
    assert region.check() == []


def test_a_blocked_thread_times_out_and_is_interrupted(tmp_path: Path) -> None:
    region = resil.SharedRegion(tmp_path / "r")
    b = resil.Bulkhead("t", 1, max_queue=1, queue_timeout=0.05, shared=region)
    permit = b.try_acquire()
    t0 = time.monotonic()
    with pytest.raises(resil.BulkheadFull, match="queue_timeout"):
        with b:
            pass
    assert 0.04 < time.monotonic() - t0 < 2
    assert b.stats()["timed_out"] == 1 and b.stats()["queued"] == 0
    # SIGINT while the main thread sleeps on the region: it leaves the line
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    unbounded = resil.Bulkhead("i", 1, max_queue=1, shared=region)
    held = unbounded.try_acquire()
    timer = threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGINT))
    try:
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            with unbounded:
                pass
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, old)
    assert unbounded.stats()["queued"] == 0 and unbounded.stats()["timed_out"] == 0
    assert permit is not None and held is not None
    b.release(permit)
    unbounded.release(held)
    assert region.check() == []


def test_threads_share_exactly(tmp_path: Path) -> None:
    region = resil.SharedRegion(tmp_path / "r")
    handles = [resil.Bulkhead("t", 2, max_queue=8, shared=region) for _ in range(2)]
    inside = peak = 0
    lock = threading.Lock()

    def work(i: int) -> None:
        nonlocal inside, peak
        b = handles[i % 2]
        for _ in range(150):
            with b:
                with lock:
                    inside += 1
                    peak = max(peak, inside)
                with lock:
                    inside -= 1

    run_threads(work, 4)
    stats = handles[0].stats()
    assert peak <= 2 and stats["peak_active"] <= 2
    assert (stats["admitted"], stats["active"], stats["queued"]) == (600, 0, 0)
    assert region.check() == []


# ---- lockstep: two handles answer and count as one local bulkhead -------------

def _lockstep(tmp_path: Path, seed: int, hits: Counter[str]) -> None:
    rng = random.Random(seed)
    mc, mq = rng.randint(1, 3), rng.randint(0, 3)
    region = resil.SharedRegion(tmp_path / f"r{seed}", size=1 << 16)
    local = BulkheadCore(mc, max_queue=mq)
    handles = [BulkheadCore(mc, max_queue=mq, name="l", shared=region) for _ in range(2)]
    held: list[tuple[int, Any, Any]] = []  # (handle, local permit or None, shared permit)
    line: list[int] = []  # the handle of each waiter, in order
    handed: list[int] = []  # handles holding a slot claimed for a waiter

    def pass_on() -> None:
        """After the local engine handed a freed slot on: the first waiter's
        handle claims it (the order across handles is free)."""
        h = line.pop(0)
        assert handles[h].hand_off() == 1
        handed.append(h)
        hits["claimed"] += 1

    for _ in range(120):
        op = rng.randrange(7)
        h = rng.randrange(2)
        s = handles[h]
        if op == 0:
            ok = local.try_enter()
            assert s.try_enter() == ok
            if ok:
                held.append((h, None, None))
        elif op == 1:
            lp, sp = local.try_acquire(), s.try_acquire()
            assert (lp is None) == (sp is None)
            if lp is not None:
                held.append((h, lp, sp))
        elif op == 2:
            answer = local.acquire()
            assert s.acquire() == answer
            if answer == ADMITTED:
                held.append((h, None, None))
            elif answer == QUEUED:
                line.append(h)
            hits[f"acquire {answer}"] += 1
        elif op == 3 and held:
            h, lp, sp = held.pop(rng.randrange(len(held)))
            got_local = local.exit() if lp is None else local.release(lp)
            got = handles[h].exit() if sp is None else handles[h].release(sp)
            assert got == (2 if h in line else 0)  # 2: this handle's waiters look
            hits[f"release {got}"] += 1
            if got_local:
                assert local.hand_off() == 1
                pass_on()
        elif op == 4 and handed:
            h = handed.pop(rng.randrange(len(handed)))
            local.start()
            handles[h].start()
            held.append((h, None, None))
        elif op == 5 and handed:
            h = handed.pop(rng.randrange(len(handed)))
            if local.decline():  # handed on to the next waiter
                got = handles[h].decline()
                hits[f"decline {got}"] += 1
                if got == 1:  # to a waiter of the same handle
                    line.remove(h)
                    handed.append(h)
                else:  # freed: the first waiter's handle claims it
                    pass_on()
            else:
                assert handles[h].decline() == 0
        elif op == 6 and line:
            h = line.pop(rng.randrange(len(line)))
            timed_out = rng.random() < 0.5
            local.leave(timed_out)
            handles[h].leave(timed_out)
            hits["leave"] += 1
        want = local.stats()
        for s in handles:
            assert s.stats() == want
            assert (s.active, s.queued, s.handed) == (local.active, local.queued, local.handed)
    assert region.check() == []
    # misuse is refused alike, and changes nothing
    want = local.stats()
    if not held:
        for s in handles:
            with pytest.raises(ValueError):
                s.exit()
        with pytest.raises(ValueError):
            local.exit()
    if not handed:
        for s in handles:
            with pytest.raises(ValueError):
                s.start()
            with pytest.raises(ValueError):
                s.decline()
    if not line:
        for s in handles:
            with pytest.raises(ValueError):
                s.leave(True)
    assert all(s.stats() == want for s in handles)
    region.close()


def test_two_handles_match_a_local_bulkhead_step_by_step(tmp_path: Path) -> None:
    hits: Counter[str] = Counter()
    for seed in range(150):
        _lockstep(tmp_path, seed, hits)
    # every path was taken, many times
    paths = {"acquire 0", "acquire 1", "acquire 2", "release 0", "release 2", "claimed",
             "decline 0", "decline 1", "leave"}
    assert paths <= set(hits) and min(hits[p] for p in paths) >= 20, hits


def test_the_public_api_matches_a_local_bulkhead(tmp_path: Path) -> None:
    rng = random.Random(7)
    region = resil.SharedRegion(tmp_path / "r")
    local = resil.Bulkhead("p", 3)
    shared = [resil.Bulkhead("p", 3, shared=region) for _ in range(2)]
    permits: list[tuple[Any, Any, int]] = []
    entered: list[int] = []
    for _ in range(2000):
        op, h = rng.randrange(5), rng.randrange(2)
        if op == 0:
            lp, sp = local.try_acquire(), shared[h].try_acquire()
            assert (lp is None) == (sp is None)
            if lp is not None:
                permits.append((lp, sp, h))
        elif op == 1 and permits:
            lp, sp, h = permits.pop(rng.randrange(len(permits)))
            local.release(lp)
            shared[h].release(sp)
        elif op == 2:
            try:
                local.__enter__()
                ok = True
            except resil.BulkheadFull:
                ok = False
            if ok:
                shared[h].__enter__()
                entered.append(h)
            else:
                with pytest.raises(resil.BulkheadFull):
                    shared[h].__enter__()
        elif op == 3 and entered:
            h = entered.pop()
            local.__exit__(None, None, None)
            shared[h].__exit__(None, None, None)
        elif op == 4:
            try:
                want_call: Any = local.call(len, "ab")
            except resil.BulkheadFull as exc:
                want_call = type(exc)
            try:
                got_call: Any = shared[h].call(len, "ab")
            except resil.BulkheadFull as exc:
                got_call = type(exc)
            assert got_call == want_call
        want = {**local.stats(), "name": "p"}
        assert shared[0].stats() == shared[1].stats() == want
    assert region.check() == []


# ---- processes ------------------------------------------------------------------


def test_four_processes_never_exceed_max_concurrent(tmp_path: Path) -> None:
    ctx = workers.context()
    path = str(tmp_path / "r")
    region = resil.SharedRegion(path)
    b = resil.Bulkhead("h", workers.MAX, max_queue=8, queue_timeout=0.05, shared=region)
    start, out, inside = ctx.Event(), ctx.Queue(), ctx.Value("i", 0)
    procs = [ctx.Process(target=workers.hammer, args=(path, seed, 1.0, start, inside, out))
             for seed in range(4)]
    for p in procs:
        p.start()
    time.sleep(0.3)
    start.set()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    stats = b.stats()
    assert max(r[3] for r in results) <= workers.MAX  # never more at once, host-wide
    assert stats["peak_active"] == workers.MAX  # and the cap was reached
    assert stats["admitted"] == sum(r[0] for r in results)
    assert stats["rejected"] == sum(r[1] for r in results)
    assert stats["timed_out"] == sum(r[2] for r in results)
    assert stats["active"] == 0 and stats["queued"] == 0 and inside.value == 0
    assert region.check() == []


@pytest.mark.parametrize("use_async", [False, True])
def test_a_waiter_in_one_process_wakes_when_another_frees_a_slot(tmp_path: Path,
                                                                 use_async: bool) -> None:
    ctx = workers.context()
    path = str(tmp_path / "r")
    region = resil.SharedRegion(path)
    b = resil.Bulkhead("w", 1, max_queue=1, queue_timeout=30, shared=region)
    permit = b.try_acquire()
    assert permit is not None
    ready, out = ctx.Event(), ctx.Queue()
    proc = ctx.Process(target=workers.wait_for_a_slot, args=(path, use_async, ready, out))
    proc.start()
    assert ready.wait(30)
    deadline = time.monotonic() + 30
    while b.stats()["queued"] != 1:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    time.sleep(0.2)  # it sleeps now
    freed = time.monotonic()
    b.release(permit)
    got = out.get(timeout=30)
    proc.join(timeout=30)
    assert proc.exitcode == 0
    assert 0 <= got - freed < 0.5, got - freed
    assert b.stats()["admitted"] == 2 and region.check() == []


def test_a_killed_holder_s_slot_comes_back_after_the_lease(tmp_path: Path) -> None:
    ctx = workers.context()
    path = str(tmp_path / "r")
    region = resil.SharedRegion(path, lease=0.2)
    b = resil.Bulkhead("s", 1, shared=region)
    ready = ctx.Event()
    proc = ctx.Process(target=workers.hold, args=(path, "s", ready))
    proc.start()
    assert ready.wait(30)
    time.sleep(0.3)  # past the lease: the holder lives, so its slot stays
    assert b.try_acquire() is None
    assert b.stats()["active"] == 1
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(timeout=30)
    killed = time.monotonic()
    permit = None
    while permit is None:
        assert time.monotonic() - killed < 2.0
        permit = b.try_acquire()
        if permit is None:
            time.sleep(0.01)
    assert time.monotonic() - killed < 0.2 + 0.3  # within about a lease
    stats = b.stats()
    assert stats["active"] == 1 and stats["admitted"] == 2
    b.release(permit)
    assert region.check() == []


def test_processes_killed_at_random_moments_leave_a_sound_region(tmp_path: Path) -> None:
    ctx = workers.context()
    path = str(tmp_path / "r")
    region = resil.SharedRegion(path, lease=0.2)
    b = resil.Bulkhead("k", 2, max_queue=4, queue_timeout=0.01, shared=region)
    last = 0
    for round_ in kill_at_random_moments(ctx, workers.churn_until_killed, lambda r: (path, r),
                                         50, 5):
        t0 = time.monotonic()
        stats = b.stats()  # never hangs: a dead holder's lock is recovered, the block repaired
        assert time.monotonic() - t0 < 2
        total = stats["admitted"] + stats["rejected"] + stats["timed_out"]
        assert total >= last  # counts of dead workers are kept
        last = total
        assert stats["active"] <= 2 and stats["queued"] <= 4
        assert region.check() == [], round_
    assert last > 50
    time.sleep(0.25)  # every holder is dead and the lease passed
    permits = [b.try_acquire(), b.try_acquire()]  # the second finds it full: taken back
    assert None not in permits
    for p in permits:
        assert p is not None
        b.release(p)
    stats = b.stats()
    assert stats["active"] == 0 and stats["queued"] == 0, stats
    assert region.check() == []


def test_tasks_cancelled_at_random_points_leave_nothing_taken(tmp_path: Path) -> None:
    clock = resil.VirtualClock()
    region = resil.SharedRegion(tmp_path / "r")
    handles = [resil.Bulkhead("c", 2, max_queue=6, queue_timeout=0.5, clock=clock,
                              shared=region) for _ in range(2)]
    rng = random.Random(3)
    inside = peak = 0

    async def work(i: int) -> None:
        nonlocal inside, peak
        async with handles[i % 2]:
            inside += 1
            peak = max(peak, inside)
            try:
                await asyncio.sleep(rng.choice((0, 0.001, 0.01, 0.1)))
            finally:
                inside -= 1

    async def main() -> None:
        for _ in range(20):
            tasks = [asyncio.ensure_future(work(i)) for i in range(8)]
            await asyncio.sleep(rng.choice((0, 0.0005, 0.002, 0.02)))
            for t in rng.sample(tasks, 3):
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    resil.run_virtual(main(), clock=clock)
    stats = handles[0].stats()
    assert peak <= 2 and stats["peak_active"] <= 2
    assert (stats["active"], stats["queued"]) == (0, 0)
    assert handles[0]._core.handed == handles[1]._core.handed == 0
    assert stats["admitted"] > 0 and region.check() == []


def test_closing_another_handle_on_the_region_keeps_this_one_s_slots(tmp_path: Path) -> None:
    region = resil.SharedRegion(tmp_path / "r")
    other = resil.SharedRegion(tmp_path / "r")
    b = resil.Bulkhead("o", 2, shared=region)
    permit = b.try_acquire()
    assert permit is not None
    with b:
        other.close()  # this process's slots are b's, still in use
        del other
        assert b.stats()["active"] == 2
    b.release(permit)
    assert b.stats()["active"] == 0 and region.check() == []
