"""Retries with backoff, deadlines and budgets."""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import time
import types
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from resil import _check, _env, _resil
from resil._hooks import EventListener, Listeners
from resil.policies.breaker import CircuitBreaker
from resil.errors import OperationTimeout, RetryError
from resil._resil import Backoff, CircuitOpenError, MonotonicClock, RetryBudget, VirtualClock

__all__ = ["retry", "Backoff", "RetryBudget", "RetryError", "RetryPolicy"]

F = TypeVar("F", bound=Callable[..., Any])

_log = logging.getLogger("resil.retry")


def _default_retry_after(exc: BaseException) -> float | None:
    value = getattr(exc, "retry_after", None)
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _sleep(seconds: float) -> None:
    # Looks time.sleep up at each call, so a test that replaces it is seen.
    time.sleep(seconds)


class _Policy:
    """The validated settings of one @retry; ``core`` (a C RetryCore) makes
    every decision between attempts and keeps the counters."""

    __slots__ = ("retries", "backoff", "retry_on", "retry_if_result", "deadline", "breaker",
                 "budget", "retry_after", "on_retry", "clock", "core", "listeners")

    def __init__(self, retries: int, backoff: Backoff | None, retry_on: Any,
                 retry_if_result: Callable[[Any], object] | None, deadline: float | None,
                 breaker: CircuitBreaker | None, budget: RetryBudget | None,
                 retry_after: Callable[[BaseException], float | None] | None,
                 on_retry: Callable[[int, float, object], object] | None,
                 clock: Any, name: str | None = None) -> None:
        if isinstance(retries, bool) or not isinstance(retries, int):
            raise TypeError(f"retries must be an int, not {type(retries).__name__}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries!r}")
        if backoff is not None and not isinstance(backoff, Backoff):
            raise TypeError(f"backoff must be a resil.Backoff, not {type(backoff).__name__}")
        if isinstance(retry_on, type) and issubclass(retry_on, BaseException):
            retry_on = (retry_on,)
        if not (isinstance(retry_on, tuple)
                and all(isinstance(t, type) and issubclass(t, BaseException) for t in retry_on)):
            raise TypeError("retry_on must be an exception class or a tuple of them")
        for fname, fn in (("retry_if_result", retry_if_result), ("retry_after", retry_after),
                          ("on_retry", on_retry)):
            _check.function(fn, fname, optional=True)
        if deadline is not None:
            deadline = _check.seconds(deadline, "deadline")
        if breaker is not None and not isinstance(breaker, _resil.Breaker):
            raise TypeError(f"breaker must be a resil.CircuitBreaker, not {type(breaker).__name__}")
        if budget is not None and not isinstance(budget, RetryBudget):
            raise TypeError(f"budget must be a resil.RetryBudget, not {type(budget).__name__}")
        _check.clock(clock)
        self.retries = retries
        self.backoff = backoff if backoff is not None else Backoff()
        self.retry_on = retry_on
        self.retry_if_result = retry_if_result
        self.deadline = None if deadline is None else float(deadline)
        self.breaker = breaker
        self.budget = budget
        self.retry_after = retry_after if retry_after is not None else _default_retry_after
        self.on_retry = on_retry
        self.clock = clock if clock is not None else MonotonicClock()
        self.core = _resil.RetryCore(
            retries=retries, backoff=self.backoff, retry_on=retry_on,
            retry_if_result=retry_if_result, deadline=self.deadline, breaker=breaker,
            budget=budget, retry_after=self.retry_after, on_retry=on_retry, clock=self.clock,
            sleep=self.clock.advance if isinstance(self.clock, VirtualClock) else _sleep,
            retry_error=RetryError, name=name)
        # Told of every retry once someone listens (RetryPolicy._listen).
        self.listeners = Listeners(_log)


def _guarded_by(fn: Any, breaker: _resil.Breaker) -> bool:
    """True when calling fn already goes through breaker: fn, or a function
    it wraps (``__wrapped__`` chains as functools.wraps leaves them, bound
    methods, functools.partial), is a function decorated with ``@breaker``,
    whose wrapper's read-only ``breaker`` attribute names its breaker."""
    seen: set[int] = set()
    todo = [fn]
    while todo:
        obj = todo.pop()
        if obj is None or id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, _resil.Guarded) and obj.breaker is breaker:
            return True
        if isinstance(obj, (types.MethodType, functools.partialmethod)):
            todo.append(obj.__func__ if isinstance(obj, types.MethodType) else obj.func)
        elif isinstance(obj, functools.partial):
            todo.append(obj.func)
        try:
            todo.append(inspect.getattr_static(obj, "__wrapped__", None))
        except Exception:  # an object whose attribute lookup itself fails
            pass
    return False


def _sync_wrapper(fn: Callable[..., Any], policy: _Policy) -> Callable[..., Any]:
    call = policy.breaker(fn) if policy.breaker is not None else fn
    wrapper = policy.core.wrap(call)  # every attempt, sleep and decision in C
    functools.update_wrapper(wrapper, fn)
    return wrapper


