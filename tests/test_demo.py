"""The demo runs, is deterministic, and shows the breaker's whole life."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from prometheus_client.parser import text_string_to_metric_families

from resil.cli import demo


def test_demo_timeline_shows_every_phase_and_transition() -> None:
    out = io.StringIO()
    totals = demo.run(out, seed=7)
    text = out.getvalue()
    for transition in ("CLOSED -> OPEN", "OPEN -> HALF_OPEN", "HALF_OPEN -> OPEN",
                       "HALF_OPEN -> CLOSED", "CLOSED -> DEGRADED", "DEGRADED -> CLOSED"):
        assert transition in text, transition
    for column in ("state", "fail%", "signal", "thresh", "health", "rejected"):
        assert column in text
    for phase in demo.PHASES:
        assert phase.name in text
    assert totals["requests"] == sum(p.calls for p in demo.PHASES)
    assert totals["ok"] + totals["failed"] + totals["rejected"] == totals["requests"]
    # a request that ended ok or failed reached the dependency; a request makes
    # at most one call plus one per retry (a retry may still be rejected)
    assert totals["ok"] + totals["failed"] <= totals["dependency_calls"]
    assert totals["dependency_calls"] <= totals["requests"] + totals["retries"]
    assert totals["rejected"] > 0 and totals["retries"] > 0
    assert "retries" in text and "slept" in text


def test_demo_scheduler_adapts_and_emits_novelty() -> None:
    out = io.StringIO()
    totals = demo.run_scheduler(out)
    text = out.getvalue()
    rows = [line.split() for line in text.splitlines() if line.strip().endswith(tuple("0123456789"))
            and line.strip()[0].isdigit() and "s" in line.split()[0]]
    intervals = [float(r[2].rstrip("s")) for r in rows]
    # slows down to the MICRO max while quiet, speeds up to its min in the burst,
    # then slows down again
    assert 1.0 in intervals and 0.05 in intervals
    assert intervals.index(0.05) > intervals.index(1.0) and intervals[-1] > 0.05
    assert totals["novelty_events"] > 0 and totals["runs"] > totals["novelty_events"]


def test_demo_routes_events_through_a_bus_with_dead_letters_and_a_reprocess() -> None:
    out = io.StringIO()
    totals = demo.run_scheduler(out)
    text = out.getvalue()
    # every novelty event plus the operator's note went through the bus, numbered
    assert totals["published"] == totals["novelty_events"] + 1
    assert f"seq 1-{totals['published']}" in text
    # the archive outage failed some deliveries and the note broke a contract:
    # each reached the dead-letter queue, and one failure was reprocessed
    assert totals["handler_failures"] >= 1 and totals["violations"] == 1
    assert totals["dead_letters"] == totals["handler_failures"] + totals["violations"]
    assert totals["reprocessed"] == 1
    assert totals["archived"] == totals["published"] - totals["handler_failures"] + 1
    assert "ConnectionError" in text and "missing required field activity" in text
    assert "into the archive: ok" in text


def test_demo_sheds_a_burst_with_a_rate_limiter_and_a_bulkhead() -> None:
    out = io.StringIO()
    totals = demo.run_shedding(out)
    p = demo.SHEDDING
    # The limiter lets its burst through and refuses the rest, each told when
    # the next token comes (1 / rate seconds).
    assert totals["passed_limiter"] == p["burst"]
    assert totals["rate_limited"] == p["requests"] - p["burst"]
    assert totals["retry_after"] == pytest.approx(1 / p["rate"])
    # The bulkhead runs max_concurrent at once, queues max_queue and refuses the
    # rest of what the limiter let through; of the queued, the two calls that end
    # early hand their slots on, the others wait past queue_timeout.
    assert totals["ran_at_once"] == p["max_concurrent"]
    assert totals["bulkhead_full"] == p["burst"] - p["max_concurrent"] - p["max_queue"] == 2
    assert totals["ran_after_waiting"] == p["max_concurrent"] - p["slow"] == 2
    assert totals["timed_out"] == p["max_queue"] - totals["ran_after_waiting"] == 2
    assert totals["completed"] == totals["ran_at_once"] + totals["ran_after_waiting"]
    # Every request is accounted for, and the components' own counts agree.
    assert (totals["completed"] + totals["timed_out"] + totals["bulkhead_full"]
            + totals["rate_limited"]) == p["requests"]
    assert totals["limiter_stats"]["admitted"] == p["burst"]
    assert totals["limiter_stats"]["rejected"] == totals["rate_limited"]
    bh = totals["bulkhead_stats"]
    assert (bh["admitted"], bh["rejected"], bh["timed_out"]) == (6, 2, 2)
    assert bh["peak_active"] == p["max_concurrent"] and bh["active"] == bh["queued"] == 0
    # The table shows it as it happened: the queue full at first, two waiters
    # served at 0.24 s, two timed out at 0.42 s, everything settled by 0.6 s.
    text = out.getvalue()
    header, rows = _table(text.splitlines(), "limited")
    assert header == [c.name for c in demo.SHEDDING_COLUMNS]
    table = {r[0]: [int(v) for v in r[1:]] for r in rows}
    assert table["0.00s"] == [20, 4, 4, 2, 0, 0]
    assert table["0.30s"] == [20, 4, 2, 2, 0, 2]
    assert table["0.50s"] == [20, 2, 0, 2, 2, 4]
    assert list(table)[-1] == "0.60s" and table["0.60s"] == [20, 0, 0, 2, 2, 6]
    assert all(r[1] <= p["max_concurrent"] and r[2] <= p["max_queue"] for r in table.values())
    assert ("refused 20 with RateLimited (retry_after=0.05 s" in text
            and "refused 2 with BulkheadFull" in text)
    again = io.StringIO()
    demo.run_shedding(again)
    assert again.getvalue() == text


def test_demo_is_deterministic_for_a_seed() -> None:
    a, b = io.StringIO(), io.StringIO()
    demo.run(a, seed=3)
    demo.run(b, seed=3)
    assert a.getvalue() == b.getvalue()


def test_python_m_resil_demo() -> None:
    proc = subprocess.run([sys.executable, "-m", "resil", "demo", "--every", "50"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "rejected by the breaker" in proc.stdout and "novelty events delivered" in proc.stdout
    assert "with RateLimited" in proc.stdout and "with BulkheadFull" in proc.stdout
    assert proc.stderr == ""
    bad = subprocess.run([sys.executable, "-m", "resil", "nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown command" in bad.stderr


def test_demo_ends_with_the_dashboard() -> None:
    proc = subprocess.run([sys.executable, "-m", "resil", "demo", "--every", "100"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    heading = "dashboard (resil.Monitor; requests, health and alerts over the last 30 s):\n"
    doc, _ = json.JSONDecoder().raw_decode(text[text.index(heading) + len(heading):])
    # The dashboard covers the monitor's 30 s window: the recovered tail of the
    # first part, where nothing failed, plus what the second part's watched
    # components did at the end - nothing in the demo records an event by hand.
    perf = doc["component_performance"]["inventory-api"]
    assert 0 < perf["total_requests"] < sum(p.calls for p in demo.PHASES)
    assert perf["error_count"] == 0 and perf["status"] == "healthy"
    assert perf["p50_duration_ms"] <= perf["p95_duration_ms"] <= perf["p99_duration_ms"] <= 40.0
    metrics = doc["resilience_metrics"]
    assert metrics["circuit_breaker_trips"] >= 1 and metrics["retry_attempts"] >= 1
    assert metrics["timeout_failures"] >= 1 and metrics["grace_period_recoveries"] >= 1
    assert metrics["dead_letter_queue_messages"] >= 2
    # The watched rate limiter and bulkhead: each refusal counted, BulkheadFull
    # for want of room and after queue_timeout alike.
    assert metrics["other"] == {"rate_limited": 20, "bulkhead_rejection": 4}
    assert "record_event" not in Path(demo.__file__).read_text()
    # The dead-letter queue the bus fills is watched: it holds enough for an alert.
    (alert,) = [a for a in doc["alerts"] if a["metric"] == "dead_letter_queue_depth"]
    assert alert["component"] == "novelty.dlq" and alert["value"] >= 2
    assert doc["system_health"]["status"] == "healthy"


@pytest.mark.parametrize("stop_signal, sigint_ignored", [
    (signal.SIGINT, False),
    (signal.SIGTERM, False),
    # A background job starts with SIGINT ignored; Ctrl-C must still stop it.
    (signal.SIGINT, True),
])
def test_demo_serves_metrics_while_it_runs(stop_signal: int, sigint_ignored: bool) -> None:
    cmd = [sys.executable, "-m", "resil", "demo", "--every", "100",
           "--metrics-port", "0", "--hold", "120"]
    if sigint_ignored:
        cmd = ["sh", "-c", 'trap "" INT; exec "$@"', "sh", *cmd]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("metrics: http://127.0.0.1:"), first
        url = first.split()[1]
        for line in proc.stdout:
            if line.startswith("still serving"):
                break
        with urllib.request.urlopen(url, timeout=10) as response:
            body = response.read().decode()
        names = {f.name for f in text_string_to_metric_families(body)}
        assert {"resil_circuit_breaker_state", "resil_retries", "resil_requests",
                "resil_bus_published", "resil_dead_letters", "resil_emitter_emitted",
                "resil_request_duration_seconds", "resil_bulkhead_calls",
                "resil_rate_limiter_decisions"} <= names
        assert 'resil_circuit_breaker_state{endpoint="inventory-api"}' in body
        assert 'resil_bulkhead_calls_total{bulkhead="db",outcome="timed_out"} 2' in body
        assert 'resil_rate_limiter_decisions_total{limiter="api",outcome="rejected"} 20' in body
    finally:
        # Sent the moment the announcement is read: a signal that arrived
        # just after "still serving" was printed once escaped the wait.
        proc.send_signal(stop_signal)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err


# ---- what a user meets first: the output explains itself ---------------------------


@pytest.fixture(scope="module")
def output() -> list[str]:
    """The lines of ``python -m resil demo``, run in this process."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert demo.main([]) == 0
    return out.getvalue().splitlines()


