"""benchmarks/bench_redis.py runs end to end in its quick mode against the
redis-server it starts itself: five tables, the floor and peer rows measured
with the round trips the notes claim, resil's cluster rows measured when this
build has the part and marked "not available in this build" when it has not;
and bench_instructions.py's cluster breaker case runs, or is left out for the
same reason."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import resil
from redis_support import RedisServer, redis_clean, redis_server  # noqa: F401
from resil.redis import RedisBackend

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
ABSENT = "not available in this build"
NOT_INSTALLED = "not installed (pip install -e '.[bench]')"
TITLES = ("1. Rate limiter, admitted decision — sync", "2. Rate limiter, refused decision — sync",
          "3. Breaker, guarded call `f(1)` — sync", "4. Bus publish, asyncio client",
          "5. Bus publish, blocking client")


def has_cluster_part(server: RedisServer, make: Any) -> bool:
    """Builds the part (``make(backend)``): this build must have it, so its
    rows must be measured; a part that cannot be built fails the test."""
    backend = RedisBackend(server.client(), prefix="probe:")
    try:
        thing = make(backend)
    finally:
        backend.close()
    close = getattr(thing, "close", None)
    if callable(close):
        close()
    return True


def tables(out: str) -> dict[str, dict[str, list[str]]]:
    """The text tables of the benchmark's output: title -> row name -> cells."""
    found: dict[str, dict[str, list[str]]] = {}
    for block in out.split("\n\n"):
        lines = block.strip("\n").splitlines()
        if not lines or not lines[0].startswith("== "):
            continue
        rows = [ln for ln in lines[1:] if not ln.startswith("   ")]
        head, rule, body = rows[0], rows[1], rows[2:]
        assert set(rule.replace(" ", "")) == {"-"}, block
        # Columns by the rule's dashes (cells may contain single spaces).
        spans = [m.span() for m in re.finditer(r"-+", rule)]
        cells = {}
        for ln in body:
            parts = [ln[a:b if i < len(spans) - 1 else None].strip()
                     for i, (a, b) in enumerate(spans)]
            cells[parts[0]] = parts[1:]
        assert [head[a:b].strip() for a, b in spans][:2] == ["contender", "µs/decision"]
        found[lines[0][3:]] = cells
    return found


def measured(cells: list[str], trips: str | None = None) -> None:
    us, iqr, rate, ratio, got_trips, target = cells
    assert float(us.replace(",", "")) > 0, cells
    assert " – " in iqr and rate.endswith(("k", "M")), cells
    assert ratio == "1.00 (ref)" or float(ratio.replace(",", "")) > 0, cells
    if trips is not None:
        assert got_trips == trips, cells
    assert ABSENT not in target and NOT_INSTALLED not in target


def left_out(cells: list[str], why: str) -> None:
    assert cells == ["—"] * 5 + [why], cells


@pytest.fixture(scope="module")
def bench_run() -> tuple[str, str]:
    out = subprocess.run(
        [sys.executable, str(BENCH / "bench_redis.py"), "--quick", "--repeats", "2",
         "--loop-ms", "1", "--seed", "7"],
        capture_output=True, text=True, timeout=240, cwd=str(BENCH.parent))
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout, out.stderr


def test_every_table_has_the_floor_and_peer_rows_measured(bench_run: tuple[str, str]) -> None:
    stdout, stderr = bench_run
    got = tables(stdout)
    assert list(got) == list(TITLES)
    assert "backends answered by Redis throughout" in stderr
    for title in TITLES[:2]:
        rows = got[title]
        measured(rows["INCR + EXPIRE, pipelined (floor)"], "1.00")
        assert rows["INCR + EXPIRE, pipelined (floor)"][3] == "1.00 (ref)"
        measured(rows["PING (for scale)"], "1.00")
        for name in ("limits fixed window hit (RedisStorage)",
                     "limits moving window hit (RedisStorage)"):
            if importlib.util.find_spec("limits") is None:
                left_out(rows[name], NOT_INSTALLED)
            else:
                measured(rows[name], "1.00")
    breaker = got[TITLES[2]]
    measured(breaker["resil local @breaker"], "0.00")
    if importlib.util.find_spec("pybreaker") is None:
        left_out(breaker["pybreaker @breaker (CircuitRedisStorage)"], NOT_INSTALLED)
    else:
        # The state read before the call, the counter reset after it.
        measured(breaker["pybreaker @breaker (CircuitRedisStorage)"], "2.00")
        measured(breaker["pybreaker @breaker (memory storage, for scale)"], "0.00")
    for title, floor in ((TITLES[3], "XADD, awaited (floor)"),
                         (TITLES[4], "XADD, blocking (floor)")):
        measured(got[title][floor], "1.00")
        measured(got[title]["resil EventBus.publish, no store (for scale)"], "0.00")
    # The run's facts, then one summary line per table after the tables.
    assert "  redis-server: " in stdout
    lines = stdout.splitlines()
    for title in TITLES:
        assert sum(line.startswith(title.split(". ", 1)[1] + ": ") for line in lines) == 1


