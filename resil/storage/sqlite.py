"""Durable storage for the event bus and dead-letter queues.

One SQLite file holds the bus's audit log (every published event, numbered)
and dead-letter entries. The file is in WAL mode with ``synchronous=FULL``:
a write that returned is on disk. Each write is one ``BEGIN IMMEDIATE``
transaction, so several processes (and threads) may share a file; a writer
that finds the file locked waits up to ``timeout`` seconds.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any

from resil import _check
from resil.storage.log import EventLog
from resil._resil import ResilError
from resil.messaging.deadletters import Attempt, add_attempt

__all__ = ["SQLiteStore", "StoreError"]

#: Version 2 added the event numbers' high-water mark (resil_counters), each
#: dead letter's history and an index by age; a version-1 file is migrated
#: when it is opened.
_SCHEMA_VERSION = "2"
_PAGE = 1000  # rows read per lock hold when iterating

_TABLES = (
    "CREATE TABLE IF NOT EXISTS resil_meta ("
    " key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS resil_events ("
    " seq INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE,"
    " event_type TEXT NOT NULL, payload TEXT NOT NULL, timestamp REAL NOT NULL,"
    " correlation_id TEXT NOT NULL, schema_version TEXT NOT NULL,"
    " idempotency_key TEXT, publisher TEXT)",
    "CREATE TABLE IF NOT EXISTS resil_dead_letters ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT, queue TEXT NOT NULL, item TEXT NOT NULL,"
    " error TEXT NOT NULL, error_type TEXT NOT NULL, source TEXT,"
    " attempts INTEGER NOT NULL, timestamp REAL NOT NULL,"
    " history TEXT, history_dropped INTEGER NOT NULL DEFAULT 0)",
    # last_seq: the highest event number ever stored, which pruning leaves as it is.
    "CREATE TABLE IF NOT EXISTS resil_counters ("
    " name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    # Each dead-letter queue's size, kept by triggers, so a put needs no COUNT(*).
    "CREATE TABLE IF NOT EXISTS resil_dead_letter_sizes ("
    " queue TEXT PRIMARY KEY, size INTEGER NOT NULL)",
    "CREATE TRIGGER IF NOT EXISTS resil_dead_letter_added AFTER INSERT ON resil_dead_letters"
    " BEGIN INSERT OR IGNORE INTO resil_dead_letter_sizes VALUES (NEW.queue, 0);"
    " UPDATE resil_dead_letter_sizes SET size = size + 1 WHERE queue = NEW.queue; END",
    "CREATE TRIGGER IF NOT EXISTS resil_dead_letter_removed AFTER DELETE ON resil_dead_letters"
    " BEGIN UPDATE resil_dead_letter_sizes SET size = size - 1 WHERE queue = OLD.queue; END",
)
#: What version 1 lacks; run, in one transaction with the rest, when a
#: version-1 file is opened.
_MIGRATE_FROM_1 = (
    "ALTER TABLE resil_dead_letters ADD COLUMN history TEXT",
    "ALTER TABLE resil_dead_letters ADD COLUMN history_dropped INTEGER NOT NULL DEFAULT 0",
    "INSERT OR REPLACE INTO resil_dead_letter_sizes"
    " SELECT queue, COUNT(*) FROM resil_dead_letters GROUP BY queue",
)
_INDEXES = (
    "CREATE INDEX IF NOT EXISTS resil_events_by_type ON resil_events (event_type, seq)",
    "CREATE INDEX IF NOT EXISTS resil_events_by_time ON resil_events (timestamp)",
    "CREATE INDEX IF NOT EXISTS resil_dead_letters_by_queue ON resil_dead_letters (queue, id)",
    "CREATE INDEX IF NOT EXISTS resil_dead_letters_by_age ON resil_dead_letters (queue, timestamp)",
)

_EVENT_COLUMNS = ("seq", "event_id", "event_type", "payload", "timestamp", "correlation_id",
                  "schema_version", "idempotency_key", "publisher")
_DLQ_COLUMNS = ("id", "item", "error", "error_type", "source", "attempts", "timestamp",
                "history", "history_dropped")


_INT64_MAX = (1 << 63) - 1


class StoreError(ResilError):
    """A store operation failed: the file is not a resil store, is corrupt,
    stayed locked longer than the busy timeout, or the disk refused a write.
    Nothing the store already held is changed by the failed operation.

    ``path``: the store's file; ``operation``: what was being done."""

    def __init__(self, message: str, *, path: str = "", operation: str = "") -> None:
        super().__init__(message)
        self.path = path
        self.operation = operation

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_store_error, (str(self), self.path, self.operation))


