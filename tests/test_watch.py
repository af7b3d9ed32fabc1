"""Monitor.watch wires every component kind's own events into the monitor:
after it, the dashboard and the alerts count what the components did, under
their names, once each, with no further code."""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

import resil
from tests_support import run_threads
from resil import (Backoff, CircuitBreaker, DeadLetterQueue, EventBus, EventEmitter, Monitor,
                   OperationTimeout, TimeoutManager, VirtualClock)
from resil._hooks import Listeners

NO_WAIT = Backoff(0.0, multiplier=1.0, max_delay=0.0)
FAMILY_KIND = {"trips": "circuit_breaker_trip", "timeout": "timeout", "retry": "retry",
               "dead_letter": "dead_letter", "grace": "grace_recovery"}


def metrics(monitor: Monitor) -> dict[str, Any]:
    metrics: dict[str, Any] = monitor.dashboard()["resilience_metrics"]
    return metrics


def events(monitor: Monitor) -> dict[tuple[str, str], float]:
    """{(kind, component name): count} as the monitor's exposition shows them."""
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(resil.prometheus.exposition(monitor)):
        kind = next((k for key, k in FAMILY_KIND.items() if key in family.name), None)
        if kind is None:
            continue
        for sample in family.samples:
            (name,) = [v for k, v in sample.labels.items() if k != "monitor"]
            out[(kind, name)] = sample.value
    return out


# ---- the whole story: a real timeout, two retries and a dead letter ----------------

def test_watched_components_count_a_real_timeout_two_retries_and_a_dead_letter() -> None:
    clock = VirtualClock()
    monitor = Monitor(clock=clock)
    tm = TimeoutManager(clock=clock)
    dlq = DeadLetterQueue(name="orders.dlq")
    calls = 0

    @resil.retry(retries=3, backoff=Backoff(1.0, multiplier=1.0, max_delay=1.0), name="fetch")
    async def fetch() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError("refused")
        return "ok"

    for source in (tm, fetch, dlq):
        monitor.watch(source)

    async def main() -> None:
        with pytest.raises(OperationTimeout):
            async with tm.timeout("load", 2.0):
                await asyncio.sleep(10)
        assert await fetch() == "ok"
        dlq.put({"order": 1}, ConnectionError("refused"), source="orders")

    resil.run_virtual(main(), clock)
    counted = metrics(monitor)
    assert (counted["timeout_failures"], counted["retry_attempts"],
            counted["dead_letter_queue_messages"]) == (1, 2, 1)
    assert events(monitor) == {("timeout", "load"): 1, ("retry", "fetch"): 2,
                               ("dead_letter", "orders.dlq"): 1}
    kinds = {a["metric"] for a in monitor.alerts()}
    assert {"timeout", "dead_letter"} <= kinds


# ---- each kind, under its component's name -------------------------------------------

def test_a_sync_retry_policy_counts_each_retry_under_its_name() -> None:
    monitor = Monitor(clock=VirtualClock())
    clock = VirtualClock()
    policy = resil.retry(retries=4, backoff=NO_WAIT, clock=clock, name="db")
    attempts = 0

    @policy
    def query() -> int:
        nonlocal attempts
        attempts += 1
        if attempts <= 3:
            raise TimeoutError
        return attempts

    monitor.watch(policy)
    assert query() == 4
    assert metrics(monitor)["retry_attempts"] == 3
    assert events(monitor) == {("retry", "db"): 3}
    assert policy.stats()["retries"] == 3


def test_a_nameless_policy_is_counted_under_the_function_it_was_watched_through() -> None:
    monitor = Monitor(clock=VirtualClock())

    @resil.retry(retries=1, backoff=NO_WAIT, clock=VirtualClock())
    def flaky() -> None:
        raise ValueError

    assert flaky.retry_policy.name is None  # type: ignore[attr-defined]
    monitor.watch(flaky)
    with pytest.raises(ValueError):
        flaky()
    assert events(monitor) == {("retry", flaky.__qualname__): 1}

    unnamed = resil.retry(retries=2, backoff=NO_WAIT, clock=VirtualClock())
    other = Monitor(clock=VirtualClock())
    other.watch(unnamed)
    with pytest.raises(KeyError):
        unnamed(lambda: {}["k"])()
    assert events(other) == {("retry", "retry"): 2}


