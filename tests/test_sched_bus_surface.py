"""The scheduler's tunable jobs (a caller's breaker, a caller's interval, an
async function as the emitter) and the bus's wildcard subscriptions, typed
contracts and run-time storm settings, on virtual time."""

from __future__ import annotations

import asyncio
import functools
import math
import threading
from typing import Any, Optional

import pytest

import resil
from resil import AdaptiveInterval, AdaptiveScheduler, CircuitBreaker, EventBus, TimeScale
from tests_support import switch_interval


# ---- scheduler: a caller's breaker --------------------------------------------------------------
def test_a_callers_breaker_trips_after_its_own_threshold_and_the_job_is_skipped() -> None:
    clock = resil.VirtualClock()
    calls: list[float] = []
    other_calls: list[float] = []

    async def job() -> float:
        calls.append(clock.now())
        if clock.now() < 100:
            raise ConnectionError("source down")
        return 0.1

    async def other() -> float:
        other_calls.append(clock.now())
        return 0.1

    async def main() -> None:
        breaker = CircuitBreaker("source", failure_threshold=2, cooldown=30.0, clock=clock)
        sched = AdaptiveScheduler(clock=clock)
        sched.add("ingest", job, scale=TimeScale.MESO, breaker=breaker)
        sched.add("quiet", other, scale=TimeScale.MESO)  # the default breaker
        async with sched:
            await asyncio.sleep(15)          # failures at 0 and 10: tripped at 10
            assert breaker.state is resil.State.OPEN
            st = sched.status()
            assert st["circuit_breaker"]["tripped"] is True
            assert st["circuit_breaker"]["max_consecutive_errors"] == 2
            assert st["circuit_breaker"]["consecutive_errors"] == 2
            assert st["jobs"]["ingest"]["max_consecutive_errors"] == 2
            assert st["jobs"]["quiet"]["max_consecutive_errors"] == 5
            await asyncio.sleep(24)          # 20 and 30 fall inside the 30 s cooldown
            st = sched.status()
            assert st["jobs"]["ingest"]["errors"] == 2
            assert st["jobs"]["ingest"]["skipped"] == 2
            assert calls == [0.0, 10.0]
            assert breaker.stats()["rejected"] == 2
        # the quiet job, on its own breaker, never stopped
        assert len(other_calls) >= 3 and sched.status()["jobs"]["quiet"]["skipped"] == 0

    resil.run_virtual(main(), clock)


def test_jobs_sharing_a_breaker_are_counted_once_and_bad_breakers_are_refused() -> None:
    clock = resil.VirtualClock()

    async def failing() -> None:
        raise OSError("down")

    async def main() -> None:
        shared = CircuitBreaker("svc", failure_threshold=3, cooldown=500.0, clock=clock)
        sched = AdaptiveScheduler(clock=clock)
        sched.add("a", failing, scale=TimeScale.MICRO, breaker=shared)
        sched.add("b", failing, scale=TimeScale.MICRO, breaker=shared)
        async with sched:
            await asyncio.sleep(1)
        st = sched.status()
        # two jobs' failures moved one breaker: three in a row tripped it
        assert st["jobs"]["a"]["errors"] + st["jobs"]["b"]["errors"] == 3
        assert st["circuit_breaker"]["tripped"] is True
        assert st["circuit_breaker"]["consecutive_errors"] == 3
        assert st["jobs"]["a"]["skipped"] > 0 and st["jobs"]["b"]["skipped"] > 0

    resil.run_virtual(main(), clock)

    async def job() -> None:
        pass

    sched = AdaptiveScheduler()
    for bad in ("svc", object(), 5, 1.5, AdaptiveInterval(1.0, 0.5, 2.0, 0.5)):
        with pytest.raises(TypeError, match="breaker"):
            sched.add("x", job, breaker=bad)  # type: ignore[arg-type]
    assert "x" not in sched.status()["jobs"]


