"""The demo runs, is deterministic, and shows the breaker's whole life."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
import urllib.request

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
    assert proc.stderr == ""
    bad = subprocess.run([sys.executable, "-m", "resil", "nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown command" in bad.stderr


def test_demo_ends_with_the_dashboard() -> None:
    proc = subprocess.run([sys.executable, "-m", "resil", "demo", "--every", "100"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    doc = json.loads(text[text.index("dashboard (resil.Monitor):") + 27:])
    perf = doc["component_performance"]["inventory-api"]
    assert perf["total_requests"] == sum(p.calls for p in demo.PHASES)
    assert perf["p50_duration_ms"] <= perf["p95_duration_ms"] <= perf["p99_duration_ms"]
    assert doc["resilience_metrics"]["circuit_breaker_trips"] >= 1
    assert doc["resilience_metrics"]["retry_attempts"] >= 1
    assert doc["resilience_metrics"]["dead_letter_queue_messages"] >= 1
    assert doc["system_health"]["status"] in ("healthy", "degraded", "critical")


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
                "resil_request_duration_seconds"} <= names
        assert 'resil_circuit_breaker_state{endpoint="inventory-api"}' in body
    finally:
        # Sent the moment the announcement is read: a signal that arrived
        # just after "still serving" was printed once escaped the wait.
        proc.send_signal(stop_signal)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
