"""resil's Prometheus exposition and histograms beside prometheus_client and HdrHistogram.

Peers (``pip install -e '.[bench]'``): prometheus_client (``generate_latest``
of a ``CollectorRegistry``; ``Histogram.observe`` and ``Summary.observe``)
and hdrhistogram (HdrHistogram_py: ``HdrHistogram.record_value`` and
``get_value_at_percentile``). Every loop is timed by ``_harness.py`` (its
docstring has the method): each loop compiled on its own, N calibrated,
rounds shuffled, garbage collector off while timing. Scenarios:

1. Exposition of 6 metric families x 1,000 endpoints (label ``endpoint``).
   resil: 1,000 ``resil.CircuitBreaker(f"endpoint-{i}")`` with varied state
   (each opened and closed once, so it has a last-opened time, then 5-40
   calls recorded with latencies drawn from a fixed seed, ~15 % failures;
   one in 10 left OPEN, one in 50 FORCED_OPEN, one in 100 DISABLED; cooldown
   one day, so no state moves during the run), rendered by
   ``resil._resil.breaker_exposition(breakers)`` (the C renderer of the six
   breaker families) and by ``resil.prometheus.exposition(*breakers)`` (the
   public function: it adds the ``resil_exposition_errors_total`` family).
   Peers, each a ``prometheus_client.generate_latest`` of its own
   ``CollectorRegistry``: (a) six labelled metrics (five ``Gauge``, one
   ``Counter``, ``labelnames=["endpoint"]``) holding the same 1,000 label
   values, set once from the breakers' ``stats()`` (so every sample has the
   same value as resil's), with ``_created`` series off (6,000 samples, as
   resil) and on (prometheus_client's default: 1,000 more); (b) a custom
   collector that builds ``GaugeMetricFamily`` / ``CounterMetricFamily``
   objects from each breaker's ``stats()`` at every scrape (what a user
   bridging resil's breakers to prometheus_client writes); (c)
   ``resil.prometheus.Collector(*breakers)`` registered the same way.
   Before timing, every output is parsed with
   ``prometheus_client.parser.text_string_to_metric_families`` and must hold
   the 6,000 breaker samples with the same values as every other output.
2. Histogram record: ``resil.Histogram().record(ms)``,
   ``resil.WindowedHistogram().record(ms)`` (C, log-linear buckets, < 1 %
   quantile error) and ``resil.Monitor().record("db", "query", ms, True)``
   (the monitor's whole path) beside prometheus_client's ``Histogram`` (its
   default buckets) and ``Summary`` ``.observe(s)`` (in a private registry)
   and ``HdrHistogram(1, 3_600_000_000, 2).record_value(us)``. The inputs
   are one fixed list of 10,000 log-uniform durations from 0.1 ms to 10 s
   (fixed seed), cycled; each contender records the same durations in its
   own unit (ms float, s float, integer us), converted before timing. The
   baseline loop draws the next value and does nothing with it. After the
   runs every histogram's count must equal the records it was given.
3. Quantile query (p99) of a histogram holding those 10,000 durations:
   ``resil.Histogram.quantile(0.99)``, ``resil.WindowedHistogram.quantile(0.99)``
   and ``HdrHistogram.get_value_at_percentile(99.0)``. An untimed table
   beside it gives each one's error against the exact sample quantiles
   (and what Prometheus' ``histogram_quantile`` would estimate from the
   default buckets).

The target (from the issue): resil's exposition >= 10x faster than
``generate_latest`` for the same families, which the issue quotes at ~30 ms
on its machine.

Usage: ``python benchmarks/bench_metrics.py [--quick] [--write-results]``.
``--quick`` is a smoke run of a few seconds; ``--write-results`` replaces the
metrics section of ``benchmarks/RESULTS.md`` (otherwise it only prints).
"""

from __future__ import annotations

import itertools
import logging
import math
import random
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h  # noqa: E402
from _harness import Contender, Scenario, Tally, expect  # noqa: E402

import resil  # noqa: E402
import resil.prometheus  # noqa: E402
from resil import _resil  # noqa: E402

