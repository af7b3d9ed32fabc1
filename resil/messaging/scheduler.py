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
    scale: TimeScale
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

    ``scheduler.add(name, job, scale=TimeScale.MESO, activity=None)`` runs
    ``await job()`` again and again; the activity is the job's return value
    (a number) or ``activity()``. After each run the job's
    :class:`AdaptiveInterval` speeds up (activity above the scale's
    threshold) or slows down; a run that reports no number leaves it, and a
    NaN or infinite activity counts as the job's error. Each job has a
    circuit breaker: 5 consecutive errors skip the job for 60 s. With
    ``emitter=`` an activity at or above ``novelty_threshold`` (default
    0.75, any finite number) emits a novelty event. ``clock=`` (default: the
    event loop's time; any object with ``now()`` in seconds) times the
    intervals between runs and is what the job breakers read; pass the
    ``VirtualClock`` of :func:`resil.run_virtual` in tests. Arguments after
    ``emitter`` are keyword-only.

    ``async with scheduler:`` starts and stops it; ``status()`` returns its
    status document, ``stats()`` its counters.
    """

    def __init__(self, emitter: EventEmitter | None = None, *, novelty_threshold: float = 0.75,
                 clock: VirtualClock | Any = None) -> None:
        if emitter is not None and not callable(getattr(emitter, "emit", None)):
            raise TypeError("emitter must be a resil.EventEmitter")
        self._novelty = _check.number(novelty_threshold, "novelty_threshold")
        self._clock: Any = _time.clock_or_loop(clock)
        self._emitter = emitter
        self._jobs: dict[str, _Job] = {}
        self._supervisor = Supervisor()
        self._started = False
        self._stopping: asyncio.Event | None = None

    def add(self, name: str, job: Callable[[], Awaitable[Any]], *, scale: TimeScale = TimeScale.MESO,
            activity: Callable[[], Any] | None = None) -> None:
        """Adds a job; it starts at once when the scheduler is running."""
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, not {type(name).__name__}")
        if name in self._jobs:
            raise ValueError(f"a job named {name!r} already exists")
        if not callable(job):
            raise TypeError(f"job must be an async callable, not {type(job).__name__}")
        if not isinstance(scale, TimeScale):
            raise TypeError(f"scale must be a resil.TimeScale, not {type(scale).__name__}")
        if activity is not None and not callable(activity):
            raise TypeError("activity must be callable or None")
        breaker = CircuitBreaker(f"job:{name}", failure_threshold=JOB_FAILURE_THRESHOLD,
                                 cooldown=JOB_COOLDOWN, cooldown_multiplier=1.0,
                                 cooldown_max=JOB_COOLDOWN, half_open_probes=0, adaptive=False,
                                 min_health_score=0.0, clock=self._clock)
        entry = _Job(name, job, scale, activity, scale.interval(), breaker)
        self._jobs[name] = entry
        if self._started:
            self._supervisor.spawn(self._loop(entry), name=f"resil-job-{name}")

    def start(self) -> None:
        """Starts every job in the running event loop."""
        if self._started:
            return
        self._started = True
        self._stopping = asyncio.Event()
        for entry in self._jobs.values():
            self._supervisor.spawn(self._loop(entry), name=f"resil-job-{entry.name}")

    async def stop(self, graceful: float = 5.0, forced: float = 2.0) -> None:
        """Asks every job loop to stop after its current run; a job still running
        after ``graceful`` seconds is cancelled (and given ``forced`` more).
        Both are seconds >= 0 (``inf``: no limit), checked before anything
        stops."""
        graceful = _check.limit(graceful, "graceful")
        forced = _check.limit(forced, "forced")
        self._started = False
        if self._stopping is not None:
            self._stopping.set()
        await self._supervisor.shutdown(graceful=graceful, forced=forced)

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
                    "scale": entry.scale.name,
                    "timestamp": datetime.datetime.now(datetime.timezone.utc)
                    .isoformat().replace("+00:00", "Z"),
                })

    def interval(self, name: str) -> float:
        """The current interval of a job, seconds."""
        return self._jobs[name].interval.interval

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
            "jobs": {j.name: {"scale": j.scale.name, "interval": j.interval.interval,
                              "runs": j.runs, "failures": j.errors, "skipped": j.skipped,
                              "last_activity": j.last_activity, "novelty_events": j.novelties,
                              "breaker": j.breaker.state.name} for j in jobs},
            "tasks": self._supervisor.stats(),
        }

    def status(self) -> dict[str, Any]:
        """The status document: ``circuit_breaker`` (the per-job breakers in
        aggregate: tripped if any is), ``adaptive_intervals`` per job,
        ``event_queue_size``, ``last_emission``, per-job detail under
        ``jobs`` and the supervisor's counts under ``tasks``."""
        jobs = list(self._jobs.values())
        tripped = [j for j in jobs if j.breaker.state in (State.OPEN, State.FORCED_OPEN)]
        last_trip = max((j.breaker.last_opened or 0.0 for j in tripped), default=None)
        emitter_status = self._emitter.stats() if self._emitter is not None else None
        return {
            "circuit_breaker": {
                "enabled": True,
                "tripped": bool(tripped),
                "consecutive_errors": max((j.breaker.stats()["consecutive_failures"] for j in jobs),
                                          default=0),
                "max_consecutive_errors": JOB_FAILURE_THRESHOLD,
                "trip_time": None if not tripped or not last_trip else
                datetime.datetime.fromtimestamp(last_trip, datetime.timezone.utc)
                .isoformat().replace("+00:00", "Z"),
            },
            "adaptive_intervals": {j.name: j.interval.interval for j in jobs},
            "event_queue_size": emitter_status["depth"] if emitter_status else 0,
            "last_emission": emitter_status["last_emission"] if emitter_status else None,
            "jobs": {j.name: {"scale": j.scale.name, "interval": j.interval.interval,
                              "runs": j.runs, "errors": j.errors, "skipped": j.skipped,
                              "last_activity": j.last_activity, "novelty_events": j.novelties,
                              "breaker": j.breaker.state.name} for j in jobs},
            "tasks": self._supervisor.stats(),
        }
