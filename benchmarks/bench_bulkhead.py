"""resil.Bulkhead beside the semaphores a user would wrap instead, in one process, interleaved.

Peers: the standard library's ``asyncio.Semaphore`` (``async with``) and
``threading.BoundedSemaphore`` (``with``), each also as the decorator a user
would write around them. Each scenario is measured as overhead in ns per
call over a bare baseline, by the harness in ``_harness.py`` (its docstring
has the method):

1. ``async with`` a free slot around ``await g(1)`` (baseline: ``await g(1)``
   in a loop inside one coroutine), and the decorated coroutine function;
2. ``with`` a free slot around ``f(1)`` (baseline: ``f(1)``), and the
   decorated function;
3. contended: 100 tasks, each ``async with`` the limiter around
   ``await asyncio.sleep(0)``, on 10 slots (90 wait in line), gathered; one
   iteration is the whole batch (baseline: the same 100 tasks unlimited).

Every limiter has 10 slots; the bulkhead's line holds the 90 that wait in
scenario 3 (``max_queue=90``). Before timing, each statement is checked to
run its call once (and in scenario 3, never more than 10 at once). The
target, resil's ``async with`` no slower than a bare ``asyncio.Semaphore``'s,
is checked from scenario 1's ratio column.

Usage: ``python benchmarks/bench_bulkhead.py [--quick] [--write-results]``.
"""

from __future__ import annotations

import asyncio
import functools
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h  # noqa: E402
from _harness import Contender, Scenario, expect  # noqa: E402

import resil  # noqa: E402

SECTION = "## Bulkhead (bench_bulkhead.py)"
SLOTS = 10
TASKS = 100

NOTES = ("The peers are the standard library's, of the Python named above. "
         "resil's slot counts and admission are one C call each way (`async with` "
         "enters and leaves through two small coroutines of the Python class); the "
         "semaphores keep their count in Python. threading.BoundedSemaphore takes a "
         "lock around each acquire and release. In scenario 3 every waiter parks on a "
         "future: resil's line of waiters is a deque of them, as asyncio.Semaphore's is.")


def f(x: Any) -> Any:
    return x


async def g(x: Any) -> Any:
    return x


def semaphore_decorator(sem: threading.BoundedSemaphore) -> Callable[[Callable[..., Any]],
                                                                      Callable[..., Any]]:
    """What a user writes around a threading semaphore."""
    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with sem:
                return fn(*args, **kwargs)
        return wrapper
    return deco


