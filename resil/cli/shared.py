"""``python -m resil shared [--workers N]``: worker processes sharing one
circuit breaker and one rate limiter through a :class:`resil.SharedRegion`.

N processes (default 4) each send requests to a simulated dependency, every
request first through a rate limiter and then through a circuit breaker,
both made with ``shared=region`` on one temporary region file: the limit is
one limit for the whole host, and the breaker is one breaker. The
dependency is healthy, then down, then healthy again, on the host's
monotonic clock (the same instant for every process). Each second the
command prints every worker's calls to the dependency and rejections, and
the breaker's state and counts for the whole host, read from the region by
the parent process: the failures of all workers trip the breaker once,
the trip rejects calls in every worker, and each HALF_OPEN episode lets at
most ``half_open_probes`` probes through, whichever workers make them.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Any, TextIO

from resil import CircuitBreaker, CircuitOpenError, RateLimiter, SharedRegion
from resil.cli.demo import Column, _header, _legend, _say, source_line

# The shared objects' parameters; the description quotes them.
LIMIT: dict[str, Any] = {"rate": 120, "burst": 20}
BREAKER: dict[str, Any] = {"failure_threshold": 5, "half_open_probes": 2, "cooldown": 2.0,
                           "cooldown_multiplier": 1.0, "adaptive": False}


@dataclass(frozen=True)
class Phase:
    name: str
    start: float  # seconds after the common start
    fails: bool


PHASES = (Phase("healthy", 0.0, False), Phase("down", 3.0, True),
          Phase("recovered", 8.0, False))
SECONDS = 12           # the length of the run
INTERVAL = 0.02        # seconds between two requests of one worker
LATENCY = 0.004        # seconds a healthy call takes
MAX_WORKERS = 5        # the most whose columns fit in WIDTH

# A worker's counters, kept in an array the parent reads (one row a worker).
FIELDS = ("calls", "ok", "failed", "rejected", "limited")
CALLS, OK, FAILED, REJECTED, LIMITED = range(len(FIELDS))


class _DependencyDown(ConnectionError):
    """The simulated dependency refused the call."""


def phase_at(elapsed: float) -> Phase:
    """The phase ``elapsed`` seconds after the start."""
    current = PHASES[0]
    for phase in PHASES:
        if elapsed >= phase.start:
            current = phase
    return current


def make_objects(region: SharedRegion) -> tuple[RateLimiter, CircuitBreaker]:
    """The host's limiter and breaker in ``region`` (made by the first caller,
    attached by every later one)."""
    limiter = RateLimiter(LIMIT["rate"], burst=LIMIT["burst"], name="api", shared=region)
    breaker = CircuitBreaker("dependency", shared=region, **BREAKER)
    return limiter, breaker


def worker(index: int, path: str, start: Any, counts: Any, ready: Any) -> None:
    """One worker process: attaches to the region's objects, then sends a
    request every INTERVAL seconds from the common start for SECONDS,
    counting what became of each in its row of ``counts``. A Ctrl-C (which
    reaches every process of the terminal) ends it quietly."""
    try:
        _work(index, path, start, counts, ready)
    except KeyboardInterrupt:
        pass


def _work(index: int, path: str, start: Any, counts: Any, ready: Any) -> None:
    region = SharedRegion(path)
    limiter, breaker = make_objects(region)
    row = index * len(FIELDS)
    ready[index] = 1
    while start.value == 0.0:
        time.sleep(0.001)
    t0 = start.value
    n = 0
    while True:
        due = t0 + n * INTERVAL
        n += 1
        now = time.monotonic()
        if now - t0 >= SECONDS:
            break
        if due > now:
            time.sleep(due - now)
        if not limiter.try_acquire():
            counts[row + LIMITED] += 1
            continue
        phase = phase_at(time.monotonic() - t0)
        try:
            with breaker:
                counts[row + CALLS] += 1
                if phase.fails:
                    raise _DependencyDown("the dependency is down")
                time.sleep(LATENCY)
            counts[row + OK] += 1
        except CircuitOpenError:
            counts[row + REJECTED] += 1
        except _DependencyDown:
            counts[row + FAILED] += 1
    region.close()


LEAD = (
    Column("time", 4, "seconds since the workers started"),
    Column("phase", 9, "the dependency: healthy, down (every call fails), recovered", left=True),
)
WORKER = Column("wN", 6, "worker N in this second: calls that reached the dependency : calls "
                         "its breaker rejected (the same breaker in every worker)")
HOST = (
    Column("state", 9, "the host's breaker: CLOSED, OPEN (rejects in every worker), "
                       "HALF_OPEN (admits half_open_probes probes host-wide)", left=True),
    Column("trips", 5, "times the host's breaker has opened"),
    Column("probes", 6, "probes granted in the current or last HALF_OPEN episode, host-wide"),
    Column("fails", 5, "failed calls the host's breaker has counted, from every worker"),
    Column("reject", 6, "calls the host's breaker has rejected, in every worker"),
    Column("adm/s", 5, f"requests the host's rate limiter admitted in this second "
                       f"(limit {LIMIT['rate']}/s, burst {LIMIT['burst']})"),
    Column("lim/s", 5, "requests it refused in this second, from every worker"),
)


def _columns(workers: int) -> tuple[Column, ...]:
    """The table's columns: one per worker between the lead and the host's."""
    return (*LEAD, *(Column(f"w{i + 1}", WORKER.width, "") for i in range(workers)), *HOST)


def run(out: TextIO, workers: int = 4) -> dict[str, Any]:
    """Runs the demo with ``workers`` processes, writing the table to ``out``;
    returns the host's and each worker's totals."""
    directory = tempfile.mkdtemp(prefix="resil-shared-demo-",
                                 dir="/dev/shm" if os.access("/dev/shm", os.W_OK) else None)
    path = os.path.join(directory, "region")
    ctx = multiprocessing.get_context("spawn")
    counts = ctx.Array("q", workers * len(FIELDS), lock=False)
    ready = ctx.Array("b", workers, lock=False)
    start = ctx.Value("d", 0.0, lock=False)
    procs = []
    try:
        with SharedRegion(path, size=1 << 18, lease=5.0) as region:
            limiter, breaker = make_objects(region)
            procs = [ctx.Process(target=worker, args=(i, path, start, counts, ready), daemon=True)
                     for i in range(workers)]
            for p in procs:
                p.start()
            _intro(out, workers, path)
            deadline = time.monotonic() + 60.0
            while not all(ready[:]):
                if time.monotonic() > deadline or not all(p.is_alive() for p in procs):
                    raise RuntimeError("a worker process did not start")
                time.sleep(0.01)
            start.value = t0 = time.monotonic()
            return _watch(out, t0, workers, limiter, breaker, counts, procs)
    finally:
        for p in procs:
            p.join(5.0)
            if p.is_alive():
                p.kill()
                p.join()
        shutil.rmtree(directory, ignore_errors=True)


def _intro(out: TextIO, workers: int, path: str) -> None:
    b = BREAKER
    _say(out, f"resil shared demo: {workers} worker process{'es' if workers > 1 else ''}, "
              "one circuit breaker and one "
              "rate limiter")
    _say(out, f"shared through the region file {path}")
    _say(out, f"each worker sends a request every {INTERVAL * 1000:g} ms: first through rate "
              f"limiter 'api' ({LIMIT['rate']}/s, burst {LIMIT['burst']}), then through breaker "
              f"'dependency' (failure_threshold={b['failure_threshold']}, half_open_probes="
              f"{b['half_open_probes']}, cooldown={b['cooldown']:g}s); the dependency is "
              + ", ".join(f"{p.name} from {p.start:g} s" for p in PHASES) + ".", indent=2)
    _say(out, "columns (a row every second; the host's counts are read from the region by "
              "the parent process):")
    _legend(out, (WORKER, *HOST))
    out.write("\n")


def _watch(out: TextIO, t0: float, workers: int, limiter: RateLimiter,
           breaker: CircuitBreaker, counts: Any, procs: list[Any]) -> dict[str, Any]:
    columns = _columns(workers)
    _header(out, columns)
    before = list(counts[:])
    lim_before = limiter.stats()
    for second in range(1, SECONDS + 1):
        # A row ends just before its second does, so a request made at
        # the turn of a phase is shown in the row of its own phase.
        time.sleep(max(0.0, t0 + second - 0.01 - time.monotonic()))
        now = list(counts[:])
        lim = limiter.stats()
        s = breaker.stats()
        cells = []
        for w in range(workers):
            row = w * len(FIELDS)
            calls = now[row + CALLS] - before[row + CALLS]
            rejected = now[row + REJECTED] - before[row + REJECTED]
            cells.append(f"{f'{calls}:{rejected}':>6}")
        out.write(f"{second:4d} {phase_at(second - 0.5).name:<9} {' '.join(cells)} "
                  f"{s['state'].name:<9} {s['transitions']['OPEN']:5d} "
                  f"{s['half_open_probes_granted']:6d} {s['failures']:5d} {s['rejected']:6d} "
                  f"{lim['admitted'] - lim_before['admitted']:5d} "
                  f"{lim['rejected'] - lim_before['rejected']:5d}\n")
        out.flush()
        before, lim_before = now, lim
    for p in procs:
        p.join(10.0)
    final = list(counts[:])
    per_worker = [dict(zip(FIELDS, final[w * len(FIELDS):(w + 1) * len(FIELDS)]))
                  for w in range(workers)]
    s = breaker.stats()
    down_calls = sum(w["failed"] for w in per_worker)
    down = next(p for p in PHASES if p.fails)
    up = PHASES[PHASES.index(down) + 1]
    b = BREAKER
    lim = limiter.stats()
    _say(out, f"\nthe dependency was down from {down.start:g} s to {up.start:g} s: the whole host "
              f"called it {down_calls} times "
              f"({' + '.join(str(w['failed']) for w in per_worker)} by worker).")
    _say(out, f"  {b['failure_threshold']} calls tripped the host's breaker (failure_threshold="
              f"{b['failure_threshold']}); each HALF_OPEN episode let at most "
              f"{b['half_open_probes']} probes through (half_open_probes), whichever workers "
              f"asked ({s['transitions']['HALF_OPEN']} episodes in all).", indent=2)
    _say(out, f"  With a breaker of each worker's own, each worker would have called it "
              f"{b['failure_threshold']} times to trip its own, then probed on its own.", indent=2)
    _say(out, "rejected by the host's breaker, by worker: "
              + ", ".join(str(w["rejected"]) for w in per_worker))
    _say(out, f"the host's rate limiter admitted {lim['admitted']} requests and refused "
              f"{lim['rejected']}")
    return {"breaker": s, "limiter": lim, "workers": per_worker,
            "down_calls": down_calls}


# One line in ``python -m resil --help``.
SUMMARY = "worker processes sharing one breaker and one rate limiter"

DESCRIPTION = __doc__.split("\n\n", 1)[1].replace("``", "") + f"""
The run lasts {SECONDS} s. The output ends with the path of this command's
source code."""


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m resil shared`` command line."""
    parser = argparse.ArgumentParser(prog="python -m resil shared", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=4, metavar="N",
                        help=f"worker processes to start, 1 to {MAX_WORKERS} (default 4)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """``python -m resil shared [--workers N]``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not 1 <= args.workers <= MAX_WORKERS:
        parser.error(f"--workers must be in [1, {MAX_WORKERS}]")
    try:
        run(sys.stdout, args.workers)
    except KeyboardInterrupt:  # the workers end too, and the region file is removed
        print("interrupted", file=sys.stderr, flush=True)
        return 130
    print(source_line(__file__), flush=True)
    return 0

