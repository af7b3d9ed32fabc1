"""resil.CircuitBreaker beside its Python peers, in one process, interleaved.

Peers (``pip install -e '.[bench]'``): pybreaker, circuitbreaker, purgatory
and aiobreaker. Each scenario is measured as overhead in ns per call over a
bare baseline, by the harness in ``_harness.py`` (its docstring has the
method):

1. sync guarded call of ``def f(x): return x`` (baseline: ``f(1)``);
2. async guarded ``await`` of ``async def g(x): return x`` (baseline:
   ``await g(1)`` in a loop inside one coroutine);
3. a rejected call while OPEN, all in: ``try: guarded(1) except Err: pass``
   (baseline: the empty loop);
4. the same with ``await guarded(1)`` inside one coroutine.

Every breaker uses a failure threshold of 5 and a 60 s cooldown, and is
tripped for scenarios 3 and 4 by five real failing calls, so each library is
in its own ordinary OPEN state.

The targets (resil's overhead ≤ 100 ns sync, ≤ 200 ns for the async
decorator, ≤ 200 ns for a rejection all in) and the peers' figures quoted
beside them were measured on a machine where a bare call took 19 ns and a
bare await 72 ns; each table also shows them scaled by this machine's
factor (this run's baseline over those).

Usage: ``python benchmarks/bench_breaker.py [--quick] [--write-results]``.
``--quick`` is a smoke run of a few seconds; ``--write-results`` replaces the
circuit-breaker section of ``benchmarks/RESULTS.md`` (otherwise it only
prints).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h  # noqa: E402
from _harness import Contender, Scenario, expect  # noqa: E402

import resil  # noqa: E402

try:
    import aiobreaker
    import circuitbreaker
    import purgatory
    import pybreaker
    from purgatory.domain.model import OpenedState as PurgatoryOpen
except ImportError as exc:  # pragma: no cover - depends on the environment
    h.missing_peers(__file__, exc)

PEERS = ("pybreaker", "circuitbreaker", "purgatory", "aiobreaker")
SECTION = "## Circuit breaker (bench_breaker.py)"

THRESHOLD = 5
COOLDOWN = 60.0

# Targets for resil (ns of overhead per call) and the peers' figures quoted
# in the issue, all on the reference machine.
SYNC_LIMIT = 100.0
ASYNC_LIMIT = 200.0
REJECT_LIMIT = 200.0
# The baselines quoted with them: a bare call and a bare await. This run's
# baselines over these give the machine factor used to scale the targets.
QUOTED_BARE_CALL_NS = 19.0
QUOTED_BARE_AWAIT_NS = 72.0


def f(x: Any) -> Any:
    return x


async def g(x: Any) -> Any:
    return x


def boom(x: Any) -> Any:
    raise RuntimeError("boom")


async def aboom(x: Any) -> Any:
    raise RuntimeError("boom")


class _Names:
    """Unique breaker names: circuitbreaker and purgatory keep global
    registries keyed by name."""

    def __init__(self) -> None:
        self.i = 0

    def __call__(self, what: str) -> str:
        self.i += 1
        return f"bench-{what}-{self.i}"


name = _Names()


# ---- breakers -----------------------------------------------------------------

def resil_breaker() -> resil.CircuitBreaker:
    return resil.CircuitBreaker(name("resil"), failure_threshold=THRESHOLD, cooldown=COOLDOWN)


def pybreaker_breaker() -> pybreaker.CircuitBreaker:
    return pybreaker.CircuitBreaker(fail_max=THRESHOLD, reset_timeout=COOLDOWN,
                                    name=name("pybreaker"))


def circuitbreaker_breaker() -> circuitbreaker.CircuitBreaker:
    return circuitbreaker.CircuitBreaker(failure_threshold=THRESHOLD,
                                         recovery_timeout=COOLDOWN,
                                         name=name("circuitbreaker"))


def aiobreaker_breaker() -> aiobreaker.CircuitBreaker:
    return aiobreaker.CircuitBreaker(fail_max=THRESHOLD,
                                     timeout_duration=timedelta(seconds=COOLDOWN),
                                     name=name("aiobreaker"))


def purgatory_sync() -> purgatory.SyncCircuitBreakerFactory:
    return purgatory.SyncCircuitBreakerFactory(default_threshold=THRESHOLD,
                                               default_ttl=COOLDOWN)


def purgatory_async() -> purgatory.AsyncCircuitBreakerFactory:
    return purgatory.AsyncCircuitBreakerFactory(default_threshold=THRESHOLD,
                                                default_ttl=COOLDOWN)


def trip(fail: Callable[[], Any], times: int = THRESHOLD) -> None:
    """Calls fail() times, swallowing whatever each failing call raises."""
    for _ in range(times):
        try:
            fail()
        except Exception:
            pass


def expect_raises(exc: type[BaseException], call: Callable[[], Any], what: str) -> None:
    try:
        call()
    except exc:
        return
    raise AssertionError(f"{what}: the breaker did not reject with {exc.__name__}")


def run_coro(loop: asyncio.AbstractEventLoop, coro: Any) -> Any:
    return loop.run_until_complete(coro)


# ---- scenarios --------------------------------------------------------------------

def sync_call() -> Scenario:
    L = h.sync_loop
    rb = resil_breaker()
    pb = pybreaker_breaker()
    cb = circuitbreaker_breaker()
    pf = purgatory_sync()
    pname = name("purgatory")
    pbrk = pf.get_breaker(pname)

    guarded = {
        "resil @breaker": rb(f),
        "pybreaker @breaker": pb(f),
        "circuitbreaker @circuit": cb(f),
        "purgatory @factory(name)": pf(pname)(f),
    }
    for what, fn in guarded.items():
        expect(1, fn(1), what)
    expect(1, rb.call(f, 1), "resil .call")
    expect(1, pb.call(f, 1), "pybreaker .call")

    return Scenario(
        title="1. Sync guarded call — `f(1)` through the breaker",
        note="Baseline: `f(1)` called directly, with `def f(x): return x`.",
        baseline=Contender("bare f(1)", L("fn(1)", fn=f)),
        reference="resil @breaker",
        quoted_baseline_ns=QUOTED_BARE_CALL_NS,
        contenders=[
            Contender("resil @breaker", L("fn(1)", fn=guarded["resil @breaker"]),
                      limit_ns=SYNC_LIMIT),
            Contender("resil b.call(f, 1)", L("b.call(fn, 1)", b=rb, fn=f), limit_ns=SYNC_LIMIT),
            Contender("resil with b:", L("with b:\n    fn(1)", b=rb, fn=f)),
            Contender("pybreaker @breaker", L("fn(1)", fn=guarded["pybreaker @breaker"]),
                      quoted_ns=(1000,)),
            Contender("pybreaker .call(f, 1)", L("b.call(fn, 1)", b=pb, fn=f), quoted_ns=(1000,)),
            Contender("circuitbreaker @circuit",
                      L("fn(1)", fn=guarded["circuitbreaker @circuit"]), quoted_ns=(430,)),
            Contender("purgatory @factory(name)",
                      L("fn(1)", fn=guarded["purgatory @factory(name)"])),
            Contender("purgatory with get_breaker()", L("with b:\n    fn(1)", b=pbrk, fn=f)),
        ],
    )


def async_call(loop: asyncio.AbstractEventLoop) -> Scenario:
    def L(body: str, **names: Any) -> h.RunFn:
        return h.async_loop(loop, body, **names)

    rb = resil_breaker()
    cb = circuitbreaker_breaker()
    pf = purgatory_async()
    pname = name("purgatory")
    pbrk = run_coro(loop, pf.get_breaker(pname))
    ab = aiobreaker_breaker()

    guarded = {
        "resil @breaker": rb(g),
        "circuitbreaker @circuit": cb(g),
        "purgatory @factory(name)": pf(pname)(g),
        "aiobreaker @breaker": ab(g),
    }

    async def check() -> None:
        for what, fn in guarded.items():
            expect(1, await fn(1), what)
        expect(1, await rb.call_async(g, 1), "resil call_async")
        expect(1, await ab.call_async(g, 1), "aiobreaker call_async")
        async with pbrk:
            expect(1, await g(1), "purgatory async with")

    run_coro(loop, check())

    return Scenario(
        title="2. Async guarded await — `await g(1)` through the breaker",
        note=("Baseline: `await g(1)` in a loop inside one coroutine, with "
              "`async def g(x): return x`. pybreaker's async support needs Tornado, "
              "so it is not in this table."),
        baseline=Contender("bare await g(1)", L("await fn(1)", fn=g)),
        reference="resil @breaker",
        quoted_baseline_ns=QUOTED_BARE_AWAIT_NS,
        contenders=[
            Contender("resil @breaker", L("await fn(1)", fn=guarded["resil @breaker"]),
                      limit_ns=ASYNC_LIMIT),
            Contender("resil b.call_async(g, 1)", L("await b.call_async(fn, 1)", b=rb, fn=g)),
            Contender("resil async with b:", L("async with b:\n    await fn(1)", b=rb, fn=g)),
            Contender("circuitbreaker @circuit",
                      L("await fn(1)", fn=guarded["circuitbreaker @circuit"]), quoted_ns=(550,)),
            Contender("purgatory @factory(name)",
                      L("await fn(1)", fn=guarded["purgatory @factory(name)"]),
                      quoted_ns=(370, 1200)),
            Contender("purgatory async with get_breaker()",
                      L("async with b:\n    await fn(1)", b=pbrk, fn=g), quoted_ns=(370, 1200)),
            Contender("aiobreaker @breaker", L("await fn(1)", fn=guarded["aiobreaker @breaker"]),
                      quoted_ns=(1150,)),
            Contender("aiobreaker .call_async(g, 1)",
                      L("await b.call_async(fn, 1)", b=ab, fn=g), quoted_ns=(1150,)),
        ],
    )


def _clear_traceback(exc: BaseException) -> Callable[[], None]:
    # purgatory raises the same OpenedState instance on every rejection, so
    # its __traceback__ chain (and the frames it holds) grows by one call's
    # worth per rejection; dropping it between loops (untimed) keeps memory
    # flat without changing what a call costs.
    def after() -> None:
        exc.__traceback__ = None

    return after


def sync_reject(scale: float | None) -> Scenario:
    L = h.sync_loop
    rb = resil_breaker()
    pb = pybreaker_breaker()
    cb = circuitbreaker_breaker()
    pf = purgatory_sync()
    pname = name("purgatory")

    guarded = {
        "resil @breaker": rb(f),
        "pybreaker @breaker": pb(f),
        "circuitbreaker @circuit": cb(f),
        "purgatory @factory(name)": pf(pname)(f),
    }
    trip(lambda: rb(boom)(1))
    trip(lambda: pb(boom)(1))
    trip(lambda: cb(boom)(1))
    trip(lambda: pf(pname)(boom)(1))
    expect(resil.State.OPEN, rb.state, "resil state")
    pbrk = pf.get_breaker(pname)
    p_open: Any = pbrk.context._state
    expect(True, isinstance(p_open, PurgatoryOpen), "purgatory state")

    errors: dict[str, type[BaseException]] = {
        "resil @breaker": resil.CircuitOpenError,
        "pybreaker @breaker": pybreaker.CircuitBreakerError,
        "circuitbreaker @circuit": circuitbreaker.CircuitBreakerError,
        "purgatory @factory(name)": PurgatoryOpen,
    }
    for what, fn in guarded.items():
        expect_raises(errors[what], lambda: fn(1), what)
    expect_raises(resil.CircuitOpenError, lambda: rb.call(f, 1), "resil .call")
    expect_raises(pybreaker.CircuitBreakerError, lambda: pb.call(f, 1), "pybreaker .call")

    def with_purgatory() -> None:
        with pbrk:
            f(1)

    expect_raises(PurgatoryOpen, with_purgatory, "purgatory with")

    rej = "try:\n    fn(1)\nexcept E:\n    pass"
    rej_call = "try:\n    b.call(fn, 1)\nexcept E:\n    pass"
    clear = _clear_traceback(p_open)
    return Scenario(
        title="3. Rejected call while OPEN, all in — sync",
        note=("Per call: `try: guarded(1) except <its error>: pass`. Baseline: the empty "
              "loop, so *overhead* is the whole try/call/raise/except. The first row is "
              "a plain Python function that raises, for scale."),
        baseline=Contender("empty loop", L("pass")),
        reference="resil @breaker",
        scale=scale,
        scale_source="table 1's, from the bare call",
        contenders=[
            Contender("(plain def that raises)", L(rej, fn=boom, E=RuntimeError)),
            Contender("resil @breaker",
                      L(rej, fn=guarded["resil @breaker"], E=resil.CircuitOpenError),
                      limit_ns=REJECT_LIMIT),
            Contender("resil b.call(f, 1)", L(rej_call, b=rb, fn=f, E=resil.CircuitOpenError),
                      limit_ns=REJECT_LIMIT),
            Contender("pybreaker @breaker",
                      L(rej, fn=guarded["pybreaker @breaker"], E=pybreaker.CircuitBreakerError),
                      quoted_ns=(2200,)),
            Contender("pybreaker .call(f, 1)",
                      L(rej_call, b=pb, fn=f, E=pybreaker.CircuitBreakerError), quoted_ns=(2200,)),
            Contender("circuitbreaker @circuit",
                      L(rej, fn=guarded["circuitbreaker @circuit"],
                        E=circuitbreaker.CircuitBreakerError), quoted_ns=(970,)),
            Contender("purgatory @factory(name)",
                      L(rej, fn=guarded["purgatory @factory(name)"], E=PurgatoryOpen),
                      after=clear),
            Contender("purgatory with get_breaker()",
                      L("try:\n    with b:\n        fn(1)\nexcept E:\n    pass",
                        b=pbrk, fn=f, E=PurgatoryOpen), after=clear),
        ],
    )


def async_reject(loop: asyncio.AbstractEventLoop) -> Scenario:
    def L(body: str, **names: Any) -> h.RunFn:
        return h.async_loop(loop, body, **names)

    rb = resil_breaker()
    cb = circuitbreaker_breaker()
    pf = purgatory_async()
    pname = name("purgatory")
    ab = aiobreaker_breaker()

    guarded = {
        "resil @breaker": rb(g),
        "circuitbreaker @circuit": cb(g),
        "purgatory @factory(name)": pf(pname)(g),
        "aiobreaker @breaker": ab(g),
    }
    errors: dict[str, type[BaseException]] = {
        "resil @breaker": resil.CircuitOpenError,
        "circuitbreaker @circuit": circuitbreaker.CircuitBreakerError,
        "purgatory @factory(name)": PurgatoryOpen,
        "aiobreaker @breaker": aiobreaker.CircuitBreakerError,
    }

    async def setup() -> Any:
        for fail in (rb(aboom), cb(aboom), pf(pname)(aboom), ab(aboom)):
            for _ in range(THRESHOLD):
                try:
                    await fail(1)
                except Exception:
                    pass
        for what, fn in guarded.items():
            try:
                await fn(1)
            except errors[what]:
                continue
            raise AssertionError(f"{what}: the breaker did not reject")
        try:
            await rb.call_async(g, 1)
            raise AssertionError("resil call_async: the breaker did not reject")
        except resil.CircuitOpenError:
            pass
        brk = await pf.get_breaker(pname)
        return brk.context._state

    p_open = run_coro(loop, setup())
    expect(resil.State.OPEN, rb.state, "resil state")
    expect(True, isinstance(p_open, PurgatoryOpen), "purgatory state")

    rej = "try:\n    await fn(1)\nexcept E:\n    pass"
    return Scenario(
        title="4. Rejected call while OPEN, all in — async",
        note=("Per call: `try: await guarded(1) except <its error>: pass` inside one "
              "coroutine. Baseline: the empty loop. The issue sets no target here."),
        baseline=Contender("empty loop", L("pass")),
        reference="resil @breaker",
        contenders=[
            Contender("(plain async def that raises)", L(rej, fn=aboom, E=RuntimeError)),
            Contender("resil @breaker",
                      L(rej, fn=guarded["resil @breaker"], E=resil.CircuitOpenError)),
            Contender("resil b.call_async(g, 1)",
                      L("try:\n    await b.call_async(fn, 1)\nexcept E:\n    pass",
                        b=rb, fn=g, E=resil.CircuitOpenError)),
            Contender("circuitbreaker @circuit",
                      L(rej, fn=guarded["circuitbreaker @circuit"],
                        E=circuitbreaker.CircuitBreakerError)),
            Contender("purgatory @factory(name)",
                      L(rej, fn=guarded["purgatory @factory(name)"], E=PurgatoryOpen),
                      after=_clear_traceback(p_open)),
            Contender("aiobreaker @breaker",
                      L(rej, fn=guarded["aiobreaker @breaker"],
                        E=aiobreaker.CircuitBreakerError)),
        ],
    )


# ---- main -------------------------------------------------------------------------

NOTES = """\
Notes:
- Every breaker: failure threshold 5, cooldown 60 s; for the rejection
  tables each was tripped by five failing calls (resil is in OPEN, not
  FORCED_OPEN, so each rejection computes `remaining`).
