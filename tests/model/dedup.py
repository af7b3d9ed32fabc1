"""Reference model of rs_dedup: an OrderedDict of key -> time, oldest first.

Mirrors the engine's bookkeeping: each seen() first drops at most two
expired entries, a known-but-expired key is recorded again as the newest
(counted as expired), and at capacity the oldest entry is evicted.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable


class DedupModel:
    def __init__(self, ttl_ns: int, capacity: int) -> None:
        self.ttl, self.capacity = ttl_ns, capacity
        self.keys: OrderedDict[Hashable, int] = OrderedDict()
        self.duplicates = self.expired = self.evicted = 0

    def expire(self, now: int, limit: int = 0) -> None:
        n = 0
        while self.keys and (limit == 0 or n < limit):
            key, t = next(iter(self.keys.items()))
            if now - t < self.ttl:
                break
            del self.keys[key]
            self.expired += 1
            n += 1

    def seen(self, key: Hashable, now: int) -> bool:
        self.expire(now, 2)
        if key in self.keys:
            if now - self.keys[key] < self.ttl:
                self.duplicates += 1
                return True
            self.expired += 1
            self.keys[key] = now
            self.keys.move_to_end(key)
            return False
        if len(self.keys) == self.capacity:
            self.keys.popitem(last=False)
            self.evicted += 1
        self.keys[key] = now
        return False

    def contains(self, key: Hashable, now: int) -> bool:
        return key in self.keys and now - self.keys[key] < self.ttl

    def discard(self, key: Hashable) -> bool:
        return self.keys.pop(key, None) is not None

    def size(self, now: int) -> int:
        self.expire(now)
        return len(self.keys)