# ---- scheduler: a caller's interval ----------------------------------------------------------------
def test_a_custom_adaptive_interval_rules_the_jobs_waits() -> None:
    clock = resil.VirtualClock()
    runs: list[float] = []
    level = [0.1]

    async def job() -> float:
        runs.append(clock.now())
        return level[0]

    interval = AdaptiveInterval(2.0, 1.5, 3.0, 0.6, speedup=0.5, slowdown=1.1)

    async def main() -> None:
        sched = AdaptiveScheduler(clock=clock)
        sched.add("custom", job, scale=interval)
        async with sched:
            await asyncio.sleep(20)
            gaps = [round(b - a, 6) for a, b in zip(runs, runs[1:])]
            # slowdown 1.1 from base 2.0, clamped at the interval's own max 3.0
            assert gaps[:6] == [2.2, 2.42, 2.662, 2.9282, 3.0, 3.0]
            assert interval.interval == 3.0 == sched.interval("custom")
            level[0] = 0.7                   # above its threshold 0.6 (MESO's is 0.3)
            await asyncio.sleep(10)
            assert interval.interval == 1.5  # speedup 0.5, clamped at its min 1.5
            st = sched.status()
            assert st["adaptive_intervals"] == {"custom": 1.5}
            assert st["jobs"]["custom"]["scale"] == "CUSTOM"
        # an activity between MESO's threshold and this one's slows it down
        level[0] = 0.5
        before = interval.interval
        assert interval.update(0.5) == pytest.approx(before * 1.1)

    resil.run_virtual(main(), clock)


def test_one_interval_object_steps_one_job() -> None:
    async def job() -> None:
        pass

    interval = AdaptiveInterval(1.0, 0.5, 2.0, 0.5)
    sched = AdaptiveScheduler()
    sched.add("first", job, scale=interval)
    with pytest.raises(ValueError, match="scale.*'first'"):
        sched.add("second", job, scale=interval)
    sched.add("third", job, scale=AdaptiveInterval(1.0, 0.5, 2.0, 0.5))
    sched.add("preset", job, scale=TimeScale.MACRO)
    assert sched.status()["adaptive_intervals"] == {"first": 1.0, "third": 1.0, "preset": 300.0}
    for bad in ("MESO", 10.0, None, TimeScale.MESO.value):
        with pytest.raises(TypeError, match="scale"):
            sched.add("bad", job, scale=bad)  # type: ignore[arg-type]
    assert "second" not in sched.status()["jobs"] and "bad" not in sched.status()["jobs"]


# ---- scheduler: an async function as the emitter ------------------------------------------------
def test_novelty_events_reach_a_plain_async_function() -> None:
    clock = resil.VirtualClock()
    events: list[dict[str, Any]] = []
    levels = iter([0.2, 0.9, 0.1, 0.8] + [0.0] * 1000)

    async def sink(event: dict[str, Any]) -> None:
        await asyncio.sleep(0.01)   # a transport that takes time
        events.append(event)

    async def job() -> float:
        return next(levels)

    async def main() -> None:
        sched = AdaptiveScheduler(emitter=sink, clock=clock)
        assert isinstance(sched.emitter, resil.EventEmitter)
        sched.add("braid", job, scale=TimeScale.MICRO)
        async with sched:
            await asyncio.sleep(0.5)
            assert sched.status()["last_emission"] is not None
        assert [e["activity"] for e in events] == [0.9, 0.8]
        assert events[0]["type"] == "novelty" and events[0]["scale"] == "MICRO"
        assert sched.emitter is not None and sched.emitter.stats()["running"] is False
        # a second run wraps the function anew
        sched.add("late", job, scale=TimeScale.MICRO)
        levels_left = len(events)
        async with sched:
            await asyncio.sleep(0.3)
        assert len(events) == levels_left  # zeros only: no novelty, and no error either
        assert asyncio.all_tasks() == {asyncio.current_task()}

    resil.run_virtual(main(), clock)


def test_async_callables_of_every_shape_are_accepted_and_plain_ones_refused() -> None:
    got: list[Any] = []

    async def sink(event: Any, tag: str = "") -> None:
        got.append((tag, event["activity"]))

    class Transport:
        async def __call__(self, event: Any) -> None:
            got.append(("obj", event["activity"]))

        async def send(self, event: Any) -> None:
            got.append(("method", event["activity"]))

    async def job() -> float:
        return 1.0

    async def main(emitter: Any) -> None:
        sched = AdaptiveScheduler(emitter=emitter)
        sched.add("j", job, scale=TimeScale.MICRO)
        sched.start()
        await asyncio.sleep(0)
        await sched.stop()

    for emitter in (functools.partial(sink, tag="partial"), Transport(), Transport().send):
        asyncio.run(main(emitter))
    assert got == [("partial", 1.0), ("obj", 1.0), ("method", 1.0)]

    def plain(event: Any) -> None:
        pass

    for bad in (plain, lambda e: asyncio.sleep(0), print, object(), "ws://x", 3):
        with pytest.raises(TypeError, match="emitter"):
            AdaptiveScheduler(emitter=bad)  # type: ignore[arg-type]


