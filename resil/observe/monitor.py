"""Performance monitoring: durations, error rates, health, alerts, dashboard."""

from __future__ import annotations

import datetime
import logging
import math
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from resil import _check, _env
from resil.messaging.dlq import DeadLetterQueue
from resil.policies.breaker import CircuitBreaker
from resil._resil import (MonitorBlock, MonotonicClock, Region, State, WindowedCounter,
                          WindowedHistogram)
from resil.observe._wiring import _Watcher, named
from resil.storage.region import SharedRegion

__all__ = ["Monitor"]

_log = logging.getLogger("resil.monitor")

#: ``recorder(component, operation, duration_ms, success)``
Recorder = Callable[[str, str, float, bool], object]

HEALTHY, DEGRADED, CRITICAL = "healthy", "degraded", "critical"
_RANK = {HEALTHY: 0, DEGRADED: 1, CRITICAL: 2}

# record_event kinds and the dashboard keys they are counted under.
EVENT_KINDS = {
    "circuit_breaker_trip": "circuit_breaker_trips",
    "timeout": "timeout_failures",
    "retry": "retry_attempts",
    "dead_letter": "dead_letter_queue_messages",
    "grace_recovery": "grace_period_recoveries",
}
_KIND_INDEX = {kind: i for i, kind in enumerate(EVENT_KINDS)}
_QUANTILES = (0.5, 0.95, 0.99)
_MAX_MS = 1e12  # about 31.7 years: a longer duration is a caller's bug
_MAX_CONNECTIONS = (1 << 63) - 1

# Upper bounds, in seconds, of the request-duration histogram's buckets (a
# last one, +Inf, takes the rest): 1 ms to a minute, in the 1-2.5-5 steps
# Prometheus client libraries use, so both sides of the 5 s response alert
# and of common 30 s and 60 s timeouts have a bucket edge.
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0, 60.0)
# A new (operation, success) entry: the duration sum in ms, then one count
# per bucket (+Inf last); the entry's count is the sum of its buckets.
_NEW_ENTRY = (0.0,) + (0,) * (len(DURATION_BUCKETS) + 1)


class _Component:
    __slots__ = ("hist", "errors", "by_operation", "errors_by_type")

    def __init__(self, retention: float, slots: int, clock: Any) -> None:
        # Requests, their mean and percentiles come from a C histogram window;
        # errors from a C counter window with the same slots and slot rule.
        self.hist = WindowedHistogram(retention, slots, clock=clock)
        self.errors = WindowedCounter(retention, slots, clock=clock)
        # Cumulative, for counters and the duration histogram: (operation,
        # success) -> [duration sum in ms, then the count of durations in each
        # bucket of DURATION_BUCKETS: those <= its bound and > the one before;
        # +Inf last].
        self.by_operation: dict[tuple[str, bool], list[float]] = {}
        self.errors_by_type: dict[str, int] = {}

    def window(self) -> tuple[float, float, float]:
        """(requests, errors, duration sum in ms) over the window."""
        requests = self.hist.count()
        # An error is counted just after its request: should a slot boundary
        # pass in between, it outlives the request by one slot.
        errors = min(self.errors.total(), requests)
        return float(requests), float(errors), self.hist.mean_ms() * requests


_Window = tuple[float, float, float]  # requests, errors, duration sum in ms


def _total(windows: Iterable[_Window]) -> _Window:
    requests = errors = duration = 0.0
    for r, e, d in windows:
        requests += r
        errors += e
        duration += d
    return requests, errors, duration


def _status(error_rate: float, mean_ms: float, rate_limit: float, ms_limit: float) -> str:
    if error_rate >= 2 * rate_limit or mean_ms >= 2 * ms_limit:
        return CRITICAL
    if error_rate >= rate_limit or mean_ms >= ms_limit:
        return DEGRADED
    return HEALTHY


class _Reading:
    """What the reading methods show, read at once: windowed rows
    (component, requests, errors, duration sum in ms) by name, their
    p50/p95/p99 when asked for, event window counts (EVENT_KINDS order),
    and the cumulative counts since the monitor started."""

    __slots__ = ("uptime", "rows", "quantiles", "events", "by_operation", "errors_by_type",
                 "event_totals", "overflow")

    def __init__(self, uptime: float) -> None:
        self.uptime = uptime
        self.rows: list[tuple[str, float, float, float]] = []
        self.quantiles: dict[str, tuple[float, float, float]] = {}
        self.events: list[int] = []
        self.by_operation: dict[str, dict[tuple[str, bool], tuple[float, ...]]] = {}
        self.errors_by_type: dict[str, dict[str, int]] = {}
        self.event_totals: dict[tuple[str, str], int] = {}
        self.overflow: dict[str, int] | None = None  # a shared monitor's


