"""resil.BoundedQueue and resil.PartitionedQueue."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import resil
from model.queue import QueueModel


class QueueMachine(RuleBasedStateMachine):
    """The non-blocking engine against the model, on a VirtualClock."""

    @initialize(maxsize=st.integers(1, 12), warn=st.sampled_from([0.1, 0.5, 0.8, 1.0]),
                reject=st.sampled_from([0.5, 0.8, 0.95, 1.0]))
    def setup(self, maxsize: int, warn: float, reject: float) -> None:
        warn = min(warn, reject)
        self.clock = resil.VirtualClock(10)
        self.q = resil.BoundedQueue(maxsize, warn_at=warn, reject_at=reject, clock=self.clock)
        self.m = QueueModel(maxsize, warn, reject, self.clock.now_ns())
        self.n = 0
        self.warn, self.reject = warn, reject

    @rule()
    def put(self) -> None:
        self.n += 1
        accepted = self.m.put_nowait(self.n, self.clock.now_ns())
        if accepted:
            self.q.put_nowait(self.n)
        else:
            with pytest.raises(resil.QueueFull):
                self.q.put_nowait(self.n)

    @rule()
    def get(self) -> None:
        ok, item = self.m.get_nowait()
        if ok:
            assert self.q.get_nowait() == item
        else:
            with pytest.raises(asyncio.QueueEmpty):
                self.q.get_nowait()

    @rule()
    def task_done(self) -> None:
        if self.m.task_done():
            self.q.task_done()
        else:
            with pytest.raises(ValueError):
                self.q.task_done()

    @rule(ms=st.integers(1, 5000))
    def advance(self, ms: int) -> None:
        self.clock.advance_ns(ms * 1_000_000)

    @rule(maxsize=st.none() | st.integers(1, 12),
          warn=st.none() | st.sampled_from([0.1, 0.5, 0.8, 1.0]),
          reject=st.none() | st.sampled_from([0.5, 0.8, 0.95, 1.0]))
    def configure(self, maxsize: int | None, warn: float | None, reject: float | None) -> None:
        changes = {k: v for k, v in (("maxsize", maxsize), ("warn_at", warn),
                                     ("reject_at", reject)) if v is not None}
        new_warn = self.warn if warn is None else warn
        new_reject = self.reject if reject is None else reject
        if new_warn > new_reject:  # refused, naming what was passed; nothing changes
            with pytest.raises(ValueError, match="warn_at" if warn is not None else "reject_at"):
                self.q.configure(**changes)
            return
        self.q.configure(**changes)
        self.warn, self.reject = new_warn, new_reject
        self.m.configure(self.m.maxsize if maxsize is None else maxsize, new_warn, new_reject)

    @invariant()
    def agree(self) -> None:
        if not hasattr(self, "q"):
            return
        s = self.q.stats()
        m, now = self.m, self.clock.now_ns()
        assert (s["depth"], s["put"], s["got"], s["rejected"], s["warnings"], s["unfinished"]) == \
            (len(m.items), m.put, m.got, m.rejected, m.warnings, m.unfinished)
        assert self.q.full() == (len(m.items) >= m.reject_limit)
        assert self.q.warning == (len(m.items) >= m.warn_limit) == s["warning"]
        assert s["pressure"] == len(m.items) / m.maxsize
        assert (s["maxsize"], self.q.warn_at, self.q.reject_at) == (m.maxsize, self.warn,
                                                                    self.reject)
        assert s["oldest_age"] == pytest.approx(m.oldest_age(now) / 1e9, abs=1e-9)
        assert s["average_age"] == pytest.approx(m.mean_age(now) / 1e9, rel=1e-9, abs=1e-6)


TestQueueModel = QueueMachine.TestCase


def test_watermarks_flow_control_and_backpressure() -> None:
    clock = resil.VirtualClock()

    async def main() -> None:
        q: resil.BoundedQueue[int] = resil.BoundedQueue(100, clock=clock)  # warn 80, reject 95
        for i in range(79):
            q.put_nowait(i)
        assert not q.warning
        q.put_nowait(79)
        assert q.warning and q.pressure == 0.8
        for i in range(80, 95):
            q.put_nowait(i)
        with pytest.raises(resil.QueueFull):
            q.put_nowait(95)
        with pytest.raises(asyncio.QueueFull):  # also an asyncio.QueueFull
            q.put_nowait(95)
        waiter = asyncio.create_task(q.put(95))
        await asyncio.sleep(1)
        assert not waiter.done()  # backpressure: waits below the same limit
        assert q.get_nowait() == 0
        await asyncio.sleep(0)
        assert waiter.done() and q.qsize() == 95
        st_ = q.stats()
        assert st_["rejected"] == 2 and st_["warnings"] == 1 and st_["oldest_age"] == 1.0

    resil.run_virtual(main(), clock)


@given(seed=st.integers(0, 2**32 - 1))
@settings(max_examples=max(3, settings.default.max_examples // 6))  # 10,000 operations each
def test_random_cancellations_lose_or_duplicate_no_item(seed: int) -> None:
    """10,000 puts and gets per example, a random share of them cancelled: every
    item a put reported as inserted is got exactly once; no cancelled put inserts."""
    rng = random.Random(seed)

    async def main() -> None:
        q: resil.BoundedQueue[int] = resil.BoundedQueue(8, warn_at=0.5, reject_at=1.0)
        inserted: list[int] = []
        received: list[int] = []

        async def putter(i: int) -> None:
            await q.put(i)
            inserted.append(i)

        async def getter() -> None:
            received.append(await q.get())

        putters, getters = [], []
        for i in range(5000):
            putters.append(asyncio.create_task(putter(i)))
            getters.append(asyncio.create_task(getter()))
            if rng.random() < 0.3:
                await asyncio.sleep(0)
            if rng.random() < 0.4:
                rng.choice(putters[-10:] + getters[-10:]).cancel()
        # Puts blocked on a full queue whose getters were cancelled need a
        # consumer, and getters left waiting once every put is done would wait
        # forever: take items here until every put has finished.
        while not all(p.done() for p in putters):
            while not q.empty():
                received.append(q.get_nowait())
            await asyncio.sleep(0)
        for _ in range(3):
            await asyncio.sleep(0)
        for g in getters:
            g.cancel()
        await asyncio.gather(*putters, *getters, return_exceptions=True)
        while not q.empty():
            received.append(q.get_nowait())
        assert sorted(received) == sorted(inserted)
        assert len(set(received)) == len(received)
        assert not q._getters and not q._putters  # nobody left waiting

    resil.run_virtual(main())


def test_cancelled_get_with_an_item_on_its_way_passes_it_on() -> None:
    async def main() -> None:
        q: resil.BoundedQueue[str] = resil.BoundedQueue(4)
        first = asyncio.create_task(q.get())
        second = asyncio.create_task(q.get())
        await asyncio.sleep(0)
        q.put_nowait("x")  # wakes `first`...
        first.cancel()     # ...which is cancelled before it runs
        assert await second == "x"
        with pytest.raises(asyncio.CancelledError):
            await first

    resil.run_virtual(main())


def test_join_and_drain() -> None:
    async def main() -> None:
        q: resil.BoundedQueue[int] = resil.BoundedQueue(10)
        for i in range(5):
            await q.put(i)

        async def worker() -> None:
            while True:
                await q.get()
                await asyncio.sleep(1)
                q.task_done()

        assert await q.drain(0.5) is False
        w = asyncio.create_task(worker())
        assert await q.drain(2.5) is False   # 3 of 5 processed
        assert await q.drain(10) is True
        assert asyncio.get_running_loop().time() == 5.5  # worker started at 0.5
        with pytest.raises(ValueError):
            q.task_done()
        w.cancel()

    resil.run_virtual(main())


def test_eight_producers_four_consumers_keep_per_key_fifo_one_at_a_time() -> None:
    async def main() -> None:
        pq: resil.PartitionedQueue[str, tuple[int, int]] = resil.PartitionedQueue(maxsize=50)
        seen: dict[str, list[int]] = defaultdict(list)
        active: dict[str, int] = defaultdict(int)
        overlap = []
        concurrent_keys = []

        async def producer(p: int) -> None:
            rng = random.Random(p)
            for n in range(200):
                key = f"k{rng.randrange(6)}"
                await pq.put((p, n), key)
                if n % 7 == 0:
                    await asyncio.sleep(0.001)

        async def consumer(c: int) -> None:
            rng = random.Random(100 + c)
            while True:
                key, (p, n) = await pq.get()
                active[key] += 1
                if active[key] > 1:
                    overlap.append(key)
                concurrent_keys.append(sum(1 for v in active.values() if v))
                seen[key].append(p * 1000 + n)
                await asyncio.sleep(rng.random() * 0.01)
                active[key] -= 1
                pq.task_done(key)

        consumers = [asyncio.create_task(consumer(c)) for c in range(4)]
        await asyncio.gather(*(producer(p) for p in range(8)))
        assert await pq.drain(60)
        for c in consumers:
            c.cancel()
        assert not overlap
        assert max(concurrent_keys) > 1  # different keys did run in parallel
        assert sum(len(v) for v in seen.values()) == 1600
        for key, items in seen.items():
            per_producer: dict[int, list[int]] = defaultdict(list)
            for x in items:
                per_producer[x // 1000].append(x % 1000)
            for ns in per_producer.values():
                assert ns == sorted(ns), key  # FIFO within a key

    resil.run_virtual(main())


def test_partitioned_queue_errors_and_backpressure() -> None:
    async def main() -> None:
        pq: resil.PartitionedQueue[str, int] = resil.PartitionedQueue(maxsize=2)
        pq.put_nowait(1, "a")
        pq.put_nowait(2, "a")
        with pytest.raises(resil.QueueFull):
            pq.put_nowait(3, "b")
        blocked = asyncio.create_task(pq.put(3, "b"))
        await asyncio.sleep(0)
        assert not blocked.done()
        assert await pq.get() == ("a", 1)
        await asyncio.sleep(0)
        assert blocked.done()
        with pytest.raises(ValueError, match="not held"):
            pq.task_done("b")
        assert await pq.get() == ("b", 3)  # "a" is held: its 2 waits
        pq.task_done("a")
        assert await pq.get() == ("a", 2)

    resil.run_virtual(main())
    with pytest.raises(ValueError):
        resil.PartitionedQueue(0)


def test_bounded_queue_validation() -> None:
    with pytest.raises(ValueError, match="maxsize"):
        resil.BoundedQueue(0)
    with pytest.raises(TypeError, match="maxsize"):
        resil.BoundedQueue(1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reject_at"):
        resil.BoundedQueue(10, warn_at=0.5, reject_at=1.5)
    with pytest.raises(ValueError, match="warn_at"):
        resil.BoundedQueue(10, warn_at=0.9, reject_at=0.5)
