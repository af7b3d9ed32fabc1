"""Prometheus exposition for every resil component.

``exposition(*sources, namespace="resil") -> str`` renders the text format
(version 0.0.4); ``Collector(*sources, namespace="resil")`` offers the same
families to a ``prometheus_client`` registry (the optional ``prometheus``
extra); ``serve(port, namespace="resil")`` serves ``/metrics`` from a daemon
thread with the standard library only. Every family name starts with
``namespace`` and an underscore (``resil_circuit_breaker_state``; with
``namespace="omninode"``, ``omninode_circuit_breaker_state``); a namespace
is a str that is a Prometheus metric name (``[a-zA-Z_:][a-zA-Z0-9_:]*``).

A source is a component, or a ``(name, component)`` pair naming it for its
label: :class:`~resil.CircuitBreaker` and :class:`~resil.BreakerGroup` (label
``endpoint`` in every family rendered from a breaker), :class:`~resil.RetryPolicy`
(``policy``), :class:`~resil.TimeoutManager` (``manager``, and ``operation`` per
named operation), :class:`~resil.BoundedQueue` and :class:`~resil.PartitionedQueue`
(``queue``), :class:`~resil.EventEmitter` (``emitter``), :class:`~resil.EventBus`
(``bus``, and ``event_type`` per type), :class:`~resil.DeadLetterQueue` (``queue``:
its own ``name`` unless a pair names it; queues sharing a name are one
queue, summed, and the entries of store-backed ones on one file count
once), :class:`~resil.Bulkhead` (``bulkhead``), :class:`~resil.RateLimiter`
and :class:`~resil.AdaptiveLimiter` (``limiter``), each by its own ``name``
unless a pair names it,
:class:`~resil.Supervisor` (global task gauges, ``supervisor`` when named)
and :class:`~resil.Monitor` (``monitor`` when named).

A :class:`~resil.SharedRegion` is a source too: every object it holds
(``region.objects()``: rate limiters, monitors, and the other shared
types) is attached in this process and rendered once, with the families
and labels of the same local object, each under its own name (a
monitor named other than the default ``"monitor"`` also gets the
``monitor`` label, as a ``(name, monitor)`` pair would), and with
host-wide values: a ``/metrics`` endpoint of any one worker reports the
whole host. Pass the region alone, not also a worker's own handle on an
object in it (that would render the object twice: ValueError). A shared
Monitor adds ``<ns>_monitor_overflow_total{kind}`` (``records`` and
``events`` its tables had no room for, ``interrupted``: undone as their
process died mid-record); its ``active_connections`` and
``memory_usage_bytes`` are the scraped process's own.

A Bulkhead gives ``<ns>_bulkhead_calls_total{bulkhead,outcome}`` (its calls
since it was made: ``outcome`` ``admitted``, got a slot and started, at
once or after waiting; ``rejected``, refused with ``BulkheadFull`` for want
of a slot and of room to wait, or a ``try_acquire`` that found no slot;
``timed_out``, left the queue when ``queue_timeout`` ran out; a waiter
cancelled before it got a slot is in none), and the gauges
``<ns>_bulkhead_active`` (slots taken now), ``<ns>_bulkhead_queued``
(callers waiting now), ``<ns>_bulkhead_max_concurrent`` and
``<ns>_bulkhead_max_queue``, each ``{bulkhead}``. A RateLimiter gives
``<ns>_rate_limiter_decisions_total{limiter,outcome}`` (``admitted`` or
``rejected``: one per ``try_acquire``, per decorated call and per attempt
of a waiting ``acquire``), and the gauges ``<ns>_rate_limiter_keys`` (keys
whose bucket is still refilling), ``<ns>_rate_limiter_tokens_per_second``
(``rate / per``) and ``<ns>_rate_limiter_burst_tokens`` (the bucket's
capacity), each ``{limiter}``. An AdaptiveLimiter gives
``<ns>_adaptive_limiter_calls_total{limiter,outcome}`` (``admitted``;
``rejected`` at the limit; ``dropped``, admitted and then ended in a
timeout or an overload error, counted in ``admitted`` too) and the gauges
``<ns>_adaptive_limiter_limit`` (calls allowed in flight now) and
``<ns>_adaptive_limiter_in_flight``, each ``{limiter}``.

A Monitor gives the families of a request and resilience dashboard, each
labelled by what the monitor was told (``<ns>`` is the namespace):

- ``<ns>_request_duration_seconds{component,operation,status}``, a
  histogram (``_bucket{le}``, ``_sum``, ``_count``) of every duration
  recorded since the monitor started, ``status`` ``"success"`` or
  ``"error"``, with the bucket bounds of ``Monitor.DURATION_BUCKETS``
  (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
  30 and 60 seconds, then ``+Inf``);
- ``<ns>_requests_total{component,operation,status}``,
  ``<ns>_errors_total{component,error_type}``;
- from ``record_event`` (and ``watch``): ``<ns>_circuit_breaker_trips_total``,
  ``<ns>_timeout_failures_total``, ``<ns>_retry_attempts_total`` and
  ``<ns>_grace_period_recoveries_total``, each ``{component}`` (the
  component the event was recorded for: a watched breaker's trips under
  the breaker's name); ``<ns>_dead_letter_messages_total{topic}`` (the
  component given with the dead letter); other kinds in
  ``<ns>_events_total{component,kind}``;
- ``<ns>_system_health_status`` (0 healthy, 1 degraded, 2 critical, as
  ``Monitor.health()``), ``<ns>_active_connections{service}`` (from
  ``Monitor.set_active_connections``) and ``<ns>_memory_usage_bytes`` (this
  process's resident set, once per exposition with any monitor).

Families are label-based - one per metric, never one per endpoint - and
follow Prometheus naming: base units in names, ``_total`` on counters.
Values are written one way in every family: an int in decimal, a float as
Python's repr (``0.0``, ``0.25``), ``+Inf`` for infinity. The breaker
families are rendered in C, from one table that Collector reads too.
"""

