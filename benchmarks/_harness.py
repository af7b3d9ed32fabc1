"""A small interleaved micro-benchmark harness for benchmarks/bench_*.py.

Method (the same for every benchmark that uses this module):

- A *scenario* has one baseline loop and several contender loops. Every loop
  runs the same statement N times and times itself with
  ``time.perf_counter_ns``; N is calibrated per loop so that one loop takes
  about ``loop_ms`` milliseconds.
- Each loop is compiled from source on its own (``sync_loop`` /
  ``async_loop``), so no two contenders share a code object: CPython 3.11
  specialises bytecode per code object, and a shared loop would let one
  contender's call site de-specialise another's (the baseline above all).
  The names a loop uses are bound as default arguments, so they are local
  (LOAD_FAST) lookups.
- A scenario runs ``repeats`` rounds. In each round every loop (the baseline
  included) runs once, in an order shuffled per round, with the garbage
  collector disabled around each loop.
- Per round, a contender's *overhead* is its ns/call minus the baseline's
  ns/call in that same round; the table reports the median over rounds, the
  interquartile range, and the median over rounds of the per-round ratio
  ``overhead / reference overhead`` (the reference is resil's main entry).
  Pairing by round cancels slow drifts of the machine (frequency, other
  load) that hit every loop of a round alike.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import importlib.metadata
import logging
import os
import platform
import random
import re
import statistics
import sys
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from pathlib import Path
from typing import Any, NoReturn

__all__ = [
    "Contender",
    "Scenario",
    "ScenarioResult",
    "sync_loop",
    "async_loop",
    "run_scenario",
    "run_and_print",
    "run_gc_off",
    "Tally",
    "quartiles",
    "format_text",
    "format_markdown",
    "fmt_ns",
    "per_second",
    "ratio_cell",
    "rate_rows",
    "text_table",
    "markdown_table",
    "expect",
    "by_mode",
    "mode_label",
    "missing_peers",
    "arg_parser",
    "parse_args",
    "machine_facts",
    "print_facts",
    "update_results",
    "finish",
    "scenario_main",
]

RunFn = Callable[[int], int]
"""``run(n)`` executes n iterations and returns the elapsed nanoseconds."""

_SYNC_TEMPLATE = """\
def run(n, _repeat=_repeat, _clock=_clock, {params}):
    _it = _repeat(None, n)
    _t0 = _clock()
    for _ in _it:
{body}
    return _clock() - _t0
"""

_ASYNC_TEMPLATE = """\
async def body(n, _repeat=_repeat, _clock=_clock, {params}):
    _it = _repeat(None, n)
    _t0 = _clock()
    for _ in _it:
{body}
    return _clock() - _t0
"""


def _compile_loop(template: str, body: str, names: dict[str, Any], fn_name: str) -> Any:
    params = ", ".join(f"{k}={k}" for k in names)
    indented = "\n".join("        " + line for line in body.strip("\n").splitlines())
    src = template.format(params=params or "_unused=None", body=indented)
    ns: dict[str, Any] = {"_repeat": repeat, "_clock": time.perf_counter_ns, **names}
    # A fresh compile per loop: its own code object, so its own
    # specialisation caches.
    exec(compile(src, f"<loop {body.strip()!r}>", "exec"), ns)
    return ns[fn_name]


def sync_loop(body: str, **names: Any) -> RunFn:
    """A timed loop running ``body`` (one or more statements) per iteration.

    ``names`` are bound as default arguments, i.e. fast locals in the loop.
    """
    return _compile_loop(_SYNC_TEMPLATE, body, names, "run")  # type: ignore[no-any-return]


def async_loop(loop: asyncio.AbstractEventLoop, body: str, **names: Any) -> RunFn:
    """Like sync_loop, but ``body`` runs inside a coroutine (so it may
    ``await``) driven by ``loop``; the timing is taken inside the coroutine,
    so the event loop's start-up per run is not counted."""
    coro_fn = _compile_loop(_ASYNC_TEMPLATE, body, names, "body")

    def run(n: int) -> int:
        return loop.run_until_complete(coro_fn(n))  # type: ignore[no-any-return]

    return run


