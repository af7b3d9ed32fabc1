"""resil.otel: OpenTelemetry instruments, read through the SDK's in-memory reader."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk.metrics", reason="needs opentelemetry-sdk (the test extra)")

from opentelemetry.sdk.metrics import MeterProvider  # noqa: E402
from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402

import resil  # noqa: E402
from resil import otel  # noqa: E402
from tests_support import run_threads  # noqa: E402


def _provider() -> tuple[MeterProvider, InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    return MeterProvider(metric_readers=[reader]), reader


def _metrics(reader: InMemoryMetricReader) -> dict[str, Any]:
    """name -> the metric, from one collection."""
    data = reader.get_metrics_data()
    found: dict[str, Any] = {}
    if data is None:
        return found
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            assert sm.scope.name == "resil"
            for metric in sm.metrics:
                found[metric.name] = metric
    return found


def _points(metric: Any) -> dict[tuple[tuple[str, Any], ...], Any]:
    """attributes (sorted items) -> the point's value (count for histograms)."""
    out = {}
    for p in metric.data.data_points:
        key = tuple(sorted(p.attributes.items()))
        out[key] = p.count if hasattr(p, "bucket_counts") else p.value
    return out


def _key(**attrs: str) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((k.replace("_", "."), v) for k, v in attrs.items()))


def test_a_real_breaker_trip_shows_as_calls_state_and_transitions() -> None:
    provider, reader = _provider()
    clock = resil.VirtualClock()
    breaker = resil.CircuitBreaker("payments", failure_threshold=3, cooldown=10, clock=clock)
    otel.instrument(breaker, meter_provider=provider)

    @breaker
    def pay(ok: bool) -> str:
        if not ok:
            raise ConnectionError("down")
        return "paid"

    pay(True)
    pay(True)
    for _ in range(3):
        with pytest.raises(ConnectionError):
            pay(False)
    with pytest.raises(resil.CircuitOpenError):
        pay(True)

    m = _metrics(reader)
    calls = m["resil.circuit_breaker.calls"]
    assert calls.unit == "{call}" and calls.data.is_monotonic
    assert _points(calls) == {
        _key(resil_name="payments", resil_outcome="success"): 2,
        _key(resil_name="payments", resil_outcome="failure"): 3,
        _key(resil_name="payments", resil_outcome="rejected"): 1,
        _key(resil_name="payments", resil_outcome="ignored"): 0}
    state = m["resil.circuit_breaker.state"]
    assert state.unit == "1"
    states = _points(state)
    assert states[_key(resil_name="payments", resil_state="OPEN")] == 1
    assert sum(states.values()) == 1 and len(states) == len(resil.State)
    transitions = m["resil.circuit_breaker.transitions"]
    assert transitions.unit == "{transition}"
    assert _points(transitions) == {_key(resil_name="payments", resil_state="OPEN"): 1}

    clock.advance(10)
    assert pay(True) == "paid"  # HALF_OPEN probe
    points = _points(_metrics(reader)["resil.circuit_breaker.transitions"])
    assert points[_key(resil_name="payments", resil_state="HALF_OPEN")] == 1


def test_retries_timeouts_and_dead_letters_are_counted_with_names_and_units() -> None:
    provider, reader = _provider()
    clock = resil.VirtualClock()
    attempts = 0

    @resil.retry(retries=3, backoff=resil.Backoff(base=0.1, jitter="none"), clock=clock,
                 name="fetch")
    def fetch() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise ConnectionError("flaky")
        return "ok"

    manager = resil.TimeoutManager(operation_timeout=1.0, grace_period=0.0)
    dlq = resil.DeadLetterQueue(name="orders-dlq")
    otel.instrument(fetch, manager, dlq, meter_provider=provider)

    assert fetch() == "ok"

    async def slow() -> None:
        await asyncio.sleep(5)

    async def main() -> None:
        with pytest.raises(resil.OperationTimeout):
            await manager.run(slow, "charge", 1.0)

    resil.run_virtual(main())
    dlq.put({"order": 1}, "failed")
    dlq.put({"order": 2}, "failed")

    m = _metrics(reader)
    assert m["resil.retry.retries"].unit == "{retry}"
    assert _points(m["resil.retry.retries"]) == {_key(resil_name="fetch"): 2}
    assert m["resil.timeout.timeouts"].unit == "{timeout}"
    assert _points(m["resil.timeout.timeouts"]) == {_key(resil_name="charge"): 1}
    assert m["resil.dead_letters"].unit == "{letter}"
    assert _points(m["resil.dead_letters"]) == {_key(resil_name="orders-dlq"): 2}
    assert _points(m["resil.queue.depth"]) == {_key(resil_name="orders-dlq"): 2}
    assert _points(m["resil.queue.limit"]) == {_key(resil_name="orders-dlq"): 100}
    assert _points(m["resil.timeout.active"]) == {_key(resil_name="default"): 0}