try:
    import prometheus_client
    import prometheus_client.metrics
    from hdrh.histogram import HdrHistogram
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    from prometheus_client.parser import text_string_to_metric_families
except ImportError as exc:  # pragma: no cover - depends on the environment
    h.missing_peers(__file__, exc)

PEERS = ("prometheus_client", "hdrhistogram")
SECTION = "## Metrics (bench_metrics.py)"

ENDPOINTS = 1_000
FAMILIES = 6
PREFIX = "resil_circuit_breaker"
LABEL = "endpoint"
TARGET_SPEEDUP = 10.0
QUOTED_PROM_MS = 30.0
DURATIONS = 10_000
LOW_MS, HIGH_MS = 0.1, 10_000.0
VALUE_SEED = 20_240_601
BREAKER_SEED = 1_000

EMPTY = "(empty loop)"
RESIL_C = "resil _resil.breaker_exposition (C)"
RESIL_EXPO = "resil.prometheus.exposition"
PROM = "prometheus_client generate_latest, 6 labelled metrics"
PROM_CREATED = "the same, _created on (default)"
BRIDGE = "prometheus_client custom collector from stats()"
COLLECTOR = "resil.prometheus.Collector + generate_latest"

CYCLE = "(next value only)"
R_HIST = "resil Histogram.record"
R_WHIST = "resil WindowedHistogram.record"
R_MON = "resil Monitor.record"
P_HIST = "prometheus_client Histogram.observe"
P_SUMM = "prometheus_client Summary.observe"
HDR = "hdrhistogram record_value"

Q_HIST = "resil Histogram.quantile(0.99)"
Q_WHIST = "resil WindowedHistogram.quantile(0.99)"
Q_HDR = "hdrhistogram get_value_at_percentile(99)"


# ---- inputs -----------------------------------------------------------------------------

def durations_ms() -> list[float]:
    """DURATIONS log-uniform durations in [LOW_MS, HIGH_MS), from a fixed seed."""
    rng = random.Random(VALUE_SEED)
    lo, hi = math.log(LOW_MS), math.log(HIGH_MS)
    return [math.exp(rng.uniform(lo, hi)) for _ in range(DURATIONS)]


def make_breakers(endpoints: int) -> list[resil.CircuitBreaker]:
    """`endpoints` breakers in varied states, from a fixed seed (see the docstring)."""
    rng = random.Random(BREAKER_SEED)
    breakers = []
    # Every transition logs a line; 1,000 of them are noise here.
    logging.disable(logging.WARNING)
    try:
        for i in range(endpoints):
            b = resil.CircuitBreaker(f"{LABEL}-{i}", cooldown=86_400.0, cooldown_max=86_400.0)
            b.open()  # every breaker has a last-opened time, so every family has 1,000 samples
            b.close()
            for _ in range(rng.randint(5, 40)):
                latency = math.exp(rng.uniform(math.log(0.5), math.log(2_000.0)))
                if rng.random() < 0.15:
                    b.record_failure(latency_ms=latency)
                else:
                    b.record_success(latency_ms=latency)
            if i % 100 == 2:
                b.disable()
            elif i % 50 == 1:
                b.force_open()
            elif i % 10 == 0:
                b.open()
            breakers.append(b)
    finally:
        logging.disable(logging.NOTSET)
    return breakers


# ---- exposition contenders ------------------------------------------------------------

@dataclass
class Help:
    """The six families' names, kinds and help texts, as resil renders them
    (the peers use the same, so every output carries the same text)."""

    state: str
    failures: str
    latency: str
    opened: str
    ratio: str
    health: str


def family_help(text: str) -> Help:
    docs = {f.name: f.documentation for f in text_string_to_metric_families(text)}
    return Help(docs[f"{PREFIX}_state"], docs[f"{PREFIX}_failures"], docs[f"{PREFIX}_latency_ms"],
                docs[f"{PREFIX}_last_opened_timestamp_seconds"], docs[f"{PREFIX}_success_ratio"],
                docs[f"{PREFIX}_health_score"])


