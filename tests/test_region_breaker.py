"""A CircuitBreaker in a SharedRegion: one breaker for every process that
opens the region. Two handles in one process behave as one breaker (a
Hypothesis machine against the model, through both handles at random);
processes share failures, trips and the probe limit; a probe held by a
process killed with SIGKILL comes back after the lease; processes killed at
random moments leave a sound region; bad parameters and misuse are clear
errors."""

from __future__ import annotations

import asyncio
import gc
import os
import random
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import initialize

import resil

try:  # pytest's default "prepend" import mode puts tests/ on sys.path
    import breaker_workers
    from model import breaker as mdl
    from test_breaker_model import BreakerMachine, Drawn, Side, configs, machine_settings
except ModuleNotFoundError:  # pragma: no cover - tests/ made a package
    from tests import breaker_workers  # type: ignore[no-redef]
    from tests.model import breaker as mdl  # type: ignore[no-redef]
    from tests.test_breaker_model import (  # type: ignore[no-redef]
        BreakerMachine, Drawn, Side, configs, machine_settings)

HALF_MS = 500_000


class Boom(Exception):
    pass


def boom() -> None:
    raise Boom


def _region(tmp_path: Path, **kw: Any) -> resil.SharedRegion:
    return resil.SharedRegion(tmp_path / "r", **kw)


# ---- one breaker through several handles -----------------------------------------


def test_two_handles_are_one_breaker(tmp_path: Path) -> None:
    clock = resil.VirtualClock()
    region = _region(tmp_path)
    kw: dict[str, Any] = {"failure_threshold": 3, "cooldown": 1.0, "half_open_probes": 2,
                          "clock": clock}
    a = resil.CircuitBreaker("api", shared=region, **kw)
    b = resil.CircuitBreaker("api", shared=region, **kw)
    other = resil.CircuitBreaker("other", shared=region, **kw)
    seen_a: list[tuple[str, str]] = []
    seen_b: list[tuple[str, str]] = []
    a.on_state_change(lambda br, old, new, reason: seen_a.append((new.name, reason)))
    b.on_state_change(lambda br, old, new, reason: seen_b.append((new.name, reason)))
    for breaker in (a, b, a):  # failures from either handle count toward one breaker
        with pytest.raises(Boom):
            breaker.call(boom)
    assert a.state is b.state is resil.State.OPEN
    assert other.state is resil.State.CLOSED
    with pytest.raises(resil.CircuitOpenError) as info:
        b.call(lambda: 1)
    assert info.value.state is resil.State.OPEN and info.value.remaining == 1.0
    assert seen_a == [("OPEN", "consecutive_failures")] and seen_b == []  # a's call tripped it
    assert a.last_opened == b.last_opened is not None
    clock.advance(1.0)
    p1, p2 = a.acquire(), b.acquire()
    assert p1.probe and p2.probe
    with pytest.raises(resil.CircuitOpenError):  # two probes host-wide, not per handle
        b.acquire()
    with pytest.raises(resil.CircuitOpenError):
        a.acquire()
    b.record_success(p2)
    a.record_success(p1)
    assert a.state is resil.State.CLOSED
    assert seen_a == [("OPEN", "consecutive_failures"), ("HALF_OPEN", "cooldown_elapsed"),
                      ("CLOSED", "probes_succeeded")]
    assert seen_b == []  # each transition was made, and reported, by a's calls
    sa, sb = a.stats(), b.stats()
    assert sa == sb
    assert (sa["permitted"], sa["rejected"], sa["failures"], sa["successes"]) == (5, 3, 3, 2)
    assert [o["type"] for o in region.objects()] == ["CircuitBreaker", "CircuitBreaker"]
    assert region.objects()[0]["parameters"]["failure_threshold"] == 3
    assert region.check() == []