def test_monitor_durations_are_a_histogram_in_seconds() -> None:
    provider, reader = _provider()
    monitor = resil.Monitor()
    otel.instrument(("api", monitor), meter_provider=provider)
    monitor.record("db", "query", 250.0, True)
    monitor.record("db", "query", 750.0, True)
    monitor.record("db", "query", 40.0, False, error_type="timeout")

    m = _metrics(reader)
    duration = m["resil.call.duration"]
    assert duration.unit == "s"
    by_attrs = {tuple(sorted(p.attributes.items())): p for p in duration.data.data_points}
    ok = by_attrs[_key(resil_name="db", resil_operation="query", resil_outcome="success")]
    assert ok.count == 2 and ok.sum == pytest.approx(1.0)
    failed = by_attrs[_key(resil_name="db", resil_operation="query", resil_outcome="failure")]
    assert failed.count == 1 and failed.sum == pytest.approx(0.04)
    assert _points(m["resil.health"]) == {_key(resil_name="api"): 2}  # 1 error in 3: critical


def test_an_emitters_queue_breaker_and_a_bus_circuit_are_wired() -> None:
    provider, reader = _provider()
    breaker = resil.CircuitBreaker("sink", failure_threshold=1)
    emitter = resil.EventEmitter(print, breaker=breaker, queue_size=8)
    bus = resil.EventBus(handler_failure_limit=1)
    otel.instrument(("events", emitter), bus, meter_provider=provider)
    breaker.force_open()

    def bad(event: Any) -> None:
        raise ValueError("handler broke")

    bus.subscribe("order", bad)

    async def main() -> None:
        await bus.publish("order", {"id": 1})

    resil.run_virtual(main())
    m = _metrics(reader)
    transitions = _points(m["resil.circuit_breaker.transitions"])
    assert transitions[_key(resil_name="sink", resil_state="FORCED_OPEN")] == 1
    assert transitions[_key(resil_name="bus:order", resil_state="FORCED_OPEN")] == 1
    assert _points(m["resil.queue.depth"]) == {_key(resil_name="events"): 0}


def test_a_breaker_group_reports_endpoints_added_later_and_sources_are_held_weakly() -> None:
    provider, reader = _provider()
    group = resil.BreakerGroup()
    otel.instrument(group, meter_provider=provider)
    group.record_success("a")
    group["b"].record_failure(None)
    calls = _points(_metrics(reader)["resil.circuit_breaker.calls"])
    assert calls[_key(resil_name="a", resil_outcome="success")] == 1
    assert calls[_key(resil_name="b", resil_outcome="failure")] == 1

    queue: resil.BoundedQueue[int] = resil.BoundedQueue(5)
    otel.instrument(("jobs", queue), meter_provider=provider)
    queue.put_nowait(1)
    assert _points(_metrics(reader)["resil.queue.depth"])[_key(resil_name="jobs")] == 1
    del queue
    gc.collect()
    depth = _metrics(reader).get("resil.queue.depth")
    assert depth is None or _key(resil_name="jobs") not in _points(depth)


def test_instrumenting_twice_reports_once() -> None:
    provider, reader = _provider()
    clock = resil.VirtualClock()
    breaker = resil.CircuitBreaker("x", failure_threshold=1, clock=clock)
    otel.instrument(breaker, meter_provider=provider)
    otel.instrument(breaker, meter_provider=provider)
    breaker.record_failure(None)
    m = _metrics(reader)
    assert _points(m["resil.circuit_breaker.transitions"]) == {
        _key(resil_name="x", resil_state="OPEN"): 1}
    assert _points(m["resil.circuit_breaker.calls"])[_key(resil_name="x",
                                                          resil_outcome="failure")] == 1


