"""Wiring a component's own events to an observer (``Monitor.watch`` and
``resil.otel.instrument``): which hooks each kind of component has, walked
once here.

A relay is what a watched component holds: it reaches its observer through
a weak reference, so a component never keeps an observer alive, and once
the observer is gone the relay takes itself off the component's list at
the next event. The observer holds the components it watches weakly too.
"""

from __future__ import annotations

import inspect
import threading
import types
import weakref
from typing import Any

from resil._hooks import Listeners
from resil._resil import State
from resil.messaging.bus import EventBus
from resil.messaging.deadletters import DeadLetterHandoff
from resil.messaging.dlq import DeadLetterQueue
from resil.messaging.emitter import EventEmitter
from resil.policies.breaker import BreakerGroup, CircuitBreaker
from resil.policies.adaptive import AdaptiveLimiter
from resil.policies.bulkhead import Bulkhead
from resil.policies.ratelimit import RateLimiter
from resil.policies.retry import RetryPolicy
from resil.policies.timeout import TimeoutManager

ACCEPTED = ("a resil.CircuitBreaker, BreakerGroup, RetryPolicy (or a function decorated "
            "with resil.retry), TimeoutManager, DeadLetterQueue, EventEmitter or EventBus")
#: What ``_wire`` takes: the above, a Bulkhead, a RateLimiter and an
#: AdaptiveLimiter (their refusals).
WIRED = ACCEPTED.replace("EventEmitter or EventBus",
                         "EventEmitter, EventBus, Bulkhead, RateLimiter or AdaptiveLimiter")


def named(name: str) -> str:
    """A component's name as observers count it: an empty one (a breaker
    or an operation may be called "") is counted as "unnamed"."""
    return name or "unnamed"


class _Relay:
    """``relay(kind, name)``, added to a component's :class:`Listeners`:
    hands the event to the observer under ``name`` (or the relay's own name)."""

    __slots__ = ("_observer", "_name", "_listeners", "__weakref__")

    def __init__(self, observer: _Watcher, listeners: Listeners, name: str | None = None) -> None:
        self._observer = weakref.ref(observer)
        self._name = name
        self._listeners = weakref.ref(listeners)

    def __call__(self, kind: str, name: str) -> None:
        observer = self._observer()
        if observer is not None:
            observer._on_event(kind, self._name or named(name))
            return
        listeners = self._listeners()
        if listeners is not None:
            listeners.remove(self)


class _TransitionRelay:
    """A breaker's state-change listener: hands each transition to the observer."""

    __slots__ = ("_observer", "__weakref__")

    def __init__(self, observer: _Watcher) -> None:
        self._observer = weakref.ref(observer)

    def __call__(self, breaker: CircuitBreaker, old: State, new: State, reason: str) -> None:
        observer = self._observer()
        if observer is None:
            try:
                breaker.remove_listener(self)
            except ValueError:  # removed by another thread meanwhile
                pass
        else:
            observer._on_transition(breaker, old, new)


class _CircuitRelay:
    """Handed each circuit an EventBus makes for an event type: watches it."""

    __slots__ = ("_observer", "_bus", "__weakref__")

    def __init__(self, observer: _Watcher, bus: EventBus) -> None:
        self._observer = weakref.ref(observer)
        self._bus = weakref.ref(bus)

    def __call__(self, breaker: CircuitBreaker) -> None:
        observer = self._observer()
        if observer is not None:
            observer._watch_breaker(breaker)
            return
        bus = self._bus()
        if bus is not None:
            try:
                bus._on_circuit.remove(self)
            except ValueError:
                pass


def retry_policy_of(source: Any) -> RetryPolicy | None:
    """The policy of a function decorated with ``resil.retry(...)`` (its
    wrapper's ``retry_policy``, or a bound method's function's), read
    without running the object's code."""
    if isinstance(source, types.MethodType):
        source = source.__func__
    try:
        policy = inspect.getattr_static(source, "retry_policy", None)
    except Exception:  # an object whose attribute lookup itself fails
        return None
    return policy if isinstance(policy, RetryPolicy) else None


