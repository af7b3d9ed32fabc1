"""Chaos: fault, latency and result injection, to test what the other
policies do with them.

Each of ``fault(rate, error)``, ``latency(rate, seconds)`` and
``result(rate, value)`` returns a policy: a decorator for functions and
coroutine functions (and so a stage of ``resil.Pipeline``, as any
decorator is) that, on a share ``rate`` of the calls, chosen at random,

- :func:`fault` raises ``error`` instead of calling the function;
- :func:`latency` waits ``seconds``, then calls the function;
- :func:`result` returns ``value`` instead of calling the function.

Common keyword arguments:

- ``seed=None``: an int, str or bytes seeding the policy's own
  ``random.Random``, so the same sequence of calls gets the same injections
  in every run (None: seeded from the operating system). Each policy draws
  one random number per call made while it is enabled, so the n-th enabled
  call is injected or not whatever happens between calls.
- ``enabled=True``: a bool, or a callable taking no argument read at each
  call (its truth value; an exception it raises propagates and the call is
  neither made nor counted). A disabled call goes straight to the function
  and draws no random number.
- ``clock=None``: how :func:`latency` waits. A :class:`resil.VirtualClock`
  is advanced instead of sleeping in a plain function, and awaited on (its
  time read until it has moved on by ``seconds``) in a coroutine function,
  as :func:`resil.run_virtual` with that clock makes it do at once; any
  other object with ``now()`` in seconds is waited on the same way in a
  coroutine function, while a plain function sleeps ``time.sleep``. None: a
  plain function sleeps ``time.sleep(seconds)``, a coroutine function awaits
  ``asyncio.sleep(seconds)`` (under ``run_virtual``, virtual seconds).
- ``name``: the policy's name in ``stats()`` (default ``"fault"``,
  ``"latency"`` or ``"result"``).

``stats()`` -> ``{"name", "calls", "injected", "rate", "enabled"}``: calls
made through the policy (enabled or not), the injections among them, the
rate and whether the policy is enabled now. Policies are thread-safe: the
draw and the counts are one step under a lock; the function runs outside it.

A rate is a finite number in [0, 1] (0: never, 1: every enabled call); a
wrong type raises TypeError and a bad value ValueError, naming the parameter.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import inspect
import random
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from resil import _check
from resil._resil import VirtualClock
from resil._time import sleep_until
from resil.policies.breaker import _mark_coroutine_function

__all__ = ["ChaosPolicy", "fault", "latency", "result"]

F = TypeVar("F", bound=Callable[..., Any])


def _seed(seed: Any) -> Any:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, str, bytes))):
        raise TypeError(f"seed must be None, an int, a str or bytes, not {type(seed).__name__}")
    return seed


def _enabled(enabled: Any) -> bool | Callable[[], object]:
    if isinstance(enabled, bool) or callable(enabled):
        return enabled  # type: ignore[no-any-return]
    raise TypeError(f"enabled must be a bool or a callable taking no argument, "
                    f"not {type(enabled).__name__}")


class ChaosPolicy:
    """What :func:`fault`, :func:`latency` and :func:`result` return: a
    decorator that injects into a share of the calls (see the module
    docstring); ``stats()`` counts the calls and injections."""

    __slots__ = ("_name", "_rate", "_enabled", "_clock", "_random", "_lock", "_calls",
                 "_injected", "__weakref__")

    def __init__(self, rate: float, *, name: str, seed: Any, enabled: Any, clock: Any) -> None:
        self._rate = _check.number(rate, "rate", 0.0, 1.0, what="rate")
        self._name = _check.text(name, "name")
        self._enabled = _enabled(enabled)
        self._clock = _check.clock(clock)
        self._random = random.Random(_seed(seed))
        self._lock = threading.Lock()
        self._calls = 0
        self._injected = 0

    @property
    def name(self) -> str:
        """The policy's name in ``stats()``."""
        return self._name

    @property
    def rate(self) -> float:
        """The share of enabled calls injected, in [0, 1]."""
        return self._rate

    def _is_enabled(self) -> bool:
        enabled = self._enabled
        return enabled if isinstance(enabled, bool) else bool(enabled())

    def _draw(self) -> bool:
        """Counts one call; True when it is to be injected."""
        on = self._is_enabled()
        with self._lock:
            self._calls += 1
            if not on or not self._random.random() < self._rate:
                return False
            self._injected += 1
            return True

    def stats(self) -> dict[str, Any]:
        """``{"name", "calls", "injected", "rate", "enabled"}``, JSON-serialisable."""
        with self._lock:
            calls, injected = self._calls, self._injected
        try:
            enabled = self._is_enabled()
        except Exception:
            enabled = False  # a failing switch injects nothing (its calls raise)
        return {"name": self._name, "calls": calls, "injected": injected,
                "rate": self._rate, "enabled": enabled}

    def __call__(self, fn: F) -> F:
        """Decorates a function or coroutine function (generator functions
        are refused: only their creation would be seen). The wrapper keeps
        the function's name and signature; ``__wrapped__`` is the function."""
        if not callable(fn):
            raise TypeError(f"a chaos policy decorates a callable, not {type(fn).__name__}")
        if inspect.isasyncgenfunction(fn) or inspect.isgeneratorfunction(fn):
            raise TypeError(f"cannot inject into generator function {fn!r}: only its "
                            "creation would be seen")
        wrapper: Callable[..., Any]
        if inspect.iscoroutinefunction(fn):
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                if self._draw():
                    return await self._inject_async(fn, args, kwargs)
                return await fn(*args, **kwargs)

            wrapper = async_wrapper
        else:
            def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
                if self._draw():
                    return self._inject(fn, args, kwargs)
                return fn(*args, **kwargs)

            wrapper = sync_wrapper
        functools.update_wrapper(wrapper, fn)
        if inspect.iscoroutinefunction(fn):
            _mark_coroutine_function(wrapper, fn)
        return wrapper  # type: ignore[return-value]

    def _inject(self, fn: Callable[..., Any], args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> Any:
        raise NotImplementedError

    async def _inject_async(self, fn: Callable[..., Any], args: tuple[Any, ...],
                            kwargs: dict[str, Any]) -> Any:
        return self._inject(fn, args, kwargs)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._name!r} rate={self._rate!r}>"