from __future__ import annotations

import http.server
import logging
import math
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from resil import _resil
from resil.policies.breaker import BreakerGroup
from resil.policies.adaptive import AdaptiveLimiter
from resil.policies.bulkhead import Bulkhead
from resil.policies.ratelimit import RateLimiter
from resil.messaging.bus import EventBus
from resil.messaging.dlq import DeadLetterQueue
from resil.messaging.emitter import EventEmitter
from resil.observe.memory import resident_bytes
from resil.observe.monitor import DURATION_BUCKETS, Monitor
from resil.observe.regions import attached
from resil.storage.region import SharedRegion
from resil.messaging.queues import BoundedQueue, PartitionedQueue
from resil.policies.retry import RetryPolicy
from resil.tasks import Supervisor
from resil.policies.timeout import TimeoutManager

__all__ = ["CONTENT_TYPE", "Collector", "MetricsServer", "exposition", "serve"]

#: The ``Content-Type`` of the text that :func:`exposition` returns.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_log = logging.getLogger("resil.prometheus")
_source_errors = 0  # sources whose collection raised (resil_exposition_errors_total)
_errors_lock = threading.Lock()

_HEALTH = {"healthy": 0, "degraded": 1, "critical": 2}

# The breaker families, rendered in C (_resil.breaker_exposition, or as data
# by _resil.breaker_families) under "<namespace>_" + BREAKER_FAMILIES; a
# breaker's name is its BREAKER_LABEL label in every family rendered from a
# breaker.
BREAKER_FAMILIES = "circuit_breaker"
BREAKER_LABEL = "endpoint"
DEFAULT_NAMESPACE = "resil"
_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
# The duration histogram's "le" label values, the bounds as written in the
# text format.
_LE = tuple(repr(b) for b in DURATION_BUCKETS) + ("+Inf",)


