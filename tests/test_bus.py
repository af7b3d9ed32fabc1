"""EventBus: ordering, storms, contracts, isolation, circuits,
idempotency, replay and topology."""

from __future__ import annotations

import asyncio
import datetime
import logging
from typing import Any

import pytest

import resil
from resil import (
    CircuitOpenError,
    ContractViolation,
    DeadLetterQueue,
    Event,
    EventBus,
    EventStormError,
    HandlerDisabled,
    ResilError,
    SQLiteStore,
    State,
    VirtualClock,
    run_virtual,
)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


class Recorder:
    def __init__(self, name: str = "rec") -> None:
        self.events: list[Event] = []
        self.__qualname__ = name

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    @property
    def seqs(self) -> list[int]:
        return [e.seq for e in self.events]


class Failing:
    def __init__(self, name: str = "failing", fail: bool = True) -> None:
        self.fail = fail
        self.calls = 0
        self.__qualname__ = name

    def __call__(self, event: Event) -> None:
        self.calls += 1
        if self.fail:
            raise RuntimeError(f"boom {event.seq}")


# ---- ordering -------------------------------------------------------------------
def test_hundred_concurrent_publishers_gapless_and_in_order() -> None:
    bus = EventBus(storm_threshold=100_000)
    sync_rec = Recorder("sync")
    async_seen: list[int] = []

    async def slow(event: Event) -> None:
        await asyncio.sleep(0)  # lets other publishers run while this one delivers
        async_seen.append(event.seq)

    bus.subscribe("tick", sync_rec)
    bus.subscribe("tick", slow)

    async def publisher(n: int) -> list[int]:
        out = []
        for i in range(10):
            event = await bus.publish("tick", {"publisher": n, "i": i}, publisher=f"p{n}")
            assert event is not None
            out.append(event.seq)
            await asyncio.sleep(0)
        return out

    async def main() -> list[list[int]]:
        return await asyncio.gather(*(publisher(n) for n in range(100)))

    returned = run(main())
    assert sync_rec.seqs == list(range(1, 1001))
    assert async_seen == list(range(1, 1001))
    assert sorted(s for seqs in returned for s in seqs) == list(range(1, 1001))
    # the number each publisher got back is the one its event was delivered with
    delivered = {(e.payload["publisher"], e.payload["i"]): e.seq for e in sync_rec.events}
    assert all(delivered[(n, i)] == returned[n][i] for n in range(100) for i in range(10))
    assert bus.stats()["last_seq"] == 1000
    assert len({e.event_id for e in sync_rec.events}) == 1000


def test_event_fields() -> None:
    bus = EventBus()

    async def main() -> tuple[Event | None, Event | None]:
        a = await bus.publish("t", {"x": 1})
        b = await bus.publish("t", {"x": 2}, correlation_id="trace-1", schema_version="1.1",
                              publisher="svc")
        return a, b

    a, b = run(main())
    assert a is not None and b is not None
    assert (a.seq, b.seq) == (1, 2)
    assert len(a.event_id) == 32 and a.event_id != b.event_id
    assert a.correlation_id == a.event_id  # a new trace starts at the event
    assert b.correlation_id == "trace-1" and b.schema_version == "1.1" and b.publisher == "svc"
    assert a.time.tzinfo is datetime.timezone.utc
    assert abs(a.time.timestamp() - a.timestamp) < 1e-6
    assert Event.from_dict(b.to_dict()) == b
    with pytest.raises(AttributeError):
        a.seq = 5  # type: ignore[misc]


