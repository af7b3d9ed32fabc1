"""Argument checks shared by the Python layer.

Each check raises ``TypeError`` for a value of the wrong type and
``ValueError`` for one out of range, and both name the parameter and what it
accepts. ``bool`` is never taken for a number. Ranges are compared on the
value as given, so an int too large for a float is out of range (never an
``OverflowError``) and NaN fails every range.
"""

from __future__ import annotations

import math
import sys
from typing import Any

#: The largest duration the C clocks represent, in seconds (2**63 ns).
MAX_SECONDS = 9.2e9


def show(value: Any) -> str:
    """``repr(value)`` for an error message; an int too long to print in
    full (or at all: Python refuses more than 4,300 digits) is summarised
    by its size in bits."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"an int of {value.bit_length()} bits"
    return repr(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def finite(value: Any) -> bool:
    """True for an int or float (not a bool) that is finite as a float."""
    try:
        return _is_number(value) and math.isfinite(value)
    except OverflowError:  # an int beyond any float
        return False


def _bound(n: int) -> str:
    """A range end as people write it: 2**31, 2**63 - 1, 100."""
    for delta, suffix in ((0, ""), (1, " - 1")):
        m = abs(n) + delta
        if m >= 1 << 16 and m & (m - 1) == 0:
            return f"{'-' if n < 0 else ''}2**{m.bit_length() - 1}{suffix}"
    return str(n)


def integer(value: Any, name: str, low: int, high: int, *, optional: bool = False) -> int:
    """``value`` as an int in [low, high]; ``optional`` says that None is
    accepted too (the caller handles None)."""
    bounds = f"{'None or ' if optional else ''}an int in [{_bound(low)}, {_bound(high)}]"
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be {bounds}, not {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be {bounds}, got {show(value)}")
    return int(value)


def number(value: Any, name: str, low: float = -math.inf, high: float = math.inf, *,
           low_open: bool = False, what: str = "number", optional: bool = False) -> float:
    """``value`` (an int or a float) as a float in [low, high], or in
    (low, high] with ``low_open``; the default range is every finite number.
    ``what`` names the kind of number in messages; ``optional`` says that
    None is accepted too (the caller handles None)."""
    either = "None or " if optional else ""
    if not _is_number(value):
        raise TypeError(f"{name} must be {either}a {what}, not {type(value).__name__}")
    ok = (value > low if low_open else value >= low) and value <= high
    converted = math.nan
    if ok:
        try:
            converted = float(value)
        except OverflowError:  # an int beyond any float
            ok = False
        else:
            ok = math.isfinite(converted)
    if not ok:
        bounds = "" if low == -math.inf and high == math.inf else \
            f" in {'(' if low_open else '['}{low:g}, {high:g}]"
        raise ValueError(f"{name} must be {either}a finite {what}{bounds}, got {show(value)}")
    return converted


def seconds(value: Any, name: str, *, low: float = 0.0, high: float = MAX_SECONDS,
            low_open: bool = True, optional: bool = False) -> float:
    """A finite duration in seconds, by default in (0, 9.2e9]."""
    return number(value, name, low, high, low_open=low_open, what="number of seconds",
                  optional=optional)


def text(value: Any, name: str) -> str:
    """A non-empty str."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a non-empty str, not {type(value).__name__}")
    if not value:
        raise ValueError(f"{name} must be a non-empty str, got ''")
    return value


def limit(value: Any, name: str, *, optional: bool = False) -> float:
    """A time limit in seconds >= 0 where ``inf`` means no limit (so does
    an int too large for a float, and None with ``optional``): the limit
    as a float, ``math.inf`` for none."""
    either = "None or " if optional else ""
    if value is None and optional:
        return math.inf
    if not _is_number(value):
        raise TypeError(f"{name} must be {either}a number of seconds >= 0 (inf: no limit), "
                        f"not {type(value).__name__}")
    if not value >= 0:  # also NaN
        raise ValueError(f"{name} must be {either}a number of seconds >= 0 (inf: no limit), "
                         f"got {show(value)}")
    try:
        return float(value)
    except OverflowError:  # an int beyond any float: no limit either
        return math.inf


def clock(value: Any, name: str = "clock") -> Any:
    """``value`` when it is None or has a ``now()`` method (seconds)."""
    if value is not None and not callable(getattr(value, "now", None)):
        raise TypeError(f"{name} must have a now() method returning seconds (a "
                        f"resil.MonotonicClock or resil.VirtualClock) or be None, "
                        f"not {type(value).__name__}")
    return value


def flag(value: Any, name: str) -> bool:
    """A bool (an int is not taken for one)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, not {type(value).__name__}")
    return value


def function(value: Any, name: str, *, optional: bool = False) -> Any:
    """``value`` when it is callable (or None, with ``optional``)."""
    if not callable(value) and not (optional and value is None):
        raise TypeError(f"{name} must be {'None or ' if optional else ''}callable, "
                        f"not {type(value).__name__}")
    return value


def choice(value: Any, name: str, options: tuple[str, ...]) -> str:
    """One of the strings in ``options``."""
    accepted = ", ".join(map(repr, options))
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, one of {accepted}, not {type(value).__name__}")
    if value not in options:
        raise ValueError(f"{name} must be one of {accepted}, got {value!r}")
    return value


def utf8(**texts: str | None) -> None:
    """Raises ValueError naming the first of ``texts`` (name=value) that
    UTF-8 cannot encode - a str holding a lone surrogate, which neither a
    SQLite file nor Redis can store - and TypeError naming one that is
    neither a str nor None; None and ASCII pass at once."""
    for name, value in texts.items():
        if value is None:
            continue
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a str, not {type(value).__name__}")
        if value.isascii():
            continue
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            shown = repr(value) if len(value) <= 80 else repr(value[:77]) + "..."
            raise ValueError(f"{name} must be encodable as UTF-8 (it holds a lone surrogate, "
                             f"{value[exc.start]!r} at index {exc.start}): {shown}") from None


def event_bounds(from_seq: Any, to_seq: Any, since: Any, event_type: Any) -> float | None:
    """The bounds of a read of an event log, each None or: ``from_seq`` and
    ``to_seq`` ints (a signed 64-bit range, as a store's numbers are),
    ``since`` a finite Unix time, ``event_type`` a non-empty str. Returns
    ``since`` as a float (or None)."""
    for value, name in ((from_seq, "from_seq"), (to_seq, "to_seq")):
        if value is not None:
            integer(value, name, -(1 << 63), (1 << 63) - 1, optional=True)
    if event_type is not None:
        text(event_type, "event_type")
        utf8(event_type=event_type)  # a lone surrogate: no stored event has it
    if since is None:
        return None
    return number(since, "since", what="Unix time", optional=True)


def cluster(value: Any) -> Any:
    """``value`` when it is a :class:`resil.redis.RedisBackend`, else
    TypeError naming ``cluster``. Imports nothing: a RedisBackend exists
    only once resil.redis (and redis-py) was imported, so a wrong value
    costs no import."""
    backend = sys.modules.get("resil.redis._backend")
    if backend is None or not isinstance(value, backend.RedisBackend):
        raise TypeError(f"cluster must be None or a resil.redis.RedisBackend, "
                        f"not {type(value).__name__}")
    return value