def test_retries_of_every_function_a_watched_policy_decorates_are_counted() -> None:
    monitor = Monitor(clock=VirtualClock())
    policy = resil.retry(retries=1, backoff=NO_WAIT, name="p")

    @policy
    async def a() -> None:
        raise OSError

    @policy
    def b() -> None:
        raise OSError

    monitor.watch(a)   # watches the policy: b too
    monitor.watch(b)   # the same policy: not wired again

    async def main() -> None:
        with pytest.raises(OSError):
            await a()

    resil.run_virtual(main())
    with pytest.raises(OSError):
        b()
    assert events(monitor) == {("retry", "p"): 2}


def test_grace_recoveries_and_timeouts_are_counted_per_operation_name() -> None:
    clock = VirtualClock()
    monitor = Monitor(clock=clock)
    tm = TimeoutManager(grace_period=5.0, clock=clock)
    monitor.watch(tm)

    async def main() -> None:
        async with tm.timeout("slow-but-alive", 2.0) as op:
            await asyncio.sleep(1.5)
            op.progress()
            await asyncio.sleep(2.0)   # past the deadline, inside the grace period
        for name in ("a", "a", "b"):
            with pytest.raises(OperationTimeout):
                async with tm.timeout(name, 1.0):
                    await asyncio.sleep(5)

    resil.run_virtual(main(), clock)
    counted = metrics(monitor)
    assert counted["grace_period_recoveries"] == 1 and counted["timeout_failures"] == 3
    assert events(monitor) == {("grace_recovery", "slow-but-alive"): 1, ("timeout", "a"): 2,
                               ("timeout", "b"): 1}
    assert tm.stats()["grace_recoveries"] == 1 and tm.stats()["timeouts"] == 3


def test_breaker_and_group_trips_keep_working() -> None:
    clock = VirtualClock()
    monitor = Monitor(clock=clock)
    group = resil.BreakerGroup(failure_threshold=1, clock=clock)
    group["api"].record_failure()          # before the watch: not counted
    monitor.watch(group)
    group["api"].reset()
    group["api"].record_failure()
    assert events(monitor) == {("circuit_breaker_trip", "api"): 1}


# ---- the emitter and the bus ------------------------------------------------------------

def test_an_emitters_breaker_trips_retries_and_dead_letters_are_counted() -> None:
    clock = VirtualClock()
    monitor = Monitor(clock=clock)
    breaker = CircuitBreaker("ws", failure_threshold=3, cooldown=60.0, clock=clock)
    dlq = DeadLetterQueue(name="ws.dlq")

    async def sink(event: Any) -> None:
        raise ConnectionError("down")

    policy = resil.retry(retries=1, backoff=NO_WAIT)
    emitter = EventEmitter(sink, breaker=breaker, dlq=dlq, retry=policy, clock=clock)
    monitor.watch(emitter)

    async def main() -> None:
        async with emitter:
            emitter.emit(1)
            emitter.emit(2)
            await asyncio.sleep(1)

    resil.run_virtual(main(), clock)
    # event 1: two calls (a retry), dead-lettered; event 2: one call trips the
    # breaker (3 failures), which rejects its retry: dead-lettered.
    assert len(dlq) == 2 and policy.stats()["retries"] == 2
    assert events(monitor) == {("circuit_breaker_trip", "ws"): 1, ("retry", "emitter"): 2,
                               ("dead_letter", "ws.dlq"): 2}


def test_dead_letters_handed_to_any_other_sink_are_counted_under_its_name() -> None:
    class Sink:
        name = "kafka.dlq"
        blocking = False

        def __init__(self) -> None:
            self.items: list[Any] = []

        def put(self, item: Any, error: BaseException, *, source: str | None = None,
                attempts: int = 0) -> int:
            self.items.append(item)
            return len(self.items)

    sink = Sink()
    monitor = Monitor(clock=VirtualClock())

    def fail(event: Any) -> None:
        raise RuntimeError

    emitter = EventEmitter(fail, dlq=sink)  # type: ignore[arg-type]
    monitor.watch(emitter)

    async def main() -> None:
        async with emitter:
            for i in range(3):
                emitter.emit(i)
            await asyncio.sleep(0.1)

    resil.run_virtual(main())
    assert sink.items == [0, 1, 2]
    assert events(monitor) == {("dead_letter", "kafka.dlq"): 3}


