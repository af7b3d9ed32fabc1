"""Reference model of the BoundedQueue engine (rs_ring + watermarks + counters)."""

from __future__ import annotations

import math
from collections import deque
from typing import Any


class QueueModel:
    def __init__(self, maxsize: int, warn_at: float, reject_at: float, now: int) -> None:
        self._set_limits(maxsize, warn_at, reject_at)
        self.items: deque[tuple[Any, int]] = deque()
        self.unfinished = self.put = self.got = self.rejected = self.warnings = 0
        self.in_warning = False

    def configure(self, maxsize: int, warn_at: float, reject_at: float) -> None:
        """New size and watermarks; the items stay. A depth in the warning
        zone counts as an entry into it when the queue was not in it."""
        self._set_limits(maxsize, warn_at, reject_at)
        if len(self.items) >= self.warn_limit:
            if not self.in_warning:
                self.in_warning = True
                self.warnings += 1
        else:
            self.in_warning = False

    def _set_limits(self, maxsize: int, warn_at: float, reject_at: float) -> None:
        self.maxsize = maxsize
        self.reject_limit = max(1, math.ceil(reject_at * maxsize))
        self.warn_limit = max(1, math.ceil(warn_at * maxsize))

    def put_nowait(self, item: Any, now: int) -> bool:
        """False when rejected (QueueFull)."""
        if len(self.items) >= self.reject_limit:
            self.rejected += 1
            return False
        self.items.append((item, now))
        self.put += 1
        self.unfinished += 1
        if len(self.items) >= self.warn_limit and not self.in_warning:
            self.in_warning = True
            self.warnings += 1
        return True

    def get_nowait(self) -> tuple[bool, Any]:
        if not self.items:
            return False, None
        item, _ = self.items.popleft()
        self.got += 1
        if self.in_warning and len(self.items) < self.warn_limit:
            self.in_warning = False
        return True, item

    def task_done(self) -> bool:
        if self.unfinished == 0:
            return False
        self.unfinished -= 1
        return True

    def oldest_age(self, now: int) -> int:
        return now - self.items[0][1] if self.items else 0

    def mean_age(self, now: int) -> float:
        if not self.items:
            return 0.0
        return now - sum(t for _, t in self.items) / len(self.items)