# ---- storms -----------------------------------------------------------------------
def test_storm_raises_on_the_event_that_crosses_the_threshold() -> None:
    clock = VirtualClock()
    bus = EventBus(storm_threshold=5, storm_window=1.0, clock=clock)
    rec = Recorder()
    bus.subscribe("loop", rec)

    async def main() -> None:
        for _ in range(5):
            await bus.publish("loop", {})
        with pytest.raises(EventStormError) as info:
            await bus.publish("loop", {})
        assert (info.value.event_type, info.value.threshold, info.value.window) == ("loop", 5, 1.0)
        assert isinstance(info.value, ResilError)
        clock.advance(1.0 - 1e-9)  # the first events are still < 1 s old
        with pytest.raises(EventStormError):
            await bus.publish("loop", {})
        await bus.publish("other", {})  # storms are per type
        clock.advance(1e-9)  # now exactly 1 s old: they no longer count
        event = await bus.publish("loop", {})
        assert event is not None and event.seq == 7  # refused events took no number

    run_virtual(main(), clock)
    assert rec.seqs == [1, 2, 3, 4, 5, 7]
    stats = bus.stats()
    assert stats["storms"] == 2 and stats["dropped"] == 0 and stats["published"] == 7


def test_storm_drop_mode_returns_none_and_counts() -> None:
    clock = VirtualClock()
    bus = EventBus(storm_threshold=3, storm_window=10.0, on_storm="drop", clock=clock)

    async def main() -> list[Event | None]:
        return [await bus.publish("x", {"i": i}) for i in range(5)]

    results = run_virtual(main(), clock)
    assert [r.seq if r else None for r in results] == [1, 2, 3, None, None]
    assert bus.stats()["dropped"] == 2 and bus.stats()["storms"] == 2


# ---- contracts ----------------------------------------------------------------------
def test_contract_violations_reach_the_dlq_with_their_reason(caplog: pytest.LogCaptureFixture) -> None:
    dlq = DeadLetterQueue()
    bus = EventBus(dlq=dlq)
    strict = Recorder("strict")
    lax = Recorder("lax")
    bus.subscribe("graph.edge_added", strict, required=("source", "target"))
    bus.subscribe("graph.edge_added", lax)

    async def main() -> None:
        await bus.publish("graph.edge_added", {"source": "a", "target": "b"})
        await bus.publish("graph.edge_added", {"source": "a"})
        await bus.publish("graph.edge_added", {"source": "a", "target": "b"}, schema_version="2.0")

    with caplog.at_level(logging.WARNING, logger="resil.bus"):
        run(main())
    assert strict.seqs == [1]
    assert lax.seqs == [1, 2]  # 2.0 is not in lax's default versions either
    entries = dlq.list()
    assert [(e.item.seq, e.source, e.error_type) for e in entries] == [
        (2, "graph.edge_added:strict", "ContractViolation"),
        (3, "graph.edge_added:strict", "ContractViolation"),
        (3, "graph.edge_added:lax", "ContractViolation"),
    ]
    assert "missing required field target" in entries[0].error
    assert "schema version '2.0' not supported" in entries[1].error
    assert bus.stats()["violations"] == 3 and bus.stats()["handlers"][
        "graph.edge_added:strict"]["violations"] == 2
    assert sum("contract violation" in r.getMessage() for r in caplog.records) == 3


def test_versions_accepted_per_subscription() -> None:
    bus = EventBus()
    v2 = Recorder("v2")
    bus.subscribe("t", v2, versions=("2.0",))

    async def main() -> None:
        await bus.publish("t", {}, schema_version="1.0")
        await bus.publish("t", {}, schema_version="2.0")

    run(main())
    assert v2.seqs == [2]


# ---- handler isolation, disabling, circuit ---------------------------------------------
def test_handler_disabled_after_three_consecutive_failures_others_still_receive() -> None:
    dlq = DeadLetterQueue()
    bus = EventBus(dlq=dlq)
    bad = Failing("bad")
    good1, good2 = Recorder("good1"), Recorder("good2")
    for h in (good1, bad, good2):
        bus.subscribe("t", h)

    async def main() -> None:
        for i in range(6):
            event = await bus.publish("t", {"i": i})  # never raises: isolation
            assert event is not None

    run(main())
    assert bad.calls == 3
    assert good1.seqs == good2.seqs == [1, 2, 3, 4, 5, 6]
    stats = bus.stats()
    assert stats["handlers"]["t:bad"]["disabled"] is True
    assert stats["failures"] == 3 and stats["skipped"] == 3
    assert bus.circuit("t").state is State.CLOSED  # 1 of 3 is less than half
    kinds = [(e.item.seq, e.error_type, e.attempts) for e in dlq.list()]
    assert kinds == [(1, "RuntimeError", 1), (2, "RuntimeError", 1), (3, "RuntimeError", 1),
                     (4, "HandlerDisabled", 0), (5, "HandlerDisabled", 0),
                     (6, "HandlerDisabled", 0)]
    assert dlq.list()[0].error == "RuntimeError: boom 1"


