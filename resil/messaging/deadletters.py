"""What a dead-letter target is, and the one way resil's components hand
dead letters to one.

:class:`DeadLetterSink` is the protocol every ``dlq=`` parameter accepts
(:class:`DeadLetterQueue` satisfies it, in memory or over a store);
:class:`DeadLetterHandoff` is how :class:`EventEmitter` and
:class:`EventBus` give it their dead letters from an event loop.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, cast, runtime_checkable

from resil._hooks import Listeners

__all__ = ["DeadLetter", "DeadLetterSink"]


#: One processing attempt of a dead letter: (Unix time, error text, source).
Attempt = tuple[float, str, str | None]

#: Attempts an entry's history keeps: the first and the latest 19.
HISTORY_LIMIT = 20


def add_attempt(history: tuple[Attempt, ...], dropped: int,
                attempt: Attempt) -> tuple[tuple[Attempt, ...], int]:
    """``history`` with ``attempt`` appended, and ``dropped`` plus the
    attempts left out to stay within :data:`HISTORY_LIMIT`: the first
    attempt is always kept, then the latest ones."""
    over = len(history) + 1 - HISTORY_LIMIT
    if over <= 0 or not history:
        return (*history, attempt), dropped
    return (history[0], *history[1 + over:], attempt), dropped + over


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One entry of a dead-letter queue.

    ``id``: unique within the queue (and the store); ``item``: what failed
    (an :class:`Event` from a bus stays an Event through a store);
    ``error``: ``"<ExceptionType>: <message>"`` of the last failure;
    ``error_type``: the exception's type name; ``source``: who put it (a bus
    puts ``"<event type>:<handler>"``, an emitter ``"emitter"``);
    ``attempts``: calls made for the item so far (the client's, then one
    per failed reprocess); ``timestamp``: Unix time it was added, as the
    queue's clock tells it.

    ``history``: every failed attempt, oldest first, as ``(unix_time,
    error_text, source)``: the failure it was added for (its ``timestamp``,
    error and source), then one per failed reprocess (the time it failed,
    its error, and ``"reprocess:<handler>"``). At most 20 are kept - the
    first and the latest 19 - and ``history_dropped`` says how many
    attempts between them were left out. An entry a store kept from before
    histories were recorded starts with one attempt: its time added, its
    last error and its source."""

    id: int
    item: Any
    error: str
    error_type: str
    source: str | None
    attempts: int
    timestamp: float
    history: tuple[Attempt, ...] = ()
    history_dropped: int = 0


@runtime_checkable
class DeadLetterSink(Protocol):
    """A dead-letter target: what every ``dlq=`` parameter accepts
    (:class:`EventEmitter`, :class:`EventBus`). :class:`DeadLetterQueue`
    satisfies it, whether its entries live in memory or in a store; so does
    any class with these members (``isinstance(obj, DeadLetterSink)`` checks
    that they are present).

    What a client hands over, one call per item that finally failed:

    - ``put(item, error, *, source=None, attempts=0)``: ``item`` is what
      failed (an emitter's event, a bus's :class:`Event`); ``error`` the
      exception of the last failure; ``source`` who gives it (``"emitter"``,
      or ``"<event type>:<handler name>"`` from a bus); ``attempts`` the
      number of calls made for the item (0 when none was: a queued event
      at close, a payload refused by a handler's contract). Returns the
      entry's id, or an awaitable that the client awaits. An exception
      from it is logged and counted by the client, never raised to the
      client's caller.
    - ``blocking``: True when ``put`` may wait on a disk or network write.
      A client on an event loop then calls ``put`` from a worker thread,
      never on the loop; otherwise on the loop itself. Either way one
      ``put`` at a time, in the order the items failed. Clients read it
      once, when they are made; an object without it counts as False.

    What an operator reads back and does: ``list()`` (entries oldest
    first, as :class:`DeadLetter`), ``get(entry_id)`` (KeyError for an
    unknown id), ``purge()`` (removes every entry, returns how many),
    ``stats()`` (a JSON-serialisable dict) and ``await
    reprocess(entry_id, handler)`` (calls ``handler(item)``; True and the
    entry removed on success, False and the entry kept on failure).

    A client needs only ``put`` (and ``blocking``); an object with just a
    ``put`` method is accepted by ``dlq=`` too, but type checkers and
    operators expect the whole protocol.
    """

    @property
    def blocking(self) -> bool:
        """True when ``put`` may wait on a disk or network write."""
        ...

    def put(self, item: Any, error: BaseException, *, source: str | None = None,
            attempts: int = 0) -> Any:
        """Keeps one item that failed; returns its id (or an awaitable)."""
        ...

    def get(self, entry_id: int) -> DeadLetter:
        """The entry ``entry_id``; KeyError if there is none."""
        ...

    def purge(self) -> int:
        """Removes every entry; returns how many."""
        ...

    def stats(self) -> dict[str, Any]:
        """Counters and sizes, JSON-serialisable."""
        ...

    async def reprocess(self, entry_id: int, handler: Callable[[Any], Any]) -> bool:
        """Hands the entry's item to ``handler``; True (entry removed) on success."""
        ...

    def list(self) -> list[DeadLetter]:
        """The entries, oldest first."""
        ...


