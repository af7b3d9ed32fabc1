"""Bounded and partitioned asyncio queues with backpressure."""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

from resil import _check, _resil, _time
from resil._resil import QueueFull

__all__ = ["BoundedQueue", "PartitionedQueue", "QueueFull"]

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


def _handed_to_loop(fut: asyncio.Future[None], wake: Any, *args: Any) -> bool:
    """True when this thread is not running fut's loop (put_nowait or
    task_done from a worker thread): wake(*args) is then scheduled on that
    loop, whose selector it interrupts. A future's result set from another
    thread would not wake its loop (and raises in asyncio debug mode)."""
    loop = fut.get_loop()
    if asyncio._get_running_loop() is loop:
        return False
    try:
        loop.call_soon_threadsafe(wake, *args)
    except RuntimeError:  # the loop closed: nobody is left to wake
        return False
    return True


def _wake_first(waiters: deque[asyncio.Future[None]]) -> None:
    """Wakes the first waiter still waiting; it re-checks and acts itself."""
    while waiters:
        if _handed_to_loop(waiters[0], _wake_first, waiters):
            return
        fut = waiters.popleft()
        if not fut.done() and not fut.get_loop().is_closed():
            fut.set_result(None)
            return


def _wake_all(waiters: deque[asyncio.Future[None]]) -> None:
    """Wakes every waiter (joiners once nothing is unfinished)."""
    while waiters:
        if _handed_to_loop(waiters[0], _wake_all, waiters):
            return
        fut = waiters.popleft()
        if not fut.done() and not fut.get_loop().is_closed():
            fut.set_result(None)


async def _wait_in(waiters: deque[asyncio.Future[None]]) -> None:
    """Parks the calling task in `waiters` until woken. On cancellation the
    task leaves the line and hands a wake-up it may have received on."""
    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    waiters.append(fut)
    try:
        await fut
    except BaseException:
        fut.cancel()
        try:
            waiters.remove(fut)
        except ValueError:
            pass
        raise


#: The largest maxsize of either queue (BoundedQueue's ring holds at most this).
_MAX_SIZE = 1 << 30


async def _drain(join: Callable[[], Awaitable[None]], timeout: float | None, unfinished: int,
                 clock: Any) -> bool:
    limit = _check.limit(timeout, "timeout", optional=True)
    if unfinished == 0:
        return True  # already processed: even drain(0) says so
    return await _time.await_until(join, clock, clock.now() + limit)


class BoundedQueue(_resil.Ring, Generic[T]):
    """An asyncio queue with watermarks: flow control and backpressure.

    ``BoundedQueue(maxsize=1000, *, warn_at=0.8, reject_at=0.95, clock=None)``.
    ``put_nowait`` raises :class:`QueueFull` once the depth is at least
    ``reject_at * maxsize`` (flow control); ``await put`` waits until the
    depth is below that same limit (backpressure). ``warning`` is true while
    the depth is at least ``warn_at * maxsize``. ``get``/``get_nowait``,
    ``task_done``, ``join`` and ``qsize`` work as in :class:`asyncio.Queue`; a
    cancelled ``get`` never loses an item and a cancelled ``put`` never
    inserts one. ``await drain(timeout)`` is True when every item was
    processed in time.

    ``maxsize`` is an int in [1, 2**30]; ``warn_at`` and ``reject_at`` are
    fractions of it with ``0 < warn_at <= reject_at <= 1``. ``clock``
    (default: the monotonic clock) times the items' ages and ``drain``
    (default there: the running event loop's clock): any object with
    ``now()`` in seconds. The non-blocking operations run in C and are
    atomic, so several threads may call them, whatever the clock: each
    either completes or raises and changes nothing, and a ``get``, ``put``
    or ``join`` waiting on the event loop is woken on that loop.

    ``configure(maxsize=..., warn_at=..., reject_at=...)`` changes the size
    and the watermarks while the queue is in use, checked as the
    constructor checks them, all or nothing. The items held are all kept,
    in order: a depth at or above the new rejection watermark makes
    ``put_nowait`` raise and ``put`` wait until gets bring it below (and
    ``pressure`` may then exceed 1); raising it wakes the puts waiting for
    the room made.
    """

    def __init__(self, maxsize: int = 1000, *, warn_at: float = 0.8, reject_at: float = 0.95,
                 clock: Any = None) -> None:
        # Arguments are validated by the C constructor. drain() waits on the
        # event loop: by the loop's own time unless a clock was given.
        self._drain_clock: Any = _time.clock_or_loop(clock)
        self._getters: deque[asyncio.Future[None]] = deque()
        self._putters: deque[asyncio.Future[None]] = deque()
        self._joiners: deque[asyncio.Future[None]] = deque()
        # The lines are the only count of waiters: the engine wakes one
        # (wake_first or wake_all) when its len() is non-zero.
        self._set_waiters(self._getters, self._putters, self._joiners, _wake_first, _wake_all)

    async def put(self, item: T) -> None:
        """Waits until the depth is below the rejection watermark, then adds item."""
        while self.full():
            try:
                await _wait_in(self._putters)
            except BaseException:
                if not self.full():
                    _wake_first(self._putters)  # pass on a wake-up this task may have taken
                raise
        self.put_nowait(item)

    async def get(self) -> T:
        """Waits for an item and removes it."""
        while self.empty():
            try:
                await _wait_in(self._getters)
            except BaseException:
                if not self.empty():
                    _wake_first(self._getters)  # pass on a wake-up this task may have taken
                raise
        item: T = self.get_nowait()
        return item

    async def join(self) -> None:
        """Waits until every item put has been marked with task_done()."""
        while self.unfinished_tasks:
            await _wait_in(self._joiners)

    async def drain(self, timeout: float | None) -> bool:
        """Waits up to ``timeout`` seconds (``None`` or ``inf``: no limit) for
        join(); True when every item was processed. A negative or NaN timeout
        raises ValueError, a non-number TypeError."""
        return await _drain(self.join, timeout, self.unfinished_tasks, self._drain_clock)

    def __repr__(self) -> str:
        return f"<BoundedQueue depth={self.qsize()} maxsize={self.maxsize}>"


