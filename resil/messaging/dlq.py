"""Dead-letter queue: keeps what failed, for review and reprocessing."""

from __future__ import annotations

import asyncio
import builtins
import functools
import inspect
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from resil import _check, _time
from resil._hooks import Listeners
from resil._resil import ResilError
from resil.errors import RedisUnavailable
from resil.messaging.deadletters import DeadLetter, DeadLetterSink
from resil.storage.deadletters import (DeadLetterBackend, _BeingReprocessed, _DeadLetterStore,
                                      open_backend)
from resil.storage.sqlite import SQLiteStore

__all__ = ["DeadLetter", "DeadLetterQueue", "DeadLetterSink"]

_log = logging.getLogger("resil.dlq")

_T = TypeVar("_T")




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


_INT64 = 1 << 63
_MAX_TTL = _check.MAX_SECONDS


class _Unchanged:
    """The default of a :meth:`DeadLetterQueue.configure` parameter: the
    setting stays as it is."""

    def __repr__(self) -> str:
        return "<unchanged>"


_UNCHANGED = _Unchanged()


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


def _handler_name(handler: Any) -> str:
    """What an attempt's history calls ``handler``: its qualified name, or
    its type's for an object that has none (never a repr, which holds a
    memory address)."""
    name = getattr(handler, "__qualname__", None)
    if not isinstance(name, str) or not name:
        name = type(handler).__qualname__
    return _utf8(name)