def test_prefix_names_every_instrument() -> None:
    provider, reader = _provider()
    breaker, dlq = resil.CircuitBreaker("p"), resil.DeadLetterQueue()
    otel.instrument(breaker, dlq, meter_provider=provider, prefix="shop.resil")
    names = set(_metrics(reader))
    assert names and all(n.startswith("shop.resil.") for n in names)


@pytest.mark.parametrize("kwargs, error, param", [
    ({"prefix": 3}, TypeError, "prefix"),
    ({"prefix": ""}, ValueError, "prefix"),
    ({"prefix": "1abc"}, ValueError, "prefix"),
    ({"prefix": "has space"}, ValueError, "prefix"),
    ({"meter_provider": object()}, TypeError, "meter_provider"),
])
def test_bad_arguments_raise_naming_the_parameter(kwargs: dict[str, Any], error: type,
                                                  param: str) -> None:
    with pytest.raises(error) as info:
        otel.instrument(resil.CircuitBreaker(), **kwargs)
    assert type(info.value) is error and param in str(info.value)


def test_an_unknown_source_is_refused_and_nothing_is_registered() -> None:
    provider, reader = _provider()
    with pytest.raises(TypeError, match="instrument"):
        otel.instrument(resil.CircuitBreaker("ok"), object(), meter_provider=provider)
    assert _metrics(reader) == {}


def test_the_global_provider_is_used_by_default() -> None:
    code = ("from opentelemetry import metrics\n"
            "from opentelemetry.sdk.metrics import MeterProvider\n"
            "from opentelemetry.sdk.metrics.export import InMemoryMetricReader\n"
            "import resil\n"
            "reader = InMemoryMetricReader()\n"
            "metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))\n"
            "b = resil.CircuitBreaker('g')\n"
            "resil.otel.instrument(b)\n"
            "b.record_success(None)\n"
            "names = {m.name for rm in reader.get_metrics_data().resource_metrics\n"
            "         for sm in rm.scope_metrics for m in sm.metrics}\n"
            "assert 'resil.circuit_breaker.calls' in names, names\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_without_opentelemetry_the_import_error_names_the_extra() -> None:
    code = ("import sys\n"
            "sys.modules['opentelemetry'] = None\n"
            "import resil\n"
            "try:\n"
            "    resil.otel\n"
            "except ImportError as exc:\n"
            "    assert 'pip install resil[otel]' in str(exc), exc\n"
            "else:\n"
            "    raise SystemExit('no ImportError')\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_retries_from_many_threads_are_all_counted() -> None:
    import threading

    provider, reader = _provider()
    clock = resil.VirtualClock()
    local = threading.local()

    @resil.retry(retries=2, backoff=resil.Backoff(base=0.0, jitter="none"), clock=clock,
                 name="hammer")
    def flaky() -> None:
        local.n = getattr(local, "n", 0) + 1
        if local.n % 2:
            raise ConnectionError("odd attempt")

    otel.instrument(flaky, meter_provider=provider)

    def worker(_: int) -> None:
        for _ in range(300):
            flaky()

    run_threads(worker, 8)
    assert _points(_metrics(reader)["resil.retry.retries"]) == {_key(resil_name="hammer"): 2400}


class _BrokenQueue(resil.BoundedQueue[int]):
    def stats(self) -> dict[str, Any]:
        raise RuntimeError("stats broke")


def test_a_source_whose_stats_raise_is_logged_and_left_out(caplog: pytest.LogCaptureFixture) -> None:
    provider, reader = _provider()
    broken, good = _BrokenQueue(4), resil.BoundedQueue(4)
    otel.instrument(("broken", broken), ("good", good), meter_provider=provider)
    with caplog.at_level("ERROR", logger="resil.otel"):
        depth = _points(_metrics(reader)["resil.queue.depth"])
    assert depth == {_key(resil_name="good"): 0}
    assert "left out" in caplog.text
