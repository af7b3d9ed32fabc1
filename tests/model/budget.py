"""Reference model of rs_budget: requests and retries in 10 time buckets.

A retry is allowed while (retries + 1) <= ratio * requests over the window,
or while fewer than min_per_second retries happened in the last second.
Events are kept in a plain list with their bucket id.
"""

from __future__ import annotations

BUCKETS = 10
SEC = 1_000_000_000


class BudgetModel:
    def __init__(self, ratio: float, min_per_second: float, window_ns: int, now: int) -> None:
        self.ratio, self.min_per_second = ratio, min_per_second
        self.width = window_ns // BUCKETS
        self.second_width = SEC // BUCKETS
        self.now = now
        self.events: list[tuple[int, str]] = []   # (bucket id, "request" | "retry")
        self.recent: list[int] = []               # bucket ids of retries, 100 ms buckets
        self.rejected = 0

    def _roll(self, now: int) -> None:
        self.now = max(self.now, now)
        head = self.now // self.width
        self.events = [e for e in self.events if e[0] > head - BUCKETS]
        head_s = self.now // self.second_width
        self.recent = [b for b in self.recent if b > head_s - BUCKETS]

    def counts(self, now: int) -> tuple[int, int, int]:
        self._roll(now)
        requests = sum(1 for _, kind in self.events if kind == "request")
        return requests, len(self.events) - requests, len(self.recent)

    def request(self, now: int) -> None:
        self._roll(now)
        self.events.append((self.now // self.width, "request"))

    def try_retry(self, now: int) -> bool:
        requests, retries, last_second = self.counts(now)
        if not (retries + 1.0 <= self.ratio * requests or last_second < self.min_per_second):
            self.rejected += 1
            return False
        self.events.append((self.now // self.width, "retry"))
        self.recent.append(self.now // self.second_width)
        return True