class PartitionedQueue(Generic[K, T]):
    """An asyncio queue that keeps per-key order: ``await put(item, key)``;
    ``await get()`` returns ``(key, item)`` and holds that key until
    ``task_done(key)``, so one key's items are processed in FIFO order, one
    at a time, while other keys proceed in parallel.

    ``maxsize=1000`` (an int in [1, 2**30]) bounds the items waiting over
    all keys: ``put`` waits for room, ``put_nowait`` raises
    :class:`QueueFull`. ``clock=None`` times ``drain``: any object with
    ``now()`` in seconds, by default the running event loop's clock. ``put_nowait``, ``get_nowait`` and ``task_done`` are
    atomic, so several threads may call them; a waiting ``get``, ``put``
    or ``join`` is woken on its event loop.
    """

    def __init__(self, maxsize: int = 1000, *, clock: Any = None) -> None:
        _check.integer(maxsize, "maxsize", 1, _MAX_SIZE)
        self._clock: Any = _time.clock_or_loop(clock)
        self.maxsize = maxsize
        # The non-blocking operations check, then change several fields; the
        # lock makes each atomic across threads (reentrant, so a key whose
        # __eq__ calls back into the queue cannot deadlock it).
        self._lock = threading.RLock()
        self._parts: dict[K, deque[T]] = {}
        self._ready: deque[K] = deque()   # keys with items and not held
        self._held: set[K] = set()
        self._size = 0
        self._unfinished = 0
        self._getters: deque[asyncio.Future[None]] = deque()
        self._putters: deque[asyncio.Future[None]] = deque()
        self._joiners: deque[asyncio.Future[None]] = deque()

    def qsize(self) -> int:
        """Items waiting, over all keys."""
        return self._size

    def full(self) -> bool:
        return self._size >= self.maxsize

    @property
    def unfinished_tasks(self) -> int:
        return self._unfinished

    def put_nowait(self, item: T, key: K) -> None:
        """Adds item under key, or raises :class:`QueueFull` when full."""
        with self._lock:
            if self._size >= self.maxsize:
                raise QueueFull(f"partitioned queue holds {self._size} of {self.maxsize} items")
            part = self._parts.get(key)
            if part is None:
                part = self._parts[key] = deque()
            part.append(item)
            self._size += 1
            self._unfinished += 1
            if key not in self._held and len(part) == 1:
                self._ready.append(key)
                _wake_first(self._getters)

    async def put(self, item: T, key: K) -> None:
        """Waits for room, then adds item under key."""
        while self.full():
            try:
                await _wait_in(self._putters)
            except BaseException:
                if not self.full():
                    _wake_first(self._putters)
                raise
        self.put_nowait(item, key)

    def get_nowait(self) -> tuple[K, T]:
        """Takes the oldest item of a ready key and holds the key, or raises
        :class:`asyncio.QueueEmpty`."""
        with self._lock:
            if not self._ready:
                raise asyncio.QueueEmpty
            key = self._ready.popleft()
            item = self._parts[key].popleft()
            self._held.add(key)
            self._size -= 1
            _wake_first(self._putters)
            return key, item

    async def get(self) -> tuple[K, T]:
        """Waits for a key that has items and is not held; takes its oldest item
        and holds the key until task_done(key)."""
        while not self._ready:
            try:
                await _wait_in(self._getters)
            except BaseException:
                if self._ready:
                    _wake_first(self._getters)
                raise
        return self.get_nowait()

    def task_done(self, key: K) -> None:
        """Releases key after its item was processed; its next item becomes ready."""
        with self._lock:
            if key not in self._held:
                raise ValueError(f"task_done({key!r}): the key is not held by a get()")
            self._held.remove(key)
            self._unfinished -= 1
            part = self._parts[key]
            if part:
                self._ready.append(key)
                _wake_first(self._getters)
            else:
                del self._parts[key]
            if self._unfinished == 0:
                _wake_all(self._joiners)

    async def join(self) -> None:
        """Waits until every item put has been marked with task_done()."""
        while self._unfinished:
            await _wait_in(self._joiners)

    async def drain(self, timeout: float | None) -> bool:
        """Waits up to ``timeout`` seconds (``None`` or ``inf``: no limit) for
        join(); True when every item was processed. A negative or NaN timeout
        raises ValueError, a non-number TypeError."""
        return await _drain(self.join, timeout, self._unfinished, self._clock)

    def stats(self) -> dict[str, int]:
        """depth, keys (with items or held), held, ready and unfinished."""
        with self._lock:
            return {"depth": self._size, "keys": len(self._parts), "held": len(self._held),
                    "ready": len(self._ready), "unfinished": self._unfinished}

    def __repr__(self) -> str:
        return f"<PartitionedQueue depth={self._size} keys={len(self._parts)}>"
