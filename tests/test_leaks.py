"""Leak checks: a million calls through each breaker and retry path, in a subprocess.

Each path runs 10,000 warm-up calls, then 1,000,000 calls under tracemalloc;
memory traced by tracemalloc, the interpreter's allocated block count and the
reference counts of every object the path touches must stay flat.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(r"""
    import asyncio, gc, json, sys, tracemalloc
    import resil

    N = int(sys.argv[1])
    clock = resil.VirtualClock()
    b = resil.CircuitBreaker("leak", failure_threshold=0, clock=clock)
    rejecting = resil.CircuitBreaker("open", clock=clock)
    rejecting.force_open()

    def ok(x):
        return x

    def bad(x):
        raise ValueError(x)

    g_ok, g_bad, g_rej = b(ok), b(bad), rejecting(ok)
    err = ValueError("x")

    async def aok(x):
        return x

    g_aok = b(aok)
    r_ok = resil.retry(retries=3, clock=clock)(ok)
    r_bad = resil.retry(retries=1, backoff=resil.Backoff(0.0, 1.0, max_delay=0.0), clock=clock)(bad)

    def retry_success(n):
        for i in range(n):
            r_ok(i)

    def retry_failure(n):
        for i in range(n):
            try:
                r_bad(i)
            except ValueError:
                pass

    def success(n):
        for i in range(n):
            g_ok(i)

    def call(n):
        c = b.call
        for i in range(n):
            c(ok, i)

    def failure(n):
        for i in range(n):
            try:
                g_bad(i)
            except ValueError:
                pass

    depths = set()

    def rejection(n):
        for i in range(n):
            try:
                g_rej(i)
            except resil.CircuitOpenError as e:
                if i % 1000 == 0:
                    tb, d = e.__traceback__, 0
                    while tb is not None:
                        d, tb = d + 1, tb.tb_next
                    depths.add((d, e.__context__ is None, e.__cause__ is None))

    def with_block(n):
        for i in range(n):
            with b:
                pass

    def explicit(n):
        for i in range(n):
            b.record_success(b.acquire(), 1.0)

    def awaited(n):
        async def main():
            for i in range(n):
                await g_aok(i)
        asyncio.run(main())

    watched = [b, rejecting, ok, bad, g_ok, g_bad, g_rej, aok, g_aok, r_ok, r_bad, ValueError,
               resil.CircuitOpenError, resil.State.OPEN, resil.State.CLOSED, clock]

    def measure(fn, n):
        fn(10_000)
        gc.collect()
        refs0 = [sys.getrefcount(o) for o in watched]
        blocks0 = sys.getallocatedblocks()
        tracemalloc.start()
        mem0 = tracemalloc.get_traced_memory()[0]
        fn(n)
        gc.collect()
        mem1 = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        blocks1 = sys.getallocatedblocks()
        refs1 = [sys.getrefcount(o) for o in watched]
        return {"traced_bytes": mem1 - mem0, "blocks": blocks1 - blocks0,
                "ref_deltas": [a - b for a, b in zip(refs1, refs0)]}

    quarter = ("awaited", "retry_failure")
    out = {name: measure(fn, N if name not in quarter else N // 4)
           for name, fn in [("success", success), ("call", call), ("failure", failure),
                            ("rejection", rejection), ("with", with_block),
                            ("explicit", explicit), ("awaited", awaited),
                            ("retry_success", retry_success),
                            ("retry_failure", retry_failure)]}
    out["rejection_tb"] = sorted(depths)
    st = b.stats()
    out["counts"] = [st["successes"], st["failures"], rejecting.stats()["rejected"]]
    print(json.dumps(out))
""")


def test_million_calls_per_path_leave_memory_and_refcounts_flat() -> None:
    n = 1_000_000
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(n)], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    for path in ("success", "call", "failure", "rejection", "with", "explicit", "awaited",
                 "retry_success", "retry_failure"):
        r = out[path]
        assert r["ref_deltas"] == [0] * len(r["ref_deltas"]), (path, r)
        # Bounded noise (interned ints, free lists), not growth per call.
        assert r["traced_bytes"] < 64 * 1024, (path, r)
        assert r["blocks"] < 500, (path, r)
    # Each rejection has a fresh, one-frame traceback and no chained context.
    assert out["rejection_tb"] == [[1, True, True]]
    warm = 10_000
    successes = 3 * (n + warm) + (n + warm) + (n // 4 + warm)  # success, call, with, explicit, awaited
    assert out["counts"] == [successes, n + warm, n + warm]
