"""The boundary between the C engine and the Python layer is one-way: the C
types never look up or call attributes of a Python subclass by name; what
they tell Python goes to callables given to them explicitly."""

from __future__ import annotations

import asyncio
import gc
import time
import weakref
from collections import deque
from typing import Any

import pytest

import resil
from resil import _resil

# ---- the queue engine wakes through the callables it was given ---------------


class _Named(_resil.Ring):
    """Defines the hook names an engine looking methods up would find."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.called: list[str] = []

    def _wake_getter(self) -> None:
        self.called.append("getter")

    def _wake_putter(self) -> None:
        self.called.append("putter")

    def _wake_joiners(self) -> None:
        self.called.append("joiners")


def test_queue_engine_calls_no_method_by_name() -> None:
    q = _Named(4)
    q.put_nowait(1)
    q.get_nowait()
    q.task_done()
    woken: list[str] = []
    q._set_waiters(deque("g"), deque("p"), deque("j"), lambda line: woken.append(line[0]),
                   lambda line: woken.append(line[0].upper()))
    q.put_nowait(1)
    q.get_nowait()
    q.task_done()
    assert q.called == [] and woken == ["g", "p", "J"]


def test_queue_engine_wakes_a_line_while_it_holds_waiters() -> None:
    q = _resil.Ring(4)
    getters: deque[str] = deque()
    putters = deque(["p1", "p2"])
    joiners: deque[str] = deque()
    calls: list[str] = []

    def first(line: deque[str]) -> None:
        calls.append(line.popleft())

    def every(line: deque[str]) -> None:
        calls.extend(line)
        line.clear()

    q._set_waiters(getters, putters, joiners, first, every)
    q.put_nowait(1)                 # nobody waits for an item: no call
    assert calls == []
    getters.append("g1")
    joiners.append("j1")
    q.put_nowait(2)
    assert calls == ["g1"] and not getters
    q.get_nowait()
    assert calls == ["g1", "p1"] and list(putters) == ["p2"]
    q.task_done()                   # one still unfinished: joiners not woken
    assert calls == ["g1", "p1"]
    q.get_nowait()
    q.task_done()
    assert calls == ["g1", "p1", "p2", "j1"] and not putters and not joiners


def test_queue_waker_that_fails_loses_no_item() -> None:
    q = _resil.Ring(4)

    def broken(line: Any) -> None:
        raise RuntimeError("waker broke")

    def wrong(line: Any) -> None:
        raise TypeError("waker broke")

    q._set_waiters(deque([1]), deque([1]), deque(), wrong, broken)
    q._set_waiters(deque([1]), deque([1]), deque(), broken, wrong)
    seen: list[BaseException | None] = []
    import sys
    old, sys.unraisablehook = sys.unraisablehook, lambda u: seen.append(u.exc_value)
    try:
        q.put_nowait("x")
        assert q.get_nowait() == "x"
    finally:
        sys.unraisablehook = old
    assert [type(e) for e in seen] == [RuntimeError, RuntimeError]


class _Deque(deque):  # type: ignore[type-arg]
    pass


@pytest.mark.parametrize("bad", [None, 1, [], _Deque()])
def test_set_waiters_refuses_what_it_cannot_use(bad: Any) -> None:
    q = _resil.Ring(4)
    with pytest.raises(TypeError, match="putters must be a collections.deque"):
        q._set_waiters(deque(), bad, deque(), print, print)
    with pytest.raises(TypeError, match="wake_all must be callable"):
        q._set_waiters(deque(), deque(), deque(), print, bad if bad is not None else 1)
    with pytest.raises(TypeError, match="5 arguments"):
        q._set_waiters(deque(), deque(), deque())


def test_bounded_queue_is_freed_without_the_cycle_collector() -> None:
    async def main() -> weakref.ref[Any]:
        q: resil.BoundedQueue[int] = resil.BoundedQueue(2)
        getter = asyncio.ensure_future(q.get())
        await asyncio.sleep(0)
        q.put_nowait(7)
        assert await getter == 7
        return weakref.ref(q)

    gc.disable()
    try:
        ref = asyncio.run(main())
        assert ref() is None
    finally:
        gc.enable()


def test_bounded_queue_wakes_getters_putters_and_joiners() -> None:
    async def main() -> None:
        q: resil.BoundedQueue[int] = resil.BoundedQueue(2, reject_at=1.0)
        getters = [asyncio.ensure_future(q.get()) for _ in range(2)]
        await asyncio.sleep(0)
        assert len(q._getters) == 2
        q.put_nowait(1)
        assert len(q._getters) == 1      # one woken, one still in line
        q.put_nowait(2)                  # the woken getter has not run yet
        assert len(q._getters) == 0
        assert sorted(await asyncio.gather(*getters)) == [1, 2]
        q.put_nowait(3)
        q.put_nowait(0)
        putter = asyncio.ensure_future(q.put(4))
        await asyncio.sleep(0)
        assert len(q._putters) == 1
        assert q.get_nowait() == 3
        await putter
        assert q.get_nowait() == 0 and q.get_nowait() == 4
        joiner = asyncio.ensure_future(q.join())
        await asyncio.sleep(0)
        for _ in range(5):
            q.task_done()
        await asyncio.wait_for(joiner, 1)

    asyncio.run(main())


# ---- the breaker keeps the Unix time of its last opening in C ---------------


def test_engine_breaker_keeps_unix_time_of_last_opening() -> None:
    clock = resil.VirtualClock(start=5.0)
    b = _resil.Breaker("engine", clock=clock)
    assert b.stats()["last_opened"] is None
    before = time.time()
    b.open()
    after = time.time()
    opened = b.stats()["last_opened"]
    assert before <= opened <= after
    assert b.last_opened == opened
    b.reset()
    assert b.stats()["last_opened"] is None and b.last_opened is None


def test_breaker_last_opening_ignores_a_python_attribute() -> None:
    clock = resil.VirtualClock()
    b = resil.CircuitBreaker("p", clock=clock)
    b._last_opened_wall = 12.0  # type: ignore[attr-defined]
    assert b.last_opened is None and b.stats()["last_opened"] is None
    assert "_last_opened_timestamp_seconds{" not in _resil.breaker_exposition([b])
    b.open()
    opened = b.last_opened
    assert opened is not None and opened != 12.0 and b.stats()["last_opened"] == opened
    line = [ln for ln in _resil.breaker_exposition([b]).splitlines()
            if "_last_opened_timestamp_seconds{" in ln]
    assert line == [f'resil_circuit_breaker_last_opened_timestamp_seconds{{endpoint="p"}} '
                    f'{opened!r}']


def test_breaker_last_opening_is_the_time_of_the_transition() -> None:
    # The time is read when the engine opens, not when a slow listener
    # gets to hear of it.
    clock = resil.VirtualClock()
    b = resil.CircuitBreaker("slow", clock=clock)
    b.on_state_change(lambda *_: time.sleep(0.05))
    before = time.time()
    b.open()
    assert b.last_opened is not None and b.last_opened < before + 0.04
