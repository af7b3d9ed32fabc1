"""resil.prometheus for the bulkhead and the rate limiter: their families,
parsed back from the exposition text after a known sequence of calls."""

from __future__ import annotations

import asyncio
import urllib.request
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import resil
from resil import prometheus
from test_prometheus import samples
from tests_support import run_threads


def of(text: str, label: str, value: str) -> dict[str, Any]:
    """{sample name: value, or {outcome: value}} of the samples whose ``label`` is ``value``."""
    out: dict[str, Any] = {}
    for (name, labels), v in samples(text).items():
        attrs = dict(labels)
        if attrs.get(label) != value:
            continue
        if "outcome" in attrs:
            out.setdefault(name, {})[attrs["outcome"]] = v
        else:
            out[name] = v
    return out


def types(text: str) -> dict[str, str]:
    return {fam.name: fam.type for fam in text_string_to_metric_families(text)}


def test_bulkhead_families_follow_a_known_sequence() -> None:
    clock = resil.VirtualClock()
    bulkhead = resil.Bulkhead("db", max_concurrent=2, max_queue=2, queue_timeout=1.0,
                              clock=clock)
    texts: dict[str, str] = {}

    async def main() -> list[Any]:
        # t=0: two run (for 3 s), two wait (and time out at t=1), the fifth is refused.
        tasks = [asyncio.create_task(bulkhead.call_async(asyncio.sleep, 3.0)) for _ in range(5)]
        await asyncio.sleep(0.5)
        texts["t=0.5"] = prometheus.exposition(bulkhead)
        await asyncio.sleep(1.0)
        texts["t=1.5"] = prometheus.exposition(bulkhead)
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = resil.run_virtual(main(), clock)
    assert [r is None for r in results] == [True, True, False, False, False]
    assert types(texts["t=0.5"]) == {
        "resil_bulkhead_calls": "counter", "resil_bulkhead_active": "gauge",
        "resil_bulkhead_queued": "gauge", "resil_bulkhead_max_concurrent": "gauge",
        "resil_bulkhead_max_queue": "gauge", "resil_exposition_errors": "counter"}
    assert of(texts["t=0.5"], "bulkhead", "db") == {
        "resil_bulkhead_calls_total": {"admitted": 2, "rejected": 1, "timed_out": 0},
        "resil_bulkhead_active": 2, "resil_bulkhead_queued": 2,
        "resil_bulkhead_max_concurrent": 2, "resil_bulkhead_max_queue": 2}
    assert of(texts["t=1.5"], "bulkhead", "db") == {
        "resil_bulkhead_calls_total": {"admitted": 2, "rejected": 1, "timed_out": 2},
        "resil_bulkhead_active": 2, "resil_bulkhead_queued": 0,
        "resil_bulkhead_max_concurrent": 2, "resil_bulkhead_max_queue": 2}
    # Then a try_acquire that gets a slot, one that does not, and a blocked thread's call.
    permit = bulkhead.try_acquire()
    other = bulkhead.try_acquire()
    assert permit is not None and other is not None and bulkhead.try_acquire() is None
    bulkhead.release(permit)
    bulkhead.release(other)
    with bulkhead:
        pass
    assert of(prometheus.exposition(bulkhead), "bulkhead", "db") == {
        "resil_bulkhead_calls_total": {"admitted": 5, "rejected": 2, "timed_out": 2},
        "resil_bulkhead_active": 0, "resil_bulkhead_queued": 0,
        "resil_bulkhead_max_concurrent": 2, "resil_bulkhead_max_queue": 2}


def test_rate_limiter_families_follow_a_known_sequence() -> None:
    clock = resil.VirtualClock()
    limiter = resil.RateLimiter(30, per=60.0, burst=2, name="api", clock=clock)
    text = prometheus.exposition(limiter)
    assert types(text) == {
        "resil_rate_limiter_decisions": "counter", "resil_rate_limiter_keys": "gauge",
        "resil_rate_limiter_tokens_per_second": "gauge",
        "resil_rate_limiter_burst_tokens": "gauge", "resil_exposition_errors": "counter"}
    assert of(text, "limiter", "api") == {
        "resil_rate_limiter_decisions_total": {"admitted": 0, "rejected": 0},
        "resil_rate_limiter_keys": 0, "resil_rate_limiter_tokens_per_second": 0.5,
        "resil_rate_limiter_burst_tokens": 2}

    assert [limiter.try_acquire() for _ in range(3)] == [True, True, False]
    assert limiter.try_acquire(key="t1") and limiter.try_acquire(2, key="t2")
    assert not limiter.try_acquire(key="t2")

    @limiter
    async def handler() -> str:
        return "ok"

    with pytest.raises(resil.RateLimited) as info:
        resil.run_virtual(handler(), clock)
    assert info.value.retry_after == pytest.approx(2.0)  # one token every 2 s
    assert of(prometheus.exposition(limiter), "limiter", "api") == {
        "resil_rate_limiter_decisions_total": {"admitted": 4, "rejected": 3},
        "resil_rate_limiter_keys": 2, "resil_rate_limiter_tokens_per_second": 0.5,
        "resil_rate_limiter_burst_tokens": 2}
    # A key idle for burst / rate = 4 s has a full bucket and is no longer tracked.
    clock.advance(4.0)
    assert resil.run_virtual(handler(), clock) == "ok"
    assert of(prometheus.exposition(limiter), "limiter", "api") == {
        "resil_rate_limiter_decisions_total": {"admitted": 5, "rejected": 3},
        "resil_rate_limiter_keys": 0, "resil_rate_limiter_tokens_per_second": 0.5,
        "resil_rate_limiter_burst_tokens": 2}


