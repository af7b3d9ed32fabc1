"""The conventions every public class of resil keeps, checked from tables.

Each table lists every public class (or method) with what the convention
needs to know about it; a class in ``resil.__all__`` that is missing from a
table fails ``test_every_public_class_is_in_the_tables``, so a new component
is checked as soon as it is exported.

- Exceptions: every exception resil raises on its own account is a
  ``resil.ResilError`` and exported.
- Signatures: ``inspect.signature`` works on every public class and function.
- Keyword-only arguments after the first one or two obvious positionals.
- Arguments: a wrong type raises TypeError, a bad value ValueError, and
  both name the parameter.
- Time limits (``inf``: no limit) go through one check with one meaning.
- ``clock=`` is honoured by every time-dependent component.
- ``stats()`` on every component, JSON-serialisable, in one vocabulary.
"""

from __future__ import annotations

import ast
import asyncio
import enum
import importlib
import inspect
import json
import math
import os
import pkgutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import resil

C_BINDING = "C binding field tables"


def c_xfail(*values: Any, why: str = "") -> Any:
    """A case that fails because of the C binding, which another change reworks."""
    reason = f"{C_BINDING}: {why}" if why else C_BINDING
    return pytest.param(*values, marks=pytest.mark.xfail(strict=True, reason=reason))


def public_classes() -> dict[str, type]:
    return {name: obj for name, obj in vars(resil).items()
            if name in resil.__all__ and isinstance(obj, type)}


# ---- exceptions -------------------------------------------------------------------

#: Builtin exceptions resil raises for misuse, as the standard library does:
#: a wrong argument (TypeError, ValueError), a missing key (KeyError), a
#: read-only attribute (AttributeError), an empty queue (asyncio.QueueEmpty),
#: an async API used outside a task (RuntimeError, as asyncio does).
BUILTIN_MISUSE = {"TypeError", "ValueError", "KeyError", "AttributeError", "RuntimeError",
                  "asyncio.QueueEmpty"}


def test_every_exception_resil_raises_is_a_resil_error_or_a_misuse_error() -> None:
    """Every ``raise SomeClass(...)`` in resil's own modules (the demo's
    simulated outage aside) raises a ResilError, exported from resil, or
    one of the builtin misuse errors."""
    root = Path(resil.__file__).parent
    checked = set()
    for path in sorted(root.rglob("*.py")):
        if path.parts[-2:] in (("cli", "demo.py"),):
            continue
        module_name = "resil." + ".".join(path.relative_to(root).with_suffix("").parts)
        module = importlib.import_module(module_name.removesuffix(".__init__"))
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call)):
                continue
            name = ast.unparse(node.exc.func)
            if name in BUILTIN_MISUSE:
                continue
            obj: Any = module
            for part in name.split("."):
                obj = getattr(obj, part, None)
            if not isinstance(obj, type):
                continue  # a helper that builds the error: its class is checked where it is raised
            if name.startswith("_"):
                # A private control-flow exception caught inside resil.
                continue
            checked.add(name)
            where = f"{path.relative_to(root)}:{node.lineno}"
            assert issubclass(obj, resil.ResilError), where
            assert getattr(resil, obj.__name__, None) is obj and obj.__name__ in resil.__all__, where
    assert {"EmitterClosed", "EventStormError", "OperationTimeout", "StoreError"} <= checked


def test_every_exception_class_of_the_c_module_is_a_resil_error_and_exported() -> None:
    from resil import _resil

    for name, obj in vars(_resil).items():
        if isinstance(obj, type) and issubclass(obj, BaseException):
            assert issubclass(obj, resil.ResilError), name
            assert getattr(resil, name) is obj and name in resil.__all__, name


def test_every_exported_exception_is_a_resil_error() -> None:
    for name, cls in public_classes().items():
        if issubclass(cls, BaseException):
            assert issubclass(cls, resil.ResilError), name


# ---- signatures -------------------------------------------------------------------

SIGNATURE_CASES = [
    name
    for name in resil.__all__
    if isinstance(getattr(resil, name), type) or inspect.isfunction(getattr(resil, name))
]


@pytest.mark.parametrize("name", SIGNATURE_CASES)
def test_inspect_signature_works_on_every_public_class_and_function(name: str) -> None:
    obj = getattr(resil, name)
    sig = inspect.signature(obj)
    if isinstance(obj, type) and issubclass(obj, BaseException):
        # An exception made from its message alone takes it positionally.
        assert sig.parameters, name


@pytest.mark.parametrize("name", ["EmitterClosed", "ContractViolation", "HandlerDisabled",
                                  "DeliveryCancelled", "OperationTimeout"])
def test_message_errors_take_their_message_and_pickle(name: str) -> None:
    import pickle

    cls = getattr(resil, name)
    assert list(inspect.signature(cls).parameters) == ["message"]
    err = pickle.loads(pickle.dumps(cls("it broke")))
    assert type(err) is cls and str(err) == "it broke"


# ---- keyword-only arguments -------------------------------------------------------

#: Callables that take more positionals than the first two, and why.
MORE_POSITIONALS = {
    # The interval's range and threshold are one rule, written in order.
    "AdaptiveInterval": 6,
    # A measurement: all four are required.
    "Monitor.record": 4,
    # fn's own positional arguments follow, so the deadline comes before them.
    "TimeoutManager.run": 3,
    "TimeoutManager.run_with_breaker": 4,
    # Row writers of the storage backend, called by resil with a row's columns.
    "SQLiteStore.append_event": 8,
    "SQLiteStore.dlq_put": 9,
    "SQLiteStore.dlq_update": 5,
}
#: Value records built from their fields and enums: not constructors with options.
RECORDS = (BaseException, enum.Enum, tuple)


