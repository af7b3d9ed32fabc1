"""Metrics for the whole host: Monitor(shared=region) and a SharedRegion as
a source of resil.prometheus and resil.otel.

Four processes record into one monitor and its totals are exact, its
percentiles within the histogram's bound of the combined samples; a
shared and a local monitor fed the same records on a VirtualClock show
the same dashboard, alerts, health, stats and families; any process,
one that recorded nothing included, renders the host's figures; a
recorder killed mid-stream leaves a sound region and no count goes
backwards; a full table counts what it refused; differing parameters are
a ValueError naming the first.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import random
import time
from pathlib import Path
from typing import Any

import pytest

import resil
from resil.observe import regions

try:  # pytest's default "prepend" import mode puts tests/ on sys.path
    from tests_support import kill_when_running, run_threads
except ModuleNotFoundError:  # pragma: no cover - tests/ made a package
    from tests.tests_support import kill_when_running, run_threads  # type: ignore[no-redef]

try:
    import region_metrics_workers as workers
except ModuleNotFoundError:  # pragma: no cover - tests/ made a package
    from tests import region_metrics_workers as workers  # type: ignore[no-redef]

MB = 1 << 20


def _monitor(region: resil.SharedRegion, **kw: Any) -> resil.Monitor:
    return resil.Monitor(workers.MONITOR["retention"],
                         max_components=workers.MONITOR["max_components"],
                         max_series=workers.MONITOR["max_series"], shared=region, **kw)


def _exact_quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def _families(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """{sample name: {sorted labels: value}}, parsed by prometheus_client."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


# ---- four processes, one monitor ---------------------------------------------------