def _namespace(namespace: Any) -> str:
    """``namespace`` checked: a str that is a Prometheus metric name."""
    if not isinstance(namespace, str):
        raise TypeError(f"namespace must be a str, a Prometheus metric name "
                        f"([a-zA-Z_:][a-zA-Z0-9_:]*), not {type(namespace).__name__}")
    # The plain str of a subclass's value: what is checked is what is written.
    name = str.__str__(namespace)
    if not _METRIC_NAME.fullmatch(name):
        raise ValueError(f"namespace must be a Prometheus metric name "
                         f"([a-zA-Z_:][a-zA-Z0-9_:]*), got {name!r}")
    return name


@dataclass
class _Family:
    name: str
    kind: str  # gauge, counter, histogram
    help: str
    # values: an int stays an int (written in decimal), anything else a float
    samples: list[tuple[str, tuple[tuple[str, str], ...], float]] = field(default_factory=list)
    # (suffix, labels) -> index in samples
    seen: dict[tuple[str, tuple[tuple[str, str], ...]], int] = field(default_factory=dict)

    def add(self, value: float, suffix: str = "", **labels: str) -> None:
        key = (suffix, tuple(labels.items()))
        if key in self.seen:
            raise ValueError(f"two sources give {self.name}{suffix} the same labels "
                             f"{dict(labels)}; name them with (name, source) pairs")
        self.seen[key] = len(self.samples)
        self.samples.append((suffix, key[1], value if type(value) is int else float(value)))

    def add_up(self, value: float, **labels: str) -> None:
        """Adds ``value`` to the sample with these labels (made at 0 if new):
        for sources that are parts of one labelled thing."""
        i = self.seen.get(("", tuple(labels.items())))
        if i is None:
            self.add(value, **labels)
        else:
            suffix, key, old = self.samples[i]
            self.samples[i] = (suffix, key, old + (value if type(value) is int else float(value)))


class _Families:
    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.by_name: dict[str, _Family] = {}
        self.dead_letter_stores: set[tuple[str, str]] = set()  # (file, queue) counted
        self.monitors = 0  # Monitor sources collected

    def get(self, name: str, kind: str, help_text: str) -> _Family:
        """The family ``<namespace>_<name>``, made empty if new."""
        full = f"{self.namespace}_{name}"
        fam = self.by_name.get(full)
        if fam is None:
            fam = self.by_name[full] = _Family(full, kind, help_text)
        return fam


# ---- collecting ------------------------------------------------------------------
def _split(source: Any) -> tuple[str | None, Any]:
    if isinstance(source, tuple) and len(source) == 2 and isinstance(source[0], str):
        return source[0], source[1]
    return None, source


def _expand(sources: Iterable[Any]) -> list[Any]:
    """The sources with each SharedRegion replaced by the objects it holds,
    attached in this process (each labelled by its own name)."""
    out: list[Any] = []
    for source in sources:
        _, obj = _split(source)
        if isinstance(obj, SharedRegion):
            # a monitor given a name of its own is labelled by it (two
            # monitors in one region would otherwise clash)
            out.extend((name, o) if kind == "Monitor" and name != "monitor" else o
                       for kind, name, o in attached(obj)
                       if isinstance(o, _EXPORTABLE))  # a Deduplicator has no families
        else:
            out.append(source)
    return out


def _breakers(sources: Iterable[Any]) -> tuple[list[Any], list[Any]]:
    """Splits the breakers (from breakers and groups) from the other sources."""
    breakers: list[Any] = []
    others: list[Any] = []
    for source in sources:
        name, obj = _split(source)
        if isinstance(obj, _resil.Breaker):
            breakers.append(obj)
        elif isinstance(obj, BreakerGroup):
            breakers.extend(obj[endpoint] for endpoint in obj)
        else:
            others.append((name, obj))
    names = [b.name for b in breakers]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"two breakers share the endpoint name(s) {dup}")
    return breakers, others