def _every_way_of_calling(a: resil.CircuitBreaker) -> None:
    @a
    def sync(x: int) -> int:
        return x

    @a
    async def coro(x: int) -> int:
        await asyncio.sleep(0)
        return x

    async def main() -> None:
        assert await coro(1) == 1
        assert await a.call_async(coro.__wrapped__, 2) == 2  # type: ignore[attr-defined]
        assert await a.call(coro.__wrapped__, 3) == 3  # type: ignore[attr-defined]
        async with a:
            pass
        with pytest.raises(Boom):
            async with a:
                raise Boom
        task = asyncio.ensure_future(a.call_async(asyncio.sleep, 10))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    assert sync(1) == 1
    with a:
        pass
    with pytest.raises(Boom):
        with a:
            raise Boom
    permit = a.acquire()
    a.release(permit)
    a.record_success(latency_ms=5.0)
    a.record_failure(None, 5.0)
    asyncio.run(main())
    held = a.call(coro.__wrapped__, 4)  # type: ignore[attr-defined]
    with pytest.warns(RuntimeWarning):  # dropped unawaited: nothing taken, nothing lost
        del held
        gc.collect()


def test_every_way_of_calling_goes_to_the_region(tmp_path: Path) -> None:
    region = _region(tmp_path)
    clock = resil.VirtualClock()
    a = resil.CircuitBreaker("api", shared=region, failure_threshold=100, clock=clock)
    b = resil.CircuitBreaker("api", shared=region, failure_threshold=100, clock=clock)
    local = resil.CircuitBreaker("api", failure_threshold=100, clock=clock)
    _every_way_of_calling(a)
    _every_way_of_calling(local)
    assert b.stats() == local.stats()
    s = b.stats()
    assert (s["permitted"], s["released"], s["successes"], s["failures"]) == (10, 2, 7, 3)
    assert region.check() == []


def test_manual_control_and_reads_are_host_wide(tmp_path: Path) -> None:
    clock = resil.VirtualClock()
    region = _region(tmp_path)
    a = resil.CircuitBreaker("m", shared=region, clock=clock, cooldown=2.0)
    b = resil.CircuitBreaker("m", shared=region, clock=clock, cooldown=2.0)
    a.force_open()
    assert b.state is resil.State.FORCED_OPEN and b.remaining is None
    b.disable()
    assert a.state is resil.State.DISABLED
    a.open()
    clock.advance(0.5)
    assert b.remaining == 1.5 and b.stats()["remaining"] == 1.5
    b.close()
    assert a.state is resil.State.CLOSED and a.health_score == 1.0
    assert a.effective_threshold == b.effective_threshold == 5
    b.reset()
    assert a.stats()["transitions"]["CLOSED"] == 0  # reset clears the counts
    # the exposition reads the region too
    text = resil.prometheus.exposition(a)
    assert 'resil_circuit_breaker_state{endpoint="m"} 0' in text


# ---- parameters and misuse ---------------------------------------------------------


@pytest.mark.parametrize("changed", [
    {"failure_threshold": 4}, {"failure_rate_threshold": 0.5}, {"slow_call_duration": 1.0},
    {"window_size": 50}, {"window_duration": 10.0}, {"cooldown": 30.0},
    {"half_open_probes": 1}, {"half_open_max_wait": 5.0}, {"adaptive": False},
    {"ewma_alpha": 0.5}, {"latency_window": 10},
])
def test_other_parameters_name_the_first_difference(tmp_path: Path,
                                                    changed: dict[str, Any]) -> None:
    region = _region(tmp_path)
    resil.CircuitBreaker("api", shared=region)
    name = next(iter(changed))
    with pytest.raises(ValueError, match=f"^{name}: the CircuitBreaker 'api' in region"):
        resil.CircuitBreaker("api", shared=region, **changed)
    # the classification and the clock are each process's own
    resil.CircuitBreaker("api", shared=region, failure_on=OSError, ignore=KeyError,
                         clock=resil.VirtualClock())