def labelled_registry(breakers: Sequence[resil.CircuitBreaker], hp: Help
                      ) -> prometheus_client.CollectorRegistry:
    """Six labelled metrics in a private registry, set once from the breakers'
    stats() (an application would update them as calls happen)."""
    reg = prometheus_client.CollectorRegistry()
    labels = [LABEL]
    state = prometheus_client.Gauge(f"{PREFIX}_state", hp.state, labels, registry=reg)
    failures = prometheus_client.Counter(f"{PREFIX}_failures", hp.failures, labels, registry=reg)
    latency = prometheus_client.Gauge(f"{PREFIX}_latency_ms", hp.latency, labels, registry=reg)
    opened = prometheus_client.Gauge(f"{PREFIX}_last_opened_timestamp_seconds", hp.opened, labels,
                                     registry=reg)
    ratio = prometheus_client.Gauge(f"{PREFIX}_success_ratio", hp.ratio, labels, registry=reg)
    health = prometheus_client.Gauge(f"{PREFIX}_health_score", hp.health, labels, registry=reg)
    for b in breakers:
        st = b.stats()
        ep = b.name
        state.labels(ep).set(int(st["state"]))
        failures.labels(ep).inc(st["failures"])
        latency.labels(ep).set(st["avg_latency_ms"])
        opened.labels(ep).set(st["last_opened"])
        ratio.labels(ep).set(st["success_rate"])
        health.labels(ep).set(st["health_score"])
    return reg


class BreakerBridge:
    """A prometheus_client collector over resil breakers, as a user would
    write one: each scrape reads every breaker's stats()."""

    def __init__(self, breakers: Sequence[resil.CircuitBreaker], hp: Help) -> None:
        self.breakers = list(breakers)
        self.hp = hp

    def collect(self) -> Iterator[Any]:
        hp, labels = self.hp, [LABEL]
        state = GaugeMetricFamily(f"{PREFIX}_state", hp.state, labels=labels)
        failures = CounterMetricFamily(f"{PREFIX}_failures", hp.failures, labels=labels)
        latency = GaugeMetricFamily(f"{PREFIX}_latency_ms", hp.latency, labels=labels)
        opened = GaugeMetricFamily(f"{PREFIX}_last_opened_timestamp_seconds", hp.opened,
                                   labels=labels)
        ratio = GaugeMetricFamily(f"{PREFIX}_success_ratio", hp.ratio, labels=labels)
        health = GaugeMetricFamily(f"{PREFIX}_health_score", hp.health, labels=labels)
        for b in self.breakers:
            st = b.stats()
            ep = [b.name]
            state.add_metric(ep, int(st["state"]))
            failures.add_metric(ep, st["failures"])
            latency.add_metric(ep, st["avg_latency_ms"])
            if st["last_opened"] is not None:
                opened.add_metric(ep, st["last_opened"])
            ratio.add_metric(ep, st["success_rate"])
            health.add_metric(ep, st["health_score"])
        yield from (state, failures, latency, opened, ratio, health)

    def describe(self) -> list[Any]:
        return []


def with_created(run: h.RunFn) -> h.RunFn:
    """Runs a loop with prometheus_client's _created series on (its default;
    this benchmark turns them off everywhere else). The switch is read when
    a registry is collected, and is flipped outside the timed region."""
    def created(n: int) -> int:
        prometheus_client.enable_created_metrics()
        try:
            return run(n)
        finally:
            prometheus_client.disable_created_metrics()
    return created


@dataclass
class Output:
    text: str
    breaker: dict[tuple[str, str], float]
    created: int
    other: int

    @property
    def samples(self) -> int:
        return len(self.breaker) + self.created + self.other


def parse(text: str) -> Output:
    """The breaker samples ((sample name, endpoint) -> value) of an
    exposition, its _created samples and its other samples."""
    breaker: dict[tuple[str, str], float] = {}
    created = other = 0
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name.endswith("_created"):
                created += 1
            elif fam.name.startswith(PREFIX + "_"):
                key = (s.name, s.labels[LABEL])
                if key in breaker:
                    raise AssertionError(f"sample {key} twice")
                breaker[key] = s.value
            else:
                other += 1
    return Output(text, breaker, created, other)