def _breaker_families(fams: _Families, breakers: list[Any]) -> None:
    """The breaker families as data, for Collector: the names, help texts and
    values of the C renderer's own table (exposition() uses its text)."""
    prefix = f"{fams.namespace}_{BREAKER_FAMILIES}"
    for name, kind, help_text, samples in _resil.breaker_families(breakers, prefix):
        fam = fams.by_name[name] = _Family(name, kind, help_text)
        for endpoint, value in samples:
            fam.add(value, **{BREAKER_LABEL: endpoint})


def _from_retry_policy(fams: _Families, name: str | None, obj: RetryPolicy) -> None:
    st = obj.stats()
    label = name or st["name"] or "default"
    fams.get("retries_total", "counter", "Attempts made after a first one.").add(
        st["retries"], policy=label)
    fams.get("retry_exhausted_total", "counter",
             "Calls that failed after retries, deadline or budget ran out.").add(
        st["gave_up"], policy=label)
    fams.get("retry_rejected_total", "counter",
             "Calls ended by an open breaker between attempts.").add(
        st["rejected"], policy=label)


def _from_timeout_manager(fams: _Families, name: str | None, obj: TimeoutManager) -> None:
    st = obj.stats()
    manager = name or "default"
    for op, s in sorted(st["per_name"].items()):
        fams.get("timeouts_total", "counter", "Operations that timed out.").add(
            s.get("timeouts", 0), manager=manager, operation=op)
        fams.get("timeout_warnings_total", "counter",
                 "Operations that passed the warning fraction of their deadline.").add(
            s.get("warnings", 0), manager=manager, operation=op)
        fams.get("grace_recoveries_total", "counter",
                 "Operations that finished within their grace extension.").add(
            s.get("grace_recoveries", 0), manager=manager, operation=op)
    fams.get("timeout_active_operations", "gauge",
             "Operations running under a deadline.").add(st["active"], manager=manager)


def _from_bounded_queue(fams: _Families, name: str | None, obj: BoundedQueue[Any]) -> None:
    st = obj.stats()
    q = name or "default"
    fams.get("queue_depth", "gauge", "Items in the queue.").add(st["depth"], queue=q)
    fams.get("queue_oldest_age_seconds", "gauge", "Age of the oldest item.").add(
        st["oldest_age"], queue=q)
    fams.get("queue_put_total", "counter", "Items put.").add(st["put"], queue=q)
    fams.get("queue_got_total", "counter", "Items taken.").add(st["got"], queue=q)
    fams.get("queue_rejected_total", "counter",
             "Puts refused by the reject watermark.").add(st["rejected"], queue=q)


def _from_partitioned_queue(fams: _Families, name: str | None,
                            obj: PartitionedQueue[Any, Any]) -> None:
    st = obj.stats()
    q = name or "default"
    fams.get("queue_depth", "gauge", "Items in the queue.").add(st["depth"], queue=q)
    fams.get("queue_partitions", "gauge", "Keys with queued items.").add(
        st["keys"], queue=q)


def _from_emitter(fams: _Families, name: str | None, obj: EventEmitter) -> None:
    st = obj.stats()
    e = name or "default"
    fams.get("emitter_queue_depth", "gauge", "Events waiting to be sent.").add(
        st["depth"], emitter=e)
    for key, text in (("emitted", "Events delivered to the sink."),
                      ("failures", "Events whose sink call failed."),
                      ("dropped", "Events dropped (overflow, or failed without a DLQ).")):
        fams.get(f"emitter_{key}_total", "counter", text).add(st[key], emitter=e)