_ASYNC_FINAL = (CircuitOpenError, OperationTimeout)


def _async_wrapper(fn: Callable[..., Awaitable[Any]], policy: _Policy) -> Callable[..., Any]:
    breaker = policy.breaker
    budget = policy.budget
    retry_if_result = policy.retry_if_result
    deadline = policy.deadline
    core = policy.core

    def attempt_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Awaitable[Any]:
        return breaker.call_async(fn, *args, **kwargs) if breaker is not None else fn(*args, **kwargs)

    async def after_first(outcome: object, raised: bool, started: float | None,
                          args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Attempts 2..retries+1, after the first one did not return: the C
        RetryCall decides, this loop only awaits."""
        loop = asyncio.get_running_loop()
        progress = core.begin(loop.time() if started is None else started, _ASYNC_FINAL)
        while True:
            await asyncio.sleep(progress.failed(outcome, raised, loop.time()))
            try:
                if deadline is None or started is None:
                    result = await attempt_of(args, kwargs)
                else:
                    result = await _until(attempt_of(args, kwargs), started + deadline, loop)
            except BaseException as exc:  # classified by progress.failed
                outcome, raised = exc, True
            else:
                if retry_if_result is None or not retry_if_result(result):
                    return result
                outcome, raised = result, False

    if breaker is None and budget is None and deadline is None:
        @functools.wraps(fn)
        async def plain(*args: Any, **kwargs: Any) -> Any:
            # Nothing to check before the first attempt: await fn directly.
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                return await after_first(exc, True, None, args, kwargs)
            if retry_if_result is None or not retry_if_result(result):
                return result
            return await after_first(result, False, None, args, kwargs)

        return plain

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        # The first attempt, kept lean: the loop lives in after_first.
        if budget is not None:
            budget.record_request()
        started: float | None = None
        try:
            if deadline is None:
                result = await attempt_of(args, kwargs)
            else:
                loop = asyncio.get_running_loop()
                started = loop.time()
                result = await _until(attempt_of(args, kwargs), started + deadline, loop)
        except BaseException as exc:
            return await after_first(exc, True, started, args, kwargs)
        if retry_if_result is None or not retry_if_result(result):
            return result
        return await after_first(result, False, started, args, kwargs)

    return wrapper


async def _until(awaitable: Awaitable[Any], deadline: float,
                 loop: asyncio.AbstractEventLoop) -> Any:
    """Awaits in a task of its own; cancels it at the loop-time deadline."""
    task = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait({task}, timeout=max(0.0, deadline - loop.time()))
    except BaseException:
        task.cancel()
        raise
    if task in done:
        return task.result()
    task.cancel()
    # wait() lets a cancellation of the caller through (awaiting the task
    # itself would swallow it along with the attempt's own CancelledError).
    await asyncio.wait({task})
    if not task.cancelled():
        task.exception()  # retrieved: it failed while being cancelled; the deadline wins
    raise OperationTimeout(f"attempt still running at the deadline ({deadline - loop.time():+.3f}s)")


def retry(retries: int = 3, *, backoff: Backoff | None = None, retry_on: Any = (Exception,),
          retry_if_result: Callable[[Any], object] | None = None,
          deadline: float | None = None, breaker: CircuitBreaker | None = None,
          budget: RetryBudget | None = None,
          retry_after: Callable[[BaseException], float | None] | None = None,
          on_retry: Callable[[int, float, object], object] | None = None,
          clock: Any = None, name: str | None = None) -> RetryPolicy:
    """Retries a function or coroutine function: at most ``retries + 1`` calls.

    - ``retries=3``: retries after the first call.
    - ``backoff=Backoff()``: delays between attempts (1, 2, 4 s ... capped at
      30 s, no jitter).
    - ``retry_on=(Exception,)``: exception types that are retried; others,
      and cancellation, propagate at once.
    - ``retry_if_result=None``: ``predicate(result) -> bool``; a true answer
      retries; when retries end on such a result, :class:`RetryError`
      carries it as ``.result``.
    - ``deadline=None``: seconds for the whole call, sleeps included. No sleep
      crosses it: when the next delay would, the last error is raised. A
      coroutine attempt still running at the deadline is cancelled and
      :class:`OperationTimeout` raised; a plain function's attempt runs to its
      end and no new attempt starts.
    - ``breaker=None``: each attempt goes through this breaker; while it
      rejects, :class:`CircuitOpenError` is raised at once, with no sleep.
    - ``budget=None``: a shared :class:`RetryBudget`; a denied retry ends the
      call with the last error.
    - ``retry_after=None``: ``fn(exc) -> seconds | None`` overriding the next
      delay (default: the exception's ``retry_after`` attribute), capped by
      the backoff's ``max_delay``.
    - ``on_retry=None``: ``fn(attempt, delay, error)`` called before each
      sleep; attempt is the 1-based number of the attempt that failed, error
      its exception or failing result.
    - ``clock=None``: for plain functions, the clock deadlines and sleeps use
      (a :class:`VirtualClock` is advanced instead of sleeping). Coroutine
      functions use the running event loop's time and ``asyncio.sleep``; run
      them with :func:`resil.run_virtual` for virtual time.
    - ``name=None``: how metrics call this policy (``stats()["name"]`` and
      the ``policy`` label of ``resil.prometheus``).

    Returns a :class:`RetryPolicy`: a decorator whose ``stats()`` counts, over
    every function it decorated, the retries made and the calls that gave up.
    """
    if name is not None and (not isinstance(name, str) or not name):
        raise TypeError("name must be a non-empty str or None")
    policy = _Policy(retries, backoff, retry_on, retry_if_result, deadline, breaker, budget,
                     retry_after, on_retry, clock, name)
    return RetryPolicy(policy, clock=clock)


class RetryPolicy:
    """What :func:`retry` returns: apply it to a function or coroutine
    function; ``stats()`` -> ``{"name", "retries", "gave_up", "rejected"}``
    (retries: attempts after a first one; gave_up: calls that ended in
    their last error because retries, the deadline or the budget ran out;
    rejected: calls ended by an open breaker between attempts)."""

    __slots__ = ("_policy", "_clock", "__weakref__")

    def __init__(self, policy: _Policy, *, clock: Any) -> None:
        self._policy = policy
        self._clock = clock

    @property
    def name(self) -> str | None:
        """How metrics call this policy, or None."""
        name: str | None = self._policy.core.name
        return name

    def stats(self) -> dict[str, Any]:
        """The policy's counts, JSON-serialisable, in the vocabulary every
        resil component's ``stats()`` uses: name, retries (attempts after a
        first one), gave_up (calls that ended failing: attempts, deadline
        or budget ran out) and rejected (calls an open breaker ended
        between attempts). The retry engine keeps them; this returns its
        document as is."""
        stats: dict[str, Any] = self._policy.core.stats()
        return stats

    def _listen(self, listener: EventListener) -> None:
        """Calls ``listener("retry", name)`` after each retry the policy
        decides, before its sleep (name: the policy's, or ``"retry"``)."""
        policy = self._policy
        listeners = policy.listeners
        listeners.add(listener)
        name = policy.core.name or "retry"

        def retried(attempt: int, delay: float, error: object) -> None:
            listeners.notify("retry", name)

        # The engine calls only what it is handed; nothing until someone listens.
        policy.core._set_listener(retried)

    def _unlisten(self, listener: EventListener) -> None:
        self._policy.listeners.remove(listener)

    def __repr__(self) -> str:
        return f"<RetryPolicy {self.name or ''} retries={self._policy.retries}>".replace("  ", " ")

    def __call__(self, fn: F) -> F:
        """Applies the policy to ``fn``. With ``breaker=b``, a function that
        already goes through ``b`` (decorated with ``@b``, directly or under
        functools.wraps wrappers) raises ValueError: each attempt would be
        counted twice. The wrapper's ``retry_policy`` attribute is this
        policy (what :meth:`resil.Monitor.watch` follows)."""
        policy, clock = self._policy, self._clock
        if not callable(fn):
            raise TypeError(f"retry needs a callable, not {type(fn).__name__}")
        if policy.breaker is not None and _guarded_by(fn, policy.breaker):
            raise ValueError(
                f"retry(breaker=...): {fn!r} is already guarded by circuit breaker "
                f"{policy.breaker.name!r}, so each attempt would be counted twice; pass the "
                f"undecorated function, or leave breaker= out")
        if inspect.isasyncgenfunction(fn) or inspect.isgeneratorfunction(fn):
            raise TypeError(f"cannot retry generator function {fn!r}")
        if inspect.iscoroutinefunction(fn):
            if clock is not None:
                raise ValueError("clock= applies to plain functions; a coroutine function takes "
                                 "time from its event loop (use resil.run_virtual for virtual time)")
            wrapper = _async_wrapper(fn, policy)
        else:
            wrapper = _sync_wrapper(fn, policy)
        wrapper.retry_policy = self  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None,
                 **overrides: Any) -> RetryPolicy:
        """``retry(...)`` configured from environment variables, each also
        read under a ``RESIL_`` name that wins (``RESIL_KAFKA_MAX_RETRIES``):

        - ``KAFKA_MAX_RETRIES``: ``retries``, an int >= 0.
        - ``KAFKA_TIMEOUT_SECONDS``: ``deadline``, seconds for the whole
          call, sleeps included.

        ``environ`` (default ``os.environ``, read at this call only) is
        where the variables are looked up; a variable that is unset or
        empty leaves :func:`retry`'s default. ``overrides`` are
        :func:`retry`'s keyword arguments and win over the environment (the
        variable of an overridden parameter is not read); an unknown one
        raises TypeError. A value that does not parse, or that
        :func:`retry` refuses, raises ValueError naming the variable and
        the value.
        """
        found = _env.read(environ, _ENV_SETTINGS, overrides)
        return _env.build(retry, found, overrides)


_ENV_SETTINGS = (
    _env.Setting("KAFKA_MAX_RETRIES", "retries", _env.integer),
    _env.Setting("KAFKA_TIMEOUT_SECONDS", "deadline", _env.number()),
)