def _rebuild_store_error(message: str, path: str, operation: str) -> StoreError:
    return StoreError(message, path=path, operation=operation)


class SQLiteStore(EventLog):
    """A SQLite file holding a bus's event log and dead-letter entries.

    ``SQLiteStore(path, *, max_events=None, retention=None, timeout=5.0)``:

    - ``path``: a file name (a non-empty str or os.PathLike[str], created if
      missing).
    - ``max_events`` (an int in [1, 2**63 - 1], or None: no cap): each
      stored event prunes, in its own write transaction, the events whose
      number is ``max_events`` or more below its own, so the log never holds
      more than ``max_events`` events (fewer where events were already
      pruned by time); counted in ``stats()["evicted"]``.
    - ``retention`` (seconds in (0, 9.2e9], or None: forever): each stored
      event prunes, in its own write transaction, the events with a
      timestamp more than ``retention`` seconds before its own timestamp
      (the publisher's Unix time, so the store reads no clock); counted in
      ``stats()["expired"]``.
    - ``timeout`` (seconds in [0, 86400]): how long a write waits for
      another connection's lock before :class:`StoreError`.

    Both limits work as events arrive: opening a file holding more leaves it
    as it is until the next event is stored, or :meth:`prune` is called.
    Each prune is a range delete on an index (by number, or by time), so a
    write costs the same however long the log has run; the limits are this
    object's, so processes sharing a file may give different ones, and each
    applies its own to the events it stores. They apply to the event log
    only: dead-letter entries are bounded by their queue's ``maxsize`` and
    ``ttl`` (:class:`DeadLetterQueue`). Pruning never lowers the numbers:
    the next event is numbered after the highest ever stored in the file
    (a high-water mark kept in the file and written in the same transaction
    as each event), even when every event was pruned, by another process,
    or before the file was reopened.

    The file is put in WAL mode with ``synchronous=FULL`` (``":memory:"``
    works too, for tests, without durability or sharing). Methods are
    thread-safe; one store object may be shared by a bus and several
    dead-letter queues.

    Opening checks the file's structure with SQLite's ``quick_check``,
    which reads every page once (about 2 ms per MB of file in the page
    cache: ~5 ms for a log of 10,000 events): a file with corrupted pages is
    refused with :class:`StoreError` naming it, rather than opened, written
    to, and found unreadable later. A file written by the previous release
    (store schema 1) is brought up to date when opened, in one transaction:
    its dead letters gain an empty-until-now history (see
    :attr:`resil.DeadLetter.history`), and its numbering continues where it was.
    Once migrated, the previous release refuses the file, so every process
    sharing it should run this release.
    """

    def __init__(self, path: str | os.PathLike[str], *, max_events: int | None = None,
                 retention: float | None = None, timeout: float = 5.0) -> None:
        timeout = _check.seconds(timeout, "timeout", high=86400.0, low_open=False)
        self._max_events = None if max_events is None else _check.integer(
            max_events, "max_events", 1, _INT64_MAX, optional=True)
        self._retention = None if retention is None else _check.seconds(
            retention, "retention", optional=True)
        try:
            fspath = os.fspath(path)
        except TypeError:
            fspath = None
        if not isinstance(fspath, str):
            raise TypeError(f"path must be a str or os.PathLike[str], not {type(path).__name__}")
        if not fspath or fspath == ".":  # Path("") is "."
            raise ValueError(f"path must be a non-empty file name (or ':memory:'), got {path!r}")
        if "\0" in fspath:
            raise ValueError(f"path must not contain a NUL character, got {path!r}")
        self._path = fspath
        self._timeout = float(timeout)
        self._lock = threading.Lock()
        self._closed = False
        self._counts = dict.fromkeys(("evicted", "expired", "pruned"), 0)
        try:
            self._db = sqlite3.connect(self._path, timeout=self._timeout,
                                       isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise self._error("open", exc) from exc
        try:
            self._setup()
        except BaseException:
            self._db.close()
            raise

    def _setup(self) -> None:
        try:
            db = self._db
            db.execute(f"PRAGMA busy_timeout = {int(self._timeout * 1000)}")
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode not in ("wal", "memory"):
                raise StoreError(f"{self._path}: could not switch to WAL mode (journal_mode "
                                 f"is {mode!r})", path=self._path, operation="open")
            db.execute("PRAGMA synchronous = FULL")
            # A corrupt file would open and take writes, then fail reads.
            problems = [row[0] for row in db.execute("PRAGMA quick_check").fetchall()]
            if problems != ["ok"]:
                detail = "; ".join(str(p) for p in problems[:3]).replace("\n", " ")
                raise StoreError(f"{self._path}: open failed: the file is corrupt (SQLite "
                                 f"quick_check: {detail})", path=self._path, operation="open")
        except sqlite3.Error as exc:
            raise self._error("open", exc) from exc
        self._write("open", self._create_schema)

    def _create_schema(self, db: sqlite3.Connection) -> None:
        for statement in _TABLES:
            db.execute(statement)
        row = db.execute("SELECT value FROM resil_meta WHERE key = 'schema'").fetchone()
        if row is None:
            db.execute("INSERT INTO resil_meta VALUES ('schema', ?)", (_SCHEMA_VERSION,))
        elif row[0] == "1":
            for statement in _MIGRATE_FROM_1:
                db.execute(statement)
            db.execute("UPDATE resil_meta SET value = ? WHERE key = 'schema'", (_SCHEMA_VERSION,))
        elif row[0] != _SCHEMA_VERSION:
            raise StoreError(f"{self._path}: store schema {row[0]!r} is not supported "
                             f"(this resil reads schema {_SCHEMA_VERSION!r} and migrates "
                             f"schema '1')", path=self._path, operation="open")
        for statement in _INDEXES:
            db.execute(statement)
        # A new file starts at 0; a migrated one where its numbering stands.
        db.execute("INSERT OR IGNORE INTO resil_counters SELECT 'last_seq', COALESCE(MAX(seq), 0)"
                   " FROM resil_events")

    # ---- plumbing -------------------------------------------------------------
    @property
    def path(self) -> str:
        """The file name given at construction."""
        return self._path

    @property
    def timeout(self) -> float:
        """Seconds a write waits for another connection's lock."""
        return self._timeout

    @property
    def max_events(self) -> int | None:
        """Most events the log keeps (pruned as events arrive), or None."""
        return self._max_events

    @property
    def retention(self) -> float | None:
        """Seconds an event is kept (pruned as events arrive), or None."""
        return self._retention

    def _error(self, operation: str, exc: sqlite3.Error) -> StoreError:
        text = str(exc)
        if "not a database" in text or "malformed" in text or "corrupt" in text:
            hint = "the file is not a SQLite database or is corrupt"
        elif "locked" in text or "busy" in text:
            hint = f"still locked by another connection after the {self._timeout:g} s busy timeout"
        elif "readonly" in text or "read-only" in text:
            hint = "the file is read-only"
        else:
            hint = text
        return StoreError(f"{self._path}: {operation} failed: {hint} ({type(exc).__name__}: "
                          f"{text})", path=self._path, operation=operation)

    def _read(self, operation: str, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        with self._lock:
            self._check_open()
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise self._error(operation, exc) from exc

    def _write(self, operation: str, body: Any) -> Any:
        """Runs ``body(db)`` in one BEGIN IMMEDIATE transaction; on any error
        the transaction is rolled back and nothing is changed."""
        with self._lock:
            self._check_open()
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    result = body(db)
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise self._error(operation, exc) from exc
            return result

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"{self._path}: the store is closed", path=self._path,
                             operation="use")

    def close(self) -> None:
        """Closes the connection; idempotent. Later calls raise StoreError."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<SQLiteStore {self._path!r} {state}>"

    # ---- events ---------------------------------------------------------------
    def append_event(self, event_id: str, event_type: str, payload_json: str, timestamp: float,
                     correlation_id: str, schema_version: str, idempotency_key: str | None,
                     publisher: str | None) -> int:
        """Stores one event and returns its sequence number: one above the
        highest ever stored in the file (pruned or not), chosen inside the
        write transaction, so writers sharing the file never leave a gap or
        reuse a number. The same transaction records the new high-water
        mark and prunes what ``max_events`` and ``retention`` leave out.
        A str UTF-8 cannot encode (a lone surrogate) raises ValueError
        naming it, and nothing is stored or numbered."""
        _check.utf8(event_id=event_id, event_type=event_type, payload=payload_json,
                   correlation_id=correlation_id, schema_version=schema_version,
                   idempotency_key=idempotency_key, publisher=publisher)
        max_events, retention = self._max_events, self._retention

        def body(db: sqlite3.Connection) -> tuple[int, int, int]:
            seq: int = db.execute(
                "SELECT MAX(value, (SELECT COALESCE(MAX(seq), 0) FROM resil_events)) + 1"
                " FROM resil_counters WHERE name = 'last_seq'").fetchone()[0]
            db.execute("INSERT INTO resil_events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (seq, event_id, event_type, payload_json, timestamp, correlation_id,
                        schema_version, idempotency_key, publisher))
            db.execute("UPDATE resil_counters SET value = ? WHERE name = 'last_seq'", (seq,))
            evicted = expired = 0
            if max_events is not None and seq > max_events:
                evicted = db.execute("DELETE FROM resil_events WHERE seq <= ?",
                                     (seq - max_events,)).rowcount
            if retention is not None:
                expired = db.execute("DELETE FROM resil_events WHERE timestamp < ?",
                                     (timestamp - retention,)).rowcount
            return seq, evicted, expired
        written: tuple[int, int, int] = self._write("append event", body)
        seq, evicted, expired = written
        if evicted or expired:
            with self._lock:
                self._counts["evicted"] += evicted
                self._counts["expired"] += expired
        return seq

    def prune(self, keep: int | None = None, before: float | None = None) -> int:
        """Removes events from the log by hand; returns how many were removed.

        ``keep`` (an int in [0, 2**63 - 1]): keep the newest ``keep`` events
        and remove the rest. ``before`` (a finite Unix time): remove the
        events with a timestamp before it. Both may be given (an event goes
        if either says so). With neither, the store's own limits are applied
        now: ``keep=max_events`` and ``before`` = the wall clock's Unix time
        minus ``retention``; ValueError when the store has neither limit.
        One write transaction; counted in ``stats()["pruned"]``. The numbers
        of later events still follow the highest ever stored."""
        if keep is not None:
            keep = _check.integer(keep, "keep", 0, _INT64_MAX, optional=True)
        if before is not None:
            before = _check.number(before, "before", what="Unix time", optional=True)
        if keep is None and before is None:
            if self._max_events is None and self._retention is None:
                raise ValueError("prune needs keep or before (or a store made with max_events "
                                 "or retention, whose limits it then applies)")
            keep = self._max_events
            if self._retention is not None:
                before = time.time() - self._retention

        def body(db: sqlite3.Connection) -> int:
            removed = 0
            if keep is not None:
                if keep == 0:
                    removed += db.execute("DELETE FROM resil_events").rowcount
                else:
                    removed += db.execute(
                        "DELETE FROM resil_events WHERE seq < (SELECT seq FROM resil_events"
                        " ORDER BY seq DESC LIMIT 1 OFFSET ?)", (keep - 1,)).rowcount
            if before is not None:
                removed += db.execute("DELETE FROM resil_events WHERE timestamp < ?",
                                      (before,)).rowcount
            return removed
        removed: int = self._write("prune events", body)
        with self._lock:
            self._counts["pruned"] += removed
        return removed

    def _events_from(self, from_seq: int | None, to_seq: int | None, since: float | None,
                     event_type: str | None) -> Iterator[dict[str, Any]]:
        where = ["seq > ?"]
        base: list[Any] = []
        if to_seq is not None:
            where.append("seq <= ?")
            base.append(to_seq)
        if since is not None:
            where.append("timestamp >= ?")
            base.append(since)
        if event_type is not None:
            where.append("event_type = ?")
            base.append(event_type)
        sql = (f"SELECT {', '.join(_EVENT_COLUMNS)} FROM resil_events WHERE "
               f"{' AND '.join(where)} ORDER BY seq LIMIT {_PAGE}")
        last = (from_seq - 1) if from_seq is not None else 0
        while True:
            rows = self._read("read events", sql, (last, *base))
            for row in rows:
                yield dict(zip(_EVENT_COLUMNS, row))
            if len(rows) < _PAGE:
                return
            last = rows[-1][0]

    def last_seq(self) -> int:
        """The highest sequence number ever stored in the file (0 when none
        was); pruning never lowers it."""
        result: int = self._read(
            "read events", "SELECT MAX(value, (SELECT COALESCE(MAX(seq), 0) FROM resil_events))"
            " FROM resil_counters WHERE name = 'last_seq'")[0][0]
        return result

    def event_count(self) -> int:
        """How many events are stored."""
        result: int = self._read("read events", "SELECT COUNT(*) FROM resil_events")[0][0]
        return result

    def event_types(self) -> set[str]:
        """The event types present in the log."""
        rows = self._read("read events", "SELECT DISTINCT event_type FROM resil_events")
        return {row[0] for row in rows}

    # ---- dead letters ---------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """The store's counts, JSON-serialisable, in the vocabulary every
        resil component's ``stats()`` uses: path, events (stored now),
        last_seq (the highest number ever stored; pruning never lowers it),
        and the events this object removed from the log: evicted (by
        ``max_events``), expired (by ``retention``) and pruned (by
        :meth:`prune`)."""
        with self._lock:
            counts = dict(self._counts)
        return {"path": self.path, "events": self.event_count(), "last_seq": self.last_seq(),
                **counts}

    def dlq_put(self, queue: str, item_json: str, error: str, error_type: str,
                source: str | None, attempts: int, timestamp: float,
                maxsize: int, expire_before: float | None = None) -> tuple[int, int, int]:
        """Adds an entry to dead-letter queue ``queue`` (its history: this
        failure), drops the entries with a timestamp at or before
        ``expire_before`` (when given) and evicts the oldest beyond
        ``maxsize``, in one transaction. Returns (id, evicted, expired)."""
        history = json.dumps([[timestamp, error, source]])

        def body(db: sqlite3.Connection) -> tuple[int, int, int]:
            cur = db.execute("INSERT INTO resil_dead_letters (queue, item, error, error_type,"
                             " source, attempts, timestamp, history)"
                             " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                             (queue, item_json, error, error_type, source, attempts, timestamp,
                              history))
            new_id = cur.lastrowid
            assert new_id is not None
            # Its timestamp is after expire_before: it is never expired itself.
            evicted, expired = self._dlq_trim(db, queue, maxsize, expire_before)
            return new_id, evicted, expired
        result: tuple[int, int, int] = self._write("add dead letter", body)
        return result

    @staticmethod
    def _dlq_trim(db: sqlite3.Connection, queue: str, maxsize: int,
                  expire_before: float | None) -> tuple[int, int]:
        """Drops the expired entries of ``queue``, then
        the oldest beyond ``maxsize``: each a range on an index, so the work
        follows what is removed and the queue's size, not the table's."""
        expired = 0
        if expire_before is not None:
            expired = db.execute("DELETE FROM resil_dead_letters WHERE queue = ? AND"
                                 " timestamp <= ?", (queue, expire_before)).rowcount
        row = db.execute("SELECT size FROM resil_dead_letter_sizes WHERE queue = ?",
                         (queue,)).fetchone()
        size = 0 if row is None else row[0]
        evicted = 0
        if size > maxsize:
            evicted = db.execute(
                "DELETE FROM resil_dead_letters WHERE id IN (SELECT id FROM"
                " resil_dead_letters WHERE queue = ? ORDER BY id LIMIT ?)",
                (queue, size - maxsize)).rowcount
        return evicted, expired

    def dlq_trim(self, queue: str, *, maxsize: int,
                 expire_before: float | None) -> tuple[int, int]:
        """Drops the entries of ``queue`` with a timestamp at or before
        ``expire_before`` (when given), then evicts the oldest beyond
        ``maxsize``, in one transaction; returns (evicted, expired)."""
        result: tuple[int, int] = self._write(
            "trim dead letters", lambda db: self._dlq_trim(db, queue, maxsize, expire_before))
        return result

    def dlq_expire(self, queue: str, before: float) -> int:
        """Removes the entries of ``queue`` with a timestamp at or before
        ``before``; returns how many."""
        def body(db: sqlite3.Connection) -> int:
            count: int = db.execute("DELETE FROM resil_dead_letters WHERE queue = ? AND"
                                    " timestamp <= ?", (queue, before)).rowcount
            return count
        result: int = self._write("expire dead letters", body)
        return result

    def dlq_rows(self, queue: str, since: float | None = None) -> list[dict[str, Any]]:
        """Entries of ``queue``, oldest first (``item`` still JSON text)."""
        sql = f"SELECT {', '.join(_DLQ_COLUMNS)} FROM resil_dead_letters WHERE queue = ?"
        args: tuple[Any, ...] = (queue,)
        if since is not None:
            sql += " AND timestamp >= ?"
            args = (queue, since)
        rows = self._read("read dead letters", sql + " ORDER BY id", args)
        return [dict(zip(_DLQ_COLUMNS, row)) for row in rows]

    def dlq_row(self, queue: str, entry_id: int) -> dict[str, Any] | None:
        """One entry, or None."""
        rows = self._read("read dead letters",
                          f"SELECT {', '.join(_DLQ_COLUMNS)} FROM resil_dead_letters"
                          " WHERE queue = ? AND id = ?", (queue, entry_id))
        return dict(zip(_DLQ_COLUMNS, rows[0])) if rows else None

    def dlq_delete(self, queue: str, entry_id: int) -> bool:
        """Removes one entry; False if it was not there."""
        def body(db: sqlite3.Connection) -> bool:
            return db.execute("DELETE FROM resil_dead_letters WHERE queue = ? AND id = ?",
                              (queue, entry_id)).rowcount > 0
        result: bool = self._write("remove dead letter", body)
        return result

    def dlq_update(self, queue: str, entry_id: int, error: str, error_type: str,
                   attempts: int, *, timestamp: float | None = None,
                   source: str | None = None) -> bool:
        """Records a failed reprocessing: the entry's error, error type and
        attempts become these, and (with ``timestamp``) the attempt
        ``(timestamp, error, source)`` joins its history, trimmed as
        :class:`DeadLetter` says - read and written in one transaction, so
        processes sharing the file lose no attempt. False if the entry is
        gone. StoreError when the stored history is not one resil wrote."""
        def body(db: sqlite3.Connection) -> bool:
            row = db.execute("SELECT error, source, timestamp, history, history_dropped FROM"
                             " resil_dead_letters WHERE queue = ? AND id = ?",
                             (queue, entry_id)).fetchone()
            if row is None:
                return False
            history, dropped = self._history(entry_id, queue, *row)
            if timestamp is not None:
                history, dropped = add_attempt(history, dropped, (timestamp, error, source))
            db.execute("UPDATE resil_dead_letters SET error = ?, error_type = ?, attempts = ?,"
                       " history = ?, history_dropped = ? WHERE queue = ? AND id = ?",
                       (error, error_type, attempts, json.dumps(history), dropped, queue,
                        entry_id))
            return True
        result: bool = self._write("update dead letter", body)
        return result

    def _history(self, entry_id: int, queue: str, error: str, source: str | None,
                 timestamp: float, text: str | None,
                 dropped: int) -> tuple[tuple[Attempt, ...], int]:
        """A row's history and the attempts dropped from it; a row from
        before histories were kept (NULL) has one attempt, from its columns."""
        if text is None:
            return ((timestamp, error, source),), dropped
        try:
            doc = json.loads(text)
            history = tuple((float(t), e, s) for t, e, s in doc)
            if not all(type(e) is str and (s is None or type(s) is str) for _, e, s in history):
                raise TypeError("an attempt's error or source is not text")
            if isinstance(dropped, bool) or not isinstance(dropped, int) or dropped < 0:
                raise TypeError(f"history_dropped is {dropped!r}")
        except (ValueError, TypeError, RecursionError) as exc:
            raise StoreError(f"{self._path}: the history of dead letter {entry_id} of queue "
                             f"{queue!r} is corrupt and cannot be read ({exc!r})",
                             path=self._path, operation="read") from exc
        return history, dropped

    def dlq_history(self, queue: str, row: dict[str, Any]) -> tuple[tuple[Attempt, ...], int]:
        """The history of a row :meth:`dlq_rows` or :meth:`dlq_row` returned,
        and how many attempts were dropped from it; StoreError when it is
        corrupt."""
        return self._history(row["id"], queue, row["error"], row["source"], row["timestamp"],
                             row["history"], row["history_dropped"])

    def dlq_purge(self, queue: str) -> int:
        """Removes every entry of ``queue``; returns how many."""
        def body(db: sqlite3.Connection) -> int:
            count: int = db.execute("DELETE FROM resil_dead_letters WHERE queue = ?",
                                    (queue,)).rowcount
            return count
        result: int = self._write("purge dead letters", body)
        return result

    def dlq_count(self, queue: str, after: float | None = None) -> int:
        """How many entries ``queue`` holds (with ``after``, only those with
        a later timestamp)."""
        if after is None:
            rows = self._read("read dead letters", "SELECT size FROM resil_dead_letter_sizes"
                              " WHERE queue = ?", (queue,))
            return int(rows[0][0]) if rows else 0
        result: int = self._read("read dead letters", "SELECT COUNT(*) FROM resil_dead_letters"
                                 " WHERE queue = ? AND timestamp > ?", (queue, after))[0][0]
        return result
