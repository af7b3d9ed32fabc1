"""A "host" of tests/test_redis_ratelimit.py: run as
``python redis_ratelimit_workers.py '<json>'``, it makes a cluster
RateLimiter on the given redis-server, waits for the wall-clock start
time, calls it on a random arrival schedule for ``seconds``, and prints
one JSON line: every admission as [key, cost, Redis time in microseconds]
and the limiter's stats."""

from __future__ import annotations

import json
import random
import sys
import time

import redis

import resil
from resil.redis import RedisBackend
from resil.redis.ratelimit import key_tail


def main(spec: dict) -> None:  # type: ignore[type-arg]
    backend = RedisBackend(redis.Redis(host="127.0.0.1", port=spec["port"]),
                           prefix=spec["prefix"], host=spec["host"], timeout=1.0)
    limiter = resil.RateLimiter(spec["rate"], per=spec["per"], burst=spec["burst"],
                                name=spec["name"], cluster=backend)
    rng = random.Random(spec["seed"])
    keys = spec["keys"]
    admissions: list[tuple[str, int, int]] = []
    unknown = 0
    time.sleep(max(0.0, spec["start"] - time.time()))
    end = time.monotonic() + spec["seconds"]
    while time.monotonic() < end:
        key = rng.choice(keys)
        cost = rng.randint(1, spec["max_cost"])
        admitted, _, at_us = limiter._take(cost, key_tail(key))
        if admitted:
            if at_us is None:
                unknown += 1  # admitted without Redis: would void the check
            else:
                admissions.append((key, cost, at_us))
        time.sleep(rng.expovariate(1.0 / spec["gap"]))
    print(json.dumps({"admissions": admissions, "unknown": unknown,
                      "stats": limiter.stats()}))
    backend.close()


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