def check_sink(dlq: Any) -> DeadLetterSink | None:
    """``dlq`` as a ``dlq=`` parameter takes it: None, or an object whose
    ``put`` a client can call; TypeError naming ``dlq`` otherwise."""
    if dlq is not None and not callable(getattr(dlq, "put", None)):
        raise TypeError(f"dlq must be a resil.DeadLetterSink (such as a resil.DeadLetterQueue) "
                        f"or None; {type(dlq).__name__} has no put(item, error, source=..., "
                        f"attempts=...) method")
    return cast("DeadLetterSink | None", dlq)


class _Letter:
    """One dead letter on its way to the sink."""

    __slots__ = ("item", "error", "source", "attempts", "started", "done")

    def __init__(self, item: Any, error: BaseException, source: str, attempts: int,
                 started: Any) -> None:
        self.item = item
        self.error = error
        self.source = source
        self.attempts = attempts
        self.started = started  # the awaitable an inline put returned, not yet awaited
        # Made only when someone waits for this letter (under the handoff's
        # lock); resolved, never with an exception, once it is taken or refused.
        self.done: asyncio.Future[None] | None = None


def _settle(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)


class DeadLetterHandoff:
    """Hands dead letters from an event loop to one :class:`DeadLetterSink`:
    the single path :class:`EventEmitter` and :class:`EventBus` both use.

    Letters reach the sink in the order they were sent, one ``put`` at a
    time. A sink whose ``blocking`` is true gets its puts from a worker
    thread (one job at a time drains the backlog), so a disk write never
    holds up the loop. Any other sink's ``put`` is called at once on the
    loop when nothing is ahead of it; an awaitable it returns is awaited by
    a worker task before the next letter's ``put`` is called.

    A letter stays pending until the sink took it (``handed``) or refused
    it (``refused``: ``put`` raised, or its awaitable was cancelled); a
    refusal is logged on ``log`` and never raised to the sender. Each count
    is changed by one thread at a time (the worker thread for a blocking
    sink, the loop's thread otherwise)."""

    def __init__(self, sink: DeadLetterSink, log: logging.Logger) -> None:
        self._put = sink.put
        self.blocking = bool(getattr(sink, "blocking", False))
        self._log = log
        # Letters not yet taken or refused, oldest first; the first one is
        # being written. Changed, and read with _running, under _lock.
        self._backlog: collections.deque[_Letter] = collections.deque()
        self._lock = threading.Lock()
        self._running = False  # a worker owns the backlog until it finds it empty
        self.handed = 0
        self.refused = 0
        # Told ("dead_letter", name) as the sink takes each letter; name is
        # the sink's own when it has one (a str), else "dlq".
        name = getattr(sink, "name", None)
        self.name = name if isinstance(name, str) and name else "dlq"
        self.sink = sink
        self.listeners = Listeners(log)

    def _handed(self) -> None:
        self.handed += 1
        if self.listeners:
            self.listeners.notify("dead_letter", self.name)

    @property
    def pending(self) -> int:
        """Letters sent and not yet taken or refused."""
        return len(self._backlog)

    def send(self, item: Any, error: BaseException, source: str, attempts: int) -> bool:
        """Starts handing one dead letter over, from the event loop; never
        blocks, never raises what the sink raises. False when the sink
        already took or refused it; True while it is pending (:meth:`landed`
        tells when it is no longer)."""
        started = None
        if not self.blocking and not self._backlog:
            try:
                started = self._put(item, error, source=source, attempts=attempts)
            except Exception as exc:
                self._refuse(source, exc)
                return False
            if not inspect.isawaitable(started):
                self._handed()
                return False
        loop = asyncio.get_running_loop()
        with self._lock:
            self._backlog.append(_Letter(item, error, source, attempts, started))
            if self._running:
                return True  # the running worker takes it: it stops only when empty
            self._running = True
        if self.blocking:
            try:
                loop.run_in_executor(None, self._drain_in_thread)
            except RuntimeError:
                # The loop's executor is shut down (the loop is ending): a
                # thread of its own finishes the backlog; the interpreter
                # waits for it at exit.
                threading.Thread(target=self._drain_in_thread, name="resil-dlq-writer").start()
        else:
            loop.create_task(self._drain_on_loop(), name="resil-dlq-handoff")
        return True

    def landed(self, last: bool = True) -> asyncio.Future[None] | None:
        """A future of the running loop resolved once the last letter sent
        (the oldest pending one with ``last=False``), and so every letter
        before it, is taken or refused; None when none is pending."""
        with self._lock:
            if not self._backlog:
                return None
            letter = self._backlog[-1 if last else 0]
            if letter.done is None:
                letter.done = asyncio.get_running_loop().create_future()
            return letter.done

    async def room(self, limit: int) -> None:
        """Waits until fewer than ``limit`` letters are pending."""
        while len(self._backlog) >= limit:
            first = self.landed(last=False)
            if first is None:
                return
            await asyncio.wait({first})

    async def flush(self, timeout: float) -> None:
        """Waits up to ``timeout`` seconds for every letter sent so far."""
        last = self.landed()
        if last is not None:
            await asyncio.wait({last}, timeout=timeout)

    def _refuse(self, source: str, exc: BaseException) -> None:
        self.refused += 1
        self._log.error("dead-letter sink refused an item from %s: %r", source, exc,
                        exc_info=exc)

    def _done(self) -> asyncio.Future[None] | None:
        """Takes the first letter off the backlog; its future, if anyone waits."""
        with self._lock:
            return self._backlog.popleft().done

    def _drain_in_thread(self) -> None:
        """The worker for a blocking sink: puts the backlog in order until it
        is empty."""
        backlog, put = self._backlog, self._put
        while True:
            with self._lock:
                if not backlog:
                    self._running = False
                    return
                letter = backlog[0]
            try:
                put(letter.item, letter.error, source=letter.source, attempts=letter.attempts)
            except BaseException as exc:  # a worker thread has no one to re-raise to
                self._refuse(letter.source, exc)
            else:
                self._handed()
            # Give the GIL up between letters: a loop thread waiting for it
            # takes it now instead of after the interpreter's switch interval
            # (5 ms), so a long backlog never stalls the event loop.
            time.sleep(0)
            done = self._done()
            if done is not None:
                try:
                    done.get_loop().call_soon_threadsafe(_settle, done)
                except RuntimeError:
                    pass  # the loop is closed: no one is waiting any more

    async def _drain_on_loop(self) -> None:
        """The worker for a sink whose put returned an awaitable: awaits it,
        then puts the rest of the backlog in order, awaiting each."""
        backlog = self._backlog
        try:
            while backlog:
                letter = backlog[0]
                error: BaseException | None = None
                running = None
                try:
                    result, letter.started = letter.started, None
                    if result is None:
                        result = self._put(letter.item, letter.error, source=letter.source,
                                           attempts=letter.attempts)
                    if inspect.isawaitable(result):
                        running = asyncio.ensure_future(result)
                except (Exception, asyncio.CancelledError) as exc:
                    error = exc
                if running is not None:
                    try:
                        await asyncio.wait({running})
                    except BaseException:
                        running.cancel()  # this worker is cancelled: the loop is ending
                        raise
                    error = asyncio.CancelledError() if running.cancelled() else \
                        running.exception()
                if error is None:
                    self._handed()
                else:
                    self._refuse(letter.source, error)
                done = self._done()
                if done is not None:
                    _settle(done)
        except BaseException as exc:
            # What is left is refused and counted, none of it silently lost.
            while backlog:
                letter = backlog[0]
                if inspect.iscoroutine(letter.started):
                    letter.started.close()
                self._refuse(letter.source, exc)
                done = self._done()
                if done is not None:
                    _settle(done)
            raise
        finally:
            self._running = False
