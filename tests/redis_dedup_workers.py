"""The "hosts" of tests/test_redis_dedup.py: each run of this script is one
process with its own RedisBackend (its own host=), told what to do by its
arguments; it prints one JSON line of what it saw.

    python redis_dedup_workers.py <mode> <port> <host> <start> [args...]

``start`` is a time.time() at which every host begins together. Runs are
counted in Redis (INCR on a key of the test's own), so the count is the
cluster's whatever happens to the processes.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from typing import Any

import redis

import resil
from resil.redis import RedisBackend


def _wait_until(start: float, port: int = 0, hosts: int = 4) -> None:
    """Sleeps until ``start``, then (given a port) until ``hosts`` hosts
    arrived, counted in Redis, so that a host slow to start on a loaded
    machine does not find the work done."""
    delay = start - time.time()
    if delay > 0:
        time.sleep(delay)
    if port:
        client = redis.Redis(host="127.0.0.1", port=port)
        client.incr("test:ready")
        while int(client.get("test:ready") or 0) < hosts:
            time.sleep(0.002)
        client.close()


def _backend(port: int, host: str, timeout: float = 0.5) -> RedisBackend:
    return RedisBackend(redis.Redis(host="127.0.0.1", port=port), host=host, timeout=timeout,
                        cooldown=0.1)


async def _calls(port: int, host: str, start: float, calls: int, keys: int, seed: int) -> Any:
    """``calls`` concurrent calls of one idempotent function on ``keys``
    keys; each run counts itself in Redis and returns who ran it."""
    counter = redis.asyncio.Redis(host="127.0.0.1", port=port)
    backend = _backend(port, host)

    @resil.idempotent(lambda k: k, ttl=60.0, cluster=backend, name="jobs", lease=5.0)
    async def job(k: str) -> dict[str, Any]:
        run = await counter.incr(f"test:runs:{k}")
        await asyncio.sleep(0.2)
        return {"key": k, "host": host, "run": run}

    rng = random.Random(seed)
    order = [f"key-{i % keys}" for i in range(calls)]
    rng.shuffle(order)
    _wait_until(start, port)
    results = await asyncio.gather(*(job(k) for k in order))
    await counter.aclose()
    return {"results": results, "stats": job.stats()}  # type: ignore[attr-defined]


async def _flaky(port: int, host: str, start: float, calls: int) -> Any:
    """``calls`` concurrent calls on one key whose first run in the cluster
    fails (after 0.2 s, while the other hosts wait); the others succeed."""
    counter = redis.asyncio.Redis(host="127.0.0.1", port=port)
    backend = _backend(port, host)

    @resil.idempotent(lambda: "the-key", ttl=60.0, cluster=backend, name="flaky", lease=5.0)
    async def job() -> dict[str, Any]:
        run = await counter.incr("test:runs")
        await asyncio.sleep(0.2)
        if run == 1:
            raise RuntimeError(f"run 1 failed on {host}")
        return {"host": host, "run": run}

    _wait_until(start, port)
    outcomes = await asyncio.gather(*(job() for _ in range(calls)), return_exceptions=True)
    await counter.aclose()
    return [o if isinstance(o, dict) else f"{type(o).__name__}: {o}" for o in outcomes]


async def _hang(port: int, host: str, lease: float) -> Any:
    """Takes the key "stuck" and never finishes: the test SIGKILLs it."""
    backend = _backend(port, host, timeout=lease / 5)

    @resil.idempotent(lambda: "stuck", ttl=60.0, cluster=backend, name="hang", lease=lease)
    async def job() -> str:
        print(json.dumps("running"), flush=True)
        await asyncio.sleep(3600)
        return "never"

    return await job()


def _seen(port: int, host: str, start: float, keys: int, seed: int) -> Any:
    """Offers keys 0..keys-1 (str, bytes and int) to one cluster
    Deduplicator in an order of its own; reports the ones it was told were
    new."""
    backend = _backend(port, host)
    dedup = resil.Deduplicator(60.0, cluster=backend, name="events")
    offered: list[Any] = [f"e{i}" if i % 3 == 0 else (b"e%d" % i if i % 3 == 1 else i)
                          for i in range(keys)]
    random.Random(seed).shuffle(offered)
    _wait_until(start, port)
    new = [k for k in offered if not dedup.seen(k)]
    return {"new": [k.decode() if isinstance(k, bytes) else k for k in new],
            "kinds": [type(k).__name__ for k in new], "stats": dedup.stats()}


def main() -> None:
    mode, port, host = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    rest = sys.argv[4:]
    out: Any
    if mode == "calls":
        out = asyncio.run(_calls(port, host, float(rest[0]), int(rest[1]), int(rest[2]),
                                 int(rest[3])))
    elif mode == "flaky":
        out = asyncio.run(_flaky(port, host, float(rest[0]), int(rest[1])))
    elif mode == "hang":
        out = asyncio.run(_hang(port, host, float(rest[0])))
    elif mode == "seen":
        out = _seen(port, host, float(rest[0]), int(rest[1]), int(rest[2]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
