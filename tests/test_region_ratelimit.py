"""RateLimiter(shared=region): limiters of one name in one region are one
limit, across handles and processes. Parameters that differ are a
ValueError naming the first; keys are str or bytes; four processes stay
within the GCRA bound host-wide with exact totals; a process killed at
random moments while hammering leaves a sound region and loses no count;
and two handles driven in lockstep with the exact-fraction model behave
as one limiter.
"""

from __future__ import annotations

import os
import random
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import resil

try:  # pytest's default "prepend" import mode puts tests/ on sys.path
    import region_workers
    from tests_support import kill_when_running
except ModuleNotFoundError:  # pragma: no cover - tests/ made a package
    from tests import region_workers  # type: ignore[no-redef]
    from tests.tests_support import kill_when_running  # type: ignore[no-redef]

try:  # pytest's default "prepend" import mode puts tests/ on sys.path
    from model.gcra import GcraModel
except ModuleNotFoundError:  # pragma: no cover - tests/ made a package
    from tests.model.gcra import GcraModel  # type: ignore[no-redef]




def test_two_handles_are_one_limiter(tmp_path: Path) -> None:
    clock = resil.VirtualClock()
    region = resil.SharedRegion(tmp_path / "r")
    a = resil.RateLimiter(2, burst=3, name="api", clock=clock, shared=region)
    b = resil.RateLimiter(2, burst=3, name="api", clock=clock,
                          shared=resil.SharedRegion(tmp_path / "r"))
    other = resil.RateLimiter(2, burst=3, name="other", clock=clock, shared=region)
    assert a.try_acquire(2) and b.try_acquire()
    assert not a.try_acquire() and not b.try_acquire()
    assert b.retry_after() == pytest.approx(0.5)
    assert other.try_acquire(3)  # another name, another limit
    clock.advance(0.5)
    assert b.try_acquire() and not a.try_acquire()
    expected = {"name": "api", "rate": 2.0, "per": 1.0, "burst": 3, "admitted": 3,
                "rejected": 3, "keys": 0}
    assert a.stats() == expected and b.stats() == expected
    # acquire and the decorator go through the same shared bucket
    clock.advance(1.0)
    a.acquire(2)

    @b
    def call() -> int:
        return 1

    with pytest.raises(resil.RateLimited):
        call()
    assert a.stats()["admitted"] == 4


def test_keys_are_str_or_bytes_and_shared(tmp_path: Path) -> None:
    clock = resil.VirtualClock()
    region = resil.SharedRegion(tmp_path / "r")
    a = resil.RateLimiter(1, burst=2, name="k", clock=clock, shared=region)
    b = resil.RateLimiter(1, burst=2, name="k", clock=clock, shared=region)
    assert a.try_acquire(2, key="user-1")
    assert not b.try_acquire(key="user-1")
    assert b.try_acquire(2, key=b"user-1")  # bytes and str are different keys
    assert b.try_acquire(2, key="x" * 10_000)  # any length: kept as a digest
    assert not a.try_acquire(key="x" * 10_000)
    assert a.try_acquire(key="x" * 9_999 + "y")
    assert a.stats()["keys"] == 4
    assert b.retry_after(key="user-1") == pytest.approx(1.0)
    for key in (1, 1.5, ("a",), object(), bytearray(b"a")):
        with pytest.raises(TypeError, match="key must be None, a str or bytes"):
            a.try_acquire(key=key)
        with pytest.raises(TypeError, match="key must be None, a str or bytes"):
            a.retry_after(key=key)
    with pytest.raises(ValueError, match="key must be a str encodable as UTF-8"):
        a.try_acquire(key="\ud800")
    clock.advance(2.0)
    assert a.stats()["keys"] == 0  # full again: forgotten at no cost
    assert region.check() == []