def exposition_scenario(breakers: list[resil.CircuitBreaker], outputs: dict[str, Output]
                        ) -> Scenario:
    hp = family_help(_resil.breaker_exposition(breakers))
    labelled = labelled_registry(breakers, hp)
    bridge = prometheus_client.CollectorRegistry()
    bridge.register(BreakerBridge(breakers, hp))
    collector = prometheus_client.CollectorRegistry()
    collector.register(resil.prometheus.Collector(*breakers))
    gen = prometheus_client.generate_latest

    renders: dict[str, Callable[[], str]] = {
        RESIL_C: lambda: _resil.breaker_exposition(breakers),
        RESIL_EXPO: lambda: resil.prometheus.exposition(*breakers),
        PROM: lambda: gen(labelled).decode(),
        BRIDGE: lambda: gen(bridge).decode(),
        COLLECTOR: lambda: gen(collector).decode(),
    }
    for name, render in renders.items():
        outputs[name] = parse(render())
    prometheus_client.enable_created_metrics()
    try:
        outputs[PROM_CREATED] = parse(gen(labelled).decode())
    finally:
        prometheus_client.disable_created_metrics()

    # Every output: the 6,000 breaker samples, with resil's C renderer's values.
    endpoints = len(breakers)
    want = outputs[RESIL_C].breaker
    expect(FAMILIES * endpoints, len(want), f"{RESIL_C}: breaker samples")
    for name, out in outputs.items():
        expect(FAMILIES * endpoints, len(out.breaker), f"{name}: breaker samples")
        if out.breaker != want:
            diff = sorted(k for k in want if out.breaker.get(k) != want[k])[:3]
            raise AssertionError(f"{name}: values differ from {RESIL_C}'s, e.g. {diff}")
        expect(endpoints if name == PROM_CREATED else 0, out.created, f"{name}: _created samples")
        expect(1 if name in (RESIL_EXPO, COLLECTOR) else 0, out.other, f"{name}: other samples")

    return Scenario(
        title=f"1. Exposition: {FAMILIES} metric families x {endpoints:,} endpoints",
        note=(f"Per iteration one full text exposition of the same {FAMILIES * endpoints:,} "
              f"breaker samples (label `{LABEL}`); prometheus_client's output is its "
              "`generate_latest` bytes, resil's a str."),
        baseline=Contender(EMPTY, h.sync_loop("pass")),
        reference=RESIL_EXPO,
        contenders=[
            Contender(RESIL_C, h.sync_loop("render(breakers)", render=_resil.breaker_exposition,
                                           breakers=breakers)),
            Contender(RESIL_EXPO, h.sync_loop("expo(*breakers)",
                                              expo=resil.prometheus.exposition,
                                              breakers=breakers)),
            Contender(PROM, h.sync_loop("gen(reg)", gen=gen, reg=labelled)),
            Contender(PROM_CREATED, with_created(h.sync_loop("gen(reg)", gen=gen, reg=labelled)),
                      quoted_ns=(QUOTED_PROM_MS * 1e6,)),
            Contender(BRIDGE, h.sync_loop("gen(reg)", gen=gen, reg=bridge)),
            Contender(COLLECTOR, h.sync_loop("gen(reg)", gen=gen, reg=collector)),
        ],
    )


# ---- histogram contenders -----------------------------------------------------------------

@dataclass
class Check:
    what: str
    tally: Tally
    count: Callable[[], int]

    def __call__(self) -> None:
        expect(self.tally.n, self.count(), f"{self.what}: records counted after the runs")


