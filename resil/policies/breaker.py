"""Circuit breakers: resil.CircuitBreaker and resil.BreakerGroup."""

from __future__ import annotations

import functools
import inspect
import logging
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from resil import _check, _resil
from resil._resil import RegionError, State

__all__ = ["CircuitBreaker", "BreakerGroup", "StateListener"]

_log = logging.getLogger("resil.breaker")

F = TypeVar("F", bound=Callable[..., Any])

#: ``listener(breaker, old_state, new_state, reason)``
StateListener = Callable[["CircuitBreaker", State, State, str], object]

_EJECTED = (State.OPEN, State.HALF_OPEN, State.FORCED_OPEN)


def _mark_coroutine_function(wrapper: Any, fn: Callable[..., Any]) -> None:
    """Makes inspect/asyncio.iscoroutinefunction(wrapper) true, as for fn."""
    if inspect.iscoroutinefunction(wrapper):
        return
    if sys.version_info >= (3, 12):
        inspect.markcoroutinefunction(wrapper)
    else:  # pragma: no cover - exercised on 3.10/3.11 only
        # 3.10 and 3.11 look for a function-like object with a coroutine code.
        code = getattr(fn, "__code__", None)
        if code is not None:
            wrapper.__code__ = code
            wrapper.__defaults__ = getattr(fn, "__defaults__", None)
            wrapper.__kwdefaults__ = getattr(fn, "__kwdefaults__", None)


# Adding or removing a listener reads the tuple, then stores a new one: two
# threads doing it at once must not lose either change. Rare, so one lock for
# every breaker (reentrant: a listener's __eq__ may add another listener).
_LISTENERS_LOCK = threading.RLock()


