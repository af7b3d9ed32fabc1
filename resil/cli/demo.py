"""``python -m resil demo``: a simulated dependency through a circuit breaker.

The dependency is healthy, then flaky, then down, then slow, then healthy
again. Everything runs on a :class:`resil.VirtualClock` (each call advances
it by its simulated latency), so the demo takes a second of real time and
prints the same timeline on every run. A second part runs an adaptive
sampling job whose novel readings go through an emitter onto an event bus,
where a failing subscriber's events reach the dead-letter queue and one is
reprocessed. A third part sheds a burst of requests with a rate limiter in
front of a bulkhead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import signal
import textwrap
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from resil import (
    AdaptiveScheduler,
    Backoff,
    Bulkhead,
    BulkheadFull,
    CircuitBreaker,
    CircuitOpenError,
    DeadLetterQueue,
    Event,
    EventBus,
    EventEmitter,
    Monitor,
    RateLimited,
    RateLimiter,
    TimeoutManager,
    TimeScale,
    VirtualClock,
    retry,
    run_virtual,
)


@dataclass(frozen=True)
class Phase:
    name: str
    calls: int
    failure_rate: float
    latency_ms: tuple[float, float]  # uniform range


PHASES = (
    Phase("healthy", 120, 0.01, (20.0, 60.0)),
    Phase("flaky", 160, 0.30, (40.0, 120.0)),
    Phase("outage", 160, 0.95, (150.0, 250.0)),
    Phase("slow", 160, 0.04, (3500.0, 6500.0)),
    Phase("recovered", 240, 0.0, (20.0, 40.0)),
)

INTERVAL = 0.25  # seconds between calls

# The breaker under test; the legend quotes these figures.
BREAKER: dict[str, Any] = {
    "failure_threshold": 6,
    "failure_rate_threshold": 0.5,
    "window_size": 50,
    "minimum_calls": 20,
    "cooldown": 10.0,
    "cooldown_max": 30.0,
    "half_open_probes": 3,
    "sensitivity": 0.5,
    "min_health_score": 0.5,
}

HEALTH_WINDOW = 30.0  # seconds of requests the monitor judges health over

# The load-shedding part: a burst of REQUESTS at once through the rate
# limiter, then the bulkhead; the legend quotes these figures. Call times
# and the queue timeout fall between the table's rows (every 0.1 s).
SHEDDING: dict[str, Any] = {
    "requests": 30,
    "rate": 20,               # tokens per second
    "burst": 10,              # the bucket's capacity
    "max_concurrent": 4,
    "max_queue": 4,
    "queue_timeout": 0.42,    # seconds
    "hold": 0.24,             # seconds a call holds its slot...
    "slow_hold": 0.54,        # ...except the first `slow` calls
    "slow": 2,
}

WIDTH = 100  # no line of the output is longer


class DependencyError(ConnectionError):
    """The simulated dependency failed."""


@dataclass(frozen=True)
class Column:
    name: str
    width: int
    meaning: str
    left: bool = False  # text, aligned left; numbers align right


def _say(out: TextIO, text: str, indent: int = 0) -> None:
    """Writes ``text`` in lines of at most WIDTH characters, breaking a long
    line after its last ": ", "; " or ", " that fits (else at a space), so
    clauses stay whole; lines after the first are indented by ``indent``."""
    for paragraph in text.split("\n"):
        line = paragraph
        while len(line) > WIDTH:
            cut = max(line.rfind(sep, indent + 1, WIDTH) for sep in (": ", "; ", ", "))
            cut = cut + 1 if cut > indent else line.rfind(" ", indent + 1, WIDTH + 1)
            if cut <= indent:
                break  # one word longer than the width: leave it whole
            out.write(line[:cut].rstrip() + "\n")
            line = " " * indent + line[cut:].lstrip()
        out.write(line + "\n")


def _legend(out: TextIO, columns: Sequence[Column]) -> None:
    """Writes one line per column: its name and what it shows, wrapped to WIDTH."""
    pad = max(len(c.name) for c in columns) + 4
    for c in columns:
        out.write(textwrap.fill(c.meaning, WIDTH, initial_indent=f"  {c.name:<{pad - 2}}",
                                subsequent_indent=" " * pad) + "\n")


def _header(out: TextIO, columns: Sequence[Column]) -> None:
    out.write(" ".join(f"{c.name:<{c.width}}" if c.left else f"{c.name:>{c.width}}"
                       for c in columns) + "\n")


def _phases() -> str:
    def span(lo: float, hi: float) -> str:
        return f"{lo / 1000:g}-{hi / 1000:g} s" if hi >= 1000 else f"{lo:g}-{hi:g} ms"

    return ", ".join(f"{p.name} ({p.failure_rate:.0%}, {span(*p.latency_ms)})" for p in PHASES)


def _timeline_columns(window: int, period: int, threshold: int, min_health: float,
                      health_window: float) -> tuple[Column, ...]:
    return (
        Column("time", 7, "seconds of virtual time since the start"),
        Column("phase", 9, f"what the dependency does: the share of calls that fail and "
                           f"their latency: {_phases()}", left=True),
        Column("state", 9, "the breaker's state: CLOSED, DEGRADED (admits calls, health is "
                           "low), OPEN (rejects), HALF_OPEN (admits a few probes)", left=True),
        Column("fail%", 5, f"failed calls among the breaker's last {window} outcomes"),
        Column("ewma", 5, f"the breaker's moving average of the failure rate, one step per "
                          f"{period} outcomes; it outlives the window"),
        Column("signal", 6, "ewma discounted by its volatility: steady failure raises it, "
                            "a one-off spike does not"),
        Column("thresh", 6, f"the adaptive threshold: consecutive failures that trip; "
                            f"{threshold}, lowered as signal passes 0.3, 0.5, 0.7"),
        Column("health", 6, f"the breaker's health score in [0, 1] from success rate, latency "
                            f"and jitter; below {min_health:g}: DEGRADED"),
        Column("latency", 7, "the breaker's mean latency over its recent calls"),
        Column("ok", 4, "requests that succeeded so far (perhaps after retries)"),
        Column("fail", 4, "requests that failed after their retries"),
        Column("rej", 4, "requests the open breaker rejected without calling the dependency"),
        Column("retry", 5, "retries made so far (each one a new attempt through the breaker)"),
        Column("monitor", 8, f"resil.Monitor's health() over the last {health_window:g} s "
                             f"of requests: healthy, degraded or critical"),
    )


SCHEDULER_COLUMNS = (
    Column("time", 7, "seconds of the scheduler's own virtual time"),
    Column("activity", 8, "the reading the job samples: 0.1 when quiet, 0.9 in the burst"),
    Column("interval", 8, "the job's current interval: shrinks x0.8 a run while busy, grows "
                          "x1.2 while quiet, within the MICRO scale's 0.05-1.0 s"),
    Column("runs", 4, "times the job has run"),
    Column("emitted", 7, "novelty events the emitter has handed to the bus"),
    Column("queued", 6, "events waiting in the emitter's queue"),
)


class _TimelineHandler(logging.Handler):
    """Writes the breaker's structured transition records into the timeline."""

    def __init__(self, out: TextIO, clock: VirtualClock) -> None:
        super().__init__(logging.INFO)
        self.out = out
        self.clock = clock

    def emit(self, record: logging.LogRecord) -> None:
        f = record.__dict__
        latency = f.get("latency_ms")
        shown = "" if latency is None else f", last call {latency:.0f} ms"
        _say(self.out, f"{self.clock.now():6.1f}s >>> {f['state_transition']} ({f['reason']}; "
                       f"{f['fail_count']} failed in a row, {f['success_rate']} ok{shown})",
             indent=12)