def record_scenario(values: list[float], checks: list[Check]) -> Scenario:
    seconds = [v / 1000.0 for v in values]
    micros = [max(1, round(v * 1000.0)) for v in values]

    def L(name: str, body: str, vals: list[Any], count: Callable[[], int], **names: Any
          ) -> Contender:
        tally = Tally()
        checks.append(Check(name, tally, count))
        return Contender(name, tally.wrap(h.sync_loop(body, it=itertools.cycle(vals), **names)))

    hist = resil.Histogram()
    whist = resil.WindowedHistogram()
    mon = resil.Monitor()
    reg = prometheus_client.CollectorRegistry()
    p_hist = prometheus_client.Histogram("bench_request_seconds", "Durations.", registry=reg)
    p_summ = prometheus_client.Summary("bench_request_summary_seconds", "Durations.",
                                       registry=reg)
    hdr = HdrHistogram(1, 3_600_000_000, 2)

    def p_count(name: str) -> int:
        v = reg.get_sample_value(f"{name}_count")
        assert v is not None
        return int(v)

    return Scenario(
        title="2. Histogram record: one duration per call",
        note=(f"Per iteration `next(it)` (the {DURATIONS:,} log-uniform durations, "
              f"{LOW_MS:g} ms - {HIGH_MS / 1000:g} s, cycled; each contender in its own unit) "
              "and one record of it; the baseline only draws the value."),
        baseline=Contender(CYCLE, h.sync_loop("next(it)", it=itertools.cycle(values))),
        reference=R_HIST,
        contenders=[
            L(R_HIST, "hist.record(next(it))", values, lambda: hist.count, hist=hist),
            L(R_WHIST, "hist.record(next(it))", values, whist.count, hist=whist),
            L(R_MON, 'mon.record("db", "query", next(it), True)', values,
              lambda: sum(sum(v[1:]) for v in mon._export()["components"]["db"]["by_operation"].values()),
              mon=mon),
            L(P_HIST, "hist.observe(next(it))", seconds,
              lambda: p_count("bench_request_seconds"), hist=p_hist),
            L(P_SUMM, "summ.observe(next(it))", seconds,
              lambda: p_count("bench_request_summary_seconds"), summ=p_summ),
            L(HDR, "hist.record_value(next(it))", micros, hdr.get_total_count, hist=hdr),
        ],
    )


def filled(values: list[float]) -> tuple[resil.Histogram, resil.WindowedHistogram, HdrHistogram]:
    hist, whist = resil.Histogram(), resil.WindowedHistogram()
    hdr = HdrHistogram(1, 3_600_000_000, 2)
    for v in values:
        hist.record(v)
        whist.record(v)
        if not hdr.record_value(max(1, round(v * 1000.0))):
            raise AssertionError(f"hdrhistogram refused {v} ms")
    expect(0, hist.clamped, "resil Histogram: values clamped")
    return hist, whist, hdr


def quantile_scenario(values: list[float]) -> Scenario:
    hist, whist, hdr = filled(values)
    return Scenario(
        title="3. Quantile query: p99 of a histogram holding the durations",
        note=(f"Per iteration one p99 query of a histogram holding the same {DURATIONS:,} "
              "durations (nothing recorded between queries)."),
        baseline=Contender(EMPTY, h.sync_loop("pass")),
        reference=Q_HIST,
        contenders=[
            Contender(Q_HIST, h.sync_loop("hist.quantile(0.99)", hist=hist)),
            Contender(Q_WHIST, h.sync_loop("hist.quantile(0.99)", hist=whist)),
            Contender(Q_HDR, h.sync_loop("hist.get_value_at_percentile(99.0)", hist=hdr)),
        ],
    )


def prom_bucket_quantile(q: float, values_s: Sequence[float]) -> float:
    """What PromQL's histogram_quantile estimates from prometheus_client's
    default buckets: linear interpolation inside the bucket holding rank q*n."""
    bounds = [b for b in prometheus_client.Histogram.DEFAULT_BUCKETS if b != float("inf")]
    counts = [sum(1 for v in values_s if v <= b) for b in bounds]
    rank = q * len(values_s)
    lower, below = 0.0, 0
    for b, c in zip(bounds, counts):
        if c >= rank:
            return lower + (b - lower) * (rank - below) / max(c - below, 1)
        lower, below = b, c
    return bounds[-1]  # in the +Inf bucket: histogram_quantile answers the top bound


