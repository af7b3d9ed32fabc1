"""resil.EventEmitter."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

import resil
from resil import EventEmitter


class ListDLQ:
    def __init__(self) -> None:
        self.items: list[tuple[object, BaseException, str, int]] = []

    def put(self, item: object, error: BaseException, source: str | None = None,
            attempts: int = 0) -> int:
        self.items.append((item, error, source or "", attempts))
        return len(self.items)


def test_emit_never_blocks_even_when_the_sink_never_returns() -> None:
    async def main() -> None:
        stuck = asyncio.Event()

        async def sink(event: object) -> None:
            await stuck.wait()

        dlq = ListDLQ()
        em = EventEmitter(sink, queue_size=100, dlq=dlq)
        em.start()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        results = [em.emit(i) for i in range(10_000)]
        assert loop.time() == t0  # no await happened
        await asyncio.sleep(0)
        st_ = em.stats()
        # 100 queued; the sender took one and is stuck in the sink
        assert results.count(True) == 100 and st_["dropped"] == 9_900
        assert st_["depth"] == 99 and st_["in_flight"] == 1
        await em.close(graceful=1, forced=1)
        # graceful phase (1 s) passes; the cancelled sender ends at once
        assert loop.time() - t0 == 1.0 and len(dlq.items) == 100
        assert {type(e).__name__ for _, e, _, _ in dlq.items} == {"EmitterClosed"}
        assert asyncio.all_tasks() == {asyncio.current_task()}

    resil.run_virtual(main())


@pytest.mark.parametrize("overflow", ["reject", "drop_oldest", "block"])
def test_overflow_policies_keep_exact_counters(overflow: str) -> None:
    async def main() -> None:
        got: list[int] = []

        async def sink(event: int) -> None:
            got.append(event)

        em = EventEmitter(sink, queue_size=5, overflow=overflow)
        accepted = [em.emit(i) for i in range(8)]   # not started: nothing drains
        st_ = em.stats()
        if overflow == "reject":
            assert accepted == [True] * 5 + [False] * 3
            assert (st_["dropped"], st_["rejected"]) == (3, 0)
        elif overflow == "drop_oldest":
            assert accepted == [True] * 8
            assert (st_["dropped"], st_["rejected"]) == (3, 0)
        else:
            assert accepted == [True] * 5 + [False] * 3
            assert (st_["dropped"], st_["rejected"]) == (0, 3)
            waiting = asyncio.create_task(em.put(99))
            await asyncio.sleep(0)
            assert not waiting.done()
        em.start()
        await em.close()
        want = {"reject": [0, 1, 2, 3, 4], "drop_oldest": [3, 4, 5, 6, 7],
                "block": [0, 1, 2, 3, 4, 99]}[overflow]
        assert got == want and em.stats()["emitted"] == len(want)

    resil.run_virtual(main())


@given(faults=st.lists(st.sampled_from(["ok", "fail", "slow"]), min_size=1, max_size=60),
       n=st.integers(1, 80), batch=st.sampled_from([1, 3]),
       retries=st.integers(0, 2), guarded=st.booleans())
def test_every_event_is_delivered_dead_lettered_or_dropped_exactly_once(
        faults: list[str], n: int, batch: int, retries: int, guarded: bool) -> None:
    clock = resil.VirtualClock()

    async def main() -> None:
        delivered: Counter[int] = Counter()
        calls = 0

        async def sink(payload: object) -> None:
            nonlocal calls
            fault = faults[calls % len(faults)]
            calls += 1
            if fault == "slow":
                await asyncio.sleep(0.5)
            if fault == "fail":
                raise ConnectionError("sink down")
            for e in payload if isinstance(payload, list) else [payload]:
                delivered[e] += 1

        dlq = ListDLQ()
        breaker = resil.CircuitBreaker("sink", failure_threshold=3, cooldown=2.0, clock=clock)
        if guarded:
            em = EventEmitter(sink, queue_size=16, batch_size=batch, breaker=breaker,
                              retry=resil.retry(retries=retries,
                                                backoff=resil.Backoff(0.1, 2, max_delay=1)),
                              dlq=dlq)
        else:  # the plain sender: no breaker, no retry
            em = EventEmitter(sink, queue_size=16, batch_size=batch, dlq=dlq)
        async with em:
            for i in range(n):
                em.emit(i)
                if i % 5 == 0:
                    await asyncio.sleep(0.05)
            await asyncio.sleep(1)
        dead = Counter(item for item, *_ in dlq.items)
        st_ = em.stats()
        assert all(v == 1 for v in delivered.values())          # never twice
        assert not set(delivered) & set(dead)
        accounted = sum(delivered.values()) + sum(dead.values()) + st_["dropped"]
        assert accounted == n                                     # never lost
        assert st_["emitted"] == sum(delivered.values())
        assert asyncio.all_tasks() == {asyncio.current_task()}

    resil.run_virtual(main(), clock)


def test_events_wait_in_the_queue_while_the_breaker_is_open() -> None:
    clock = resil.VirtualClock()  # one clock for the loop and the breaker

    async def main() -> None:
        loop = asyncio.get_running_loop()
        got: list[tuple[float, int]] = []
        fail = True

        async def sink(event: int) -> None:
            if fail:
                raise ConnectionError
            got.append((loop.time(), event))

        breaker = resil.CircuitBreaker("s", failure_threshold=1, cooldown=10, half_open_probes=1,
                                       clock=clock)
        dlq = ListDLQ()
        em = EventEmitter(sink, breaker=breaker, dlq=dlq)
        em.start()
        em.emit(0)            # fails: trips the breaker, goes to the DLQ
        await asyncio.sleep(0.1)
        assert breaker.state == resil.State.OPEN and len(dlq.items) == 1
        fail = False
        for i in range(1, 4):
            em.emit(i)
        await asyncio.sleep(5)
        assert got == [] and em.stats()["depth"] + em.stats()["in_flight"] == 3
        assert em.stats()["breaker"] == "OPEN"
        await asyncio.sleep(6)   # cooldown over: the probe succeeds, the rest follows
        assert [e for _, e in got] == [1, 2, 3] and got[0][0] >= 10.0
        await em.close()

    resil.run_virtual(main(), clock)


def test_close_drains_within_graceful_and_is_idempotent() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()

        async def sink(event: int) -> None:
            await asyncio.sleep(1)

        em = EventEmitter(sink)
        em.start()
        for i in range(3):
            em.emit(i)
        t0 = loop.time()
        await asyncio.gather(em.close(graceful=5, forced=2), em.close())
        assert loop.time() - t0 == 3.0 and em.stats()["emitted"] == 3
        await em.close()
        assert em.emit(4) is False and em.stats()["dropped"] == 1
        with pytest.raises(RuntimeError):
            await em.put(5)
        assert em.stats()["last_emission"].endswith("Z")

    resil.run_virtual(main())


def test_batches_fill_or_flush_after_the_interval() -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        batches: list[tuple[float, list[int]]] = []

        async def sink(events: list[int]) -> None:
            batches.append((loop.time(), events))

        em = EventEmitter(sink, batch_size=3, flush_interval=2.0)
        em.start()
        for i in range(4):
            em.emit(i)
        await asyncio.sleep(0.5)
        em.emit(4)
        await asyncio.sleep(5)
        assert batches == [(0.0, [0, 1, 2]), (0.5, [3, 4])] or \
            [b for _, b in batches] == [[0, 1, 2], [3, 4]]
        assert batches[1][0] == 2.0   # [3] waited 2 s for company, got 4 at 0.5 s
        await em.close()

    resil.run_virtual(main())


def test_validation() -> None:
    async def sink(e: object) -> None:
        pass

    with pytest.raises(ValueError, match="overflow"):
        EventEmitter(sink, overflow="spill")
    with pytest.raises(ValueError, match="batch_size"):
        EventEmitter(sink, batch_size=0)
    with pytest.raises(TypeError, match="sink"):
        EventEmitter("sink")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="dlq"):
        EventEmitter(sink, dlq=object())
    with pytest.raises(ValueError, match="queue_size"):
        EventEmitter(sink, queue_size=0)
