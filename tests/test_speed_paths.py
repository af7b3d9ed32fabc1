"""The fast paths of the circuit breaker keep its behaviour: `async with`
through the C __aenter__ / __aexit__, the guarded call that forwards its
arguments, and the rejection that builds CircuitOpenError without a message."""

from __future__ import annotations

import asyncio
import inspect
import pickle
import sys

import pytest

from resil import CircuitBreaker, CircuitOpenError, State, VirtualClock

from tests_support import run_threads


def make(clock: VirtualClock | None = None, **kw: object) -> CircuitBreaker:
    kw.setdefault("clock", clock or VirtualClock())
    return CircuitBreaker("svc", **kw)  # type: ignore[arg-type]


# ---- async with -------------------------------------------------------------

def test_async_with_steps_are_awaitables_that_finish_at_once() -> None:
    b = make()
    enter = b.__aenter__()
    assert inspect.isawaitable(enter)
    with pytest.raises(StopIteration) as stop:
        enter.__await__().send(None)
    assert stop.value.value is None
    exit_ = b.__aexit__(None, None, None)
    with pytest.raises(StopIteration) as stop:
        next(iter(exit_.__await__()))
    assert stop.value.value is False
    assert b.stats()["successes"] == 1
    with pytest.raises(KeyError):
        exit_.throw(KeyError("k"))
    assert exit_.close() is None
    with pytest.raises(TypeError, match="3 arguments"):
        b.__aexit__(None, None)  # type: ignore[call-arg]

    async def main() -> bool:
        await b.__aenter__()
        return await b.__aexit__(None, None, None)

    assert asyncio.run(main()) is False
    assert b.stats()["successes"] == 2


def test_async_with_records_success_failure_ignored_and_cancellation() -> None:
    clock = VirtualClock()
    b = make(clock, ignore=(KeyError,), failure_threshold=10, cooldown=1, half_open_probes=1)

    async def body(exc: BaseException | None) -> None:
        async with b:
            clock.advance(0.25)
            await asyncio.sleep(0)
            if exc is not None:
                raise exc

    async def main() -> None:
        await body(None)
        for exc in (ValueError("v"), KeyError("k")):
            with pytest.raises(type(exc)):
                await body(exc)
        task = asyncio.create_task(body(None))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    st = b.stats()
    assert (st["successes"], st["failures"], st["released"]) == (1, 1, 2)
    # A probe cancelled inside `async with` is given back, never counted.
    b.open()
    clock.advance(1)

    async def probe() -> None:
        task = asyncio.create_task(body(None))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await body(None)  # the probe permit is free again

    asyncio.run(probe())
    assert b.state == State.CLOSED


def test_async_with_rejects_without_running_the_body() -> None:
    b = make()
    b.force_open()
    ran = []

    async def main() -> None:
        with pytest.raises(CircuitOpenError) as err:
            async with b:
                ran.append(1)
        assert err.value.state == State.FORCED_OPEN and err.value.remaining is None
        with pytest.raises(RuntimeError, match="matching __enter__"):
            await b.__aexit__(None, None, None)

    asyncio.run(main())
    assert ran == [] and b.stats()["rejected"] == 1


def test_async_with_failure_if_error_is_raised_chained() -> None:
    def judge(exc: BaseException) -> bool:
        raise RuntimeError("judge broke")

    b = make(failure_if=judge)

    async def main() -> None:
        async with b:
            raise ValueError("inner")

    with pytest.raises(RuntimeError, match="judge broke") as err:
        asyncio.run(main())
    assert isinstance(err.value.__context__, ValueError)
    assert b.stats()["failures"] == 1


# ---- rejection --------------------------------------------------------------

def test_rejection_error_is_fresh_complete_and_chained() -> None:
    clock = VirtualClock()
    b = make(clock, cooldown=30)

    @b
    def f(x: int) -> int:
        return x

    b.open()
    clock.advance(10)
    errors = []
    for _ in range(2):
        try:
            f(1)
        except CircuitOpenError as e:
            errors.append(e)
    first, second = errors
    assert first is not second
    assert (first.name, first.state, first.remaining) == ("svc", State.OPEN, 20.0)
    assert first.args == () and first.__traceback__ is not None
    assert first.__context__ is None and first.__cause__ is None
    assert "svc" in str(first) and "OPEN" in str(first) and "CircuitOpenError" in repr(first)
    again = pickle.loads(pickle.dumps(first))
    assert (again.name, again.state, again.remaining) == ("svc", State.OPEN, 20.0)
    if sys.version_info >= (3, 11):
        first.add_note("seen")
        assert first.__notes__ == ["seen"]
    first.extra = 1  # an instance dict, as for any exception
    assert first.extra == 1
    try:
        try:
            raise KeyError("while handling")
        except KeyError:
            b.call(f, 1)
    except CircuitOpenError as e:
        assert isinstance(e.__context__, KeyError)
    assert b.stats()["rejected"] == 3


# ---- with: the permits of each context ------------------------------------

def test_a_task_cannot_leave_the_block_its_parent_entered() -> None:
    b = make()
    seen = []

    async def child() -> None:
        with pytest.raises(RuntimeError, match="matching __enter__"):
            await b.__aexit__(None, None, None)
        async with b:  # its own block, inside the parent's
            seen.append("child")

    async def main() -> None:
        async with b:
            await asyncio.create_task(child())
            seen.append("parent")

    asyncio.run(main())
    assert seen == ["child", "parent"]
    assert b.stats()["successes"] == 2 and b.stats()["permitted"] == 2


