"""The process's resident memory, read without third-party packages, and
resil.MemoryTracker, which samples it."""

from __future__ import annotations

import collections
import os
import sys
import threading
from types import TracebackType
from typing import Any

from resil import _check, _time

__all__ = ["resident_bytes", "MemoryTracker"]

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_MB = float(1 << 20)


def resident_bytes() -> int:
    """Return this process's resident set size in bytes.

    On Linux this is the current resident set (``/proc/self/statm``). Where
    ``/proc`` is absent it falls back to the peak resident set reported by
    ``getrusage`` (the only figure the other POSIX systems give without a
    third-party package); where neither exists it returns 0.
    """
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        pass
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is in kilobytes on Linux and the BSDs, in bytes on macOS.
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024


class MemoryTracker:
    """Samples this process's resident memory and keeps its statistics.

    ``MemoryTracker(max_snapshots=100, *, clock=None)``:

    - ``sample() -> float`` reads the resident set (:func:`~resil.observe.memory.resident_bytes`)
      and records it; returns it in MB (2**20 bytes).
    - ``stats()`` -> ``peak_mb`` (the largest sample), ``avg_mb`` (the mean
      of every sample), ``samples`` (how many were taken) and ``snapshots``
      (the last ``max_snapshots`` samples, oldest first, each ``{"time",
      "rss_mb"}`` with ``time`` in Unix seconds). ``peak_mb``, ``avg_mb``
      and ``samples`` cover every sample, not only the snapshots kept; with
      no sample yet they are 0.0, 0.0 and 0.
    - ``with tracker:`` (or ``async with``) samples on entering and on
      leaving, so the statistics cover a phase of work.
    - ``await tracker()`` samples and returns an activity for
      :meth:`AdaptiveScheduler.add`: the relative change of the resident
      set since the previous sample (``abs(new - old) / old``, 0.0 for
      the first), so the scheduler samples more often while memory moves.

    ``max_snapshots``: an int in [1, 2**20] (TypeError or ValueError naming
    it otherwise). ``clock``: what the snapshots' ``time`` follows, any
    object with ``now()`` in seconds (a :class:`VirtualClock` in tests): the
    Unix time when the tracker was made plus the seconds the clock moved
    since; None (default): ``time.time()``. Thread-safe.
    """

    def __init__(self, max_snapshots: int = 100, *, clock: Any = None) -> None:
        _check.integer(max_snapshots, "max_snapshots", 1, 1 << 20)
        self._now = _time.unix_time(clock)
        self._clock = clock
        self._snapshots: collections.deque[dict[str, float]] = collections.deque(
            maxlen=max_snapshots)
        self._lock = threading.Lock()
        self._samples = 0
        self._sum_mb = 0.0
        self._peak_mb = 0.0
        self._last_mb: float | None = None

    @property
    def max_snapshots(self) -> int:
        """Snapshots kept at most."""
        maxlen = self._snapshots.maxlen
        assert maxlen is not None
        return maxlen

    @property
    def clock(self) -> Any:
        """The clock the snapshots' times follow, or None (the system's wall clock)."""
        return self._clock

    def sample(self) -> float:
        """Records the resident memory now; returns it in MB."""
        return self._record()[0]

    def _record(self) -> tuple[float, float | None]:
        """(this sample in MB, the previous one or None)."""
        mb = resident_bytes() / _MB
        when = self._now()
        with self._lock:
            previous = self._last_mb
            self._last_mb = mb
            self._samples += 1
            self._sum_mb += mb
            if mb > self._peak_mb:
                self._peak_mb = mb
            self._snapshots.append({"time": when, "rss_mb": mb})
        return mb, previous

    def stats(self) -> dict[str, Any]:
        """The memory statistics, JSON-serialisable: peak_mb, avg_mb and
        samples over every sample, snapshots (the last ``max_snapshots``,
        each ``{"time", "rss_mb"}``)."""
        with self._lock:
            samples = self._samples
            return {"peak_mb": self._peak_mb,
                    "avg_mb": self._sum_mb / samples if samples else 0.0,
                    "samples": samples,
                    "snapshots": [dict(s) for s in self._snapshots]}

    async def __call__(self) -> float:
        mb, previous = self._record()
        return abs(mb - previous) / previous if previous else 0.0

    def __enter__(self) -> MemoryTracker:
        self.sample()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.sample()

    async def __aenter__(self) -> MemoryTracker:
        return self.__enter__()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.__exit__(exc_type, exc, tb)

    def __repr__(self) -> str:
        return f"<MemoryTracker samples={self._samples} peak_mb={self._peak_mb:.1f}>"
