"""Reference model of rs_dedup: an OrderedDict of key -> time, oldest first,
and a dict of the values given with put().

Mirrors the engine's bookkeeping: each seen() or put() first drops at most
two expired entries, a known-but-expired key is recorded again as the newest
(counted as expired), and at capacity the oldest entry is evicted.
configure() changes ttl and capacity as rs_dedup_configure does. put() of
a recorded key, live or expired, gives it the new value and time (the
newest), like a dict assignment, and counts no duplicate; seen() of a new or
expired key records it without a value (None).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable


class DedupModel:
    def __init__(self, ttl_ns: int, capacity: int) -> None:
        self.ttl, self.capacity = ttl_ns, capacity
        self.keys: OrderedDict[Hashable, int] = OrderedDict()
        self.values: dict[Hashable, object] = {}
        self.duplicates = self.expired = self.evicted = 0

    def expire(self, now: int, limit: int = 0) -> None:
        n = 0
        while self.keys and (limit == 0 or n < limit):
            key, t = next(iter(self.keys.items()))
            if now - t < self.ttl:
                break
            del self.keys[key]
            self.values.pop(key, None)
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
            self.values.pop(key, None)
            return False
        self._insert(key, now)
        return False

    def _insert(self, key: Hashable, now: int) -> None:
        if len(self.keys) == self.capacity:
            oldest, _ = self.keys.popitem(last=False)
            self.values.pop(oldest, None)
            self.evicted += 1
        self.keys[key] = now

    def put(self, key: Hashable, value: object, now: int) -> bool:
        """True when key was live."""
        self.expire(now, 2)
        live = self.contains(key, now)
        if key in self.keys:
            if not live:
                self.expired += 1
            self.keys[key] = now
            self.keys.move_to_end(key)
        else:
            self._insert(key, now)
        self.values[key] = value
        return live

    def get(self, key: Hashable, now: int, default: object = None) -> object:
        return self.values.get(key) if self.contains(key, now) else default

    def contains(self, key: Hashable, now: int) -> bool:
        return key in self.keys and now - self.keys[key] < self.ttl

    def discard(self, key: Hashable) -> bool:
        self.values.pop(key, None)
        return self.keys.pop(key, None) is not None

    def configure(self, ttl_ns: int, capacity: int, now: int) -> None:
        """Entries expired under the old or the new ttl go (counted as
        expired), then the oldest beyond the capacity (counted as evicted)."""
        self.expire(now)
        self.ttl = ttl_ns
        self.expire(now)
        while len(self.keys) > capacity:
            oldest, _ = self.keys.popitem(last=False)
            self.values.pop(oldest, None)
            self.evicted += 1
        self.capacity = capacity

    def size(self, now: int) -> int:
        self.expire(now)
        return len(self.keys)
