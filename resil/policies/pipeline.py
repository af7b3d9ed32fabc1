"""Hedging, fallback, a single-call timeout, and the Pipeline that composes
policies: resil.hedge, resil.fallback, resil.timeout, resil.Pipeline."""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
from collections.abc import Callable, Iterable
from typing import Any, Protocol, TypeVar

from resil import _check
from resil.errors import CANCELLATION, OperationTimeout

__all__ = ["Pipeline", "Policy", "fallback", "hedge", "timeout"]

F = TypeVar("F", bound=Callable[..., Any])

#: The most extra attempts one hedged call may start.
MAX_HEDGES = 2**31 - 1


class Policy(Protocol):
    """What :class:`Pipeline` accepts: an object that wraps a function.

    ``policy(fn)`` returns a function called in place of ``fn`` (a
    coroutine function for a coroutine function). Optional members a
    pipeline reads when they are there:

    - ``stats() -> dict``: gathered by :meth:`resil.Pipeline.stats`.
    - ``name``: a non-empty str, the key of those stats.
    - ``async_only``: true when the policy can wrap only coroutine
      functions; a pipeline holding one refuses a plain function with
      ``TypeError`` when it decorates it.
    """

    def __call__(self, fn: Callable[..., Any], /) -> Callable[..., Any]: ...


class _Counts:
    """Counters that threads may bump at once without losing an increment."""

    __slots__ = ("_lock", "_values")

    def __init__(self, *keys: str) -> None:
        self._lock = threading.Lock()
        self._values = dict.fromkeys(keys, 0)

    def add(self, key: str) -> None:
        with self._lock:
            self._values[key] += 1

    def read(self) -> dict[str, int]:
        with self._lock:
            return dict(self._values)


def _wrappable(fn: Any, what: str) -> bool:
    """Whether ``fn`` is a coroutine function; TypeError for what ``what``
    cannot wrap: a non-callable, a generator or async generator function
    (a policy would only see its creation)."""
    if not callable(fn):
        raise TypeError(f"{what} needs a function or coroutine function, not {type(fn).__name__}")
    if inspect.isasyncgenfunction(fn) or inspect.isgeneratorfunction(fn):
        raise TypeError(f"{what} cannot wrap generator function {fn!r}: it would only see "
                        "its creation")
    return inspect.iscoroutinefunction(fn)


def _coroutine_only(fn: Any, what: str) -> None:
    if not _wrappable(fn, what):
        raise TypeError(f"{what} needs a coroutine function (async def): {fn!r} is a plain "
                        "function, which cannot be cancelled once it runs")


