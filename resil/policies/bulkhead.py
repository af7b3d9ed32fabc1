"""Bulkhead: a cap on how many calls run at once, with a bounded FIFO line
of callers waiting for a slot.

The counts and every admission decision are C (``resil._resil.BulkheadCore``);
this module adds the waiting: one line of waiters, asyncio tasks and
blocked threads together, in arrival order. A slot given back while callers
wait is handed to the first of them, never freed for a newcomer to take.

Shared by the processes of a host (``shared=region``), the counts live in
the region and each process keeps its own line: a slot freed anywhere is
freed, and the lines claim it (blocked threads wake on the region's futex
word, awaiting tasks look again after a short, growing delay; both at once
when the slot was freed in their own process).
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections import deque
from typing import TYPE_CHECKING, Any

from resil import _check, _time
from resil._hooks import Listeners
from resil.policies._guard import Guard
from resil._resil import BulkheadCore, BulkheadPermit, MonotonicClock
from resil.errors import BulkheadFull

if TYPE_CHECKING:
    from resil.storage.region import SharedRegion

__all__ = ["Bulkhead", "BulkheadFull", "BulkheadPermit"]

_log = logging.getLogger("resil.bulkhead")

# BulkheadCore.acquire() answers.
_ADMITTED, _QUEUED = 0, 1
# How long a blocked thread waits before it reads a clock it was given again:
# a VirtualClock moves only when a test moves it.
_POLL = 0.01
# The longest a blocked main thread waits in one go. A signal that lands
# just before a lock wait starts does not interrupt it, so the main thread
# (where Python runs signal handlers: Ctrl-C) wakes this often to run them.
_SIGNAL_POLL = 0.05
_MONOTONIC = MonotonicClock()
# Shared: the longest a blocked thread sleeps on the region's futex word
# before it looks again (a slot whose holder died is only taken back by a
# look), and the first and last delays of an awaiting task's looks.
_SHARED_SLEEP = 0.05
_SHARED_POLL_FIRST, _SHARED_POLL_LAST = 0.0005, 0.01


class _Waiter:
    """One caller in line. ``granted`` (set with the bulkhead's mutex held)
    says a slot was handed to it; ``left`` that it left the line without one."""

    __slots__ = ("fut", "lock", "granted", "left")

    def __init__(self, fut: asyncio.Future[None] | None) -> None:
        self.fut = fut
        self.lock: threading.Lock | None = None
        if fut is None:
            self.lock = threading.Lock()
            self.lock.acquire()
        self.granted = False
        self.left = False

    def wake(self) -> bool:
        """Tells the waiter its slot is there; False when it cannot be told
        (its event loop is closed), so nobody will ever take the slot."""
        if self.lock is not None:
            self.lock.release()
            return True
        fut = self.fut
        assert fut is not None
        loop = fut.get_loop()
        if asyncio._get_running_loop() is loop:
            if not fut.done():
                fut.set_result(None)
            return True
        try:
            loop.call_soon_threadsafe(_set_done, fut)
        except RuntimeError:  # the loop is closed
            return False
        return True


def _set_done(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class _Looker:
    """Shared: makes an awaiting task's process look for a freed slot after
    a delay that doubles up to a bound, until its future is done."""

    __slots__ = ("bulkhead", "fut", "delay", "handle")

    def __init__(self, bulkhead: Bulkhead, fut: asyncio.Future[None]) -> None:
        self.bulkhead = bulkhead
        self.fut = fut
        self.delay = _SHARED_POLL_FIRST
        self.handle = fut.get_loop().call_later(self.delay, self.look)

    def look(self) -> None:
        fut = self.fut
        if fut.done():
            return
        try:
            self.bulkhead._hand_on()
        except BaseException as exc:  # the region closed: the waiter raises it
            if not fut.done():
                fut.set_exception(exc)
            return
        if not fut.done():
            self.delay = min(self.delay * 2, _SHARED_POLL_LAST)
            self.handle = fut.get_loop().call_later(self.delay, self.look)

    def cancel(self) -> None:
        self.handle.cancel()


class Bulkhead(Guard):
    """A cap on concurrent calls, with a bounded FIFO wait queue.

    ``Bulkhead(name="default", max_concurrent=10, *, max_queue=0,
    queue_timeout=None, clock=None, shared=None)``:

    - ``name``: a non-empty str, shown in ``stats()`` and to a Monitor.
    - ``max_concurrent``: the most calls that run at once, an int in
      [1, 2**30].
    - ``max_queue``: the most callers that wait for a slot when all are
      taken, an int in [0, 2**30]; 0 (the default) refuses at once.
    - ``queue_timeout``: the most seconds a caller waits in the queue, a
      number >= 0; None (the default), ``inf`` or an int too large for a
      float wait without limit.
    - ``clock``: what ``queue_timeout`` is measured on, any object with
      ``now()`` in seconds (a ``resil.VirtualClock`` in tests). None: the
      running event loop's time for awaiting callers and a monotonic clock
      for blocked threads.
    - ``shared``: None (the default), or a :class:`resil.SharedRegion`:
      the bulkhead then lives in the region, and every ``Bulkhead`` of
      this ``name`` in it, in any process of the host, is one bulkhead
      (see below).

    Waiters, awaiting tasks and blocked threads alike, get slots in the
    order they came. A caller that finds every slot taken and the queue
    full, or whose wait outlasts ``queue_timeout``, gets
    :class:`resil.BulkheadFull` and is counted (``rejected``,
    ``timed_out``). A cancelled waiter (``asyncio.CancelledError``,
    ``KeyboardInterrupt`` in a blocked thread) leaves the queue and never
    takes a slot: one handed to it as it was cancelled goes on to the next.
    A call that ends in any way, cancellation included, frees its slot
    exactly once.

    Use it as ``@bulkhead`` (plain and coroutine functions), ``with
    bulkhead:``, ``async with bulkhead:``, ``bulkhead.call(fn, ...)``,
    ``await bulkhead.call_async(fn, ...)``, or ``permit =
    bulkhead.try_acquire()`` (None when no slot is free: it never waits)
    and then ``bulkhead.release(permit)`` once.

    Shared (``shared=region``): ``max_concurrent`` caps the calls running
    at once on the whole host, ``max_queue`` the callers waiting on the
    whole host, and ``stats()`` gives the host's numbers (counts of
    processes that ended are kept). The first process to create the
    bulkhead sets ``max_concurrent``, ``max_queue`` and ``queue_timeout``;
    another passing different values gets ValueError naming the first that
    differs. The name must be at most 63 bytes of UTF-8. A newcomer never
    takes a slot while a caller waits anywhere on the host. Order: each
    ``Bulkhead`` object (one per process, normally) keeps its own line, and
    its callers get slots in the order they came; across lines there is no
    order (a freed slot goes to whichever line claims it first). A blocked thread wakes as soon as a slot is
    freed anywhere on the host (it sleeps on a futex in the region); an
    awaiting task at once when the slot was freed in its own process, else
    within a delay of 0.5 ms that doubles up to 10 ms while it waits.
    Callers of at most 64 processes wait at once (``min(max_queue, 64)``):
    a caller of a further process finding every slot taken is refused as
    when the queue is full. A process that dies (SIGKILL included) holding
    slots or with callers waiting gives them back: the next caller that
    finds every slot taken (or the queue full, or a slot free while
    callers wait) once the region's ``lease`` has passed since the slot
    was taken checks whether its holder still lives (its pid and start
    time) and frees it if not. A slot taken in a process is its own: a
    forked child cannot give back its parent's slots (ValueError). After
    ``region.close()`` every call raises :class:`resil.RegionError`.
    """

    __slots__ = ("_name", "_core", "_timeout", "_clock", "_shared", "_mutex", "_line",
                 "_listeners", "__weakref__")

    def __init__(self, name: str = "default", max_concurrent: int = 10, *, max_queue: int = 0,
                 queue_timeout: float | None = None, clock: Any = None,
                 shared: SharedRegion | None = None) -> None:
        self._name = _check.text(name, "name")
        self._core = BulkheadCore(max_concurrent, max_queue=max_queue)
        self._timeout = _check.limit(queue_timeout, "queue_timeout", optional=True)
        self._clock = _check.clock(clock)
        if shared is not None:
            self._core = BulkheadCore(
                max_concurrent, max_queue=max_queue, name=self._name, shared=shared,
                queue_timeout=None if self._timeout == math.inf else self._timeout)
        self._shared = shared is not None
        self._mutex = threading.Lock()
        # The line of waiters. With the mutex held its length is the core's
        # `queued` (shared: this handle's part of the host's `queued`): both
        # change together, only with the mutex held.
        self._line: deque[_Waiter] = deque()
        self._listeners = Listeners(_log)

    # ---- what it is -------------------------------------------------------------
    @property
    def name(self) -> str:
        """The bulkhead's name."""
        return self._name

    @property
    def max_concurrent(self) -> int:
        """The most calls that run at once."""
        return self._core.max_concurrent

    @property
    def max_queue(self) -> int:
        """The most callers that wait for a slot."""
        return self._core.max_queue

    @property
    def shared(self) -> SharedRegion | None:
        """The :class:`resil.SharedRegion` holding the bulkhead's state, or
        None (this process's own)."""
        return self._core.shared  # type: ignore[return-value]

    @property
    def queue_timeout(self) -> float | None:
        """The most seconds a caller waits in the queue; None: no limit."""
        return None if self._timeout == math.inf else self._timeout

    def stats(self) -> dict[str, Any]:
        """The bulkhead's numbers, JSON-serialisable: ``name``,
        ``max_concurrent``, ``active`` (slots taken now), ``queued``
        (callers waiting now), ``admitted`` (calls that got a slot),
        ``rejected`` (refused: no slot and no room in the queue, or
        ``try_acquire`` finding no slot), ``timed_out`` (left the queue when
        ``queue_timeout`` ran out) and ``peak_active`` (the most slots taken
        at once)."""
        return {"name": self._name, **self._core.stats()}

    def __repr__(self) -> str:
        return (f"<Bulkhead {self._name!r} active={self._core.active}/"
                f"{self._core.max_concurrent} queued={self._core.queued}>")

    # ---- permits -----------------------------------------------------------------
    def try_acquire(self) -> BulkheadPermit | None:
        """A permit holding a slot, or None (counted ``rejected``) when no
        slot is free or callers wait for one; never waits. Give the slot
        back with :meth:`release`."""
        permit = self._core.try_acquire()
        if permit is None and self._listeners:
            self._listeners.notify("bulkhead_rejection", self._name)
        return permit

    def release(self, permit: BulkheadPermit) -> None:
        """Gives back the slot of a permit from :meth:`try_acquire`, handing
        it to the first waiter if any. TypeError for anything but such a
        permit; ValueError for one released before (the slot is not freed
        twice) or taken from another bulkhead."""
        if self._core.release(permit):
            self._hand_on()

    # ---- context managers ----------------------------------------------------------
    def __enter__(self) -> None:
        if not self._core.try_enter():
            self._wait_blocking()

    def __exit__(self, *exc_info: object) -> None:
        if self._core.exit():
            self._hand_on()

    async def __aenter__(self) -> None:
        if not self._core.try_enter():
            await self._wait_async()

    async def __aexit__(self, *exc_info: object) -> None:
        if self._core.exit():
            self._hand_on()

    # call(), call_async() and the decorator (Guard) run the call in a slot,
    # waiting for one if need be.
    _admit = __enter__
    _admit_async = __aenter__

    def _done(self, token: None, exc: BaseException | None) -> None:
        if self._core.exit():
            self._hand_on()

    # ---- waiting ----------------------------------------------------------------------
    def _full(self) -> BulkheadFull:
        if self._listeners:
            self._listeners.notify("bulkhead_rejection", self._name)
        return BulkheadFull(f"bulkhead {self._name!r} is full: {self._core.max_concurrent} "
                            f"calls running and {self._core.max_queue} waiting")

    def _timed_out(self) -> BulkheadFull:
        if self._listeners:
            self._listeners.notify("bulkhead_rejection", self._name)
        return BulkheadFull(f"bulkhead {self._name!r}: no slot within queue_timeout="
                            f"{self._timeout} seconds")

    def _join(self, waiter: _Waiter) -> bool:
        """Admits or queues one caller: True admitted, False queued (waiter
        in line); BulkheadFull when refused."""
        with self._mutex:
            answer = self._core.acquire()
            if answer == _QUEUED:
                self._line.append(waiter)
                return False
        if answer == _ADMITTED:
            return True
        raise self._full()

    def _hand_on(self) -> None:
        """Gives back a taken slot to the first waiter (or frees it).
        Shared: the waiters of this process claim the free slots, first
        come first."""
        with self._mutex:
            if self._shared:
                while self._line and self._core.hand_off():
                    self._pass(1)
            else:
                self._pass(self._core.hand_off())

    def _pass(self, handed: int) -> None:
        """With the mutex held, after the core handed a slot on (``handed``
        true): the first waiter takes it, or, when it cannot be woken, it
        goes on to the next."""
        while handed:
            waiter = self._line.popleft()
            waiter.granted = True
            if waiter.wake():
                if self._shared and waiter.lock is not None:
                    self._core._nudge()  # it sleeps on the futex word
                return
            handed = self._core.decline()

    def _leave(self, waiter: _Waiter, timed_out: bool) -> bool:
        """With the mutex taken here: the waiter leaves the line unless a
        slot was handed to it (then False: it has the slot)."""
        with self._mutex:
            if waiter.granted:
                return False
            if not waiter.left:
                waiter.left = True
                self._line.remove(waiter)
                self._core.leave(timed_out)
            return True

    def _decline(self, waiter: _Waiter) -> None:
        """A waiter interrupted while waiting: it leaves the line, or gives
        the slot handed to it on."""
        with self._mutex:
            if waiter.granted:
                self._pass(self._core.decline())
            elif not waiter.left:
                waiter.left = True
                self._line.remove(waiter)
                self._core.leave(False)

    async def _wait_async(self) -> None:
        loop = asyncio.get_running_loop()
        waiter = _Waiter(loop.create_future())
        if self._join(waiter):
            return
        fut = waiter.fut
        assert fut is not None
        looker = None
        if self._shared:
            self._hand_on()  # a slot may be free: nobody else wakes this line for it
            if not fut.done():
                looker = _Looker(self, fut)
        timer = None
        if self._timeout != math.inf:
            clock = self._clock if self._clock is not None else _time.LOOP_CLOCK

            def expire() -> None:
                if self._leave(waiter, True) and not fut.done():
                    fut.set_result(None)

            timer = _time.Timer(clock, clock.now() + self._timeout, expire)
        try:
            await fut
        except BaseException:
            self._decline(waiter)
            raise
        finally:
            if timer is not None:
                timer.cancel()
            if looker is not None:
                looker.cancel()
        if waiter.left:
            raise self._timed_out()
        self._core.start()

    def _wait_blocking(self) -> None:
        waiter = _Waiter(None)
        if self._join(waiter):
            return
        if self._shared:
            self._wait_shared(waiter)
            self._core.start()
            return
        lock = waiter.lock
        assert lock is not None
        step = _SIGNAL_POLL if threading.current_thread() is threading.main_thread() \
            else math.inf
        try:
            if self._timeout == math.inf:
                wait = -1 if step == math.inf else step  # -1: no limit
                while not lock.acquire(timeout=wait):
                    pass
            else:
                clock = self._clock if self._clock is not None else _MONOTONIC
                poll = min(step, math.inf if self._clock is None else _POLL)
                deadline = clock.now() + self._timeout
                while True:
                    left = deadline - clock.now()
                    if left <= 0:
                        if self._leave(waiter, True):
                            raise self._timed_out()
                        lock.acquire()  # handed a slot as time ran out: it is released
                        break
                    if lock.acquire(timeout=min(left, poll)):
                        break
        except BaseException as exc:
            if not isinstance(exc, BulkheadFull):
                self._decline(waiter)
            raise
        self._core.start()

    def _wait_shared(self, waiter: _Waiter) -> None:
        """A blocked thread in line for a shared bulkhead: its process's
        line claims a free slot, and while none is handed to it, the thread
        sleeps on the region's futex word (a slot freed anywhere, or one
        handed to it, changes the word) for at most a short while."""
        core = self._core
        clock = self._clock if self._clock is not None else _MONOTONIC
        poll = _SHARED_SLEEP if self._clock is None else min(_SHARED_SLEEP, _POLL)
        deadline = clock.now() + self._timeout if self._timeout != math.inf else math.inf
        try:
            while True:
                seq = core._wake_seq()  # read before looking: a change after wakes the sleep
                if not waiter.granted:
                    self._hand_on()
                if waiter.granted:
                    return
                left = deadline - clock.now() if deadline != math.inf else math.inf
                if left <= 0:
                    if self._leave(waiter, True):
                        raise self._timed_out()
                    return  # handed a slot as time ran out: it starts
                core._sleep(seq, min(left, poll))
        except BaseException as exc:
            if not isinstance(exc, BulkheadFull):
                self._decline(waiter)
            raise