@pytest.mark.parametrize("changed, name", [
    ({"rate": 6}, "rate"), ({"per": 2.0}, "per"), ({"burst": 4}, "burst"),
    ({"max_keys": 100}, "max_keys"), ({"rate": 6, "burst": 4}, "rate"),
    ({"burst": 4, "max_keys": 100}, "burst"),
])
def test_other_parameters_name_the_first_difference(tmp_path: Path, changed: dict[str, Any],
                                                    name: str) -> None:
    region = resil.SharedRegion(tmp_path / "r")
    resil.RateLimiter(5, burst=5, name="api", shared=region)
    kwargs: dict[str, Any] = {"rate": 5, "burst": 5, **changed}
    with pytest.raises(ValueError, match=f"^{name}: the rate limiter 'api' in region .* has "
                                         f"{name}="):
        resil.RateLimiter(kwargs.pop("rate"), name="api", shared=region, **kwargs)
    # the same values (5 and 5.0 are one rate) attach
    resil.RateLimiter(5.0, per=1, burst=5, max_keys=1024, name="api", shared=region)
    assert len(region.objects()) == 1


def test_waits_on_the_event_loop_and_cancellation(tmp_path: Path) -> None:
    import asyncio

    clock = resil.VirtualClock()
    region = resil.SharedRegion(tmp_path / "r")
    a = resil.RateLimiter(2, burst=2, name="w", clock=clock, shared=region)
    b = resil.RateLimiter(2, burst=2, name="w", clock=clock, shared=region)

    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        assert a.try_acquire(2)
        times = []
        for _ in range(3):
            await b.acquire_async(key=None)
            times.append(loop.time())
        task = asyncio.ensure_future(a.acquire_async(2))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(resil.RateLimited):
            await a.acquire_async(2, timeout=0.1)
        return times

    times = resil.run_virtual(main(), clock=clock)
    assert [round(t - times[0], 6) for t in times] == [0.0, 0.5, 1.0]
    assert a.stats()["admitted"] == 4  # the cancelled waiter took nothing


def test_shared_must_be_a_region(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="shared must be None or a resil.SharedRegion"):
        resil.RateLimiter(5, shared=str(tmp_path / "r"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="cluster must be None"):
        resil.RateLimiter(5, cluster=object())  # type: ignore[arg-type]


def test_threads_share_exactly(tmp_path: Path) -> None:
    import sys
    from concurrent.futures import ThreadPoolExecutor

    region = resil.SharedRegion(tmp_path / "r")
    limiter = resil.RateLimiter(1, burst=1000, name="t", clock=resil.VirtualClock(),
                                shared=region)

    def work(_: int) -> int:
        return sum(limiter.try_acquire(key=None if i % 2 else "k") for i in range(1500))

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        with ThreadPoolExecutor(4) as pool:
            got = sum(pool.map(work, range(4)))
    finally:
        sys.setswitchinterval(switch)
    assert got == 2000  # 1000 without a key and 1000 for "k"
    assert limiter.stats()["admitted"] == 2000 and limiter.stats()["rejected"] == 4000


# ---- processes ---------------------------------------------------------------

RATE, BURST = region_workers.RATE, region_workers.BURST



def test_four_processes_stay_within_the_bound_host_wide(tmp_path: Path) -> None:
    ctx = region_workers.context()
    path = str(tmp_path / "r")
    region = resil.SharedRegion(path)
    limiter = resil.RateLimiter(RATE, burst=BURST, name="h", shared=region)
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=region_workers.hammer, args=(path, seed, 1.0, start, out))
             for seed in range(4)]
    for p in procs:
        p.start()
    time.sleep(0.3)  # every child attached and waiting
    t0 = time.monotonic()
    start.set()
    results = [out.get(timeout=60) for _ in procs]
    elapsed = time.monotonic() - t0
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    admitted = sum(r[0] for r in results)
    cost = sum(r[1] for r in results)
    calls = sum(r[2] for r in results)
    stats = limiter.stats()
    assert stats["admitted"] == admitted and stats["rejected"] == calls - admitted
    assert cost <= BURST + RATE * elapsed, (cost, elapsed)
    # and the limit was reached: refused calls, and at least half a second's
    # tokens admitted over the one-second run
    assert stats["rejected"] > 0 and cost > RATE * 0.5
    assert region.check() == []



