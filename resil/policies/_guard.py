"""What the policies that admit a call, let it run and are told how it
ended share: ``policy.call(fn, ...)``, ``await policy.call_async(fn, ...)``
and ``@policy`` on plain and coroutine functions.

A class using :class:`Guard` defines three methods: ``_admit()`` admits a
call (waiting in the thread if the policy waits) and returns a token, or
raises when the call is refused; ``await _admit_async()`` does the same on
the event loop; ``_done(token, exc)`` is told how the admitted call ended:
``exc`` is what it raised (cancellation included), or None.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")


class Guard:
    __slots__ = ()

    def _admit(self) -> Any:
        raise NotImplementedError

    async def _admit_async(self) -> Any:
        raise NotImplementedError

    def _done(self, token: Any, exc: BaseException | None) -> None:
        raise NotImplementedError

    def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` once the policy admits it. For a
        coroutine function it returns ``call_async(fn, ...)``: admitted when
        awaited, the slot held until the coroutine ends (a plain function
        that returns an awaitable holds it only while it runs)."""
        if inspect.iscoroutinefunction(fn):
            return self.call_async(fn, *args, **kwargs)  # type: ignore[return-value]
        token = self._admit()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self._done(token, exc)
            raise
        self._done(token, None)
        return result

    async def call_async(self, fn: Callable[..., Awaitable[T]], /, *args: Any,
                         **kwargs: Any) -> T:
        """``await fn(*args, **kwargs)`` once the policy admits it."""
        token = await self._admit_async()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            self._done(token, exc)
            raise
        self._done(token, None)
        return result

    @overload
    def __call__(self, fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]: ...
    @overload
    def __call__(self, fn: Callable[..., T]) -> Callable[..., T]: ...

    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Decorates a plain or coroutine function so each call goes through
        the policy; the wrapper keeps the function's signature."""
        if not callable(fn):
            raise TypeError(f"a {type(self).__name__} decorates a function, not "
                            f"{type(fn).__name__}")
        # The wrappers repeat call() and call_async() inline: a decorated
        # call is a hot path, and one more Python frame is a fifth of it.
        admit, done = self._admit, self._done
        if inspect.iscoroutinefunction(fn):
            admit_async = self._admit_async

            @functools.wraps(fn)
            async def guarded_async(*args: Any, **kwargs: Any) -> Any:
                token = await admit_async()
                try:
                    result = await fn(*args, **kwargs)
                except BaseException as exc:
                    done(token, exc)
                    raise
                done(token, None)
                return result
            return guarded_async

        @functools.wraps(fn)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            token = admit()
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                done(token, exc)
                raise
            done(token, None)
            return result
        return guarded
