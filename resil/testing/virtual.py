"""Virtual time for asyncio: an event loop whose clock is a VirtualClock.

When nothing is ready to run, the loop jumps the clock to its next timer
instead of sleeping (work handed to an executor thread takes no virtual
time: while any is in flight the loop waits for it in real time), so ``asyncio.sleep(3600)`` returns at once with the
clock one hour later, and timeouts, retries and schedulers run
deterministically in tests.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from resil._resil import VirtualClock

__all__ = ["VirtualEventLoop", "run_virtual"]

T = TypeVar("T")

_MIN_STEP = 1e-9  # the clock's resolution: every jump makes progress


class _JumpingSelector(selectors.BaseSelector):
    """Polls real I/O without blocking; a wait with a timeout advances the clock."""

    def __init__(self, clock: VirtualClock) -> None:
        self._inner = selectors.DefaultSelector()
        self._clock = clock
        self.in_flight = 0  # executor jobs running: their threads wake the loop

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._inner.select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None or self.in_flight:
            # No timer is pending, or a thread is working: only another
            # thread can wake the loop, and that takes no virtual time.
            return self._inner.select(None)
        self._clock.advance(max(timeout, _MIN_STEP))
        return []

    def close(self) -> None:
        self._inner.close()

    def get_map(self) -> Any:
        return self._inner.get_map()


class VirtualEventLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose ``time()`` is ``clock.now()``."""

    def __new__(cls, clock: VirtualClock) -> VirtualEventLoop:
        # Checked before the loop exists: a half-made loop complains when collected.
        if not isinstance(clock, VirtualClock):
            raise TypeError(f"clock must be a resil.VirtualClock, not {type(clock).__name__}")
        return super().__new__(cls)

    def __init__(self, clock: VirtualClock) -> None:
        self._jumping = _JumpingSelector(clock)
        super().__init__(selector=self._jumping)
        self.clock = clock

    def time(self) -> float:
        return self.clock.now()

    def run_in_executor(self, executor: Any, func: Callable[..., T],  # type: ignore[override]
                        *args: Any) -> asyncio.Future[T]:  # (typeshed's TypeVarTuple form)
        future = super().run_in_executor(executor, func, *args)
        self._jumping.in_flight += 1
        future.add_done_callback(self._executor_done)
        return future

    def _executor_done(self, future: asyncio.Future[Any]) -> None:
        self._jumping.in_flight -= 1

    async def shutdown_default_executor(self, *args: Any, **kwargs: Any) -> None:
        # Joining threads is real work: no virtual timeout may cut it short
        # (asyncio.Runner passes one on 3.12+).
        await super().shutdown_default_executor()


def run_virtual(main: Coroutine[Any, Any, T], clock: VirtualClock | None = None) -> T:
    """Runs a coroutine to completion on a :class:`VirtualEventLoop`, like
    ``asyncio.run``; ``clock`` defaults to a new ``VirtualClock()``."""
    loop = VirtualEventLoop(clock if clock is not None else VirtualClock())
    try:
        with asyncio.Runner(loop_factory=lambda: loop) if hasattr(asyncio, "Runner") else _Runner310(loop) as runner:  # noqa: E501
            return runner.run(main)
    finally:
        if not loop.is_closed():
            loop.close()


class _Runner310:
    """asyncio.Runner for Python 3.10: sets the loop, runs, and on the way
    out does what asyncio.run does there: cancels the tasks still pending
    and waits for them (reporting their errors), then shuts down async
    generators and the default executor."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def __enter__(self) -> _Runner310:
        asyncio.set_event_loop(self._loop)
        return self

    def __exit__(self, *exc: object) -> None:
        loop = self._loop
        try:
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            for task in tasks:
                if not task.cancelled() and task.exception() is not None:
                    loop.call_exception_handler({
                        "message": "unhandled exception during run_virtual() shutdown",
                        "exception": task.exception(), "task": task})
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            self._loop.close()

    def run(self, main: Coroutine[Any, Any, T]) -> T:
        return self._loop.run_until_complete(main)