def keyword_cases(module: Any = resil, skip: tuple[type, ...] = RECORDS) -> list[Any]:
    """The public classes of ``module`` (but ``skip``), their public methods
    and its public functions, as dotted paths."""
    cases: list[Any] = []
    for name in module.__all__:
        cls = getattr(module, name)
        if not isinstance(cls, type) or issubclass(cls, skip) or name in ("DeadLetter", "Event"):
            continue
        cases.append(name)
        for attr, member in vars(cls).items():
            if not attr.startswith("_") and inspect.isfunction(member):
                cases.append(f"{name}.{attr}")
    cases += [name for name in module.__all__ if inspect.isfunction(getattr(module, name))]
    return cases


def resolve(path: str, module: Any = resil) -> Any:
    obj: Any = module
    for part in path.split("."):
        obj = getattr(obj, part)
    return obj


def expect_keyword_only(obj: Any, path: str, more: dict[str, int]) -> None:
    """At most two positionals (``more[path]`` when listed), self aside."""
    sig = inspect.signature(obj)
    positional = [p.name for p in sig.parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                  and p.name not in ("self", "cls")]
    assert len(positional) <= more.get(path, 2), (path, positional)


@pytest.mark.parametrize("path", keyword_cases())
def test_arguments_after_the_first_two_are_keyword_only(path: str) -> None:
    expect_keyword_only(resolve(path), path, MORE_POSITIONALS)


# ---- time limits ------------------------------------------------------------------

def _limit_calls() -> dict[str, Callable[[Any], Any]]:
    """Each method that takes a time limit (``inf``: no limit), called on
    a fresh object with ``kwargs``, in a running virtual loop."""
    async def emitter_close(kw: dict[str, Any]) -> None:
        await resil.EventEmitter(lambda e: None).close(**kw)

    async def scheduler_stop(kw: dict[str, Any]) -> None:
        await resil.AdaptiveScheduler().stop(**kw)

    async def bounded_drain(kw: dict[str, Any]) -> None:
        q: resil.BoundedQueue[int] = resil.BoundedQueue(4)
        q.put_nowait(1)
        q.get_nowait()
        q.task_done()
        await q.drain(**kw)

    async def partitioned_drain(kw: dict[str, Any]) -> None:
        await resil.PartitionedQueue(4).drain(**kw)

    async def supervisor_shutdown(kw: dict[str, Any]) -> None:
        sup = resil.Supervisor()
        sup.spawn(asyncio.sleep(0))
        await sup.shutdown(**kw)

    async def shutdown_task(kw: dict[str, Any]) -> None:
        await resil.shutdown_task(asyncio.ensure_future(asyncio.sleep(0)), **kw)

    async def bulkhead_wait(kw: dict[str, Any]) -> None:
        bulkhead = resil.Bulkhead(max_concurrent=1, max_queue=1, **kw)
        async with bulkhead:
            waiting = asyncio.ensure_future(bulkhead.call_async(asyncio.sleep, 0))
            await asyncio.sleep(0)
        await waiting

    return {"EventEmitter.close(graceful)": lambda v: emitter_close({"graceful": v}),
            "EventEmitter.close(forced)": lambda v: emitter_close({"forced": v}),
            "AdaptiveScheduler.stop(graceful)": lambda v: scheduler_stop({"graceful": v}),
            "AdaptiveScheduler.stop(forced)": lambda v: scheduler_stop({"forced": v}),
            "BoundedQueue.drain(timeout)": lambda v: bounded_drain({"timeout": v}),
            "PartitionedQueue.drain(timeout)": lambda v: partitioned_drain({"timeout": v}),
            "Supervisor.shutdown(graceful)": lambda v: supervisor_shutdown({"graceful": v}),
            "shutdown_task(forced)": lambda v: shutdown_task({"forced": v}),
            "Bulkhead(queue_timeout)": lambda v: bulkhead_wait({"queue_timeout": v}),
            "RateLimiter.acquire_async(timeout)":
                lambda v: resil.RateLimiter(1).acquire_async(timeout=v)}


LIMITS = _limit_calls()


@pytest.mark.parametrize("where", sorted(LIMITS))
def test_every_time_limit_takes_inf_and_huge_ints_as_no_limit_and_refuses_the_rest(
        where: str) -> None:
    call = LIMITS[where]
    param = where[where.index("(") + 1:-1]
    for value in (0, 2, 2.5, math.inf, 10**400):
        resil.run_virtual(call(value))
    for value, error in ((-1, ValueError), (math.nan, ValueError), (-math.inf, ValueError),
                         (-10**400, ValueError), ("5", TypeError), (True, TypeError),
                         ([], TypeError)):
        with pytest.raises(error, match=rf"^{param} must be .*seconds >= 0 \(inf: no limit\)"):
            resil.run_virtual(call(value))


# ---- clock= -----------------------------------------------------------------------
#
# Each scenario runs on a virtual loop whose own clock is not the component's:
# ``given`` only moves when the test says so, while the loop's time jumps
# over every sleep. So what happens follows ``given`` exactly when the
# component reads the clock it was given.

def _on_own_loop(scenario: Callable[[resil.VirtualClock], Any]) -> None:
    given = resil.VirtualClock()
    resil.run_virtual(scenario(given), resil.VirtualClock(1000.0))


async def _timeout_manager(given: resil.VirtualClock) -> None:
    tm = resil.TimeoutManager(operation_timeout=10.0, clock=given)
    async with tm.timeout("quiet") as op:
        await asyncio.sleep(100)          # the loop's time: not the manager's
        assert op.elapsed == 0.0
    with pytest.raises(resil.OperationTimeout):
        async with tm.timeout("late") as op:
            given.advance(11.0)
            assert op.elapsed == 11.0
            await asyncio.sleep(100)
    assert tm.stats()["timeouts"] == 1


