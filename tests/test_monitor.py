"""Monitor: windowed health at the documented thresholds,
alerts, the dashboard document and its percentiles."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resil import CircuitBreaker, Monitor, VirtualClock


def exact(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    rank = max(1, math.ceil(q * len(ordered) - 1e-9))
    return ordered[rank - 1]


def fill(m: Monitor, ok: int, failed: int, ms: float = 10.0, component: str = "db") -> None:
    for _ in range(ok):
        m.record(component, "query", ms, True)
    for _ in range(failed):
        m.record(component, "query", ms, False, error_type="TimeoutError")


def test_health_moves_healthy_degraded_critical_on_error_rate() -> None:
    clock = VirtualClock()
    m = Monitor(retention=60.0, alert_error_rate=5.0, alert_response_ms=100.0, slots=6,
                clock=clock)
    assert m.health() == "healthy"  # no requests yet
    fill(m, 96, 4)
    assert m.health() == "healthy"  # 4.0 %
    fill(m, 0, 1)  # 5 of 101 = 4.95 %
    assert m.health() == "healthy"
    fill(m, 0, 0)
    m.record("db", "query", 10.0, True)
    m.record("db", "query", 10.0, False)  # 6 of 103 = 5.8 %
    assert m.health() == "degraded" and m.health("db") == "degraded"
    fill(m, 0, 6)  # 12 of 109 = 11.0 %
    assert m.health() == "critical"
    clock.advance(60.0)  # everything aged out of the window
    assert m.health() == "healthy"


def test_error_rate_thresholds_are_inclusive() -> None:
    clock = VirtualClock()
    m = Monitor(retention=60.0, alert_error_rate=5.0, alert_response_ms=1e9, clock=clock)
    fill(m, 95, 5)  # exactly 5 %
    assert m.health() == "degraded"
    m2 = Monitor(retention=60.0, alert_error_rate=5.0, alert_response_ms=1e9, clock=clock)
    fill(m2, 90, 10)  # exactly 10 % = twice the threshold
    assert m2.health() == "critical"


def test_health_on_mean_duration() -> None:
    clock = VirtualClock()
    m = Monitor(retention=10.0, alert_error_rate=5.0, alert_response_ms=100.0, slots=10,
                clock=clock)
    fill(m, 10, 0, ms=99.0)
    assert m.health() == "healthy"
    fill(m, 10, 0, ms=101.0)  # mean 100.0
    assert m.health() == "degraded"
    clock.advance(5.0)
    fill(m, 20, 0, ms=350.0)  # mean (990 + 1010 + 7000) / 40 = 225
    assert m.health() == "critical"
    clock.advance(6.0)  # the first 20 (at t=0) aged out; the 350 ms ones remain
    assert m.health() == "critical"
    clock.advance(5.0)
    assert m.health() == "healthy"


def test_components_have_their_own_health() -> None:
    clock = VirtualClock()
    m = Monitor(retention=60.0, alert_error_rate=5.0, alert_response_ms=100.0, clock=clock)
    fill(m, 100, 0, component="cache")
    fill(m, 5, 5, component="db")
    assert m.health("cache") == "healthy" and m.health("db") == "critical"
    assert m.health() == "healthy"  # the system counts all requests: 5 of 110 = 4.5 %
    fill(m, 0, 1, component="db")
    assert m.health() == "degraded"  # 6 of 111 = 5.4 %
    with pytest.raises(KeyError):
        m.health("nope")


def test_alerts_have_severities() -> None:
    clock = VirtualClock()
    m = Monitor(retention=60.0, alert_error_rate=5.0, alert_response_ms=100.0, clock=clock)
    fill(m, 100, 0, ms=150.0, component="api")
    fill(m, 8, 2, component="db")
    m.record_event("circuit_breaker_trip", "db")
    alerts = m.alerts()
    by_key = {(a["component"], a["metric"]): a for a in alerts}
    assert by_key[("api", "average_response_time_ms")]["severity"] == "warning"
    assert by_key[("db", "error_rate_percent")]["severity"] == "critical"
    assert by_key[("db", "error_rate_percent")]["threshold"] == 10.0
    assert by_key[(None, "circuit_breaker_trip")]["value"] == 1
    assert ("db", "average_response_time_ms") not in by_key
    assert all(a["message"] for a in alerts)


def test_dashboard_document() -> None:
    clock = VirtualClock()
    m = Monitor(clock=clock)
    samples = [float(i) for i in range(1, 1001)]
    for i, ms in enumerate(samples):
        m.record("kafka_client", "publish_event", ms, i % 50 != 0,
                 error_type=None if i % 50 else "KafkaError")
    m.record_event("timeout", "kafka_client")
    m.record_event("retry", "kafka_client")
    m.record_event("retry", "kafka_client")
    m.record_event("dead_letter", "kafka_client")
    m.record_event("grace_recovery", "kafka_client")
    m.record_event("custom_thing", "kafka_client")
    clock.advance(3600)
    d = m.dashboard()
    assert set(d) == {"system_health", "resilience_metrics", "component_performance",
                      "alerts", "generated_at"}
    sh = d["system_health"]
    assert sh["status"] == "healthy" and sh["uptime_seconds"] == 3600.0
    assert sh["error_rate_percent"] == 2.0 and sh["total_requests"] == 1000
    assert sh["average_response_time_ms"] == 500.5
    assert d["resilience_metrics"] == {
        "circuit_breaker_trips": 0, "timeout_failures": 1, "retry_attempts": 2,
        "dead_letter_queue_messages": 1, "grace_period_recoveries": 1,
        "other": {"custom_thing": 1}}
    comp = d["component_performance"]["kafka_client"]
    assert comp["total_requests"] == 1000 and comp["error_count"] == 20
    assert comp["success_rate_percent"] == 98.0
    assert comp["errors_by_type"] == {"KafkaError": 20}
    for key, q in (("p50_duration_ms", 0.5), ("p95_duration_ms", 0.95), ("p99_duration_ms", 0.99)):
        truth = exact(samples, q)
        assert abs(comp[key] - truth) <= 0.01 * truth, (key, comp[key], truth)
    assert d["generated_at"].endswith("Z")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=0.001, max_value=600_000.0), min_size=1, max_size=400))
def test_dashboard_percentiles_within_one_percent(samples: list[float]) -> None:
    m = Monitor(clock=VirtualClock())
    for ms in samples:
        m.record("c", "op", ms, True)
    comp = m.dashboard()["component_performance"]["c"]
    for key, q in (("p50_duration_ms", 0.5), ("p95_duration_ms", 0.95), ("p99_duration_ms", 0.99)):
        truth = exact(samples, q)
        # rounding to 3 decimals in the document adds at most 0.0005 ms
        assert abs(comp[key] - truth) <= 0.01 * truth + 0.0005 + 1e-6, (key, comp[key], truth)


def test_watch_records_breaker_trips() -> None:
    clock = VirtualClock()
    m = Monitor(clock=clock)
    b = CircuitBreaker("payments", failure_threshold=2, clock=clock)
    m.watch(b)
    b.record_failure()
    b.record_failure()
    b.force_open()
    assert m.dashboard()["resilience_metrics"]["circuit_breaker_trips"] == 2
    with pytest.raises(TypeError):
        m.watch(object())


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="retention"):
        Monitor(retention=0)
    with pytest.raises(ValueError, match="alert_error_rate"):
        Monitor(alert_error_rate=101)
    with pytest.raises(TypeError, match="alert_response_ms"):
        Monitor(alert_response_ms="5")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="slots"):
        Monitor(slots=0)
    m = Monitor()
    with pytest.raises(ValueError, match="duration_ms"):
        m.record("c", "op", -1.0, True)
    with pytest.raises(ValueError, match="duration_ms"):
        m.record("c", "op", float("nan"), True)
    with pytest.raises(ValueError, match="component"):
        m.record("", "op", 1.0, True)
    with pytest.raises(TypeError, match="kind"):
        m.record_event(3, "c")  # type: ignore[arg-type]
    assert m.dashboard()["system_health"]["total_requests"] == 0


def test_a_clock_going_back_loses_no_request() -> None:
    class Clock:
        t = 100.0

        def now(self) -> float:
            return self.t

    clock = Clock()
    m = Monitor(retention=60.0, slots=6, clock=clock)
    m.record("c", "op", 5.0, True)
    clock.t = 35.0  # an earlier slot whose place in the ring holds a newer one
    m.record("c", "op", 5.0, False)
    clock.t = 100.0
    perf = m.dashboard()["component_performance"]["c"]
    assert perf["total_requests"] == 2 and perf["error_count"] == 1


@pytest.mark.parametrize("read_at", [0.333333333, 0.333333334, 0.666666666, 0.999999998,
                                     0.999999999, 1.0, 1.1])
def test_counts_and_percentiles_agree_at_slot_edges(read_at: float) -> None:
    clock = VirtualClock()
    m = Monitor(retention=1.0, slots=3, clock=clock)
    clock.advance(0.1)
    m.record("c", "op", 42.0, False, error_type="E")
    clock.set(read_at)
    perf = m.dashboard()["component_performance"]["c"]
    if perf["total_requests"]:
        assert (perf["total_requests"], perf["error_count"]) == (1, 1)
        assert perf["p50_duration_ms"] == perf["average_duration_ms"] == pytest.approx(42.0, 0.01)
    else:
        assert perf["error_count"] == 0 and perf["p99_duration_ms"] == 0.0


def test_more_bad_arguments() -> None:
    with pytest.raises(ValueError, match="> 0"):
        Monitor(alert_error_rate=0)
    with pytest.raises(ValueError, match="> 0"):
        Monitor(alert_response_ms=0)
    m = Monitor()
    with pytest.raises(ValueError, match="duration_ms"):
        m.record("db", "op", 1e300, True)
    assert m.dashboard()["component_performance"] == {}  # nothing half-made