def _table(lines: list[str], first: str) -> tuple[list[str], list[list[str]]]:
    """The header and rows of the table whose header starts with ``first``
    (rows: the lines after it with as many fields that start with a time)."""
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["time", first])
    header = lines[start].split()
    rows = []
    for line in lines[start + 1:]:
        fields = line.split()
        if not fields or not re.fullmatch(r"\d+\.\d+s", fields[0]):
            if rows and not fields:
                break
            continue
        if len(fields) == len(header):
            rows.append(fields)
    return header, rows


def _column(header: list[str], rows: list[list[str]], name: str) -> list[str]:
    return [row[header.index(name)] for row in rows]


@pytest.mark.parametrize("first, least", [("phase", 10), ("activity", 10), ("limited", 7)])
def test_demo_has_a_legend_for_every_column(output: list[str], first: str, least: int) -> None:
    header, rows = _table(output, first)
    assert len(rows) >= least
    start = output.index(next(line for line in output if line.split()[:2] == ["time", first]))
    # The legend comes just before its table: one entry per column, in order,
    # each "  name   what it shows", perhaps continued on indented lines.
    legend: list[str] = []
    for line in reversed(output[:start]):
        entry = re.match(r"  (\S+) {2,}\S", line)
        if entry:
            legend.insert(0, entry.group(1))
        elif not (line == "" and not legend or line.startswith(" " * 5)):
            break
    assert legend == header


