"""Each state machine lives on one side of the C/Python boundary, and C
tells Python what happened only through callables it was given.

Retry: the whole attempt loop of a sync call is in C, and an async call's
decisions come from the same C state; stats() is what C counts.
Breaker and queue: a subclass that defines the old hook names is never
called or read by the engine."""

from __future__ import annotations

import asyncio
import sys
import threading
from typing import Any

import pytest

import resil
from resil import _resil

from tests_support import run_threads

REJECTING = (resil.State.OPEN, resil.State.FORCED_OPEN)


class SteppingClock:
    """A Python clock that moves `step` seconds at every reading, as real
    time moves between two readings of a breaker."""

    def __init__(self, step: float) -> None:
        self.t = 100.0
        self.step = step
        self.reads = 0

    def now(self) -> float:
        self.reads += 1
        self.t += self.step
        return self.t


# ---- retry: one state machine ------------------------------------------------


def _stepping_breaker(step: float) -> resil.CircuitBreaker:
    return resil.CircuitBreaker("stepping", failure_threshold=1, minimum_calls=1, cooldown=1.0,
                                adaptive=False, clock=SteppingClock(step))


@pytest.mark.parametrize("step", [0.5, 0.75, 0.95])
def test_sync_rejection_between_attempts_is_one_reading_of_the_breaker(step: float) -> None:
    # Time moves between any two readings of the breaker. The decision to
    # stop retrying and the CircuitOpenError it raises come from one
    # reading: never a rejection that names a state admitting calls, or an
    # OPEN breaker with no time left.
    b = _stepping_breaker(step)

    @resil.retry(retries=3, breaker=b, backoff=resil.Backoff(base=0.0),
                 clock=resil.VirtualClock())
    def always_fails() -> None:
        raise ValueError("down")

    rejected = 0
    for _ in range(12):
        try:
            always_fails()
        except resil.CircuitOpenError as exc:
            if isinstance(exc.__cause__, ValueError):  # between attempts
                rejected += 1
                assert exc.state in REJECTING, exc.state
                assert exc.remaining is not None and exc.remaining > 0.0, exc.remaining
        except ValueError:
            pass
    assert rejected > 0


@pytest.mark.parametrize("step", [0.5, 0.75, 0.95])
def test_async_rejection_between_attempts_is_one_reading_of_the_breaker(step: float) -> None:
    b = _stepping_breaker(step)

    @resil.retry(retries=3, breaker=b, backoff=resil.Backoff(base=0.0))
    async def always_fails() -> None:
        raise ValueError("down")

    async def main() -> int:
        rejected = 0
        for _ in range(12):
            try:
                await always_fails()
            except resil.CircuitOpenError as exc:
                if isinstance(exc.__cause__, ValueError):
                    rejected += 1
                    assert exc.state in REJECTING, exc.state
                    assert exc.remaining is not None and exc.remaining > 0.0, exc.remaining
            except ValueError:
                pass
        return rejected

    assert resil.run_virtual(main()) > 0


def test_every_sync_attempt_is_made_the_same_way() -> None:
    # The first attempt and the later ones are made by the same loop: each
    # is called straight from the caller, with no Python frame of resil
    # between (the loop is in C), and the error that ends the call carries
    # no resil frame either.
    callers: list[str] = []

    @resil.retry(retries=2, backoff=resil.Backoff(base=0.0), clock=resil.VirtualClock())
    def flaky() -> None:
        callers.append(sys._getframe(1).f_code.co_filename)
        raise KeyError("again")

    with pytest.raises(KeyError) as info:
        flaky()
    assert callers == [__file__] * 3
    assert {str(entry.path) for entry in info.traceback} == {__file__}


