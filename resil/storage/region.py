"""Host-wide shared state: :class:`SharedRegion`, a memory-mapped file that
the worker processes of one host share, and :class:`RegionError`."""

from __future__ import annotations

from typing import Any, NoReturn

from resil._resil import Region, RegionError

__all__ = ["RegionError", "SharedRegion"]


class SharedRegion(Region):
    """A memory-mapped region file that every process of a host opening the
    same ``path`` shares: objects created with ``shared=region``
    (:class:`resil.CircuitBreaker`, :class:`resil.RateLimiter`,
    :class:`resil.Deduplicator`, :class:`resil.Bulkhead`) live in it, and
    the processes using one behave as one object used from several
    threads. State changes are made
    in C under a robust process-shared lock, held only for the change
    itself, never over a protected call; a process killed while holding it
    (SIGKILL included) leaves nothing locked, and the next process repairs
    what the interrupted change may have left half-done.

    ``path``: the region file (str, bytes or os.PathLike). Put it on a
    memory file system: ``/dev/shm/<name>`` on Linux, so the region never
    touches a disk; any path works. The file is created when missing (mode
    0600: only its owner may open it) and then kept; remove it to start
    afresh, once no process uses it. ``size``: the bytes of a new region,
    an int in [65536, 2**40]; default 1 MiB. 31,872 bytes hold the header
    and a directory of up to 128 objects; a circuit breaker takes about 3.3
    KiB plus ``window_size`` bytes, 8 per ``latency_window`` and 64 per
    ``half_open_probes`` (3,968 bytes with the defaults); a rate limiter takes 256 bytes
    plus 64 bytes per key of ``max_keys`` (rounded up to a multiple of 8;
    the table has room for twice that, so that keys are not forgotten early);
    a deduplicator 192 bytes plus 64 bytes per key of ``capacity`` (rounded
    up to a multiple of 8; 4096 unless given); a bulkhead 168 bytes plus 32
    per slot and per process that may wait (``min(max_queue, 64)``).
    The size is fixed when the file is made: opening an existing region
    uses the file's size, whatever ``size`` says. ``lease``: seconds, a
    finite number > 0, default 30; the longest a lock in the region is
    waited for (a lock is held for microseconds, so a longer wait means a
    stopped holder or a damaged file: RegionError), and, for objects that
    hand out permits, the time after which a dead holder's permit is taken
    back. Like ``size``, it is the file's once the region exists.

    A region whose creation was interrupted (its creator killed) is made
    again by the next process to open it: a header marked unfinished, or a
    file of at least 65536 bytes that are all zero (reserved, never
    written: it holds nothing). A file with any byte set that is not a
    region, is truncated, comes from another layout version or is damaged
    raises :class:`RegionError` naming the path and is left as it is; an
    object that no longer fits raises RegionError naming ``size``. Every
    offset and length read from the file is checked before use. The file
    must not be truncated while a process has it open (as with any mapped
    file, reading past its new end would end that process).

    Opening an object that exists checks its structure, then, when no
    process holds its lock, repairs its state (counts a killed process may
    have left wrong) rather than refusing it; this walks the object's
    table, in time proportional to ``max_keys``.

    ``stats()`` gives the region's figures, ``objects()`` what it holds
    (type, name, parameters), ``check()`` walks it and lists any problem;
    it takes no lock, so run it while no process updates the region (an
    update in progress reads as a problem).
    ``close()`` (or leaving a ``with`` block) unmaps it from this process;
    objects attached through it then raise RegionError.
    """

    def __reduce__(self) -> NoReturn:
        raise TypeError("a SharedRegion cannot be pickled: open the same path in each process")

    def __getstate__(self) -> Any:
        raise TypeError("a SharedRegion cannot be pickled: open the same path in each process")
