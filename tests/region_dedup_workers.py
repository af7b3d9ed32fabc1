"""Work for the child processes of tests/test_region_dedup.py, in a module
of its own so that a child imports nothing more than resil and this."""

from __future__ import annotations

import random
from typing import Any

import resil

KEYS = 20_000
CHURN_CAPACITY = 1024


def offer_keys(path: str, seed: int, start: Any, out: Any) -> None:
    """Offers the same KEYS keys as every other worker, in an order of its
    own, starting with the others (start: a Barrier of the workers), and
    reports the ones it was told were new."""
    region = resil.SharedRegion(path)
    dedup = resil.Deduplicator(3600.0, KEYS, shared=region, name="jobs")
    keys: list[str | bytes] = [f"job-{i}" if i % 2 else f"job-{i}".encode() for i in range(KEYS)]
    random.Random(seed).shuffle(keys)
    start.wait()
    out.put([k for k in keys if not dedup.seen(k)])


def churn_until_killed(path: str, seed: int, ready: Any) -> None:
    """Every operation of a shared Deduplicator at random, forever: keys
    expire (a 1 ms ttl), are evicted (CHURN_CAPACITY keys of 3,000),
    discarded and cleared (a clear drops up to CHURN_CAPACITY keys under the
    lock, so that a kill often lands inside an update)."""
    region = resil.SharedRegion(path)
    dedup = resil.Deduplicator(0.001, CHURN_CAPACITY, shared=region, name="k")
    rng = random.Random(seed)
    keys: list[str | bytes] = [f"k{i}" for i in range(1500)] + [b"b%d" % i for i in range(1500)]
    ready.set()
    while True:
        key = rng.choice(keys)
        op = rng.random()
        if op < 0.75:
            dedup.seen(key)
        elif op < 0.85:
            dedup.discard(key)
        elif op < 0.9:
            _ = key in dedup
        elif op < 0.98:
            len(dedup)
        else:
            dedup.clear()


def hold_lock_and_die(path: str, ready: Any) -> None:
    """Takes the lock of the deduplicator "k" and keeps it until killed."""
    import time

    region = resil.SharedRegion(path)
    resil.Deduplicator(60.0, 32, shared=region, name="k")
    region._hold_lock("k")
    ready.set()
    time.sleep(60)


def context() -> Any:
    """The forkserver context, its server holding resil and this module."""
    import multiprocessing

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["resil", "region_dedup_workers"])
    return ctx