def test_configure_changes_only_what_each_process_owns(tmp_path: Path) -> None:
    region = _region(tmp_path)
    a = resil.CircuitBreaker("api", shared=region, failure_threshold=1)
    with pytest.raises(TypeError, match="cannot change failure_threshold of a shared breaker"):
        a.configure(failure_threshold=2)
    with pytest.raises(TypeError, match="cannot change cooldown"):
        a.configure(ignore=KeyError, cooldown=1.0)
    assert a.ignore == ()  # all or nothing
    a.configure(ignore=KeyError, result_failure=lambda r: r is None)
    with pytest.raises(KeyError):
        a.call(lambda: {}["x"])
    assert a.state is resil.State.CLOSED
    a.call(lambda: None)  # a failure by result_failure
    assert a.state is resil.State.OPEN


def test_misuse_is_a_clear_error(tmp_path: Path) -> None:
    region = _region(tmp_path)
    with pytest.raises(TypeError, match="shared must be None or a resil.SharedRegion"):
        resil.CircuitBreaker("api", shared=str(tmp_path / "r"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at most 63 bytes"):
        resil.CircuitBreaker("x" * 64, shared=region)
    breaker = resil.CircuitBreaker("api", shared=region)
    with pytest.raises(ValueError, match="cannot join a group"):
        breaker._attach(resil._resil.EjectionPool(50))
    with pytest.raises(ValueError, match="max_ejection_percent must be 100 with shared="):
        resil.BreakerGroup(shared=region, max_ejection_percent=50)
    with pytest.raises(TypeError, match="shared must be None or a resil.SharedRegion"):
        resil.BreakerGroup(shared="r")
    group = resil.BreakerGroup(shared=region, failure_threshold=1)
    again = resil.BreakerGroup(shared=region, failure_threshold=1)
    group.record_failure("db")
    assert again["db"].state is resil.State.OPEN  # one breaker per endpoint, host-wide
    assert [o["name"] for o in region.objects()] == ["api", "db"]
    small = resil.SharedRegion(tmp_path / "small", size=1 << 16)
    with pytest.raises(resil.RegionError, match="full.*size=65536"):
        resil.CircuitBreaker("big", shared=small, window_size=1_000_000)
    region.close()
    with pytest.raises(resil.RegionError, match="closed"):
        breaker.call(lambda: 1)
    with pytest.raises(resil.RegionError, match="closed"):
        breaker.stats()
    with pytest.raises(resil.RegionError, match="closed"):
        breaker.reset()


def test_an_outcome_after_close_is_reported_not_raised(tmp_path: Path) -> None:
    region = _region(tmp_path)
    breaker = resil.CircuitBreaker("api", shared=region)
    seen: list[Any] = []
    old_hook = sys.unraisablehook
    sys.unraisablehook = seen.append
    try:
        def call() -> int:
            region.close()
            return 7
        assert breaker.call(call) == 7  # the call's own result is kept
    finally:
        sys.unraisablehook = old_hook
    assert len(seen) == 1 and isinstance(seen[0].exc_value, resil.RegionError)


# ---- threads ----------------------------------------------------------------------


def test_threads_on_two_handles_count_exactly(tmp_path: Path) -> None:
    region = _region(tmp_path)
    handles = [resil.CircuitBreaker("t", shared=region, failure_threshold=0,
                                    half_open_probes=1) for _ in range(2)]
    counts: Counter[str] = Counter()
    lock = threading.Lock()

    def work(seed: int) -> None:
        rng = random.Random(seed)
        mine: Counter[str] = Counter()
        for _ in range(3000):
            h = handles[rng.randrange(2)]
            if rng.random() < 0.3:
                with pytest.raises(Boom):
                    h.call(boom)
                mine["failures"] += 1
            else:
                h.call(lambda: None)
                mine["successes"] += 1
        with lock:
            counts.update(mine)

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    s = handles[0].stats()
    assert (s["successes"], s["failures"], s["permitted"]) == (
        counts["successes"], counts["failures"], 12000)
    assert region.check() == []


# ---- processes ----------------------------------------------------------------------


def test_four_processes_are_one_breaker(tmp_path: Path) -> None:
    ctx = breaker_workers.context()
    path = str(tmp_path / "r")
    region = resil.SharedRegion(path)
    breaker = resil.CircuitBreaker("dep", shared=region, **breaker_workers.KW)
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=breaker_workers.drive, args=(path, seed, 1.0, start, out))
             for seed in range(4)]
    for p in procs:
        p.start()
    time.sleep(0.3)  # every child attached and waiting
    start.set()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    totals: Counter[str] = Counter()
    probes_per_epoch: Counter[int] = Counter()
    for counts, probes in results:
        totals.update(counts)
        probes_per_epoch.update(epoch for epoch, _ in probes)
    s = breaker.stats()
    assert {k: s[k] for k in totals} == dict(totals)  # totals exact
    # probes capped host-wide: each half-open episode (an epoch) granted at
    # most half_open_probes of them, whichever processes asked
    assert probes_per_epoch and max(probes_per_epoch.values()) <= 2, probes_per_epoch
    assert s["transitions"]["OPEN"] > 3 and s["rejected"] > 0  # it did trip, repeatedly
    assert region.check() == []