QUANTILES = (0.5, 0.9, 0.99, 0.999)


def accuracy_rows(values: list[float]) -> list[tuple[str, ...]]:
    hist, whist, hdr = filled(values)
    ordered = sorted(values)
    exact = {q: ordered[math.ceil(q * len(ordered)) - 1] for q in QUANTILES}
    answers: dict[str, dict[float, float]] = {
        "resil Histogram": {q: hist.quantile(q) for q in QUANTILES},
        "resil WindowedHistogram": {q: whist.quantile(q) for q in QUANTILES},
        "hdrhistogram (2 digits)": {q: hdr.get_value_at_percentile(q * 100) / 1000.0
                                    for q in QUANTILES},
        "prometheus_client Histogram, default buckets (histogram_quantile)":
            {q: 1000.0 * prom_bucket_quantile(q, [v / 1000.0 for v in values])
             for q in QUANTILES},
    }
    rows = [("exact (nearest rank)", *(f"{exact[q]:,.3f} ms" for q in QUANTILES))]
    for name, got in answers.items():
        rows.append((name, *(f"{got[q]:,.3f} ms ({100 * (got[q] / exact[q] - 1):+.2f} %)"
                             for q in QUANTILES)))
    rows.append(("prometheus_client Summary", *("— (count and sum only)" for _ in QUANTILES)))
    return rows


# ---- tables -------------------------------------------------------------------------------

def _ms(ns: float) -> str:
    ms = ns / 1e6
    return f"{ms:,.2f}" if ms < 100 else f"{ms:,.0f}"


def _contender(res: h.ScenarioResult, name: str) -> Contender:
    s = res.scenario
    return next(c for c in [s.baseline, *s.contenders] if c.name == name)


def speedup(res: h.ScenarioResult, slow: str, fast: str) -> float:
    """Median over rounds of slow's overhead over fast's (same round)."""
    base = res.scenario.baseline.ns_per_call
    s, f = _contender(res, slow).ns_per_call, _contender(res, fast).ns_per_call
    return statistics.median((a - b) / (c - b) for a, c, b in zip(s, f, base))


_EXPO_HEAD = ("contender", "ms/exposition", "IQR ms", "x resil", "samples", "KiB", "target")


def expo_rows(res: h.ScenarioResult, outputs: dict[str, Output]) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for r in res.rows:
        if r.overhead is None:
            rows.append((r.name, f"{r.ns_per_call:,.0f} ns", "—", "(baseline)", "—", "—", ""))
            continue
        assert r.q1 is not None and r.q3 is not None
        out = outputs[r.name]
        target = ""
        if r.name in (RESIL_C, RESIL_EXPO):
            x, x_default = speedup(res, PROM, r.name), speedup(res, PROM_CREATED, r.name)
            verdict = "met" if x >= TARGET_SPEEDUP else "MISSED"
            target = (f"≥ {TARGET_SPEEDUP:.0f}x faster than generate_latest: {x:.1f}x "
                      f"({x_default:.1f}x vs its default): {verdict}")
        elif r.name == PROM_CREATED:
            factor = r.overhead / 1e6 / QUOTED_PROM_MS
            target = (f"quoted ~{QUOTED_PROM_MS:.0f} ms (here x{factor:.1f}: this machine's "
                      "factor, if the quote is for the default)")
        rows.append((r.name, _ms(r.overhead), f"{_ms(r.q1)} – {_ms(r.q3)}", h.ratio_cell(res, r),
                     f"{out.samples:,}", f"{len(out.text.encode()) / 1024:,.0f}", target))
    return rows


_CALL_HEAD = ("contender", "ns/call", "IQR ns", "calls/s", "x resil", "ns/iteration")


