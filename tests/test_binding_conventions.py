"""The C types keep the library's conventions: real signatures on the C
exceptions, keyword-only options of Backoff and RetryBudget, the jitter
error naming its parameter, and stats() on the C components in the common
vocabulary (depth, maxsize, rejected), with values that follow their state."""

from __future__ import annotations

import inspect
import json
import math
import pickle
import sys
import threading
from typing import Any

import pytest

import resil


# ---- signatures of the C exceptions -----------------------------------------------

@pytest.mark.parametrize("cls", [resil.ResilError, resil.QueueFull])
def test_c_exceptions_show_their_message_parameter(cls: type[Exception]) -> None:
    sig = inspect.signature(cls)
    assert list(sig.parameters) == ["message"]
    param = sig.parameters["message"]
    assert param.kind is param.POSITIONAL_ONLY and param.default == ""
    # The signature line is not repeated in the documentation a user reads.
    assert cls.__doc__ and not cls.__doc__.startswith(cls.__name__ + "(")
    err = pickle.loads(pickle.dumps(cls("it broke")))
    assert type(err) is cls and str(err) == "it broke"


def test_a_plain_subclass_of_resil_error_inherits_the_signature() -> None:
    class Mine(resil.ResilError):
        """An application's own error."""

    assert list(inspect.signature(Mine).parameters) == ["message"]


# ---- keyword-only options ---------------------------------------------------------

def test_backoff_takes_base_and_multiplier_positionally_and_the_rest_by_keyword() -> None:
    b = resil.Backoff(0.5, 3.0, max_delay=4.0, jitter="none", seed=1)
    assert (b.base, b.multiplier, b.max_delay) == (0.5, 3.0, 4.0)
    with pytest.raises(TypeError, match="at most 2 positional"):
        resil.Backoff(0.5, 3.0, 4.0)  # type: ignore[misc]
    params = inspect.signature(resil.Backoff).parameters
    assert [p.name for p in params.values() if p.kind is p.KEYWORD_ONLY] == \
        ["max_delay", "jitter", "seed"]


def test_retry_budget_takes_ratio_positionally_and_the_rest_by_keyword() -> None:
    b = resil.RetryBudget(0.5, min_per_second=0.0, window=2.0)
    assert b.stats()["ratio"] == 0.5 and b.stats()["window"] == 2.0
    with pytest.raises(TypeError, match="at most 1 positional"):
        resil.RetryBudget(0.5, 0.0)  # type: ignore[misc]
    params = inspect.signature(resil.RetryBudget).parameters
    assert [p.name for p in params.values() if p.kind is p.KEYWORD_ONLY] == \
        ["min_per_second", "window", "clock"]


# ---- jitter -----------------------------------------------------------------------

CHOICES = "'none', 'full', 'equal', 'decorrelated'"


@pytest.mark.parametrize("value, name", [(1, "int"), (None, "NoneType"), (b"full", "bytes"),
                                         (True, "bool")])
def test_a_jitter_that_is_not_a_str_is_a_type_error_naming_jitter(value: Any, name: str) -> None:
    with pytest.raises(TypeError) as info:
        resil.Backoff(jitter=value)
    assert str(info.value) == f"jitter must be a str, one of {CHOICES}, not {name}"


@pytest.mark.parametrize("value", ["fast", "", "full\x00", "FULL", "full "])
def test_a_jitter_of_another_name_is_a_value_error_naming_jitter(value: str) -> None:
    with pytest.raises(ValueError) as info:
        resil.Backoff(jitter=value)
    assert str(info.value) == f"jitter must be one of {CHOICES}, got {value!r}"


def test_every_jitter_name_is_taken_and_kept() -> None:
    for name in ("none", "full", "equal", "decorrelated"):
        assert resil.Backoff(jitter=name, seed=3).jitter == name
        # A str subclass is a str.
        assert resil.Backoff(jitter=type("S", (str,), {})(name), seed=3).jitter == name


# ---- stats() of the C components --------------------------------------------------

def _json(stats: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(stats, allow_nan=False))
    return out


def test_adaptive_interval_stats_follow_its_steps() -> None:
    iv = resil.AdaptiveInterval(1.0, 0.5, 2.0, 0.3)
    iv.update(0.9)                      # busy: x0.8
    iv.update(0.0)                      # quiet: x1.2
    st = _json(iv.stats())
    assert st == {"interval": pytest.approx(0.96), "updates": 2, "base": 1.0, "min": 0.5,
                  "max": 2.0, "threshold": 0.3, "speedup": 0.8, "slowdown": 1.2}
    iv.reset()
    assert (iv.stats()["interval"], iv.stats()["updates"]) == (1.0, 0)


