"""OpenTelemetry metrics for resil's components.

``instrument(*sources, meter_provider=None, prefix="resil")`` registers
OpenTelemetry instruments that report what ``sources`` do, through
``meter_provider`` (default: the global one, ``opentelemetry.metrics``,
also when it is set after this call) under the meter ``"resil"``. A source
is a component, or a ``(name, component)`` pair naming it in the
``resil.name`` attribute of the gauges read from it. Accepted:
:class:`~resil.CircuitBreaker`, :class:`~resil.BreakerGroup`,
:class:`~resil.RetryPolicy` (or a function decorated with
``resil.retry``), :class:`~resil.TimeoutManager`,
:class:`~resil.BoundedQueue`, :class:`~resil.PartitionedQueue`,
:class:`~resil.EventEmitter`, :class:`~resil.EventBus`,
:class:`~resil.DeadLetterQueue`, :class:`~resil.Bulkhead`,
:class:`~resil.RateLimiter`, :class:`~resil.AdaptiveLimiter`,
:class:`~resil.Monitor` and :class:`~resil.SharedRegion` (every object the
region holds at each collection, by its own name, observed as the same
local object: host-wide values from any worker; a shared monitor's
``call.duration`` stays what this process records); anything else
raises TypeError, and nothing is registered. ``prefix`` is a str of
letters, digits and ``_.-/`` starting with a letter (ValueError otherwise)
that starts every instrument's name.

Instruments (``<p>`` is the prefix; the attribute ``resil.name`` names the
component, ``resil.outcome`` and ``resil.state`` say what happened):

===================================  ==================  ================  ======================================================
name                                 kind                unit              attributes
===================================  ==================  ================  ======================================================
``<p>.circuit_breaker.calls``        observable counter  ``{call}``        ``resil.name``, ``resil.outcome``
``<p>.circuit_breaker.state``        observable gauge    ``1``             ``resil.name``, ``resil.state``
``<p>.circuit_breaker.transitions``  counter             ``{transition}``  ``resil.name``, ``resil.state``
``<p>.retry.retries``                counter             ``{retry}``       ``resil.name``
``<p>.timeout.timeouts``             counter             ``{timeout}``     ``resil.name``
``<p>.timeout.grace_recoveries``     counter             ``{operation}``   ``resil.name``
``<p>.timeout.active``               observable gauge    ``{operation}``   ``resil.name``
``<p>.dead_letters``                 counter             ``{letter}``      ``resil.name``
``<p>.queue.depth``                  observable gauge    ``{item}``        ``resil.name``
``<p>.queue.limit``                  observable gauge    ``{item}``        ``resil.name``
``<p>.call.duration``                histogram           ``s``             ``resil.name``, ``resil.operation``, ``resil.outcome``
``<p>.health``                       observable gauge    ``1``             ``resil.name``
``<p>.bulkhead.calls``               observable counter  ``{call}``        ``resil.name``, ``resil.outcome``
``<p>.bulkhead.active``              observable gauge    ``{call}``        ``resil.name``
``<p>.bulkhead.queued``              observable gauge    ``{call}``        ``resil.name``
``<p>.bulkhead.max_concurrent``      observable gauge    ``{call}``        ``resil.name``
``<p>.bulkhead.max_queue``           observable gauge    ``{call}``        ``resil.name``
``<p>.rate_limiter.decisions``       observable counter  ``{decision}``    ``resil.name``, ``resil.outcome``
``<p>.rate_limiter.keys``            observable gauge    ``{key}``         ``resil.name``
``<p>.rate_limiter.rate``            observable gauge    ``{token}/s``     ``resil.name``
``<p>.rate_limiter.burst``           observable gauge    ``{token}``       ``resil.name``
===================================  ==================  ================  ======================================================

- ``circuit_breaker.calls``: each breaker's calls since it was made, by
  ``resil.outcome``: ``success`` and ``failure`` (outcomes recorded),
  ``rejected`` (refused while open) and ``ignored`` (permits released
  without an outcome: an ignored exception, a cancellation). Read from the
  breaker's ``stats()`` at each collection; a :class:`~resil.BreakerGroup`
  reports every endpoint it holds then.
- ``circuit_breaker.state``: 1 for the breaker's state now (``resil.state``
  one of ``CLOSED``, ``DEGRADED``, ``OPEN``, ``HALF_OPEN``, ``FORCED_OPEN``,
  ``DISABLED``), 0 for the others.
- ``circuit_breaker.transitions``: each state change, ``resil.state`` the
  state entered. Counted from the breaker's state-change listener, as are
  the next four from the components' own event hooks, the way
  :meth:`resil.Monitor.watch` wires them: the breakers of an
  :class:`~resil.EventEmitter`, the circuits an :class:`~resil.EventBus`
  makes for its event types (named ``bus:<type>``, now and later), the
  retry policy of an emitter and the dead letters of an emitter or a bus
  included. A breaker added to a group after this call reports calls and
  state but not transitions (instrument the group again to add it).
- ``retry.retries``: attempts after a first one, ``resil.name`` the
  policy's name (else the decorated function's ``__qualname__``, else
  ``retry``).
- ``timeout.timeouts``, ``timeout.grace_recoveries``: operations of a
  :class:`~resil.TimeoutManager` that timed out, or finished within their
  grace extension, ``resil.name`` the operation's name;
  ``timeout.active``: operations running under a deadline now.
- ``dead_letters``: dead letters added, ``resil.name`` the queue's (or
  sink's) name.
- ``queue.depth``: items held now by a BoundedQueue, PartitionedQueue,
  EventEmitter (waiting to be sent) or DeadLetterQueue; ``queue.limit``:
  the most a BoundedQueue or DeadLetterQueue holds.
- ``call.duration``: every duration a :class:`~resil.Monitor` records from
  now on, in seconds, ``resil.name`` its component, ``resil.operation``
  its operation, ``resil.outcome`` ``success`` or ``failure``;
  ``health``: the monitor's health, 0 healthy, 1 degraded, 2 critical.
- ``bulkhead.calls``: each :class:`~resil.Bulkhead`'s calls since it was
  made, by ``resil.outcome``: ``admitted`` (got a slot and started, at once
  or after waiting), ``rejected`` (refused with ``BulkheadFull``: no slot
  and no room to wait, or ``try_acquire`` finding no slot) and
  ``timed_out`` (left the queue when ``queue_timeout`` ran out); a waiter
  cancelled before it got a slot is none of these. ``bulkhead.active``:
  slots taken now; ``bulkhead.queued``: callers waiting for one now;
  ``bulkhead.max_concurrent`` and ``bulkhead.max_queue``: its limits.
- ``rate_limiter.decisions``: each :class:`~resil.RateLimiter`'s decisions
  since it was made, by ``resil.outcome``: ``admitted`` or ``rejected``
  (one per ``try_acquire``, per decorated call, and per attempt of a
  waiting ``acquire``; a ``retry_after`` decides nothing);
  ``rate_limiter.keys``: keys whose bucket is still refilling;
  ``rate_limiter.rate``: tokens added a second (``rate / per``);
  ``rate_limiter.burst``: the bucket's capacity. Read from the
  component's ``stats()`` at each collection, as the breaker calls are.
- ``adaptive_limiter.calls``: each :class:`~resil.AdaptiveLimiter`'s calls
  since it was made, by ``resil.outcome``: ``admitted``, ``rejected``
  (refused at the limit) and ``dropped`` (admitted, then ended in a
  timeout or an overload error: counted in ``admitted`` too);
  ``adaptive_limiter.limit``: the calls allowed in flight now;
  ``adaptive_limiter.in_flight``: calls admitted and not released.

Names and units follow the OpenTelemetry semantic conventions: dotted
lowercase names without a unit or ``_total`` suffix, UCUM units (durations
in seconds, counts as ``{thing}``). Sources are held weakly: a collected
component drops out of the gauges, and its relays take themselves off.
Instrumenting a component again through the same provider and prefix
reports it once. A source whose ``stats()`` raises is logged on
``resil.otel`` and left out of that collection.

Needs ``opentelemetry-api`` (``pip install resil[otel]``); importing this
module without it raises ImportError saying so.
"""

