"""Rate limiting: :class:`RateLimiter`, a GCRA token bucket in C, per key."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import math
import time
from collections.abc import Callable, Iterator
from typing import Any, Hashable, TypeVar, cast

from resil import _check
from resil._hooks import Listeners
from resil._resil import Gcra
from resil.errors import RateLimited

__all__ = ["RateLimited", "RateLimiter"]

F = TypeVar("F", bound=Callable[..., Any])

_log = logging.getLogger("resil.ratelimit")


def _sleep(seconds: float) -> None:
    # Looks time.sleep up at each call, so a test that replaces it is seen.
    time.sleep(seconds)


class RateLimiter(Gcra):
    """A rate limiter by the generic cell rate algorithm (GCRA): a token bucket
    of capacity ``burst`` refilled at ``rate / per`` tokens a second, kept
    as one theoretical arrival time per bucket, decided in C in O(1) with
    exact integer arithmetic and no timer.

    Exact: for every key and every interval of length T, the cost admitted
    is at most ``burst + rate * T / per``, and a caller at or below the
    rate (its calls at least ``cost * per / rate`` seconds apart) is never
    refused. ``rate`` is taken as the nearest fraction with a denominator
    of at most 1,000,000 (0.1 is exactly one tenth).

    ``key=`` gives each key (user, tenant, ...) its own bucket, compared as
    a dict key. At most ``max_keys`` keys are tracked, in the order they
    were last admitted: a key idle for ``burst * per / rate`` seconds has a
    full bucket again and drops out at no cost, the first to go; when
    ``max_keys`` keys are still refilling, a new key makes the one admitted
    least recently be forgotten (its next call finds a full bucket).

    ``rate``: tokens added per ``per`` seconds, a number in [1e-6, 1e12].
    ``per``: the period of ``rate`` in seconds, in [1e-9, 9.2e9]; default
    1.0. ``burst``: the bucket's capacity, an int >= 1 (default: ``rate``
    rounded up), with ``burst * per / rate`` at most 9.2e9 s; a ``cost``
    above it raises ValueError, since it could never be admitted.
    ``name``: the name in ``stats()`` and in a watching monitor's events.
    ``max_keys``: the most keys tracked at once, an int in [1, 2**30];
    default 100,000. ``clock``: a MonotonicClock (None: the default), a
    VirtualClock, or any object with ``now()`` in seconds.

    ``cluster``: None, or a :class:`resil.redis.RedisBackend`: the limit is
    then one for every process on every host using the same backend prefix
    and ``name`` (which must then be given), decided in Redis by one script per call on Redis's clock,
    with the same exactness (a key already refused is refused again in the
    process, without asking Redis, until its ``retry_after``); while Redis
    is away, the backend's ``on_unavailable`` decides: ``"local"`` applies
    the limit to this process alone (per host with ``shared=``),
    ``"open"`` admits, ``"closed"`` refuses. Keys must then be str, bytes
    or int.

    ``shared``: None, or a :class:`resil.SharedRegion`: the limiter's state
    then lives in that region, and every limiter of the same ``name`` in it,
    in any process of the host, is one limit (admitted and rejected counted
    for all of them). The first to be made sets rate, per, burst and
    max_keys; a later one passing other values raises ValueError naming the
    first that differs. Keys must then be str or bytes (a str and the bytes
    of its UTF-8 are different keys, a str with a lone surrogate a
    ValueError), kept as 128-bit digests; max_keys defaults to 1,024 and
    is rounded up to a multiple of 8. The table is reserved in the region
    at once with room for twice max_keys (64 bytes a key of max_keys), in
    sets of 8 where each key may take one of two: a new key evicts the
    least recently admitted key of its two sets only when both are full of
    keys still refilling. With max_keys keys refilling that did not happen
    in measurements (20 trials each at 1,024 and 8,192 keys, and at 1.5
    times max_keys); at twice max_keys about 15% of keys are forgotten.
    ``stats()["keys"]`` counts the keys refilling: it may exceed max_keys,
    up to twice it. The default clock
    is the host's monotonic clock, the same in every process; a
    VirtualClock is only meaningful within one process.

    Use ``try_acquire()`` to take tokens or be told no, ``acquire()`` or
    ``await acquire_async()`` to wait for them, or ``@limiter`` on a
    function or coroutine function, which raises :class:`RateLimited` when
    no token is there. ``acquire_async()`` decides when called: tokens
    there are taken at once and what it returns is already done (an
    awaitable, not a coroutine object, that does not suspend); otherwise
    it returns the coroutine that waits.
    """

    # Made by the first Monitor.watch; told of each RateLimited raised.
    _listeners: Listeners | None = None

    #: The RedisBackend the limit is kept in, or None (this process or host).
    cluster: Any = None

    def __new__(cls, *args: Any, cluster: Any = None, **kwargs: Any) -> RateLimiter:
        make = cast(Any, Gcra).__new__
        if cluster is None:
            return cast(RateLimiter, make(cls, *args, **kwargs))
        _check.cluster(cluster)
        if "name" not in kwargs:
            raise TypeError("RateLimiter() with cluster= needs name=: the name every host "
                            "sharing the limit uses in Redis (two unnamed ones would otherwise "
                            "be one)")
        from resil.redis.ratelimit import ClusterRateLimiter
        if cls is RateLimiter:
            cls = ClusterRateLimiter
        elif not issubclass(cls, ClusterRateLimiter):
            raise TypeError(f"cluster= is taken by RateLimiter itself, not by its subclass "
                            f"{cls.__name__}")
        limiter = cast(ClusterRateLimiter, make(cls, *args, **kwargs))
        limiter._attach(cluster)
        return limiter

    def _event_listeners(self) -> Listeners:
        if self._listeners is None:
            self._listeners = Listeners(_log)
        return self._listeners

    def _limited(self, cost: int, key: Any, wait: float) -> RateLimited:
        """The RateLimited to raise, told to the listeners first."""
        listeners = self._listeners
        if listeners:
            listeners.notify("rate_limited", self.name)
        whose = "" if key is None else f" for key {_check.show(key)}"
        return RateLimited(f"rate limiter {self.name!r}: {cost} token(s){whose} not available "
                           f"for {wait:.6g} s", retry_after=wait)

    def _waits(self, cost: int, key: Any, limit: float, wait: float) -> Iterator[float]:
        """After a first refusal that asked for ``wait`` seconds: each wait to
        sleep before trying again, until the tokens are taken; RateLimited
        when a wait would end more than ``limit`` seconds after the first."""
        deadline = self.clock.now() + limit if limit != math.inf else math.inf
        while wait:
            if deadline != math.inf and wait > deadline - self.clock.now():
                raise self._limited(cost, key, wait)
            yield wait
            wait = self._take_or_wait(cost, key)

    def __call__(self, fn: F) -> F:
        """Decorates a function or coroutine function: each call takes one
        token first, or raises :class:`RateLimited` (with ``.retry_after``)
        without calling it."""
        if not callable(fn):
            raise TypeError(f"RateLimiter decorates a callable, not {type(fn).__name__}")
        take = self._take_or_wait
        limited = self._limited

        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def awrapper(*args: Any, **kwargs: Any) -> Any:
                wait = take()
                if wait:
                    raise limited(1, None, wait)
                return await fn(*args, **kwargs)

            return cast(F, awrapper)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            wait = take()
            if wait:
                raise limited(1, None, wait)
            return fn(*args, **kwargs)

        return cast(F, wrapper)


def _wait_blocking(limiter: RateLimiter, cost: int, key: Any, limit: float, wait: float) -> None:
    """What ``acquire`` calls after a refusal that asked for ``wait``
    seconds: sleeps and retries until the tokens are taken."""
    for wait in limiter._waits(cost, key, limit, wait):
        _sleep(wait)


async def _wait_async(limiter: RateLimiter, cost: int, key: Any, limit: float,
                      wait: float) -> None:
    """The coroutine ``acquire_async`` returns after a refusal: sleeps on
    the event loop and retries until the tokens are taken."""
    for wait in limiter._waits(cost, key, limit, wait):
        await asyncio.sleep(wait)


Gcra._set_waiters(_wait_blocking, _wait_async)


class _ClassSignature:
    """The constructor's signature for ``inspect.signature(RateLimiter)``
    (the one the C engine parses), not seen on instances, whose own
    signature is the decorator's."""

    def __init__(self, sig: inspect.Signature) -> None:
        self.sig = sig

    def __get__(self, obj: object, owner: type) -> inspect.Signature:
        if obj is not None:
            raise AttributeError("__signature__")
        return self.sig


RateLimiter.__signature__ = _ClassSignature(inspect.signature(Gcra))  # type: ignore[attr-defined]