async def _event_emitter(given: resil.VirtualClock) -> None:
    sent: list[Any] = []
    em = resil.EventEmitter(sent.append, batch_size=10, flush_interval=5.0, clock=given)
    async with em:
        em.emit(1)
        await asyncio.sleep(100)          # the batch waits for the given clock
        assert sent == []
        given.advance(5.0)
        await asyncio.sleep(6)
        assert sent == [[1]]


async def _drain_follows(given: resil.VirtualClock, q: Any, put: Callable[[], None]) -> None:
    put()
    draining = asyncio.ensure_future(q.drain(5.0))
    await asyncio.sleep(100)
    assert not draining.done()
    given.advance(5.0)
    await asyncio.sleep(6)
    assert draining.done() and draining.result() is False


async def _partitioned_queue(given: resil.VirtualClock) -> None:
    q: resil.PartitionedQueue[str, int] = resil.PartitionedQueue(4, clock=given)
    await _drain_follows(given, q, lambda: q.put_nowait(1, "k"))


async def _bounded_queue(given: resil.VirtualClock) -> None:
    q: resil.BoundedQueue[int] = resil.BoundedQueue(4, clock=given)
    await _drain_follows(given, q, lambda: q.put_nowait(1))
    assert q.stats()["oldest_age"] == 5.0


async def _adaptive_scheduler(given: resil.VirtualClock) -> None:
    runs = 0

    async def job() -> float:
        nonlocal runs
        runs += 1
        return 0.0

    async with resil.AdaptiveScheduler(clock=given) as sched:
        sched.add("j", job, scale=resil.TimeScale.MICRO)
        await asyncio.sleep(100)
        assert runs == 1                   # the next run waits for the given clock
        given.advance(sched.interval("j"))
        await asyncio.sleep(2)
        assert runs == 2


async def _event_bus(given: resil.VirtualClock) -> None:
    bus = resil.EventBus(clock=given)
    bus.subscribe("t", lambda e: None)
    circuit = bus.circuit("t")
    circuit.open()
    assert circuit.state is resil.State.OPEN
    await asyncio.sleep(10_000)
    assert circuit.state is resil.State.OPEN
    given.advance(circuit.stats()["cooldown"])
    assert circuit.state is resil.State.HALF_OPEN


async def _circuit_breaker(given: resil.VirtualClock) -> None:
    b = resil.CircuitBreaker(cooldown=5.0, clock=given)
    b.open()
    await asyncio.sleep(10)
    assert b.state is resil.State.OPEN
    given.advance(5.0)
    assert b.state is resil.State.HALF_OPEN


async def _deduplicator(given: resil.VirtualClock) -> None:
    d = resil.Deduplicator(ttl=5.0, clock=given)
    assert d.seen("k") is False
    await asyncio.sleep(10)
    assert d.seen("k") is True
    given.advance(5.0)
    assert d.seen("k") is False


async def _rate_counter(given: resil.VirtualClock) -> None:
    r = resil.RateCounter(2, 1.0, clock=given)
    r.hit()
    r.hit()
    await asyncio.sleep(10)
    assert r.count() == 2
    given.advance(1.0)
    assert r.count() == 0


async def _rate_limiter(given: resil.VirtualClock) -> None:
    limiter = resil.RateLimiter(1, burst=1, clock=given)
    assert limiter.try_acquire(key="k")
    await asyncio.sleep(10)
    assert limiter.try_acquire(key="k") is False
    given.advance(1.0)
    assert limiter.try_acquire(key="k")


async def _adaptive_limiter(given: resil.VirtualClock) -> None:
    limiter = resil.AdaptiveLimiter(clock=given)
    async with limiter:
        await asyncio.sleep(100)          # the loop's time: not the latency measured
        given.advance(0.002)
    assert limiter.stats()["min_latency_ms"] is None  # the probe runs on
    for _ in range(9):
        with limiter:
            given.advance(0.002)
    assert limiter.stats()["min_latency_ms"] == 2.0


async def _windowed_counter(given: resil.VirtualClock) -> None:
    c = resil.WindowedCounter(1.0, clock=given)
    c.add(2)
    await asyncio.sleep(10)
    assert c.total() == 2
    given.advance(1.0)
    assert c.total() == 0


async def _retry_budget(given: resil.VirtualClock) -> None:
    b = resil.RetryBudget(ratio=0.0, min_per_second=1.0, window=1.0, clock=given)
    b.record_request()
    assert b.try_retry() is True
    await asyncio.sleep(10)
    assert b.try_retry() is False       # one retry a second, and no second has passed
    given.advance(1.0)
    assert b.try_retry() is True


async def _windowed_histogram(given: resil.VirtualClock) -> None:
    h = resil.WindowedHistogram(10.0, 2, clock=given)
    h.record(1.0)
    await asyncio.sleep(100)
    assert h.count() == 1
    given.advance(20.0)
    assert h.count() == 0


async def _monitor(given: resil.VirtualClock) -> None:
    m = resil.Monitor(retention=10.0, clock=given)
    m.record("c", "op", 1.0, False)
    await asyncio.sleep(100)
    assert m.health("c") == "critical"
    given.advance(20.0)
    assert m.health("c") == "healthy"


async def _bulkhead(given: resil.VirtualClock) -> None:
    b = resil.Bulkhead(max_concurrent=1, max_queue=1, queue_timeout=5.0, clock=given)
    async with b:
        waiting = asyncio.ensure_future(b.call_async(asyncio.sleep, 0))
        await asyncio.sleep(100)          # the loop's time: the wait follows the given clock
        assert not waiting.done()
        given.advance(5.0)
        await asyncio.sleep(6)
        assert waiting.done()
    with pytest.raises(resil.BulkheadFull):
        waiting.result()
    assert b.stats()["timed_out"] == 1


