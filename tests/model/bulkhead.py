"""Reference model of rs_bulkhead: the slot and wait-line counts of a
bulkhead and its admission decisions, said plainly.

A caller is admitted while a slot is free and nobody waits; else it joins
the line while the line has room; else it is refused. A slot given back
while callers wait is handed to the first of them (it stays taken, reserved
for that waiter until it starts or declines). Misuse (giving back a slot
nobody holds, starting without a handed slot, leaving an empty line)
raises ValueError and changes nothing.
"""

from __future__ import annotations

ADMITTED, QUEUED, FULL = 0, 1, 2
FREED, HANDED, WAITERS = 0, 1, 2
MAX = 1 << 30


class BulkheadModel:
    def __init__(self, max_concurrent: int = 10, max_queue: int = 0) -> None:
        if not 1 <= max_concurrent <= MAX:
            raise ValueError("max_concurrent")
        if not 0 <= max_queue <= MAX:
            raise ValueError("max_queue")
        self.max_concurrent, self.max_queue = max_concurrent, max_queue
        self.running = 0   # slots held by calls that started
        self.reserved = 0  # slots handed to woken waiters not started yet
        self.line = 0      # waiters
        self.admitted = self.rejected = self.timed_out = self.peak = 0

    @property
    def active(self) -> int:
        return self.running + self.reserved

    def _admit(self) -> None:
        self.admitted += 1
        self.peak = max(self.peak, self.active)

    def try_enter(self) -> bool:
        if self.active < self.max_concurrent and self.line == 0:
            self.running += 1
            self._admit()
            return True
        return False

    def try_acquire(self) -> bool:
        if self.try_enter():
            return True
        self.rejected += 1
        return False

    def acquire(self) -> int:
        if self.try_enter():
            return ADMITTED
        if self.line < self.max_queue:
            self.line += 1
            return QUEUED
        self.rejected += 1
        return FULL

    def release(self, hand_off: bool) -> int:
        """A started call gives its slot back."""
        if self.running == 0:
            raise ValueError("no slot taken")
        if self.line and not hand_off:
            return WAITERS
        self.running -= 1
        return self._give(1)

    def _give(self, n: int) -> int:
        """One slot just left its holder: to the first waiter, or free."""
        if self.line:
            self.line -= 1
            self.reserved += n
            return HANDED
        return FREED

    def start(self) -> None:
        if self.reserved == 0:
            raise ValueError("no slot handed")
        self.reserved -= 1
        self.running += 1
        self._admit()

    def decline(self) -> int:
        if self.reserved == 0:
            raise ValueError("no slot handed")
        self.reserved -= 1
        return self._give(1)

    def leave(self, timed_out: bool) -> None:
        if self.line == 0:
            raise ValueError("nobody waits")
        self.line -= 1
        if timed_out:
            self.timed_out += 1

    def stats(self) -> dict[str, int]:
        return {"max_concurrent": self.max_concurrent, "active": self.active,
                "queued": self.line, "admitted": self.admitted, "rejected": self.rejected,
                "timed_out": self.timed_out, "peak_active": self.peak}
