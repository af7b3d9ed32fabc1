"""The cluster-wide circuit breaker: ``CircuitBreaker(..., cluster=backend)``.

Each process keeps its local breaker on the call path (no round trip per
call). A background task of the backend publishes the local window's counts
every ``sync_interval`` seconds into the process's own field of a Redis hash
and, in the same Lua script, judges the cluster on Redis ``TIME`` and reads
the cluster's state back; the local breaker then follows it (OPEN for the
cluster's cooldown, HALF_OPEN only in the process holding the probe lease,
CLOSED with its window cleared when the cluster closes).
"""

from __future__ import annotations

import logging
import math
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

from resil import _check
from resil._resil import Breaker as _Breaker
from resil._resil import State
from resil.errors import RedisUnavailable
from resil.redis._backend import RedisBackend, Script

if TYPE_CHECKING:
    from resil.policies.breaker import CircuitBreaker

__all__ = ["ClusterSync", "SYNC", "attach"]

_log = logging.getLogger("resil.redis")

_CLOSED, _OPEN, _HALF_OPEN = int(State.CLOSED), int(State.OPEN), int(State.HALF_OPEN)
_TRIPPED = (_OPEN, _HALF_OPEN)
_MANUAL = (int(State.FORCED_OPEN), int(State.DISABLED))

#: One synchronisation of one process with the cluster, atomic, on Redis TIME.
#:
#: KEYS: 1 the hash of every process's entry (field: the process's instance),
#: 2 the cluster's state hash, 3 the probe lease.
#: ARGV: 1 instance, 2 host, 3 the cluster epoch the counts belong to (-1: the
#: current one), 4 calls, 5 failures, 6 slow calls (of the process's window),
#: 7 1 if the process's own breaker tripped, 8 probe result (0 none, 1 the
#: probes succeeded, 2 they failed), 9 1 to take or keep the probe lease, 0 to
#: give it back, 10 freshness (ms), 11 failure rate threshold (<= 0: off),
#: 12 slow-call rate threshold (<= 0: off), 13 minimum_calls, 14 min_hosts,
#: 15 cooldown (ms), 16 cooldown multiplier, 17 cooldown_max (ms), 18 lease
#: (ms), 19 time to live of the keys (ms), 20 half_open_probes.
#:
#: The cluster's state: 0 CLOSED, 2 OPEN until ``until``, 3 HALF_OPEN. From
#: CLOSED it opens (cooldown ``cooldown``) when at least ``min_hosts``
#: distinct hosts are failing and, if a rate rule is set, the fresh entries of
#: the current epoch together hold at least ``minimum_calls`` outcomes whose
#: failure or slow-call rate meets its threshold, where an entry whose breaker
#: tripped counts every outcome of its window as failed and slow (it rejects
#: every call it gets). A host is failing when one
#: of its fresh entries of the current epoch says its own breaker tripped or
#: (a rate rule set) its entries' rates meet a threshold. OPEN turns HALF_OPEN
#: once ``until`` has passed; one process at a time holds the probe lease;
#: its probes' success closes the cluster and bumps the epoch (every entry
#: counted so far is then ignored; with no probes, the end of the cooldown
#: does so), their failure reopens it with the
#: cooldown multiplied, up to cooldown_max. Entries older than the freshness
#: are deleted.
#:
#: Returns {state, epoch, remaining ms, 1 if this process holds the lease,
#: failing hosts, hosts, calls, failures, slow calls, openings, cooldown ms,
#: now ms}.
SYNC = Script("""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local me = ARGV[1]
local fresh = tonumber(ARGV[10])
local frt = tonumber(ARGV[11])
local srt = tonumber(ARGV[12])
local min_calls = tonumber(ARGV[13])
local min_hosts = tonumber(ARGV[14])
local base = tonumber(ARGV[15])
local mult = tonumber(ARGV[16])
local cmax = tonumber(ARGV[17])
local s = redis.call('HMGET', KEYS[2], 'st', 'ep', 'cd', 'until', 'opens')
local st = tonumber(s[1]) or 0
local ep = tonumber(s[2]) or 0
local cd = tonumber(s[3]) or base
local till = tonumber(s[4]) or 0
local opens = tonumber(s[5]) or 0
if st == 2 and now >= till then
  if ARGV[20] == '0' then
    st = 0
    ep = ep + 1
    cd = base
  else
    st = 3
  end
end
local probe = tonumber(ARGV[8])
if probe ~= 0 and st == 3 and redis.call('GET', KEYS[3]) == me then
  redis.call('DEL', KEYS[3])
  if probe == 1 then
    st = 0
    ep = ep + 1
    cd = base
  else
    cd = math.floor(math.min(cd * mult, cmax))
    till = now + cd
    st = 2
    opens = opens + 1
  end
end
local mine = tonumber(ARGV[3])
if mine < 0 then mine = ep end
redis.call('HSET', KEYS[1], me, cjson.encode({ARGV[2], mine, tonumber(ARGV[4]),
  tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), now}))
local rated = frt > 0 or srt > 0
local hosts = {}
local nhosts = 0
local calls, fails, slow = 0, 0, 0
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local e = cjson.decode(all[i + 1])
  if now - e[7] > fresh then
    redis.call('HDEL', KEYS[1], all[i])
  elseif e[2] == ep then
    local h = hosts[e[1]]
    if h == nil then
      h = {0, 0, 0, 0}
      hosts[e[1]] = h
      nhosts = nhosts + 1
    end
    local c, f, sl = e[3], e[4], e[5]
    if e[6] == 1 then
      f, sl = c, c
      h[4] = 1
    end
    h[1] = h[1] + c
    h[2] = h[2] + f
    h[3] = h[3] + sl
    calls = calls + c
    fails = fails + f
    slow = slow + sl
  end
end
local failing = 0
for _, h in pairs(hosts) do
  if h[4] == 1 or (h[1] > 0 and ((frt > 0 and h[2] / h[1] >= frt) or
                                 (srt > 0 and h[3] / h[1] >= srt))) then
    failing = failing + 1
  end
end
if st == 0 and failing >= min_hosts and (not rated or (calls > 0 and calls >= min_calls and
    ((frt > 0 and fails / calls >= frt) or (srt > 0 and slow / calls >= srt)))) then
  st = 2
  cd = base
  till = now + cd
  opens = opens + 1
  redis.call('DEL', KEYS[3])
end
local lease = 0
if st == 3 then
  local holder = redis.call('GET', KEYS[3])
  if ARGV[9] == '1' then
    if holder == me then
      redis.call('PEXPIRE', KEYS[3], ARGV[18])
      lease = 1
    elseif not holder then
      redis.call('SET', KEYS[3], me, 'PX', ARGV[18])
      lease = 1
    end
  elseif holder == me then
    redis.call('DEL', KEYS[3])
  end
end
redis.call('HSET', KEYS[2], 'st', st, 'ep', ep, 'cd', cd, 'until', till, 'opens', opens)
redis.call('PEXPIRE', KEYS[1], ARGV[19])
redis.call('PEXPIRE', KEYS[2], ARGV[19])
local remaining = 0
if st == 2 then remaining = till - now end
return {st, ep, remaining, lease, failing, nhosts, calls, fails, slow, opens, cd, now}
""")


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


