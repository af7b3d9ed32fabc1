"""Deduplicator(shared=region): deduplicators of one name in one region are
one set, across handles and processes. Two handles driven in lockstep with
a local Deduplicator give the same answers, counts and sizes; four
processes offering the same 20,000 keys see each one new exactly once
host-wide; a process killed at random moments while churning leaves a
sound region; keys are str or bytes of any length; parameters that differ
are a ValueError naming the first; a full or closed region a RegionError.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import resil

try:  # pytest's default "prepend" import mode puts tests/ on sys.path
    import region_dedup_workers
    from tests_support import kill_when_running
except ModuleNotFoundError:  # pragma: no cover - tests/ made a package
    from tests import region_dedup_workers  # type: ignore[no-redef]
    from tests.tests_support import kill_when_running  # type: ignore[no-redef]


def _block_bytes(capacity: int) -> int:
    """A shared set's bytes in the region: a header, then two sets of 8
    slots of 32 bytes per 8 keys of capacity."""
    return 192 + 2 * 8 * 32 * -(-capacity // 8)


def _region(tmp_path: Path, **kw: Any) -> resil.SharedRegion:
    return resil.SharedRegion(tmp_path / "r", **kw)


def test_two_handles_are_one_set(tmp_path: Path) -> None:
    clock = resil.VirtualClock()
    region = _region(tmp_path)
    a = resil.Deduplicator(10.0, 100, shared=region, name="jobs", clock=clock)
    b = resil.Deduplicator(10, 100, clock=clock, shared=resil.SharedRegion(tmp_path / "r"),
                           name="jobs")
    other = resil.Deduplicator(10.0, 100, shared=region, name="other", clock=clock)
    assert a.seen("job-1") is False
    assert b.seen("job-1") is True and a.seen("job-1") is True
    assert b.seen(b"job-1") is False  # bytes and str are different keys
    assert other.seen("job-1") is False  # another name, another set
    assert "job-1" in b and b"job-1" in a and "job-2" not in a
    assert len(a) == len(b) == 2 and len(other) == 1
    assert a.duplicate_count == b.duplicate_count == 2
    expected = {"depth": 2, "duplicates": 2, "hits": 0, "expired": 0, "evicted": 0, "maxsize": 100,
                "ttl": 10.0, "memory_bytes": _block_bytes(100)}
    assert a.stats() == expected and b.stats() == expected
    # the same keys as a local Deduplicator's stats
    assert set(resil.Deduplicator().stats()) == set(expected)
    clock.advance(10.0)
    assert "job-1" not in a and b.seen("job-1") is False  # expired: new again
    assert a.stats()["expired"] == 2 and len(b) == 1
    assert b.discard("job-1") is True and a.discard("job-1") is False
    a.seen("x")
    b.clear()
    assert len(a) == 0 and a.stats()["duplicates"] == 2  # counts are kept
    assert a.name == "jobs" and a.shared is region and a.ttl == 10.0 and a.capacity == 100
    assert a.clock is clock
    assert repr(a) == f"<Deduplicator name='jobs' ttl=10.0 capacity=100 shared={str(region.path)!r}>"
    assert region.objects() == [
        {"type": "Deduplicator", "name": "jobs", "parameters": {"ttl": 10.0, "capacity": 100}},
        {"type": "Deduplicator", "name": "other", "parameters": {"ttl": 10.0, "capacity": 100}}]
    assert region.check() == []


def test_a_local_deduplicator_is_unchanged() -> None:
    d = resil.Deduplicator(5.0, 10, name="local")
    assert d.name == "local" and d.shared is None
    assert resil.Deduplicator().name is None
    assert d.seen((1, 2)) is False and d.seen((1, 2)) is True  # any hashable key
    d.put("k", [1])
    assert d.get("k") == [1]
    d.configure(ttl=6.0)
    assert d.ttl == 6.0


def test_keys_are_str_or_bytes_of_any_length(tmp_path: Path) -> None:
    region = _region(tmp_path)
    d = resil.Deduplicator(60.0, 16, shared=region, name="k", clock=resil.VirtualClock())
    for key in (1, None, 1.5, ("a",), bytearray(b"a"), memoryview(b"a"), object()):
        for call in (d.seen, d.discard, d.__contains__):
            with pytest.raises(TypeError, match=r"^key must be a str or bytes for a shared "
                                                r"Deduplicator, not "):
                call(key)
    for call in (d.seen, d.discard, d.__contains__):
        with pytest.raises(ValueError, match="key must be a str encodable as UTF-8"):
            call("a\ud800")
    assert len(d) == 0 and d.stats()["duplicates"] == 0  # nothing was recorded
    big = "x" * (10 << 20)
    assert d.seen(big) is False and d.seen(big) is True
    assert d.seen(big[:-1] + "y") is False  # differs in its last character
    assert d.seen(big.encode()) is False  # the same text as bytes: another key
    assert d.seen("") is False and d.seen("") is True
    assert d.seen(b"") is False and d.seen(b"") is True
    assert d.seen("é") is False and d.seen("é".encode()) is False
    assert len(d) == 7 and region.check() == []


def test_names_shared_and_refused_methods(tmp_path: Path) -> None:
    region = _region(tmp_path)
    with pytest.raises(TypeError, match="with shared= needs name="):
        resil.Deduplicator(shared=region)
    with pytest.raises(TypeError, match="with shared= needs name="):
        resil.Deduplicator(shared=region, name=None)
    with pytest.raises(ValueError, match="name must be None or a non-empty str, got ''"):
        resil.Deduplicator(shared=region, name="")
    with pytest.raises(TypeError, match="name must be None or a non-empty str, not int"):
        resil.Deduplicator(shared=region, name=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="name must be at most 63 bytes"):
        resil.Deduplicator(shared=region, name="n" * 64)
    with pytest.raises(TypeError, match="shared must be None or a resil.SharedRegion, not str"):
        resil.Deduplicator(shared=str(tmp_path / "r"), name="d")  # type: ignore[arg-type]
    d = resil.Deduplicator(shared=region, name="d")
    assert d.capacity == 4096 and d.ttl == 300.0  # the shared default capacity
    with pytest.raises(TypeError, match=r"^put\(\) needs a local Deduplicator"):
        d.put("k", 1)
    with pytest.raises(TypeError, match=r"^get\(\) needs a local Deduplicator"):
        d.get("k")
    with pytest.raises(TypeError, match=r"^configure\(\) needs a local Deduplicator"):
        d.configure(ttl=1.0)
    assert region.objects()[0]["parameters"] == {"ttl": 300.0, "capacity": 4096}


@pytest.mark.parametrize("changed, name", [
    ({"ttl": 11.0}, "ttl"), ({"capacity": 101}, "capacity"),
    ({"ttl": 11.0, "capacity": 101}, "ttl"), ({}, "capacity"),
])
def test_other_parameters_name_the_first_difference(tmp_path: Path, changed: dict[str, Any],
                                                    name: str) -> None:
    region = _region(tmp_path)
    resil.Deduplicator(10.0, 100, shared=region, name="d")
    kwargs: dict[str, Any] = {"ttl": 10.0, "capacity": 100, **changed}
    if not changed:
        kwargs = {"ttl": 10.0}  # capacity left out: the shared default, 4096
    with pytest.raises(ValueError, match=f"^{name}: the deduplicator 'd' in region .* has "
                                         f"{name}="):
        resil.Deduplicator(shared=region, name="d", **kwargs)
    resil.Deduplicator(10, capacity=100, shared=region, name="d")  # 10 and 10.0: one ttl
    assert len(region.objects()) == 1


def test_a_full_or_closed_region(tmp_path: Path) -> None:
    region = _region(tmp_path, size=1 << 16)
    with pytest.raises(resil.RegionError, match=r"full.*size=65536"):
        resil.Deduplicator(shared=region, name="big", capacity=10_000)
    assert region.objects() == [] and region.check() == []
    d = resil.Deduplicator(shared=region, name="small", capacity=8)
    assert d.seen("a") is False
    region.close()
    for call in (lambda: d.seen("a"), lambda: "a" in d, lambda: d.discard("a"), d.clear,
                 d.stats, lambda: len(d), lambda: d.duplicate_count,
                 lambda: resil.Deduplicator(shared=region, name="small", capacity=8)):
        with pytest.raises(resil.RegionError, match="closed"):
            call()
    assert "shared=" in repr(d)  # still printable
    # the type of a key is checked first, as for an open region
    with pytest.raises(TypeError, match="key must be a str or bytes"):
        d.seen(1)


def test_threads_see_each_key_new_once(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    region = _region(tmp_path)
    d = resil.Deduplicator(3600.0, 2000, shared=region, name="t")
    keys = [f"k{i}" for i in range(2000)]

    def work(seed: int) -> int:
        mine = keys[:]
        random.Random(seed).shuffle(mine)
        return sum(not d.seen(k) for k in mine)

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        with ThreadPoolExecutor(4) as pool:
            new = sum(pool.map(work, range(4)))
    finally:
        sys.setswitchinterval(switch)
    assert new == 2000
    assert d.stats()["duplicates"] == 6000 and len(d) == 2000


def test_capacity_keys_are_never_forgotten_within_their_ttl(tmp_path: Path) -> None:
    """At most capacity keys live: none is evicted, whatever their digests."""
    clock = resil.VirtualClock()
    region = _region(tmp_path, size=8 << 20)
    d = resil.Deduplicator(1.0, 50_000, shared=region, name="c", clock=clock)
    rng = random.Random(5)
    for round_ in range(4):
        keys = [rng.randbytes(8) for _ in range(50_000)]
        assert not any(d.seen(k) for k in keys)
        assert all(d.seen(k) for k in keys[::7])
        clock.advance(1.0)
    stats = d.stats()
    assert stats["evicted"] == 0 and stats["expired"] == 4 * 50_000
    assert region.check() == []


# ---- processes ---------------------------------------------------------------


def test_four_processes_see_each_key_new_exactly_once(tmp_path: Path) -> None:
    keys = region_dedup_workers.KEYS
    ctx = region_dedup_workers.context()
    path = str(tmp_path / "r")
    region = resil.SharedRegion(path, size=4 << 20)
    d = resil.Deduplicator(3600.0, keys, shared=region, name="jobs")
    start, out = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=region_dedup_workers.offer_keys, args=(path, seed, start, out))
             for seed in range(4)]
    for p in procs:
        p.start()
    results = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    new = [k for r in results for k in r]
    assert len(new) == keys and len(set(new)) == keys  # each key new once, host-wide
    assert d.stats() == {"depth": keys, "duplicates": 3 * keys, "hits": 0, "expired": 0,
                         "evicted": 0, "maxsize": keys, "ttl": 3600.0, "memory_bytes": _block_bytes(keys)}
    assert region.check() == []


def test_processes_killed_at_random_moments_leave_a_sound_set(tmp_path: Path) -> None:
    ctx = region_dedup_workers.context()
    path = str(tmp_path / "r")
    region = resil.SharedRegion(path, lease=5.0)
    d = resil.Deduplicator(0.001, region_dedup_workers.CHURN_CAPACITY, shared=region, name="k")
    rng = random.Random(11)
    last = 0
    for round_ in range(50):
        kill_when_running(ctx, region_dedup_workers.churn_until_killed, (path, round_),
                          rng.uniform(0, 0.01))
        t0 = time.monotonic()
        d.seen("parent")  # never hangs: a dead holder's lock is recovered, its update repaired
        assert time.monotonic() - t0 < 2
        assert region.check() == [], round_
        stats = d.stats()
        total = stats["duplicates"] + stats["expired"] + stats["evicted"]
        assert total >= last  # counts of dead workers are kept
        assert stats["depth"] <= region_dedup_workers.CHURN_CAPACITY
        last = total
    assert last > 50
    key = "after"
    assert d.seen(key) is False and d.seen(key) is True and key in d
    assert region.check() == []


SIZE_FIELD = 64 + 3 * 8  # a deduplicator's block: its lock, ttl, capacity, nsets, then size


def _damage_size(path: str, by: int) -> None:
    """Adds `by` to the block's count of keys, as a holder killed between
    linking a key and counting it leaves it."""
    import struct

    fd = os.open(path, os.O_RDWR)
    try:
        # the first directory entry's block offset: entries of type, name
        # length, name, 20 parameters, offset and size follow the 128-byte header
        offset = struct.unpack("<Q", os.pread(fd, 8, 128 + 232))[0]
        at = offset + SIZE_FIELD
        size = struct.unpack("<Q", os.pread(fd, 8, at))[0]
        os.pwrite(fd, struct.pack("<Q", size + by), at)
    finally:
        os.close(fd)


def test_a_damaged_state_is_repaired_on_attach(tmp_path: Path) -> None:
    path = str(tmp_path / "r")
    region = resil.SharedRegion(path)
    d = resil.Deduplicator(60.0, 32, shared=region, name="k", clock=resil.VirtualClock())
    for key in ("a", "b", b"c"):
        d.seen(key)
    _damage_size(path, 1)
    assert region.check() == [
        "deduplicator: the size differs from the keys held or exceeds capacity"]
    again = resil.Deduplicator(60.0, 32, shared=resil.SharedRegion(path), name="k",
                               clock=resil.VirtualClock())
    assert region.check() == []
    assert len(again) == 3 and all(again.seen(k) for k in ("a", "b", b"c"))


def test_a_holder_killed_mid_update_is_repaired_by_the_next_locker(tmp_path: Path) -> None:
    ctx = region_dedup_workers.context()
    path = str(tmp_path / "r")
    region = resil.SharedRegion(path, lease=5.0)
    d = resil.Deduplicator(60.0, 32, shared=region, name="k", clock=resil.VirtualClock())
    d.seen("a")
    # the update the holder was making, half-done when it dies
    kill_when_running(ctx, region_dedup_workers.hold_lock_and_die, (path,), 0.0)
    _damage_size(path, 2)
    assert region.check() != []
    t0 = time.monotonic()
    assert d.seen("a") is True  # the dead holder's lock taken over, the state repaired
    assert time.monotonic() - t0 < 2
    assert region.check() == [] and len(d) == 1


# ---- lockstep with a local Deduplicator: two handles behave as one set ---------

_DIR = tempfile.TemporaryDirectory(prefix="resil-region-dedup-")
_IDS = iter(range(10**9))
KEYS = st.sampled_from(["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", b"a", b"b", "",
                        b"", "é"])


class SharedDedupMachine(RuleBasedStateMachine):
    """A local Deduplicator and two handles on one shared one, one clock.

    With capacity <= 8 the table has two sets of 8 slots and a key's two
    sets hold 16 slots, so no new key ever lacks a slot: the shared set must
    then give exactly the local one's answers, counts and sizes."""

    @initialize(ttl_ns=st.integers(1, 50), capacity=st.integers(1, 8))
    def setup(self, ttl_ns: int, capacity: int) -> None:
        path = os.path.join(_DIR.name, f"r{next(_IDS)}")
        self.clock = resil.VirtualClock()
        self.now = 0
        self.region = resil.SharedRegion(path, size=1 << 16)
        os.unlink(path)  # the mappings stay
        kw: dict[str, Any] = {"ttl": ttl_ns / 1e9, "capacity": capacity, "clock": self.clock}
        self.handles = [resil.Deduplicator(shared=self.region, name="m", **kw),
                        resil.Deduplicator(shared=self.region, name="m", **kw)]
        self.local = resil.Deduplicator(**kw)
        self.ttl_ns = ttl_ns

    @rule(ns=st.integers(0, 60))
    def advance(self, ns: int) -> None:
        self.now += ns
        self.clock.set(self.now / 1e9)

    @rule(key=KEYS, which=st.integers(0, 1))
    def seen(self, key: Any, which: int) -> None:
        assert self.handles[which].seen(key) == self.local.seen(key)

    @rule(key=KEYS, which=st.integers(0, 1))
    def contains(self, key: Any, which: int) -> None:
        assert (key in self.handles[which]) == (key in self.local)

    @rule(key=KEYS, which=st.integers(0, 1))
    def discard(self, key: Any, which: int) -> None:
        assert self.handles[which].discard(key) == self.local.discard(key)

    @rule(which=st.integers(0, 1))
    def length(self, which: int) -> None:
        assert len(self.handles[which]) == len(self.local)

    @rule(which=st.integers(0, 1))
    def clear(self, which: int) -> None:
        self.handles[which].clear()
        self.local.clear()

    @invariant()
    def counts_agree(self) -> None:
        if not hasattr(self, "local"):
            return
        want = self.local.stats()
        for h in self.handles:
            got = h.stats()
            assert {k: got[k] for k in ("depth", "duplicates", "expired", "evicted",
                                        "maxsize")} == \
                {k: want[k] for k in ("depth", "duplicates", "expired", "evicted", "maxsize")}
            assert h.duplicate_count == self.local.duplicate_count

    def teardown(self) -> None:
        if hasattr(self, "region"):
            assert self.region.check() == []
            self.region.close()


