"""Non-blocking event emission to async sinks (SPEC section 7)."""

from __future__ import annotations

import asyncio
import datetime
import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

from resil._queues import BoundedQueue
from resil._resil import CircuitOpenError, State

__all__ = ["EventEmitter"]

_log = logging.getLogger("resil.emitter")

_OVERFLOW = ("reject", "drop_oldest", "block")
_REJECTING = (State.OPEN, State.FORCED_OPEN)
_POLL_WHILE_FORCED_OPEN = 1.0  # seconds between looks at a forced-open breaker


class EmitterClosed(Exception):
    """The error recorded in the dead-letter queue for events still queued or
    in flight when an emitter was closed."""


class EventEmitter:
    """Emits events to an async sink from a background task.

    ``EventEmitter(sink, queue_size=1000, batch_size=1, flush_interval=0.0,
    overflow="reject", breaker=None, retry=None, dlq=None)``.

    - ``emit(event) -> bool`` never blocks and never awaits the sink: it
      queues the event (a :class:`BoundedQueue` of ``queue_size``) and a
      background task calls ``await sink(event)``, or ``await sink(list)``
      with up to ``batch_size`` events when ``batch_size > 1``; a batch is
      sent when full, when the queue is empty, or - with ``flush_interval``
      > 0 - after waiting that long for it to fill.
    - ``overflow`` when the queue is full: ``"reject"`` (emit returns False,
      counted as dropped), ``"drop_oldest"`` (the oldest queued event is
      dropped and counted, the new one queued), ``"block"`` (emit returns
      False and counts it as refused; ``await put(event)`` waits for room).
    - ``retry``: a ``resil.retry(...)`` decorator applied to each sink call;
      ``breaker``: guards sink calls, and while it is OPEN events wait in the
      queue; ``dlq``: any object with ``put(item, error, source=...,
      attempts=...)`` receiving each event that still failed. Every event
      ends delivered, dead-lettered, or counted as dropped.
    - ``async with emitter:`` starts and closes it; ``await close(graceful=5.0,
      forced=2.0)`` waits for the queue to drain, then cancels the sender;
      events still queued or in flight go to ``dlq`` (else count as
      dropped). ``close`` is idempotent and returns within graceful + forced.
    """

    def __init__(self, sink: Callable[[Any], Awaitable[Any]], queue_size: int = 1000,
                 batch_size: int = 1, flush_interval: float = 0.0, overflow: str = "reject",
                 breaker: Any = None, retry: Callable[[Any], Any] | None = None,
                 dlq: Any = None) -> None:
        if not callable(sink):
            raise TypeError(f"sink must be an async callable, not {type(sink).__name__}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int):
            raise TypeError(f"batch_size must be an int, not {type(batch_size).__name__}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        if isinstance(flush_interval, bool) or not isinstance(flush_interval, (int, float)):
            raise TypeError("flush_interval must be a number of seconds")
        if not 0 <= flush_interval < float("inf"):
            raise ValueError(f"flush_interval must be a finite number >= 0, got {flush_interval!r}")
        if overflow not in _OVERFLOW:
            raise ValueError(f"overflow must be one of {', '.join(map(repr, _OVERFLOW))}, "
                             f"got {overflow!r}")
        if breaker is not None and not callable(getattr(breaker, "call_async", None)):
            raise TypeError("breaker must be a resil.CircuitBreaker")
        if retry is not None and not callable(retry):
            raise TypeError("retry must be a resil.retry(...) decorator")
        if dlq is not None and not callable(getattr(dlq, "put", None)):
            raise TypeError("dlq must have a put(item, error, ...) method")
        self._queue: BoundedQueue[Any] = BoundedQueue(queue_size, warn_at=0.8, reject_at=1.0)
        self._sink = sink
        self._batch_size = batch_size
        self._flush_interval = float(flush_interval)
        self._overflow = overflow
        self._breaker = breaker
        self._dlq = dlq
        # Without breaker or retry the sender calls the sink itself.
        if retry is not None:
            self._send = retry(self._attempt)
        elif breaker is not None:
            self._send = self._attempt
        else:
            self._send = sink
        self._task: asyncio.Task[None] | None = None
        self._in_flight: list[Any] = []
        self._closing = False
        self._closed: asyncio.Future[None] | None = None
        self._counts = {"accepted": 0, "emitted": 0, "failed": 0, "dropped": 0, "refused": 0,
                        "dead_lettered": 0}
        self._last_emission: float | None = None  # time.time(); formatted in status()

    # ---- producing ----------------------------------------------------------
    def emit(self, event: Any) -> bool:
        """Queues event without blocking; False when it was not queued."""
        q = self._queue
        if self._closing:
            self._counts["dropped"] += 1
            return False
        if q.full():
            if self._overflow == "drop_oldest":
                q.get_nowait()
                q.task_done()
                self._counts["dropped"] += 1
            elif self._overflow == "reject":
                self._counts["dropped"] += 1
                return False
            else:
                self._counts["refused"] += 1
                return False
        q.put_nowait(event)
        self._counts["accepted"] += 1
        return True

    async def put(self, event: Any) -> None:
        """Waits for room, then queues event (the awaiting form of emit)."""
        if self._closing:
            raise RuntimeError("the emitter is closed")
        if self._queue.full():
            await self._queue.put(event)
        else:
            self._queue.put_nowait(event)  # room now: no coroutine to wait in
        self._counts["accepted"] += 1

    # ---- lifecycle ----------------------------------------------------------
    def start(self) -> None:
        """Starts the background sender in the running event loop."""
        if self._closing:
            raise RuntimeError("the emitter is closed")
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="resil-emitter")

    async def __aenter__(self) -> EventEmitter:
        self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self, graceful: float = 5.0, forced: float = 2.0) -> None:
        """Drains for up to ``graceful`` seconds, then cancels the sender and
        waits up to ``forced`` more; what is left goes to the DLQ or is counted
        as dropped. Idempotent."""
        if self._closed is not None:
            await asyncio.shield(self._closed)
            return
        loop = asyncio.get_running_loop()
        self._closed = loop.create_future()
        self._closing = True
        try:
            task = self._task
            if task is not None and not task.done():
                if not await self._queue.drain(graceful):
                    _log.warning("emitter did not drain in %.3fs; cancelling its sender", graceful)
                task.cancel()
                await asyncio.wait({task}, timeout=forced)
            leftovers = list(self._in_flight)
            self._in_flight.clear()
            while not self._queue.empty():
                leftovers.append(self._queue.get_nowait())
                self._queue.task_done()
            for event in leftovers:
                await self._dead_letter(event, EmitterClosed("emitter closed before delivery"), 0)
        finally:
            self._closed.set_result(None)

    # ---- sending ------------------------------------------------------------
    async def _attempt(self, payload: Any) -> Any:
        if self._breaker is not None:
            return await self._breaker.call_async(self._sink, payload)
        return await self._sink(payload)

    async def _run(self) -> None:
        if self._batch_size == 1 and self._send is self._sink:
            await self._run_plain()
            return
        q = self._queue
        while True:
            batch = [await q.get()]
            if self._batch_size > 1:
                await self._fill(batch)
            self._in_flight = batch
            try:
                await self._deliver(batch)
            except BaseException:
                # Cancelled by close(): the batch stays in flight for close()
                # to dead-letter, so no event is lost.
                for _ in batch:
                    q.task_done()
                raise
            self._in_flight = []
            for _ in batch:
                q.task_done()

    async def _run_plain(self) -> None:
        """The sender for one event at a time with no breaker and no retry:
        the sink is awaited inline, items are taken without a coroutine while
        the queue has them."""
        q, sink, counts = self._queue, self._sink, self._counts
        while True:
            event = q.get_nowait() if not q.empty() else await q.get()
            self._in_flight = [event]
            try:
                await sink(event)
            except asyncio.CancelledError:
                q.task_done()  # close() dead-letters the in-flight event
                raise
            except Exception as exc:
                counts["failed"] += 1
                _log.warning("sink failed for 1 event(s): %r", exc)
                await self._dead_letter(event, exc, 1)
            else:
                counts["emitted"] += 1
                self._last_emission = time.time()
            self._in_flight = []
            q.task_done()

    async def _fill(self, batch: list[Any]) -> None:
        q, size = self._queue, self._batch_size
        get = q.get_nowait
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._flush_interval
        while True:
            for _ in range(min(size - len(batch), q.qsize())):
                batch.append(get())
            if len(batch) >= size or self._flush_interval <= 0:
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            try:
                batch.append(await asyncio.wait_for(q.get(), remaining))
            except asyncio.TimeoutError:
                return

    async def _wait_for_breaker(self) -> None:
        breaker = self._breaker
        while breaker is not None and breaker.state in _REJECTING:
            remaining = breaker.remaining
            await asyncio.sleep(_POLL_WHILE_FORCED_OPEN if remaining is None else max(remaining, 0.0))

    async def _deliver(self, batch: list[Any]) -> None:
        payload: Any = batch if self._batch_size > 1 else batch[0]
        while True:
            if self._breaker is not None:
                await self._wait_for_breaker()  # while OPEN, the events wait here
            try:
                await self._send(payload)
            except CircuitOpenError:
                continue  # opened (or probes ran out) meanwhile: wait again
            except Exception as exc:
                self._counts["failed"] += len(batch)
                _log.warning("sink failed for %d event(s): %r", len(batch), exc)
                for event in batch:
                    await self._dead_letter(event, exc, 1)
                return
            self._counts["emitted"] += len(batch)
            self._last_emission = time.time()
            return

    async def _dead_letter(self, event: Any, error: BaseException, attempts: int) -> None:
        if self._dlq is None:
            self._counts["dropped"] += 1
            return
        try:
            result = self._dlq.put(event, error, source="emitter", attempts=attempts)
            if inspect.isawaitable(result):
                await result
        except Exception:
            _log.exception("dead-letter queue refused an event; it is counted as dropped")
            self._counts["dropped"] += 1
            return
        self._counts["dead_lettered"] += 1

    # ---- reading ------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """queue_size, emitted, failed, dropped, last_emission (ISO 8601 UTC or
        None), breaker (its state name or None), and the other counters."""
        last = self._last_emission
        return {
            "queue_size": self._queue.qsize(),
            "emitted": self._counts["emitted"],
            "failed": self._counts["failed"],
            "dropped": self._counts["dropped"],
            "last_emission": None if last is None else datetime.datetime.fromtimestamp(
                last, datetime.timezone.utc).isoformat().replace("+00:00", "Z"),
            "breaker": None if self._breaker is None else self._breaker.state.name,
            "accepted": self._counts["accepted"],
            "refused": self._counts["refused"],
            "dead_lettered": self._counts["dead_lettered"],
            "in_flight": len(self._in_flight),
            "running": self._task is not None and not self._task.done(),
        }

    def __repr__(self) -> str:
        return f"<EventEmitter queued={self._queue.qsize()} emitted={self._counts['emitted']}>"