def async_semaphore_decorator(sem: asyncio.Semaphore) -> Callable[
        [Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
    """What a user writes around an asyncio semaphore."""
    def deco(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            async with sem:
                return await fn(*args, **kwargs)
        return wrapper
    return deco


def async_uncontended(loop: asyncio.AbstractEventLoop) -> Scenario:
    def L(body: str, **names: Any) -> h.RunFn:
        return h.async_loop(loop, body, **names)

    bh = resil.Bulkhead("bench", SLOTS)
    sem = asyncio.Semaphore(SLOTS)
    decorated = {"resil @bulkhead": bh(g), "asyncio.Semaphore decorator":
                 async_semaphore_decorator(sem)(g)}

    async def check() -> None:
        for what, fn in decorated.items():
            expect(1, await fn(1), what)
        async with bh:
            expect(1, bh.stats()["active"], "resil async with")
        expect(1, await bh.call_async(g, 1), "resil call_async")
    loop.run_until_complete(check())
    expect(0, bh.stats()["active"], "resil slots given back")

    return Scenario(
        title="1. Async, a slot free — `await g(1)` inside the limiter",
        note=("Baseline: `await g(1)` in a loop inside one coroutine, with "
              "`async def g(x): return x`. Target: resil's `async with` no slower than "
              "asyncio.Semaphore's (its x resil at least 1)."),
        baseline=Contender("bare await g(1)", L("await fn(1)", fn=g)),
        reference="resil async with bulkhead:",
        contenders=[
            Contender("resil async with bulkhead:",
                      L("async with b:\n    await fn(1)", b=bh, fn=g)),
            Contender("resil @bulkhead", L("await fn(1)", fn=decorated["resil @bulkhead"])),
            Contender("resil await call_async(g, 1)", L("await b.call_async(fn, 1)", b=bh, fn=g)),
            Contender("asyncio.Semaphore async with",
                      L("async with s:\n    await fn(1)", s=sem, fn=g)),
            Contender("asyncio.Semaphore decorator",
                      L("await fn(1)", fn=decorated["asyncio.Semaphore decorator"])),
        ],
    )


def sync_uncontended() -> Scenario:
    L = h.sync_loop
    bh = resil.Bulkhead("bench", SLOTS)
    sem = threading.BoundedSemaphore(SLOTS)
    decorated = {"resil @bulkhead": bh(f), "BoundedSemaphore decorator":
                 semaphore_decorator(sem)(f)}
    for what, fn in decorated.items():
        expect(1, fn(1), what)
    with bh:
        expect(1, bh.stats()["active"], "resil with")
    expect(1, bh.call(f, 1), "resil call")
    expect(0, bh.stats()["active"], "resil slots given back")

    return Scenario(
        title="2. Sync, a slot free — `f(1)` inside the limiter",
        note="Baseline: `f(1)` called directly, with `def f(x): return x`.",
        baseline=Contender("bare f(1)", L("fn(1)", fn=f)),
        reference="resil with bulkhead:",
        contenders=[
            Contender("resil with bulkhead:", L("with b:\n    fn(1)", b=bh, fn=f)),
            Contender("resil @bulkhead", L("fn(1)", fn=decorated["resil @bulkhead"])),
            Contender("resil call(f, 1)", L("b.call(fn, 1)", b=bh, fn=f)),
            Contender("threading.BoundedSemaphore with", L("with s:\n    fn(1)", s=sem, fn=f)),
            Contender("BoundedSemaphore decorator",
                      L("fn(1)", fn=decorated["BoundedSemaphore decorator"])),
        ],
    )


def batch(limiter: Any, peak: list[int]) -> Callable[[], Awaitable[Any]]:
    """A coroutine function running TASKS tasks, each inside ``limiter``
    (None: no limit) around one ``await asyncio.sleep(0)``, all gathered.
    ``peak[0]`` keeps the most that were inside at once."""
    inside = [0]

    async def one() -> None:
        inside[0] += 1
        if inside[0] > peak[0]:
            peak[0] = inside[0]
        await asyncio.sleep(0)
        inside[0] -= 1

    async def limited() -> None:
        async with limiter:
            await one()

    work = one if limiter is None else limited

    async def run() -> Any:
        return await asyncio.gather(*[work() for _ in range(TASKS)])
    return run


def async_contended(loop: asyncio.AbstractEventLoop) -> Scenario:
    def L(body: str, **names: Any) -> h.RunFn:
        return h.async_loop(loop, body, **names)

    bh = resil.Bulkhead("bench", SLOTS, max_queue=TASKS - SLOTS)
    sem = asyncio.Semaphore(SLOTS)
    runs = {}
    for what, limiter, most in (("unlimited", None, TASKS), ("resil", bh, SLOTS),
                                ("asyncio.Semaphore", sem, SLOTS)):
        peak = [0]
        runs[what] = batch(limiter, peak)
        loop.run_until_complete(runs[what]())
        expect(most, peak[0], f"{what}: most inside at once")
    expect(TASKS, bh.stats()["admitted"], "resil admitted")
    expect(0, bh.stats()["rejected"], "resil rejected")

    return Scenario(
        title=f"3. Async, contended — {TASKS} tasks on {SLOTS} slots, per batch",
        note=(f"One iteration: {TASKS} tasks gathered, each `async with` the limiter "
              f"around `await asyncio.sleep(0)`; {TASKS - SLOTS} of them wait in line. "
              "Baseline: the same batch with no limiter. ns/call is per batch."),
        baseline=Contender(f"{TASKS} tasks, no limit", L("await run()", run=runs["unlimited"])),
        reference="resil Bulkhead",
        contenders=[
            Contender("resil Bulkhead", L("await run()", run=runs["resil"])),
            Contender("asyncio.Semaphore", L("await run()", run=runs["asyncio.Semaphore"])),
        ],
    )


def main(argv: list[str] | None = None) -> int:
    def makers(loop: asyncio.AbstractEventLoop,
               results: list[h.ScenarioResult]) -> list[Callable[[], Scenario]]:
        return [lambda: async_uncontended(loop), sync_uncontended,
                lambda: async_contended(loop)]

    return h.scenario_main(argv, doc=__doc__, script=__file__,
                           title="Bulkhead: resil vs semaphores", section=SECTION, notes=NOTES,
                           peers=(), makers=makers, repeats=15, loop_ms=20.0,
                           summary=summary)


def summary(results: list[h.ScenarioResult]) -> list[str]:
    """The target's verdict, from scenario 1."""
    first = results[0]
    rows = {r.name: r for r in first.rows}
    ours, theirs = rows["resil async with bulkhead:"], rows["asyncio.Semaphore async with"]
    ratio = theirs.ratio
    verdict = "met" if ratio is not None and ratio >= 1.0 else "MISSED"
    return [f"resil `async with bulkhead:` {h.fmt_ns(ours.overhead)} ns over a bare await, "
            f"asyncio.Semaphore's {h.fmt_ns(theirs.overhead)} ns (x resil "
            f"{'—' if ratio is None else f'{ratio:.2f}'}): target no slower, {verdict}"]


if __name__ == "__main__":
    sys.exit(main())
