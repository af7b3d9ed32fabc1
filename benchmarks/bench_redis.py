"""resil's cluster-wide components on Redis beside their peers and the bare round trip: added latency and decisions per second, in one process, against a real redis-server on loopback.

The benchmark starts its own redis-server (``_redis_server.py``: a free
127.0.0.1 port, no persistence) and stops it at the end; every contender
talks to it over loopback TCP through redis-py, each with its own
connection pool, one call after another from one thread (the bus: one
coroutine). Timing is ``_harness.py``'s (its docstring has the method):
every loop compiled on its own, N calibrated, rounds shuffled, garbage
collector off while timing. *µs/decision* is a contender's time per
iteration minus the empty loop's (the bare call's, table 3) in the same
round, median over rounds; *decisions/s* is 1e6 over it (one caller, one
decision after another); *x ref* is the median over rounds of the
per-round ratio to the table's reference row; *round trips* counts the
requests sent to Redis per decision over a checked run of the same loop.

1. Rate limiter, admitted decision: resil's cluster limiter
   (``RateLimiter(10**9, burst=10**9, cluster=RedisBackend(client))``,
   ``try_acquire()``, one Lua script per decision) beside ``limits``
   with ``RedisStorage`` (``FixedWindowRateLimiter`` and
   ``MovingWindowRateLimiter``, ``hit()``), and the floor: ``INCR`` +
   ``EXPIRE`` of one key sent as one pipelined round trip (a redis-py
   pipeline without MULTI/EXEC), the reference row; ``PING`` for scale.
   Target: resil within 1.3 times the floor.
2. Rate limiter, refused decision: every limiter exhausted first (1 per
   hour, taken); resil refuses a key known to be over its limit locally,
   until its retry time, without a round trip.
3. Breaker, guarded call ``f(1)``: resil's cluster breaker
   (``CircuitBreaker(..., cluster=backend, sync_interval=1.0,
   min_hosts=2)``, ``@breaker``, the local breaker on the hot path and the
   counts published in the background) beside resil's local breaker (the
   reference row) and pybreaker with ``CircuitRedisStorage`` (and with its
   default memory storage, for scale). Target: resil's cluster breaker
   within 1.2 times the local one.
4. Bus publish, asyncio client: ``await bus.publish("t", {"i": 1})`` on
   ``EventBus(store=resil.redis.StreamStore(backend, stream))`` with one
   subscriber, beside ``XADD`` of the same payload as JSON, awaited (the
   reference row), and the bus without a store, for scale.
5. Bus publish, blocking client: the same with a blocking redis-py client
   behind the backend, beside a blocking ``XADD``.

Rows of resil components that the build being measured lacks (one from
before its cluster breaker, limiter or stream store) are shown as "not
available in this build"; peers that are not installed (``pip install -e
'.[bench]'``) as "not installed". Before timing, every contender is
checked to admit or refuse as its table says; after it, every resil
backend is checked to have answered every operation from Redis (none from
a fallback).

Usage: ``python benchmarks/bench_redis.py [--quick] [--write-results]``.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import random
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _harness as h  # noqa: E402
from _harness import Contender, Scenario, Tally, expect  # noqa: E402
from _redis_server import LoopbackRedis, redis_server_path  # noqa: E402

import resil  # noqa: E402

try:
    import redis
    import redis.asyncio
    import redis.asyncio.connection
    import redis.connection
    import redis.utils
except ImportError as exc:  # pragma: no cover - the test extra installs redis
    h.missing_peers(__file__, exc)

from resil.redis import RedisBackend  # noqa: E402


def _optional(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


limits = _optional("limits")
pybreaker = _optional("pybreaker")

PEERS = ("limits", "pybreaker", "redis")
SECTION = "## Cluster state on Redis (bench_redis.py)"
HIGH = 10**9
#: The backends' timeout: long enough that a loaded machine's scheduling
#: hiccup never sends a measured decision to the fallback (checked after).
TIMEOUT = 0.5
LIMITER_TARGET = 1.3
BREAKER_TARGET = 1.2
TRIP_CHECK = 200

FLOOR = "INCR + EXPIRE, pipelined (floor)"
PING = "PING (for scale)"
RESIL_RL = "resil cluster try_acquire()"
RESIL_RL_KEY = "resil cluster try_acquire(key='k')"
LIMITS_FIXED = "limits fixed window hit (RedisStorage)"
LIMITS_MOVING = "limits moving window hit (RedisStorage)"
LOCAL_BREAKER = "resil local @breaker"
CLUSTER_BREAKER = "resil cluster @breaker"
PYBREAKER_REDIS = "pybreaker @breaker (CircuitRedisStorage)"
PYBREAKER_MEMORY = "pybreaker @breaker (memory storage, for scale)"
BUS_STREAM = "resil EventBus.publish, StreamStore"
BUS_MEMORY = "resil EventBus.publish, no store (for scale)"
XADD_ASYNC = "XADD, awaited (floor)"
XADD_SYNC = "XADD, blocking (floor)"
EMPTY = "(empty loop)"

ABSENT = "not available in this build"
NOT_INSTALLED = "not installed (pip install -e '.[bench]')"


# ---- what this build and this environment have -------------------------------------

def absent_reason(exc: BaseException) -> str | None:
    """The row's note when ``exc`` (a TypeError from a constructor) says
    the build lacks a cluster part (an unknown keyword, or a part the
    build declares not available yet); None for any other error."""
    text = str(exc)
    if isinstance(exc, TypeError) and any(words in text for words in (
            "unexpected keyword argument", "invalid keyword argument", "not available")):
        h.eprint(f"left out, this build says: {text}")
        return ABSENT
    return None


def build(make: Callable[[], Any]) -> tuple[Any, str | None]:
    """``make()``, or (None, why) when this build lacks what it makes."""
    try:
        return make(), None
    except TypeError as exc:
        why = absent_reason(exc)
        if why is None:
            raise
        return None, why


def stream_store_class() -> tuple[Any, str | None]:
    import resil.redis
    cls = getattr(resil.redis, "StreamStore", None)
    if cls is None:
        h.eprint("left out: resil.redis has no StreamStore")
        return None, ABSENT
    return cls, None


# ---- counting round trips ---------------------------------------------------------------

@contextmanager
def counting_round_trips(threads: Collection[str] = ()) -> Iterator[list[int]]:
    """Counts the requests redis-py sends (blocking and asyncio, every
    connection) while the block runs, from the thread that runs it and from
    the threads whose names start with one in ``threads`` (a contender's own
    reader, the event loop's executor that runs a blocking call): each is one
    packed write answered by the server, a pipeline's commands included.
    Other contenders' threads, still alive beside it, are not counted (an
    idle stream reader's read every ``block`` seconds is no request of the
    row measured). Used only around untimed checks."""
    box = [0]
    caller = threading.get_ident()
    prefixes = tuple(threads)

    def mine() -> bool:
        return (threading.get_ident() == caller
                or threading.current_thread().name.startswith(prefixes))
    sync_cls = redis.connection.AbstractConnection
    async_cls = redis.asyncio.connection.AbstractConnection
    sync_send = sync_cls.send_packed_command
    async_send = async_cls.send_packed_command

    def sync_counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        if mine():
            box[0] += 1
        return sync_send(self, *args, **kwargs)

    async def async_counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        if mine():
            box[0] += 1
        return await async_send(self, *args, **kwargs)

    sync_cls.send_packed_command = sync_counted  # type: ignore[method-assign]
    async_cls.send_packed_command = async_counted  # type: ignore[method-assign]
    try:
        yield box
    finally:
        sync_cls.send_packed_command = sync_send  # type: ignore[method-assign]
        async_cls.send_packed_command = async_send  # type: ignore[method-assign]


# ---- one table's parts --------------------------------------------------------------------

@dataclass
class Table:
    """A scenario, its rows left out (name -> why), its targets (name ->
    the most the row's *x ref* may be) and the round trips counted per
    decision (name -> count)."""

    scenario: Scenario
    absent: dict[str, str] = field(default_factory=dict)
    targets: dict[str, float] = field(default_factory=dict)
    trips: dict[str, float] = field(default_factory=dict)


@dataclass
class Run:
    """What the benchmark made and must close, and the checks to run after
    the timed loops."""

    loop: asyncio.AbstractEventLoop
    server: LoopbackRedis
    closers: list[Callable[[], Any]] = field(default_factory=list)
    after: list[Callable[[], None]] = field(default_factory=list)
    backends: list[RedisBackend] = field(default_factory=list)

    def client(self) -> Any:
        c = self.server.client()
        self.closers.append(c.close)
        return c

    def async_client(self) -> Any:
        c = self.server.async_client()
        self.closers.append(lambda: self.loop.run_until_complete(c.aclose()))
        return c

    def server_flush(self) -> None:
        c = self.server.client()
        try:
            c.flushall()
        finally:
            c.close()

    def after_close(self, thing: Any) -> None:
        """Closes ``thing`` at the end, if it has ``aclose()`` (awaited) or
        ``close()``."""
        aclose = getattr(thing, "aclose", None)
        if aclose is not None and asyncio.iscoroutinefunction(aclose):
            self.closers.append(lambda: self.loop.run_until_complete(aclose()))
        elif callable(getattr(thing, "close", None)):
            self.closers.append(thing.close)

    def backend(self, client: Any) -> RedisBackend:
        b = RedisBackend(client, timeout=TIMEOUT)
        self.backends.append(b)
        self.closers.append(b.close)
        return b


def count_trips(t: Table, c: Contender, check: int = TRIP_CHECK,
                threads: Collection[str] = ()) -> None:
    """Runs c's own loop ``check`` times with the requests counted (this
    thread's, and those of the threads ``threads`` names)."""
    with counting_round_trips(threads) as box:
        c.run(check)
    t.trips[c.name] = box[0] / check


def fresh_function() -> Callable[[int], int]:
    """A new ``def f(x): return x`` (its own code object, so its own
    specialisation caches)."""
    ns: dict[str, Any] = {}
    exec(compile("def f(x):\n    return x\n", "<f>", "exec"), ns)
    return ns["f"]  # type: ignore[no-any-return]


def floor_rows(run: Run) -> list[Contender]:
    """The bare round trips: INCR + EXPIRE of one key in one pipelined
    request (no MULTI/EXEC), and PING."""
    L = h.sync_loop
    client = run.client()
    pipe = client.pipeline(transaction=False)

    def incr_expire() -> Any:
        pipe.incr("bench:floor")
        pipe.expire("bench:floor", 3600)
        return pipe.execute()

    got = incr_expire()
    expect(True, got[1], "INCR + EXPIRE pipelined: EXPIRE's reply")
    expect(True, client.ping(), "PING")
    return [Contender(FLOOR, L("p()", p=incr_expire)),
            Contender(PING, L("p()", p=client.ping))]


# ---- 1 and 2: rate limiter -----------------------------------------------------------

def limiter_table(run: Run, refused: bool) -> Table:
    L = h.sync_loop
    run.server_flush()
    title = ("2. Rate limiter, refused decision — sync" if refused
             else "1. Rate limiter, admitted decision — sync")
    want = not refused
    contenders: list[Contender] = []
    absent: dict[str, str] = {}

    backend = run.backend(run.client())

    def resil_limiter(name: str) -> Any:
        if refused:
            return resil.RateLimiter(1, per=3600.0, name=name, cluster=backend)
        return resil.RateLimiter(HIGH, burst=HIGH, name=name, cluster=backend)

    for label, key in ((RESIL_RL, None), (RESIL_RL_KEY, "k")):
        name = f"bench-{'refused' if refused else 'admitted'}-{'key' if key else 'plain'}"
        rl, why = build(lambda name=name: resil_limiter(name))
        if rl is None:
            absent[label] = why or ""
            continue
        run.after_close(rl)
        if refused:
            expect(True, rl.try_acquire() if key is None else rl.try_acquire(key=key),
                   f"{label}: the one token")
        expect(want, rl.try_acquire() if key is None else rl.try_acquire(key=key), label)
        body = "t()" if key is None else "t(key='k')"
        contenders.append(Contender(label, L(body, t=rl.try_acquire)))

    if limits is None:
        absent[LIMITS_FIXED] = absent[LIMITS_MOVING] = NOT_INSTALLED
    else:
        from limits import storage, strategies
        item = (limits.RateLimitItemPerHour(1) if refused
                else limits.RateLimitItemPerSecond(HIGH))
        for label, strategy in ((LIMITS_FIXED, strategies.FixedWindowRateLimiter),
                                (LIMITS_MOVING, strategies.MovingWindowRateLimiter)):
            store = storage.RedisStorage(run.server.url, key_prefix=f"LIMITS-{strategy.__name__}")
            run.closers.append(store.storage.close)
            lim = strategy(store)
            if refused:
                expect(True, lim.hit(item, "k"), f"{label}: the one hit")
            expect(want, lim.hit(item, "k"), label)
            contenders.append(Contender(label, L("t(i, 'k')", t=lim.hit, i=item)))

    contenders += floor_rows(run)
    scenario = Scenario(
        title=title,
        note=("Baseline: the empty loop. "
              + ("Every limiter allows 1 per hour and has given it: every call is refused."
                 if refused else "Every call is admitted (10**9 per second)."
                 " resil's target: within 1.3 times the floor.")),
        baseline=Contender(EMPTY, L("pass")),
        reference=FLOOR,
        contenders=contenders,
    )
    table = Table(scenario, absent)
    if not refused:
        table.targets = {RESIL_RL: LIMITER_TARGET, RESIL_RL_KEY: LIMITER_TARGET}
    for c in contenders:
        count_trips(table, c)
    return table


# ---- 3: breaker -------------------------------------------------------------------------

def breaker_table(run: Run) -> Table:
    L = h.sync_loop
    run.server_flush()
    contenders: list[Contender] = []
    absent: dict[str, str] = {}

    local = resil.CircuitBreaker("bench-local")
    f = local(fresh_function())
    expect(1, f(1), LOCAL_BREAKER)
    contenders.append(Contender(LOCAL_BREAKER, L("f(1)", f=f)))

    backend = run.backend(run.client())
    cb, why = build(lambda: resil.CircuitBreaker("bench-cluster", cluster=backend,
                                                 sync_interval=1.0, min_hosts=2))
    if cb is None:
        absent[CLUSTER_BREAKER] = why or ""
    else:
        run.after_close(cb)
        g = cb(fresh_function())
        expect(1, g(1), CLUSTER_BREAKER)
        contenders.append(Contender(CLUSTER_BREAKER, L("f(1)", f=g)))

        def closed(cb: Any = cb) -> None:
            expect("CLOSED", cb.state.name, f"{CLUSTER_BREAKER}: state after the runs")
        run.after.append(closed)

    if pybreaker is None:
        absent[PYBREAKER_REDIS] = absent[PYBREAKER_MEMORY] = NOT_INSTALLED
    else:
        storage = pybreaker.CircuitRedisStorage(pybreaker.STATE_CLOSED, run.client(),
                                                namespace="bench")
        for label, kwargs in ((PYBREAKER_REDIS, {"state_storage": storage}),
                              (PYBREAKER_MEMORY, {})):
            pb = pybreaker.CircuitBreaker(**kwargs)
            p = pb(fresh_function())
            expect(1, p(1), label)
            contenders.append(Contender(label, L("f(1)", f=p)))

            def pb_closed(pb: Any = pb, label: str = label) -> None:
                expect(pybreaker.STATE_CLOSED, pb.current_state, f"{label}: state after the runs")
            run.after.append(pb_closed)

    scenario = Scenario(
        title="3. Breaker, guarded call `f(1)` — sync",
        note=("Baseline: `f(1)` called directly, with `def f(x): return x`. Every breaker: "
              "failure threshold 5 (resil's and pybreaker's defaults otherwise); every call "
              "succeeds. resil's target: the cluster breaker within 1.2 times the local one."),
        baseline=Contender("bare f(1)", L("f(1)", f=fresh_function())),
        reference=LOCAL_BREAKER,
        contenders=contenders,
    )
    table = Table(scenario, absent, targets={CLUSTER_BREAKER: BREAKER_TARGET})
    for c in contenders:
        count_trips(table, c, 2000)
    return table


# ---- 4 and 5: bus ------------------------------------------------------------------------

def bus_table(run: Run, asynchronous: bool) -> Table:
    loop = run.loop
    run.server_flush()
    number, how = (4, "asyncio client") if asynchronous else (5, "blocking client")
    floor = XADD_ASYNC if asynchronous else XADD_SYNC
    contenders: list[Contender] = []
    absent: dict[str, str] = {}

    def A(body: str, **names: Any) -> h.RunFn:
        return h.async_loop(loop, body, **names)

    def bus_with(store: Any) -> tuple[resil.EventBus, list[int]]:
        box = [0]

        def handler(event: Any) -> None:
            box[0] += 1
        bus = resil.EventBus(storm_threshold=10**7, store=store)
        bus.subscribe("t", handler)
        return bus, box

    def delivered(box: list[int], want: int, what: str) -> None:
        # A store's bus may deliver from the stream a moment later.
        give_up = time.monotonic() + 10
        while box[0] < want and time.monotonic() < give_up:
            loop.run_until_complete(asyncio.sleep(0.02))
        expect(want, box[0], what)

    own: dict[str, tuple[str, ...]] = {}
    cls, why = stream_store_class()
    if cls is None:
        absent[BUS_STREAM] = why or ""
    else:
        client = run.async_client() if asynchronous else run.client()
        backend = run.backend(client)
        store, why = build(lambda: cls(backend, f"bench-{how.split()[0]}"))
        if store is None:
            absent[BUS_STREAM] = why or ""
        else:
            run.after_close(store)
            # Its reader's reads, and a blocking client's script in the loop's executor.
            own[BUS_STREAM] = (f"resil-stream {store.stream}", "asyncio_")
            bus, box = bus_with(store)
            loop.run_until_complete(bus.publish("t", {"i": 1}))
            delivered(box, 1, f"{BUS_STREAM}: the checked publish")
            tally = Tally(1)
            contenders.append(Contender(BUS_STREAM, tally.wrap(
                A('await publish("t", {"i": 1})', publish=bus.publish))))

            def stream_check(bus: Any = bus, box: list[int] = box, tally: Tally = tally) -> None:
                expect(tally.n, bus.stats()["published"], f"{BUS_STREAM}: published")
                delivered(box, tally.n, f"{BUS_STREAM}: delivered")
            run.after.append(stream_check)

    mem_bus, mem_box = bus_with(None)
    loop.run_until_complete(mem_bus.publish("t", {"i": 1}))
    expect(1, mem_box[0], BUS_MEMORY)
    contenders.append(Contender(BUS_MEMORY, A('await publish("t", {"i": 1})',
                                              publish=mem_bus.publish)))

    stream = f"bench:xadd:{how.split()[0]}"
    xtally = Tally(1)
    if asynchronous:
        aclient = run.async_client()
        loop.run_until_complete(aclient.xadd(stream, {"data": json.dumps({"i": 1})}))
        xrun = A('await xadd(s, {"data": dumps({"i": 1})})', xadd=aclient.xadd, s=stream,
                 dumps=json.dumps)
    else:
        sclient = run.client()
        sclient.xadd(stream, {"data": json.dumps({"i": 1})})
        xrun = A('xadd(s, {"data": dumps({"i": 1})})', xadd=sclient.xadd, s=stream,
                 dumps=json.dumps)
    contenders.append(Contender(floor, xtally.wrap(xrun)))
    counter = run.client()

    def xlen() -> None:
        expect(xtally.n, counter.xlen(stream), f"{floor}: stream length after the runs")
    run.after.append(xlen)

    scenario = Scenario(
        title=f"{number}. Bus publish, {how}",
        note=("Baseline: the empty loop inside one coroutine. Per iteration one publish of a "
              "new `{\"i\": 1}` dict, sequentially awaited, to one subscriber (a sync handler "
              f"that counts); the floor is `XADD` of that dict as JSON with the {how}"
              + (", awaited." if asynchronous else ", called in the coroutine.")),
        baseline=Contender(EMPTY, A("pass")),
        reference=floor,
        contenders=contenders,
    )
    table = Table(scenario, absent)
    for c in contenders:
        count_trips(table, c, threads=own.get(c.name, ()))
    return table


# ---- tables ---------------------------------------------------------------------------------

_HEAD = ("contender", "µs/decision", "IQR µs", "decisions/s", "x ref", "round trips", "target")
_RIGHT = {1, 2, 3, 4, 5}


def fmt_us(ns: float | None) -> str:
    """ns as µs with three significant digits or more ("—" for None)."""
    if ns is None:
        return "—"
    us = ns / 1000
    if abs(us) >= 100:
        return f"{us:,.0f}"
    if abs(us) >= 10:
        return f"{us:.1f}"
    if abs(us) >= 1:
        return f"{us:.2f}"
    return f"{us:.3f}"


def fmt_ratio(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:.3f}" if x < 0.1 else f"{x:,.0f}" if x >= 100 else f"{x:.2f}"


def verdict(t: Table, row: h.Row) -> str:
    limit = t.targets.get(row.name)
    if limit is None:
        return ""
    met = row.ratio is not None and row.ratio <= limit
    return f"≤ {limit:g} × ref: {'met' if met else 'MISSED'}"


def rows(t: Table, res: h.ScenarioResult) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    ref = res.scenario.reference
    for r in res.rows:
        if r.overhead is None:
            out.append((r.name, "—", "—", "—", "(baseline)", "—",
                        f"{fmt_us(r.ns_per_call)} µs/iteration"))
            continue
        ratio = "1.00 (ref)" if r.name == ref else fmt_ratio(r.ratio)
        trips = t.trips.get(r.name)
        out.append((r.name, fmt_us(r.overhead), f"{fmt_us(r.q1)} – {fmt_us(r.q3)}",
                    h.per_second(r.overhead), ratio,
                    "—" if trips is None else f"{trips:.2f}", verdict(t, r)))
    for name, why in t.absent.items():
        out.append((name, "—", "—", "—", "—", "—", why))
    return out


def format_text(t: Table, res: h.ScenarioResult) -> str:
    return h.text_table(res.scenario.title, [res.scenario.note], _HEAD, rows(t, res), _RIGHT)


def format_markdown(t: Table, res: h.ScenarioResult) -> str:
    return h.markdown_table(res.scenario.title, [res.scenario.note], _HEAD, rows(t, res),
                            _RIGHT)


def summary(done: Sequence[tuple[Table, h.ScenarioResult]]) -> list[str]:
    """One line per table: each row's µs and rate, resil's verdicts."""
    out = []
    for t, res in done:
        parts = []
        for r in res.rows:
            if r.overhead is None:
                continue
            text = f"{r.name} {fmt_us(r.overhead)} µs ({h.per_second(r.overhead)}/s"
            if r.name != res.scenario.reference and r.ratio is not None:
                text += f", {fmt_ratio(r.ratio)} × ref"
            text += ")"
            if r.name in t.targets:
                text += f" [{verdict(t, r)}]"
            parts.append(text)
        parts += [f"{name}: {why}" for name, why in t.absent.items()]
        what = res.scenario.title.split(". ", 1)[1]
        out.append(f"{what}: " + "; ".join(parts))
    return out


NOTES = """\
Notes:
- One process, one thread (the bus: one coroutine on asyncio's default
  loop), one decision after another; redis-server runs on the same machine
  (2 cores shared with the client), reached over loopback TCP. A round
  trip here is mostly the two processes' system calls and the scheduler
  handing the core back and forth, so its µs vary with the machine's load
  more than in-process figures do; the per-round ratios (*x ref*) pair the
  rows of one round and stay steadier than the absolute µs.
- *round trips*: requests redis-py sent per decision, counted over a
  checked run of the row's own loop (a pipeline is one request whatever
  its commands), from the loop's thread and the row's own threads (a
  bus's stream reader); other rows' idle readers are not counted. The floor sends `INCR` and `EXPIRE` of one key in one
  request (`pipeline(transaction=False)`, no MULTI/EXEC), the least any
  counter-based limiter on Redis sends; `limits` sends one `EVALSHA`
  (fixed window: INCRBY, EXPIRE when new; moving window: LINDEX, then
  LPUSH, LTRIM, EXPIRE when admitted); pybreaker with `CircuitRedisStorage` sends two requests
  per successful call (the state, read before the call; the failure
  counter, reset after it).
- resil's cluster limiter decides with one Lua script (GCRA on Redis
  `TIME`) per admitted decision, through a `RedisBackend` (timeout 0.5 s
  here so that a scheduling hiccup on the loaded machine never sends a
  measured decision to the fallback; every backend is checked after the
  runs to have had every operation answered by Redis). A refused key is
  refused locally until its retry time, with no round trip.
- resil's cluster breaker keeps its local breaker on the hot path: a
  guarded call makes no round trip; the host's counts are published, and
  the cluster's state read back, once per `sync_interval` (1 s here) from
  the backend's background thread, which shares the GIL with the caller.
- `limits`' moving window keeps one list entry per hit (trimmed to the
  limit, here 10**9 per second, so the list grows with every hit of a run).
- Bus: the floor is `XADD` of the payload as JSON, one request; resil's
  publish with a `StreamStore` numbers the event and appends it in one
  script, then delivers it to the subscriber. *no store* is the bus's own
  cost, with nothing written to Redis."""


def main(argv: list[str] | None = None) -> int:
    ap = h.arg_parser(__doc__)
    ap.add_argument("--repeats", type=int, default=None, help="rounds per scenario")
    ap.add_argument("--loop-ms", type=float, default=None, help="target ms per loop")
    args = h.parse_args(ap, argv)
    repeats = args.repeats or (3 if args.quick else 21)
    loop_ms = args.loop_ms or (2.0 if args.quick else 40.0)
    rng = random.Random(args.seed)
    started = time.monotonic()

    if redis_server_path() is None:
        h.eprint("redis-server is not installed (Debian: apt-get install redis-server; "
                 "make services)")
        return 2
    from resil import _resil
    from resil.redis import _backend

    server = LoopbackRedis()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    run = Run(loop, server)
    facts = h.machine_facts(["resil", *PEERS])
    facts[4:4] = [
        ("resil extension", h.file_fact(Path(_resil.__file__), "built")),
        ("resil redis backend", h.file_fact(Path(_backend.__file__), "saved")),
        ("redis-server", f"{server.version()} on 127.0.0.1 (loopback TCP), started by the "
                         "benchmark, no persistence"),
        ("redis-py parser", "hiredis" if redis.utils.HIREDIS_AVAILABLE
         else "pure Python (hiredis not installed)"),
        ("event loop", f"{type(loop).__name__} (asyncio's default; no uvloop)"),
    ]
    facts.append(("run", f"{repeats} rounds per scenario, loops of ~{loop_ms:g} ms, shuffle seed "
                         f"{args.seed}" + (" (--quick smoke run)" if args.quick else "")))
    h.print_facts("Cluster state on Redis: resil vs limits, pybreaker and the bare round trip",
                  facts)

    done: list[tuple[Table, h.ScenarioResult]] = []
    checked = 0
    try:
        makers: list[Callable[[], Table]] = [
            lambda: limiter_table(run, refused=False),
            lambda: limiter_table(run, refused=True),
            lambda: breaker_table(run),
            lambda: bus_table(run, asynchronous=True),
            lambda: bus_table(run, asynchronous=False),
        ]
        for make in makers:
            table = make()
            res = h.run_and_print(table.scenario, repeats=repeats, loop_ms=loop_ms, rng=rng,
                                  fmt=lambda res, table=table: format_text(table, res))
            done.append((table, res))
            # Before the next table empties Redis.
            for check in run.after:
                check()
            checked += len(run.after)
            run.after.clear()
        for backend in run.backends:
            st = backend.stats()
            expect(("redis", 0), (st["backend"], st["unavailable"]),
                   "a resil backend after the runs: (mode, operations answered by the fallback)")
        h.eprint(f"checked after the runs: {checked} contenders' states and writes, "
                 f"{len(run.backends)} backends answered by Redis throughout")
    finally:
        for close in reversed(run.closers):
            try:
                close()
            except Exception as exc:  # closing must not hide the run's own error
                h.eprint(f"closing: {type(exc).__name__}: {exc}")
        asyncio.set_event_loop(None)
        loop.close()
        server.close()

    h.finish(facts, script=__file__, heading=SECTION,
             tables=[format_markdown(t, res) for t, res in done], notes=NOTES,
             write=args.write_results, summary=summary(done), started=started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
