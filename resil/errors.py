"""Errors raised by resil's Python layer (ResilError and CircuitOpenError are C types)."""

from __future__ import annotations

import asyncio
from typing import Any

from resil._resil import ResilError

#: What cancels rather than fails: never counted as a success or a failure,
#: never retried, always re-raised (any permit it held is released).
CANCELLATION: tuple[type[BaseException], ...] = (
    asyncio.CancelledError, KeyboardInterrupt, SystemExit, GeneratorExit)

__all__ = ["BulkheadFull", "LimitExceeded", "OperationTimeout", "RateLimited", "RedisUnavailable",
           "RetryError"]


class _Message:
    """Base of the resil exceptions made from a message alone: their
    constructor takes ``(message="", /)`` and nothing more (the C base
    class, like Exception, would take any number of arguments)."""

    def __init__(self, message: str = "", /) -> None:
        super().__init__(message)  # type: ignore[call-arg]  # the exception class after this one


class OperationTimeout(_Message, ResilError, TimeoutError):
    """An operation ran out of time: a TimeoutManager deadline, or a retried
    coroutine still running at its deadline. A subclass of TimeoutError."""


class RetryError(ResilError):
    """Retries ended on a result that ``retry_if_result`` called a failure.

    ``.result`` is that last result and ``.attempts`` the number of calls made.
    """

    def __init__(self, message: str, *, result: Any = None, attempts: int = 0) -> None:
        super().__init__(message)
        self.result = result
        self.attempts = attempts

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_retry_error, (str(self), self.result, self.attempts))


def _rebuild_retry_error(message: str, result: Any, attempts: int) -> RetryError:
    return RetryError(message, result=result, attempts=attempts)


class BulkheadFull(_Message, ResilError):
    """A bulkhead refused a call: every slot was taken and its wait queue
    was full, or the call waited in the queue longer than the bulkhead's
    ``queue_timeout``. The call did not run."""


class LimitExceeded(_Message, ResilError):
    """An adaptive limiter refused a call: as many calls as its limit allows
    were in flight. The call did not run; the load is shed, not queued."""


class RedisUnavailable(_Message, ResilError):
    """Redis did not answer within a :class:`resil.redis.RedisBackend`'s
    ``timeout`` (or refused the connection, is loading its data, or is a
    read-only replica), or the backend is cooling down after such a
    failure. Raised only where a component has no local answer to give; its
    documentation says where."""


class RateLimited(ResilError):
    """A rate limiter refused a call: no token was available, or the wait
    for one would have exceeded the caller's timeout.

    ``.retry_after`` is the seconds until the tokens asked for would be
    admitted (as :meth:`resil.RateLimiter.retry_after` said at the refusal).
    """

    def __init__(self, message: str = "", *, retry_after: float = 0.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_rate_limited, (str(self), self.retry_after))


def _rebuild_rate_limited(message: str, retry_after: float) -> RateLimited:
    return RateLimited(message, retry_after=retry_after)