class CircuitBreaker(_resil.Breaker):
    """A circuit breaker whose state machine runs in C.

    Every call takes a permit, then reports success, failure or release with
    its latency. States are :class:`resil.State`: CLOSED, DEGRADED, OPEN,
    HALF_OPEN, FORCED_OPEN and DISABLED.

    Parameters (all keyword-only except ``name``; durations in seconds):

    - ``name="default"``: label in errors, logs and metrics.
    - ``failure_threshold=5``: consecutive failures that trip (0: rule off).
    - ``failure_rate_threshold=None``: trip when the window's failure rate is
      at least this, in (0, 1].
    - ``slow_call_duration=None``: a call at least this long counts as slow.
    - ``slow_call_rate_threshold=1.0``: trip when the slow-call rate is at
      least this, in (0, 1] (needs ``slow_call_duration``).
    - ``window_size=100``: count window of the last N outcomes.
    - ``window_duration=None``: if set, a time window of this many seconds in
      10 buckets instead.
    - ``minimum_calls=10``: rate and health rules act once the window holds
      this many outcomes.
    - ``cooldown=60.0``: seconds OPEN before HALF_OPEN.
    - ``cooldown_multiplier=2.0``: each reopen from HALF_OPEN multiplies the
      cooldown, up to ``cooldown_max=600.0``.
    - ``half_open_probes=3``: probe permits in HALF_OPEN; that many successes
      close the circuit. 0: OPEN goes straight to CLOSED after the cooldown.
    - ``half_open_max_wait=None``: an undecided HALF_OPEN reopens after this.
    - ``adaptive=True``, ``ewma_alpha=0.3`` in [0.01, 1], ``sensitivity=2.0``
      in [0.5, 5]: the failure threshold shrinks under chronic failure.
    - ``min_health_score=0.3`` in [0, 1]: below it CLOSED becomes DEGRADED,
      below half of it the circuit trips; above 0.7 DEGRADED recovers.
    - ``latency_window=50``: latencies kept for the health score.
    - ``failure_on=(Exception,)``: exception types that count as failures.
    - ``ignore=()``: exception types that count as nothing (wins over
      ``failure_on``).
    - ``failure_if=None``: ``predicate(exc) -> bool`` refining ``failure_on``.
    - ``result_failure=None``: ``predicate(result) -> bool``; a true answer
      counts the returned value as a failure (the value is still returned).
    - ``clock=None``: a :class:`resil.MonotonicClock` (default), a
      :class:`resil.VirtualClock`, or any object with ``now() -> seconds``.
    - ``shared=None``: a :class:`resil.SharedRegion` makes this breaker one
      object for every process that opens the region: its state, window,
      counts and probes live in the region, so failures from any worker
      count toward one breaker, one trip rejects in every worker and
      ``half_open_probes`` caps probes host-wide. The first process sets the
      parameters; another passing a different one gets ``ValueError``
      naming it, and ``configure()`` may change only ``failure_on``,
      ``ignore``, ``failure_if`` and ``result_failure`` (each process
      classifies its own calls). A probe held by a process that dies is
      given back at the first call that finds none left once the region's
      ``lease`` has passed since it was taken. Each process's listeners and
      log see the transitions its own calls made. All processes must read
      the same clock (the default monotonic clock is host-wide). A shared
      breaker cannot join a ``BreakerGroup`` (its ejection budget lives in
      one process).
    - ``cluster=None``: a :class:`resil.redis.RedisBackend` makes this a
      cluster-wide breaker (one per ``name`` and backend prefix, for every
      process on every host; the name must then be given). Calls still go through this process's own
      breaker, with no round trip; every ``sync_interval`` seconds a
      background task publishes the window's counts (calls, failures, slow
      calls, and whether this breaker tripped on its own) to this process's
      own entry in Redis, so a process starting never resets the others',
      and reads back the cluster's state, judged in one Lua script on Redis
      time over the entries updated within the last 3 ``sync_interval``.
      The cluster opens when at least ``min_hosts`` distinct hosts
      (``RedisBackend.host``) are failing and, if a rate rule is set
      (``failure_rate_threshold``, or ``slow_call_duration``), the entries
      together hold at least ``minimum_calls`` outcomes meeting it (the
      window of a process whose breaker tripped counts as all failed and
      slow: that process rejects every call). A host is
      failing when one of its processes' breakers tripped on its own or its
      counts meet a rate rule; with no rate rule (only
      ``failure_threshold`` or the health score), the cluster opens when the
      breakers of at least ``min_hosts`` hosts tripped. One sick host alone
      thus never opens it for all. An open cluster reaches every process
      within ``sync_interval``: each one's breaker is then OPEN (every call
      raises :class:`resil.CircuitOpenError`) until the cluster's cooldown
      (``cooldown``, times ``cooldown_multiplier`` on each reopen up to
      ``cooldown_max``, on Redis time) ends, and up to ``3 * sync_interval
      + backend.timeout`` longer, until a synchronisation says what comes
      next. Then one process at a time holds a probe lease in Redis (lost if
      it dies, after that same time); only its breaker goes HALF_OPEN, so at
      most ``half_open_probes`` probe calls run across the cluster. Their
      success closes the cluster and every process's breaker clears its
      window (counts from before cannot reopen it); their failure reopens
      it (with ``half_open_probes=0`` the end of the cooldown closes the
      cluster). A transition of this breaker (a trip, a probe's result) is
      published at once, not at the next tick. While the local breaker
      trips on its own rules it rejects this process's calls, as any
      breaker. Transitions made for the cluster reach listeners with the
      reason ``"cluster"``. ``force_open()`` and ``disable()`` by the
      application win over the cluster until ``close()`` or ``reset()``.
      Redis away (see ``RedisBackend``'s ``on_unavailable``): ``"local"``:
      the local breaker decides alone, with the same rules (a cluster
      opening in force runs out by itself); when Redis answers again the
      process republishes at once and follows the cluster again.
      ``"open"``: from the first failed synchronisation the breaker is
      DISABLED (admits every call, counts nothing); ``"closed"``: it is
      FORCED_OPEN (rejects every call); either returns to CLOSED, then the
      cluster's state, at the first synchronisation that reaches Redis.
      ``stats()`` adds ``backend`` (``RedisBackend.mode``) and ``cluster``
      (the last view of the cluster: ``state``, ``epoch``, ``remaining``,
      ``hosts``, ``failing_hosts``, ``calls``, ``failures``,
      ``slow_calls``, ``opens``, ``cooldown``, ``probe_lease``, ``age`` of
      the view in seconds...). ``leave_cluster()`` stops the
      synchronisation (so does the breaker's garbage collection). Cannot
      be combined with ``shared=`` (a host-wide breaker has one state for
      the host already: ValueError).
    - ``sync_interval=1.0``: seconds between two synchronisations, > 0.
    - ``min_hosts=2``: distinct failing hosts needed to open the cluster,
      an int >= 1.

    Use it as ``@breaker``, ``with breaker:``, ``async with breaker:``,
    ``breaker.call(fn, ...)``, ``await breaker.call_async(fn, ...)``, or with
    ``acquire()`` and ``record_success`` / ``record_failure`` / ``release``.
    ``breaker.call(fn, ...)`` of a coroutine function, or of a function that
    returns a coroutine, returns an awaitable guarded as ``call_async``'s
    is: the outcome is recorded when the coroutine finishes, never when it
    is made; one dropped without being awaited warns (``RuntimeWarning``),
    as a coroutine never awaited does. A rejected call raises
    :class:`resil.CircuitOpenError`.
    Cancellation (``CancelledError``, ``KeyboardInterrupt``, ``SystemExit``,
    ``GeneratorExit``) releases the permit and is re-raised.

    Every parameter above but ``name`` and ``clock`` reads as an attribute
    (``breaker.failure_threshold``) and is read-only: assigning raises
    ``AttributeError``. ``breaker.configure(**changes)`` changes any of them
    at run time with the constructor's checks, all or nothing, keeping the
    state and counts (its docstring says what happens to the windows), and
    ``breaker.config`` is the current configuration as a dict.

    Listeners (:meth:`on_state_change`) and the ``resil.breaker`` log see
    each breaker's transitions one at a time, in the order they happened,
    whichever threads made them.
    """

    _listeners: tuple[StateListener, ...] = ()
    _cluster: Any = None

    def __new__(cls, *args: Any, cluster: Any = None, sync_interval: Any = 1.0,
                min_hosts: Any = 2, **kwargs: Any) -> CircuitBreaker:
        sync_interval = _check.seconds(sync_interval, "sync_interval")
        min_hosts = _check.integer(min_hosts, "min_hosts", 1, 2**31 - 1)
        if cluster is not None and kwargs.get("shared") is not None:
            raise ValueError("cluster= and shared= cannot be combined: a shared breaker is "
                             "one breaker for the host already; give cluster= alone")
        if cluster is not None:
            _check.cluster(cluster)
        if cluster is not None and not args and "name" not in kwargs:
            raise TypeError("CircuitBreaker() with cluster= needs a name: the name every host "
                            "sharing it uses in Redis (two unnamed ones would otherwise be one)")
        self = super().__new__(cls, *args, **kwargs)
        # The engine reports every transition to this function, explicitly
        # given (it never looks a method up on the subclass).
        self._set_listener(cls._on_transition)
        if cluster is not None:
            from resil.redis.breaker import attach
            self._cluster = attach(self, cluster, sync_interval, min_hosts)
        return self

    @property
    def cluster(self) -> Any:
        """The :class:`resil.redis.RedisBackend` this breaker synchronises
        through, or None for a breaker of this process (or host) alone."""
        sync = self._cluster
        return None if sync is None else sync.backend

    def leave_cluster(self) -> None:
        """Stops the cluster synchronisation (nothing for a breaker without
        ``cluster=``): the breaker goes on alone, in its current state; its
        entry in Redis stops counting once stale. Idempotent."""
        sync = self._cluster
        if sync is not None:
            sync.close()

    def __call__(self, fn: F) -> F:
        """Decorates a function or coroutine function so that each call goes
        through this breaker. Generator and async generator functions are
        refused: the breaker would guard only their creation. The wrapper's
        read-only ``breaker`` attribute is this breaker, and ``__wrapped__``
        the function."""
        if inspect.isasyncgenfunction(fn) or inspect.isgeneratorfunction(fn):
            raise TypeError(
                f"cannot guard generator function {fn!r}: a breaker would only see "
                "its creation; guard the calls it makes instead")
        is_async = inspect.iscoroutinefunction(fn)
        wrapper = _resil.Guarded(self, fn, is_async)
        functools.update_wrapper(wrapper, fn)
        if is_async:
            _mark_coroutine_function(wrapper, fn)
        return wrapper  # type: ignore[return-value]

    def on_state_change(self, listener: StateListener) -> StateListener:
        """Calls ``listener(breaker, old, new, reason)`` after every state
        change. A listener that raises is logged and never breaks the
        breaker. Returns the listener, so this works as a decorator.

        Listeners see one breaker's transitions one call at a time, in the
        order they happened: while a thread is reporting transitions, one
        made by another thread (or by a listener re-entering the breaker) is
        queued and reported by that thread after the earlier ones, so it may
        reach the listeners just after the call that made it returns."""
        _check.function(listener, "listener")
        with _LISTENERS_LOCK:
            self._listeners = self._listeners + (listener,)
        return listener

    def remove_listener(self, listener: StateListener) -> None:
        """Removes a listener added with on_state_change; ValueError if absent."""
        with _LISTENERS_LOCK:
            listeners = list(self._listeners)
            listeners.remove(listener)
            self._listeners = tuple(listeners)

    def _on_transition(self, old: State, new: State, reason: str, fail_count: int,
                       success_rate: float, latency_ms: float | None) -> None:
        """Logs one transition and calls the listeners; the engine calls it
        for each transition, one at a time, in order."""
        level = logging.WARNING if new in (State.OPEN, State.FORCED_OPEN) else logging.INFO
        if _log.isEnabledFor(level):
            transition = f"{old.name} -> {new.name}"
            _log.log(
                level, "circuit %r %s (%s)", self.name, transition, reason,
                extra={
                    "endpoint": self.name,
                    "state_transition": transition,
                    "reason": reason,
                    "fail_count": fail_count,
                    "success_rate": f"{success_rate * 100:.2f}%",
                    "latency_ms": latency_ms,
                },
            )
        for listener in self._listeners:
            try:
                listener(self, old, new, reason)
            except Exception:
                _log.exception("state-change listener %r of circuit %r failed",
                               listener, self.name)

    def __repr__(self) -> str:
        try:
            state = self.state.name
        except RegionError:  # a shared breaker whose region was closed
            state = "(region closed)"
        return f"<CircuitBreaker {self.name!r} {state}>"