async def _retry(given: resil.VirtualClock) -> None:
    calls = 0

    @resil.retry(retries=5, backoff=resil.Backoff(10.0, multiplier=1.0, max_delay=10.0),
                 deadline=25.0, clock=given)
    def flaky() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError

    with pytest.raises(ConnectionError):
        flaky()
    assert calls == 3 and given.now() == 20.0   # slept on the given clock, up to the deadline


async def _dead_letter_queue(given: resil.VirtualClock) -> None:
    dlq = resil.DeadLetterQueue(ttl=5.0, clock=given)
    dlq.put("item", "error")
    await asyncio.sleep(100)
    assert len(dlq.list()) == 1
    given.advance(5.0)
    assert dlq.list() == []


async def _memory_tracker(given: resil.VirtualClock) -> None:
    tracker = resil.MemoryTracker(clock=given)
    tracker.sample()
    await asyncio.sleep(100)              # the loop's time: not the snapshots'
    tracker.sample()
    given.advance(5.0)
    tracker.sample()
    first, same, later = (s["time"] for s in tracker.stats()["snapshots"])
    assert same == first and later - first == pytest.approx(5.0, abs=1e-6)


#: Every time-dependent public class and a scenario that shows it follows
#: its ``clock=``; classes with no time-dependent behaviour are listed in
#: TIMELESS.
CLOCK_SCENARIOS: dict[str, Any] = {
    "TimeoutManager": _timeout_manager,
    "EventEmitter": _event_emitter,
    "PartitionedQueue": _partitioned_queue,
    "BoundedQueue": _bounded_queue,
    "AdaptiveScheduler": _adaptive_scheduler,
    "EventBus": _event_bus,
    "CircuitBreaker": _circuit_breaker,
    "Deduplicator": _deduplicator,
    "RateCounter": _rate_counter,
    "RateLimiter": _rate_limiter,
    "WindowedCounter": _windowed_counter,
    "RetryBudget": _retry_budget,
    "WindowedHistogram": _windowed_histogram,
    "Monitor": _monitor,
    "RetryPolicy": _retry,
    "DeadLetterQueue": _dead_letter_queue,
    "MemoryTracker": _memory_tracker,
    "Bulkhead": _bulkhead,
    "AdaptiveLimiter": _adaptive_limiter,
}
CLOCK_XFAIL: dict[str, str] = {}
#: Public classes with no time-dependent behaviour (values, errors, clocks
#: themselves, the loop that takes a clock, and parts whose time comes from
#: their owner: a BreakerGroup's breakers take clock= among their defaults, a
#: Pipeline's time is its policies').
TIMELESS = {"AdaptiveInterval", "Backoff", "BreakerGroup", "CancellationToken", "DeadLetter",
            "DeadLetterSink",
            "Event", "Histogram", "MonotonicClock", "Operation", "Outcome", "Permit", "Pipeline",
            "BulkheadPermit", "LimiterPermit", "SharedRegion",
            "SQLiteStore", "State", "StateListener", "Supervisor", "TimeScale", "VirtualClock",
            "VirtualEventLoop"}


def clock_cases() -> list[Any]:
    cases: list[Any] = []
    for name in sorted(CLOCK_SCENARIOS):
        if name in CLOCK_XFAIL:
            cases.append(pytest.param(name, marks=pytest.mark.xfail(
                strict=True, reason=f"DeadLetterQueue clock= (another change): "
                                    f"{CLOCK_XFAIL[name]}")))
        else:
            cases.append(name)
    return cases


@pytest.mark.parametrize("name", clock_cases())
def test_time_dependent_behaviour_follows_the_given_clock(name: str) -> None:
    _on_own_loop(CLOCK_SCENARIOS[name])


def test_every_public_class_is_timeless_or_has_a_clock_scenario() -> None:
    for name, cls in public_classes().items():
        if issubclass(cls, BaseException):
            continue
        assert (name in CLOCK_SCENARIOS) != (name in TIMELESS), name
        if name in CLOCK_SCENARIOS and name not in CLOCK_XFAIL and name != "RetryPolicy":
            assert "clock" in inspect.signature(cls).parameters, name
    assert "clock" in inspect.signature(resil.retry).parameters


# ---- TypeError for a wrong type, ValueError for a bad value -----------------------

class _Nothing:
    """An object of no type any parameter accepts."""


NOTHING = _Nothing()
#: Where the SharedRegion samples put their files.
_TMP = tempfile.TemporaryDirectory(prefix="resil-conv-")
NAN = math.nan