def test_a_success_resets_the_consecutive_count() -> None:
    bus = EventBus()
    flaky = Failing("flaky")
    bus.subscribe("t", flaky)

    async def main() -> None:
        for fail in (True, True, False, True, True):
            flaky.fail = fail
            await bus.publish("t", {})

    run(main())
    assert bus.stats()["handlers"]["t:flaky"]["disabled"] is False
    assert bus.stats()["handlers"]["t:flaky"]["consecutive_failures"] == 2


def test_circuit_opens_when_half_the_handlers_are_disabled_until_reset() -> None:
    bus = EventBus(handler_failure_limit=2)
    bad = Failing("bad")
    good = Recorder("good")
    bus.subscribe("t", bad)
    bus.subscribe("t", good)

    async def main() -> None:
        await bus.publish("t", {})
        await bus.publish("t", {})  # second failure: bad disabled, 1 of 2 -> open
        assert bus.circuit("t").state is State.FORCED_OPEN
        with pytest.raises(CircuitOpenError) as info:
            await bus.publish("t", {})
        assert info.value.name == "bus:t"
        await bus.publish("u", {})  # other types unaffected
        bad.fail = False
        assert bus.reset_handler("t", bad) == 1
        assert bus.circuit("t").state is State.CLOSED
        event = await bus.publish("t", {})
        assert event is not None and event.seq == 4

    run(main())
    assert good.seqs == [1, 2, 4]
    assert bad.calls == 3
    assert bus.stats()["circuits"]["t"] == "CLOSED"


def test_reset_handler_errors() -> None:
    bus = EventBus()
    with pytest.raises(KeyError):
        bus.reset_handler("nope")
    bus.subscribe("t", Recorder())
    with pytest.raises(KeyError):
        bus.reset_handler("t", print)


def test_async_handler_failures_are_isolated_too() -> None:
    dlq = DeadLetterQueue()
    bus = EventBus(dlq=dlq)

    async def bad(event: Event) -> None:
        await asyncio.sleep(0)
        raise ValueError("async boom")

    rec = Recorder()
    bus.subscribe("t", bad)
    bus.subscribe("t", rec)
    run(bus.publish("t", {}))
    assert rec.seqs == [1]
    assert dlq.list()[0].error == "ValueError: async boom"
    assert dlq.list()[0].source.startswith("t:") and dlq.list()[0].source.endswith("bad")


def test_cancelled_publish_dead_letters_the_deliveries_it_did_not_make() -> None:
    dlq = DeadLetterQueue()
    bus = EventBus(dlq=dlq)
    started = asyncio.Event

    async def main() -> None:
        gate = started()

        async def slow(event: Event) -> None:
            gate.set()
            await asyncio.sleep(3600)

        after = Recorder("after")
        bus.subscribe("t", slow, name="slow")
        bus.subscribe("t", after)
        task = asyncio.ensure_future(bus.publish("t", {}))
        await gate.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert after.seqs == []

    run(main())
    assert [(e.source, e.error_type) for e in dlq.list()] == [
        ("t:slow", "DeliveryCancelled"), ("t:after", "DeliveryCancelled")]


def test_handler_exception_without_dlq_is_counted() -> None:
    bus = EventBus()
    bus.subscribe("t", Failing())
    run(bus.publish("t", {}))
    assert bus.stats()["failures"] == 1 and bus.stats()["dead_lettered"] == 0


def test_a_failing_dlq_never_reaches_the_publisher() -> None:
    class BrokenDLQ:
        def put(self, *args: Any, **kwargs: Any) -> None:
            raise OSError("disk full")

    bus = EventBus(dlq=BrokenDLQ())
    bus.subscribe("t", Failing())
    run(bus.publish("t", {}))
    assert bus.stats()["dead_letter_failures"] == 1


