"""RedisBackend: scripts by SHA, one prefix, one round trip per operation, and
a breaker of its own so a dead or slow Redis costs one ``timeout`` per
cooldown per host."""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import itertools
import logging
import math
import os
import queue
import secrets
import socket
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from resil import _check
from resil._resil import CircuitOpenError
from resil.errors import RedisUnavailable
from resil.policies.breaker import CircuitBreaker

try:
    import redis
    import redis.asyncio
    import redis.exceptions
    from redis.backoff import NoBackoff
    from redis.retry import Retry
except ImportError as exc:  # pragma: no cover - the test extra installs redis
    raise ImportError("resil.redis needs redis-py: pip install 'resil[redis]'") from exc

__all__ = ["RedisBackend", "RedisUnavailable", "Script"]

_log = logging.getLogger("resil.redis")

#: What says Redis is away rather than that an operation is wrong: no
#: connection, no answer within the timeout, loading its data after a
#: restart, a replica during a failover.
_DOWN: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError, OSError, TimeoutError, asyncio.TimeoutError)
for _name in ("MasterDownError", "TryAgainError", "ClusterDownError"):
    _extra = getattr(redis.exceptions, _name, None)
    if isinstance(_extra, type) and issubclass(_extra, BaseException):
        _DOWN += (_extra,)

_MODES = ("local", "open", "closed")
_FALLBACK = {"local": "local-fallback", "open": "open-fallback", "closed": "closed-fallback"}


class Script:
    """A Lua script run on Redis by its SHA1: loaded once, loaded again on
    ``NOSCRIPT`` (a restarted or failed-over Redis has an empty script cache).
    ``source`` is the script's text."""

    __slots__ = ("source", "sha")

    def __init__(self, source: str) -> None:
        if not isinstance(source, str):
            raise TypeError(f"source must be the Lua source as a str, not {type(source).__name__}")
        if not source.strip():
            raise ValueError("source must be the Lua source, got only white space")
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    def __repr__(self) -> str:
        return f"<Script {self.sha[:12]}>"


def _script_call(script: Any, keys: Any, args: Any) -> None:
    """TypeError for a script call whose parts are of the wrong type."""
    if not isinstance(script, Script):
        raise TypeError(f"script must be a resil.redis.Script, not {type(script).__name__}")
    for value, name in ((keys, "keys"), (args, "args")):
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"{name} must be a list or a tuple, not {type(value).__name__}")


def _is_async(client: Any) -> bool:
    return isinstance(getattr(client, "connection_pool", None), redis.asyncio.ConnectionPool)


def _derive(client: Any, timeout: float, asynchronous: bool) -> Any:
    """A client of the same server with the backend's timeouts on connect and
    on every reply, no retries (a retry would multiply ``timeout``) and bytes
    replies; ``asynchronous`` picks redis.asyncio or the blocking client."""
    pool: Any = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", None)
    if not isinstance(kwargs, dict):
        raise TypeError("RedisBackend needs a redis-py client (redis.Redis or redis.asyncio.Redis), "
                        f"not {type(client).__name__}")
    kwargs = dict(kwargs)
    for stale in ("orig_socket_timeout", "orig_socket_connect_timeout", "orig_host_address",
                  "maint_notifications_pool_handler", "maint_notifications_config",
                  "himport_registry"):
        kwargs.pop(stale, None)
    # A new connection sends no handshake of its own (CLIENT SETINFO, HELLO,
    # CLIENT MAINT_NOTIFICATIONS: each a round trip, which would add to the
    # first operation's wait) and no maintenance relaxes the timeout.
    for info in ("driver_info", "lib_name", "lib_version"):
        if info in kwargs:
            kwargs[info] = None
    kwargs["protocol"] = 2  # the backend's own connections: resil reads their replies
    if "maint_notifications_config" in pool.connection_kwargs:
        from redis.maint_notifications import MaintNotificationsConfig
        kwargs["maint_notifications_config"] = MaintNotificationsConfig(enabled=False)
    kwargs.update(socket_timeout=timeout, socket_connect_timeout=timeout,
                  decode_responses=False, retry_on_error=[], retry_on_timeout=False,
                  health_check_interval=0)
    name = pool.connection_class.__name__
    if asynchronous:
        import redis.asyncio.connection as conns
        from redis.asyncio.retry import Retry as AsyncRetry
        kwargs["retry"] = AsyncRetry(NoBackoff(), 0)
        cls = getattr(conns, name, conns.Connection)
        return redis.asyncio.Redis(connection_pool=redis.asyncio.ConnectionPool(
            connection_class=cls, **kwargs))
    import redis.connection as sconns
    kwargs["retry"] = Retry(NoBackoff(), 0)
    cls = getattr(sconns, name, sconns.Connection)
    kwargs.pop("retry_on_timeout", None)
    return redis.Redis(connection_pool=redis.ConnectionPool(connection_class=cls, **kwargs))