@dataclass
class Contender:
    """One timed loop of a scenario.

    ``limit_ns``: a target for this contender's median overhead, checked
    and shown with a verdict. ``quoted_ns``: a figure (or a low–high range)
    quoted for this contender from elsewhere, shown for comparison. Both are
    also shown scaled by the scenario's machine factor, when it has one.
    ``after``: an untimed hook run after each loop (clean-up).
    """

    name: str
    run: RunFn
    limit_ns: float | None = None
    quoted_ns: tuple[float, ...] = ()
    after: Callable[[], None] | None = None
    n: int = 0
    ns_per_call: list[float] = field(default_factory=list)


@dataclass
class Scenario:
    title: str
    baseline: Contender
    contenders: list[Contender]
    reference: str
    """Name of the contender the ratio column divides by."""
    note: str = ""
    quoted_baseline_ns: float | None = None
    """The baseline's ns/call on the machine the targets were set on: the
    machine factor is then this run's baseline over it."""
    scale: float | None = None
    """An explicit machine factor (wins over quoted_baseline_ns)."""
    scale_source: str = "given by the benchmark"
    """Where an explicit scale comes from, for the table's note."""


@dataclass
class Row:
    name: str
    ns_per_call: float
    overhead: float | None
    q1: float | None
    q3: float | None
    ratio: float | None
    target: str
    verdict: str


@dataclass
class ScenarioResult:
    scenario: Scenario
    baseline_ns: float
    rows: list[Row]
    repeats: int
    scale: float | None


SMOKE = False
"""True in a ``--smoke`` run (parse_args sets it): every loop then runs
SMOKE_N iterations instead of calibrating, and no full collection precedes
it (one takes tens of milliseconds once a peer's modules are imported, more
than the loops themselves), so a run only checks that every contender and
every check still works."""

SMOKE_N = 16
"""The iterations of each loop in a ``--smoke`` run."""


def run_gc_off(run: RunFn, n: int) -> int:
    """``run(n)`` after a full collection (none in a ``--smoke`` run), with
    the garbage collector off while it runs; returns what it returns (the
    elapsed ns)."""
    if not SMOKE:
        gc.collect()
    gc.disable()
    try:
        return run(n)
    finally:
        gc.enable()


@dataclass
class Tally:
    """Counts the iterations a loop ran (calibration and warm-up included),
    so a benchmark can check afterwards that what the loop wrote or counted
    matches: ``Contender(name, tally.wrap(run))``."""

    n: int = 0

    def wrap(self, run: RunFn) -> RunFn:
        """``run``, counting the iterations of each call into ``n``."""
        def counted(n: int) -> int:
            self.n += n
            return run(n)
        return counted


def _timed(c: Contender, n: int) -> int:
    ns = run_gc_off(c.run, n)
    if c.after is not None:
        c.after()
    return ns


def calibrate(c: Contender, loop_ns: float) -> int:
    """Finds N so that one loop of c takes about loop_ns (also warms it up);
    SMOKE_N, after one run of it, in a ``--smoke`` run."""
    if SMOKE:
        _timed(c, SMOKE_N)
        return SMOKE_N
    n = 64
    floor = max(loop_ns / 20, 200_000.0)
    while True:
        ns = _timed(c, n)
        if ns >= floor or n >= 1 << 30:
            break
        n *= 4 if ns < floor / 8 else 2
    n = max(16, int(n * loop_ns / max(ns, 1)))
    _timed(c, n)  # one full-length warm-up run
    return n


def quartiles(xs: Sequence[float]) -> tuple[float, float]:
    """The first and third quartiles of xs (inclusive method; a single
    value is both)."""
    if len(xs) < 2:
        return xs[0], xs[0]
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], q[2]