# ---- idempotency ------------------------------------------------------------------------
def test_duplicate_idempotency_key_returns_the_original_within_ttl() -> None:
    clock = VirtualClock()
    bus = EventBus(clock=clock)
    rec = Recorder()
    bus.subscribe("t", rec)

    async def main() -> None:
        first = await bus.publish("t", {"v": 1}, idempotency_key="k1")
        again = await bus.publish("t", {"v": 2}, idempotency_key="k1")
        assert again is first
        clock.advance(299.999)
        assert await bus.publish("t", {"v": 3}, idempotency_key="k1") is first
        other = await bus.publish("t", {"v": 4}, idempotency_key="k2")
        assert other is not None and other.seq == 2
        clock.advance(0.001)  # k1 is now 300 s old
        fresh = await bus.publish("t", {"v": 5}, idempotency_key="k1")
        assert fresh is not None and fresh.seq == 3 and fresh is not first

    run_virtual(main(), clock)
    assert [e.payload["v"] for e in rec.events] == [1, 4, 5]
    assert bus.stats()["duplicates"] == 2


def test_concurrent_publishes_of_one_key_deliver_once() -> None:
    bus = EventBus()
    rec = Recorder()
    bus.subscribe("t", rec)

    async def main() -> list[Event | None]:
        return await asyncio.gather(*(bus.publish("t", {}, idempotency_key="same")
                                      for _ in range(50)))

    results = run(main())
    assert len({id(r) for r in results}) == 1 and rec.seqs == [1]


# ---- replay -----------------------------------------------------------------------------
def test_replay_delivers_the_same_events_in_the_same_order(tmp_path: Any) -> None:
    store = SQLiteStore(tmp_path / "bus.db")
    bus = EventBus(store=store)
    live = Recorder("live")
    bus.subscribe("a", live)
    bus.subscribe("b", live)

    async def main() -> tuple[int, list[Event]]:
        for i in range(20):
            await bus.publish("a" if i % 3 else "b", {"i": i}, correlation_id=f"c{i}")
        replayer = Recorder("replayer")
        bus.unsubscribe("a", live)
        bus.unsubscribe("b", live)
        bus.subscribe("a", replayer)
        bus.subscribe("b", replayer)
        n = await bus.replay()
        return n, replayer.events

    n, replayed = run(main())
    assert n == 20
    assert replayed == live.events  # same seq, id, payload, timestamp, correlation id
    assert [e.seq for e in replayed] == list(range(1, 21))
    assert store.event_count() == 20  # replay stores nothing
    assert bus.stats()["last_seq"] == 20
    store.close()


def test_replay_bounds_and_filters(tmp_path: Any) -> None:
    store = SQLiteStore(tmp_path / "bus.db")
    bus = EventBus(store=store)
    rec = Recorder()

    async def main() -> None:
        stamps = []
        for i in range(10):
            event = await bus.publish("a" if i % 2 else "b", {"i": i})
            assert event is not None
            stamps.append(event.timestamp)
        bus.subscribe("a", rec)
        bus.subscribe("b", rec)
        assert await bus.replay(from_seq=3, to_seq=6) == 4
        assert rec.seqs == [3, 4, 5, 6]
        rec.events.clear()
        assert await bus.replay(event_type="a") == 5
        assert rec.seqs == [2, 4, 6, 8, 10]
        rec.events.clear()
        assert await bus.replay(since=stamps[7]) == 3
        assert rec.seqs == [8, 9, 10]
        rec.events.clear()
        since_dt = datetime.datetime.fromtimestamp(stamps[8], datetime.timezone.utc)
        assert await bus.replay(since=since_dt) == 2
        with pytest.raises(ValueError, match="unknown event type 'zzz'"):
            await bus.replay(event_type="zzz")
        with pytest.raises(ValueError, match="aware"):
            await bus.replay(since=datetime.datetime.now())
        with pytest.raises(TypeError):
            await bus.replay(from_seq="3")  # type: ignore[arg-type]

    run(main())
    store.close()


