"""StreamStore: an :class:`resil.EventBus`'s numbered log and a
:class:`resil.DeadLetterQueue`'s entries on Redis streams, shared by every
process on every host."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import redis.exceptions

from resil import _check
from resil.errors import RedisUnavailable
from resil.messaging.deadletters import DeadLetter, add_attempt
from resil.redis._backend import _DOWN, RedisBackend, Script, hash_tag
from resil.storage.deadletters import _BeingReprocessed, decode, encode
from resil.storage.log import EventLog

__all__ = ["StreamStore"]

_log = logging.getLogger("resil.redis")

#: Numbers and appends one event. KEYS: the stream, the counter, the set of
#: event types and, when the event has an idempotency key, that key's
#: record. ARGV: the highest number the caller has seen (the counter is
#: raised to it first: a Redis that restarted empty goes on from there),
#: MAXLEN (0: none), the idempotency record's life in ms, then the event's
#: fields. Returns {number, stream id, 1 if a record of the key existed
#: (nothing appended; the number is the first event's)}.
_PUBLISH = Script("""
if KEYS[4] then
  local old = redis.call('GET', KEYS[4])
  if old then
    local at = string.find(old, ' ', 1, true)
    return {tonumber(string.sub(old, 1, at - 1)), string.sub(old, at + 1), 1}
  end
end
local floor = tonumber(ARGV[1])
local n = redis.call('INCR', KEYS[2])
if n <= floor then
  n = redis.call('INCRBY', KEYS[2], string.format('%d', floor + 1 - n))