def test_a_probe_held_by_a_killed_process_comes_back_after_the_lease(tmp_path: Path) -> None:
    ctx = breaker_workers.context()
    path = str(tmp_path / "r")
    lease = 0.3
    region = resil.SharedRegion(path, lease=lease)
    breaker = resil.CircuitBreaker("dep", shared=region, failure_threshold=1, cooldown=0.01,
                                   half_open_probes=1)
    with pytest.raises(Boom):
        breaker.call(boom)  # OPEN; the child takes the probe once half-open
    ready = ctx.Event()
    proc = ctx.Process(target=breaker_workers.take_probe_and_wait, args=(path, lease, ready))
    proc.start()
    try:
        assert ready.wait(30)
        taken = time.monotonic()
        with pytest.raises(resil.CircuitOpenError):  # its probe is taken
            breaker.acquire()
        time.sleep(lease + 0.05)
        with pytest.raises(resil.CircuitOpenError):  # past the lease, but its holder lives
            breaker.acquire()
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(timeout=30)
    killed = time.monotonic()
    assert killed - taken >= lease
    while True:  # the dead holder's probe, given back within a lease of its death
        try:
            permit = breaker.acquire()
            break
        except resil.CircuitOpenError:
            assert time.monotonic() - killed < lease + 0.2
            time.sleep(0.01)
    assert permit.probe
    breaker.record_success(permit)
    assert breaker.state is resil.State.CLOSED
    assert region.check() == []


def test_processes_killed_at_random_moments_leave_a_sound_breaker(tmp_path: Path) -> None:
    ctx = breaker_workers.context()
    path = str(tmp_path / "r")
    region = resil.SharedRegion(path, lease=0.2)
    breaker = resil.CircuitBreaker("k", shared=region, failure_threshold=2, cooldown=0.001,
                                   half_open_probes=2, window_size=7, minimum_calls=3, latency_window=5)
    rng = random.Random(5)
    last = 0
    for round_ in range(50):
        ready = ctx.Event()
        proc = ctx.Process(target=breaker_workers.call_until_killed, args=(path, round_, ready))
        proc.start()
        assert ready.wait(30)
        time.sleep(rng.uniform(0, 0.01))
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(timeout=30)
        assert proc.exitcode == -signal.SIGKILL
        t0 = time.monotonic()
        breaker.record_success(latency_ms=1.0)  # never hangs: a dead holder's lock is recovered
        s = breaker.stats()
        assert time.monotonic() - t0 < 2
        total = s["permitted"] + s["rejected"]
        assert total >= last  # counts of dead workers are kept
        last = total
        assert region.check() == [], round_
    # every probe a killed process held comes back within the lease
    time.sleep(0.25)
    deadline = time.monotonic() + 5
    breaker.close()
    breaker.open()
    while True:
        try:
            permit = breaker.acquire()
            break
        except resil.CircuitOpenError:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    breaker.record_success(permit)
    breaker.record_success(breaker.acquire())
    assert breaker.state is resil.State.CLOSED
    assert last > 50 and region.check() == []


