"""Regressions: breaker.call of coroutine functions, retry over an already
guarded function, run-time configuration, listener order under threads, and
bad input to the breaker, retry and clock types."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import resil
from resil import CircuitBreaker, CircuitOpenError, State, VirtualClock
from tests_support import run_threads, switch_interval


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture
def fast_switching() -> Iterator[None]:
    with switch_interval(1e-5):
        yield


class Down(Exception):
    """The failure of a dependency, in these tests."""


# ---- 1. call(fn) of a coroutine function --------------------------------------

def test_call_of_coroutine_function_counts_failures_when_awaited() -> None:
    clock = VirtualClock()
    b = CircuitBreaker("dep", failure_threshold=2, clock=clock)

    async def failing() -> None:
        await asyncio.sleep(0)
        clock.advance(0.25)
        raise Down("dependency down")

    async def main() -> None:
        for i in range(2):
            pending = b.call(failing)
            st = b.stats()  # nothing taken or recorded when the coroutine is made
            assert (st["permitted"], st["successes"], st["failures"]) == (i, 0, i)
            with pytest.raises(Down):
                await pending
        assert b.state is State.OPEN
        assert b.stats()["failures"] == 2 and b.stats()["successes"] == 0
        assert b.stats()["avg_latency_ms"] == pytest.approx(250.0)
        # rejected when awaited, as call_async is; the coroutine is never made
        with pytest.raises(CircuitOpenError):
            await b.call(failing)

    run(main())


def test_call_whose_result_is_a_coroutine_is_guarded_until_it_finishes() -> None:
    clock = VirtualClock()
    b = CircuitBreaker("dep", failure_threshold=3, clock=clock)

    async def fetch(x: int, *, fail: bool) -> int:
        await asyncio.sleep(0)
        clock.advance(0.5)
        if fail:
            raise Down(x)
        return x

    class Client:
        async def get(self, x: int) -> int:
            return await fetch(x, fail=False)

    async def main() -> None:
        # partial, lambda and bound method: none is a plain coroutine function
        assert await b.call(functools.partial(fetch, 1, fail=False)) == 1
        assert await b.call(lambda: fetch(2, fail=False)) == 2
        assert await b.call(Client().get, 3) == 3
        assert await b.call(fetch, 4, fail=False) == 4
        assert b.stats()["successes"] == 4
        assert b.stats()["avg_latency_ms"] == pytest.approx(500.0)
        for i in range(3):
            with pytest.raises(Down):
                await b.call(lambda: fetch(i, fail=True))
        assert b.state is State.OPEN
        assert b.stats()["failures"] == 3

    run(main())


def test_call_of_coroutine_cancelled_releases_the_permit() -> None:
    clock = VirtualClock()
    b = CircuitBreaker("dep", half_open_probes=1, cooldown=1.0, clock=clock)
    b.open()
    clock.advance(1.0)
    assert b.state is State.HALF_OPEN

    async def main() -> None:
        started = asyncio.Event()

        async def hang() -> None:
            started.set()
            await asyncio.Event().wait()

        for make in (lambda: b.call(hang), lambda: b.call(lambda: hang())):
            started.clear()
            task = asyncio.ensure_future(make())
            await started.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            st = b.stats()
            assert (st["successes"], st["failures"]) == (0, 0)
            assert st["half_open_probes_granted"] == 0  # the probe came back
        # an awaitable closed without being awaited gives its permit back
        b.call(lambda: hang()).close()
        assert b.stats()["half_open_probes_granted"] == 0
        assert await b.call(asyncio.sleep, 0, "ok") == "ok"
        assert b.state is State.CLOSED

    run(main())


@pytest.mark.parametrize("seed", range(8))
def test_call_of_coroutines_cancelled_at_random_points_loses_no_permit(seed: int) -> None:
    rnd = random.Random(seed)
    clock = VirtualClock()
    b = CircuitBreaker("x", failure_threshold=3, cooldown=0.01, half_open_probes=2, clock=clock)

    async def work(fail: bool, steps: int) -> int:
        for _ in range(steps):
            await asyncio.sleep(0)
        clock.advance(0.001)
        if fail:
            raise Down()
        return 1

    makers: list[Callable[[bool, int], Any]] = [
        lambda f, n: b.call(work, f, n),
        lambda f, n: b.call(lambda: work(f, n)),
        lambda f, n: b.call(functools.partial(work, f, n)),
    ]

    async def main() -> None:
        tasks = []
        for _ in range(150):
            try:
                pending = rnd.choice(makers)(rnd.random() < 0.4, rnd.randrange(4))
            except CircuitOpenError:  # a plain function's call is rejected at once
                continue
            if rnd.random() < 0.1:
                pending.close()  # made, never awaited
                continue
            task = asyncio.ensure_future(pending)
            tasks.append(task)
            for _ in range(rnd.randrange(3)):
                await asyncio.sleep(0)
            if rnd.random() < 0.3:
                task.cancel()
            if rnd.random() < 0.2:
                clock.advance(0.02)
        await asyncio.gather(*tasks, return_exceptions=True)

    run(main())
    st = b.stats()
    assert st["successes"] + st["failures"] + st["released"] == st["permitted"]
    assert st["failures"] > 0 and st["released"] > 0
    if st["state"] is State.HALF_OPEN:  # every probe reported a success or came back
        assert st["half_open_probes_granted"] == st["half_open_probe_successes"]


def test_call_of_plain_function_is_unchanged() -> None:
    b = CircuitBreaker("dep")
    assert b.call(lambda x: x + 1, 1) == 2
    assert b.call(dict, a=1) == {"a": 1}
    assert isinstance(b.call(Down().with_traceback, None), Down)  # returned: a success
    assert b.stats()["successes"] == 3


def test_guarded_sync_function_returning_coroutine_is_guarded_too() -> None:
    clock = VirtualClock()
    b = CircuitBreaker("dep", failure_threshold=1, clock=clock)

    async def failing() -> None:
        raise Down()

    @b
    def make() -> Any:
        return failing()

    async def main() -> None:
        with pytest.raises(Down):
            await make()
        assert b.state is State.OPEN

    run(main())


# ---- 2. retry(breaker=b) over a function already guarded by b ------------------

def test_retry_with_breaker_refuses_a_function_guarded_by_the_same_breaker() -> None:
    b = CircuitBreaker("payments")

    def fn() -> int:
        return 1

    async def afn() -> int:
        return 1

    guarded = b(fn)
    assert guarded.breaker is b  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="'payments'"):
        resil.retry(breaker=b)(guarded)
    with pytest.raises(ValueError, match="'payments'"):
        resil.retry(breaker=b)(b(afn))

    @functools.wraps(guarded)
    def outer(*a: Any, **kw: Any) -> Any:
        return guarded(*a, **kw)

    with pytest.raises(ValueError, match="'payments'"):
        resil.retry(breaker=b)(outer)

    class Client:
        @b
        def get(self) -> int:
            return 1

    with pytest.raises(ValueError, match="'payments'"):
        resil.retry(breaker=b)(Client().get)
    with pytest.raises(ValueError, match="'payments'"):
        resil.retry(breaker=b)(functools.partial(guarded))
    # another breaker, or no breaker on retry, is fine
    other = CircuitBreaker("other")
    assert resil.retry(breaker=other)(guarded)() == 1
    assert resil.retry()(guarded)() == 1
    assert resil.retry(breaker=b)(fn)() == 1
    with pytest.raises(AttributeError):
        guarded.breaker = other  # type: ignore[attr-defined]


def test_retry_with_breaker_counts_each_attempt_once() -> None:
    clock = VirtualClock()
    b = CircuitBreaker("dep", failure_threshold=4, clock=clock)
    calls = 0

    def flaky() -> None:
        nonlocal calls
        calls += 1
        raise Down()

    policy = resil.retry(retries=1, backoff=resil.Backoff(base=0.0), breaker=b, clock=clock)
    with pytest.raises(Down):
        policy(flaky)()
    assert calls == 2 and b.stats()["failures"] == 2
    assert b.state is State.CLOSED


# ---- 3. configuration: read-only attributes, configure(), config ---------------

CHANGES: dict[str, Any] = {
    "failure_threshold": 7, "failure_rate_threshold": 0.5, "slow_call_duration": 2.0,
    "slow_call_rate_threshold": 0.8, "window_size": 40, "window_duration": 30.0,
    "minimum_calls": 4, "cooldown": 5.0, "cooldown_multiplier": 3.0, "cooldown_max": 50.0,
    "half_open_probes": 2, "half_open_max_wait": 9.0, "adaptive": False, "ewma_alpha": 0.5,
    "sensitivity": 1.0, "min_health_score": 0.2, "latency_window": 20,
    "failure_on": (OSError,), "ignore": (KeyError,), "failure_if": callable,
    "result_failure": bool,
}


def test_signatures_show_the_parameters() -> None:
    sig = inspect.signature(CircuitBreaker)
    assert list(sig.parameters)[:2] == ["name", "failure_threshold"]
    assert sig.parameters["name"].default == "default"
    assert sig.parameters["cooldown"].default == 60.0
    assert sig.parameters["cooldown"].kind is inspect.Parameter.KEYWORD_ONLY
    assert list(sig.parameters)[-5:] == ["clock", "shared", "cluster", "sync_interval",
                                         "min_hosts"]
    assert sig.parameters["shared"].default is None
    assert set(sig.parameters) == set(CHANGES) | {"name", "clock", "shared", "cluster",
                                                  "sync_interval", "min_hosts"}
    assert str(inspect.signature(CircuitBreaker("x").configure)) == "(**changes)"
    assert str(inspect.signature(CircuitBreaker("x").call)) == "(fn, /, *args, **kwargs)"


def test_configuration_attributes_are_read_only() -> None:
    b = CircuitBreaker("x")
    for name in CHANGES:
        before = getattr(b, name)
        with pytest.raises(AttributeError, match=f"{name}.*configure"):
            setattr(b, name, CHANGES[name])
        assert getattr(b, name) == before == b.config[name]
    with pytest.raises(AttributeError):
        b.config = {}  # type: ignore[misc]


def test_configure_changes_every_parameter_and_keeps_state_and_counts() -> None:
    clock = VirtualClock()
    b = CircuitBreaker("x", clock=clock)
    for _ in range(3):
        b.record_failure(b.acquire(), 10.0)
    b.configure(**CHANGES)
    cfg = b.config
    for name, value in CHANGES.items():
        assert cfg[name] == value, name
        assert getattr(b, name) == value, name
    st = b.stats()
    assert st["failures"] == 3 and st["consecutive_failures"] == 3 and st["state"] is State.CLOSED
    assert b.effective_threshold == 7


def test_configure_changes_behaviour() -> None:
    clock = VirtualClock()
    b = CircuitBreaker("x", failure_threshold=5, clock=clock)
    for _ in range(2):
        b.record_failure(b.acquire(), 1.0)
    b.configure(failure_threshold=3)
    b.record_failure(b.acquire(), 1.0)  # the third consecutive failure trips
    assert b.state is State.OPEN
    assert b.remaining == pytest.approx(60.0)
    b.configure(cooldown=2.0, cooldown_max=10.0)
    assert b.remaining == pytest.approx(2.0)
    clock.advance(2.0)
    assert b.state is State.HALF_OPEN
    b.record_success(b.acquire(), 1.0)
    assert b.state is State.HALF_OPEN and b.stats()["half_open_probe_successes"] == 1
    b.configure(half_open_probes=1)  # one success already meets the new count
    assert b.state is State.CLOSED
    # failure classes
    b.configure(failure_on=KeyError)
    with pytest.raises(ValueError):
        b.call(int, "x")
    assert b.stats()["failures"] == 3  # ValueError is no longer a failure


def test_configure_is_all_or_nothing() -> None:
    b = CircuitBreaker("x", clock=VirtualClock())
    before = b.config
    bad: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"failure_threshold": 2, "ewma_alpha": 5}, ValueError, "ewma_alpha"),
        ({"cooldown": 1.0, "cooldown_max": 0.5}, ValueError, "cooldown_max"),
        ({"window_size": 5}, ValueError, "minimum_calls"),  # minimum_calls is 10
        ({"failure_threshold": 2, "bogus": 1}, TypeError, "bogus"),
        ({"failure_threshold": 2, "name": "y"}, TypeError, "name"),
        ({"failure_threshold": 2, "clock": VirtualClock()}, TypeError, "clock"),
        ({"latency_window": 3, "failure_on": 3}, TypeError, "failure_on"),
        ({"window_size": 10, "failure_if": 3}, TypeError, "failure_if"),
        ({"sensitivity": math.nan}, ValueError, "sensitivity"),
        ({"cooldown": math.inf}, ValueError, "cooldown"),
        ({"cooldown_multiplier": math.inf}, ValueError, "cooldown_multiplier"),
        ({"slow_call_duration": math.nan}, ValueError, "slow_call_duration"),
        ({"slow_call_duration": math.inf}, ValueError, "slow_call_duration"),
        ({"failure_rate_threshold": math.nan}, ValueError, "failure_rate_threshold"),
        ({"half_open_max_wait": math.inf}, ValueError, "half_open_max_wait"),
        ({"window_duration": -1.0}, ValueError, "window_duration"),
        ({"min_health_score": math.inf}, ValueError, "min_health_score"),
        ({"failure_threshold": 10**400}, ValueError, "failure_threshold"),
        ({"cooldown": 10**400}, ValueError, "cooldown"),
        ({"adaptive": 1}, TypeError, "adaptive"),
        ({"slow_call_rate_threshold": None}, TypeError, "slow_call_rate_threshold"),
    ]
    for changes, exc, name in bad:
        with pytest.raises(exc, match=name):
            b.configure(**changes)
        assert b.config == before, changes
    with pytest.raises(TypeError):
        b.configure(5)  # type: ignore[call-arg]
    b.configure()  # nothing to change is fine
    assert b.config == before


def test_configure_windows() -> None:
    clock = VirtualClock()
    b = CircuitBreaker("x", failure_threshold=0, window_size=10, minimum_calls=0, clock=clock)
    for i in range(10):
        (b.record_failure if i % 2 else b.record_success)(None, float(i))
    assert b.stats()["window_calls"] == 10 and b.stats()["window_failures"] == 5
    b.configure(window_size=4)  # keeps the newest outcomes that fit: S F S F
    assert b.stats()["window_calls"] == 4 and b.stats()["window_failures"] == 2
    b.configure(latency_window=3)  # keeps the newest latencies: 7, 8, 9
    assert b.stats()["latency_samples"] == 3
    assert b.stats()["avg_latency_ms"] == pytest.approx(8.0)
    b.configure(window_duration=10.0)  # a time window starts empty
    assert b.stats()["window_calls"] == 0
    b.record_failure(None, 1.0)
    clock.advance(5)
    b.record_failure(None, 1.0)
    assert b.stats()["window_calls"] == 2
    clock.advance(6)
    assert b.stats()["window_calls"] == 1  # the first fell out of the 10 s window
    b.configure(window_duration=None, window_size=6)  # back to a count window, empty
    assert b.config["window_duration"] is None and b.stats()["window_calls"] == 0
    b.configure(slow_call_duration=None, failure_rate_threshold=None,
                half_open_max_wait=None)
    cfg = b.config
    assert (cfg["slow_call_duration"], cfg["failure_rate_threshold"],
            cfg["half_open_max_wait"]) == (None, None, None)


def test_configure_and_calls_from_threads(fast_switching: None) -> None:
    clock = VirtualClock()
    b = CircuitBreaker("x", failure_threshold=3, window_size=50, minimum_calls=5,
                       cooldown=0.001, clock=clock)
    errors: list[BaseException] = []
    stop = threading.Event()

    def caller(k: int) -> None:
        try:
            for i in range(400):
                try:
                    b.call(lambda: (_ for _ in ()).throw(Down()) if (i + k) % 3 else 1)
                except (Down, CircuitOpenError):
                    pass
                clock.advance_ns(100_000)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    def reconfigure() -> None:
        sizes = [5, 50, 17, 100]
        n = 0
        while not stop.is_set():
            try:
                b.configure(window_size=sizes[n % 4], latency_window=sizes[(n + 1) % 4],
                            failure_threshold=1 + n % 5, half_open_probes=n % 3,
                            window_duration=None if n % 5 else 0.01)
                b.configure(window_size=3)  # below minimum_calls: refused, nothing changes
            except ValueError:
                pass
            except BaseException as e:  # pragma: no cover
                errors.append(e)
            n += 1

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(8)]
    cfg_thread = threading.Thread(target=reconfigure)
    cfg_thread.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    cfg_thread.join()
    assert not errors
    st, cfg = b.stats(), b.config
    if cfg["window_duration"] is None:
        assert st["window_calls"] <= cfg["window_size"]
    assert st["latency_samples"] <= cfg["latency_window"]
    assert st["successes"] + st["failures"] + st["released"] == st["permitted"]
    # still a working breaker, on the configuration it was last given
    b.configure(window_size=20, minimum_calls=0, failure_threshold=2, cooldown=60.0,
                cooldown_max=60.0, window_duration=None)
    b.reset()
    for _ in range(2):
        with pytest.raises(Down):
            b.call(lambda: (_ for _ in ()).throw(Down()))
    assert b.state is State.OPEN


# ---- 4. listener order under threads ---------------------------------------

class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.transitions: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if hasattr(record, "state_transition"):  # not the failed listener's report
            self.transitions.append(record.state_transition)


def _assert_chain(seen: list[tuple[State, State]], final: State) -> None:
    assert len(seen) > 20  # the pattern tripped, probed and closed many times
    for (_, prev_new), (old, _) in zip(seen, seen[1:]):
        assert old == prev_new, seen
    assert seen[-1][1] == final


def test_listeners_see_transitions_in_order_under_threads(fast_switching: None) -> None:
    clock = VirtualClock()
    b = CircuitBreaker("hammered", failure_threshold=2, cooldown=0.001, half_open_probes=1,
                       adaptive=False, clock=clock)
    seen: list[tuple[State, State]] = []
    reentrant: list[State] = []

    def listener(breaker: CircuitBreaker, old: State, new: State, reason: str) -> None:
        time.sleep(0)  # a listener doing I/O lets other threads run in the middle of it
        seen.append((old, new))

    def reentering(breaker: CircuitBreaker, old: State, new: State, reason: str) -> None:
        reentrant.append(breaker.state)  # reads (and ticks) the breaker from a listener
        if len(reentrant) % 7 == 0:
            try:
                breaker.call(int, "1")
            except CircuitOpenError:
                pass
        if len(reentrant) % 5 == 0:
            raise RuntimeError("a broken listener")

    b.on_state_change(listener)
    b.on_state_change(reentering)
    handler = _Records()
    log = logging.getLogger("resil.breaker")
    old_level, old_propagate = log.level, log.propagate
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    errors: list[BaseException] = []

    def hammer(k: int) -> None:
        try:
            # 180 calls a thread: at 60, a run whose threads happened to go
            # one after another made only 19 transitions, too few to judge.
            for i in range(180):
                try:
                    with b:
                        if (i + k) % 2 == 0:
                            raise Down()
                except (Down, CircuitOpenError):
                    pass
                if i % 4 == 0:
                    clock.advance_ns(1_000_000)
        except BaseException as e:  # pragma: no cover
            errors.append(e)

    try:
        threads = [threading.Thread(target=hammer, args=(k,)) for k in range(64)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        final = b.state
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)
        log.propagate = old_propagate
    assert not errors
    _assert_chain(seen, final)
    assert len(reentrant) == len(seen)
    logged = [tuple(State[s] for s in line.split(" -> ")) for line in handler.transitions]
    _assert_chain(logged, final)  # type: ignore[arg-type]


def test_listener_reentering_the_breaker_does_not_deadlock() -> None:
    clock = VirtualClock()
    b = CircuitBreaker("x", failure_threshold=1, cooldown=1.0, clock=clock)
    seen: list[tuple[State, State]] = []

    def listener(breaker: CircuitBreaker, old: State, new: State, reason: str) -> None:
        seen.append((old, new))
        if new is State.OPEN:
            breaker.reset()  # a transition made inside a listener comes after this one

    b.on_state_change(listener)
    b.record_failure(b.acquire(), 1.0)
    assert seen == [(State.CLOSED, State.OPEN), (State.OPEN, State.CLOSED)]
    assert b.state is State.CLOSED


# ---- 5. bad input -----------------------------------------------------------

@pytest.mark.parametrize("seed", [2**64, 10**400, -1, -(2**63)], ids=["2**64", "10**400", "-1", "-2**63"])
def test_backoff_seed_out_of_range(seed: int) -> None:
    with pytest.raises(ValueError, match=r"seed must be .*2\*\*64"):
        resil.Backoff(seed=seed)


def test_backoff_seed_range_is_accepted() -> None:
    assert resil.Backoff(seed=0).seed == 0
    assert resil.Backoff(seed=2**64 - 1).seed == 2**64 - 1
    with pytest.raises(TypeError, match="seed"):
        resil.Backoff(seed=True)


@pytest.mark.parametrize("ratio", [1e308, 10.5, math.inf, math.nan, -0.1, 10**400],
                         ids=["1e308", "10.5", "inf", "nan", "-0.1", "10**400"])
def test_budget_ratio_is_bounded(ratio: float) -> None:
    with pytest.raises(ValueError, match="ratio"):
        resil.RetryBudget(ratio=ratio)


def test_budget_ratio_bound_allows_ten_retries_per_request() -> None:
    clock = VirtualClock()
    b = resil.RetryBudget(ratio=10.0, min_per_second=0.0, clock=clock)
    b.record_request()
    assert sum(b.try_retry() for _ in range(100)) == 10


@pytest.mark.parametrize("kw,exc", [
    ({"state": "x"}, TypeError), ({"state": 9}, ValueError), ({"state": -1}, ValueError),
    ({"state": True}, TypeError), ({"state": 10**400}, ValueError), ({"state": 2.0}, TypeError),
    ({"name": 3}, TypeError), ({"remaining": "soon"}, TypeError),
    ({"remaining": -1.0}, ValueError), ({"remaining": math.nan}, ValueError),
])
def test_circuit_open_error_validates(kw: dict[str, Any], exc: type[Exception]) -> None:
    with pytest.raises(exc, match=next(iter(kw))):
        CircuitOpenError(**kw)


def test_circuit_open_error_accepts_states_and_ints() -> None:
    e = CircuitOpenError("svc", 2, 1)
    assert e.state is State.OPEN and e.remaining == 1.0
    assert CircuitOpenError("svc", State.FORCED_OPEN, None).state is State.FORCED_OPEN
    assert CircuitOpenError().state is None
    import pickle
    again = pickle.loads(pickle.dumps(e))
    assert (again.name, again.state, again.remaining) == ("svc", State.OPEN, 1.0)


@pytest.mark.parametrize("arg,exc", [(True, TypeError), (1.5, TypeError), ("1", TypeError),
                                     (-1, ValueError), (10**400, ValueError),
                                     (2**64, ValueError)],
                         ids=["True", "1.5", "str", "-1", "10**400", "2**64"])
def test_advance_ns_rejects_what_is_not_nanoseconds(arg: Any, exc: type[Exception]) -> None:
    c = VirtualClock()
    with pytest.raises(exc, match="ns"):
        c.advance_ns(arg)
    assert c.now_ns() == 0
    c.advance_ns(5)
    assert c.now_ns() == 5


@pytest.mark.parametrize("activity", [math.nan, math.inf, -math.inf, 10**400],
                         ids=["nan", "inf", "-inf", "10**400"])
def test_adaptive_interval_update_rejects_non_finite(activity: float) -> None:
    iv = resil.AdaptiveInterval(1.0, 0.5, 2.0, 0.5)
    with pytest.raises(ValueError, match="activity"):
        iv.update(activity)
    assert iv.interval == 1.0 and iv.updates == 0


HUGE = 10**400
HUGER = 10**5000  # more digits than int's repr allows

HUGE_CASES: list[tuple[Callable[[int], object], str]] = [
    (lambda v: resil.Backoff(base=v), "base"),
    (lambda v: resil.Backoff(max_delay=v), "max_delay"),
    (lambda v: resil.Backoff(seed=v), "seed"),
    (lambda v: resil.Backoff().delay(1, v), "prev"),
    (lambda v: resil.RetryBudget(ratio=v), "ratio"),
    (lambda v: resil.RetryBudget(window=v), "window"),
    (lambda v: resil.RetryBudget(min_per_second=v), "min_per_second"),
    (lambda v: VirtualClock(v), "start"),
    (lambda v: VirtualClock().advance(v), "seconds"),
    (lambda v: VirtualClock().advance_ns(v), "ns"),
    (lambda v: VirtualClock().set(v), "seconds"),
    (lambda v: resil.AdaptiveInterval(v, 1, 2, 0.5), "base"),
    (lambda v: resil.AdaptiveInterval(1, 1, 2, 0.5, speedup=v), "speedup"),
    (lambda v: resil.AdaptiveInterval(1, 1, 2, 0.5).update(v), "activity"),
    (lambda v: resil.Deduplicator(ttl=v), "ttl"),
] + [
    (lambda v: CircuitBreaker(failure_threshold=v), "failure_threshold"),
    (lambda v: CircuitBreaker(cooldown=v), "cooldown"),
    (lambda v: CircuitBreaker(ewma_alpha=v), "ewma_alpha"),
    (lambda v: CircuitBreaker(slow_call_duration=v), "slow_call_duration"),
    (lambda v: CircuitBreaker().configure(window_size=v), "window_size"),
    (lambda v: CircuitBreaker().record_success(None, v), "latency_ms"),
    (lambda v: CircuitOpenError("x", v), "state"),
    (lambda v: CircuitOpenError("x", 2, v), "remaining"),
]


@pytest.mark.parametrize("make,name", HUGE_CASES + [
    (lambda v: resil.Deduplicator(capacity=v), "capacity"),
])
def test_huge_int_names_the_parameter(make: Callable[[int], object], name: str) -> None:
    with pytest.raises(ValueError, match=f"^{name}"):
        make(HUGE)


@pytest.mark.parametrize("make,name", HUGE_CASES)
@pytest.mark.parametrize("value", [HUGE, HUGER], ids=["10**400", "10**5000"])
def test_huge_int_is_summarised_in_the_message(make: Callable[[int], object], name: str,
                                              value: int) -> None:
    with pytest.raises(ValueError, match=f"^{name}") as info:
        make(value)
    assert len(str(info.value)) < 200


def test_huge_attempt_behaves_as_attempt_63() -> None:
    b = resil.Backoff()
    assert b.delay(HUGE) == b.delay(HUGER) == b.delay(63)


def test_listeners_added_and_removed_from_threads_are_all_kept() -> None:
    # on_state_change read the listener tuple, then stored a longer one: two
    # threads adding at once could each drop the other's listener.
    b = resil.CircuitBreaker("listeners")
    keep: list[list[Any]] = [[] for _ in range(8)]

    def add(t: int) -> None:
        for _ in range(300):
            fn = (lambda b_, o, n, r: None)
            keep[t].append(fn)
            b.on_state_change(fn)
        for fn in keep[t][::2]:
            b.remove_listener(fn)

    run_threads(add, 8, switch=1e-6)
    assert set(map(id, b._listeners)) == {id(fn) for part in keep for fn in part[1::2]}
    assert len(b._listeners) == 8 * 150


# ---- an awaitable reached again from the code it runs -----------------------------------


def _reenter(aw: Any, method: str, seen: list[BaseException]) -> None:
    """Calls ``aw.<method>`` from inside the code ``aw`` runs, keeping what it raised."""
    try:
        if method == "send":
            aw.send(None)
        elif method == "close":
            aw.close()
        else:
            aw.throw(KeyError)
    except BaseException as exc:  # noqa: BLE001 - what the re-entry raised
        seen.append(exc)


@pytest.mark.parametrize("method", ["send", "close", "throw"])
def test_the_function_of_call_async_reaching_its_own_awaitable_is_refused(method: str) -> None:
    # It crashed: the awaitable was marked running before its coroutine existed.
    breaker = resil.CircuitBreaker("reentry")
    seen: list[BaseException] = []

    async def done() -> int:
        return 7

    def fn() -> Any:
        _reenter(aw, method, seen)
        return done()

    aw = breaker.call_async(fn)
    with pytest.raises(StopIteration) as stop:
        aw.send(None)
    assert stop.value.value == 7
    assert [type(e) for e in seen] == [ValueError]
    assert "already executing" in str(seen[0])
    stats = breaker.stats()
    assert (stats["permitted"], stats["successes"], stats["failures"]) == (1, 1, 0)


@pytest.mark.parametrize("method", ["send", "close", "throw"])
def test_a_coroutine_reaching_the_awaitable_that_runs_it_is_refused(method: str) -> None:
    breaker = resil.CircuitBreaker("reentry")
    seen: list[BaseException] = []

    async def g() -> int:
        _reenter(aw, method, seen)
        return 5

    aw = breaker.call_async(g)
    with pytest.raises(StopIteration) as stop:
        aw.send(None)
    assert stop.value.value == 5
    assert [type(e) for e in seen] == [ValueError]
    stats = breaker.stats()
    assert (stats["permitted"], stats["successes"], stats["failures"]) == (1, 1, 0)
    with pytest.raises(RuntimeError, match="cannot reuse"):
        aw.send(None)


def test_a_python_clock_reaching_the_awaitable_while_it_takes_its_permit_is_refused() -> None:
    # Re-entering there took a second permit and lost the first.
    seen: list[BaseException] = []

    class Clock:
        t = 0.0
        armed = False

        def now(self) -> float:
            if self.armed:
                self.armed = False
                _reenter(aw, "send", seen)
            return self.t

    clock = Clock()
    breaker = resil.CircuitBreaker("reentry", clock=clock)

    async def g() -> int:
        return 3

    aw = breaker.call_async(g)
    clock.armed = True
    with pytest.raises(StopIteration):
        aw.send(None)
    assert [type(e) for e in seen] == [ValueError]
    stats = breaker.stats()
    assert (stats["permitted"], stats["successes"]) == (1, 1)


def test_a_coroutine_thrown_into_while_suspended_then_finishing_is_recorded_once() -> None:
    breaker = resil.CircuitBreaker("reentry")

    class Step:
        def __await__(self) -> Any:
            yield "step"

    async def g() -> int:
        try:
            await Step()
        except KeyError:
            await Step()
        return 9

    aw = breaker.call_async(g)
    assert aw.send(None) == "step"
    assert aw.throw(KeyError) == "step"  # caught inside; it suspends again
    with pytest.raises(StopIteration) as stop:
        aw.send(None)
    assert stop.value.value == 9
    stats = breaker.stats()
    assert (stats["permitted"], stats["successes"], stats["failures"]) == (1, 1, 0)
