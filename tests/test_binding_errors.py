"""Every C type checks its configuration the same way: a wrong type raises
TypeError naming the parameter; a value out of range (NaN, an infinity and an
int too large for a double included) raises ValueError naming the parameter
and the range, as the type's field table (``_ranges``) gives it, and the
bounds that message states are the bounds enforced."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable

import pytest

import resil
from resil import _resil


@dataclass(frozen=True)
class Target:
    label: str
    ranges_of: type                      # the C type whose _ranges describe it
    make: Callable[..., Any]             # make(**changes) builds or reconfigures
    nullable: frozenset[str] = frozenset()  # parameters where None is a value
    # extra arguments that keep a parameter's other rules satisfied at a bound
    companions: dict[str, dict[str, Any]] = field(default_factory=dict)
    # bounds not tried as accepted values (they would allocate gigabytes)
    too_big: frozenset[str] = frozenset()


def _ctor(cls: Any, **base: Any) -> Callable[..., Any]:
    return lambda **kw: cls(**{**base, **kw})


def _configure(**kw: Any) -> Any:
    b = resil.CircuitBreaker(clock=resil.VirtualClock())
    b.configure(**kw)
    return b


_BREAKER_NULLABLE = frozenset({"failure_rate_threshold", "slow_call_duration", "window_duration",
                               "half_open_max_wait"})
_BREAKER_COMPANIONS = {
    "cooldown": {"cooldown_max": 9.2e9},
    "cooldown_max": {"cooldown": 0},
    "window_size": {"minimum_calls": 0},
    "minimum_calls": {"window_duration": 1.0},
}

TARGETS = [
    Target("CircuitBreaker()", _resil.Breaker, _ctor(resil.CircuitBreaker),
           _BREAKER_NULLABLE, _BREAKER_COMPANIONS),
    Target("CircuitBreaker.configure()", _resil.Breaker, _configure,
           _BREAKER_NULLABLE, _BREAKER_COMPANIONS),
    Target("Backoff()", resil.Backoff, _ctor(resil.Backoff),
           companions={"base": {"max_delay": 1e300}, "max_delay": {"base": 0}}),
    Target("RetryBudget()", resil.RetryBudget, _ctor(resil.RetryBudget)),
    Target("Deduplicator()", resil.Deduplicator, _ctor(resil.Deduplicator)),
    Target("Histogram()", resil.Histogram, _ctor(resil.Histogram),
           companions={"sub_bits": {"max_bits": 63}, "max_bits": {"sub_bits": 1}}),
    Target("WindowedHistogram()", resil.WindowedHistogram, _ctor(resil.WindowedHistogram),
           companions={"sub_bits": {"max_bits": 63}, "max_bits": {"sub_bits": 1}}),
    Target("RateCounter()", resil.RateCounter, _ctor(resil.RateCounter, threshold=10, window=1.0)),
    Target("AdaptiveInterval()", resil.AdaptiveInterval,
           _ctor(resil.AdaptiveInterval, base=1.0, min=0.5, max=2.0, threshold=0.0),
           companions={"base": {"min": 1e-300, "max": 1e300}, "min": {"base": 1e300, "max": 1e300},
                       "max": {"min": 1e-300, "base": 1e-300}}),
    Target("BoundedQueue()", _resil.Ring, _ctor(resil.BoundedQueue),
           companions={"reject_at": {"warn_at": 1e-300}, "warn_at": {"reject_at": 1.0}},
           too_big=frozenset({"maxsize"})),
    Target("VirtualClock()", resil.VirtualClock, _ctor(resil.VirtualClock)),
    Target("BreakerGroup()", _resil.EjectionPool, _ctor(resil.BreakerGroup)),
]

CASES = [(t, name) for t in TARGETS for name in sorted(t.ranges_of._ranges)]  # type: ignore[attr-defined]
IDS = [f"{t.label}-{name}" for t, name in CASES]


def _spec(t: Target, name: str) -> dict[str, Any]:
    return t.ranges_of._ranges[name]  # type: ignore[attr-defined, no-any-return]


def _outside(spec: dict[str, Any]) -> list[Any]:
    """Values just past each finite bound, and the non-finite ones."""
    lo, hi = spec["lo"], spec["hi"]
    values: list[Any] = []
    if spec["kind"] == "int":
        if not math.isinf(lo):
            values.append(lo - 1)
        if not math.isinf(hi):
            values.append(hi + 1)
        return values + [10**400, -(10**400)]
    if not math.isinf(lo):
        values.append(lo if spec["lo_open"] else math.nextafter(lo, -math.inf))
    if not math.isinf(hi):
        values.append(hi if spec["hi_open"] else math.nextafter(hi, math.inf))
    return values + [math.nan, math.inf, -math.inf, 10**400, -(10**400)]


def _wrong_types(t: Target, name: str, spec: dict[str, Any]) -> list[Any]:
    values: list[Any] = ["1", [1], 1j, True, False, object()]
    if name not in t.nullable:
        values.append(None)
    if spec["kind"] == "int":
        values += [1.0, 1.5, math.nan]
    return values


def test_every_target_has_a_table() -> None:
    for t in TARGETS:
        ranges = t.ranges_of._ranges  # type: ignore[attr-defined]
        assert ranges, t.label
        for name, spec in ranges.items():
            assert spec["kind"] in ("int", "number", "seconds"), (t.label, name)
            assert spec["lo"] <= spec["hi"], (t.label, name)


def test_constructor_parameters_are_all_checked_by_a_table() -> None:
    """Every numeric parameter of the C constructors is in its type's table."""
    import inspect
    non_numeric = {"name", "clock", "adaptive", "failure_on", "ignore", "failure_if",
                   "result_failure", "jitter", "seed", "shared", "cluster"}
    # CircuitBreaker's cluster parameters are its Python layer's, not the C
    # type's (checked in tests/test_redis_breaker.py::test_bad_arguments).
    python_only = {"sync_interval", "min_hosts"}
    for t in TARGETS:
        if "configure" in t.label:
            continue
        cls = {_resil.Ring: resil.BoundedQueue, _resil.Breaker: resil.CircuitBreaker,
               _resil.EjectionPool: _resil.EjectionPool}.get(t.ranges_of, t.ranges_of)
        params = set(inspect.signature(cls).parameters) - non_numeric - python_only
        assert params <= set(t.ranges_of._ranges), (t.label, params)  # type: ignore[attr-defined]