class ClusterSync:
    """The synchronisation of one local :class:`resil.CircuitBreaker` with
    its cluster, which ``cluster=`` sets up. It holds the breaker weakly:
    the breaker's collection or :meth:`close` (``breaker.leave_cluster()``)
    stops it."""

    def __init__(self, breaker: CircuitBreaker, backend: RedisBackend, sync_interval: float,
                 min_hosts: int) -> None:
        self.backend = backend
        self.sync_interval = sync_interval
        self.min_hosts = min_hosts
        name = breaker.name
        self._keys = [backend.key("breaker", name, "hosts"), backend.key("breaker", name, "state"),
                      backend.key("breaker", name, "lease")]
        self._ref = weakref.ref(breaker)
        # Past the cluster's cooldown, the local breaker stays OPEN this much
        # longer unless a synchronisation says otherwise: it must not start
        # probing on its own between two synchronisations.
        self._margin = 3 * sync_interval + backend.timeout
        self._lease_ms = _ms(3 * sync_interval + backend.timeout)
        self._fresh_ms = _ms(3 * sync_interval)
        self._lock = threading.Lock()
        self._epoch = -1
        self._held = False      # the local state was set by the cluster
        self._probing = False   # this process holds the lease and went HALF_OPEN
        self._probe = 0         # a probe result not yet published
        self._fallback = ""     # "open" / "closed": the local state set while Redis is away
        self._attempts = -1
        self._synced_at: float | None = None
        self._view: dict[str, Any] = {"state": "UNKNOWN", "epoch": None, "remaining": None,
                                      "hosts": 0, "failing_hosts": 0, "calls": 0,
                                      "failures": 0, "slow_calls": 0, "opens": 0,
                                      "cooldown": None, "probe_lease": False}
        self._closed = False
        breaker.on_state_change(self._changed)
        # The engine's stats() stays the class's (a breaker without cluster=
        # pays nothing); this breaker's adds the backend and the cluster.
        setattr(breaker, "stats", self.stats)
        self._remove_restore = backend.on_restore(backend.wake)
        self._task = backend.every(sync_interval, self.sync)
        weakref.finalize(breaker, self._stop, self._task, self._remove_restore)

    @staticmethod
    def _stop(task: Any, remove_restore: Any) -> None:
        task.cancel()
        remove_restore()

    def close(self) -> None:
        """Stops synchronising: the breaker goes on as a local breaker in
        whatever state it is (its entry in Redis expires as any stale one)."""
        self._closed = True
        self._stop(self._task, self._remove_restore)
        breaker = self._ref()
        if breaker is not None:
            try:
                breaker.remove_listener(self._changed)
            except ValueError:
                pass

    def stats(self) -> dict[str, Any]:
        """The breaker's stats() with ``backend`` (the backend's mode) and
        ``cluster`` (:meth:`view` without ``backend``)."""
        breaker = self._ref()
        out: dict[str, Any] = {} if breaker is None else _Breaker.stats(breaker)
        view = self.view()
        out["backend"] = view.pop("backend")
        out["cluster"] = view
        return out

    def view(self) -> dict[str, Any]:
        """The cluster as the last synchronisation saw it."""
        out = dict(self._view)
        out["backend"] = self.backend.mode
        out["min_hosts"] = self.min_hosts
        out["sync_interval"] = self.sync_interval
        out["age"] = None if self._synced_at is None else time.monotonic() - self._synced_at
        return out

    # ------------------------------------------------------------ listener
    def _changed(self, breaker: Any, old: State, new: State, reason: str) -> None:
        if reason == "cluster" or self._closed:
            return
        if self._probing and old == State.HALF_OPEN and new in (State.CLOSED, State.OPEN):
            with self._lock:
                self._probe = 1 if new == State.CLOSED else 2
        self.backend.wake()

    # -------------------------------------------------------------- sync
    def sync(self) -> None:
        """Publishes this process's window and follows the cluster's state
        (one round trip); the backend's background thread runs it every
        ``sync_interval`` seconds and at once after a local transition."""
        breaker = self._ref()
        if breaker is None or self._closed:
            self._task.cancel()
            return
        s = _Breaker.stats(breaker)  # the engine's counts, without the cluster view
        state = s["state"]
        attempts = s["permitted"] + s["rejected"]
        demand = attempts != self._attempts
        self._attempts = attempts
        with self._lock:
            probe = self._probe
        if self._probing:
            # Keep the lease while probes are under way or wanted, and until
            # their result is published.
            want = state != _HALF_OPEN or demand or s["half_open_probes_granted"] > 0 or probe
        else:
            want = demand
        tripped = not self._held and self._fallback == "" and state in _TRIPPED
        frt = breaker.failure_rate_threshold
        srt = breaker.slow_call_rate_threshold if breaker.slow_call_duration is not None else None
        args = [self.backend.instance, self.backend.host, self._epoch, s["window_calls"],
                s["window_failures"], s["window_slow_calls"], int(tripped), probe, int(bool(want)),
                self._fresh_ms, repr(float(frt)) if frt is not None else "0",
                repr(float(srt)) if srt is not None else "0", breaker.minimum_calls,
                self.min_hosts, _ms(breaker.cooldown), repr(float(breaker.cooldown_multiplier)),
                _ms(breaker.cooldown_max), self._lease_ms,
                _ms(2 * breaker.cooldown_max + 20 * self.sync_interval),
                breaker.half_open_probes]
        try:
            reply = self.backend.run(SYNC, self._keys, args)
        except RedisUnavailable:
            self._away(breaker)
            return
        with self._lock:
            if self._probe == probe:
                self._probe = 0
        self._follow(breaker, [int(x) for x in reply])

    def _follow(self, breaker: Any, reply: list[int]) -> None:
        st, ep, remaining, lease, failing, hosts, calls, fails, slow, opens, cd, _ = reply
        self._synced_at = time.monotonic()
        self._view.update(state=State(st).name, epoch=ep, remaining=remaining / 1000,
                          hosts=hosts, failing_hosts=failing, calls=calls, failures=fails,
                          slow_calls=slow, opens=opens, cooldown=cd / 1000,
                          probe_lease=bool(lease))
        if self._fallback:
            self._fallback = ""
            breaker._follow(_CLOSED, 0)
        elif breaker.state in _MANUAL:
            # force_open() or disable() by the application wins over the cluster.
            self._epoch = ep
            return
        if st == _CLOSED:
            self._probing = False
            if self._held or (ep != self._epoch and self._epoch >= 0):
                breaker._follow(_CLOSED, 0)
            self._held = False
            self._epoch = ep
        elif st == _OPEN:
            self._probing = False
            self._held = True
            self._epoch = ep
            breaker._follow(_OPEN, remaining / 1000 + self._margin)
        elif lease:
            if not self._probing:
                self._probing = True
                self._held = True
                breaker._follow(_HALF_OPEN, 0)
        else:
            self._probing = False
            self._held = True
            breaker._follow(_OPEN, self._margin)

    def _away(self, breaker: Any) -> None:
        mode = self.backend.on_unavailable
        self._probing = False
        with self._lock:
            self._probe = 0
        if mode == "local" or self._fallback == mode:
            return  # the local breaker decides alone; a cluster hold lapses by itself
        self._fallback = mode
        self._held = False
        if mode == "open":
            breaker.disable()
        else:
            breaker.force_open()


def attach(breaker: CircuitBreaker, cluster: Any, sync_interval: float,
           min_hosts: int) -> ClusterSync:
    """Checks ``cluster`` and the breaker's name (it goes into Redis keys)
    and starts the breaker's synchronisation."""
    _check.utf8(name=breaker.name)
    return ClusterSync(breaker, _check.cluster(cluster), sync_interval, min_hosts)
