"""Reference model of rs_backoff: exponential delay, cap, jitter, splitmix64.

Same float operations in the same order as the engine, so results agree to
the last bit.
"""

from __future__ import annotations

import math

MASK = (1 << 64) - 1
MODES = ("none", "full", "equal", "decorrelated")


class BackoffModel:
    def __init__(self, base: float, multiplier: float, max_delay: float, jitter: str,
                 seed: int) -> None:
        self.base, self.multiplier, self.max_delay = base, multiplier, max_delay
        self.jitter = jitter
        self.state = seed & MASK

    def _next(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def uniform(self) -> float:
        return float((self._next() >> 11) + 1) * (1.0 / 9007199254740992.0)

    def raw(self, attempt: int) -> float:
        if self.base == 0.0:
            return 0.0
        try:
            d = self.base * self.multiplier ** float(min(attempt, 63))
        except OverflowError:  # C's pow gives +inf here
            d = float("inf")
        return d if d < self.max_delay else self.max_delay

    def delay(self, attempt: int, prev: float | None = None) -> float:
        d = self.raw(attempt)
        if self.jitter == "full":
            j = d * self.uniform()
            d = j if j > 0.0 or d == 0.0 else math.nextafter(0.0, 1.0)
        elif self.jitter == "equal":
            half = 0.5 * d
            j = half + 0.5 * d * self.uniform()
            if j <= half and d > 0.0:
                j = min(math.nextafter(half, math.inf), d)
            d = j
        elif self.jitter == "decorrelated":
            if prev is None:
                prev = self.base if attempt == 0 else self.raw(attempt - 1)
            hi = 3.0 * prev
            if not hi >= self.base:
                hi = self.base
            if hi > self.max_delay:
                hi = self.max_delay
            d = self.base + (hi - self.base) * self.uniform()
        return d if d < self.max_delay else self.max_delay
