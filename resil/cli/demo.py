"""``python -m resil demo``: a simulated dependency through a circuit breaker.

The dependency is healthy, then flaky, then down, then slow, then healthy
again. Everything runs on a :class:`resil.VirtualClock` (each call advances
it by its simulated latency), so the demo takes a second of real time and
prints the same timeline on every run. A second part runs an adaptive
sampling job whose novel readings go through an emitter onto an event bus,
where a failing subscriber's events reach the dead-letter queue and one is
reprocessed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TextIO

from resil import (
    AdaptiveScheduler,
    Backoff,
    CircuitBreaker,
    CircuitOpenError,
    DeadLetterQueue,
    Event,
    EventBus,
    EventEmitter,
    Monitor,
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
    Phase("flaky", 120, 0.30, (40.0, 120.0)),
    Phase("outage", 160, 0.95, (150.0, 250.0)),
    Phase("slow", 160, 0.04, (3500.0, 6500.0)),
    Phase("recovered", 200, 0.0, (20.0, 40.0)),
)

INTERVAL = 0.25  # seconds between calls


class DependencyError(ConnectionError):
    """The simulated dependency failed."""


class _TimelineHandler(logging.Handler):
    """Writes the breaker's structured transition records into the timeline."""

    def __init__(self, out: TextIO, clock: VirtualClock) -> None:
        super().__init__(logging.INFO)
        self.out = out
        self.clock = clock

    def emit(self, record: logging.LogRecord) -> None:
        f = record.__dict__
        latency = f.get("latency_ms")
        shown = "-" if latency is None else f"{latency:.0f}ms"
        self.out.write(
            f"{self.clock.now():9.2f}s   >>> {f['state_transition']}  reason={f['reason']} "
            f"fail_count={f['fail_count']} success_rate={f['success_rate']} "
            f"latency={shown}\n")


class _MessageHandler(logging.Handler):
    """Writes warnings from the bus and the dead-letter queue into the output."""

    def __init__(self, out: TextIO, clock: VirtualClock) -> None:
        super().__init__(logging.WARNING)
        self.out = out
        self.clock = clock

    def emit(self, record: logging.LogRecord) -> None:
        self.out.write(f"{self.clock.now():7.2f}s  >>> {record.getMessage()}\n")


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


def run(out: TextIO, seed: int = 7, every: int = 20, monitor: Monitor | None = None,
        sources: list[Any] | None = None) -> dict[str, int]:
    """Runs the demo, writing the timeline to ``out``; returns the totals.
    Requests are recorded in ``monitor`` (its clock is used; default: a new
    Monitor on a new VirtualClock); the breaker and retry policy are appended
    to ``sources`` for metrics."""
    if monitor is None:
        monitor = Monitor(alert_response_ms=1000.0, clock=VirtualClock())
    clock = monitor.clock
    if not isinstance(clock, VirtualClock):
        raise TypeError("the demo's monitor needs a VirtualClock")
    dependency = Dependency(clock, seed)
    breaker = CircuitBreaker(
        "inventory-api",
        failure_threshold=6,
        failure_rate_threshold=0.5,
        window_size=100,
        minimum_calls=20,
        cooldown=10.0,
        cooldown_max=60.0,
        half_open_probes=3,
        sensitivity=1.0,
        min_health_score=0.5,
        clock=clock,
    )
    # Transitions are logged on "resil.breaker" with structured fields; show them inline.
    monitor.watch(breaker)
    with _routed(_TimelineHandler(out, clock), "resil.breaker"):
        return _run(out, clock, dependency, breaker, every, monitor, sources)