class DeadLetterQueue:
    """Keeps what failed, for review and reprocessing: a
    :class:`DeadLetterSink` whose entries live in memory or in a store.

    ``DeadLetterQueue(maxsize=100, store=None, *, name="default", ttl=None,
    clock=None)``:

    - ``maxsize`` (an int in [1, 2**31]): entries at most; adding one more
      evicts the oldest, counted in ``stats()["evicted"]``.
    - ``store`` (a :class:`SQLiteStore`): the entries live in the store's
      file under ``name`` - they survive restarts and are shared with every
      queue of that name on the file. A :class:`resil.redis.StreamStore`
      keeps them on Redis, shared by every host, and ``reprocess_all``
      takes them through a consumer group (see its documentation). Without
      a store they live in this object and any object can be an item, kept
      as it is.
    - ``name`` (a non-empty str): the queue's name in the store, in logs and
      in metrics (``resil.prometheus`` labels the queue with it).
    - ``ttl`` (seconds in (0, 9.2e9], or None: forever): an entry at least
      ``ttl`` old (by its ``timestamp``) is no longer listed and is
      dropped, counted in ``stats()["expired"]``, at the next ``put`` or
      read that meets it. A ``put`` drops only from the old end (in
      memory) or by an index range (in a store), never by scanning the
      queue. An entry's age is this queue's Unix time (see ``clock``)
      minus the ``timestamp`` stored with it, which the queue that put it
      took from its own clock: queues sharing a store file age each
      other's entries correctly when they agree on the time, as the default
      wall clock does.
    - ``clock`` (an object with ``now()`` in seconds, such as
      :class:`MonotonicClock` or :class:`VirtualClock`; None: the system's
      wall clock): every time the queue uses - an entry's ``timestamp``,
      its age against ``ttl``, ``list(since=...)``, ``stats()["oldest"]``
      - is Unix time as this clock tells it: the wall-clock time when the
      queue was made plus the seconds the clock has moved since. Without a
      clock it is ``time.time()`` itself, which is what processes sharing a
      store file agree on, and what follows the system clock when it is
      set; a :class:`VirtualClock` ages entries with no waiting in tests.

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

    ``configure(maxsize=..., ttl=...)`` changes the limits at run time;
    every entry keeps its ``history`` of failed attempts (see
    :class:`DeadLetter`).

    Thread-safe. ``put`` never awaits; a store-backed queue is ``blocking``
    (its ``put`` writes to disk), so an :class:`EventEmitter` or
    :class:`EventBus` given it as ``dlq`` calls ``put`` from a worker thread.
    """

    def __init__(self, maxsize: int = 100, store: SQLiteStore | _DeadLetterStore | None = None, *,
                 name: str = "default", ttl: float | None = None, clock: Any = None) -> None:
        _check.integer(maxsize, "maxsize", 1, 1 << 31)
        if not isinstance(name, str):
            raise TypeError(f"name must be a non-empty str, not {type(name).__name__}")
        if not name:
            raise ValueError("name must be a non-empty str")
        _check_text(name, "name")
        if ttl is not None:
            ttl = _check.seconds(ttl, "ttl", high=_MAX_TTL, optional=True)
        self._now = _time.unix_time(clock)
        self._backend: DeadLetterBackend = open_backend(store, name)
        self._clock = clock
        self._maxsize = maxsize
        self._name = name
        self._ttl = ttl
        self._lock = threading.Lock()
        self._settings = threading.Lock()  # maxsize and ttl, as put and configure use them
        self._busy: set[int] = set()
        self._counts = dict.fromkeys(("added", "evicted", "expired", "reprocessed",
                                      "reprocess_failures", "purged"), 0)
        # Told ("dead_letter", name) after each entry is added.
        self._listeners = Listeners(_log)

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

    @property
    def clock(self) -> Any:
        """The clock the queue's time follows, or None (the system's wall clock)."""
        return self._clock

    @property
    def store(self) -> SQLiteStore | _DeadLetterStore | None:
        """The store holding the entries, or None (in memory)."""
        store: SQLiteStore | _DeadLetterStore | None = self._backend.store
        return store

    @property
    def blocking(self) -> bool:
        """True when ``put`` writes to a store (disk), so callers on an event
        loop call it from a worker thread; False in memory."""
        return self._backend.blocking

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] += n

    def _cutoff(self) -> float | None:
        """Entries with a timestamp at or before this have expired."""
        return None if self._ttl is None else self._now() - self._ttl

    def _live(self, entries: list[DeadLetter], cutoff: float | None) -> list[DeadLetter]:
        """``entries`` without the expired ones, which are dropped and counted."""
        if cutoff is None or all(e.timestamp > cutoff for e in entries):
            return entries
        self._count("expired", self._backend.expire(cutoff))
        return [e for e in entries if e.timestamp > cutoff]

    # ---- adding ---------------------------------------------------------------
    def put(self, item: Any, error: BaseException | str, *, source: str | None = None,
            attempts: int = 0) -> int:
        """Adds an entry and returns its id. ``error``: the exception (or a
        str saying what went wrong); ``source``: a str (UTF-8 encodable) or
        None; ``attempts``: calls made for the item, an int in
        [0, 2**63 - 1], not a bool. Raises TypeError or ValueError naming
        the bad argument, TypeError naming ``item`` for an item a store would
        not give back unchanged (see the class docstring), and StoreError
        when the store cannot write; in each case nothing is added."""
        text, error_type = _describe(error)
        if source is not None:
            if not isinstance(source, str):
                raise TypeError(f"source must be a str or None, not {type(source).__name__}")
            _check_text(source, "source")
        _check.integer(attempts, "attempts", 0, _INT64 - 1)
        with self._settings:  # configure() waits: its limits apply before or after this put
            now = self._now()
            new_id, evicted, expired = self._backend.add(
                item, text, error_type, source, attempts, now, self._maxsize,
                None if self._ttl is None else now - self._ttl)
        with self._lock:
            self._counts["added"] += 1
            self._counts["evicted"] += evicted
            self._counts["expired"] += expired
        if evicted:
            _log.warning("dead-letter queue %r full (%d): evicted %d oldest entr%s", self._name,
                         self._maxsize, evicted, "y" if evicted == 1 else "ies")
        _log.info("dead letter %d from %s: %s", new_id, source, text)
        if self._listeners:
            self._listeners.notify("dead_letter", self._name)
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
        return self._live(self._backend.entries(since), self._cutoff())

    def get(self, entry_id: int) -> DeadLetter:
        """The entry ``entry_id`` (an int); KeyError if there is none (or it
        expired), TypeError if ``entry_id`` is not an int."""
        _check_entry_id(entry_id)
        entry = self._backend.entry(entry_id)
        if entry is None or not self._live([entry], self._cutoff()):
            raise KeyError(entry_id)
        return entry

    def __len__(self) -> int:
        """Entries held (expired ones not included)."""
        return self._backend.count(self._cutoff())

    # ---- reprocessing -----------------------------------------------------------
    async def reprocess(self, entry_id: int, handler: Callable[[Any], Any]) -> bool:
        """Calls ``handler(item)`` (awaited if it returns an awaitable). On
        success the entry is removed and True returned; on an exception the
        entry stays with ``attempts`` + 1 and the new error, and False is
        returned. KeyError for an unknown id, TypeError if ``entry_id`` is
        not an int; ResilError if the entry is being reprocessed already.
        Cancellation leaves the entry as it was; once the handler returned
        or raised, its outcome is recorded even if the caller is cancelled
        meanwhile. A failure joins the entry's ``history`` as ``(time, error,
        "reprocess:<handler's qualified name>")``. A store-backed queue
        reads and writes from a worker thread, so the event loop never waits
        on the disk."""
        _check_entry_id(entry_id)
        _check.function(handler, "handler")
        entry = await self._off_loop(self._begin, entry_id)
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
                await self._off_loop(self._failed_again, entry, text, error_type,
                                     f"reprocess:{_handler_name(handler)}")
                return False
            await self._off_loop(self._reprocessed, entry_id)
            return True
        finally:
            with self._lock:
                self._busy.discard(entry_id)

    def _begin(self, entry_id: int) -> DeadLetter:
        """:meth:`get`, the entry held for this queue while it is reprocessed."""
        entry = self._backend.begin(entry_id)
        if entry is None or not self._live([entry], self._cutoff()):
            raise KeyError(entry_id)
        return entry

    def _failed_again(self, entry: DeadLetter, text: str, error_type: str, source: str) -> None:
        self._backend.record_failure(entry.id, text, error_type, entry.attempts + 1, self._now(),
                                     source)
        self._count("reprocess_failures")
        _log.warning("reprocessing dead letter %d failed: %s", entry.id, text)

    def _reprocessed(self, entry_id: int) -> None:
        self._backend.delete(entry_id)
        self._count("reprocessed")
        _log.info("dead letter %d reprocessed", entry_id)

    async def _off_loop(self, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(*args)``: in a worker thread when the backend blocks, where
        it runs to its end even if the caller is cancelled meanwhile."""
        if not self._backend.blocking:
            return fn(*args)
        loop = asyncio.get_running_loop()
        return await asyncio.shield(loop.run_in_executor(None, functools.partial(fn, *args)))

    async def reprocess_all(self, handler: Callable[[Any], Any]) -> dict[str, int]:
        """Reprocesses every entry present at the call, oldest first;
        returns ``{"successful": n, "failed": m}``. Entries removed or being
        reprocessed meanwhile are skipped; a StoreError stops the run and
        propagates (the entries not yet reprocessed stay). On a
        :class:`resil.redis.StreamStore` "every entry" is those this queue
        takes through the consumer group: its own held ones, those held by
        a consumer silent for ``claim_after`` seconds, and those nobody
        took yet."""
        _check.function(handler, "handler")
        successful = failed = 0
        for entry in await self._off_loop(self._claim):
            try:
                ok = await self.reprocess(entry.id, handler)
            except (KeyError, _BeingReprocessed):
                continue
            if ok:
                successful += 1
            else:
                failed += 1
        return {"successful": successful, "failed": failed}

    def _claim(self) -> builtins.list[DeadLetter]:
        return self._live(self._backend.claim(), self._cutoff())

    # ---- housekeeping -------------------------------------------------------------
    def configure(self, *, maxsize: int | _Unchanged = _UNCHANGED,
                  ttl: float | None | _Unchanged = _UNCHANGED) -> None:
        """Changes the limits at run time, keyword by keyword (one not given
        stays as it is); the values are checked as the constructor checks
        them, all before anything changes, so a bad one raises TypeError or
        ValueError and changes nothing.

        Lowering ``maxsize`` evicts the oldest entries beyond it now,
        counted in ``stats()["evicted"]``; a new ``ttl`` (None: forever)
        drops the entries it makes too old now, counted in
        ``stats()["expired"]``. A store-backed queue does both in one write
        transaction; if it fails (StoreError) the limits stay as they were.
        A ``put`` running meanwhile finishes under the old limits first."""
        new_maxsize = self._maxsize if isinstance(maxsize, _Unchanged) else \
            _check.integer(maxsize, "maxsize", 1, 1 << 31)
        if isinstance(ttl, _Unchanged):
            new_ttl = self._ttl
        elif ttl is None:
            new_ttl = None
        else:
            new_ttl = _check.seconds(ttl, "ttl", high=_MAX_TTL, optional=True)
        with self._settings:
            evicted, expired = self._backend.trim(
                new_maxsize, None if new_ttl is None else self._now() - new_ttl)
            self._maxsize, self._ttl = new_maxsize, new_ttl
        with self._lock:
            self._counts["evicted"] += evicted
            self._counts["expired"] += expired
        if evicted:
            _log.warning("dead-letter queue %r reconfigured to maxsize %d: evicted %d oldest "
                         "entr%s", self._name, new_maxsize, evicted,
                         "y" if evicted == 1 else "ies")

    def purge(self) -> int:
        """Removes every entry; returns how many were removed."""
        removed = self._backend.purge()
        self._count("purged", removed)
        return removed

    def stats(self) -> dict[str, Any]:
        """The queue's counters, JSON-serialisable, in the vocabulary every
        resil component's ``stats()`` uses: name, depth (entries held now),
        maxsize, ttl, added, evicted, expired, reprocessed,
        reprocess_failures, purged, oldest (Unix time of the oldest entry
        or None) and by_source ({source: entries}); on a store that talks to
        Redis, backend (``"redis"``, or the fallback in force while Redis
        is away; depth and oldest are None and by_source empty while it
        cannot be read). The counters are this object's; depth and the rest read
        the entries (the store's, when there is one)."""
        entries: builtins.list[DeadLetter] | None
        try:
            entries = self.list()
        except RedisUnavailable:
            entries = None  # on Redis, while it is away: the counters alone
        by_source: dict[str, int] = {}
        for entry in entries or ():
            key = entry.source if entry.source is not None else ""
            by_source[key] = by_source.get(key, 0) + 1
        with self._lock:
            counts = dict(self._counts)
        out = {"name": self._name, "depth": None if entries is None else len(entries),
               "maxsize": self._maxsize,
               "ttl": self._ttl, **counts,
               "oldest": entries[0].timestamp if entries else None, "by_source": by_source}
        mode = getattr(self._backend, "mode", None)
        if mode is not None:  # a store on a RedisBackend: what is in force
            out["backend"] = mode
        return out

    def __repr__(self) -> str:
        label = self._backend.label
        where = f" {label}" if label else ""
        return f"<DeadLetterQueue {self._name!r} size={len(self)} maxsize={self._maxsize}{where}>"


if TYPE_CHECKING:  # the type checker proves that a DeadLetterQueue is a DeadLetterSink
    _IS_A_SINK: DeadLetterSink = DeadLetterQueue()