#: For each public constructor: the arguments it needs, then per parameter a
#: sample of a wrong type and a sample of the right type with a bad value
#: (None when every value of the right type is accepted).
ARGUMENTS: dict[str, tuple[Callable[..., Any], dict[str, Any], dict[str, tuple[Any, Any]]]] = {
    "AdaptiveInterval": (resil.AdaptiveInterval, {"base": 1.0, "min": 0.5, "max": 2.0,
                                                  "threshold": 0.3}, {
        "base": ("1", -1.0), "min": ("1", NAN), "max": ("1", 0.1), "threshold": ("1", NAN),
        "speedup": ("1", 2.0), "slowdown": ("1", 0.5)}),
    "AdaptiveLimiter": (resil.AdaptiveLimiter, {}, {
        "algorithm": (1, "cubic"), "initial_limit": ("1", 0), "min_limit": (1.0, 0),
        "max_limit": (True, 2**31), "clock": (NOTHING, None), "name": (1, "")}),
    "AdaptiveScheduler": (resil.AdaptiveScheduler, {}, {
        "emitter": (NOTHING, None), "novelty_threshold": ("1", NAN), "clock": (NOTHING, None)}),
    "Backoff": (resil.Backoff, {}, {
        "base": ("1", -1.0), "multiplier": ("1", 0.5), "max_delay": ("1", NAN),
        "jitter": (1, "sometimes"), "seed": ("1", -1)}),
    "BoundedQueue": (resil.BoundedQueue, {}, {
        "maxsize": ("1", 0), "warn_at": ("1", 1.5), "reject_at": ("1", 0.0),
        "clock": (NOTHING, None)}),
    "Bulkhead": (resil.Bulkhead, {}, {
        "name": (1, ""), "max_concurrent": ("1", 0), "max_queue": ("1", -1),
        "queue_timeout": ("1", -1.0), "clock": (NOTHING, None), "shared": (NOTHING, None)}),
    "BreakerGroup": (resil.BreakerGroup, {}, {
        "max_ejection_percent": ("1", 101), "failure_threshold": ("1", -1)}),
    "CircuitBreaker": (resil.CircuitBreaker, {}, {
        "name": (1, None), "failure_threshold": ("1", -1),
        "failure_rate_threshold": ("1", 1.5), "slow_call_duration": ("1", -1.0),
        "slow_call_rate_threshold": ("1", 1.5), "window_size": ("1", 0),
        "window_duration": ("1", -1.0), "minimum_calls": ("1", -1), "cooldown": ("1", -1.0),
        "cooldown_multiplier": ("1", 0.5), "cooldown_max": ("1", NAN),
        "half_open_probes": ("1", -1), "half_open_max_wait": ("1", -1.0),
        "adaptive": ("1", None), "ewma_alpha": ("1", 2.0), "sensitivity": ("1", 10.0),
        "min_health_score": ("1", 2.0), "latency_window": ("1", 0),
        "failure_on": (NOTHING, None), "ignore": (NOTHING, None),
        "failure_if": (NOTHING, None), "result_failure": (NOTHING, None),
        "clock": (NOTHING, None), "shared": (NOTHING, None), "cluster": ("x", None),
        "sync_interval": ("1", -1.0), "min_hosts": ("1", 0)}),
    "DeadLetterQueue": (resil.DeadLetterQueue, {}, {
        "maxsize": ("1", 0), "store": (NOTHING, None), "name": (1, ""), "ttl": ("1", -1.0),
        "clock": (NOTHING, None)}),
    "Deduplicator": (resil.Deduplicator, {}, {
        "ttl": ("1", -1.0), "capacity": ("1", 0), "clock": (NOTHING, None),
        "shared": (NOTHING, None), "name": (1, ""), "cluster": (NOTHING, None)}),
    "EventBus": (resil.EventBus, {}, {
        "storm_threshold": ("1", 0), "storm_window": ("1", -1.0), "on_storm": (1, "shout"),
        "handler_failure_limit": ("1", 0), "store": (NOTHING, None), "dlq": (NOTHING, None),
        "idempotency_ttl": ("1", -1.0), "clock": (NOTHING, None)}),
    "EventEmitter": (resil.EventEmitter, {"sink": print}, {
        "sink": (NOTHING, None), "queue_size": ("1", 0), "batch_size": ("1", 0),
        "flush_interval": ("1", -1.0), "overflow": (1, "spill"), "breaker": (NOTHING, None),
        "retry": (NOTHING, None), "dlq": (NOTHING, None), "clock": (NOTHING, None)}),
    "Histogram": (resil.Histogram, {}, {"sub_bits": ("1", 99), "max_bits": ("1", 99)}),
    "MemoryTracker": (resil.MemoryTracker, {}, {
        "max_snapshots": ("1", 0), "clock": (NOTHING, None)}),
    "Monitor": (resil.Monitor, {}, {
        "retention": ("1", -1.0), "alert_error_rate": ("1", 101.0),
        "alert_response_ms": ("1", -1.0), "alert_dead_letters": ("1", 0), "slots": ("1", 0),
        "clock": (NOTHING, None), "shared": (NOTHING, None), "name": (1, ""),
        "max_components": ("1", 0), "max_series": ("1", 0)}),
    "PartitionedQueue": (resil.PartitionedQueue, {}, {
        "maxsize": ("1", 0), "clock": (NOTHING, None)}),
    "Pipeline": (resil.Pipeline, {}, {"name": (1, "")}),
    "RateCounter": (resil.RateCounter, {"threshold": 1, "window": 1.0}, {
        "threshold": ("1", 0), "window": ("1", -1.0), "clock": (NOTHING, None)}),
    "RateLimiter": (resil.RateLimiter, {"rate": 1}, {
        "rate": ("1", 0), "per": ("1", 0.0), "burst": ("1", 0), "name": (1, ""),
        "max_keys": ("1", 0), "clock": (NOTHING, None), "shared": (NOTHING, None),
        "cluster": (NOTHING, None)}),
    "SharedRegion": (resil.SharedRegion, {"path": os.path.join(_TMP.name, "args")}, {
        "path": (NOTHING, None), "size": ("1", 100), "lease": ("1", 0.0)}),
    "RetryBudget": (resil.RetryBudget, {}, {
        "ratio": ("1", -1.0), "min_per_second": ("1", -1.0), "window": ("1", 0.0),
        "clock": (NOTHING, None)}),
    "WindowedCounter": (resil.WindowedCounter, {"window": 1.0}, {
        "window": ("1", -1.0), "slots": ("1", 0), "clock": (NOTHING, None)}),
    "hedge": (resil.hedge, {"delay": 1.0}, {
        "delay": ("1", 0.0), "max_hedges": (1.0, 0)}),
    "fallback": (resil.fallback, {}, {"factory": (NOTHING, None), "on": (NOTHING, ())}),
    "timeout": (resil.timeout, {"seconds": 1.0}, {"seconds": ("1", math.inf)}),
    "chaos.fault": (resil.chaos.fault, {"rate": 0.5, "error": ValueError}, {
        "rate": ("1", 1.5), "error": (NOTHING, None), "seed": (1.5, None),
        "enabled": (NOTHING, None), "clock": (NOTHING, None), "name": (1, "")}),
    "chaos.latency": (resil.chaos.latency, {"rate": 0.5, "seconds": 1.0}, {
        "rate": ("1", NAN), "seconds": ("1", -1.0), "seed": (1.5, None),
        "enabled": (NOTHING, None), "clock": (NOTHING, None), "name": (1, "")}),
    "chaos.result": (resil.chaos.result, {"rate": 0.5, "value": None}, {
        "rate": ("1", -0.5), "seed": (1.5, None), "enabled": (NOTHING, None),
        "clock": (NOTHING, None), "name": (1, "")}),
    "retry": (resil.retry, {}, {
        "retries": ("1", -1), "backoff": (NOTHING, None), "retry_on": (NOTHING, None),
        "retry_if_result": (NOTHING, None), "deadline": ("1", -1.0),
        "breaker": (NOTHING, None), "budget": (NOTHING, None), "retry_after": (NOTHING, None),
        "on_retry": (NOTHING, None), "clock": (NOTHING, None), "name": (1, None)}),
    "SQLiteStore": (resil.SQLiteStore, {"path": ":memory:"}, {
        "path": (NOTHING, ""), "max_events": ("1", 0), "retention": ("1", -1.0),
        "timeout": ("1", -1.0)}),
    "TimeoutManager": (resil.TimeoutManager, {}, {
        "operation_timeout": ("1", -1.0), "global_timeout": ("1", 0.0),
        "grace_period": ("1", -1.0), "warning_threshold": ("1", 1.5),
        "progressive": ("1", None), "clock": (NOTHING, None)}),
    "VirtualClock": (resil.VirtualClock, {}, {"start": ("1", NAN)}),
    "VirtualEventLoop": (resil.VirtualEventLoop, {"clock": resil.VirtualClock()}, {
        "clock": (NOTHING, None)}),
    "WindowedHistogram": (resil.WindowedHistogram, {}, {
        "retention": ("1", -1.0), "slots": ("1", 0), "sub_bits": ("1", 99),
        "max_bits": ("1", 99), "clock": (NOTHING, None)}),
}
#: (constructor, parameter, "type" or "value") cases the C binding gets wrong.
C_ARGUMENT_FAILURES: set[tuple[str, str, str]] = set()
#: Constructors with no parameters, whose parameters are a record's fields, or
#: made by resil itself; and the dead-letter protocol, which is not constructed.
NO_OPTIONS = {"BulkheadPermit", "LimiterPermit", "CancellationToken", "DeadLetter", "DeadLetterSink", "Event", "MonotonicClock", "Operation",
              "Outcome", "Permit", "RetryPolicy", "State", "StateListener", "Supervisor",
              "TimeScale"}


