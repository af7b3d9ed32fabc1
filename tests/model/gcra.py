"""Reference model of rs_gcra: the GCRA with exact fractions.

One token's interval is T = per_ns / rate ns (a Fraction); a bucket is its
theoretical arrival time tat. A call of cost c at now is admitted when
max(tat, now) + c * T - now <= tau = burst * T, and then tat becomes that
sum; a refused call changes nothing. The wait is the least whole number of
ns after which it would be admitted.

Per-key buckets are kept in the order of their last admission. A key
admitted last at t is forgotten once now - t >= ttl = ceil(tau) ns (its
bucket is full by then); a new key with max_keys keys kept forgets the one
admitted least recently. A key not kept has a full bucket.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from fractions import Fraction
from typing import Hashable


class GcraModel:
    def __init__(self, rate: Fraction, per_ns: int, burst: int, max_keys: int) -> None:
        self.interval = Fraction(per_ns) / rate
        self.burst = burst
        self.tau = burst * self.interval
        self.ttl = max(1, math.ceil(self.tau))
        self.max_keys = max_keys
        self.tat = Fraction(0)
        self.keys: OrderedDict[Hashable, tuple[int, Fraction]] = OrderedDict()
        self.admitted = self.rejected = 0

    def _expire(self, now: int) -> None:
        while self.keys:
            key, (t, _) = next(iter(self.keys.items()))
            if now - t < self.ttl:
                break
            del self.keys[key]

    def _tat(self, key: Hashable, now: int) -> Fraction:
        if key is None:
            return self.tat
        self._expire(now)
        entry = self.keys.get(key)
        return entry[1] if entry else Fraction(0)

    def wait_ns(self, now: int, cost: int = 1, key: Hashable = None) -> int:
        over = max(self._tat(key, now), now) + cost * self.interval - now - self.tau
        return max(0, math.ceil(over))

    def take(self, now: int, cost: int = 1, key: Hashable = None) -> bool:
        tat = self._tat(key, now)
        new = max(tat, now) + cost * self.interval
        if new - now > self.tau:
            self.rejected += 1
            return False
        self.admitted += 1
        if key is None:
            self.tat = new
        else:
            if key in self.keys:
                del self.keys[key]
            elif len(self.keys) >= self.max_keys:
                self.keys.popitem(last=False)
            self.keys[key] = (now, new)
        return True

    def live_keys(self, now: int) -> int:
        self._expire(now)
        return len(self.keys)