class _MessageHandler(logging.Handler):
    """Writes warnings from the bus and the dead-letter queue into the output."""

    def __init__(self, out: TextIO, clock: VirtualClock) -> None:
        super().__init__(logging.WARNING)
        self.out = out
        self.clock = clock

    def emit(self, record: logging.LogRecord) -> None:
        _say(self.out, f"{self.clock.now():6.2f}s >>> {record.getMessage()}", indent=12)


@contextlib.contextmanager
def _routed(handler: logging.Handler, *names: str) -> Iterator[None]:
    """Sends the records of loggers ``names`` from ``handler.level`` up to
    ``handler`` only, for the duration; then puts the loggers back."""
    saved = []
    for name in names:
        log = logging.getLogger(name)
        saved.append((log, log.level, log.propagate))
        log.addHandler(handler)
        log.setLevel(handler.level)
        log.propagate = False
    try:
        yield
    finally:
        for log, level, propagate in saved:
            log.removeHandler(handler)
            log.setLevel(level)
            log.propagate = propagate


class Dependency:
    """A remote call whose behaviour follows the current phase."""

    def __init__(self, clock: VirtualClock, seed: int) -> None:
        self.clock = clock
        self.rng = random.Random(seed)
        self.phase = PHASES[0]
        self.calls = 0

    def __call__(self, request: int) -> int:
        self.calls += 1
        lo, hi = self.phase.latency_ms
        self.clock.advance(self.rng.uniform(lo, hi) / 1000.0)
        if self.rng.random() < self.phase.failure_rate:
            raise DependencyError(f"request {request} failed during {self.phase.name}")
        return request


