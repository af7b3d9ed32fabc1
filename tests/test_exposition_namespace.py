"""resil.prometheus with a namespace: the dashboard families of a Monitor
under any prefix (the names and labels a Grafana board built for them
expects), the request-duration histogram's real cumulative counts, active
connections, memory and health, all parsed back with prometheus_client."""

from __future__ import annotations

import bisect
import math
import threading
import urllib.request
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from resil import BoundedQueue, CircuitBreaker, Monitor, VirtualClock, prometheus
from resil.observe.memory import resident_bytes
from test_prometheus import samples
from tests_support import run_threads

# The families a dashboard built on the "omninode" names reads: family ->
# (type, label names of its samples; a histogram's buckets add "le").
SEED_FAMILIES = {
    "omninode_request_duration_seconds": ("histogram", {"component", "operation", "status"}),
    "omninode_requests": ("counter", {"component", "operation", "status"}),
    "omninode_errors": ("counter", {"component", "error_type"}),
    "omninode_circuit_breaker_trips": ("counter", {"component"}),
    "omninode_timeout_failures": ("counter", {"component"}),
    "omninode_retry_attempts": ("counter", {"component"}),
    "omninode_dead_letter_messages": ("counter", {"topic"}),
    "omninode_system_health_status": ("gauge", set()),
    "omninode_active_connections": ("gauge", {"service"}),
    "omninode_memory_usage_bytes": ("gauge", set()),
}


def busy_monitor(clock: VirtualClock) -> Monitor:
    m = Monitor(clock=clock)
    m.record("kafka_client", "publish_event", 150.0, True)
    m.record("kafka_client", "publish_event", 40.0, False, error_type="KafkaError")
    m.record("postgres_client", "query", 3.0, True)
    for kind, component in (("circuit_breaker_trip", "postgres_client"),
                            ("timeout", "kafka_client"), ("retry", "kafka_client"),
                            ("retry", "kafka_client"), ("dead_letter", "events.dlq"),
                            ("grace_recovery", "kafka_client")):
        m.record_event(kind, component)
    m.set_active_connections("postgres", 5)
    m.set_active_connections("kafka", 3)
    return m


# ---- names and labels ------------------------------------------------------------------
def test_omninode_namespace_gives_exactly_the_dashboard_families_and_labels() -> None:
    m = busy_monitor(VirtualClock(100.0))
    text = prometheus.exposition(m, namespace="omninode")
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    extra = {"omninode_grace_period_recoveries": ("counter", {"component"}),
             "omninode_exposition_errors": ("counter", set())}
    assert {name: f.type for name, f in fams.items()} == {
        name: kind for name, (kind, _) in {**SEED_FAMILIES, **extra}.items()}
    for name, (_, labels) in {**SEED_FAMILIES, **extra}.items():
        assert fams[name].samples, name
        for s in fams[name].samples:
            want = labels | {"le"} if s.name.endswith("_bucket") else labels
            assert set(s.labels) == want, (s.name, s.labels)
    got = samples(text)
    assert got[("omninode_requests_total", (("component", "kafka_client"),
                                            ("operation", "publish_event"),
                                            ("status", "error")))] == 1
    assert got[("omninode_errors_total", (("component", "kafka_client"),
                                          ("error_type", "KafkaError")))] == 1
    assert got[("omninode_circuit_breaker_trips_total",
                (("component", "postgres_client"),))] == 1
    assert got[("omninode_timeout_failures_total", (("component", "kafka_client"),))] == 1
    assert got[("omninode_retry_attempts_total", (("component", "kafka_client"),))] == 2
    assert got[("omninode_dead_letter_messages_total", (("topic", "events.dlq"),))] == 1
    assert got[("omninode_active_connections", (("service", "kafka"),))] == 3
    assert got[("omninode_active_connections", (("service", "postgres"),))] == 5
    # 1 error in 3 requests: 33 % >= twice the 5 % threshold
    assert got[("omninode_system_health_status", ())] == 2


def test_every_family_starts_with_the_namespace() -> None:
    clock = VirtualClock(100.0)
    breaker = CircuitBreaker("db", clock=clock)
    q = BoundedQueue(4)
    for ns in ("omninode", "a:b_1", "_", ":"):
        text = prometheus.exposition(breaker, ("orders", q), busy_monitor(clock), namespace=ns)
        names = [f.name for f in text_string_to_metric_families(text)]
        assert len(names) > 20
        assert all(n.startswith(ns + "_") for n in names), (ns, names)
        assert samples(text)[(f"{ns}_circuit_breaker_state", (("endpoint", "db"),))] == 0