def _from_bus(fams: _Families, name: str | None, obj: EventBus) -> None:
    st = obj.stats()
    bus = name or "default"
    for key, text in (("published", "Events published."),
                      ("delivered", "Handler deliveries that succeeded."),
                      ("failures", "Handler deliveries that raised."),
                      ("violations", "Deliveries refused by a contract."),
                      ("storms", "Events refused by storm detection."),
                      ("duplicates", "Publishes answered by an idempotency key."),
                      ("dead_lettered", "Deliveries sent to the dead-letter queue.")):
        fams.get(f"bus_{key}_total", "counter", text).add(st[key], bus=bus)
    for event_type, info in obj.topology().items():
        if event_type.endswith("*"):
            continue  # a wildcard pattern: its events and handlers are in its types' rows
        fams.get("bus_events_total", "counter", "Events published per type.").add(
            info["published"], bus=bus, event_type=event_type)
        fams.get("bus_subscribers", "gauge", "Handlers subscribed per type.").add(
            len(info["subscribers"]), bus=bus, event_type=event_type)
    for event_type, state in st["circuits"].items():
        fams.get("bus_circuit_open", "gauge",
                 "1 while publishing the type is refused.").add(
            1 if state == "FORCED_OPEN" else 0, bus=bus, event_type=event_type)
    disabled = sum(1 for h in st["handlers"].values() if h["disabled"])
    fams.get("bus_disabled_handlers", "gauge", "Handlers disabled by failures.").add(
        disabled, bus=bus)


def _from_dead_letter_queue(fams: _Families, name: str | None, obj: DeadLetterQueue) -> None:
    # A queue's name is its identity (store-backed queues of one name on one
    # file are the same entries), so queue objects sharing a label are summed
    # rather than refused; the entries of one store's queue count once.
    st = obj.stats()
    q = name or obj.name
    size = st["depth"]
    store = obj.store
    if store is not None:
        where = f":memory:{id(store)}" if store.path == ":memory:" else os.path.realpath(store.path)
        shared = (where, obj.name)
        if shared in fams.dead_letter_stores:
            size = 0
        fams.dead_letter_stores.add(shared)
    if size is not None:  # None: a queue on Redis while Redis is away
        fams.get("dead_letters", "gauge", "Entries in the dead-letter queue.").add_up(
            size, queue=q)
    for key, text in (("added", "Entries added."),
                      ("evicted", "Entries evicted at maxsize."),
                      ("expired", "Entries dropped after their ttl."),
                      ("reprocessed", "Entries reprocessed successfully.")):
        fams.get(f"dead_letters_{key}_total", "counter", text).add_up(st[key], queue=q)


def _from_supervisor(fams: _Families, name: str | None, obj: Supervisor) -> None:
    st = obj.stats()
    extra = {"supervisor": name} if name else {}
    fams.get("tasks_created_total", "counter", "Background tasks started.").add(
        st["created"], **extra)
    fams.get("tasks_active", "gauge", "Background tasks running.").add(
        st["active"], **extra)


def _from_bulkhead(fams: _Families, name: str | None, obj: Bulkhead) -> None:
    st = obj.stats()
    label = name or st["name"]
    calls = fams.get("bulkhead_calls_total", "counter",
                     "Calls through a bulkhead: admitted (got a slot), rejected (no slot and "
                     "no room to wait), timed_out (waited past queue_timeout).")
    for outcome in ("admitted", "rejected", "timed_out"):
        calls.add(st[outcome], bulkhead=label, outcome=outcome)
    fams.get("bulkhead_active", "gauge", "Calls running in a bulkhead's slots.").add(
        st["active"], bulkhead=label)
    fams.get("bulkhead_queued", "gauge", "Callers waiting for a bulkhead slot.").add(
        st["queued"], bulkhead=label)
    fams.get("bulkhead_max_concurrent", "gauge",
             "The most calls a bulkhead runs at once.").add(st["max_concurrent"], bulkhead=label)
    fams.get("bulkhead_max_queue", "gauge",
             "The most callers that wait for a bulkhead slot.").add(obj.max_queue, bulkhead=label)


def _from_rate_limiter(fams: _Families, name: str | None, obj: RateLimiter) -> None:
    st = obj.stats()
    label = name or st["name"]
    decisions = fams.get("rate_limiter_decisions_total", "counter",
                         "Rate limiter decisions: admitted or rejected.")
    for outcome in ("admitted", "rejected"):
        decisions.add(st[outcome], limiter=label, outcome=outcome)
    fams.get("rate_limiter_keys", "gauge", "Keys whose bucket is still refilling.").add(
        st["keys"], limiter=label)
    fams.get("rate_limiter_tokens_per_second", "gauge",
             "Tokens a rate limiter adds a second (rate / per).").add(
        st["rate"] / st["per"], limiter=label)
    fams.get("rate_limiter_burst_tokens", "gauge",
             "The capacity of a rate limiter's bucket, in tokens.").add(st["burst"],
                                                                         limiter=label)