async def _cancel_and_wait(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancels ``tasks`` and returns once every one has ended, so none
    outlives the call. A cancellation of the caller meanwhile is re-raised
    after that. Every failure the tasks ended with is retrieved (never
    reported as unretrieved)."""
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    pending = {task for task in tasks if not task.done()}
    interrupted: BaseException | None = None
    while pending:
        try:
            _, pending = await asyncio.wait(pending)
        except asyncio.CancelledError as exc:  # cancelled again: the tasks still end first
            interrupted = exc
    _retrieve(tasks)
    if interrupted is not None:
        raise interrupted


def _retrieve(tasks: Iterable[asyncio.Task[Any]]) -> None:
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()


class Hedge:
    """What :func:`resil.hedge` returns: apply it to a coroutine function."""

    async_only = True
    name = "hedge"

    __slots__ = ("delay", "max_hedges", "_counts")

    def __init__(self, delay: float, max_hedges: int) -> None:
        self.delay = _check.seconds(delay, "delay")
        self.max_hedges = _check.integer(max_hedges, "max_hedges", 1, MAX_HEDGES)
        self._counts = _Counts("calls", "hedges", "hedge_wins", "successes", "failures")

    def __call__(self, fn: F) -> F:
        """Hedges ``fn``, a coroutine function; TypeError for anything else."""
        _coroutine_only(fn, "hedge")
        delay, max_hedges, counts = self.delay, self.max_hedges, self._counts

        @functools.wraps(fn)
        async def hedged(*args: Any, **kwargs: Any) -> Any:
            loop = asyncio.get_running_loop()
            counts.add("calls")
            attempts = [loop.create_task(fn(*args, **kwargs))]
            running = set(attempts)
            next_at = loop.time() + delay
            try:
                while True:
                    can_hedge = len(attempts) <= max_hedges
                    timeout = max(0.0, next_at - loop.time()) if can_hedge else None
                    done, running = await asyncio.wait(
                        running, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                    winner = next((t for t in attempts if t in done and not t.cancelled()
                                   and t.exception() is None), None)
                    if winner is not None:
                        break
                    if not running:  # every attempt started has failed
                        break
                    if can_hedge and loop.time() >= next_at:
                        attempts.append(loop.create_task(fn(*args, **kwargs)))
                        running.add(attempts[-1])
                        counts.add("hedges")
                        next_at += delay
            except BaseException:
                await _cancel_and_wait(running)
                _retrieve(attempts)
                raise
            await _cancel_and_wait(running)
            _retrieve(attempts)
            if winner is None:
                counts.add("failures")
                return attempts[0].result()  # raises the first attempt's error
            counts.add("successes")
            if winner is not attempts[0]:
                counts.add("hedge_wins")
            return winner.result()

        return hedged  # type: ignore[return-value]

    def stats(self) -> dict[str, Any]:
        """The hedge's counts, JSON-serialisable: name (``"hedge"``), delay,
        max_hedges, calls, hedges (extra attempts started), hedge_wins
        (calls an extra attempt won), successes and failures (calls that
        returned, calls that raised; a cancelled call is neither)."""
        return {"name": self.name, "delay": self.delay, "max_hedges": self.max_hedges,
                **self._counts.read()}

    def __repr__(self) -> str:
        return f"<Hedge delay={self.delay:g} max_hedges={self.max_hedges}>"


def hedge(delay: float, max_hedges: int = 1) -> Hedge:
    """Hedges a coroutine function: slow calls get extra, concurrent attempts.

    - ``delay``: seconds (finite, > 0) a call may run before another attempt
      starts; the k-th extra attempt starts ``k * delay`` after the call.
    - ``max_hedges=1``: the most extra attempts (an int >= 1).

    The first attempt to succeed gives the result; the others are cancelled
    and awaited before the call returns, so no attempt outlives it. A failure
    starts no attempt (that is what :func:`resil.retry` is for): the call
    fails once every attempt it started has failed, raising the first
    attempt's error. Cancelling the call cancels every attempt and waits for
    them. Time is the running event loop's, virtual under
    :func:`resil.run_virtual`. Each attempt runs as its own task.

    A plain function raises TypeError at decoration: an attempt that has
    started cannot be cancelled. The returned policy's ``stats()`` counts
    calls, hedges (extra attempts), hedge_wins, successes and failures.
    """
    return Hedge(delay, max_hedges)


class _Unset:
    def __repr__(self) -> str:
        return "..."


_UNSET: Any = _Unset()


class Fallback:
    """What :func:`resil.fallback` returns: apply it to a function or coroutine function."""

    name = "fallback"

    __slots__ = ("value", "factory", "on", "_factory_is_async", "_counts")

    def __init__(self, value: Any, factory: Callable[[BaseException], Any] | None,
                 on: Any) -> None:
        if factory is not None:
            _check.function(factory, "factory", optional=True)
            if value is not _UNSET:
                raise ValueError("pass value or factory, not both: factory(exc) gives the value")
        if isinstance(on, type):
            on = (on,)
        if not (isinstance(on, tuple)
                and all(isinstance(t, type) and issubclass(t, BaseException) for t in on)):
            raise TypeError(f"on must be an exception class or a tuple of them, not {on!r}")
        if not on:
            raise ValueError("on must name at least one exception class, got ()")
        self.value = None if value is _UNSET else value
        self.factory = factory
        self.on: tuple[type[BaseException], ...] = on
        self._factory_is_async = factory is not None and inspect.iscoroutinefunction(factory)
        self._counts = _Counts("calls", "fallbacks")

    def __call__(self, fn: F) -> F:
        """Wraps ``fn``; a coroutine ``factory`` needs ``fn`` to be a
        coroutine function too (TypeError otherwise, as it could not be
        awaited)."""
        is_async = _wrappable(fn, "fallback")
        if self._factory_is_async and not is_async:
            raise TypeError(f"fallback(factory=...) is a coroutine function, which plain function "
                            f"{fn!r} cannot await; give a plain factory")
        on, factory, value, counts = self.on, self.factory, self.value, self._counts

        if is_async:
            factory_is_async = self._factory_is_async

            @functools.wraps(fn)
            async def recovered(*args: Any, **kwargs: Any) -> Any:
                counts.add("calls")
                try:
                    return await fn(*args, **kwargs)
                except CANCELLATION:
                    raise
                except on as exc:
                    counts.add("fallbacks")
                    if factory is None:
                        return value
                    return await factory(exc) if factory_is_async else factory(exc)

            return recovered  # type: ignore[return-value]

        @functools.wraps(fn)
        def recovered_sync(*args: Any, **kwargs: Any) -> Any:
            counts.add("calls")
            try:
                return fn(*args, **kwargs)
            except CANCELLATION:
                raise
            except on as exc:
                counts.add("fallbacks")
                return value if factory is None else factory(exc)

        return recovered_sync  # type: ignore[return-value]

    def stats(self) -> dict[str, Any]:
        """The fallback's counts, JSON-serialisable: name
        (``"fallback"``), calls and fallbacks (calls that returned the
        fallback value instead of raising)."""
        return {"name": self.name, **self._counts.read()}

    def __repr__(self) -> str:
        what = f"factory={self.factory!r}" if self.factory is not None else f"value={self.value!r}"
        return f"<Fallback {what} on={tuple(t.__name__ for t in self.on)}>"


def fallback(value: Any = _UNSET, *, factory: Callable[[BaseException], Any] | None = None,
             on: Any = (Exception,)) -> Fallback:
    """Returns a fallback value instead of raising, for a function or
    coroutine function.

    - ``value``: what a failed call returns (None when neither ``value``
      nor ``factory`` is given). The same object each time.
    - ``factory=None``: ``factory(exc) -> value`` instead of ``value``
      (not both); awaited when it is a coroutine function, which only a
      coroutine function's fallback may take. What it raises propagates.
    - ``on=(Exception,)``: the exception class, or tuple of them, that
      falls back; any other propagates.

    Cancellation (``asyncio.CancelledError``, ``KeyboardInterrupt``,
    ``SystemExit``, ``GeneratorExit``) never falls back, whatever ``on``
    says. The returned policy's ``stats()`` counts calls and fallbacks.
    """
    return Fallback(value, factory, on)


class Timeout:
    """What :func:`resil.timeout` returns: apply it to a coroutine function."""

    async_only = True
    name = "timeout"

    __slots__ = ("seconds", "_counts")

    def __init__(self, seconds: float) -> None:
        self.seconds = _check.seconds(seconds, "seconds")
        self._counts = _Counts("calls", "timeouts")

    def __call__(self, fn: F) -> F:
        """Bounds ``fn``, a coroutine function; TypeError for anything else."""
        _coroutine_only(fn, "timeout")
        seconds, counts = self.seconds, self._counts

        @functools.wraps(fn)
        async def bounded(*args: Any, **kwargs: Any) -> Any:
            counts.add("calls")
            task = asyncio.get_running_loop().create_task(fn(*args, **kwargs))
            try:
                done, _ = await asyncio.wait({task}, timeout=seconds)
            except BaseException:
                await _cancel_and_wait({task})
                raise
            if done:
                return task.result()
            counts.add("timeouts")
            await _cancel_and_wait({task})
            # The deadline wins over whatever the call ended with while cancelled.
            raise OperationTimeout(f"{getattr(fn, '__qualname__', fn)!s} did not finish "
                                   f"within {seconds:g}s")

        return bounded  # type: ignore[return-value]

    def stats(self) -> dict[str, Any]:
        """The timeout's counts, JSON-serialisable: name (``"timeout"``),
        seconds, calls and timeouts (calls cancelled at their deadline)."""
        return {"name": self.name, "seconds": self.seconds, **self._counts.read()}

    def __repr__(self) -> str:
        return f"<Timeout {self.seconds:g}s>"


def timeout(seconds: float) -> Timeout:
    """Gives each call of a coroutine function ``seconds`` (finite, > 0)
    to finish: at the deadline the call is cancelled, awaited, and
    :class:`resil.OperationTimeout` (a :exc:`TimeoutError`) raised.

    Time is the running event loop's, virtual under
    :func:`resil.run_virtual`; the call runs as its own task. A plain
    function raises TypeError at decoration, since it cannot be stopped
    once it runs. For named operations with warnings and grace periods,
    see :class:`resil.TimeoutManager`. The returned policy's ``stats()``
    counts calls and timeouts.
    """
    return Timeout(seconds)


def _kind(policy: Any) -> str:
    """The stats key of a policy with no name: a function's own name, or
    the class name in lower case without a ``Policy`` suffix."""
    if inspect.isfunction(policy) or inspect.ismethod(policy):
        return str(policy.__name__)
    kind = type(policy).__name__.lower()
    return kind.removesuffix("policy") or kind


class Pipeline:
    """Several policies applied to one function, outermost first.

    ``Pipeline(a, b, c)(fn)`` is ``a(b(c(fn)))``: a call goes through
    ``a``, then ``b``, then ``c``, then ``fn``. Use it as a decorator on a
    function or coroutine function, or call through it:
    ``pipeline.call(fn, *args, **kwargs)`` for a plain function and
    ``await pipeline.call_async(fn, *args, **kwargs)`` for a coroutine
    function (each wraps ``fn`` anew; decorate once for a hot path).

    - ``*policies``: each a :class:`resil.CircuitBreaker`, a
      :func:`resil.retry`, :func:`resil.fallback`, :func:`resil.timeout` or
      :func:`resil.hedge` policy, another Pipeline, or any object that
      wraps a function: ``policy(fn)`` returns what to call instead,
      optionally with ``stats()``, a ``name`` and ``async_only`` (a
      bulkhead or a rate limiter plugs in this way). A class or one of
      the factories themselves (``resil.timeout`` rather than
      ``resil.timeout(5)``) is a TypeError.
    - ``name="default"``: the pipeline's name in its stats.

    The recommended order, outermost first, is
    ``Pipeline(fallback, timeout, retry, breaker, bulkhead, limiter)``:

    - **fallback** outermost, so it answers for every failure below it,
      timeouts, open circuits and rejections included.
    - **timeout** next, bounding the whole call, retries and their sleeps
      included (a timeout per attempt goes inside the retry instead).
    - **retry** outside the breaker, so each attempt is judged by the
      breaker and an open circuit ends the retries (give ``retry_on`` the
      errors worth retrying, not :exc:`resil.CircuitOpenError`).
    - **breaker** before the bulkhead, so a call the circuit rejects never
      takes or waits for a slot, and it counts each attempt's outcome.
    - **bulkhead** then **limiter** innermost, so a call spends its rate
      allowance only when it holds a slot and runs at once.

    A :func:`resil.hedge` goes inside the timeout and outside the retry,
    so every hedged attempt goes through the breaker, bulkhead and limiter.

    A policy that wraps only coroutine functions (a timeout, a hedge)
    makes decorating a plain function a TypeError at decoration.
    """

    __slots__ = ("name", "policies", "_keys", "__weakref__")

    def __init__(self, *policies: Policy, name: str = "default") -> None:
        from resil.policies.retry import retry  # retry imports the breaker: no cycle here

        factories: dict[Any, str] = {hedge: "hedge(delay)", fallback: "fallback(value)",
                     timeout: "timeout(seconds)", retry: "retry()"}
        for index, policy in enumerate(policies):
            made_by = next((call for f, call in factories.items() if f is policy), None)
            if made_by is not None:
                raise TypeError(f"policies[{index}] is the factory itself; pass its policy: "
                                f"resil.{made_by}")
            if isinstance(policy, type):
                raise TypeError(f"policies[{index}] is the class {policy.__name__}; pass an "
                                "instance")
            if not callable(policy):
                raise TypeError(f"policies[{index}] must be a policy (policy(fn) returns the "
                                f"wrapped fn), not {type(policy).__name__}")
        self.name = _check.text(name, "name")
        self.policies: tuple[Policy, ...] = tuple(policies)
        self._keys = self._stats_keys()

    def _stats_keys(self) -> tuple[str, ...]:
        keys: list[str] = []
        for policy in self.policies:
            name = getattr(policy, "name", None)
            key = name if isinstance(name, str) and name else _kind(policy)
            if key in keys:
                n = 2
                while f"{key}#{n}" in keys:
                    n += 1
                key = f"{key}#{n}"
            keys.append(key)
        return tuple(keys)

    @property
    def async_only(self) -> bool:
        """True when a policy of the pipeline wraps only coroutine functions."""
        return any(getattr(p, "async_only", False) is True for p in self.policies)

    def __call__(self, fn: F) -> F:
        """Applies the policies to ``fn``, innermost last. TypeError for a
        plain function when a policy wraps only coroutine functions, and for
        a generator or async generator function."""
        if not _wrappable(fn, "Pipeline"):
            for key, policy in zip(self._keys, self.policies):
                if getattr(policy, "async_only", False) is True:
                    raise TypeError(
                        f"pipeline {self.name!r}: policy {key!r} wraps only coroutine functions, "
                        f"and {fn!r} is a plain function")
        wrapped: Any = fn
        for policy in reversed(self.policies):
            wrapped = policy(wrapped)
        return wrapped  # type: ignore[no-any-return]

    def call(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` through the pipeline, for a plain
        function (TypeError for a coroutine function: use :meth:`call_async`)."""
        if inspect.iscoroutinefunction(fn):
            raise TypeError(f"{fn!r} is a coroutine function: use await pipeline.call_async(fn, ...)")
        return self(fn)(*args, **kwargs)

    async def call_async(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """``await fn(*args, **kwargs)`` through the pipeline, for a
        coroutine function (TypeError for anything else: use :meth:`call`)."""
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"{fn!r} is not a coroutine function: use pipeline.call(fn, ...)")
        return await self(fn)(*args, **kwargs)

    def stats(self) -> dict[str, Any]:
        """The pipeline's stats, JSON-serialisable when its policies' are:
        name, and policies: each policy's ``stats()`` under its key,
        outermost first. A policy's key is its ``name`` (a breaker's, a
        named retry's), else its kind (``"fallback"``, ``"timeout"``,
        ``"hedge"``, ``"retry"``, a class's name in lower case, a
        function's name); a key already taken gets ``#2``, ``#3`` ... in
        order. Policies without ``stats()`` are left out."""
        gathered: dict[str, Any] = {}
        for key, policy in zip(self._keys, self.policies):
            stats = getattr(policy, "stats", None)
            if callable(stats):
                gathered[key] = stats()
        return {"name": self.name, "policies": gathered}

    def __repr__(self) -> str:
        return f"<Pipeline {self.name!r} {' -> '.join(self._keys) or '(empty)'}>"
