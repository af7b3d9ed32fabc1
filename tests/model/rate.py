"""Reference model of rs_rate: the accepted times in a plain list.

An accepted event at t counts at now while now - t < window_ns. hit() accepts
while fewer than threshold count; a refused event is not recorded. A now
smaller than the largest seen so far is read as that largest (the clamp);
reset() forgets events and counters but not the clamp.
"""

from __future__ import annotations


class RateModel:
    def __init__(self, threshold: int, window_ns: int) -> None:
        self.threshold, self.window_ns = threshold, window_ns
        self.times: list[int] = []
        self.last = 0
        self.accepted = self.refused = 0

    def _now(self, now: int) -> int:
        self.last = max(self.last, now)
        return self.last

    def count(self, now: int) -> int:
        now = self._now(now)
        return sum(1 for t in self.times if now - t < self.window_ns)

    def hit(self, now: int) -> bool:
        if self.count(now) >= self.threshold:
            self.refused += 1
            return False
        self.times.append(self.last)
        self.accepted += 1
        return True

    def reset(self) -> None:
        self.times.clear()
        self.accepted = self.refused = 0