def test_with_blocks_nest_across_breakers_threads_and_contexts() -> None:
    import contextvars
    import gc

    b, other = make(), make()
    with b:
        with other:
            with pytest.raises(RuntimeError, match="matching __enter__"):
                b.__exit__(None, None, None)  # other's block is innermost
        # a copied context has no block of its own to leave
        ctx = contextvars.copy_context()
        with pytest.raises(RuntimeError, match="matching __enter__"):
            ctx.run(b.__exit__, None, None, None)

        def inner() -> None:
            with b:
                pass

        ctx.run(inner)
    errors: list[BaseException] = []

    def worker(_: int) -> None:
        try:
            for _ in range(50):
                with b:
                    with other:
                        pass
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    run_threads(worker, 8)
    assert errors == []
    assert b.stats()["successes"] == 2 + 400 and other.stats()["successes"] == 1 + 400
    gc.collect()
    stacks = [o for o in gc.get_objects() if type(o).__name__ == "PermitStack"]
    assert len(stacks) <= 3  # the threads' stacks went with their contexts


def test_exit_with_an_exception_type_that_cannot_be_made_gives_the_permit_back() -> None:
    clock = VirtualClock()
    b = make(clock, cooldown=1, half_open_probes=1)
    b.open()
    clock.advance(1)

    class Unmakeable(Exception):
        def __init__(self) -> None:
            raise LookupError("cannot make it")

    b.__enter__()  # the only probe
    with pytest.raises(LookupError, match="cannot make it"):
        b.__exit__(Unmakeable, None, None)
    assert b.stats()["released"] == 1
    with b:  # the probe is free again
        pass
    assert b.state == State.CLOSED


# ---- reused awaitables --------------------------------------------------------

def test_every_dropped_deferred_call_warns_even_when_its_memory_is_reused() -> None:
    # A freed guarded awaitable's memory is reused by the next one; one
    # whose never-awaited warning ran must not pass that mark on, or the
    # next dropped call would be silent.
    b = make()

    async def g(x: int) -> int:
        return x

    import gc
    import warnings
    for _ in range(3):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            b.call_async(g, 1)  # dropped, never awaited
            gc.collect()
        assert [w.category for w in seen] == [RuntimeWarning], seen
        assert asyncio.run(b.call_async(g, 2)) == 2  # reuses freed memory


def test_awaitables_reused_across_many_calls_record_each_outcome() -> None:
    b = make(failure_threshold=1000)

    async def ok(x: int) -> int:
        return x

    async def bad(x: int) -> int:
        raise ValueError(x)

    guarded_ok, guarded_bad = b(ok), b(bad)

    async def main() -> list[object]:
        out: list[object] = []
        for i in range(200):
            if i % 3 == 0:
                try:
                    await guarded_bad(i)
                except ValueError as e:
                    out.append(e.args[0])
            else:
                out.append(await guarded_ok(i))
        # several alive at once, then freed together
        many = [guarded_ok(i) for i in range(40)]
        out.extend(await asyncio.gather(*many))
        return out

    out = asyncio.run(main())
    assert out == list(range(200)) + list(range(40))
    st = b.stats()
    assert (st["successes"], st["failures"]) == (133 + 40, 67)


# ---- an awaited call's result ------------------------------------------------------
#
# From CPython 3.12 a result leaves a guarded awaitable as a StopIteration,
# which the module reuses while nothing else holds it. These hold on every
# version: the result is right, it is not kept after the await, and an
# exception someone caught is theirs.

class _Result:
    def __init__(self, n: int) -> None:
        self.n = n


def test_an_awaited_call_s_result_is_not_kept_once_the_await_is_over() -> None:
    import weakref

    b = make()

    @b
    async def h(n: int) -> _Result:
        return _Result(n)

    async def main() -> None:
        for n in range(3):
            r = await h(n)
            assert r.n == n
            gone = weakref.ref(r)
            del r
            assert gone() is None                      # freed at once: nothing kept it
        r = await b.call_async(h, 5)
        gone = weakref.ref(r)
        del r
        assert gone() is None

    asyncio.run(main())


def test_a_stop_iteration_caught_by_hand_is_never_changed_by_later_awaits() -> None:
    b = make()

    @b
    async def h(n: object) -> object:
        return n

    async def main() -> None:
        caught = []
        for step in (lambda it: it.send(None), next):
            it = b.call_async(h, ("mine", step)).__await__()
            with pytest.raises(StopIteration) as stop:
                step(it)
            caught.append(stop.value)
        values = [e.value for e in caught]
        for n in range(50):
            assert await h(n) == n
            assert (await asyncio.gather(h(n), h(-n))) == [n, -n]
        assert [e.value for e in caught] == values and [e.args for e in caught] == \
            [(v,) for v in values]
        assert caught[0] is not caught[1]
        try:
            raise KeyError("handled")
        except KeyError as handled:
            assert await h(7) == 7
            with pytest.raises(StopIteration) as stop:
                next(b.call_async(h, 8).__await__())
            assert stop.value.value == 8 and stop.value.__context__ is handled
        assert await h(9) == 9

    asyncio.run(main())


def test_results_of_nested_and_concurrent_guarded_awaits_reach_their_callers() -> None:
    b = make()

    @b
    async def leaf(n: int) -> tuple[str, int]:
        await asyncio.sleep(0)
        return ("leaf", n)

    @b
    async def outer(n: int) -> tuple[str, tuple[str, int], bool]:
        inner = await leaf(n)
        async with b as entered:           # its exit's False leaves as a StopIteration too
            pass
        return ("outer", inner, entered is None)

    async def main() -> None:
        async with b:
            got = await asyncio.gather(*(outer(n) for n in range(300)))
        assert got == [("outer", ("leaf", n), True) for n in range(300)]

    asyncio.run(main())
    assert b.stats()["successes"] >= 600
