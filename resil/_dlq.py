"""Dead-letter queue (SPEC section 10)."""

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

from resil._bus import Event
from resil._resil import ResilError
from resil._store import SQLiteStore

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


def _describe(error: BaseException | str) -> tuple[str, str]:
    if isinstance(error, BaseException):
        name = type(error).__name__
        text = str(error)
        return (f"{name}: {text}" if text else name), name
    if isinstance(error, str):
        return error, "str"
    raise TypeError(f"error must be an exception or a str, got {type(error).__name__}")


def _encode(item: Any) -> str:
    try:
        if isinstance(item, Event):
            return json.dumps({"kind": "event", "event": item.to_dict()}, allow_nan=False)
        return json.dumps({"kind": "value", "value": item}, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"dead-letter item cannot be stored: it is not JSON-serialisable "
                        f"({exc})") from exc


def _decode(text: str) -> Any:
    doc = json.loads(text)
    if doc.get("kind") == "event":
        return Event.from_dict(doc["event"])
    return doc.get("value")


class DeadLetterQueue:
    """Keeps what failed, for review and reprocessing.

    ``DeadLetterQueue(maxsize=100, store=None, *, name="default")``:
    ``maxsize`` entries at most; adding one more evicts the oldest, counted
    in ``stats()["evicted"]``. With ``store`` (a :class:`SQLiteStore`) the
    entries live in the store's file under ``name`` - they survive restarts
    and are shared with every queue of that name on the file - and items
    must be JSON-serialisable (an :class:`Event` is). Without a store any
    object can be an item. Thread-safe; ``put`` never awaits, so it can be
    the ``dlq`` of an :class:`EventEmitter` or :class:`EventBus`.
    """

    def __init__(self, maxsize: int = 100, store: SQLiteStore | None = None, *,
                 name: str = "default") -> None:
        if isinstance(maxsize, bool) or not isinstance(maxsize, int):
            raise TypeError("maxsize must be an int")
        if not 1 <= maxsize <= 1 << 31:
            raise ValueError(f"maxsize must be in [1, 2**31], got {maxsize}")
        if store is not None and not isinstance(store, SQLiteStore):
            raise TypeError("store must be a resil.SQLiteStore or None")
        if not isinstance(name, str) or not name:
            raise ValueError("name must be a non-empty str")
        self._maxsize = maxsize
        self._store = store
        self._name = name
        self._lock = threading.Lock()
        self._entries: collections.OrderedDict[int, DeadLetter] = collections.OrderedDict()
        self._ids = itertools.count(1)
        self._busy: set[int] = set()
        self._counts = dict.fromkeys(("added", "evicted", "reprocessed", "reprocess_failed",
                                      "purged"), 0)

    @property
    def maxsize(self) -> int:
        """Most entries kept."""
        return self._maxsize

    @property
    def store(self) -> SQLiteStore | None:
        """The store holding the entries, or None (in memory)."""
        return self._store

    # ---- adding ---------------------------------------------------------------
    def put(self, item: Any, error: BaseException | str, source: str | None = None,
            attempts: int = 0) -> int:
        """Adds an entry and returns its id. Raises TypeError for an item a
        store cannot hold (nothing is added) and StoreError when the store
        cannot write (nothing is added)."""
        text, error_type = _describe(error)
        if source is not None and not isinstance(source, str):
            raise TypeError("source must be a str or None")
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 0:
            raise ValueError(f"attempts must be an int >= 0, got {attempts!r}")
        now = time.time()
        if self._store is not None:
            encoded = _encode(item)
            new_id, evicted = self._store.dlq_put(self._name, encoded, text, error_type, source,
                                                  attempts, now, self._maxsize)
            with self._lock:
                self._counts["added"] += 1
                self._counts["evicted"] += evicted
        else:
            with self._lock:
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
        """Entries oldest first; with ``since`` (Unix time) only those added
        at or after it."""
        if since is not None and (isinstance(since, bool) or not isinstance(since, (int, float))
                                  or math.isnan(since)):
            raise TypeError("since must be a Unix timestamp (int or float) or None")
        if self._store is not None:
            return [self._from_row(row) for row in self._store.dlq_rows(self._name, since)]
        with self._lock:
            entries = list(self._entries.values())
        if since is not None:
            entries = [e for e in entries if e.timestamp >= since]
        return entries

    def get(self, entry_id: int) -> DeadLetter:
        """The entry ``entry_id``; KeyError if there is none."""
        if self._store is not None:
            row = self._store.dlq_row(self._name, entry_id)
            if row is None:
                raise KeyError(entry_id)
            return self._from_row(row)
        with self._lock:
            return self._entries[entry_id]

    def __len__(self) -> int:
        if self._store is not None:
            return self._store.dlq_count(self._name)
        with self._lock:
            return len(self._entries)

    def _from_row(self, row: dict[str, Any]) -> DeadLetter:
        return DeadLetter(row["id"], _decode(row["item"]), row["error"], row["error_type"],
                          row["source"], row["attempts"], row["timestamp"])

    # ---- reprocessing -----------------------------------------------------------
    async def reprocess(self, entry_id: int, handler: Callable[[Any], Any]) -> bool:
        """Calls ``handler(item)`` (awaited if it returns an awaitable). On
        success the entry is removed and True returned; on an exception the
        entry stays with ``attempts`` + 1 and the new error, and False is
        returned. KeyError for an unknown id; ResilError if the entry is
        being reprocessed already. Cancellation leaves the entry as it was."""
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
            except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
                raise
            except Exception as exc:
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
        """size, maxsize, added, evicted, reprocessed, reprocess_failed,
        purged, oldest (Unix time of the oldest entry or None) and
        by_source ({source: entries}). The counters are this object's; size
        and the rest read the entries (the store's, when there is one)."""
        entries = self.list()
        by_source: dict[str, int] = {}
        for entry in entries:
            key = entry.source if entry.source is not None else ""
            by_source[key] = by_source.get(key, 0) + 1
        with self._lock:
            counts = dict(self._counts)
        return {"size": len(entries), "maxsize": self._maxsize, **counts,
                "oldest": entries[0].timestamp if entries else None, "by_source": by_source}

    def __repr__(self) -> str:
        where = f" store={self._store.path!r}" if self._store is not None else ""
        return f"<DeadLetterQueue {self._name!r} size={len(self)} maxsize={self._maxsize}{where}>"

