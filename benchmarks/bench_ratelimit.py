"""resil.RateLimiter beside the Python rate limiters a user would pick, in one process, interleaved.

Peers (``pip install -e '.[bench]'``): limits (memory storage, fixed window
and moving window), pyrate-limiter (an in-memory bucket) and aiolimiter
(asyncio only). Each scenario is measured as overhead in ns per decision
over a bare baseline, by the harness in ``_harness.py`` (its docstring has
the method):

1. an admitted decision, sync: a limit so high that every call passes
   (10**9 per second; burst 10**9 for resil), one key;
2. a refused decision, sync: every limiter exhausted first (a limit of 1 per
   hour, already taken), so every call is refused;
3. an admitted decision awaited: ``await limiter.acquire_async()`` beside
   aiolimiter's ``await limiter.acquire()`` (and resil's ``try_acquire()``
   inside the same coroutine, for scale).

Before timing, each contender's statement is checked to admit (scenarios 1
and 3) or refuse (scenario 2). The target (resil at least 10 times faster
than the fastest peer in each scenario) is the issue's; the table's ratio
column is each contender's overhead over resil's.

Usage: ``python benchmarks/bench_ratelimit.py [--quick] [--write-results]``.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h  # noqa: E402
from _harness import Contender, Scenario, expect  # noqa: E402

import resil  # noqa: E402

try:
    import aiolimiter
    import limits
    import pyrate_limiter
    from limits import storage, strategies
except ImportError as exc:  # pragma: no cover - depends on the environment
    h.missing_peers(__file__, exc)

PEERS = ("limits", "pyrate-limiter", "aiolimiter")
SECTION = "## Rate limiter (bench_ratelimit.py)"
HIGH = 10**9

NOTES = ("resil's decision is one C call: the clock read and a few integer operations "
         "on one theoretical arrival time. An admitted `acquire_async()` returns an "
         "awaitable that is already done, so the await makes no coroutine and never "
         "suspends. limits and pyrate-limiter keep their state in "
         "Python objects (pyrate-limiter a list of timestamps per bucket, limits' moving "
         "window one per hit); aiolimiter is asyncio only.")


def limits_pair(amount: int, per_hour: bool):
    item = (limits.RateLimitItemPerHour(amount) if per_hour
            else limits.RateLimitItemPerSecond(amount))
    fixed = strategies.FixedWindowRateLimiter(storage.MemoryStorage())
    moving = strategies.MovingWindowRateLimiter(storage.MemoryStorage())
    return item, fixed, moving


def pyrate(amount: int, per_hour: bool) -> pyrate_limiter.Limiter:
    d = pyrate_limiter.Duration.HOUR if per_hour else pyrate_limiter.Duration.SECOND
    return pyrate_limiter.Limiter(pyrate_limiter.InMemoryBucket([pyrate_limiter.Rate(amount, d)]))


def sync_contenders(rl: resil.RateLimiter, item: object, fixed: object, moving: object,
                    pl: pyrate_limiter.Limiter) -> list[Contender]:
    L = h.sync_loop
    return [
        Contender("resil try_acquire()", L("t()", t=rl.try_acquire)),
        Contender("resil try_acquire(key='k')", L("t(key='k')", t=rl.try_acquire)),
        Contender("limits fixed window hit", L("t(i, 'k')", t=fixed.hit, i=item)),  # type: ignore[attr-defined]
        Contender("limits moving window hit", L("t(i, 'k')", t=moving.hit, i=item)),  # type: ignore[attr-defined]
        Contender("pyrate-limiter try_acquire", L("t('k', blocking=False)", t=pl.try_acquire)),
    ]


def check_all(want: bool, rl: resil.RateLimiter, item: object, fixed: object, moving: object,
              pl: pyrate_limiter.Limiter) -> None:
    expect(want, rl.try_acquire(), "resil")
    expect(want, rl.try_acquire(key="k"), "resil key")
    expect(want, fixed.hit(item, "k"), "limits fixed")  # type: ignore[attr-defined]
    expect(want, moving.hit(item, "k"), "limits moving")  # type: ignore[attr-defined]
    expect(want, pl.try_acquire("k", blocking=False), "pyrate-limiter")


def sync_admitted() -> Scenario:
    L = h.sync_loop
    rl = resil.RateLimiter(HIGH, burst=HIGH)
    item, fixed, moving = limits_pair(HIGH, False)
    pl = pyrate(HIGH, False)
    check_all(True, rl, item, fixed, moving, pl)
    return Scenario(
        title="1. Admitted decision — sync",
        note="Baseline: the empty loop. Every call is admitted (10**9 per second).",
        baseline=Contender("empty loop", L("pass")),
        reference="resil try_acquire()",
        contenders=sync_contenders(rl, item, fixed, moving, pl),
    )


def sync_refused() -> Scenario:
    L = h.sync_loop
    rl = resil.RateLimiter(1, per=3600.0)
    item, fixed, moving = limits_pair(1, True)
    pl = pyrate(1, True)
    rl.try_acquire()
    rl.try_acquire(key="k")
    fixed.hit(item, "k")
    moving.hit(item, "k")
    pl.try_acquire("k", blocking=False)
    check_all(False, rl, item, fixed, moving, pl)
    return Scenario(
        title="2. Refused decision — sync",
        note="Baseline: the empty loop. Every limiter is exhausted: every call is refused.",
        baseline=Contender("empty loop", L("pass")),
        reference="resil try_acquire()",
        contenders=sync_contenders(rl, item, fixed, moving, pl),
    )


def async_admitted(loop: asyncio.AbstractEventLoop) -> Scenario:
    def L(body: str, **names: object) -> h.RunFn:
        return h.async_loop(loop, body, **names)
    rl = resil.RateLimiter(HIGH, burst=HIGH)
    al = aiolimiter.AsyncLimiter(HIGH, 1)

    async def check() -> None:
        await rl.acquire_async()
        await al.acquire()
    loop.run_until_complete(check())
    return Scenario(
        title="3. Admitted decision — awaited",
        note="Baseline: the empty loop inside one coroutine. Every call is admitted.",
        baseline=Contender("empty loop", L("pass")),
        reference="resil await acquire_async()",
        contenders=[
            Contender("resil await acquire_async()", L("await a()", a=rl.acquire_async)),
            Contender("resil try_acquire() in a coroutine", L("t()", t=rl.try_acquire)),
            Contender("aiolimiter await acquire()", L("await a()", a=al.acquire)),
        ],
    )


def main(argv: list[str] | None = None) -> int:
    def makers(loop: asyncio.AbstractEventLoop,
               results: list[h.ScenarioResult]) -> list[Callable[[], Scenario]]:
        return [sync_admitted, sync_refused, lambda: async_admitted(loop)]

    return h.scenario_main(argv, doc=__doc__, script=__file__,
                           title="Rate limiter: resil vs peers", section=SECTION, notes=NOTES,
                           peers=PEERS, makers=makers, repeats=15, loop_ms=20.0)


if __name__ == "__main__":
    sys.exit(main())
