"""resil.otel for the bulkhead and the rate limiter: each instrument, read
through the SDK's in-memory reader after a known sequence of calls."""

from __future__ import annotations

import asyncio
import gc
import re
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk.metrics", reason="needs opentelemetry-sdk (the test extra)")

from opentelemetry.sdk.metrics.export import InMemoryMetricReader  # noqa: E402

import resil  # noqa: E402
from resil import otel  # noqa: E402
from test_otel import _metrics, _points, _provider  # noqa: E402
from tests_support import run_threads  # noqa: E402

Key = tuple[tuple[str, Any], ...]

BULKHEAD_INSTRUMENTS = {
    "bulkhead.calls": "{call}", "bulkhead.active": "{call}", "bulkhead.queued": "{call}",
    "bulkhead.max_concurrent": "{call}", "bulkhead.max_queue": "{call}"}
LIMITER_INSTRUMENTS = {
    "rate_limiter.decisions": "{decision}", "rate_limiter.keys": "{key}",
    "rate_limiter.rate": "{token}/s", "rate_limiter.burst": "{token}"}


def _key(name: str, outcome: str | None = None) -> Key:
    attrs = {"resil.name": name}
    if outcome is not None:
        attrs["resil.outcome"] = outcome
    return tuple(sorted(attrs.items()))


def _values(reader: InMemoryMetricReader, name: str, prefix: str = "resil") -> dict[str, Any]:
    """{instrument (without the prefix): its points for the component ``name``}, one
    collection: a single value for a gauge, {outcome: value} for a counter."""
    out: dict[str, Any] = {}
    for full, metric in _metrics(reader).items():
        key = full.removeprefix(prefix + ".")
        points = {dict(k).get("resil.outcome"): v for k, v in _points(metric).items()
                  if dict(k)["resil.name"] == name}
        if not points:
            continue
        out[key] = points[None] if list(points) == [None] else points
    return out


# ---- bulkhead ------------------------------------------------------------------------------
def test_bulkhead_calls_by_outcome_and_its_gauges_follow_a_known_sequence() -> None:
    provider, reader = _provider()
    clock = resil.VirtualClock()
    bulkhead = resil.Bulkhead("db", max_concurrent=2, max_queue=3, queue_timeout=1.0,
                              clock=clock)
    otel.instrument(bulkhead, meter_provider=provider)
    metrics = _metrics(reader)
    for name, unit in BULKHEAD_INSTRUMENTS.items():
        assert metrics[f"resil.{name}"].unit == unit, name
    assert metrics["resil.bulkhead.calls"].data.is_monotonic
    snapshots: dict[str, dict[str, Any]] = {}

    async def hold(seconds: float) -> None:
        await asyncio.sleep(seconds)

    async def main() -> list[Any]:
        # t=0: two run (5 s and 0.5 s), three wait, the sixth is refused at once.
        tasks = [asyncio.create_task(bulkhead.call_async(hold, s))
                 for s in (5.0, 0.5, 2.0, 0.2, 0.2, 0.2)]
        await asyncio.sleep(0.1)
        snapshots["t=0.1"] = _values(reader, "db")
        # t=0.5: the 0.5 s call ends; the first waiter takes its slot (admitted
        # after waiting); the other two time out at t=1.0.
        await asyncio.sleep(1.4)
        snapshots["t=1.5"] = _values(reader, "db")
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = resil.run_virtual(main(), clock)
    assert [type(r).__name__ for r in results] == [
        "NoneType", "NoneType", "NoneType", "BulkheadFull", "BulkheadFull", "BulkheadFull"]
    assert snapshots["t=0.1"] == {
        "bulkhead.calls": {"admitted": 2, "rejected": 1, "timed_out": 0},
        "bulkhead.active": 2, "bulkhead.queued": 3,
        "bulkhead.max_concurrent": 2, "bulkhead.max_queue": 3}
    assert snapshots["t=1.5"] == {
        "bulkhead.calls": {"admitted": 3, "rejected": 1, "timed_out": 2},
        "bulkhead.active": 2, "bulkhead.queued": 0,
        "bulkhead.max_concurrent": 2, "bulkhead.max_queue": 3}
    # Permits taken with try_acquire are admitted calls; one finding no slot is a
    # refusal; a blocked thread's call is counted alike; then nothing runs.
    permits = [bulkhead.try_acquire(), bulkhead.try_acquire()]
    assert None not in permits and bulkhead.try_acquire() is None
    assert _values(reader, "db")["bulkhead.active"] == 2
    for permit in permits:
        bulkhead.release(permit)  # type: ignore[arg-type]
    with bulkhead:
        pass
    assert _values(reader, "db") == {
        "bulkhead.calls": {"admitted": 6, "rejected": 2, "timed_out": 2},
        "bulkhead.active": 0, "bulkhead.queued": 0,
        "bulkhead.max_concurrent": 2, "bulkhead.max_queue": 3}


