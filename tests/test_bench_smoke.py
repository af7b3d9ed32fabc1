"""Every benchmark in benchmarks/ still runs: each ``bench_*.py`` (found by
glob, so a new one is covered as soon as it exists) runs as a subprocess in
its ``--smoke`` mode, which gives every loop a few iterations but keeps every
contender and every correctness check, and must exit 0 with its checks
passed, no peer left out, and benchmarks/RESULTS.md untouched.

A benchmark with a test file of its own (``tests/test_bench_redis.py`` for
``bench_redis.py``, which starts a redis-server) is left to it.
``bench_instructions.py --smoke`` runs each case's program once without
valgrind (counting under callgrind takes minutes); its checks are the
programs' own asserts, so every case must show as run.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
RESULTS = BENCH / "RESULTS.md"
SMOKE_LABEL = "(--smoke run: its figures mean nothing)"
CHECKS = re.compile(r"^  correctness checks passed: (\d+)$", re.M)
LEFT_OUT = ("not installed", "Left out (peer")

SCRIPTS = [p for p in sorted(BENCH.glob("bench_*.py"))
           if not (ROOT / "tests" / f"test_{p.stem}.py").exists()]


def smoke(script: Path, cwd: Path, *more: str) -> subprocess.CompletedProcess[str]:
    # In an empty directory: a benchmark writes nowhere but its temporary files.
    return subprocess.run([sys.executable, str(script), "--smoke", "--seed", "7", *more],
                          capture_output=True, text=True, timeout=180, cwd=str(cwd))


def table_rows(out: str) -> list[list[str]]:
    """The body rows of every ``== title`` text table in out, as cells."""
    rows: list[list[str]] = []
    for block in out.split("\n\n"):
        lines = block.strip("\n").splitlines()
        if lines and lines[0].startswith("== "):
            # The title, its notes, the head, a rule of dashes, the rows.
            at = next(i for i, ln in enumerate(lines) if set(ln.replace(" ", "")) == {"-"})
            # Columns by the rule's dashes (cells may hold single spaces).
            spans = [m.span() for m in re.finditer(r"-+", lines[at])]
            rows += [[ln[a:b if i < len(spans) - 1 else None].strip()
                      for i, (a, b) in enumerate(spans)] for ln in lines[at + 1:]]
    return rows


def test_every_benchmark_is_covered() -> None:
    names = [p.name for p in SCRIPTS]
    assert "bench_instructions.py" in names and "bench_metrics.py" in names
    assert "bench_redis.py" not in names  # tests/test_bench_redis.py runs it
    assert len(names) >= 12, names


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_benchmark_runs_every_contender_and_check(script: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    results = RESULTS.read_bytes()
    out = smoke(script, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert SMOKE_LABEL in out.stdout
    rows = table_rows(out.stdout)
    assert rows, out.stdout[-3000:]
    for words in LEFT_OUT:  # every peer installed (pip install -e '.[bench]')
        assert words not in out.stdout + out.stderr, out.stdout[-3000:]
    assert RESULTS.read_bytes() == results

    if script.stem == "bench_instructions":
        monkeypatch.syspath_prepend(str(BENCH))
        import bench_instructions as bi

        # Only the cluster breaker's case may be left out, and only by a
        # build without cluster= (tests/test_bench_redis.py runs it otherwise).
        why = {c.name: line[len(f"left out {c.name}: "):] for c in bi.CASES if c.redis
               for line in out.stderr.splitlines() if line.startswith(f"left out {c.name}: ")}
        assert all("'cluster'" in reason for reason in why.values()), why
        assert out.stderr.count("left out ") == len(why), out.stderr
        left_out = set(why)
        assert [name for _, name, _ in rows] == [c.name for c in bi.CASES
                                                 if c.name not in left_out]
        assert {count for *_, count in rows} == {"ran, not counted"}
    else:
        found = CHECKS.findall(out.stdout)
        assert len(found) == 1 and int(found[0]) > 0, out.stdout[-3000:]


def test_a_smoke_run_writes_no_results(tmp_path: Path) -> None:
    results = RESULTS.read_bytes()
    out = smoke(BENCH / "bench_adaptive.py", tmp_path, "--write-results")
    assert out.returncode == 2
    assert "--smoke run's figures mean nothing" in out.stderr
    assert RESULTS.read_bytes() == results