def test_resil_rows_are_measured_or_marked_absent(bench_run: tuple[str, str],
                                                  redis_server: RedisServer) -> None:
    got = tables(bench_run[0])
    limiter = has_cluster_part(redis_server, lambda b: resil.RateLimiter(10, name="probe", cluster=b))
    for title in TITLES[:2]:
        for name in ("resil cluster try_acquire()", "resil cluster try_acquire(key='k')"):
            cells = got[title][name]
            if not limiter:
                left_out(cells, ABSENT)
            elif title == TITLES[0]:
                measured(cells, "1.00")  # one script per admitted decision
                assert cells[5].startswith("≤ 1.3 × ref: ")
            else:
                measured(cells, "0.00")  # refused locally until its retry time
    breaker = has_cluster_part(redis_server, lambda b: resil.CircuitBreaker(
        "probe", cluster=b, sync_interval=1.0, min_hosts=2))
    cells = got[TITLES[2]]["resil cluster @breaker"]
    if breaker:
        # The local breaker on the hot path: no round trip, so its added
        # time is noise around zero (either sign), with no rate derived.
        us, iqr, rate, ratio, trips, target = cells
        assert abs(float(us.replace(",", ""))) < 5 and " – " in iqr and trips == "0.00", cells
        assert target.startswith("≤ 1.2 × ref: ")
    else:
        left_out(cells, ABSENT)
    stream = getattr(__import__("resil.redis").redis, "StreamStore", None)
    for title in TITLES[3:]:
        cells = got[title]["resil EventBus.publish, StreamStore"]
        if stream is None:
            left_out(cells, ABSENT)
        else:
            measured(cells)


def test_the_instructions_cluster_breaker_case_runs_or_is_left_out(
        redis_clean: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCH))
    import bench_instructions as bi

    cases = [c for c in bi.CASES if c.redis]
    assert [c.group for c in cases] == ["breaker"]
    monkeypatch.setenv(bi._REDIS_PORT, str(redis_clean.port))
    why = bi._redis_case_absent(cases[0])
    if has_cluster_part(redis_clean, lambda b: resil.CircuitBreaker(
            "probe", cluster=b, sync_interval=1.0, min_hosts=2)):
        assert why is None
        # The program callgrind counts, run plainly: 50 guarded calls.
        program = bi._program(cases[0]) + "\nassert b.stats()['successes'] == 50, b.stats()\n"
        env = dict(os.environ, PYTHONPATH=str(BENCH.parent))
        out = subprocess.run([sys.executable, "-c", program, "50"], capture_output=True,
                             text=True, env=env, timeout=60)
        assert out.returncode == 0, out.stderr[-2000:]
    else:
        assert why is not None and "cluster" in why


def test_round_trips_count_the_row_s_own_threads_and_not_another_row_s_idle_reader(
        redis_clean: RedisServer) -> None:
    """A request sent by a thread of another row (an idle stream reader,
    say) while a row is counted is not that row's; one sent by the row's
    own thread or a thread it names is."""
    import threading

    sys.path.insert(0, str(BENCH))
    try:
        import bench_redis
    finally:
        sys.path.remove(str(BENCH))

    def connected() -> Any:
        c = redis_clean.client()
        c.ping()  # the connection's set-up requests are sent now
        return c

    def pinger(name: str, n: int) -> threading.Thread:
        c = connected()
        return threading.Thread(target=lambda: [c.ping() for _ in range(n)], name=name)

    client = connected()
    other = pinger("resil-stream other", 30)
    with bench_redis.counting_round_trips() as alone:
        other.start()
        for _ in range(50):
            client.ping()
        other.join()
    threads = [pinger("resil-stream other", 30), pinger("resil-stream mine", 7)]
    with bench_redis.counting_round_trips(["resil-stream mine"]) as with_reader:
        for t in threads:
            t.start()
        client.ping()
        for t in threads:
            t.join()
    assert (alone[0], with_reader[0]) == (50, 8)