from __future__ import annotations

import logging
import re
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any

try:
    from opentelemetry import metrics as _metrics
except ImportError as exc:  # pragma: no cover - exercised in a subprocess
    raise ImportError("resil.otel needs the opentelemetry-api package: "
                      "pip install resil[otel]") from exc

from resil._resil import Region, State
from resil.messaging.bus import EventBus
from resil.messaging.dlq import DeadLetterQueue
from resil.messaging.emitter import EventEmitter
from resil.messaging.queues import BoundedQueue, PartitionedQueue
from resil.observe._wiring import ACCEPTED, _Watcher, named, retry_policy_of
from resil.observe.monitor import Monitor
from resil.observe.regions import attached
from resil.policies.breaker import BreakerGroup, CircuitBreaker
from resil.policies.adaptive import AdaptiveLimiter
from resil.policies.bulkhead import Bulkhead
from resil.policies.ratelimit import RateLimiter
from resil.policies.retry import RetryPolicy
from resil.policies.timeout import TimeoutManager
from resil.storage.region import SharedRegion

__all__ = ["instrument"]

_log = logging.getLogger("resil.otel")

_PREFIX = re.compile(r"[A-Za-z][A-Za-z0-9_.\-/]{0,200}")
_HEALTH = {"healthy": 0, "degraded": 1, "critical": 2}
# stats() key -> resil.outcome of circuit_breaker.calls
_OUTCOMES = (("successes", "success"), ("failures", "failure"), ("rejected", "rejected"),
             ("released", "ignored"))
