"""The objects a :class:`~resil.SharedRegion` holds, attached in this
process, for the exporters (``resil.prometheus``, ``resil.otel``): any
worker renders every object of the region once, with host-wide values.

Each type the region lists in ``objects()`` has one line in ``_ATTACH``:
how to build the class from its parameters with ``shared=region``. The
exporters then read the attached object as they read a local one (its
``stats()``, a monitor's counts), so its families and labels are those of
the local object. Attached objects are kept per region handle, for as long
as that handle lives, and made again when an object's parameters differ
(a region file made anew at the same path).
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any

from resil.storage.region import SharedRegion
from resil.messaging.dedup import Deduplicator
from resil.observe.monitor import Monitor
from resil.policies.breaker import CircuitBreaker
from resil.policies.ratelimit import RateLimiter

__all__ = ["attached"]

_log = logging.getLogger("resil.region")

_Attach = Callable[[SharedRegion, str, dict[str, Any]], Any]


def _monitor(region: SharedRegion, name: str, p: dict[str, Any]) -> Monitor:
    return Monitor(p["retention"], slots=p["slots"], alert_error_rate=p["alert_error_rate"],
                   alert_response_ms=p["alert_response_ms"],
                   max_components=p["max_components"], max_series=p["max_series"], name=name,
                   shared=region)


# type name in objects() -> how to attach it (its parameters are the
# constructor's keyword arguments of the same names unless a function says
# otherwise).
_ATTACH: dict[str, _Attach] = {
    "RateLimiter": lambda region, name, p: RateLimiter(name=name, shared=region, **p),
    "CircuitBreaker": lambda region, name, p: CircuitBreaker(name, shared=region, **p),
    "Deduplicator": lambda region, name, p: Deduplicator(name=name, shared=region, **p),
    "Monitor": _monitor,
}

# region handle -> {(type, name): (parameters, attached object)}
_Held = dict[tuple[str, str], tuple[dict[str, Any], Any]]
_CACHE: weakref.WeakKeyDictionary[SharedRegion, _Held] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()
_unknown_logged: set[str] = set()


def attached(region: SharedRegion) -> list[tuple[str, str, Any]]:
    """``(type, name, object)`` for every object in ``region`` whose type
    this process can attach, in the region's order. A type it cannot
    (written by a newer resil) is logged once and left out."""
    with _LOCK:
        cache = _CACHE.setdefault(region, {})
    out: list[tuple[str, str, Any]] = []
    for entry in region.objects():
        kind, name, params = entry["type"], entry["name"], entry["parameters"]
        attach = _ATTACH.get(kind)
        if attach is None:
            if kind not in _unknown_logged:
                _unknown_logged.add(kind)
                _log.warning("region %r holds a %s object this resil cannot export; "
                             "it is left out", region.path, kind)
            continue
        with _LOCK:
            held = cache.get((kind, name))
        if held is None or held[0] != params:
            obj = attach(region, name, params)
            with _LOCK:
                held = cache.setdefault((kind, name), (params, obj))
                if held[0] != params:
                    held = cache[(kind, name)] = (params, obj)
        out.append((kind, name, held[1]))
    return out