def _constructor_signature() -> inspect.Signature:
    """CircuitBreaker's parameters, with the engine's own defaults."""
    param = inspect.Parameter
    defaults = _resil.Breaker().config
    params = [param("cls", param.POSITIONAL_OR_KEYWORD),
              param("name", param.POSITIONAL_OR_KEYWORD, default=defaults.pop("name"))]
    params += [param(key, param.KEYWORD_ONLY, default=value) for key, value in defaults.items()]
    params.append(param("clock", param.KEYWORD_ONLY, default=None))
    params.append(param("shared", param.KEYWORD_ONLY, default=None))
    params.append(param("cluster", param.KEYWORD_ONLY, default=None))
    params.append(param("sync_interval", param.KEYWORD_ONLY, default=1.0))
    params.append(param("min_hosts", param.KEYWORD_ONLY, default=2))
    return inspect.Signature(params)


# inspect.signature(CircuitBreaker) shows the constructor's parameters, not __new__'s *args.
setattr(CircuitBreaker.__new__, "__signature__", _constructor_signature())


class BreakerGroup(Mapping[str, CircuitBreaker]):
    """Per-endpoint circuit breakers sharing one configuration.

    ``group[endpoint]`` creates the endpoint's breaker on first use with
    ``breaker_defaults`` (any :class:`CircuitBreaker` keyword). At most
    ``max_ejection_percent`` (default 100) of the endpoints may be ejected
    (OPEN, HALF_OPEN or FORCED_OPEN) at once, but one endpoint always may; a
    trip beyond that leaves the breaker DEGRADED and is counted in
    ``stats()["vetoed_trips"]``. Manual ``open()`` and ``force_open()`` are
    not limited.

    With ``shared=region`` every endpoint's breaker lives in the region (one
    per endpoint for every process); the ejection limit lives in one
    process, so ``max_ejection_percent`` must then stay 100 (ValueError).
    """

    def __init__(self, *, max_ejection_percent: int = 100, **breaker_defaults: Any) -> None:
        if "name" in breaker_defaults:
            raise TypeError("BreakerGroup names each breaker after its endpoint; do not pass name")
        self._pool = _resil.EjectionPool(max_ejection_percent)
        shared = breaker_defaults.get("shared")
        if shared is not None:
            if not isinstance(shared, _resil.Region):
                raise TypeError("shared must be None or a resil.SharedRegion, not "
                                f"{type(shared).__name__}")
            if max_ejection_percent != 100:
                raise ValueError(
                    "max_ejection_percent must be 100 with shared=: the ejection limit lives "
                    f"in one process, the breakers in the region (got {max_ejection_percent!r})")
        self._shared = shared is not None
        # Fail now, not at the first endpoint, on a bad default (without
        # making an object in a region).
        CircuitBreaker("validation", **{k: v for k, v in breaker_defaults.items()
                                        if k not in ("shared", "cluster")})
        self._defaults = dict(breaker_defaults)
        self._breakers: dict[str, CircuitBreaker] = {}
        self._lock = threading.Lock()

    def __getitem__(self, endpoint: str) -> CircuitBreaker:
        breaker = self._breakers.get(endpoint)
        if breaker is not None:
            return breaker
        if not isinstance(endpoint, str):
            raise TypeError(f"endpoint must be a str, not {type(endpoint).__name__}")
        with self._lock:
            breaker = self._breakers.get(endpoint)
            if breaker is None:
                breaker = CircuitBreaker(endpoint, **self._defaults)
                if not self._shared:
                    breaker._attach(self._pool)
                self._breakers[endpoint] = breaker
        return breaker

    def __contains__(self, endpoint: object) -> bool:
        return endpoint in self._breakers

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._breakers))

    def __len__(self) -> int:
        return len(self._breakers)

    def record_success(self, endpoint: str, latency_ms: float | None = None) -> None:
        """Reports a success of a call to endpoint made without a permit."""
        self[endpoint].record_success(None, latency_ms)

    def record_failure(self, endpoint: str, latency_ms: float | None = None) -> None:
        """Reports a failure of a call to endpoint made without a permit."""
        self[endpoint].record_failure(None, latency_ms)

    def stats(self) -> dict[str, Any]:
        """The group's counts, JSON-serialisable, in the vocabulary every
        resil component's ``stats()`` uses: every endpoint's ``stats()``
        under ``endpoints``, max_ejection_percent, ejected (endpoints OPEN,
        HALF_OPEN or FORCED_OPEN now) and vetoed_trips (trips refused by
        the ejection limit)."""
        # Endpoints first: reading them ticks lazy transitions (OPEN -> ...),
        # which the pool's ejected count must reflect in the same snapshot.
        endpoints = {name: b.stats() for name, b in list(self._breakers.items())}
        pool = self._pool.stats()
        return {
            "endpoints": endpoints,
            "max_ejection_percent": pool["max_ejection_percent"],
            "ejected": pool["ejected"],
            "vetoed_trips": pool["vetoed"],
        }

    def __repr__(self) -> str:
        return f"<BreakerGroup endpoints={len(self)}>"