def test_replay_applies_contracts_but_no_storm_or_idempotency(tmp_path: Any) -> None:
    clock = VirtualClock()
    store = SQLiteStore(tmp_path / "bus.db")
    bus = EventBus(store=store, storm_threshold=3, clock=clock)
    strict = Recorder("strict")

    async def main() -> None:
        for i in range(3):
            await bus.publish("t", {"i": i} if i != 1 else {}, idempotency_key=f"k{i}")
        bus.subscribe("t", strict, required=("i",))
        assert await bus.replay() == 3  # 3 more within the window: no storm on replay
        assert await bus.replay() == 3  # and keys seen before are delivered again

    run_virtual(main(), clock)
    store.close()
    assert strict.seqs == [1, 3, 1, 3]
    assert bus.stats()["violations"] == 2


def test_replay_without_store_raises() -> None:
    with pytest.raises(ResilError, match="needs a store"):
        run(EventBus().replay())


# ---- topology -------------------------------------------------------------------------------
def test_topology_maps_publishers_and_subscribers() -> None:
    bus = EventBus()
    bus.subscribe("graph.edge_added", Recorder("detector.on_edge"))
    bus.subscribe("graph.edge_added", Recorder("auditor.on_edge"))
    bus.subscribe("graph.node_added", Recorder("detector.on_node"))

    async def main() -> None:
        await bus.publish("graph.edge_added", {}, publisher="extractor")
        await bus.publish("graph.edge_added", {}, publisher="validator")
        await bus.publish("posterior.updated", {}, publisher="updater")
        await bus.publish("graph.edge_added", {})

    run(main())
    assert bus.topology() == {
        "graph.edge_added": {"publishers": ["extractor", "validator"],
                             "subscribers": ["detector.on_edge", "auditor.on_edge"],
                             "published": 3, "orphaned": False, "unused": False},
        "graph.node_added": {"publishers": [], "subscribers": ["detector.on_node"],
                             "published": 0, "orphaned": False, "unused": True},
        "posterior.updated": {"publishers": ["updater"], "subscribers": [],
                              "published": 1, "orphaned": True, "unused": False},
    }


# ---- bad input ------------------------------------------------------------------------------
def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="on_storm"):
        EventBus(on_storm="ignore")
    with pytest.raises(ValueError, match="handler_failure_limit"):
        EventBus(handler_failure_limit=0)
    with pytest.raises(ValueError, match="threshold"):
        EventBus(storm_threshold=0)
    with pytest.raises((ValueError, TypeError), match="window"):
        EventBus(storm_window=-1.0)
    with pytest.raises(TypeError, match="store"):
        EventBus(store="bus.db")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="dlq"):
        EventBus(dlq=object())
    bus = EventBus()
    with pytest.raises(TypeError, match="handler must be callable"):
        bus.subscribe("t", "not a function")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="event_type"):
        bus.subscribe("", Recorder())
    with pytest.raises(TypeError, match="required"):
        bus.subscribe("t", Recorder(), required="source")
    with pytest.raises(ValueError, match="versions"):
        bus.subscribe("t", Recorder(), versions=())
    rec = Recorder()
    bus.subscribe("t", rec)
    with pytest.raises(ValueError, match="already subscribed"):
        bus.subscribe("t", rec)
    assert bus.unsubscribe("t", rec) and not bus.unsubscribe("t", rec)

    async def main() -> None:
        with pytest.raises(TypeError, match="payload must be a mapping"):
            await bus.publish("t", [1, 2])  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="event_type"):
            await bus.publish(3, {})  # type: ignore[arg-type]

    run(main())
    assert bus.stats()["published"] == 0


def test_non_json_payload_with_a_store_is_refused_and_loses_nothing(tmp_path: Any) -> None:
    store = SQLiteStore(tmp_path / "bus.db")
    bus = EventBus(store=store)
    rec = Recorder()
    bus.subscribe("t", rec)

    async def main() -> None:
        await bus.publish("t", {"ok": 1})
        with pytest.raises(TypeError, match="not JSON-serialisable"):
            await bus.publish("t", {"when": datetime.datetime.now()})
        with pytest.raises(TypeError, match="not JSON-serialisable"):
            await bus.publish("t", {"x": float("nan")})
        deep: Any = []
        for _ in range(100_000):
            deep = [deep]
        with pytest.raises(TypeError, match="not JSON-serialisable"):
            await bus.publish("t", {"deep": deep})           # nested deeper than JSON can go
        event = await bus.publish("t", {"ok": 2})
        assert event is not None and event.seq == 2

    run(main())
    assert rec.seqs == [1, 2] and store.event_count() == 2
    store.close()