#: An encoded key longer than this is kept as ``h`` and its SHA-256 digest.
_LONG_KEY = 256


def hash_tag(text: str, name: str) -> str:
    """``text``, the part of a component's keys between braces (its kind and
    name), refused with ValueError naming ``name`` when it holds a ``}``:
    that would end the hash tag which keeps all of a component's keys in
    one slot early, and could make two components' keys meet."""
    if "}" in text:
        raise ValueError(f"{name} must not contain '}}' (it would end the Redis hash tag of "
                         f"the keys), got {text!r}")
    return text


def key_bytes(key: Any, *, what: str, name: str = "key", surrogates: bool = False) -> bytes:
    """``key`` as the bytes a component puts after its own prefix in Redis:
    a type letter and the key's bytes (``s`` and a str's UTF-8, ``b`` and
    the bytes, ``i`` and an int's hexadecimal digits), so ``"1"``, ``b"1"``
    and ``1`` are three keys; one longer than 256 bytes is kept as ``h``
    and its SHA-256 digest. Distinct keys give distinct bytes (but for
    SHA-256 collisions), and whatever a key holds stays after the
    component's prefix. A str with a lone surrogate keeps it when
    ``surrogates`` is true, else raises ValueError naming ``name``; a key
    that is not a str, bytes or int (or is a bool) raises TypeError naming
    ``name`` and ``what`` it is for."""
    if isinstance(key, str):
        try:
            out = b"s" + str.encode(key, "utf-8", "surrogatepass" if surrogates else "strict")
        except UnicodeEncodeError:
            raise ValueError(f"{name} must be a str encodable as UTF-8 (no lone surrogates), "
                             "bytes or an int") from None
    elif isinstance(key, bytes):
        out = b"b" + bytes(key)
    elif isinstance(key, int) and not isinstance(key, bool):
        out = b"i" + format(int.__int__(key), "x").encode()  # not a subclass's __int__
    else:
        raise TypeError(f"{name} must be a str, bytes or int (not bool) for {what}, "
                        f"not {type(key).__name__}")
    if len(out) > _LONG_KEY:
        return b"h" + hashlib.sha256(out).digest()
    return out


class _Task:
    __slots__ = ("interval", "fn", "cancelled")

    def __init__(self, interval: float, fn: Callable[[], object]) -> None:
        self.interval = interval
        self.fn = fn
        self.cancelled = False

    def cancel(self) -> None:
        """Stops running it (a run under way finishes)."""
        self.cancelled = True


class _Kick:
    """What a backend's background thread waits on between runs: a queue
    whose ``put`` may be called from a finalizer (it takes no lock a
    collection could interrupt), holding nothing of the backend.
    ``pending`` keeps at most one wake-up queued at a time."""

    __slots__ = ("queue", "pending")

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[None] = queue.SimpleQueue()
        self.pending = False

    def wait(self, seconds: float) -> None:
        try:
            self.queue.get(timeout=None if seconds >= threading.TIMEOUT_MAX else seconds)
        except queue.Empty:
            pass

    def kick(self) -> None:
        """Wakes the thread (called holding the backend's lock)."""
        if not self.pending:
            self.pending = True
            self.queue.put(None)


def _collected(kick: _Kick, pool: Any) -> None:
    """A backend was collected without close(): its thread ends (it finds
    the backend gone) and its connections close."""
    kick.queue.put(None)
    pool.disconnect()


def _background(ref: weakref.ReferenceType[RedisBackend], kick: _Kick) -> None:
    """The backend's background thread. It holds the backend only while it
    picks and runs a task, never while it waits, so a backend nobody else
    holds is collected (and ``_collected`` wakes this thread to end)."""
    me = threading.current_thread()
    while True:
        backend = ref()
        if backend is None:
            return
        wait = backend._step(me)
        del backend
        if wait is None:
            return
        if wait > 0:
            kick.wait(wait)


