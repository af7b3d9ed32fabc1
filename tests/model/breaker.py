"""Reference model of the circuit breaker state machine.

Written for clarity, not speed: plain lists and recomputation. Time is an
integer number of nanoseconds; latencies are milliseconds (None: no sample).
The C engine must agree with this model after every operation.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

CLOSED, DEGRADED, OPEN, HALF_OPEN, FORCED_OPEN, DISABLED = range(6)
EJECTED = (OPEN, HALF_OPEN, FORCED_OPEN)
BUCKETS = 10


@dataclass
class Config:
    failure_threshold: int = 5
    failure_rate_threshold: float | None = None
    slow_call_ms: float | None = None
    slow_call_rate_threshold: float = 1.0
    window_size: int = 100
    window_duration_ns: int = 0
    minimum_calls: int = 10
    cooldown_ns: int = 60_000_000_000
    cooldown_multiplier: float = 2.0
    cooldown_max_ns: int = 600_000_000_000
    half_open_probes: int = 3
    half_open_max_wait_ns: int = 0
    adaptive: bool = True
    ewma_alpha: float = 0.3
    sensitivity: float = 2.0
    min_health_score: float = 0.3
    latency_window: int = 50


@dataclass
class Permit:
    epoch: int
    probe: bool


@dataclass
class Ejector:
    max_percent: int
    members: int = 0
    ejected: int = 0
    vetoed: int = 0

    def can_eject(self) -> bool:
        return self.ejected < max(1, self.members * self.max_percent // 100)


# Linear inside each band. Written x * (1.0 / w), as the engine does, so the
# two agree to the last bit.
def latency_score(m: float) -> float:
    if m <= 100.0:
        return 1.0 - 0.05 * (m * (1.0 / 100.0))
    if m <= 1000.0:
        return 0.95 - 0.45 * ((m - 100.0) * (1.0 / 900.0))
    if m <= 5000.0:
        return 0.5 - 0.5 * ((m - 1000.0) * (1.0 / 4000.0))
    return 0.0


def jitter_score(s: float) -> float:
    if s <= 50.0:
        return 1.0 - 0.2 * (s * (1.0 / 50.0))
    if s <= 200.0:
        return 0.8 - 0.5 * ((s - 50.0) * (1.0 / 150.0))
    if s <= 500.0:
        return 0.3 - 0.3 * ((s - 200.0) * (1.0 / 300.0))
    return 0.0


@dataclass
class BreakerModel:
    cfg: Config
    now: int = 0
    ejector: Ejector | None = None
    state: int = CLOSED
    epoch: int = 0
    opened_at: int = 0
    half_open_since: int = 0
    cooldown: int = 0
    probes_granted: int = 0
    probe_successes: int = 0
    consecutive: int = 0
    # outcomes: count window keeps (failed, slow) tuples; time window keeps
    # (bucket_id, failed, slow) and drops what fell out.
    outcomes: deque = field(default_factory=deque)
    period: list = field(default_factory=list)
    head_id: int = 0
    latencies: deque = field(default_factory=deque)
    m: float = 0.0
    v: float = 0.0
    counts: dict = field(default_factory=dict)
    transitions: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self.cooldown = self.cfg.cooldown_ns
        self.latencies = deque(maxlen=self.cfg.latency_window)
        self.outcomes = deque(maxlen=None if self.timed else self.cfg.window_size)
        if self.timed:
            self.head_id = self.now // self.width
        self.counts = dict.fromkeys(
            ("permitted", "rejected", "successes", "failures", "slow", "released",
             "stale", "vetoed"), 0)
        if self.ejector is not None:
            self.ejector.members += 1

    # ---- derived -------------------------------------------------------
    @property
    def timed(self) -> bool:
        return self.cfg.window_duration_ns > 0

    @property
    def width(self) -> int:
        return self.cfg.window_duration_ns // BUCKETS

    @property
    def total(self) -> int:
        return len(self.outcomes)

    @property
    def failures(self) -> int:
        return sum(1 for o in self.outcomes if o[-2])

    @property
    def slow(self) -> int:
        return sum(1 for o in self.outcomes if o[-1])

    def success_rate(self) -> float:
        t = self.total
        return (t - self.failures) / t if t else 1.0

    def signal(self) -> float:
        s = self.m - self.cfg.sensitivity * (math.sqrt(self.v) if self.v > 0 else 0.0)
        return min(1.0, max(0.0, s))

    def effective_threshold(self) -> int:
        t = self.cfg.failure_threshold
        if not self.cfg.adaptive or t == 0:
            return t
        s = self.signal()
        if s > 0.7:
            return max(1, t // 3)
        if s > 0.5:
            return max(1, t // 2)
        if s > 0.3:
            return max(1, t * 3 // 4)
        return t

    def health(self) -> float:
        ls = js = 1.0
        if self.latencies:
            n = len(self.latencies)
            mean = sum(self.latencies) / n
            var = sum(x * x for x in self.latencies) / n - mean * mean
            ls = latency_score(mean)
            js = jitter_score(math.sqrt(var) if var > 0 else 0.0)
        # The engine caches the latency part per sample: same association here.
        return 0.5 * self.success_rate() + (0.3 * ls + 0.2 * js)

    def remaining(self) -> int:
        if self.state != OPEN:
            return 0
        return max(0, self.cooldown - (self.now - self.opened_at))

    # ---- transitions ---------------------------------------------------
    def _transition(self, new: int, reason: str) -> None:
        old = self.state
        self.state = new
        if {old, new} != {CLOSED, DEGRADED}:
            self.epoch += 1
        if self.ejector is not None:
            self.ejector.ejected += (new in EJECTED) - (old in EJECTED)
        self.transitions.append((old, new, reason))

    def _clear_window(self) -> None:
        self.outcomes.clear()
        self.period = []
        if self.timed:
            self.head_id = self.now // self.width
        self.latencies.clear()
        self.consecutive = 0

    def _open(self, reason: str) -> None:
        self.opened_at = self.now
        self._transition(OPEN, reason)

    def _close(self, reason: str) -> None:
        self._clear_window()
        self.cooldown = self.cfg.cooldown_ns
        self._transition(CLOSED, reason)

    def _reopen(self, reason: str) -> None:
        grown = float(self.cooldown) * self.cfg.cooldown_multiplier
        mx = self.cfg.cooldown_max_ns
        self.cooldown = mx if grown >= float(mx) else int(grown)
        self._open(reason)

    def _ewma(self, x: float) -> None:
        a = self.cfg.ewma_alpha
        d = x - self.m
        self.m = self.m + a * d
        self.v = (1.0 - a) * (self.v + a * d * d)

    def tick(self, now: int) -> None:
        self.now = max(self.now, now)
        if self.timed:
            bid = self.now // self.width
            if bid > self.head_id:
                head = [o for o in self.outcomes if o[0] == self.head_id]
                if head:
                    self._ewma(sum(1 for o in head if o[1]) / len(head))
                self.head_id = bid
                while self.outcomes and self.outcomes[0][0] <= bid - BUCKETS:
                    self.outcomes.popleft()
        if self.state == OPEN and self.now - self.opened_at >= self.cooldown:
            if self.cfg.half_open_probes == 0:
                self._close("cooldown_elapsed")
            else:
                self.half_open_since = self.now
                self.probes_granted = self.probe_successes = 0
                self._transition(HALF_OPEN, "cooldown_elapsed")
        elif (self.state == HALF_OPEN and self.cfg.half_open_max_wait_ns
              and self.now - self.half_open_since >= self.cfg.half_open_max_wait_ns):
            self._reopen("half_open_timeout")

    # ---- operations ----------------------------------------------------
    def acquire(self, now: int) -> Permit | tuple[str, int | None]:
        """A Permit, or ("rejected", remaining_ns or None when forced open)."""
        self.tick(now)
        if self.state in (CLOSED, DEGRADED, DISABLED):
            self.counts["permitted"] += 1
            return Permit(self.epoch, False)
        if self.state == HALF_OPEN and self.probes_granted < self.cfg.half_open_probes:
            self.probes_granted += 1
            self.counts["permitted"] += 1
            return Permit(self.epoch, True)
        self.counts["rejected"] += 1
        if self.state == FORCED_OPEN:
            return ("rejected", None)
        return ("rejected", self.remaining())

    def _trip_reason(self) -> str | None:
        c = self.cfg
        if c.failure_threshold and self.consecutive >= self.effective_threshold():
            return "consecutive_failures"
        t = self.total
        if t == 0 or t < c.minimum_calls:
            return None
        if c.failure_rate_threshold is not None and self.failures / t >= c.failure_rate_threshold:
            return "failure_rate"
        if c.slow_call_ms is not None and self.slow / t >= c.slow_call_rate_threshold:
            return "slow_call_rate"
        if self.health() < c.min_health_score / 2.0:
            return "health_critical"
        return None

    def outcome(self, permit: Permit | None, failed: bool, latency: float | None,
                now: int) -> None:
        self.tick(now)
        c = self.cfg
        slow = False
        if latency is not None:
            self.latencies.append(latency)
            if c.slow_call_ms is not None and latency >= c.slow_call_ms:
                slow = True
                self.counts["slow"] += 1
        if self.timed:
            self.outcomes.append((self.head_id, failed, slow))
        else:
            self.outcomes.append((failed, slow))
            self.period.append(failed)
            if len(self.period) == max(1, c.window_size // 10):
                self._ewma(sum(self.period) / len(self.period))
                self.period = []
        if failed:
            self.counts["failures"] += 1
            self.consecutive += 1
        else:
            self.counts["successes"] += 1
            self.consecutive = 0
        if permit is not None and permit.epoch != self.epoch:
            self.counts["stale"] += 1
            return
        if self.state in (CLOSED, DEGRADED):
            reason = self._trip_reason()
            if reason is not None:
                if self.ejector is not None and not self.ejector.can_eject():
                    self.ejector.vetoed += 1
                    self.counts["vetoed"] += 1
                    if self.state == CLOSED:
                        self._transition(DEGRADED, "ejection_capped")
                else:
                    self._open(reason)
                return
            if self.total == 0 or self.total < c.minimum_calls:
                return
            h = self.health()
            if self.state == CLOSED and h < c.min_health_score:
                self._transition(DEGRADED, "health_low")
            elif self.state == DEGRADED and h > 0.7:
                self._transition(CLOSED, "health_recovered")
        elif self.state == HALF_OPEN:
            if failed:
                self._reopen("probe_failed")
            else:
                self.probe_successes += 1
                if self.probe_successes >= c.half_open_probes:
                    self._close("probes_succeeded")

    def success(self, permit: Permit | None, latency: float | None, now: int) -> None:
        self.outcome(permit, False, latency, now)

    def failure(self, permit: Permit | None, latency: float | None, now: int) -> None:
        self.outcome(permit, True, latency, now)

    def release(self, permit: Permit | None, now: int) -> None:
        self.tick(now)
        self.counts["released"] += 1
        if (permit is not None and permit.epoch == self.epoch and permit.probe
                and self.state == HALF_OPEN and self.probes_granted > 0):
            self.probes_granted -= 1

    def force_open(self, now: int) -> None:
        self.tick(now)
        if self.state != FORCED_OPEN:
            self._transition(FORCED_OPEN, "force_open")

    def disable(self, now: int) -> None:
        self.tick(now)
        if self.state != DISABLED:
            self._transition(DISABLED, "disable")

    def open(self, now: int) -> None:
        self.tick(now)
        if self.state != OPEN:
            self._open("manual_open")

    def close(self, now: int) -> None:
        self.tick(now)
        if self.state != CLOSED:
            self._close("manual_close")

    def reset(self, now: int) -> None:
        self.tick(now)
        self._clear_window()
        self.m = self.v = 0.0
        self.cooldown = self.cfg.cooldown_ns
        self.probes_granted = self.probe_successes = 0
        if self.state != CLOSED:
            self._transition(CLOSED, "reset")
        for k in self.counts:
            self.counts[k] = 0
