"""Where a dead-letter queue keeps its entries: one backend interface, with
an in-memory backend and one over a :class:`SQLiteStore`.

:class:`DeadLetterQueue` talks only to :class:`DeadLetterBackend`; a new
kind of store adds a backend class and a line in ``_BACKENDS``, or has a
``dead_letter_backend(name)`` method (as
:class:`resil.redis.StreamStore` has), and the queue itself does not change. Every time a backend
is given is Unix time as the queue's clock tells it.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import json
import math
import threading
from collections.abc import Callable
from typing import Any, Protocol

from resil._resil import ResilError
from resil.messaging.bus import Event
from resil.messaging.deadletters import DeadLetter, add_attempt
from resil.storage.sqlite import SQLiteStore, StoreError

__all__ = ["DeadLetterBackend", "MemoryDeadLetters", "SQLiteDeadLetters", "open_backend"]


class _BeingReprocessed(ResilError):
    """A dead letter is being reprocessed already (by this queue, or by
    another consumer of a shared store)."""

_INT64 = 1 << 63


class DeadLetterBackend(Protocol):
    """The entries of one dead-letter queue, oldest (lowest id) first.

    Thread-safe. ``add`` is one atomic step: expiry, insertion and eviction
    happen together or not at all. Ids are positive, never reused within
    the backend, and increase with each ``add``."""

    @property
    def blocking(self) -> bool:
        """True when an operation may wait on a disk or network write."""
        ...

    @property
    def store(self) -> Any:
        """The store object the entries live in, or None (in memory)."""
        ...

    @property
    def label(self) -> str:
        """Where the entries live, for a repr (``""`` in memory)."""
        ...

    def add(self, item: Any, error: str, error_type: str, source: str | None, attempts: int,
            timestamp: float, maxsize: int, expire_before: float | None) -> tuple[int, int, int]:
        """Drops the entries with a timestamp at or before ``expire_before``
        (when given), adds one, evicts the oldest beyond ``maxsize``; returns
        (id, evicted, expired). TypeError naming ``item`` when this backend
        cannot keep it unchanged; nothing is added then."""
        ...

    def entries(self, since: float | None) -> list[DeadLetter]:
        """Every entry (with ``since``: those with a timestamp at or after
        it), expired ones included."""
        ...

    def entry(self, entry_id: int) -> DeadLetter | None:
        """One entry (expired or not), or None."""
        ...

    def count(self, after: float | None) -> int:
        """How many entries (with ``after``: with a later timestamp)."""
        ...

    def expire(self, before: float) -> int:
        """Removes the entries with a timestamp at or before ``before``;
        returns how many."""
        ...

    def record_failure(self, entry_id: int, error: str, error_type: str, attempts: int,
                       timestamp: float, source: str) -> bool:
        """Records a failed reprocessing of an entry: its error, error type
        and attempts become these, and ``(timestamp, error, source)`` joins
        its history (see :func:`add_attempt`); False if it is gone."""
        ...

    def trim(self, maxsize: int, expire_before: float | None) -> tuple[int, int]:
        """Drops the entries with a timestamp at or before ``expire_before``
        (when given), then evicts the oldest beyond ``maxsize``, as one
        atomic step; returns (evicted, expired)."""
        ...

    def delete(self, entry_id: int) -> bool:
        """Removes one entry; False if it was not there."""
        ...

    def purge(self) -> int:
        """Removes every entry; returns how many."""
        ...

    def claim(self) -> list[DeadLetter]:
        """The entries this queue should reprocess now, oldest first: every
        entry, or for a store shared through a consumer group the entries
        nobody else holds (now held by this queue)."""
        ...

    def begin(self, entry_id: int) -> DeadLetter | None:
        """The entry, held by this queue while it is reprocessed, or None if
        it is gone; raises ``_BeingReprocessed`` (a ResilError) when another
        consumer holds it."""
        ...


class _DeadLetterStore(Protocol):
    """A store that brings its own dead-letter backend (such as
    :class:`resil.redis.StreamStore`)."""

    @property
    def path(self) -> str:
        """Where the entries are, for messages and metrics."""
        ...

    def dead_letter_backend(self, name: str) -> DeadLetterBackend:
        """Where the queue named ``name`` keeps its entries in this store."""
        ...


class MemoryDeadLetters:
    """Entries in this process's memory; any object can be an item, kept as it is."""

    blocking = False
    store = None
    label = ""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: collections.OrderedDict[int, DeadLetter] = collections.OrderedDict()
        self._ids = itertools.count(1)

    def add(self, item: Any, error: str, error_type: str, source: str | None, attempts: int,
            timestamp: float, maxsize: int, expire_before: float | None) -> tuple[int, int, int]:
        with self._lock:
            entries = self._entries
            expired = 0
            if expire_before is not None:
                # From the front only (amortised O(1) per add); an expired entry
                # behind a younger one is dropped by the next read that meets it.
                while entries:
                    first = next(iter(entries.values()))
                    if first.timestamp > expire_before:
                        break
                    del entries[first.id]
                    expired += 1
            new_id = next(self._ids)
            entries[new_id] = DeadLetter(new_id, item, error, error_type, source, attempts,
                                         timestamp, ((timestamp, error, source),))
            return new_id, self._evict(maxsize), expired

    def _evict(self, maxsize: int) -> int:
        """Evicts the oldest entries beyond ``maxsize``; the lock is held."""
        entries = self._entries
        evicted = 0
        while len(entries) > maxsize:
            entries.popitem(last=False)
            evicted += 1
        return evicted

    def trim(self, maxsize: int, expire_before: float | None) -> tuple[int, int]:
        with self._lock:
            expired = 0
            if expire_before is not None:
                expired = self._expire(expire_before)
            return self._evict(maxsize), expired

    def entries(self, since: float | None) -> list[DeadLetter]:
        with self._lock:
            entries = list(self._entries.values())
        if since is not None:
            entries = [e for e in entries if e.timestamp >= since]
        return entries

    def entry(self, entry_id: int) -> DeadLetter | None:
        with self._lock:
            return self._entries.get(entry_id)

    def count(self, after: float | None) -> int:
        with self._lock:
            if after is None:
                return len(self._entries)
            return sum(1 for e in self._entries.values() if e.timestamp > after)

    def expire(self, before: float) -> int:
        with self._lock:
            return self._expire(before)

    def _expire(self, before: float) -> int:
        """Removes every entry at or before ``before``; the lock is held."""
        gone = [e.id for e in self._entries.values() if e.timestamp <= before]
        for entry_id in gone:
            del self._entries[entry_id]
        return len(gone)

    def record_failure(self, entry_id: int, error: str, error_type: str, attempts: int,
                       timestamp: float, source: str) -> bool:
        with self._lock:
            old = self._entries.get(entry_id)
            if old is None:
                return False
            history, dropped = add_attempt(old.history, old.history_dropped,
                                           (timestamp, error, source))
            self._entries[entry_id] = dataclasses.replace(
                old, error=error, error_type=error_type, attempts=attempts, history=history,
                history_dropped=dropped)
            return True

    def delete(self, entry_id: int) -> bool:
        with self._lock:
            return self._entries.pop(entry_id, None) is not None

    def purge(self) -> int:
        with self._lock:
            removed = len(self._entries)
            self._entries.clear()
            return removed

    def claim(self) -> list[DeadLetter]:
        return self.entries(None)

    def begin(self, entry_id: int) -> DeadLetter | None:
        return self.entry(entry_id)