def test_a_bus_counts_failed_deliveries_and_its_circuits_opening_made_before_or_after() -> None:
    clock = VirtualClock()
    monitor = Monitor(clock=clock)
    dlq = DeadLetterQueue(name="bus.dlq", maxsize=1000)
    bus = EventBus(handler_failure_limit=2, dlq=dlq, clock=clock)

    def broken(event: Any) -> None:
        raise ValueError("bad")

    bus.subscribe("early", broken)
    bus.circuit("early")                     # made before the watch
    monitor.watch(bus)
    bus.subscribe("late", broken)            # its circuit is made after the watch
    bus.subscribe("contract", lambda e: None, required=("id",))

    async def main() -> None:
        for _ in range(2):
            await bus.publish("early", {})
            await bus.publish("late", {})
        await bus.publish("contract", {})    # a contract violation
        for event_type in ("early", "late"):
            with pytest.raises(resil.CircuitOpenError):
                await bus.publish(event_type, {})

    resil.run_virtual(main(), clock)
    assert len(dlq) == 5
    assert events(monitor) == {("dead_letter", "bus.dlq"): 5,
                               ("circuit_breaker_trip", "bus:early"): 1,
                               ("circuit_breaker_trip", "bus:late"): 1}


# ---- once each ---------------------------------------------------------------------------

def test_a_component_watched_again_or_through_another_is_counted_once() -> None:
    clock = VirtualClock()
    monitor = Monitor(clock=clock)
    dlq = DeadLetterQueue(name="q")
    breaker = CircuitBreaker("b", failure_threshold=1, clock=clock)
    policy = resil.retry(retries=1, backoff=NO_WAIT, name="r")
    emitter = EventEmitter(print, dlq=dlq, breaker=breaker, retry=policy)
    bus = EventBus(dlq=dlq, clock=clock)
    tm = TimeoutManager(clock=clock)
    bus.subscribe("t", print)
    for source in (dlq, dlq, breaker, policy, emitter, emitter, bus, bus, bus.circuit("t"),
                   tm, tm):
        monitor.watch(source)
    dlq.put(1, "e")
    breaker.record_failure()
    bus.circuit("t").force_open()
    with pytest.raises(OSError):
        policy(lambda: (_ for _ in ()).throw(OSError()))()

    async def main() -> None:
        with pytest.raises(OperationTimeout):
            async with tm.timeout("t", 1.0):
                await asyncio.sleep(2)

    resil.run_virtual(main(), clock)
    assert events(monitor) == {("dead_letter", "q"): 1, ("circuit_breaker_trip", "b"): 1,
                               ("circuit_breaker_trip", "bus:t"): 1, ("retry", "r"): 1,
                               ("timeout", "t"): 1}


def test_two_monitors_each_count_a_shared_component() -> None:
    dlq = DeadLetterQueue()
    first, second = Monitor(clock=VirtualClock()), Monitor(clock=VirtualClock())
    first.watch(dlq)
    second.watch(dlq)
    dlq.put(1, "e")
    assert metrics(first)["dead_letter_queue_messages"] == 1
    assert metrics(second)["dead_letter_queue_messages"] == 1


def test_threads_watching_and_putting_at_once_count_each_dead_letter_once() -> None:
    monitor = Monitor(clock=VirtualClock())
    dlq = DeadLetterQueue(maxsize=10_000)
    start = threading.Barrier(8)

    def work(_: int) -> None:
        start.wait()
        for i in range(200):
            monitor.watch(dlq)
            dlq.put(i, "e")

    run_threads(work, 8)
    assert metrics(monitor)["dead_letter_queue_messages"] == 1600 == len(dlq)


# ---- weak references both ways -----------------------------------------------------------

def _components(clock: VirtualClock) -> list[Any]:
    policy = resil.retry(retries=1, backoff=NO_WAIT, name="r")

    @policy
    def fn() -> None:
        pass

    dlq = DeadLetterQueue()
    return [CircuitBreaker("b", clock=clock), resil.BreakerGroup(clock=clock), policy, fn,
            TimeoutManager(clock=clock), dlq,
            EventEmitter(print, dlq=dlq, breaker=CircuitBreaker("e", clock=clock),
                         retry=resil.retry(retries=1)),
            EventBus(dlq=DeadLetterQueue(), clock=clock)]


def test_a_watched_component_is_collected_and_keeps_no_monitor_alive() -> None:
    clock = VirtualClock()
    monitor = Monitor(clock=clock)
    components = _components(clock)
    components[-1].subscribe("t", print)
    components[-1].circuit("t")
    for c in components:
        monitor.watch(c)
    refs = [weakref.ref(c) for c in components]
    del components, c
    gc.collect()
    assert [r() for r in refs] == [None] * len(refs)
    assert metrics(monitor)["dead_letter_queue_messages"] == 0
    monitor_ref = weakref.ref(monitor)
    del monitor
    gc.collect()
    assert monitor_ref() is None


