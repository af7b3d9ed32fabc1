"""resil.DeadLetterSink: one protocol for every dead-letter target, handed
dead letters the same way by the emitter and the bus (same fields, one
put at a time, in order, off the loop when the sink blocks); and the
DeadLetterQueue's clock."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import resil
from resil import DeadLetter, DeadLetterQueue, DeadLetterSink, Event, EventBus, EventEmitter


class ListSink:
    """A dead-letter target written by a user: the whole protocol, entries
    in a list. ``blocking`` says whether put is to be called off the loop."""

    def __init__(self, blocking: bool = False) -> None:
        self.blocking = blocking
        self.entries: list[DeadLetter] = []
        self.threads: list[int] = []

    def put(self, item: Any, error: BaseException, source: str | None = None,
            attempts: int = 0) -> int:
        self.threads.append(threading.get_ident())
        entry = DeadLetter(len(self.entries) + 1, item, repr(error), type(error).__name__,
                           source, attempts, time.time())
        self.entries.append(entry)
        return entry.id

    def list(self) -> list[DeadLetter]:
        return list(self.entries)

    def get(self, entry_id: int) -> DeadLetter:
        for entry in self.entries:
            if entry.id == entry_id:
                return entry
        raise KeyError(entry_id)

    def purge(self) -> int:
        n = len(self.entries)
        self.entries.clear()
        return n

    def stats(self) -> dict[str, Any]:
        return {"size": len(self.entries)}

    async def reprocess(self, entry_id: int, handler: Callable[[Any], Any]) -> bool:
        entry = self.get(entry_id)
        handler(entry.item)
        self.entries.remove(entry)
        return True


class SlowAsyncSink(ListSink):
    """put returns a coroutine; the earlier items take longer."""

    def __init__(self) -> None:
        super().__init__()
        self.delay = 0.05

    async def put(self, item: Any, error: BaseException,  # type: ignore[override]
                  source: str | None = None, attempts: int = 0) -> int:
        self.delay = max(self.delay - 0.01, 0.0)
        await asyncio.sleep(self.delay)
        return super().put(item, error, source, attempts)


def fields(sink: ListSink) -> list[tuple[Any, str, str | None, int]]:
    return [(e.item if not isinstance(e.item, Event) else e.item.seq, e.error_type, e.source,
             e.attempts) for e in sink.list()]


# ---- the protocol ---------------------------------------------------------------------------

def test_the_protocol_is_exported_and_documented() -> None:
    assert "DeadLetterSink" in resil.__all__ and resil.DeadLetterSink is DeadLetterSink
    doc = DeadLetterSink.__doc__ or ""
    for word in ("put(item, error, *, source=None, attempts=0)", "blocking", "list()", "get(",
                 "purge()", "stats()", "reprocess("):
        assert word in doc, word


def test_every_dead_letter_target_satisfies_it(tmp_path: Path) -> None:
    with resil.SQLiteStore(tmp_path / "d.db") as store:
        in_memory, on_disk = DeadLetterQueue(), DeadLetterQueue(store=store)
        for dlq in (in_memory, on_disk, ListSink()):
            assert isinstance(dlq, DeadLetterSink)
        # What clients read to decide where put runs: a store's put writes to disk.
        assert (in_memory.blocking, on_disk.blocking) == (False, True)
    assert not isinstance(object(), DeadLetterSink)


@pytest.mark.parametrize("make", [lambda dlq: EventEmitter(print, dlq=dlq),
                                  lambda dlq: EventBus(dlq=dlq)], ids=["emitter", "bus"])
def test_a_dlq_without_put_is_refused_naming_the_protocol(make: Any) -> None:
    with pytest.raises(TypeError, match=r"dlq must be a resil\.DeadLetterSink .* has no put"):
        make(object())


# ---- the emitter and the bus hand over the same fields --------------------------------------

def test_a_user_written_sink_gets_the_same_fields_from_the_emitter_and_the_bus() -> None:
    sink = ListSink()
    assert isinstance(sink, DeadLetterSink)

    async def main() -> None:
        def failing(event: Any) -> None:
            raise ConnectionError("down")

        emitter = EventEmitter(failing, dlq=sink, retry=resil.retry(
            retries=2, backoff=resil.Backoff(0.01, 2, max_delay=0.01)))
        async with emitter:
            emitter.emit("e1")
        bus = EventBus(dlq=sink)

        def broken(event: Event) -> None:
            raise KeyError("field")

        bus.subscribe("t", broken, name="broken")
        bus.subscribe("t", lambda e: None, required=("x",), name="strict")
        await bus.publish("t", {})

    resil.run_virtual(main())
    # attempts: the calls made for the item (3 sink calls; 1 handler call; a
    # contract refusal calls nothing); the source says who; the error is the exception.
    assert fields(sink) == [("e1", "ConnectionError", "emitter", 3),
                            (1, "KeyError", "t:broken", 1),
                            (1, "ContractViolation", "t:strict", 0)]
    assert isinstance(sink.entries[1].item, Event)


def publish_cancelled_in_first_handler(sink: ListSink, later: str) -> EventBus:
    """Publishes one event to a handler that hangs and handlers named by
    the letters of ``later``, cancels the publish inside the first handler,
    and waits a virtual second for the dead letters."""
    bus = EventBus(dlq=sink)
    entered = asyncio.Event()

    async def slow(event: Event) -> None:
        entered.set()
        await asyncio.sleep(60)

    bus.subscribe("t", slow, name="slow")
    for name in later:
        bus.subscribe("t", lambda e: None, name=name)

    async def main() -> None:
        task = asyncio.ensure_future(bus.publish("t", {}))
        await entered.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(1)

    resil.run_virtual(main())
    return bus


def test_an_interrupted_handler_counts_its_call() -> None:
    sink = ListSink()
    publish_cancelled_in_first_handler(sink, ["after"])
    # slow's handler was called once and interrupted; after's never.
    assert fields(sink) == [(1, "DeliveryCancelled", "t:slow", 1),
                            (1, "DeliveryCancelled", "t:after", 0)]


@pytest.mark.parametrize("client", ["emitter", "bus"])
def test_a_blocking_sink_is_put_to_from_a_worker_thread_in_order(client: str) -> None:
    sink = ListSink(blocking=True)
    loop_thread: list[int] = []

    async def main() -> None:
        loop_thread.append(threading.get_ident())
        if client == "emitter":
            async with EventEmitter(lambda e: 1 / 0, dlq=sink) as emitter:
                for i in range(50):
                    emitter.emit(i)
            assert emitter.stats()["dead_lettered"] == 50
        else:
            bus = EventBus(dlq=sink, handler_failure_limit=100)
            bus.subscribe("t", lambda e: 1 / 0, name="h")
            for _ in range(50):
                await bus.publish("t", {})
            # publish returned once its dead letter was written
            assert bus.stats()["dead_lettered"] == 50 and len(sink.entries) == 50

    asyncio.run(main())
    assert [item for item, *_ in fields(sink)] == \
        list(range(50) if client == "emitter" else range(1, 51))
    assert sink.threads and loop_thread[0] not in sink.threads


def test_a_blocking_sink_that_refuses_is_counted_by_the_bus() -> None:
    class Refusing(ListSink):
        def put(self, item: Any, error: BaseException, source: str | None = None,
                attempts: int = 0) -> int:
            if item.seq % 2:
                raise OSError("disk full")
            return super().put(item, error, source, attempts)

    sink = Refusing(blocking=True)
    bus = EventBus(dlq=sink, handler_failure_limit=100)
    bus.subscribe("t", lambda e: 1 / 0, name="h")

    async def main() -> None:
        for _ in range(6):
            await bus.publish("t", {})

    asyncio.run(main())
    assert threading.get_ident() not in sink.threads  # put from the worker thread
    stats = bus.stats()
    assert (stats["dead_lettered"], stats["dead_letter_failures"]) == (3, 3)
    assert [seq for seq, *_ in fields(sink)] == [2, 4, 6]


def test_awaitable_puts_keep_the_order_the_deliveries_failed_in() -> None:
    # The later puts finish sooner; the sink still gets them in order, one at a time.
    sink = SlowAsyncSink()
    bus = publish_cancelled_in_first_handler(sink, "bcd")
    assert [source for _, _, source, _ in fields(sink)] == ["t:slow", "t:b", "t:c", "t:d"]
    assert bus.stats()["dead_lettered"] == 4


def test_an_awaitable_put_the_loop_ends_on_is_counted_not_lost() -> None:
    class Hanging(ListSink):
        async def put(self, item: Any, error: BaseException,  # type: ignore[override]
                      source: str | None = None, attempts: int = 0) -> int:
            await asyncio.sleep(3600)
            return 0

    async def main() -> EventEmitter:
        emitter = EventEmitter(lambda e: 1 / 0, dlq=Hanging())
        async with emitter:
            for i in range(3):
                emitter.emit(i)
        return emitter   # close() gave up on the dead letters after 7 s; the loop ends

    emitter = resil.run_virtual(main())
    st = emitter.stats()
    assert (st["dead_lettered"], st["dropped"], st["dead_letters_pending"]) == (0, 3, 0)


# ---- DeadLetterQueue's clock ------------------------------------------------------------------

@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    if request.param == "memory":
        yield None
    else:
        with resil.SQLiteStore(tmp_path / "d.db") as s:
            yield s


def test_ages_and_timestamps_follow_the_clock(store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = resil.VirtualClock()
    dlq = DeadLetterQueue(store=store, ttl=60, clock=clock)
    assert dlq.clock is clock
    first = dlq.put("a", "e")
    clock.advance(30)
    second = dlq.put("b", "e")
    a, b = dlq.get(first), dlq.get(second)
    assert abs(a.timestamp - time.time()) < 60  # Unix time, from the clock
    assert b.timestamp - a.timestamp == pytest.approx(30, abs=1e-6)
    assert [e.item for e in dlq.list(since=a.timestamp + 10)] == ["b"]
    # The system clock stepping back a day changes no age: the queue's clock did not move.
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() - 86400)
    clock.advance(29.5)
    assert [e.item for e in dlq.list()] == ["a", "b"] and dlq.stats()["expired"] == 0
    clock.advance(0.5)  # a is 60 s old by the clock
    assert [e.item for e in dlq.list()] == ["b"] and len(dlq) == 1
    with pytest.raises(KeyError):
        dlq.get(first)
    st = dlq.stats()
    assert (st["expired"], st["oldest"]) == (1, b.timestamp)
    clock.advance(30)
    assert dlq.list() == [] and dlq.stats()["expired"] == 2


def test_the_memory_and_store_backends_keep_the_same_entries(tmp_path: Path) -> None:
    def run(dlq: DeadLetterQueue, clock: resil.VirtualClock) -> list[Any]:
        seen: list[Any] = []
        for i in range(6):
            dlq.put({"n": i}, ValueError(f"bad {i}"), source=f"s{i % 2}", attempts=i)
            clock.advance(10)
        seen.append([(e.id, e.item, e.error, e.source, e.attempts) for e in dlq.list()])
        failed = asyncio.run(dlq.reprocess(3, lambda item: 1 / 0))
        done = asyncio.run(dlq.reprocess(4, lambda item: None))
        seen.append((failed, done, dlq.get(3).attempts, dlq.get(3).error_type))
        clock.advance(15)  # 75 s: with a ttl of 50, entry 3 (added at 20 s) is too old
        seen.append([e.id for e in dlq.list()])
        stats = dlq.stats()
        assert stats["oldest"] == dlq.get(5).timestamp
        del stats["name"], stats["oldest"]
        seen.append(stats)
        seen.append(dlq.purge())
        return seen

    memory_clock, store_clock = resil.VirtualClock(), resil.VirtualClock()
    with resil.SQLiteStore(tmp_path / "d.db") as store:
        in_memory = run(DeadLetterQueue(maxsize=4, ttl=50, clock=memory_clock), memory_clock)
        on_disk = run(DeadLetterQueue(maxsize=4, ttl=50, store=store, clock=store_clock),
                      store_clock)
    assert in_memory == on_disk
    assert [entry[0] for entry in in_memory[0]] == [3, 4, 5, 6]  # 1 and 2 evicted at maxsize
    assert in_memory[1] == (False, True, 3, "ZeroDivisionError")  # put with 2 attempts, +1
    assert in_memory[2] == [5, 6]
    assert (in_memory[3]["evicted"], in_memory[3]["expired"], in_memory[4]) == (2, 1, 2)


@pytest.mark.parametrize("clock, error, match", [
    (object(), TypeError, r"clock must have a now\(\) method"),
    ("clock", TypeError, r"clock must have a now\(\) method"),
    (type("NanClock", (), {"now": lambda self: math.nan})(), ValueError, r"clock\.now\(\)"),
    (type("StrClock", (), {"now": lambda self: "0"})(), TypeError, r"clock\.now\(\)"),
    (type("BigClock", (), {"now": lambda self: 10**400})(), ValueError, r"clock\.now\(\)"),
])
def test_a_bad_clock_is_refused_naming_it(clock: Any, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        DeadLetterQueue(clock=clock)


# ---- an operator's reprocess never holds up the loop on the disk -----------------------------

def test_reprocessing_a_store_backed_queue_does_not_block_the_loop(tmp_path: Path) -> None:
    import sqlite3

    store = resil.SQLiteStore(tmp_path / "d.db", timeout=5)
    dlq = DeadLetterQueue(store=store)
    ok, bad = dlq.put({"n": 1}, "e"), dlq.put({"n": 2}, "e")
    gaps: list[float] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = False

        async def ticker() -> None:
            last = loop.time()
            while not stop:
                await asyncio.sleep(0.005)
                gaps.append(loop.time() - last)
                last = loop.time()

        def handler(item: dict[str, int]) -> None:
            if item["n"] == 2:
                raise ConnectionError("still down")
            # Another process holds the file for 0.3 s while this entry is removed.
            holder = sqlite3.connect(store.path, isolation_level=None)
            holder.execute("BEGIN EXCLUSIVE")
            loop.call_later(0.3, lambda: (holder.execute("ROLLBACK"), holder.close()))

        tick = asyncio.create_task(ticker())
        started = loop.time()
        assert await dlq.reprocess_all(handler) == {"successful": 1, "failed": 1}
        assert loop.time() - started >= 0.25  # the removal waited for the lock...
        stop = True
        await tick

    asyncio.run(main())
    assert max(gaps) < 0.15  # ...while the loop ran on
    assert [(e.id, e.attempts, e.error_type) for e in dlq.list()] == [(bad, 1, "ConnectionError")]
    with pytest.raises(KeyError):
        dlq.get(ok)
    store.close()
