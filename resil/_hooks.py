"""Listeners: the explicit callback list a component calls with what it did."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from resil import _check

__all__ = ["Listeners", "EventListener"]

#: ``listener(kind, name)``: a resilience event of ``kind`` (``"retry"``,
#: ``"timeout"``, ``"grace_recovery"``, ``"dead_letter"``) under ``name``.
EventListener = Callable[[str, str], object]

# Adding or removing reads the tuple, then stores a new one; rare, so one lock.
_LOCK = threading.Lock()


class Listeners:
    """A component's listeners, called in the order they were added.

    ``notify`` costs one truth test while there are none. A listener that
    raises is logged on the component's logger and never breaks the
    component (cancellation and other BaseExceptions propagate)."""

    __slots__ = ("_fns", "_log", "__weakref__")

    def __init__(self, log: logging.Logger) -> None:
        self._fns: tuple[EventListener, ...] = ()
        self._log = log

    def __bool__(self) -> bool:
        return bool(self._fns)

    def add(self, fn: EventListener) -> None:
        _check.function(fn, "listener")
        with _LOCK:
            self._fns = self._fns + (fn,)

    def remove(self, fn: EventListener) -> None:
        """Removes ``fn`` (compared by identity); absent: nothing happens."""
        with _LOCK:
            self._fns = tuple(f for f in self._fns if f is not fn)

    def notify(self, kind: str, name: str) -> None:
        for fn in self._fns:
            try:
                fn(kind, name)
            except Exception:
                self._log.exception("%s listener %r for %r failed", kind, fn, name)
