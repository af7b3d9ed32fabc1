"""resil.Deduplicator against its model, and its named scenarios."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import textwrap
import weakref

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import resil
from model.dedup import DedupModel

SEC = 1_000_000_000


class Collide:
    """Equal by value; hashes collide in groups of four (probing, back-shifts)."""

    def __init__(self, v: int) -> None:
        self.v = v

    def __hash__(self) -> int:
        return self.v % 4

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Collide) and other.v == self.v

    def __repr__(self) -> str:
        return f"Collide({self.v})"


KEYS = st.one_of(st.integers(-3, 12), st.sampled_from([1.0, True, False, 0.0, "a", "b", (1, 2)]),
                 st.builds(Collide, st.integers(0, 15)))


class DedupMachine(RuleBasedStateMachine):
    @initialize(ttl=st.integers(1, 20), capacity=st.integers(1, 10), start=st.integers(0, 10**6))
    def setup(self, ttl: int, capacity: int, start: int) -> None:
        self.clock = resil.VirtualClock()
        self.clock.advance_ns(start)
        self.c = resil.Deduplicator(ttl=ttl / 10, capacity=capacity, clock=self.clock)
        self.m = DedupModel(ttl * SEC // 10, capacity)

    @property
    def now(self) -> int:
        return self.clock.now_ns()

    @rule(key=KEYS)
    def seen(self, key: object) -> None:
        assert self.c.seen(key) == self.m.seen(key, self.now)

    @rule(key=KEYS)
    def contains(self, key: object) -> None:
        assert (key in self.c) == self.m.contains(key, self.now)

    @rule(key=KEYS)
    def discard(self, key: object) -> None:
        assert self.c.discard(key) == self.m.discard(key)

    @rule(ms=st.integers(0, 1500) | st.sampled_from([100, 1000]), ns=st.integers(-1, 1))
    def advance(self, ms: int, ns: int) -> None:
        self.clock.advance_ns(max(0, ms * 1_000_000 + ns))

    @rule()
    def length(self) -> None:
        assert len(self.c) == self.m.size(self.now)

    @rule()
    def clear(self) -> None:
        self.c.clear()
        self.m.keys.clear()

    @rule(ttl=st.none() | st.integers(1, 20), capacity=st.none() | st.integers(1, 10),
          bad=st.sampled_from([None, ("ttl", 0), ("ttl", -1.0), ("maxsize", 0),
                               ("maxsize", 1.5), ("capacity", 2**31)]))
    def configure(self, ttl: int | None, capacity: int | None,
                  bad: tuple[str, object] | None) -> None:
        changes: dict[str, object] = {}
        if ttl is not None:
            changes["ttl"] = ttl / 10
        if capacity is not None:
            changes["maxsize"] = capacity
        if bad is not None:
            changes.pop("maxsize" if bad[0] == "capacity" else bad[0], None)
            changes[bad[0]] = bad[1]
            with pytest.raises((TypeError, ValueError), match=bad[0]):
                self.c.configure(**changes)
            return  # nothing changed: the invariant compares with the model
        self.c.configure(**changes)
        self.m.configure(self.m.ttl if ttl is None else ttl * SEC // 10,
                         self.m.capacity if capacity is None else capacity, self.now)

    @invariant()
    def counters(self) -> None:
        if hasattr(self, "c"):
            assert self.c.duplicate_count == self.m.duplicates
            st_ = self.c.stats()   # drops expired entries, like the model's size()
            assert st_["depth"] == self.m.size(self.now)
            assert (st_["expired"], st_["evicted"]) == (self.m.expired, self.m.evicted)
            assert (st_["maxsize"], self.c.capacity) == (self.m.capacity, self.m.capacity)
            assert round(st_["ttl"] * SEC) == self.m.ttl


TestDedupModel = DedupMachine.TestCase


def test_ttl_minus_one_ns_is_a_duplicate_and_ttl_is_not() -> None:
    clock = resil.VirtualClock()
    d = resil.Deduplicator(ttl=5, clock=clock)
    assert d.seen("k") is False
    clock.advance_ns(5 * SEC - 1)
    assert d.seen("k") is True and "k" in d
    clock.advance_ns(1)
    assert "k" not in d
    assert d.seen("k") is False  # recorded again, now
    assert d.stats()["expired"] == 1 and d.duplicate_count == 1


def test_equal_keys_of_different_types_behave_like_a_dict() -> None:
    d = resil.Deduplicator()
    assert d.seen(1) is False
    assert d.seen(1.0) is True and d.seen(True) is True
    assert d.seen("1") is False and d.seen((1,)) is False
    assert len(d) == len({1: 0, 1.0: 0, True: 0, "1": 0, (1,): 0})


def test_hash_and_eq_errors_propagate_and_leave_the_store_consistent() -> None:
    class BadHash:
        def __hash__(self) -> int:
            raise ValueError("no hash")

    class BadEq(Collide):
        def __eq__(self, other: object) -> bool:
            raise KeyError("no eq")

        __hash__ = Collide.__hash__

    d = resil.Deduplicator()
    for v in range(8):
        d.seen(Collide(v))
    with pytest.raises(ValueError, match="no hash"):
        d.seen(BadHash())
    with pytest.raises(TypeError):
        d.seen([1, 2])  # unhashable
    with pytest.raises(KeyError, match="no eq"):
        d.seen(BadEq(1))  # collides with Collide(1), Collide(5)
    with pytest.raises(KeyError):
        BadEq(2) in d  # noqa: B015
    assert len(d) == 8 and all(Collide(v) in d for v in range(8))
    assert d.discard(Collide(5)) is True and Collide(1) in d and Collide(5) not in d


def test_reentrant_use_from_eq_is_refused() -> None:
    d = resil.Deduplicator()

    class Sneaky(Collide):
        def __eq__(self, other: object) -> bool:
            d.seen("inner")
            return False

        __hash__ = Collide.__hash__

    d.seen(Collide(0))
    with pytest.raises(RuntimeError, match="__eq__"):
        d.seen(Sneaky(4))
    assert len(d) == 1


def test_capacity_evicts_the_oldest_and_counts_it() -> None:
    clock = resil.VirtualClock()
    d = resil.Deduplicator(ttl=100, capacity=3, clock=clock)
    for k in "abcd":
        d.seen(k)
        clock.advance(1)
    assert "a" not in d and all(k in d for k in "bcd")
    assert d.stats()["evicted"] == 1 and len(d) == 3


def test_keys_are_released_and_cycles_collected() -> None:
    class Key:
        def __hash__(self) -> int:
            return 7

    d = resil.Deduplicator(capacity=2)
    k = Key()
    ref = weakref.ref(k)
    d.seen(k)
    del k
    assert ref() is not None  # the set holds it
    d.seen(Key())
    d.seen(Key())  # evicts the first
    assert ref() is None
    k2 = Key()
    k2.d = d  # type: ignore[attr-defined]
    d.seen(k2)
    r2, rd = weakref.ref(k2), weakref.ref(d)
    del k2, d
    gc.collect()
    assert r2() is None and rd() is None


def test_validation() -> None:
    with pytest.raises(ValueError, match="ttl"):
        resil.Deduplicator(ttl=0)
    with pytest.raises(ValueError, match="capacity"):
        resil.Deduplicator(capacity=0)
    with pytest.raises(TypeError, match="capacity"):
        resil.Deduplicator(capacity=1.5)  # type: ignore[arg-type]


def test_a_million_keys_leave_no_leak_and_report_memory_per_entry() -> None:
    script = textwrap.dedent("""
        import gc, json, sys, tracemalloc, resil
        N = 1_000_000
        keys = [f"{i:032d}" for i in range(N)]
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        d = resil.Deduplicator(capacity=N)
        for k in keys:
            d.seen(k)
        full = tracemalloc.get_traced_memory()[0] - base
        dup = sum(d.seen(k) for k in keys)
        refs = sys.getrefcount(keys[123])
        d.clear()
        after_clear = sys.getrefcount(keys[123])
        del d
        gc.collect()
        left = tracemalloc.get_traced_memory()[0] - base
        print(json.dumps({"per_entry": full / N, "dup": dup, "refs": refs,
                          "after_clear": after_clear, "left": left}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = __import__("json").loads(proc.stdout)
    assert out["dup"] == 1_000_000
    assert out["refs"] - out["after_clear"] == 1       # the set's reference, released
    assert out["per_entry"] <= 64, out                 # bytes beyond the key object
    assert out["left"] < 64 * 1024, out
    print(f"memory per entry: {out['per_entry']:.1f} bytes")


# ---- idempotent ---------------------------------------------------------------

def test_idempotent_runs_a_key_once_for_100_concurrent_callers() -> None:
    runs = []

    @resil.idempotent(key=lambda order_id: order_id, ttl=60)
    async def charge(order_id: str) -> str:
        runs.append(order_id)
        await asyncio.sleep(1)
        return f"charged {order_id}"

    async def main() -> None:
        results = await asyncio.gather(*(charge("o-1") for _ in range(100)),
                                       charge("o-2"))
        assert results[:100] == ["charged o-1"] * 100 and results[100] == "charged o-2"
        assert runs == ["o-1", "o-2"]
        await asyncio.sleep(59)
        assert await charge("o-1") == "charged o-1" and runs == ["o-1", "o-2"]  # cached
        await asyncio.sleep(1)
        await charge("o-1")  # 60 s after it finished: runs again
        assert runs == ["o-1", "o-2", "o-1"]

    resil.run_virtual(main())


def test_idempotent_does_not_cache_exceptions() -> None:
    calls = []

    @resil.idempotent(key=lambda x: x)
    async def flaky(x: int) -> int:
        calls.append(x)
        await asyncio.sleep(0)
        if len(calls) == 1:
            raise ConnectionError("first fails")
        return x

    async def main() -> None:
        outcomes = await asyncio.gather(flaky(1), flaky(1), return_exceptions=True)
        assert all(isinstance(o, ConnectionError) for o in outcomes) and calls == [1]
        assert await flaky(1) == 1 and calls == [1, 1]

    resil.run_virtual(main())


def test_stats_count_the_get_calls_that_found_a_live_key_as_hits() -> None:
    clock = resil.VirtualClock()
    d = resil.Deduplicator(ttl=5.0, clock=clock)
    d.put("a", 1)
    d.put("b", None)
    assert [d.get("a"), d.get("b", "x"), d.get("c"), d.get("a", 0)] == [1, None, None, 1]
    assert d.stats()["hits"] == 3
    clock.advance(5.0)
    assert d.get("a") is None and d.stats()["hits"] == 3   # expired: a miss
    assert d.seen("z") is False and d.seen("z") is True and d.stats()["hits"] == 3


def test_idempotent_stats_count_runs_hits_waits_and_failures() -> None:
    gate = asyncio.Event()

    @resil.idempotent(key=lambda x: x, ttl=10)
    async def f(x: int) -> int:
        await gate.wait()
        if x < 0:
            raise ValueError("negative")
        return x

    async def main() -> dict[str, object]:
        first = asyncio.ensure_future(f(1))
        joined = [asyncio.ensure_future(f(1)) for _ in range(3)]
        await asyncio.sleep(0)
        assert f.stats()["running"] == 1  # type: ignore[attr-defined]
        gate.set()
        assert await asyncio.gather(first, *joined) == [1] * 4
        assert await f(1) == 1 and await f(1) == 1       # answered by the stored result
        with pytest.raises(ValueError):
            await f(-1)
        await asyncio.sleep(10)
        assert await f(1) == 1                           # after the ttl: a new run
        return f.stats()  # type: ignore[attr-defined,no-any-return]

    assert resil.run_virtual(main()) == {"ttl": 10.0, "running": 0, "runs": 3, "hits": 2,
                                         "waits": 3, "failures": 1}


def test_idempotent_cancelling_one_caller_keeps_the_run_for_others() -> None:
    runs = []

    @resil.idempotent(key=lambda: "k")
    async def slow() -> str:
        runs.append(1)
        await asyncio.sleep(5)
        return "done"

    async def main() -> None:
        first = asyncio.create_task(slow())
        second = asyncio.create_task(slow())
        await asyncio.sleep(1)
        first.cancel()
        assert await second == "done"
        with pytest.raises(asyncio.CancelledError):
            await first
        assert runs == [1]

    resil.run_virtual(main())


def test_idempotent_validation() -> None:
    with pytest.raises(TypeError, match="key"):
        resil.idempotent(key="id")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ttl"):
        resil.idempotent(key=lambda: 1, ttl=0)
    with pytest.raises(TypeError, match="coroutine"):
        resil.idempotent(key=lambda: 1)(lambda: 1)


def test_idempotent_callers_on_two_event_loops_in_two_threads_each_get_a_result() -> None:
    import threading
    runs: list[str] = []
    both_running = threading.Barrier(2, timeout=10)

    @resil.idempotent(lambda k: k, ttl=0.001)
    async def work(k: str) -> str:
        runs.append(threading.current_thread().name)
        await asyncio.sleep(0.05)
        return k.upper()

    results: dict[str, object] = {}

    def in_thread(name: str) -> None:
        async def main() -> str:
            task = asyncio.ensure_future(work("a"))
            await asyncio.sleep(0.01)
            both_running.wait()   # both loops' runs started before either ends
            return await task
        try:
            results[name] = asyncio.run(main())
        except BaseException as exc:  # noqa: BLE001 - reported below
            results[name] = exc

    threads = [threading.Thread(target=in_thread, args=(n,), name=n) for n in ("t1", "t2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == {"t1": "A", "t2": "A"}
    assert sorted(runs) == ["t1", "t2"]   # one run per loop: a task cannot cross loops
