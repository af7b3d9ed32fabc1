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


# ---- 1. a corrupt store file is refused at open -----------------------------------------
def test_a_store_file_with_corrupted_pages_is_refused_at_open(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    write_events(path, 300)
    size = path.stat().st_size
    assert size >= 16 * 4096 and not Path(f"{path}-wal").exists()
    with open(path, "r+b") as f:  # garbage over pages in the middle of the file
        f.seek(size // 2 // 4096 * 4096)
        f.write(bytes(range(256)) * 32)
    with pytest.raises(StoreError, match="corrupt") as info:
        SQLiteStore(path)
    assert str(path) in str(info.value) and info.value.path == str(path)
    assert info.value.operation == "open"
    # nothing was written to it: the damage is still the only change
    with pytest.raises(StoreError):
        SQLiteStore(path)


def test_a_sound_store_still_opens_and_keeps_its_events(tmp_path: Path) -> None:
    path = tmp_path / "events.db"
    write_events(path, 50)
    with SQLiteStore(path) as store:
        assert store.event_count() == 50 and store.last_seq() == 50
    with SQLiteStore(":memory:") as store:
        assert store.event_count() == 0


# ---- 2. what a store-backed dead letter keeps ------------------------------------------------
class Color(enum.IntEnum):
    RED = 1


class Text(str):
    pass


def _circular() -> list[Any]:
    loop: list[Any] = [1]
    loop.append(loop)
    return loop


REFUSED_ITEMS = {
    "int key": {1: "a"},
    "int key and tuple": {1: "a", "t": (1, 2)},
    "tuple": (1, 2),
    "nested tuple": {"a": [{"b": (1,)}]},
    "None key": {None: 1},
    "bool key": {True: 1},
    "float key": {1.5: 1},
    "nan": {"x": math.nan},
    "inf": [math.inf],
    "-inf": -math.inf,
    "set": {1, 2},
    "frozenset": {"a": frozenset()},
    "bytes": b"x",
    "bytearray": {"a": bytearray(b"x")},
    "object": object(),
    "IntEnum": Color.RED,
    "str subclass": Text("x"),
    "OrderedDict": collections.OrderedDict(a=1),
    "Event in a list": [make_event(1)],
    "Event with a tuple in its payload": make_event(1, {"t": (1, 2)}),
    "Event with an int key in its payload": make_event(1, {1: "a"}),
    "circular": _circular(),
}


@pytest.mark.parametrize("item", list(REFUSED_ITEMS.values()), ids=list(REFUSED_ITEMS))
def test_a_store_backed_dlq_refuses_an_item_it_would_change(tmp_path: Path, item: Any) -> None:
    with SQLiteStore(tmp_path / "d.db") as store:
        dlq = DeadLetterQueue(store=store)
        with pytest.raises(TypeError, match=r"item .*(cannot|not)") as info:
            dlq.put(item, "boom")
        assert "item" in str(info.value)
        assert len(dlq) == 0 and dlq.stats()["added"] == 0
        # the memory-backed queue keeps any object, as it is
        mem = DeadLetterQueue()
        assert mem.get(mem.put(item, "boom")).item is item


def test_the_refusal_says_why(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "d.db") as store:
        dlq = DeadLetterQueue(store=store)
        with pytest.raises(TypeError, match=r"item\['t'\].*tuple.*list"):
            dlq.put({"t": (1, 2)}, "boom")
        with pytest.raises(TypeError, match=r"item.*key 1 .*int.*str"):
            dlq.put({1: "a"}, "boom")
        with pytest.raises(TypeError, match=r"item\['x'\]\[0\].*nan"):
            dlq.put({"x": [math.nan]}, "boom")


KEPT_ITEMS: list[Any] = [
    {"a": [1, 2.5, None, True, False, "x", {"b": [], "c": {}}], "big": 2**100, "neg": -0.0},
    "text \u00e9 \U0001f600 \udc80",
    12,
    1e308,
    None,
    [],
    [[[["deep"]]]],
    make_event(3, {"n": [1, {"k": "v"}], "f": 0.1}),
]


@pytest.mark.parametrize("item", KEPT_ITEMS)
def test_what_a_store_backed_dlq_accepts_comes_back_identical(tmp_path: Path, item: Any) -> None:
    path = tmp_path / "d.db"
    with SQLiteStore(path) as store:
        DeadLetterQueue(store=store).put(item, "boom")
    with SQLiteStore(path) as store:
        [entry] = DeadLetterQueue(store=store).list()

    def shape(value: Any) -> Any:  # equality and the exact types, all the way down
        if isinstance(value, Event):
            return ("Event", tuple(shape(v) for v in value))
        if isinstance(value, dict):
            return ("dict", [(shape(k), shape(v)) for k, v in value.items()])
        if isinstance(value, list):
            return ("list", [shape(v) for v in value])
        if isinstance(value, float):
            return ("float", value.hex())
        return (type(value).__name__, value)

    assert shape(entry.item) == shape(item)


# ---- 3. argument errors name the parameter, on both backends --------------------------------
@pytest.fixture(params=["memory", "store"])
def dlq(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "memory":
        yield DeadLetterQueue()
    else:
        with SQLiteStore(tmp_path / "d.db") as store:
            yield DeadLetterQueue(store=store)


@pytest.mark.parametrize("attempts", [2**63, 2**64, 10**400, -1], ids=short)
def test_attempts_out_of_range(dlq: DeadLetterQueue, attempts: int) -> None:
    with pytest.raises(ValueError, match=r"attempts must be .*\[0, 2\*\*63 - 1\]"):
        dlq.put("x", "e", attempts=attempts)
    assert len(dlq) == 0


@pytest.mark.parametrize("attempts", [True, 1.0, "1", None, math.nan])
def test_attempts_of_the_wrong_type(dlq: DeadLetterQueue, attempts: Any) -> None:
    with pytest.raises(TypeError, match="attempts must be an int"):
        dlq.put("x", "e", attempts=attempts)
    assert len(dlq) == 0


def test_attempts_at_the_top_of_the_range_is_kept(dlq: DeadLetterQueue) -> None:
    entry = dlq.put("x", "e", attempts=2**63 - 1)
    assert dlq.get(entry).attempts == 2**63 - 1


@pytest.mark.parametrize("entry_id", [[1], "1", 1.0, None, True])
def test_entry_id_of_the_wrong_type(dlq: DeadLetterQueue, entry_id: Any) -> None:
    dlq.put("x", "e")
    with pytest.raises(TypeError, match="entry_id must be an int"):
        dlq.get(entry_id)
    with pytest.raises(TypeError, match="entry_id must be an int"):
        asyncio.run(dlq.reprocess(entry_id, lambda item: None))
    assert len(dlq) == 1


@pytest.mark.parametrize("entry_id", [2**64, -(2**64), 10**400, 0, -1], ids=short)
def test_an_entry_id_no_entry_can_have_is_a_key_error(dlq: DeadLetterQueue, entry_id: int) -> None:
    with pytest.raises(KeyError):
        dlq.get(entry_id)
    with pytest.raises(KeyError):
        asyncio.run(dlq.reprocess(entry_id, lambda item: None))


@pytest.mark.parametrize("path", ["", Path("")])
def test_an_empty_store_path(path: Any) -> None:
    with pytest.raises(ValueError, match="path must be a non-empty"):
        SQLiteStore(path)


def test_a_store_path_with_a_nul() -> None:
    with pytest.raises(ValueError, match="path must not contain a NUL"):
        SQLiteStore("a\0b.db")


@pytest.mark.parametrize("path", [3, None, b"x.db", ["x.db"]])
def test_a_store_path_of_the_wrong_type(path: Any) -> None:
    with pytest.raises(TypeError, match=r"path must be a str or os.PathLike\[str\]"):
        SQLiteStore(path)


@pytest.mark.parametrize("maxsize", [0, -1, 10**400, 2**31 + 1], ids=short)
def test_dlq_maxsize_out_of_range(maxsize: int) -> None:
    with pytest.raises(ValueError, match=r"maxsize must be an int in \[1, 2\*\*31\]"):
        DeadLetterQueue(maxsize=maxsize)


@pytest.mark.parametrize("maxsize", [True, math.nan, math.inf, 2.0, "x", None])
def test_dlq_maxsize_of_the_wrong_type(maxsize: Any) -> None:
    with pytest.raises(TypeError, match="maxsize must be an int"):
        DeadLetterQueue(maxsize=maxsize)


@pytest.mark.parametrize("ttl", [0, -1, -0.5, math.nan, math.inf, -math.inf, 10**400, 1e300], ids=short)
def test_dlq_ttl_out_of_range(ttl: Any) -> None:
    with pytest.raises(ValueError, match=r"ttl must be None or a finite number of seconds"):
        DeadLetterQueue(ttl=ttl)


@pytest.mark.parametrize("ttl", [True, False, "x", [1]])
def test_dlq_ttl_of_the_wrong_type(ttl: Any) -> None:
    with pytest.raises(TypeError, match="ttl must be None or a number of seconds"):
        DeadLetterQueue(ttl=ttl)


@pytest.mark.parametrize("name", ["", 3, None])
def test_dlq_name(name: Any) -> None:
    with pytest.raises((TypeError, ValueError), match="name must be a non-empty str"):
        DeadLetterQueue(name=name)


def test_dlq_ttl_drops_and_counts_old_entries(dlq: DeadLetterQueue,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1_700_000_000.0]
    monkeypatch.setattr(time, "time", lambda: now[0])
    q = DeadLetterQueue(ttl=60, store=dlq.store)
    first = q.put("old", "e")
    now[0] += 30
    q.put("newer", "e")
    now[0] += 30  # the first is exactly 60 s old: gone
    assert [e.item for e in q.list()] == ["newer"] and len(q) == 1
    with pytest.raises(KeyError):
        q.get(first)
    q.put("newest", "e")
    stats = q.stats()
    assert (stats["depth"], stats["expired"], stats["ttl"]) == (2, 1, 60.0)
    now[0] += 1000
    assert q.list() == [] and q.stats()["expired"] == 3


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


def _parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_dead_letter_metrics_carry_the_queue_name() -> None:
    orders = DeadLetterQueue(name="orders")
    payments = DeadLetterQueue(name="payments")
    orders.put(1, "e")
    orders.put(2, "e")
    payments.put(3, "e")
    got = _parse(prometheus.exposition(orders, payments))
    assert got[("resil_dead_letters", (("queue", "orders"),))] == 2
    assert got[("resil_dead_letters", (("queue", "payments"),))] == 1
    assert got[("resil_dead_letters_added_total", (("queue", "orders"),))] == 2
    # a (name, source) pair still names it
    got = _parse(prometheus.exposition(("renamed", orders)))
    assert got[("resil_dead_letters", (("queue", "renamed"),))] == 2


def test_dead_letter_queues_sharing_a_name_are_one_series(tmp_path: Path) -> None:
    a, b = DeadLetterQueue(), DeadLetterQueue()  # both "default"
    a.put(1, "e")
    b.put(2, "e")
    b.put(3, "e")
    got = _parse(prometheus.exposition(a, b))
    assert got[("resil_dead_letters", (("queue", "default"),))] == 3
    assert got[("resil_dead_letters_added_total", (("queue", "default"),))] == 3
    # two queue objects of one name on one store are one queue: its entries count once
    with SQLiteStore(tmp_path / "d.db") as store:
        s1, s2 = DeadLetterQueue(store=store, name="s"), DeadLetterQueue(store=store, name="s")
        s1.put(1, "e")
        s2.put(2, "e")
        got = _parse(prometheus.exposition(s1, s2))
        assert got[("resil_dead_letters", (("queue", "s"),))] == 2
        assert got[("resil_dead_letters_added_total", (("queue", "s"),))] == 2
    assert list(prometheus.Collector(a, b).collect())  # the client bridge takes them too


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
