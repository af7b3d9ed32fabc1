"""Work for the child processes of tests/test_region.py and
tests/test_region_ratelimit.py, in a module of its own so that a child
(started by a forkserver that preloads it) imports nothing more."""

from __future__ import annotations

import random
import time
from typing import Any

import resil

RATE, BURST = 2000.0, 50


def create_and_take(path: str, start: Any, out: Any) -> None:
    start.wait()
    region = resil.SharedRegion(path)
    limiter = resil.RateLimiter(1e-6, burst=4, name="c", shared=region)
    out.put(sum(limiter.try_acquire() for _ in range(4)))


def hold_and_die(path: str, name: str | None, ready: Any) -> None:
    region = resil.SharedRegion(path)
    resil.RateLimiter(5, name="api", shared=region)
    region._hold_lock(name)
    ready.set()
    time.sleep(60)


def hammer(path: str, seed: int, seconds: float, start: Any, out: Any) -> None:
    region = resil.SharedRegion(path)
    limiter = resil.RateLimiter(RATE, burst=BURST, name="h", shared=region)
    rng = random.Random(seed)
    admitted = cost_admitted = calls = 0
    start.wait()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        cost = rng.randint(1, 5)
        calls += 1
        if limiter.try_acquire(cost):
            admitted += 1
            cost_admitted += cost
    out.put((admitted, cost_admitted, calls))


def hammer_until_killed(path: str, seed: int, ready: Any) -> None:
    region = resil.SharedRegion(path)
    limiter = resil.RateLimiter(1e6, burst=1000, name="k", max_keys=64, shared=region)
    rng = random.Random(seed)
    keys = [None, "a", "b", b"c"] + [f"u{i}" for i in range(100)]
    ready.set()
    while True:
        limiter.try_acquire(rng.randint(1, 3), rng.choice(keys))


def context() -> Any:
    """The forkserver context, its server holding resil and this module."""
    import multiprocessing

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["resil", "region_workers"])
    return ctx
