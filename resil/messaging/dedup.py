"""Deduplication: resil.Deduplicator (C) and @resil.idempotent."""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

from resil import _check, _time
from resil._resil import Deduplicator, MonotonicClock

__all__ = ["Deduplicator", "idempotent"]

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


_MONOTONIC = MonotonicClock()
_MISSING: Any = object()
# Results are kept until their ttl ends, however many: the table grows with them.
_MAX_RESULTS = 1 << 30


def _clock_of(loop_type: type[asyncio.AbstractEventLoop]) -> Any:
    """The clock that times results made on loops of ``loop_type``: the C
    monotonic clock for asyncio's own time (time.monotonic), else the
    running loop's time()."""
    if loop_type.time is asyncio.BaseEventLoop.time:
        return _MONOTONIC
    return _time.LOOP_CLOCK


def idempotent(key: Callable[..., Hashable], ttl: float = 300.0) -> Callable[[F], F]:
    """Runs a coroutine function once per key: concurrent calls with the same
    ``key(*args, **kwargs)`` share one run and all await its result; a
    finished result is returned again for ``ttl`` seconds (default 300, on
    the event loop's clock); an exception is not cached, so the next call
    runs again. The shared run is shielded: cancelling one caller does not
    cancel it for the others. The results are kept in a C
    :class:`Deduplicator` (``wrapper.cache_clear()`` forgets them).
    """
    if not callable(key):
        raise TypeError(f"key must be a callable returning a hashable key, not {type(key).__name__}")
    ttl = _check.seconds(ttl, "ttl")
    Deduplicator(ttl=ttl)  # a ttl below 1 ns is refused now, naming ttl

    def decorate(fn: F) -> F:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"idempotent needs a coroutine function, not {fn!r}")
        # One table per clock (at most two: asyncio's own time, and loop.time()
        # of other loops); the loop type last seen and its table, for the fast path.
        tables: dict[Any, Deduplicator] = {}
        seen_type: Any = None
        results: Deduplicator | None = None
        running: dict[Hashable, asyncio.Task[Any]] = {}

        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            nonlocal seen_type, results
            k = key(*args, **kwargs)
            loop = asyncio.get_running_loop()
            if type(loop) is not seen_type or results is None:
                clock = _clock_of(type(loop))
                results = tables.get(clock)
                if results is None:
                    results = tables[clock] = Deduplicator(ttl=ttl, capacity=_MAX_RESULTS,
                                                           clock=clock)
                seen_type = type(loop)
            cached = results.get(k, _MISSING)
            if cached is not _MISSING:
                return cached
            task = running.get(k)
            if task is None:
                task = loop.create_task(fn(*args, **kwargs))
                running[k] = task

                def finished(t: asyncio.Task[Any], k: Hashable = k,
                             table: Deduplicator = results) -> None:
                    if running.get(k) is t:
                        del running[k]
                    if t.cancelled():
                        return
                    if t.exception() is None:  # also marks a failure as retrieved
                        table.put(k, t.result())

                task.add_done_callback(finished)
            return await asyncio.shield(task)

        def cache_clear() -> None:
            """Forgets every cached result (running calls are kept)."""
            for table in tables.values():
                table.clear()

        wrapper.cache_clear = cache_clear  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate
