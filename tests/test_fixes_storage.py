"""Regressions of the store, the dead-letter queue, the event bus and the
storm counter: corrupt store files, what a store-backed dead letter keeps,
argument errors that name the parameter, memory that does not grow with
storm_threshold or with the number of event types, and the error types and
metric labels callers rely on."""

from __future__ import annotations

import asyncio
import collections
import enum
import gc
import math
import os
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from resil import (
    CircuitOpenError,
    DeadLetterQueue,
    Event,
    EventBus,
    EventStormError,
    RateCounter,
    ResilError,
    SQLiteStore,
    StoreError,
    VirtualClock,
    prometheus,
    run_virtual,
)

SEC = 1_000_000_000
HOSTILE_NUMBERS: list[Any] = [0, -1, math.nan, math.inf, 10**400, True, "x"]


def short(value: Any) -> str:
    """A test id: the value's repr, 10**400 and its like abbreviated."""
    text = repr(value)
    return text if len(text) <= 24 else f"{text[:6]}...({len(text)} chars)"


def make_event(seq: int = 1, payload: Any = None) -> Event:
    return Event("t", {"x": seq} if payload is None else payload, seq, f"{seq:032x}",
                 1_700_000_000.0 + seq, "corr", "1.0", None, None)


def write_events(path: Path, n: int) -> None:
    with SQLiteStore(path) as store:
        for i in range(n):
            store.append_event(f"{i:032x}", "order.created", '{"n": %d, "pad": "%s"}' % (i, "x" * 40),
                               1_700_000_000.0 + i, "c", "1.0", None, None)


# ---- 4. the storm counter's memory does not grow with the threshold --------------------------
def _traced(fn: Any) -> tuple[int, Any]:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        result = fn()
        return tracemalloc.get_traced_memory()[0] - before, result
    finally:
        tracemalloc.stop()


def test_a_rate_counter_with_a_huge_threshold_uses_memory_for_its_events_only() -> None:
    clock = VirtualClock()
    grew, r = _traced(lambda: RateCounter(10**6, 1.0, clock=clock))
    assert grew < 1024, grew  # was 8,000,128 bytes: one slot per unit of threshold
    assert r.capacity == 0 and sys.getsizeof(r) < 1024
    for _ in range(1000):
        assert r.hit()
    assert 1000 <= r.capacity <= 2000
    assert sys.getsizeof(r) < 1024 + 8 * 2000
    clock.advance(1.0)
    assert r.count() == 0 and r.capacity <= 16  # released as the events age out
    r.hit()
    r.reset()
    assert r.capacity == 0


def test_a_ring_that_cannot_grow_raises_memory_error_and_changes_nothing() -> None:
    testcapi = pytest.importorskip("_testcapi")
    if not hasattr(testcapi, "set_nomemory"):
        pytest.skip("this Python's _testcapi cannot fail allocations")
    clock = VirtualClock()
    r = RateCounter(100, 1.0, clock=clock)
    for _ in range(8):  # the first ring (8 slots) is full and every time counts
        assert r.hit()
    for call in (r.hit, r.reserve):
        with pytest.raises(MemoryError):
            testcapi.set_nomemory(0, 0)  # every allocation fails from here...
            try:
                call()
            finally:
                testcapi.remove_mem_hooks()  # ...to here
        assert (r.accepted, r.refused, r.capacity, r.count()) == (8, 0, 8, 8)
    r.reserve()  # room made now...
    assert r.capacity == 16
    testcapi.set_nomemory(0, 0)
    try:
        accepted = r.hit()  # ...so this hit allocates nothing
    finally:
        testcapi.remove_mem_hooks()
    assert accepted and r.accepted == 9


def test_an_event_bus_with_a_huge_storm_threshold_uses_little_memory() -> None:
    clock = VirtualClock()

    def build() -> EventBus:
        bus = EventBus(storm_threshold=10**6, clock=clock)

        async def main() -> None:
            for i in range(10):
                await bus.publish(f"type{i}", {})

        run_virtual(main(), clock)
        return bus

    grew, bus = _traced(build)
    assert grew < 64_000, grew  # was 80 MB: 8 MB per type
    assert bus.stats()["published"] == 10


def test_the_storm_decision_stays_exact_as_the_ring_grows() -> None:
    clock = VirtualClock()
    threshold = 5000
    bus = EventBus(storm_threshold=threshold, storm_window=1.0, clock=clock)

    async def main() -> None:
        for _ in range(threshold):
            await bus.publish("t", {})
            clock.advance_ns(1)
        with pytest.raises(EventStormError):
            await bus.publish("t", {})
        clock.advance_ns(SEC - threshold - 1)  # the first event is 1 s - 1 ns old
        with pytest.raises(EventStormError):
            await bus.publish("t", {})
        clock.advance_ns(1)  # exactly 1 s old: it no longer counts
        assert await bus.publish("t", {}) is not None
        with pytest.raises(EventStormError):
            await bus.publish("t", {})

    run_virtual(main(), clock)
    assert bus.stats()["published"] == threshold + 1 and bus.stats()["storms"] == 3