def test_a_collected_monitor_leaves_its_components_working_and_unhooked() -> None:
    clock = VirtualClock()
    dlq = DeadLetterQueue()
    breaker = CircuitBreaker("b", failure_threshold=1, clock=clock)
    policy = resil.retry(retries=1, backoff=NO_WAIT, clock=clock)
    tm = TimeoutManager(clock=clock)
    bus = EventBus(clock=clock)
    monitor = Monitor(clock=clock)
    for source in (dlq, breaker, policy, tm, bus):
        monitor.watch(source)
    ref = weakref.ref(monitor)
    del monitor
    gc.collect()
    assert ref() is None                    # nothing the components hold kept it
    dlq.put(1, "e")
    breaker.record_failure()
    with pytest.raises(OSError):
        policy(lambda: (_ for _ in ()).throw(OSError()))()
    bus.subscribe("t", print)
    bus.circuit("t").force_open()
    assert len(dlq) == 1 and breaker.state is resil.State.OPEN
    assert policy.stats()["retries"] == 1
    # The first event after the monitor went took each relay off its list.
    assert not dlq._listeners and not policy._policy.listeners
    assert breaker._listeners == () and bus._on_circuit == []


# ---- refusals ----------------------------------------------------------------------------

@pytest.mark.parametrize("source", [object(), print, lambda: None, {"a": 1}, None, 3,
                                    resil.Backoff(), resil.Deduplicator(),
                                    resil.BoundedQueue(), resil.AdaptiveScheduler()])
def test_anything_else_raises_type_error_naming_the_accepted_types(source: Any) -> None:
    with pytest.raises(TypeError) as info:
        Monitor().watch(source)
    for name in ("CircuitBreaker", "BreakerGroup", "RetryPolicy", "resil.retry",
                 "TimeoutManager", "DeadLetterQueue", "EventEmitter", "EventBus",
                 type(source).__name__):
        assert name in str(info.value)


def test_an_object_with_a_retry_policy_attribute_of_another_type_is_refused() -> None:
    class Impostor:
        retry_policy = "not a policy"

    with pytest.raises(TypeError, match="RetryPolicy"):
        Monitor().watch(Impostor())


# ---- alert_dead_letters ---------------------------------------------------------------------

def test_an_alert_appears_once_a_watched_queue_reaches_alert_dead_letters() -> None:
    monitor = Monitor(alert_dead_letters=3, clock=VirtualClock())
    watched, unwatched = DeadLetterQueue(name="orders"), DeadLetterQueue(name="other")
    monitor.watch(watched)

    def queue_alerts() -> list[dict[str, Any]]:
        found = [a for a in monitor.alerts() if a["metric"] == "dead_letter_queue_depth"]
        assert found == [a for a in monitor.dashboard()["alerts"]
                         if a["metric"] == "dead_letter_queue_depth"]
        return found

    for i in range(2):
        watched.put(i, "e")
    for i in range(10):
        unwatched.put(i, "e")
    assert queue_alerts() == []
    watched.put(2, "e")
    (alert,) = queue_alerts()
    assert alert["severity"] == "warning" and alert["component"] == "orders"
    assert alert["value"] == 3 and alert["threshold"] == 3 and "orders" in alert["message"]
    for i in range(3):
        watched.put(i, "e")
    (alert,) = queue_alerts()
    assert alert["severity"] == "critical" and alert["value"] == 6 and alert["threshold"] == 6
    watched.purge()
    assert queue_alerts() == []


def test_an_emitters_queue_is_sized_for_the_alert_when_the_emitter_is_watched() -> None:
    dlq = DeadLetterQueue(name="em")
    monitor = Monitor(alert_dead_letters=1)
    monitor.watch(EventEmitter(print, dlq=dlq))
    dlq.put(1, "e")
    assert [a["component"] for a in monitor.alerts()
            if a["metric"] == "dead_letter_queue_depth"] == ["em"]


def test_without_alert_dead_letters_there_is_no_size_alert() -> None:
    monitor = Monitor()
    dlq = DeadLetterQueue()
    monitor.watch(dlq)
    for i in range(100):
        dlq.put(i, "e")
    assert all(a["metric"] != "dead_letter_queue_depth" for a in monitor.alerts())


@pytest.mark.parametrize("value, error", [
    (0, ValueError), (-1, ValueError), (-10**400, ValueError), (True, TypeError),
    (1.0, TypeError), (float("nan"), TypeError), ("3", TypeError), ([], TypeError)],
    ids=["0", "-1", "-10**400", "True", "1.0", "nan", "str", "list"])
