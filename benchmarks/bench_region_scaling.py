"""Throughput of one object shared by 1, 2, 4 and 8 processes, beside an object per process.

Every process of a run calls one operation as fast as it can for a fixed
time, all starting at one instant of the host's monotonic clock:

- ``limiter``: ``try_acquire()`` on a ``RateLimiter`` whose limit is never
  reached (rate and burst 10**12), so every decision admits and writes;
- ``breaker``: a guarded call, ``with breaker: pass``, on a
  ``CircuitBreaker`` that stays CLOSED (a permit, then a success recorded).

``shared``: one object of each kind in one region file under /dev/shm (or
the temporary directory), every process attached to it, so each operation
takes the object's process-shared lock; ``local``: each process its own
object, with nothing shared. A round runs every (kind, placement,
processes) configuration once, in a shuffled order; the table gives the
medians over rounds of the operations per second of all processes
together and per process, the interquartile range of the total, the
total against one process of the same kind and placement, and the
operations per CPU-second the processes used (thread_time: a process
waiting for the lock asleep, or for a core, uses none), which other load
on the machine does not lower.

The worker processes are started once (multiprocessing "spawn") and kept
for every run; a run uses the first N of them. On a machine with C cores,
N > C processes share the cores: the total can grow at most up to C
processes, and past that the operating system's time slicing decides (a
process preempted while it holds the lock makes the others wait for it).

Usage: ``python benchmarks/bench_region_scaling.py [--quick] [--write-results]
[--kinds limiter,breaker] [--seconds S] [--repeats R]``.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h  # noqa: E402

import resil  # noqa: E402

SECTION = "## Shared region scaling (bench_region_scaling.py)"
PROCESSES = (1, 2, 4, 8)
HIGH = 10**12
CHUNK = 2000  # operations between two clock reads


# A kind makes its object, in region or (None) on its own, and returns the
# operation a run repeats and a count of the operations the object recorded
# (for a shared object, those of every process).
Made = tuple[Callable[[], Any], Callable[[], int]]


def make_limiter(region: resil.SharedRegion | None) -> Made:
    limiter = resil.RateLimiter(HIGH, burst=HIGH, name="bench", shared=region)
    return limiter.try_acquire, lambda: int(limiter.stats()["admitted"])


def make_breaker(region: resil.SharedRegion | None) -> Made:
    kwargs: dict[str, Any] = {} if region is None else {"shared": region}
    breaker = resil.CircuitBreaker("bench", **kwargs)

    def guarded() -> None:
        with breaker:
            pass

    return guarded, lambda: int(breaker.stats()["successes"])


KINDS: dict[str, Callable[[resil.SharedRegion | None], Made]] = {
    "limiter": make_limiter,
    "breaker": make_breaker,
}
# The kinds a run measures unless --kinds says otherwise.
DEFAULT_KINDS = ("limiter", "breaker")


def worker(path: str, kinds: list[str], conn: Connection) -> None:
    """A benchmark process: attaches to the shared objects and makes its own,
    then runs each ("run", kind, placement, start, seconds) it is sent and
    answers with the operations it made; ends on None."""
    region = resil.SharedRegion(path)
    ops = {(kind, placement): KINDS[kind](region if placement == "shared" else None)[0]
           for kind in kinds for placement in ("shared", "local")}
    conn.send("ready")
    while True:
        job = conn.recv()
        if job is None:
            return
        kind, placement, start, seconds = job
        op = ops[kind, placement]
        calls = range(CHUNK)
        while time.monotonic() < start:
            pass
        end = start + seconds
        done = 0
        cpu = time.thread_time()
        while time.monotonic() < end:
            for _ in calls:
                op()
            done += CHUNK
        conn.send((done, time.monotonic() - start, time.thread_time() - cpu))


def region_dir() -> str:
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) \
        else tempfile.gettempdir()


def main(argv: list[str] | None = None) -> int:
    ap = h.arg_parser(__doc__)
    ap.add_argument("--kinds", default=",".join(DEFAULT_KINDS),
                    help=f"the objects to measure, comma-separated, of {', '.join(KINDS)} "
                         f"(default {','.join(DEFAULT_KINDS)})")
    ap.add_argument("--seconds", type=float, default=None,
                    help="seconds each run lasts (default 1.0; 0.2 with --quick, "
                         "0.02 with --smoke)")
    ap.add_argument("--repeats", type=int, default=None,
                    help="rounds (default 5; 2 with --quick, 1 with --smoke)")
    args = h.parse_args(ap, argv)
    kinds = [k for k in args.kinds.split(",") if k]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        ap.error(f"--kinds takes names among {', '.join(KINDS)}")
    seconds = args.seconds or h.by_mode(args, 1.0, 0.2, 0.02)
    repeats = args.repeats or h.by_mode(args, 5, 2, 1)
    rng = random.Random(args.seed)
    started = time.monotonic()

    facts = h.machine_facts(["resil"])
    facts.append(("run", f"{repeats} rounds, runs of {seconds:g} s, shuffle seed {args.seed}"
                         + h.mode_label(args)))
    h.print_facts("resil shared region: throughput by number of processes", facts)

    ctx = multiprocessing.get_context("spawn")
    fd, path = tempfile.mkstemp(prefix="resil-bench-", dir=region_dir())
    os.close(fd)
    os.unlink(path)  # the region makes the file itself
    region = resil.SharedRegion(path, size=1 << 20)
    # The first process to make an object sets its parameters; its count,
    # read after the runs, must be every operation of every process.
    counted = {kind: KINDS[kind](region)[1] for kind in kinds}
    ops_done = dict.fromkeys(kinds, 0)
    pipes: list[Connection] = []
    procs = []
    try:
        for _ in range(max(PROCESSES)):
            ours, theirs = ctx.Pipe()
            p = ctx.Process(target=worker, args=(path, kinds, theirs), daemon=True)
            p.start()
            pipes.append(ours)
            procs.append(p)
        for conn in pipes:
            if not conn.poll(60) or conn.recv() != "ready":
                raise RuntimeError("a benchmark process did not start")
        configs = [(k, pl, n) for k in kinds for pl in ("shared", "local") for n in PROCESSES]
        totals: dict[tuple[str, str, int], list[float]] = {c: [] for c in configs}
        per_cpu: dict[tuple[str, str, int], list[float]] = {c: [] for c in configs}
        for _ in range(repeats):
            rng.shuffle(configs)
            for kind, placement, n in configs:
                start = time.monotonic() + 0.05
                for conn in pipes[:n]:
                    conn.send((kind, placement, start, seconds))
                answers = [conn.recv() for conn in pipes[:n]]
                if placement == "shared":
                    ops_done[kind] += sum(done for done, _, _ in answers)
                totals[kind, placement, n].append(sum(done / took for done, took, _ in answers))
                # A process that the machine ran only after the run's end
                # did nothing and used (next to) no CPU time.
                cpu = sum(cpu for _, _, cpu in answers)
                per_cpu[kind, placement, n].append(
                    sum(done for done, _, _ in answers) / cpu if cpu > 0 else 0.0)
        for conn in pipes:
            conn.send(None)
        for p in procs:
            p.join(10)
        for kind in kinds:
            h.expect(ops_done[kind], counted[kind](),
                     f"operations the shared {kind} counted from every process")
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
        region.close()
        os.unlink(path)

    head = ("object", "placement", "processes", "ops/s total", "IQR", "ops/s per process",
            "total vs 1 process", "ops per CPU-second")
    rows = []
    for kind in kinds:
        for placement in ("shared", "local"):
            one = statistics.median(totals[kind, placement, 1])
            for n in PROCESSES:
                xs = totals[kind, placement, n]
                med = statistics.median(xs)
                lo, hi = h.quartiles(xs)
                rows.append((kind, placement, str(n), f"{med:,.0f}", f"{lo:,.0f}-{hi:,.0f}",
                             f"{med / n:,.0f}", f"{med / one:.2f}x" if one else "—",
                             f"{statistics.median(per_cpu[kind, placement, n]):,.0f}"))
    cores = os.cpu_count() or 1
    title = f"operations per second, medians of {repeats} runs of {seconds:g} s"
    notes = [f"{cores} cores: past {cores} processes the total can only stay level or fall.",
             "ops per CPU-second: operations over the CPU time the processes used, whatever "
             "else ran on the machine (a wait for the lock, asleep, uses none)."]
    print(h.text_table(title, notes, head, rows, right={2, 3, 4, 5, 6, 7}))
    print()
    h.finish(facts, script=__file__, heading=SECTION,
             tables=[h.markdown_table(title, notes, head, rows, right={2, 3, 4, 5, 6, 7})],
             notes=("shared: every process calls one object in one region, each call "
                    "under the object's process-shared lock; local: each process its own "
                    "object. Per process = total / processes."),
             write=args.write_results, started=started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
