"""Work for the child processes of tests/test_region_breaker.py, in a module
of its own so that a child (started by a forkserver that preloads it)
imports nothing more."""

from __future__ import annotations

import random
import time
from typing import Any

import resil

# The breaker every process of the lockstep test opens: trips after 3
# consecutive failures, half-open after 5 ms, 2 probes.
KW: dict[str, Any] = {"failure_threshold": 3, "cooldown": 0.005, "cooldown_multiplier": 1.0,
                      "half_open_probes": 2, "adaptive": False, "min_health_score": 0.0}


class Boom(Exception):
    pass


def drive(path: str, seed: int, seconds: float, start: Any, out: Any) -> None:
    """Random calls for `seconds`: phases where the dependency fails more or
    less often. Reports this process's counts and each permit's (epoch,
    probe, outcome)."""
    region = resil.SharedRegion(path)
    breaker = resil.CircuitBreaker("dep", shared=region, **KW)
    rng = random.Random(seed)
    counts = {"permitted": 0, "rejected": 0, "successes": 0, "failures": 0}
    probes: list[tuple[int, bool]] = []
    start.wait()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        # failing most of the time in odd tenths of a second
        failing = int(time.monotonic() * 10) % 2 == 1
        try:
            permit = breaker.acquire()
        except resil.CircuitOpenError:
            counts["rejected"] += 1
            continue
        counts["permitted"] += 1
        if permit.probe:
            probes.append((permit.epoch, True))
        if rng.random() < (0.8 if failing else 0.05):
            breaker.record_failure(permit)
            counts["failures"] += 1
        else:
            breaker.record_success(permit)
            counts["successes"] += 1
    out.put((counts, probes))


def take_probe_and_wait(path: str, lease: float, ready: Any) -> None:
    """Opens the region, takes the breaker's probe, then waits to be killed."""
    region = resil.SharedRegion(path, lease=lease)
    breaker = resil.CircuitBreaker("dep", shared=region, failure_threshold=1,
                                   cooldown=0.01, half_open_probes=1)
    time.sleep(0.02)
    permit = breaker.acquire()
    assert permit.probe
    ready.set()
    time.sleep(60)


def call_until_killed(path: str, seed: int, ready: Any) -> None:
    """Calls through the breaker in a loop, with every kind of operation."""
    region = resil.SharedRegion(path)
    breaker = resil.CircuitBreaker("k", shared=region, failure_threshold=2, cooldown=0.001,
                                   half_open_probes=2, window_size=7, minimum_calls=3, latency_window=5)
    rng = random.Random(seed)
    ready.set()
    while True:
        r = rng.random()
        try:
            permit = breaker.acquire()
        except resil.CircuitOpenError:
            continue
        if r < 0.45:
            breaker.record_success(permit)
        elif r < 0.9:
            breaker.record_failure(permit)
        elif r < 0.98:
            breaker.release(permit)
        elif r < 0.99:
            breaker.open()
        else:
            breaker.close()


def context() -> Any:
    """The forkserver context, its server holding resil and this module."""
    import multiprocessing

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["resil", "breaker_workers"])
    return ctx


class SharedClock:
    """A clock every process reads from one shared double (seconds), moved
    only by the lockstep test's steps."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def now(self) -> float:
        return float(self.value.value)


# The lockstep breaker: small numbers, so trips, probes and closes happen.
LOCKSTEP_KW: dict[str, Any] = {"failure_threshold": 3, "window_size": 8, "minimum_calls": 4,
                               "failure_rate_threshold": 0.5, "cooldown": 1.0,
                               "cooldown_multiplier": 2.0, "cooldown_max": 4.0,
                               "half_open_probes": 2, "latency_window": 5}


def lockstep(path: str, seed: int, n: int, lock: Any, seq: Any, clock_value: Any,
             out: Any) -> None:
    """n operations on the shared breaker, each under the test's lock and
    numbered from one counter, so their order is the order they took effect.
    Permits stay open across operations (and across other processes' turns)
    until this process reports them. Returns the log."""
    region = resil.SharedRegion(path)
    breaker = resil.CircuitBreaker("ls", shared=region, clock=SharedClock(clock_value),
                                   **LOCKSTEP_KW)
    rng = random.Random(seed)
    held: list[tuple[int, Any]] = []  # (log index of the acquire, permit)
    log: list[tuple[Any, ...]] = []
    for _ in range(n):
        with lock:
            seq.value += 1
            k = seq.value
            r = rng.random()
            if r < 0.35:
                try:
                    p = breaker.acquire()
                    log.append((k, "acquire", p.epoch, p.probe))
                    held.append((k, p))
                except resil.CircuitOpenError as e:
                    log.append((k, "rejected", int(e.state), e.remaining))
            elif r < 0.75 and held:
                at, p = held.pop(rng.randrange(len(held)))
                kind = rng.choice(["success", "success", "failure", "release"])
                latency = float(rng.randint(0, 400))
                if kind == "release":
                    breaker.release(p)
                elif kind == "success":
                    breaker.record_success(p, latency_ms=latency)
                else:
                    breaker.record_failure(p, latency_ms=latency)
                log.append((k, kind, at, latency))
            elif r < 0.85:
                failed = rng.random() < 0.5
                latency = float(rng.randint(0, 400))
                if failed:
                    breaker.record_failure(None, latency)
                else:
                    breaker.record_success(None, latency_ms=latency)
                log.append((k, "permitless", failed, latency))
            elif r < 0.97:
                step = rng.choice([0.001, 0.25, 0.5, 1.0, 2.0])
                clock_value.value += step
                log.append((k, "advance", step))
            else:
                op = rng.choice(["open", "close", "force_open", "reset"])
                getattr(breaker, op)()
                log.append((k, "manual", op))
            stats = breaker.stats()
            log[-1] = log[-1] + (int(stats["state"]), stats["epoch"])
    out.put(log)
