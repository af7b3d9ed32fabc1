"""Non-blocking event emission to sinks."""

from __future__ import annotations

import asyncio
import datetime
import inspect
import logging
import math
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, TypeVar

from resil import _check, _env, _time
from resil.messaging.deadletters import DeadLetterHandoff, DeadLetterSink, check_sink
from resil.messaging.queues import BoundedQueue
from resil.errors import _Message
from resil._resil import CircuitOpenError, QueueFull, ResilError

__all__ = ["EventEmitter", "EmitterClosed"]

_log = logging.getLogger("resil.emitter")

_OVERFLOW = ("reject", "drop_oldest", "block")
# While the breaker rejects and gives no time to wait (HALF_OPEN with every
# probe taken, FORCED_OPEN), the sender waits this long, doubling up to the cap.
_REJECTED_WAIT_FIRST = 0.01
_REJECTED_WAIT_MAX = 1.0
# While the queue has events the sender takes them without suspending (a
# sink that completes at once never suspends either); it gives the loop a
# turn once it has run this long, looking at the clock after a failure or
# every 32 events, so a long queue of failing events stalls no other task.
_TURN_SECONDS = 0.001


class EmitterClosed(_Message, ResilError, RuntimeError):
    """The emitter is closed: raised by ``put`` and ``start`` after ``close``,
    and recorded in the dead-letter queue for events still queued or in
    flight when it closed. Also a RuntimeError."""


