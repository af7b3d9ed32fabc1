"""In-process event bus with storm detection, contracts and replay."""

from __future__ import annotations

import asyncio
import collections
import datetime
import inspect
import itertools
import json
import logging
import threading
import time
import types
import typing
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from resil import _check
from resil.tasks import _RUNNING
from resil.messaging.deadletters import DeadLetterHandoff, DeadLetterSink, check_sink
from resil.policies.breaker import CircuitBreaker
from resil.errors import CANCELLATION, _Message
from resil._resil import CircuitOpenError, Deduplicator, RateCounter, ResilError, State

if TYPE_CHECKING:
    from resil.storage.sqlite import SQLiteStore

__all__ = ["ContractViolation", "Event", "EventBus", "EventStore", "EventStormError",
           "HandlerDisabled"]

_running_loop = asyncio.get_running_loop
_log = logging.getLogger("resil.bus")

_STOP = CANCELLATION
_ON_STORM = ("raise", "drop")


class Event(NamedTuple):
    """One published event (immutable).

    ``seq``: the bus's gapless sequence number (from 1); ``event_id``: a
    unique id (32 hex digits); ``timestamp``: Unix time of publication, to
    the microsecond (:attr:`time` is the same instant as a UTC datetime);
    ``correlation_id``: the one given to ``publish``, or the event's own id
    when none was (the start of a trace); ``payload`` is the mapping given
    to ``publish``, shared by every handler - handlers must not change it."""

    event_type: str
    payload: Mapping[str, Any]
    seq: int
    event_id: str
    timestamp: float
    correlation_id: str
    schema_version: str = "1.0"
    idempotency_key: str | None = None
    publisher: str | None = None

    @property
    def time(self) -> datetime.datetime:
        """The timestamp as an aware UTC datetime."""
        return datetime.datetime.fromtimestamp(self.timestamp, datetime.timezone.utc)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``payload`` as a dict)."""
        return {"event_type": self.event_type, "payload": dict(self.payload), "seq": self.seq,
                "event_id": self.event_id, "timestamp": self.timestamp,
                "correlation_id": self.correlation_id, "schema_version": self.schema_version,
                "idempotency_key": self.idempotency_key, "publisher": self.publisher}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Event:
        """The inverse of :meth:`to_dict`."""
        return cls(data["event_type"], data["payload"], data["seq"], data["event_id"],
                   data["timestamp"], data["correlation_id"], data.get("schema_version", "1.0"),
                   data.get("idempotency_key"), data.get("publisher"))


class EventStore(Protocol):
    """What an :class:`EventBus` needs of its ``store`` (a
    :class:`resil.SQLiteStore` or a :class:`resil.redis.StreamStore`).

    A store that also has ``follow(deliver, position=True)`` is shared
    live: the bus delivers the events it reads from the store (every
    publisher's) rather than its own as it publishes them. A store that has
    a coroutine ``append_event_async`` (same arguments) is awaited for the
    write; otherwise ``append_event`` runs in a worker thread."""

    @property
    def path(self) -> str:
        """Where the events are, for messages."""
        ...

    def append_event(self, event_id: str, event_type: str, payload_json: str, timestamp: float,
                     correlation_id: str, schema_version: str, idempotency_key: str | None,
                     publisher: str | None) -> int:
        """Stores one event; returns its number (gapless among the store's users)."""
        ...

    def events(self, from_seq: int | None = None, *, to_seq: int | None = None,
               since: float | None = None, event_type: str | None = None
               ) -> Iterator[dict[str, Any]]:
        """Stored events in number order, ``payload`` as JSON text."""
        ...

    def event_types(self) -> set[str]:
        """The event types stored."""
        ...


class EventStormError(ResilError, RuntimeError):
    """More than ``threshold`` events of ``event_type`` were published within
    ``window`` seconds; the refused event was not numbered or delivered. A
    :class:`ResilError` and a ``RuntimeError``."""

    def __init__(self, event_type: str, threshold: int, window: float) -> None:
        super().__init__(f"event storm: more than {threshold} {event_type!r} events within "
                         f"{window:g} s")
        self.event_type = event_type
        self.threshold = threshold
        self.window = window

    def __reduce__(self) -> tuple[Any, ...]:
        return (EventStormError, (self.event_type, self.threshold, self.window))


class TypeCircuitOpenError(CircuitOpenError):
    """The :class:`CircuitOpenError` that ``publish`` raises while an event
    type's circuit is open: ``name`` is the circuit (``"bus:<type>"``),
    ``event_type`` the type and ``disabled`` the names of its disabled
    handlers (empty when the circuit was opened by hand or its disabled
    handlers were unsubscribed); the message names them and
    ``reset_handler``."""

    event_type: str
    disabled: tuple[str, ...]

    def __str__(self) -> str:
        event_type = self.__dict__.get("event_type")
        if event_type is None:  # built by hand, without the details
            return super().__str__()
        disabled = self.__dict__.get("disabled", ())
        if disabled:
            why = (f"{len(disabled)} of its handlers {'is' if len(disabled) == 1 else 'are'} "
                   f"disabled after repeated failures ({', '.join(disabled)})")
            fix = (f"fix the cause, then bus.reset_handler({event_type!r}) re-enables "
                   f"{'it' if len(disabled) == 1 else 'them'} and closes the circuit")
        else:
            why = "its circuit was forced open and no disabled handler is subscribed now"
            fix = f"bus.reset_handler({event_type!r}) closes it"
        return f"publishing {event_type!r} is refused: circuit {self.name!r} is open: {why}; {fix}"


class ContractViolation(_Message, ResilError):
    """The error recorded for an event refused by a subscription's contract
    (a missing required field or an unsupported schema version)."""


class HandlerDisabled(_Message, ResilError):
    """The error recorded for an event not delivered to a disabled handler."""


class DeliveryCancelled(_Message, ResilError):
    """The error recorded for deliveries skipped because ``publish`` or
    ``replay`` was cancelled (or interrupted) part-way through."""


def _handler_name(handler: Callable[..., Any]) -> str:
    name = getattr(handler, "__qualname__", None) or getattr(handler, "__name__", None)
    return name if isinstance(name, str) and name else repr(handler)


class _Subscription:
    __slots__ = ("handler", "name", "required", "types", "versions", "pattern", "order",
                 "is_async", "delivered", "failures", "consecutive", "disabled", "violations",
                 "skipped")

    def __init__(self, handler: Callable[[Event], Any], name: str, required: tuple[str, ...],
                 types: tuple[tuple[str, tuple[type, ...]], ...], versions: frozenset[str],
                 pattern: str | None, order: int) -> None:
        self.handler = handler
        self.name = name
        self.required = required
        self.types = types  # (field, accepted types) for a typed contract
        self.versions = versions
        self.pattern = pattern  # the wildcard pattern subscribed to, or None
        self.order = order  # when it subscribed, among every subscription of the bus
        self.is_async = inspect.iscoroutinefunction(handler)
        self.delivered = 0
        self.failures = 0
        self.consecutive = 0
        self.disabled = False
        self.violations = 0
        self.skipped = 0

    def contract_error(self, event: Event) -> str | None:
        if event.schema_version not in self.versions:
            return (f"schema version {event.schema_version!r} not supported "
                    f"(accepts {', '.join(sorted(self.versions))})")
        payload = event.payload
        missing = [f for f in self.required if f not in payload]
        if missing:
            return f"missing required field{'s' if len(missing) > 1 else ''} {', '.join(missing)}"
        for field, accepted in self.types:
            value = payload[field]
            try:
                ok = isinstance(value, accepted)
            except Exception as exc:  # an __instancecheck__ that raises
                return f"field {field!r} could not be checked: {exc!r}"
            if not ok:
                return (f"field {field!r} is {type(value).__name__}, expected "
                        f"{' or '.join(t.__name__ for t in accepted)}")
        return None


class _Topic:
    """What the bus keeps for an event type it currently tracks. Published
    counts and publisher names live in the bus (they outlive the topic)."""

    __slots__ = ("name", "subs", "receivers", "rate", "breaker", "clock", "on_circuit")

    def __init__(self, name: str, rate: RateCounter, clock: Any,
                 on_circuit: list[Callable[[CircuitBreaker], object]]) -> None:
        self.name = name
        self.subs: list[_Subscription] = []  # subscribed to this exact type
        # Who gets its events: subs and the wildcard subscriptions matching
        # it, each handler once, in subscription order (set by the bus).
        self.receivers: list[_Subscription] = []
        self.rate = rate
        self.clock = clock  # the bus's: its breaker reads it
        self.breaker: CircuitBreaker | None = None  # made when first needed
        self.on_circuit = on_circuit  # the bus's: each is handed every new circuit

    @property
    def circuit(self) -> CircuitBreaker:
        if self.breaker is None:
            self.breaker = CircuitBreaker(name=f"bus:{self.name}", clock=self.clock)
            for fn in tuple(self.on_circuit):
                try:
                    fn(self.breaker)
                except Exception:
                    _log.exception("circuit listener %r failed for %r", fn, self.name)
        return self.breaker

    def forced_open(self) -> bool:
        return self.breaker is not None and self.breaker.state is State.FORCED_OPEN


def _strings(value: Any, name: str, what: str) -> tuple[Any, ...]:
    """The items of an iterable that is not a str itself (checked by the caller)."""
    if isinstance(value, str) or not hasattr(value, "__iter__"):
        raise TypeError(f"{name} must be an iterable of {what}, not {type(value).__name__}")
    return tuple(value)


_MAX_STORM_THRESHOLD = 1 << 24  # RateCounter's largest threshold
_FORGET_PER_PUBLISH = 8  # idle event types forgotten per publish, at most
_INBOX_LIMIT = 10_000  # events read from a live store and not yet delivered, at most


def _parse_type(event_type: Any) -> str | None:
    """Checks a subscribed event type; returns the prefix a wildcard pattern
    matches (``""`` for ``"*"``, ``"graph."`` for ``"graph.*"``) or None for
    an exact type."""
    text = _check.text(event_type, "event_type")
    if "*" not in text:
        return None
    if text == "*" or (text.endswith(".*") and "*" not in text[:-1]):
        return text[:-1]
    raise ValueError(f"event_type {event_type!r} is not a valid pattern: only a whole last "
                     f"segment may be '*' (\"graph.*\", or \"*\" for every type)")


def _is_union(hint: Any) -> bool:
    origin: Any = typing.get_origin(hint)
    return origin is typing.Union or origin is types.UnionType


def _contract(required: Any) -> tuple[tuple[str, ...], tuple[tuple[str, tuple[type, ...]], ...]]:
    """The field names and (field, types) pairs of a ``required`` argument."""
    if isinstance(required, Mapping):
        names: list[str] = []
        typed: list[tuple[str, tuple[type, ...]]] = []
        for field, accepted in required.items():
            _check.text(field, "each required field")
            kinds = accepted if isinstance(accepted, tuple) else (accepted,)
            # int | str and Optional[int] stand for (int, str) and (int, NoneType)
            kinds = tuple(t for k in kinds
                          for t in (typing.get_args(k) if _is_union(k) else (k,)))
            # A generic alias (list[int]) passes for a type on Python 3.10
            # but isinstance refuses it.
            if not kinds or not all(isinstance(k, type) and not isinstance(k, types.GenericAlias)
                                    for k in kinds):
                raise TypeError(f"required[{field!r}] must be a type, a union of types or a "
                                f"non-empty tuple of types, not {accepted!r}")
            names.append(field)
            typed.append((field, kinds))
        return tuple(names), tuple(typed)
    req = _strings(required, "required", "field names (or a mapping of field name to type)")
    for field in req:
        _check.text(field, "each required field")
    return req, ()


def _same_handler(a: Callable[..., Any], b: Callable[..., Any]) -> bool:
    """Whether two subscriptions hold one handler (equal bound methods are);
    an ``__eq__`` that raises or answers no bool says they differ."""
    if a is b:
        return True
    try:
        return bool(a == b)
    except Exception:
        return False


class EventBus:
    """Publishes events to subscribed handlers, in order, with protection.

    ``EventBus(storm_threshold=100, storm_window=1.0, on_storm="raise",
    handler_failure_limit=3, store=None, dlq=None, *, idempotency_ttl=300.0,
    clock=None)``.

    - ``subscribe(event_type, handler, required=(), versions=("1.0", "1.1"),
      *, name=None)``: ``handler(event)`` may be sync or async.
      ``event_type`` may be a pattern whose last segment is ``*``
      (``"graph.*"``: every type under ``graph.``; ``"*"``: every type); a
      handler gets each event once, however many of its subscriptions
      match. ``required`` is a tuple of field names or a mapping of field
      name to type(s). An event whose payload lacks a ``required`` field,
      has one of another type, or whose schema version is not in
      ``versions``, is not delivered to that handler: it is logged as a
      contract violation, counted, and sent to ``dlq``.
    - ``await publish(event_type, payload, correlation_id=None,
      schema_version="1.0", idempotency_key=None, *, publisher=None) ->
      Event``: numbers the event (gapless, from 1; with ``store``, the
      highest stored + 1, assigned in the write transaction after the event
      is written) and delivers it to each handler in turn; every handler
      sees a bus's events in sequence order. Publishing is serialised per
      bus: a publish returns once every handler has run. A handler may
      publish on the same bus: its event is numbered at once and delivered
      right after the current one, before the outer publish returns. Use a
      bus from one event loop.
    - ``store``: a :class:`resil.SQLiteStore`, or any :class:`~resil.messaging.bus.EventStore`.
      A store shared live - a :class:`resil.redis.StreamStore`, on which
      buses of every host publish - changes delivery: ``publish`` returns
      once its event is stored (numbered on Redis, gapless across hosts),
      and the bus delivers to its handlers every event it reads from the
      store, any bus's, its own included, in number order, each once,
      from a reader it starts on its first ``subscribe`` inside the event
      loop (or first ``publish``). ``stats()`` then counts ``received``
      and gives ``backend`` (the store's Redis mode); ``await aclose()``
      delivers what the bus published and stops the reader.
    - Storms: an event counts toward its type's window while less than
      ``storm_window`` seconds old (``clock`` time); an event that would make
      more than ``storm_threshold`` of one type raises
      :class:`EventStormError` (``on_storm="drop"``: ``publish`` returns
      None), counted either way and never numbered.
      The storm counter of a type holds one 8-byte timestamp per event inside
      its window (in a ring that grows and shrinks with them), so its memory
      follows the traffic, not ``storm_threshold``.
    - ``idempotency_key``: a key seen within ``idempotency_ttl`` seconds
      returns the original Event, neither numbered nor delivered.
    - Handlers are isolated: an exception is logged, sent to ``dlq`` and
      never reaches the publisher or other handlers. After
      ``handler_failure_limit`` consecutive failures the handler is
      disabled (its deliveries go to ``dlq`` as :class:`HandlerDisabled`)
      until ``reset_handler``. When half or more
      of a type's handlers are disabled the type's circuit (a
      :class:`CircuitBreaker` named ``"bus:<type>"``) is forced open and
      publishing that type raises :class:`CircuitOpenError` (its message
      names the disabled handlers and ``reset_handler``; ``event_type`` and
      ``disabled`` hold them) until ``reset_handler``. Only the type's own
      subscriptions count toward that half: a wildcard handler failing
      ``handler_failure_limit`` times in a row (over any of the types it
      receives) is disabled for all of them until
      ``reset_handler(pattern)``, its deliveries dead-lettered as
      :class:`HandlerDisabled`, but it opens no circuit - it is one
      observer of many types, and its failure should not refuse the
      publishers of every type it matches.
    - ``configure(storm_threshold=None, storm_window=None)`` changes the
      storm settings from the next publish on (see :meth:`configure` for
      the events already counted).
    - ``await replay(from_seq=None, since=None, event_type=None, *,
      to_seq=None) -> int`` delivers stored events again, in sequence order,
      bounds inclusive, without renumbering, storing, storm or idempotency
      checks (contracts still apply). It needs a ``store``.
    - ``dlq``: a :class:`DeadLetterSink` (such as a
      :class:`DeadLetterQueue`). Each refused or failed delivery is one
      ``put(event, error, source="<type>:<handler name>", attempts=n)``,
      with ``error`` the handler's exception (or :class:`ContractViolation`,
      :class:`HandlerDisabled`, :class:`DeliveryCancelled`) and ``n`` the
      number of calls made to the handler for the event (0 or 1). Dead
      letters reach it one ``put`` at a time, in order: from a worker
      thread when the dlq is ``blocking`` (a queue over a
      :class:`SQLiteStore`), so a disk write never blocks the event loop;
      an awaitable ``put`` returns is awaited. ``publish`` returns once its
      dead letters are written. Without a dlq, refused and failed
      deliveries are only logged and counted.
    - ``clock`` (a VirtualClock in tests) times the storm window and the
      idempotency ttl; timestamps are wall-clock Unix time.
    - Memory: the bus forgets the state of an event type (its storm counter
      and subscription list, about 0.5 KB) once the type has no subscriber,
      no event inside its storm window and no circuit anyone asked for or
      opened; a publish forgets a few such types, oldest first, so their
      number stays bounded by the types recently published. What
      ``topology()`` reports survives: the published count of every type
      ever published and its publisher names are kept in dicts (about 150
      bytes per type). A forgotten type comes back fresh (an empty
      storm window) when published or subscribed again.

    Parameters (errors name them): ``storm_threshold`` an int in [1,
    16777216]; ``storm_window`` and ``idempotency_ttl`` seconds in [1e-9,
    9.2e9]; ``handler_failure_limit`` an int in [1, 2**31]; ``on_storm``
    ``"raise"`` or ``"drop"``.
    """

    def __init__(self, storm_threshold: int = 100, storm_window: float = 1.0, *,
                 on_storm: str = "raise", handler_failure_limit: int = 3,
                 store: SQLiteStore | EventStore | None = None,
                 dlq: DeadLetterSink | None = None,
                 idempotency_ttl: float = 300.0, clock: Any = None) -> None:
        _check.integer(storm_threshold, "storm_threshold", 1, _MAX_STORM_THRESHOLD)
        window = _check.seconds(storm_window, "storm_window", low=1e-9, low_open=False)
        _check.choice(on_storm, "on_storm", _ON_STORM)
        _check.integer(handler_failure_limit, "handler_failure_limit", 1, 1 << 31)
        if store is not None and not all(
                callable(getattr(store, method, None))
                for method in ("append_event", "events", "event_types")):
            raise TypeError("store must be a resil.SQLiteStore, a resil.redis.StreamStore or None, "
                            f"not {type(store).__name__}")
        sink_for_dead_letters = check_sink(dlq)
        ttl = _check.seconds(idempotency_ttl, "idempotency_ttl", low=1e-9, low_open=False)
        # The clock is checked here (the error names "clock", as the user did).
        RateCounter(1, window, clock=clock)
        # idempotency key -> the original Event, for idempotency_ttl seconds
        self._dedup = Deduplicator(ttl=ttl, clock=clock)
        self._storm_threshold = storm_threshold
        self._storm_window = window
        self._raise_on_storm = on_storm == "raise"
        self._failure_limit = handler_failure_limit
        self._store: SQLiteStore | EventStore | None = store
        # A store shared live (it has follow()): the bus delivers what it
        # reads from the store, from a reader thread started on first use.
        self._live = callable(getattr(store, "follow", None))
        self._follower: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inbox: collections.deque[dict[str, Any]] = collections.deque()
        # The reader waits while this many events wait for delivery.
        self._room = threading.Condition()
        self._drainer: asyncio.Task[None] | None = None
        self._closed = False
        self._dead_letters = None if sink_for_dead_letters is None else \
            DeadLetterHandoff(sink_for_dead_letters, _log)
        self._clock = clock
        self._topics: dict[str, _Topic] = {}
        # Called with each type's circuit as it is made (Monitor.watch wires it).
        self._on_circuit: list[Callable[[CircuitBreaker], object]] = []
        # Topics without subscribers, least recently published first: the
        # candidates to forget.
        self._idle: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._published: dict[str, int] = {}  # every type ever published -> events
        # Wildcard subscriptions: pattern ("graph.*", "*") -> its subscriptions.
        self._patterns: dict[str, list[_Subscription]] = {}
        self._order = itertools.count()  # subscription order across types and patterns
        self._publishers: dict[str, set[str]] = {}  # types with named publishers
        self._busy = False
        self._holder: asyncio.Task[Any] | None = None  # the task holding the turn
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._pending: collections.deque[tuple[_Topic, Event]] = collections.deque()
        self._seq = 0
        # An event's id: 20 hex digits of this bus, then its 12-digit count
        # (%-formatting: half the cost of an f-string format spec).
        self._id_format = uuid.uuid4().hex[:20] + "%012x"
        self._id_counter = itertools.count(1)
        self._counts = dict.fromkeys(
            ("published", "delivered", "failures", "violations", "skipped", "storms", "dropped",
             "duplicates", "dead_lettered", "dead_letter_failures", "replayed"), 0)
        if self._live:
            self._counts["received"] = 0

    # ---- subscriptions ------------------------------------------------------------
    def _topic(self, event_type: str) -> _Topic:
        topic = self._topics.get(event_type)
        if topic is None:
            # The counter's own limit is the largest: publish compares the
            # count with the bus's threshold, which configure() may change.
            rate = RateCounter(_MAX_STORM_THRESHOLD, self._storm_window, clock=self._clock)
            topic = self._topics[event_type] = _Topic(event_type, rate, self._clock,
                                                      self._on_circuit)
            topic.receivers = self._receivers(event_type, topic.subs)
            self._idle[event_type] = None
        return topic

    def _receivers(self, event_type: str, subs: list[_Subscription],
                   patterns: dict[str, list[_Subscription]] | None = None
                   ) -> list[_Subscription]:
        """Who gets ``event_type``'s events: its own subscriptions and the
        matching wildcard ones (of ``patterns``, by default the bus's), a
        handler once (by its most specific subscription: the exact type,
        else the longest pattern), in the order they subscribed."""
        if patterns is None:
            patterns = self._patterns
        if not patterns:
            return list(subs)
        chosen = list(subs)
        for pattern in sorted(patterns, key=len, reverse=True):
            prefix = pattern[:-1]
            if len(event_type) > len(prefix) and event_type.startswith(prefix):
                for sub in patterns[pattern]:
                    if not any(_same_handler(other.handler, sub.handler) for other in chosen):
                        chosen.append(sub)
        chosen.sort(key=lambda sub: sub.order)
        return chosen

    def _rematch(self, prefix: str) -> None:
        """Recomputes the receivers of every tracked type a pattern with
        this prefix matches."""
        for name, topic in self._topics.items():
            if len(name) > len(prefix) and name.startswith(prefix):
                topic.receivers = self._receivers(name, topic.subs)

    def _forget_idle(self) -> None:
        """Forgets a few types that have no subscriber, no circuit and no
        event inside the storm window, least recently published first. Runs
        only while a publish holds the bus's turn and before it looks up its
        own type, so no event of a forgotten type is in flight."""
        idle, topics = self._idle, self._topics
        budget = _FORGET_PER_PUBLISH
        while budget and idle:
            name = next(iter(idle))
            topic = topics.get(name)
            if topic is not None and not topic.subs and topic.breaker is None:
                if topic.rate.count():
                    return  # published recently: so were the ones behind it
                del topics[name]
                budget -= 1
            del idle[name]  # forgotten, or kept for its subscribers or circuit

    def subscribe(self, event_type: str, handler: Callable[[Event], Any], *,
                  required: Iterable[str] | Mapping[str, Any] = (),
                  versions: Iterable[str] = ("1.0", "1.1"),
                  name: str | None = None) -> Callable[[Event], Any]:
        """Adds ``handler`` for ``event_type`` and returns it.

        ``event_type``: a type, or a pattern whose last segment is ``*``:
        ``"graph.*"`` receives ``graph.edge_added`` and ``graph.node.x``
        (not ``graph``), ``"*"`` every type; any other ``*`` raises
        ValueError. A handler subscribed to a type and to a pattern matching
        it (or to two matching patterns) gets each event once, through its
        most specific subscription (the type, else the longer pattern),
        whose contract applies. Handlers of an event run in the order they
        subscribed.

        ``required``: payload fields the handler needs - a tuple of names,
        or a mapping of name to a type, a tuple of types or a union
        (``{"id": int, "score": (int, float)}``, checked with isinstance):
        a missing field, or a present one of another type, is a contract
        violation. ``versions``: schema versions it accepts; ``name``: how
        logs, dlq sources and topology() call it (default: its qualified
        name, with ``#2``, ``#3``... when another handler of the type or
        pattern has it). A handler subscribed twice to one type or pattern,
        or a ``name`` already used there, raises ValueError; a ``required``
        mapping whose values are not types raises TypeError."""
        prefix = _parse_type(event_type)
        _check.function(handler, "handler")
        req, typed = _contract(required)
        vers = frozenset(_strings(versions, "versions", "version strings"))
        if not vers:
            raise ValueError("versions must name at least one schema version")
        for version in vers:
            _check.text(version, "each version")
        label = _handler_name(handler) if name is None else _check.text(name, "name")
        if prefix is None:
            topic: _Topic | None = self._topic(event_type)
            assert topic is not None
            subs = topic.subs
        else:
            topic = None
            subs = self._patterns.get(event_type, [])
        taken = {sub.name for sub in subs}
        for sub in subs:
            if sub.handler == handler:
                raise ValueError(f"{label} is already subscribed to {event_type!r}")
        if label in taken:
            if name is not None:
                raise ValueError(f"a handler named {label!r} is already subscribed to "
                                 f"{event_type!r}")
            base, n = label, 2  # e.g. closures from one factory: "make.<locals>.h#2"
            while f"{base}#{n}" in taken:
                n += 1
            label = f"{base}#{n}"
        if self._live and self._follower is None:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                pass  # no loop yet: the first publish, or a subscribe in a loop, starts it
            else:
                self._follow(position=True)
        sub = _Subscription(handler, label, req, typed, vers,
                            None if prefix is None else event_type, next(self._order))
        if topic is not None:
            topic.subs.append(sub)
            topic.receivers = self._receivers(event_type, topic.subs)
            self._idle.pop(event_type, None)
        else:
            assert prefix is not None
            self._patterns.setdefault(event_type, []).append(sub)
            self._rematch(prefix)
        return handler

    def unsubscribe(self, event_type: str, handler: Callable[[Event], Any]) -> bool:
        """Removes ``handler`` from ``event_type`` (a type or a pattern, as
        subscribed); False if it was not there."""
        subs = self._patterns.get(event_type)
        if subs is not None:
            for i, sub in enumerate(subs):
                if sub.handler == handler:
                    del subs[i]
                    if not subs:
                        del self._patterns[event_type]
                    self._rematch(event_type[:-1])
                    return True
            return False
        topic = self._topics.get(event_type)
        if topic is None:
            return False
        for i, sub in enumerate(topic.subs):
            if sub.handler == handler:
                del topic.subs[i]
                topic.receivers = self._receivers(event_type, topic.subs)
                if not topic.forced_open() and self._half_disabled(topic):
                    topic.circuit.force_open()
                    _log.error("bus circuit for %r opened: half of its handlers are disabled",
                               event_type)
                if not topic.subs:
                    self._idle[event_type] = None
                return True
        return False

    def reset_handler(self, event_type: str, handler: Callable[[Event], Any] | None = None) -> int:
        """Re-enables ``handler`` (every handler of the type when None) and
        closes the type's circuit unless half or more of its handlers are
        still disabled. Returns how many handlers were re-enabled. For a
        pattern (``"graph.*"``) it re-enables that pattern's handlers, for
        every type they receive; a type's reset leaves the handlers it gets
        through a pattern alone (KeyError naming the pattern when ``handler``
        is one of them)."""
        patterned = self._patterns.get(event_type)
        if patterned is not None:
            count = _enable(patterned, handler)
            if count is None:
                assert handler is not None
                raise KeyError(f"{_handler_name(handler)} is not subscribed to {event_type!r}")
            return count
        topic = self._topics.get(event_type)
        if topic is None:
            if handler is None and event_type in self._published:
                return 0  # a forgotten type: nothing subscribed, nothing disabled
            raise KeyError(event_type)
        count = _enable(topic.subs, handler)
        if count is None:
            assert handler is not None
            via = [sub.pattern for sub in topic.receivers
                   if sub.pattern is not None and _same_handler(sub.handler, handler)]
            raise KeyError(f"{_handler_name(handler)} receives {event_type!r} through the "
                           f"pattern {via[0]!r}: reset_handler({via[0]!r}, handler) re-enables it"
                           if via else
                           f"{_handler_name(handler)} is not subscribed to {event_type!r}")
        if topic.forced_open() and not self._half_disabled(topic):
            topic.circuit.reset()
            _log.info("bus circuit for %r closed by reset_handler", event_type)
        return count

    @staticmethod
    def _half_disabled(topic: _Topic) -> bool:
        # Only the type's own subscriptions count: a wildcard handler is
        # disabled on its own and never opens the circuit of a type it matches.
        disabled = sum(1 for sub in topic.subs if sub.disabled)
        return disabled > 0 and 2 * disabled >= len(topic.subs)

    # ---- settings -----------------------------------------------------------------
    def configure(self, *, storm_threshold: int | None = None,
                  storm_window: float | None = None) -> None:
        """Changes the storm settings from the next publish on; None leaves
        one as it is. Both are checked as the constructor checks them
        (``storm_threshold`` an int in [1, 16777216], ``storm_window``
        seconds in [1e-9, 9.2e9]) before anything changes: a bad value
        raises and changes neither.

        The events already in a type's storm window still count. A new
        threshold applies to them as they are: lowered below their number,
        the type's next publish is a storm. A new window re-times them: each
        event that counted under the old window at the call counts in the
        new one as if published at the call, so a storm under way is never
        forgotten, and is remembered at most one old window longer than an
        event published now would be."""
        threshold = self._storm_threshold if storm_threshold is None else _check.integer(
            storm_threshold, "storm_threshold", 1, _MAX_STORM_THRESHOLD)
        window = self._storm_window if storm_window is None else _check.seconds(
            storm_window, "storm_window", low=1e-9, low_open=False)
        if window != self._storm_window:
            # New counters first (allocation may fail): then swapped in at once.
            fresh: list[tuple[_Topic, RateCounter]] = []
            for topic in list(self._topics.values()):
                rate = RateCounter(_MAX_STORM_THRESHOLD, window, clock=self._clock)
                for _ in range(topic.rate.count()):
                    rate.hit()
                fresh.append((topic, rate))
            for topic, rate in fresh:
                topic.rate = rate
        self._storm_threshold = threshold
        self._storm_window = window

    # ---- publishing -------------------------------------------------------------
    async def publish(self, event_type: str, payload: Mapping[str, Any], *,
                      correlation_id: str | None = None, schema_version: str = "1.0",
                      idempotency_key: str | None = None,
                      publisher: str | None = None) -> Event | None:
        """Numbers, stores (with a store) and delivers one event; see the
        class docstring. Raises EventStormError, CircuitOpenError (naming
        the disabled handlers and reset_handler), TypeError
        for a payload that is not a mapping (or, with a store, not
        JSON-serialisable), StoreError when the store cannot write and
        RedisUnavailable when a store on Redis does not answer within its
        backend's timeout - in each case nothing is numbered, stored or
        delivered."""
        if type(event_type) is not str or not event_type:
            _check.text(event_type, "event_type")
        if type(payload) is not dict and not isinstance(payload, Mapping):
            raise TypeError(f"payload must be a mapping, got {type(payload).__name__}")
        if correlation_id is not None:
            _check.text(correlation_id, "correlation_id")
        if type(schema_version) is not str or not schema_version:
            _check.text(schema_version, "schema_version")
        if idempotency_key is not None:
            _check.text(idempotency_key, "idempotency_key")
        if publisher is not None:
            _check.text(publisher, "publisher")
        payload_json = None
        if self._live and self._follower is None:
            self._follow(position=False)
        if self._store is not None:
            try:
                payload_json = json.dumps(payload, allow_nan=False, separators=(",", ":"))
            except (TypeError, ValueError, RecursionError) as exc:  # also nested too deep
                raise TypeError(f"payload of a {event_type!r} event is not JSON-serialisable, "
                                f"so it cannot be stored: {exc}") from exc
        # A handler publishing on the bus that is delivering to it runs in the
        # task holding the turn: its event is numbered now and delivered
        # after the current one (waiting for the turn would deadlock).
        nested = self._busy and self._holder is _RUNNING.get(_running_loop())
        if not nested:
            if self._busy:
                await self._wait_turn()
            else:
                self._busy, self._holder = True, _RUNNING.get(_running_loop())
        try:
            if self._live and self._follower is None and not nested:
                # aclose() came while this publish waited for the turn: its
                # event would be stored but never read back and delivered here
                raise ResilError("the EventBus is closed")
            if not nested and self._idle:
                self._forget_idle()
            topic = self._topics.get(event_type)
            if topic is None:
                if "*" in event_type:
                    raise ValueError(f"event_type {event_type!r}: a published event type cannot "
                                     f"contain '*' (a wildcard is for subscribe)")
                topic = self._topic(event_type)
            if topic.forced_open():
                raise self._circuit_error(topic)
            if idempotency_key is not None:
                original: Event | None = self._dedup.get(idempotency_key)
                if original is not None:
                    self._counts["duplicates"] += 1
                    return original
            if topic.rate.count() >= self._storm_threshold:
                self._counts["storms"] += 1
                if self._raise_on_storm:
                    _log.error("event storm on %r: more than %d within %g s; event refused",
                               event_type, self._storm_threshold, self._storm_window)
                    raise EventStormError(event_type, self._storm_threshold, self._storm_window)
                self._counts["dropped"] += 1
                _log.warning("event storm on %r: event dropped", event_type)
                return None
            # Room for this event's timestamp now: after the write, hit() must not fail.
            topic.rate.reserve()
            event_id = self._id_format % next(self._id_counter)
            now = time.time_ns() // 1000 / 1e6  # whole microseconds: Event.time round-trips
            corr = event_id if correlation_id is None else correlation_id
            cancelled: BaseException | None = None
            if payload_json is not None:
                seq, cancelled = await self._append(event_id, event_type, payload_json, now,
                                                    corr, schema_version, idempotency_key,
                                                    publisher)
            else:
                seq = self._seq + 1
            if not self._live:
                self._seq = seq
            # Counted once numbered, so a failed write uses no storm budget;
            # the count above and reserve() make it accepted, without allocating.
            topic.rate.hit()
            event = Event(event_type, payload, seq, event_id, now, corr, schema_version,
                          idempotency_key, publisher)
            if not topic.subs:  # the most recently published idle type
                self._idle[event_type] = None
                self._idle.move_to_end(event_type)
            self._counts["published"] += 1
            if idempotency_key is not None:
                self._dedup.put(idempotency_key, event)
            # A store shared live delivers the event from its stream, in its
            # order, as every bus on it gets it.
            if not self._live:
                # _count_published, inline on the path every publish takes
                self._published[event_type] = self._published.get(event_type, 0) + 1
                if publisher is not None:
                    self._count_publisher(event_type, publisher)
                if nested:
                    self._pending.append((topic, event))
                else:
                    await self._deliver_all(topic, event)
            if cancelled is not None:
                raise cancelled
            return event
        finally:
            if not nested:
                self._release()

    def _count_published(self, event: Event) -> None:
        event_type = event.event_type
        self._published[event_type] = self._published.get(event_type, 0) + 1
        if event.publisher is not None:
            self._count_publisher(event_type, event.publisher)

    def _count_publisher(self, event_type: str, publisher: str) -> None:
        named = self._publishers.get(event_type)
        if named is None:
            named = self._publishers[event_type] = set()
        named.add(publisher)

    # ---- a store shared live ----------------------------------------------------
    def _follow(self, position: bool) -> None:
        """Starts reading the store's stream; its events are delivered on
        the running loop."""
        if self._closed:
            raise ResilError("the EventBus is closed")
        loop = asyncio.get_running_loop()
        self._loop = loop

        room = self._room

        def deliver(rows: list[dict[str, Any]]) -> bool:
            # From the reader thread: False stops it (the loop is gone).
            with room:
                while len(self._inbox) >= _INBOX_LIMIT:  # slow handlers: read no further
                    if loop.is_closed():
                        return False
                    room.wait(0.5)
            if not rows:
                return not loop.is_closed()
            try:
                loop.call_soon_threadsafe(self._receive, rows)
            except RuntimeError:  # the loop is closed: nobody to deliver to
                return False
            return True
        self._follower = self._store.follow(deliver, position=position)  # type: ignore[union-attr]

    def _receive(self, rows: list[dict[str, Any]]) -> None:
        with self._room:
            self._inbox.extend(rows)
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        """Delivers the events read from the store, in its order, holding
        the bus's turn (as publish and replay do)."""
        inbox = self._inbox
        while inbox:
            await self._take_turn()
            try:
                while inbox:
                    with self._room:
                        row = inbox.popleft()
                        if len(inbox) == _INBOX_LIMIT - 1:
                            self._room.notify()
                    try:
                        event = _stored_event(row)
                    except _CORRUPT as exc:
                        _log.error("event %s of the store is corrupt and was not delivered: %r",
                                   row.get("seq"), exc)
                        continue
                    self._counts["received"] += 1
                    self._seq = event.seq
                    self._count_published(event)
                    topic = self._receiving(event.event_type)
                    if topic is not None:
                        await self._deliver_all(topic, event)
            finally:
                self._release()

    async def aclose(self, *, timeout: float = 5.0) -> None:
        """Stops reading a store shared live (a :class:`resil.redis.StreamStore`):
        first every event this bus published is read and delivered (for up
        to ``timeout`` seconds; those not read by then are logged), then
        the reader thread ends and the events it read are delivered; later
        publishes raise ResilError. Publishes under way when it is called
        finish first (their events are among those delivered); those still
        waiting for their turn raise ResilError. Idempotent; a bus on any
        other store (or none) has nothing to stop and goes on working."""
        timeout = _check.seconds(timeout, "timeout", low=0.0, low_open=False, high=3600.0)
        self._closed = True
        if self._follower is None:
            pass
        elif self._busy and self._holder is _RUNNING.get(_running_loop()):
            await self._stop_following(timeout)  # from a handler: it holds the turn
        else:
            await self._take_turn()  # the publish under way stores its event first
            try:
                await self._stop_following(timeout)
            finally:
                self._release()
        while self._drainer is not None and not self._drainer.done():
            await asyncio.shield(self._drainer)
            await asyncio.sleep(0)

    async def _stop_following(self, timeout: float) -> None:
        follower, self._follower = self._follower, None
        if follower is None:
            return
        await asyncio.get_running_loop().run_in_executor(None, follower.close, timeout)
        await asyncio.sleep(0)  # the last batch's call_soon_threadsafe runs
        if follower.behind:
            _log.error("EventBus closed before reading back every event it published "
                       "(Redis did not answer within %g s)", timeout)

    def _circuit_error(self, topic: _Topic) -> TypeCircuitOpenError:
        error = TypeCircuitOpenError(topic.circuit.name, State.FORCED_OPEN, None)
        error.event_type = topic.name
        error.disabled = tuple(sub.name for sub in topic.subs if sub.disabled)
        return error

    def _receiving(self, event_type: str) -> _Topic | None:
        """The topic whose receivers get a stored event of ``event_type``,
        or None when nobody does (a wildcard handler may want a type the
        bus does not track yet)."""
        topic = self._topics.get(event_type)
        if topic is None and self._patterns:
            topic = self._topic(event_type)
        return topic

    async def _take_turn(self) -> None:
        """Holds the bus's turn for the current task: at once when it is
        free, else after the tasks waiting before it."""
        if self._busy:
            await self._wait_turn()
        else:
            self._busy, self._holder = True, asyncio.current_task()

    async def _wait_turn(self) -> None:
        """Waits while another task holds the bus's turn (FIFO), then holds
        it for the current task. Publishes and replays are serialised so
        that numbering, storing and delivery happen in one order; when the
        turn is free they take it inline (``_busy``, ``_holder``) without
        this coroutine."""
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._release()  # the turn was handed over as we were cancelled: pass it on
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise
        self._holder = asyncio.current_task()

    def _release(self) -> None:
        """Gives the turn to the next waiting task, or frees it."""
        self._holder = None
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the turn passes on; _busy stays True
                return
        self._busy = False

    async def _append(self, event_id: str, event_type: str, payload_json: str, now: float,
                      corr: str, schema_version: str, key: str | None,
                      publisher: str | None) -> tuple[int, BaseException | None]:
        """Writes the event: awaited when the store has ``append_event_async``,
        else from a worker thread (a file may be locked by another process
        for up to the store's timeout). A publish cancelled meanwhile still
        waits for the write - a stored event is delivered - and the
        cancellation is returned, to be raised after delivery."""
        assert self._store is not None
        loop = asyncio.get_running_loop()
        append_async = getattr(self._store, "append_event_async", None)
        future: asyncio.Future[int]
        if append_async is not None:
            future = asyncio.ensure_future(append_async(
                event_id, event_type, payload_json, now, corr, schema_version, key, publisher))
        else:
            future = loop.run_in_executor(None, self._store.append_event, event_id, event_type,
                                          payload_json, now, corr, schema_version, key, publisher)
        cancelled: BaseException | None = None
        while True:
            try:
                seq: int = await asyncio.shield(future)
                break
            except asyncio.CancelledError as exc:
                if future.done() and not future.cancelled():
                    seq = future.result()
                    cancelled = exc
                    break
                cancelled = exc
        if cancelled is not None:
            _log.debug("publish cancelled while its event %d was being stored", seq)
        return seq, cancelled

    async def _deliver_all(self, topic: _Topic, event: Event) -> None:
        """Delivers ``event``, then the events handlers published meanwhile,
        in sequence order. Interrupted, every delivery not made is
        dead-lettered as DeliveryCancelled."""
        try:
            if topic.receivers:
                await self._deliver(topic, event)
            while self._pending:
                topic, event = self._pending.popleft()
                if topic.receivers:
                    await self._deliver(topic, event)
        except _STOP:
            while self._pending:
                topic, event = self._pending.popleft()
                for sub in topic.receivers[:]:
                    self._dead_letter_soon(event, sub, DeliveryCancelled(
                        f"delivery of event {event.seq} interrupted"), 0)
            raise

    async def _deliver(self, topic: _Topic, event: Event) -> None:
        subs = topic.receivers[:]
        done = 0  # subs[:done] were delivered, refused or dead-lettered
        calling = False  # subs[done]'s handler has been called and has not returned
        try:
            for sub in subs:
                if sub.disabled:
                    sub.skipped += 1
                    self._counts["skipped"] += 1
                    done += 1
                    await self._dead_letter(event, sub, HandlerDisabled(
                        f"handler {sub.name} is disabled after {self._failure_limit} "
                        f"consecutive failures; reset_handler() re-enables it"), 0)
                    continue
                violation = sub.contract_error(event) if (
                    sub.required or event.schema_version not in sub.versions) else None
                if violation is not None:
                    sub.violations += 1
                    self._counts["violations"] += 1
                    _log.warning("contract violation: %s event %d refused by %s: %s",
                                 event.event_type, event.seq, sub.name, violation)
                    done += 1
                    await self._dead_letter(event, sub, ContractViolation(violation), 0)
                    continue
                try:
                    calling = True
                    result = sub.handler(event)
                    if sub.is_async or (result is not None and inspect.isawaitable(result)):
                        await result
                except _STOP:
                    raise
                except Exception as exc:
                    calling = False
                    done += 1
                    await self._handler_failed(topic, sub, event, exc)
                else:
                    calling = False
                    done += 1
                    sub.delivered += 1
                    sub.consecutive = 0
                    self._counts["delivered"] += 1
        except _STOP:
            for rest in subs[done:]:
                # The interrupted handler had its call; the ones after it none.
                self._dead_letter_soon(event, rest, DeliveryCancelled(
                    f"delivery of event {event.seq} interrupted"), 1 if calling else 0)
                calling = False
            raise

    async def _handler_failed(self, topic: _Topic, sub: _Subscription, event: Event,
                              exc: Exception) -> None:
        sub.failures += 1
        sub.consecutive += 1
        self._counts["failures"] += 1
        _log.warning("handler %s failed on %s event %d (%d in a row): %r", sub.name,
                     event.event_type, event.seq, sub.consecutive, exc)
        await self._dead_letter(event, sub, exc, 1)
        if sub.consecutive >= self._failure_limit and not sub.disabled:
            sub.disabled = True
            _log.error("handler %s disabled after %d consecutive failures on %r", sub.name,
                       sub.consecutive, event.event_type)
            if sub.pattern is None and not topic.forced_open() and self._half_disabled(topic):
                topic.circuit.force_open()
                _log.error("bus circuit for %r opened: %d of %d handlers disabled",
                           event.event_type, sum(1 for s in topic.subs if s.disabled),
                           len(topic.subs))

    async def _dead_letter(self, event: Event, sub: _Subscription, error: BaseException,
                           attempts: int) -> None:
        """Hands one delivery to the dlq and waits until it is written; if
        the wait is cancelled the write goes on."""
        if self._dead_letter_soon(event, sub, error, attempts):
            assert self._dead_letters is not None
            landed = self._dead_letters.landed()
            if landed is not None:
                await asyncio.shield(landed)

    def _dead_letter_soon(self, event: Event, sub: _Subscription, error: BaseException,
                          attempts: int) -> bool:
        """Hands one delivery to the dlq without waiting; True while it is
        being written."""
        if self._dead_letters is None:
            return False
        return self._dead_letters.send(event, error, f"{event.event_type}:{sub.name}", attempts)

    # ---- replay -------------------------------------------------------------------
    async def replay(self, from_seq: int | None = None, *,
                     since: float | datetime.datetime | None = None,
                     event_type: str | None = None, to_seq: int | None = None) -> int:
        """Delivers stored events again to the current handlers, in sequence
        order; returns how many events were replayed. ``from_seq``/``to_seq``
        bound the sequence numbers, ``since`` the timestamps (Unix time or an
        aware datetime), all inclusive. Raises ResilError without a store and
        ValueError for an event type the bus and the store have never seen."""
        if self._store is None:
            raise ResilError("replay needs a store: EventBus(store=resil.SQLiteStore(path))")
        if isinstance(since, datetime.datetime):
            if since.tzinfo is None:
                raise ValueError("since must be an aware datetime (with a time zone)")
            since = since.timestamp()
        since = _check.event_bounds(from_seq, to_seq, since, event_type)
        store = self._store
        loop = asyncio.get_running_loop()
        if event_type is not None:
            if event_type not in self._topics and event_type not in self._published:
                known = await loop.run_in_executor(None, store.event_types)
                if event_type not in known:
                    raise ValueError(f"unknown event type {event_type!r}: never published to "
                                     f"this store and no handler subscribed")
        rows = store.events(from_seq, to_seq=to_seq, since=since, event_type=event_type)
        count = 0
        await self._take_turn()
        try:
            while True:
                page = await loop.run_in_executor(None, _next_page, rows)
                if not page:
                    break
                for row in page:
                    try:
                        event = _stored_event(row)
                    except _CORRUPT as exc:
                        # Pages that read back (quick_check passed) with damaged text.
                        from resil.storage.sqlite import StoreError
                        raise StoreError(f"{store.path}: event {row.get('seq')} is corrupt and "
                                         f"cannot be replayed ({exc!r}); {count} events were "
                                         f"replayed before it", path=store.path,
                                         operation="replay") from exc
                    topic = self._receiving(event.event_type)
                    count += 1
                    self._counts["replayed"] += 1
                    if topic is not None:
                        await self._deliver_all(topic, event)
        finally:
            self._release()
        return count

    # ---- reading --------------------------------------------------------------------
    def topology(self) -> dict[str, dict[str, Any]]:
        """``{event_type: {"publishers", "subscribers", "published",
        "orphaned", "unused"}}`` for every type ever published (forgotten
        idle types included), every type the bus tracks now and every
        subscribed pattern: publishers are the ``publisher`` names given to
        publish, subscribers the names of the handlers that get the type's
        events (through a matching pattern too); orphaned = published but
        nobody gets it now, unused = subscribed but never published. A
        pattern's entry (its key ends with ``*``) lists its own handlers,
        counts the published events of the types it matches and is unused
        while none was published; it has no publishers and is never
        orphaned."""
        result: dict[str, dict[str, Any]] = {}
        # Copies first: a metrics thread may read while the loop changes them.
        topics = dict(self._topics)
        published = dict(self._published)
        publishers = dict(self._publishers)
        patterns = {p: list(subs) for p, subs in list(self._patterns.items())}
        for name in sorted(published.keys() | topics.keys()):
            topic = topics.get(name)
            if topic is not None:
                subs = list(topic.receivers)
            else:  # forgotten: nothing subscribed to the type itself
                subs = self._receivers(name, [], patterns)
            count = published.get(name, 0)
            result[name] = {
                "publishers": sorted(list(publishers.get(name, ()))),
                "subscribers": [sub.name for sub in subs],
                "published": count,
                "orphaned": count > 0 and not subs,
                "unused": bool(subs) and count == 0,
            }
        for pattern in sorted(patterns):
            prefix = pattern[:-1]
            count = sum(n for name, n in published.items()
                        if len(name) > len(prefix) and name.startswith(prefix))
            result[pattern] = {"publishers": [], "subscribers": [s.name for s in patterns[pattern]],
                               "published": count, "orphaned": False, "unused": count == 0}
        return result

    def stats(self) -> dict[str, Any]:
        """The bus's counters, JSON-serialisable, in the vocabulary every
        resil component's ``stats()`` uses: published, delivered,
        failures (handler deliveries that raised), violations, skipped
        (deliveries refused by a disabled handler), storms, dropped,
        duplicates, dead_lettered, dead_letter_failures (dead letters the
        dlq refused), replayed; last_seq;
        handlers ``{"<type or pattern>:<name>": {delivered, failures,
        consecutive_failures, violations, skipped, disabled}}`` (a wildcard
        handler's counts cover every type it received); circuits
        ``{type: state name}`` for the types the bus currently tracks (a
        forgotten type's circuit is CLOSED); on a store that talks to
        Redis, backend (``"redis"``, or the fallback in force while Redis
        is away)."""
        handlers: dict[str, dict[str, Any]] = {}
        circuits: dict[str, str] = {}
        for name, topic in list(self._topics.items()):
            breaker = topic.breaker
            circuits[name] = breaker.state.name if breaker is not None else State.CLOSED.name
            for sub in list(topic.subs):
                handlers[f"{name}:{sub.name}"] = _handler_stats(sub)
        for pattern, subs in list(self._patterns.items()):
            for sub in list(subs):
                handlers[f"{pattern}:{sub.name}"] = _handler_stats(sub)
        counts = dict(self._counts)
        if self._dead_letters is not None:
            counts["dead_lettered"] = self._dead_letters.handed
            counts["dead_letter_failures"] = self._dead_letters.refused
        out = {**counts, "last_seq": self._seq, "handlers": handlers, "circuits": circuits}
        mode = getattr(self._store, "mode", None)
        if mode is not None:  # a store on a RedisBackend: what is in force
            out["backend"] = mode
        return out

    def circuit(self, event_type: str) -> CircuitBreaker:
        """The breaker guarding ``event_type`` (KeyError if the bus has not
        seen the type). Once asked for, the type's state is never forgotten,
        so the breaker stays the one that guards it."""
        topic = self._topics.get(event_type)
        if topic is None:
            if event_type not in self._published:
                raise KeyError(event_type)
            topic = self._topic(event_type)
        return topic.circuit

    @property
    def store(self) -> SQLiteStore | EventStore | None:
        """The store events are written to, or None."""
        return self._store

    def __repr__(self) -> str:
        types = len(self._published.keys() | self._topics.keys())
        return (f"<EventBus types={types} published={self._counts['published']} "
                f"last_seq={self._seq}>")


def _enable(subs: list[_Subscription], handler: Callable[..., Any] | None) -> int | None:
    """Re-enables ``handler``'s subscription among ``subs`` (every one when
    None); how many were disabled, or None when ``handler`` is not there."""
    count = 0
    found = handler is None
    for sub in subs:
        if handler is None or sub.handler == handler:
            found = True
            if sub.disabled:
                count += 1
            sub.disabled = False
            sub.consecutive = 0
    return count if found else None


def _handler_stats(sub: _Subscription) -> dict[str, Any]:
    return {"delivered": sub.delivered, "failures": sub.failures,
            "consecutive_failures": sub.consecutive, "violations": sub.violations,
            "skipped": sub.skipped, "disabled": sub.disabled}


#: What damaged text in a store's event row raises when it is read back.
_CORRUPT = (ValueError, TypeError, KeyError, AttributeError, RecursionError)


def _stored_event(row: dict[str, Any]) -> Event:
    """The Event of a stored row (its payload JSON text); one of
    ``_CORRUPT`` for damaged text."""
    row["payload"] = json.loads(row["payload"])
    return Event.from_dict(row)


def _next_page(rows: Any) -> list[dict[str, Any]]:
    return list(itertools.islice(rows, 1000))