# ---- lockstep with the model: two handles behave as one breaker ----------------------

_DIR = tempfile.TemporaryDirectory(prefix="resil-region-breaker-")
_IDS = iter(range(10**9))


class Handles:
    """Stands for the breaker in the model machine: each attribute read goes
    to one of two handles on one region, at random."""

    def __init__(self, handles: list[resil.CircuitBreaker], rng: random.Random) -> None:
        self._handles = handles
        self._rng = rng

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handles[self._rng.randrange(2)], name)


class SharedBreakerMachine(BreakerMachine):
    @initialize(drawn=configs(), start=st.integers(0, 40).map(lambda k: k * 25 * HALF_MS),
                seed=st.integers(0, 2**16))
    def setup(self, drawn: Drawn, start: int, seed: int) -> None:
        self.clock.advance_ns(start)
        path = os.path.join(_DIR.name, f"r{next(_IDS)}")
        self.region = resil.SharedRegion(path, size=1 << 16)
        os.unlink(path)  # the mappings stay
        handles = [resil.CircuitBreaker("model", clock=self.clock, shared=self.region,
                                        **drawn.kwargs) for _ in range(2)]
        model = mdl.BreakerModel(drawn.cfg, now=self.now)
        self.side = Side(Handles(handles, random.Random(seed)), model)  # type: ignore[arg-type]
        log = self.side.log
        for h in handles:  # a transition is reported by the handle whose call made it
            h.on_state_change(
                lambda b, old, new, reason: log.append((int(old), int(new), reason)))

    def teardown(self) -> None:
        if getattr(self, "region", None) is not None:
            assert self.region.check() == []
            self.region.close()


TestSharedBreakerModel = SharedBreakerMachine.TestCase
TestSharedBreakerModel.settings = machine_settings(0.5)


@pytest.mark.parametrize("make, word", [
    (lambda r: resil.RateLimiter(5, name="a", shared=r), 7),
    (lambda r: resil.CircuitBreaker("a", shared=r), 18),
])
def test_a_damaged_parameter_past_a_types_own_is_a_region_error(
        tmp_path: Path, make: Any, word: int) -> None:
    """A directory entry's parameter words beyond those its type has are 0;
    one damaged there is a corrupt entry, named as such (it once read past
    the type's field table to name the difference)."""
    path = tmp_path / "r"
    region = resil.SharedRegion(path)
    make(region)
    region.close()
    data = bytearray(path.read_bytes())
    data[128 + 4 + 4 + 64 + word * 8 + 1] ^= 1  # the first entry's parameter `word`
    path.write_bytes(bytes(data))
    region = resil.SharedRegion(path)
    with pytest.raises(resil.RegionError, match="corrupt.*holds a parameter no"):
        make(region)


def test_shared_names_the_region_or_none(tmp_path: Path) -> None:
    region = _region(tmp_path)
    assert resil.CircuitBreaker("a", shared=region).shared is region
    assert resil.CircuitBreaker("a").shared is None
    assert resil.RateLimiter(5, name="a", shared=region).shared is region
    assert resil.RateLimiter(5).shared is None


