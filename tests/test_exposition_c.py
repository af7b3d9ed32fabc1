"""resil._resil.breaker_exposition: the Prometheus text exposition (format
0.0.4) of many circuit breakers, rendered in C.

Every test reads the output back with prometheus_client's own parser and
checks it against each breaker's stats().
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

import resil
from resil import CircuitBreaker, State, VirtualClock, _resil

expo = _resil.breaker_exposition

PREFIX = "resil_circuit_breaker"
# (family name as the parser reports it, sample name, type), in output order.
# The parser names a counter family without its _total suffix.
FAMILIES = [
    ("state", "state", "gauge"),
    ("failures", "failures_total", "counter"),
    ("latency_ms", "latency_ms", "gauge"),
    ("last_opened_timestamp_seconds", "last_opened_timestamp_seconds", "gauge"),
    ("success_ratio", "success_ratio", "gauge"),
    ("health_score", "health_score", "gauge"),
]


def parse(text: str, prefix: str = PREFIX) -> dict[str, Any]:
    fams = list(text_string_to_metric_families(text))
    assert [f.name for f in fams] == [f"{prefix}_{name}" for name, _, _ in FAMILIES]
    for f, (_, _, typ) in zip(fams, FAMILIES):
        assert f.type == typ, f.name
    return {name: f for f, (name, _, _) in zip(fams, FAMILIES)}


def expected(st: dict[str, Any]) -> dict[str, float | None]:
    """What each family should show for one breaker, from its stats()."""
    return {"state": int(st["state"]), "failures": st["failures"],
            "latency_ms": st["avg_latency_ms"], "last_opened_timestamp_seconds": st["last_opened"],
            "success_ratio": st["success_rate"], "health_score": st["health_score"]}


def check(text: str, breakers: list[Any], label: str = "endpoint",
          prefix: str = PREFIX) -> None:
    """Every family, label and value of text against each breaker's stats()
    (read after rendering, at the same virtual time)."""
    fams = parse(text, prefix)
    stats = [b.stats() for b in breakers]
    for name, sample_name, _ in FAMILIES:
        samples = fams[name].samples
        want = [(s["name"], expected(s)[name]) for s in stats]
        want = [(n, v) for n, v in want if v is not None]  # never opened: no sample
        assert [s.name for s in samples] == [f"{prefix}_{sample_name}"] * len(want)
        assert [s.labels for s in samples] == [{label: n} for n, _ in want], name
        assert [s.value for s in samples] == [v for _, v in want], name
        assert all(s.timestamp is None for s in samples)


def fail_times(b: CircuitBreaker, n: int, latency_ms: float = 1.0) -> None:
    for _ in range(n):
        b.record_failure(b.acquire(), latency_ms)


def zoo(clock: VirtualClock) -> list[CircuitBreaker]:
    """Breakers in every state; the one due for HALF_OPEN gets there only when
    brought up to date (the exposition must do that first)."""
    never = CircuitBreaker("never", clock=clock)
    latency = CircuitBreaker("latency", clock=clock)
    for ms in (12.5, 7.25, 30.0, 0.1):
        latency.record_success(latency.acquire(), ms)
    fail_times(latency, 2, 40.0)
    opened = CircuitBreaker("opened", clock=clock, failure_threshold=3)
    fail_times(opened, 3)
    half = CircuitBreaker("half", clock=clock, cooldown=10)
    half.open()
    forced = CircuitBreaker("forced", clock=clock)
    forced.force_open()
    disabled = CircuitBreaker("disabled", clock=clock)
    disabled.disable()
    fail_times(disabled, 7)
    degraded = CircuitBreaker("degraded", clock=clock, min_health_score=0.9, minimum_calls=1)
    for _ in range(5):
        degraded.record_success(degraded.acquire(), 100_000.0)
    reclosed = CircuitBreaker("reclosed", clock=clock)
    reclosed.open()
    reclosed.close()
    clock.advance(10)  # `half` is now due for HALF_OPEN
    return [never, latency, opened, half, forced, disabled, degraded, reclosed]


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(1000)


@pytest.fixture(autouse=True)
def quiet_breaker_log(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    caplog.set_level(logging.CRITICAL, logger="resil.breaker")
    yield


# ---- families, values and states -----------------------------------------

def test_every_family_matches_stats_in_every_state(clock: VirtualClock) -> None:
    bs = zoo(clock)
    text = expo(bs)
    check(text, bs)
    states = [int(s.value) for s in parse(text)["state"].samples]
    assert states == [State.CLOSED, State.CLOSED, State.OPEN, State.HALF_OPEN,
                      State.FORCED_OPEN, State.DISABLED, State.DEGRADED, State.CLOSED]
    opened = [s.labels["endpoint"] for s in parse(text)["last_opened_timestamp_seconds"].samples]
    assert opened == ["opened", "half", "reclosed"]
    failures = {s.labels["endpoint"]: s.value for s in parse(text)["failures"].samples}
    assert failures["latency"] == 2 and failures["opened"] == 3 and failures["disabled"] == 7


def test_layout_help_type_and_number_spelling(clock: VirtualClock) -> None:
    bs = zoo(clock)
    lines = expo(bs).split("\n")
    assert lines[-1] == ""  # ends with a newline
    lines = lines[:-1]
    types = [ln for ln in lines if ln.startswith("# TYPE ")]
    assert types == [f"# TYPE {PREFIX}_{s} {t}" for _, s, t in FAMILIES]
    helps = [ln for ln in lines if ln.startswith("# HELP ")]
    assert [h.split()[2] for h in helps] == [f"{PREFIX}_{s}" for _, s, _ in FAMILIES]
    for state in State:  # the state encoding is spelled out
        assert f"{state.value} {state.name}" in helps[0]
    # Each family: HELP, TYPE, then its samples, before the next family starts.
    heads = [i for i, ln in enumerate(lines) if ln.startswith("# HELP ")]
    assert [lines[i + 1] for i in heads] == types
    for (_, s, _), start in zip(FAMILIES, heads):
        body = lines[start + 2:]
        body = body[:next((i for i, ln in enumerate(body) if ln.startswith("#")), len(body))]
        assert all(ln.startswith(f"{PREFIX}_{s}{{endpoint=") for ln in body)
    samples = [ln for ln in lines if not ln.startswith("#")]
    ints = [ln for ln in samples if "_state{" in ln or "_failures_total{" in ln]
    floats = [ln for ln in samples if ln not in ints]
    assert len(ints) == 2 * len(bs) and all("." not in ln.rsplit(" ", 1)[1] for ln in ints)
    # Floats as repr() writes them: the shortest text that reads back exactly.
    latency = bs[1].stats()["avg_latency_ms"]
    assert f'{PREFIX}_latency_ms{{endpoint="latency"}} {latency!r}' in floats
    assert f'{PREFIX}_success_ratio{{endpoint="never"}} 1.0' in floats
    assert f'{PREFIX}_latency_ms{{endpoint="never"}} 0.0' in floats


def test_due_transition_runs_before_reading(clock: VirtualClock) -> None:
    b = CircuitBreaker("due", clock=clock, cooldown=5)
    seen: list[tuple[State, State, str]] = []
    b.on_state_change(lambda _b, old, new, reason: seen.append((old, new, reason)))
    b.open()
    clock.advance(5)
    text = expo([b])
    assert seen[-1][:2] == (State.OPEN, State.HALF_OPEN)
    assert parse(text)["state"].samples[0].value == State.HALF_OPEN
    check(text, [b])


def test_last_opened_is_unix_time_as_in_stats(clock: VirtualClock) -> None:
    import time
    b = CircuitBreaker("t", clock=clock)
    before = time.time()
    b.open()
    sample = parse(expo([b]))["last_opened_timestamp_seconds"].samples[0]
    assert sample.value == b.stats()["last_opened"] == b.last_opened
    assert before <= sample.value <= time.time()
    b.reset()
    assert parse(expo([b]))["last_opened_timestamp_seconds"].samples == []


def test_engine_breaker_has_the_unix_time_of_its_last_opening(clock: VirtualClock) -> None:
    # The engine keeps the Unix time of its last opening itself, so a bare
    # engine Breaker shows it as resil.CircuitBreaker does.
    import time
    b = _resil.Breaker("engine", clock=clock)
    before = time.time()
    b.open()
    fams = parse(expo([b]))
    sample = fams["last_opened_timestamp_seconds"].samples[0]
    assert sample.value == b.stats()["last_opened"] == b.last_opened
    assert before <= sample.value <= time.time()
    assert fams["state"].samples[0].value == State.OPEN


# ---- names and labels -------------------------------------------------------

TRICKY = ["", " ", '"', "\\", "\n", "\\n", 'a"b\\c\nd', '"} 1\n# HELP x y', "{,=}", "#",
          "tab\there", "cr\rhere", "\x00nul", "café", "東京", "😀 emoji", "\u2028", "\x85",
          "x" * 10_000]


def test_names_round_trip_exactly(clock: VirtualClock) -> None:
    bs = [CircuitBreaker(n, clock=clock) for n in TRICKY]
    check(expo(bs), bs)


def test_label_values_are_escaped(clock: VirtualClock) -> None:
    b = CircuitBreaker('a"b\\c\nd é', clock=clock)
    first = expo([b]).splitlines()[2]
    assert first == f'{PREFIX}_state{{endpoint="a\\"b\\\\c\\nd é"}} 0'


def test_lone_surrogate_name_is_written_escaped(clock: VirtualClock) -> None:
    b = CircuitBreaker("bad\ud800", clock=clock)
    good = CircuitBreaker("good", clock=clock)
    text = expo([b, good])  # one odd name does not fail the scrape
    assert f'{PREFIX}_state{{endpoint="bad\\\\ud800"}} 0' in text.splitlines()
    got = {s.labels["endpoint"] for f in text_string_to_metric_families(text) for s in f.samples}
    assert got == {"bad\\ud800", "good"}
    from resil import prometheus  # the Python renderer writes other families the same way
    assert 'queue="bad\\\\ud800"' in prometheus.exposition(("bad\ud800", resil.BoundedQueue(2)))


def test_custom_prefix_and_label(clock: VirtualClock) -> None:
    bs = zoo(clock)
    text = expo(bs, prefix="svc:cb_", label="service")
    check(text, bs, label="service", prefix="svc:cb_")
    assert expo(bs, "svc:cb_", "service") == text


@pytest.mark.parametrize("prefix", ["", "1abc", "a-b", "a b", "é", "a\n", "a.b", "{"])
def test_invalid_prefix(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        expo([], prefix=prefix)


@pytest.mark.parametrize("label", ["", "1a", "a:b", "a-b", "__name", "__", "é", "a b"])
def test_invalid_label(label: str) -> None:
    with pytest.raises(ValueError, match="label"):
        expo([], label=label)


def test_valid_edge_names(clock: VirtualClock) -> None:
    b = CircuitBreaker("x", clock=clock)
    for prefix, label in [(":", "_"), ("_", "a"), ("a:1", "_a_"), ("A_9", "Z9")]:
        check(expo([b], prefix=prefix, label=label), [b], label=label, prefix=prefix)


def test_argument_types() -> None:
    with pytest.raises(TypeError):
        expo([], prefix=b"x")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        expo([], label=None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        expo()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        expo([], "a", "b", "c")  # type: ignore[call-arg]


# ---- what breakers may be ---------------------------------------------------

def test_no_breakers_gives_help_and_type_only() -> None:
    text = expo([])
    assert text == expo(()) == expo(iter([]))
    lines = text.splitlines()
    assert len(lines) == 12 and all(ln.startswith("# ") for ln in lines)
    assert all(f.samples == [] for f in parse(text).values())


def test_any_iterable_in_its_order(clock: VirtualClock) -> None:
    bs = zoo(clock)
    text = expo(bs)
    assert expo(tuple(bs)) == expo(b for b in bs) == text
    group = resil.BreakerGroup(clock=clock)  # __getitem__ creates the breaker
    group["a"].open()
    group.record_success("b", 3.0)
    check(expo(group.values()), list(group.values()))
    reversed_text = expo(bs[::-1])
    names = [s.labels["endpoint"] for s in parse(reversed_text)["state"].samples]
    assert names == [b.name for b in bs[::-1]]


def test_a_breaker_listed_twice_appears_twice(clock: VirtualClock) -> None:
    b = CircuitBreaker("twice", clock=clock)
    assert len(parse(expo([b, b]))["state"].samples) == 2


@pytest.mark.parametrize("bad, kind", [(3, "int"), ("svc", "str"), (None, "NoneType"),
                                       (object(), "object")])
def test_non_breaker_is_refused_naming_its_index(clock: VirtualClock, bad: object,
                                                  kind: str) -> None:
    bs: list[Any] = [CircuitBreaker("a", clock=clock), CircuitBreaker("b", clock=clock), bad]
    with pytest.raises(TypeError, match=rf"breakers\[2\] must be a CircuitBreaker, not {kind}"):
        expo(bs)


def test_non_iterable_is_refused() -> None:
    with pytest.raises(TypeError, match="breakers must be an iterable"):
        expo(3)  # type: ignore[arg-type]


def test_iterator_error_propagates(clock: VirtualClock) -> None:
    def gen() -> Iterator[CircuitBreaker]:
        yield CircuitBreaker("a", clock=clock)
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        expo(gen())


def test_list_changed_by_a_listener_during_the_ticks(clock: VirtualClock) -> None:
    # The list is read once, before any tick runs a listener.
    bs: list[Any] = zoo(clock)
    bs[3].on_state_change(lambda *_: bs.clear())
    before = list(bs)
    text = expo(bs)
    assert bs == []
    check(text, before)


# ---- errors during the tick -------------------------------------------------

class FailingClock:
    """A Python clock whose now() raises once armed."""

    def __init__(self) -> None:
        self.t = 0.0
        self.armed = False

    def now(self) -> float:
        if self.armed:
            raise OSError("clock failed")
        return self.t


def test_failing_clock_propagates(clock: VirtualClock) -> None:
    bad_clock = FailingClock()
    bs: list[Any] = zoo(clock)
    bs.insert(2, CircuitBreaker("bad clock", clock=bad_clock))
    bad_clock.armed = True
    with pytest.raises(OSError, match="clock failed"):
        expo(bs)
    with pytest.raises(OSError, match="clock failed"):
        bs[2].stats()  # the same as stats()
    bad_clock.armed = False
    check(expo(bs), bs)


def test_raising_listener_is_logged_as_stats_does(clock: VirtualClock,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    # A listener that raises never breaks the breaker (CircuitBreaker logs
    # it), so the exposition, like stats(), still renders.
    caplog.set_level(logging.ERROR, logger="resil.breaker")
    b = CircuitBreaker("listener", clock=clock, cooldown=1)
    calls: list[State] = []

    def listener(_b: CircuitBreaker, old: State, new: State, reason: str) -> None:
        calls.append(new)
        raise RuntimeError("listener failed")

    b.open()
    b.on_state_change(listener)
    clock.advance(1)
    text = expo([b])
    assert calls == [State.HALF_OPEN]
    assert any("listener failed" in str(r.exc_info) for r in caplog.records)
    check(text, [b])


LEAK_SCRIPT = textwrap.dedent(r"""
    import gc, json, sys, tracemalloc
    import resil
    from resil import _resil

    class FailingClock:
        armed = False
        def now(self):
            if self.armed:
                raise OSError("clock failed")
            return 0.0

    clock = resil.VirtualClock()
    bad_clock = FailingClock()
    names = ["a", 'q"uo\\te\n', "東京😀", "x" * 300]
    good = [resil.CircuitBreaker(n, clock=clock) for n in names]
    for b in good[:2]:
        b.record_success(b.acquire(), 3.3)
    good[1].open()
    bad = resil.CircuitBreaker("bad", clock=bad_clock)
    raising = resil.CircuitBreaker("listener", clock=clock, cooldown=1)
    def listener(*args):
        raise RuntimeError("listener failed")
    raising.on_state_change(listener)
    import logging
    logging.getLogger("resil.breaker").disabled = True
    mixed = good + [bad] + good
    with_listener = good + [raising]
    bad_clock.armed = True
    watched = good + [bad, bad_clock, raising, listener, mixed, with_listener] + names

    def clock_error(n):
        for _ in range(n):
            try:
                _resil.breaker_exposition(mixed)
            except OSError:
                pass
            else:
                raise AssertionError("no error")

    def listener_error(n):
        for _ in range(n):
            raising.open()
            clock.advance(1)  # due: the tick runs the raising listener
            _resil.breaker_exposition(with_listener)

    def type_error(n):
        for _ in range(n):
            try:
                _resil.breaker_exposition(good + [3])
            except TypeError:
                pass

    def ok(n):
        for _ in range(n):
            _resil.breaker_exposition(iter(good), prefix="p", label="l")

    def measure(fn, n):
        fn(200)
        gc.collect()
        refs0 = [sys.getrefcount(o) for o in watched]
        tracemalloc.start()
        mem0 = tracemalloc.get_traced_memory()[0]
        fn(n)
        gc.collect()
        mem1 = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        refs1 = [sys.getrefcount(o) for o in watched]
        return {"traced_bytes": mem1 - mem0, "ref_deltas": [a - b for a, b in zip(refs1, refs0)]}

    n = int(sys.argv[1])
    print(json.dumps({name: measure(fn, n) for name, fn in
                      [("clock_error", clock_error), ("listener_error", listener_error),
                       ("type_error", type_error), ("ok", ok)]}))
""")


def test_error_paths_leave_refcounts_and_memory_flat() -> None:
    proc = subprocess.run([sys.executable, "-c", LEAK_SCRIPT, "5000"], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    for path, r in out.items():
        assert r["ref_deltas"] == [0] * len(r["ref_deltas"]), (path, r)
        assert r["traced_bytes"] < 64 * 1024, (path, r)


# ---- property: any name round-trips -----------------------------------------

@given(st.lists(st.text(), max_size=6), st.lists(st.floats(0.0, 1e7), max_size=6))
def test_any_names_round_trip_through_the_parser(names: list[str],
                                                 latencies: list[float]) -> None:
    clock = VirtualClock()
    bs = [CircuitBreaker(n, clock=clock) for n in names]
    for b, ms in zip(bs, latencies):
        b.record_success(b.acquire(), ms)
    text = expo(bs)
    check(text, bs)
    assert [s.labels["endpoint"] for s in parse(text)["state"].samples] == names