# stats() key -> resil.outcome of bulkhead.calls and of rate_limiter.decisions
_BULKHEAD_OUTCOMES = (("admitted", "admitted"), ("rejected", "rejected"),
                      ("timed_out", "timed_out"))
_LIMITER_OUTCOMES = (("admitted", "admitted"), ("rejected", "rejected"))
_ADAPTIVE_OUTCOMES = ("admitted", "rejected", "dropped")

# The event kinds the wiring reports -> (instrument key, name, unit, description).
_EVENT_COUNTERS = {
    "retry": ("retry.retries", "{retry}", "Attempts made after a first one."),
    "timeout": ("timeout.timeouts", "{timeout}", "Operations that timed out."),
    "grace_recovery": ("timeout.grace_recoveries", "{operation}",
                       "Operations that finished within their grace extension."),
    "dead_letter": ("dead_letters", "{letter}", "Dead letters added."),
}

# Observations: (instrument key, value, attributes)
_Observation = tuple[str, float, dict[str, str]]


def _breaker(name: str | None, breaker: CircuitBreaker) -> Iterator[_Observation]:
    st = breaker.stats()
    label = name or named(breaker.name)
    for key, outcome in _OUTCOMES:
        yield "circuit_breaker.calls", st[key], {"resil.name": label, "resil.outcome": outcome}
    for state in State:
        yield ("circuit_breaker.state", 1 if st["state"] == state else 0,
               {"resil.name": label, "resil.state": state.name})


def _group(name: str | None, group: BreakerGroup) -> Iterator[_Observation]:
    for endpoint in group:
        yield from _breaker(None, group[endpoint])


def _timeouts(name: str | None, manager: TimeoutManager) -> Iterator[_Observation]:
    yield "timeout.active", manager.stats()["active"], {"resil.name": name or "default"}


def _queue(default: str) -> Callable[[str | None, Any], Iterator[_Observation]]:
    def observe(name: str | None, queue: Any) -> Iterator[_Observation]:
        st = queue.stats()
        attrs = {"resil.name": name or st.get("name") or default}
        yield "queue.depth", st["depth"], attrs
        if "maxsize" in st:
            yield "queue.limit", st["maxsize"], attrs
    return observe