# ---- what a store keeps: JSON that gives the item back unchanged ----------------------------
_MAX_DEPTH = 200  # nesting a store keeps (JSON decoding recurses; so does the caller)


def _path(where: Any) -> str:
    """``item['a'][0]`` from the chain ``((("item", None), 'a'), 0)``."""
    keys: list[Any] = []
    while isinstance(where, tuple):
        where, key = where
        keys.append(key)
    return str(where) + "".join(f"[{key!r}]" for key in reversed(keys))


def _unstorable(value: Any, where: str) -> str | None:
    """Why ``value`` would not come back from a store exactly as it went in
    (equal, and of the same types all the way down), or None. Walks the
    value without recursion, so any depth or a cycle gets an answer; the
    place is spelled out only for the answer."""
    stack: list[tuple[Any, Any, int]] = [(value, where, 0)]
    open_: set[int] = set()  # containers on the current path: a cycle
    while stack:
        v, at, depth = stack.pop()
        if depth < 0:  # leaving a container
            open_.discard(id(v))
            continue
        t = type(v)
        if t is str or t is int or t is bool or v is None:
            continue
        if t is float:
            if v != v or v in (math.inf, -math.inf):
                return f"{_path(at)} is {v!r}, which JSON cannot hold"
            continue
        if t is dict or t is list:
            if id(v) in open_:
                return f"{_path(at)} contains itself"
            if depth >= _MAX_DEPTH:
                return f"{_path(at)} is nested more than {_MAX_DEPTH} deep"
            open_.add(id(v))
            stack.append((v, at, -1))
            if t is dict:
                for key, sub in list(v.items()):
                    if type(key) is not str:
                        return (f"{_path(at)} has the key {key!r} ({type(key).__name__}), but "
                                f"keys come back as str")
                    stack.append((sub, (at, key), depth + 1))
            else:
                for i, sub in enumerate(list(v)):
                    stack.append((sub, (at, i), depth + 1))
            continue
        if isinstance(v, tuple):
            kind = "a tuple" if t is tuple else f"of type {t.__name__} (a tuple)"
            return f"{_path(at)} is {kind}, which would come back as a list"
        for base in (bool, int, float, str, dict, list):
            if isinstance(v, base):
                return (f"{_path(at)} is of type {t.__name__} (a subclass of {base.__name__}), "
                        f"which would come back as a plain {base.__name__}")
        return f"{_path(at)} is of type {t.__name__}, which JSON cannot hold"
    return None