def new_monitor() -> Monitor:
    """The demo's monitor: health over the last HEALTH_WINDOW seconds, on a
    new VirtualClock; a mean request of 1 s or more is degraded, and a
    watched dead-letter queue holding 2 entries or more raises an alert."""
    return Monitor(retention=HEALTH_WINDOW, alert_response_ms=1000.0, alert_dead_letters=2,
                   clock=VirtualClock())


def run(out: TextIO, seed: int = 7, every: int = 20, monitor: Monitor | None = None,
        sources: list[Any] | None = None) -> dict[str, int]:
    """Runs the demo, writing the timeline to ``out``; returns the totals.
    Requests are recorded in ``monitor`` (its clock is used; default:
    :func:`new_monitor`); the breaker, the retry policy and the monitor are
    appended to ``sources`` for metrics."""
    if monitor is None:
        monitor = new_monitor()
    clock = monitor.clock
    if not isinstance(clock, VirtualClock):
        raise TypeError("the demo's monitor needs a VirtualClock")
    dependency = Dependency(clock, seed)
    breaker = CircuitBreaker("inventory-api", clock=clock, **BREAKER)
    # Transitions are logged on "resil.breaker" with structured fields; show them inline.
    monitor.watch(breaker)
    with _routed(_TimelineHandler(out, clock), "resil.breaker"):
        return _run(out, clock, dependency, breaker, every, monitor, sources)