- *x resil* divides by `resil @breaker` of the same table, round by round.
- *target*: resil's targets and the peers' figures as quoted in the issue,
  which were measured where a bare call took 19 ns and a bare await 72 ns;
  "scaled" multiplies them by this run's baseline over those (table 3 uses
  table 1's factor). "met scaled only" means the target is met relative to
  this machine's speed but not in absolute nanoseconds.
- purgatory raises the same exception instance on every rejection, so that
  instance's traceback chain, with the frames it holds, grows with each
  rejected call; the benchmark drops it between loops (untimed).
- pybreaker's `call_async` needs Tornado; it is left out of the async tables."""




def main(argv: list[str] | None = None) -> int:
    def makers(loop: asyncio.AbstractEventLoop,
               results: list[h.ScenarioResult]) -> list[Callable[[], Scenario]]:
        return [sync_call, lambda: async_call(loop),
                lambda: sync_reject(results[0].scale), lambda: async_reject(loop)]

    # Transitions during set-up log a WARNING; keep them off the output.
    return h.scenario_main(argv, doc=__doc__, script=__file__,
                           title="Circuit breaker: resil vs peers", section=SECTION, notes=NOTES,
                           peers=PEERS, makers=makers, quiet=["resil.breaker"])


if __name__ == "__main__":
    sys.exit(main())