# record_event kind -> (family, help, the label naming the event's component)
_EVENT_FAMILIES = {
    "circuit_breaker_trip": ("circuit_breaker_trips_total", "Circuit breaker trips.",
                             "component"),
    "timeout": ("timeout_failures_total", "Operations that timed out.", "component"),
    "retry": ("retry_attempts_total", "Retry attempts.", "component"),
    "dead_letter": ("dead_letter_messages_total", "Messages sent to a dead-letter queue.",
                    "topic"),
    "grace_recovery": ("grace_period_recoveries_total", "Grace-period recoveries.",
                       "component"),
}


def _from_monitor(fams: _Families, name: str | None, monitor: Monitor) -> None:
    extra = {"monitor": name} if name else {}
    data = monitor._export()
    fams.monitors += 1
    duration = fams.get("request_duration_seconds", "histogram",
                        "Operation durations in seconds since the monitor started.")
    requests = fams.get("requests_total", "counter", "Operations recorded.")
    errors = fams.get("errors_total", "counter", "Failed operations by error type.")
    for comp, info in data["components"].items():
        for (operation, ok), entry in sorted(info["by_operation"].items()):
            labels = {**extra, "component": comp, "operation": operation,
                      "status": "success" if ok else "error"}
            sum_ms, *buckets = entry
            count = 0
            for le, n in zip(_LE, buckets):
                count += n  # cumulative: durations <= le
                duration.add(count, "_bucket", **labels, le=le)
            duration.add(sum_ms / 1000.0, "_sum", **labels)
            duration.add(count, "_count", **labels)
            requests.add(count, **labels)
        for error_type, count in sorted(info["errors_by_type"].items()):
            errors.add(count, **extra, component=comp, error_type=error_type)
    event_fams = {kind: (fams.get(fam_name, "counter", text), label)
                  for kind, (fam_name, text, label) in _EVENT_FAMILIES.items()}
    for (kind, comp), count in sorted(data["events"].items()):
        if kind in event_fams:
            fam, label = event_fams[kind]
            fam.add(count, **extra, **{label: comp})
        else:
            fams.get("events_total", "counter", "Other resilience events.").add(
                count, **extra, component=comp, kind=kind)
    fams.get("system_health_status", "gauge",
             "System health (0=healthy 1=degraded 2=critical).").add(_HEALTH[data["health"]],
                                                                       **extra)
    connections = fams.get("active_connections", "gauge", "Connections a service has open.")
    for service, n in sorted(data["connections"].items()):
        connections.add(n, **extra, service=service)
    if data["overflow"] is not None:
        overflow = fams.get("monitor_overflow_total", "counter",
                            "Records and events a shared monitor had no room for (records, "
                            "events), or undone as their process died (interrupted).")
        for kind, n in sorted(data["overflow"].items()):
            overflow.add(n, **extra, kind=kind)


def _from_adaptive_limiter(fams: _Families, name: str | None, obj: AdaptiveLimiter) -> None:
    st = obj.stats()
    labels = {"limiter": name or st["name"]}
    for family, text, value in (
            ("adaptive_limiter_limit", "The calls an adaptive limiter allows in flight now.",
             st["limit"]),
            ("adaptive_limiter_in_flight", "Calls in flight in an adaptive limiter.",
             st["in_flight"])):
        fams.get(family, "gauge", text).add(value, **labels)
    calls = fams.get("adaptive_limiter_calls_total", "counter",
                     "Calls through an adaptive limiter: admitted, rejected (at the limit), "
                     "dropped (admitted, then timed out or refused downstream).")
    for outcome in ("admitted", "rejected", "dropped"):
        calls.add(st[outcome], **labels, outcome=outcome)