class EventEmitter:
    """Emits events to a sink from a background task.

    ``EventEmitter(sink, *, queue_size=1000, batch_size=1, flush_interval=0.0,
    overflow="reject", breaker=None, retry=None, dlq=None, clock=None)``.

    - ``sink``: a function or an async function called with each event (or
      with a list of events when ``batch_size > 1``); its result is awaited
      when it is awaitable. An exception from it is a failed delivery.
    - ``emit(event) -> bool`` never blocks and never calls the sink: it
      queues the event (a :class:`BoundedQueue` of ``queue_size``, an int in
      [1, 2**30]) and a background task calls the sink, with up to
      ``batch_size`` events (an int in [1, queue_size]) when
      ``batch_size > 1``; a batch is sent when full, when the queue is empty,
      or - with ``flush_interval`` > 0 (seconds, finite) - after waiting that
      long for it to fill.
    - ``overflow`` when the queue is full: ``"reject"`` (emit returns False,
      counted as dropped), ``"drop_oldest"`` (the oldest queued event is
      dropped and counted, the new one queued), ``"block"`` (emit returns
      False and counts it as rejected; ``await put(event)`` waits for room).
    - ``retry``: a ``resil.retry(...)`` decorator applied to each sink call.
      ``breaker``: a :class:`CircuitBreaker` guarding sink calls; while it
      rejects (OPEN, FORCED_OPEN, or HALF_OPEN with every probe taken) the
      events wait in the queue and the sender sleeps: until the breaker's
      remaining cooldown has passed, else 10 ms doubling up to 1 s.
    - ``dlq``: a :class:`DeadLetterSink` (such as a
      :class:`DeadLetterQueue`) receiving each event that still failed as
      ``put(event, error, source="emitter", attempts=n)``, with ``error``
      the sink's last exception and ``n`` the number of sink calls made for
      the event. Dead letters reach it one ``put`` at a time, in order: from
      a worker thread when the dlq is ``blocking`` (a queue over a
      :class:`SQLiteStore`), so a disk write never blocks the event loop;
      an awaitable ``put`` returns is awaited before the next. The sender
      waits while ``queue_size`` dead letters are still unwritten. Every
      event ends delivered, dead-lettered, or counted as dropped (also when
      the dlq refuses it).
    - ``async with emitter:`` starts and closes it; ``await close(graceful=5.0,
      forced=2.0)`` waits for the queue to drain, then cancels the sender;
      events still queued or in flight go to ``dlq`` with
      :class:`EmitterClosed` (else count as dropped). ``close`` is
      idempotent, keeps going when its caller is cancelled, and returns
      within graceful + forced (dead letters not yet written by then are
      still written by the worker thread). After ``close``, ``emit``
      returns False and counts a drop; ``put`` and ``start`` raise
      :class:`EmitterClosed`.
    - ``clock=None``: what times ``flush_interval``, the waits while the
      breaker rejects and the limits of ``close``: any object with
      ``now()`` in seconds, by default the running event loop's clock.

    Every argument after ``sink`` is keyword-only.
    """

    def __init__(self, sink: Callable[[Any], Any], *, queue_size: int = 1000,
                 batch_size: int = 1, flush_interval: float = 0.0, overflow: str = "reject",
                 breaker: Any = None, retry: Callable[[Any], Any] | None = None,
                 dlq: DeadLetterSink | None = None, clock: Any = None) -> None:
        if not callable(sink):
            raise TypeError(f"sink must be a function or an async function, not "
                            f"{type(sink).__name__}")
        try:
            queue: BoundedQueue[Any] = BoundedQueue(queue_size, warn_at=0.8, reject_at=1.0)
        except (TypeError, ValueError) as exc:
            # The queue checks the size; the user passed it as queue_size.
            text = str(exc)
            if text.startswith("maxsize"):
                text = "queue_size" + text[len("maxsize"):]
            raise type(exc)(text) from None
        _check.integer(batch_size, "batch_size", 1, queue_size)
        flush = _check.seconds(flush_interval, "flush_interval", low_open=False)
        _check.choice(overflow, "overflow", _OVERFLOW)
        if breaker is not None and not callable(getattr(breaker, "call_async", None)):
            raise TypeError(f"breaker must be a resil.CircuitBreaker, not {type(breaker).__name__}")
        if retry is not None and not callable(retry):
            raise TypeError(f"retry must be a resil.retry(...) decorator, not "
                            f"{type(retry).__name__}")
        sink_for_dead_letters = check_sink(dlq)
        self._clock: Any = _time.clock_or_loop(clock)
        self._queue = queue
        self._sink = sink
        self._batch_size = batch_size
        self._flush_interval = flush
        self._overflow = overflow
        self._breaker = breaker
        self._dlq = dlq
        self._retry = retry
        self._dead_letters = None if sink_for_dead_letters is None else \
            DeadLetterHandoff(sink_for_dead_letters, _log)
        # Without breaker or retry, one event at a time, the sender calls
        # the sink itself (_run_plain).
        self._plain = retry is None and breaker is None and batch_size == 1
        self._send: Callable[[Any], Any] = self._call_sink
        if retry is not None:
            self._send = retry(self._attempt)
        elif breaker is not None:
            self._send = self._attempt
        self._task: asyncio.Task[None] | None = None
        # Events taken from the queue and not yet delivered or handed to the
        # dlq; close() dead-letters what is left here when it cancels the sender.
        self._in_flight: list[Any] = []
        self._calls = 0                  # sink calls made for the events in flight
        self._sink_error: BaseException | None = None  # the last exception raised by the sink
        self._closing = False
        self._swept = False              # close() has taken every queued event
        self._stopping = False           # close() is cancelling the sender
        self._closer: asyncio.Task[None] | None = None
        self._counts = {"accepted": 0, "emitted": 0, "failures": 0, "dropped": 0, "rejected": 0}
        self._last_emission: float | None = None  # time.time(); formatted in status()

    # ---- producing ----------------------------------------------------------
    def emit(self, event: Any) -> bool:
        """Queues event without blocking; False when it was not queued.
        Other threads may call it too (the queue operations are atomic and
        wake the sender on its loop); an event one of them emits while
        ``close`` runs is either dead-lettered or returns False."""
        q = self._queue
        if self._closing:
            self._counts["dropped"] += 1
            return False
        if not q.full():
            try:
                q.put_nowait(event)
            except QueueFull:
                pass  # another thread filled the queue since full()
            else:
                if self._swept:
                    return self._accepted()
                self._counts["accepted"] += 1  # _accepted's common case, inline
                return True
        if self._overflow == "reject":
            self._counts["dropped"] += 1
            return False
        if self._overflow == "block":
            self._counts["rejected"] += 1
            return False
        while True:  # drop_oldest; other threads may take or add items meanwhile
            try:
                q.get_nowait()
            except asyncio.QueueEmpty:
                pass
            else:
                q.task_done()
                self._counts["dropped"] += 1
            try:
                q.put_nowait(event)
            except QueueFull:
                continue
            return self._accepted()

    def _accepted(self) -> bool:
        """Counts an event emit just queued; True. An emit from another
        thread that queued its event after close() took the queued events
        takes one back out and counts it as dropped (False)."""
        if self._swept:
            try:
                self._queue.get_nowait()
            except asyncio.QueueEmpty:
                pass  # close() took this event: it is dead-lettered
            else:
                self._queue.task_done()
                self._counts["dropped"] += 1
                return False
        self._counts["accepted"] += 1
        return True

    async def put(self, event: Any) -> None:
        """Waits for room, then queues event (the awaiting form of emit).
        Raises :class:`EmitterClosed` when the emitter is closed, also when it
        closes while this call waits; the event is then not taken."""
        q = self._queue
        if self._closing:
            raise EmitterClosed("the emitter is closed")
        if q.full():
            await q.put(event)
            if self._swept:
                # close() emptied the queue and wakes the waiting puts: nothing
                # sends what they add, so this one takes its event back out.
                q.get_nowait()
                q.task_done()
                raise EmitterClosed("the emitter closed while put was waiting for room")
        else:
            q.put_nowait(event)  # room now: no coroutine to wait in
        self._counts["accepted"] += 1

    # ---- lifecycle ----------------------------------------------------------
    def start(self) -> None:
        """Starts the background sender in the running event loop."""
        if self._closing:
            raise EmitterClosed("the emitter is closed")
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
        as dropped. Both are seconds >= 0 (``inf``: no limit); a bad value
        raises before anything changes. Idempotent: a second call waits for
        the first. Cancelling the caller does not stop the closing."""
        graceful = _check.limit(graceful, "graceful")
        forced = _check.limit(forced, "forced")
        if self._closer is None:
            self._closing = True
            self._closer = asyncio.get_running_loop().create_task(
                self._close(graceful, forced), name="resil-emitter-close")
        await asyncio.shield(self._closer)

    async def _drain_until(self, until: float) -> bool:
        """Waits until every queued event was processed, or the clock
        reaches ``until``; True when processed."""
        if not self._queue.unfinished_tasks:
            return True
        return await _time.await_until(self._queue.join, self._clock, until)

    async def _close(self, graceful: float, forced: float) -> None:
        clock = self._clock
        drain_until = clock.now() + graceful
        deadline = drain_until + forced
        q = self._queue
        task = self._task
        if task is not None and not task.done():
            drained = await self._drain_until(drain_until)
            while drained:
                await asyncio.sleep(0)  # a put woken by the last take adds its event now
                if not q.unfinished_tasks:
                    break
                drained = await self._drain_until(drain_until)
            if not drained:
                _log.warning("emitter did not drain in %.3fs; cancelling its sender", graceful)
            self._stopping = True
            task.cancel()
            await _time.wait_until({task}, clock, clock.now() + forced)
        leftovers: list[tuple[Any, int]] = []
        if task is not None and task.done() and not task.cancelled() \
                and task.exception() is not None:
            _log.error("emitter's sender had stopped on %r", task.exception())
        if task is None or task.done():
            leftovers = [(event, self._calls) for event in self._in_flight]
            self._in_flight = []
        else:
            # The sender ignored its cancellation: it still owns its events
            # and stops after them.
            _log.warning("emitter's sender still running %.3fs after cancellation", forced)
        self._swept = True
        while not q.empty():
            leftovers.append((q.get_nowait(), 0))
            q.task_done()
        # After the dead letters the sender handed over (the handoff keeps the order).
        closed = EmitterClosed("emitter closed before delivery")
        for event, attempts in leftovers:
            self._dead_letter(event, closed, attempts)
        dead_letters = self._dead_letters
        if dead_letters is not None and dead_letters.pending:
            await dead_letters.flush(max(deadline - clock.now(), 0.0))
            if dead_letters.pending:
                _log.warning("emitter closed with %d dead letters still being written",
                             dead_letters.pending)

    # ---- sending ------------------------------------------------------------
    async def _call_sink(self, payload: Any) -> Any:
        self._calls += 1
        try:
            result = self._sink(payload)
            if inspect.isawaitable(result):
                result = await result
        except BaseException as exc:
            self._sink_error = exc
            raise
        return result

    async def _attempt(self, payload: Any) -> Any:
        if self._breaker is not None:
            return await self._breaker.call_async(self._call_sink, payload)
        return await self._call_sink(payload)

    async def _run(self) -> None:
        if self._plain:
            await self._run_plain()
            return
        q = self._queue
        turn = time.perf_counter()
        while not self._stopping:
            if q.empty():
                first = await q.get()
                turn = time.perf_counter()
            else:
                if time.perf_counter() - turn >= _TURN_SECONDS:
                    await asyncio.sleep(0)
                    turn = time.perf_counter()
                    continue
                first = q.get_nowait()
            # In flight from the moment it leaves the queue: close() sees
            # every event the sender holds, also while a batch fills.
            batch = self._in_flight = [first]
            self._calls = 0
            taken = 0
            try:
                if self._batch_size > 1:
                    await self._fill(batch)
                taken = len(batch)
                await self._deliver()
            finally:
                self._sink_error = None  # holds a traceback: not beyond this batch
                for _ in range(taken or len(batch)):
                    q.task_done()

    async def _run_plain(self) -> None:
        """The sender for one event at a time with no breaker and no retry:
        the sink is called inline, items are taken without a coroutine while
        the queue has them."""
        q, sink, counts = self._queue, self._sink, self._counts
        isawaitable, clock = inspect.isawaitable, time.perf_counter
        is_async = inspect.iscoroutinefunction(sink)  # its result is always awaited
        self._calls = 1  # one call per event here
        work, turn = 0, clock()
        while True:
            if q.empty():
                if self._stopping:  # close() cancelled this task and it went on
                    return
                event = await q.get()
                work, turn = 0, clock()
            else:
                work += 1
                if not work & 31 and clock() - turn >= _TURN_SECONDS:
                    await asyncio.sleep(0)
                    work, turn = 0, clock()
                    continue
                event = q.get_nowait()
            self._in_flight = [event]
            try:
                try:
                    if is_async:
                        await sink(event)
                    else:
                        result = sink(event)
                        if result is not None and isawaitable(result):
                            await result
                except Exception as exc:
                    work = 31  # failures are slow: look at the clock next time
                    await self._failed(exc)
                else:
                    self._in_flight = []
                    counts["emitted"] += 1
                    self._last_emission = time.time()
            finally:
                q.task_done()

    async def _fill(self, batch: list[Any]) -> None:
        q, size = self._queue, self._batch_size
        get = q.get_nowait
        deadline = self._clock.now() + self._flush_interval
        while True:
            for _ in range(min(size - len(batch), q.qsize())):
                batch.append(get())
            if len(batch) >= size or self._flush_interval <= 0 or self._clock.now() >= deadline:
                return
            got, item = await self._get_before(deadline)
            if not got:
                return
            batch.append(item)  # no suspension since the get: never held outside the batch

    async def _get_before(self, deadline: float) -> tuple[bool, Any]:
        """Waits for the next event until the clock reaches deadline:
        (True, event), or (False, None) when the time ran out."""
        task = asyncio.current_task()
        assert task is not None
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            task.cancel()

        # A timer that cancels this task, like asyncio.timeout (3.11+): the
        # wait happens in this task, so no event is ever held by another.
        timer = _time.Timer(self._clock, deadline, expire)
        try:
            return True, await self._queue.get()
        except asyncio.CancelledError:
            if not expired or self._stopping:
                raise
            uncancel = getattr(task, "uncancel", None)
            if uncancel is not None:
                uncancel()
            return False, None
        finally:
            timer.cancel()

    def _rejected_wait(self, exc: CircuitOpenError, backoff: float) -> float:
        remaining = getattr(exc, "remaining", None)
        if isinstance(remaining, (int, float)) and math.isfinite(remaining) and remaining > 0:
            return float(remaining)
        return backoff

    async def _deliver(self) -> None:
        """Sends the events in flight (the sender owns them: nothing else
        changes the list while this runs)."""
        batch = self._in_flight
        payload: Any = list(batch) if self._batch_size > 1 else batch[0]
        self._sink_error = None
        backoff = _REJECTED_WAIT_FIRST
        while True:
            calls = self._calls
            try:
                await self._send(payload)
            except CircuitOpenError as exc:
                if exc is self._sink_error:  # the sink's own breaker: a failure
                    await self._failed(exc)
                    return
                if self._calls > calls:
                    # The sink failed and the breaker opened before a retry:
                    # the events have had their calls; they fail with its error.
                    last = self._sink_error
                    await self._failed(last if isinstance(last, Exception) else exc)
                    return
                # Rejected without a call: the events wait in flight while
                # the sender sleeps, so the loop runs on.
                await _time.sleep_until(self._clock,
                                        self._clock.now() + self._rejected_wait(exc, backoff))
                backoff = min(backoff * 2, _REJECTED_WAIT_MAX)
                continue
            except Exception as exc:
                await self._failed(exc)
                return
            self._in_flight = []
            self._counts["emitted"] += len(batch)
            self._last_emission = time.time()
            return

    async def _failed(self, exc: Exception) -> None:
        """Dead-letters every event in flight after the sink failed for them."""
        batch = self._in_flight
        self._counts["failures"] += len(batch)
        _log.warning("sink failed for %d event(s): %r", len(batch), exc)
        attempts = self._calls
        for event in batch:
            self._dead_letter(event, exc, attempts)
        batch.clear()  # handed over: close() never hands them over again
        dead_letters = self._dead_letters
        if dead_letters is not None and dead_letters.pending >= self._queue.maxsize:
            await dead_letters.room(self._queue.maxsize)  # the dlq is slow: let it catch up

    # ---- dead letters -------------------------------------------------------
    def _dead_letter(self, event: Any, error: BaseException, attempts: int) -> None:
        """Hands one event to the dlq (counted as dropped without one)."""
        if self._dead_letters is None:
            self._counts["dropped"] += 1
        else:
            self._dead_letters.send(event, error, "emitter", attempts)

    # ---- reading ------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """The emitter's counters, JSON-serialisable, in the vocabulary every
        resil component's ``stats()`` uses: ``depth`` (events queued now),
        ``in_flight`` (taken by the sender, not yet delivered or
        dead-lettered), ``accepted`` (queued by emit or put), ``emitted``
        (delivered), ``failures`` (events whose sink call failed),
        ``rejected`` (emit returned False on a full queue with
        ``overflow="block"``), ``dropped`` (lost: overflow, emit after
        close, failed with no dlq or refused by it), ``dead_lettered``
        (handed to the dlq), ``dead_letters_pending`` (not yet written),
        ``last_emission`` (ISO 8601 UTC or None), ``breaker`` (its state
        name or None) and ``running``."""
        last = self._last_emission
        counts = self._counts
        dead_letters = self._dead_letters
        handed, refused, pending = (0, 0, 0) if dead_letters is None else (
            dead_letters.handed, dead_letters.refused, dead_letters.pending)
        return {
            "depth": self._queue.qsize(),
            "emitted": counts["emitted"],
            "failures": counts["failures"],
            "dropped": counts["dropped"] + refused,
            "last_emission": None if last is None else datetime.datetime.fromtimestamp(
                last, datetime.timezone.utc).isoformat().replace("+00:00", "Z"),
            "breaker": None if self._breaker is None else self._breaker.state.name,
            "accepted": counts["accepted"],
            "rejected": counts["rejected"],
            "dead_lettered": handed,
            "dead_letters_pending": pending,
            "in_flight": len(self._in_flight),
            "running": self._task is not None and not self._task.done(),
        }

    def status(self) -> dict[str, Any]:
        """The status document of the event emitter resil's emitter
        generalises, in that document's own key names, for dashboards built
        on it: ``queue_size`` (the ``depth`` of :meth:`stats`), ``emitted``,
        ``failed`` (``failures``), ``dropped``, ``last_emission`` and
        ``breaker``. :meth:`stats` has these and more in the vocabulary
        every resil component uses."""
        stats = self.stats()
        return {"queue_size": stats["depth"], "emitted": stats["emitted"],
                "failed": stats["failures"], "dropped": stats["dropped"],
                "last_emission": stats["last_emission"], "breaker": stats["breaker"]}

    def __repr__(self) -> str:
        return f"<EventEmitter queued={self._queue.qsize()} emitted={self._counts['emitted']}>"

    @property
    def dlq(self) -> DeadLetterSink | None:
        """The dead-letter queue given as ``dlq`` (or made by :meth:`from_env`), or None."""
        return self._dlq

    @classmethod
    def from_env(cls: type[_E], sink: Callable[[Any], Any],
                 environ: Mapping[str, str] | None = None, *, topic: str | None = None,
                 **overrides: Any) -> _E:
        """An emitter for ``sink`` configured from environment variables,
        each also read under a ``RESIL_`` name that wins
        (``RESIL_KAFKA_ENABLE_DLQ``):

        - ``KAFKA_MAX_RETRIES`` and ``KAFKA_TIMEOUT_SECONDS``: when either is
          set, ``retry=resil.retry(retries=..., deadline=...)`` (an int >= 0,
          default 3; seconds, default none): the sink is called again for a
          failed event up to that many times, and the deadline bounds one
          event's delivery, its retries and their sleeps included.
        - ``KAFKA_ENABLE_DLQ`` (a boolean: 1/0, true/false, yes/no, on/off):
          when true, ``dlq=`` a new in-memory
          :class:`~resil.DeadLetterQueue` named ``topic`` +
          ``KAFKA_DLQ_SUFFIX`` (default ``".dlq"``). As with a message bus
          whose failed messages go to their topic's dead-letter topic, the
          topic is where the events were going: ``topic=`` (a non-empty
          str), by default the sink's ``__name__`` (or its type's name).

        ``environ`` (default ``os.environ``, read at this call only) is
        where the variables are looked up; a variable that is unset or
        empty leaves the constructor's default. ``overrides`` are the
        constructor's keyword arguments and win over the environment:
        ``retry=`` over the first two variables, ``dlq=`` over the last two
        (which are then not read); an unknown one raises TypeError. A value
        that does not parse, or that is refused, raises ValueError naming
        the variable and the value.
        """
        env = _env.environment(environ)
        extra: dict[str, Any] = {}
        if "retry" not in overrides:
            found = _env.read(env, _ENV_RETRY, {})
            if found:
                from resil.policies.retry import retry as make_retry
                extra["retry"] = _env.build(make_retry, found, {})
        enabled = None if "dlq" in overrides else _env.read(env, _ENV_DLQ, {}).get("dlq")
        if enabled is not None and enabled.value:
            if topic is None:
                topic = getattr(sink, "__name__", None) or type(sink).__name__
            _check.text(topic, "topic")
            from resil.messaging.dlq import DeadLetterQueue
            suffix = _env.read(env, _ENV_SUFFIX, {}).get("name")
            name = topic + (".dlq" if suffix is None else suffix.value)
            found = {} if suffix is None else {"name": suffix}
            extra["dlq"] = _env.build(DeadLetterQueue, found, {}, {"name": name})

        def make(**kwargs: Any) -> _E:
            return cls(sink, **kwargs)

        return _env.build(make, {}, overrides, extra)


_E = TypeVar("_E", bound=EventEmitter)

_ENV_RETRY = (
    _env.Setting("KAFKA_MAX_RETRIES", "retries", _env.integer),
    _env.Setting("KAFKA_TIMEOUT_SECONDS", "deadline", _env.number()),
)
_ENV_DLQ = (_env.Setting("KAFKA_ENABLE_DLQ", "dlq", _env.flag),)
_ENV_SUFFIX = (_env.Setting("KAFKA_DLQ_SUFFIX", "name", _env.text),)