def test_demo_adaptive_threshold_moves_with_the_phases(output: list[str]) -> None:
    header, rows = _table(output, "phase")
    thresh = {phase.name: [int(v) for v, p in zip(_column(header, rows, "thresh"),
                                                  _column(header, rows, "phase"))
                           if p == phase.name] for phase in demo.PHASES}
    configured = demo.BREAKER["failure_threshold"]
    # steady failure lowers it while the breaker is still closed; the recovery
    # brings it back
    assert set(thresh["healthy"]) == {configured}
    flaky_closed = [int(r[header.index("thresh")]) for r in rows
                    if r[header.index("phase")] == "flaky" and r[header.index("state")] == "CLOSED"]
    assert min(flaky_closed) < configured
    assert thresh["recovered"][-1] == configured
    # the trip happened at the lowered threshold
    trip = next(line for line in output if "CLOSED -> OPEN" in line)
    assert int(re.search(r"(\d+) failed in a row", trip).group(1)) < configured  # type: ignore[union-attr]


def test_demo_health_recovers_within_the_monitors_window(output: list[str]) -> None:
    header, rows = _table(output, "phase")
    health = _column(header, rows, "monitor")
    assert health[0] == "healthy" and "critical" in health
    # Once the breaker is CLOSED again and the monitor's window (30 s of
    # requests) has passed, every row says healthy, up to the last.
    closed = next(float(line.split()[0].rstrip("s")) for line in output
                  if "DEGRADED -> CLOSED" in line)
    times = [float(t.rstrip("s")) for t in _column(header, rows, "time")]
    later = [h for t, h in zip(times, health) if t > closed + demo.HEALTH_WINDOW]
    assert len(later) >= 3 and set(later) == {"healthy"}
    assert health[-1] == "healthy"
    assert demo.new_monitor().retention == demo.HEALTH_WINDOW == 30.0