def test_stopping_gives_an_owned_emitter_only_what_is_left_of_the_limits() -> None:
    clock = resil.VirtualClock()
    hang = asyncio.Event

    async def stuck(event: Any) -> None:
        await hang().wait()         # a transport that never answers

    async def job() -> float:
        return 1.0

    async def main() -> None:
        sched = AdaptiveScheduler(emitter=stuck, clock=clock)
        sched.add("j", job, scale=TimeScale.MICRO)
        sched.start()
        await asyncio.sleep(0.3)
        started = clock.now()
        await sched.stop(graceful=1.0, forced=0.5)
        assert clock.now() - started <= 1.5 + 1e-9
        assert sched.emitter is not None
        assert sched.emitter.stats()["dropped"] >= 1   # what was queued is counted, not lost
        assert asyncio.all_tasks() == {asyncio.current_task()}

    resil.run_virtual(main(), clock)
    assert math.isfinite(clock.now())


def test_an_owned_emitter_closes_with_unlimited_limits_and_when_stop_is_cancelled() -> None:
    clock = resil.VirtualClock()
    got: list[float] = []

    async def slow(event: Any) -> None:
        await asyncio.sleep(5.0)
        got.append(event["activity"])

    async def job() -> float:
        return 1.0

    async def main() -> None:
        sched = AdaptiveScheduler(emitter=slow, clock=clock)
        sched.add("j", job, scale=TimeScale.MICRO)
        sched.start()
        await asyncio.sleep(0.01)
        await sched.stop(graceful=math.inf, forced=math.inf)   # drains, however long
        assert got == [1.0] and sched.emitter is not None
        assert sched.emitter.stats()["emitted"] == 1

        sched.start()                                          # a new emitter
        await asyncio.sleep(0.01)
        stopping = asyncio.ensure_future(sched.stop(graceful=1.0, forced=1.0))
        await asyncio.sleep(0)
        stopping.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stopping
        await asyncio.sleep(3.0)                               # the close went on by itself
        assert sched.emitter.stats()["running"] is False
        assert asyncio.all_tasks() == {asyncio.current_task()}

    resil.run_virtual(main(), clock)


# ---- bus: wildcard subscriptions ----------------------------------------------------------------
class Recorder:
    def __init__(self, name: str) -> None:
        self.events: list[resil.Event] = []
        self.__qualname__ = name

    def __call__(self, event: resil.Event) -> None:
        self.events.append(event)

    @property
    def types(self) -> list[str]:
        return [e.event_type for e in self.events]

    @property
    def seqs(self) -> list[int]:
        return [e.seq for e in self.events]


def test_a_pattern_receives_every_type_under_its_prefix_and_star_receives_all() -> None:
    bus = EventBus()
    graph, everything, exact = Recorder("graph"), Recorder("everything"), Recorder("exact")
    bus.subscribe("graph.*", graph)
    bus.subscribe("*", everything)
    bus.subscribe("graph.edge_added", exact)

    async def main() -> None:
        for t in ("graph.edge_added", "graph.node.x", "graph", "graphs.x", "posterior.updated"):
            await bus.publish(t, {})

    asyncio.run(main())
    assert graph.types == ["graph.edge_added", "graph.node.x"]
    assert everything.seqs == [1, 2, 3, 4, 5]
    assert exact.types == ["graph.edge_added"]
    st = bus.stats()
    assert st["handlers"]["graph.*:graph"]["delivered"] == 2
    assert st["handlers"]["*:everything"]["delivered"] == 5
    assert st["delivered"] == 8