def test_alert_dead_letters_is_an_int_of_at_least_one_or_none(value: Any, error: type) -> None:
    with pytest.raises(error, match=r"^alert_dead_letters must be an int >= 1 or None"):
        Monitor(alert_dead_letters=value)


def test_alert_dead_letters_accepts_one_and_huge_ints() -> None:
    assert Monitor(alert_dead_letters=1) is not None
    monitor = Monitor(alert_dead_letters=10**400)
    dlq = DeadLetterQueue()
    monitor.watch(dlq)
    dlq.put(1, "e")
    assert all(a["metric"] != "dead_letter_queue_depth" for a in monitor.alerts())


# ---- the retry engine's listener (C) ----------------------------------------------------------

def test_the_retry_engine_calls_the_one_listener_it_is_handed_after_each_retry() -> None:
    policy = resil.retry(retries=2, backoff=Backoff(0.5, multiplier=1.0, max_delay=0.5),
                         clock=VirtualClock())
    core = policy._policy.core
    with pytest.raises(TypeError, match="_set_listener"):
        core._set_listener(3)  # type: ignore[arg-type]
    heard: list[tuple[int, float, type]] = []
    core._set_listener(lambda attempt, delay, error: heard.append((attempt, delay, type(error))))
    fn = policy(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        fn()
    assert heard == [(1, 0.5, ZeroDivisionError), (2, 0.5, ZeroDivisionError)]
    core._set_listener(None)
    with pytest.raises(ZeroDivisionError):
        fn()
    assert len(heard) == 2 and policy.stats()["retries"] == 4

    class Stop(BaseException):
        pass

    def stop(attempt: int, delay: float, error: object) -> None:
        raise Stop

    core._set_listener(stop)        # what the listener raises ends the call
    with pytest.raises(Stop):
        fn()
    assert policy.stats()["retries"] == 5


def test_a_failing_relay_is_logged_and_never_breaks_the_component(
        caplog: pytest.LogCaptureFixture) -> None:
    dlq = DeadLetterQueue()

    def broken(kind: str, name: str) -> None:
        raise RuntimeError("listener bug")

    dlq._listeners.add(broken)
    assert dlq.put(1, "e") >= 0 and len(dlq) == 1
    assert "listener bug" in caplog.text


def test_components_and_operations_named_empty_are_counted_as_unnamed() -> None:
    clock = VirtualClock()
    monitor = Monitor(clock=clock)
    breaker = CircuitBreaker("", failure_threshold=1, clock=clock)
    tm = TimeoutManager(clock=clock)
    monitor.watch(breaker)
    monitor.watch(tm)
    breaker.record_failure()

    async def main() -> None:
        with pytest.raises(OperationTimeout):
            async with tm.timeout("", 1.0):
                await asyncio.sleep(2)

    resil.run_virtual(main(), clock)
    assert events(monitor) == {("circuit_breaker_trip", "unnamed"): 1, ("timeout", "unnamed"): 1}


def test_a_retried_method_is_watched_through_its_bound_method() -> None:
    class Client:
        @resil.retry(retries=1, backoff=NO_WAIT, name="client.get")
        def get(self) -> None:
            raise OSError

    client = Client()
    monitor = Monitor(clock=VirtualClock())
    monitor.watch(client.get)
    with pytest.raises(OSError):
        client.get()
    assert events(monitor) == {("retry", "client.get"): 1}


def test_a_watch_that_finds_the_component_being_wired_returns_once_it_counts(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Thread A marks the queue as watched and is held inside adding its relay;
    # thread B's watch() must not return before that relay is in place, or
    # B's dead letter right after it would go uncounted.
    monitor = Monitor(clock=VirtualClock())
    dlq = DeadLetterQueue()
    adding, release = threading.Event(), threading.Event()
    real_add = Listeners.add

    def slow_add(self: Listeners, fn: Any) -> None:
        adding.set()
        release.wait(5)
        real_add(self, fn)

    monkeypatch.setattr(Listeners, "add", slow_add)
    first = threading.Thread(target=monitor.watch, args=(dlq,))
    first.start()
    assert adding.wait(5)
    second_done = threading.Event()

    def second() -> None:
        monitor.watch(dlq)
        second_done.set()
        dlq.put(1, "e")

    other = threading.Thread(target=second)
    other.start()
    assert not second_done.wait(0.2)  # waits for the wiring in progress
    release.set()
    first.join(5)
    other.join(5)
    assert second_done.is_set()
    assert metrics(monitor)["dead_letter_queue_messages"] == 1 == len(dlq)