# What each kind of source contributes; breakers and groups are gathered apart
# (_breakers) and rendered together.
_COLLECTORS: dict[type, Callable[[_Families, str | None, Any], None]] = {
    RetryPolicy: _from_retry_policy,
    TimeoutManager: _from_timeout_manager,
    BoundedQueue: _from_bounded_queue,
    PartitionedQueue: _from_partitioned_queue,
    EventEmitter: _from_emitter,
    EventBus: _from_bus,
    DeadLetterQueue: _from_dead_letter_queue,
    Supervisor: _from_supervisor,
    Monitor: _from_monitor,
    Bulkhead: _from_bulkhead,
    RateLimiter: _from_rate_limiter,
    AdaptiveLimiter: _from_adaptive_limiter,
}
_EXPORTABLE = (_resil.Breaker, BreakerGroup, SharedRegion, *_COLLECTORS)


def _collect(fams: _Families, name: str | None, obj: Any) -> None:
    for cls in type(obj).__mro__:
        collector = _COLLECTORS.get(cls)
        if collector is not None:
            collector(fams, name, obj)
            return
    raise TypeError(f"resil.prometheus cannot export {type(obj).__name__} objects")


def _gather(sources: tuple[Any, ...], namespace: str,
            breakers_in_python: bool) -> tuple[list[Any], _Families]:
    global _source_errors
    if any(isinstance(_split(source)[1], SharedRegion) for source in sources):
        try:
            sources = tuple(_expand(sources))
        except (TypeError, ValueError):
            raise
        except Exception:
            with _errors_lock:
                _source_errors += 1
            _log.exception("reading the objects of a shared region failed; it is left out")
            sources = tuple(s for s in sources if not isinstance(_split(s)[1], SharedRegion))
    breakers, others = _breakers(sources)
    fams = _Families(namespace)
    if breakers_in_python:
        _breaker_families(fams, breakers)
    for name, obj in others:
        try:
            _collect(fams, name, obj)
        except (TypeError, ValueError):
            raise
        except Exception:
            with _errors_lock:
                _source_errors += 1
            _log.exception("collecting metrics from %r failed; it is left out", obj)
    if fams.monitors:
        # The process's, not a monitor's: one sample however many monitors.
        fams.get("memory_usage_bytes", "gauge",
                 "Resident memory of this process in bytes.").add(resident_bytes())
    fams.get("exposition_errors_total", "counter",
             "Sources whose collection raised and were left out.").add(_source_errors)
    return breakers, fams


# ---- text format ----------------------------------------------------------------------
def _escape_label(value: str) -> str:
    if not value.isascii():  # a lone surrogate is not UTF-8: write it as \udcxx
        value = value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    """A sample value as the C renderer writes one: an int in decimal, a float
    as its repr (the shortest text that reads back the same), NaN, +Inf, -Inf."""
    if type(value) is int:
        return str(value)
    if value != value:
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _render(fam: _Family, out: list[str]) -> None:
    out.append(f"# HELP {fam.name} {_escape_help(fam.help)}\n# TYPE {fam.name} {fam.kind}\n")
    for suffix, labels, value in fam.samples:
        if labels:
            text = ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels)
            out.append(f"{fam.name}{suffix}{{{text}}} {_number(value)}\n")
        else:
            out.append(f"{fam.name}{suffix} {_number(value)}\n")


def exposition(*sources: Any, namespace: str = DEFAULT_NAMESPACE) -> str:
    """The Prometheus text format for ``sources`` (see the module docstring),
    every family named ``<namespace>_...``; ``namespace="resil"`` is a str
    that is a Prometheus metric name (``[a-zA-Z_:][a-zA-Z0-9_:]*``), else
    TypeError or ValueError. TypeError for an object resil cannot export;
    ValueError when two sources would give one family the same labels. A
    source whose collection raises anything else is logged, left out and
    counted in ``<namespace>_exposition_errors_total``."""
    ns = _namespace(namespace)
    breakers, fams = _gather(sources, ns, breakers_in_python=False)
    out: list[str] = []
    if breakers:
        out.append(_resil.breaker_exposition(breakers, f"{ns}_{BREAKER_FAMILIES}",
                                             BREAKER_LABEL))
    for fam in fams.by_name.values():
        _render(fam, out)
    return "".join(out)


