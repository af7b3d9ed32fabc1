"""Work for the child processes of tests/test_region_metrics.py, in a
module of its own so that a child (started by a forkserver that preloads
it) imports nothing more."""

from __future__ import annotations

import random
from typing import Any

import resil

COMPONENTS = ("db", "cache", "api")
OPERATIONS = ("get", "put")
ERRORS = ("Timeout", "Refused")
KINDS = ("circuit_breaker_trip", "retry", "timeout", "cache_miss")
MONITOR = {"retention": 3600.0, "max_components": 4, "max_series": 64}


def records(seed: int, n: int) -> list[tuple[str, str, float, bool, str | None]]:
    """The records a worker makes: the same list for the same seed."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        ok = rng.random() >= 0.2
        out.append((rng.choice(COMPONENTS), rng.choice(OPERATIONS),
                    round(rng.lognormvariate(2.0, 1.2), 6), ok,
                    None if ok else rng.choice(ERRORS + (None,))))
    return out


def events(seed: int, n: int) -> list[tuple[str, str]]:
    rng = random.Random(seed + 1_000_000)
    return [(rng.choice(KINDS), rng.choice(COMPONENTS)) for _ in range(n)]


def record_all(path: str, seed: int, n: int, start: Any, out: Any) -> None:
    region = resil.SharedRegion(path)
    monitor = resil.Monitor(MONITOR["retention"], max_components=MONITOR["max_components"],
                            max_series=MONITOR["max_series"], shared=region)
    start.wait()
    for comp, op, ms, ok, error_type in records(seed, n):
        monitor.record(comp, op, ms, ok, error_type=error_type)
    for kind, comp in events(seed, n // 10):
        monitor.record_event(kind, comp)
    out.put(seed)


def record_until_killed(path: str, seed: int, ready: Any) -> None:
    region = resil.SharedRegion(path)
    monitor = resil.Monitor(MONITOR["retention"], max_components=MONITOR["max_components"],
                            max_series=MONITOR["max_series"], shared=region)
    rng = random.Random(seed)
    ready.set()
    while True:
        ok = rng.random() >= 0.3
        monitor.record(rng.choice(COMPONENTS), rng.choice(OPERATIONS), rng.random() * 100, ok,
                       error_type=None if ok else rng.choice(ERRORS))
        if rng.random() < 0.1:
            monitor.record_event(rng.choice(KINDS), rng.choice(COMPONENTS))


def context() -> Any:
    """The forkserver context, its server holding resil and this module."""
    import multiprocessing

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["resil", "region_metrics_workers"])
    return ctx