def test_exports() -> None:
    for name in ("EventBus", "Event", "EventStormError", "DeadLetterQueue", "DeadLetter",
                 "SQLiteStore", "StoreError", "ContractViolation", "HandlerDisabled",
                 "RateCounter"):
        assert name in resil.__all__ and hasattr(resil, name)
    assert issubclass(ContractViolation, ResilError) and issubclass(HandlerDisabled, ResilError)


def test_a_publisher_cancelled_while_waiting_for_its_turn_takes_no_number() -> None:
    bus = EventBus()
    seen: list[int] = []

    async def main() -> None:
        gate = asyncio.Event()

        async def slow(event: Event) -> None:
            await gate.wait()
            seen.append(event.payload["n"])

        bus.subscribe("t", slow)
        first = asyncio.ensure_future(bus.publish("t", {"n": 1}))
        await asyncio.sleep(0)
        waiting = [asyncio.ensure_future(bus.publish("t", {"n": n})) for n in (2, 3, 4)]
        await asyncio.sleep(0)
        waiting[0].cancel()
        await asyncio.sleep(0)
        gate.set()
        results = await asyncio.gather(first, *waiting[1:])
        assert [e.seq for e in results] == [1, 2, 3]
        assert waiting[0].cancelled()
        # the bus is free again
        assert (await bus.publish("t", {"n": 5})).seq == 4  # type: ignore[union-attr]

    run(main())
    assert seen == [1, 3, 4, 5]


def test_a_handler_may_publish_on_the_bus_delivering_to_it() -> None:
    bus = EventBus()
    order: list[tuple[str, int]] = []

    async def on_order(event: Event) -> None:
        order.append(("order", event.seq))
        shipped = await bus.publish("shipment", {"order": event.seq})
        assert shipped is not None
        order.append(("published shipment", shipped.seq))

    def on_shipment(event: Event) -> None:
        order.append(("shipment", event.seq))

    bus.subscribe("order", on_order)
    bus.subscribe("shipment", on_shipment)

    async def main() -> None:
        first = await asyncio.wait_for(bus.publish("order", {}), 5)
        second = await asyncio.wait_for(bus.publish("order", {}), 5)
        assert (first.seq, second.seq) == (1, 3)  # type: ignore[union-attr]

    run(main())
    # the nested event is numbered at once and delivered right after the
    # current one, before the outer publish returns: handlers see seq order
    assert order == [("order", 1), ("published shipment", 2), ("shipment", 2),
                     ("order", 3), ("published shipment", 4), ("shipment", 4)]


def test_cancelled_while_dead_lettering_the_rest_still_reach_the_dlq() -> None:
    class SlowDLQ:
        def __init__(self) -> None:
            self.entries: list[tuple[int, str, str]] = []

        async def put(self, item: Event, error: BaseException, source: str = "",
                      attempts: int = 0) -> None:
            await asyncio.sleep(0.01)
            self.entries.append((item.seq, source, type(error).__name__))

    dlq = SlowDLQ()
    bus = EventBus(dlq=dlq)
    after = Recorder("after")
    bus.subscribe("t", Recorder("strict"), required=("x",), name="strict")
    bus.subscribe("t", after)

    async def main() -> None:
        task = asyncio.ensure_future(bus.publish("t", {}))
        await asyncio.sleep(0.001)  # inside the awaited put of the contract violation
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.05)  # puts already started finish

    run(main())
    assert after.seqs == []
    assert sorted(dlq.entries) == [(1, "t:after", "DeliveryCancelled"),
                                   (1, "t:strict", "ContractViolation")]
    assert bus.stats()["dead_lettered"] == 2