class _Watcher:
    """An observer of components' own events. ``_wire(source)`` adds its
    relays to what ``source`` (and the components inside it) call; the
    events arrive at ``_on_event(kind, name)`` (kinds ``"retry"``,
    ``"timeout"``, ``"grace_recovery"``, ``"dead_letter"``) and
    ``_on_transition(breaker, old, new)``. Each component is wired once."""

    def __init__(self) -> None:
        # Held while a component is wired, not only while it is marked: a
        # thread whose watch() finds the component marked must not return
        # (and count nothing) before the thread wiring it has added its relay.
        self._watch_lock = threading.RLock()
        # Components already wired in (held weakly): wiring one again, or
        # through another component, must not count its events twice.
        self._watched: weakref.WeakSet[Any] = weakref.WeakSet()

    def _on_event(self, kind: str, name: str) -> None:
        raise NotImplementedError

    def _on_transition(self, breaker: CircuitBreaker, old: State, new: State) -> None:
        raise NotImplementedError

    def _wire(self, source: Any) -> None:
        """Wires ``source``; TypeError naming the accepted types for anything else."""
        with self._watch_lock:
            self._wire_locked(source)

    def _wire_locked(self, source: Any) -> None:
        if isinstance(source, CircuitBreaker):
            self._watch_breaker(source)
        elif isinstance(source, BreakerGroup):
            for name in source:
                self._watch_breaker(source[name])
        elif isinstance(source, RetryPolicy):
            self._watch_retry(source, None)
        elif isinstance(source, TimeoutManager):
            self._watch_listeners(source, source._listeners)
        elif isinstance(source, DeadLetterQueue):
            self._watch_queue(source)
        elif isinstance(source, EventEmitter):
            self._watch_emitter(source)
        elif isinstance(source, EventBus):
            self._watch_bus(source)
        elif isinstance(source, Bulkhead):
            self._watch_listeners(source, source._listeners)
        elif isinstance(source, (RateLimiter, AdaptiveLimiter)):
            self._watch_listeners(source, source._event_listeners())
        else:
            # Components added later (a bulkhead, a rate limiter) take a
            # branch above: an explicit Listeners they call, relayed here.
            policy = retry_policy_of(source)
            if policy is None:
                raise TypeError(f"watch() takes {WIRED}; got {type(source).__name__}")
            self._watch_retry(policy, getattr(source, "__qualname__", None))

    def _first_watch(self, component: Any) -> bool:
        """True the first time ``component`` is watched (then remembered)."""
        with self._watch_lock:
            if component in self._watched:
                return False
            self._watched.add(component)
            return True

    def _watch_breaker(self, breaker: CircuitBreaker) -> None:
        with self._watch_lock:  # also called by a bus making a circuit
            if self._first_watch(breaker):
                breaker.on_state_change(_TransitionRelay(self))

    def _watch_listeners(self, component: Any, listeners: Listeners,
                         name: str | None = None) -> None:
        if self._first_watch(component):
            listeners.add(_Relay(self, listeners, name))

    def _watch_retry(self, policy: RetryPolicy, hint: str | None,
                     default: str = "retry") -> None:
        name = policy.name or (hint if isinstance(hint, str) and hint else default)
        if self._first_watch(policy):
            policy._listen(_Relay(self, policy._policy.listeners, name))

    def _watch_queue(self, dlq: DeadLetterQueue) -> None:
        self._watch_listeners(dlq, dlq._listeners)

    def _watch_dead_letters(self, handoff: DeadLetterHandoff | None) -> None:
        if handoff is None:
            return
        if isinstance(handoff.sink, DeadLetterQueue):
            self._watch_queue(handoff.sink)  # counted (and sized) where they land
        else:
            self._watch_listeners(handoff, handoff.listeners)

    def _watch_emitter(self, emitter: EventEmitter) -> None:
        if not self._first_watch(emitter):
            return
        if isinstance(emitter._breaker, CircuitBreaker):
            self._watch_breaker(emitter._breaker)
        if isinstance(emitter._retry, RetryPolicy):
            self._watch_retry(emitter._retry, None, "emitter")
        self._watch_dead_letters(emitter._dead_letters)

    def _watch_bus(self, bus: EventBus) -> None:
        if not self._first_watch(bus):
            return
        # Circuits made from now on are handed to the relay; then the ones
        # made already are watched (one made in between is watched once).
        bus._on_circuit.append(_CircuitRelay(self, bus))
        for topic in list(bus._topics.values()):
            if topic.breaker is not None:
                self._watch_breaker(topic.breaker)
        self._watch_dead_letters(bus._dead_letters)
