"""Reference model of rs_adaptive: an adaptive concurrency limit, said
plainly, with the same float arithmetic as the C core so the two agree
exactly.

A call is admitted while fewer calls than the limit in force are in flight
(min_limit during a probe of the baseline latency, else floor(limit));
otherwise it is refused and counted. Each finished call is one sample
(latency in ns, dropped or not). The first PROBE_SAMPLES samples of calls
admitted during a probe set the baseline (their least latency); a probe
runs at the start and again PROBE_INTERVAL_NS after the last one ended.
Outside a probe a sample may raise the limit only if its call started with
at least half the limit in flight, and lower it only if its call started
with at most the limit in flight; then the algorithm moves the limit:

- aimd: a drop or a latency above 1.5 x baseline multiplies it by 0.9,
  anything else adds 1 (before the first decrease) or 1 / limit;
- vegas: queue = ceil(limit * (1 - baseline / latency)), lg = max(1,
  log10(limit)); queue <= lg adds 4 lg, queue < 2 lg adds lg, queue > 4 lg
  subtracts max(lg, (queue - 4 lg) / 2); a drop subtracts lg;
- gradient: g = clamp(1.25 * baseline / latency, 0.5, 1) (0.5 on a drop),
  and the limit moves halfway to limit * g + sqrt(limit).

The limit is always clamped to [min_limit, max_limit].
"""

from __future__ import annotations

import math

ALGORITHMS = ("aimd", "vegas", "gradient")
MAX = 1 << 30
PROBE_SAMPLES = 10
PROBE_INTERVAL_NS = 30 * 10**9


class AdaptiveModel:
    def __init__(self, algorithm: str = "gradient", initial_limit: int = 20,
                 min_limit: int = 1, max_limit: int = 1000) -> None:
        if algorithm not in ALGORITHMS:
            raise ValueError("algorithm")
        if not 1 <= min_limit <= MAX:
            raise ValueError("min_limit")
        if not min_limit <= max_limit <= MAX:
            raise ValueError("max_limit")
        if not min_limit <= initial_limit <= max_limit:
            raise ValueError("initial_limit")
        self.algorithm = algorithm
        self.min_limit, self.max_limit = min_limit, max_limit
        self.estimate = float(initial_limit)
        self.in_flight = 0
        self.admitted = self.rejected = self.dropped = 0
        self.slow_start = True
        self.probing, self.probe_left, self.probe_seq, self.probe_min = True, PROBE_SAMPLES, 0, 0
        self.probe_end = 0
        self.min_ns = 0

    @property
    def limit(self) -> int:
        return self.min_limit if self.probing else int(self.estimate)

    def try_acquire(self) -> tuple[int, int] | None:
        """(seq, in_flight) of an admitted call, or None (counted)."""
        if self.in_flight < self.limit:
            self.in_flight += 1
            self.admitted += 1
            return (self.admitted, self.in_flight)
        self.rejected += 1
        return None

    def _clamp(self, v: float) -> float:
        return min(float(self.max_limit), max(float(self.min_limit), v))

    def release(self, permit: tuple[int, int], now_ns: int, latency_ns: int,
                dropped: bool) -> None:
        if self.in_flight == 0:
            raise ValueError("nothing in flight")
        seq, started_with = permit
        self.in_flight -= 1
        if dropped:
            self.dropped += 1
        lat = max(1, latency_ns)
        if self.probing:
            if seq > self.probe_seq and not dropped:
                self.probe_min = lat if self.probe_min == 0 else min(self.probe_min, lat)
                self.probe_left -= 1
                if self.probe_left == 0:
                    self.probing = False
                    self.min_ns = self.probe_min
                    self.probe_end = now_ns
            return
        grow = 2.0 * started_with >= self.estimate
        shrink = started_with <= self.estimate
        getattr(self, "_" + self.algorithm)(float(lat), grow, shrink, dropped)
        if now_ns >= self.probe_end and now_ns - self.probe_end >= PROBE_INTERVAL_NS:
            self.probing, self.probe_left, self.probe_seq, self.probe_min = \
                True, PROBE_SAMPLES, self.admitted, 0

    def discard(self) -> None:
        """A cancelled call gives its slot back: no sample, nothing counted."""
        if self.in_flight == 0:
            raise ValueError("nothing in flight")
        self.in_flight -= 1

    def _aimd(self, lat: float, grow: bool, shrink: bool, dropped: bool) -> None:
        if dropped or lat > 1.5 * self.min_ns:
            if shrink:
                self.estimate = self._clamp(self.estimate * 0.9)
                self.slow_start = False
        elif grow:
            self.estimate = self._clamp(
                self.estimate + (1.0 if self.slow_start else 1.0 / self.estimate))

    def _vegas(self, lat: float, grow: bool, shrink: bool, dropped: bool) -> None:
        lg = max(1.0, math.log10(self.estimate))
        if dropped:
            if shrink:
                self.estimate = self._clamp(self.estimate - lg)
            return
        queue = math.ceil(self.estimate * (1.0 - self.min_ns / lat))
        if queue <= lg:
            if grow:
                self.estimate = self._clamp(self.estimate + 4.0 * lg)
        elif queue < 2.0 * lg:
            if grow:
                self.estimate = self._clamp(self.estimate + lg)
        elif queue > 4.0 * lg and shrink:
            self.estimate = self._clamp(self.estimate - max(lg, (queue - 4.0 * lg) / 2.0))

    def _gradient(self, lat: float, grow: bool, shrink: bool, dropped: bool) -> None:
        g = 0.5 if dropped else 1.25 * self.min_ns / lat
        if g >= 1.0:
            if not grow:
                return
            g = 1.0
        elif not shrink:
            return
        else:
            g = max(g, 0.5)
        target = self.estimate * g + math.sqrt(self.estimate)
        self.estimate = self._clamp(self.estimate + 0.5 * (target - self.estimate))

    def stats(self) -> dict[str, object]:
        return {"algorithm": self.algorithm, "limit": self.limit, "in_flight": self.in_flight,
                "admitted": self.admitted, "rejected": self.rejected, "dropped": self.dropped,
                "min_latency_ms": None if self.min_ns == 0 else self.min_ns / 1e6}