def test_four_processes_record_into_one_monitor(tmp_path: Path) -> None:
    path = str(tmp_path / "r")
    region = resil.SharedRegion(path, size=8 * MB)
    _monitor(region)  # made before the workers: they attach
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Event(), ctx.Queue()
    n, seeds = 3000, [11, 22, 33, 44]
    procs = [ctx.Process(target=workers.record_all, args=(path, seed, n, start, out))
             for seed in seeds]
    for p in procs:
        p.start()
    start.set()
    assert sorted(out.get(timeout=60) for _ in procs) == seeds
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0

    every = [r for seed in seeds for r in workers.records(seed, n)]
    all_events = [e for seed in seeds for e in workers.events(seed, n // 10)]
    # read from a new handle in a process that recorded nothing
    monitor = _monitor(resil.SharedRegion(path))
    stats = monitor.stats()
    assert stats["requests"] == 4 * n
    assert stats["failures"] == sum(1 for r in every if not r[3])
    assert stats["overflow"] == {"records": 0, "events": 0, "interrupted": 0}
    expected_events: dict[str, int] = {}
    for kind, _ in all_events:
        expected_events[kind] = expected_events.get(kind, 0) + 1
    assert stats["events"] == expected_events

    dash = monitor.dashboard()
    assert dash["system_health"]["total_requests"] == 4 * n
    for comp in workers.COMPONENTS:
        mine = [r for r in every if r[0] == comp]
        perf = dash["component_performance"][comp]
        assert perf["total_requests"] == len(mine)
        assert perf["error_count"] == sum(1 for r in mine if not r[3])
        by_type: dict[str, int] = {}
        for r in mine:
            if not r[3]:
                by_type[r[4] or "error"] = by_type.get(r[4] or "error", 0) + 1
        assert perf["errors_by_type"] == by_type
        durations = [r[2] for r in mine]
        assert perf["average_duration_ms"] == pytest.approx(sum(durations) / len(durations),
                                                            abs=5e-4)  # rounded to 3 places
        for q, key in ((0.5, "p50_duration_ms"), (0.95, "p95_duration_ms"),
                       (0.99, "p99_duration_ms")):
            exact = _exact_quantile(durations, q)
            assert abs(perf[key] - exact) <= 0.01 * exact + 1e-3, (comp, key)
    assert dash["resilience_metrics"]["circuit_breaker_trips"] == \
        expected_events.get("circuit_breaker_trip", 0)
    assert dash["resilience_metrics"]["other"] == {"cache_miss": expected_events["cache_miss"]}

    # the exposition of the region alone, from this process, has the host totals
    fams = _families(resil.prometheus.exposition(resil.SharedRegion(path)))
    requests = fams["resil_requests_total"]
    assert sum(requests.values()) == 4 * n
    for comp in workers.COMPONENTS:
        for op in workers.OPERATIONS:
            for ok in (True, False):
                labels = (("component", comp), ("operation", op),
                          ("status", "success" if ok else "error"))
                count = sum(1 for r in every if r[:2] == (comp, op) and r[3] == ok)
                assert requests.get(labels, 0) == count
                assert fams["resil_request_duration_seconds_count"].get(labels, 0) == count
    errors = fams["resil_errors_total"]
    assert sum(errors.values()) == stats["failures"]
    trips = fams["resil_circuit_breaker_trips_total"]
    assert sum(trips.values()) == expected_events.get("circuit_breaker_trip", 0)
    assert region.check() == []


# ---- lockstep: shared and local on the same records --------------------------------

def _without_time(dash: dict[str, Any]) -> dict[str, Any]:
    dash = dict(dash)
    dash.pop("generated_at")
    return dash


@pytest.mark.parametrize("seed", range(6))
def test_a_shared_monitor_matches_a_local_one_record_for_record(tmp_path: Path,
                                                               seed: int) -> None:
    rng = random.Random(seed)
    clock = resil.VirtualClock()
    clock.advance(rng.uniform(0, 100))
    kw: dict[str, Any] = {"retention": rng.choice([1.0, 10.0, 60.0]),
                          "slots": rng.choice([1, 3, 12]),
                          "alert_error_rate": rng.choice([5.0, 30.0]),
                          "alert_response_ms": rng.choice([5.0, 50.0, 5000.0]), "clock": clock}
    local = resil.Monitor(**kw)
    shared = resil.Monitor(**kw, shared=resil.SharedRegion(tmp_path / "r", size=16 * MB))
    other = resil.Monitor(**kw, shared=resil.SharedRegion(tmp_path / "r"))  # a second handle
    comps = ["db", "cache", "api", "ünïcode"]
    kinds = ["circuit_breaker_trip", "timeout", "retry", "dead_letter", "grace_recovery",
             "custom"]
    for step in range(600):
        roll = rng.random()
        if roll < 0.6:
            ok = rng.random() < 0.7
            args = (rng.choice(comps), rng.choice(["get", "put", "x"]),
                    rng.choice([0, 0.5, 1.0, 2.5, 7.3, 99.9, 1e4, 7e4, rng.uniform(0, 500)]), ok)
            error_type = None if ok else rng.choice([None, "Timeout", "Refused"])
            local.record(*args, error_type=error_type)
            rng.choice([shared, other]).record(*args, error_type=error_type)
        elif roll < 0.8:
            event = (rng.choice(kinds), rng.choice(comps))
            local.record_event(*event)
            rng.choice([shared, other]).record_event(*event)
        else:
            clock.advance(rng.choice([0.001, 0.1, kw["retention"] / 3, kw["retention"]]))
        if step % 50 == 0 or step == 599:
            for mon in (shared, other):
                assert _without_time(mon.dashboard()) == _without_time(local.dashboard())
                assert mon.alerts() == local.alerts()
                assert mon.health() == local.health()
                for comp in comps:
                    try:
                        want = local.health(comp)
                    except KeyError:
                        with pytest.raises(KeyError):
                            mon.health(comp)
                    else:
                        assert mon.health(comp) == want
                st = mon.stats()
                assert st.pop("overflow") == {"records": 0, "events": 0, "interrupted": 0}
                assert st == local.stats()
                exported = mon._export()
                assert exported.pop("overflow") == {"records": 0, "events": 0, "interrupted": 0}
                mine = local._export()
                mine.pop("overflow")
                assert exported == mine
    text = resil.prometheus.exposition(local)
    assert resil.prometheus.exposition(shared).replace(
        "resil_monitor_overflow_total", "").count("\n") >= text.count("\n")


def test_the_region_renders_the_same_families_as_the_local_objects(tmp_path: Path) -> None:
    # the monotonic clock: the objects the exposition attaches use it too
    region = resil.SharedRegion(tmp_path / "r", size=4 * MB)
    local = resil.Monitor(60.0)
    shared = resil.Monitor(60.0, max_components=2, shared=region)
    limiter = resil.RateLimiter(0.001, burst=2, name="api", shared=region)
    breaker = resil.CircuitBreaker("payments", failure_threshold=2, shared=region)
    for _ in range(2):
        with pytest.raises(ZeroDivisionError):
            breaker.call(lambda: 1 / 0)
    assert breaker.state == resil.State.OPEN
    for mon in (local, shared):
        mon.record("db", "get", 12.0, True)
        mon.record("db", "get", 40.0, False, error_type="Timeout")
        mon.record_event("retry", "db")
        mon.record_event("dead_letter", "orders")
    limiter.try_acquire(2)
    limiter.try_acquire()
    text = resil.prometheus.exposition(region)
    fams = _families(text)
    local_fams = _families(resil.prometheus.exposition(local, ("api", limiter), breaker))
    # the monitor's families, the limiter's, named and labelled as locally
    for name, samples in local_fams.items():
        if name in ("resil_memory_usage_bytes",):
            continue
        assert fams[name] == samples, name
    assert fams["resil_rate_limiter_decisions_total"] == {
        (("limiter", "api"), ("outcome", "admitted")): 1.0,
        (("limiter", "api"), ("outcome", "rejected")): 1.0}
    assert fams["resil_circuit_breaker_state"][(("endpoint", "payments"),)] == \
        resil.State.OPEN.value
    assert fams["resil_monitor_overflow_total"] == {(("kind", "events"),): 0.0,
                                                     (("kind", "interrupted"),): 0.0,
                                                     (("kind", "records"),): 0.0}
    # Collector and serve give the same region
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    registry.register(resil.prometheus.Collector(region))
    scraped = _families(generate_latest(registry).decode())
    assert scraped["resil_requests_total"] == fams["resil_requests_total"]
    import urllib.request

    with resil.prometheus.serve(0, sources=[region]) as server:
        with urllib.request.urlopen(server.url, timeout=10) as resp:
            served = _families(resp.read().decode())
    assert served["resil_errors_total"] == fams["resil_errors_total"]
    # monitors named apart carry the monitor label, so two never clash
    resil.Monitor(60.0, max_components=2, name="edge", shared=region).record(
        "db", "get", 1.0, True)
    fams = _families(resil.prometheus.exposition(region))
    assert fams["resil_requests_total"][(("component", "db"), ("monitor", "edge"),
                                         ("operation", "get"), ("status", "success"))] == 1
    # a shared Deduplicator is attached too, and has no families to render
    resil.Deduplicator(60.0, 10, shared=region, name="seen").seen("k")
    assert "seen" not in resil.prometheus.exposition(region)
    assert [kind for kind, *_ in regions.attached(region)] == [
        "Monitor", "RateLimiter", "CircuitBreaker", "Monitor", "Deduplicator"]
    # the attached objects are made once per region handle
    assert [id(o) for *_, o in regions.attached(region)] == \
        [id(o) for *_, o in regions.attached(region)]


def test_otel_observes_every_object_of_a_region(tmp_path: Path) -> None:
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    region = resil.SharedRegion(tmp_path / "r", size=4 * MB)
    limiter = resil.RateLimiter(3, burst=2, name="api", shared=region)
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    resil.otel.instrument(region, meter_provider=provider, prefix="host")
    limiter.try_acquire(2)
    limiter.try_acquire()
    # a monitor made after instrument() is seen at the next collection
    mon = resil.Monitor(60.0, max_components=2, shared=region)
    mon.record("db", "get", 1.0, False)
    mon.record("db", "get", 1.0, False)
    seen: dict[str, list[tuple[dict[str, Any], float]]] = {}
    data = reader.get_metrics_data()
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for point in metric.data.data_points:
                    seen.setdefault(metric.name, []).append((dict(point.attributes),
                                                             point.value))
    decisions = {attrs["resil.outcome"]: v for attrs, v in seen["host.rate_limiter.decisions"]}
    assert decisions == {"admitted": 1, "rejected": 1}
    assert seen["host.health"] == [({"resil.name": "monitor"}, 2)]


# ---- SIGKILL ------------------------------------------------------------------------

def test_recorders_killed_mid_stream_leave_a_sound_region(tmp_path: Path) -> None:
    ctx = workers.context()
    path = str(tmp_path / "r")
    region = resil.SharedRegion(path, size=8 * MB, lease=5.0)
    monitor = _monitor(region)
    rng = random.Random(5)
    last = (0, 0, 0)
    for round_ in range(20):
        kill_when_running(ctx, workers.record_until_killed, (path, round_),
                          rng.uniform(0.001, 0.02))
        t0 = time.monotonic()
        monitor.record("parent", "op", 1.0, True)  # never hangs: a dead holder's lock recovers
        assert time.monotonic() - t0 < 2
        st = monitor.stats()
        now = (st["requests"], st["failures"], sum(st["events"].values()))
        assert all(a >= b for a, b in zip(now, last)), (round_, now, last)  # never backwards
        last = now
        assert region.check() == [], round_
        dash = monitor.dashboard()
        assert dash["system_health"]["total_requests"] == st["requests"]
    assert last[0] > 20


# ---- limits and errors ----------------------------------------------------------------

def test_mismatched_parameters_are_a_value_error_naming_the_first(tmp_path: Path) -> None:
    region = resil.SharedRegion(tmp_path / "r", size=4 * MB)
    resil.Monitor(60.0, max_components=2, shared=region)
    for kw, field in (({"retention": 30.0}, "retention"), ({"slots": 6}, "slots"),
                      ({"alert_error_rate": 1.0}, "alert_error_rate"),
                      ({"alert_response_ms": 9.0}, "alert_response_ms"),
                      ({"max_components": 3}, "max_components"),
                      ({"max_series": 9}, "max_series")):
        args = {"retention": 60.0, "max_components": 2, **kw}
        with pytest.raises(ValueError, match=rf"^{field}: the monitor 'monitor' in region"):
            resil.Monitor(args.pop("retention"), shared=region, **args)
    # another name is another monitor
    resil.Monitor(30.0, max_components=2, name="other", shared=region)
    with pytest.raises(resil.RegionError, match="size"):
        resil.Monitor(60.0, max_components=64, name="big", shared=region)
    with pytest.raises(TypeError, match="shared"):
        resil.Monitor(shared="region")  # type: ignore[arg-type]


def test_a_full_table_counts_what_it_refused(tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    region = resil.SharedRegion(tmp_path / "r", size=4 * MB)
    mon = resil.Monitor(60.0, max_components=1, max_series=2, shared=region)
    mon.record("db", "get", 1.0, True)
    with caplog.at_level(logging.WARNING, logger="resil.monitor"):
        mon.record("cache", "get", 1.0, True)  # a second component: no room
        mon.record("db", "put", 1.0, False)  # two new series, room for one: refused whole
        mon.record("db", "put", 1.0, True)  # one new series: fits (2 of 2)
        mon.record_event("retry", "db")  # a fourth series: no room
    assert sum("is full" in r.getMessage() for r in caplog.records) <= 1
    st = mon.stats()
    assert st["overflow"] == {"records": 2, "events": 1, "interrupted": 0}
    assert st["requests"] == 2 and st["failures"] == 0 and st["events"] == {}
    assert mon.dashboard()["component_performance"]["db"]["total_requests"] == 2
    fams = _families(resil.prometheus.exposition(region))
    assert fams["resil_monitor_overflow_total"][(("kind", "records"),)] == 2
    assert region.check() == []


def test_labels_are_checked_before_anything_is_recorded(tmp_path: Path) -> None:
    region = resil.SharedRegion(tmp_path / "r", size=4 * MB)
    mon = resil.Monitor(60.0, max_components=2, shared=region)
    local = resil.Monitor(60.0)
    for bad, error, word in ((("", "op", 1.0, True), ValueError, "component"),
                             ((1, "op", 1.0, True), TypeError, "component"),
                             (("c", None, 1.0, True), TypeError, "operation"),
                             (("c", "op", "1", True), TypeError, "duration_ms"),
                             (("c", "op", True, True), TypeError, "duration_ms"),
                             (("c", "op", math.nan, True), ValueError, "duration_ms"),
                             (("c", "op", -1, True), ValueError, "duration_ms"),
                             (("c", "op", 10**400, True), ValueError, "duration_ms"),
                             (("c", "op", 1.0, 1), TypeError, "success")):
        for m in (mon, local):
            with pytest.raises(error, match=word):
                m.record(*bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="error_type"):
        mon.record("c", "op", 1.0, False, error_type="")
    with pytest.raises(ValueError, match="component.*63 bytes"):
        mon.record("x" * 64, "op", 1.0, True)
    with pytest.raises(ValueError, match="operation.*UTF-8"):
        mon.record("c", "\ud800", 1.0, True)
    with pytest.raises(ValueError, match="kind.*63 bytes"):
        mon.record_event("k" * 64, "c")
    mon.record("é" * 31, "op", 1.0, True)  # 62 bytes: fits
    assert mon.stats()["requests"] == 1
    assert mon.stats()["overflow"] == {"records": 0, "events": 0, "interrupted": 0}


def test_a_parameter_word_past_the_fields_is_a_region_error(tmp_path: Path) -> None:
    # A damaged directory entry whose unused parameter word is set: attaching
    # names no field (the table has none there) and raises RegionError.
    path = tmp_path / "r"
    region = resil.SharedRegion(path, size=4 * MB)
    resil.RateLimiter(5, name="a", shared=region)
    resil.Monitor(60.0, max_components=1, shared=region)
    region.close()
    data = bytearray(path.read_bytes())
    entry, size = 128, 4 + 4 + 64 + 20 * 8 + 8 + 8  # the directory's first entry
    for i, word in ((0, 10), (1, 19)):  # the limiter's, then the monitor's
        data[entry + i * size + 72 + 8 * word] = 1
    path.write_bytes(bytes(data))
    region = resil.SharedRegion(path)
    with pytest.raises(resil.RegionError, match="rate limiter 'a' holds a parameter no"):
        resil.RateLimiter(5, name="a", shared=region)
    with pytest.raises(resil.RegionError, match="monitor 'monitor' holds a parameter no"):
        resil.Monitor(60.0, max_components=1, shared=region)


def test_threads_recording_into_two_handles_lose_nothing(tmp_path: Path) -> None:
    # Threads that trade the interpreter every 10 us, through two handles
    # on one region file: every record and event is counted once.
    a = _monitor(resil.SharedRegion(tmp_path / "r", size=8 * MB))
    b = _monitor(resil.SharedRegion(tmp_path / "r"))

    def work(i: int) -> None:
        mon = (a, b)[i % 2]
        for k in range(1500):
            mon.record(workers.COMPONENTS[k % 3], "op", float(k % 50), k % 5 != 0,
                       error_type="E" if k % 10 == 0 else None)
            if k % 3 == 0:
                mon.record_event("retry", workers.COMPONENTS[i % 3])

    run_threads(work, 4)
    for mon in (a, b):
        st = mon.stats()
        assert st["requests"] == 6000 and st["failures"] == 4 * 300
        assert st["events"] == {"retry": 4 * 500}
        assert mon.dashboard()["component_performance"]["db"]["errors_by_type"] == \
            {"E": 4 * 50, "error": 4 * 50}
