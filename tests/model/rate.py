"""Reference model of rs_rate: the accepted times in a plain list.

An accepted event at t counts at now while now - t < window_ns. hit() accepts
while fewer than threshold count; a refused event is not recorded. A now
smaller than the largest seen so far is read as that largest (the clamp);
reset() forgets events and counters but not the clamp.

The ring that holds the times in C has no behaviour of its own, only a size,
bounded here: empty until the first event and after reset(), never more than
threshold slots, never more than twice the most events that counted at once
since the last reset (it doubles only when all its slots count), and right
after count() never more than four times what counts (it shrinks there).
"""

from __future__ import annotations

MIN_CAPACITY = 8  # the first ring's slots (RS_RATE_MIN_CAP)


class RateModel:
    def __init__(self, threshold: int, window_ns: int) -> None:
        self.threshold, self.window_ns = threshold, window_ns
        self.times: list[int] = []
        self.last = 0
        self.accepted = self.refused = 0
        self.peak = 0  # most events counting at once since the last reset

    def _now(self, now: int) -> int:
        self.last = max(self.last, now)
        return self.last

    def count(self, now: int) -> int:
        now = self._now(now)
        return sum(1 for t in self.times if now - t < self.window_ns)

    def hit(self, now: int) -> bool:
        counting = self.count(now)
        if counting >= self.threshold:
            self.refused += 1
            return False
        self.times.append(self.last)
        self.accepted += 1
        self.peak = max(self.peak, counting + 1)
        return True

    def reset(self) -> None:
        self.times.clear()
        self.accepted = self.refused = 0
        self.peak = 0

    def capacity_ok(self, capacity: int, after_count: int | None = None) -> bool:
        """Whether the C ring's size is within the bounds above; ``after_count``
        is what count() just returned, when it was the last call."""
        if capacity > min(self.threshold, max(MIN_CAPACITY, 2 * self.peak)):
            return False
        return after_count is None or capacity <= max(MIN_CAPACITY, 4 * after_count)
