"""resil.prometheus: the text format parses and round-trips, the
prometheus_client bridge gives the same samples, and /metrics is served."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import resil
from resil import (
    BoundedQueue,
    BreakerGroup,
    CircuitBreaker,
    DeadLetterQueue,
    EventBus,
    EventEmitter,
    Monitor,
    PartitionedQueue,
    Supervisor,
    TimeoutManager,
    VirtualClock,
    prometheus,
    retry,
)

WEIRD = 'a "quoted"\\back\nslash ünï'


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in out, key
            out[key] = s.value
    return out


def families(text: str) -> dict[str, str]:
    return {fam.name: fam.type for fam in text_string_to_metric_families(text)}


def all_sources() -> tuple[Any, ...]:
    clock = VirtualClock(1000.0)
    b1 = CircuitBreaker("payments", failure_threshold=2, clock=clock)
    b1.record_success(latency_ms=12.5)
    b1.record_failure()
    b1.record_failure()  # opens
    b2 = CircuitBreaker(WEIRD, clock=clock)
    group = BreakerGroup(clock=clock)
    group["rpc1"].record_success(latency_ms=3.0)
    group["rpc2"].record_failure()
    policy = retry(retries=2, backoff=resil.Backoff(0.0, 1.0, max_delay=0.0), name="db")
    calls = {"n": 0}

    @policy
    def flaky() -> int:
        calls["n"] += 1
        if calls["n"] < 3:
            raise ConnectionError
        return 1

    flaky()
    tm = TimeoutManager()
    q = BoundedQueue(10)
    q.put_nowait(1)
    pq = PartitionedQueue()
    dlq = DeadLetterQueue()
    dlq.put({"x": 1}, RuntimeError("e"), source="s")
    bus = EventBus()
    bus.subscribe(WEIRD, lambda e: None)
    asyncio.run(bus.publish(WEIRD, {}))

    async def sink(e: Any) -> None:
        pass

    emitter = EventEmitter(sink)
    monitor = Monitor(clock=clock)
    monitor.record("kafka", "publish", 120.0, True)
    monitor.record("kafka", "publish", 80.0, False, error_type="KafkaError")
    monitor.record_event("circuit_breaker_trip", "kafka")
    monitor.record_event("retry", "kafka")
    monitor.record_event("custom", "kafka")
    sup = Supervisor()
    return (b1, b2, group, policy, ("timeouts", tm), ("orders", q), ("parts", pq),
            ("failed", dlq), ("main", bus), ("ws", emitter), monitor, sup)


def test_exposition_parses_and_round_trips_every_family_and_label() -> None:
    sources = all_sources()
    text = prometheus.exposition(*sources)
    got = samples(text)
    fams = families(text)
    for name, kind in {
        "resil_circuit_breaker_state": "gauge",
        "resil_circuit_breaker_failures": "counter",
        "resil_circuit_breaker_latency_ms": "gauge",
        "resil_circuit_breaker_last_opened_timestamp_seconds": "gauge",
        "resil_circuit_breaker_success_ratio": "gauge",
        "resil_circuit_breaker_health_score": "gauge",
        "resil_retries": "counter",
        "resil_queue_depth": "gauge",
        "resil_emitter_emitted": "counter",
        "resil_bus_published": "counter",
        "resil_dead_letters": "gauge",
        "resil_tasks_active": "gauge",
        "resil_request_duration_seconds": "histogram",
        "resil_requests": "counter",
        "resil_errors": "counter",
        "resil_circuit_breaker_trips": "counter",
        "resil_retry_attempts": "counter",
        "resil_system_health_status": "gauge",
    }.items():
        assert fams.get(name) == kind, (name, fams.get(name))
    ep = lambda n: (("endpoint", n),)  # noqa: E731
    assert got[("resil_circuit_breaker_state", ep("payments"))] == 2  # OPEN
    assert got[("resil_circuit_breaker_failures_total", ep("payments"))] == 2
    assert got[("resil_circuit_breaker_state", ep(WEIRD))] == 0  # escaped and back
    assert ("resil_circuit_breaker_last_opened_timestamp_seconds", ep(WEIRD)) not in got
    assert got[("resil_circuit_breaker_latency_ms", ep("rpc1"))] == 3.0
    assert got[("resil_circuit_breaker_failures_total", ep("rpc2"))] == 1
    assert got[("resil_retries_total", (("policy", "db"),))] == 2
    assert got[("resil_queue_depth", (("queue", "orders"),))] == 1
    assert got[("resil_dead_letters", (("queue", "failed"),))] == 1
    assert got[("resil_bus_events_total", (("bus", "main"), ("event_type", WEIRD)))] == 1
    assert got[("resil_requests_total", (("component", "kafka"), ("operation", "publish"),
                                         ("status", "error")))] == 1
    assert got[("resil_errors_total", (("component", "kafka"), ("error_type", "KafkaError")))] == 1
    ok = (("component", "kafka"), ("operation", "publish"), ("status", "success"))
    bad = (("component", "kafka"), ("operation", "publish"), ("status", "error"))
    assert got[("resil_request_duration_seconds_count", ok)] == 1
    assert got[("resil_request_duration_seconds_sum", ok)] == 0.12
    assert got[("resil_request_duration_seconds_count", bad)] == 1
    assert got[("resil_request_duration_seconds_sum", bad)] == 0.08
    assert got[("resil_request_duration_seconds_bucket", (ok[0], ("le", "0.1"), *ok[1:]))] == 0
    assert got[("resil_request_duration_seconds_bucket", (ok[0], ("le", "0.25"), *ok[1:]))] == 1
    assert got[("resil_request_duration_seconds_bucket", (bad[0], ("le", "0.1"), *bad[1:]))] == 1
    assert got[("resil_circuit_breaker_trips_total", (("component", "kafka"),))] == 1
    assert got[("resil_events_total", (("component", "kafka"), ("kind", "custom")))] == 1
    assert got[("resil_system_health_status", ())] == 2  # 50 % errors: critical
    # every breaker value equals its stats()
    b1 = sources[0]
    st = b1.stats()
    assert got[("resil_circuit_breaker_last_opened_timestamp_seconds", ep("payments"))] == \
        st["last_opened"]
    assert got[("resil_circuit_breaker_success_ratio", ep("payments"))] == st["success_rate"]
    assert got[("resil_circuit_breaker_health_score", ep("payments"))] == st["health_score"]


def test_label_values_are_escaped() -> None:
    text = prometheus.exposition(CircuitBreaker(WEIRD), (WEIRD, BoundedQueue(4)))
    assert 'endpoint="a \\"quoted\\"\\\\back\\nslash ünï"' in text
    assert 'queue="a \\"quoted\\"\\\\back\\nslash ünï"' in text
    assert "\nslash" not in text.replace("\\nslash", "")


def test_collector_gives_the_same_samples() -> None:
    sources = all_sources()
    registry = CollectorRegistry()
    registry.register(prometheus.Collector(*sources))
    via_client = samples(generate_latest(registry).decode())
    ours = samples(prometheus.exposition(*sources))
    # prometheus_client adds a _created sample to counters and summaries
    via_client = {k: v for k, v in via_client.items() if not k[0].endswith("_created")}
    assert via_client.keys() == ours.keys()
    for key, value in ours.items():
        if key[0] == "resil_queue_oldest_age_seconds":  # real time passes between scrapes
            assert 0 < value and 0 < via_client[key] < 60
            continue
        if key[0] == "resil_memory_usage_bytes":  # the process's memory moves between scrapes
            assert value > 0 and via_client[key] == pytest.approx(value, rel=0.25)
            continue
        assert via_client[key] == pytest.approx(value, rel=1e-12), key


def test_bad_sources() -> None:
    with pytest.raises(TypeError, match="cannot export"):
        prometheus.exposition(object())
    with pytest.raises(TypeError, match="cannot export"):
        prometheus.Collector(42)
    with pytest.raises(ValueError, match="same labels"):
        prometheus.exposition(BoundedQueue(2), BoundedQueue(2))
    with pytest.raises(ValueError, match="endpoint"):
        prometheus.exposition(CircuitBreaker("x"), CircuitBreaker("x"))
    assert samples(prometheus.exposition(("a", BoundedQueue(2)), ("b", BoundedQueue(2))))


def test_a_failing_source_is_left_out_and_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    q = BoundedQueue(2)

    def broken() -> dict[str, int]:
        raise RuntimeError("stats broke")

    monkeypatch.setattr(q, "stats", broken)
    before = samples(prometheus.exposition())[("resil_exposition_errors_total", ())]
    text = prometheus.exposition(("bad", q), ("good", BoundedQueue(2)))
    got = samples(text)
    assert got[("resil_exposition_errors_total", ())] == before + 1
    assert ("resil_queue_depth", (("queue", "good"),)) in got
    assert ("resil_queue_depth", (("queue", "bad"),)) not in got


def test_serve_answers_a_real_scrape() -> None:
    breaker = CircuitBreaker("scraped")
    server = prometheus.serve(0, sources=[breaker])
    try:
        assert server.host == "127.0.0.1" and server.port > 0
        with urllib.request.urlopen(server.url, timeout=10) as response:
            body = response.read().decode()
            assert response.status == 200
            assert response.headers["Content-Type"] == prometheus.CONTENT_TYPE
        assert samples(body)[("resil_circuit_breaker_state", (("endpoint", "scraped"),))] == 0
        breaker.force_open()
        with urllib.request.urlopen(server.url, timeout=10) as response:
            assert samples(response.read().decode())[
                ("resil_circuit_breaker_state", (("endpoint", "scraped"),))] == 4
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/other", timeout=10)
        assert info.value.code == 404
        info.value.close()
    finally:
        server.shutdown()
    server.shutdown()  # idempotent
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(server.url, timeout=2)


def test_serve_arguments() -> None:
    with pytest.raises(ValueError, match="port"):
        prometheus.serve(70000)
    with pytest.raises(TypeError, match="cannot export"):
        prometheus.serve(0, sources=[object()])


def test_named_monitors_and_supervisors_are_told_apart() -> None:
    a, b = Monitor(), Monitor()
    a.record("db", "q", 1.0, True)
    b.record("db", "q", 2.0, False)
    text = prometheus.exposition(("api", a), ("worker", b), ("api", Supervisor()),
                                 ("worker", Supervisor()))
    got = samples(text)
    assert got[("resil_requests_total", (("component", "db"), ("monitor", "api"),
                                         ("operation", "q"), ("status", "success")))] == 1
    assert got[("resil_system_health_status", (("monitor", "worker"),))] == 2
    assert got[("resil_tasks_active", (("supervisor", "api"),))] == 0
    with pytest.raises(ValueError, match="same labels"):
        prometheus.exposition(Monitor(), Monitor())


def test_scraping_from_another_thread_while_the_bus_changes() -> None:
    import threading

    bus = EventBus()
    stop = threading.Event()
    failures: list[BaseException] = []
    before = samples(prometheus.exposition())[("resil_exposition_errors_total", ())]

    def scrape() -> None:
        while not stop.is_set():
            try:
                prometheus.exposition(bus)
            except BaseException as exc:  # pragma: no cover - reported below
                failures.append(exc)

    async def main() -> None:
        for i in range(3000):
            bus.subscribe(f"type-{i}", lambda e: None)
            await bus.publish(f"type-{i}", {}, publisher=f"p{i}")
            if i % 50 == 0:
                await asyncio.sleep(0)

    thread = threading.Thread(target=scrape)
    thread.start()
    try:
        asyncio.run(main())
    finally:
        stop.set()
        thread.join()
    assert failures == []
    after = samples(prometheus.exposition())[("resil_exposition_errors_total", ())]
    assert after == before  # no scrape had to leave the bus out