def _run(out: TextIO, clock: VirtualClock, dependency: Dependency, breaker: CircuitBreaker,
         every: int, monitor: Monitor, sources: list[Any] | None) -> dict[str, int]:
    delays: list[float] = []  # one entry per retry

    def on_retry(attempt: int, delay: float, error: object) -> None:
        delays.append(delay)
        monitor.record_event("retry", breaker.name)

    # Each request: up to 2 retries with jittered backoff, every attempt
    # through the breaker; an open breaker fails fast without sleeping.
    policy = retry(retries=2, backoff=Backoff(0.2, 2.0, 2.0, jitter="equal", seed=1),
                   breaker=breaker, clock=clock, on_retry=on_retry, name="inventory")
    call = policy(dependency)
    if sources is not None:
        sources.extend([breaker, policy, monitor])
    out.write("resil demo: a dependency behind a circuit breaker, on a virtual clock\n")
    out.write("breaker: failure_threshold=6, failure_rate_threshold=0.5, minimum_calls=20, "
              "cooldown=10s (x2 per reopen, max 60s), half_open_probes=3, min_health_score=0.5\n")
    out.write("retry: 2 retries, backoff 0.2s x2 (max 2s, equal jitter), through the breaker\n\n")
    header = (f"{'time':>10}  {'phase':<10} {'state':<10} {'fail%':>6} {'ewma':>6} "
              f"{'signal':>6} {'thresh':>6} {'health':>6} {'latency':>8} {'ok':>5} "
              f"{'failed':>6} {'rejected':>8} {'retries':>7} {'slept':>7}\n")
    out.write(header)
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
                           outcome is None, outcome)
            clock.advance(INTERVAL)
            if request % every == 0:
                s = breaker.stats()
                out.write(
                    f"{clock.now():9.2f}s  {phase.name:<10} {s['state'].name:<10} "
                    f"{s['failure_rate'] * 100:6.1f} {s['ewma_failure_rate']:6.3f} "
                    f"{s['ewma_signal']:6.3f} {s['effective_threshold']:6d} "
                    f"{s['health_score']:6.3f} {s['avg_latency_ms']:7.0f}ms {ok:5d} "
                    f"{failed:6d} {rejected:8d} {len(delays):7d} {sum(delays):6.1f}s\n")
    s = breaker.stats()
    out.write(
        f"\n{request} requests: {ok} succeeded, {failed} failed, {rejected} rejected by the "
        f"breaker (the dependency saw {dependency.calls}); transitions: "
        + ", ".join(f"{k}={v}" for k, v in s["transitions"].items() if v)
        + "\n")
    out.write(f"retries: {len(delays)} made, {sum(delays):.1f}s slept in all\n")
    return {"requests": request, "ok": ok, "failed": failed, "rejected": rejected,
            "retries": len(delays),
            "dependency_calls": dependency.calls}