def test_namespace_pairs_and_other_sources_together() -> None:
    bulkhead = resil.Bulkhead("b")
    limiter = resil.RateLimiter(10, name="l")
    assert limiter.try_acquire()
    text = prometheus.exposition(("pool", bulkhead), ("edge", limiter), resil.CircuitBreaker("x"),
                                 namespace="omninode")
    got = samples(text)
    assert got[("omninode_bulkhead_max_concurrent", (("bulkhead", "pool"),))] == 10
    assert got[("omninode_rate_limiter_decisions_total",
                (("limiter", "edge"), ("outcome", "admitted")))] == 1
    assert ("omninode_circuit_breaker_state", (("endpoint", "x"),)) in got
    assert all(name.startswith("omninode_") for name, _ in got)
    assert not any(dict(labels).get("bulkhead") == "b" or dict(labels).get("limiter") == "l"
                   for _, labels in got)


def test_two_with_one_name_are_refused_unless_pairs_name_them() -> None:
    with pytest.raises(ValueError, match="same labels"):
        prometheus.exposition(resil.Bulkhead("db"), resil.Bulkhead("db"))
    with pytest.raises(ValueError, match="same labels"):
        prometheus.exposition(resil.RateLimiter(5), resil.RateLimiter(7))
    text = prometheus.exposition(("a", resil.RateLimiter(5)), ("b", resil.RateLimiter(7)))
    got = samples(text)
    assert got[("resil_rate_limiter_tokens_per_second", (("limiter", "a"),))] == 5.0
    assert got[("resil_rate_limiter_tokens_per_second", (("limiter", "b"),))] == 7.0


def test_collector_and_serve_give_the_same_samples() -> None:
    clock = resil.VirtualClock()
    bulkhead = resil.Bulkhead("db", max_concurrent=1, clock=clock)
    limiter = resil.RateLimiter(1, name="api", clock=clock)
    assert bulkhead.try_acquire() is not None and bulkhead.try_acquire() is None
    assert limiter.try_acquire() and not limiter.try_acquire()
    ours = samples(prometheus.exposition(bulkhead, limiter))
    registry = CollectorRegistry()
    registry.register(prometheus.Collector(bulkhead, limiter))
    via_client = {k: v for k, v in samples(generate_latest(registry).decode()).items()
                  if not k[0].endswith("_created")}
    assert via_client == ours
    with prometheus.serve(0, sources=[bulkhead, limiter]) as server:
        with urllib.request.urlopen(server.url, timeout=10) as response:
            served = samples(response.read().decode())
    assert served == ours
    assert ours[("resil_bulkhead_calls_total", (("bulkhead", "db"), ("outcome", "rejected")))] == 1
    assert ours[("resil_rate_limiter_decisions_total",
                 (("limiter", "api"), ("outcome", "rejected")))] == 1


class _BrokenBulkhead(resil.Bulkhead):
    __slots__ = ()

    def stats(self) -> dict[str, Any]:
        raise RuntimeError("stats broke")


def test_a_bulkhead_whose_stats_raise_is_left_out_and_counted(
        caplog: pytest.LogCaptureFixture) -> None:
    before = samples(prometheus.exposition())[("resil_exposition_errors_total", ())]
    with caplog.at_level("ERROR", logger="resil.prometheus"):
        got = samples(prometheus.exposition(_BrokenBulkhead("broken"), resil.Bulkhead("good")))
    assert got[("resil_exposition_errors_total", ())] == before + 1
    assert got[("resil_bulkhead_active", (("bulkhead", "good"),))] == 0
    assert not any(dict(labels).get("bulkhead") == "broken" for _, labels in got)
    assert "left out" in caplog.text


def test_each_family_is_named_in_the_module_docs() -> None:
    doc = prometheus.__doc__ or ""
    text = prometheus.exposition(resil.Bulkhead("b"), resil.RateLimiter(1, name="l"))
    for name in types(text):
        if name != "resil_exposition_errors":
            wanted = name.replace("resil_", "<ns>_", 1)
            assert wanted in doc.replace("\n", " "), wanted


def test_scrapes_while_threads_call_see_counts_only_grow_and_end_exact() -> None:
    bulkhead = resil.Bulkhead("hot", max_concurrent=2)
    limiter = resil.RateLimiter(1e6, burst=50, name="hot")
    finished: list[int] = []  # list.append is atomic: one entry per caller done
    seen: list[tuple[float, float]] = []

    def totals() -> tuple[float, float]:
        got = samples(prometheus.exposition(bulkhead, limiter))
        return (sum(v for (n, _), v in got.items() if n == "resil_bulkhead_calls_total"),
                sum(v for (n, _), v in got.items() if n == "resil_rate_limiter_decisions_total"))

    def thread(i: int) -> None:
        if i == 0:  # scrapes until the six callers are done
            while len(finished) < 6:
                seen.append(totals())
            return
        try:
            for _ in range(300):
                permit = bulkhead.try_acquire()
                if permit is not None:
                    bulkhead.release(permit)
                limiter.try_acquire()
        finally:
            finished.append(i)  # even on failure: the scraper must stop

    run_threads(thread, 7)
    # neither count ever goes back
    assert seen and all(a[0] <= b[0] and a[1] <= b[1] for a, b in zip(seen, seen[1:]))
    assert totals() == (1800, 1800)
    assert bulkhead.stats()["active"] == 0
