"""Reference model of resil.WindowedCounter (an rs_window time window).

The window is cut into `slots` slots of width = window_ns // slots ns; a
time t is in slot t // width. Every add is kept as (slot, n). The newest
slot seen (starting with the creation time's) is the clamp: a time in an
older slot is read as the newest. An add in slot e counts while the newest
slot is < e + slots. clear() forgets every add and keeps the clamp.
"""

from __future__ import annotations


class WindowedCounterModel:
    def __init__(self, window_ns: int, slots: int, now: int) -> None:
        self.slots = slots
        self.width = window_ns // slots
        self.newest = now // self.width
        self.adds: list[tuple[int, int]] = []

    def _slot(self, now: int) -> int:
        self.newest = max(self.newest, now // self.width)
        return self.newest

    def add(self, now: int, n: int) -> None:
        self.adds.append((self._slot(now), n))

    def total(self, now: int) -> int:
        head = self._slot(now)
        return sum(n for slot, n in self.adds if head - slot < self.slots)

    def clear(self, now: int) -> None:
        self._slot(now)
        self.adds.clear()
