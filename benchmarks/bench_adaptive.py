"""resil.AdaptiveLimiter against a simulated server: how close each algorithm settles to the true capacity, and how fast.

The server (tests/model/server.py) has capacity C: a call admitted with n
calls in flight takes 10 ms while n <= C and 10 ms * n / C beyond (a FIFO
queue in front of C workers); the clients offer more load than any limit.
Everything runs on a resil.VirtualClock, so the figures are exact and
repeatable: no timing is involved. For each algorithm, each C and each
initial limit (C / 5, below the capacity, and 3 C, above it), the limiter
sees 3,000 calls at capacity C, then 3,000 at C / 2.

Columns: *settled / C* is the median limit over the last 1,000 calls of a
phase divided by that phase's capacity (1.00: exactly the capacity; above
1, some calls queue at the server); *calls to settle* is the number of
calls after which the limit stays in the band of the specification ([0.5 C,
2 C], and [0.25 C, C] after C halves) to the end of the phase; *tight* is
the same for the band [0.8 C, 1.6 C] (a dash: never settled inside it).

Usage: ``python benchmarks/bench_adaptive.py [--quick] [--write-results]``.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "tests"))

import _harness as h  # noqa: E402
from model.server import settled_after, simulate  # noqa: E402

import resil  # noqa: E402

SECTION = "## Adaptive concurrency (bench_adaptive.py)"
ALGORITHMS = ("aimd", "vegas", "gradient")
PHASE = 3000
TAIL = 1000

NOTES = ("Virtual time: the figures depend only on the algorithms and the simulated "
         "server, not on the machine. Each limiter first probes the server's latency "
         "with 10 calls at min_limit (1); those calls are counted in *calls to settle*. "
         "The specification asks that every algorithm settle inside [0.5 C, 2 C] within "
         "2,000 calls, and again within 2,000 calls after C halves "
         "(tests/test_adaptive.py asserts it for C = 10, 50, 200).")


def run_case(algorithm: str, capacity: int, initial: int) -> list[str]:
    clock = resil.VirtualClock()
    lim = resil.AdaptiveLimiter(algorithm, initial_limit=initial, max_limit=1000, clock=clock)
    limits = list(simulate(lim, clock, [capacity, capacity // 2], PHASE))
    # Every call admitted was released by the simulation or is still in flight.
    st = lim.stats()
    what = f"{algorithm}, C = {capacity}, initial limit {initial}"
    h.expect(2 * PHASE, len(limits), f"{what}: calls completed")
    h.expect(2 * PHASE + lim.in_flight, st["admitted"], f"{what}: calls admitted")
    h.expect(0, st["dropped"], f"{what}: permits dropped")
    cells = [algorithm, str(capacity), str(initial)]
    for phase, c in ((limits[:PHASE], capacity), (limits[PHASE:], capacity / 2)):
        ratio = statistics.median(phase[-TAIL:]) / c
        spec = settled_after(phase, 0.5 * c, 2 * c)
        tight = settled_after(phase, 0.8 * c, 1.6 * c)
        cells += [f"{ratio:.2f}", f"{spec:,}" if spec < PHASE else "never",
                  f"{tight:,}" if tight < PHASE else "-"]
    return cells


def main(argv: list[str] | None = None) -> None:
    args = h.parse_args(h.arg_parser(__doc__), argv)
    started = time.monotonic()
    facts = h.machine_facts(["resil"])
    facts.append(("resil extension", h.file_fact(Path(resil._resil.__file__), "built")))
    capacities = (10, 50) if args.quick else (10, 50, 200)
    facts.append(("run", f"C = {', '.join(map(str, capacities))}, {PHASE:,} calls per phase"
                         + h.mode_label(args)))
    h.print_facts("Adaptive concurrency: settled limit and calls to settle", facts)
    rows = [run_case(a, c, i) for a in ALGORITHMS for c in capacities
            for i in (max(1, c // 5), 3 * c)]
    head = ("algorithm", "C", "initial limit", "settled / C", "calls to settle",
            "tight", "settled / (C/2)", "calls to settle after C halves", "tight")
    title = "Settled limit and calls to settle, per algorithm and capacity"
    print(h.text_table(title, [], head, rows, right=range(1, len(head))))
    print()
    h.finish(facts, script=__file__, heading=SECTION,
             tables=[h.markdown_table(title, [], head, rows, right=range(1, len(head)))],
             notes=NOTES, write=args.write_results, started=started)


if __name__ == "__main__":
    main()