_now = time.monotonic

_BACKENDS: weakref.WeakSet[RedisBackend] = weakref.WeakSet()


def _after_fork() -> None:
    for backend in list(_BACKENDS):
        backend._forked()


os.register_at_fork(after_in_child=_after_fork)


class RedisBackend:
    """The link between resil's cluster-wide components and one Redis (or
    Valkey) server.

    ``client``: a redis-py client, ``redis.Redis`` or
    ``redis.asyncio.Redis``; the backend talks to the same server (address,
    database, credentials, TLS) over connections of its own with its
    ``timeout`` on connect and on every reply, no retries, and bytes replies,
    and never changes the client given. With an asyncio client, coroutine
    operations (``acquire_async``, ``idempotent``) await it; blocking
    operations and the background synchronisation use a blocking twin.

    ``prefix="resil:"``: every key the backend writes starts with it, so one
    Redis serves several applications; a component's keys share one hash tag
    (``{...}``), so they stay on one shard of a Redis Cluster proxy.
    ``on_unavailable="local"``: what components do while Redis is away
    (down, slower than ``timeout``, loading, failing over): ``"local"``
    decides on each process's own state with the same rules and
    resynchronises when Redis returns; ``"open"`` admits; ``"closed"``
    rejects. ``timeout=0.05``: seconds an operation may wait for Redis.
    ``cooldown=1.0``: after a failed operation, seconds during which no
    operation is tried (each returns the fallback at once); then one
    operation tries Redis again. A dead Redis thus costs at most one
    ``timeout`` per ``cooldown`` per process, not one per call.
    ``host``: the name this host is counted under in cluster decisions
    (default: ``socket.gethostname()``); processes of one host share it.

    Every operation is one Lua script (atomic, one round trip) called by SHA;
    a Redis that lost its scripts (restarted) gets it again in the same call.
    ``stats()["backend"]`` says what is in force: ``"redis"``, or while
    Redis is away ``"local-fallback"``, ``"open-fallback"`` or
    ``"closed-fallback"``. ``close()`` stops the background thread; the
    client given is not closed. A backend dropped without ``close()`` is
    collected once nothing holds it (its components hold it while they
    live): its background thread then ends and its connections close.
    """

    def __init__(self, client: Any, *, prefix: str = "resil:", on_unavailable: str = "local",
                 timeout: float = 0.05, cooldown: float = 1.0, host: str | None = None) -> None:
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, not {type(prefix).__name__}")
        if not isinstance(on_unavailable, str):
            raise TypeError(f"on_unavailable must be a str, not {type(on_unavailable).__name__}")
        if on_unavailable not in _MODES:
            raise ValueError(f"on_unavailable must be 'local', 'open' or 'closed', not {on_unavailable!r}")
        timeout = _check.seconds(timeout, "timeout")
        cooldown = _check.seconds(cooldown, "cooldown")
        if not 0 < timeout <= 60 or math.isinf(timeout):
            raise ValueError(f"timeout must be in (0, 60] seconds, not {timeout!r}")
        if not 0 < cooldown <= 3600:
            raise ValueError(f"cooldown must be in (0, 3600] seconds, not {cooldown!r}")
        if host is None:
            host = socket.gethostname()
        elif not isinstance(host, str):
            raise TypeError(f"host must be a non-empty str or None, not {type(host).__name__}")
        elif not host:
            raise ValueError("host must be a non-empty str or None, got ''")
        _check.utf8(prefix=prefix, host=host)  # both are sent to Redis
        self.prefix = prefix
        self.on_unavailable = on_unavailable
        self.timeout = timeout
        self.cooldown = cooldown
        self.host = host
        self.is_async = _is_async(client)
        self._client = client
        self._sync = _derive(client, timeout, asynchronous=False)
        # asyncio clients by event loop: a connection belongs to the loop it
        # was opened on, so each loop that awaits the backend gets its own
        self._async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = \
            weakref.WeakKeyDictionary()
        self._breaker = CircuitBreaker(
            f"redis:{prefix}", failure_threshold=1, cooldown=cooldown, cooldown_multiplier=1.0,
            cooldown_max=cooldown, half_open_probes=1, adaptive=False, minimum_calls=1,
            failure_on=BaseException)
        self._lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._down = False
        self._restore_listeners: list[Callable[[], object]] = []
        self._loaded: set[str] = set()  # SHAs of scripts Redis has (as far as is known)
        self._counts = {"operations": 0, "unavailable": 0, "outages": 0, "restorations": 0,
                        "script_loads": 0}
        self._tasks: list[tuple[float, int, _Task]] = []
        self._seq = itertools.count()
        self._kick = _Kick()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.instance = f"{host}:{os.getpid()}:{secrets.token_hex(4)}"
        _BACKENDS.add(self)
        # Dropped without close(): its thread ends and its connections close.
        weakref.finalize(self, _collected, self._kick, self._sync.connection_pool).atexit = False

    def __repr__(self) -> str:
        return (f"<RedisBackend prefix={self.prefix!r} {self.mode} "
                f"on_unavailable={self.on_unavailable!r}>")

    # ------------------------------------------------------------- state
    @property
    def mode(self) -> str:
        """``"redis"``, or the fallback in force while Redis is away (and
        once the backend is closed: its operations raise then)."""
        return _FALLBACK[self.on_unavailable] if self._down or self._closed else "redis"

    @property
    def available(self) -> bool:
        """False from a failed operation until one succeeds again."""
        return not self._down

    def key(self, kind: str, name: str, *parts: str) -> str:
        """The Redis key of a component: ``prefix{kind:name}`` and parts joined
        by ``:``; the braces make every key of one component one hash slot.
        Each is a non-empty str; kind and name hold no ``}``."""
        hash_tag(_check.text(kind, "kind"), "kind")
        hash_tag(_check.text(name, "name"), "name")
        for part in parts:
            _check.text(part, "parts")
        tail = "".join(":" + p for p in parts)
        return f"{self.prefix}{{{kind}:{name}}}{tail}"

    def on_restore(self, listener: Callable[[], object]) -> Callable[[], None]:
        """Calls ``listener()`` (in the thread of the operation that saw
        Redis answer again) each time Redis returns after an outage; returns
        a function that removes it."""
        _check.function(listener, "listener")
        with self._lock:
            self._restore_listeners.append(listener)

        def remove() -> None:
            with self._lock:
                try:
                    self._restore_listeners.remove(listener)
                except ValueError:
                    pass
        return remove

    def stats(self) -> dict[str, Any]:
        """``backend`` (see :attr:`mode`), ``on_unavailable``, ``prefix``,
        ``host``, ``instance`` and counts: ``operations`` (answered by Redis),
        ``unavailable`` (operations answered by the fallback), ``outages``
        and ``restorations`` (Redis lost and found again), ``script_loads``
        (scripts Redis received the source of and answered)."""
        out: dict[str, Any] = {"backend": self.mode, "on_unavailable": self.on_unavailable,
                               "prefix": self.prefix, "host": self.host, "instance": self.instance}
        with self._count_lock:
            out.update(self._counts)
        return out

    # ------------------------------------------------------- operations
    def _admit(self) -> Any:
        if self._closed:
            raise RedisUnavailable("RedisBackend is closed")
        try:
            return self._breaker.acquire()
        except CircuitOpenError:
            self._count("unavailable")
            raise RedisUnavailable(
                f"Redis unavailable (no attempt for {self.cooldown:g} s after a failure)") from None

    def _disconnect_idle(self) -> None:
        """Closes the connections no operation uses; a blocking operation
        that ends on a closed backend calls it for its own (close() left it
        open for the operation to finish)."""
        self._sync.connection_pool.disconnect(inuse_connections=False)

    def _count(self, name: str) -> None:
        with self._count_lock:
            self._counts[name] += 1

    def _failed(self, permit: Any, exc: BaseException) -> RedisUnavailable:
        if self._closed:  # close() cut its connection: no outage
            self._breaker.release(permit)
            return RedisUnavailable("RedisBackend is closed")
        self._breaker.record_failure(permit)
        with self._count_lock:
            self._counts["unavailable"] += 1
            went_down = not self._down
            if went_down:
                self._down = True
                self._counts["outages"] += 1
            self._loaded.clear()  # a Redis that restarted has none of them
        if went_down:
            _log.warning("Redis unavailable (%s: %s); %s until it answers again",
                         type(exc).__name__, exc, self.mode)
        return RedisUnavailable(f"Redis unavailable: {type(exc).__name__}: {exc}")

    def _abandoned(self, permit: Any, exc: BaseException) -> RedisUnavailable | None:
        """After an operation raised ``exc``: the RedisUnavailable to raise
        when Redis is away (or ``close()`` cut the connection under it), else
        None, the permit given back: ``exc`` is Redis's own error (or a
        cancellation), to be raised as it is."""
        if isinstance(exc, _DOWN) or (self._closed and isinstance(exc, Exception)):
            return self._failed(permit, exc)
        self._breaker.release(permit)
        return None

    def _answered(self, permit: Any) -> None:
        self._breaker.record_success(permit)
        with self._count_lock:
            self._counts["operations"] += 1
            came_back = self._down
            if came_back:
                self._down = False
                self._counts["restorations"] += 1
        if came_back:
            _log.warning("Redis answers again; back to cluster-wide state")
            with self._lock:
                listeners = list(self._restore_listeners)
            for listener in listeners:
                try:
                    listener()
                except Exception:
                    _log.exception("a RedisBackend restore listener failed")

    def _async_client(self) -> Any:
        """The asyncio client of the running event loop (None without one)."""
        if not self.is_async:
            return None
        loop = asyncio.get_running_loop()
        client = self._async.get(loop)
        if client is None:
            with self._count_lock:
                client = self._async.get(loop)
                if client is None:
                    for old in [old for old in self._async if old.is_closed()]:
                        del self._async[old]  # its connections would keep that loop alive
                    client = self._async[loop] = _derive(self._client, self.timeout,
                                                         asynchronous=True)
        return client

    def run(self, script: Script, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """Runs ``script`` with ``keys`` and ``args`` on the blocking client:
        one round trip (its first run, and the first after an outage, send the
        source; two when Redis lost its scripts unseen, say by SCRIPT FLUSH). Raises
        :exc:`resil.RedisUnavailable` when Redis does not answer within
        ``timeout`` or the backend is cooling down after such a failure;
        Redis's own errors (a script error) are raised as redis-py raises
        them. ``keys`` and ``args`` are lists or tuples."""
        _script_call(script, keys, args)
        client = self._sync

        def op() -> Any:
            if script.sha in self._loaded:
                try:
                    return client.evalsha(script.sha, len(keys), *keys, *args)
                except redis.exceptions.NoScriptError:
                    result = client.eval(script.source, len(keys), *keys, *args)
                    self._count("script_loads")
                    return result
            # first use, or after an outage: one round trip that loads it too
            result = client.eval(script.source, len(keys), *keys, *args)
            self._count("script_loads")
            self._loaded.add(script.sha)
            return result
        return self._blocking(op)

    async def run_async(self, script: Script, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """:meth:`run` for coroutines: awaits the asyncio client when the
        backend was given one; with a blocking client, runs it in place (it
        blocks the event loop for at most ``timeout``)."""
        _script_call(script, keys, args)
        client = self._async_client()
        if client is None:
            return self.run(script, keys, args)
        permit = self._admit()
        try:
            if script.sha in self._loaded:
                try:
                    result = await client.evalsha(script.sha, len(keys), *keys, *args)
                except redis.exceptions.NoScriptError:
                    result = await client.eval(script.source, len(keys), *keys, *args)
                    self._count("script_loads")
            else:  # first use, or after an outage: one round trip that loads it too
                result = await client.eval(script.source, len(keys), *keys, *args)
                self._count("script_loads")
                self._loaded.add(script.sha)
        except BaseException as exc:
            down = self._abandoned(permit, exc)
            if down is None:
                raise
            raise down from exc
        self._answered(permit)
        return result

    def command(self, *args: Any) -> Any:
        """Runs one Redis command (``command("XRANGE", key, "-", "+")``) on the
        blocking client, guarded as :meth:`run` is."""
        return self._blocking(lambda: self._sync.execute_command(*args))

    def _blocking(self, op: Callable[[], Any]) -> Any:
        """``op()``, one operation on the blocking client, guarded: admitted
        by the backend's breaker, its failure turned into RedisUnavailable
        when Redis is away, and on a closed backend its connection closed
        once it ends (close() left it open for the operation to finish)."""
        permit = self._admit()
        try:
            result = op()
        except BaseException as exc:
            if self._closed:
                self._disconnect_idle()
            down = self._abandoned(permit, exc)
            if down is None:
                raise
            raise down from exc
        if self._closed:
            self._disconnect_idle()
        self._answered(permit)
        return result

    async def command_async(self, *args: Any) -> Any:
        """:meth:`command` for coroutines, as :meth:`run_async` is to :meth:`run`."""
        client = self._async_client()
        if client is None:
            return self.command(*args)
        permit = self._admit()
        try:
            result = await client.execute_command(*args)
        except BaseException as exc:
            down = self._abandoned(permit, exc)
            if down is None:
                raise
            raise down from exc
        self._answered(permit)
        return result

    def blocking_client(self, timeout: float) -> Any:
        """A new blocking client of the same server whose replies may take up
        to ``timeout`` seconds (for a blocking read such as ``XREAD BLOCK``);
        the caller closes it."""
        timeout = _check.seconds(timeout, "timeout")
        return _derive(self._client, timeout, asynchronous=False)

    # ------------------------------------------------------- background
    def every(self, interval: float, fn: Callable[[], object]) -> _Task:
        """Runs ``fn()`` every ``interval`` seconds in the backend's
        background thread (started on first use, one per backend and
        process), first after ``interval``. ``fn`` should do at most a few
        operations; an exception it raises is logged. Returns a handle whose
        ``cancel()`` stops it."""
        interval = _check.seconds(interval, "interval")
        _check.function(fn, "fn")
        if not 0 < interval < math.inf:
            raise ValueError(f"interval must be a positive finite number of seconds, not {interval!r}")
        task = _Task(interval, fn)
        with self._lock:
            if self._closed:
                raise RuntimeError("RedisBackend is closed")
            heapq.heappush(self._tasks, (_now() + interval, next(self._seq), task))
            self._start_locked()
            self._kick.kick()
        return task

    def wake(self) -> None:
        """Runs every background task now rather than at its next time (for
        a change that should reach the cluster at once)."""
        with self._lock:
            self._tasks = [(0.0, seq, task) for _, seq, task in self._tasks]
            heapq.heapify(self._tasks)
            self._kick.kick()

    def _start_locked(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=_background, args=(weakref.ref(self), self._kick),
                                            name=f"resil-redis {self.prefix}", daemon=True)
            self._thread.start()

    def _step(self, me: threading.Thread) -> float | None:
        """One turn of the background thread ``me``: runs the task that is
        due (0.0: look again at once), or says how long to wait for one
        (``inf``: none is scheduled); None when the thread is to end."""
        with self._lock:
            self._kick.pending = False
            if self._closed or self._thread is not me:
                return None
            while self._tasks and self._tasks[0][2].cancelled:
                heapq.heappop(self._tasks)
            if not self._tasks:
                return math.inf
            wait = self._tasks[0][0] - _now()
            if wait > 0:
                return wait
            _, seq, task = heapq.heappop(self._tasks)
        try:
            task.fn()
        except Exception:
            _log.exception("a RedisBackend background task failed")
        with self._lock:
            if not task.cancelled and not self._closed:
                heapq.heappush(self._tasks, (_now() + task.interval, seq, task))
        return 0.0

    def _forked(self) -> None:
        # In a forked child the parent's thread is gone and the lock may be held.
        self._lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._kick.queue = queue.SimpleQueue()
        self._kick.pending = False
        self._thread = None
        self.instance = f"{self.host}:{os.getpid()}:{secrets.token_hex(4)}"
        if self._tasks and not self._closed:
            with self._lock:
                self._start_locked()

    def close(self) -> None:
        """Stops the background thread and closes the backend's connections
        (the client given stays open); operations then raise
        :exc:`resil.RedisUnavailable`. Blocking operations under way are not
        cut: each finishes (within ``timeout``) and its connection closes
        then, so one that raised did not reach Redis (unless Redis was slower
        than ``timeout``). Idempotent."""
        with self._lock:
            self._closed = True
            self._tasks.clear()
            self._kick.kick()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(max(1.0, 4 * self.timeout))
        # The connections idle now; each one under way closes when its
        # operation ends (within timeout): cut, it would leave the caller
        # unsure whether Redis applied the operation.
        self._disconnect_idle()

    async def aclose(self) -> None:
        """:meth:`close`, then closes the asyncio connections."""
        self.close()
        client = self._async.get(asyncio.get_running_loop())
        if client is not None:
            await client.connection_pool.disconnect()

    def __enter__(self) -> RedisBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> RedisBackend:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