def test_demo_lines_fit_in_100_columns(output: list[str]) -> None:
    long = [line for line in output if len(line) > 100]
    assert not long


def test_demo_last_line_points_to_its_code(output: list[str], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    last = output[-1]
    lead = "the code behind this output: "
    assert last.startswith(lead)
    assert os.path.samefile(last[len(lead):], demo.__file__)
    # From another directory the path still leads to the file.
    monkeypatch.chdir(tmp_path)
    assert os.path.samefile(demo.source_line()[len(lead):], demo.__file__)
    # A path too long for the line is given inside the package.
    monkeypatch.setattr(demo, "__file__", "/deep" * 30 + "/resil/cli/demo.py")
    line = demo.source_line()
    assert line == lead + "resil/cli/demo.py in the installed resil package"


def test_python_m_resil_help_describes_resil_and_each_command(
        capsys: pytest.CaptureFixture[str]) -> None:
    from resil import __main__ as cli

    assert cli.main(["--help"]) == 0
    text = capsys.readouterr().out
    assert "resil is a resilience toolkit" in text
    assert f"  demo    {demo.SUMMARY}\n" in text
    # every option of the command is listed with it, and per-command help is named
    options = set(re.findall(r"--[a-z-]+", demo.build_parser().format_usage()))
    assert options == {"--seed", "--every", "--metrics-port", "--hold"}
    assert options <= set(re.findall(r"--[a-z-]+", text))
    assert "python -m resil <command> --help" in text
    assert all(len(line) <= 79 for line in text.splitlines())
    # no command: the same text on stderr, exit status 2
    assert cli.main([]) == 2
    assert capsys.readouterr().err.strip() == text.strip()


def test_python_m_resil_demo_help_describes_every_option() -> None:
    proc = subprocess.run([sys.executable, "-m", "resil", "demo", "--help"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr == ""
    text = proc.stdout
    assert "circuit breaker" in text and "virtual clock" in text
    assert "rate limiter and a bulkhead" in text
    options = text[text.index("options:"):]
    for option in ("--seed N", "--every N", "--metrics-port PORT", "--hold SECONDS"):
        # the option, then at least a few words about it
        described = re.search(re.escape(option) + r"\s+(\S+(?:\s+\S+){3,})", options)
        assert described, option


@pytest.mark.parametrize("argv", [["--hold", "inf"], ["--hold", "nan"], ["--hold", "-1"],
                                  ["--every", "0"], ["--metrics-port", "65536"]])
def test_demo_refuses_bad_options(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        demo.main(argv)
    assert exit_.value.code == 2
    assert argv[0] in capsys.readouterr().err


@pytest.mark.parametrize("seed", [3, 9, 12])
def test_demo_health_ends_healthy_whatever_the_seed(seed: int) -> None:
    # Seeds whose breaker stays OPEN into the recovered phase: the cooldown
    # cap leaves more than the monitor's window of healthy traffic after it.
    out = io.StringIO()
    demo.run(out, seed=seed)
    header, rows = _table(out.getvalue().splitlines(), "phase")
    assert _column(header, rows, "phase")[-1] == "recovered"
    assert _column(header, rows, "monitor")[-1] == "healthy"
