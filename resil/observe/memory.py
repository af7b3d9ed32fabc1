"""The process's resident memory, read without third-party packages."""

from __future__ import annotations

import os
import sys

__all__ = ["resident_bytes"]

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


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
