"""Timeouts for asyncio operations: resil.TimeoutManager."""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

from resil import _check, _env, _time
from resil._hooks import Listeners
from resil.errors import OperationTimeout
from resil.tasks import _RUNNING

__all__ = ["TimeoutManager", "Operation"]

T = TypeVar("T")

_log = logging.getLogger("resil.timeout")
_current: contextvars.ContextVar[Operation | None] = contextvars.ContextVar(
    "resil_timeout_operation", default=None)


@dataclass
class _NameStats:
    started: int = 0
    completed: int = 0
    timeouts: int = 0
    warnings: int = 0
    grace_extensions: int = 0
    grace_recoveries: int = 0


class Operation:
    """One ``async with tm.timeout(name)`` block; ``progress()`` marks it alive."""

    def __init__(self, manager: TimeoutManager, name: str, *, seconds: float) -> None:
        self.manager = manager
        self.name = name
        self.seconds = seconds
        self.started = 0.0
        self.deadline = 0.0
        self.hard_deadline = 0.0   # start + global_timeout: never passed
        self.last_progress: float | None = None
        self.warned = False
        self.extended = False
        self.timed_out = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[Any] | None = None
        self._handles: list[_time.Timer] = []
        self._token: contextvars.Token[Operation | None] | None = None
        self._own_deadline = 0.0
        self._cancelling = 0

    def progress(self) -> None:
        """Records progress: a deadline passing within ``grace_period`` of
        the last progress grants one extension of ``grace_period``."""
        if self._loop is not None:
            self.last_progress = self.manager.clock.now()

    @property
    def elapsed(self) -> float:
        return 0.0 if self._loop is None else self.manager.clock.now() - self.started

    @property
    def remaining(self) -> float:
        return 0.0 if self._loop is None else max(0.0, self.deadline - self.manager.clock.now())

    async def __aenter__(self) -> Operation:
        loop = asyncio.get_running_loop()
        task = _RUNNING.get(loop)
        if task is None:
            raise RuntimeError("TimeoutManager.timeout() must be used inside a task")
        tm = self.manager
        self._loop, self._task = loop, task
        clock = tm.clock
        self.started = clock.now()
        self.hard_deadline = self.started + tm.global_timeout
        self.deadline = min(self.started + self.seconds, self.hard_deadline)
        own_deadline = self.deadline
        parent = _current.get()
        # A tighter enclosing deadline in the same task is the one that fires
        # (and warns); this block then schedules nothing of its own.
        bound_by_parent = (parent is not None and parent._task is task
                           and parent.deadline <= self.deadline)
        if bound_by_parent:
            assert parent is not None
            self.deadline = parent.deadline
        # Task.cancelling/uncancel exist from 3.11; 3.10 has no nested-cancel count.
        self._cancelling = getattr(task, "cancelling", lambda: 0)()
        self._token = _current.set(self)
        tm._active[id(self)] = self
        tm._stats_for(self.name).started += 1
        if not bound_by_parent and tm.progressive and tm.warning_threshold < 1.0:
            warn_at = self.started + (self.deadline - self.started) * tm.warning_threshold
            self._handles.append(_time.Timer(clock, warn_at, self._warn))
        if bound_by_parent:
            # The parent fires first; this block's own deadline still holds if
            # the parent is granted a grace extension past it.
            self._own_deadline = own_deadline
            self._handles.append(_time.Timer(clock, own_deadline, self._expire_own))
        else:
            self._handles.append(_time.Timer(clock, self.deadline, self._expire))
        return self

    def _expire_own(self) -> None:
        self.deadline = self._own_deadline
        self._expire()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        for handle in self._handles:
            handle.cancel()
        self._handles.clear()
        tm = self.manager
        tm._active.pop(id(self), None)
        if self._token is not None:
            _current.reset(self._token)
        stats = tm._stats_for(self.name)
        if self.timed_out:
            uncancel = getattr(self._task, "uncancel", None)
            uncancelled = uncancel is None or uncancel() <= self._cancelling
            if exc_type is asyncio.CancelledError and uncancelled:
                raise OperationTimeout(
                    f"operation {self.name!r} timed out after {self.elapsed:.3f}s") from exc
            return
        stats.completed += 1
        if self.extended:
            stats.grace_recoveries += 1
            _log.info("operation %r recovered in its grace period", self.name,
                      extra={"operation": self.name, "elapsed_s": self.elapsed})
            if tm._listeners:
                tm._listeners.notify("grace_recovery", self.name)

    def _warn(self) -> None:
        if self.warned:
            return
        self.warned = True
        self.manager._stats_for(self.name).warnings += 1
        _log.warning("operation %r has used %.0f%% of its %.3fs", self.name,
                     self.manager.warning_threshold * 100, self.deadline - self.started,
                     extra={"operation": self.name, "elapsed_s": self.elapsed,
                            "deadline_s": self.deadline - self.started})

    def _expire(self) -> None:
        assert self._loop is not None and self._task is not None
        tm = self.manager
        now = tm.clock.now()
        if (not self.extended and self.last_progress is not None
                and now - self.last_progress <= tm.grace_period
                and self.deadline < self.hard_deadline):
            self.extended = True
            self.deadline = min(self.deadline + tm.grace_period, self.hard_deadline)
            tm._stats_for(self.name).grace_extensions += 1
            _log.info("operation %r made progress: %.3fs of grace", self.name, tm.grace_period,
                      extra={"operation": self.name, "elapsed_s": now - self.started})
            self._handles.append(_time.Timer(tm.clock, self.deadline, self._expire))
            return
        self.timed_out = True
        tm._stats_for(self.name).timeouts += 1
        _log.warning("operation %r timed out after %.3fs", self.name, now - self.started,
                     extra={"operation": self.name, "elapsed_s": now - self.started})
        self._task.cancel()
        if tm._listeners:
            tm._listeners.notify("timeout", self.name)


class TimeoutManager:
    """Deadlines for asyncio operations, with a progressive warning, a grace
    extension for operations that show progress, nesting and a global cap.

    - ``operation_timeout=300.0``: seconds an operation may take by default.
    - ``global_timeout=3600.0``: no operation, grace included, outlives this
      many seconds from its start.
    - ``grace_period=30.0``: an operation that called ``op.progress()`` within
      this many seconds when its deadline passes gets one extension of it.
    - ``warning_threshold=0.8``: with ``progressive=True``, a WARNING is
      logged once on logger ``resil.timeout`` at this fraction of the time.
    - ``progressive=True``.
    - ``clock=None``: what times the operations, any object with ``now()``
      in seconds; by default the running event loop's clock
      (``loop.time()``, virtual under :func:`resil.run_virtual`). The loop
      waits what the clock says is left and reads it again, so a deadline
      passes when the clock says so.
    """

    def __init__(self, operation_timeout: float = 300.0, *, global_timeout: float = 3600.0,
                 grace_period: float = 30.0, warning_threshold: float = 0.8,
                 progressive: bool = True, clock: Any = None) -> None:
        self.operation_timeout = _check.seconds(operation_timeout, "operation_timeout")
        self.global_timeout = _check.seconds(global_timeout, "global_timeout")
        self.grace_period = _check.seconds(grace_period, "grace_period", low_open=False)
        self.warning_threshold = _check.number(warning_threshold, "warning_threshold", 0.0, 1.0,
                                               low_open=True)
        self.progressive = _check.flag(progressive, "progressive")
        self.clock: Any = _time.clock_or_loop(clock)
        self._active: dict[int, Operation] = {}
        self._stats: dict[str, _NameStats] = {}
        # Told ("timeout" | "grace_recovery", operation name) as each happens.
        self._listeners = Listeners(_log)

    def _stats_for(self, name: str) -> _NameStats:
        stats = self._stats.get(name)
        if stats is None:
            stats = self._stats[name] = _NameStats()
        return stats

    def timeout(self, name: str, seconds: float | None = None) -> Operation:
        """``async with tm.timeout(name, seconds) as op:`` cancels the body and
        raises :class:`OperationTimeout` when the time is up (``seconds``
        defaults to ``operation_timeout``; a tighter enclosing deadline wins)."""
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, not {type(name).__name__}")
        secs = self.operation_timeout if seconds is None else _check.seconds(seconds, "seconds")
        return Operation(self, name, seconds=secs)

    async def run(self, fn: Callable[..., Awaitable[T]], name: str, seconds: float | None = None,
                  *args: Any) -> T:
        """Awaits ``fn(*args)`` under ``timeout(name, seconds)``."""
        async with self.timeout(name, seconds):
            return await fn(*args)

    async def run_with_breaker(self, fn: Callable[..., Awaitable[T]], name: str,
                               seconds: float | None, breaker: Any, *args: Any) -> T:
        """Like :meth:`run`, through ``breaker``: a timeout counts as a failure
        of the call, and an open breaker rejects before the clock starts."""
        async def timed() -> T:
            return await self.run(fn, name, seconds, *args)

        result: T = await breaker.call_async(timed)
        return result

    def active_operations(self) -> list[dict[str, Any]]:
        """The running operations: name, started, elapsed, deadline, warned."""
        return [{"name": op.name, "started": op.started, "elapsed": op.elapsed,
                 "deadline": op.deadline, "warned": op.warned, "extended": op.extended}
                for op in list(self._active.values())]

    def stats(self) -> dict[str, Any]:
        """The manager's counts, JSON-serialisable, in the vocabulary every
        resil component's ``stats()`` uses: started, completed, timeouts,
        warnings, grace_extensions and grace_recoveries over every
        operation, active (running now), and the same counts per operation
        name under ``per_name``."""
        per_name = {name: vars(s).copy() for name, s in list(self._stats.items())}
        totals = {key: sum(s[key] for s in per_name.values())
                  for key in vars(_NameStats()).keys()}
        return {**totals, "active": len(self._active), "per_name": per_name}

    @classmethod
    def from_env(cls: type[_TM], environ: Mapping[str, str] | None = None,
                 **overrides: Any) -> _TM:
        """A manager configured from environment variables, each also read
        under a ``RESIL_`` name that wins (``RESIL_TIMEOUT_GRACE_PERIOD``):

        - ``TIMEOUT_OPERATION_DEFAULT``: ``operation_timeout``, seconds.
        - ``TIMEOUT_GLOBAL_DEFAULT``: ``global_timeout``, seconds.
        - ``TIMEOUT_GRACE_PERIOD``: ``grace_period``, seconds.
        - ``TIMEOUT_WARNING_THRESHOLD``: ``warning_threshold``, a fraction
          of the time (0.8, not 80).

        ``environ`` (default ``os.environ``, read at this call only) is
        where the variables are looked up; a variable that is unset or
        empty leaves the constructor's default. ``overrides`` are the
        constructor's keyword arguments and win over the environment (the
        variable of an overridden parameter is not read); an unknown one
        raises TypeError. A value that does not parse, or that the
        constructor refuses, raises ValueError naming the variable and the
        value.
        """
        found = _env.read(environ, _ENV_SETTINGS, overrides)
        return _env.build(cls, found, overrides)


_TM = TypeVar("_TM", bound=TimeoutManager)

_ENV_SETTINGS = (
    _env.Setting("TIMEOUT_OPERATION_DEFAULT", "operation_timeout", _env.number()),
    _env.Setting("TIMEOUT_GLOBAL_DEFAULT", "global_timeout", _env.number()),
    _env.Setting("TIMEOUT_GRACE_PERIOD", "grace_period", _env.number()),
    _env.Setting("TIMEOUT_WARNING_THRESHOLD", "warning_threshold", _env.number()),
)
