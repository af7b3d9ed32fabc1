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


# ---- 5. the bus forgets idle event types, not their counts ------------------------------------
def test_the_bus_does_not_keep_state_for_every_event_type_forever() -> None:
    clock = VirtualClock()
    bus = EventBus(storm_window=1.0, clock=clock)
    n = 20_000

    async def publish_types(start: int) -> None:
        for i in range(start, start + n):
            await bus.publish(f"type.{i}", {}, publisher="svc" if i % 1000 == 0 else None)

    def phase_one() -> None:
        run_virtual(publish_types(0), clock)

    def phase_two() -> None:
        clock.advance(2.0)  # past the storm window: the first types are idle
        run_virtual(publish_types(n), clock)

    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        phase_one()
        first = tracemalloc.get_traced_memory()[0] - base
        phase_two()
        gc.collect()
        total = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    per_type_recent = first / n
    # the second types cost what the first did; what is left is the first ones' residue
    per_type_idle = (total - first) / n
    print(f"bytes per recent type {per_type_recent:.0f}, per idle type {per_type_idle:.0f}")
    assert per_type_recent < 1500, per_type_recent  # was ~3,000
    assert per_type_idle < 400, per_type_idle  # was ~3,000
    # the counts survive
    topo = bus.topology()
    assert len(topo) == 2 * n
    assert all(info["published"] == 1 and info["orphaned"] for info in topo.values())
    assert topo["type.1000"]["publishers"] == ["svc"] and topo["type.1001"]["publishers"] == []
    assert bus.stats()["published"] == 2 * n


def test_a_forgotten_type_comes_back_as_it_was() -> None:
    clock = VirtualClock()
    bus = EventBus(storm_threshold=2, storm_window=1.0, clock=clock)
    got: list[int] = []

    async def main() -> None:
        await bus.publish("old", {}, publisher="p1")
        clock.advance(5.0)
        for i in range(3000):  # many new types: "old" is forgotten meanwhile
            await bus.publish(f"new{i}", {})
        bus.subscribe("old", lambda e: got.append(e.seq))
        await bus.publish("old", {}, publisher="p2")
        await bus.publish("old", {})
        with pytest.raises(EventStormError):  # the storm window works afresh
            await bus.publish("old", {})

    run_virtual(main(), clock)
    info = bus.topology()["old"]
    assert info["published"] == 3 and info["publishers"] == ["p1", "p2"]
    assert got == [3002, 3003] and not info["orphaned"]


def test_types_with_subscribers_or_an_open_circuit_are_kept() -> None:
    clock = VirtualClock()
    bus = EventBus(handler_failure_limit=1, storm_window=1.0, clock=clock)

    def bad(event: Event) -> None:
        raise RuntimeError("bad")

    async def main() -> None:
        bus.subscribe("broken", bad)
        await bus.publish("broken", {})
        bus.unsubscribe("broken", bad)  # the circuit stays open with no handler left
        bus.subscribe("kept", lambda e: None)
        await bus.publish("kept", {})
        clock.advance(5.0)
        for i in range(3000):
            await bus.publish(f"new{i}", {})
        with pytest.raises(CircuitOpenError):
            await bus.publish("broken", {})

    run_virtual(main(), clock)
    assert bus.stats()["circuits"]["broken"] == "FORCED_OPEN"
    assert bus.topology()["kept"]["subscribers"] != []


# ---- 6. error types, the type-circuit message, DLQ metrics -----------------------------------
def test_event_storm_error_is_a_runtime_error() -> None:
    bus = EventBus(storm_threshold=1)

    async def main() -> None:
        await bus.publish("t", {})
        try:
            await bus.publish("t", {})
        except RuntimeError as exc:  # how existing callers catch it
            assert isinstance(exc, EventStormError) and isinstance(exc, ResilError)
        else:
            raise AssertionError("no storm")

    asyncio.run(main())
    assert issubclass(EventStormError, RuntimeError) and issubclass(EventStormError, ResilError)


def test_the_type_circuit_error_names_the_disabled_handlers_and_reset_handler() -> None:
    bus = EventBus(handler_failure_limit=1)

    def audit(event: Event) -> None:
        raise RuntimeError("down")

    def index(event: Event) -> None:
        pass

    bus.subscribe("order", audit, name="audit")
    bus.subscribe("order", index, name="index")

    async def main() -> None:
        await bus.publish("order", {})
        with pytest.raises(CircuitOpenError) as info:
            await bus.publish("order", {})
        text = str(info.value)
        assert "'order'" in text and "audit" in text and "index" not in text
        assert "reset_handler" in text
        assert info.value.name == "bus:order"
        bus.reset_handler("order")
        assert await bus.publish("order", {}) is not None

    asyncio.run(main())


# ---- 7. EventBus errors name the user's parameter -------------------------------------------
BUS_PARAMS = ["storm_threshold", "storm_window", "handler_failure_limit", "idempotency_ttl"]


@pytest.mark.parametrize("param", BUS_PARAMS)
@pytest.mark.parametrize("value", HOSTILE_NUMBERS, ids=short)
def test_event_bus_errors_name_the_parameter_passed(param: str, value: Any) -> None:
    integral = param in ("storm_threshold", "handler_failure_limit")
    if isinstance(value, str) or isinstance(value, bool) or (integral and isinstance(value, float)):
        expected: type[Exception] = TypeError
    else:
        expected = ValueError
    with pytest.raises(expected) as info:
        EventBus(**{param: value})
    text = str(info.value)
    assert text.startswith(param + " must be"), text