def test_the_default_namespace_is_resil() -> None:
    clock = VirtualClock(100.0)
    breaker = CircuitBreaker("db", clock=clock)
    m = busy_monitor(clock)

    def without_memory(text: str) -> str:  # the resident set moves between reads
        return "".join(line for line in text.splitlines(keepends=True)
                       if not line.startswith(("resil_memory", "omninode_memory")))

    text = without_memory(prometheus.exposition(breaker, m))
    assert "resil_memory_usage_bytes gauge" in text
    assert text == without_memory(prometheus.exposition(breaker, m, namespace="resil"))
    renamed = without_memory(prometheus.exposition(breaker, m, namespace="omninode"))
    assert text.replace("# HELP resil_", "# HELP omninode_").replace(
        "# TYPE resil_", "# TYPE omninode_").replace("\nresil_", "\nomninode_") == renamed


@pytest.mark.parametrize("bad", [None, b"resil", 1, ["resil"], True])
def test_a_namespace_of_the_wrong_type_is_refused(bad: Any) -> None:
    for call in (lambda: prometheus.exposition(namespace=bad),
                 lambda: prometheus.Collector(namespace=bad),
                 lambda: prometheus.serve(0, namespace=bad)):
        with pytest.raises(TypeError, match="namespace must be a str"):
            call()


@pytest.mark.parametrize("bad", ["", "1abc", "a-b", "a b", "é", "a\n", "a.b", "omninode_\x00",
                                 "{", "a\u0661"])
def test_a_namespace_that_is_not_a_metric_name_is_refused(bad: str) -> None:
    for call in (lambda: prometheus.exposition(namespace=bad),
                 lambda: prometheus.Collector(namespace=bad),
                 lambda: prometheus.serve(0, namespace=bad)):
        with pytest.raises(ValueError, match=r"namespace must be a Prometheus metric name"):
            call()


def test_a_str_subclass_namespace_is_written_as_its_value() -> None:
    class Sly(str):
        def __str__(self) -> str:
            return "bad name{"

        def __format__(self, spec: str) -> str:
            return "bad name{"

    text = prometheus.exposition(Monitor(), CircuitBreaker("db"), namespace=Sly("omninode"))
    names = [f.name for f in text_string_to_metric_families(text)]
    assert names and all(n.startswith("omninode_") for n in names)
    registry = CollectorRegistry()
    registry.register(prometheus.Collector(Monitor(), namespace=Sly("omninode")))
    assert "bad name" not in generate_latest(registry).decode()


# ---- the request-duration histogram --------------------------------------------------------
DURATIONS_MS = [0.0, 0.5, 1.0, 1.0000001, 2.5, 7.0, 100.0, 100.5, 4999.9, 5000.0, 59999.0,
                60000.0, 60000.1, 1e9, 1e12]