def _monitor(name: str | None, monitor: Monitor) -> Iterator[_Observation]:
    yield "health", _HEALTH[monitor.health()], {"resil.name": name or "monitor"}


def _bulkhead(name: str | None, bulkhead: Bulkhead) -> Iterator[_Observation]:
    st = bulkhead.stats()
    label = name or st["name"]
    for key, outcome in _BULKHEAD_OUTCOMES:
        yield "bulkhead.calls", st[key], {"resil.name": label, "resil.outcome": outcome}
    attrs = {"resil.name": label}
    yield "bulkhead.active", st["active"], attrs
    yield "bulkhead.queued", st["queued"], attrs
    yield "bulkhead.max_concurrent", st["max_concurrent"], attrs
    yield "bulkhead.max_queue", bulkhead.max_queue, attrs


def _rate_limiter(name: str | None, limiter: RateLimiter) -> Iterator[_Observation]:
    st = limiter.stats()
    label = name or named(st["name"])
    for key, outcome in _LIMITER_OUTCOMES:
        yield "rate_limiter.decisions", st[key], {"resil.name": label, "resil.outcome": outcome}
    attrs = {"resil.name": label}
    yield "rate_limiter.keys", st["keys"], attrs
    yield "rate_limiter.rate", st["rate"] / st["per"], attrs
    yield "rate_limiter.burst", st["burst"], attrs


def _region(name: str | None, region: SharedRegion) -> Iterator[_Observation]:
    # Every object the region holds now, by its own name, as a local one.
    for _, _, obj in attached(region):
        observe = _observer_of(obj)
        if observe is not None:
            yield from observe(None, obj)


def _adaptive(name: str | None, limiter: AdaptiveLimiter) -> Iterator[_Observation]:
    st = limiter.stats()
    label = name or named(st["name"])
    for outcome in _ADAPTIVE_OUTCOMES:
        yield "adaptive_limiter.calls", st[outcome], {"resil.name": label, "resil.outcome": outcome}
    attrs = {"resil.name": label}
    yield "adaptive_limiter.limit", st["limit"], attrs
    yield "adaptive_limiter.in_flight", st["in_flight"], attrs


# What each kind of source is observed for at each collection. A component
# added to resil later gets a row here for its gauges (new keys in
# _GAUGES), and, when it reports events through a Listeners, a branch in
# resil/observe/_wiring.py that the counters above then count. The bulkhead
# and the rate limiter keep their own counts (read here from stats()), so
# they are not wired: their refusal events would count them twice.
_OBSERVERS: dict[type, Callable[[str | None, Any], Iterator[_Observation]]] = {
    CircuitBreaker: _breaker,
    BreakerGroup: _group,
    TimeoutManager: _timeouts,
    BoundedQueue: _queue("queue"),
    PartitionedQueue: _queue("queue"),
    EventEmitter: _queue("emitter"),
    DeadLetterQueue: _queue("dlq"),
    Monitor: _monitor,
    Bulkhead: _bulkhead,
    RateLimiter: _rate_limiter,
    AdaptiveLimiter: _adaptive,
    Region: _region,
}
# Sources that report events through the wiring.
_WIRED = (CircuitBreaker, BreakerGroup, RetryPolicy, TimeoutManager, DeadLetterQueue,
          EventEmitter, EventBus)