def summary(expo: h.ScenarioResult, rec: h.ScenarioResult, query: h.ScenarioResult,
            samples: int) -> list[str]:
    by = {r.name: r for r in expo.rows}
    out = []

    def ms(name: str) -> str:
        o = by[name].overhead
        assert o is not None
        return f"{o / 1e6:,.2f} ms"
    out.append(f"Exposition of {samples:,} breaker samples: {RESIL_C} {ms(RESIL_C)}, "
               f"{RESIL_EXPO} {ms(RESIL_EXPO)}; generate_latest {ms(PROM)} "
               f"({ms(PROM_CREATED)} with _created); resil is "
               f"{speedup(expo, PROM, RESIL_EXPO):.1f}x faster (public function) and "
               f"{speedup(expo, PROM, RESIL_C):.1f}x (C renderer alone)")
    for res in (rec, query):
        rows = {r.name: r for r in res.rows}
        ref = rows[res.scenario.reference]
        assert ref.overhead is not None
        parts = [f"{ref.name} {h.fmt_ns(ref.overhead)} ns"]
        for r in res.rows[1:]:
            if r.name != ref.name and r.overhead is not None and r.ratio:
                parts.append(f"{r.name} {h.fmt_ns(r.overhead)} ns ({r.ratio:.1f}x)")
        out.append(f"{res.scenario.title.split('. ', 1)[1].split(':')[0]}: " + "; ".join(parts))
    return out


NOTES = """\
Notes:
- *ms/exposition*, *ns/call*: per round, a contender's time per iteration
  minus the baseline loop's in the same round, median over rounds; *IQR*
  its quartiles; *x resil*: per round, the contender's overhead over the
  reference's (resil.prometheus.exposition in table 1, Histogram in 2 and
  3), median over rounds: above 1 is slower than resil. The speed-ups in
  the target column are the same per-round ratio, generate_latest over
  resil. *samples* and *KiB*: of the output, parsed by prometheus_client's
  own parser before timing.
- Table 1: all outputs carry the same breaker samples (6 per endpoint)
  with equal values (checked). resil.prometheus.exposition adds one sample
  (resil_exposition_errors_total); generate_latest with _created on (its
  default) adds a `resil_circuit_breaker_failures_created` sample per
  endpoint. The labelled registry holds values set once before timing, so
  its row is the rendering cost only: an application would also pay for
  keeping its 6,000 children up to date as calls happen. The custom collector
  and resil's Collector read every breaker's `stats()` (a dict of ~30 keys)
  at each scrape and build prometheus_client Metric objects, then
  generate_latest formats them: that is the price of going through
  prometheus_client's registry, which the C renderer avoids (it reads the
  breakers' C state directly and writes one string).
- The garbage collector is off while timing (harness rule): generate_latest
  and the collectors allocate tens of thousands of objects per scrape, so
  in a live process they would also pay for the collections this triggers.
- Table 2: resil's Histogram and WindowedHistogram are C (log-linear
  buckets; WindowedHistogram also reads the monotonic clock to pick its
  slot); Monitor.record validates its arguments, takes a lock and keeps
  per-component and per-operation counters in Python around the same C
  record. prometheus_client's Histogram.observe finds the bucket by a
  Python loop over its 15 default bounds and takes a lock; its Summary
  keeps only a count and a sum (no quantiles in the Python client).
  hdrhistogram's record_value is pure Python (its C extension only
  encodes). No two contenders share a histogram.
- Table 3: resil's quantile walks its C bucket counts; WindowedHistogram
  first sums its slots. hdrhistogram's get_value_at_percentile walks its
  counts array in Python. The accuracy table is untimed.
- The machine has 2 cores and other work may share them (load averages
  above); compare the per-round ratios (*x resil*) rather than absolute
  times across runs."""