def test_histogram_stats_are_its_attributes() -> None:
    h = resil.Histogram()
    assert _json(h.stats()) == {"count": 0, "clamped": 0, "min_ms": 0.0, "max_ms": 0.0,
                                "mean_ms": 0.0, "sub_bits": 7, "max_bits": 44,
                                "memory_bytes": h.memory_bytes}
    for ms in (1.0, 2.0, 6.0):
        h.record(ms)
    h.record_ns(2**44)
    st = _json(h.stats())
    assert st == {"count": h.count, "clamped": h.clamped, "min_ms": h.min_ms, "max_ms": h.max_ms,
                  "mean_ms": h.mean_ms, "sub_bits": h.sub_bits, "max_bits": h.max_bits,
                  "memory_bytes": h.memory_bytes}
    assert (st["count"], st["clamped"], st["min_ms"]) == (4, 1, 1.0)


def test_windowed_histogram_stats_follow_the_window_on_its_clock() -> None:
    clock = resil.VirtualClock()
    w = resil.WindowedHistogram(10.0, 2, clock=clock)
    w.record(4.0)
    clock.advance(5.0)
    w.record(8.0)
    st = _json(w.stats())
    assert st == {"count": 2, "clamped": 0, "min_ms": 4.0, "max_ms": 8.0, "mean_ms": 6.0,
                  "sub_bits": 6, "max_bits": 42, "memory_bytes": w.memory_bytes,
                  "retention": 10.0, "slots": 2}
    clock.advance(5.0)                  # the first slot ages out
    st = w.stats()
    assert (st["count"], st["min_ms"], st["max_ms"], st["mean_ms"]) == (1, 8.0, 8.0, 8.0)
    assert st["count"] == w.count() and st["min_ms"] == w.min_ms()
    clock.advance(10.0)
    st = w.stats()
    assert (st["count"], st["min_ms"], st["max_ms"], st["mean_ms"]) == (0, 0.0, 0.0, 0.0)


def test_windowed_histogram_stats_raise_what_the_clock_raises() -> None:
    class Broken:
        calls = 0

        def now(self) -> float:
            self.calls += 1
            if self.calls > 1:
                raise OSError("clock gone")
            return 0.0

    w = resil.WindowedHistogram(clock=Broken())
    w.record(1.0)
    with pytest.raises(OSError, match="clock gone"):
        w.stats()


def test_rate_counter_stats_count_accepted_and_rejected_hits() -> None:
    clock = resil.VirtualClock()
    r = resil.RateCounter(2, 1.0, clock=clock)
    assert [r.hit() for _ in range(5)] == [True, True, False, False, False]
    assert _json(r.stats()) == {"count": 2, "accepted": 2, "rejected": 3, "threshold": 2,
                                "window": 1.0}
    clock.advance(1.0)
    st = r.stats()
    assert (st["count"], st["accepted"], st["rejected"]) == (0, 2, 3)
    assert (st["accepted"], st["rejected"]) == (r.accepted, r.refused)
    r.reset()
    assert (r.stats()["accepted"], r.stats()["rejected"]) == (0, 0)


def test_deduplicator_stats_say_depth_and_maxsize() -> None:
    clock = resil.VirtualClock()
    d = resil.Deduplicator(ttl=5.0, capacity=2, clock=clock)
    for key in ("a", "b", "a", "c"):
        d.seen(key)
    st = _json(d.stats())
    assert st["depth"] == len(d) == 2 and st["maxsize"] == d.capacity == 2
    assert (st["duplicates"], st["evicted"], st["expired"]) == (1, 1, 0)
    assert "size" not in st and "capacity" not in st
    clock.advance(5.0)
    st = d.stats()
    assert (st["depth"], st["expired"]) == (0, 2)


def test_retry_budget_stats_count_refused_retries_as_rejected() -> None:
    clock = resil.VirtualClock()
    b = resil.RetryBudget(0.0, min_per_second=1.0, window=1.0, clock=clock)
    assert [b.try_retry() for _ in range(3)] == [True, False, False]
    st = _json(b.stats())
    assert (st["rejected"], st["total_retries"]) == (2, 1) and "denied" not in st


def test_stats_of_one_window_stay_consistent_under_thread_switches() -> None:
    """stats() reads the clock once and the core without running Python
    code in between, so a writer thread never shows half an update."""
    w = resil.WindowedHistogram(60.0, 4)
    r = resil.RateCounter(1000, 60.0)
    stop = threading.Event()

    def writer() -> None:
        i = 0
        while not stop.is_set():
            w.record(float(i % 7 + 1))
            r.hit()
            i += 1

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    t = threading.Thread(target=writer)
    t.start()
    try:
        for _ in range(2000):
            st = w.stats()
            if st["count"]:
                assert 1.0 <= st["min_ms"] <= st["mean_ms"] <= st["max_ms"] <= 7.0
                assert math.isfinite(st["mean_ms"])
            rs = r.stats()
            assert rs["count"] == rs["accepted"] <= 1000  # nothing ages out in 60 s
    finally:
        stop.set()
        t.join()
        sys.setswitchinterval(old)


def test_a_jitter_whose_repr_raises_still_gets_the_value_error() -> None:
    class Odd(str):
        def __repr__(self) -> str:
            raise RuntimeError("no repr")

    with pytest.raises(ValueError, match=r"^jitter must be one of 'none', .*, got "):
        resil.Backoff(jitter=Odd("fast"))