def test_histogram_buckets_are_the_cumulative_counts_of_what_was_recorded() -> None:
    clock = VirtualClock(100.0)
    m = Monitor(clock=clock)
    for ms in DURATIONS_MS:
        m.record("api", "get", ms, True)
    m.record("api", "get", 30.0, False)
    got = samples(prometheus.exposition(m, namespace="omninode"))
    ok = (("component", "api"), ("operation", "get"), ("status", "success"))

    def bucket(le: str, labels: tuple[tuple[str, str], ...] = ok) -> float:
        return got[("omninode_request_duration_seconds_bucket",
                    (labels[0], ("le", le), *labels[1:]))]

    assert Monitor.DURATION_BUCKETS == (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                        0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
    previous = 0.0
    for bound in Monitor.DURATION_BUCKETS:
        want = sum(1 for ms in DURATIONS_MS if ms <= bound * 1000)
        assert bucket(repr(bound)) == want, bound
        assert bucket(repr(bound)) >= previous
        previous = bucket(repr(bound))
    assert bucket("+Inf") == len(DURATIONS_MS)
    assert got[("omninode_request_duration_seconds_count", ok)] == len(DURATIONS_MS)
    assert got[("omninode_request_duration_seconds_sum", ok)] == pytest.approx(
        sum(DURATIONS_MS) / 1000, rel=1e-12)
    bad = (("component", "api"), ("operation", "get"), ("status", "error"))
    assert bucket("0.025", bad) == 0 and bucket("0.05", bad) == 1 and bucket("+Inf", bad) == 1
    assert got[("omninode_requests_total", ok)] == len(DURATIONS_MS)


def test_every_bucket_edge_lands_on_its_side() -> None:
    # Each bound, the float just below and just above it, and the ends:
    # a duration equal to a bound is in that bound's bucket (le is <=).
    durations = [0.0, 1e-300, 1e12]
    for bound in Monitor.DURATION_BUCKETS:
        ms = bound * 1000
        assert ms / 1000 == bound  # the bounds are exact in both units
        durations += [math.nextafter(ms, 0.0), ms, math.nextafter(ms, math.inf)]
    bounds_ms = [b * 1000 for b in Monitor.DURATION_BUCKETS]
    for ms in durations:
        m = Monitor(clock=VirtualClock(100.0))
        m.record("api", "get", ms, True)
        got = samples(prometheus.exposition(m))
        first = bisect.bisect_left(bounds_ms, ms)  # the first bound >= ms
        for i, bound in enumerate(Monitor.DURATION_BUCKETS):
            le = (("component", "api"), ("le", repr(bound)), ("operation", "get"),
                  ("status", "success"))
            assert got[("resil_request_duration_seconds_bucket", le)] == (i >= first), (ms, bound)


def test_histogram_counts_never_go_down_when_the_window_passes() -> None:
    # Prometheus reads a histogram as counters: it must not forget what the
    # monitor's retention window forgets.
    clock = VirtualClock(100.0)
    m = Monitor(60.0, slots=6, clock=clock)
    m.record("api", "get", 20.0, True)
    m.record("api", "get", 700.0, True)
    clock.advance(3600.0)
    assert m.dashboard()["system_health"]["total_requests"] == 0
    m.record("api", "get", 20.0, True)
    got = samples(prometheus.exposition(m))
    ok = (("component", "api"), ("operation", "get"), ("status", "success"))
    assert got[("resil_request_duration_seconds_count", ok)] == 3
    assert got[("resil_request_duration_seconds_bucket", (ok[0], ("le", "0.025"), *ok[1:]))] == 2
    assert got[("resil_request_duration_seconds_bucket", (ok[0], ("le", "1.0"), *ok[1:]))] == 3
    assert got[("resil_request_duration_seconds_sum", ok)] == pytest.approx(0.74)


def test_a_refused_record_counts_in_no_bucket() -> None:
    m = Monitor(clock=VirtualClock(100.0))
    m.record("api", "get", 1.0, True)
    before = prometheus.exposition(m)
    for bad in (float("nan"), float("inf"), -1.0, 1e12 * 2, 10**400):
        with pytest.raises((TypeError, ValueError, OverflowError)):
            m.record("api", "get", bad, True)
    assert prometheus.exposition(m) == before


def test_collector_gives_the_same_families_and_samples() -> None:
    clock = VirtualClock(100.0)
    sources = (CircuitBreaker("db", clock=clock), ("orders", BoundedQueue(4)), busy_monitor(clock))
    registry = CollectorRegistry()
    registry.register(prometheus.Collector(*sources, namespace="omninode"))
    via_client_text = generate_latest(registry).decode()
    ours_text = prometheus.exposition(*sources, namespace="omninode")
    via_client = {k: v for k, v in samples(via_client_text).items()
                  if not k[0].endswith("_created")}
    ours = samples(ours_text)
    assert via_client.keys() == ours.keys()
    for key, value in ours.items():
        if key[0] in ("omninode_queue_oldest_age_seconds", "omninode_memory_usage_bytes"):
            continue  # read again at each scrape
        assert via_client[key] == pytest.approx(value, rel=1e-12), key
    types = {f.name: f.type for f in text_string_to_metric_families(via_client_text)}
    assert types["omninode_request_duration_seconds"] == "histogram"


def test_serve_uses_the_namespace() -> None:
    m = busy_monitor(VirtualClock(100.0))
    server = prometheus.serve(0, sources=[m], namespace="omninode")
    try:
        with urllib.request.urlopen(server.url, timeout=10) as response:
            body = response.read().decode()
    finally:
        server.shutdown()
    names = {f.name for f in text_string_to_metric_families(body)}
    assert set(SEED_FAMILIES) <= names
    assert not any(n.startswith("resil_") for n in names)


# ---- active connections, memory, health -----------------------------------------------------
def test_active_connections_sum_in_the_dashboard_and_one_sample_per_service() -> None:
    m = Monitor(clock=VirtualClock(100.0))
    assert m.dashboard()["system_health"]["active_connections"] == 0
    m.set_active_connections("postgres", 20)
    m.set_active_connections("kafka", 5)
    assert m.dashboard()["system_health"]["active_connections"] == 25
    m.set_active_connections("postgres", 2)  # the last value stands
    m.set_active_connections("kafka", 0)
    assert m.dashboard()["system_health"]["active_connections"] == 2
    got = samples(prometheus.exposition(m))
    assert got[("resil_active_connections", (("service", "postgres"),))] == 2
    assert got[("resil_active_connections", (("service", "kafka"),))] == 0
    odd = 'a "quoted"\\back\nslash \udc80'  # escaped, a lone surrogate included
    m.set_active_connections(odd, 4)
    assert samples(prometheus.exposition(m))[
        ("resil_active_connections", (("service", odd.replace("\udc80", "\\udc80")),))] == 4
    big = 2**63 - 1
    m.set_active_connections("huge", big)
    text = prometheus.exposition(m)
    assert f'resil_active_connections{{service="huge"}} {big}\n' in text
    assert m.dashboard()["system_health"]["active_connections"] == big + 6


@pytest.mark.parametrize("service, n, error, match", [
    (None, 1, TypeError, "service must be a non-empty str"),
    (b"db", 1, TypeError, "service must be a non-empty str"),
    ("", 1, ValueError, "service must be a non-empty str"),
    ("db", True, TypeError, r"n must be an int in \[0, 2\*\*63 - 1\]"),
    ("db", 1.0, TypeError, r"n must be an int"),
    ("db", "1", TypeError, r"n must be an int"),
    ("db", -1, ValueError, r"n must be an int in \[0, 2\*\*63 - 1\], got -1"),
    ("db", 2**63, ValueError, r"n must be an int in \[0, 2\*\*63 - 1\]"),
    pytest.param("db", 10**400, ValueError, r"got an int of 1329 bits", id="10**400"),
])
def test_set_active_connections_checks_its_arguments(service: Any, n: Any, error: type,
                                                     match: str) -> None:
    m = Monitor(clock=VirtualClock(100.0))
    m.set_active_connections("db", 7)
    with pytest.raises(error, match=match):
        m.set_active_connections(service, n)
    assert m.dashboard()["system_health"]["active_connections"] == 7


def test_set_active_connections_from_many_threads() -> None:
    m = Monitor(clock=VirtualClock(100.0))
    errors: list[BaseException] = []
    stop = threading.Event()

    def scraper() -> None:
        try:
            while not stop.is_set():
                samples(prometheus.exposition(m))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def setter(i: int) -> None:
        for n in range(300):
            m.set_active_connections(f"svc{i}", n)

    scrape = threading.Thread(target=scraper)
    scrape.start()
    try:
        run_threads(setter, 6)
    finally:
        stop.set()
        scrape.join()
    assert not errors
    assert m.dashboard()["system_health"]["active_connections"] == 6 * 299
    got = samples(prometheus.exposition(m))
    assert all(got[("resil_active_connections", (("service", f"svc{i}"),))] == 299
               for i in range(6))


def test_memory_usage_bytes_is_the_resident_set_once_per_exposition() -> None:
    a, b = Monitor(), Monitor()
    got = samples(prometheus.exposition(("api", a), ("worker", b), namespace="omninode"))
    memory = [k for k in got if k[0] == "omninode_memory_usage_bytes"]
    assert memory == [("omninode_memory_usage_bytes", ())]
    value = got[memory[0]]
    now = resident_bytes()
    assert value > 1 << 20 and abs(value - now) < 256 << 20
    # not a monitor's figure: no monitor, no family
    assert "memory_usage_bytes" not in prometheus.exposition(BoundedQueue(2))


def test_system_health_status_follows_health() -> None:
    m = Monitor(alert_error_rate=5.0, alert_response_ms=5000.0, clock=VirtualClock(100.0))

    def status() -> float:
        return samples(prometheus.exposition(m, namespace="omninode"))[
            ("omninode_system_health_status", ())]

    assert m.health() == "healthy" and status() == 0
    for _ in range(18):
        m.record("db", "q", 1.0, True)
    m.record("db", "q", 1.0, False)  # 1 in 19: 5.3 %
    assert m.health() == "degraded" and status() == 1
    m.record("db", "q", 1.0, False)  # 2 in 20: 10 %
    assert m.health() == "critical" and status() == 2
    assert m.dashboard()["system_health"]["status"] == "critical"


def test_dead_letters_are_counted_per_topic() -> None:
    m = Monitor(clock=VirtualClock(100.0))
    m.record_event("dead_letter", "orders")
    m.record_event("dead_letter", "orders")
    m.record_event("dead_letter", "payments")
    got = samples(prometheus.exposition(m, namespace="omninode"))
    assert got[("omninode_dead_letter_messages_total", (("topic", "orders"),))] == 2
    assert got[("omninode_dead_letter_messages_total", (("topic", "payments"),))] == 1