def test_a_cancelled_bulkhead_waiter_is_no_outcome_and_leaves_the_queue_gauge() -> None:
    provider, reader = _provider()
    clock = resil.VirtualClock()
    bulkhead = resil.Bulkhead("pool", max_concurrent=1, max_queue=1, clock=clock)
    otel.instrument(("renamed", bulkhead), meter_provider=provider)

    async def main() -> None:
        running = asyncio.create_task(bulkhead.call_async(asyncio.sleep, 1.0))
        waiter = asyncio.create_task(bulkhead.call_async(asyncio.sleep, 1.0))
        await asyncio.sleep(0.1)
        assert _values(reader, "renamed")["bulkhead.queued"] == 1
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert _values(reader, "renamed")["bulkhead.queued"] == 0
        await running

    resil.run_virtual(main(), clock)
    values = _values(reader, "renamed")
    # A pair's name replaces the bulkhead's own; the cancelled waiter is in no count.
    assert _values(reader, "pool") == {}
    assert values["bulkhead.calls"] == {"admitted": 1, "rejected": 0, "timed_out": 0}
    assert values["bulkhead.active"] == 0


def test_a_bulkhead_from_many_threads_is_counted_exactly() -> None:
    provider, reader = _provider()
    bulkhead = resil.Bulkhead("threads", max_concurrent=3, max_queue=0)
    otel.instrument(bulkhead, meter_provider=provider)
    results: list[bool] = []

    def worker(i: int) -> None:
        for _ in range(200):
            permit = bulkhead.try_acquire()
            results.append(permit is not None)
            if permit is not None:
                bulkhead.release(permit)

    run_threads(worker, 8)
    calls = _values(reader, "threads")["bulkhead.calls"]
    assert calls == {"admitted": results.count(True), "rejected": results.count(False),
                     "timed_out": 0}
    assert calls["admitted"] + calls["rejected"] == 1600


# ---- rate limiter ----------------------------------------------------------------------------
def test_rate_limiter_decisions_keys_rate_and_burst_follow_a_known_sequence() -> None:
    provider, reader = _provider()
    clock = resil.VirtualClock()
    limiter = resil.RateLimiter(120, per=60.0, burst=3, name="api", clock=clock)
    otel.instrument(limiter, meter_provider=provider)
    metrics = _metrics(reader)
    for name, unit in LIMITER_INSTRUMENTS.items():
        assert metrics[f"resil.{name}"].unit == unit, name
    assert metrics["resil.rate_limiter.decisions"].data.is_monotonic
    assert _values(reader, "api") == {
        "rate_limiter.decisions": {"admitted": 0, "rejected": 0},
        "rate_limiter.keys": 0, "rate_limiter.rate": 2.0, "rate_limiter.burst": 3}

    # The shared bucket: 3 admitted (the burst), the 4th refused.
    assert [limiter.try_acquire() for _ in range(4)] == [True, True, True, False]
    # Two keys, each with its own bucket: 2 + 1 admitted, tracked while refilling.
    assert limiter.try_acquire(2, key="alice") and limiter.try_acquire(key="bob")
    assert not limiter.try_acquire(2, key="alice")
    # The decorator refuses with RateLimited: one more rejected decision.

    @limiter
    def handler() -> str:
        return "ok"

    with pytest.raises(resil.RateLimited) as info:
        handler()
    assert info.value.retry_after == pytest.approx(0.5)
    limiter.retry_after()  # asks, decides nothing
    assert _values(reader, "api") == {
        "rate_limiter.decisions": {"admitted": 5, "rejected": 3},
        "rate_limiter.keys": 2, "rate_limiter.rate": 2.0, "rate_limiter.burst": 3}

    # 2 tokens a second: 0.5 s later a token is back for the shared bucket and
    # bob. A key is forgotten once idle for burst / rate = 1.5 s: alice at 1.5 s,
    # bob at 2 s.
    clock.advance(0.5)
    assert handler() == "ok" and limiter.try_acquire(key="bob")
    clock.advance(1.25)
    assert _values(reader, "api")["rate_limiter.keys"] == 1
    clock.advance(0.5)
    values = _values(reader, "api")
    assert values["rate_limiter.keys"] == 0
    assert values["rate_limiter.decisions"] == {"admitted": 7, "rejected": 3}


