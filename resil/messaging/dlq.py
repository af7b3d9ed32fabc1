"""Dead-letter queue."""

from __future__ import annotations

import asyncio
import collections
import inspect
import itertools
import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from resil import _check
from resil.messaging.bus import Event
from resil._resil import ResilError
from resil.storage.sqlite import SQLiteStore, StoreError

__all__ = ["DeadLetter", "DeadLetterQueue"]

_log = logging.getLogger("resil.dlq")


class _BeingReprocessed(ResilError):
    """reprocess() of an entry another reprocess() is working on."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One entry of a :class:`DeadLetterQueue`.

    ``id``: unique within the queue (and the store); ``item``: what failed
    (an :class:`Event` from a bus stays an Event through a store);
    ``error``: ``"<ExceptionType>: <message>"`` of the last failure;
    ``error_type``: the exception's type name; ``source``: who put it (a bus
    puts ``"<event type>:<handler>"``, an emitter ``"emitter"``);
    ``attempts``: deliveries tried so far; ``timestamp``: Unix time it was
    added."""

    id: int
    item: Any
    error: str
    error_type: str
    source: str | None
    attempts: int
    timestamp: float


def _utf8(text: str) -> str:
    """``text``, with lone surrogates (which UTF-8 cannot encode, so neither
    can SQLite) written as ``\\udcxx`` escapes."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _describe(error: BaseException | str) -> tuple[str, str]:
    if isinstance(error, BaseException):
        name = type(error).__name__
        text = _utf8(str(error))
        return (f"{name}: {text}" if text else name), name
    if isinstance(error, str):
        return _utf8(error), "str"
    raise TypeError(f"error must be an exception or a str, got {type(error).__name__}")


_MAX_DEPTH = 200  # nesting a store keeps (JSON decoding recurses; so does the caller)
_INT64 = 1 << 63


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


def _encode(item: Any) -> str:
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


def _decode(text: str) -> Any:
    doc = json.loads(text)
    if doc.get("kind") == "event":
        return Event.from_dict(doc["event"])
    return doc.get("value")


_MAX_TTL = _check.MAX_SECONDS


def _check_entry_id(entry_id: Any) -> int:
    if isinstance(entry_id, bool) or not isinstance(entry_id, int):
        raise TypeError(f"entry_id must be an int (an id put() returned), not "
                        f"{type(entry_id).__name__}")
    return entry_id


def _check_text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    if _utf8(value) is not value:
        raise ValueError(f"{what} must be encodable as UTF-8 (it holds a lone surrogate): "
                         f"{value!r}")
    return value


class DeadLetterQueue:
    """Keeps what failed, for review and reprocessing.

    ``DeadLetterQueue(maxsize=100, store=None, *, name="default", ttl=None)``:

    - ``maxsize`` (an int in [1, 2**31]): entries at most; adding one more
      evicts the oldest, counted in ``stats()["evicted"]``.
    - ``store`` (a :class:`SQLiteStore`): the entries live in the store's
      file under ``name`` - they survive restarts and are shared with every
      queue of that name on the file. Without a store they live in this
      object and any object can be an item, kept as it is.
    - ``name`` (a non-empty str): the queue's name in the store, in logs and
      in metrics (``resil.prometheus`` labels the queue with it).
    - ``ttl`` (seconds in (0, 9.2e9], or None: forever): an entry at least
      ``ttl`` old (by its wall-clock ``timestamp``) is no longer listed and is
      dropped, counted in ``stats()["expired"]``, at the next ``put`` or
      read that meets it.

    What a store-backed queue keeps: an item is stored as JSON and must come
    back exactly as it went in - equal, and of the same types all the way
    down - so it may be made only of ``dict`` with ``str`` keys, ``list``,
    ``str``, ``int``, finite ``float``, ``bool`` and ``None`` (exact types,
    nested at most 200 deep, no cycles), or be an :class:`Event` whose fields
    and payload are made of those (it comes back an Event, its payload a
    dict). Anything else - a tuple (it would come back a list), a non-str
    key (it would come back a str), NaN or infinity, a set, bytes, a subclass
    such as an IntEnum or OrderedDict, any other object - is refused with
    TypeError saying what and where, and nothing is added. The memory-backed
    queue keeps any item.

    Thread-safe; ``put`` never awaits, so it can be the ``dlq`` of an
    :class:`EventEmitter` or :class:`EventBus`.
    """

    def __init__(self, maxsize: int = 100, store: SQLiteStore | None = None, *,
                 name: str = "default", ttl: float | None = None) -> None:
        _check.integer(maxsize, "maxsize", 1, 1 << 31)
        if store is not None and not isinstance(store, SQLiteStore):
            raise TypeError("store must be a resil.SQLiteStore or None")
        if not isinstance(name, str):
            raise TypeError(f"name must be a non-empty str, not {type(name).__name__}")
        if not name:
            raise ValueError("name must be a non-empty str")
        _check_text(name, "name")
        if ttl is not None:
            ttl = _check.seconds(ttl, "ttl", high=_MAX_TTL, optional=True)
        self._maxsize = maxsize
        self._store = store
        self._name = name
        self._ttl = ttl
        self._lock = threading.Lock()
        self._entries: collections.OrderedDict[int, DeadLetter] = collections.OrderedDict()
        self._ids = itertools.count(1)
        self._busy: set[int] = set()
        self._counts = dict.fromkeys(("added", "evicted", "expired", "reprocessed",
                                      "reprocess_failed", "purged"), 0)

    @property
    def maxsize(self) -> int:
        """Most entries kept."""
        return self._maxsize

    @property
    def name(self) -> str:
        """The queue's name (in the store, logs and metrics)."""
        return self._name

    @property
    def ttl(self) -> float | None:
        """Seconds an entry is kept, or None (until evicted, reprocessed or purged)."""
        return self._ttl

    def _cutoff(self) -> float | None:
        """Entries with a timestamp at or before this have expired."""
        return None if self._ttl is None else time.time() - self._ttl

    def _expire_memory(self, cutoff: float) -> int:
        """Drops expired entries from the front (oldest first); the caller
        holds the lock. Reads also filter, so an entry behind a younger one
        (after a wall-clock step back) is never listed either."""
        entries = self._entries
        dropped = 0
        while entries:
            first = next(iter(entries.values()))
            if first.timestamp > cutoff or first.id in self._busy:
                break
            del entries[first.id]
            dropped += 1
        self._counts["expired"] += dropped
        return dropped

    def _expired_in_store(self, cutoff: float) -> None:
        assert self._store is not None
        dropped = self._store.dlq_expire(self._name, cutoff)
        with self._lock:
            self._counts["expired"] += dropped

    @property
    def store(self) -> SQLiteStore | None:
        """The store holding the entries, or None (in memory)."""
        return self._store

    # ---- adding ---------------------------------------------------------------
    def put(self, item: Any, error: BaseException | str, source: str | None = None,
            attempts: int = 0) -> int:
        """Adds an entry and returns its id. ``error``: the exception (or a
        str saying what went wrong); ``source``: a str (UTF-8 encodable) or
        None; ``attempts``: deliveries tried, an int in [0, 2**63 - 1], not
        a bool. Raises TypeError or ValueError naming the bad argument,
        TypeError naming ``item`` for an item a store would not give back
        unchanged (see the class docstring), and StoreError when the store
        cannot write; in each case nothing is added."""
        text, error_type = _describe(error)
        if source is not None:
            if not isinstance(source, str):
                raise TypeError(f"source must be a str or None, not {type(source).__name__}")
            _check_text(source, "source")
        _check.integer(attempts, "attempts", 0, _INT64 - 1)
        now = time.time()
        if self._store is not None:
            encoded = _encode(item)
            new_id, evicted, expired = self._store.dlq_put(
                self._name, encoded, text, error_type, source, attempts, now, self._maxsize,
                None if self._ttl is None else now - self._ttl)
            with self._lock:
                self._counts["added"] += 1
                self._counts["evicted"] += evicted
                self._counts["expired"] += expired
        else:
            with self._lock:
                if self._ttl is not None:
                    self._expire_memory(now - self._ttl)
                new_id = next(self._ids)
                self._entries[new_id] = DeadLetter(new_id, item, text, error_type, source,
                                                   attempts, now)
                self._counts["added"] += 1
                evicted = 0
                while len(self._entries) > self._maxsize:
                    self._entries.popitem(last=False)
                    evicted += 1
                self._counts["evicted"] += evicted
        if evicted:
            _log.warning("dead-letter queue %r full (%d): evicted %d oldest entr%s", self._name,
                         self._maxsize, evicted, "y" if evicted == 1 else "ies")
        _log.info("dead letter %d from %s: %s", new_id, source, text)
        return new_id

    # ---- reading --------------------------------------------------------------
    def list(self, since: float | None = None) -> list[DeadLetter]:
        """Entries oldest first; with ``since`` (Unix time, finite) only those
        added at or after it. Expired entries are not listed (and are dropped)."""
        if since is not None:
            if isinstance(since, bool) or not isinstance(since, (int, float)):
                raise TypeError(f"since must be a Unix timestamp (int or float) or None, not "
                                f"{type(since).__name__}")
            if not -1e300 <= since <= 1e300:  # NaN compares false; so does a huge int, exactly
                raise ValueError(f"since must be a finite Unix timestamp, got {since!r}")
            since = float(since)
        cutoff = self._cutoff()
        if self._store is not None:
            entries = [self._from_row(row) for row in self._store.dlq_rows(self._name, since)]
            if cutoff is not None and any(e.timestamp <= cutoff for e in entries):
                self._expired_in_store(cutoff)
                entries = [e for e in entries if e.timestamp > cutoff]
            return entries
        with self._lock:
            if cutoff is not None:
                self._expire_memory(cutoff)
            entries = list(self._entries.values())
        if cutoff is not None:
            entries = [e for e in entries if e.timestamp > cutoff]
        if since is not None:
            entries = [e for e in entries if e.timestamp >= since]
        return entries

    def get(self, entry_id: int) -> DeadLetter:
        """The entry ``entry_id`` (an int); KeyError if there is none (or it
        expired), TypeError if ``entry_id`` is not an int."""
        _check_entry_id(entry_id)
        cutoff = self._cutoff()
        if self._store is not None:
            # no entry has an id outside SQLite's 64-bit range
            row = (self._store.dlq_row(self._name, entry_id) if -_INT64 <= entry_id < _INT64
                   else None)
            if row is None:
                raise KeyError(entry_id)
            entry = self._from_row(row)
            if cutoff is not None and entry.timestamp <= cutoff:
                self._expired_in_store(cutoff)
                raise KeyError(entry_id)
            return entry
        with self._lock:
            entry = self._entries[entry_id]
            if cutoff is not None and entry.timestamp <= cutoff:
                self._expire_memory(cutoff)
                raise KeyError(entry_id)
            return entry

    def __len__(self) -> int:
        """Entries held (expired ones not included)."""
        cutoff = self._cutoff()
        if self._store is not None:
            return self._store.dlq_count(self._name, cutoff)
        with self._lock:
            if cutoff is not None:
                self._expire_memory(cutoff)
                return sum(1 for e in self._entries.values() if e.timestamp > cutoff)
            return len(self._entries)

    def _from_row(self, row: dict[str, Any]) -> DeadLetter:
        try:
            item = _decode(row["item"])
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
            # Pages that read back (quick_check passed) with damaged text.
            assert self._store is not None
            raise StoreError(f"{self._store.path}: dead letter {row['id']} of queue "
                             f"{self._name!r} is corrupt and cannot be read ({exc!r})",
                             path=self._store.path,
                             operation="read") from exc
        return DeadLetter(row["id"], item, row["error"], row["error_type"],
                          row["source"], row["attempts"], row["timestamp"])

    # ---- reprocessing -----------------------------------------------------------
    async def reprocess(self, entry_id: int, handler: Callable[[Any], Any]) -> bool:
        """Calls ``handler(item)`` (awaited if it returns an awaitable). On
        success the entry is removed and True returned; on an exception the
        entry stays with ``attempts`` + 1 and the new error, and False is
        returned. KeyError for an unknown id, TypeError if ``entry_id`` is
        not an int; ResilError if the entry is being reprocessed already.
        Cancellation leaves the entry as it was."""
        _check_entry_id(entry_id)
        if not callable(handler):
            raise TypeError("handler must be callable")
        entry = self.get(entry_id)
        with self._lock:
            if entry_id in self._busy:
                raise _BeingReprocessed(f"dead letter {entry_id} is being reprocessed already")
            self._busy.add(entry_id)
        try:
            try:
                result = handler(entry.item)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:  # cancellation is not an Exception: it propagates
                text, error_type = _describe(exc)
                self._record_failure(entry, text, error_type)
                _log.warning("reprocessing dead letter %d failed: %s", entry_id, text)
                return False
            self._remove(entry_id)
            _log.info("dead letter %d reprocessed", entry_id)
            return True
        finally:
            with self._lock:
                self._busy.discard(entry_id)

    async def reprocess_all(self, handler: Callable[[Any], Any]) -> dict[str, int]:
        """Reprocesses every entry present at the call, oldest first;
        returns ``{"successful": n, "failed": m}``. Entries removed or being
        reprocessed meanwhile are skipped; a StoreError stops the run and
        propagates (the entries not yet reprocessed stay)."""
        if not callable(handler):
            raise TypeError("handler must be callable")
        successful = failed = 0
        for entry in self.list():
            try:
                ok = await self.reprocess(entry.id, handler)
            except (KeyError, _BeingReprocessed):
                continue
            if ok:
                successful += 1
            else:
                failed += 1
        return {"successful": successful, "failed": failed}

    def _record_failure(self, entry: DeadLetter, text: str, error_type: str) -> None:
        attempts = entry.attempts + 1
        if self._store is not None:
            self._store.dlq_update(self._name, entry.id, text, error_type, attempts)
        with self._lock:
            self._counts["reprocess_failed"] += 1
            if self._store is None and entry.id in self._entries:
                old = self._entries[entry.id]
                self._entries[entry.id] = DeadLetter(old.id, old.item, text, error_type,
                                                     old.source, attempts, old.timestamp)

    def _remove(self, entry_id: int) -> None:
        if self._store is not None:
            self._store.dlq_delete(self._name, entry_id)
        with self._lock:
            self._counts["reprocessed"] += 1
            self._entries.pop(entry_id, None)

    # ---- housekeeping -------------------------------------------------------------
    def purge(self) -> int:
        """Removes every entry; returns how many were removed."""
        if self._store is not None:
            removed = self._store.dlq_purge(self._name)
        else:
            with self._lock:
                removed = len(self._entries)
                self._entries.clear()
        with self._lock:
            self._counts["purged"] += removed
        return removed

    def stats(self) -> dict[str, Any]:
        """name, size, maxsize, ttl, added, evicted, expired, reprocessed,
        reprocess_failed, purged, oldest (Unix time of the oldest entry or
        None) and by_source ({source: entries}). The counters are this
        object's; size and the rest read the entries (the store's, when
        there is one)."""
        entries = self.list()
        by_source: dict[str, int] = {}
        for entry in entries:
            key = entry.source if entry.source is not None else ""
            by_source[key] = by_source.get(key, 0) + 1
        with self._lock:
            counts = dict(self._counts)
        return {"name": self._name, "size": len(entries), "maxsize": self._maxsize,
                "ttl": self._ttl, **counts,
                "oldest": entries[0].timestamp if entries else None, "by_source": by_source}

    def __repr__(self) -> str:
        where = f" store={self._store.path!r}" if self._store is not None else ""
        return f"<DeadLetterQueue {self._name!r} size={len(self)} maxsize={self._maxsize}{where}>"

