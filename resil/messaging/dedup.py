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


def _cluster_module(cluster: Any) -> Any:
    """resil.redis.dedup, imported (with redis-py) only once a RedisBackend
    exists: before that, ``cluster`` cannot be one."""
    _check.cluster(cluster)
    from resil.redis import dedup
    return dedup


def _cluster_set(backend: Any, ttl: float, capacity: int, clock: Any, shared: Any,
                 name: str) -> Any:
    """Makes the operations of ``Deduplicator(cluster=backend)`` (handed to
    the C type below)."""
    return _cluster_module(backend).cluster_deduplicator(backend, ttl, capacity, clock, shared,
                                                         name)


Deduplicator._set_cluster(_cluster_set)


def idempotent(key: Callable[..., Hashable], ttl: float = 300.0, *, cluster: Any = None,
               name: str | None = None, lease: float | None = None,
               encode: Callable[[Any], Any] | None = None,
               decode: Callable[[bytes], Any] | None = None) -> Callable[[F], F]:
    """Runs a coroutine function once per key: concurrent calls with the same
    ``key(*args, **kwargs)`` share one run and all await its result; a
    finished result is returned again for ``ttl`` seconds (default 300, on
    the event loop's clock); an exception is not cached, so the next call
    runs again. The shared run is shielded: cancelling one caller does not
    cancel it for the others. The results are kept in a C
    :class:`Deduplicator` (``wrapper.cache_clear()`` forgets them).

    ``cluster``: None (the default: one process) or a
    :class:`resil.redis.RedisBackend`: a key's call then runs once across
    every process on every host. The key must be a str, bytes or int (not
    bool; ``TypeError`` otherwise). The first caller takes the key's lease
    in Redis and runs the call; callers on other hosts poll Redis (after
    10 ms, doubling up to 100 ms) until its result is stored, and the
    callers of one process share one poll. The result is kept in Redis for
    ``ttl`` seconds (at least 0.001), encoded by ``encode`` (default: JSON,
    so tuples come back as lists and dict keys as str; never pickle) and
    read back by ``decode`` (``bytes -> value``); a result ``encode``
    cannot encode raises ``TypeError`` for the callers of that run and is
    not cached. An exception is not cached: it reaches the callers of that
    run, and the next poll of one waiting process runs the call again.
    ``name``: the function's name in Redis (default
    ``module.qualname``: the same code on every host agrees). ``lease``
    (seconds, None for the default 10, at least 4 times the backend's timeout): the
    runner's process renews the lease every ``lease / 3`` seconds while the
    call runs; a runner that dies stops renewing, and another host runs the
    key at most ``lease`` seconds (plus one poll) after its last renewal.
    While Redis is away (or a lease could not be renewed) a key may run
    more than once. The backend's ``on_unavailable`` says what a call does
    when Redis does not answer: ``"local"`` runs it once per key in this
    process and keeps the result here for ``ttl``, for this process's calls
    while Redis stays away; once Redis answers again it decides, and the
    results run here are stored in it (the rest of their ``ttl``, from the
    backend's thread) unless a result is there already. ``"open"`` runs
    every caller's call, ``"closed"`` raises
    :exc:`resil.RedisUnavailable`. No Redis operation waits longer
    than the backend's ``timeout``.

    ``wrapper.stats()`` gives this process's counts, JSON-serialisable:
    ``runs`` (calls of the function begun), ``hits`` (calls answered by a
    stored result), ``waits`` (calls that waited for a run they did not
    begin: one under way in this process or, with ``cluster=``, on another
    host), ``failures`` (runs that raised, cancellations aside),
    ``running`` (runs under way) and ``ttl``; with ``cluster=`` also
    ``name``, ``lease``, ``unavailable`` (operations Redis did not answer),
    ``resynced`` (results stored after an outage) and ``backend`` (the
    backend's mode).
    """
    if not callable(key):
        raise TypeError(f"key must be a callable returning a hashable key, not {type(key).__name__}")
    ttl = _check.seconds(ttl, "ttl")
    Deduplicator(ttl=ttl)  # a ttl below 1 ns is refused now, naming ttl
    if cluster is not None:
        return _cluster_idempotent(key, ttl, cluster, name, lease, encode, decode)
    for what, given in (("name", name), ("lease", lease), ("encode", encode),
                        ("decode", decode)):
        if given is not None:
            raise TypeError(f"{what}= needs cluster=: a local idempotent keeps its results "
                            "in this process")

    def decorate(fn: F) -> F:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"idempotent needs a coroutine function, not {fn!r}")
        # One table per clock (at most two: asyncio's own time, and loop.time()
        # of other loops); the loop type last seen and its table, for the fast path.
        tables: dict[Any, Deduplicator] = {}
        seen_type: Any = None
        results: Deduplicator | None = None
        # A run belongs to its event loop: callers on another loop (another
        # thread's) start their own rather than await a task they cannot.
        running: dict[tuple[asyncio.AbstractEventLoop, Hashable], asyncio.Task[Any]] = {}
        runs = waits = failures = 0  # hits: the tables count their get() hits

        def begin(loop: asyncio.AbstractEventLoop, k: Hashable, table: Deduplicator,
                  args: Any, kwargs: Any) -> asyncio.Task[Any]:
            """The run of key k on this loop: the one under way, or a new one
            whose result goes into table. Off the cached path, so that path's
            frame carries none of this."""
            nonlocal runs, waits
            task = running.get((loop, k))
            if task is not None:
                waits += 1
                return task
            task = loop.create_task(fn(*args, **kwargs))
            runs += 1
            running[loop, k] = task

            def finished(t: asyncio.Task[Any]) -> None:
                nonlocal failures
                if running.get((loop, k)) is t:
                    del running[loop, k]
                if t.cancelled():
                    return
                if t.exception() is None:  # also marks a failure as retrieved
                    table.put(k, t.result())
                else:
                    failures += 1

            task.add_done_callback(finished)
            return task

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
            return await asyncio.shield(begin(loop, k, results, args, kwargs))

        def cache_clear() -> None:
            """Forgets every cached result (running calls are kept)."""
            for table in tables.values():
                table.clear()

        def stats() -> dict[str, Any]:
            """This wrapper's counts (see :func:`idempotent`)."""
            hits = sum(table.stats()["hits"] for table in list(tables.values()))
            return {"ttl": ttl, "running": len(running), "runs": runs, "hits": hits,
                    "waits": waits, "failures": failures}

        wrapper.cache_clear = cache_clear  # type: ignore[attr-defined]
        wrapper.stats = stats  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return decorate


def _cluster_idempotent(key: Callable[..., Hashable], ttl: float, cluster: Any, name: str | None,
                        lease: float | None, encode: Callable[[Any], Any] | None,
                        decode: Callable[[bytes], Any] | None) -> Callable[[F], F]:
    part = _cluster_module(cluster)
    lease = part.check_options(cluster, name, 10.0 if lease is None else lease, encode,
                               decode)[1]

    def decorate(fn: F) -> F:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"idempotent needs a coroutine function, not {fn!r}")
        wrapper: F = part.cluster_idempotent(fn, key, ttl, cluster, name, lease, encode, decode)
        return wrapper

    return decorate