def test_patterns_reach_types_seen_before_them_and_stop_when_unsubscribed() -> None:
    bus = EventBus()
    early = Recorder("early")

    async def main() -> None:
        bus.subscribe("a.b", early)
        await bus.publish("a.b", {})      # tracked before the pattern exists
        await bus.publish("a.c", {})      # published, idle, then forgotten or not
        late = Recorder("late")
        bus.subscribe("a.*", late)
        await bus.publish("a.b", {})
        await bus.publish("a.c", {})
        await bus.publish("a.new", {})
        assert late.seqs == [3, 4, 5]
        assert bus.unsubscribe("a.*", late) is True
        assert bus.unsubscribe("a.*", late) is False
        await bus.publish("a.c", {})
        assert late.seqs == [3, 4, 5]
        assert bus.topology()["a.c"]["orphaned"] is True

    asyncio.run(main())
    assert early.seqs == [1, 3]


@pytest.mark.parametrize("bad", ["a.*.b", "gra*", "*.x", "**", "a.**", "graph.*x", "*a", "a*.b"])
def test_only_a_whole_last_segment_is_a_wildcard(bad: str) -> None:
    bus = EventBus()
    with pytest.raises(ValueError, match="event_type"):
        bus.subscribe(bad, Recorder("r"))
    assert bus.topology() == {}


def test_a_published_type_cannot_hold_a_wildcard() -> None:
    bus = EventBus()
    star = Recorder("star")
    bus.subscribe("graph.*", star)

    async def main() -> None:
        for bad in ("graph.*", "*", "graph.x*"):
            with pytest.raises(ValueError, match="event_type"):
                await bus.publish(bad, {})
        await bus.publish("graph.ok", {})   # nothing numbered meanwhile

    asyncio.run(main())
    assert star.seqs == [1]


def test_a_handler_subscribed_exactly_and_by_pattern_gets_each_event_once() -> None:
    dlq = resil.DeadLetterQueue()
    bus = EventBus(dlq=dlq)
    both = Recorder("both")
    order: list[str] = []
    bus.subscribe("*", lambda e: order.append("first"), name="first")
    bus.subscribe("graph.*", both)                                  # no contract
    bus.subscribe("graph.edge_added", both, required=("source",))   # the most specific
    bus.subscribe("*", both)
    bus.subscribe("graph.*", lambda e: order.append("last"), name="last")

    async def main() -> None:
        await bus.publish("graph.edge_added", {"source": "a"})
        await bus.publish("graph.edge_added", {})          # refused by the exact contract
        await bus.publish("graph.node", {})                 # through graph.*, once
        await bus.publish("other", {})                      # through *

    asyncio.run(main())
    assert both.seqs == [1, 3, 4]
    assert [e.source for e in dlq.list()] == ["graph.edge_added:both"]
    assert order == ["first", "last"] * 3 + ["first"]
    st = bus.stats()["handlers"]
    assert st["graph.edge_added:both"]["delivered"] == 1
    assert st["graph.edge_added:both"]["violations"] == 1
    assert st["graph.*:both"]["delivered"] == 1 and st["*:both"]["delivered"] == 1
    assert bus.stats()["violations"] == 1


def test_each_handler_sees_events_in_sequence_order_with_wildcards_and_nesting() -> None:
    clock = resil.VirtualClock()
    bus = EventBus(storm_threshold=10_000, clock=clock)
    seen: dict[str, list[int]] = {"star": [], "a": [], "exact": []}

    def make(key: str) -> Any:
        async def handler(event: resil.Event) -> None:
            seen[key].append(event.seq)
            if key == "exact" and event.payload["n"] % 3 == 0:
                await bus.publish("a.reply", {"n": -1})     # nested: delivered next
            await asyncio.sleep(0.001)
        return handler

    bus.subscribe("*", make("star"), name="star")
    bus.subscribe("a.*", make("a"), name="a")
    bus.subscribe("a.x", make("exact"), name="exact")

    async def main() -> None:
        await asyncio.gather(*(bus.publish("a.x" if i % 2 else "b.y", {"n": i})
                               for i in range(60)))

    resil.run_virtual(main(), clock)
    total = bus.stats()["last_seq"]
    assert seen["star"] == list(range(1, total + 1))
    for key in ("a", "exact"):
        assert seen[key] == sorted(seen[key]) and len(set(seen[key])) == len(seen[key])
    assert len(seen["a"]) == len(seen["exact"]) + 10   # the nested replies


def test_topology_counts_wildcard_subscribers_and_lists_patterns() -> None:
    bus = EventBus()
    bus.subscribe("graph.*", Recorder("graph_watch"))
    bus.subscribe("metrics.*", Recorder("metrics_watch"))
    bus.subscribe("graph.edge_added", Recorder("on_edge"))

    async def main() -> None:
        await bus.publish("graph.edge_added", {}, publisher="extractor")
        await bus.publish("graph.node_added", {}, publisher="extractor")
        await bus.publish("posterior.updated", {})

    asyncio.run(main())
    topo = bus.topology()
    assert topo["graph.node_added"] == {"publishers": ["extractor"],
                                        "subscribers": ["graph_watch"], "published": 1,
                                        "orphaned": False, "unused": False}
    assert topo["graph.edge_added"]["subscribers"] == ["graph_watch", "on_edge"]
    assert topo["posterior.updated"]["orphaned"] is True
    assert topo["graph.*"] == {"publishers": [], "subscribers": ["graph_watch"],
                               "published": 2, "orphaned": False, "unused": False}
    assert topo["metrics.*"] == {"publishers": [], "subscribers": ["metrics_watch"],
                                 "published": 0, "orphaned": False, "unused": True}
    assert list(topo) == ["graph.edge_added", "graph.node_added", "posterior.updated",
                          "graph.*", "metrics.*"]


def test_a_failing_wildcard_handler_is_disabled_alone_and_opens_no_circuit() -> None:
    dlq = resil.DeadLetterQueue()
    bus = EventBus(handler_failure_limit=3, dlq=dlq)
    calls: list[int] = []

    def broken(event: resil.Event) -> None:
        calls.append(event.seq)
        raise RuntimeError("audit store down")

    exact = Recorder("exact")
    bus.subscribe("*", broken)
    bus.subscribe("a", exact)

    async def main() -> None:
        await bus.publish("a", {})
        await bus.publish("b", {})
        await bus.publish("c", {})          # the third failure in a row, over three types
        st = bus.stats()
        assert st["handlers"]["*:test_a_failing_wildcard_handler_is_disabled_alone_and_opens_"
                              "no_circuit.<locals>.broken"]["disabled"] is True
        # publishing goes on: a (1 exact handler, healthy), b and c (no own handler)
        for t in ("a", "b", "c"):
            await bus.publish(t, {})
        assert calls == [1, 2, 3]
        assert set(bus.stats()["circuits"].values()) == {"CLOSED"}
        assert exact.seqs == [1, 4]
        assert bus.stats()["skipped"] == 3
        assert [e.error_type for e in dlq.list()] == ["RuntimeError"] * 3 + ["HandlerDisabled"] * 3
        with pytest.raises(KeyError, match=r"pattern '\*'.*reset_handler"):
            bus.reset_handler("a", broken)
        assert bus.reset_handler("*") == 1
        await bus.publish("b", {})
        assert calls == [1, 2, 3, 7]

    asyncio.run(main())


def test_a_types_circuit_counts_its_own_handlers_beside_healthy_wildcards() -> None:
    bus = EventBus(handler_failure_limit=1)
    watch = Recorder("watch")
    bus.subscribe("*", watch)

    def broken(event: resil.Event) -> None:
        raise ValueError("bad")

    bus.subscribe("orders.created", broken)

    async def main() -> None:
        await bus.publish("orders.created", {})
        with pytest.raises(resil.CircuitOpenError, match="broken"):
            await bus.publish("orders.created", {})
        await bus.publish("orders.shipped", {})
        assert bus.reset_handler("orders.created") == 1
        await bus.publish("orders.created", {})

    asyncio.run(main())
    assert watch.seqs == [1, 2, 3]


# ---- bus: typed contracts -------------------------------------------------------------------------
def test_a_present_field_of_the_wrong_type_is_a_contract_violation() -> None:
    dlq = resil.DeadLetterQueue()
    bus = EventBus(dlq=dlq)
    typed = Recorder("typed")
    lax = Recorder("lax")
    bus.subscribe("t", typed, required={"id": int, "score": (int, float), "tag": str | None})
    bus.subscribe("t", Recorder("opt"), required={"tag": Optional[str]}, name="opt")
    bus.subscribe("t", lax)

    async def main() -> None:
        await bus.publish("t", {"id": 1, "score": 0.5, "tag": None})      # 1
        await bus.publish("t", {"id": "1", "score": 0.5, "tag": "x"})     # 2: id is a str
        await bus.publish("t", {"id": 2, "score": 3, "tag": "y"})         # 3
        await bus.publish("t", {"id": 2, "score": "high", "tag": "y"})    # 4
        await bus.publish("t", {"id": 2, "tag": "y"})                     # 5: missing score
        await bus.publish("t", {"id": 2, "score": 1, "tag": 7})           # 6

    asyncio.run(main())
    assert typed.seqs == [1, 3]
    assert lax.seqs == [1, 2, 3, 4, 5, 6]
    entries = dlq.list()
    assert [(e.item.seq, e.source, e.error_type) for e in entries] == [
        (n, "t:typed", "ContractViolation") for n in (2, 4, 5)] + [
        (6, "t:typed", "ContractViolation"), (6, "t:opt", "ContractViolation")]
    assert "field 'id' is str, expected int" in entries[0].error
    assert "expected int or float" in entries[1].error
    assert "missing required field score" in entries[2].error
    assert "expected str or NoneType" in entries[3].error
    st = bus.stats()
    assert st["violations"] == 5 and st["handlers"]["t:typed"]["violations"] == 4


def test_a_type_check_that_raises_is_a_violation_not_a_crash() -> None:
    class Meta(type):
        def __instancecheck__(cls, obj: object) -> bool:
            raise RuntimeError("cannot tell")

    class Odd(metaclass=Meta):
        pass

    bus = EventBus()
    odd = Recorder("odd")
    bus.subscribe("t", odd, required={"x": Odd})

    async def main() -> None:
        await bus.publish("t", {"x": 1})

    asyncio.run(main())
    assert odd.seqs == [] and bus.stats()["violations"] == 1


@pytest.mark.parametrize("bad", [{"a": "int"}, {"a": ()}, {"a": list[int]}, {"a": (int, "x")},
                                 {"a": None}, {"a": 3}, {"a": int, 1: str}, {"": int}])
def test_a_required_mapping_of_non_types_is_refused_at_subscribe(bad: Any) -> None:
    bus = EventBus()
    with pytest.raises((TypeError, ValueError), match="required"):
        bus.subscribe("t", Recorder("r"), required=bad)
    assert bus.stats()["handlers"] == {}


# ---- bus: storm settings at run time ----------------------------------------------------------
def test_configure_changes_the_storm_threshold_for_the_next_publish() -> None:
    clock = resil.VirtualClock()
    bus = EventBus(storm_threshold=5, storm_window=10.0, clock=clock)

    async def main() -> None:
        for _ in range(3):
            await bus.publish("t", {})
        bus.configure(storm_threshold=3)           # the three in the window still count
        with pytest.raises(resil.EventStormError, match="more than 3"):
            await bus.publish("t", {})
        bus.configure(storm_threshold=4)
        await bus.publish("t", {})
        with pytest.raises(resil.EventStormError):
            await bus.publish("t", {})
        bus.configure(storm_threshold=1000)
        for _ in range(100):
            await bus.publish("t", {})
        clock.advance(10.0)
        assert bus.stats()["storms"] == 2

    asyncio.run(main())


def test_configure_retimes_the_counted_events_into_a_new_window() -> None:
    clock = resil.VirtualClock()
    bus = EventBus(storm_threshold=3, storm_window=10.0, clock=clock)

    async def main() -> None:
        for _ in range(3):
            await bus.publish("t", {})
        clock.advance(9.0)
        bus.configure(storm_window=2.0)   # the three count as published now, for 2 s
        with pytest.raises(resil.EventStormError, match="within 2 s"):
            await bus.publish("t", {})
        clock.advance(1.999)
        with pytest.raises(resil.EventStormError):
            await bus.publish("t", {})
        clock.advance(0.001)
        await bus.publish("t", {})
        bus.configure(storm_window=60.0)  # one counted event, now good for 60 s
        await bus.publish("t", {})
        await bus.publish("t", {})
        clock.advance(59.0)
        with pytest.raises(resil.EventStormError):
            await bus.publish("t", {})
        await bus.publish("new.type", {})  # a type first seen now gets the new window

    asyncio.run(main())


