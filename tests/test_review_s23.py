"""Review of an awaited guarded call's result (from CPython 3.12 it leaves
through a StopIteration the module reuses), of the argument checks of the
Redis layer and of the deduplicators' hit counts.

The tests of results hold on every version; the ones about lifetimes and
re-entry fail on 3.12+ against a module that keeps a result, a context or a
changed value longer than a new exception would."""

from __future__ import annotations

import asyncio
import gc
import sys
import weakref
from typing import Any

import pytest

from resil import CircuitBreaker, VirtualClock

from tests_support import run_threads


def make() -> CircuitBreaker:
    return CircuitBreaker("svc", clock=VirtualClock())


class _Obj:
    pass


# ---- an awaited call's result ---------------------------------------------------


def test_a_result_s_del_awaiting_a_guarded_call_does_not_change_the_next_result() -> None:
    b = make()

    @b
    async def h(v: object) -> object:
        return v

    inner: list[object] = []

    class Reenter:
        def __del__(self) -> None:
            # the first leaves the kept exception caught (with a traceback),
            # so the second makes a new one and lets go of the kept one
            for v in ("inner", "again"):
                try:
                    h(v).send(None)
                except StopIteration as e:
                    inner.append(e.value)

    async def main() -> list[object]:
        # an awaitable driven by a C iterator, which holds it past its end
        z = zip(h(Reenter()).__await__())
        for _ in z:
            pass
        got = [await h(42)]
        del z
        got.append(await h(43))
        return got

    assert asyncio.run(main()) == [42, 43]
    assert inner == ["inner", "again"]


def test_an_async_with_body_s_error_and_its_locals_are_freed_once_handled() -> None:
    b = make()
    refs: list[weakref.ref[_Obj]] = []

    async def body() -> None:
        o = _Obj()
        refs.append(weakref.ref(o))
        async with b:
            raise ValueError("boom")

    @b
    async def h(v: object) -> object:
        return v

    async def handling() -> None:
        o = _Obj()
        refs.append(weakref.ref(o))
        try:
            raise KeyError("handled")
        except KeyError:
            assert await h(1) == 1          # its StopIteration's context: the KeyError
            assert await b.call_async(h, 2) == 2

    async def main() -> None:
        with pytest.raises(ValueError):
            await body()
        assert refs[0]() is None            # nothing keeps the error's frame
        await handling()
        assert refs[1]() is None

    asyncio.run(main())
    assert b.stats()["failures"] == 1


def test_results_of_awaitables_kept_in_a_list_are_freed_once_dropped() -> None:
    b = make()

    @b
    async def h(v: object) -> object:
        return v

    async def main() -> None:
        aws = [h(_Obj()) for _ in range(3)] + [b.call_async(h, _Obj())]
        for a in aws:
            r = await a
            gone = weakref.ref(r)
            del r
            assert gone() is None

    asyncio.run(main())


def test_a_result_caught_by_hand_from_an_awaitable_gone_is_freed_with_the_exception() -> None:
    b = make()

    @b
    async def h(v: object) -> object:
        return v

    def drive(step: Any) -> weakref.ref[_Obj]:
        o = _Obj()
        gone = weakref.ref(o)
        try:
            step(h(o).__await__())
        except StopIteration as e:
            assert e.value is o
        return gone

    for step in (next, lambda it: it.send(None)):
        assert drive(step)() is None


def test_a_caught_stop_iteration_s_suppressed_context_reaches_no_later_one() -> None:
    b = make()

    @b
    async def h(v: object) -> object:
        return v

    it = h(1).__await__()
    with pytest.raises(StopIteration) as first:
        it.send(None)
    first.value.__suppress_context__ = True
    del first, it
    for n in range(3):
        try:
            raise KeyError(n)
        except KeyError as handled:
            with pytest.raises(StopIteration) as stop:
                h(n).send(None)
            assert stop.value.value == n
            assert stop.value.__context__ is handled
            assert stop.value.__suppress_context__ is False


def test_results_are_right_on_threads_each_running_a_loop() -> None:
    b = make()

    @b
    async def quick(v: object) -> object:
        return v

    @b
    async def slow(v: object) -> object:
        await asyncio.sleep(0)
        return v

    bad: list[object] = []

    def worker(k: int) -> None:
        async def main() -> None:
            for i in range(150):
                for f in (quick, slow):
                    r = await f((k, i))
                    if r != (k, i):
                        bad.append((r, k, i))
                r = await b.call_async(quick, [k, i])
                if r != [k, i]:
                    bad.append((r, k, i))
                async with b:
                    pass
                got = await asyncio.gather(*(quick((k, i, j)) for j in range(4)))
                if got != [(k, i, j) for j in range(4)]:
                    bad.append(got)
        asyncio.run(main())

    run_threads(worker, 4, switch=1e-6)
    assert bad == []


