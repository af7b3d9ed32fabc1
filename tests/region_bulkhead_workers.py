"""Work for the child processes of tests/test_region_bulkhead.py, in a
module of its own so that a child (started by a forkserver that preloads
it) imports nothing more."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import resil

MAX = 3


def hammer(path: str, seed: int, seconds: float, start: Any, inside: Any, out: Any) -> None:
    """Takes slots for `seconds` (waiting in line, with try_acquire, or as
    a decorated call), holds each a random while, and counts in `inside`
    (a counter shared with the other processes) the calls running."""
    region = resil.SharedRegion(path)
    b = resil.Bulkhead("h", MAX, max_queue=8, queue_timeout=0.05, shared=region)
    rng = random.Random(seed)
    admitted = rejected = timed_out = 0
    peak = 0

    def run() -> None:
        nonlocal peak
        with inside.get_lock():
            inside.value += 1
            peak = max(peak, inside.value)
        time.sleep(rng.choice((0, 0, 0.0002, 0.001, 0.003)))
        with inside.get_lock():
            inside.value -= 1

    start.wait()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        how = rng.randrange(3)
        if how == 0:
            permit = b.try_acquire()
            if permit is None:
                rejected += 1
                continue
            try:
                run()
            finally:
                b.release(permit)
            admitted += 1
            continue
        try:
            if how == 1:
                with b:
                    run()
            else:
                b.call(run)
        except resil.BulkheadFull as exc:
            if "queue_timeout" in str(exc):
                timed_out += 1
            else:
                rejected += 1
            continue
        admitted += 1
    out.put((admitted, rejected, timed_out, peak))


def hold(path: str, lease_name: str, ready: Any) -> None:
    """Takes the one slot and keeps it until killed."""
    region = resil.SharedRegion(path)
    b = resil.Bulkhead(lease_name, 1, shared=region)
    permit = b.try_acquire()
    assert permit is not None
    ready.set()
    time.sleep(60)


def wait_for_a_slot(path: str, use_async: bool, ready: Any, out: Any) -> None:
    """Waits in line for the bulkhead's one slot; puts the monotonic time it
    got it (CLOCK_MONOTONIC: the same clock in every process of a host)."""
    region = resil.SharedRegion(path)
    b = resil.Bulkhead("w", 1, max_queue=1, queue_timeout=30, shared=region)

    async def wait_async() -> float:
        loop = asyncio.get_running_loop()
        loop.call_soon(ready.set)  # once the task waits in line
        async with b:
            return time.monotonic()

    if use_async:
        out.put(asyncio.run(wait_async()))
        return
    # only the futex can wake it in time: its own looks are 10 s apart
    import resil.policies.bulkhead as module
    module._SHARED_SLEEP = 10.0
    ready.set()  # the line is joined right after: the parent waits for it
    with b:
        out.put(time.monotonic())


def churn_until_killed(path: str, seed: int, ready: Any) -> None:
    region = resil.SharedRegion(path)
    b = resil.Bulkhead("k", 2, max_queue=4, queue_timeout=0.01, shared=region)
    rng = random.Random(seed)
    ready.set()
    while True:
        try:
            if rng.random() < 0.5:
                permit = b.try_acquire()
                if permit is not None:
                    b.release(permit)
            else:
                with b:
                    pass
        except resil.BulkheadFull:
            pass


def context() -> Any:
    """The forkserver context, its server holding resil and this module."""
    import multiprocessing

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["resil", "region_bulkhead_workers"])
    return ctx