def run_scenario(s: Scenario, *, repeats: int, loop_ms: float, rng: random.Random,
                 progress: Callable[[str], None] | None = None) -> ScenarioResult:
    """Calibrates, then runs every loop of s once per round, shuffled."""
    everyone = [s.baseline, *s.contenders]
    names = [c.name for c in everyone]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate contender names in {s.title!r}")
    if s.reference not in names:
        raise ValueError(f"reference {s.reference!r} is not a contender of {s.title!r}")
    for c in everyone:
        c.n = calibrate(c, loop_ms * 1e6)
        c.ns_per_call = []
    for r in range(repeats):
        order = everyone[:]
        rng.shuffle(order)
        for c in order:
            c.ns_per_call.append(_timed(c, c.n) / c.n)
        if progress is not None:
            progress(f"{s.title}: round {r + 1}/{repeats}")

    base = s.baseline.ns_per_call
    base_med = statistics.median(base)
    scale = s.scale
    if scale is None and s.quoted_baseline_ns:
        scale = base_med / s.quoted_baseline_ns
    ref = next(c for c in everyone if c.name == s.reference)
    ref_over = [x - b for x, b in zip(ref.ns_per_call, base)]
    rows = [Row(s.baseline.name, base_med, None, None, None, None, "", "")]
    for c in s.contenders:
        over = [x - b for x, b in zip(c.ns_per_call, base)]
        q1, q3 = quartiles(over)
        med = statistics.median(over)
        ratio = None
        if c is not ref:
            # A round where the reference's overhead is lost in the noise
            # has no meaningful ratio; leave it out.
            ratios = [o / ro for o, ro in zip(over, ref_over) if ro > 0.5]
            ratio = statistics.median(ratios) if ratios else None
        rows.append(Row(c.name, statistics.median(c.ns_per_call), med, q1, q3, ratio,
                        *_target(c, med, scale)))
    return ScenarioResult(s, base_med, rows, repeats, scale)


def run_and_print(s: Scenario, *, repeats: int, loop_ms: float, rng: random.Random,
                  fmt: Callable[[ScenarioResult], str] | None = None) -> ScenarioResult:
    """Runs s (run_scenario, saying so on stderr), then prints its table
    (``fmt``, by default format_text) and a blank line."""
    eprint(f"running {s.title} ...")
    res = run_scenario(s, repeats=repeats, loop_ms=loop_ms, rng=rng)
    print((fmt or format_text)(res))
    print(flush=True)
    return res


def _target(c: Contender, med: float, scale: float | None) -> tuple[str, str]:
    """The target cell's text and the verdict."""
    if c.limit_ns is not None:
        text = f"≤ {c.limit_ns:,.0f}"
        if scale is not None:
            text += f" (≤ {c.limit_ns * scale:,.0f} scaled)"
        if med <= c.limit_ns:
            verdict = "met"
        elif scale is not None and med <= c.limit_ns * scale:
            verdict = "met scaled only"
        else:
            verdict = "MISSED"
        return text, verdict
    if c.quoted_ns:
        text = "quoted " + "–".join(f"{x:,.0f}" for x in c.quoted_ns)
        if scale is not None:
            text += " (" + "–".join(f"{x * scale:,.0f}" for x in c.quoted_ns) + " scaled)"
        return text, ""
    return "", ""


# ---- formatting -------------------------------------------------------------

_HEAD = ("contender", "ns/call", "overhead ns", "IQR ns", "x resil", "target")


def fmt_ns(x: float | None) -> str:
    """ns with thousands separators, one decimal under 10 ("—" for None)."""
    if x is None:
        return "—"
    return f"{x:,.0f}" if abs(x) >= 10 else f"{x:.1f}"