def test_configure_checks_everything_before_changing_anything() -> None:
    clock = resil.VirtualClock()
    bus = EventBus(storm_threshold=2, storm_window=5.0, clock=clock)
    for kwargs, error in (({"storm_threshold": 0}, ValueError),
                          ({"storm_threshold": 2**24 + 1}, ValueError),
                          ({"storm_threshold": 1.5}, TypeError),
                          ({"storm_threshold": True}, TypeError),
                          ({"storm_threshold": 10, "storm_window": -1.0}, ValueError),
                          ({"storm_threshold": 10, "storm_window": math.nan}, ValueError),
                          ({"storm_threshold": 10, "storm_window": math.inf}, ValueError),
                          ({"storm_threshold": 10, "storm_window": 10**400}, (ValueError,
                                                                               OverflowError)),
                          ({"storm_threshold": 10, "storm_window": "1"}, TypeError)):
        name = "storm_window" if "storm_window" in kwargs else "storm_threshold"
        with pytest.raises(error, match=name):  # type: ignore[arg-type]
            bus.configure(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        bus.configure(10)  # type: ignore[misc]
    bus.configure()  # nothing to change

    async def main() -> None:
        await bus.publish("t", {})
        await bus.publish("t", {})
        with pytest.raises(resil.EventStormError, match="more than 2 't' events within 5 s"):
            await bus.publish("t", {})

    asyncio.run(main())


def test_topology_and_stats_read_from_a_thread_while_patterns_change() -> None:
    bus = EventBus(storm_threshold=1 << 20)
    stop = threading.Event()
    errors: list[BaseException] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                bus.topology()
                bus.stats()
            except BaseException as exc:  # pragma: no cover - what the test looks for
                errors.append(exc)
                return

    async def main() -> None:
        handlers = [Recorder(f"h{i}") for i in range(8)]
        for round_ in range(150):
            for i, h in enumerate(handlers):
                bus.subscribe(f"p{i % 3}.*" if i % 2 else "*", h)
            await bus.publish(f"p{round_ % 3}.t{round_ % 7}", {})
            for i, h in enumerate(handlers):
                assert bus.unsubscribe(f"p{i % 3}.*" if i % 2 else "*", h)

    with switch_interval(1e-5):
        thread = threading.Thread(target=reader)
        thread.start()
        try:
            asyncio.run(main())
        finally:
            stop.set()
            thread.join()
    assert errors == []
    assert bus.stats()["published"] == 150


def test_the_exposition_counts_each_event_once_beside_wildcard_subscriptions() -> None:
    from resil import prometheus

    bus = EventBus()
    bus.subscribe("graph.*", Recorder("watch"))
    bus.subscribe("*", Recorder("audit"))

    async def main() -> None:
        await bus.publish("graph.edge_added", {})
        await bus.publish("graph.node_added", {})

    asyncio.run(main())
    rows = [line for line in prometheus.exposition(("main", bus)).splitlines()
            if line.startswith("resil_bus_events_total")]
    assert len(rows) == 2 and all(line.endswith(" 1") for line in rows), rows
    assert not any("*" in line for line in rows)


def test_replay_delivers_stored_events_to_wildcard_handlers(tmp_path: Any) -> None:
    store = resil.SQLiteStore(str(tmp_path / "events.db"))
    clock = resil.VirtualClock()
    bus = EventBus(store=store, clock=clock)

    async def main() -> None:
        await bus.publish("graph.edge_added", {"n": 1})
        await bus.publish("other", {"n": 2})
        await bus.publish("graph.node.x", {"n": 3})
        clock.advance(5.0)
        await bus.publish("later", {"n": 4})   # the idle types above are forgotten now
        graph = Recorder("graph")
        bus.subscribe("graph.*", graph)
        assert await bus.replay() == 4
        assert graph.seqs == [1, 3]
        assert graph.types == ["graph.edge_added", "graph.node.x"]

    asyncio.run(main())
    store.close()
