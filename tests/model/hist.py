"""Reference model of rs_hist: every sample kept in a list, answers exact.

HistModel and WindowModel answer count/min/max/mean and the nearest-rank
quantile (the sample of rank max(1, ceil(q * count))) from the samples
themselves. bucket_index/bucket_bounds reproduce the C bucket layout, and
reported() gives the value the C returns for a quantile: the midpoint of the
exact sample's bucket clamped into [min, max] (min for rank 1, max for rank
count), so a lockstep test can assert equality, not just closeness. The C
mean is a running double sum; compare it with a relative tolerance.
"""

from __future__ import annotations

import math
from fractions import Fraction


def bucket_count(sub_bits: int, max_bits: int) -> int:
    return (max_bits - sub_bits + 1) << sub_bits


def bucket_index(v: int, sub_bits: int, max_bits: int) -> int:
    """Index of v's bucket; values >= 2**max_bits go to the top bucket."""
    if v >= 1 << max_bits:
        return bucket_count(sub_bits, max_bits) - 1
    shift = (v | (1 << sub_bits)).bit_length() - 1 - sub_bits
    return (shift << sub_bits) + (v >> shift)


def bucket_bounds(index: int, sub_bits: int) -> tuple[int, int]:
    """Inclusive (lo, hi) of a bucket."""
    shift = max((index >> sub_bits) - 1, 0)
    lo = (index - (shift << sub_bits)) << shift
    return lo, lo + (1 << shift) - 1


def rank(q: float, count: int) -> int:
    """max(1, ceil(q * count)) on the exact binary q, a product within one
    ulp (q * count * 2**-52) above an integer n counting as n; 0 if empty."""
    if count == 0:
        return 0
    if math.isnan(q) or q <= 0:
        return 1
    if q >= 1:
        return count
    p = Fraction(q) * count
    n = math.floor(p)
    if p - n > p / 2**52:
        n += 1
    return max(1, n)


class HistModel:
    def __init__(self, sub_bits: int = 7, max_bits: int = 44) -> None:
        self.sub_bits, self.max_bits = sub_bits, max_bits
        self.samples: list[int] = []

    def record(self, v: int, n: int = 1) -> None:
        self.samples.extend([v] * n)

    def merge(self, other: HistModel) -> None:
        self.samples.extend(other.samples)

    @property
    def count(self) -> int:
        return len(self.samples)

    @property
    def clamped(self) -> int:
        return sum(1 for v in self.samples if v >= 1 << self.max_bits)

    def min(self) -> int:
        return min(self.samples, default=0)

    def max(self) -> int:
        return max(self.samples, default=0)

    def mean(self) -> float:
        return sum(self.samples) / len(self.samples) if self.samples else 0.0

    def quantile(self, q: float) -> int:
        """The exact sample of the nearest rank; 0 when empty."""
        if not self.samples:
            return 0
        return sorted(self.samples)[rank(q, self.count) - 1]

    def reported(self, q: float) -> int:
        """What the C rs_hist_quantile returns for the same samples."""
        if not self.samples:
            return 0
        r = rank(q, self.count)
        if r == 1:
            return self.min()
        if r == self.count:
            return self.max()
        lo, hi = bucket_bounds(bucket_index(self.quantile(q), self.sub_bits, self.max_bits),
                               self.sub_bits)
        return min(max(lo + (hi - lo) // 2, self.min()), self.max())


class WindowModel:
    """nslots slots of slot_ns; a sample at epoch e is live while
    max(now // slot_ns, head) - e < nslots; a late record joins the head."""

    def __init__(self, nslots: int, slot_ns: int, sub_bits: int = 7, max_bits: int = 44) -> None:
        self.nslots, self.slot_ns = nslots, slot_ns
        self.sub_bits, self.max_bits = sub_bits, max_bits
        self.head = 0
        self.samples: list[tuple[int, int]] = []  # (epoch, value)

    def record(self, now: int, v: int, n: int = 1) -> None:
        if n == 0:  # changes nothing, time included
            return
        self.head = max(now // self.slot_ns, self.head)
        self.samples.extend([(self.head, v)] * n)

    def live(self, now: int) -> HistModel:
        e = max(now // self.slot_ns, self.head)
        h = HistModel(self.sub_bits, self.max_bits)
        h.samples = [v for ep, v in self.samples if e - ep < self.nslots]
        return h