def test_four_processes_in_lockstep_with_the_model(tmp_path: Path) -> None:
    """Four processes take turns (a lock orders their operations; permits
    stay open across turns and processes): the host's breaker after each
    operation is the model's fed the same operations in that order."""
    ctx = breaker_workers.context()
    path = str(tmp_path / "r")
    region = resil.SharedRegion(path)
    lock, seq = ctx.Lock(), ctx.Value("q", 0)
    clock_value = ctx.Value("d", 1000.0)
    out = ctx.Queue()
    n = 400
    procs = [ctx.Process(target=breaker_workers.lockstep,
                         args=(path, seed, n, lock, seq, clock_value, out))
             for seed in range(4)]
    for p in procs:
        p.start()
    logs = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    entries = sorted((e for log in logs for e in log), key=lambda e: e[0])
    assert [e[0] for e in entries] == list(range(1, 4 * n + 1))
    kw = breaker_workers.LOCKSTEP_KW
    cfg = mdl.Config(
        failure_threshold=kw["failure_threshold"], failure_rate_threshold=0.5,
        slow_call_ms=None, slow_call_rate_threshold=1.0, window_size=kw["window_size"],
        window_duration_ns=0, minimum_calls=kw["minimum_calls"], cooldown_ns=10**9,
        cooldown_multiplier=2.0, cooldown_max_ns=4 * 10**9, half_open_probes=2,
        half_open_max_wait_ns=0, adaptive=True, ewma_alpha=0.3, sensitivity=2.0,
        min_health_score=0.3, latency_window=kw["latency_window"])
    now = 1000 * 10**9
    model = mdl.BreakerModel(cfg, now=0)
    permits: dict[int, mdl.Permit] = {}
    seen = Counter()
    for entry in entries:
        k, op = entry[0], entry[1]
        state, epoch = entry[-2], entry[-1]
        if op in ("acquire", "rejected"):
            got = model.acquire(now)
            if op == "acquire":
                assert isinstance(got, mdl.Permit), entry
                assert (got.epoch, got.probe) == entry[2:4], (entry, got)
                permits[k] = got
            else:
                assert not isinstance(got, mdl.Permit), (entry, got)
                assert int(model.state) == entry[2]
        elif op in ("success", "failure", "release"):
            permit = permits.pop(entry[2])
            if op == "release":
                model.release(permit, now)
            else:
                getattr(model, op)(permit, entry[3], now)
        elif op == "permitless":
            (model.failure if entry[2] else model.success)(None, entry[3], now)
        elif op == "advance":
            now += round(entry[2] * 1e9)
        else:
            getattr(model, entry[2])(now)
        model.tick(now)
        assert (model.state, model.epoch) == (state, epoch), (entry, model.state, model.epoch)
        seen[op] += 1
    # every kind of step happened, and the breaker went round its states
    assert min(seen.values()) >= 5, seen
    entered = Counter(b[-2] for a, b in zip(entries, entries[1:]) if a[-2] != b[-2])
    assert entered[int(resil.State.OPEN)] >= 3 and entered[int(resil.State.HALF_OPEN)] >= 3, entered
    stats = resil.CircuitBreaker("ls", shared=region, **breaker_workers.LOCKSTEP_KW).stats()
    assert (stats["permitted"], stats["rejected"]) == (
        model.counts["permitted"], model.counts["rejected"])
    assert region.check() == []


def test_a_probe_reported_by_a_forked_child_comes_back(tmp_path: Path) -> None:
    """A child forked while its parent held a probe reports it: the record
    goes with the outcome, whichever process reports it."""
    clock = resil.VirtualClock()
    region = _region(tmp_path)
    breaker = resil.CircuitBreaker("f", shared=region, failure_threshold=1, cooldown=1.0,
                                   half_open_probes=1, clock=clock)
    breaker.record_failure()
    clock.advance(1.0)
    probe = breaker.acquire()
    assert probe.probe
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            breaker.release(probe)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    probe = breaker.acquire()  # the probe came back
    assert probe.probe and region.check() == []
    breaker.record_success(probe)
    assert breaker.state is resil.State.CLOSED


@pytest.mark.parametrize("shared", [False, True])
def test_a_permit_dropped_unreported_is_released(tmp_path: Path, shared: bool) -> None:
    clock = resil.VirtualClock()
    kw: dict[str, Any] = {"failure_threshold": 1, "cooldown": 1.0, "half_open_probes": 1,
                          "clock": clock}
    if shared:
        kw["shared"] = _region(tmp_path)
    breaker = resil.CircuitBreaker("d", **kw)
    breaker.record_failure()
    clock.advance(1.0)
    probe = breaker.acquire()
    del probe  # never reported: the probe is given back, not kept for good
    gc.collect()
    again = breaker.acquire()
    assert again.probe
    assert breaker.stats()["released"] == 1
    breaker.record_success(again)
    assert breaker.state is resil.State.CLOSED


