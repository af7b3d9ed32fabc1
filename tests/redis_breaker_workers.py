"""A "host" for tests/test_redis_breaker.py: one process with a cluster
breaker on a real Redis, calling a dependency every few milliseconds.

    python redis_breaker_workers.py PORT HOST CONTROL_DIR SECONDS JSON_CONFIG

The dependency fails while the file CONTROL_DIR/fail-HOST exists. The
process stops after SECONDS, or earlier when CONTROL_DIR/stop exists, and
prints one JSON line: every call as [wall time, what] where what is "ok",
"fail" (the dependency ran), "probe-ok", "probe-fail" (it ran on a probe
permit) or "rejected", the longest time one call took, and the breaker's
last stats, and the values of stats()["backend"] in turn with the time each
was first seen. It prints "ready" once the breaker exists.
"""

from __future__ import annotations

import json
import os
import sys
import time

import redis

import resil
from resil.redis import RedisBackend


def main() -> None:
    port, host, control, seconds, raw = sys.argv[1:6]
    config = json.loads(raw)
    backend_kw = config.pop("backend", {})
    backend = RedisBackend(redis.Redis(port=int(port)), host=host, **backend_kw)
    breaker = resil.CircuitBreaker("dep", cluster=backend, **config)
    fail_file = os.path.join(control, f"fail-{host}")
    stop_file = os.path.join(control, "stop")
    print("ready", flush=True)
    events: list[tuple[float, str]] = []
    longest = 0.0
    modes: list[tuple[float, str]] = []
    end = time.monotonic() + float(seconds)
    while time.monotonic() < end and not os.path.exists(stop_file):
        t0 = time.monotonic()
        try:
            permit = breaker.acquire()
        except resil.CircuitOpenError:
            events.append((time.time(), "rejected"))
        else:
            failed = os.path.exists(fail_file)
            if failed:
                breaker.record_failure(permit, 1.0)
            else:
                breaker.record_success(permit, 1.0)
            what = "fail" if failed else "ok"
            events.append((time.time(), "probe-" + what if permit.probe else what))
        longest = max(longest, time.monotonic() - t0)
        mode = breaker.stats()["backend"]
        if not modes or modes[-1][1] != mode:
            modes.append((time.time(), mode))
        time.sleep(0.004)
    stats = breaker.stats()
    print(json.dumps({"host": host, "events": events, "longest": longest, "stats": stats,
                      "modes": modes,
                      "instance": backend.instance}), flush=True)
    breaker.leave_cluster()
    backend.close()


if __name__ == "__main__":
    main()
