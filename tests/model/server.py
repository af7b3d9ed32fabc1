"""A simulated server for adaptive concurrency limits, on virtual time.

Capacity C: a call admitted while n calls are in flight (itself included)
takes ``base_ns`` when n <= C and ``base_ns * n / C`` beyond, as a FIFO
queue in front of C workers would. The clients offer more load than any
limit: after every completion they call until refused. Used by the
convergence tests (tests/test_adaptive.py) and benchmarks/bench_adaptive.py.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence
from typing import Any

BASE_NS = 10_000_000  # the server's latency without a queue: 10 ms


def simulate(limiter: Any, clock: Any, capacities: Sequence[int], calls: int,
             base_ns: int = BASE_NS) -> Iterator[int]:
    """Drives ``limiter`` (try_acquire, release, in_flight, limit) on
    ``clock`` (a resil.VirtualClock) for ``calls`` completed calls at each
    capacity in turn; yields the limit after each completed call. Each call
    is released without a latency: the limiter measures it on the clock."""
    pending: list[tuple[int, int, Any]] = []
    seq = 0
    capacity = capacities[0]

    def fill() -> None:
        nonlocal seq
        while (permit := limiter.try_acquire()) is not None:
            n = limiter.in_flight
            latency = base_ns if n <= capacity else base_ns * n // capacity
            seq += 1
            heapq.heappush(pending, (clock.now_ns() + latency, seq, permit))

    fill()
    for i in range(len(capacities) * calls):
        capacity = capacities[i // calls]
        due, _, permit = heapq.heappop(pending)
        clock.advance_ns(due - clock.now_ns())
        limiter.release(permit)
        yield limiter.limit
        fill()


def settled_after(limits: Sequence[int], low: float, high: float) -> int:
    """The number of calls after which every limit of ``limits`` lies in
    [low, high]: the first call from which the limit stays in the band to
    the end of the list (len(limits) when it never does)."""
    at = len(limits)
    while at > 0 and low <= limits[at - 1] <= high:
        at -= 1
    return at