def test_a_shared_object_needs_a_name(tmp_path: Path) -> None:
    region = _region(tmp_path)
    with pytest.raises(TypeError, match="with shared= needs a name"):
        resil.CircuitBreaker(shared=region)
    with pytest.raises(TypeError, match="with shared= needs name="):
        resil.RateLimiter(5, shared=region)
    assert region.objects() == []


def test_closing_the_region_gives_back_this_processs_probes(tmp_path: Path) -> None:
    clock = resil.VirtualClock()
    path = tmp_path / "r"
    kw: dict[str, Any] = {"failure_threshold": 1, "cooldown": 1.0, "half_open_probes": 1,
                          "clock": clock}
    mine = resil.SharedRegion(path)
    breaker = resil.CircuitBreaker("c", shared=mine, **kw)
    breaker.record_failure()
    clock.advance(1.0)
    probe = breaker.acquire()

    def another_process_gets_the_probe() -> bool:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            try:
                other = resil.CircuitBreaker("c", shared=resil.SharedRegion(path), **kw)
                os._exit(0 if other.acquire().probe else 1)
            except BaseException:
                os._exit(2)
        return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0

    assert not another_process_gets_the_probe()
    mine.close()  # this process can never report it now: it is given back
    with pytest.raises(resil.RegionError, match="closed"):
        breaker.record_success(probe)
    assert not probe.done
    assert another_process_gets_the_probe()
    del probe  # dropped after the close: nothing to give back, nothing reported
    gc.collect()
    stats = resil.CircuitBreaker("c", shared=resil.SharedRegion(path), **kw).stats()
    # ours, given back at the close, and the child's, dropped unreported
    assert stats["released"] == 2 and stats["half_open_probes_granted"] == 0


def test_repr_after_close(tmp_path: Path) -> None:
    region = _region(tmp_path)
    breaker = resil.CircuitBreaker("r", shared=region)
    assert repr(breaker) == "<CircuitBreaker 'r' CLOSED>"
    region.close()
    assert repr(breaker) == "<CircuitBreaker 'r' (region closed)>"


def test_reattaching_keeps_the_latency_figures(tmp_path: Path) -> None:
    """Attaching repairs a block whose lock is free; the repair once moved
    the latency ring's write position to 0, so the next latencies
    overwrote the newest ones and the mean and jitter went wrong."""
    region = _region(tmp_path)
    kw: dict[str, Any] = {"latency_window": 5, "failure_threshold": 0}
    shared = resil.CircuitBreaker("lat", shared=region, **kw)
    local = resil.CircuitBreaker("lat", **kw)
    for i, latency in enumerate([10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0]):
        if i in (2, 5):
            resil.CircuitBreaker("lat", shared=region, **kw)  # another worker starts
        shared.record_success(latency_ms=latency)
        local.record_success(latency_ms=latency)
        assert (shared.stats()["avg_latency_ms"], shared.stats()["jitter_ms"]) == pytest.approx(
            (local.stats()["avg_latency_ms"], local.stats()["jitter_ms"])), i


def test_closing_one_of_two_handles_keeps_the_others_probes(tmp_path: Path) -> None:
    """Closing gives back this process's probes only with its last handle on
    the file: a breaker attached through another one may hold them."""
    clock = resil.VirtualClock()
    path = tmp_path / "r"
    kw: dict[str, Any] = {"failure_threshold": 1, "cooldown": 1.0, "half_open_probes": 1,
                          "clock": clock}
    first, second = resil.SharedRegion(path), resil.SharedRegion(path)
    breaker = resil.CircuitBreaker("h", shared=second, **kw)
    other = resil.CircuitBreaker("h", shared=first, **kw)
    breaker.record_failure()
    clock.advance(1.0)
    probe = breaker.acquire()
    first.close()  # `second` still open: its breaker's probe stays held
    observer = resil.CircuitBreaker("h", shared=resil.SharedRegion(path), **kw)
    with pytest.raises(resil.CircuitOpenError):
        observer.acquire()
    breaker.record_success(probe)
    assert observer.state is resil.State.CLOSED
    del other