def encode(item: Any) -> str:
    """The JSON text a store keeps for ``item``; TypeError naming ``item``
    and what in it would not come back unchanged."""
    if type(item) is Event:
        doc: dict[str, Any] = {"kind": "event", "event": item.to_dict()}
        why = _unstorable(doc["event"], "item")
    else:
        doc = {"kind": "value", "value": item}
        why = _unstorable(item, "item")
    if why is None:
        try:
            return json.dumps(doc, allow_nan=False)
        except (TypeError, ValueError, RecursionError) as exc:  # e.g. an int of 5000 digits
            why = f"JSON cannot hold it ({exc})"
    raise TypeError(f"dead-letter item is not JSON-serialisable without change, so a store "
                    f"cannot keep it (it is refused, not altered): {why}")


def decode(text: str) -> Any:
    """The item ``encode`` gave ``text`` for."""
    doc = json.loads(text)
    if doc.get("kind") == "event":
        return Event.from_dict(doc["event"])
    return doc.get("value")


class SQLiteDeadLetters:
    """The entries of queue ``name`` in a :class:`SQLiteStore` file (shared
    with every queue of that name on the file, in this process or another);
    items are kept as JSON (see :func:`encode`). Corrupt rows raise
    :class:`StoreError`."""

    blocking = True

    def __init__(self, store: SQLiteStore, name: str) -> None:
        self._store = store
        self._name = name

    @property
    def store(self) -> SQLiteStore:
        return self._store

    @property
    def label(self) -> str:
        return f"store={self._store.path!r}"

    def add(self, item: Any, error: str, error_type: str, source: str | None, attempts: int,
            timestamp: float, maxsize: int, expire_before: float | None) -> tuple[int, int, int]:
        return self._store.dlq_put(self._name, encode(item), error, error_type, source, attempts,
                                   timestamp, maxsize, expire_before)

    def entries(self, since: float | None) -> list[DeadLetter]:
        return [self._from_row(row) for row in self._store.dlq_rows(self._name, since)]

    def entry(self, entry_id: int) -> DeadLetter | None:
        if not -_INT64 <= entry_id < _INT64:  # no row has an id outside SQLite's 64 bits
            return None
        row = self._store.dlq_row(self._name, entry_id)
        return None if row is None else self._from_row(row)

    def count(self, after: float | None) -> int:
        return self._store.dlq_count(self._name, after)

    def expire(self, before: float) -> int:
        return self._store.dlq_expire(self._name, before)

    def record_failure(self, entry_id: int, error: str, error_type: str, attempts: int,
                       timestamp: float, source: str) -> bool:
        return self._store.dlq_update(self._name, entry_id, error, error_type, attempts,
                                      timestamp=timestamp, source=source)

    def trim(self, maxsize: int, expire_before: float | None) -> tuple[int, int]:
        return self._store.dlq_trim(self._name, maxsize=maxsize, expire_before=expire_before)

    def delete(self, entry_id: int) -> bool:
        return self._store.dlq_delete(self._name, entry_id)

    def purge(self) -> int:
        return self._store.dlq_purge(self._name)

    def claim(self) -> list[DeadLetter]:
        return self.entries(None)

    def begin(self, entry_id: int) -> DeadLetter | None:
        return self.entry(entry_id)

    def _from_row(self, row: dict[str, Any]) -> DeadLetter:
        try:
            item = decode(row["item"])
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
            # Pages that read back (quick_check passed) with damaged text.
            raise StoreError(f"{self._store.path}: dead letter {row['id']} of queue "
                             f"{self._name!r} is corrupt and cannot be read ({exc!r})",
                             path=self._store.path, operation="read") from exc
        history, dropped = self._store.dlq_history(self._name, row)
        return DeadLetter(row["id"], item, row["error"], row["error_type"],
                          row["source"], row["attempts"], row["timestamp"], history, dropped)


#: The kinds of store a queue can live in, and the backend for each. A new
#: kind of store adds its line here.
_BACKENDS: tuple[tuple[type, str, Callable[[Any, str], DeadLetterBackend]], ...] = (
    (SQLiteStore, "resil.SQLiteStore", SQLiteDeadLetters),
)


def open_backend(store: Any, name: str) -> DeadLetterBackend:
    """The backend for queue ``name`` in ``store`` (None: in memory);
    TypeError naming ``store`` for an object that is no store resil knows."""
    if store is None:
        return MemoryDeadLetters()
    own = getattr(store, "dead_letter_backend", None)
    if callable(own):
        found: DeadLetterBackend = own(name)
        return found
    for kind, _, backend in _BACKENDS:
        if isinstance(store, kind):
            return backend(store, name)
    kinds = ", ".join(what for _, what, _ in _BACKENDS)
    raise TypeError(f"store must be a {kinds}, a resil.redis.StreamStore or None, not "
                    f"{type(store).__name__}")
