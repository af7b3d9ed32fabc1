"""Deduplication: resil.Deduplicator (C) and @resil.idempotent."""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, TypeVar

from resil import _check
from resil._resil import Deduplicator

__all__ = ["Deduplicator", "idempotent"]

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


def idempotent(key: Callable[..., Hashable], ttl: float = 300.0) -> Callable[[F], F]:
    """Runs a coroutine function once per key: concurrent calls with the same
    ``key(*args, **kwargs)`` share one run and all await its result; a
    finished result is returned again for ``ttl`` seconds (default 300, on
    the event loop's clock); an exception is not cached, so the next call
    runs again. The shared run is shielded: cancelling one caller does not
    cancel it for the others.
    """
    if not callable(key):
        raise TypeError(f"key must be a callable returning a hashable key, not {type(key).__name__}")
    ttl = _check.seconds(ttl, "ttl")

    def decorate(fn: F) -> F:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"idempotent needs a coroutine function, not {fn!r}")
        results: dict[Hashable, tuple[float, Any]] = {}
        order: deque[tuple[float, Hashable]] = deque()  # results in finishing order
        running: dict[Hashable, asyncio.Task[Any]] = {}

        def purge(now: float) -> None:
            while order and now - order[0][0] >= ttl:
                finished_at, k = order.popleft()
                entry = results.get(k)
                if entry is not None and entry[0] == finished_at:
                    del results[k]

        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            k = key(*args, **kwargs)
            loop = asyncio.get_running_loop()
            purge(loop.time())
            cached = results.get(k)
            if cached is not None:
                return cached[1]
            task = running.get(k)
            if task is None:
                task = loop.create_task(fn(*args, **kwargs))
                running[k] = task

                def finished(t: asyncio.Task[Any], k: Hashable = k) -> None:
                    if running.get(k) is t:
                        del running[k]
                    if t.cancelled():
                        return
                    if t.exception() is None:  # also marks a failure as retrieved
                        now = loop.time()
                        results[k] = (now, t.result())
                        order.append((now, k))

                task.add_done_callback(finished)
            return await asyncio.shield(task)

        def cache_clear() -> None:
            """Forgets every cached result (running calls are kept)."""
            results.clear()
            order.clear()

        wrapper.cache_clear = cache_clear  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate
