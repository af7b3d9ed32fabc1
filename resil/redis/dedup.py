"""Cluster-wide dedup on Redis: the set behind ``Deduplicator(cluster=...)``
and the run-once protocol behind ``idempotent(..., cluster=...)``.

Keys
----
A dedup key is a ``str``, ``bytes`` or ``int`` (not ``bool``); it is stored
as one type letter and its bytes (``s`` and UTF-8, ``b`` and the bytes,
``i`` and the hexadecimal digits), so ``"1"``, ``b"1"`` and ``1`` are three keys. An encoded key longer
than 256 bytes is replaced by ``h`` and its SHA-256 digest (two keys are then
taken for one with probability about 2**-256), so a hostile key costs at
most 257 bytes of Redis. The encoded key only ever follows a fixed
component prefix (``prefix{dedup:name}:`` or ``prefix{idem:name}:r:``), so
no key, whatever its bytes, reaches another component's keys or another
key's: Redis keys are binary-safe and the hash tag comes first.

idempotent
----------
``CLAIM`` returns the stored result, or takes the key's lease (``SET NX
PX lease``) for the caller, which then runs the call; a caller that finds
the lease taken polls ``CLAIM`` again after 10 ms, doubling up to 100 ms.
The runner's process renews its leases every ``lease / 3`` from the
backend's thread; ``FINISH`` stores the first result with ``SET NX PX ttl``
and drops the lease; a failure drops the lease only, so the next poll of
one waiter takes it and runs the call again.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import threading
import time
import weakref
from collections.abc import Callable, Hashable
from typing import Any

from resil import _check
from resil._resil import Deduplicator
from resil.errors import CANCELLATION, RedisUnavailable
from resil.redis._backend import RedisBackend, Script, hash_tag, key_bytes

__all__ = ["cluster_deduplicator", "cluster_idempotent", "encode_key"]

#: A waiter's first and longest pause between two looks at a running key.
_FIRST_POLL = 0.01
_MAX_POLL = 0.1
#: Keys read or removed per round trip by len() and clear().
_SCAN_COUNT = 1000
_MISSING: Any = object()
_OPEN: Any = object()  # the resolver's "every caller runs its own call"
_MAX_RESULTS = 1 << 30

# The result if one is stored ({1, result}); else the lease taken for the
# caller ({0}); else someone else's lease ({2}).
_CLAIM = Script("""
local r = redis.call('GET', KEYS[1])
if r then return {1, r} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {0} end
return {2}
""")

# Stores the result unless one is stored already (the first wins) and drops
# the caller's lease: {1} when this result was stored, else {0, the first}.
_FINISH = Script("""
local stored = redis.call('SET', KEYS[1], ARGV[2], 'NX', 'PX', ARGV[3])
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
if stored then return {1} end
return {0, redis.call('GET', KEYS[1])}
""")

# Drops the caller's lease (a failed run): 1 when it was still the holder.
_RELEASE = Script("""
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
""")

# Extends each lease still held by its token (ARGV[i + 1]) to ARGV[1] ms;
# returns how many were.
_RENEW = Script("""
local n = 0
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[i + 1] then
    redis.call('PEXPIRE', key, ARGV[1])
    n = n + 1
  end
end
return n
""")


# Stores results a process made while Redis was away (KEYS[i]: ARGV[2i - 1]
# for ARGV[2i] ms, the rest of its ttl), unless a result is stored already.
_RESYNC_RESULTS = Script("""
for i, key in ipairs(KEYS) do
  redis.call('SET', key, ARGV[2 * i - 1], 'NX', 'PX', ARGV[2 * i])
end
return #KEYS
""")

# Records keys a process saw while Redis was away (KEYS[i] for ARGV[i] ms,
# the rest of its ttl), unless Redis has them already.
_RESYNC = Script("""
for i, key in ipairs(KEYS) do
  redis.call('SET', key, '1', 'NX', 'PX', ARGV[i])
end
return #KEYS
""")
_RESYNC_BATCH = 500


def encode_key(key: Any, name: str = "key") -> bytes:
    """``key`` as the bytes that follow a component's prefix in Redis (see
    the module's documentation); ``TypeError`` naming ``name`` unless it is
    a str, bytes or int (not bool), ``ValueError`` for a str with a lone
    surrogate."""
    return key_bytes(key, what="a cluster-wide set", name=name)


def _check_name(name: Any) -> str:
    text: str = _check.text(name, "name")
    _check.utf8(name=text)
    return hash_tag(text, "name")


def _ttl_ms(ttl: float) -> int:
    if ttl < 0.001:
        raise ValueError(f"ttl must be at least 0.001 seconds with cluster= (Redis keeps "
                         f"milliseconds), got {ttl!r}")
    return max(1, round(ttl * 1000))


def _glob_escape(raw: bytes) -> bytes:
    out = bytearray()
    for byte in raw:
        if byte in b"*?[]\\":
            out += b"\\"
        out.append(byte)
    return bytes(out)


def _resync_on_return(owner: Any, backend: RedisBackend) -> None:
    """Calls ``owner._resync()`` on the backend's thread each time Redis
    answers again after an outage while ``owner.pending`` holds something
    (the restore listener itself runs inside whichever operation saw Redis
    return, perhaps on an event loop); holds ``owner`` weakly."""
    ref = weakref.ref(owner)

    def restored() -> None:
        target = ref()
        if target is None or not target.pending:
            return
        handle: list[Any] = []
        done = threading.Event()

        def once() -> None:
            if done.is_set():
                return
            done.set()
            if handle:
                handle[0].cancel()
            target = ref()
            if target is not None:
                target._resync()
        try:
            handle.append(backend.every(0.001, once))
        except RuntimeError:
            pass  # the backend is closed
    weakref.finalize(owner, backend.on_restore(restored))


class _ClusterSet:
    """The state of one ``Deduplicator(cluster=...)``: its keys in Redis,
    the local set it falls back on, this process's counts."""

    def __init__(self, backend: RedisBackend, ttl: float, capacity: int, clock: Any,
                 shared: Any, name: str) -> None:
        self.backend = backend
        self.ttl = ttl
        self.ttl_ms = _ttl_ms(ttl)
        self.name = name
        self.base = backend.key("dedup", name).encode() + b":"
        self.pattern = _glob_escape(self.base) + b"*"
        if shared is None:
            self.local = Deduplicator(ttl, capacity, clock=clock)
        else:
            self.local = Deduplicator(ttl, capacity, clock=clock, shared=shared, name=name)
        self.counts = {"duplicates": 0, "recorded": 0, "unavailable": 0, "resynced": 0,
                       "unsynced": 0}
        # keys new to the fallback, with when: written to Redis once it answers
        self.pending: dict[bytes, float] = {}
        self.capacity = capacity
        self.lock = threading.Lock()
        _resync_on_return(self, backend)

    def _resync(self) -> None:
        with self.lock:
            items = list(self.pending.items())
            self.pending.clear()
        now = time.monotonic()
        live = [(k, self.ttl_ms - int((now - t) * 1000)) for k, t in items]
        live = [(k, left) for k, left in live if left > 0]
        for i in range(0, len(live), _RESYNC_BATCH):
            batch = live[i:i + _RESYNC_BATCH]
            try:
                self.backend.run(_RESYNC, [self.base + k for k, _ in batch],
                                 [left for _, left in batch])
            except RedisUnavailable:
                with self.lock:  # away again: kept for its next return
                    for k, left in live[i:]:
                        self.pending.setdefault(k, now - (self.ttl_ms - left) / 1000)
                return
            self.counts["resynced"] += len(batch)

    def _fallback(self, exc: RedisUnavailable) -> str:
        self.counts["unavailable"] += 1
        mode = self.backend.on_unavailable
        if mode == "closed":
            raise exc
        return mode

    def seen(self, key: Any) -> bool:
        k = encode_key(key)
        try:
            new = self.backend.command("SET", self.base + k, b"1", "NX", "PX", self.ttl_ms)
        except RedisUnavailable as exc:
            if self._fallback(exc) == "open":
                return False
            dup = self.local.seen(k)
            if not dup:
                with self.lock:
                    self.pending[k] = time.monotonic()
                    if len(self.pending) > self.capacity:  # the fallback evicted it too
                        del self.pending[next(iter(self.pending))]
                        self.counts["unsynced"] += 1
        else:
            dup = new is None
        self.counts["duplicates" if dup else "recorded"] += 1
        return dup

    def contains(self, key: Any) -> bool:
        k = encode_key(key)
        try:
            return bool(self.backend.command("EXISTS", self.base + k))
        except RedisUnavailable as exc:
            return self._fallback(exc) == "local" and k in self.local

    def discard(self, key: Any) -> bool:
        k = encode_key(key)
        local = self.local.discard(k)
        with self.lock:
            self.pending.pop(k, None)
        try:
            return bool(self.backend.command("DEL", self.base + k))
        except RedisUnavailable as exc:
            return self._fallback(exc) == "local" and local

    def _scan(self, remove: bool) -> int:
        cursor: Any = 0
        n = 0
        while True:
            cursor, keys = self.backend.command("SCAN", cursor, "MATCH", self.pattern,
                                                "COUNT", _SCAN_COUNT)
            if keys:
                n += len(keys)
                if remove:
                    self.backend.command("UNLINK", *keys)
            if int(cursor) == 0:
                return n

    def clear(self) -> None:
        self.local.clear()
        with self.lock:
            self.pending.clear()
        self._scan(remove=True)  # RedisUnavailable whatever on_unavailable says: not cleared

    def length(self) -> int:
        try:
            return self._scan(remove=False)
        except RedisUnavailable as exc:
            return len(self.local) if self._fallback(exc) == "local" else 0

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"backend": self.backend.mode, "name": self.name,
                               "ttl": self.ttl, "maxsize": self.local.capacity}
        out.update(self.counts)
        return out

    def duplicate_count(self) -> int:
        return self.counts["duplicates"]


def cluster_deduplicator(backend: Any, ttl: float, capacity: int, clock: Any, shared: Any,
                         name: str) -> tuple[Callable[..., Any], ...]:
    """The operations of ``Deduplicator(cluster=backend)`` (the C type calls
    this when made): seen, contains, discard, clear, len, stats and
    duplicate_count of a set in Redis."""
    s = _ClusterSet(_check.cluster(backend), ttl, capacity, clock, shared, _check_name(name))
    return (s.seen, s.contains, s.discard, s.clear, s.length, s.stats, s.duplicate_count)


def _json_encode(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _json_decode(data: bytes) -> Any:
    return json.loads(data)


class _Runs:
    """What one ``idempotent(..., cluster=...)`` function keeps in a process."""

    def __init__(self, fn: Callable[..., Any], key: Callable[..., Hashable], ttl: float,
                 backend: RedisBackend, name: str, lease: float,
                 encode: Callable[[Any], Any], decode: Callable[[bytes], Any]) -> None:
        self.fn = fn
        self.key = key
        self.ttl = ttl
        self.ttl_ms = _ttl_ms(ttl)
        self.backend = backend
        self.name = name
        self.lease = lease
        self.lease_ms = max(1, round(lease * 1000))
        self.encode = encode
        self.decode = decode
        self.base = backend.key("idem", name).encode() + b":"
        # results of runs made while Redis was away, read only while it is
        self.local = Deduplicator(ttl=ttl, capacity=_MAX_RESULTS)
        self.running: dict[bytes, asyncio.Task[Any]] = {}
        self.held: dict[bytes, bytes] = {}  # lease key -> token, renewed while running
        self.lock = threading.Lock()
        self.renewal: Any = None
        self.tokens = itertools.count()
        self.counts = {"runs": 0, "hits": 0, "waits": 0, "failures": 0, "unavailable": 0,
                       "resynced": 0}
        # results run here while Redis was away, encoded, with when: stored
        # in Redis once it answers (unless a result is there already)
        self.pending: dict[bytes, tuple[bytes, float]] = {}
        _resync_on_return(self, backend)

    def _keep(self, enc: bytes, result: Any) -> None:
        """Keeps a result run while Redis is away, for this process now
        and for Redis once it answers."""
        self.local.put(enc, result)
        try:
            data = self._encoded(result)
        except Exception:
            return  # this process's callers have it; other hosts cannot
        with self.lock:
            self.pending[enc] = (data, time.monotonic())

    def _resync(self) -> None:
        with self.lock:
            items = list(self.pending.items())
            self.pending.clear()
        now = time.monotonic()
        live = [(enc, data, self.ttl_ms - int((now - t) * 1000)) for enc, (data, t) in items]
        live = [item for item in live if item[2] > 0]
        for i in range(0, len(live), _RESYNC_BATCH):
            batch = live[i:i + _RESYNC_BATCH]
            args: list[Any] = []
            for _, data, left in batch:
                args += [data, left]
            try:
                self.backend.run(_RESYNC_RESULTS, [self.base + b"r:" + enc for enc, _, _ in batch],
                                 args)
            except RedisUnavailable:
                with self.lock:  # away again: kept for its next return
                    for enc, data, left in live[i:]:
                        self.pending.setdefault(enc, (data, now - (self.ttl_ms - left) / 1000))
                return
            self.counts["resynced"] += len(batch)

    def _encoded(self, result: Any) -> bytes:
        data = self.encode(result)
        if isinstance(data, str):
            return data.encode()
        if isinstance(data, (bytes, bytearray)):
            return bytes(data)
        raise TypeError(f"encode returned {type(data).__name__}, not bytes or str")

    # ------------------------------------------------------------ leases
    def _hold(self, lease_key: bytes, token: bytes) -> None:
        with self.lock:
            self.held[lease_key] = token
            if self.renewal is None:
                ref = weakref.ref(self)

                def renew() -> None:
                    runs = ref()
                    if runs is not None:
                        runs._renew()
                    elif task is not None:
                        task.cancel()
                task = None
                task = self.renewal = self.backend.every(self.lease / 3, renew)

    def _drop(self, lease_key: bytes) -> None:
        with self.lock:
            self.held.pop(lease_key, None)

    def _renew(self) -> None:
        with self.lock:
            items = list(self.held.items())
        if not items:
            return
        try:
            self.backend.run(_RENEW, [k for k, _ in items],
                             [self.lease_ms, *(t for _, t in items)])
        except RedisUnavailable:
            pass  # the leases may lapse: documented

    async def _release(self, lease_key: bytes, token: bytes) -> None:
        try:
            await self.backend.run_async(_RELEASE, [lease_key], [token])
        except RedisUnavailable:
            pass  # the lease lapses after at most `lease` seconds

    # ------------------------------------------------------------- a key
    def _decoded(self, data: bytes) -> Any:
        try:
            return self.decode(data)
        except Exception as exc:
            raise ValueError(f"idempotent {self.name!r}: could not decode the result stored in "
                             f"Redis ({type(exc).__name__}: {exc}); is decode the inverse of "
                             "encode on every host?") from exc

    async def _unavailable(self, enc: bytes, exc: RedisUnavailable, args: Any, kwargs: Any) -> Any:
        self.counts["unavailable"] += 1
        mode = self.backend.on_unavailable
        if mode == "closed":
            raise exc
        if mode == "open":
            return _OPEN
        cached = self.local.get(enc, _MISSING)  # run here during this or an earlier outage
        if cached is not _MISSING:
            return cached
        self.counts["runs"] += 1
        result = await self.fn(*args, **kwargs)
        self._keep(enc, result)
        return result

    async def resolve(self, enc: bytes, args: Any, kwargs: Any) -> Any:
        result_key, lease_key = self.base + b"r:" + enc, self.base + b"l:" + enc
        delay = _FIRST_POLL
        waited = False
        while True:
            token = f"{self.backend.instance}:{next(self.tokens)}".encode()
            try:
                reply = await self.backend.run_async(_CLAIM, [result_key, lease_key],
                                                     [token, self.lease_ms])
            except RedisUnavailable as exc:
                return await self._unavailable(enc, exc, args, kwargs)
            status = int(reply[0])
            if status == 1:
                self.counts["hits"] += 1
                return self._decoded(reply[1])
            if status == 0:
                return await self._run(enc, result_key, lease_key, token, args, kwargs)
            if not waited:
                waited = True
                self.counts["waits"] += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_POLL)

    async def _run(self, enc: bytes, result_key: bytes, lease_key: bytes, token: bytes,
                   args: Any, kwargs: Any) -> Any:
        self._hold(lease_key, token)
        self.counts["runs"] += 1
        try:
            result = await self.fn(*args, **kwargs)
        except BaseException as exc:
            self._drop(lease_key)
            if not isinstance(exc, CANCELLATION):
                self.counts["failures"] += 1
            await self._release(lease_key, token)
            raise
        self._drop(lease_key)
        try:
            data = self._encoded(result)
        except Exception as exc:
            self.counts["failures"] += 1
            await self._release(lease_key, token)
            raise TypeError(f"idempotent {self.name!r}: the result ({type(result).__name__}) "
                            f"cannot be encoded for other hosts by {self.encode!r}: "
                            f"{type(exc).__name__}: {exc}; the result is not cached") from exc
        try:
            reply = await self.backend.run_async(_FINISH, [result_key, lease_key],
                                                 [token, data, self.ttl_ms])
        except RedisUnavailable:
            self.counts["unavailable"] += 1
            if self.backend.on_unavailable == "local":
                self._keep(enc, result)
            return result
        if int(reply[0]) == 1:
            return result
        return self._decoded(reply[1])  # the lease lapsed and another run finished first

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"backend": self.backend.mode, "name": self.name,
                               "ttl": self.ttl, "lease": self.lease,
                               "running": len(self.running)}
        out.update(self.counts)
        return out


def check_options(backend: Any, name: Any, lease: Any, encode: Any,
                  decode: Any) -> tuple[RedisBackend, float]:
    """Checks the cluster options of ``idempotent``: the backend and the
    lease (as a float) once they are good, else ``TypeError``/``ValueError``
    naming the parameter."""
    backend = _check.cluster(backend)
    if name is not None:
        _check_name(name)
    lease = _check.seconds(lease, "lease")
    if lease < max(0.01, 4 * backend.timeout):
        raise ValueError(f"lease must be at least 0.01 seconds and 4 times the backend's "
                         f"timeout ({4 * backend.timeout:g} s), got {lease!r}")
    _check.function(encode, "encode", optional=True)
    _check.function(decode, "decode", optional=True)
    return backend, lease


def cluster_idempotent(fn: Callable[..., Any], key: Callable[..., Hashable], ttl: float,
                       backend: Any, name: str | None, lease: float,
                       encode: Callable[[Any], Any] | None,
                       decode: Callable[[bytes], Any] | None) -> Callable[..., Any]:
    """The wrapper ``idempotent(key, ttl, cluster=backend, ...)`` puts around
    the coroutine function ``fn`` (see :func:`resil.idempotent`)."""
    backend, lease = check_options(backend, name, lease, encode, decode)
    name = _check_name(f"{fn.__module__}.{fn.__qualname__}" if name is None else name)
    runs = _Runs(fn, key, ttl, backend, name, lease, encode or _json_encode,
                 decode or _json_decode)
    running = runs.running

    def finished(enc: bytes, t: asyncio.Task[Any]) -> None:
        if running.get(enc) is t:
            del running[enc]
        if not t.cancelled():
            t.exception()  # marks a failure as retrieved

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        enc = encode_key(key(*args, **kwargs), "the key function's result")
        loop = asyncio.get_running_loop()
        task = running.get(enc)
        if task is None or task.get_loop() is not loop:  # another loop's run: not awaitable here
            task = loop.create_task(runs.resolve(enc, args, kwargs))
            running[enc] = task
            task.add_done_callback(functools.partial(finished, enc))
        else:
            runs.counts["waits"] += 1
        result = await asyncio.shield(task)
        if result is _OPEN:
            return await fn(*args, **kwargs)
        return result

    def cache_clear() -> None:
        """Forgets the results this process kept while Redis was away (the
        results in Redis stay until their ttl)."""
        runs.local.clear()

    wrapper.cache_clear = cache_clear  # type: ignore[attr-defined]
    wrapper.stats = runs.stats  # type: ignore[attr-defined]
    return wrapper