def _row_cells(res: ScenarioResult, row: Row) -> tuple[str, ...]:
    iqr = "—" if row.q1 is None else f"{fmt_ns(row.q1)} – {fmt_ns(row.q3)}"
    if row.overhead is None:
        ratio = "(baseline)"
    elif row.name == res.scenario.reference:
        ratio = "1.00"
    else:
        ratio = "—" if row.ratio is None else f"{row.ratio:.2f}"
    target = f"{row.target}: {row.verdict}" if row.verdict else row.target
    return (row.name, fmt_ns(row.ns_per_call), fmt_ns(row.overhead), iqr, ratio, target)


def _table(res: ScenarioResult) -> list[tuple[str, ...]]:
    return [_row_cells(res, row) for row in res.rows]


def per_second(ns: float) -> str:
    """The rate of one event per ``ns`` nanoseconds: "1.23 M" or "456.7 k"
    ("—" when ns is not positive)."""
    if ns <= 0:
        return "—"
    per_s = 1e9 / ns
    return f"{per_s / 1e6:.2f} M" if per_s >= 1e6 else f"{per_s / 1e3:,.1f} k"


def ratio_cell(res: ScenarioResult, row: Row) -> str:
    """A contender's *x resil* cell in a rate table: "1.00" for the
    reference, three decimals under 0.1, "—" with no ratio."""
    if row.name == res.scenario.reference:
        return "1.00"
    if row.ratio is None:
        return "—"
    return f"{row.ratio:.3f}" if row.ratio < 0.1 else f"{row.ratio:.2f}"


def rate_rows(res: ScenarioResult) -> list[tuple[str, ...]]:
    """res as overheads and rates, a row a contender: name, overhead ns,
    its IQR, events per second, x resil (ratio_cell), and the raw ns per
    iteration (all the baseline's row shows)."""
    rows: list[tuple[str, ...]] = []
    for r in res.rows:
        if r.overhead is None:
            rows.append((r.name, "—", "—", "—", "(baseline)", fmt_ns(r.ns_per_call)))
            continue
        rows.append((r.name, fmt_ns(r.overhead), f"{fmt_ns(r.q1)} – {fmt_ns(r.q3)}",
                     per_second(r.overhead), ratio_cell(res, r), fmt_ns(r.ns_per_call)))
    return rows


def _scale_note(res: ScenarioResult) -> str:
    s = res.scenario
    if s.scale is None and s.quoted_baseline_ns:
        why = (f"this run's baseline, {res.baseline_ns:,.1f} ns, over the "
               f"{s.quoted_baseline_ns:g} ns quoted with the targets")
    else:
        why = s.scale_source
    return (f"Machine factor ×{res.scale:.2f} ({why}); *scaled* targets and quoted "
            "figures are multiplied by it.")


def _notes(res: ScenarioResult) -> list[str]:
    notes = [res.scenario.note] if res.scenario.note else []
    if res.scale is not None:
        notes.append(_scale_note(res))
    return notes


def format_text(res: ScenarioResult) -> str:
    return text_table(res.scenario.title, _notes(res), _HEAD, _table(res))


def format_markdown(res: ScenarioResult) -> str:
    return markdown_table(res.scenario.title, _notes(res), _HEAD, _table(res))


def _right(head: Sequence[str], right: Collection[int] | None) -> Collection[int]:
    return range(1, len(head) - 1) if right is None else right


def text_table(title: str, notes: Sequence[str], head: Sequence[str],
               rows: Sequence[Sequence[str]], right: Collection[int] | None = None) -> str:
    """A titled table for the terminal: ``== title``, each note on its own
    indented line, then the columns padded to width. ``right``: the columns
    aligned right (by default every one but the first and the last)."""
    right = _right(head, right)
    table: list[Sequence[str]] = [head, *rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    lines = [f"== {title}"] + [f"   {n}" for n in notes]
    for k, r in enumerate(table):
        lines.append("  ".join(c.rjust(widths[i]) if i in right else c.ljust(widths[i])
                               for i, c in enumerate(r)).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(title: str, notes: Sequence[str], head: Sequence[str],
                   rows: Sequence[Sequence[str]], right: Collection[int] | None = None) -> str:
    """The same table for RESULTS.md: a ``###`` heading, each note a
    paragraph, then a Markdown table (``|`` in cells escaped)."""
    right = _right(head, right)
    lines = [f"### {title}", ""]
    for n in notes:
        lines += [n, ""]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "|".join("---:" if i in right else "---" for i in range(len(head))) + "|")
    for r in rows:
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |")
    return "\n".join(lines)


# ---- the script around the scenarios ------------------------------------------

def missing_peers(script: str, exc: ImportError) -> NoReturn:
    """Exits a benchmark (``script``: its ``__file__``) whose peers failed
    to import, saying how to install them."""
    sys.exit(f"{Path(script).name} needs the peers: pip install -e '.[bench]' ({exc})")


def arg_parser(doc: str | None) -> argparse.ArgumentParser:
    """A benchmark's command line, described by the first paragraph of its
    docstring, with the options every benchmark has first (``--quick``,
    ``--smoke``, ``--write-results``); add its own, then parse with
    parse_args."""
    ap = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    ap.add_argument("--smoke", action="store_true",
                    help="tiny sizes, only to check that every contender and every check "
                         "still runs (implies --quick; its figures mean nothing)")
    ap.add_argument("--write-results", action="store_true",
                    help=f"replace this benchmark's section of {RESULTS.name}")
    return ap


def parse_args(ap: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """Adds ``--seed`` (every benchmark's last option) to ap and parses
    argv; without --seed, ``args.seed`` is drawn at random (and shown in the
    run's facts, so the shuffles can be repeated). ``--smoke`` sets
    ``args.quick`` too, and SMOKE; it refuses ``--write-results``."""
    global SMOKE
    ap.add_argument("--seed", type=int, default=None, help="seed of the shuffles")
    args = ap.parse_args(argv)
    if args.smoke and args.write_results:
        ap.error("a --smoke run's figures mean nothing: it does not take --write-results")
    if args.smoke:
        args.quick = True
        SMOKE = True
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1 << 32)
    return args


def by_mode(args: argparse.Namespace, full: Any, quick: Any, smoke: Any) -> Any:
    """``full``, ``quick`` or ``smoke``: the size of the run args asks for."""
    return smoke if args.smoke else quick if args.quick else full


def mode_label(args: argparse.Namespace) -> str:
    """What the run's facts say after its sizes: which short run it is."""
    if args.smoke:
        return " (--smoke run: its figures mean nothing)"
    return " (--quick smoke run)" if args.quick else ""


_checks = 0


def expect(want: Any, got: Any, what: str) -> None:
    """A benchmark's check (before timing, or of what the timed loops did):
    raises unless got equals want. finish prints how many passed."""
    global _checks
    if want != got:
        raise AssertionError(f"{what}: expected {want!r}, got {got!r}")
    _checks += 1


# ---- header facts -----------------------------------------------------------

def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith(("model name", "Model", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _nproc() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def machine_facts(packages: Sequence[str]) -> list[tuple[str, str]]:
    """Date (UTC), machine, CPU, nproc, Python and package versions."""
    versions = []
    for p in packages:
        try:
            versions.append(f"{p} {importlib.metadata.version(p)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{p} (not installed)")
    load = load_average()
    return [
        ("date", time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())),
        ("machine", f"{platform.machine()}, {_cpu_model()}, nproc {_nproc()}"),
        ("python", f"{platform.python_implementation()} {platform.python_version()} "
                   f"({platform.python_compiler()})"),
        ("packages", ", ".join(versions)),
        ("load average at start", load),
    ]


def print_facts(title: str, facts: Sequence[tuple[str, str]]) -> None:
    """The head of a benchmark's output: its title, then one line a fact."""
    print(title)
    for k, v in facts:
        print(f"  {k}: {v}")
    print(flush=True)


# ---- RESULTS.md ---------------------------------------------------------------

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
"""The file every benchmark's ``--write-results`` writes its section of."""

RESULTS_TITLE = "# Benchmark results"

RESULTS_PREAMBLE = """\
Each section is written by one benchmark in `benchmarks/` (run it with
`--write-results`; without it the benchmark only prints) and replaces only
its own section. Method, from `benchmarks/_harness.py`: resil and its peers
run in one process; every loop runs the same statement N times (N set so one
loop takes tens of milliseconds) and is compiled on its own, so contenders
never share bytecode specialisation caches. Each scenario runs R rounds; in
each round every loop, the bare baseline included, runs once in a shuffled
order with the garbage collector off. *ns/call* is the median over rounds;
*overhead* is, per round, a contender's ns/call minus the baseline's in that
same round, median over rounds (IQR beside it); *x resil* is the median over
rounds of the per-round ratio of a contender's overhead to resil's. Numbers
are for the machine named in each section; compare rows within a table, not
across machines."""


def load_average() -> str:
    """The 1, 5 and 15 minute load averages, or "unknown"."""
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def file_fact(path: Path, verb: str) -> str:
    """Which build of a file ran: its name, when it was `verb` (built, saved)
    and a digest (the code changes under one version number while developed)."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(path.stat().st_mtime))
    return f"{path.name}, {verb} {when}, sha256 {digest}"


def facts_table(facts: Sequence[tuple[str, str]]) -> list[str]:
    """The run's facts as the lines of a two-column Markdown table."""
    return ["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in facts)]


def update_results(path: Path, heading: str, body: str) -> None:
    """Writes ``heading`` + ``body`` as a level-2 section of path, replacing
    that section if present and leaving every other section alone. The
    top section (title and method note) is kept up to date too."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    # Split into the top part and level-2 sections ("## ...", not "###").
    parts = re.split(r"(?m)^(?=## (?!#))", text)
    top, sections = parts[0], parts[1:]
    new_section = f"{heading}\n\n{body.strip()}\n\n"
    for i, sec in enumerate(sections):
        if sec.splitlines()[0].strip() == heading.strip():
            sections[i] = new_section
            break
    else:
        sections.append(new_section)
    top = f"{RESULTS_TITLE}\n\n{RESULTS_PREAMBLE}\n\n"
    out = top + "".join(s if s.endswith("\n\n") else s.rstrip("\n") + "\n\n" for s in sections)
    path.write_text(out.rstrip("\n") + "\n", encoding="utf-8")


def finish(facts: list[tuple[str, str]], *, script: str, heading: str, tables: Sequence[str],
           notes: str, write: bool, summary: Sequence[str] | None = None,
           summary_label: str = "Summary", started: float | None = None,
           end_facts: bool = True, show_end_facts: bool = True, path: Path = RESULTS) -> None:
    """The end of a benchmark's run, once its tables are printed.

    Adds the "load average at end" to ``facts`` and, when ``started`` (a
    ``time.monotonic()`` reading from the start) is given, the "wall time"
    since, and prints them on one line (neither with ``end_facts`` false;
    added but not printed with ``show_end_facts`` false). Then prints how
    many expect checks passed (nothing when none ran), the
    ``summary`` lines, when given, and ``notes``. With ``write``, replaces
    section ``heading`` of ``path`` (update_results) with: the facts table,
    the command that wrote it (``script``, the benchmark's ``__file__``,
    with ``--write-results``), the Markdown ``tables`` in order, the summary
    as a "``summary_label``:" list, and the notes.
    """
    if end_facts:
        facts.append(("load average at end", load_average()))
        end = f"  load average at end: {facts[-1][1]}"
        if started is not None:
            facts.append(("wall time", f"{time.monotonic() - started:.0f} s"))
            end += f"; wall time {facts[-1][1]}"
        if show_end_facts:
            print(end)
    if _checks:
        print(f"  correctness checks passed: {_checks}")
    if summary is not None:
        print("\n".join(summary))
        print()
    print(notes)

    if write:
        body = facts_table(facts)
        body += ["", f"Command: `python benchmarks/{Path(script).name} --write-results`", ""]
        for table in tables:
            body += [table, ""]
        if summary is not None:
            body += [f"{summary_label}:", ""] + [f"- {line}" for line in summary] + [""]
        body.append(notes)
        update_results(path, heading, "\n".join(body))
        print(f"\nwrote {path}")


def eprint(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---- one main() for the scenario benchmarks ---------------------------------

Makers = Callable[[asyncio.AbstractEventLoop, list[ScenarioResult]],
                  Iterable[Callable[[], Scenario]]]
"""``makers(loop, results)``: the scenarios of a benchmark, each made just
before it runs (``results`` holds the earlier ones' by then)."""


def scenario_main(argv: list[str] | None, *, doc: str | None, script: str, title: str,
                  section: str, notes: str, peers: Sequence[str], makers: Makers,
                  repeats: int = 21, loop_ms: float = 30.0,
                  more_facts: Sequence[tuple[str, str]] = (),
                  quiet: Sequence[str] = (),
                  summary: Callable[[list[ScenarioResult]], list[str]] | None = None) -> int:
    """The whole run of a benchmark made of scenarios: parses its command
    line (``--quick``, ``--write-results``, ``--repeats``, ``--loop-ms``,
    ``--seed``), prints the machine facts (with the resil extension's build
    and ``more_facts`` after it), runs and prints each scenario of
    ``makers`` on one event loop set as current, then calls ``finish`` with
    ``notes`` under ``section`` of RESULTS.md.

    ``doc``: the benchmark's docstring (its first paragraph describes the
    command). ``script``: its ``__file__``. ``title``: the output's first
    line. ``peers``: the packages whose versions are shown beside resil's.
    ``repeats`` and ``loop_ms``: the defaults of a full run (a ``--quick``
    one makes 3 rounds of 2 ms loops, a ``--smoke`` one 2 rounds of
    SMOKE_N iterations). ``quiet``: loggers kept off the
    output (a peer that logs each retry, a breaker's transitions during
    set-up). ``summary``: given the results, the lines printed after the
    tables and listed under them in RESULTS.md (verdicts, say).
    """
    ap = arg_parser(doc)
    ap.add_argument("--repeats", type=int, default=None, help="rounds per scenario")
    ap.add_argument("--loop-ms", type=float, default=None, help="target ms per loop")
    args = parse_args(ap, argv)
    repeats = args.repeats or by_mode(args, repeats, 3, 2)
    loop_ms = args.loop_ms or (2.0 if args.quick else loop_ms)
    rng = random.Random(args.seed)

    for name in quiet:
        log = logging.getLogger(name)
        log.addHandler(logging.NullHandler())
        log.propagate = False

    from resil import _resil

    facts = machine_facts(["resil", *peers])
    facts[4:4] = [("resil extension", file_fact(Path(_resil.__file__), "built")), *more_facts]
    loops = f"{SMOKE_N} iterations" if args.smoke else f"~{loop_ms:g} ms"
    facts.append(("run", f"{repeats} rounds per scenario, loops of {loops}, "
                         f"shuffle seed {args.seed}" + mode_label(args)))
    print_facts(title, facts)

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    results: list[ScenarioResult] = []
    try:
        for make in makers(loop, results):
            results.append(run_and_print(make(), repeats=repeats, loop_ms=loop_ms, rng=rng))
    finally:
        asyncio.set_event_loop(None)
        loop.close()
    finish(facts, script=script, heading=section,
           tables=[format_markdown(res) for res in results], notes=notes,
           write=args.write_results, end_facts=False,
           summary=None if summary is None else summary(results))
    return 0
