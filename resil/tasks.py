"""Cancellation and deterministic shutdown of asyncio tasks."""

from __future__ import annotations

import asyncio
import enum
import logging
import sys
import threading
from collections.abc import Coroutine
from typing import Any

from resil import _check

__all__ = ["CancellationToken", "Outcome", "Supervisor", "shutdown_task"]

_log = logging.getLogger("resil.tasks")

# The task running on a loop, read on hot paths as ``_RUNNING.get(loop)``.
# From CPython 3.12 asyncio.current_task is C; before, it is a Python
# function around a lookup of the loop in asyncio.tasks._current_tasks
# (the dict the C task steps maintain), which costs a Python call per use
# on paths that run once per event. Those versions no longer change, so
# the dict is read directly there.
if sys.version_info >= (3, 12):
    class _CurrentTask:
        __slots__ = ()
        get = staticmethod(asyncio.current_task)

    _RUNNING: Any = _CurrentTask()
else:
    _RUNNING = asyncio.tasks._current_tasks  # type: ignore[attr-defined]


class CancellationToken:
    """A cancellation flag that tasks can wait on.

    ``cancel()`` (from any thread) sets it once and wakes every waiter at
    once; ``await wait()`` returns immediately when already cancelled. No
    polling: each waiter parks on a future of its own event loop.
    """

    def __init__(self) -> None:
        self._cancelled = False
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        """Sets the token and wakes every waiter; later calls do nothing."""
        with self._lock:
            if self._cancelled:
                return
            self._cancelled = True
            waiters, self._waiters = self._waiters, []
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for loop, fut in waiters:
            if loop is running:
                _wake(fut)
            elif not loop.is_closed():
                loop.call_soon_threadsafe(_wake, fut)

    async def wait(self) -> None:
        """Returns once the token is cancelled."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._cancelled:
                return
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.append((loop, fut))
        try:
            await fut
        finally:
            # Gone already when cancel() woke us; still listed when the
            # waiting task itself was cancelled.
            with self._lock:
                try:
                    self._waiters.remove((loop, fut))
                except ValueError:
                    pass

    def __repr__(self) -> str:
        return f"<CancellationToken cancelled={self._cancelled} waiters={len(self._waiters)}>"


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class Outcome(enum.Enum):
    """How a task ended under :func:`shutdown_task`."""

    OK = "ok"            # ended by itself with a result
    ERROR = "error"      # ended by itself with an exception
    ABORTED = "aborted"  # ended after it was cancelled
    TIMEOUT = "timeout"  # still running after graceful + forced


async def shutdown_task(task: asyncio.Task[Any], *, graceful: float = 5.0,
                        forced: float = 2.0) -> Outcome:
    """Stops a task in two phases and says how it ended.

    Waits up to ``graceful`` seconds for the task to end by itself (OK or
    ERROR), then cancels it and waits up to ``forced`` seconds more (ABORTED);
    a task still running then is TIMEOUT. Each outcome is logged on logger
    ``resil.tasks``. Never raises the task's exception; the caller is not
    cancelled by it.
    """
    if not isinstance(task, asyncio.Future):
        raise TypeError(f"shutdown_task needs an asyncio.Task, not {type(task).__name__}")
    graceful = _check.limit(graceful, "graceful")
    forced = _check.limit(forced, "forced")
    name = task.get_name() if isinstance(task, asyncio.Task) else repr(task)
    if not task.done():
        await asyncio.wait({task}, timeout=graceful)
    if task.done():
        outcome = _ended(task)
    else:
        task.cancel()
        await asyncio.wait({task}, timeout=forced)
        if task.done():
            if not task.cancelled():
                task.exception()  # retrieved: it ended with an error while being cancelled
            outcome = Outcome.ABORTED
        else:
            outcome = Outcome.TIMEOUT
    level = logging.WARNING if outcome in (Outcome.ERROR, Outcome.TIMEOUT) else logging.INFO
    _log.log(level, "task %s shut down: %s", name, outcome.name,
             extra={"task": name, "outcome": outcome.name})
    return outcome


def _ended(task: asyncio.Future[Any]) -> Outcome:
    if task.cancelled():
        return Outcome.ABORTED
    return Outcome.ERROR if task.exception() is not None else Outcome.OK


class Supervisor:
    """Tracks the background tasks it starts and shuts them all down in two
    phases. ``created`` counts every task started, ``active`` those still
    running."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()
        self.created = 0

    @property
    def active(self) -> int:
        return sum(1 for t in self._tasks if not t.done())

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str | None = None) -> asyncio.Task[Any]:
        """Starts coro as a tracked task."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.created += 1
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def shutdown(self, graceful: float = 5.0, forced: float = 2.0) -> dict[str, Outcome]:
        """Gives every task ``graceful`` seconds to finish, cancels the rest and
        waits ``forced`` seconds more; returns each task's outcome by name."""
        tasks = list(self._tasks)
        if not tasks:
            return {}
        outcomes = await asyncio.gather(*(shutdown_task(t, graceful=graceful, forced=forced) for t in tasks))
        return {t.get_name(): o for t, o in zip(tasks, outcomes)}

    def stats(self) -> dict[str, int]:
        """created (tasks started) and active (still running), in the
        vocabulary every resil component's ``stats()`` uses."""
        return {"created": self.created, "active": self.active}