def run_scheduler(out: TextIO, seconds: float = 20.0, monitor: Monitor | None = None,
                  sources: list[Any] | None = None) -> dict[str, int]:
    """A sampling job on the MICRO scale whose activity goes quiet -> burst ->
    quiet: its interval adapts, and novel readings go out through an emitter
    onto an event bus. Dead letters are counted in ``monitor``; the emitter,
    bus and dead-letter queue are appended to ``sources``."""
    clock = VirtualClock()
    delivered: list[dict[str, object]] = []

    def activity_at(t: float) -> float:
        return 0.9 if 6.0 <= t < 12.0 else 0.1

    async def sample() -> float:
        return activity_at(clock.now())

    dlq = DeadLetterQueue(maxsize=100)
    bus = EventBus(storm_threshold=50, storm_window=1.0, dlq=dlq, clock=clock)
    archive_down = (9.0, 9.5)  # the archive is unreachable for half a second
    archived: list[int] = []

    def dashboard(event: Event) -> None:
        delivered.append(dict(event.payload))

    async def archive(event: Event) -> None:
        if archive_down[0] <= clock.now() < archive_down[1]:
            if monitor is not None:
                monitor.record_event("dead_letter", "archive")
            raise ConnectionError("archive unreachable")
        archived.append(event.seq)

    bus.subscribe("sensor.novelty", dashboard, required=("job", "activity"), name="dashboard")
    bus.subscribe("sensor.novelty", archive, name="archive")

    async def sink(event: dict[str, object]) -> None:
        await bus.publish("sensor.novelty", event, publisher="scheduler")

    async def main() -> dict[str, int]:
        emitter = EventEmitter(sink, queue_size=100)
        if sources is not None:
            sources.extend([("novelty", emitter), ("demo", bus), ("demo", dlq)])
        scheduler = AdaptiveScheduler(emitter=emitter, novelty_threshold=0.75, clock=clock)
        scheduler.add("sampler", sample, scale=TimeScale.MICRO)
        out.write("\nscheduler: a MICRO job (interval 0.05-1.0 s); activity 0.1, then 0.9 "
                  "from 6 s to 12 s, then 0.1; readings >= 0.75 are emitted as novelty "
                  "events\n")
        out.write(f"{'time':>8}  {'activity':>8} {'interval':>9} {'runs':>5} {'emitted':>8} "
                  f"{'queued':>6}\n")
        async with emitter, scheduler:
            t = 0.0
            while t < seconds:
                await asyncio.sleep(1.0)
                t = clock.now()
                st = scheduler.status()
                job = st["jobs"]["sampler"]
                out.write(f"{t:7.2f}s  {activity_at(t):8.2f} {job['interval']:8.3f}s "
                          f"{job['runs']:5d} {emitter.status()['emitted']:8d} "
                          f"{st['event_queue_size']:6d}\n")
        runs = scheduler.status()["jobs"]["sampler"]["runs"]
        out.write(f"{runs} runs; {len(delivered)} novelty events delivered; "
                  f"emitter: {emitter.status()['dropped']} dropped\n")
        # An operator's note lacks the dashboard's required "activity" field.
        await bus.publish("sensor.novelty", {"job": "sampler", "note": "recalibrated"},
                          publisher="console")
        stats = bus.stats()
        out.write(f"\nbus: {stats['published']} events published (seq 1-{stats['last_seq']}), "
                  f"{stats['delivered']} deliveries, {stats['failed']} handler failures, "
                  f"{stats['violations']} contract violations, {stats['storms']} storms\n")
        for event_type, info in bus.topology().items():
            out.write(f"  topology {event_type}: publishers {info['publishers']}, "
                      f"subscribers {info['subscribers']}\n")
        by_source = dlq.stats()["by_source"]
        out.write("dead letters: " + ", ".join(f"{n} from {src}" for src, n in
                                                sorted(by_source.items())) + "\n")
        failed = [e for e in dlq.list() if e.source == "sensor.novelty:archive"]
        reprocessed = 0
        if failed:
            entry = failed[0]
            ok = await dlq.reprocess(entry.id, archive)
            reprocessed = int(ok)
            out.write(f"reprocessed dead letter {entry.id} (event {entry.item.seq}, "
                      f"{entry.error}) into the archive: {'ok' if ok else 'failed again'}; "
                      f"{len(dlq)} left\n")
        return {"runs": runs, "novelty_events": len(delivered),
                "published": stats["published"], "handler_failures": stats["failed"],
                "violations": stats["violations"], "dead_letters": stats["dead_lettered"],
                "reprocessed": reprocessed, "archived": len(archived)}

    with _routed(_MessageHandler(out, clock), "resil.bus", "resil.dlq"):
        return run_virtual(main(), clock)


def main(argv: list[str] | None = None) -> int:
    import sys

    parser = argparse.ArgumentParser(prog="python -m resil demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    parser.add_argument("--every", type=int, default=20,
                        help="print a timeline row every N requests (default 20)")
    parser.add_argument("--metrics-port", type=int, default=None, metavar="PORT",
                        help="serve Prometheus metrics at http://127.0.0.1:PORT/metrics while "
                             "the demo runs and afterwards, until Ctrl-C (0 picks a free port)")
    parser.add_argument("--hold", type=float, default=None, metavar="SECONDS",
                        help="with --metrics-port: stop serving after SECONDS instead of "
                             "waiting for Ctrl-C")
    args = parser.parse_args(argv)
    if args.every < 1:
        parser.error("--every must be at least 1")
    if args.metrics_port is not None and not 0 <= args.metrics_port <= 65535:
        parser.error("--metrics-port must be in [0, 65535]")
    monitor = Monitor(alert_response_ms=1000.0, clock=VirtualClock())
    sources: list[Any] = []
    server = None
    if args.metrics_port is not None:
        from resil import prometheus

        server = prometheus.serve(args.metrics_port, sources=sources)
        print(f"metrics: {server.url}", flush=True)
    try:
        run(sys.stdout, seed=args.seed, every=args.every, monitor=monitor, sources=sources)
        run_scheduler(sys.stdout, monitor=monitor, sources=sources)
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
    finally:
        if server is not None:
            server.shutdown()
    return 0


def write_dashboard(out: TextIO, monitor: Monitor) -> None:
    """Writes the monitor's dashboard document, as JSON."""
    doc = monitor.dashboard()
    out.write("\ndashboard (resil.Monitor):\n")
    out.write(json.dumps(doc, indent=2) + "\n")
