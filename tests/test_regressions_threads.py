"""Regressions: queues and the emitter used from other threads (wake-ups on
the waiter's own loop, emit racing other threads), a breaker watched twice by
a monitor, and a dead letter whose stored text is damaged."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

import resil
from resil import EventEmitter
from tests_support import switch_interval


# ---- other threads -----------------------------------------------------------

@pytest.mark.parametrize("kind", ["bounded", "partitioned"])
def test_put_nowait_from_another_thread_wakes_a_get_waiting_on_the_loop(kind: str) -> None:
    # The waiter's future was resolved from the worker thread: the loop's
    # selector was never interrupted, so the get slept until the timeout.
    async def main() -> float:
        q: Any = resil.BoundedQueue(10) if kind == "bounded" else resil.PartitionedQueue(10)
        getter = asyncio.ensure_future(q.get())
        await asyncio.sleep(0)

        def produce() -> None:
            time.sleep(0.05)
            if kind == "bounded":
                q.put_nowait("x")
            else:
                q.put_nowait("x", "k")

        t0 = time.monotonic()
        threading.Thread(target=produce).start()
        await asyncio.wait_for(getter, 3.0)
        return time.monotonic() - t0

    assert asyncio.run(main()) < 1.0


def test_task_done_from_another_thread_wakes_join_on_the_loop() -> None:
    async def main() -> float:
        q: resil.BoundedQueue[int] = resil.BoundedQueue(10)
        q.put_nowait(1)
        q.get_nowait()
        t0 = time.monotonic()
        threading.Thread(target=lambda: (time.sleep(0.05), q.task_done())).start()
        assert await q.drain(3.0)
        return time.monotonic() - t0

    assert asyncio.run(main()) < 1.0


def test_emit_from_another_thread_reaches_an_idle_sender_promptly() -> None:
    async def main() -> float:
        delivered = asyncio.Event()
        loop = asyncio.get_running_loop()
        em = EventEmitter(lambda e: loop.call_soon(delivered.set))
        em.start()
        await asyncio.sleep(0.01)   # the sender now waits for an event
        t0 = time.monotonic()
        threading.Thread(target=lambda: (time.sleep(0.05), em.emit(1))).start()
        await asyncio.wait_for(delivered.wait(), 3.0)
        elapsed = time.monotonic() - t0
        await em.close()
        return elapsed

    assert asyncio.run(main()) < 1.0


@pytest.mark.parametrize("overflow", ["drop_oldest", "reject", "block"])
def test_emit_from_several_threads_never_raises_and_accounts_for_every_event(
        overflow: str) -> None:
    # emit checked full() and then queued: another thread filling the queue
    # in between made emit raise QueueFull (or QueueEmpty for drop_oldest).
    with switch_interval(1e-6):
        for _ in range(15):
            async def main() -> None:
                delivered: list[int] = []
                em = EventEmitter(delivered.append, queue_size=2, overflow=overflow)
                em.start()
                errors: list[BaseException] = []
                results: list[bool] = []

                def produce(base: int) -> None:
                    for k in range(1500):
                        try:
                            results.append(em.emit(base + k))
                        except BaseException as exc:
                            errors.append(exc)

                threads = [threading.Thread(target=produce, args=(i * 10**6,)) for i in range(4)]
                for t in threads:
                    t.start()
                while any(t.is_alive() for t in threads):
                    await asyncio.sleep(0.001)
                await em.close()
                assert errors == []
                st = em.stats()
                assert st["accepted"] == results.count(True)
                assert len(set(delivered)) == len(delivered) == st["emitted"]
                turned_away = results.count(False)
                dropped_accepted = st["dropped"] - (turned_away - st["rejected"])
                assert st["emitted"] + dropped_accepted == st["accepted"]

            asyncio.run(main())


# ---- Monitor.watch -------------------------------------------------------------

def test_watching_a_breaker_twice_counts_each_trip_once() -> None:
    # Every watch() added a listener: a breaker watched directly and through
    # its group (or twice) had each trip counted twice.
    monitor = resil.Monitor()
    group = resil.BreakerGroup()
    b = group["api"]
    monitor.watch(b)
    monitor.watch(b)
    monitor.watch(group)
    b.open()
    assert monitor.dashboard()["resilience_metrics"]["circuit_breaker_trips"] == 1
    other = resil.Monitor()  # another monitor watches it on its own account
    other.watch(b)
    b.reset()
    b.open()
    assert monitor.dashboard()["resilience_metrics"]["circuit_breaker_trips"] == 2
    assert other.dashboard()["resilience_metrics"]["circuit_breaker_trips"] == 1


# ---- a store whose text was damaged ------------------------------------------------

def test_a_dead_letter_whose_stored_text_is_damaged_raises_store_error_naming_it(
        tmp_path: Any) -> None:
    # A file cut short inside its last page passes quick_check (SQLite reads
    # the missing bytes as zeros) and its entries' JSON is damaged: list()
    # raised a bare JSONDecodeError from json.
    import sqlite3
    path = tmp_path / "dl.db"
    store = resil.SQLiteStore(path)
    dlq = resil.DeadLetterQueue(store=store, name="orders")
    good = dlq.put({"order": 1}, "boom")
    bad = dlq.put({"order": 2}, "boom")
    raw = sqlite3.connect(path)
    raw.execute("UPDATE resil_dead_letters SET item = ? WHERE id = ?", ('{"kind": "val\x00', bad))
    raw.commit()
    raw.close()
    with pytest.raises(resil.StoreError, match=rf"dead letter {bad} of queue 'orders' is corrupt"):
        dlq.list()
    with pytest.raises(resil.StoreError, match=rf"dead letter {bad} "):
        dlq.get(bad)
    assert dlq.get(good).item == {"order": 1}
    store.close()