def test_processes_killed_at_random_moments_leave_a_sound_region(tmp_path: Path) -> None:
    ctx = region_workers.context()
    path = str(tmp_path / "r")
    region = resil.SharedRegion(path, lease=5.0)
    limiter = resil.RateLimiter(1e6, burst=1000, name="k", max_keys=64, shared=region)
    rng = random.Random(11)
    last = 0
    for round_ in range(50):
        kill_when_running(ctx, region_workers.hammer_until_killed, (path, round_),
                          rng.uniform(0, 0.01))
        t0 = time.monotonic()
        limiter.try_acquire(key="parent")  # never hangs: a dead holder's lock is recovered
        limiter.try_acquire()
        assert time.monotonic() - t0 < 2
        stats = limiter.stats()
        total = stats["admitted"] + stats["rejected"]
        assert total >= last  # counts of dead workers are kept
        last = total
        assert region.check() == [], round_
    assert last > 50


# ---- lockstep with the model: two handles behave as one limiter -----------------

_DIR = tempfile.TemporaryDirectory(prefix="resil-region-model-")
_IDS = iter(range(10**9))
KEYS = st.sampled_from([None, None, "a", "b", b"a", "c", "d"])


class SharedLimiterMachine(RuleBasedStateMachine):
    @initialize(num=st.integers(1, 40), den=st.integers(1, 7),
                per_ns=st.sampled_from([1, 7, 1000, 10**6, 10**9, 3 * 10**9]),
                burst=st.integers(1, 12))
    def setup(self, num: int, den: int, per_ns: int, burst: int) -> None:
        path = os.path.join(_DIR.name, f"r{next(_IDS)}")
        self.clock = resil.VirtualClock()
        self.now = 0
        kw: dict[str, Any] = {"per": per_ns / 1e9, "burst": burst, "max_keys": 8,
                              "clock": self.clock, "name": "m"}
        self.region = resil.SharedRegion(path, size=1 << 16)
        os.unlink(path)  # the mappings stay
        self.handles = [resil.RateLimiter(num / den, shared=self.region, **kw),
                        resil.RateLimiter(num / den, shared=self.region, **kw)]
        # eight keys in one set of eight: nothing is evicted, as in the model
        self.model = GcraModel(Fraction(num, den), per_ns, burst, 8)
        self.burst = burst
        self.per_ns = per_ns

    @rule(data=st.data())
    def advance(self, data: st.DataObject) -> None:
        self.now += data.draw(st.integers(0, 3 * self.per_ns + 3))
        self.clock.set(self.now / 1e9)

    @rule(data=st.data(), key=KEYS, which=st.integers(0, 1))
    def try_acquire(self, data: st.DataObject, key: Any, which: int) -> None:
        cost = data.draw(st.integers(1, self.burst))
        assert self.handles[which].try_acquire(cost, key) == self.model.take(self.now, cost, key)

    @rule(data=st.data(), key=KEYS, which=st.integers(0, 1))
    def retry_after(self, data: st.DataObject, key: Any, which: int) -> None:
        cost = data.draw(st.integers(1, self.burst))
        assert self.handles[which].retry_after(cost, key=key) == \
            self.model.wait_ns(self.now, cost, key) / 1e9

    @invariant()
    def counts_agree(self) -> None:
        if not hasattr(self, "model"):
            return
        for h in self.handles:
            stats = h.stats()
            assert (stats["admitted"], stats["rejected"]) == (self.model.admitted,
                                                              self.model.rejected)

    def teardown(self) -> None:
        if hasattr(self, "region"):
            assert self.region.check() == []
            self.region.close()


SharedLimiterMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
test_shared_limiter_matches_the_model = SharedLimiterMachine.TestCase