def _run(out: TextIO, clock: VirtualClock, dependency: Dependency, breaker: CircuitBreaker,
         every: int, monitor: Monitor, sources: list[Any] | None) -> dict[str, int]:
    delays: list[float] = []  # one entry per retry

    def on_retry(attempt: int, delay: float, error: object) -> None:
        delays.append(delay)

    # Each request: up to 2 retries with jittered backoff, every attempt
    # through the breaker; an open breaker fails fast without sleeping.
    policy = retry(retries=2, backoff=Backoff(0.2, 2.0, max_delay=2.0, jitter="equal", seed=1),
                   breaker=breaker, clock=clock, on_retry=on_retry, name="inventory")
    monitor.watch(policy)  # its retries reach the dashboard with no other code
    call = policy(dependency)
    if sources is not None:
        sources.extend([breaker, policy, monitor])
    c = breaker.config
    window = c["window_size"]
    columns = _timeline_columns(window, max(1, window // 10), c["failure_threshold"],
                                c["min_health_score"], monitor.retention)
    out.write("resil demo: a dependency behind a circuit breaker, on a virtual clock\n")
    _say(out, f"breaker: failure_threshold={c['failure_threshold']} (adaptive, sensitivity="
              f"{c['sensitivity']:g}), failure_rate_threshold={c['failure_rate_threshold']:g}, "
              f"window_size={window}, minimum_calls={c['minimum_calls']}, cooldown="
              f"{c['cooldown']:g}s (x{c['cooldown_multiplier']:g} per reopen, max "
              f"{c['cooldown_max']:g}s), half_open_probes={c['half_open_probes']}, "
              f"min_health_score={c['min_health_score']:g}", indent=2)
    _say(out, "retry: 2 retries, backoff 0.2s x2 (max 2s, equal jitter), through the breaker")
    _say(out, f"columns of the timeline (a row every {every} requests; the >>> lines are the "
              "breaker's transitions):")
    _legend(out, columns)
    out.write("\n")
    _header(out, columns)
    ok = failed = rejected = 0
    request = 0
    for phase in PHASES:
        dependency.phase = phase
        for _ in range(phase.calls):
            request += 1
            started = clock.now()
            try:
                call(request)
                ok += 1
                outcome: str | None = None
            except CircuitOpenError:
                rejected += 1
                outcome = "CircuitOpenError"
            except DependencyError:
                failed += 1
                outcome = "DependencyError"
            monitor.record(breaker.name, "get", (clock.now() - started) * 1000.0,
                           outcome is None, error_type=outcome)
            clock.advance(INTERVAL)
            if request % every == 0:
                s = breaker.stats()
                out.write(
                    f"{clock.now():6.1f}s {phase.name:<9} {s['state'].name:<9} "
                    f"{s['failure_rate'] * 100:5.1f} {s['ewma_failure_rate']:5.3f} "
                    f"{s['ewma_signal']:6.3f} {s['effective_threshold']:6d} "
                    f"{s['health_score']:6.3f} {s['avg_latency_ms']:5.0f}ms {ok:4d} "
                    f"{failed:4d} {rejected:4d} {len(delays):5d} {monitor.health():>8}\n")
    s = breaker.stats()
    _say(out, f"\n{request} requests: {ok} succeeded, {failed} failed, {rejected} rejected by "
              f"the breaker (the dependency saw {dependency.calls})")
    _say(out, "transitions into each state: "
              + ", ".join(f"{k}={v}" for k, v in s["transitions"].items() if v))
    _say(out, f"retries: {len(delays)} made, {sum(delays):.1f}s slept in all")
    return {"requests": request, "ok": ok, "failed": failed, "rejected": rejected,
            "retries": len(delays),
            "dependency_calls": dependency.calls}


def run_scheduler(out: TextIO, seconds: float = 20.0, monitor: Monitor | None = None,
                  sources: list[Any] | None = None) -> dict[str, int]:
    """A sampling job on the MICRO scale whose activity goes quiet -> burst ->
    quiet: its interval adapts, and novel readings go out through an emitter
    onto an event bus, whose archive handler writes behind a retry, a
    breaker and a timeout. ``monitor`` (if given) watches the emitter, the
    bus, the dead-letter queue, the archive's retry, breaker and timeouts;
    they, the emitter, bus and dead-letter queue are appended to
    ``sources``."""
    clock = VirtualClock()
    delivered: list[dict[str, object]] = []

    def activity_at(t: float) -> float:
        return 0.9 if 6.0 <= t < 12.0 else 0.1

    async def sample() -> float:
        return activity_at(clock.now())

    dlq = DeadLetterQueue(maxsize=100, name="novelty.dlq")
    bus = EventBus(storm_threshold=50, storm_window=1.0, handler_failure_limit=5, dlq=dlq,
                   clock=clock)
    # The archive refuses connections for half a second, is slow (but shows
    # progress) for a while, then hangs once.
    archive_down, archive_slow, archive_hangs = (9.0, 9.5), (10.5, 10.6), (11.0, 11.1)
    archived: list[int] = []
    archive_breaker = CircuitBreaker("archive", failure_threshold=2, cooldown=0.25,
                                     half_open_probes=1, clock=clock)
    timeouts = TimeoutManager(operation_timeout=0.2, grace_period=0.2, clock=clock)

    def dashboard(event: Event) -> None:
        delivered.append(dict(event.payload))

    def within(span: tuple[float, float], t: float) -> bool:
        return span[0] <= t < span[1]

    @retry(retries=1, backoff=Backoff(0.05, 1.0, max_delay=0.05), breaker=archive_breaker,
           name="archive")
    async def write(event: Event) -> None:
        async with timeouts.timeout("archive.write") as op:
            started = clock.now()
            if within(archive_down, started):
                raise ConnectionError("archive unreachable")
            if within(archive_slow, started):
                await asyncio.sleep(0.15)
                op.progress()          # alive: earns a grace period past 0.2 s
                await asyncio.sleep(0.15)
            elif within(archive_hangs, started):
                await asyncio.sleep(1.0)   # no progress: timed out at 0.2 s
            archived.append(event.seq)

    async def archive(event: Event) -> None:
        await write(event)

    bus.subscribe("sensor.novelty", dashboard, required=("job", "activity"), name="dashboard")
    bus.subscribe("sensor.novelty", archive, name="archive")

    async def sink(event: dict[str, object]) -> None:
        await bus.publish("sensor.novelty", event, publisher="scheduler")

    async def main() -> dict[str, int]:
        emitter = EventEmitter(sink, queue_size=100)
        if monitor is not None:
            for component in (emitter, bus, archive_breaker, write, timeouts):
                monitor.watch(component)   # the bus brings its dead-letter queue
        if sources is not None:
            sources.extend([("novelty", emitter), ("demo", bus), ("demo", dlq),
                            archive_breaker, write.retry_policy])  # type: ignore[attr-defined]
        scheduler = AdaptiveScheduler(emitter=emitter, novelty_threshold=0.75, clock=clock)
        scheduler.add("sampler", sample, scale=TimeScale.MICRO)
        _say(out, "\nscheduler: a MICRO job (interval 0.05-1.0 s); activity 0.1, then 0.9 "
                  "from 6 s to 12 s, then 0.1; readings >= 0.75 are emitted as novelty events "
                  "onto a bus, whose archive handler writes with 1 retry through breaker "
                  "'archive' (2 failures trip it) and a 0.2 s timeout (0.2 s of grace after "
                  "progress): the archive refuses connections at 9-9.5 s, is slow at 10.5 s and "
                  "hangs at 11 s. Columns (a row every second):")
        _legend(out, SCHEDULER_COLUMNS)
        _header(out, SCHEDULER_COLUMNS)
        async with emitter, scheduler:
            t = 0.0
            while t < seconds:
                await asyncio.sleep(1.0)
                t = clock.now()
                st = scheduler.status()
                job = st["jobs"]["sampler"]
                out.write(f"{t:6.2f}s {activity_at(t):8.2f} {job['interval']:7.3f}s "
                          f"{job['runs']:4d} {emitter.status()['emitted']:7d} "
                          f"{st['event_queue_size']:6d}\n")
        runs = scheduler.status()["jobs"]["sampler"]["runs"]
        _say(out, f"{runs} runs; {len(delivered)} novelty events delivered; "
                  f"emitter: {emitter.status()['dropped']} dropped")
        # An operator's note lacks the dashboard's required "activity" field.
        await bus.publish("sensor.novelty", {"job": "sampler", "note": "recalibrated"},
                          publisher="console")
        stats = bus.stats()
        _say(out, f"\nbus: {stats['published']} events published (seq 1-{stats['last_seq']}), "
                  f"{stats['delivered']} deliveries, {stats['failures']} handler failures, "
                  f"{stats['violations']} contract violations, {stats['storms']} storms")
        for event_type, info in bus.topology().items():
            _say(out, f"  topology {event_type}: publishers {info['publishers']}, "
                      f"subscribers {info['subscribers']}", indent=4)
        by_source = dlq.stats()["by_source"]
        _say(out, "dead letters: " + ", ".join(f"{n} from {src}" for src, n in
                                             sorted(by_source.items())))
        failed = [e for e in dlq.list() if e.source == "sensor.novelty:archive"]
        reprocessed = 0
        if failed:
            entry = failed[0]
            ok = await dlq.reprocess(entry.id, archive)
            reprocessed = int(ok)
            _say(out, f"reprocessed dead letter {entry.id} (event {entry.item.seq}, "
                      f"{entry.error}) into the archive: {'ok' if ok else 'failed again'}; "
                      f"{len(dlq)} left")
        return {"runs": runs, "novelty_events": len(delivered),
                "published": stats["published"], "handler_failures": stats["failures"],
                "violations": stats["violations"], "dead_letters": stats["dead_lettered"],
                "reprocessed": reprocessed, "archived": len(archived)}

    with _routed(_MessageHandler(out, clock), "resil.bus", "resil.dlq", "resil.timeout",
                 "resil.breaker"):
        return run_virtual(main(), clock)


SHEDDING_COLUMNS = (
    Column("time", 5, "seconds of virtual time since the burst arrived"),
    Column("limited", 7, "requests the rate limiter refused with RateLimited"),
    Column("running", 7, "calls holding one of the bulkhead's slots now"),
    Column("queued", 6, "callers waiting in the bulkhead's queue for a slot"),
    Column("full", 4, "calls refused with BulkheadFull: every slot taken and the queue full"),
    Column("timeout", 7, "callers that left the queue with BulkheadFull after queue_timeout"),
    Column("done", 4, "calls that ran and completed"),
)


def run_shedding(out: TextIO, monitor: Monitor | None = None,
                 sources: list[Any] | None = None) -> dict[str, Any]:
    """A burst of ``SHEDDING["requests"]`` requests at once, each through a
    rate limiter (``@limiter``) and then a bulkhead (``@bulkhead``), on a
    VirtualClock: writes a row every 0.1 s until every call is settled and
    returns what became of the requests. ``monitor`` (if given) watches the
    limiter and the bulkhead; both are appended to ``sources``."""
    p = SHEDDING
    clock = VirtualClock()
    limiter = RateLimiter(p["rate"], burst=p["burst"], name="api", clock=clock)
    bulkhead = Bulkhead("db", max_concurrent=p["max_concurrent"], max_queue=p["max_queue"],
                        queue_timeout=p["queue_timeout"], clock=clock)
    if monitor is not None:
        monitor.watch(limiter)
        monitor.watch(bulkhead)
    if sources is not None:
        sources.extend([limiter, bulkhead])
    start = 0.0                      # when the burst arrived
    started: list[float] = []        # when each call that got a slot started
    completed = 0
    retry_afters: list[float] = []
    refused_at: list[float] = []     # when each BulkheadFull was raised

    @limiter
    @bulkhead
    async def query(n: int) -> None:
        nonlocal completed
        started.append(clock.now())
        await asyncio.sleep(p["slow_hold"] if n <= p["slow"] else p["hold"])
        completed += 1

    async def request(n: int) -> None:
        try:
            await query(n)
        except RateLimited as exc:
            retry_afters.append(exc.retry_after)
        except BulkheadFull:
            refused_at.append(clock.now())

    def row() -> None:
        st = bulkhead.stats()
        out.write(f"{clock.now() - start:4.2f}s {limiter.stats()['rejected']:7d} {st['active']:7d} "
                  f"{st['queued']:6d} {st['rejected']:4d} {st['timed_out']:7d} "
                  f"{completed:4d}\n")

    async def main() -> None:
        nonlocal start
        start = clock.now()
        tasks = [asyncio.create_task(request(n)) for n in range(1, p["requests"] + 1)]
        await asyncio.sleep(0)  # every request has made its first step
        step = 0
        row()
        while not all(t.done() for t in tasks):
            step += 1
            await asyncio.sleep(start + step / 10 - clock.now())
            row()
        await asyncio.gather(*tasks)

    _say(out, f"\nload shedding: {p['requests']} requests arrive at once; each goes through "
              f"rate limiter 'api' ({p['rate']} per second, burst {p['burst']}), then bulkhead "
              f"'db' (max_concurrent={p['max_concurrent']}, max_queue={p['max_queue']}, "
              f"queue_timeout={p['queue_timeout']:g} s); a call holds its slot "
              f"{p['hold']:g} s, the first {p['slow']} calls {p['slow_hold']:g} s. "
              "Columns (a row every 0.1 s):")
    _legend(out, SHEDDING_COLUMNS)
    _header(out, SHEDDING_COLUMNS)
    run_virtual(main(), clock)
    at_once = sum(1 for t in started if t == start)
    timed_out = sum(1 for t in refused_at if t > start)
    full = len(refused_at) - timed_out
    passed = p["requests"] - len(retry_afters)
    retry_after = max(retry_afters, default=0.0)
    _say(out, f"{p['requests']} requests: 'api' let {passed} through (its burst) and refused "
              f"{len(retry_afters)} with RateLimited (retry_after={retry_after:g} s: the next "
              f"token); 'db' ran {at_once} at once, queued {len(started) - at_once + timed_out} "
              f"({len(started) - at_once} got a slot as calls ended, {timed_out} timed out) "
              f"and refused {full} with BulkheadFull; {completed} calls completed")
    return {"requests": p["requests"], "passed_limiter": passed,
            "rate_limited": len(retry_afters), "retry_after": retry_after,
            "ran_at_once": at_once, "ran_after_waiting": len(started) - at_once,
            "timed_out": timed_out, "bulkhead_full": full, "completed": completed,
            "limiter_stats": limiter.stats(), "bulkhead_stats": bulkhead.stats()}


# One line in ``python -m resil --help``.
SUMMARY = "an outage, then a burst: breaker, retry, bus, dead letters, shedding"

DESCRIPTION = """\
Runs a simulated dependency through a circuit breaker with retries: it is
healthy, then flaky, then down, then slow, then healthy again. Everything
runs on a virtual clock, so about ten minutes of simulated traffic take a
second and print the same timeline on every run with the same seed. A
legend explains each column; the breaker's transitions appear as they
happen. A second part runs an adaptive sampling job whose novel readings go
through an event emitter onto an event bus, where a failing subscriber's
events reach the dead-letter queue and one is reprocessed. A third part
sends a burst of requests through a rate limiter and a bulkhead, which
admit what they can hold and refuse the rest (RateLimited, BulkheadFull).
The output ends with the monitor's dashboard and the path of this demo's
source code."""


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m resil demo`` command line."""
    parser = argparse.ArgumentParser(prog="python -m resil demo", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=7, metavar="N",
                        help="seed of the simulated dependency's randomness; the same seed "
                             "prints the same timeline (default 7)")
    parser.add_argument("--every", type=int, default=20, metavar="N",
                        help="print a timeline row every N requests, N >= 1 (default 20)")
    parser.add_argument("--metrics-port", type=int, default=None, metavar="PORT",
                        help="serve Prometheus metrics at http://127.0.0.1:PORT/metrics while "
                             "the demo runs and afterwards, until Ctrl-C or SIGTERM (0 picks "
                             "a free port; default: no server)")
    parser.add_argument("--hold", type=float, default=None, metavar="SECONDS",
                        help="with --metrics-port: stop serving SECONDS after the demo ends "
                             "instead of waiting for Ctrl-C")
    return parser


def main(argv: list[str] | None = None) -> int:
    """``python -m resil demo [options]``; returns the exit status."""
    import sys

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.every < 1:
        parser.error("--every must be at least 1")
    if args.metrics_port is not None and not 0 <= args.metrics_port <= 65535:
        parser.error("--metrics-port must be in [0, 65535]")
    if args.hold is not None and not 0 <= args.hold < 1e9:
        parser.error("--hold must be a number of seconds in [0, 1e9)")
    monitor = new_monitor()
    sources: list[Any] = []
    server = None
    if args.metrics_port is not None:
        from resil import prometheus

        server = prometheus.serve(args.metrics_port, sources=sources)
        print(f"metrics: {server.url}", flush=True)
    try:
        run(sys.stdout, seed=args.seed, every=args.every, monitor=monitor, sources=sources)
        run_scheduler(sys.stdout, monitor=monitor, sources=sources)
        run_shedding(sys.stdout, monitor=monitor, sources=sources)
        write_dashboard(sys.stdout, monitor)
        if server is not None:
            # Ctrl-C or SIGTERM ends the wait. The handlers go in before the
            # line that announces them, so a signal sent as soon as it is read
            # never lands outside the wait; and they work even where SIGINT
            # started out ignored (a background job).
            stop = threading.Event()
            signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
            signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
            print(f"\nstill serving {server.url} "
                  + (f"for {args.hold:g} s" if args.hold is not None else "until Ctrl-C"),
                  flush=True)
            stop.wait(args.hold)
        print(source_line(), flush=True)
    finally:
        if server is not None:
            server.shutdown()
    return 0


def write_dashboard(out: TextIO, monitor: Monitor) -> None:
    """Writes the monitor's dashboard document, as JSON."""
    doc = monitor.dashboard()
    _say(out, f"\ndashboard (resil.Monitor; requests, health and alerts over the last "
              f"{monitor.retention:g} s):")
    out.write(json.dumps(doc, indent=2) + "\n")


def source_line(path: str | None = None) -> str:
    """The last line of the output: where the code that produced it is (the
    file ``path``, default: this module's). The shorter of the path from the
    current directory and the absolute path; if neither fits in WIDTH, the
    path inside the package."""
    here = os.path.abspath(__file__ if path is None else path)
    lead = "the code behind this output: "
    names = [here]
    with contextlib.suppress(ValueError):  # another drive, on Windows
        names.append(os.path.relpath(here))
    name = min(names, key=len)
    if len(lead) + len(name) > WIDTH:
        package_root = os.path.dirname(os.path.dirname(os.path.dirname(here)))
        name = os.path.relpath(here, package_root) + " in the installed resil package"
    return lead + name