class _Fault(ChaosPolicy):
    __slots__ = ("_error",)

    def __init__(self, rate: float, error: Any, **kwargs: Any) -> None:
        super().__init__(rate, **kwargs)
        accepted = ("error must be an exception class that takes no arguments, "
                    "or an exception instance")
        if isinstance(error, type) and issubclass(error, BaseException):
            try:
                error()
            except Exception as exc:
                raise TypeError(f"{accepted}; {error.__name__}() raised {exc!r}") from None
        elif isinstance(error, BaseException):
            try:
                copy.copy(error)
            except Exception as exc:
                raise TypeError(f"{accepted} that copy.copy can copy; copying "
                                f"{error!r} raised {exc!r}") from None
        else:
            raise TypeError(f"{accepted}, not {type(error).__name__}")
        self._error = error

    def _inject(self, fn: Callable[..., Any], args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> Any:
        error = self._error
        # A fresh exception per injection: raising one instance again and
        # again would chain each raise's traceback onto the last, and two
        # threads would share (and overwrite) its traceback and context.
        raise error() if isinstance(error, type) else copy.copy(error)


class _Latency(ChaosPolicy):
    __slots__ = ("_seconds",)

    def __init__(self, rate: float, seconds: float, **kwargs: Any) -> None:
        super().__init__(rate, **kwargs)
        self._seconds = _check.seconds(seconds, "seconds", low_open=False)

    def _inject(self, fn: Callable[..., Any], args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> Any:
        if isinstance(self._clock, VirtualClock):
            self._clock.advance(self._seconds)
        else:
            time.sleep(self._seconds)
        return fn(*args, **kwargs)

    async def _inject_async(self, fn: Callable[..., Any], args: tuple[Any, ...],
                            kwargs: dict[str, Any]) -> Any:
        clock = self._clock
        if clock is None:
            await asyncio.sleep(self._seconds)
        else:
            await sleep_until(clock, clock.now() + self._seconds)
        return await fn(*args, **kwargs)

    def stats(self) -> dict[str, Any]:
        """``{"name", "calls", "injected", "rate", "enabled", "seconds"}``."""
        stats = super().stats()
        stats["seconds"] = self._seconds
        return stats


class _Result(ChaosPolicy):
    __slots__ = ("_value",)

    def __init__(self, rate: float, value: Any, **kwargs: Any) -> None:
        super().__init__(rate, **kwargs)
        self._value = value

    def _inject(self, fn: Callable[..., Any], args: tuple[Any, ...],
                kwargs: dict[str, Any]) -> Any:
        return self._value


def fault(rate: float, error: type[BaseException] | BaseException, *, seed: Any = None,
          enabled: bool | Callable[[], object] = True, clock: Any = None,
          name: str = "fault") -> ChaosPolicy:
    """A policy raising ``error`` instead of calling the function on a share
    ``rate`` (in [0, 1]) of the calls. ``error`` is an exception class,
    instantiated with no arguments at each injection, or an exception
    instance, of which each injection raises a fresh ``copy.copy`` (so
    tracebacks never pile up on one object, and threads never share one);
    anything else, or a class or instance that cannot be made or copied,
    raises TypeError. ``seed=None``, ``enabled=True``, ``clock=None`` (unused
    here, taken for a uniform signature), ``name="fault"``: see
    :mod:`resil.chaos`."""
    return _Fault(rate, error, seed=seed, enabled=enabled, clock=clock, name=name)


def latency(rate: float, seconds: float, *, seed: Any = None,
            enabled: bool | Callable[[], object] = True, clock: Any = None,
            name: str = "latency") -> ChaosPolicy:
    """A policy that waits ``seconds`` (finite, >= 0) before calling the
    function, on a share ``rate`` (in [0, 1]) of the calls: a plain function
    sleeps (a :class:`resil.VirtualClock` given as ``clock`` is advanced
    instead), a coroutine function awaits (``asyncio.sleep``, or the
    ``clock`` when one is given). ``seed=None``, ``enabled=True``,
    ``name="latency"``: see :mod:`resil.chaos`."""
    return _Latency(rate, seconds, seed=seed, enabled=enabled, clock=clock, name=name)


def result(rate: float, value: Any, *, seed: Any = None,
           enabled: bool | Callable[[], object] = True, clock: Any = None,
           name: str = "result") -> ChaosPolicy:
    """A policy returning ``value`` (the same object each time) instead of
    calling the function, on a share ``rate`` (in [0, 1]) of the calls; a
    coroutine function's wrapper returns it from its coroutine.
    ``seed=None``, ``enabled=True``, ``clock=None`` (unused here),
    ``name="result"``: see :mod:`resil.chaos`."""
    return _Result(rate, value, seed=seed, enabled=enabled, clock=clock, name=name)