# Observable instruments: key -> (kind, unit, description)
_GAUGES = {
    "circuit_breaker.calls": ("counter", "{call}", "Calls through a circuit breaker, by outcome."),
    "circuit_breaker.state": ("gauge", "1", "1 for the circuit breaker's state now, else 0."),
    "timeout.active": ("gauge", "{operation}", "Operations running under a deadline."),
    "queue.depth": ("gauge", "{item}", "Items held now."),
    "queue.limit": ("gauge", "{item}", "The most items the queue holds."),
    "health": ("gauge", "1", "Monitor health: 0 healthy, 1 degraded, 2 critical."),
    "bulkhead.calls": ("counter", "{call}", "Calls through a bulkhead, by outcome."),
    "bulkhead.active": ("gauge", "{call}", "Calls running in a bulkhead's slots."),
    "bulkhead.queued": ("gauge", "{call}", "Callers waiting for a bulkhead slot."),
    "bulkhead.max_concurrent": ("gauge", "{call}", "The most calls a bulkhead runs at once."),
    "bulkhead.max_queue": ("gauge", "{call}", "The most callers that wait for a bulkhead slot."),
    "rate_limiter.decisions": ("counter", "{decision}",
                               "Rate limiter decisions, by outcome."),
    "rate_limiter.keys": ("gauge", "{key}", "Keys whose bucket is still refilling."),
    "rate_limiter.rate": ("gauge", "{token}/s", "Tokens a rate limiter adds a second."),
    "rate_limiter.burst": ("gauge", "{token}", "The capacity of a rate limiter's bucket."),
    "adaptive_limiter.calls": ("counter", "{call}", "Calls through an adaptive limiter, by outcome."),
    "adaptive_limiter.limit": ("gauge", "{call}", "The calls an adaptive limiter allows in flight."),
    "adaptive_limiter.in_flight": ("gauge", "{call}", "Calls in flight in an adaptive limiter."),
}


def _observer_of(obj: Any) -> Callable[[str | None, Any], Iterator[_Observation]] | None:
    for cls in type(obj).__mro__:
        observe = _OBSERVERS.get(cls)
        if observe is not None:
            return observe
    return None


class _Recorder:
    """A monitor's duration listener: records into the histogram."""

    __slots__ = ("_instruments", "_monitor", "__weakref__")

    def __init__(self, instruments: _Instruments, monitor: Monitor) -> None:
        self._instruments = weakref.ref(instruments)
        self._monitor = weakref.ref(monitor)

    def __call__(self, component: str, operation: str, duration_ms: float, ok: bool) -> None:
        instruments = self._instruments()
        if instruments is not None:
            instruments.duration.record(duration_ms / 1000.0, {
                "resil.name": component, "resil.operation": operation,
                "resil.outcome": "success" if ok else "failure"})
            return
        monitor = self._monitor()
        if monitor is not None:
            monitor._remove_recorder(self)


class _Instruments(_Watcher):
    """The instruments of one (meter provider, prefix), and the sources they
    report (held weakly)."""

    def __init__(self, meter: Any, prefix: str) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._sources: list[tuple[str | None, weakref.ref[Any]]] = []
        self.counters = {kind: meter.create_counter(f"{prefix}.{key}", unit=unit,
                                                    description=text)
                         for kind, (key, unit, text) in _EVENT_COUNTERS.items()}
        self.transitions = meter.create_counter(
            f"{prefix}.circuit_breaker.transitions", unit="{transition}",
            description="Circuit breaker state changes, by the state entered.")
        self.duration = meter.create_histogram(
            f"{prefix}.call.duration", unit="s",
            description="Durations of the operations a monitor records.")
        for key, (kind, unit, text) in _GAUGES.items():
            make = meter.create_observable_counter if kind == "counter" \
                else meter.create_observable_gauge
            make(f"{prefix}.{key}", callbacks=[self._callback(key)], unit=unit,
                 description=text)

    # ---- events from the wiring --------------------------------------------------
    def _on_event(self, kind: str, name: str) -> None:
        counter = self.counters.get(kind)
        if counter is not None:
            counter.add(1, {"resil.name": name})

    def _on_transition(self, breaker: CircuitBreaker, old: State, new: State) -> None:
        self.transitions.add(1, {"resil.name": named(breaker.name), "resil.state": new.name})

    # ---- sources -----------------------------------------------------------------
    def add(self, name: str | None, obj: Any) -> None:
        with self._lock:
            # Collected sources are pruned here and at each collection (no
            # weakref callback: it could run inside this lock, on any thread).
            self._sources = [(n, ref) for n, ref in self._sources if ref() is not None]
            if not any(n == name and ref() is obj for n, ref in self._sources):
                self._sources.append((name, weakref.ref(obj)))
        if isinstance(obj, Monitor):
            with self._watch_lock:  # marked and wired as one step, as in _wire
                if self._first_watch(obj):
                    obj._add_recorder(_Recorder(self, obj))
        elif isinstance(obj, _WIRED) or retry_policy_of(obj) is not None:
            self._wire(obj)

    def _observe(self, key: str) -> Iterator[Any]:
        with self._lock:
            self._sources = [(n, ref) for n, ref in self._sources if ref() is not None]
            sources = list(self._sources)
        for name, ref in sources:
            obj = ref()
            if obj is None:
                continue
            observe = _observer_of(obj)
            if observe is None:
                continue
            try:
                found = [(v, attrs) for k, v, attrs in observe(name, obj) if k == key]
            except Exception:
                _log.exception("reading %r for OpenTelemetry failed; it is left out", obj)
                continue
            for value, attrs in found:
                yield _metrics.Observation(value, attrs)

    def _callback(self, key: str) -> Callable[[Any], Iterable[Any]]:
        me = weakref.ref(self)

        def callback(options: Any) -> Iterable[Any]:
            instruments = me()
            return [] if instruments is None else list(instruments._observe(key))
        return callback