def main(argv: list[str] | None = None) -> int:
    ap = h.arg_parser(__doc__)
    ap.add_argument("--repeats", type=int, default=None, help="rounds per scenario")
    ap.add_argument("--loop-ms", type=float, default=None,
                    help="target ms per loop, record and quantile tables")
    ap.add_argument("--expo-loop-ms", type=float, default=None,
                    help="target ms per loop, exposition table")
    ap.add_argument("--endpoints", type=int, default=None,
                    help=f"breakers (label values) in the exposition table ({ENDPOINTS:,})")
    args = h.parse_args(ap, argv)

    started = time.monotonic()
    repeats = args.repeats or h.by_mode(args, 21, 3, 2)
    expo_repeats = args.repeats or h.by_mode(args, 15, 3, 2)
    loop_ms = args.loop_ms or (2.0 if args.quick else 30.0)
    expo_loop_ms = args.expo_loop_ms or (20.0 if args.quick else 1000.0)
    # A smoke run renders fewer endpoints (the harness calibrates from 64
    # iterations, ~4 s for one generate_latest loop of 1,000 endpoints here).
    endpoints = args.endpoints or h.by_mode(args, ENDPOINTS, 100, 10)
    rng = random.Random(args.seed)

    from resil.observe import monitor as _monitor

    facts = h.machine_facts(["resil", *PEERS])
    facts.insert(4, ("resil extension", h.file_fact(Path(_resil.__file__), "built")))
    facts.insert(5, ("resil prometheus", h.file_fact(Path(resil.prometheus.__file__), "saved")))
    facts.insert(6, ("resil monitor", h.file_fact(Path(_monitor.__file__), "saved")))
    facts.append(("run", f"exposition of {endpoints:,} endpoints, {expo_repeats} rounds, "
                         f"loops of ~{expo_loop_ms:g} ms; "
                         f"record and quantile {repeats} rounds, loops of ~{loop_ms:g} ms; "
                         f"shuffle seed {args.seed}"
                         + h.mode_label(args)))
    h.print_facts("Metrics: resil's Prometheus exposition and histograms vs prometheus_client "
                  "and hdrhistogram", facts)

    # _created series off except in the one row that measures them.
    prometheus_client.disable_created_metrics()
    breakers = make_breakers(endpoints)
    states = sorted({b.state.name for b in breakers})
    outputs: dict[str, Output] = {}
    expo_scenario = exposition_scenario(breakers, outputs)
    before = outputs[RESIL_C].text
    h.eprint(f"checked: every exposition holds the same {FAMILIES * endpoints:,} breaker samples "
             f"(breaker states {', '.join(states)})")
    values = durations_ms()
    checks: list[Check] = []
    scenarios: list[tuple[Scenario, int, float]] = [
        (expo_scenario, expo_repeats, expo_loop_ms),
        (record_scenario(values, checks), repeats, loop_ms),
        (quantile_scenario(values), repeats, loop_ms),
    ]
    results: list[h.ScenarioResult] = []
    for scenario, reps, ms in scenarios:
        h.eprint(f"running {scenario.title} ...")
        results.append(h.run_scenario(scenario, repeats=reps, loop_ms=ms, rng=rng))
    for check in checks:
        check()
    h.eprint(f"checked: {len(checks)} histograms counted every record timed")
    expect(before, _resil.breaker_exposition(breakers), "breaker exposition after the runs")

    expo, rec, query = results
    rendered: list[tuple[str, list[str], Sequence[str], list[tuple[str, ...]]]] = [
        (expo.scenario.title, [expo.scenario.note], _EXPO_HEAD, expo_rows(expo, outputs)),
        (rec.scenario.title, [rec.scenario.note], _CALL_HEAD, h.rate_rows(rec)),
        (query.scenario.title, [query.scenario.note], _CALL_HEAD, h.rate_rows(query)),
        ("4. Quantile accuracy on the same durations (untimed)",
         [f"Each histogram's answer for the {DURATIONS:,} durations and its error against "
          "the exact sample quantile."],
         ("histogram", *(f"p{100 * q:g}" for q in QUANTILES)), accuracy_rows(values)),
    ]
    for table in rendered:
        print(h.text_table(*table))
        print()
    h.finish(facts, script=__file__, heading=SECTION,
             tables=[h.markdown_table(*table) for table in rendered], notes=NOTES,
             write=args.write_results,
             summary=summary(expo, rec, query, len(outputs[RESIL_C].breaker)), started=started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
