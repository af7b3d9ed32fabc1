"""The cluster-wide rate limiter: ``resil.RateLimiter(..., cluster=backend)``.

Each decision is one Lua script on Redis (:data:`GCRA_LUA`), timed by
Redis's ``TIME``, so hosts whose clocks disagree still share one exact
limit. A key Redis refused is refused again in the process, without a
round trip, until its ``retry_after``.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import math
import threading
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from resil import _check
from resil._resil import Gcra
from resil.errors import RedisUnavailable
from resil.policies.ratelimit import RateLimiter, _wait_blocking
from resil.redis._backend import RedisBackend, Script, key_bytes

__all__ = ["GCRA_LUA", "ClusterRateLimiter"]

F = TypeVar("F", bound=Callable[..., Any])

#: One GCRA decision on the bucket KEYS[1]. ARGV: a, b (one token is a / b
#: microseconds), tau (burst * a: the most debt a bucket may hold), cost,
#: and "1" to take the tokens when they are there ("0": only look). The
#: bucket is the string "t debt": the microsecond it last admitted at and
#: its debt then, in ticks of 1 / b microseconds; every microsecond since
#: pays b ticks of it. Admitted when debt + cost * a <= tau. Every number
#: stays below 2**53, so Lua's doubles hold it exactly. Returns {admitted
#: (1 or 0), the Redis time of the decision in microseconds, the debt
#: after it}. An admission stores the bucket with a PX expiry 1 to 2 ms
#: past the time its debt is paid, so an idle key vanishes with a full
#: bucket. ``--NOW--`` and ``--SLACK--`` are filled in before it is run:
#: Redis's TIME in microseconds, and 2 (ms).
GCRA_LUA = """
local a = tonumber(ARGV[1])
local b = tonumber(ARGV[2])
local tau = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local now = --NOW--
local t, debt = now, 0
local state = redis.call('GET', KEYS[1])
if state then
  local sp = string.find(state, ' ', 1, true)
  if not sp then
    return redis.error_reply('resil: not a rate limiter bucket: ' .. KEYS[1])
  end
  t = tonumber(string.sub(state, 1, sp - 1))
  debt = tonumber(string.sub(state, sp + 1))
  if now > t then
    local paid = (now - t) * b
    if paid >= debt then debt = 0 else debt = debt - paid end
    t = now
  end
end
local need = debt + cost * a
if need > tau then
  return {0, now, debt}
end
if ARGV[5] ~= '1' then
  return {1, now, debt}
end
redis.call('SET', KEYS[1], string.format('%.0f %.0f', t, need),
           'PX', string.format('%.0f', math.floor(need / b / 1000) + --SLACK--))
return {1, now, need}
"""

_TIME = "(function() local c = redis.call('TIME') return tonumber(c[1]) * 1000000 + tonumber(c[2]) end)()"
_GCRA = Script(GCRA_LUA.replace("--NOW--", _TIME).replace("--SLACK--", "2"))
# The same script deciding at the microsecond ARGV[6] instead of Redis's
# TIME: for tests that compare it, decision for decision, with a model.
# Its buckets outlive the times given by a minute of Redis's own clock.
_GCRA_AT = Script(GCRA_LUA.replace("--NOW--", "tonumber(ARGV[6])").replace("--SLACK--", "60000"))

#: Numbers in the script stay below this (a double is exact up to 2**53; a
#: refused call's debt may reach twice tau).
_EXACT = 1 << 52


def interval_us(a_ns: int, b_ns: int, burst: int) -> tuple[int, int, int, bool]:
    """One token's interval a_ns / b_ns ns as (A, B, tau, exact): A / B
    microseconds, tau = burst * A, with tau and B at most 2**52; ``exact``
    False when that took rounding the interval up (never down: a longer
    interval admits less). ValueError when burst tokens take longer than
    2**52 microseconds (about 142 years)."""
    a, b = a_ns, b_ns * 1000
    g = math.gcd(a, b)
    a, b = a // g, b // g
    most = _EXACT // burst
    if a <= most and b <= _EXACT:
        return a, b, burst * a, True
    b2 = min(_EXACT, most * b // a)
    if b2 < 1:
        raise ValueError("burst * per / rate must be at most 2**52 microseconds (about 142 "
                         "years) for a limiter with cluster=")
    a2 = -(-a * b2 // b)
    g = math.gcd(a2, b2)
    return a2 // g, b2 // g, burst * (a2 // g), False


def key_tail(key: Any) -> bytes:
    """What follows the limiter's own part of a bucket's Redis key: ``n``
    for no key, else the key's type and bytes as every cluster component
    stores a key (``key_bytes`` of the backend module; a str's lone
    surrogates kept). Distinct keys give distinct tails (but for SHA-256
    collisions), and whatever a key holds stays inside the limiter's part
    of the key space."""
    if key is None:
        return b"n"
    return key_bytes(key, what="a limiter with cluster=, or None", surrogates=True)


def _local(tail: bytes) -> bytes | None:
    """The key of a bucket in the process's own state (for the fallback and
    the refusals kept): the tail, or None for calls without a key."""
    return None if tail == b"n" else tail


class ClusterRateLimiter(RateLimiter):
    """What ``resil.RateLimiter(..., cluster=backend)`` makes: a
    :class:`resil.RateLimiter` whose buckets live in Redis, one limit for
    every process on every host whose backend has the same ``prefix`` and
    whose limiter has the same ``name``.

    Each decision is one Lua script (one round trip, atomic) timed by
    Redis's ``TIME``: the hosts' own clocks play no part, and the bound
    holds cluster-wide: for every key and every interval of length T of
    Redis's clock, the cost admitted by Redis is at most
    ``burst + rate * T / per``, and a caller at or below the rate on that
    clock is never refused. Redis counts whole microseconds; one token's
    interval, ``per / rate`` seconds, is kept as an exact fraction of a
    microsecond when burst times its numerator and its denominator stay
    below 2**52 (every usual rate), else it is rounded up by less than one
    part in 2**52 / burst (stricter, never looser). Every limiter sharing
    a name must be made with the same rate, per and burst.

    Keys: None, str, bytes or int (not bool); another type raises
    TypeError. A key is encoded with its type (``"1"``, ``b"1"`` and ``1``
    are three keys), so no key can reach another limiter's or another
    component's Redis keys; one longer than 256 bytes is kept under its
    SHA-256. Each key's bucket is its own Redis key with a PX expiry, so
    the bucket of an idle key vanishes when it is full again.

    A refusal from Redis is remembered with the bucket's debt: until that
    debt, paid off at the rate from the moment the reply came, leaves room
    for a call's cost (its ``retry_after``), a call on the same key is
    refused in the process, without a round trip; other hosts only add
    debt, so Redis would refuse it too. At most ``max_keys`` keys are
    remembered, the oldest forgotten first.

    While Redis is away (the backend's ``on_unavailable``): ``"local"``
    decides on this process's own buckets with the same rate, per and
    burst, so the limit is then per process (per host with ``shared=``, where
    the buckets live in the region); the next call after the backend's
    cooldown asks Redis again, and once it answers, Redis decides again
    (what was admitted locally is not added to it). ``"open"`` admits every
    call; ``"closed"`` refuses every call with a ``retry_after`` of the
    backend's cooldown (``acquire`` keeps waiting, within its timeout, for
    Redis to return). No call waits longer than the backend's ``timeout``
    for Redis.

    ``acquire_async`` and the decorator on a coroutine function await the
    backend's asyncio client when it has one; with a blocking client they
    call it in place (at most ``timeout`` each). ``acquire_async`` returns a
    coroutine that decides when awaited; cancelled while Redis decides, the
    tokens may have been taken (erring toward admitting less). Local
    waits, the refusals remembered and the fallback follow the limiter's
    ``clock``.

    ``stats()`` adds to the limiter's: ``backend`` (the backend's mode:
    ``"redis"`` or its fallback), ``redis_decisions`` (calls Redis decided),
    ``cached_refusals`` (calls refused from a remembered refusal),
    ``fallback_decisions`` (calls decided while Redis was away), and counts
    ``admitted`` and ``rejected`` over all three; ``keys`` is the number of
    refusals remembered.
    """

    _backend: RedisBackend
    _args: tuple[int, int, int]
    _base: bytes
    _refused: OrderedDict[bytes | None, tuple[float, int]]

    def _attach(self, backend: RedisBackend) -> None:
        a_ns, b_ns = self._interval
        self._args = interval_us(a_ns, b_ns, self.burst)[:3]
        self._backend = backend
        # Any name: escaped so that no '}' ends the keys' hash tag early
        name = self.name.replace("%", "%25").replace("}", "%7D")
        self._base = backend.key("ratelimit", name).encode("utf-8", "surrogatepass") + b":"
        self._refused = OrderedDict()
        self._lock = threading.Lock()
        self._counts = {"redis_decisions": 0, "cached_refusals": 0, "fallback_decisions": 0,
                        "admitted": 0, "rejected": 0}

    @property
    def cluster(self) -> RedisBackend:
        """The RedisBackend the limit is kept in."""
        return self._backend

    def __repr__(self) -> str:
        return (f"<RateLimiter name={self.name!r} rate={self.rate!r} per={self.per!r} "
                f"burst={self.burst} cluster={self._backend!r}>")

    # ------------------------------------------------------------ arguments
    def _cost(self, cost: Any) -> int:
        return _check.integer(cost, "cost", 1, self.burst)

    # ------------------------------------------------------------ decisions
    def _wait_us(self, debt: int, cost: int) -> int:
        """Microseconds until a bucket holding ``debt`` admits ``cost``."""
        a, b, tau = self._args
        over = debt + cost * a - tau
        return 0 if over <= 0 else -(-over // b)

    def _known_wait(self, local: bytes | None, cost: int) -> float:
        """Seconds a remembered refusal still refuses ``cost`` of the key
        for (0.0: none; then the key goes to Redis)."""
        entry = self._refused.get(local)
        if entry is None:
            return 0.0
        at, debt = entry
        now: float = self.clock.now()
        left = at + self._wait_us(debt, cost) / 1e6 - now
        if left > 0:
            return left
        if at + self._wait_us(debt, 1) / 1e6 <= now:
            with self._lock:
                if self._refused.get(local) is entry:
                    del self._refused[local]
        return 0.0

    def _decided(self, reply: Any, cost: int, local: bytes | None) -> tuple[bool, float, int]:
        admitted, at_us, debt = (int(x) for x in reply)
        self._tally("redis_decisions", bool(admitted))
        if admitted:
            if local in self._refused:
                self._remember(local, debt, refresh_only=True)
            return True, 0.0, at_us
        self._remember(local, debt)
        return False, max(self._wait_us(debt, cost), 1) / 1e6, at_us

    def _remember(self, local: bytes | None, debt: int, refresh_only: bool = False) -> None:
        # Timed when the reply is in: after Redis decided, so the remembered
        # refusal ends no earlier than Redis's own would.
        entry = (self.clock.now(), debt)
        with self._lock:
            if refresh_only and local not in self._refused:
                return
            self._refused[local] = entry
            self._refused.move_to_end(local)
            while len(self._refused) > self.max_keys:
                self._refused.popitem(last=False)

    def _tally(self, source: str, admitted: bool) -> None:
        # Under the lock: threads count every decision (no lost increment).
        with self._lock:
            self._counts[source] += 1
            self._counts["admitted" if admitted else "rejected"] += 1

    def _fallback(self, cost: int, local: bytes | None) -> tuple[bool, float, None]:
        mode = self._backend.on_unavailable
        if mode == "open":
            wait = 0.0
        elif mode == "closed":
            wait = self._backend.cooldown
        else:
            wait = Gcra._take_or_wait(self, cost, local)
        self._tally("fallback_decisions", not wait)
        return not wait, wait, None

    def _refused_here(self, local: bytes | None, cost: int) -> float:
        wait = self._known_wait(local, cost)
        if wait:
            self._tally("cached_refusals", False)
        return wait

    def _take(self, cost: int, tail: bytes) -> tuple[bool, float, int | None]:
        """One decision: (admitted, seconds to wait when refused, the Redis
        time of the decision in microseconds or None when Redis did not
        decide)."""
        local = _local(tail)
        wait = self._refused_here(local, cost)
        if wait:
            return False, wait, None
        try:
            reply = self._backend.run(_GCRA, (self._base + tail,), (*self._args, cost, 1))
        except RedisUnavailable:
            return self._fallback(cost, local)
        return self._decided(reply, cost, local)

    async def _take_async(self, cost: int, tail: bytes) -> tuple[bool, float, int | None]:
        """:meth:`_take`, awaiting the backend's asyncio client if it has one."""
        local = _local(tail)
        wait = self._refused_here(local, cost)
        if wait:
            return False, wait, None
        try:
            reply = await self._backend.run_async(_GCRA, (self._base + tail,),
                                                  (*self._args, cost, 1))
        except RedisUnavailable:
            return self._fallback(cost, local)
        return self._decided(reply, cost, local)

    # ---------------------------------------------------------- public API
    def try_acquire(self, cost: int = 1, key: Any = None) -> bool:
        """Takes ``cost`` tokens from the bucket (``key``'s) in Redis and
        returns True, or returns False and takes nothing. ``cost``: an int in
        [1, burst]; ``key``: None, str, bytes or int."""
        return self._take(self._cost(cost), key_tail(key))[0]

    def _take_or_wait(self, cost: int = 1, key: Any = None) -> float:
        """try_acquire with retry_after in one step: 0.0 when the tokens
        were taken, else the seconds to wait (> 0)."""
        wait: float = self._take(self._cost(cost), key_tail(key))[1]
        return wait

    def retry_after(self, cost: int = 1, key: Any = None) -> float:
        """Seconds until ``try_acquire(cost, key)`` would be admitted, 0.0 if
        now (from a remembered refusal, else asked of Redis); takes nothing."""
        cost = self._cost(cost)
        tail = key_tail(key)
        local = _local(tail)
        wait = self._known_wait(local, cost)
        if wait:
            return wait
        try:
            reply = self._backend.run(_GCRA, (self._base + tail,), (*self._args, cost, 0))
        except RedisUnavailable:
            mode = self._backend.on_unavailable
            if mode == "open":
                return 0.0
            if mode == "closed":
                return self._backend.cooldown
            return Gcra.retry_after(self, cost, local)
        return self._wait_us(int(reply[2]), cost) / 1e6

    def acquire(self, cost: int = 1, key: Any = None, *, timeout: float | None = None) -> None:
        """Blocks the thread until ``cost`` tokens are taken; RateLimited at
        once when the wait would exceed ``timeout`` (None: no limit)."""
        limit = _check.limit(timeout, "timeout", optional=True)
        cost = self._cost(cost)
        admitted, wait, _ = self._take(cost, key_tail(key))
        if not admitted:
            _wait_blocking(self, cost, key, limit, wait)

    def acquire_async(self, cost: int = 1, key: Any = None, *,
                      timeout: float | None = None) -> Awaitable[None]:
        """A coroutine that waits on the event loop until ``cost`` tokens are
        taken; RateLimited at once when the wait would exceed ``timeout``.
        Bad arguments raise here, when called."""
        limit = _check.limit(timeout, "timeout", optional=True)
        cost = self._cost(cost)
        return self._acquire_async(cost, key, key_tail(key), limit)

    async def _acquire_async(self, cost: int, key: Any, tail: bytes, limit: float) -> None:
        admitted, wait, _ = await self._take_async(cost, tail)
        if admitted:
            return
        clock = self.clock
        deadline = clock.now() + limit if limit != math.inf else math.inf
        while True:
            if deadline != math.inf and wait > deadline - clock.now():
                raise self._limited(cost, key, wait)
            await asyncio.sleep(wait)
            admitted, wait, _ = await self._take_async(cost, tail)
            if admitted:
                return

    def __call__(self, fn: F) -> F:
        """Decorates a function or coroutine function: each call takes one
        token first (a coroutine awaits Redis), or raises
        :class:`resil.RateLimited` without calling it."""
        if not callable(fn):
            raise TypeError(f"RateLimiter decorates a callable, not {type(fn).__name__}")
        tail = key_tail(None)

        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def awrapper(*args: Any, **kwargs: Any) -> Any:
                admitted, wait, _ = await self._take_async(1, tail)
                if not admitted:
                    raise self._limited(1, None, wait)
                return await fn(*args, **kwargs)

            return cast(F, awrapper)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            admitted, wait, _ = self._take(1, tail)
            if not admitted:
                raise self._limited(1, None, wait)
            return fn(*args, **kwargs)

        return cast(F, wrapper)

    def stats(self) -> dict[str, Any]:
        """The limiter's stats (name, rate, per, burst), with ``backend``,
        ``redis_decisions``, ``cached_refusals``, ``fallback_decisions``,
        ``admitted`` and ``rejected`` over them all, and ``keys`` (refusals
        remembered)."""
        out = Gcra.stats(self)
        with self._lock:
            out.update(self._counts)
        out["keys"] = len(self._refused)
        out["backend"] = self._backend.mode
        return out