def test_results_reach_eager_tasks_and_an_observer_of_raises_keeps_what_it_saw() -> None:
    """Eager tasks (3.12+; the default task factory before), and an observer
    that keeps every exception raised (sys.monitoring from 3.12, where results
    leave as a StopIteration; a trace function before): each one it kept
    keeps its own value."""
    b = make()

    @b
    async def quick(v: object) -> object:
        return v

    async def eager() -> None:
        factory = getattr(asyncio, "eager_task_factory", None)
        if factory is not None:
            asyncio.get_running_loop().set_task_factory(factory)
        got = await asyncio.gather(*(asyncio.create_task(quick(("e", i))) for i in range(100)))
        assert got == [("e", i) for i in range(100)]

    asyncio.run(eager())

    async def main() -> list[object]:
        return [await quick(("m", i)) for i in range(40)]

    seen: list[BaseException] = []
    mon: Any = getattr(sys, "monitoring", None)
    if mon is not None:
        tool = 4
        mon.use_tool_id(tool, "review")
        try:
            mon.register_callback(tool, mon.events.RAISE,
                                  lambda code, off, exc: seen.append(exc))
            mon.set_events(tool, mon.events.RAISE)
            assert asyncio.run(main()) == [("m", i) for i in range(40)]
        finally:
            mon.set_events(tool, 0)
            mon.register_callback(tool, mon.events.RAISE, None)
            mon.free_tool_id(tool)
    else:
        def tracer(frame: Any, event: str, arg: Any) -> Any:
            if event == "exception":
                seen.append(arg[1])
            return tracer
        sys.settrace(tracer)
        try:
            assert asyncio.run(main()) == [("m", i) for i in range(40)]
        finally:
            sys.settrace(None)
    mine = [e.value for e in seen if isinstance(e, StopIteration) and
            isinstance(e.value, tuple) and e.value[:1] == ("m",)]
    if mon is not None:
        assert mine == [("m", i) for i in range(40)]  # each one seen keeps its own value
    else:
        assert mine in ([], [("m", i) for i in range(40)])  # before 3.12 no result is raised
    gc.collect()


# ---- hit counts ------------------------------------------------------------------


class _Key:
    """A key whose hash collides and whose __eq__ is Python code: threads
    switch inside get()."""

    def __init__(self, v: int) -> None:
        self.v = v

    def __hash__(self) -> int:
        return self.v & 3

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Key) and other.v == self.v


def test_deduplicator_hits_are_exact_with_threads_switching_inside_get() -> None:
    import resil

    d = resil.Deduplicator(ttl=1000.0)
    for i in range(20):
        d.put(_Key(i), i)
    wrong: list[object] = []

    def worker(t: int) -> None:
        for i in range(600):
            got = d.get(_Key(i % 30))
            if got != (i % 30 if i % 30 < 20 else None):
                wrong.append(got)

    run_threads(worker, 4, switch=1e-6)
    assert wrong == []
    assert d.stats()["hits"] == 4 * sum(1 for i in range(600) if i % 30 < 20)


def test_idempotent_counts_are_exact_on_loops_in_threads_and_outlive_clearing() -> None:
    import resil

    @resil.idempotent(key=lambda x: x, ttl=1000.0)
    async def f(x: tuple[int, ...]) -> tuple[int, ...]:
        await asyncio.sleep(0)
        if x[-1] % 7 == 0:
            raise ValueError(x)
        return x

    n = 70
    failing = sum(1 for i in range(n) if i % 7 == 0)

    def worker(k: int) -> None:
        async def one(x: tuple[int, ...]) -> None:
            try:
                await f(x)
            except ValueError:
                pass

        async def main() -> None:
            for _ in range(2):
                for i in range(n):
                    await one((k, i))
            await asyncio.gather(*(one((k, -1, i % 10)) for i in range(50)))
        asyncio.run(main())

    run_threads(worker, 3, switch=1e-6)
    # per thread: n runs, then failing runs and n - failing hits; 10 keys run
    # once each by 50 callers (2 of them fail): 40 joined
    runs, hits, waits = n + failing + 10, n - failing, 40
    fails = 2 * failing + 2
    want = {"runs": 3 * runs, "hits": 3 * hits, "waits": 3 * waits, "failures": 3 * fails,
            "running": 0, "ttl": 1000.0}
    assert f.stats() == want  # type: ignore[attr-defined]
    f.cache_clear()  # type: ignore[attr-defined]
    assert f.stats() == want  # type: ignore[attr-defined]
    asyncio.run(f((0, 1)))
    want["runs"] += 1
    assert f.stats() == want  # type: ignore[attr-defined]