def test_a_waiting_acquire_counts_each_attempt() -> None:
    provider, reader = _provider()
    clock = resil.VirtualClock()
    limiter = resil.RateLimiter(10, burst=1, name="wait", clock=clock)
    otel.instrument(limiter, meter_provider=provider)

    async def main() -> None:
        await limiter.acquire_async()            # admitted at once
        await limiter.acquire_async()            # refused, waits 0.1 s, admitted
        with pytest.raises(resil.RateLimited):
            await limiter.acquire_async(timeout=0.01)  # refused; the wait exceeds the timeout

    resil.run_virtual(main(), clock)
    assert _values(reader, "wait")["rate_limiter.decisions"] == {"admitted": 2, "rejected": 2}


# ---- both, and what instrument() accepts ------------------------------------------------------
def test_prefix_pairs_and_repeated_instrumenting_report_each_component_once() -> None:
    provider, reader = _provider()
    bulkhead = resil.Bulkhead("b", max_concurrent=4)
    limiter = resil.RateLimiter(5, name="l")
    for _ in range(2):
        otel.instrument(bulkhead, ("edge", limiter), meter_provider=provider, prefix="shop")
    assert bulkhead.try_acquire() is not None and limiter.try_acquire()
    metrics = _metrics(reader)
    for name in (*BULKHEAD_INSTRUMENTS, *LIMITER_INSTRUMENTS):
        assert f"shop.{name}" in metrics, name
    assert _points(metrics["shop.bulkhead.calls"]) == {
        _key("b", "admitted"): 1, _key("b", "rejected"): 0, _key("b", "timed_out"): 0}
    assert _points(metrics["shop.rate_limiter.decisions"]) == {
        _key("edge", "admitted"): 1, _key("edge", "rejected"): 0}
    assert _points(metrics["shop.bulkhead.active"]) == {_key("b"): 1}
    assert _points(metrics["shop.rate_limiter.rate"]) == {_key("edge"): 5.0}


def test_bulkheads_and_limiters_are_held_weakly() -> None:
    provider, reader = _provider()
    bulkhead = resil.Bulkhead("gone")
    limiter = resil.RateLimiter(5, name="gone-too")
    otel.instrument(bulkhead, limiter, meter_provider=provider)
    assert _values(reader, "gone") and _values(reader, "gone-too")
    del bulkhead, limiter
    gc.collect()
    assert _values(reader, "gone") == {} and _values(reader, "gone-too") == {}


class _BrokenLimiter(resil.RateLimiter):
    def stats(self) -> dict[str, Any]:
        raise RuntimeError("stats broke")


def test_a_limiter_whose_stats_raise_is_logged_and_left_out(
        caplog: pytest.LogCaptureFixture) -> None:
    provider, reader = _provider()
    broken, good = _BrokenLimiter(5, name="broken"), resil.RateLimiter(5, name="good")
    otel.instrument(broken, good, meter_provider=provider)
    with caplog.at_level("ERROR", logger="resil.otel"):
        assert _values(reader, "broken") == {}
        assert _values(reader, "good")["rate_limiter.burst"] == 5
    assert "left out" in caplog.text


def test_an_unknown_source_names_bulkhead_and_rate_limiter_among_those_accepted() -> None:
    provider, reader = _provider()
    with pytest.raises(TypeError, match="Bulkhead, RateLimiter") as info:
        otel.instrument(resil.Bulkhead(), object(), meter_provider=provider)
    assert "got object" in str(info.value)
    assert _metrics(reader) == {}


def test_every_instrument_is_listed_with_its_unit_in_the_docs() -> None:
    doc = otel.__doc__ or ""
    rows = {m.group(1): (m.group(2), m.group(3)) for m in re.finditer(
        r"^``<p>\.(\S+)``\s+(observable gauge|observable counter|counter|histogram)\s+``(\S+)``",
        doc, re.M)}
    for name, unit in (*BULKHEAD_INSTRUMENTS.items(), *LIMITER_INSTRUMENTS.items()):
        kind = "observable counter" if name in ("bulkhead.calls",
                                                "rate_limiter.decisions") else "observable gauge"
        assert rows.get(name) == (kind, unit), name
    page = (Path(__file__).parent.parent / "docs" / "api" / "otel.rst").read_text()
    assert ".. automodule:: resil.otel" in page  # the page shows the table above