class Monitor(_Watcher):
    """Per-component durations and errors, health, alerts and a dashboard.

    ``Monitor(retention=86400.0, alert_error_rate=5.0, alert_response_ms=5000.0,
    alert_dead_letters=None, *, slots=12, clock=None)``:

    - ``record(component, operation, duration_ms, success, error_type=None)``
      records one operation. Durations go into a C log-linear histogram per
      component (p50/p95/p99 within 0.8 % of the exact sample quantile).
    - ``record_event(kind, component)`` counts a resilience event: kinds
      ``"circuit_breaker_trip"``, ``"timeout"``, ``"retry"``,
      ``"dead_letter"``, ``"grace_recovery"`` (others are counted too, under
      their own name). ``watch(source)`` wires a component's own events
      in, so they are counted with no further code (see :meth:`watch`).
    - ``health(component=None)``: over the last ``retention`` seconds (in
      ``slots`` steps of ``retention / slots``), ``"degraded"`` when errors
      are at least ``alert_error_rate`` percent of requests or the mean
      duration is at least ``alert_response_ms``; ``"critical"`` at twice
      either; else (also with no requests) ``"healthy"``. Without a
      component: over all components' requests together.
    - ``alerts()``: one dict per threshold crossed (severity ``"warning"``
      or ``"critical"``), per resilience event kind seen in the window
      (``"warning"`` for trips, timeouts and dead letters) and, with
      ``alert_dead_letters`` (an int >= 1, or None: no such alert), per
      watched :class:`DeadLetterQueue` holding at least that many entries
      (``"warning"``; ``"critical"`` at twice as many).
    - ``set_active_connections(service, n)``: the connections a service
      has open now; their sum is the dashboard's
      ``system_health.active_connections``.
    - ``dashboard()``: ``system_health``, ``resilience_metrics``,
      ``component_performance`` (with p50/p95/p99 per component) and
      ``alerts``.
    - Since it started, the monitor also counts each (component, operation,
      success) pair's operations, duration sum and durations per bucket of
      ``Monitor.DURATION_BUCKETS`` (upper bounds in seconds: 0.001, 0.0025,
      0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, then
      +Inf), which ``resil.prometheus`` exposes as a histogram.

    Memory: one histogram window per component, about ``slots`` x 19 KB, a
    counter window (under 1 KB) per component and per event kind, and 17
    numbers per (component, operation, success) pair.
    Thread-safe. ``clock`` times the window (a VirtualClock in tests).

    Host-wide: with ``shared=region`` (a :class:`resil.SharedRegion`) the
    recorded data lives in the region, as the monitor ``name`` (a
    non-empty str of at most 63 bytes of UTF-8, default ``"monitor"``), so
    every worker process of the host records into one monitor and any
    worker's :meth:`health`, :meth:`alerts`, :meth:`dashboard`,
    :meth:`stats` and Prometheus families show the host's figures (a
    worker's exit or SIGKILL loses none of its counts). Recording is one C
    call under the region's lock. The first process sets ``retention``,
    ``slots``, ``alert_error_rate``, ``alert_response_ms``,
    ``max_components`` and ``max_series``; another passing a different one
    gets ValueError naming it. The region reserves room for
    ``max_components`` components (int in [1, 256], default 8), each
    about 3 KB + ``slots`` x 18.9 KB (230 KB at 12 slots: size the region
    for it), and ``max_series`` series (int in [1, 2**20], default 256;
    592 bytes each): one per (component, operation, success), per
    (component, error_type) and per (event kind, component). A record or
    event that needs a component or series beyond them is not counted
    anywhere but in ``stats()["overflow"]`` (and the exposition's
    ``monitor_overflow_total``), and a warning is logged once per process.
    A process killed while recording leaves that one record undone whole
    (counted under ``"interrupted"`` there), never half-counted.
    Component, operation, error type and event kind names are at most 63
    bytes of UTF-8 each (ValueError otherwise). What stays per process:
    :meth:`watch` wiring (a watched component's events are recorded into
    the shared monitor), :meth:`set_active_connections` (each worker's own
    connections: a host-wide sum would need every worker's current value
    and a rule for dead workers), ``alert_dead_letters`` and the queues it
    looks at, and the duration recorders ``resil.otel`` adds. Uptime runs
    from the first process's attach. ``max_components`` and
    ``max_series`` are checked but unused without ``shared``.
    """

    DURATION_BUCKETS = DURATION_BUCKETS

    def __init__(self, retention: float = 86400.0, *, alert_error_rate: float = 5.0,
                 alert_response_ms: float = 5000.0, alert_dead_letters: int | None = None,
                 slots: int = 12, clock: Any = None, shared: SharedRegion | None = None,
                 name: str = "monitor", max_components: int = 8,
                 max_series: int = 256) -> None:
        self._retention = _check.number(retention, "retention", 1e-6, 365 * 86400.0)
        if alert_dead_letters is not None:
            if isinstance(alert_dead_letters, bool) or not isinstance(alert_dead_letters, int):
                raise TypeError(f"alert_dead_letters must be an int >= 1 or None, not "
                                f"{type(alert_dead_letters).__name__}")
            if alert_dead_letters < 1:
                raise ValueError(f"alert_dead_letters must be an int >= 1 or None, got "
                                 f"{alert_dead_letters!r}")
        self._dead_letter_limit = alert_dead_letters
        self._error_rate = _check.number(alert_error_rate, "alert_error_rate", 0.0, 100.0)
        self._response_ms = _check.number(alert_response_ms, "alert_response_ms", 0.0, _MAX_MS)
        if self._error_rate == 0 or self._response_ms == 0:
            raise ValueError("alert_error_rate and alert_response_ms must be > 0 (a zero "
                             "threshold would call every component critical)")
        _check.integer(slots, "slots", 1, 64)
        _check.clock(clock)
        self._slots = slots
        self._clock = clock if clock is not None else MonotonicClock()
        # Validates the retention/slots pair in C before anything is kept.
        WindowedHistogram(self._retention, slots, clock=self._clock)
        self._started = self._clock.now()
        self._lock = threading.Lock()
        super().__init__()
        # Who else hears of each duration (resil.otel's histogram): read
        # without the lock, replaced whole under it.
        self._recorders: tuple[Recorder, ...] = ()
        self._queues: weakref.WeakSet[DeadLetterQueue] = weakref.WeakSet()  # for the alert
        self._components: dict[str, _Component] = {}
        self._events = {kind: WindowedCounter(self._retention, slots, clock=self._clock)
                        for kind in EVENT_KINDS}
        self._event_totals: dict[tuple[str, str], int] = {}  # (kind, component) -> count
        self._connections: dict[str, int] = {}  # service -> open connections
        _check.integer(max_components, "max_components", 1, 256)
        _check.integer(max_series, "max_series", 1, 1 << 20)
        _check.text(name, "name")
        self._core: MonitorBlock | None = None
        if shared is not None:
            if not isinstance(shared, Region):
                raise TypeError(f"shared must be None or a resil.SharedRegion, not "
                                f"{type(shared).__name__}")
            self._core = MonitorBlock(shared, name, self._retention, slots, self._error_rate,
                                      self._response_ms, max_components, max_series,
                                      clock=self._clock)
            if not isinstance(self, _SharedMonitor):
                # the same object, now recording into and reading from the region
                self.__class__ = _shared_class(type(self))
        self._name = name

    @property
    def clock(self) -> Any:
        """The clock the window follows."""
        return self._clock

    @property
    def retention(self) -> float:
        """Seconds of history health, alerts and percentiles look at."""
        return self._retention

    # ---- recording -------------------------------------------------------------
    def record(self, component: str, operation: str, duration_ms: float, success: bool, *,
               error_type: str | None = None) -> None:
        """Records one operation of ``component``: ``component`` and
        ``operation`` are non-empty strs, ``duration_ms`` a number in [0,
        1e12], ``success`` a bool (True or False, nothing else);
        ``error_type`` (a non-empty str) names the failure, ``"error"`` when
        left out. A wrong type raises TypeError, a bad value ValueError, and
        nothing is recorded."""
        # `type(x) is ...` first: the common case costs no function call.
        if type(component) is not str or not component:
            _check.text(component, "component")
        if type(operation) is not str or not operation:
            _check.text(operation, "operation")
        if type(duration_ms) is not float and (isinstance(duration_ms, bool)
                                               or not isinstance(duration_ms, (int, float))):
            raise TypeError(f"duration_ms must be a number, not {type(duration_ms).__name__}")
        if not 0 <= duration_ms <= _MAX_MS:
            raise ValueError(f"duration_ms must be in [0, {_MAX_MS:g}] ms, got {duration_ms!r}")
        if success is not True and success is not False:
            # Strict: "false" or 0 read as truth values would miscount.
            raise TypeError(f"success must be a bool (True or False), "
                            f"not {type(success).__name__}")
        if error_type is not None and (type(error_type) is not str or not error_type):
            _check.text(error_type, "error_type")
        ok: bool = success
        # acquire/release rather than `with`: on CPython 3.11 a `with` block
        # costs this method about 1,000 of its 7,000 instructions per call.
        lock = self._lock
        lock.acquire()
        try:
            comp = self._components.get(component)
            if comp is None:
                comp = self._components[component] = _Component(self._retention, self._slots,
                                                                self._clock)
            comp.hist.record(duration_ms)
            if not ok:
                comp.errors.add()
            entry = comp.by_operation.get((operation, ok))
            if entry is None:
                entry = comp.by_operation[(operation, ok)] = list(_NEW_ENTRY)
            entry[0] += duration_ms
            # The entry's bucket, 1 + the index of the first bound (in ms) that
            # duration_ms does not exceed: bisect_left over DURATION_BUCKETS
            # written out, four float comparisons and no call (a call of
            # bisect_left costs Monitor.record 10 % more).
            if duration_ms <= 100.0:
                if duration_ms <= 5.0:
                    i = (1 if duration_ms <= 1.0 else 2) if duration_ms <= 2.5 else 3
                elif duration_ms <= 25.0:
                    i = 4 if duration_ms <= 10.0 else 5
                else:
                    i = 6 if duration_ms <= 50.0 else 7
            elif duration_ms <= 5000.0:
                if duration_ms <= 500.0:
                    i = 8 if duration_ms <= 250.0 else 9
                else:
                    i = (10 if duration_ms <= 1000.0 else 11) if duration_ms <= 2500.0 else 12
            elif duration_ms <= 30000.0:
                i = 13 if duration_ms <= 10000.0 else 14
            else:
                i = 15 if duration_ms <= 60000.0 else 16
            entry[i] += 1
            if not ok:
                name = error_type or "error"
                comp.errors_by_type[name] = comp.errors_by_type.get(name, 0) + 1
        finally:
            lock.release()
        if self._recorders:
            self._tell_recorders(component, operation, duration_ms, ok)

    def _tell_recorders(self, component: str, operation: str, duration_ms: float,
                        ok: bool) -> None:
        for recorder in self._recorders:
            try:
                recorder(component, operation, duration_ms, ok)
            except Exception:
                _log.exception("duration recorder %r failed", recorder)

    def _add_recorder(self, recorder: Recorder) -> None:
        """Calls ``recorder(component, operation, duration_ms, success)``
        after each :meth:`record`, outside the monitor's lock."""
        with self._lock:
            self._recorders = self._recorders + (recorder,)

    def _remove_recorder(self, recorder: Recorder) -> None:
        with self._lock:
            self._recorders = tuple(r for r in self._recorders if r is not recorder)

    def record_event(self, kind: str, component: str) -> None:
        """Counts one resilience event of ``kind`` for ``component``."""
        if type(kind) is not str or not kind:
            _check.text(kind, "kind")
        if type(component) is not str or not component:
            _check.text(component, "component")
        lock = self._lock  # acquire/release: see record()
        lock.acquire()
        try:
            counter = self._events.get(kind)
            if counter is not None:
                counter.add()
            key = (kind, component)
            self._event_totals[key] = self._event_totals.get(key, 0) + 1
        finally:
            lock.release()

    def watch(self, source: Any) -> None:
        """Wires ``source``'s own events into this monitor, so that
        :meth:`dashboard` and :meth:`alerts` count what it does with no
        further code. Each event is counted once, under the name given:

        - :class:`CircuitBreaker`: each transition to OPEN or FORCED_OPEN is
          a ``circuit_breaker_trip`` under the breaker's ``name``.
          :class:`BreakerGroup`: the same for the breakers it holds now
          (endpoints added later are not watched).
        - :class:`RetryPolicy`, or a function decorated with
          ``resil.retry(...)`` (which watches its policy, so every function
          that policy decorates): each retry is a ``retry`` under the
          policy's ``name``; a policy without one is counted under the
          ``__qualname__`` of the function it was first watched through,
          else ``"retry"``.
        - :class:`TimeoutManager`: each ``timeout`` and each
          ``grace_recovery`` (an operation that finished inside its grace
          extension), under the operation's name.
        - :class:`DeadLetterQueue`: each entry put is a ``dead_letter``
          under the queue's ``name``; its size is what ``alert_dead_letters``
          is compared with.
        - :class:`EventEmitter`: its ``breaker`` (a CircuitBreaker) and its
          ``retry`` (a RetryPolicy, counted under the policy's name, else
          ``"emitter"``) as above, and its dead letters: through its ``dlq``
          when that is a DeadLetterQueue, else each letter its dead-letter
          sink takes, under the sink's ``name`` (or ``"dlq"``).
        - :class:`EventBus`: the circuit of every event type, now and later
          (a type's circuit opening when half its handlers are disabled is
          a ``circuit_breaker_trip`` under ``"bus:<type>"``), and its dead
          letters (handler failures, contract violations, deliveries to a
          disabled handler) as for the emitter.
        - :class:`Bulkhead`: each call it refuses with ``BulkheadFull`` (no
          slot and no room to wait, or a wait past ``queue_timeout``) and
          each ``try_acquire`` that finds no slot is a
          ``bulkhead_rejection`` under the bulkhead's ``name``, counted in
          ``dashboard()["resilience_metrics"]["other"]``.
        - :class:`RateLimiter`: each :class:`RateLimited` it raises (from
          ``@limiter``, ``acquire`` or ``acquire_async``) is a
          ``rate_limited`` event under the limiter's ``name``, shown under
          ``resilience_metrics["other"]``; ``try_acquire`` returning False
          is the caller's to count.
        - :class:`AdaptiveLimiter`: each :class:`LimitExceeded` it raises
          (from ``@limiter``, ``with``, ``call`` or ``call_async``) is a
          ``limit_exceeded`` event under the limiter's ``name``, shown under
          ``resilience_metrics["other"]``; ``try_acquire`` returning None is
          the caller's to count.

        A component or operation named ``""`` is counted as ``"unnamed"``.
        A component already watched, directly or through another, is not
        wired again. The monitor and the components hold each other weakly:
        watching keeps neither alive, and events of a component whose
        monitor was collected are ignored. Anything else raises TypeError
        naming the accepted types."""
        self._wire(source)

    def _on_event(self, kind: str, name: str) -> None:
        self.record_event(kind, name)

    def _on_transition(self, breaker: CircuitBreaker, old: State, new: State) -> None:
        if new in (State.OPEN, State.FORCED_OPEN):
            self.record_event("circuit_breaker_trip", named(breaker.name))

    def _watch_queue(self, dlq: DeadLetterQueue) -> None:
        with self._lock:
            self._queues.add(dlq)
        super()._watch_queue(dlq)

    def set_active_connections(self, service: str, n: int) -> None:
        """Sets how many connections ``service`` (a non-empty str) has open
        now: ``n``, an int in [0, 2**63 - 1] (a bool is refused). The last
        value set per service stands until it is set again; the dashboard's
        ``system_health.active_connections`` is their sum, and the
        Prometheus exposition has one ``active_connections{service}`` sample
        each. A wrong type raises TypeError, a bad value ValueError, and
        nothing changes."""
        _check.text(service, "service")
        _check.integer(n, "n", 0, _MAX_CONNECTIONS)
        with self._lock:
            self._connections[service] = int(n)

    # ---- reading ----------------------------------------------------------------
    def _read(self, quantiles: bool = False) -> _Reading:
        """Everything the reading methods show, read under the lock at once."""
        with self._lock:
            out = _Reading(self._clock.now() - self._started)
            for name, comp in sorted(self._components.items()):
                window = comp.window()
                out.rows.append((name, *window))
                if quantiles:
                    p50, p95, p99 = (comp.hist.quantiles(list(_QUANTILES)) if window[0]
                                     else (0.0, 0.0, 0.0))
                    out.quantiles[name] = (p50, p95, p99)
                out.by_operation[name] = {k: tuple(v) for k, v in comp.by_operation.items()}
                out.errors_by_type[name] = dict(comp.errors_by_type)
            out.events = [counter.total() for counter in self._events.values()]
            out.event_totals = dict(self._event_totals)
        return out

    def _judge(self, requests: float, errors: float, duration: float) -> str:
        if not requests:
            return HEALTHY
        return _status(100.0 * errors / requests, duration / requests, self._error_rate,
                       self._response_ms)

    def health(self, component: str | None = None) -> str:
        """``"healthy"``, ``"degraded"`` or ``"critical"`` (see the class
        docstring); KeyError for a component never recorded."""
        rows = self._read().rows
        if component is not None:
            for name, *window in rows:
                if name == component:
                    return self._judge(*window)
            raise KeyError(component)
        return self._judge(*_total(r[1:] for r in rows))

    def alerts(self) -> list[dict[str, Any]]:
        """Alerts for the window: ``{"severity", "component", "metric",
        "value", "threshold", "message"}`` per crossed threshold (component
        None for the system as a whole), then one per resilience event kind
        with a count in the window."""
        reading = self._read()
        return self._alerts(reading.rows, reading.events)

    def _alerts(self, rows: list[tuple[str, float, float, float]],
                events: list[int]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        system: tuple[str | None, float, float, float] = (None, *_total(r[1:] for r in rows))
        for name, requests, errors, duration in [system, *rows]:
            if not requests:
                continue
            where = "system" if name is None else f"component {name!r}"
            for metric, value, limit, unit in (
                    ("error_rate_percent", 100.0 * errors / requests, self._error_rate, "%"),
                    ("average_response_time_ms", duration / requests, self._response_ms, " ms")):
                if value >= 2 * limit:
                    severity = "critical"
                    threshold = 2 * limit
                elif value >= limit:
                    severity = "warning"
                    threshold = limit
                else:
                    continue
                out.append({"severity": severity, "component": name, "metric": metric,
                            "value": round(value, 3), "threshold": threshold,
                            "message": f"{where}: {metric.replace('_', ' ')} {value:.2f}{unit} "
                                       f">= {threshold:g}{unit}"})
        for kind, count in zip(EVENT_KINDS, events):
            if count and kind in ("circuit_breaker_trip", "timeout", "dead_letter"):
                out.append({"severity": "warning", "component": None, "metric": kind,
                            "value": int(count), "threshold": 1,
                            "message": f"{int(count)} {kind.replace('_', ' ')} event(s) in the "
                                       f"last {self._retention:g} s"})
        out.extend(self._queue_alerts())
        return out

    def _queue_alerts(self) -> list[dict[str, Any]]:
        """An alert per watched dead-letter queue holding at least
        ``alert_dead_letters`` entries now (read outside the lock: a
        store-backed queue counts its entries in its file)."""
        limit = self._dead_letter_limit
        if limit is None:
            return []
        with self._lock:
            queues = list(self._queues)
        out: list[dict[str, Any]] = []
        for dlq in sorted(queues, key=lambda q: q.name):
            try:
                size = len(dlq)
            except Exception:
                _log.exception("could not read the size of dead-letter queue %r", dlq.name)
                continue
            if size < limit:
                continue
            severity, threshold = ("critical", 2 * limit) if size >= 2 * limit else \
                ("warning", limit)
            out.append({"severity": severity, "component": dlq.name,
                        "metric": "dead_letter_queue_depth", "value": size,
                        "threshold": threshold,
                        "message": f"dead-letter queue {dlq.name!r} holds {size} "
                                   f"entr{'y' if size == 1 else 'ies'} >= {threshold}"})
        return out

    def dashboard(self) -> dict[str, Any]:
        """The dashboard document: ``system_health`` (status, uptime_seconds,
        error_rate_percent, average_response_time_ms, total_requests,
        components, active_connections: the sum over the services given to
        :meth:`set_active_connections`), ``resilience_metrics`` (circuit_breaker_trips,
        timeout_failures, retry_attempts, dead_letter_queue_messages,
        grace_period_recoveries, other), ``component_performance`` ({name:
        total_requests, success_rate_percent, average_duration_ms,
        p50/p95/p99_duration_ms, error_count, errors_by_type, status}),
        ``alerts`` and ``generated_at`` (ISO 8601 UTC). Figures cover the
        retention window."""
        reading = self._read(quantiles=True)
        with self._lock:
            connections = sum(self._connections.values())
        rows = reading.rows
        components: dict[str, Any] = {}
        for name, requests, errors, total in rows:
            p50, p95, p99 = reading.quantiles[name]
            components[name] = {
                "total_requests": int(requests),
                "success_rate_percent": round(100.0 * (requests - errors) / requests, 3)
                if requests else 100.0,
                "average_duration_ms": round(total / requests, 3) if requests else 0.0,
                "p50_duration_ms": round(p50, 3),
                "p95_duration_ms": round(p95, 3),
                "p99_duration_ms": round(p99, 3),
                "error_count": int(errors),
                "errors_by_type": dict(reading.errors_by_type.get(name, {})),
                "status": self._judge(requests, errors, total),
            }
        other: dict[str, int] = {}
        for (kind, _), n in reading.event_totals.items():
            if kind not in EVENT_KINDS:
                other[kind] = other.get(kind, 0) + n
        all_requests, all_errors, all_ms = _total(r[1:] for r in rows)
        resilience: dict[str, Any] = {EVENT_KINDS[k]: int(v)
                                      for k, v in zip(EVENT_KINDS, reading.events)}
        resilience["other"] = other
        return {
            "system_health": {
                "status": self._judge(all_requests, all_errors, all_ms),
                "uptime_seconds": round(reading.uptime, 3),
                "error_rate_percent": round(100.0 * all_errors / all_requests, 3)
                if all_requests else 0.0,
                "average_response_time_ms": round(all_ms / all_requests, 3)
                if all_requests else 0.0,
                "total_requests": int(all_requests),
                "components": len(components),
                "active_connections": connections,
            },
            "resilience_metrics": resilience,
            "component_performance": components,
            "alerts": self._alerts(rows, reading.events),
            "generated_at": datetime.datetime.now(datetime.timezone.utc).isoformat()
            .replace("+00:00", "Z"),
        }

    def stats(self) -> dict[str, Any]:
        """The monitor's cumulative counts, JSON-serialisable, in the
        vocabulary every resil component's ``stats()`` uses: components
        (recorded), requests and failures (over every component since it
        started), events ({kind: count} of resilience events) and health
        (over the window; :meth:`dashboard` has the windowed detail). A
        shared monitor adds ``overflow``: {"records", "events"} its tables
        had no room for (counted nowhere else), and "interrupted": records
        and events whose process was killed while adding them, undone
        whole by the next process to take the lock."""
        reading = self._read()
        requests = sum(sum(entry[1:]) for ops in reading.by_operation.values()
                       for entry in ops.values())
        failures = sum(sum(types.values()) for types in reading.errors_by_type.values())
        events: dict[str, int] = {}
        for (kind, _), n in reading.event_totals.items():
            events[kind] = events.get(kind, 0) + n
        out: dict[str, Any] = {
            "components": len(reading.rows), "requests": int(requests),
            "failures": failures, "events": events,
            "health": self._judge(*_total(r[1:] for r in reading.rows))}
        if reading.overflow is not None:
            out["overflow"] = reading.overflow
        return out

    # ---- for exporters --------------------------------------------------------------
    def _export(self) -> dict[str, Any]:
        """Cumulative counts since the monitor started, for resil.prometheus:
        components ({name: {"by_operation": {(operation, success): (duration
        sum in ms, count per bucket of DURATION_BUCKETS then +Inf)},
        "errors_by_type"}}), events ({(kind, component): count}),
        connections ({service: n}), health (over the window) and overflow
        (a shared monitor's, else None)."""
        reading = self._read()
        names = sorted(set(reading.by_operation) | set(reading.errors_by_type))
        comps = {name: {"by_operation": reading.by_operation.get(name, {}),
                        "errors_by_type": reading.errors_by_type.get(name, {})}
                 for name in names}
        with self._lock:
            connections = dict(self._connections)
        return {"components": comps, "events": reading.event_totals,
                "connections": connections,
                "health": self._judge(*_total(r[1:] for r in reading.rows)),
                "overflow": reading.overflow}

    @classmethod
    def from_env(cls: type[_M], environ: Mapping[str, str] | None = None,
                 **overrides: Any) -> _M:
        """A monitor configured from environment variables, each also read
        under a ``RESIL_`` name that wins (``RESIL_PERF_MONITOR_RETENTION_HOURS``):

        - ``PERF_MONITOR_RETENTION_HOURS``: ``retention``, in hours
          (converted to seconds: 24 gives 86400.0).
        - ``PERF_MONITOR_SAMPLING_INTERVAL``: seconds (> 0) between two
          steps of the retention window, which forgets old figures one step
          at a time: ``slots`` becomes ``retention / interval`` rounded up,
          kept within [1, 64], so a step is never finer than
          ``retention / 64`` (with the default 24 hours, any interval up to
          1350 s gives 64 steps of 1350 s). The monitor samples nothing on
          a timer: it is fed by ``record``, ``record_event`` and ``watch``.
        - ``PERF_MONITOR_ERROR_THRESHOLD``: ``alert_error_rate``, percent.
        - ``PERF_MONITOR_RESPONSE_THRESHOLD``: ``alert_response_ms``,
          milliseconds.

        ``environ`` (default ``os.environ``, read at this call only) is
        where the variables are looked up; a variable that is unset or
        empty leaves the constructor's default. ``overrides`` are the
        constructor's keyword arguments and win over the environment (the
        variable of an overridden parameter is not read; ``slots=`` wins
        over the sampling interval); an unknown one raises TypeError. A
        value that does not parse, or that the constructor refuses, raises
        ValueError naming the variable and the value.
        """
        settings = _ENV_SETTINGS if "slots" not in overrides else _ENV_SETTINGS[:-1]
        found = _env.read(environ, settings, overrides)
        interval = found.pop("sampling_interval", None)
        retention = overrides.get("retention", found["retention"].value
                                  if "retention" in found else 86400.0)
        # A bad retention is left to the constructor, which names its variable.
        if interval is not None and _check.finite(retention) and retention > 0:
            steps = min(64, max(1, math.ceil(retention / interval.value)))
            found["slots"] = _env.Found(interval.variable, interval.text, steps)
        return _env.build(cls, found, overrides)


class _SharedMonitor(Monitor):
    """A Monitor whose recorded data lives in a SharedRegion (see
    Monitor): recording goes to the C MonitorBlock, reading comes from it."""

    _core: MonitorBlock
    _warned = False  # of an overflow, once per process

    def record(self, component: str, operation: str, duration_ms: float, success: bool, *,
               error_type: str | None = None) -> None:
        if not self._core.record(component, operation, duration_ms, success, error_type):
            self._overflowed("record")
        if self._recorders:
            self._tell_recorders(component, operation, duration_ms, success)

    def record_event(self, kind: str, component: str) -> None:
        if not self._core.record_event(_KIND_INDEX.get(kind, -1), kind, component):
            self._overflowed("event")

    def _overflowed(self, what: str) -> None:
        if not _SharedMonitor._warned:
            _SharedMonitor._warned = True
            _log.warning("shared monitor %r is full: a %s was counted only in "
                         "stats()['overflow'] (raise max_components or max_series in a new "
                         "region)", self._name, what)

    def _read(self, quantiles: bool = False) -> _Reading:
        (uptime, over_records, over_events, interrupted, events, comps,
         series) = self._core.read(quantiles)
        out = _Reading(uptime)
        out.overflow = {"records": over_records, "events": over_events,
                        "interrupted": interrupted}
        out.events = list(events)
        for name, requests, errors, duration, q in sorted(comps):
            out.rows.append((name, float(requests), float(errors), duration))
            if q is not None:
                out.quantiles[name] = q if requests else (0.0, 0.0, 0.0)
        for kind, a, b, ok, sum_ms, counts in series:
            if kind == 1:
                out.by_operation.setdefault(a, {})[(b, ok)] = (sum_ms, *counts)
            elif kind == 2:
                out.errors_by_type.setdefault(a, {})[b] = counts[0]
            else:
                out.event_totals[(a, b)] = counts[0]
        return out


_SHARED_CLASSES: dict[type, type] = {Monitor: _SharedMonitor}


def _shared_class(cls: type) -> type:
    """The shared variant of Monitor or of a subclass (whose own methods win)."""
    shared = _SHARED_CLASSES.get(cls)
    if shared is None:
        shared = _SHARED_CLASSES.setdefault(
            cls, type(cls.__name__, (cls, _SharedMonitor), {"__module__": cls.__module__,
                                                            "__qualname__": cls.__qualname__}))
    return shared


_M = TypeVar("_M", bound=Monitor)

_ENV_SETTINGS = (
    _env.Setting("PERF_MONITOR_RETENTION_HOURS", "retention", _env.number(3600.0)),
    _env.Setting("PERF_MONITOR_ERROR_THRESHOLD", "alert_error_rate", _env.number()),
    _env.Setting("PERF_MONITOR_RESPONSE_THRESHOLD", "alert_response_ms", _env.number()),
    # Last (left out when slots= is given); not a constructor parameter:
    # from_env turns it into slots.
    _env.Setting("PERF_MONITOR_SAMPLING_INTERVAL", "sampling_interval", _env.positive_seconds),
)