SharedDedupMachine.TestCase.settings = settings(
    max_examples=80, stateful_step_count=60, deadline=None,
    suppress_health_check=[HealthCheck.too_slow])
test_shared_deduplicator_matches_the_local_one = SharedDedupMachine.TestCase


def test_seeded_random_operations_match_the_local_one(tmp_path: Path) -> None:
    """Longer runs than the state machine's: 20,000 operations, 40 keys, a
    capacity of 8 (eviction most of the time) and a ttl of a few steps."""
    clock = resil.VirtualClock()
    region = _region(tmp_path)
    for seed in range(3):
        rng = random.Random(seed)
        kw: dict[str, Any] = {"ttl": 2e-8, "capacity": 8, "clock": clock}
        a = resil.Deduplicator(shared=region, name=f"s{seed}", **kw)
        b = resil.Deduplicator(shared=region, name=f"s{seed}", **kw)
        local = resil.Deduplicator(**kw)
        keys: list[str | bytes] = [f"k{i}" for i in range(20)] + [b"k%d" % i for i in range(20)]
        for step in range(20_000):
            h, key, op = rng.choice((a, b)), rng.choice(keys), rng.random()
            if op < 0.6:
                assert h.seen(key) == local.seen(key), step
            elif op < 0.75:
                assert (key in h) == (key in local), step
            elif op < 0.85:
                assert h.discard(key) == local.discard(key), step
            elif op < 0.9:
                assert len(h) == len(local), step
            elif op < 0.901:
                h.clear()
                local.clear()
            else:
                clock.advance(rng.randrange(10) * 1e-9)
        got, want = a.stats(), local.stats()
        del got["memory_bytes"], want["memory_bytes"]
        assert got == want and want["evicted"] > 0 and want["expired"] > 0
    assert region.check() == []


def test_no_thread_is_left_waiting(tmp_path: Path) -> None:
    """The lock is never held across Python code: a clock whose now() runs
    Python code (and uses the same set) does not deadlock."""
    region = _region(tmp_path)

    class Clock:
        t = 0.0
        inner: resil.Deduplicator | None = None

        def now(self) -> float:
            if self.inner is not None:
                len(self.inner)  # takes the block's lock itself
            return self.t

    clock = Clock()
    d = resil.Deduplicator(1.0, 8, shared=region, name="c", clock=clock)
    clock.inner = resil.Deduplicator(1.0, 8, shared=region, name="c", clock=resil.VirtualClock())
    done = threading.Event()

    def run() -> None:
        d.seen("a")
        d.seen("a")
        done.set()

    t = threading.Thread(target=run)
    t.start()
    t.join(timeout=10)
    assert done.is_set() and d.stats()["duplicates"] == 1