def test_a_store_backed_dlq_is_written_off_the_event_loop(tmp_path: Any) -> None:
    import sqlite3
    import time

    store = SQLiteStore(tmp_path / "dlq.db", timeout=0.5)
    dlq = DeadLetterQueue(store=store)
    bus = EventBus(dlq=dlq)
    bus.subscribe("t", Failing("bad"))
    ticks: list[float] = []

    async def ticker() -> None:
        while True:
            ticks.append(time.monotonic())
            await asyncio.sleep(0.01)

    async def main() -> None:
        holder = sqlite3.connect(store.path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        tick = asyncio.ensure_future(ticker())
        await asyncio.sleep(0)
        started = time.monotonic()
        loop = asyncio.get_running_loop()
        loop.call_later(0.2, lambda: (holder.execute("ROLLBACK"), holder.close()))
        await bus.publish("t", {})
        tick.cancel()
        assert time.monotonic() - started >= 0.15  # the put waited for the lock...
        gaps = [b - a for a, b in zip(ticks, ticks[1:])]
        assert max(gaps) < 0.1  # ...without stalling the loop

    run(main())
    assert [e.source for e in dlq.list()] == ["t:bad"]
    store.close()


def test_a_failed_store_write_uses_no_storm_budget(tmp_path: Any) -> None:
    import sqlite3

    from resil import StoreError

    clock = VirtualClock()
    store = SQLiteStore(tmp_path / "s.db", timeout=0.05)
    bus = EventBus(store=store, storm_threshold=2, clock=clock)

    async def main() -> None:
        holder = sqlite3.connect(store.path, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        for _ in range(3):
            with pytest.raises(StoreError):
                await bus.publish("t", {})
        holder.execute("ROLLBACK")
        holder.close()
        assert (await bus.publish("t", {})).seq == 1  # type: ignore[union-attr]
        assert (await bus.publish("t", {})).seq == 2  # type: ignore[union-attr]
        with pytest.raises(EventStormError):
            await bus.publish("t", {})

    run_virtual(main(), clock)
    store.close()


def test_expired_idempotency_originals_are_dropped() -> None:
    clock = VirtualClock()
    bus = EventBus(clock=clock, idempotency_ttl=10.0)

    async def main() -> None:
        for i in range(50):
            await bus.publish("t", {}, idempotency_key="same" if i % 2 else f"k{i}")
            clock.advance(11.0)

    run_virtual(main(), clock)
    assert len(bus._dedup) <= 1


def test_handler_names_are_unique_per_type() -> None:
    bus = EventBus()
    bus.subscribe("t", Recorder("shard"))
    bus.subscribe("t", Recorder("shard"))  # closures of one factory share a qualname
    bus.subscribe("t", Recorder("shard"))
    with pytest.raises(ValueError, match="named 'shard#2'"):
        bus.subscribe("t", Recorder("other"), name="shard#2")
    bus.subscribe("u", Recorder("shard"))  # another type may reuse a name
    assert bus.topology()["t"]["subscribers"] == ["shard", "shard#2", "shard#3"]
    assert set(bus.stats()["handlers"]) == {"t:shard", "t:shard#2", "t:shard#3", "u:shard"}


def test_unsubscribing_to_half_disabled_opens_the_circuit() -> None:
    bus = EventBus(handler_failure_limit=1)
    bad, good1, good2 = Failing("bad"), Recorder("good1"), Recorder("good2")
    for h in (bad, good1, good2):
        bus.subscribe("t", h)

    async def main() -> None:
        await bus.publish("t", {})  # bad disabled: 1 of 3
        assert bus.circuit("t").state is State.CLOSED
        bus.unsubscribe("t", good2)  # now 1 of 2
        assert bus.circuit("t").state is State.FORCED_OPEN
        with pytest.raises(CircuitOpenError):
            await bus.publish("t", {})
        bus.unsubscribe("t", bad)
        assert bus.reset_handler("t") == 0  # closes: none of the 1 left is disabled
        assert (await bus.publish("t", {})).seq == 2  # type: ignore[union-attr]

    run(main())