def test_retry_stats_are_what_the_engine_counts() -> None:
    clock = resil.VirtualClock()
    policy = resil.retry(retries=2, backoff=resil.Backoff(base=1.0), clock=clock, name="p")
    outcomes = iter([KeyError, None, KeyError, KeyError, KeyError])

    @policy
    def f() -> str:
        err = next(outcomes)
        if err is not None:
            raise err("x")
        return "ok"

    assert f() == "ok"
    with pytest.raises(KeyError):
        f()
    engine = policy._policy.core  # the C RetryCore
    assert policy.stats() == engine.stats() == {"name": "p", "retries": 3, "gave_up": 1,
                                                "rejected": 0}
    assert clock.now() == 1.0 + 1.0 + 2.0


def test_retry_counts_add_up_under_threads() -> None:
    # 8 threads x 150 calls, each failing its first attempt: every retry and
    # every call that gave up is counted, whichever thread made it.
    policy = resil.retry(retries=1, backoff=resil.Backoff(base=0.0), clock=resil.VirtualClock())
    local = threading.local()

    @policy
    def first_fails(i: int) -> int:
        local.n = getattr(local, "n", 0) + 1
        if local.n % 2 == 1:
            raise ValueError("first attempt")
        return i

    @policy
    def always_fails() -> None:
        raise ValueError("always")

    def worker(i: int) -> None:
        for _ in range(150):
            assert first_fails(i) == i
            with pytest.raises(ValueError):
                always_fails()

    run_threads(worker, 8)
    assert policy.stats()["retries"] == 8 * 150 * 2
    assert policy.stats()["gave_up"] == 8 * 150


def test_async_retry_takes_its_decisions_from_the_engine() -> None:
    seen: list[tuple[int, float]] = []
    policy = resil.retry(retries=3, backoff=resil.Backoff(base=1.0, multiplier=3.0),
                         on_retry=lambda attempt, delay, err: seen.append((attempt, delay)))
    attempts = 0

    @policy
    async def flaky() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise ValueError("x")
        return "ok"

    async def main() -> tuple[str, float]:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        return await flaky(), loop.time() - t0

    assert resil.run_virtual(main()) == ("ok", 4.0)
    assert seen == [(1, 1.0), (2, 3.0)]
    assert policy.stats() == {"name": None, "retries": 2, "gave_up": 0, "rejected": 0}


def test_retry_engine_calls_only_the_callables_it_was_given() -> None:
    # A breaker subclass's attributes named like the engine's hooks are never
    # looked up: the engine reads the C breaker it was given.
    class Hooked(resil.CircuitBreaker):
        looked_up = 0

        @property
        def state(self) -> Any:  # type: ignore[override]
            Hooked.looked_up += 1
            return super().state

        @property
        def remaining(self) -> Any:  # type: ignore[override]
            Hooked.looked_up += 1
            return super().remaining

    b = Hooked("hooked", failure_threshold=1, minimum_calls=1, adaptive=False,
               clock=resil.VirtualClock())

    @resil.retry(retries=3, breaker=b, backoff=resil.Backoff(base=0.0),
                 clock=resil.VirtualClock())
    def fails() -> None:
        raise ValueError("x")

    with pytest.raises(resil.CircuitOpenError):
        fails()
    assert Hooked.looked_up == 0


# ---- breaker: transitions go to the listener it was given ---------------------


class _Hooks:
    """Counts every use of an attribute named like an old engine hook."""

    def __init__(self) -> None:
        self.uses: list[str] = []

    def hook(self, name: str) -> Any:
        def method(*args: Any, **kwargs: Any) -> None:
            self.uses.append(name)
        return method


def _hooked(base: type, hooks: _Hooks, names: tuple[str, ...]) -> type:
    def prop(name: str) -> property:
        def get(self: Any) -> Any:
            hooks.uses.append(name)
            return hooks.hook(name)
        return property(get)
    return type("Hooked" + base.__name__, (base,), {n: prop(n) for n in names})


BREAKER_HOOKS = ("_on_transition", "_on_state_change", "_notify", "_last_opened_wall",
                 "_last_opened", "_opened_wall", "_listeners_changed")


@pytest.mark.parametrize("base", [_resil.Breaker, resil.CircuitBreaker])
def test_breaker_engine_uses_no_hook_of_a_subclass(base: type) -> None:
    hooks = _Hooks()
    # CircuitBreaker hands its own _on_transition to the engine, explicitly.
    names = BREAKER_HOOKS if base is _resil.Breaker else BREAKER_HOOKS[1:]
    cls = _hooked(base, hooks, names)
    clock = resil.VirtualClock()
    b = cls("hooked", failure_threshold=2, minimum_calls=1, cooldown=1.0, adaptive=False,
            clock=clock)
    hooks.uses.clear()  # what the Python constructor itself did is not the engine's doing
    heard: list[tuple[Any, ...]] = []
    b._set_listener(lambda *event: heard.append(event[1:3]))
    for _ in range(2):
        with pytest.raises(ZeroDivisionError):
            b.call(lambda: 1 / 0)
    clock.advance(2.0)
    assert b.state is resil.State.HALF_OPEN
    b.force_open()
    b.reset()
    b.stats()
    b.last_opened
    _resil.breaker_exposition([b])
    assert hooks.uses == []
    assert heard == [(resil.State.CLOSED, resil.State.OPEN), (resil.State.OPEN, resil.State.HALF_OPEN),
                     (resil.State.HALF_OPEN, resil.State.FORCED_OPEN),
                     (resil.State.FORCED_OPEN, resil.State.CLOSED)]


def test_breaker_stats_are_the_engines_own() -> None:
    # CircuitBreaker adds nothing to, and overwrites nothing in, what the
    # engine reports.
    assert resil.CircuitBreaker.stats is _resil.Breaker.stats
    clock = resil.VirtualClock()
    b = resil.CircuitBreaker("s", failure_threshold=1, minimum_calls=1, clock=clock)
    with pytest.raises(KeyError):
        b.call(lambda: {}[0])
    assert b.stats() == _resil.Breaker.stats(b)
    assert b.stats()["last_opened"] == b.last_opened is not None


# ---- queue: Python owns the waiters, the engine reads their lines ------------------


QUEUE_HOOKS = ("_wake_getter", "_wake_putter", "_wake_joiners", "_waiting_getters",
               "_waiting_putters", "_waiting_joiners", "_wake", "_on_put", "_on_get")


def test_queue_uses_no_hook_of_a_subclass_and_keeps_one_count_of_waiters() -> None:
    hooks = _Hooks()
    cls = _hooked(resil.BoundedQueue, hooks, QUEUE_HOOKS)

    async def main() -> None:
        q = cls(1, reject_at=1.0)
        getters = [asyncio.ensure_future(q.get()) for _ in range(3)]
        await asyncio.sleep(0)
        assert len(q._getters) == 3
        getters[0].cancel()
        await asyncio.sleep(0)
        assert len(q._getters) == 2       # the one count: who is in line
        q.put_nowait("a")
        assert await getters[1] == "a"
        q.put_nowait("b")
        assert await getters[2] == "b"
        q.put_nowait("c")
        putter = asyncio.ensure_future(q.put("d"))
        await asyncio.sleep(0)
        assert len(q._putters) == 1
        assert q.get_nowait() == "c"
        await putter
        joiner = asyncio.ensure_future(q.join())
        await asyncio.sleep(0)
        assert q.get_nowait() == "d"
        for _ in range(4):
            q.task_done()
        await asyncio.wait_for(joiner, 1)
        assert not q._getters and not q._putters and not q._joiners

    resil.run_virtual(main())
    assert hooks.uses == []


def test_queue_stats_are_the_engines_own() -> None:
    assert resil.BoundedQueue.stats is _resil.Ring.stats
    q: resil.BoundedQueue[int] = resil.BoundedQueue(4, clock=resil.VirtualClock())
    q.put_nowait(1)
    assert q.stats() == _resil.Ring.stats(q)
