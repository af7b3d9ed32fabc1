"""Adaptive concurrency: :class:`AdaptiveLimiter`, a limit on the calls in
flight that follows the latency the calls see, decided in C."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
from typing import Any

from resil._hooks import Listeners
from resil._resil import AdaptiveCore, CircuitOpenError, LimiterPermit
from resil.errors import CANCELLATION, BulkheadFull, LimitExceeded, RateLimited
from resil.policies._guard import Guard

__all__ = ["AdaptiveLimiter", "LimitExceeded", "LimiterPermit"]

_log = logging.getLogger("resil.adaptive")

#: What a call raising it tells the limiter: the service is overloaded (it
#: timed out, or something downstream shed it), a signal to lower the limit.
DROPS: tuple[type[BaseException], ...] = (
    TimeoutError, asyncio.TimeoutError, concurrent.futures.TimeoutError, BulkheadFull,
    RateLimited, LimitExceeded, CircuitOpenError)

# The permits of the `with limiter:` blocks running in this context,
# innermost last, each beside its limiter. A tuple, set anew on each change,
# so a task never sees the blocks of the context it was copied from.
_HELD: contextvars.ContextVar[tuple[tuple[AdaptiveCore, LimiterPermit], ...]] = \
    contextvars.ContextVar("resil_adaptive_held", default=())


class AdaptiveLimiter(AdaptiveCore, Guard):
    """A concurrency limit that adapts to the latency of the calls: it
    grows while calls stay about as fast as the fastest seen, and shrinks
    when they slow down with the load (queueing) or fail with a timeout or
    an overload error. Calls past the limit are refused with
    :class:`resil.LimitExceeded` at once: load is shed, never queued.

    ``AdaptiveLimiter(algorithm="gradient", *, initial_limit=20,
    min_limit=1, max_limit=1000, clock=None, name="default")``:

    - ``algorithm``: how samples move the limit, one of ``"aimd"``,
      ``"vegas"``, ``"gradient"`` (default). With ``lat`` a call's latency
      and ``min`` the baseline latency:

      - ``"aimd"``: a drop, or ``lat > 1.5 * min``, multiplies the limit by
        0.9; another call adds 1 (before the first decrease) or
        ``1 / limit``.
      - ``"vegas"``: the queue is estimated as ``ceil(limit * (1 - min /
        lat))``; with ``lg = max(1, log10(limit))``, a queue of at most
        ``lg`` adds ``4 * lg``, below ``2 * lg`` adds ``lg``, above
        ``4 * lg`` subtracts ``max(lg, (queue - 4 * lg) / 2)``; a drop
        subtracts ``lg``.
      - ``"gradient"``: ``g = 1.25 * min / lat`` clamped to [0.5, 1]
        (0.5 for a drop), and the limit moves halfway to ``limit * g +
        sqrt(limit)``.

    - ``initial_limit``: the limit to start from, an int in [min_limit,
      max_limit]; default 20.
    - ``min_limit``, ``max_limit``: the bounds the limit stays within, ints
      in [1, 2**30] with ``min_limit <= max_limit``; defaults 1 and 1000.
    - ``clock``: what latencies are measured on, any object with ``now()``
      in seconds (a ``resil.VirtualClock`` in tests); None: a monotonic clock.
    - ``name``: a non-empty str, shown in ``stats()`` and to a Monitor.

    The baseline is the least latency the server shows without a queue. To
    measure it the limiter probes: its first 10 calls, and 10 calls again
    30 seconds after each probe ended, run with at most ``min_limit`` in
    flight (``limit`` reads ``min_limit`` meanwhile); the least latency of
    those calls becomes the baseline, so it follows a server that got
    slower or faster. Only a probe sets it. Calls beyond ``min_limit`` are
    refused while a probe runs (about ten call durations every 30 s): a
    larger ``min_limit`` sheds less then, at the cost of a baseline
    measured under that much load.

    A sample raises the limit only when its call started with at least half
    the limit in flight (a limit the load never reached says nothing of the
    server), and lowers it only when its call started with at most the
    limit in flight (a call admitted under a higher limit reports an
    overload already answered).

    Use it as ``@limiter`` (plain and coroutine functions), ``with
    limiter:``, ``async with limiter:``, ``limiter.call(fn, ...)``,
    ``await limiter.call_async(fn, ...)``, or ``permit =
    limiter.try_acquire()`` (None at the limit) and then
    ``limiter.release(permit, latency=None, dropped=False)`` once. In the
    guarded forms the latency is measured on the clock; a call raising
    ``TimeoutError`` (``resil.OperationTimeout`` included),
    :class:`resil.BulkheadFull`, :class:`resil.RateLimited`,
    :class:`resil.LimitExceeded` or :class:`resil.CircuitOpenError` counts
    as dropped; any other exception is a sample of its latency; a
    cancelled call (``asyncio.CancelledError``, ``KeyboardInterrupt``, ...)
    gives its slot back and is no sample. A ``with`` block that ends in
    another context than it began (a generator closed from another task or
    thread) gives a slot back without a sample. ``call`` of a coroutine
    function is ``call_async``: admitted when awaited.
    """

    # Made by the first Monitor.watch; told of each LimitExceeded raised.
    _listeners: Listeners | None = None

    def _event_listeners(self) -> Listeners:
        if self._listeners is None:
            self._listeners = Listeners(_log)
        return self._listeners

    def __repr__(self) -> str:
        return (f"<AdaptiveLimiter {self.name!r} {self.algorithm} limit={self.limit} "
                f"in_flight={self.in_flight}>")

    def stats(self) -> dict[str, Any]:
        """The limiter's numbers, JSON-serialisable: ``name``, ``algorithm``,
        ``limit`` (calls allowed in flight now), ``in_flight`` (calls
        admitted and not released), ``admitted``, ``rejected`` (refused at
        the limit), ``dropped`` (admitted calls that ended in a timeout or
        an overload error) and ``min_latency_ms`` (the baseline latency, a
        float; None until the first probe measured it)."""
        return super().stats()

    # ---- admission ---------------------------------------------------------------
    def _admit(self) -> LimiterPermit:
        permit = self.try_acquire()
        if permit is None:
            listeners = self._listeners
            if listeners:
                listeners.notify("limit_exceeded", self.name)
            raise LimitExceeded(f"adaptive limiter {self.name!r}: {self.in_flight} calls in "
                                f"flight, at its limit of {self.limit}")
        return permit

    async def _admit_async(self) -> LimiterPermit:
        return self._admit()

    def _done(self, token: LimiterPermit, exc: BaseException | None) -> None:
        try:
            if exc is None:
                self.release(token)
            elif isinstance(exc, CANCELLATION):
                self._discard(token)
            else:
                self.release(token, dropped=isinstance(exc, DROPS))
        except BaseException:
            # A Python clock that raised: nobody can retry this release, so
            # the slot comes back without a sample and the error goes on.
            if not token.released:
                self._discard(token)
            raise

    # ---- context managers ----------------------------------------------------------
    # The permits of this limiter's `with` blocks not yet exited, oldest
    # first: a block that ends in another context (a generator closed from
    # another task or thread, a task finalized after its loop closed) does
    # not find its permit in _HELD, and takes the oldest of these instead.
    _blocks: list[LimiterPermit] | None = None

    def __enter__(self) -> None:
        permit = self._admit()
        # setdefault: two threads entering first at once share one list.
        self.__dict__.setdefault("_blocks", []).append(permit)
        _HELD.set(_HELD.get() + ((self, permit),))

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> None:
        blocks = self._blocks or []
        held = _HELD.get()
        for i in range(len(held) - 1, -1, -1):
            if held[i][0] is self:
                permit = held[i][1]
                _HELD.set(held[:i] + held[i + 1:])
                try:
                    blocks.remove(permit)
                except ValueError:
                    # An exit in another context gave this slot back in place
                    # of its own block's: give that one's back now.
                    if blocks:
                        self._discard_block(blocks.pop(0))
                    return
                self._done(permit, exc)
                return
        # Another context: which block this was is unknown, so its slot comes
        # back without a latency sample.
        try:
            permit = blocks.pop(0)
        except IndexError:
            raise RuntimeError(f"adaptive limiter {self.name!r}: __exit__ without a matching "
                               f"__enter__") from None
        self._discard_block(permit)

    def _discard_block(self, permit: LimiterPermit) -> None:
        if not permit.released:
            self._discard(permit)

    async def __aenter__(self) -> None:
        self.__enter__()

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: object) -> None:
        self.__exit__(exc_type, exc, tb)