# (meter provider, prefix) -> the provider and its instruments, for the
# life of the process: an OpenTelemetry instrument cannot be unregistered.
_REGISTRY: dict[tuple[int, str], tuple[Any, _Instruments]] = {}
_REGISTRY_LOCK = threading.Lock()


def _split(source: Any) -> tuple[str | None, Any]:
    if isinstance(source, tuple) and len(source) == 2 and isinstance(source[0], str):
        if not source[0]:
            raise ValueError("a (name, component) source's name must be a non-empty str")
        return source[0], source[1]
    return None, source


def instrument(*sources: Any, meter_provider: Any = None, prefix: str = "resil") -> None:
    """Registers OpenTelemetry instruments reporting ``sources`` (see the
    module docstring for the instruments, their names, units and
    attributes) through ``meter_provider`` (default None: the global
    provider), every name starting with ``prefix`` (default ``"resil"``).
    TypeError for a source of another kind or a ``prefix`` that is not a
    str, ValueError for a ``prefix`` that is no instrument name; nothing is
    registered then."""
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be a str (letters, digits and _.-/, starting with a "
                        f"letter), not {type(prefix).__name__}")
    if not _PREFIX.fullmatch(prefix):
        raise ValueError(f"prefix must be letters, digits and _.-/, starting with a letter "
                         f"(at most 201 characters), got {prefix!r}")
    if meter_provider is not None and not callable(getattr(meter_provider, "get_meter", None)):
        raise TypeError(f"meter_provider must be an OpenTelemetry MeterProvider or None, "
                        f"not {type(meter_provider).__name__}")
    checked = []
    for source in sources:
        name, obj = _split(source)
        if not (_observer_of(obj) is not None or isinstance(obj, _WIRED)
                or retry_policy_of(obj) is not None):
            raise TypeError(f"instrument() takes {ACCEPTED}, BoundedQueue, PartitionedQueue, "
                            f"Bulkhead, RateLimiter, AdaptiveLimiter, Monitor or SharedRegion "
                            f"(or a (name, "
                            f"component) pair); "
                            f"got {type(obj).__name__}")
        checked.append((name, obj))
    provider = meter_provider if meter_provider is not None else _metrics.get_meter_provider()
    with _REGISTRY_LOCK:
        entry = _REGISTRY.get((id(provider), prefix))
        if entry is None or entry[0] is not provider:
            from resil import __version__

            meter = provider.get_meter("resil", __version__)
            entry = _REGISTRY[(id(provider), prefix)] = (provider, _Instruments(meter, prefix))
    instruments = entry[1]
    for name, obj in checked:
        instruments.add(name, obj)
