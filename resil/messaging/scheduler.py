"""Adaptive scheduling of periodic jobs."""

from __future__ import annotations

import asyncio
import datetime
import inspect
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from resil import _check, _time
from resil.policies.breaker import CircuitBreaker
from resil.messaging.emitter import EventEmitter
from resil.policies.interval import TimeScale
from resil._resil import AdaptiveInterval, CircuitOpenError, State, VirtualClock
from resil.tasks import Supervisor

__all__ = ["AdaptiveScheduler"]

_log = logging.getLogger("resil.scheduler")

#: A job's breaker: 5 consecutive errors skip the job for 60 s (the documented defaults).
JOB_FAILURE_THRESHOLD = 5
JOB_COOLDOWN = 60.0


@dataclass
class _Job:
    name: str
    job: Callable[[], Awaitable[Any]]
    scale: TimeScale | None  # None: an AdaptiveInterval of the caller's
    activity: Callable[[], Any] | None
    interval: AdaptiveInterval
    breaker: CircuitBreaker
    runs: int = 0
    errors: int = 0
    skipped: int = 0
    last_activity: float | None = None
    novelties: int = 0


class AdaptiveScheduler:
    """Runs jobs repeatedly at intervals that adapt to their activity.

    ``scheduler.add(name, job, scale=TimeScale.MESO, activity=None,
    breaker=None)`` runs ``await job()`` again and again; the activity is
    the job's return value (a number) or ``activity()``. After each run the
    job's :class:`AdaptiveInterval` speeds up (activity above its
    threshold) or slows down; a run that reports no number leaves it, and a
    NaN or infinite activity counts as the job's error. ``scale`` is a
    :class:`TimeScale` preset or an :class:`AdaptiveInterval` of the
    caller's, whose bounds, threshold and factors then rule the job. Each
    job has a circuit breaker, by default one that skips the job for 60 s
    after 5 consecutive errors; ``breaker=`` gives a
    :class:`CircuitBreaker` of the caller's instead.

    ``emitter`` (default None): where novelty events go - a
    :class:`EventEmitter` (the caller starts and closes it), or an async
    function (or an object whose ``__call__`` is one), which the scheduler
    wraps in an :class:`EventEmitter` of its own (``emitter`` reads it),
    started by :meth:`start` and closed by :meth:`stop`. An activity at or
    above ``novelty_threshold`` (default 0.75, any finite number) emits a
    novelty event ``{"type": "novelty", "job", "activity", "scale",
    "timestamp"}``. ``clock=`` (default: the event loop's time; any object
    with ``now()`` in seconds) times the intervals between runs and is what
    the default job breakers read; pass the ``VirtualClock`` of
    :func:`resil.run_virtual` in tests. Arguments after ``emitter`` are
    keyword-only.

    ``async with scheduler:`` starts and stops it; ``status()`` returns its
    status document, ``stats()`` its counters.
    """

    def __init__(self, emitter: EventEmitter | Callable[[Any], Awaitable[Any]] | None = None, *,
                 novelty_threshold: float = 0.75, clock: VirtualClock | Any = None) -> None:
        sink: Callable[[Any], Awaitable[Any]] | None = None
        if emitter is not None and not isinstance(emitter, EventEmitter):
            if not _is_async_callable(emitter):
                plain = " (a plain function)" if callable(emitter) else ""
                raise TypeError(
                    f"emitter must be a resil.EventEmitter or an async function, not "
                    f"{type(emitter).__name__}{plain}; a plain function can be the sink of "
                    f"one: emitter=resil.EventEmitter(function)")
            sink, emitter = emitter, None
        self._novelty = _check.number(novelty_threshold, "novelty_threshold")
        self._clock: Any = _time.clock_or_loop(clock)
        self._sink = sink  # an async function the scheduler wraps (anew at a start after stop)
        self._emitter_clock = clock
        self._emitter: EventEmitter | None = (emitter if sink is None
                                              else EventEmitter(sink, clock=clock))
        self._owns_emitter = sink is not None
        self._emitter_closed = False
        self._closing: set[asyncio.Task[None]] = set()  # emitter closes under way
        self._jobs: dict[str, _Job] = {}
        self._supervisor = Supervisor()
        self._started = False
        self._stopping: asyncio.Event | None = None

    def add(self, name: str, job: Callable[[], Awaitable[Any]], *,
            scale: TimeScale | AdaptiveInterval = TimeScale.MESO,
            activity: Callable[[], Any] | None = None,
            breaker: CircuitBreaker | None = None) -> None:
        """Adds a job; it starts at once when the scheduler is running.

        ``name``: a str not used by another job. ``job``: an async function
        of no arguments. ``scale`` (default ``TimeScale.MESO``): a
        :class:`TimeScale` (the job gets a fresh interval of that preset,
        factors 0.8 and 1.2) or an :class:`AdaptiveInterval`, which the job
        then uses as it is (not reset): after each run its ``update`` (its
        own min, max, threshold, speedup and slowdown) gives the wait before
        the next, and the caller can read it. One interval object
        steps one job: handing the same one to a second job of this
        scheduler raises ValueError, and it must not be shared with another
        scheduler either (each job's runs would move the other's waits).
        ``activity``: a callable returning the activity (default: the job's
        return value). ``breaker`` (default None): a :class:`CircuitBreaker`
        guarding the job - skipped, not run, while it rejects; it times its
        cooldown with its own clock, and may be shared by jobs that call one
        service. None gives the job its own breaker on the scheduler's clock,
        tripping after 5 consecutive errors for 60 s."""
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, not {type(name).__name__}")
        if name in self._jobs:
            raise ValueError(f"a job named {name!r} already exists")
        if not callable(job):
            raise TypeError(f"job must be an async callable, not {type(job).__name__}")
        if isinstance(scale, TimeScale):
            preset: TimeScale | None = scale
            interval = scale.interval()
        elif isinstance(scale, AdaptiveInterval):
            for other in self._jobs.values():
                if other.interval is scale:
                    raise ValueError(f"scale: this AdaptiveInterval already steps job "
                                     f"{other.name!r}; give each job its own")
            preset, interval = None, scale
        else:
            raise TypeError(f"scale must be a resil.TimeScale or a resil.AdaptiveInterval, not "
                            f"{type(scale).__name__}")
        _check.function(activity, "activity", optional=True)
        if breaker is None:
            breaker = CircuitBreaker(f"job:{name}", failure_threshold=JOB_FAILURE_THRESHOLD,
                                     cooldown=JOB_COOLDOWN, cooldown_multiplier=1.0,
                                     cooldown_max=JOB_COOLDOWN, half_open_probes=0,
                                     adaptive=False, min_health_score=0.0, clock=self._clock)
        elif not isinstance(breaker, CircuitBreaker):
            raise TypeError(f"breaker must be a resil.CircuitBreaker or None, not "
                            f"{type(breaker).__name__}")
        entry = _Job(name, job, preset, activity, interval, breaker)
        self._jobs[name] = entry
        if self._started:
            self._supervisor.spawn(self._loop(entry), name=f"resil-job-{name}")

    def start(self) -> None:
        """Starts every job in the running event loop."""
        if self._started:
            return
        if self._owns_emitter:
            if self._emitter_closed:  # stopped before: a fresh emitter for the same function
                assert self._sink is not None
                self._emitter = EventEmitter(self._sink, clock=self._emitter_clock)
                self._emitter_closed = False
            assert self._emitter is not None
            self._emitter.start()  # before any job can emit
        self._started = True
        self._stopping = asyncio.Event()
        for entry in self._jobs.values():
            self._supervisor.spawn(self._loop(entry), name=f"resil-job-{entry.name}")

    async def stop(self, graceful: float = 5.0, forced: float = 2.0) -> None:
        """Asks every job loop to stop after its current run; a job still running
        after ``graceful`` seconds is cancelled (and given ``forced`` more).
        Both are seconds >= 0 (``inf``: no limit), checked before anything
        stops. An emitter the scheduler made from an async function is then
        closed with what is left of the same two limits (its queued novelty
        events are sent meanwhile; see :meth:`EventEmitter.close`), and a
        later :meth:`start` wraps the function in a new one."""
        graceful = _check.limit(graceful, "graceful")
        forced = _check.limit(forced, "forced")
        loop = asyncio.get_running_loop()
        drain_until = loop.time() + graceful
        self._started = False
        if self._stopping is not None:
            self._stopping.set()
        try:
            await self._supervisor.shutdown(graceful=graceful, forced=forced)
        finally:
            # Also when this stop is cancelled: the emitter still closes (in
            # its own task, kept until it ends), and the cancellation goes on.
            closing = self._close_emitter(loop, drain_until, forced)
        if closing is not None:
            await asyncio.shield(closing)

    def _close_emitter(self, loop: asyncio.AbstractEventLoop, drain_until: float,
                       forced: float) -> asyncio.Task[None] | None:
        """Starts closing an emitter the scheduler owns with what is left of
        stop's limits; the closing task, or None when there is nothing to close."""
        if not self._owns_emitter or self._emitter_closed:
            return None
        assert self._emitter is not None
        self._emitter_closed = True
        now = loop.time()
        if now < drain_until:
            left, forced_left = drain_until - now, forced
        else:
            left, forced_left = 0.0, max(drain_until + forced - now, 0.0)
        task = loop.create_task(self._emitter.close(graceful=left, forced=forced_left),
                                name="resil-scheduler-emitter-close")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        return task

    async def __aenter__(self) -> AdaptiveScheduler:
        self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    async def _loop(self, entry: _Job) -> None:
        stopping = self._stopping
        assert stopping is not None
        while not stopping.is_set():
            await self._run_once(entry)
            clock = self._clock
            await _time.await_until(stopping.wait, clock, clock.now() + entry.interval.interval)

    async def _run_once(self, entry: _Job) -> None:
        try:
            permit = entry.breaker.acquire()
        except CircuitOpenError:
            entry.skipped += 1
            return
        try:
            result = await entry.job()
            level = entry.activity() if entry.activity is not None else result
            if inspect.isawaitable(level):
                level = await level
            # A number is the activity (anything else reports none); a
            # non-finite one is the job's error, not a step of its interval.
            activity = (None if isinstance(level, bool) or not isinstance(level, (int, float))
                        else _check.number(level, f"activity of job {entry.name!r}"))
        except Exception as exc:
            entry.errors += 1
            entry.breaker.record_failure(permit)
            _log.warning("job %r failed: %r", entry.name, exc)
            return
        except BaseException:
            entry.breaker.release(permit)
            raise
        entry.breaker.record_success(permit)
        entry.runs += 1
        if activity is not None:
            entry.last_activity = activity
            entry.interval.update(activity)
            if self._emitter is not None and activity >= self._novelty:
                entry.novelties += 1
                self._emitter.emit({
                    "type": "novelty", "job": entry.name, "activity": activity,
                    "scale": _scale_name(entry),
                    "timestamp": datetime.datetime.now(datetime.timezone.utc)
                    .isoformat().replace("+00:00", "Z"),
                })

    def interval(self, name: str) -> float:
        """The current interval of a job, seconds."""
        return self._jobs[name].interval.interval

    @property
    def emitter(self) -> EventEmitter | None:
        """Where novelty events go: the :class:`EventEmitter` given, the one
        made from an async function, or None."""
        return self._emitter

    def stats(self) -> dict[str, Any]:
        """The scheduler's counters, JSON-serialisable, in the vocabulary
        every resil component's ``stats()`` uses: runs, failures (runs
        that raised or reported a non-finite activity) and skipped (runs
        a job's open breaker refused) over every job; tripped (jobs whose
        breaker is open); per job under ``jobs`` (scale, interval, runs,
        failures, skipped, last_activity, novelty_events, breaker); the
        supervisor's counts under ``tasks``. :meth:`status` is the status
        document with the emitter's queue and last emission."""
        jobs = list(self._jobs.values())
        return {
            "runs": sum(j.runs for j in jobs),
            "failures": sum(j.errors for j in jobs),
            "skipped": sum(j.skipped for j in jobs),
            "tripped": sum(1 for j in jobs if j.breaker.state in (State.OPEN, State.FORCED_OPEN)),
            "jobs": {j.name: {"scale": _scale_name(j), "interval": j.interval.interval,
                              "runs": j.runs, "failures": j.errors, "skipped": j.skipped,
                              "last_activity": j.last_activity, "novelty_events": j.novelties,
                              "breaker": j.breaker.state.name} for j in jobs},
            "tasks": self._supervisor.stats(),
        }

    def status(self) -> dict[str, Any]:
        """The status document: ``circuit_breaker`` (the job breakers in
        aggregate, each counted once however many jobs share it: ``tripped``
        if any is open, ``consecutive_errors`` the most of any,
        ``max_consecutive_errors`` the fewest consecutive errors that trip
        one - 5 with the default breakers or no job - and ``trip_time``, ISO
        8601 UTC, of the latest open one), ``adaptive_intervals`` per job,
        ``event_queue_size``, ``last_emission``, per-job detail under
        ``jobs`` (``scale`` is the preset's name, or ``"CUSTOM"`` for an
        :class:`AdaptiveInterval` of the caller's; ``consecutive_errors``
        and ``max_consecutive_errors`` of its breaker) and the supervisor's
        counts under ``tasks``."""
        jobs = list(self._jobs.values())
        breakers = list({id(j.breaker): j.breaker for j in jobs}.values())
        tripped = [b for b in breakers if b.state in (State.OPEN, State.FORCED_OPEN)]
        last_trip = max((b.last_opened or 0.0 for b in tripped), default=None)
        emitter_status = self._emitter.stats() if self._emitter is not None else None
        return {
            "circuit_breaker": {
                "enabled": True,
                "tripped": bool(tripped),
                "consecutive_errors": max((b.stats()["consecutive_failures"] for b in breakers),
                                          default=0),
                "max_consecutive_errors": min((b.failure_threshold for b in breakers),
                                              default=JOB_FAILURE_THRESHOLD),
                "trip_time": None if not tripped or not last_trip else
                datetime.datetime.fromtimestamp(last_trip, datetime.timezone.utc)
                .isoformat().replace("+00:00", "Z"),
            },
            "adaptive_intervals": {j.name: j.interval.interval for j in jobs},
            "event_queue_size": emitter_status["depth"] if emitter_status else 0,
            "last_emission": emitter_status["last_emission"] if emitter_status else None,
            "jobs": {j.name: {"scale": _scale_name(j), "interval": j.interval.interval,
                              "runs": j.runs, "errors": j.errors, "skipped": j.skipped,
                              "last_activity": j.last_activity, "novelty_events": j.novelties,
                              "breaker": j.breaker.state.name,
                              "consecutive_errors": j.breaker.stats()["consecutive_failures"],
                              "max_consecutive_errors": j.breaker.failure_threshold}
                     for j in jobs},
            "tasks": self._supervisor.stats(),
        }


def _scale_name(job: _Job) -> str:
    return "CUSTOM" if job.scale is None else job.scale.name


def _is_async_callable(obj: Any) -> bool:
    """An async function, a partial or bound method of one, or an object
    whose ``__call__`` is one."""
    if inspect.iscoroutinefunction(obj):
        return True
    call = getattr(type(obj), "__call__", None)
    return call is not None and inspect.iscoroutinefunction(call)