def argument_cases(table: dict[str, Any], c_failures: set[tuple[str, str, str]]) -> list[Any]:
    """(owner, parameter, "type" or "value") for each sample of ``table``."""
    cases: list[Any] = []
    for owner, (_, _, params) in sorted(table.items()):
        for param, (_, bad_value) in params.items():
            for kind in ("type", "value") if bad_value is not None else ("type",):
                case = (owner, param, kind)
                cases.append(c_xfail(*case) if case in c_failures else case)
    return cases


def expect_argument_error(table: dict[str, Any], owner: str, param: str, kind: str,
                          call: Callable[[Any, dict[str, Any]], None]) -> None:
    """``call(maker, arguments)`` with the parameter's sample raises
    TypeError (kind "type") or ValueError (kind "value"), naming it."""
    make, needed, params = table[owner]
    sample = params[param][0 if kind == "type" else 1]
    error = TypeError if kind == "type" else ValueError
    with pytest.raises(error) as info:
        call(make, {**needed, param: sample})
    assert type(info.value) is error, info.value       # not a subclass such as OverflowError
    assert param in str(info.value), str(info.value)


def _construct(make: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    obj = make(**kwargs)
    close = getattr(obj, "close", None)
    if callable(close) and not inspect.iscoroutinefunction(close):
        close()


@pytest.mark.parametrize("owner, param, kind", argument_cases(ARGUMENTS, C_ARGUMENT_FAILURES))
def test_a_wrong_type_raises_type_error_and_a_bad_value_value_error(
        owner: str, param: str, kind: str) -> None:
    expect_argument_error(ARGUMENTS, owner, param, kind, _construct)


def test_every_public_constructor_is_in_the_argument_table() -> None:
    for name, cls in public_classes().items():
        if issubclass(cls, BaseException):
            continue
        assert (name in ARGUMENTS) != (name in NO_OPTIONS), name
        if name in ARGUMENTS:
            sig = inspect.signature(cls)
            listed = set(ARGUMENTS[name][2])
            named = {p.name for p in sig.parameters.values()
                     if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
            assert named <= listed, (name, named - listed)


def _call_sync_or_async(fn: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    async def run() -> None:
        result = fn(**kwargs)
        if inspect.isawaitable(result):
            await result
    resil.run_virtual(run())


#: Public methods that take parameters: a factory of the bound method, the
#: arguments it needs, and per parameter a wrong-type and a bad-value sample.
METHOD_ARGUMENTS: dict[str, tuple[Callable[[], Callable[..., Any]], dict[str, Any],
                                  dict[str, tuple[Any, Any]]]] = {
    "CircuitBreaker.configure": (lambda: resil.CircuitBreaker().configure, {}, {
        "failure_threshold": ("1", -1), "cooldown": ("1", -1.0), "ewma_alpha": ("1", 2.0),
        "half_open_probes": ("1", -1), "clock": (NOTHING, None)}),
    "TimeoutManager.timeout": (lambda: resil.TimeoutManager().timeout, {"name": "op"}, {
        "name": (1, None), "seconds": ("1", -1.0)}),
    "AdaptiveScheduler.add": (lambda: resil.AdaptiveScheduler().add,
                              {"name": "j", "job": asyncio.sleep}, {
        "name": (1, None), "job": (NOTHING, None), "scale": (NOTHING, None),
        "activity": (NOTHING, None)}),
    "Monitor.record": (lambda: resil.Monitor().record,
                       {"component": "c", "operation": "o", "duration_ms": 1.0, "success": True}, {
        "component": (1, ""), "operation": (1, ""), "duration_ms": ("1", -1.0),
        "success": ("1", None), "error_type": (1, "")}),
    "EventBus.subscribe": (lambda: resil.EventBus().subscribe,
                           {"event_type": "t", "handler": print}, {
        "event_type": (1, ""), "handler": (NOTHING, None), "versions": (NOTHING, ())}),
    "EventBus.publish": (lambda: resil.EventBus().publish, {"event_type": "t", "payload": {}}, {
        "event_type": (1, ""), "payload": (NOTHING, None),
        "correlation_id": (1, None), "schema_version": (1, None),
        "idempotency_key": (1, None)}),
    "DeadLetterQueue.put": (lambda: resil.DeadLetterQueue().put, {"item": 1, "error": "e"}, {
        "error": (NOTHING, None), "source": (1, None), "attempts": ("1", -1)}),
    "AdaptiveLimiter.release": (lambda: _held(resil.AdaptiveLimiter()), {}, {
        "latency": ("1", -1.0), "dropped": (1, None)}),
    "RateLimiter.try_acquire": (lambda: resil.RateLimiter(1).try_acquire, {}, {
        "cost": ("1", 0)}),
    "RateLimiter.retry_after": (lambda: resil.RateLimiter(1).retry_after, {}, {
        "cost": ("1", 2)}),
    "RateLimiter.acquire": (lambda: resil.RateLimiter(1).acquire, {}, {
        "cost": ("1", 2), "timeout": ("1", -1.0)}),
    "RateLimiter.acquire_async": (lambda: resil.RateLimiter(1).acquire_async, {}, {
        "cost": ("1", 2), "timeout": ("1", -1.0)}),
    "SQLiteStore.events": (lambda: _events_of_a_store, {}, {
        "from_seq": ("1", 2**63), "to_seq": (1.5, -2**64), "since": ("1", NAN),
        "event_type": (1, "")}),
    "EventBus.replay": (lambda: _replay_on_a_store, {}, {
        "from_seq": ("1", 2**63), "to_seq": (1.5, -2**64), "since": ("1", NAN),
        "event_type": (1, "")}),
    "EventEmitter.close": (lambda: resil.EventEmitter(print).close, {}, {
        "graceful": ("1", -1.0), "forced": ("1", -1.0)}),
}
C_METHOD_FAILURES: set[tuple[str, str, str]] = set()


def _events_of_a_store(**kwargs: Any) -> Any:
    """SQLiteStore.events(**kwargs) on a store closed afterwards."""
    store = resil.SQLiteStore(":memory:")
    try:
        return store.events(**kwargs)
    finally:
        store.close()


async def _replay_on_a_store(**kwargs: Any) -> int:
    """EventBus.replay(**kwargs) on a bus whose store is closed afterwards."""
    store = resil.SQLiteStore(":memory:")
    try:
        return await resil.EventBus(store=store).replay(**kwargs)
    finally:
        store.close()


def _held(limiter: resil.AdaptiveLimiter) -> Callable[..., Any]:
    """limiter.release with a permit it holds bound to it."""
    permit = limiter.try_acquire()
    return lambda **kw: limiter.release(permit, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("owner, param, kind",
                         argument_cases(METHOD_ARGUMENTS, C_METHOD_FAILURES))
def test_methods_raise_type_error_for_a_wrong_type_and_value_error_for_a_bad_value(
        owner: str, param: str, kind: str) -> None:
    expect_argument_error(METHOD_ARGUMENTS, owner, param, kind,
                          lambda factory, kwargs: _call_sync_or_async(factory(), kwargs))


# ---- stats() ----------------------------------------------------------------------

#: One name per thing counted. A stats() key that is a synonym of a name
#: here is refused, so the same thing is never counted under two names.
VOCABULARY = {
    "depth": "items held now: queued, stored or remembered",
    "maxsize": "the most items it may hold",
    "failures": "operations that failed",
    "successes": "operations that succeeded",
    "rejected": "refused before anything was done: nothing taken, nothing run",
    "dropped": "taken and then lost (overflow, closing, a refused dead letter)",
    "dead_lettered": "handed to a dead-letter queue",
    "evicted": "removed to make room",
    "expired": "removed after their time to live",
}
SYNONYMS = {"failed": "failures", "errors": "failures", "error_count": "failures",
            "failure_count": "failures", "size": "depth", "queue_size": "depth",
            "qsize": "depth", "length": "depth", "refused": "rejected", "denied": "rejected",
            "capacity": "maxsize", "succeeded": "successes", "ok": "successes"}
SYNONYM_SUFFIXES = {"_failed": "_failures", "_errors": "_failures", "_size": "_depth"}


class _Wrapped:
    """A decorated function as a component: its stats(), documented in the
    decorator's docstring."""

    def __init__(self, decorator: Any, wrapper: Any) -> None:
        self.wrapper = wrapper
        self.doc = decorator.__doc__

    def stats(self) -> Any:
        return self.wrapper.stats()


def _idempotent_wrapper() -> _Wrapped:
    async def f() -> None:
        pass
    return _Wrapped(resil.idempotent, resil.idempotent(key=lambda: "k")(f))


def _stats_factories() -> dict[str, Callable[[], Any]]:
    return {
        "AdaptiveInterval": lambda: resil.AdaptiveInterval(1.0, 0.5, 2.0, 0.3),
        "AdaptiveScheduler": resil.AdaptiveScheduler,
        "AdaptiveLimiter": resil.AdaptiveLimiter,
        "BoundedQueue": resil.BoundedQueue,
        "BreakerGroup": resil.BreakerGroup,
        "Bulkhead": resil.Bulkhead,
        "chaos.fault": lambda: resil.chaos.fault(0.5, ValueError),
        "chaos.latency": lambda: resil.chaos.latency(0.5, 1.0),
        "chaos.result": lambda: resil.chaos.result(0.5, None),
        "CircuitBreaker": resil.CircuitBreaker,
        "DeadLetterQueue": resil.DeadLetterQueue,
        "Deduplicator": resil.Deduplicator,
        "EventBus": resil.EventBus,
        "EventEmitter": lambda: resil.EventEmitter(print),
        "Histogram": resil.Histogram,
        "MemoryTracker": resil.MemoryTracker,
        "Monitor": resil.Monitor,
        "PartitionedQueue": resil.PartitionedQueue,
        "Pipeline": lambda: resil.Pipeline(resil.fallback(), resil.timeout(1.0),
                                           resil.hedge(1.0)),
        "fallback()": resil.fallback,
        "idempotent()": _idempotent_wrapper,
        "hedge()": lambda: resil.hedge(1.0),
        "timeout()": lambda: resil.timeout(1.0),
        "RateCounter": lambda: resil.RateCounter(1, 1.0),
        "RateLimiter": lambda: resil.RateLimiter(1),
        "RetryBudget": resil.RetryBudget,
        "RetryPolicy": resil.retry,
        "SQLiteStore": lambda: resil.SQLiteStore(":memory:"),
        "SharedRegion": lambda: resil.SharedRegion(os.path.join(_TMP.name, "stats")),
        "Supervisor": resil.Supervisor,
        "TimeoutManager": resil.TimeoutManager,
        "WindowedHistogram": resil.WindowedHistogram,
        "WindowedCounter": lambda: resil.WindowedCounter(1.0),
    }


STATS = _stats_factories()
#: Public classes that are not components: values, records, errors, clocks,
#: the event loop, the cancellation token and the dead-letter protocol hold no
#: counters of their own.
NOT_COMPONENTS = {"Backoff", "BulkheadPermit", "LimiterPermit", "CancellationToken", "DeadLetter", "DeadLetterSink", "Event",
                  "MonotonicClock",
                  "Operation", "Outcome", "Permit", "State", "StateListener", "TimeScale",
                  "VirtualClock", "VirtualEventLoop"}
#: C types whose stats() is missing or off the vocabulary.
C_STATS_FAILURES: dict[str, str] = {}


def stats_cases() -> list[Any]:
    return [c_xfail(name, why=C_STATS_FAILURES[name]) if name in C_STATS_FAILURES else name
            for name in sorted(STATS)]


def test_every_public_class_is_a_component_with_stats_or_listed_as_none() -> None:
    for name, cls in public_classes().items():
        if not issubclass(cls, BaseException):
            assert (name in STATS) != (name in NOT_COMPONENTS), name


@pytest.mark.parametrize("name", stats_cases())
def test_stats_is_json_and_speaks_the_one_vocabulary(name: str) -> None:
    assert {v.lstrip("_") for v in SYNONYM_SUFFIXES.values()} | set(SYNONYMS.values()) \
        <= set(VOCABULARY)
    obj = STATS[name]()
    try:
        doc = obj.doc if isinstance(obj, _Wrapped) else type(obj).stats.__doc__
        check_stats(name, obj.stats(), doc)
    finally:
        if name == "SQLiteStore":
            obj.close()


def check_stats(name: str, stats: dict[str, Any], doc: str | None) -> None:
    """``stats`` is JSON, speaks the one vocabulary, and ``doc`` (the
    docstring of the stats() that made it) names every key."""
    json.dumps(stats, allow_nan=False)
    for key in stats:
        assert key not in SYNONYMS, f"{name}.stats()[{key!r}]: say {SYNONYMS[key]!r}"
        for suffix, instead in SYNONYM_SUFFIXES.items():
            assert not (key.endswith(suffix) and key != "maxsize"), \
                f"{name}.stats()[{key!r}]: end it in {instead!r}"
        # Every key is documented where a user looks for it.
        assert key in (doc or ""), f"{name}.stats() does not document {key!r}"


def test_the_exposition_reads_the_renamed_counters() -> None:
    async def main() -> str:
        async def sink(event: Any) -> None:
            raise ConnectionError

        em = resil.EventEmitter(sink)
        bus = resil.EventBus()

        def handler(event: Any) -> None:
            raise ValueError

        bus.subscribe("t", handler)
        async with em:
            em.emit(1)
            await bus.publish("t", {})
            await asyncio.sleep(0.1)
        dlq = resil.DeadLetterQueue()
        dlq.put("item", "error")
        return resil.prometheus.exposition(("ws", em), ("main", bus), ("q", dlq))

    text = resil.run_virtual(main())
    assert 'resil_emitter_failures_total{emitter="ws"} 1' in text
    assert 'resil_bus_failures_total{bus="main"} 1' in text
    assert 'resil_dead_letters{queue="q"} 1' in text
