"""Metrics of many worker processes: prometheus_client's multiprocess mode
beside one resil SharedRegion, after worker restarts.

Each "worker" is a real process (forked from this one, as a pre-forking
server forks its workers) that records 10 metrics - 5 counters and 5
histograms, one labelled sample each - and exits; the next worker is a new
process with a new pid. prometheus_client, in its multiprocess mode, keeps
each process's values in files of PROMETHEUS_MULTIPROC_DIR named by pid
(counter_<pid>.db, histogram_<pid>.db), which stay after the process exits
and are all read at every scrape (MultiProcessCollector, then
generate_latest). resil keeps a monitor in one region file of fixed size
(Monitor(shared=region): 5 components with a duration histogram each, and
5 event counters), which every worker records into and any process
renders with resil.prometheus.exposition(region).

After 10, 100 and 1,000 restarts the table gives the files and bytes in
the directory (apparent size, and blocks on disk), and the scrape time:
the median of several scrapes, each from a fresh collector.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h  # noqa: E402

import resil  # noqa: E402

import importlib.util  # noqa: E402

# prometheus_client picks its value class (files or memory) when first
# imported, from PROMETHEUS_MULTIPROC_DIR: main() sets that first.
if importlib.util.find_spec("prometheus_client") is None:  # pragma: no cover
    h.missing_peers(__file__, ImportError("No module named 'prometheus_client'"))

PEERS = ("prometheus_client",)
SECTION = "## Metrics of restarted worker processes (bench_prometheus_multiprocess.py)"
CHECKPOINTS = (10, 100, 1000)
PARALLEL = 8  # workers alive at once
REGION_SIZE = 2 << 20

NOTES = ("prometheus_client's multiprocess mode writes two files per worker process (one "
         "per metric type it used), named by pid, and never removes them: the directory "
         "grows with every restart and each scrape opens and merges every file. A resil "
         "region is one file whose size is fixed when it is made; a restarted worker "
         "attaches the same monitor and adds to the same counts, so neither the file nor "
         "the scrape grows with restarts.")


def _base() -> str:
    return "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()


# ---- the workers ------------------------------------------------------------------

def prometheus_worker(directory: str, i: int) -> None:
    from prometheus_client import CollectorRegistry, Counter, Histogram

    registry = CollectorRegistry()  # the metrics, not a collector: files are written
    counters = [Counter(f"events_{k}", "Events.", ["component"], registry=registry)
                for k in range(5)]
    hists = [Histogram(f"duration_{k}_seconds", "Durations.", ["operation"],
                       registry=registry) for k in range(5)]
    for k, c in enumerate(counters):
        c.labels(component=f"c{k}").inc()
    for k, hist in enumerate(hists):
        hist.labels(operation=f"op{k}").observe(0.001 * (i % 100 + k))


def resil_worker(path: str, i: int) -> None:
    region = resil.SharedRegion(path)
    monitor = resil.Monitor(3600.0, max_components=5, max_series=64, shared=region)
    for k in range(5):
        monitor.record_event(f"events_{k}", f"c{k}")
    for k in range(5):
        monitor.record(f"duration_{k}", f"op{k}", float(i % 100 + k), True)


def restart(ctx: Any, target: Any, arg: str, start: int, stop: int) -> None:
    """Runs workers start..stop-1, each a new process, PARALLEL at a time."""
    for lo in range(start, stop, PARALLEL):
        procs = [ctx.Process(target=target, args=(arg, i))
                 for i in range(lo, min(lo + PARALLEL, stop))]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
            if p.exitcode != 0:
                raise RuntimeError(f"worker exited with {p.exitcode}")


# ---- what is measured ---------------------------------------------------------------

def disk(directory: str) -> tuple[int, int, int]:
    """Files, apparent bytes and bytes in blocks on disk under directory."""
    files = apparent = blocks = 0
    for entry in os.scandir(directory):
        st = entry.stat()
        files += 1
        apparent += st.st_size
        blocks += st.st_blocks * 512
    return files, apparent, blocks


def scrape_prometheus(directory: str) -> tuple[float, bytes]:
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess

    t0 = time.perf_counter()
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)
    text = generate_latest(registry)
    return time.perf_counter() - t0, text


def scrape_resil(path: str) -> tuple[float, bytes]:
    t0 = time.perf_counter()
    region = resil.SharedRegion(path)  # a fresh handle: attaching is part of the scrape
    text = resil.prometheus.exposition(region).encode()
    region.close()
    return time.perf_counter() - t0, text


def median_ms(fn: Any, arg: str, repeats: int) -> tuple[float, bytes]:
    times, text = [], b""
    for _ in range(repeats):
        t, text = fn(arg)
        times.append(t)
    return statistics.median(times) * 1e3, text


def main(argv: list[str] | None = None) -> int:
    ap = h.arg_parser(__doc__)
    ap.add_argument("--repeats", type=int, default=None, help="scrapes per median")
    args = h.parse_args(ap, argv)
    started = time.monotonic()
    checkpoints = h.by_mode(args, CHECKPOINTS, (5, 20), (2, 4))
    repeats = args.repeats or h.by_mode(args, 7, 3, 1)

    facts = h.machine_facts(["resil", *PEERS])
    facts.append(("run", f"workers forked {PARALLEL} at a time, each recording 5 counters "
                         f"and 5 histograms then exiting; scrape time the median of "
                         f"{repeats} scrapes" + h.mode_label(args)))
    h.print_facts("Worker restarts: prometheus_client multiprocess files vs one resil region",
                  facts)

    ctx = multiprocessing.get_context("fork")
    work = tempfile.mkdtemp(prefix="resil-bench-mp-", dir=_base())
    prom_dir = os.path.join(work, "prometheus")
    region_dir = os.path.join(work, "region")
    os.mkdir(prom_dir)
    os.mkdir(region_dir)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = prom_dir
    import prometheus_client.values

    assert prometheus_client.values.ValueClass is not prometheus_client.values.MutexValue, \
        "prometheus_client was imported before PROMETHEUS_MULTIPROC_DIR was set"
    region_path = os.path.join(region_dir, "metrics")
    region = resil.SharedRegion(region_path, size=REGION_SIZE)
    resil.Monitor(3600.0, max_components=5, max_series=64, shared=region)
    rows: list[tuple[str, ...]] = []
    done = 0
    try:
        for upto in checkpoints:
            t0 = time.perf_counter()
            restart(ctx, prometheus_worker, prom_dir, done, upto)
            t_prom = time.perf_counter() - t0
            t0 = time.perf_counter()
            restart(ctx, resil_worker, region_path, done, upto)
            t_resil = time.perf_counter() - t0
            done = upto
            p_ms, p_text = median_ms(scrape_prometheus, prom_dir, repeats)
            r_ms, r_text = median_ms(scrape_resil, region_path, repeats)
            # both saw every worker: the first counter's total is the restarts
            h.expect(True, f'events_0_total{{component="c0"}} {float(upto)}'.encode() in p_text,
                     "prometheus_client counted every worker")
            h.expect(True, f'resil_events_total{{component="c0",kind="events_0"}} {upto}\n'
                     .encode() in r_text, "resil counted every worker")
            for name, (files, apparent, blocks), ms, spent in (
                    ("prometheus_client multiprocess", disk(prom_dir), p_ms, t_prom),
                    ("resil SharedRegion", disk(region_dir), r_ms, t_resil)):
                rows.append((f"{upto:,}", name, f"{files:,}", f"{apparent:,}", f"{blocks:,}",
                             f"{ms:.2f}", f"{spent:.1f}"))
            print(f"  {upto:,} restarts done", flush=True)
    finally:
        region.close()
        shutil.rmtree(work, ignore_errors=True)

    head = ("restarts", "metrics store", "files", "bytes", "bytes on disk", "scrape ms",
            "restart s")
    title = "Files, bytes and scrape time after worker restarts (10 metrics per worker)"
    notes = [f"Each scrape: prometheus_client MultiProcessCollector + generate_latest; resil "
             f"SharedRegion(path) + exposition(region). Median of {repeats}. 'restart s': "
             f"wall time of that step's worker processes (start, record, exit)."]
    print()
    print(h.text_table(title, notes, head, rows, right={0, 2, 3, 4, 5, 6}))
    print()
    h.finish(facts, script=__file__, heading=SECTION,
             tables=[h.markdown_table(title, notes, head, rows, right={0, 2, 3, 4, 5, 6})],
             notes=NOTES,
             write=args.write_results, started=started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