@pytest.mark.parametrize("t, name", CASES, ids=IDS)
def test_wrong_type_is_type_error_naming_the_parameter(t: Target, name: str) -> None:
    for value in _wrong_types(t, name, _spec(t, name)):
        with pytest.raises(TypeError, match=rf"^{name} must be an? [^,]*, not ") as info:
            t.make(**{name: value})
        assert type(value).__name__ in str(info.value), (value, str(info.value))


@pytest.mark.parametrize("t, name", CASES, ids=IDS)
def test_out_of_range_is_value_error_naming_parameter_and_range(t: Target, name: str) -> None:
    accepts = _spec(t, name)["accepts"]
    # a rule against another parameter may add that parameter's value
    bounds, _, rule = accepts.partition(" and ")
    for value in _outside(_spec(t, name)):
        with pytest.raises(ValueError) as info:
            t.make(**{name: value, **t.companions.get(name, {})})
        text = str(info.value)
        assert text.startswith(f"{name} must be {bounds}"), (value, text)
        assert rule in text and ", got " in text, (value, text)


_NUMBER = r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:e-?\d+)?"


@pytest.mark.parametrize("t, name", CASES, ids=IDS)
def test_message_states_the_enforced_bounds(t: Target, name: str) -> None:
    """The numbers in the message are the table's bounds, and a value on a
    closed bound is accepted."""
    spec = _spec(t, name)
    lo, hi = spec["lo"], spec["hi"]
    words = spec["accepts"]
    shown = [float(x) for x in re.findall(_NUMBER, words.split(" and ")[0])]
    finite = [b for b in (lo, hi) if not math.isinf(b)]
    assert shown == [float(b) for b in finite], (words, lo, hi)
    if not math.isinf(lo):
        assert ("(" if spec["lo_open"] else "[") in words or (">" in words)
    for bound, is_open in ((lo, spec["lo_open"]), (hi, spec["hi_open"])):
        if math.isinf(bound) or is_open or name in t.too_big:
            continue
        t.make(**{name: bound, **t.companions.get(name, {})})


@pytest.mark.parametrize("make, kw, message", [
    (_ctor(resil.Backoff), {"base": 100},
     r"^max_delay must be .* and >= base, got 30\.0 \(its default\)$"),
    (_ctor(resil.Backoff), {"base": 5, "max_delay": 1},
     r"^max_delay must be .* and >= base, got 1$"),
    (_ctor(resil.AdaptiveInterval, threshold=0.0), {"base": 5, "min": 1, "max": 2},
     r"^base must be .* and in \[min, max\], got 5$"),
    (_ctor(resil.AdaptiveInterval, threshold=0.0), {"base": 1, "min": 1, "max": 0.5},
     r"^max must be .* and >= min, got 0\.5$"),
    (_ctor(resil.BoundedQueue), {"reject_at": 0.5},
     r"^warn_at must be .* and <= reject_at, got 0\.8 \(its default\)$"),
    (_ctor(resil.Histogram), {"sub_bits": 7, "max_bits": 7},
     r"^max_bits must be .* and > sub_bits \(7\), got 7$"),
    (_ctor(resil.WindowedHistogram), {"sub_bits": 9, "max_bits": 3},
     r"^max_bits must be .* and > sub_bits \(9\), got 3$"),
    (_ctor(resil.CircuitBreaker), {"cooldown_max": 1.0},
     r"^cooldown_max must be .* and >= cooldown, got 1\.0$"),
    (_configure, {"minimum_calls": 101},
     r"^minimum_calls must be .* and <= window_size for a count window, got 101$"),
])
def test_rule_between_parameters_names_one_and_the_rule(make: Callable[..., Any],
                                                        kw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make(**kw)


def test_jitter_names_its_choices() -> None:
    with pytest.raises(ValueError,
                       match=r"^jitter must be one of 'none', 'full', 'equal', 'decorrelated', "
                             r"got 'fast'$"):
        resil.Backoff(jitter="fast")


def test_failed_configure_changes_nothing() -> None:
    b = resil.CircuitBreaker(clock=resil.VirtualClock())
    before = b.config
    spec = _resil.Breaker._ranges  # type: ignore[attr-defined]
    for name in spec:
        for value in _outside(spec[name]) + ["1", None, True]:
            if value is None and name in _BREAKER_NULLABLE:
                continue
            with pytest.raises((TypeError, ValueError)):
                b.configure(failure_threshold=1, **{name: value})
            assert b.config == before, (name, value)
