"""Reference model of the cluster breaker's synchronisation script
(resil.redis.breaker.SYNC): the cluster's state, every process's entry and
the probe lease, changed by one synchronisation at a time. Times are integer
milliseconds of the server's clock; the caller passes the time the script
ran at."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

CLOSED, OPEN, HALF_OPEN = 0, 2, 3


@dataclass
class Entry:
    host: str
    epoch: int
    calls: int
    failures: int
    slow: int
    tripped: bool
    updated: int


@dataclass
class Rules:
    fresh: int                  # ms an entry counts after its update
    failure_rate: float         # <= 0: off
    slow_rate: float            # <= 0: off
    minimum_calls: int
    min_hosts: int
    cooldown: int               # ms
    multiplier: float
    cooldown_max: int           # ms
    probes: int = 3             # half_open_probes; 0: the cooldown's end closes


@dataclass
class Sync:
    """One process's synchronisation: what it publishes and asks."""
    instance: str
    host: str
    epoch: int                  # -1: the cluster's current one
    calls: int
    failures: int
    slow: int
    tripped: bool
    probe: int                  # 0 none, 1 succeeded, 2 failed
    want_lease: bool


@dataclass
class Cluster:
    state: int = CLOSED
    epoch: int = 0
    cooldown: int | None = None  # None: never stored (the rules' cooldown)
    until: int = 0
    opens: int = 0
    entries: dict[str, Entry] = field(default_factory=dict)
    lease: str | None = None

    def judge(self, now: int, rules: Rules) -> tuple[bool, int, int, int, int, int]:
        """Whether the fresh entries of the current epoch open a CLOSED
        cluster, and failing hosts, hosts, calls, failures, slow calls."""
        hosts: dict[str, list[int]] = {}
        for e in self.entries.values():
            if now - e.updated > rules.fresh or e.epoch != self.epoch:
                continue
            h = hosts.setdefault(e.host, [0, 0, 0, 0])
            failed, slow = (e.calls, e.calls) if e.tripped else (e.failures, e.slow)
            h[0] += e.calls
            h[1] += failed
            h[2] += slow
            h[3] |= e.tripped

        def meets(calls: int, failed: int, slow: int) -> bool:
            return calls > 0 and ((rules.failure_rate > 0 and failed / calls >= rules.failure_rate)
                                  or (rules.slow_rate > 0 and slow / calls >= rules.slow_rate))

        failing = sum(1 for c, f, s, t in hosts.values() if t or meets(c, f, s))
        calls = sum(h[0] for h in hosts.values())
        fails = sum(h[1] for h in hosts.values())
        slow = sum(h[2] for h in hosts.values())
        rated = rules.failure_rate > 0 or rules.slow_rate > 0
        opens = failing >= rules.min_hosts and (
            not rated or (calls >= rules.minimum_calls and meets(calls, fails, slow)))
        return opens, failing, len(hosts), calls, fails, slow

    def sync(self, now: int, s: Sync, rules: Rules) -> list[int]:
        """Applies one synchronisation at time ``now``; returns the reply."""
        cd = rules.cooldown if self.cooldown is None else self.cooldown
        if self.state == OPEN and now >= self.until:
            if rules.probes == 0:
                self.state, self.epoch, cd = CLOSED, self.epoch + 1, rules.cooldown
            else:
                self.state = HALF_OPEN
        if s.probe and self.state == HALF_OPEN and self.lease == s.instance:
            self.lease = None
            if s.probe == 1:
                self.state, self.epoch, cd = CLOSED, self.epoch + 1, rules.cooldown
            else:
                cd = math.floor(min(cd * rules.multiplier, rules.cooldown_max))
                self.state, self.until, self.opens = OPEN, now + cd, self.opens + 1
        self.entries[s.instance] = Entry(s.host, self.epoch if s.epoch < 0 else s.epoch, s.calls,
                                         s.failures, s.slow, s.tripped, now)
        self.entries = {k: e for k, e in self.entries.items() if now - e.updated <= rules.fresh}
        opens, failing, nhosts, calls, fails, slow = self.judge(now, rules)
        if self.state == CLOSED and opens:
            cd = rules.cooldown
            self.state, self.until, self.opens, self.lease = OPEN, now + cd, self.opens + 1, None
        lease = 0
        if self.state == HALF_OPEN:
            if s.want_lease and self.lease in (None, s.instance):
                self.lease, lease = s.instance, 1
            elif not s.want_lease and self.lease == s.instance:
                self.lease = None
        self.cooldown = cd
        remaining = self.until - now if self.state == OPEN else 0
        return [self.state, self.epoch, remaining, lease, failing, nhosts, calls, fails, slow,
                self.opens, cd, now]
