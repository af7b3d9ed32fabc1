"""Waiting on the event loop for a time read from a clock.

Components that wait in asyncio take ``clock=``: any object with ``now()``
in seconds, by default the running loop's own time. The loop can only wait
in its own time, so each wait here lasts what the clock says is left and
then reads the clock again: the clock decides when a deadline has passed.
Under :func:`resil.run_virtual` with the same clock both agree and every
wait ends at its deadline.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from resil import _check


class LoopClock:
    """The running event loop's time as a clock. Outside a running loop it
    reads 0.0 (a breaker never lets time go backwards, so the loop's later,
    larger times move it forward)."""

    def now(self) -> float:
        try:
            return asyncio.get_running_loop().time()
        except RuntimeError:
            return 0.0


LOOP_CLOCK = LoopClock()


def clock_or_loop(clock: Any) -> Any:
    """``clock`` once checked (None or an object with ``now()`` in
    seconds; TypeError naming ``clock`` otherwise), or :data:`LOOP_CLOCK`
    for None."""
    return LOOP_CLOCK if _check.clock(clock) is None else clock


def unix_time(clock: Any) -> Callable[[], float]:
    """Unix time as ``clock`` tells it: ``time.time`` itself without a
    clock; with one, the Unix time now plus the seconds the clock moves from
    now on (a VirtualClock makes the time of records deterministic in
    tests). TypeError or ValueError naming ``clock`` for an object that is
    no clock."""
    if _check.clock(clock) is None:
        return time.time
    now = clock.now
    offset = time.time() - _check.number(now(), "clock.now()", what="number of seconds")

    def unix() -> float:
        return offset + float(now())

    return unix


class Timer:
    """Calls ``callback()`` on the running loop once ``clock.now() >= when``."""

    __slots__ = ("_loop", "_clock", "_when", "_callback", "_handle")

    def __init__(self, clock: Any, when: float, callback: Callable[[], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._clock = clock
        self._when = when
        self._callback = callback
        self._handle: asyncio.TimerHandle | None = self._loop.call_later(
            max(when - clock.now(), 0.0), self._fire)

    def _fire(self) -> None:
        left = self._when - self._clock.now()
        if left > 0:  # the loop's time ran ahead of the clock: wait what is left
            self._handle = self._loop.call_later(left, self._fire)
        else:
            self._handle = None
            self._callback()

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


async def sleep_until(clock: Any, when: float) -> None:
    """Returns once ``clock.now() >= when``."""
    while True:
        left = when - clock.now()
        if left <= 0:
            return
        await asyncio.sleep(left)


async def wait_until(futures: Iterable[asyncio.Future[Any]], clock: Any, when: float) -> bool:
    """Waits for every future until ``clock.now() >= when``; True when all
    are done. Like ``asyncio.wait`` it gives the loop at least one turn,
    also when the time is already up. The futures are not cancelled."""
    pending = set(futures)
    while pending:
        left = when - clock.now()
        _, pending = await asyncio.wait(pending, timeout=max(left, 0.0))
        if pending and left <= 0:
            return False
    return True


async def await_until(start: Callable[[], Awaitable[Any]], clock: Any, when: float) -> bool:
    """Awaits ``start()`` until ``clock.now() >= when``; True when it returned
    (it is cancelled otherwise)."""
    running = asyncio.ensure_future(start())
    try:
        return await wait_until({running}, clock, when)
    finally:
        running.cancel()