end
local seq = string.format('%d', n)
local cmd = {'XADD', KEYS[1]}
if ARGV[2] ~= '0' then
  cmd[#cmd + 1] = 'MAXLEN'
  cmd[#cmd + 1] = '~'
  cmd[#cmd + 1] = ARGV[2]
end
local fields = {'*', 'seq', seq, 'id', ARGV[4], 'type', ARGV[5], 'payload', ARGV[6],
  'ts', ARGV[7], 'corr', ARGV[8], 'ver', ARGV[9], 'key', ARGV[10], 'pub', ARGV[11]}
for i = 1, #fields do cmd[#cmd + 1] = fields[i] end
local id = redis.call(unpack(cmd))
redis.call('SADD', KEYS[3], ARGV[5])
if KEYS[4] then
  redis.call('SET', KEYS[4], seq .. ' ' .. id, 'PX', ARGV[3])
end
return {n, id, 0}
""")

#: Raises the counter to ARGV[1] (what a host has seen) when it is lower.
_FLOOR = Script("""
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
local floor = tonumber(ARGV[1])
if n < floor then redis.call('SET', KEYS[1], ARGV[1]) end
return 0
""")

# ---- dead letters: KEYS = ids (counter), data (hash id -> JSON), ts (zset
# id by timestamp), q (stream of ids, read by the consumer group), held (hash
# id -> "consumer|ms": an entry taken by id before the group read it) -------

#: The body shared by the scripts that remove entries: drop(id) removes one
#: entry everywhere (acknowledged in the group, if there is one).
_DROP = """
local function drop(id)
  local gone = redis.call('HDEL', KEYS[2], id)
  redis.call('ZREM', KEYS[3], id)
  redis.call('XDEL', KEYS[4], id .. '-0')
  redis.pcall('XACK', KEYS[4], ARGV[1], id .. '-0')
  redis.call('HDEL', KEYS[5], id)
  return gone
end
local function expire(before)
  if before == '' then return 0 end
  local old = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', before)
  for i = 1, #old do drop(old[i]) end
  return #old
end
local function evict(maxsize)
  local over = redis.call('HLEN', KEYS[2]) - maxsize
  if over <= 0 then return 0 end
  local oldest = redis.call('XRANGE', KEYS[4], '-', '+', 'COUNT', over)
  for i = 1, #oldest do
    drop(string.sub(oldest[i][1], 1, -3))
  end
  return #oldest
end
"""

#: Helpers of the scripts that take entries (ARGV[2]: the consumer):
#: held_by_other(id, idle) is the consumer that took entry id by id less
#: than idle ms (claim_after) ago, when it is another one.
_HELD = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function held_by_other(id, idle)
  local h = redis.call('HGET', KEYS[5], id)
  if not h then return nil end
  local owner, at = string.match(h, '^(.*)|(%d+)$')  -- a host name may hold a '|'
  if owner == ARGV[2] or now_ms() - tonumber(at) >= tonumber(idle) then
    return nil
  end
  return owner
end
"""
#: ARGV: group, expire_before ('' none), maxsize, timestamp, JSON of the entry.
_DLQ_ADD = Script(_DROP + """
local expired = expire(ARGV[2])
local id = string.format('%d', redis.call('INCR', KEYS[1]))
redis.call('HSET', KEYS[2], id, ARGV[5])
redis.call('ZADD', KEYS[3], ARGV[4], id)
redis.call('XADD', KEYS[4], id .. '-0', 'i', id)
local evicted = evict(tonumber(ARGV[3]))
return {tonumber(id), evicted, expired}
""")

#: ARGV: group, expire_before ('' none), maxsize.
_DLQ_TRIM = Script(_DROP + """
local expired = expire(ARGV[2])
return {evict(tonumber(ARGV[3])), expired}
""")

#: ARGV: group, before.
_DLQ_EXPIRE = Script(_DROP + "return expire(ARGV[2])")

#: ARGV: group, id.
_DLQ_DELETE = Script(_DROP + "return drop(ARGV[2])")

#: ARGV: group. Removes every entry (the id counter stays: no id comes back).
_DLQ_PURGE = Script("""
local n = redis.call('HLEN', KEYS[2])
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4], KEYS[5])
return n
""")

#: ARGV: group, id, JSON. Replaces an entry that is still there.
_DLQ_UPDATE = Script("""
if redis.call('HEXISTS', KEYS[2], ARGV[2]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return 1
""")

#: What a consumer reprocesses now: its own pending entries, the entries of
#: consumers idle for ARGV[3] ms or more (claimed for it), then the entries
#: no consumer has read. ARGV: group, consumer, min idle ms, count. Returns
#: {id, JSON, id, JSON, ...}; entries deleted meanwhile are acknowledged.
_DLQ_CLAIM = Script(_HELD + """
redis.pcall('XGROUP', 'CREATE', KEYS[4], ARGV[1], '0', 'MKSTREAM')
local out, seen = {}, {}
local function take(entries)
  for i = 1, #entries do
    local e = entries[i]
    if e and e[1] and not seen[e[1]] then
      seen[e[1]] = true
      local id = string.sub(e[1], 1, -3)
      local doc = redis.call('HGET', KEYS[2], id)
      local owner = held_by_other(id, ARGV[3])
      if doc and owner then
        -- taken by id by a live consumer before the group read it: it is theirs
        redis.call('XCLAIM', KEYS[4], ARGV[1], owner, 0, e[1], 'JUSTID')
      elseif doc then
        out[#out + 1] = id
        out[#out + 1] = doc
      else
        redis.call('XACK', KEYS[4], ARGV[1], e[1])
      end
    end
  end
end
local function read(from)
  local r = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[4],
                       'STREAMS', KEYS[4], from)
  if r and r[1] then take(r[1][2]) end
end
read('0')
local cursor = '0-0'
for _ = 1, 100 do
  local r = redis.call('XAUTOCLAIM', KEYS[4], ARGV[1], ARGV[2], ARGV[3], cursor,
                       'COUNT', ARGV[4])
  take(r[2])
  cursor = r[1]
  if cursor == '0-0' then break end
end
read('>')
return out
""")

#: Holds one entry for consumer ARGV[2] while it is reprocessed. ARGV:
#: group, consumer, id, min idle ms. Returns {0} (gone), {2, owner} (held
#: by another consumer, idle for less than min idle) or {1, JSON}.
_DLQ_HOLD = Script(_HELD + """
local doc = redis.call('HGET', KEYS[2], ARGV[3])
if not doc then return {0} end
local sid = ARGV[3] .. '-0'
local p = redis.pcall('XPENDING', KEYS[4], ARGV[1], sid, sid, 1)
if type(p) == 'table' and p[1] then
  local owner, idle = p[1][2], tonumber(p[1][3])
  if owner ~= ARGV[2] and idle < tonumber(ARGV[4]) then return {2, owner} end
  redis.call('XCLAIM', KEYS[4], ARGV[1], ARGV[2], 0, sid, 'JUSTID')
else
  -- not read by the group yet: marked held, so no consumer's read takes it
  local owner = held_by_other(ARGV[3], ARGV[4])
  if owner then return {2, owner} end
  redis.call('HSET', KEYS[5], ARGV[3], ARGV[2] .. '|' .. now_ms())
end
return {1, doc}
""")

_GROUP = "resil"
_PAGE = 1000


def _id(raw: bytes | str) -> tuple[int, int]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, _, n = text.partition("-")
    return int(ms), int(n or 0)


def _before(entry: tuple[int, int]) -> str:
    """The stream id just before ``entry`` (XREAD reads after the id given)."""
    ms, n = entry
    if n > 0:
        return f"{ms}-{n - 1}"
    return f"{ms - 1}-{(1 << 64) - 1}" if ms > 0 else "0-0"


def _row(fields: Any) -> dict[str, Any]:
    """An event of the stream (its fields, as redis-py gives them: a dict or
    a flat list) as the bus reads stored events: the column names of the
    SQLite log, ``payload`` still JSON text."""
    pairs = fields.items() if isinstance(fields, dict) else zip(fields[::2], fields[1::2])
    raw: dict[str, str] = {}
    try:
        raw = {k.decode(): v.decode("utf-8", "surrogatepass") for k, v in pairs}
        return {"seq": int(raw["seq"]), "event_id": raw["id"], "event_type": raw["type"],
                "payload": raw["payload"], "timestamp": float(raw["ts"]),
                "correlation_id": raw["corr"], "schema_version": raw["ver"],
                "idempotency_key": raw["key"] or None, "publisher": raw["pub"] or None}
    except (KeyError, ValueError, TypeError, AttributeError):
        # Not an entry resil wrote: a payload of None makes the bus report
        # it as corrupt (and replay raise StoreError) rather than guess.
        return {"seq": raw.get("seq"), "payload": None}


class StreamStore(EventLog):
    """The store of an :class:`resil.EventBus` and of
    :class:`resil.DeadLetterQueue` objects on Redis streams: every process
    on every host that makes a StreamStore of the same ``stream`` (on the
    same Redis and ``backend.prefix``) shares its events and dead letters.

    ``StreamStore(backend, stream, *, max_events=None, claim_after=30.0,
    idempotency_ttl=300.0, block=0.5)``:

    - ``backend``: a :class:`RedisBackend`; ``stream``: the name (a
      non-empty str) every sharing process gives.
    - Events (``EventBus(store=store)``): each ``publish`` numbers and
      appends its event in one Lua script (the counter and the stream
      change together), so numbers are gapless across hosts and the
      stream's order is the numbers' order. Each bus reads the stream from
      a thread of its own (``XREAD BLOCK`` on a connection of its own,
      waking every ``block`` seconds) and delivers every event appended
      after it started - by any bus on any host, its own included - to
      its handlers on its event loop, in number order, each once.
      ``publish`` returns once its event is on the stream. Payloads are
      stored as JSON text, as a :class:`resil.SQLiteStore` stores them;
      ``bus.replay`` reads them back from the stream. ``max_events``
      (None: every event is kept): the stream is trimmed to about that many
      (Redis's ``MAXLEN ~``: at least ``max_events`` are kept). An
      ``idempotency_key`` is recorded on Redis for ``idempotency_ttl``
      seconds: a publish with a key already recorded, from any host, is not
      appended again (the bus gets the first event's number).
    - Dead letters (``DeadLetterQueue(store=store, name=...)``): the
      entries of queue ``name`` live on Redis, shared by every queue of
      that name on the stream; items are kept as JSON, as in a SQLiteStore.
      ``reprocess_all`` goes through a consumer group: each queue object is
      a consumer that takes the entries nobody holds, reprocesses them,
      and acknowledges (removes) each that succeeds; a failed one stays held
      by it and comes back in its next ``reprocess_all``. An entry held by
      a consumer that has not touched it for ``claim_after`` seconds (the
      process died, say) is claimed by the next consumer that asks; so
      ``claim_after`` must exceed the longest reprocessing of one entry.

    While Redis is away (down, slower than ``backend.timeout``): a
    ``publish`` raises :exc:`resil.RedisUnavailable` within ``backend.timeout``
    and its event is not numbered, stored or delivered - resil keeps no
    event of its own that the cluster does not have. (When Redis received
    the event just before the timeout, it may be on the stream all the
    same; a publish retried with the same ``idempotency_key`` is appended
    at most once.) A dead-letter ``put`` and the queue's reads raise
    :exc:`resil.RedisUnavailable` too. Readers wait and read on from where they
    were when Redis answers again. A Redis that restarts without
    persistence comes back empty: events and dead letters it held are gone
    (a reader that had not read the last of them never gets them; replay
    starts after the restart), and numbering goes on after the highest
    number seen by the hosts: each publish raises the counter to what its
    store has seen, and so does each bus's reader when it reconnects. So
    numbering stays gapless when the readers were up to date; a host that
    publishes before the up-to-date readers reconnected, while its own
    reader was behind, may reuse a number the lost stream had (or, when a
    reader then raises the counter past it, leave a gap). New events
    are delivered to every reader once, in stream order. Dead-letter ids
    start again from 1 on such a Redis.

    ``stats()["backend"]`` is ``backend.mode``. ``close()`` stops the
    readers of every bus still following the stream (a bus's ``aclose``
    stops its own; so does closing the backend); the backend stays open.
    """

    def __init__(self, backend: RedisBackend, stream: str, *, max_events: int | None = None,
                 claim_after: float = 30.0, idempotency_ttl: float = 300.0,
                 block: float = 0.5) -> None:
        if not isinstance(backend, RedisBackend):
            raise TypeError(f"backend must be a resil.redis.RedisBackend, not "
                            f"{type(backend).__name__}")
        _check.text(stream, "stream")
        _check.utf8(stream=stream)
        hash_tag(stream, "stream")
        stream = str.__str__(stream)  # the text, whatever a subclass's __format__ says
        if max_events is not None:
            _check.integer(max_events, "max_events", 1, 1 << 53, optional=True)
        self._claim_after = _check.seconds(claim_after, "claim_after", high=86400.0 * 365)
        ttl = _check.seconds(idempotency_ttl, "idempotency_ttl", low=0.001, low_open=False,
                             high=86400.0 * 365)
        self._block = _check.seconds(block, "block", low=0.001, low_open=False, high=60.0)
        self._backend = backend
        self._stream = stream
        self._max_events = max_events
        self._ttl_ms = str(max(1, int(ttl * 1000)))
        self._events = backend.key("stream", stream, "events")
        self._counter = backend.key("stream", stream, "seq")
        self._types = backend.key("stream", stream, "types")
        self._lock = threading.Lock()
        self._seen = 0  # the highest event number this process has seen
        self._followers: set[_Follower] = set()
        self._counts = {"appended": 0, "duplicates": 0, "received": 0}
        ref = weakref.ref(self)

        def restored() -> None:  # holds the store weakly: a dropped one is collected
            store = ref()
            if store is not None:
                store._restored()
        self._remove_listener = backend.on_restore(restored)
        weakref.finalize(self, self._remove_listener).atexit = False

    @property
    def backend(self) -> RedisBackend:
        """The :class:`RedisBackend` it talks through."""
        return self._backend

    @property
    def stream(self) -> str:
        """The stream's name."""
        return self._stream

    @property
    def path(self) -> str:
        """The Redis key of the events' stream (where messages say the events are)."""
        return self._events

    @property
    def mode(self) -> str:
        """``backend.mode``: ``"redis"``, or the fallback while Redis is away."""
        return self._backend.mode

    @property
    def claim_after(self) -> float:
        """Seconds after which a dead-letter entry held by a silent consumer is claimed again."""
        return self._claim_after

    def __repr__(self) -> str:
        return f"<StreamStore {self._stream!r} {self.mode}>"

    # ---- events --------------------------------------------------------------
    def _saw(self, seq: int) -> None:
        with self._lock:
            if seq > self._seen:
                self._seen = seq

    def _restored(self) -> None:
        # A Redis that restarted empty numbers from what this host has seen;
        # from a thread of its own, so the operation that saw Redis return
        # (a publish, say) waits for no second round trip.
        if self._seen:
            threading.Thread(target=self._raise_floor, name="resil-stream floor",
                             daemon=True).start()

    def _raise_floor(self) -> None:
        with self._lock:
            seen = self._seen
        if not seen:
            return
        try:
            self._backend.run(_FLOOR, [self._counter], [str(seen)])
        except RedisUnavailable:
            pass

    def append_event(self, event_id: str, event_type: str, payload_json: str, timestamp: float,
                     correlation_id: str, schema_version: str, idempotency_key: str | None,
                     publisher: str | None) -> int:
        """Numbers and appends one event in one script and returns its
        number (with an ``idempotency_key`` already recorded: the first
        event's, and nothing is appended). Raises :exc:`resil.RedisUnavailable`
        within ``backend.timeout`` when Redis does not answer, and
        ValueError naming a str UTF-8 cannot encode (a lone surrogate)
        before anything is sent."""
        keys, args = self._publish_call(event_id, event_type, payload_json, timestamp,
                                        correlation_id, schema_version, idempotency_key,
                                        publisher)
        return self._published(self._backend.run(_PUBLISH, keys, args))

    async def append_event_async(self, event_id: str, event_type: str, payload_json: str,
                                 timestamp: float, correlation_id: str, schema_version: str,
                                 idempotency_key: str | None, publisher: str | None) -> int:
        """:meth:`append_event` for a coroutine: with an asyncio client in
        the backend the script is awaited on the event loop (one round trip,
        no thread); with a blocking client it runs in the loop's default
        executor, so the loop never waits for Redis."""
        keys, args = self._publish_call(event_id, event_type, payload_json, timestamp,
                                        correlation_id, schema_version, idempotency_key,
                                        publisher)
        if self._backend.is_async:
            reply = await self._backend.run_async(_PUBLISH, keys, args)
        else:
            loop = asyncio.get_running_loop()
            reply = await loop.run_in_executor(None, self._backend.run, _PUBLISH, keys, args)
        return self._published(reply)

    def _publish_call(self, event_id: str, event_type: str, payload_json: str, timestamp: float,
                      correlation_id: str, schema_version: str, idempotency_key: str | None,
                      publisher: str | None) -> tuple[list[str], list[Any]]:
        _check.utf8(event_id=event_id, event_type=event_type, payload=payload_json,
                   correlation_id=correlation_id, schema_version=schema_version,
                   idempotency_key=idempotency_key, publisher=publisher)
        # Exact strs: what a str subclass's encode() or __format__ says must
        # not replace its text on the stream (SQLite stores the text too).
        texts = [str.__str__(t) for t in (event_id, event_type, payload_json, correlation_id,
                                          schema_version, idempotency_key or "", publisher or "")]
        keys = [self._events, self._counter, self._types]
        if idempotency_key is not None:
            keys.append(self._backend.key("stream", self._stream, "key", texts[5]))
        with self._lock:
            seen = self._seen
        event_id, event_type, payload_json, correlation_id, schema_version, key, pub = texts
        return keys, [
            str(seen), str(self._max_events or 0), self._ttl_ms, event_id, event_type,
            payload_json, repr(timestamp), correlation_id, schema_version, key, pub]

    def _published(self, reply: Any) -> int:
        seq, entry, duplicate = int(reply[0]), _id(reply[1]), bool(reply[2])
        self._saw(seq)
        with self._lock:
            self._counts["duplicates" if duplicate else "appended"] += 1
            followers = list(self._followers)
        for follower in followers:
            follower.appended(entry)
        return seq

    def _events_from(self, from_seq: int | None, to_seq: int | None, since: float | None,
                     event_type: str | None) -> Iterator[dict[str, Any]]:
        start = "-"
        while True:
            page = self._backend.command("XRANGE", self._events, start, "+", "COUNT", _PAGE)
            for entry, fields in page:
                row = _row(fields)
                if from_seq is not None and row["seq"] < from_seq:
                    continue
                if to_seq is not None and row["seq"] > to_seq:
                    continue
                if since is not None and row["timestamp"] < since:
                    continue
                if event_type is not None and row["event_type"] != event_type:
                    continue
                yield row
            if len(page) < _PAGE:
                return
            start = "(" + page[-1][0].decode()

    def event_types(self) -> set[str]:
        """Every event type ever appended to the stream (since Redis last
        started empty)."""
        return {t.decode() for t in self._backend.command("SMEMBERS", self._types)}

    def last_seq(self) -> int:
        """The highest number given so far (0 when none was)."""
        value = self._backend.command("GET", self._counter)
        return 0 if value is None else int(value)

    def follow(self, deliver: Callable[[list[dict[str, Any]]], bool], *,
               position: bool = True) -> _Follower:
        """Starts a thread that reads the stream live and calls
        ``deliver(rows)`` with each batch of new events (dicts as
        :meth:`events` gives them), in order, from that thread, and with
        ``[]`` after each ``block`` seconds without one; ``deliver`` may
        block (to hold the reader back) and returns False to stop it. It reads from the stream's end when it
        starts (``position=True``: looked up now, within
        ``backend.timeout``; otherwise in the thread), and from before any
        event this store appends first. Returns the reader, whose
        ``close()`` stops it."""
        _check.function(deliver, "deliver")
        _check.flag(position, "position")
        follower = _Follower(self, deliver)
        if position:
            follower.position()
        with self._lock:
            self._followers.add(follower)
        follower.start()
        return follower

    def _last_entry(self, client: Any = None) -> str:
        args = ("XREVRANGE", self._events, "+", "-", "COUNT", 1)
        last = self._backend.command(*args) if client is None else client.execute_command(*args)
        return last[0][0].decode() if last else "0-0"

    def _unfollow(self, follower: _Follower) -> None:
        with self._lock:
            self._followers.discard(follower)

    # ---- dead letters ----------------------------------------------------------
    def dead_letter_backend(self, name: str) -> _StreamDeadLetters:
        """Where a :class:`resil.DeadLetterQueue` named ``name`` (a non-empty
        str) keeps its entries."""
        _check.text(name, "name")
        return _StreamDeadLetters(self, name)

    def stats(self) -> dict[str, Any]:
        """``backend`` (``backend.mode``), ``stream``, ``followers`` (buses
        reading it in this process) and this object's counts: ``appended``,
        ``duplicates`` (publishes whose idempotency key was recorded
        already) and ``received`` (events its readers delivered)."""
        with self._lock:
            counts = dict(self._counts)
            followers = len(self._followers)
        return {"backend": self.mode, "stream": self._stream, "followers": followers, **counts}

    def close(self) -> None:
        """Stops every reader still following the stream (without waiting
        for events not read yet) and stops listening for Redis's return."""
        with self._lock:
            followers = list(self._followers)
        for follower in followers:
            follower.close(0.0)
        self._remove_listener()


class _Follower:
    """One bus's reader of the stream: a thread with a connection of its own."""

    def __init__(self, store: StreamStore, deliver: Callable[[list[dict[str, Any]]], bool]) -> None:
        self._store = store
        self._deliver = deliver
        self._lock = threading.Lock()
        self._pos: tuple[int, int] | None = None  # the last entry read (XREAD reads after it)
        self._read = False  # delivered something: the position only moves forward now
        self._gen = 0  # bumped when appended() moves an unread position back
        self._own: tuple[int, int] = (0, 0)  # the latest entry this store appended
        self._until: tuple[int, int] | None = None
        self._deadline = 0.0
        self._stopping = False
        self._client_id: int | None = None  # the reader's connection, to unblock its XREAD
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"resil-stream {store.stream}",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def position(self) -> None:
        """Starts from the stream's end now (within ``backend.timeout``);
        when Redis does not answer, the thread looks it up later."""
        try:
            last = _id(self._store._last_entry())
        except RedisUnavailable:
            return
        with self._lock:
            if self._pos is None:
                self._pos = last

    def appended(self, entry: tuple[int, int]) -> None:
        """This store appended ``entry``: read it (start before it if
        nothing was read yet), and read up to it before closing."""
        with self._lock:
            if entry > self._own:
                self._own = entry
            if not self._read and (self._pos is None or self._pos >= entry):
                self._pos = _id(_before(entry))
                self._gen += 1

    def _run(self) -> None:
        store = self._store
        backend = store._backend
        client: Any = None
        lost = False  # the connection failed: Redis may have restarted empty
        pause = min(backend.cooldown, 0.5)
        try:
            while True:
                if backend._closed:  # its connection goes with the backend's
                    return
                with self._lock:
                    if self._stopping and (self._until is None or (
                            self._pos is not None and self._pos >= self._until)
                            or time.monotonic() >= self._deadline):
                        return
                    pos, gen = self._pos, self._gen
                    block = self._block_ms()
                try:
                    if client is None:
                        client = backend.blocking_client(store._block + backend.timeout)
                        client_id = int(client.execute_command("CLIENT", "ID"))
                        with self._lock:
                            self._client_id = client_id
                        if lost:
                            # Readers notice a restart (their XREAD fails) even when
                            # nobody publishes: numbering goes on after what they saw.
                            store._raise_floor()
                            lost = False
                    if pos is None:
                        last = _id(store._last_entry(client))
                        with self._lock:
                            if self._pos is None:
                                self._pos = last
                        continue
                    reply = client.execute_command(
                        "XREAD", "COUNT", _PAGE, "BLOCK", block, "STREAMS", store._events,
                        f"{pos[0]}-{pos[1]}")
                except _DOWN:
                    lost = True
                    if client is not None:
                        client.connection_pool.disconnect()
                        client = None
                        with self._lock:
                            self._client_id = None
                    self._wake.wait(pause)
                    continue
                except redis.exceptions.ResponseError as exc:
                    # The key is not a stream (written by something else?): say so, retry.
                    _log.error("reading stream %r failed: %s", store.stream, exc)
                    self._wake.wait(pause)
                    continue
                if not reply:
                    if not self._deliver([]):  # nothing new: is anyone still there?
                        return
                    continue
                entries = reply[0][1]
                rows = [_row(fields) for _, fields in entries]
                with self._lock:
                    if self._gen != gen:
                        continue  # moved back before an own event: read again from there
                    self._pos = _id(entries[-1][0])
                    self._read = True
                store._saw(max((row["seq"] for row in rows if isinstance(row["seq"], int)),
                               default=0))
                with store._lock:
                    store._counts["received"] += len(rows)
                if not self._deliver(rows):
                    return
        except Exception:
            _log.exception("the reader of stream %r stopped", store.stream)
        finally:
            if client is not None:
                client.connection_pool.disconnect()
            store._unfollow(self)

    def _block_ms(self) -> int:
        block = self._store._block
        if self._stopping:
            block = min(block, max(0.001, self._deadline - time.monotonic()))
        return max(1, int(block * 1000))

    def close(self, drain: float) -> None:
        """Stops the thread: first, for up to ``drain`` seconds, it reads on
        until it has read every event this store appended. Waits for the
        thread to end, ending its ``XREAD BLOCK`` at once rather than after
        ``block`` seconds."""
        with self._lock:
            self._stopping = True
            self._until = self._own if self._own > (0, 0) else None
            self._deadline = time.monotonic() + drain
        self._wake.set()
        if self._thread is threading.current_thread():
            return
        backend = self._store._backend
        limit = time.monotonic() + drain + self._store._block + backend.timeout + 1.0
        while self._thread.is_alive() and time.monotonic() < limit:
            with self._lock:
                blocked = self._client_id
            if blocked is not None:
                try:  # again until it ends: its XREAD may not have reached Redis yet
                    backend.command("CLIENT", "UNBLOCK", blocked)
                except RedisUnavailable:
                    pass
            self._thread.join(0.05)

    @property
    def behind(self) -> bool:
        """True when events this store appended were not read (after close)."""
        with self._lock:
            return self._own > (0, 0) and (self._pos is None or self._pos < self._own)


class _StreamDeadLetters:
    """The entries of dead-letter queue ``name`` on a :class:`StreamStore`:
    a hash of entries (JSON), a sorted set of their timestamps, a stream
    of their ids read by the consumer group ``"resil"`` and a hash of the
    entries a consumer took by id before the group read them; this object
    is one consumer of it."""

    blocking = True

    def __init__(self, store: StreamStore, name: str) -> None:
        backend = store.backend
        self._store = store
        self._backend = backend
        self._keys = [backend.key("stream", store.stream, "dlq", name, part)
                      for part in ("ids", "data", "ts", "q", "held")]
        self._consumer = f"{backend.instance}:{id(self):x}"
        self._idle_ms = str(max(1, int(store.claim_after * 1000)))

    @property
    def store(self) -> StreamStore:
        return self._store

    @property
    def label(self) -> str:
        return f"store={self._store!r}"

    @property
    def mode(self) -> str:
        return self._backend.mode

    def _run(self, script: Script, *args: Any) -> Any:
        return self._backend.run(script, self._keys, [_GROUP, *args])

    def add(self, item: Any, error: str, error_type: str, source: str | None, attempts: int,
            timestamp: float, maxsize: int, expire_before: float | None) -> tuple[int, int, int]:
        doc = json.dumps({"item": encode(item), "error": error, "error_type": error_type,
                          "source": source, "attempts": attempts, "timestamp": timestamp,
                          "history": [[timestamp, error, source]], "dropped": 0})
        reply = self._run(_DLQ_ADD, "" if expire_before is None else repr(expire_before),
                          str(maxsize), repr(timestamp), doc)
        return int(reply[0]), int(reply[1]), int(reply[2])

    def _entry(self, entry_id: int, doc: bytes | str) -> DeadLetter:
        try:
            data = json.loads(doc)
            item = decode(data["item"])
            history = tuple((float(t), str(e), s) for t, e, s in data["history"])
            return DeadLetter(entry_id, item, data["error"], data["error_type"], data["source"],
                              int(data["attempts"]), float(data["timestamp"]), history,
                              int(data["dropped"]))
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
            from resil.storage.sqlite import StoreError
            raise StoreError(f"{self._keys[1]}: dead letter {entry_id} is corrupt and cannot be "
                             f"read ({exc!r})", path=self._keys[1], operation="read") from exc

    def entries(self, since: float | None) -> list[DeadLetter]:
        raw = self._backend.command("HGETALL", self._keys[1])
        entries = sorted((self._entry(int(k), v) for k, v in raw.items()), key=lambda e: e.id)
        if since is not None:
            entries = [e for e in entries if e.timestamp >= since]
        return entries

    def entry(self, entry_id: int) -> DeadLetter | None:
        if not 0 < entry_id < 1 << 53:
            return None
        doc = self._backend.command("HGET", self._keys[1], str(entry_id))
        return None if doc is None else self._entry(entry_id, doc)

    def count(self, after: float | None) -> int:
        if after is None:
            return int(self._backend.command("HLEN", self._keys[1]))
        return int(self._backend.command("ZCOUNT", self._keys[2], f"({after!r}", "+inf"))

    def expire(self, before: float) -> int:
        return int(self._run(_DLQ_EXPIRE, repr(before)))

    def record_failure(self, entry_id: int, error: str, error_type: str, attempts: int,
                       timestamp: float, source: str) -> bool:
        old = self.entry(entry_id)
        if old is None:
            return False
        history, dropped = add_attempt(old.history, old.history_dropped,
                                       (timestamp, error, source))
        doc = json.dumps({"item": encode(old.item), "error": error, "error_type": error_type,
                          "source": old.source, "attempts": attempts, "timestamp": old.timestamp,
                          "history": [list(a) for a in history], "dropped": dropped})
        return bool(self._run(_DLQ_UPDATE, str(entry_id), doc))

    def trim(self, maxsize: int, expire_before: float | None) -> tuple[int, int]:
        reply = self._run(_DLQ_TRIM, "" if expire_before is None else repr(expire_before),
                          str(maxsize))
        return int(reply[0]), int(reply[1])

    def delete(self, entry_id: int) -> bool:
        if not 0 < entry_id < 1 << 53:
            return False
        return bool(self._run(_DLQ_DELETE, str(entry_id)))

    def purge(self) -> int:
        return int(self._run(_DLQ_PURGE))

    def claim(self) -> list[DeadLetter]:
        reply = self._run(_DLQ_CLAIM, self._consumer, self._idle_ms, str(_PAGE))
        entries = [self._entry(int(reply[i]), reply[i + 1]) for i in range(0, len(reply), 2)]
        return sorted(entries, key=lambda e: e.id)

    def begin(self, entry_id: int) -> DeadLetter | None:
        if not 0 < entry_id < 1 << 53:
            return None
        reply = self._run(_DLQ_HOLD, self._consumer, str(entry_id), self._idle_ms)
        if int(reply[0]) == 0:
            return None
        if int(reply[0]) == 2:
            raise _BeingReprocessed(f"dead letter {entry_id} is being reprocessed by "
                            f"{reply[1].decode()} (claimed again after "
                            f"{self._store.claim_after:g} s of silence)")
        return self._entry(entry_id, reply[1])