# ---- prometheus_client bridge ----------------------------------------------------------
class Collector:
    """A ``prometheus_client`` collector for ``sources``:
    ``prometheus_client.REGISTRY.register(resil.prometheus.Collector(breaker, queue))``,
    with the families and samples of ``exposition(*sources,
    namespace=namespace)`` (``namespace="resil"``, checked as there).
    Needs the optional ``prometheus_client`` package (``pip install
    resil[prometheus]``) only when a registry calls ``collect``."""

    def __init__(self, *sources: Any, namespace: str = DEFAULT_NAMESPACE) -> None:
        self._namespace = _namespace(namespace)
        _breakers(s for s in sources  # fails now, not at the first scrape, on bad sources
                  if not isinstance(_split(s)[1], SharedRegion))
        for source in sources:
            _, obj = _split(source)
            if not isinstance(obj, _EXPORTABLE):
                raise TypeError(f"resil.prometheus cannot export {type(obj).__name__} objects")
        self._sources = sources

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )
        from prometheus_client.metrics_core import Metric

        _, fams = _gather(self._sources, self._namespace, breakers_in_python=True)
        for fam in fams.by_name.values():
            metric: Metric
            if fam.kind == "counter":
                metric = CounterMetricFamily(fam.name.removesuffix("_total"), fam.help)
            elif fam.kind == "histogram":
                metric = HistogramMetricFamily(fam.name, fam.help)
            else:
                metric = GaugeMetricFamily(fam.name, fam.help)
            for suffix, labels, value in fam.samples:
                metric.add_sample(fam.name + suffix, dict(labels), value)
            yield metric

    def describe(self) -> list[Any]:
        return []  # families vary with the sources' contents: collect on scrape only


# ---- HTTP ----------------------------------------------------------------------------------
class MetricsServer:
    """A running ``/metrics`` endpoint (from :func:`serve`): ``host``,
    ``port`` (the bound one, useful with port 0), ``url``, ``shutdown()``
    (stops serving and closes the socket; idempotent)."""

    def __init__(self, httpd: http.server.ThreadingHTTPServer, thread: threading.Thread) -> None:
        self._httpd = httpd
        self._thread = thread
        self._closed = False
        address = httpd.server_address
        self.host: str = str(address[0])
        self.port: int = int(address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def serve(port: int, host: str = "127.0.0.1", sources: Iterable[Any] = (), *,
          namespace: str = DEFAULT_NAMESPACE) -> MetricsServer:
    """Serves ``exposition(*sources, namespace=namespace)`` at
    ``http://host:port/metrics`` from a daemon thread (port 0 picks a free
    port: see ``server.port``; ``namespace="resil"`` is checked now, as
    exposition checks it). A list is read again at each scrape, so sources
    appended later are served too. Other paths answer 404; a failing
    exposition answers 500 and is logged."""
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an int in [0, 65535], got {port!r}")
    ns = _namespace(namespace)
    chosen = sources if isinstance(sources, list) else tuple(sources)
    Collector(*chosen)  # validates the sources given so far

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the http.server protocol)
            if self.path.split("?", 1)[0] != "/metrics":
                self.send_error(404, "only /metrics is served here")
                return
            try:
                body = exposition(*chosen, namespace=ns).encode()
            except Exception:
                _log.exception("exposition failed")
                self.send_error(500, "exposition failed; see the resil.prometheus log")
                return
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            _log.debug("%s - %s", self.address_string(), format % args)

    httpd = http.server.ThreadingHTTPServer((host, port), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, name=f"resil-metrics-{port}",
                              daemon=True)
    thread.start()
    return MetricsServer(httpd, thread)
